/* spool_notice.h - the failure notice of a spooled message (spool_notice.c).
 *
 * Owns: reading the original header block back, building the RFC 3464
 * notice (core dsn.c), and spooling one copy of it per notice recipient
 * (spool.notify, and the envelope sender when spool.notify_sender; never
 * <>), each with sender <> and routed as a device's message to that
 * recipient would be (the route's rewrites apply). Guarantees: a notice is
 * never sent about a notice; done() comes once, from the loop; the spool
 * is held (spool_hold) from the start to after done(), so a SIGTERM while
 * the headers are read cannot free it under the reader.
 */
#ifndef STP_SPOOL_NOTICE_H
#define STP_SPOOL_NOTICE_H

#include <stdbool.h>
#include <uv.h>

#include "smtp-tls-proxy/config.h"
#include "smtp-tls-proxy/dsn.h"
#include "spool.h"

/* ok: every notice copy is durable (or there was nobody to tell). */
typedef void (*spool_notice_done_fn)(void *arg, bool ok);

/* e stays valid (busy) until done. rcpts: the failed recipients with the
 * reply each got; expired: max_age passed rather than a 5xx. */
void spool_notice_send(uv_loop_t *loop, spool *sp, const stp_config *cfg, const char *hostname,
                       const spool_entry *e, const dsn_rcpt *rcpts, size_t n, bool expired,
                       spool_notice_done_fn done, void *arg);

#endif
