/* probe.h - upstream probes: log in without sending mail, on a timer.
 *
 * Owns: one timer per upstream with probe_interval > 0 and the probe in
 * flight on it. An SMTP probe is connect, TLS (verified), EHLO, AUTH
 * (with a token fetched first where OAuth is used) and QUIT, through
 * upconn.c as a device's connection would go; an API probe (graph, gmail)
 * fetches the token and makes one cheap authenticated GET (Graph
 * /users/{mailbox}?$select=id, Gmail users/{mailbox}/profile), refreshing
 * a refused token once. Guarantees: no mail is sent; each outcome is one
 * "probe" log line (upstream, result=ok|failed, reason, reply, hint), which
 * is what uphealth.c, the metrics and the alerts read; probes share the
 * generation's back-off with live traffic (a failure starts or extends it,
 * a success ends it); the first probe of each upstream comes after a random
 * delay between one and two minutes (one and two intervals when the
 * interval is shorter), so a restart does not hit every provider at once;
 * stopping cancels every probe in flight.
 */
#ifndef STP_PROBE_H
#define STP_PROBE_H

#include <uv.h>

#include "gen.h"

typedef struct probes probes;

/* Probes for the upstreams of gen (a reference is held). */
probes *probes_start(uv_loop_t *loop, srv_gen *gen);
/* A reload: the probes follow the new generation's upstreams. */
void probes_set_gen(probes *p, srv_gen *gen);
/* Cancel everything; memory goes with the timers' close callbacks. */
void probes_stop(probes *p);

#endif
