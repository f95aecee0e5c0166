/* relay.c - one device connection: a session wired to upstream connections.
 *
 * Owns: the device stream, the session, the current upstream connection
 * (upconn), the idle and upstream timers, failover across a route's
 * upstreams and back-pressure between the two sides. Lifecycle: the relay
 * is freed only when its device stream and both timers are closed;
 * an upconn is detached (relay pointer cleared) when dropped and frees
 * itself when its own stream and DNS request are done, so no callback ever
 * reaches freed memory.
 */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp-tls-proxy/cidr.h"
#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/server.h"
#include "smtp-tls-proxy/session.h"
#include "smtp-tls-proxy/stream.h"
#include "smtp-tls-proxy/upstream.h"
#include "smtp-tls-proxy/util.h"

#define RELAY_CLOSE_GRACE_MS 10000 /* bound on flushing our last reply */

typedef struct upconn {
  relay *r; /* NULL once detached */
  stream *st;
  upstream sm;
  size_t up_index; /* into cfg->upstreams */
  uv_getaddrinfo_t gai;
  bool gai_pending;
  struct addrinfo *ai, *ai_next;
  bool ready;
  int n_streams; /* streams not yet closed (one per address tried) */
} upconn;

struct relay {
  listener *lst;
  srv_gen *gen;
  uv_loop_t *loop;
  stream *client;
  session sess;
  upconn *up;
  uv_timer_t idle_timer, up_timer;
  int open_handles; /* client stream + 2 timers */
  bool closing;
  bool refusing;
  bool pause_session, pause_bp, pause_client_bp;
  bool greet_after_tls; /* implicit TLS: the greeting waits for the handshake */
  size_t route;
  size_t try_pos; /* position in the route's upstream list */
  char sid[16];
  struct sockaddr_storage peer;
  relay *prev, *next;
};

static void upconn_connect_next(upconn *u);
static void relay_try_upstream(relay *r);
static void idle_cb(uv_timer_t *t);
static void up_timer_cb(uv_timer_t *t);

/* ---- teardown ------------------------------------------------------------ */

static void relay_handle_gone(relay *r) {
  if (--r->open_handles > 0)
    return;
  if (!r->refusing)
    session_free(&r->sess);
  if (r->prev)
    r->prev->next = r->next;
  else
    r->lst->relays = r->next;
  if (r->next)
    r->next->prev = r->prev;
  listener_relay_gone(r->lst, r);
  srv_gen_unref(r->gen);
  free(r);
}

static void timer_closed_cb(uv_handle_t *h) { relay_handle_gone(h->data); }

static void relay_close(relay *r) {
  if (r->closing)
    return;
  r->closing = true;
  uv_timer_stop(&r->up_timer);
  /* A last reply gets a bounded time to reach the device. */
  uv_timer_start(&r->idle_timer, idle_cb, RELAY_CLOSE_GRACE_MS, 0);
  stream_close_after_flush(r->client);
}

static void upconn_maybe_free(upconn *u) {
  if (u->r || u->n_streams > 0 || u->gai_pending)
    return;
  upstream_free(&u->sm);
  if (u->ai)
    uv_freeaddrinfo(u->ai);
  free(u);
}

/* Drop the relay's upstream connection; no callback of it reaches the
 * relay afterwards. */
static void upconn_detach(relay *r, bool graceful) {
  upconn *u = r->up;
  if (!u)
    return;
  r->up = NULL;
  u->r = NULL;
  uv_timer_stop(&r->up_timer);
  if (u->gai_pending)
    uv_cancel((uv_req_t *)&u->gai);
  if (u->st) {
    if (graceful && u->ready) {
      upstream_quit(&u->sm);
      stream_close_after_flush(u->st);
    } else {
      stream_close(u->st);
    }
  }
  if (r->pause_bp) {
    r->pause_bp = false;
    stream_pause(r->client, r->pause_session || r->pause_client_bp);
  }
  upconn_maybe_free(u);
}

