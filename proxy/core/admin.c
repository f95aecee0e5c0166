/* admin.c - the admin request router: framing, credentials, the failure
 * rate limit, sessions with their CSRF token, the same-origin rule and the
 * dispatch (see admin.h). What the answers look like is admin_render.c.
 */
#include "smtp-tls-proxy/admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin_int.h"
#include "smtp-tls-proxy/sasl.h"

void admin_init(admin *a, const stp_config *cfg, const history *hist, const admin_ops *ops,
                void *ctx, const admin_asset *assets, size_t n_assets, int64_t started_s) {
  memset(a, 0, sizeof *a);
  a->cfg = cfg;
  a->hist = hist;
  a->ops = ops;
  a->ctx = ctx;
  a->assets = assets;
  a->n_assets = n_assets;
  a->started_s = started_s;
  ratelimit_table_init(&a->fails, 1024);
  ratelimit_init(&a->fails_all, 0);
}

void admin_free(admin *a) {
  ratelimit_table_free(&a->fails);
  stp_cleanse(a->sess, sizeof a->sess);
}

void admin_set_config(admin *a, const stp_config *cfg) {
  a->cfg = cfg;
}

void admin_req_wipe(admin_req *r) {
  stp_cleanse(r->pass, sizeof r->pass);
  stp_cleanse(r->cookie, sizeof r->cookie);
  stp_cleanse(r->csrf, sizeof r->csrf);
}

/* ---- framing ------------------------------------------------------------------ */

/* Copy a header value into dst (NUL-terminated); false when it does not
 * fit or the header came twice (an ambiguity nobody needs here). */
static bool take(char *dst, size_t cap, bool *seen, const char *v, size_t n) {
  if (*seen || n >= cap)
    return false;
  *seen = true;
  memcpy(dst, v, n);
  dst[n] = '\0';
  return true;
}

static bool basic_creds(admin_req *r, const char *v, size_t n) {
  if (n < 6 || stp_ascii_ncasecmp(v, "Basic ", 6) != 0)
    return true; /* another scheme: as if none */
  unsigned char dec[2 * LANAUTH_USER_MAX + 2];
  long got = sasl_b64_decode(v + 6, n - 6, dec, sizeof dec - 1);
  if (got <= 0)
    return false;
  unsigned char *colon = memchr(dec, ':', (size_t)got);
  size_t ulen = colon ? (size_t)(colon - dec) : 0, plen = colon ? (size_t)got - ulen - 1 : 0;
  bool ok = colon && ulen && ulen <= LANAUTH_USER_MAX && plen <= LANAUTH_USER_MAX &&
            !memchr(dec, '\0', (size_t)got);
  if (ok) {
    memcpy(r->user, dec, ulen);
    r->user[ulen] = '\0';
    memcpy(r->pass, colon + 1, plen);
    r->pass[plen] = '\0';
    r->has_creds = true;
  }
  stp_cleanse(dec, sizeof dec);
  return ok;
}

/* The session cookie among the Cookie header's pairs. */
static void find_cookie(admin_req *r, const char *v, size_t n) {
  const char *end = v + n;
  while (v < end) {
    while (v < end && (*v == ' ' || *v == ';'))
      v++;
    const char *e = memchr(v, ';', (size_t)(end - v));
    size_t len = e ? (size_t)(e - v) : (size_t)(end - v);
    size_t nl = strlen(ADMIN_COOKIE "=");
    if (len == nl + 32 && !memcmp(v, ADMIN_COOKIE "=", nl)) {
      memcpy(r->cookie, v + nl, 32);
      r->cookie[32] = '\0';
    }
    v += len;
  }
}

typedef struct heads {
  bool host, origin, auth, cookie, clen, te, csrf, site;
  uint64_t clen_v;
} heads;

static int one_header(admin_req *r, heads *s, const char *name, size_t nlen, const char *v,
                      size_t n) {
#define IS(x) (nlen == sizeof(x) - 1 && !stp_ascii_ncasecmp(name, x, nlen))
  if (IS("host"))
    return take(r->host, sizeof r->host, &s->host, v, n) ? 0 : 400;
  if (IS("origin"))
    return take(r->origin, sizeof r->origin, &s->origin, v, n) ? 0 : 400;
  if (IS("sec-fetch-site"))
    return take(r->fetch_site, sizeof r->fetch_site, &s->site, v, n) ? 0 : 400;
  if (IS("x-csrf-token")) {
    r->wants_json = true;
    return take(r->csrf, sizeof r->csrf, &s->csrf, v, n) ? 0 : 400;
  }
  if (IS("authorization")) {
    if (s->auth)
      return 400;
    s->auth = true;
    return basic_creds(r, v, n) ? 0 : 400;
  }
  if (IS("cookie")) {
    s->cookie = true; /* browsers may split cookies over several lines */
    find_cookie(r, v, n);
    return 0;
  }
  if (IS("transfer-encoding")) {
    s->te = true;
    return 0;
  }
  if (IS("content-length")) {
    uint64_t x = 0;
    if (s->clen || n == 0 || n > 9)
      return n > 9 ? 413 : 400;
    for (size_t i = 0; i < n; i++) {
      if (v[i] < '0' || v[i] > '9')
        return 400;
      x = x * 10 + (uint64_t)(v[i] - '0');
    }
    s->clen = true;
    s->clen_v = x;
  }
  return 0;
#undef IS
}

