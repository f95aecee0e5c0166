/* listener.c - bound sockets of one configured listener, the allow list and
 * connection limits (see listener.h).
 *
 * Each accepted connection gets a relay and a small record here (its peer
 * address, for the per-client limit); the relay tells us when it is gone.
 * Callbacks rule: the owner hears that a closing listener went quiet from
 * the loop (defer.h), never from inside listener_close().
 */
#include "listener.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "defer.h"
#include "netbind.h"
#include "relay.h"
#include "smtp-tls-proxy/cidr.h"
#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/metrics.h"
#include "smtp-tls-proxy/util.h"

/* One live device connection of this listener. */
typedef struct lconn {
  listener *l;
  relay *r;
  char ip[64]; /* the client's; "" until accepted or its PROXY header read */
  struct lconn *prev, *next;
} lconn;

struct listener {
  uv_loop_t *loop;
  srv_gen *gen;
  size_t index; /* into gen->cfg->listeners */
  uv_tcp_t *socks;
  size_t n_socks;
  size_t n_open; /* handles not yet closed */
  lconn *conns;
  unsigned n_conns;
  bool closing;
  void (*quiet)(void *owner);
  void *owner;
  defer_item quiet_ev;
};

const stp_listener_cfg *listener_cfg(const listener *l) {
  return &l->gen->cfg->listeners[l->index];
}

const srv_gen *listener_gen(const listener *l) {
  return l->gen;
}

bool listener_closing(const listener *l) {
  return l->closing;
}

bool listener_quiet(const listener *l) {
  return l->closing && l->n_open == 0 && !l->conns;
}

bool listener_serving(const listener *l, const srv_gen *gen) {
  return l->gen == gen && !l->closing && l->n_open > 0;
}

static void quiet_ev_cb(void *arg) {
  listener *l = arg;
  if (listener_quiet(l) && l->quiet)
    l->quiet(l->owner);
}

static void maybe_quiet(listener *l) {
  if (listener_quiet(l))
    defer_post(l->loop, &l->quiet_ev, quiet_ev_cb, l);
}

bool listener_same_sockets(const stp_listener_cfg *a, const stp_listener_cfg *b) {
  if (strcmp(a->name, b->name) || a->listen.n != b->listen.n)
    return false;
  for (size_t i = 0; i < a->listen.n; i++)
    if (strcmp(a->listen.v[i], b->listen.v[i]))
      return false;
  return true;
}

void listener_adopt(listener *l, srv_gen *gen, size_t index) {
  srv_gen *old = l->gen;
  l->gen = srv_gen_ref(gen);
  l->index = index;
  srv_gen_unref(old); /* live relays hold their own reference */
  stp_kv kv[] = {{"listener", listener_cfg(l)->name}};
  stp_log_kv(STP_LOG_INFO, NULL, "listener-kept", kv, 1);
}

void listener_free(listener *l) {
  defer_cancel(&l->quiet_ev);
  srv_gen_unref(l->gen);
  free(l->socks);
  free(l);
}

static unsigned count_client(const listener *l, const char *ip) {
  unsigned n = 0;
  for (const lconn *c = l->conns; c; c = c->next)
    if (!strcmp(c->ip, ip))
      n++;
  return n;
}

static void relay_gone_cb(void *owner) {
  lconn *c = owner;
  listener *l = c->l;
  if (c->prev)
    c->prev->next = c->next;
  else
    l->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  free(c);
  l->n_conns--;
  maybe_quiet(l);
}

static lconn *conn_new(listener *l, uv_loop_t *loop) {
  lconn *c = stp_xcalloc(1, sizeof *c);
  c->l = l;
  c->r = relay_new(loop, l->gen, l->index, relay_gone_cb, c);
  c->next = l->conns;
  if (l->conns)
    l->conns->prev = c;
  l->conns = c;
  l->n_conns++;
  return c;
}

/* Over max_connections (this connection is counted already), or closing. */
static const char *over_capacity(const listener *l, const char **reason) {
  if (l->n_conns > listener_cfg(l)->max_connections || l->closing) {
    *reason = "max_connections";
    return "421 4.7.0 Too many connections, try again later\r\n";
  }
  return NULL;
}

/* Why a fresh connection is turned away, or NULL. */
static const char *refusal(listener *l, const struct sockaddr *peer, const char *ip,
                           const char **reason) {
  const stp_listener_cfg *c = listener_cfg(l);
  if (!stp_cidr_match_any(c->allow, c->n_allow, peer)) {
    *reason = "allow";
    return "554 5.7.1 Access denied\r\n";
  }
  const char *full = over_capacity(l, reason);
  if (full)
    return full;
  if (count_client(l, ip) > c->max_connections_per_client) {
    *reason = "max_connections_per_client";
    return "421 4.7.0 Too many connections from your address, try again later\r\n";
  }
  return NULL;
}

