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

/* Format one line into buf (used by stp_log_kv; exposed for tests).
 * Returns the length written (always NUL-terminated, truncated to cap-1). */
size_t stp_log_format_line(char *buf, size_t cap, int json, int level, const char *sid,
                           const char *event, const stp_kv *kv, size_t n);

#endif
