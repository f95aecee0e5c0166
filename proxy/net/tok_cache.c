/* tok_cache.c - the process-wide token cache and its waiters (see
 * oauth2_net.h).
 *
 * A source is found by what identifies it (upstream name, kind, endpoint,
 * client, scope, files, argv); it lives for the whole process, so a reload
 * keeps a valid token instead of fetching again. Secrets that may change
 * with a reload (client secret, refresh token) are adopted from a newer
 * load only. How a token is got is tok_fetch.c's and tok_cmd.c's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jwt_sign.h"
#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/metrics.h"
#include "smtp-tls-proxy/secret_file.h"
#include "tok_internal.h"

static void src_done(tok_src *s, oauth2_token_resp *t, char *token, const char *err);

static tok_src *g_srcs;

/* ---- waiters ----------------------------------------------------------- */

static void ring_init(tok_waiter *h) {
  h->prev = h->next = h;
}

void tok_cancel(tok_waiter *w) {
  if (!w || !w->queued)
    return;
  w->prev->next = w->next;
  w->next->prev = w->prev;
  w->prev = w->next = NULL;
  w->queued = false;
}

/* Every waiter queued now gets the outcome. The ring is moved aside first:
 * a callback may cancel other waiters or queue new ones (a new fetch). */
static void wake_all(tok_src *s, const char *token, const char *err) {
  tok_waiter local;
  ring_init(&local);
  if (s->head.next != &s->head) {
    local.next = s->head.next;
    local.prev = s->head.prev;
    local.next->prev = &local;
    local.prev->next = &local;
    ring_init(&s->head);
  }
  while (local.next != &local) {
    tok_waiter *w = local.next;
    tok_cancel(w);
    w->cb(w->arg, token, err);
  }
}

/* ---- sources ----------------------------------------------------------- */

static void key_add(stp_buf *k, const char *s) {
  size_t n = s ? strlen(s) : 0;
  char len[24];
  int m = snprintf(len, sizeof len, "%zu:", s ? n : (size_t)-1);
  if (k->cap - k->len < (size_t)m + n) { /* keys are short; grow by hand */
    size_t cap = (k->cap + (size_t)m + n) * 2;
    k->data = stp_xrealloc(k->data, cap);
    k->cap = cap;
  }
  stp_buf_append(k, len, (size_t)m);
  stp_buf_append(k, s ? s : "", n);
}

static void make_key(stp_buf *k, const stp_upstream_cfg *c) {
  const stp_oauth2_cfg *o = c->token_src;
  char num[64];
  stp_buf_init(k, 256);
  key_add(k, c->name);
  snprintf(num, sizeof num, "%d/%d/%llu", (int)o->kind, (int)o->grant,
           (unsigned long long)o->token_ttl_ms);
  key_add(k, num);
  key_add(k, o->token_url);
  key_add(k, o->client_id);
  key_add(k, o->scope);
  key_add(k, o->ca_file);
  key_add(k, o->refresh_token_file);
  key_add(k, o->subject);
  key_add(k, o->key_file);
  for (size_t i = 0; i < o->command.n; i++)
    key_add(k, o->command.v[i]);
}

static char *dup_or_null(const char *s) {
  return s ? stp_xstrdup(s) : NULL;
}

static void set_secret(char **dst, const char *val) {
  stp_free_secret(*dst);
  *dst = dup_or_null(val);
}

/* The source c names, if one exists already; k is its key (free it). */
static tok_src *src_find(const stp_upstream_cfg *c, stp_buf *k) {
  make_key(k, c);
  tok_src *s = g_srcs;
  for (; s; s = s->next)
    if (s->key.len == k->len && !memcmp(s->key.data, k->data, k->len))
      break;
  return s;
}