/* ---- device side ------------------------------------------------------------ */

static void update_client_reading(relay *r) {
  stream_pause(r->client, r->pause_session || r->pause_bp || r->pause_client_bp);
}

static void sess_write(void *ctx, const char *p, size_t n) {
  relay *r = ctx;
  stream_write(r->client, p, n);
  if (stream_queued(r->client) > STREAM_HIGH_WATER && !r->pause_client_bp) {
    /* The device does not read our replies: stop reading its commands. */
    r->pause_client_bp = true;
    update_client_reading(r);
  }
}

static void sess_close(void *ctx) { relay_close(ctx); }

static void sess_pause(void *ctx, bool paused) {
  relay *r = ctx;
  r->pause_session = paused;
  update_client_reading(r);
}

static void sess_start_tls(void *ctx) {
  relay *r = ctx;
  tls_ctx *t = r->gen->lan_tls ? r->gen->lan_tls[r->lst->index] : NULL;
  if (!t || stream_start_tls(r->client, t, NULL, true) < 0) {
    stp_logf(STP_LOG_ERROR, r->sid, "cannot start LAN TLS");
    relay_close(r);
  }
}

static void up_body_written(relay *r) {
  if (r->up && r->up->st && stream_queued(r->up->st) > STREAM_HIGH_WATER && !r->pause_bp) {
    r->pause_bp = true;
    update_client_reading(r);
  }
}

static upstream *cur_sm(relay *r) { return r->up ? &r->up->sm : NULL; }

static void sm_call_failed(relay *r, int rc) {
  if (rc < 0 && r->up) {
    stp_logf(STP_LOG_ERROR, r->sid, "upstream request in wrong state %s",
             upstream_state_name(r->up->sm.state));
    upconn_detach(r, false);
    session_up_failed(&r->sess, UP_FAIL_PROTOCOL);
  }
}

static void sess_up_open(void *ctx, size_t route) {
  relay *r = ctx;
  r->route = route;
  r->try_pos = 0;
  relay_try_upstream(r);
}

static void sess_up_mail(void *ctx, const char *from, const smtp_mail_args *a) {
  relay *r = ctx;
  sm_call_failed(r, cur_sm(r) ? upstream_mail(cur_sm(r), from, a) : STP_ESTATE);
}

static void sess_up_rcpt(void *ctx, const char *to) {
  relay *r = ctx;
  sm_call_failed(r, cur_sm(r) ? upstream_rcpt(cur_sm(r), to) : STP_ESTATE);
}

static void sess_up_data(void *ctx) {
  relay *r = ctx;
  sm_call_failed(r, cur_sm(r) ? upstream_data(cur_sm(r)) : STP_ESTATE);
}

static void sess_up_body(void *ctx, const char *p, size_t n) {
  relay *r = ctx;
  if (cur_sm(r) && upstream_body(cur_sm(r), p, n) == 0)
    up_body_written(r);
}

static void sess_up_end(void *ctx) {
  relay *r = ctx;
  sm_call_failed(r, cur_sm(r) ? upstream_end(cur_sm(r)) : STP_ESTATE);
}

static void sess_up_rset(void *ctx) {
  relay *r = ctx;
  sm_call_failed(r, cur_sm(r) ? upstream_rset(cur_sm(r)) : STP_ESTATE);
}

static void sess_up_close(void *ctx, bool graceful) { upconn_detach(ctx, graceful); }

static const session_ops relay_session_ops = {
    sess_write,   sess_close,   sess_pause,   sess_start_tls, sess_up_open, sess_up_mail,
    sess_up_rcpt, sess_up_data, sess_up_body, sess_up_end,    sess_up_rset, sess_up_close,
};

static void client_on_read(void *ctx, const char *p, size_t n) {
  relay *r = ctx;
  uv_timer_again(&r->idle_timer);
  session_feed(&r->sess, p, n);
}