/* Every header line of the head (the codec checked it has no control
 * bytes). */
static int headers(admin_req *r, const char *buf, heads *s) {
  const char *end = buf + r->h.head_len; /* from the request line on (the
                                          * codec skips empty lines before it) */
  const char *p = memchr(r->h.method, '\n', (size_t)(end - r->h.method));
  while (p && ++p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol)
      break;
    size_t len = (size_t)(eol - p);
    if (len && p[len - 1] == '\r')
      len--;
    if (!len)
      break;
    const char *colon = memchr(p, ':', len);
    if (!colon || colon == p || p[0] == ' ' || p[0] == '\t')
      return 400; /* no obsolete line folding either */
    const char *v = colon + 1, *ve = p + len;
    while (v < ve && (*v == ' ' || *v == '\t'))
      v++;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
      ve--;
    int rc = one_header(r, s, p, (size_t)(colon - p), v, (size_t)(ve - v));
    if (rc)
      return rc;
    p = eol;
  }
  return 0;
}

int admin_parse(const char *buf, size_t len, bool tls, admin_req *r) {
  memset(r, 0, sizeof *r);
  r->tls = tls;
  r->result = -1;
  int rc = http1_parse_request(buf, len, ADMIN_MAX_HEAD, &r->h);
  if (rc == STP_EAGAIN)
    return STP_EAGAIN;
  if (rc == STP_ETOOLONG)
    return 431;
  if (rc != STP_OK)
    return 400;
  heads s = {0};
  if ((rc = headers(r, buf, &s)) != 0)
    return rc;
  if (!s.host)
    return 400; /* HTTP/1.1 requires it; the origin rule compares with it */
  r->post = r->h.method_len == 4 && !memcmp(r->h.method, "POST", 4);
  r->head_only = r->h.method_len == 4 && !memcmp(r->h.method, "HEAD", 4);
  if (s.te)
    return 501; /* no chunked bodies: requests here are small */
  if (r->post && !s.clen)
    return 411;
  if (s.clen_v > ADMIN_MAX_BODY)
    return 413;
  r->total = r->h.head_len + (size_t)s.clen_v;
  if (len < r->total)
    return STP_EAGAIN;
  admin_route(r, buf + r->h.head_len, (size_t)s.clen_v);
  return 0;
}

/* ---- credentials and the failure limit ------------------------------------------ */

uint64_t admin_gate(admin *a, const char *client, uint64_t now_ms) {
  uint64_t w1 =
      ratelimit_table_peek(&a->fails, client, ADMIN_FAIL_COUNT, ADMIN_FAIL_PERIOD_MS, now_ms);
  uint64_t w2 =
      ratelimit_peek(&a->fails_all, ADMIN_FAIL_GLOBAL_COUNT, ADMIN_FAIL_PERIOD_MS, now_ms);
  uint64_t w = w1 > w2 ? w1 : w2;
  return w ? (w + 999) / 1000 : 0;
}

void admin_failed(admin *a, const char *client, uint64_t now_ms) {
  ratelimit_table_take(&a->fails, client, ADMIN_FAIL_COUNT, ADMIN_FAIL_PERIOD_MS, now_ms);
  ratelimit_take(&a->fails_all, ADMIN_FAIL_GLOBAL_COUNT, ADMIN_FAIL_PERIOD_MS, now_ms);
}

bool admin_check_credentials(const stp_config *cfg, const admin_req *r) {
  const stp_admin_cfg *ac = cfg->admin;
  if (!ac || !r->has_creds || !ac->n_users)
    return false;
  const stp_user *u = NULL;
  for (size_t i = 0; i < ac->n_users; i++)
    if (!strcmp(ac->users[i].name, r->user))
      u = &ac->users[i];
  /* An unknown name costs what a known one does; its result is ignored. */
  bool ok = lanauth_check_hash(u ? u->hash : ac->unknown_user_hash, r->pass);
  return u && ok;
}