static tok_src *src_for(const stp_upstream_cfg *c) {
  const stp_oauth2_cfg *o = c->token_src;
  stp_buf k;
  tok_src *s = src_find(c, &k);
  if (s) {
    stp_buf_free(&k);
    if (o->load_seq > s->seq) { /* a newer configuration: take its secrets */
      s->seq = o->load_seq;
      set_secret(&s->client_secret, o->client_secret);
      if (o->private_key &&
          (!s->private_key || strcmp(s->private_key, o->private_key) ||
           strcmp(s->certificate ? s->certificate : "", o->certificate ? o->certificate : ""))) {
        set_secret(&s->private_key, o->private_key); /* a renewed key or certificate */
        set_secret(&s->certificate, o->certificate);
        free(s->sa_key_id); /* a new JSON key names its own key id */
        s->sa_key_id = dup_or_null(o->sa_key_id);
        free(s->sa_email);
        s->sa_email = dup_or_null(o->sa_email);
        jwt_key_free(s->jkey);
        s->jkey = NULL;
      }
      if (o->refresh_token && (!s->rt || strcmp(s->rt, o->refresh_token)))
        set_secret(&s->rt, o->refresh_token);
    }
    return s;
  }
  s = stp_xcalloc(1, sizeof *s);
  s->done = src_done;
  s->key = k;
  s->name = stp_xstrdup(c->name);
  s->kind = o->kind;
  s->grant = o->grant;
  s->token_url = dup_or_null(o->token_url);
  s->client_id = dup_or_null(o->client_id);
  s->client_secret = dup_or_null(o->client_secret);
  s->scope = dup_or_null(o->scope);
  s->ca_file = dup_or_null(o->ca_file);
  s->rt_file = dup_or_null(o->refresh_token_file);
  s->rt = dup_or_null(o->refresh_token);
  s->subject = dup_or_null(o->subject);
  s->sa_email = dup_or_null(o->sa_email);
  s->sa_key_id = dup_or_null(o->sa_key_id);
  s->private_key = dup_or_null(o->private_key);
  s->certificate = dup_or_null(o->certificate);
  s->argv = stp_xcalloc(o->command.n + 1, sizeof *s->argv);
  for (size_t i = 0; i < o->command.n; i++)
    s->argv[i] = stp_xstrdup(o->command.v[i]);
  s->ttl_ms = o->token_ttl_ms;
  s->timeout_ms = o->timeout_ms ? o->timeout_ms : 30000;
  s->seq = o->load_seq;
  ring_init(&s->head);
  s->next = g_srcs;
  g_srcs = s;
  return s;
}

/* The failure's log line (with the endpoint's OAuth error code apart, for
 * alerts) and its count. */
static void log_failure(tok_src *s, const char *err) {
  bool cmd = s->kind == STP_TOKSRC_COMMAND;
  stp_kv kv[] = {{"upstream", s->name},
                 {"source", cmd ? "token_command" : "oauth2"},
                 {"endpoint", cmd ? s->argv[0] : s->token_url},
                 {"reason", err},
                 {"error", !cmd && s->error[0] ? s->error : NULL}};
  stp_log_kv(STP_LOG_ERROR, NULL, "oauth2-failed", kv, 5);
  metrics_oauth2_refresh_failure(s->name, cmd              ? "command"
                                          : s->fail_reason ? s->fail_reason
                                                           : "other");
}

/* Wall-clock expiry of the access token got now: for the metric and for
 * readers of the oauth2-token event (alerts, the admin status). */
static int64_t expiry_unix(const tok_src *s, const oauth2_token_resp *t) {
  int64_t now = (int64_t)time(NULL);
  if (!t)
    return now + (int64_t)(s->ttl_ms / 1000);
  return now + (t->has_expires_in ? t->expires_in : OAUTH2_DEFAULT_EXPIRES_S);
}

