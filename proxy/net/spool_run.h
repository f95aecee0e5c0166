/* spool_run.h - the queue runner: delivers spooled messages (spool_run.c).
 *
 * Owns: a timer, the deliveries under way (at most SPOOL_RUN_MAX, so that
 * live device sessions keep the upstreams, the pool and the thread pool
 * first) and the configuration generation they use. Guarantees: a message
 * goes out in its route's upstream order, past upstreams in back-off,
 * through the shared connection pool and the route's rate limit; it is
 * removed only after the upstream's 2xx to the final dot (or a 5xx for
 * every recipient, with a failure notice, or max_age); a message whose
 * route is gone after a reload is held (and released when a reload brings
 * the route back); its body is streamed from the file with back-pressure
 * and checked against its SHA-256 before the final dot is sent.
 */
#ifndef STP_SPOOL_RUN_H
#define STP_SPOOL_RUN_H

#include <uv.h>

#include "gen.h"
#include "spool.h"

#define SPOOL_RUN_MAX 2       /* deliveries at once */
#define SPOOL_RUN_TICK_MS 250 /* how often due messages are looked for */

typedef struct spool_run spool_run;

spool_run *spool_run_new(uv_loop_t *loop, spool *sp, srv_gen *gen);
/* A reload: new deliveries use gen; route-held messages are re-checked. */
void spool_run_set_gen(spool_run *run, srv_gen *gen);
/* Look for due messages on the next loop turn (queue retry, a commit). */
void spool_run_kick(spool_run *run);
/* SIGTERM: no delivery starts from now on; with a shared spool the ones
 * before their final dot are cut at once (another replica takes the
 * message); drained(arg) from the loop once none is running. */
void spool_run_drain(spool_run *run, void (*drained)(void *arg), void *arg);
/* Stop: deliveries under way are cut (tried again at the next start) and
 * the runner frees itself once its timer is closed. */
void spool_run_stop(spool_run *run);

#endif