static void client_on_error(void *ctx, const char *reason, bool tls, bool verify) {
  relay *r = ctx;
  (void)verify;
  if (stp_log_level() >= STP_LOG_DEBUG || tls) {
    stp_kv kv[] = {{"reason", reason}};
    stp_log_kv(tls ? STP_LOG_WARN : STP_LOG_DEBUG, r->sid, "client-closed", kv, 1);
  }
  session_on_eof(&r->sess);
}

static void client_on_tls(void *ctx) {
  relay *r = ctx;
  session_tls_ready(&r->sess, stream_tls_version(r->client));
  if (r->greet_after_tls) {
    r->greet_after_tls = false;
    session_start(&r->sess);
  }
}

static void client_on_drain(void *ctx) {
  relay *r = ctx;
  if (r->pause_client_bp) {
    r->pause_client_bp = false;
    update_client_reading(r);
  }
}

static void client_on_closed(void *ctx) {
  relay *r = ctx;
  upconn_detach(r, false);
  if (!uv_is_closing((uv_handle_t *)&r->idle_timer)) {
    uv_close((uv_handle_t *)&r->idle_timer, timer_closed_cb);
    uv_close((uv_handle_t *)&r->up_timer, timer_closed_cb);
  }
  relay_handle_gone(r);
}

static const stream_cbs client_cbs = {NULL,           client_on_read,  client_on_error,
                                      client_on_tls,  client_on_drain, client_on_closed};

static void idle_cb(uv_timer_t *t) {
  relay *r = t->data;
  if (r->closing) {
    stream_close(r->client); /* the device did not take our last reply */
    return;
  }
  if (session_waiting(&r->sess) || r->pause_bp) {
    uv_timer_again(t); /* the upstream is the slow side; its timer rules */
    return;
  }
  session_on_idle_timeout(&r->sess);
}

/* ---- upstream side ------------------------------------------------------------ */

static const stp_upstream_cfg *upconn_cfg(const upconn *u, const relay *r) {
  return &r->gen->cfg->upstreams[u->up_index];
}

static void up_write(void *ctx, const char *p, size_t n) {
  upconn *u = ctx;
  if (u->st)
    stream_write(u->st, p, n);
}

static void up_start_tls(void *ctx) {
  upconn *u = ctx;
  relay *r = u->r;
  if (!r)
    return;
  const stp_upstream_cfg *c = upconn_cfg(u, r);
  if (stream_start_tls(u->st, r->gen->up_tls[u->up_index], c->server_name, false) < 0)
    upstream_on_closed(&u->sm, UP_FAIL_TLS, "cannot create TLS session");
}

static void up_set_timer(void *ctx, uint64_t ms) {
  upconn *u = ctx;
  if (!u->r)
    return;
  if (ms)
    uv_timer_start(&u->r->up_timer, up_timer_cb, ms, 0);
  else
    uv_timer_stop(&u->r->up_timer);
}

static void up_ready(void *ctx) {
  upconn *u = ctx;
  relay *r = u->r;
  if (!r)
    return;
  u->ready = true;
  const char *v = stream_tls_version(u->st);
  stp_kv kv[] = {{"upstream", upconn_cfg(u, r)->name},
                 {"tls", v ? v : "none"},
                 {"cipher", stream_tls_cipher(u->st)}};
  stp_log_kv(STP_LOG_DEBUG, r->sid, "upstream-ready", kv, 3);
  session_up_ready(&r->sess, upconn_cfg(u, r)->name, v);
}

static void up_reply(void *ctx, const smtp_reply *rep) {
  upconn *u = ctx;
  if (u->r)
    session_up_reply(&u->r->sess, rep);
}

/* Failures before the connection was ready may fail over to the route's
 * next upstream; later ones belong to the message in flight. */
