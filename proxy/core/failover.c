/* failover.c - a route's upstreams in order, past back-off (see failover.h). */
#include "smtp-tls-proxy/failover.h"

#include <stdio.h>
#include <string.h>

static void note(failover *f, const char *name, const char *why) {
  size_t used = strlen(f->skipped);
  snprintf(f->skipped + used, sizeof f->skipped - used, "%s%s:%s", used ? "," : "", name, why);
}

void failover_begin(failover *f, const stp_config *cfg, size_t route) {
  memset(f, 0, sizeof *f);
  f->cfg = cfg;
  f->route = &cfg->routes[route];
  f->prev = f->route->upstreams[0];
}

size_t failover_current(const failover *f) {
  return f->route->upstreams[f->pos];
}

bool failover_moved(const failover *f) {
  return f->pos > 0;
}

long failover_pick(failover *f, const backoff_state *table, uint64_t now_ms) {
  while (backoff_active(&table[failover_current(f)], now_ms)) {
    note(f, f->cfg->upstreams[failover_current(f)].name, "backoff");
    if (f->pos + 1 >= f->route->n_upstreams)
      return -1;
    f->prev = failover_current(f);
    f->pos++;
  }
  return (long)failover_current(f);
}

bool failover_failed(failover *f, backoff_state *table, const char *why, bool before_ready,
                     bool count, uint64_t now_ms, uint64_t *backoff_ms) {
  size_t index = failover_current(f);
  *backoff_ms = 0;
  if (before_ready && count && backoff_failed(&table[index], now_ms))
    *backoff_ms = backoff_remaining(&table[index], now_ms);
  note(f, f->cfg->upstreams[index].name, why);
  if (!before_ready || f->pos + 1 >= f->route->n_upstreams)
    return false;
  f->prev = index;
  f->pos++;
  return true;
}
