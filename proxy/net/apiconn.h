/* apiconn.h - an upstream that is an HTTP mail API (kind: graph | gmail),
 * behind the calls upconn.h offers, so the relay, the pool, failover and
 * --test-route treat it as any upstream.
 *
 * Owns: the access token (oauth2_net.h), an HTTP client with its
 * keep-alive connection to the API (http_client.h), the transaction
 * (sender, recipients), the copy of the message on disk (msgcopy.h) and
 * the MIME reader's view of it (apimsg.h), the requests that send it
 * (apisend.c), and the draft a failed Graph send leaves behind (deleted).
 * Guarantees:
 *  - ready only once a token is at hand and the API's origin was reached
 *    with TLS verified (a failure before that is an upstream failure, with
 *    the reasons SMTP upstreams use, so the route fails over);
 *  - MAIL and RCPT are recorded and answered 250, DATA 354, RSET 250, all
 *    from the loop, never from inside the call;
 *  - the body goes to the copy (bounded memory: appends stop above
 *    MSGCOPY_HIGH_WATER, reported through apiconn_queued, and resume on
 *    drain), never to RAM whole;
 *  - the final dot's reply is the API's answer (apimap.h): 250 only after
 *    the API accepted; a transport failure then is an upstream failure
 *    (the device gets 4xx); 429/5xx start the upstream's back-off for at
 *    least what Retry-After asks;
 *  - the events come from the loop only; after apiconn_close() none
 *    follows, and the copy is removed.
 */
#ifndef STP_APICONN_H
#define STP_APICONN_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "gen.h"
#include "smtp-tls-proxy/upstream.h"

typedef struct apiconn apiconn;

typedef struct apiconn_events {
  void (*ready)(void *up);
  void (*reply)(void *up, const smtp_reply *r);
  void (*failed)(void *up, upstream_fail why, const char *detail);
  void (*drain)(void *up);
  /* Transcript for --test-route: one line per request and per answer,
   * the bearer token never in it. */
  void (*trace)(void *up, bool out, const char *p, size_t n);
} apiconn_events;

apiconn *apiconn_open(uv_loop_t *loop, srv_gen *gen, size_t index, const apiconn_events *ev,
                      void *up, const char *sid);
void apiconn_close(apiconn *a);

/* As upconn_mail ... upconn_rset: 0 or STP_ESTATE. */
int apiconn_mail(apiconn *a, const char *from, const smtp_mail_args *args);
int apiconn_rcpt(apiconn *a, const char *to);
int apiconn_data(apiconn *a);
int apiconn_body(apiconn *a, const char *p, size_t n);
int apiconn_end(apiconn *a);
int apiconn_rset(apiconn *a);
bool apiconn_idle(const apiconn *a);
bool apiconn_in_txn(const apiconn *a);
/* Bytes of the body not yet on disk, when appends should stop (0 else). */
size_t apiconn_queued(const apiconn *a);
/* auth: passthrough: an API takes no device credentials; the connection
 * fails (AUTH) from the loop. */
void apiconn_refuse_credentials(apiconn *a);
const char *apiconn_state_name(const apiconn *a);

/* Where message copies are kept: the spool's dir/tmp when a spool is
 * configured (set before the first message); otherwise a private 0700
 * directory under $TMPDIR (default /tmp), made at the first message and
 * removed at exit. */
void apiconn_set_tmpdir(const char *dir);

#endif