/* ---- sessions, CSRF and origin ----------------------------------------------------- */

static bool same_text(const char *a, const char *b, size_t n) {
  unsigned char d = 0;
  for (size_t i = 0; i < n; i++)
    d |= (unsigned char)(a[i] ^ b[i]);
  return d == 0;
}

static void hex_random(admin *a, char out[33]) {
  unsigned char raw[16];
  a->ops->random(a->ctx, raw, sizeof raw);
  for (int i = 0; i < 16; i++)
    snprintf(out + 2 * i, 3, "%02x", raw[i]);
  stp_cleanse(raw, sizeof raw);
}

/* The request's session (its cookie, same user, not idle too long), or
 * with create a new one in the oldest slot (*fresh), else NULL. Only the
 * page creates sessions, so API polling without cookies cannot push a
 * browser's session out. */
static admin_session *session_for(admin *a, const admin_req *r, uint64_t now_ms, bool create,
                                  bool *fresh) {
  admin_session *oldest = &a->sess[0];
  *fresh = false;
  for (int i = 0; i < ADMIN_SESSIONS; i++) {
    admin_session *s = &a->sess[i];
    bool live = s->id[0] && now_ms - s->last_ms < ADMIN_SESSION_IDLE_MS;
    if (live && r->cookie[0] && same_text(s->id, r->cookie, 32) && !strcmp(s->user, r->user)) {
      s->last_ms = now_ms;
      return s;
    }
    if (!s->id[0] || s->last_ms < oldest->last_ms)
      oldest = s;
  }
  if (!create)
    return NULL;
  *fresh = true;
  hex_random(a, oldest->id);
  hex_random(a, oldest->csrf);
  snprintf(oldest->user, sizeof oldest->user, "%s", r->user);
  oldest->last_ms = now_ms;
  return oldest;
}

/* Origin must be this server as the browser reached it: scheme://Host. */
static bool same_origin(const admin_req *r) {
  char want[300];
  snprintf(want, sizeof want, "%s://%s", r->tls ? "https" : "http", r->host);
  if (!r->origin[0] || strcmp(r->origin, want) != 0)
    return false;
  return !r->fetch_site[0] || !strcmp(r->fetch_site, "same-origin");
}

static bool csrf_ok(const admin_req *r, const admin_session *s) {
  return s && strlen(r->csrf) == 32 && same_text(r->csrf, s->csrf, 32);
}

/* ---- dispatch ------------------------------------------------------------------------ */

admin_action admin_handle(admin *a, admin_req *r, int64_t wall_ms, uint64_t now_ms,
                          admin_resp *resp) {
  memset(resp, 0, sizeof *resp);
  bool fresh;
  admin_session *s = session_for(a, r, now_ms, r->act == ADM_PAGE && !r->not_found, &fresh);
  r->session = s;
  if (r->post && (!same_origin(r) || !csrf_ok(r, s))) {
    admin_error(resp, 403, 0);
    return ADM_NONE;
  }
  if (r->act == ADM_ASSET && !r->not_found) {
    r->not_found = 404;
    for (size_t i = 0; i < a->n_assets; i++)
      if (!strcmp(a->assets[i].path, r->path)) {
        r->asset = &a->assets[i];
        r->not_found = 0;
      }
  }
  if (r->not_found) {
    admin_error(resp, r->not_found, 0);
    return ADM_NONE;
  }
  if (r->act == ADM_TEST)
    return ADM_TEST; /* the server sends it; admin_test_done answers */
  admin_render(a, r, wall_ms, resp);
  if (fresh && resp->status < 400) {
    size_t l = strlen(resp->extra);
    snprintf(resp->extra + l, sizeof resp->extra - l,
             "Set-Cookie: " ADMIN_COOKIE "=%s; Path=/; HttpOnly; SameSite=Strict%s\r\n", s->id,
             r->tls ? "; Secure" : "");
  }
  resp->head_only = r->head_only;
  return r->act;
}

/* ---- routing ----------------------------------------------------------------------- */

static int hexval(char c) {
  return c >= '0' && c <= '9'   ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                : -1;
}

/* The value of `key` in an application/x-www-form-urlencoded string (a
 * query or a body), decoded into out; false when absent, too long, or
 * decoding to a control byte. */
