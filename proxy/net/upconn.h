/* upconn.h - one connection to one upstream: DNS, TCP connect (each address
 * in turn), TLS, and the upstream state machine, with its own timer.
 *
 * Owns: the stream, the timer, the DNS request and the upstream machine.
 * Guarantees: the owner's callbacks come from the loop only, never from
 * inside upconn_open() or a request made of upconn_sm() (a local refusal
 * or a write failure is deferred); after upconn_detach() the owner gets no
 * further callback; the
 * object frees itself once its stream, timer and DNS request are finished,
 * so a late libuv callback never reaches freed memory. Used by relay.c for
 * device sessions and by testroute.c for --test-route.
 */
#ifndef STP_UPCONN_H
#define STP_UPCONN_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "gen.h"
#include "smtp-tls-proxy/upstream.h"

typedef struct upconn upconn;

typedef struct upconn_owner_ops {
  void (*ready)(void *owner, upconn *u);
  void (*reply)(void *owner, const smtp_reply *r);
  /* The connection is already detached when this is called. `v` is the
   * provider table's verdict on it (v->rule NULL when no row matched). */
  void (*failed)(void *owner, upstream_fail why, const char *detail, const provider_verdict *v);
  /* The write queue fell below the low-water mark. */
  void (*drain)(void *owner);
  /* Optional transcript hook: bytes sent (out) or received; `redact` is set
   * for AUTH payloads, which the hook must not show. */
  void (*trace)(void *owner, bool out, bool redact, const char *p, size_t n);
} upconn_owner_ops;

/* Start connecting to upstream `index` of the generation. */
upconn *upconn_open(uv_loop_t *loop, srv_gen *gen, size_t index, const upconn_owner_ops *ops,
                    void *owner, const char *sid);
/* Stop reporting to the owner and close: graceful sends QUIT when idle and
 * lets queued bytes go out; otherwise the connection is cut at once. */
void upconn_detach(upconn *u, bool graceful);

/* Hand the connection to another owner (the pool, or a session taking a
 * pooled connection). */
void upconn_set_owner(upconn *u, const upconn_owner_ops *ops, void *owner);
size_t upconn_index(const upconn *u);
/* For debug logs: detached, resolving, token, or the machine's state. */
const char *upconn_state_name(const upconn *u);
upstream *upconn_sm(upconn *u);
const stp_upstream_cfg *upconn_cfg(const upconn *u);
size_t upconn_queued(const upconn *u);
const char *upconn_tls_version(const upconn *u); /* NULL without TLS */
const char *upconn_tls_cipher(const upconn *u);

#endif
