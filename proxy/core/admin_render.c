/* admin_render.c - the admin answers: the page (a template asset filled
 * with server-rendered tables, so it reads without JavaScript), the JSON of
 * the API, error answers and every response head with its security
 * headers (see admin.h). Text from outside (senders, replies, names) goes
 * through esc.c; nothing secret is reachable from here but the session's
 * CSRF token, which only the page's forms carry.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin_int.h"
#include "smtp-tls-proxy/esc.h"
#include "smtp-tls-proxy/uphealth.h"

#define CSP                                                                                        \
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "                      \
  "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

static const char *reason(int status) {
  switch (status) {
  case 200:
    return "OK";
  case 400:
    return "Bad Request";
  case 401:
    return "Unauthorized";
  case 403:
    return "Forbidden";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 411:
    return "Length Required";
  case 413:
    return "Content Too Large";
  case 429:
    return "Too Many Requests";
  case 431:
    return "Request Header Fields Too Large";
  case 501:
    return "Not Implemented";
  case 502:
    return "Bad Gateway";
  case 503:
    return "Service Unavailable";
  default:
    return "Error";
  }
}

/* cap: the bound of this kind of answer (the page and the history can be
 * large; an error or the status cannot). */
static void body_init(admin_resp *resp, int status, const char *ctype, size_t cap) {
  resp->status = status;
  resp->ctype = ctype;
  if (!resp->body.cap)
    stp_buf_init(&resp->body, cap);
}

#define SMALL 4096
#define JSON_STATUS (64 * 1024)
#define LARGE ADMIN_MAX_RESPONSE
#define TESTROUTE_JSON_MAX (128 * 1024) /* a 16 KiB dialogue, escaped */

void admin_error(admin_resp *resp, int status, uint64_t retry_s) {
  body_init(resp, status, "text/plain; charset=utf-8", SMALL);
  resp->body.len = 0;
  resp->extra[0] = '\0';
  if (status == 401)
    snprintf(resp->extra, sizeof resp->extra,
             "WWW-Authenticate: Basic realm=\"smtp-tls-proxy admin\", charset=\"UTF-8\"\r\n");
  else if (status == 429)
    snprintf(resp->extra, sizeof resp->extra, "Retry-After: %" PRIu64 "\r\n", retry_s);
  else if (status == 405)
    snprintf(resp->extra, sizeof resp->extra, "Allow: GET, HEAD, POST\r\n");
  stp_buf_appendf(&resp->body, "%d %s\n", status, reason(status));
}

int admin_resp_head(const admin_resp *resp, bool tls, stp_buf *out) {
  return stp_buf_appendf(out,
                         "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                         "Content-Security-Policy: " CSP "\r\n"
                         "X-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\n"
                         "Referrer-Policy: same-origin\r\nCache-Control: no-store\r\n"
                         "Cross-Origin-Resource-Policy: same-origin\r\n%s%s"
                         "Connection: close\r\n\r\n",
                         resp->status, reason(resp->status), resp->ctype, resp->body.len,
                         tls ? "Strict-Transport-Security: max-age=31536000\r\n" : "", resp->extra);
}

void admin_resp_free(admin_resp *resp) {
  stp_buf_free(&resp->body);
}

/* ---- JSON ------------------------------------------------------------------------------ */

static const char *state_name(uph_state s) {
  return s == UPH_UP ? "up" : s == UPH_DOWN ? "down" : "unknown";
}

static const char *kind_name(stp_up_kind k) {
  return k == STP_UP_GRAPH ? "graph" : k == STP_UP_GMAIL ? "gmail" : "smtp";
}

/* Seconds since the epoch as ISO 8601; "" for 0 (never). */
static void when(int64_t s, char out[32]) {
  if (s <= 0)
    out[0] = '\0';
  else
    history_time_text(s * 1000, out);
}

static void json_time(stp_buf *b, const char *key, int64_t s) {
  char t[32];
  when(s, t);
  esc_json_kv(b, key, t[0] ? t : NULL, 0);
}

static void status_json(admin *a, int64_t wall_ms, stp_buf *b) {
  stp_buf_appendf(b, "{\"version\":\"%s\",\"uptime_s\":%" PRId64 ",\"hostname\":\"", STP_VERSION,
                  wall_ms / 1000 - a->started_s);
  esc_json(b, a->cfg->hostname);
  stp_buf_append(b, "\",\"upstreams\":[", 15);
  for (size_t i = 0; i < a->cfg->n_upstreams; i++) {
    const stp_upstream_cfg *u = &a->cfg->upstreams[i];
    uph_status st;
    memset(&st, 0, sizeof st);
    uphealth_get(u->name, &st);
    stp_buf_appendf(b, "%s{", i ? "," : "");
    esc_json_kv(b, "name", u->name, 1);
    esc_json_kv(b, "kind", kind_name(u->kind), 0);
    esc_json_kv(b, "state", state_name(st.state), 0);
    json_time(b, "last_success", st.last_success);
    json_time(b, "last_failure", st.last_failure);
    json_time(b, "down_since", st.down_since);
    esc_json_kv(b, "last_error", st.last_error[0] ? st.last_error : NULL, 0);
    esc_json_kv(b, "hint", st.hint[0] ? st.hint : NULL, 0);
    json_time(b, "token_expiry", st.token_expiry);
    json_time(b, "refresh_token_expiry", st.refresh_token_expiry);
    stp_buf_append(b, "}", 1);
  }
  admin_spool_figs f;
  if (a->ops->spool && a->ops->spool(a->ctx, &f))
    stp_buf_appendf(b,
                    "],\"spool\":{\"messages\":%" PRIu64 ",\"bytes\":%" PRIu64
                    ",\"max_messages\":%" PRIu64 ",\"max_bytes\":%" PRIu64 ",\"oldest_s\":%" PRIu64
                    ",\"recovered\":%s}",
                    f.messages, f.bytes, f.max_messages, f.max_bytes, f.oldest_s,
                    f.recovered ? "true" : "false");
  else
    stp_buf_append(b, "],\"spool\":null", 14);
  stp_buf_appendf(b, ",\"history\":{\"kept\":%zu,\"capacity\":%zu,\"seen\":%" PRIu64 "}}",
                  a->hist ? a->hist->n : 0, a->hist ? a->hist->cap : 0,
                  a->hist ? a->hist->total : 0);
}

