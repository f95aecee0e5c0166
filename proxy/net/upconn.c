/* upconn.c - one upstream connection: the dial (dialer.h), TLS, the state
 * machine (see upconn.h); for `kind: graph | gmail` an HTTP API connection
 * (apiconn.h) behind the same calls. The upstream machine's failures arrive here first; the
 * connection detaches itself before it tells the owner, so the owner may
 * open the next upstream (failover) from inside the callback.
 *
 * Callbacks rule: the owner's callbacks run only from the loop (a socket
 * event, a timer, DNS, the token fetch, or defer.h), never from inside an
 * upconn_* call or a request the owner makes of the machine; the one
 * exception is the trace hook, an observer that must not change state.
 */
#include "upconn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apiconn.h"
#include "defer.h"
#include "dialer.h"
#include "oauth2_net.h"
#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/metrics.h"
#include "smtp-tls-proxy/util.h"
#include "stream.h"

struct upconn {
  const upconn_owner_ops *ops; /* NULL once detached */
  void *owner;
  srv_gen *gen;
  size_t index;
  uv_loop_t *loop;
  stream *st;
  int n_streams; /* not yet closed (the one connected, and one replaced) */
  uv_timer_t timer;
  bool timer_open;
  dialer *dial; /* while resolving and connecting */
  upstream sm;
  char sid[16];
  defer_item early_ev; /* restarts with a new token */
  defer_item sm_ev;    /* runs what a request to the machine found at once */
  /* auth.oauth2 / token_command: the token is fetched before connecting. */
  tok_waiter tw;
  char *token;      /* what this connection authenticates with; cleansed */
  bool tok_retried; /* a refused token was replaced once already */
  /* An EHLO name the upstream refused (501) is replaced, once, by an
   * address literal of our end of the connection. */
  char literal[64]; /* "[192.0.2.1]" / "[IPv6:...]", "" until connected */
  bool helo_retry;  /* the restart pending or done is that one */
  apiconn *api;     /* kind: graph | gmail: the requests go there */
  bool api_creds;   /* auth: passthrough was asked of an API upstream */
};

static void maybe_free(upconn *u) {
  if (u->ops || u->n_streams > 0 || u->timer_open)
    return;
  upstream_free(&u->sm);
  stp_free_secret(u->token);
  srv_gen_unref(u->gen);
  free(u);
}

static void timer_closed_cb(uv_handle_t *h) {
  upconn *u = h->data;
  u->timer_open = false;
  maybe_free(u);
}

void upconn_detach(upconn *u, bool graceful) {
  if (!u || !u->ops)
    return;
  u->ops = NULL;
  defer_cancel(&u->early_ev);
  defer_cancel(&u->sm_ev);
  tok_cancel(&u->tw);
  apiconn_close(u->api); /* no event follows */
  u->api = NULL;
  uv_close((uv_handle_t *)&u->timer, timer_closed_cb);
  dialer_cancel(u->dial); /* it frees itself */
  u->dial = NULL;
  if (u->st) {
    if (graceful && upstream_idle(&u->sm)) {
      upstream_quit(&u->sm);
      stream_close_after_flush(u->st);
    } else {
      stream_close(u->st);
    }
  }
  maybe_free(u);
}

void upconn_set_owner(upconn *u, const upconn_owner_ops *ops, void *owner) {
  if (!u->ops)
    return; /* detached: it belongs to nobody any more */
  u->ops = ops;
  u->owner = owner;
}

const char *upconn_state_name(const upconn *u) {
  if (!u->ops)
    return "detached";
  if (u->api)
    return apiconn_state_name(u->api);
  if (!u->st && u->tw.queued)
    return "token";
  if (u->dial)
    return "dialing";
  return upstream_state_name(u->sm.state);
}

size_t upconn_index(const upconn *u) {
  return u->index;
}