/* A fetch ended: keep the token, save a rotated refresh token, wake. */
static void src_done(tok_src *s, oauth2_token_resp *t, char *token, const char *err) {
  s->fetching = false;
  if (!token) {
    log_failure(s, err);
    wake_all(s, NULL, err);
    return;
  }
  uint64_t now = stp_now_ms();
  char exp[24] = "", exp_at[24], rt_exp_at[24] = "";
  s->expires_unix = expiry_unix(s, t);
  snprintf(exp_at, sizeof exp_at, "%lld", (long long)s->expires_unix);
  metrics_oauth2_expiry(s->name, s->expires_unix);
  if (t && t->has_refresh_token_expires_in)
    snprintf(rt_exp_at, sizeof rt_exp_at, "%lld",
             (long long)time(NULL) + (long long)t->refresh_token_expires_in);
  const char *rotated = "no";
  stp_free_secret(s->token);
  s->token = token;
  if (t) {
    s->refresh_at = oauth2_refresh_at(now, t->has_expires_in, t->expires_in);
    if (t->has_expires_in)
      snprintf(exp, sizeof exp, "%lld", (long long)t->expires_in);
    if (t->refresh_token && s->rt && strcmp(t->refresh_token, s->rt)) {
      char why[512];
      rotated = "yes";
      set_secret(&s->rt, t->refresh_token);
      if (s->rt_file && stp_secret_file_save(s->rt_file, s->rt, why, sizeof why) < 0) {
        rotated = "not-saved";
        stp_kv kv[] = {{"upstream", s->name}, {"file", s->rt_file}, {"reason", why}};
        stp_log_kv(STP_LOG_ERROR, NULL, "oauth2-refresh-token-not-saved", kv, 3);
      }
    }
  } else {
    s->refresh_at = now + s->ttl_ms;
  }
  stp_kv kv[] = {{"upstream", s->name},
                 {"source", s->kind == STP_TOKSRC_COMMAND ? "token_command" : "oauth2"},
                 {"expires_in", exp[0] ? exp : NULL},
                 {"refresh_token_rotated", s->kind == STP_TOKSRC_OAUTH2 ? rotated : NULL},
                 {"expires_at", exp_at},
                 {"refresh_token_expires_at", rt_exp_at[0] ? rt_exp_at : NULL}};
  stp_log_kv(STP_LOG_INFO, NULL, "oauth2-token", kv, 6);
  wake_all(s, s->token, NULL);
}

/* ---- public ------------------------------------------------------------ */

int tok_get(uv_loop_t *loop, const stp_upstream_cfg *c, tok_waiter *w, tok_cb cb, void *arg,
            char **token) {
  tok_src *s = src_for(c);
  *token = NULL;
  if (s->token && stp_now_ms() < s->refresh_at) {
    *token = stp_xstrdup(s->token);
    return 1;
  }
  w->cb = cb;
  w->arg = arg;
  w->next = &s->head;
  w->prev = s->head.prev;
  s->head.prev->next = w;
  s->head.prev = w;
  w->queued = true;
  if (!s->fetching) {
    if (s->kind == STP_TOKSRC_COMMAND)
      tok_cmd_start(loop, s);
    else
      tok_fetch_start(loop, s);
  }
  return 0;
}

int tok_prepare(const stp_config *cfg, char *err, size_t errlen) {
  for (size_t i = 0; i < cfg->n_upstreams; i++) {
    const stp_upstream_cfg *u = &cfg->upstreams[i];
    char why[256];
    if (!u->token_src)
      continue;
    if (tok_jwt_check(u->token_src, why, sizeof why) < 0) {
      snprintf(err, errlen, "upstream %s: %s: %s", u->name,
               u->token_src->grant == STP_GRANT_SERVICE_ACCOUNT ? "service_account_file"
                                                                : "client_key_file",
               why);
      return STP_EINVAL;
    }
  }
  for (size_t i = 0; i < cfg->n_upstreams; i++) {
    if (!cfg->upstreams[i].token_src)
      continue;
    stp_buf k; /* looked up only: the configuration may not go live */
    const tok_src *s = src_find(&cfg->upstreams[i], &k);
    stp_buf_free(&k);
    metrics_oauth2_expiry(cfg->upstreams[i].name, s ? s->expires_unix : 0);
  }
  return STP_OK;
}

void tok_invalidate(const stp_upstream_cfg *c, const char *token) {
  tok_src *s = src_for(c);
  if (s->token && token && !strcmp(s->token, token)) {
    stp_free_secret(s->token);
    s->token = NULL;
    s->refresh_at = 0;
  }
}
