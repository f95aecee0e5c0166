/* relay.h - one device connection: a LAN session wired to upstream
 * connections (see relay.c for what it owns and guarantees).
 *
 * The creator (the listener) learns of the relay's end through `gone`,
 * called once from the loop when every handle of the relay is closed,
 * just before it is freed.
 */
#ifndef STP_RELAY_H
#define STP_RELAY_H

#include <sys/socket.h>
#include <uv.h>

#include "gen.h"

typedef struct relay relay;

relay *relay_new(uv_loop_t *loop, srv_gen *gen, size_t lindex, void (*gone)(void *owner),
                 void *owner);
uv_tcp_t *relay_client_tcp(relay *r);
/* Speak SMTP to the accepted device at `peer`. */
void relay_start(relay *r, const struct sockaddr *peer);
/* The listener's verdict on the client a PROXY header named: NULL to
 * admit it, else the reply that refuses it (the listener logs why). */
typedef const char *(*relay_admit_fn)(void *owner, const struct sockaddr *client);
/* A listed balancer connected: read its PROXY header (bounded in size and
 * time), then ask admit() about the client it names, and speak SMTP to
 * that client as relay_start() does, or refuse. */
void relay_await_header(relay *r, const struct sockaddr *balancer, relay_admit_fn admit);
/* Refuse a fresh connection with one reply line, then close it. */
void relay_refuse(relay *r, const char *reply);
/* Answer 421 and close (end of the shutdown grace). */
void relay_shutdown(relay *r);

#endif
