/* backoff.c - per-upstream failure back-off (see backoff.h).
 *
 * Owns: the back-off schedule and its two log events. Guarantees: no I/O
 * but those log lines; no overflow whatever the failure count or the clock
 * value (saturating arithmetic).
 */
#include "smtp-tls-proxy/backoff.h"

#include <stdio.h>

#include "smtp-tls-proxy/log.h"

void backoff_report_ready(backoff_state *b, const char *upstream, const char *sid) {
  if (!backoff_succeeded(b))
    return;
  stp_kv kv[] = {{"upstream", upstream}};
  stp_log_kv(STP_LOG_INFO, sid, "upstream-recovered", kv, 1);
}

void backoff_report_started(const char *upstream, const char *reason, uint64_t skip_ms,
                            const char *sid) {
  if (!skip_ms)
    return;
  char ms[24];
  snprintf(ms, sizeof ms, "%llu", (unsigned long long)skip_ms);
  stp_kv kv[] = {{"upstream", upstream}, {"reason", reason}, {"skip_ms", ms}};
  stp_log_kv(STP_LOG_WARN, sid, "upstream-backoff", kv, 3);
}

uint64_t backoff_delay_ms(unsigned n) {
  uint64_t d = BACKOFF_BASE_MS;
  for (unsigned i = 1; i < n && d < BACKOFF_MAX_MS; i++)
    d *= 2;
  return d < BACKOFF_MAX_MS ? d : BACKOFF_MAX_MS;
}

bool backoff_failed(backoff_state *b, uint64_t now_ms) {
  bool was_healthy = b->failures == 0;
  if (backoff_active(b, now_ms))
    return false;
  if (b->failures < ~0u)
    b->failures++;
  uint64_t d = backoff_delay_ms(b->failures);
  b->until_ms = now_ms > UINT64_MAX - d ? UINT64_MAX : now_ms + d;
  return was_healthy;
}

bool backoff_succeeded(backoff_state *b) {
  bool was_failing = b->failures != 0;
  b->failures = 0;
  b->until_ms = 0;
  return was_failing;
}

bool backoff_active(const backoff_state *b, uint64_t now_ms) {
  return now_ms < b->until_ms;
}

uint64_t backoff_remaining(const backoff_state *b, uint64_t now_ms) {
  return now_ms < b->until_ms ? b->until_ms - now_ms : 0;
}