static void up_failed(void *ctx, upstream_fail why, const char *detail) {
  upconn *u = ctx;
  relay *r = u->r;
  if (!r)
    return;
  const stp_upstream_cfg *c = upconn_cfg(u, r);
  bool was_ready = u->ready;
  stp_kv kv[] = {{"upstream", c->name}, {"host", c->host}, {"reason", upstream_fail_name(why)},
                 {"detail", detail}};
  stp_log_kv(STP_LOG_WARN, r->sid, "upstream-failed", kv, 4);
  upconn_detach(r, false);
  const stp_route_cfg *rt = &r->gen->cfg->routes[r->route];
  if (!was_ready && r->try_pos + 1 < rt->n_upstreams) {
    r->try_pos++;
    stp_kv fk[] = {{"route", rt->name},
                   {"from", c->name},
                   {"to", r->gen->cfg->upstreams[rt->upstreams[r->try_pos]].name}};
    stp_log_kv(STP_LOG_WARN, r->sid, "failover", fk, 3);
    relay_try_upstream(r);
    return;
  }
  session_up_failed(&r->sess, why);
}

static const upstream_ops relay_upstream_ops = {up_write, up_start_tls, up_set_timer,
                                                up_ready, up_reply,     up_failed};

static void upconn_on_connect(void *ctx, int status) {
  upconn *u = ctx;
  if (!u->r)
    return;
  if (status < 0) {
    if (u->ai_next) {
      /* Next address of the same host: a fresh socket. */
      stream_close(u->st);
      u->st = NULL;
      upconn_connect_next(u);
      return;
    }
    char d[160];
    snprintf(d, sizeof d, "connect: %s", uv_strerror(status));
    upstream_on_closed(&u->sm, UP_FAIL_CONNECT, d);
    return;
  }
  uv_tcp_nodelay(stream_tcp(u->st), 1);
  stream_start(u->st);
  upstream_on_connected(&u->sm);
}

static void upconn_on_read(void *ctx, const char *p, size_t n) {
  upconn *u = ctx;
  if (u->r)
    upstream_feed(&u->sm, p, n);
}

static void upconn_on_error(void *ctx, const char *reason, bool tls, bool verify) {
  upconn *u = ctx;
  (void)verify;
  if (u->r)
    upstream_on_closed(&u->sm, tls ? UP_FAIL_TLS : UP_FAIL_CLOSED, reason);
}

static void upconn_on_tls(void *ctx) {
  upconn *u = ctx;
  if (u->r)
    upstream_on_tls_ready(&u->sm);
}

static void upconn_on_drain(void *ctx) {
  upconn *u = ctx;
  relay *r = u->r;
  if (r && r->pause_bp) {
    r->pause_bp = false;
    update_client_reading(r);
  }
}

static void upconn_on_closed(void *ctx) {
  upconn *u = ctx;
  u->n_streams--;
  upconn_maybe_free(u);
}

static const stream_cbs upconn_cbs = {upconn_on_connect, upconn_on_read,  upconn_on_error,
                                      upconn_on_tls,     upconn_on_drain, upconn_on_closed};

static void upconn_connect_next(upconn *u) {
  relay *r = u->r;
  struct addrinfo *ai = u->ai_next;
  u->ai_next = ai->ai_next;
  u->st = stream_new(r->loop, &upconn_cbs, u);
  u->n_streams++;
  int rc = stream_connect(u->st, ai->ai_addr);
  if (rc < 0) {
    char d[160];
    snprintf(d, sizeof d, "connect: %s", uv_strerror(rc));
    upstream_on_closed(&u->sm, UP_FAIL_CONNECT, d);
  }
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  upconn *u = req->data;
  u->gai_pending = false;
  u->ai = res;
  if (!u->r) {
    upconn_maybe_free(u);
    return;
  }
  if (status < 0 || !res) {
    char d[200];
    snprintf(d, sizeof d, "resolve %s: %s", upconn_cfg(u, u->r)->host,
             status < 0 ? uv_strerror(status) : "no address");
    upstream_on_closed(&u->sm, UP_FAIL_DNS, d);
    return;
  }
  u->ai_next = res;
  upconn_connect_next(u);
}

static void up_timer_cb(uv_timer_t *t) {
  relay *r = t->data;
  if (r->up)
    upstream_on_timeout(&r->up->sm);
}

