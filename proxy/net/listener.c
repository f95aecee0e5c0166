/* listener.c - bound sockets of one configured listener, the allow list and
 * connection limits.
 *
 * Owns: the uv_tcp_t handles for each `listen` address and the list of
 * live relays started from them. Guarantees: a client outside `allow` gets
 * 554 5.7.1 and is closed before any SMTP is spoken; over max_connections or
 * max_connections_per_client it gets 421 4.7.0; the listener is freed only
 * after its sockets are closed and its last relay is gone.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netbind.h"
#include "server.h"
#include "smtp-tls-proxy/cidr.h"
#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/metrics.h"
#include "smtp-tls-proxy/util.h"

static const stp_listener_cfg *lcfg(const listener *l) {
  return &l->gen->cfg->listeners[l->index];
}

/* Listeners are freed by the server once the loop has ended (listener_free);
 * here we only tell the server when a stopping listener has gone quiet. */
static void maybe_free(listener *l) {
  if (l->closing && l->n_open == 0 && !l->relays)
    server_listener_idle(l->srv);
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
  stp_kv kv[] = {{"listener", lcfg(l)->name}};
  stp_log_kv(STP_LOG_INFO, NULL, "listener-kept", kv, 1);
}

void listener_free(listener *l) {
  srv_gen_unref(l->gen);
  free(l->socks);
  free(l);
}

static bool same_ip(const struct sockaddr *a, const struct sockaddr *b) {
  char x[64], y[64];
  return !strcmp(stp_sockaddr_ip(a, x, sizeof x), stp_sockaddr_ip(b, y, sizeof y));
}

unsigned listener_count_client(const listener *l, const struct sockaddr *peer) {
  unsigned n = 0;
  for (relay *r = l->relays; r; r = relay_next(r))
    if (relay_peer(r)->sa_family && same_ip(relay_peer(r), peer))
      n++;
  return n;
}

void listener_relay_gone(listener *l, relay *r) {
  (void)r; /* relay.c has unlinked it already */
  l->n_conns--;
  maybe_free(l);
}

static void on_connection(uv_stream_t *srv_sock, int status) {
  listener *l = srv_sock->data;
  if (status < 0) {
    stp_logf(STP_LOG_WARN, NULL, "accept failed on %s: %s", lcfg(l)->name, uv_strerror(status));
    return;
  }
  relay *r = relay_new(l, srv_sock->loop);
  if (uv_accept(srv_sock, (uv_stream_t *)relay_client_tcp(r)) < 0) {
    relay_refuse(r, "");
    return;
  }
  struct sockaddr_storage ss;
  int len = sizeof ss;
  memset(&ss, 0, sizeof ss);
  uv_tcp_getpeername(relay_client_tcp(r), (struct sockaddr *)&ss, &len);
  const struct sockaddr *peer = (const struct sockaddr *)&ss;
  const stp_listener_cfg *c = lcfg(l);
  char ip[64];
  stp_sockaddr_ip(peer, ip, sizeof ip);
  if (!stp_cidr_match_any(c->allow, c->n_allow, peer)) {
    stp_kv kv[] = {{"listener", c->name}, {"client", ip}, {"reason", "not in allow list"}};
    stp_log_kv(STP_LOG_WARN, NULL, "refused", kv, 3);
    metrics_refused_connection(c->name, "allow");
    relay_refuse(r, "554 5.7.1 Access denied\r\n");
    return;
  }
  /* relay_new already counted this connection. */
  if (l->n_conns > c->max_connections || l->srv->stopping) {
    stp_kv kv[] = {{"listener", c->name}, {"client", ip}, {"reason", "max_connections"}};
    stp_log_kv(STP_LOG_WARN, NULL, "refused", kv, 3);
    metrics_refused_connection(c->name, "max_connections");
    relay_refuse(r, "421 4.7.0 Too many connections, try again later\r\n");
    return;
  }
  if (listener_count_client(l, peer) >= c->max_connections_per_client) {
    stp_kv kv[] = {{"listener", c->name}, {"client", ip}, {"reason", "max_connections_per_client"}};
    stp_log_kv(STP_LOG_WARN, NULL, "refused", kv, 3);
    metrics_refused_connection(c->name, "max_connections_per_client");
    relay_refuse(r, "421 4.7.0 Too many connections from your address, try again later\r\n");
    return;
  }
  relay_start(r, peer);
}

static int bind_one(listener *l, uv_tcp_t *h, const char *spec, char *err, size_t errlen) {
  uv_tcp_init(l->srv->loop, h);
  h->data = l;
  l->n_open++;
  char addr[80];
  int rc = netbind_listen(h, spec, 511, on_connection, addr, sizeof addr, err, errlen);
  if (rc < 0)
    return rc;
  stp_kv kv[] = {{"listener", lcfg(l)->name}, {"addr", addr}};
  stp_log_kv(STP_LOG_INFO, NULL, "listening", kv, 2);
  return 0;
}

int listener_open(server *srv, srv_gen *gen, size_t index, char *err, size_t errlen) {
  listener *l = stp_xcalloc(1, sizeof *l);
  srv->listeners = stp_xrealloc(srv->listeners, (srv->n_listeners + 1) * sizeof *srv->listeners);
  srv->listeners[srv->n_listeners++] = l;
  l->srv = srv;
  l->gen = srv_gen_ref(gen);
  l->index = index;
  const stp_listener_cfg *c = lcfg(l);
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
  maybe_free(l);
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
  maybe_free(l);
}

void listener_shutdown_sessions(listener *l) {
  for (relay *r = l->relays; r;) {
    relay *next = relay_next(r);
    relay_shutdown(r);
    r = next;
  }
}
