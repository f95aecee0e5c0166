/* limits.c - rate-limit buckets and upstream back-off per generation (see
 * limits.h). */
#include "smtp-tls-proxy/limits.h"

#include <stdlib.h>
#include <string.h>

#include "smtp-tls-proxy/util.h"

/* The text was validated by config.c with the same parser (the only one):
 * an absent or (never) bad rate is no limit. */
static stp_rate rate_of(const char *s) {
  stp_rate r = {0, 0};
  if (s && stp_parse_rate(s, &r.count, &r.period_ms) < 0)
    r.count = 0;
  return r;
}

void limits_init(stp_limits *l, const stp_config *cfg, uint64_t now_ms) {
  memset(l, 0, sizeof *l);
  l->n_listeners = cfg->n_listeners;
  l->n_routes = cfg->n_routes;
  l->n_upstreams = cfg->n_upstreams;
  l->auth_fail = stp_xcalloc(cfg->n_listeners, sizeof *l->auth_fail);
  for (size_t i = 0; i < cfg->n_listeners; i++)
    if (cfg->listeners[i].auth == STP_LAUTH_USERS ||
        cfg->listeners[i].auth == STP_LAUTH_PASSTHROUGH)
      ratelimit_table_init(&l->auth_fail[i], RATELIMIT_TABLE_DEFAULT_CAPACITY);
  l->listener_rate = stp_xcalloc(cfg->n_listeners, sizeof *l->listener_rate);
  l->client = stp_xcalloc(cfg->n_listeners, sizeof *l->client);
  for (size_t i = 0; i < cfg->n_listeners; i++) {
    l->listener_rate[i] = rate_of(cfg->listeners[i].rate_limit);
    if (l->listener_rate[i].count)
      ratelimit_table_init(&l->client[i], RATELIMIT_TABLE_DEFAULT_CAPACITY);
  }
  l->route_rate = stp_xcalloc(cfg->n_routes, sizeof *l->route_rate);
  l->route = stp_xcalloc(cfg->n_routes, sizeof *l->route);
  for (size_t i = 0; i < cfg->n_routes; i++) {
    l->route_rate[i] = rate_of(cfg->routes[i].rate_limit);
    ratelimit_init(&l->route[i], now_ms);
  }
  l->upstream = stp_xcalloc(cfg->n_upstreams, sizeof *l->upstream);
}

void limits_free(stp_limits *l) {
  for (size_t i = 0; i < l->n_listeners; i++) {
    if (l->listener_rate[i].count)
      ratelimit_table_free(&l->client[i]);
    if (l->auth_fail[i].capacity)
      ratelimit_table_free(&l->auth_fail[i]);
  }
  free(l->auth_fail);
  free(l->listener_rate);
  free(l->client);
  free(l->route_rate);
  free(l->route);
  free(l->upstream);
  memset(l, 0, sizeof *l);
}

uint64_t limits_client(stp_limits *l, size_t listener, const char *client_ip, uint64_t now_ms) {
  if (listener >= l->n_listeners || !l->listener_rate[listener].count)
    return 0;
  const stp_rate *r = &l->listener_rate[listener];
  return ratelimit_table_take(&l->client[listener], client_ip, r->count, r->period_ms, now_ms);
}

uint64_t limits_auth_failed(stp_limits *l, size_t listener, const char *client_ip,
                            uint64_t now_ms) {
  if (listener >= l->n_listeners || !l->auth_fail[listener].capacity)
    return 0;
  return ratelimit_table_take(&l->auth_fail[listener], client_ip, LIMITS_AUTH_FAILURES,
                              LIMITS_AUTH_PERIOD_MS, now_ms);
}

uint64_t limits_auth_blocked(stp_limits *l, size_t listener, const char *client_ip,
                             uint64_t now_ms) {
  if (listener >= l->n_listeners || !l->auth_fail[listener].capacity)
    return 0;
  return ratelimit_table_peek(&l->auth_fail[listener], client_ip, LIMITS_AUTH_FAILURES,
                              LIMITS_AUTH_PERIOD_MS, now_ms);
}

uint64_t limits_route(stp_limits *l, size_t route, uint64_t now_ms) {
  if (route >= l->n_routes || !l->route_rate[route].count)
    return 0;
  const stp_rate *r = &l->route_rate[route];
  return ratelimit_take(&l->route[route], r->count, r->period_ms, now_ms);
}
