/* metrics.h - the process-wide metrics registry and its Prometheus text.
 *
 * Owns: every metric family the proxy exports (a fixed table: name, help,
 * type, label names), the bounded table of series (one per distinct label
 * set, at most METRICS_MAX_SERIES), and the text exposition format 0.0.4.
 * Also the pure half of the /metrics HTTP endpoint: deciding what a request
 * asks for (http1.h parses it, metrics_http.c does the sockets).
 *
 * Guarantees: an update allocates only the first time its series appears
 * and never formats a string; once the table is full, updates that would
 * need a new series are counted in smtp_proxy_metrics_dropped_series_total
 * instead. Label values are stored (truncated to METRICS_MAX_LABEL bytes)
 * and escaped on output (\\ \" \n, invalid UTF-8 becomes U+FFFD), so no
 * value can break the format. Families and series come out sorted, so two
 * renders of the same state are byte-identical. No I/O.
 *
 * Not thread-safe: every call belongs to the event-loop thread.
 */
#ifndef STP_METRICS_H
#define STP_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtp-tls-proxy/http1.h"

#define METRICS_MAX_SERIES 4096
#define METRICS_MAX_LABEL 128

/* Forget every series and the dropped count (tests; not needed at runtime). */
void metrics_reset(void);

/* smtp_proxy_sessions_active{listener} (gauge) and
 * smtp_proxy_sessions_total{listener} (counter). */
void metrics_session_open(const char *listener);
void metrics_session_close(const char *listener);

/* smtp_proxy_refused_connections_total{listener,reason};
 * reason: allow | max_connections | max_connections_per_client. */
void metrics_refused_connection(const char *listener, const char *reason);

/* smtp_proxy_messages_total{route,upstream,result} and
 * smtp_proxy_message_bytes_total{route,upstream} (bytes of every message,
 * whatever its result); result: delivered (2xx to the dot) | rejected (5xx)
 * | deferred (4xx, ours or the upstream's) | aborted (client went away). */
void metrics_message(const char *route, const char *upstream, const char *result, uint64_t bytes);

/* smtp_proxy_upstream_failures_total{upstream,reason}; reason: dns | connect
 * | tls | starttls | greeting | auth | timeout | closed | protocol, or, for
 * a refusal the provider table knows, its reason word (provider.h). */
void metrics_upstream_failure(const char *upstream, const char *reason);

/* smtp_proxy_failovers_total{route,from,to}. */
void metrics_failover(const char *route, const char *from, const char *to);

/* smtp_proxy_rate_limited_total{scope,name}; scope: listener | route. */
void metrics_rate_limited(const char *scope, const char *name);

/* smtp_proxy_upstream_latency_seconds{upstream,phase} (histogram, buckets
 * METRICS_LATENCY_BUCKETS); phase: connect | ready | dot. Negative values
 * count as 0, NaN is ignored. */
void metrics_upstream_latency(const char *upstream, const char *phase, double seconds);
#define METRICS_LATENCY_BUCKETS                                                                    \
  { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60 }

/* smtp_proxy_upstream_pool_connections{upstream} (gauge, set). */
void metrics_pool_size(const char *upstream, long n);

/* smtp_proxy_oauth2_token_expiry_timestamp_seconds{upstream} (gauge, set:
 * unix seconds, 0 while the upstream has no token) and
 * smtp_proxy_oauth2_refresh_failures_total{upstream,reason}; reason: the
 * token endpoint's OAuth error code when it is one RFC 6749/8628 defines,
 * else network | http_status | bad_response | signing | command | other. */
void metrics_oauth2_expiry(const char *upstream, int64_t unix_seconds);
void metrics_oauth2_refresh_failure(const char *upstream, const char *reason);

/* smtp_proxy_spool_messages, smtp_proxy_spool_bytes and
 * smtp_proxy_spool_oldest_seconds (gauges, set together). */
void metrics_spool(uint64_t messages, uint64_t bytes, uint64_t oldest_seconds);
/* smtp_proxy_spool_deliveries_total{result}; result: delivered | deferred
 * | failed (5xx) | expired (max_age). */
void metrics_spool_delivery(const char *result);

/* The exact length of the text metrics_render would write now. */
size_t metrics_render_size(void);
/* Write the exposition text into buf: at most cap bytes, whole lines only,
 * no NUL terminator. Returns the number of bytes written, which is
 * metrics_render_size() when cap is large enough. */
size_t metrics_render(char *buf, size_t cap);

/* --- the pure half of the HTTP endpoint (metrics_http.c) ---------------- */

#define METRICS_HTTP_MAX_HEAD 8192 /* the request head (http1_parse_request) */

typedef enum {
  METRICS_HTTP_METRICS = 0, /* GET/HEAD /metrics */
  METRICS_HTTP_HEALTHZ,     /* GET/HEAD /healthz */
  METRICS_HTTP_NOT_FOUND,   /* GET/HEAD elsewhere: 404 */
  METRICS_HTTP_BAD_METHOD   /* any other method: 405, Allow: GET, HEAD */
} metrics_http_target;

/* What a parsed request asks for; *head is set for HEAD. A query string is
 * ignored ("/metrics?x" is /metrics). */
metrics_http_target metrics_http_classify(const http1_request *r, bool *head);

#endif