const stp_upstream_cfg *upconn_cfg(const upconn *u) {
  return &u->gen->cfg->upstreams[u->index];
}
int upconn_mail(upconn *u, const char *from, const smtp_mail_args *a) {
  return u->api ? apiconn_mail(u->api, from, a) : upstream_mail(&u->sm, from, a);
}
int upconn_rcpt(upconn *u, const char *to, const smtp_rcpt_dsn *dsn) {
  /* DSN requests have no equivalent in the mail APIs: dropped there. */
  return u->api ? apiconn_rcpt(u->api, to) : upstream_rcpt(&u->sm, to, dsn);
}
int upconn_data(upconn *u) {
  return u->api ? apiconn_data(u->api) : upstream_data(&u->sm);
}
int upconn_body(upconn *u, const char *p, size_t n) {
  return u->api ? apiconn_body(u->api, p, n) : upstream_body(&u->sm, p, n);
}
int upconn_end(upconn *u) {
  return u->api ? apiconn_end(u->api) : upstream_end(&u->sm);
}
int upconn_rset(upconn *u) {
  return u->api ? apiconn_rset(u->api) : upstream_rset(&u->sm);
}
bool upconn_idle(const upconn *u) {
  return u->api ? apiconn_idle(u->api) : upstream_idle(&u->sm);
}
bool upconn_in_txn(const upconn *u) {
  return u->api ? apiconn_in_txn(u->api) : upstream_in_txn(&u->sm);
}
void upconn_set_credentials(upconn *u, const char *user, const char *secret) {
  if (u->api) {
    u->api_creds = true; /* never pooled; it fails from the loop */
    apiconn_refuse_credentials(u->api);
    return;
  }
  upstream_set_credentials(&u->sm, user, secret);
}
bool upconn_has_device_credentials(const upconn *u) {
  return u->api ? u->api_creds : upstream_has_device_credentials(&u->sm);
}
const char *upconn_proto_state(const upconn *u) {
  return u->api ? apiconn_state_name(u->api) : upstream_state_name(u->sm.state);
}
size_t upconn_queued(const upconn *u) {
  if (u->api)
    return apiconn_queued(u->api);
  return u->st ? stream_queued(u->st) : 0;
}
const char *upconn_tls_version(const upconn *u) {
  if (u->api) /* HTTPS with TLS 1.2+ verified; the version is the HTTP client's */
    return upconn_cfg(u)->tls == STP_TLS_NONE ? NULL : "https";
  return u->st ? stream_tls_version(u->st) : NULL;
}
const char *upconn_tls_cipher(const upconn *u) {
  return u->st ? stream_tls_cipher(u->st) : NULL;
}

/* ---- an API upstream's events (apiconn.h) -------------------------------- */

static void api_ready(void *up) {
  upconn *u = up;
  if (u->ops)
    u->ops->ready(u->owner, u);
}

static void api_reply(void *up, const smtp_reply *r) {
  upconn *u = up;
  if (u->ops)
    u->ops->reply(u->owner, r);
}

/* As for SMTP: detached first, so the owner may fail over from inside. */
static void api_failed(void *up, upstream_fail why, const char *detail) {
  upconn *u = up;
  if (!u->ops)
    return;
  const upconn_owner_ops *ops = u->ops;
  void *owner = u->owner;
  /* The provider table (provider.h) is for SMTP replies; an API's answers
   * have their own (apimap.h), so no row. A failure of the connection (a
   * token, DNS, TLS, a timeout) is always temporary: 451 says so to what
   * keys on provider_temporary(). */
  provider_verdict v;
  memset(&v, 0, sizeof v);
  v.phase = why == UP_FAIL_TLS ? PROV_TLS : why == UP_FAIL_AUTH ? PROV_AUTH : PROV_DOT;
  v.code = 451;
  snprintf(v.reply, sizeof v.reply, "%s", detail);
  upconn_detach(u, false);
  ops->failed(owner, why, detail, &v);
}

static void api_drain(void *up) {
  upconn *u = up;
  if (u->ops && u->ops->drain)
    u->ops->drain(u->owner);
}

static void api_trace(void *up, bool out, const char *p, size_t n) {
  upconn *u = up;
  if (u->ops && u->ops->trace)
    u->ops->trace(u->owner, out, false, p, n);
}

static const apiconn_events api_events = {api_ready, api_reply, api_failed, api_drain, api_trace};