static const char *held_name(int h) {
  return h == 1 ? "admin" : h == 2 ? "route missing" : NULL;
}

static size_t queue_rows(admin *a, admin_qrow **rows) {
  *rows = stp_xcalloc(ADMIN_QUEUE_ROWS, sizeof **rows);
  size_t all = a->ops->queue ? a->ops->queue(a->ctx, *rows, ADMIN_QUEUE_ROWS) : 0;
  return all;
}

static void queue_json(admin *a, stp_buf *b) {
  admin_qrow *rows;
  size_t all = queue_rows(a, &rows), n = all < ADMIN_QUEUE_ROWS ? all : ADMIN_QUEUE_ROWS;
  stp_buf_appendf(b, "{\"total\":%zu,\"messages\":[", all);
  for (size_t i = 0; i < n; i++) {
    const admin_qrow *q = &rows[i];
    char c[32], nx[32];
    history_time_text((int64_t)q->created_ms, c);
    history_time_text((int64_t)q->next_ms, nx);
    stp_buf_appendf(b, "%s{", i ? "," : "");
    esc_json_kv(b, "id", q->id, 1);
    esc_json_kv(b, "created", c, 0);
    esc_json_kv(b, "route", q->route, 0);
    esc_json_kv(b, "from", q->from, 0);
    stp_buf_appendf(b, ",\"rcpts\":%u,\"size\":%" PRIu64 ",\"attempts\":%u", q->n_rcpts, q->size,
                    q->attempts);
    esc_json_kv(b, "next", q->held ? NULL : nx, 0);
    esc_json_kv(b, "held", held_name(q->held), 0);
    esc_json_kv(b, "last", q->last, 0);
    stp_buf_appendf(b, ",\"delivering\":%s}", q->busy ? "true" : "false");
  }
  stp_buf_append(b, "]}", 2);
  free(rows);
}

/* ---- dispatch ---------------------------------------------------------------------------- */

static void queue_action(admin *a, const admin_req *r, int64_t wall_ms, admin_resp *resp) {
  char msg[256] = "", by[300];
  snprintf(by, sizeof by, "admin:%s", r->user);
  int rc = a->ops->queue_act ? a->ops->queue_act(a->ctx, r->op, r->id, by, msg, sizeof msg) : -1;
  if (!msg[0])
    snprintf(msg, sizeof msg, "%s", rc == 0 ? "done" : "no spool");
  if (r->wants_json) {
    body_init(resp, rc == 0 ? 200 : 409, "application/json", SMALL);
    stp_buf_appendf(&resp->body, "{\"ok\":%s", rc == 0 ? "true" : "false");
    esc_json_kv(&resp->body, "message", msg, 0);
    stp_buf_append(&resp->body, "}", 1);
    return;
  }
  body_init(resp, rc == 0 ? 200 : 409, "text/html; charset=utf-8", LARGE);
  admin_page(a, r, wall_ms, msg, rc == 0, NULL, &resp->body);
}

void admin_render(admin *a, const admin_req *r, int64_t wall_ms, admin_resp *resp) {
  switch (r->act) {
  case ADM_PAGE:
    body_init(resp, 200, "text/html; charset=utf-8", LARGE);
    admin_page(a, r, wall_ms, NULL, true, NULL, &resp->body);
    break;
  case ADM_ASSET:
    body_init(resp, 200, r->asset->ctype, r->asset->len);
    stp_buf_append(&resp->body, r->asset->data, r->asset->len);
    break;
  case ADM_STATUS:
    body_init(resp, 200, "application/json", JSON_STATUS);
    status_json(a, wall_ms, &resp->body);
    break;
  case ADM_DELIVERIES:
    body_init(resp, 200, "application/json", LARGE);
    if (a->hist)
      history_json(a->hist, r->limit, r->result, &resp->body);
    else
      stp_buf_append(&resp->body, "[]", 2);
    break;
  case ADM_QUEUE:
    body_init(resp, 200, "application/json", LARGE);
    queue_json(a, &resp->body);
    break;
  case ADM_QUEUE_ACTION:
    queue_action(a, r, wall_ms, resp);
    break;
  default:
    admin_error(resp, 404, 0);
  }
}

void admin_test_done(admin *a, const admin_req *r, bool ok, const char *transcript, int64_t wall_ms,
                     admin_resp *resp) {
  memset(resp, 0, sizeof *resp);
  char msg[512];
  snprintf(msg, sizeof msg, "Test message through route %s: %s", r->route,
           ok ? "the upstream accepted it" : "it failed (see the dialogue)");
  if (r->wants_json) {
    body_init(resp, ok ? 200 : 502, "application/json", TESTROUTE_JSON_MAX);
    stp_buf_appendf(&resp->body, "{\"ok\":%s", ok ? "true" : "false");
    esc_json_kv(&resp->body, "message", msg, 0);
    esc_json_kv(&resp->body, "transcript", transcript, 0);
    stp_buf_append(&resp->body, "}", 1);
    return;
  }
  body_init(resp, 200, "text/html; charset=utf-8", LARGE);
  admin_page(a, r, wall_ms, msg, ok, transcript, &resp->body);
}
