/* log.h - levelled logging in text or JSON, one line per event.
 *
 * Owns: the log format and the redaction rule. Guarantees: a value marked
 * secret is never written (it appears as "<redacted>"); a line is written
 * with one write(2) so concurrent lines never interleave; values are
 * escaped so a hostile client cannot forge a log line (CR/LF/quotes).
 * JSON: counts and durations (rcpts, size, duration_ms, skip_ms, grace_ms,
 * expires_in) are numbers when their value is an integer; all else is a
 * string.
 */
#ifndef STP_LOG_H
#define STP_LOG_H

#include <stddef.h>

enum { STP_LOG_ERROR = 0, STP_LOG_WARN, STP_LOG_INFO, STP_LOG_DEBUG };

typedef struct stp_kv {
  const char *key;
  const char *val; /* NULL values are skipped */
} stp_kv;

void stp_log_setup(int level, int json, int fd);
int stp_log_level(void);
int stp_log_parse_level(const char *s); /* -1 if unknown */
const char *stp_log_level_name(int level);

/* event is a short word ("message", "session", "upstream", ...). sid may be
 * NULL. Keys are written in the order given. */
void stp_log_kv(int level, const char *sid, const char *event, const stp_kv *kv, size_t n);
/* Free text as msg=... */
void stp_logf(int level, const char *sid, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Observers: the alerts and the delivery history are fed by the same events
 * that write the log lines, not by calls of their own in the relay. Every
 * stp_log_kv call reaches every observer, whatever the log level, on the
 * thread that logged (only the loop thread logs events observers act on).
 * Keys that start with '_' are for observers only: the line never shows
 * them (structured detail such as the recipient list or the listener).
 * At most STP_LOG_OBSERVERS at once; returns 0, or -1 when full. */
#define STP_LOG_OBSERVERS 4
typedef void (*stp_log_observer_fn)(void *ctx, int level, const char *sid, const char *event,
                                    const stp_kv *kv, size_t n);
int stp_log_observe(stp_log_observer_fn fn, void *ctx);
void stp_log_unobserve(stp_log_observer_fn fn, void *ctx);
/* The value of key in kv, or NULL. */
const char *stp_kv_get(const stp_kv *kv, size_t n, const char *key);

/* Format one line into buf (used by stp_log_kv; exposed for tests).
 * Returns the length written (always NUL-terminated, truncated to cap-1). */
size_t stp_log_format_line(char *buf, size_t cap, int json, int level, const char *sid,
                           const char *event, const stp_kv *kv, size_t n);

#endif
