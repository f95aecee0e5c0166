/* failover.h - the order in which a route's upstreams are tried.
 *
 * Owns: the walk along a route's `upstream:` list for one connection
 * attempt: which upstream to try, skipping those in back-off; recording a
 * failure before the connection was ready into that upstream's back-off;
 * the "name:reason,..." summary of what was passed over, for the log line.
 * Pure: time and the back-off table come from the caller. The relay (every
 * device message) and --test-route use this one walk.
 */
#ifndef STP_FAILOVER_H
#define STP_FAILOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtp-tls-proxy/backoff.h"
#include "smtp-tls-proxy/config.h"

typedef struct failover {
  const stp_config *cfg;
  const stp_route_cfg *route;
  size_t pos;        /* into route->upstreams: the upstream being tried */
  size_t prev;       /* upstream index tried before the current one */
  char skipped[256]; /* "name:reason,..." of the upstreams passed over */
} failover;

void failover_begin(failover *f, const stp_config *cfg, size_t route);
/* Settle on the upstream to try now: the current one, or the next that is
 * not backing off (each skipped one is noted as "name:backoff"). Returns
 * its index in cfg->upstreams, or -1 when the rest of the route backs off. */
long failover_pick(failover *f, const backoff_state *table, uint64_t now_ms);
/* Index in cfg->upstreams of the upstream being tried. */
size_t failover_current(const failover *f);
/* Whether an earlier upstream of the route was passed over. */
bool failover_moved(const failover *f);
/* The current upstream failed (`why` for the summary). When it failed
 * before it was ready and `count` is set, its back-off is recorded:
 * *backoff_ms gets the new back-off when it just started, else 0.
 * Returns true when the route has another upstream to try (only for a
 * failure before ready: later ones belong to the message in flight). */
bool failover_failed(failover *f, backoff_state *table, const char *why, bool before_ready,
                     bool count, uint64_t now_ms, uint64_t *backoff_ms);

#endif