/* ---- the state machine's ops ------------------------------------------- */

static void sm_write(void *ctx, const char *p, size_t n) {
  upconn *u = ctx;
  if (u->ops && u->ops->trace)
    u->ops->trace(u->owner, true, u->sm.state == UP_AUTH, p, n);
  if (u->st)
    stream_write(u->st, p, n);
}

static void sm_start_tls(void *ctx) {
  upconn *u = ctx;
  if (!u->ops)
    return;
  /* A failure arrives through st_error, from the loop. */
  stream_start_tls(u->st, u->gen->up_tls[u->index], upconn_cfg(u)->server_name, false);
}

static void token_restart(upconn *u);

static void helo_restart(upconn *u);

static void restart_ev_cb(void *arg) {
  upconn *u = arg;
  if (!u->ops)
    return;
  if (u->helo_retry && u->sm.helo_refused)
    helo_restart(u);
  else
    token_restart(u);
}

static void timer_cb(uv_timer_t *t) {
  upconn *u = t->data;
  if (!u->ops)
    return;
  upstream_on_timeout(&u->sm);
}

static void sm_set_timer(void *ctx, uint64_t ms) {
  upconn *u = ctx;
  if (!u->ops)
    return;
  if (ms)
    uv_timer_start(&u->timer, timer_cb, ms, 0);
  else
    uv_timer_stop(&u->timer);
}

static void sm_ready(void *ctx) {
  upconn *u = ctx;
  if (!u->ops)
    return;
  const char *v = upconn_tls_version(u);
  const char *c = upconn_tls_cipher(u);
  stp_kv kv[] = {{"upstream", upconn_cfg(u)->name}, {"tls", v ? v : "none"}, {"cipher", c}};
  stp_log_kv(STP_LOG_DEBUG, u->sid, "upstream-ready", kv, 3);
  u->ops->ready(u->owner, u);
}

static void sm_reply(void *ctx, const smtp_reply *r) {
  upconn *u = ctx;
  if (u->ops)
    u->ops->reply(u->owner, r);
}

/* Gmail and others refuse an EHLO name that is not a usable host name (a
 * gethostname() default like "printserver" or "srv_01") with 501 and hang
 * up. RFC 5321 4.1.4 lets a client without a proper name use an address
 * literal: try that once, on a new connection, and tell the admin. */
static bool retry_helo(upconn *u, const char *detail) {
  if (!u->sm.helo_refused || u->helo_retry || !u->literal[0] || !strcmp(u->sm.helo, u->literal))
    return false;
  u->helo_retry = true;
  stp_kv kv[] = {{"upstream", upconn_cfg(u)->name},
                 {"helo", u->sm.helo},
                 {"detail", detail},
                 {"retry_with", u->literal},
                 {"hint", "the upstream refused this EHLO name: set helo: on the upstream (or "
                          "hostname:) to this host's fully qualified name"}};
  stp_log_kv(STP_LOG_WARN, u->sid, "helo-refused", kv, 5);
  if (u->st)
    stream_close(u->st);
  u->st = NULL;
  defer_post(u->loop, &u->early_ev, restart_ev_cb, u);
  return true;
}

static void sm_failed(void *ctx, upstream_fail why, const char *detail) {
  upconn *u = ctx;
  if (!u->ops)
    return;
  if (why == UP_FAIL_PROTOCOL && retry_helo(u, detail))
    return;
  if (why == UP_FAIL_AUTH && u->token && !u->tok_retried && u->sm.reply.code >= 400) {
    /* The upstream refused a fetched token (535, or XOAUTH2's 334 error):
     * revoked or expired early. Once, fetch a new one and start over on a
     * new connection; the machine is dead and restarts from the loop. */
    u->tok_retried = true;
    stp_kv kv[] = {{"upstream", upconn_cfg(u)->name}, {"detail", detail}};
    stp_log_kv(STP_LOG_WARN, u->sid, "oauth2-token-refused", kv, 2);
    tok_invalidate(upconn_cfg(u), u->token);
    if (u->st)
      stream_close(u->st);
    u->st = NULL;
    defer_post(u->loop, &u->early_ev, restart_ev_cb, u);
    return;
  }
  const upconn_owner_ops *ops = u->ops;
  void *owner = u->owner;
  provider_verdict v = *upstream_verdict(&u->sm); /* the machine goes with u */
  upconn_detach(u, false);
  ops->failed(owner, why, detail, &v);
}

