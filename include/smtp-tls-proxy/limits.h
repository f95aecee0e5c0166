/* limits.h - the run-time state behind rate limits and upstream back-off
 * for one configuration generation.
 *
 * Owns: a token-bucket table per listener (keyed by client address) for
 * listener `rate_limit`, one bucket per route for route `rate_limit`, and a
 * back-off record per upstream. Guarantees: pure (the caller passes the
 * time), bounded (client tables hold at most RATELIMIT_TABLE_DEFAULT_CAPACITY
 * addresses each), and a listener or route without `rate_limit` costs
 * nothing and is never limited. State starts fresh on a reload.
 */
#ifndef STP_LIMITS_H
#define STP_LIMITS_H

#include <stddef.h>
#include <stdint.h>

#include "smtp-tls-proxy/backoff.h"
#include "smtp-tls-proxy/config.h"
#include "smtp-tls-proxy/ratelimit.h"

typedef struct stp_rate {
  uint32_t count; /* 0: no limit */
  uint64_t period_ms;
} stp_rate;

/* AUTH failures a client address may make per listener before AUTH is
 * refused outright for a while: guessing passwords by reconnecting costs as
 * much as guessing within one session. */
#define LIMITS_AUTH_FAILURES 5
#define LIMITS_AUTH_PERIOD_MS (10u * 60u * 1000u)

typedef struct stp_limits {
  size_t n_listeners, n_routes, n_upstreams;
  ratelimit_table *auth_fail; /* per listener, keyed by client address */
  stp_rate *listener_rate;
  ratelimit_table *client; /* per listener; used only where listener_rate.count */
  stp_rate *route_rate;
  ratelimit_bucket *route;
  backoff_state *upstream;
} stp_limits;

void limits_init(stp_limits *l, const stp_config *cfg, uint64_t now_ms);
void limits_free(stp_limits *l);
/* 0 when a message from this client may go, else milliseconds to wait. */
uint64_t limits_client(stp_limits *l, size_t listener, const char *client_ip, uint64_t now_ms);
/* Record one AUTH failure of a client; returns 0, or the milliseconds
 * until it may try again once its allowance is used up. */
uint64_t limits_auth_failed(stp_limits *l, size_t listener, const char *client_ip, uint64_t now_ms);
/* Whether a client may try AUTH now (0), else milliseconds to wait. */
uint64_t limits_auth_blocked(stp_limits *l, size_t listener, const char *client_ip,
                             uint64_t now_ms);
/* 0 when a transaction may take this route, else milliseconds to wait. */
uint64_t limits_route(stp_limits *l, size_t route, uint64_t now_ms);

#endif
