/* metrics_http.h - the /metrics and /healthz HTTP endpoint on the main loop.
 *
 * Owns: one listening socket and its connections. Guarantees: GET and HEAD
 * only (405 otherwise, with Allow), /metrics (Prometheus text 0.0.4) and
 * /healthz (200 "ok" while healthy(ctx) is true, else 503); 404 for other
 * paths, 400 for a malformed request line, 431 for a head over
 * METRICS_HTTP_MAX_HEAD. Every response carries "Connection: close" and the
 * connection closes after it. At most METRICS_HTTP_MAX_CONNS connections at
 * once (more are accepted and closed at once); each one lives at most
 * METRICS_HTTP_TIMEOUT_MS from accept to the end of its response, so a slow
 * client cannot hold a slot. Plain TCP, no TLS: bind it to loopback or a
 * management network.
 */
#ifndef STP_METRICS_HTTP_H
#define STP_METRICS_HTTP_H

#include <stdbool.h>
#include <uv.h>

#define METRICS_HTTP_MAX_CONNS 64
#define METRICS_HTTP_TIMEOUT_MS 10000

typedef struct metrics_http metrics_http;

/* Bind `listen` ("host:port", "[v6]:port", ":port"; port 0 lets the kernel
 * choose) and serve on `loop`. Logs event=metrics-listening addr=IP:PORT
 * with the real address. healthy may be NULL (always healthy). Returns 0 and
 * sets *out, or STP_EINVAL (bad address) / STP_ENET with the reason in err
 * and *out = NULL; either way the loop must run again to release the
 * closed handle. */
int metrics_http_start(uv_loop_t *loop, const char *listen, bool (*healthy)(void *), void *ctx,
                       metrics_http **out, char *err, size_t errlen);

/* Optional: while healthy, /healthz answers 200 "degraded: <why>" when
 * degraded(ctx, why, cap) is true (a spool above 90% of max_size). */
void metrics_http_set_degraded(metrics_http *h, bool (*degraded)(void *ctx, char *why, size_t cap));

/* Stop listening and close every connection, answered or not. Memory is
 * released from close callbacks, so the loop must run once more. NULL is a
 * no-op. */
void metrics_http_stop(metrics_http *h);

#endif