static void log_refused(listener *l, const char *ip, const char *reason) {
  const char *name = listener_cfg(l)->name;
  stp_kv kv[] = {{"listener", name},
                 {"client", ip},
                 {"reason", !strcmp(reason, "allow") ? "not in allow list" : reason}};
  stp_log_kv(STP_LOG_WARN, NULL, "refused", kv, 3);
  metrics_refused_connection(name, reason);
}

/* The client a balancer's PROXY header named: the same checks as for a
 * direct connection, on that address. */
static const char *admit_cb(void *owner, const struct sockaddr *client) {
  lconn *c = owner;
  stp_sockaddr_ip(client, c->ip, sizeof c->ip);
  const char *reason = NULL;
  const char *reply = refusal(c->l, client, c->ip, &reason);
  if (reply)
    log_refused(c->l, c->ip, reason);
  return reply;
}

static void on_connection(uv_stream_t *srv_sock, int status) {
  listener *l = srv_sock->data;
  if (status < 0) {
    stp_logf(STP_LOG_WARN, NULL, "accept failed on %s: %s", listener_cfg(l)->name,
             uv_strerror(status));
    return;
  }
  lconn *conn = conn_new(l, srv_sock->loop);
  if (uv_accept(srv_sock, (uv_stream_t *)relay_client_tcp(conn->r)) < 0) {
    relay_refuse(conn->r, "");
    return;
  }
  struct sockaddr_storage ss;
  int len = sizeof ss;
  memset(&ss, 0, sizeof ss);
  uv_tcp_getpeername(relay_client_tcp(conn->r), (struct sockaddr *)&ss, &len);
  const struct sockaddr *peer = (const struct sockaddr *)&ss;
  stp_sockaddr_ip(peer, conn->ip, sizeof conn->ip);
  const stp_listener_cfg *c = listener_cfg(l);
  const char *reason = NULL;
  /* A balancer's connections are checked once its header names the
   * client; the allow list does not apply to the balancer itself. */
  bool balancer = stp_cidr_match_any(c->proxy_protocol, c->n_proxy_protocol, peer);
  const char *reply = balancer ? over_capacity(l, &reason) : refusal(l, peer, conn->ip, &reason);
  if (reply) {
    log_refused(l, conn->ip, reason);
    relay_refuse(conn->r, reply);
    return;
  }
  if (balancer) {
    conn->ip[0] = '\0'; /* counted per client once the header names one */
    relay_await_header(conn->r, peer, admit_cb);
    return;
  }
  relay_start(conn->r, peer);
}

static int bind_one(listener *l, uv_tcp_t *h, const char *spec, char *err, size_t errlen) {
  uv_tcp_init(l->loop, h);
  h->data = l;
  l->n_open++;
  char addr[80];
  int rc = netbind_listen(h, spec, 511, on_connection, addr, sizeof addr, err, errlen);
  if (rc < 0)
    return rc;
  stp_kv kv[] = {{"listener", listener_cfg(l)->name}, {"addr", addr}};
  stp_log_kv(STP_LOG_INFO, NULL, "listening", kv, 2);
  return 0;
}

int listener_open(uv_loop_t *loop, srv_gen *gen, size_t index, void (*quiet)(void *owner),
                  void *owner, listener **out, char *err, size_t errlen) {
  listener *l = stp_xcalloc(1, sizeof *l);
  *out = l;
  l->loop = loop;
  l->gen = srv_gen_ref(gen);
  l->index = index;
  l->quiet = quiet;
  l->owner = owner;
  const stp_listener_cfg *c = listener_cfg(l);
  l->socks = stp_xcalloc(c->listen.n, sizeof *l->socks);
  l->n_socks = c->listen.n;
  for (size_t i = 0; i < c->listen.n; i++) {
    int rc = bind_one(l, &l->socks[i], c->listen.v[i], err, errlen);
    if (rc < 0) {
      stp_kv kv[] = {{"listener", c->name}, {"addr", c->listen.v[i]}, {"error", err}};
      stp_log_kv(STP_LOG_ERROR, NULL, "listen-failed", kv, 3);
      l->n_socks = i + 1;
      listener_close(l);
      return rc;
    }
  }
  return 0;
}

static void sock_closed_cb(uv_handle_t *h) {
  listener *l = h->data;
  l->n_open--;
  maybe_quiet(l);
}

void listener_close(listener *l) {
  if (l->closing)
    return;
  l->closing = true;
  for (size_t i = 0; i < l->n_socks; i++) {
    uv_handle_t *h = (uv_handle_t *)&l->socks[i];
    if (h->loop && !uv_is_closing(h))
      uv_close(h, sock_closed_cb);
  }
  maybe_quiet(l);
}

void listener_shutdown_sessions(listener *l) {
  for (lconn *c = l->conns, *next; c; c = next) {
    next = c->next; /* a relay never goes away inside relay_shutdown */
    relay_shutdown(c->r);
  }
}
