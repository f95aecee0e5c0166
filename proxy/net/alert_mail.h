/* alert_mail.h - alert emails, sent through the routes like a device's
 * message (alerts.email).
 *
 * Owns: a bounded queue of alert messages and the one in flight: route
 * chosen as for a message from <> to the address (route.h), the route's
 * upstreams in failover order past back-off (failover.h), sender and
 * header rewrites as configured, over upconn.c. Guarantees: one message at
 * a time; at most ALERT_MAIL_QUEUE waiting (the oldest is dropped and
 * logged); a failure is logged ("alert-email-failed") and never retried
 * here: the alert dedupe (min_interval) is what bounds a route that fails
 * while carrying an alert about itself; no callback into the caller.
 */
#ifndef STP_ALERT_MAIL_H
#define STP_ALERT_MAIL_H

#include <uv.h>

#include "gen.h"
#include "smtp-tls-proxy/alert.h"

#define ALERT_MAIL_QUEUE 16

typedef struct alert_mail alert_mail;

alert_mail *alert_mail_new(uv_loop_t *loop);
/* Queue al for gen->cfg->alerts->email (gen is referenced until sent). */
void alert_mail_send(alert_mail *m, srv_gen *gen, const alert *al);
/* Cancel the one in flight, drop the queue, free. */
void alert_mail_free(alert_mail *m);

#endif