static void sm_ev_cb(void *arg) {
  upconn *u = arg;
  if (u->ops)
    upstream_run_deferred(&u->sm);
}

static void sm_defer(void *ctx) {
  upconn *u = ctx;
  defer_post(u->loop, &u->sm_ev, sm_ev_cb, u);
}

static const upstream_ops sm_ops = {sm_write, sm_start_tls, sm_set_timer, sm_ready,
                                    sm_reply, sm_failed,    sm_defer};

/* ---- the stream's callbacks --------------------------------------------- */

/* Our end of the connection as an RFC 5321 address literal. */
static void note_local_literal(upconn *u) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  char ip[INET6_ADDRSTRLEN];
  if (uv_tcp_getsockname(stream_tcp(u->st), (struct sockaddr *)&ss, &len) < 0)
    return;
  if (ss.ss_family == AF_INET && uv_ip4_name((const struct sockaddr_in *)&ss, ip, sizeof ip) == 0)
    snprintf(u->literal, sizeof u->literal, "[%s]", ip);
  else if (ss.ss_family == AF_INET6 &&
           uv_ip6_name((const struct sockaddr_in6 *)&ss, ip, sizeof ip) == 0)
    snprintf(u->literal, sizeof u->literal, "[IPv6:%s]", ip);
}

static void st_connect(void *ctx, const char *error) {
  (void)ctx, (void)error; /* the dialer connected the stream before handing it over */
}

static void st_read(void *ctx, const char *p, size_t n) {
  upconn *u = ctx;
  if (!u->ops)
    return;
  if (u->ops->trace)
    u->ops->trace(u->owner, false, false, p, n);
  upstream_feed(&u->sm, p, n);
}

static void st_error(void *ctx, const char *reason, bool tls, bool verify) {
  upconn *u = ctx;
  (void)verify;
  /* A TLS error once the session is up is a broken connection, not a TLS
   * set-up failure: the device is told the connection was lost. */
  if (u->ops)
    upstream_on_closed(&u->sm, tls && !u->sm.tls ? UP_FAIL_TLS : UP_FAIL_CLOSED, reason);
}

static void st_tls(void *ctx) {
  upconn *u = ctx;
  if (u->ops)
    upstream_on_tls_ready(&u->sm);
}

static void st_drain(void *ctx) {
  upconn *u = ctx;
  if (u->ops && u->ops->drain)
    u->ops->drain(u->owner);
}

static void st_closed(void *ctx) {
  upconn *u = ctx;
  u->n_streams--;
  maybe_free(u);
}

static const stream_cbs st_cbs = {st_connect, st_read, st_error, st_tls, st_drain, st_closed};

/* The dial's outcome; the connect timeout (the machine's timer) covers it. */
static void dial_cb(void *arg, stream *st, dial_result why, const char *reason) {
  upconn *u = arg;
  u->dial = NULL;
  if (!st) {
    char d[300];
    if (why == DIAL_DNS)
      snprintf(d, sizeof d, "resolve %s: %s", upconn_cfg(u)->host, reason);
    else
      snprintf(d, sizeof d, "connect: %s", reason);
    upstream_on_closed(&u->sm, why == DIAL_DNS ? UP_FAIL_DNS : UP_FAIL_CONNECT, d);
    return;
  }
  u->st = st;
  u->n_streams++;
  uv_tcp_nodelay(stream_tcp(st), 1);
  note_local_literal(u);
  stream_start(st);
  upstream_on_connected(&u->sm);
}

static void begin_connect(upconn *u) {
  const stp_upstream_cfg *c = upconn_cfg(u);
  /* The connect timeout covers DNS and TCP; the machine re-arms it for TLS. */
  uv_timer_start(&u->timer, timer_cb, c->connect_timeout_ms, 0);
  u->dial = dialer_start(u->loop, c->host, c->port, NULL, &st_cbs, u, dial_cb, u);
}

