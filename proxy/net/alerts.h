/* alerts.h - alerts on the loop: fed by the log events, sent by webhook
 * and email (`alerts:`).
 *
 * Owns: the log observer that hands every event to the pure alerter
 * (alert.h), a one-second timer for the time-driven checks, the webhook
 * queue with its one request in flight and its TLS context (ca_file,
 * verified), and the email sender (alert_mail.h). Guarantees: never
 * blocks mail (nothing here is on a device's path; queues are bounded:
 * ALERTS_WEBHOOK_QUEUE, the oldest is dropped and logged); each decided
 * alert is one "alert" log line, each suppressed one an "alert-suppressed"
 * line; a webhook POST that fails (no answer, TLS refused, non-2xx) is
 * logged and retried with back-off (5 s doubling, ALERTS_WEBHOOK_TRIES
 * tries in all), then dropped with a log line.
 */
#ifndef STP_ALERTS_H
#define STP_ALERTS_H

#include <uv.h>

#include "gen.h"

#define ALERTS_WEBHOOK_QUEUE 32
#define ALERTS_WEBHOOK_TRIES 5
#define ALERTS_RETRY_BASE_MS 5000

typedef struct alerts alerts;

/* Always started (a reload may add `alerts:`); idle without it. NULL and
 * err when the webhook's ca_file cannot be loaded. */
alerts *alerts_start(uv_loop_t *loop, srv_gen *gen, char *err, size_t errlen);
/* A reload: the new settings (dedupe state kept); -1 and err when the new
 * ca_file cannot be loaded (the old settings stay). */
int alerts_set_gen(alerts *a, srv_gen *gen, char *err, size_t errlen);
void alerts_stop(alerts *a);

#endif
