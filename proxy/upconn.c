/* upconn.c - one upstream connection: resolve, connect, TLS, state machine
 * (see upconn.h). The upstream machine's failures arrive here first; the
 * connection detaches itself before it tells the owner, so the owner may
 * open the next upstream (failover) from inside the callback.
 */
#include "smtp-tls-proxy/upconn.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/stream.h"
#include "smtp-tls-proxy/util.h"

struct upconn {
  const upconn_owner_ops *ops; /* NULL once detached */
  void *owner;
  srv_gen *gen;
  size_t index;
  uv_loop_t *loop;
  stream *st;
  int n_streams; /* not yet closed (one per address tried) */
  uv_timer_t timer;
  bool timer_open;
  uv_getaddrinfo_t gai;
  bool gai_pending;
  struct addrinfo *ai, *ai_next;
  upstream sm;
  char sid[16];
  char early_fail[160]; /* a failure found inside upconn_open, reported later */
};

static void maybe_free(upconn *u) {
  if (u->ops || u->n_streams > 0 || u->gai_pending || u->timer_open)
    return;
  upstream_free(&u->sm);
  if (u->ai)
    uv_freeaddrinfo(u->ai);
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
  uv_close((uv_handle_t *)&u->timer, timer_closed_cb);
  if (u->gai_pending)
    uv_cancel((uv_req_t *)&u->gai);
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

size_t upconn_index(const upconn *u) { return u->index; }

const stp_upstream_cfg *upconn_cfg(const upconn *u) { return &u->gen->cfg->upstreams[u->index]; }
upstream *upconn_sm(upconn *u) { return &u->sm; }
size_t upconn_queued(const upconn *u) { return u->st ? stream_queued(u->st) : 0; }
const char *upconn_tls_version(const upconn *u) { return u->st ? stream_tls_version(u->st) : NULL; }
const char *upconn_tls_cipher(const upconn *u) { return u->st ? stream_tls_cipher(u->st) : NULL; }

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
  if (stream_start_tls(u->st, u->gen->up_tls[u->index], upconn_cfg(u)->server_name, false) < 0)
    upstream_on_closed(&u->sm, UP_FAIL_TLS, "cannot create TLS session");
}

static void timer_cb(uv_timer_t *t) {
  upconn *u = t->data;
  if (!u->ops)
    return;
  if (u->early_fail[0]) {
    upstream_on_closed(&u->sm, UP_FAIL_DNS, u->early_fail);
    return;
  }
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

static void sm_failed(void *ctx, upstream_fail why, const char *detail) {
  upconn *u = ctx;
  if (!u->ops)
    return;
  const upconn_owner_ops *ops = u->ops;
  void *owner = u->owner;
  upconn_detach(u, false);
  ops->failed(owner, why, detail);
}

static const upstream_ops sm_ops = {sm_write, sm_start_tls, sm_set_timer,
                                    sm_ready, sm_reply,     sm_failed};

/* ---- the stream's callbacks --------------------------------------------- */

static void connect_next(upconn *u);

static void st_connect(void *ctx, int status) {
  upconn *u = ctx;
  if (!u->ops)
    return;
  if (status < 0) {
    if (u->ai_next) {
      stream_close(u->st); /* next address of the same host: a fresh socket */
      u->st = NULL;
      connect_next(u);
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
  if (u->ops)
    upstream_on_closed(&u->sm, tls ? UP_FAIL_TLS : UP_FAIL_CLOSED, reason);
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

static void connect_next(upconn *u) {
  struct addrinfo *ai = u->ai_next;
  u->ai_next = ai->ai_next;
  u->st = stream_new(u->loop, &st_cbs, u);
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
  if (!u->ops) {
    maybe_free(u);
    return;
  }
  if (status < 0 || !res) {
    char d[200];
    snprintf(d, sizeof d, "resolve %s: %s", upconn_cfg(u)->host,
             status < 0 ? uv_strerror(status) : "no address");
    upstream_on_closed(&u->sm, UP_FAIL_DNS, d);
    return;
  }
  u->ai_next = res;
  connect_next(u);
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
  uv_timer_init(loop, &u->timer);
  u->timer.data = u;
  u->timer_open = true;
  /* The connect timeout covers DNS and TCP; the machine re-arms it for TLS. */
  uv_timer_start(&u->timer, timer_cb, c->connect_timeout_ms, 0);
  char port[8];
  snprintf(port, sizeof port, "%u", c->port);
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  u->gai.data = u;
  u->gai_pending = true;
  int rc = uv_getaddrinfo(loop, &u->gai, gai_cb, c->host, port, &hints);
  if (rc < 0) {
    /* Never call the owner back from inside upconn_open: report from the
     * loop, as every other outcome is. */
    u->gai_pending = false;
    snprintf(u->early_fail, sizeof u->early_fail, "resolve: %s", uv_strerror(rc));
    uv_timer_start(&u->timer, timer_cb, 0, 0);
  }
  return u;
}