static void use_token(upconn *u, char *token) {
  u->token = token;
  upstream_set_token(&u->sm, token);
  begin_connect(u);
}

static void token_cb(void *arg, const char *token, const char *err) {
  upconn *u = arg;
  if (!u->ops)
    return;
  if (!token) {
    char d[600];
    snprintf(d, sizeof d, "no OAuth2 access token: %s", err);
    upstream_on_closed(&u->sm, UP_FAIL_AUTH, d);
    return;
  }
  use_token(u, stp_xstrdup(token));
}

/* With auth.oauth2 / token_command the access token comes first (from the
 * cache at once, or after a fetch shared with other connections). */
static void begin(upconn *u) {
  const stp_upstream_cfg *c = upconn_cfg(u);
  char *token;
  if (!c->token_src)
    begin_connect(u);
  else if (tok_get(u->loop, c, &u->tw, token_cb, u, &token) == 1)
    use_token(u, token);
}

/* The EHLO-name retry: a fresh machine named by the address literal, on a
 * new connection (the upstream hung up), with the same token if any. */
static void helo_restart(upconn *u) {
  const stp_upstream_cfg *c = upconn_cfg(u);
  upstream_free(&u->sm);
  upstream_init(&u->sm, c, u->literal, &sm_ops, u);
  upstream_set_log_id(&u->sm, u->sid);
  if (u->token)
    upstream_set_token(&u->sm, u->token);
  begin_connect(u);
}

static void token_restart(upconn *u) {
  const stp_config *cfg = u->gen->cfg;
  const stp_upstream_cfg *c = upconn_cfg(u);
  upstream_free(&u->sm);
  /* After an EHLO-name retry, the literal stays the name. */
  upstream_init(&u->sm, c,
                u->helo_retry ? u->literal
                : c->helo     ? c->helo
                              : cfg->hostname,
                &sm_ops, u);
  upstream_set_log_id(&u->sm, u->sid);
  stp_free_secret(u->token);
  u->token = NULL;
  begin(u);
}

upconn *upconn_open(uv_loop_t *loop, srv_gen *gen, size_t index, const upconn_owner_ops *ops,
                    void *owner, const char *sid) {
  upconn *u = stp_xcalloc(1, sizeof *u);
  u->ops = ops;
  u->owner = owner;
  u->gen = srv_gen_ref(gen);
  u->index = index;
  u->loop = loop;
  snprintf(u->sid, sizeof u->sid, "%s", sid ? sid : "");
  const stp_config *cfg = gen->cfg;
  const stp_upstream_cfg *c = &cfg->upstreams[index];
  upstream_init(&u->sm, c, c->helo ? c->helo : cfg->hostname, &sm_ops, u);
  upstream_set_log_id(&u->sm, u->sid);
  uv_timer_init(loop, &u->timer);
  u->timer.data = u;
  u->timer_open = true;
  if (c->kind != STP_UP_SMTP) {
    u->api = apiconn_open(loop, gen, index, &api_events, u, u->sid);
    return u;
  }
  begin(u);
  return u;
}

void upconn_log_failed(const char *sid, const char *id, const stp_upstream_cfg *c,
                       upstream_fail why, const char *detail, const provider_verdict *v) {
  const provider_rule *row = v ? v->rule : NULL;
  stp_kv kv[] = {{"id", id},
                 {"upstream", c->name},
                 {"host", c->host},
                 {"reason", row ? row->reason : upstream_fail_name(why)},
                 {"failure", row ? upstream_fail_name(why) : NULL},
                 {"phase", row ? provider_phase_name(v->phase) : NULL},
                 {"provider", row ? row->provider : NULL},
                 {"provider_reply", row ? v->reply : NULL},
                 {"hint", row ? row->hint : NULL},
                 {"detail", row ? NULL : detail}};
  stp_log_kv(STP_LOG_WARN, sid, "upstream-failed", kv, sizeof kv / sizeof *kv);
  metrics_upstream_failure(c->name, row ? row->reason : upstream_fail_name(why));
}
