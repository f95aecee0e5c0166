/* dialer.h - open a TCP connection to a host: resolve the name, then try
 * each address in turn, within timeouts. The one place the proxy resolves
 * and connects (upstream connections, the HTTP client).
 *
 * Owns: the DNS request, one stream per address tried, and a timer.
 * Guarantees: `done` runs exactly once, from the loop - never from inside
 * dialer_start*() - unless dialer_cancel() came first, after which nothing
 * is called; on success the connected stream is handed over with the
 * caller's callbacks (reading not started), every other stream it opened
 * is closed; a name under ".invalid" fails at once without a query (RFC
 * 6761 6.4); the dialer frees itself once its DNS request, streams and
 * timer are finished, so a late libuv callback never reaches freed memory.
 * The handle is not to be used once `done` was called.
 */
#ifndef STP_DIALER_H
#define STP_DIALER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "stream.h"

#define DIAL_MAX_ADDRS 16 /* addresses of one name tried at most */

typedef struct dialer dialer;

typedef enum { DIAL_OK = 0, DIAL_DNS, DIAL_CONNECT, DIAL_TIMEOUT } dial_result;

typedef struct dial_opts {
  /* DNS and every attempt together; 0: no limit (the caller's own timer
   * bounds the dial and cancels it). */
  uint64_t timeout_ms;
  /* One address; when it has not answered by then the next one is tried
   * (the last one gets what is left of timeout_ms). 0: no limit. */
  uint64_t attempt_ms;
} dial_opts;

/* st: the connected stream, owned by the caller from now on with the cbs
 * and ctx given to dialer_start; or NULL with why and the reason of the
 * last failure (libuv's text, e.g. "connection refused", or "timed out"). */
typedef void (*dial_done_fn)(void *arg, stream *st, dial_result why, const char *reason);

/* Resolve host (a name or an IP literal, without brackets) and connect to
 * port. o may be NULL (no limits). */
dialer *dialer_start(uv_loop_t *loop, const char *host, uint16_t port, const dial_opts *o,
                     const stream_cbs *cbs, void *ctx, dial_done_fn done, void *arg);
/* The same for addresses already known, tried in the order given (at most
 * DIAL_MAX_ADDRS; each carries its port). */
dialer *dialer_start_addrs(uv_loop_t *loop, const struct sockaddr *const *addrs, size_t n,
                           const dial_opts *o, const stream_cbs *cbs, void *ctx, dial_done_fn done,
                           void *arg);
/* Stop: no callback follows; a stream being connected is closed. */
void dialer_cancel(dialer *d);

#endif