static bool form_value(const char *p, size_t n, const char *key, char *out, size_t cap) {
  size_t kl = strlen(key);
  const char *end = p + n;
  while (p < end) {
    const char *amp = memchr(p, '&', (size_t)(end - p));
    const char *pe = amp ? amp : end;
    if ((size_t)(pe - p) > kl && !memcmp(p, key, kl) && p[kl] == '=') {
      size_t o = 0;
      for (const char *q = p + kl + 1; q < pe; q++) {
        int c = (unsigned char)*q;
        if (c == '+')
          c = ' ';
        else if (c == '%') {
          if (pe - q < 3 || hexval(q[1]) < 0 || hexval(q[2]) < 0)
            return false;
          c = hexval(q[1]) * 16 + hexval(q[2]);
          q += 2;
        }
        if (c < 0x20 || c == 0x7F || o + 1 >= cap)
          return false;
        out[o++] = (char)c;
      }
      out[o] = '\0';
      return true;
    }
    p = amp ? amp + 1 : end;
  }
  return false;
}

static bool is_id(const char *p, size_t n) {
  if (n != SPOOL_ID_LEN)
    return false;
  for (size_t i = 0; i < n; i++)
    if (hexval(p[i]) < 0)
      return false;
  return true;
}

static bool path_is(const char *p, size_t n, const char *want) {
  return n == strlen(want) && !memcmp(p, want, n);
}

static void route_get(admin_req *r, const char *path, size_t plen, const char *q, size_t qlen) {
  char v[32];
  if (path_is(path, plen, "/")) {
    r->act = ADM_PAGE;
  } else if (path_is(path, plen, "/api/status")) {
    r->act = ADM_STATUS;
  } else if (path_is(path, plen, "/api/queue")) {
    r->act = ADM_QUEUE;
  } else if (path_is(path, plen, "/api/deliveries")) {
    r->act = ADM_DELIVERIES;
    r->limit = 100;
    if (form_value(q, qlen, "limit", v, sizeof v)) {
      char *end;
      unsigned long x = strtoul(v, &end, 10);
      if (!v[0] || *end || v[0] == '-' || x == 0 || x > HISTORY_MAX)
        r->not_found = 400;
      r->limit = x;
    }
    if (form_value(q, qlen, "result", v, sizeof v) &&
        (r->result = history_result_parse(v, strlen(v))) < 0)
      r->not_found = 400;
  } else if (plen < sizeof r->path) {
    r->act = ADM_ASSET; /* admin_handle looks it up among the assets */
    memcpy(r->path, path, plen);
    r->path[plen] = '\0';
  } else {
    r->not_found = 404;
  }
}

static void route_post(admin_req *r, const char *path, size_t plen, const char *body, size_t blen) {
  static const char *const ops[] = {"retry", "hold", "release", "delete"};
  static const queuectl_op qops[] = {QC_RETRY, QC_HOLD, QC_RELEASE, QC_DELETE};
  const char *pre = "/api/queue/";
  size_t pl = strlen(pre);
  if (!r->csrf[0])
    form_value(body, blen, "csrf", r->csrf, sizeof r->csrf);
  if (path_is(path, plen, "/api/test-route")) {
    r->act = ADM_TEST;
    if (!form_value(body, blen, "route", r->route, sizeof r->route) ||
        !form_value(body, blen, "from", r->from, sizeof r->from) ||
        !form_value(body, blen, "to", r->to, sizeof r->to) || !r->route[0] || !r->to[0])
      r->not_found = 400;
    return;
  }
  if (plen > pl + SPOOL_ID_LEN + 1 && !memcmp(path, pre, pl) && is_id(path + pl, SPOOL_ID_LEN) &&
      path[pl + SPOOL_ID_LEN] == '/') {
    const char *op = path + pl + SPOOL_ID_LEN + 1;
    size_t ol = plen - pl - SPOOL_ID_LEN - 1;
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++)
      if (path_is(op, ol, ops[i])) {
        r->act = ADM_QUEUE_ACTION;
        r->op = qops[i];
        memcpy(r->id, path + pl, SPOOL_ID_LEN);
        r->id[SPOOL_ID_LEN] = '\0';
        return;
      }
  }
  r->not_found = 404;
}

void admin_route(admin_req *r, const char *body, size_t blen) {
  const char *t = r->h.target;
  size_t tl = r->h.target_len;
  const char *qm = memchr(t, '?', tl);
  size_t plen = qm ? (size_t)(qm - t) : tl;
  const char *q = qm ? qm + 1 : "";
  size_t qlen = qm ? tl - plen - 1 : 0;
  bool get = r->head_only || (r->h.method_len == 3 && !memcmp(r->h.method, "GET", 3));
  if (!get && !r->post) {
    r->not_found = 405;
    return;
  }
  if (tl == 0 || t[0] != '/') {
    r->not_found = 400;
    return;
  }
  if (get)
    route_get(r, t, plen, q, qlen);
  else
    route_post(r, t, plen, body, blen);
}
