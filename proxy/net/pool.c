/* pool.c - reuse of authenticated upstream connections (see pool.h).
 *
 * A connection handed back is sent RSET and becomes idle when the upstream
 * answers 250. The pool is its owner meanwhile, so an upstream that closes
 * an idle connection (timeout, 421) just removes it. A one-second sweep
 * closes connections idle for longer than pool_idle_timeout; the sweep
 * timer does not keep the loop alive.
 *
 * Callbacks rule: pool_take() and pool_give() call nobody back. A hit is
 * returned to the caller, which delivers "ready" to its session from the
 * loop (relay.c); the RSET's answer reaches the pool from the loop.
 */
#include "pool.h"

#include <stdlib.h>

#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/metrics.h"
#include "smtp-tls-proxy/util.h"

typedef struct pooled {
  up_pool *pool;
  upconn *u;
  size_t index;
  uint64_t since; /* idle since (ms) */
  bool resetting; /* RSET sent, 250 not yet seen */
  struct pooled *prev, *next;
} pooled;

struct up_pool {
  const stp_config *cfg;
  uv_timer_t sweep;
  pooled *head;
  size_t *n_idle; /* per upstream, resetting ones included */
  bool closed;
};

static void unlink_entry(pooled *e) {
  up_pool *p = e->pool;
  if (e->prev)
    e->prev->next = e->next;
  else
    p->head = e->next;
  if (e->next)
    e->next->prev = e->prev;
  p->n_idle[e->index]--;
  metrics_pool_size(p->cfg->upstreams[e->index].name, (long)p->n_idle[e->index]);
  free(e);
}

/* Drop an entry and close its connection politely. */
static void drop(pooled *e, bool graceful) {
  upconn *u = e->u;
  unlink_entry(e);
  upconn_detach(u, graceful);
}

static void pooled_ready(void *owner, upconn *u) {
  (void)owner, (void)u; /* already ready when pooled */
}

static void pooled_reply(void *owner, const smtp_reply *r) {
  pooled *e = owner;
  if (e->resetting && r->code == 250) {
    e->resetting = false;
    e->since = stp_now_ms();
    return;
  }
  drop(e, false); /* anything else from an idle connection: not reusable */
}

static void pooled_failed(void *owner, upstream_fail why, const char *detail,
                          const provider_verdict *v) {
  pooled *e = owner;
  (void)why, (void)detail, (void)v; /* an idle connection closed by the upstream: routine */
  unlink_entry(e);
}

static const upconn_owner_ops pooled_ops = {pooled_ready, pooled_reply, pooled_failed, NULL, NULL};

static void sweep_cb(uv_timer_t *t) {
  up_pool *p = t->data;
  uint64_t now = stp_now_ms();
  for (pooled *e = p->head, *next; e; e = next) {
    next = e->next;
    if (!e->resetting && now - e->since >= p->cfg->upstreams[e->index].pool_idle_timeout_ms)
      drop(e, true);
  }
}

up_pool *pool_new(uv_loop_t *loop, const stp_config *cfg) {
  up_pool *p = stp_xcalloc(1, sizeof *p);
  p->cfg = cfg;
  p->n_idle = stp_xcalloc(cfg->n_upstreams, sizeof *p->n_idle);
  uv_timer_init(loop, &p->sweep);
  p->sweep.data = p;
  uv_timer_start(&p->sweep, sweep_cb, 1000, 1000);
  uv_unref((uv_handle_t *)&p->sweep);
  return p;
}

static void sweep_closed_cb(uv_handle_t *h) {
  up_pool *p = h->data;
  free(p->n_idle);
  free(p);
}

void pool_close(up_pool *p) {
  if (!p || p->closed)
    return;
  p->closed = true;
  while (p->head)
    drop(p->head, true);
  uv_close((uv_handle_t *)&p->sweep, sweep_closed_cb);
}

upconn *pool_take(up_pool *p, size_t index, const upconn_owner_ops *ops, void *owner) {
  if (!p || p->closed)
    return NULL;
  uint64_t now = stp_now_ms();
  uint64_t ttl = p->cfg->upstreams[index].pool_idle_timeout_ms;
  for (pooled *e = p->head, *next; e; e = next) {
    next = e->next;
    if (e->index != index || e->resetting)
      continue;
    if (now - e->since >= ttl) {
      drop(e, true);
      continue;
    }
    upconn *u = e->u;
    unlink_entry(e);
    upconn_set_owner(u, ops, owner);
    return u;
  }
  return NULL;
}

void pool_give(up_pool *p, upconn *u, size_t index) {
  const stp_upstream_cfg *c = p ? &p->cfg->upstreams[index] : NULL;
  if (!p || p->closed || !c->pool || p->n_idle[index] >= c->pool_max_idle ||
      upconn_has_device_credentials(u) || !upconn_idle(u)) {
    upconn_detach(u, true);
    return;
  }
  pooled *e = stp_xcalloc(1, sizeof *e);
  e->pool = p;
  e->u = u;
  e->index = index;
  e->resetting = upconn_in_txn(u);
  e->since = stp_now_ms();
  e->next = p->head;
  if (p->head)
    p->head->prev = e;
  p->head = e;
  p->n_idle[index]++;
  metrics_pool_size(c->name, (long)p->n_idle[index]);
  upconn_set_owner(u, &pooled_ops, e);
  /* Whatever the device left open upstream is reset before reuse; after a
   * completed message there is nothing to reset. */
  if (e->resetting && upconn_rset(u) < 0)
    drop(e, false);
}

size_t pool_idle_count(const up_pool *p, size_t index) {
  return p ? p->n_idle[index] : 0;
}
