/* listener.h - the bound sockets of one configured listener, its allow list
 * and connection limits, and the device connections (relays) accepted on it.
 *
 * Owns: the uv_tcp_t handles for each `listen` address and its bookkeeping
 * of live relays (count, per-client count). Guarantees: a client outside
 * `allow` gets 554 5.7.1 and is closed before any SMTP is spoken; over
 * max_connections or max_connections_per_client it gets 421 4.7.0. From a
 * balancer listed in `proxy_protocol` these checks wait for its PROXY
 * header and apply to the client the header names (relay.h); once
 * closed, the owner's `quiet` callback runs when its sockets are closed and
 * its last relay is gone (from the loop); listener_free() after the loop.
 */
#ifndef STP_LISTENER_H
#define STP_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "gen.h"

typedef struct listener listener;

/* Bind every address of listener `index` of gen. *out is set also on
 * failure (the listener is then closing, and must be freed like the
 * others); returns 0, or STP_EINVAL/STP_ENET with the reason in err. */
int listener_open(uv_loop_t *loop, srv_gen *gen, size_t index, void (*quiet)(void *owner),
                  void *owner, listener **out, char *err, size_t errlen);
/* Keep the bound sockets but serve generation `gen` (listener `index` of
 * it) from now on: for a reload that did not change the addresses. */
void listener_adopt(listener *l, srv_gen *gen, size_t index);
/* Same name and addresses: the sockets can serve the other configuration. */
bool listener_same_sockets(const stp_listener_cfg *a, const stp_listener_cfg *b);
/* Stop accepting; live relays go on. */
void listener_close(listener *l);
void listener_free(listener *l); /* after the loop has ended */
/* Send 421 to every live session (end of shutdown grace). */
void listener_shutdown_sessions(listener *l);

const stp_listener_cfg *listener_cfg(const listener *l);
const srv_gen *listener_gen(const listener *l);
bool listener_closing(const listener *l);
/* Closing, no socket open, no relay left. */
bool listener_quiet(const listener *l);
/* Accepting for generation gen with every socket open. */
bool listener_serving(const listener *l, const srv_gen *gen);

#endif
