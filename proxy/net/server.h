/* server.h - the running proxy: listeners, relays and their shared state.
 *
 * server.c owns the loop-level lifecycle (start, reload, graceful stop) and
 * the reference-counted "generation" of configuration (config + TLS
 * contexts) that live sessions keep until they end. listener.c owns bound
 * sockets, the allow list and connection limits. relay.c owns one device
 * connection: it wires a session (LAN side) to an upstream state machine
 * and their streams, with back-pressure and timers.
 */
#ifndef STP_SERVER_H
#define STP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "smtp-tls-proxy/config.h"
#include "smtp-tls-proxy/limits.h"
#include "tls.h"

typedef struct relay relay;
typedef struct listener listener;
typedef struct server server;

/* One configuration generation, shared by everything started under it. */
typedef struct srv_gen {
  unsigned refs;
  stp_config *cfg;
  tls_ctx **up_tls;     /* per upstream */
  tls_ctx **lan_tls;    /* per listener; NULL for tls: none */
  stp_limits limits;    /* rate limits and upstream back-off */
  struct up_pool *pool; /* idle upstream connections; NULL once closed */
} srv_gen;

srv_gen *srv_gen_ref(srv_gen *g);
void srv_gen_unref(srv_gen *g);

struct listener {
  server *srv;
  srv_gen *gen;
  size_t index; /* into gen->cfg->listeners */
  uv_tcp_t *socks;
  size_t n_socks;
  size_t n_open; /* handles not yet closed */
  relay *relays; /* intrusive list of live relays */
  unsigned n_conns;
  bool closing;
};

struct server {
  uv_loop_t *loop;
  srv_gen *gen;
  listener **listeners; /* current and retired, freed by server_free */
  size_t n_listeners;
  uv_signal_t sig_term, sig_int, sig_hup;
  uv_timer_t grace;
  bool stopping;
  unsigned long sessions_started;
  struct metrics_http *metrics; /* /metrics and /healthz; NULL when off */
  const char *config_path;
};

/* listener.c */
/* Bind every address of listener `index` and register it with the server
 * (also on failure, so its closing handles are accounted for). */
int listener_open(server *srv, srv_gen *gen, size_t index, char *err, size_t errlen);
/* Keep the bound sockets but serve generation `gen` (listener `index` of
 * it) from now on: for a reload that did not change the addresses. */
void listener_adopt(listener *l, srv_gen *gen, size_t index);
/* Same name and addresses: the sockets can serve the other configuration. */
bool listener_same_sockets(const stp_listener_cfg *a, const stp_listener_cfg *b);
/* Stop accepting; live relays go on. Freed when sockets and relays are gone. */
void listener_close(listener *l);
void listener_relay_gone(listener *l, relay *r);
void listener_free(listener *l); /* after the loop has ended */
/* Send 421 to every live session (end of shutdown grace). */
void listener_shutdown_sessions(listener *l);
unsigned listener_count_client(const listener *l, const struct sockaddr *peer);

/* relay.c */
relay *relay_new(listener *l, uv_loop_t *loop);
uv_tcp_t *relay_client_tcp(relay *r);
void relay_start(relay *r, const struct sockaddr *peer);
void relay_shutdown(relay *r);
relay *relay_next(relay *r);
const struct sockaddr *relay_peer(const relay *r);
/* Refuse a fresh connection with one reply line, then close it. */
void relay_refuse(relay *r, const char *reply);

/* server.c */
int server_start(server *srv, uv_loop_t *loop, const char *config_path, stp_config *cfg);
void server_stop(server *srv);
int server_reload(server *srv);
srv_gen *srv_gen_new(stp_config *cfg, char *err, size_t errlen);
/* A closing listener has no sockets and no relays left. */
void server_listener_idle(server *srv);
/* After uv_run returned: free listeners and the generation. */
void server_free(server *srv);

#endif
