/* upconn.h - one connection to one upstream: DNS, TCP connect (each address
 * in turn), TLS, and the upstream state machine, with its own timer.
 *
 * Owns: the stream, the timer, the DNS request and the upstream machine.
 * Guarantees: the owner's callbacks come from the loop only, never from
 * inside upconn_open() or a request (upconn_mail() ...: a local refusal
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
/* For debug logs: detached, token, dialing, or the machine's state. */
const char *upconn_state_name(const upconn *u);
/* Requests to the upstream, as upstream.h's (0 or STP_ESTATE; the answer
 * comes through the owner's reply callback, from the loop). The upstream
 * behind may speak SMTP or, for API upstreams, HTTP: callers do not care. */
int upconn_mail(upconn *u, const char *from, const smtp_mail_args *a);
int upconn_rcpt(upconn *u, const char *to, const smtp_rcpt_dsn *dsn);
int upconn_data(upconn *u);
int upconn_body(upconn *u, const char *p, size_t n);
int upconn_end(upconn *u);
int upconn_rset(upconn *u);
/* Ready, no command outstanding. */
bool upconn_idle(const upconn *u);
/* A MAIL was accepted and the transaction not ended. */
bool upconn_in_txn(const upconn *u);
/* auth: passthrough: authenticate with the device's own credentials (the
 * strings must outlive the connection); such a connection is never pooled. */
void upconn_set_credentials(upconn *u, const char *user, const char *secret);
bool upconn_has_device_credentials(const upconn *u);
/* The protocol state, for logs. */
const char *upconn_proto_state(const upconn *u);
const stp_upstream_cfg *upconn_cfg(const upconn *u);
size_t upconn_queued(const upconn *u);
const char *upconn_tls_version(const upconn *u); /* NULL without TLS */
const char *upconn_tls_cipher(const upconn *u);

#endif