static void relay_try_upstream(relay *r) {
  const stp_config *cfg = r->gen->cfg;
  const stp_route_cfg *rt = &cfg->routes[r->route];
  upconn *u = stp_xcalloc(1, sizeof *u);
  u->r = r;
  u->up_index = rt->upstreams[r->try_pos];
  const stp_upstream_cfg *c = &cfg->upstreams[u->up_index];
  upstream_init(&u->sm, c, c->helo ? c->helo : cfg->hostname, &relay_upstream_ops, u);
  r->up = u;
  uv_timer_start(&r->up_timer, up_timer_cb, c->connect_timeout_ms, 0);
  char port[8];
  snprintf(port, sizeof port, "%u", c->port);
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  u->gai.data = u;
  u->gai_pending = true;
  int rc = uv_getaddrinfo(r->loop, &u->gai, gai_cb, c->host, port, &hints);
  if (rc < 0) {
    u->gai_pending = false;
    char d[160];
    snprintf(d, sizeof d, "resolve: %s", uv_strerror(rc));
    upstream_on_closed(&u->sm, UP_FAIL_DNS, d);
  }
}

/* ---- lifecycle -------------------------------------------------------------- */

relay *relay_new(listener *l, uv_loop_t *loop) {
  relay *r = stp_xcalloc(1, sizeof *r);
  r->lst = l;
  r->gen = srv_gen_ref(l->gen);
  r->loop = loop;
  r->client = stream_new(loop, &client_cbs, r);
  uv_timer_init(loop, &r->idle_timer);
  uv_timer_init(loop, &r->up_timer);
  r->idle_timer.data = r;
  r->up_timer.data = r;
  r->open_handles = 3;
  r->next = l->relays;
  if (l->relays)
    l->relays->prev = r;
  l->relays = r;
  l->n_conns++;
  return r;
}

uv_tcp_t *relay_client_tcp(relay *r) { return stream_tcp(r->client); }
relay *relay_next(relay *r) { return r->next; }
const struct sockaddr *relay_peer(const relay *r) { return (const struct sockaddr *)&r->peer; }

static void make_sid(relay *r) {
  static unsigned long counter;
  snprintf(r->sid, sizeof r->sid, "%08lx%04lx", (unsigned long)(stp_now_ms() & 0xffffffffu),
           ++counter & 0xffffu);
}

void relay_refuse(relay *r, const char *reply) {
  r->refusing = true;
  r->closing = true;
  stream_start(r->client);
  stream_write(r->client, reply, strlen(reply));
  stream_close_after_flush(r->client);
  uv_timer_start(&r->idle_timer, idle_cb, RELAY_CLOSE_GRACE_MS, 0);
}

void relay_start(relay *r, const struct sockaddr *peer) {
  const stp_listener_cfg *lc = &r->gen->cfg->listeners[r->lst->index];
  size_t len = peer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                           : sizeof(struct sockaddr_in);
  memcpy(&r->peer, peer, len);
  make_sid(r);
  session_init(&r->sess, r->gen->cfg, lc, peer, r->sid, &relay_session_ops, r);
  char ip[64];
  stp_kv kv[] = {{"listener", lc->name}, {"client", stp_sockaddr_ip(peer, ip, sizeof ip)}};
  stp_log_kv(STP_LOG_INFO, r->sid, "connect", kv, 2);
  uv_tcp_nodelay(stream_tcp(r->client), 1);
  uv_timer_start(&r->idle_timer, idle_cb, lc->idle_timeout_ms, lc->idle_timeout_ms);
  stream_start(r->client);
  if (lc->tls == STP_TLS_IMPLICIT) {
    r->sess.state = SS_TLS;
    r->greet_after_tls = true;
    sess_start_tls(r);
    return;
  }
  session_start(&r->sess);
}

void relay_shutdown(relay *r) {
  if (r->closing)
    return;
  session_shutdown(&r->sess, NULL);
}
