/* backoff.h - per-upstream failure back-off.
 *
 * Owns: when an upstream that failed may be tried again. Guarantees: pure,
 * time comes in as milliseconds. The first failure backs off 30 s, each
 * further one doubles it, up to 10 min. A failure reported while the
 * back-off is still running (a session that had started before it) does
 * not count again: twenty sessions failing together are one failure.
 * "Healthy" means no failure since the last success; the return values
 * mark the changes between healthy and failing, so the caller logs each
 * change once.
 */
#ifndef STP_BACKOFF_H
#define STP_BACKOFF_H

#include <stdbool.h>
#include <stdint.h>

#define BACKOFF_BASE_MS UINT64_C(30000)
#define BACKOFF_MAX_MS UINT64_C(600000)

typedef struct backoff_state {
  unsigned failures; /* counted failures since the last success */
  uint64_t until_ms; /* not to be tried before this */
} backoff_state;

/* The back-off after n counted failures (n >= 1): 30 s, 60 s, ... 600 s. */
uint64_t backoff_delay_ms(unsigned n);
/* A failure at now_ms. True when the upstream was healthy before. */
bool backoff_failed(backoff_state *b, uint64_t now_ms);
/* A success: back to healthy. True when it was failing. */
bool backoff_succeeded(backoff_state *b);
/* The one way every path that talks to an upstream (sessions, spool
 * deliveries, probes, alert mail) reports a change, so the log lines that
 * uphealth and the alerts read are the same whoever saw it first.
 * backoff_report_ready: a success; logs "upstream-recovered" when it was
 * failing. backoff_report_started: logs "upstream-backoff" with reason and
 * skip_ms when skip_ms is not 0 (a back-off began). sid may be NULL. */
void backoff_report_ready(backoff_state *b, const char *upstream, const char *sid);
void backoff_report_started(const char *upstream, const char *reason, uint64_t skip_ms,
                            const char *sid);
/* True while it should be skipped (now_ms < until_ms). */
bool backoff_active(const backoff_state *b, uint64_t now_ms);
/* Milliseconds until it may be tried again, 0 if now. */
uint64_t backoff_remaining(const backoff_state *b, uint64_t now_ms);

#endif
