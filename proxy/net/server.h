/* server.h - the running proxy: start, reload and graceful stop.
 *
 * Owns: the current configuration generation (gen.h), every listener
 * (listener.h) current and retired, the signal handlers, the shutdown grace
 * timer, the metrics server, and the spool with its queue runner and
 * control socket (they outlive generations: a reload keeps the queue). Guarantees: see server.c.
 */
#ifndef STP_SERVER_H
#define STP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "gen.h"
#include "listener.h"

typedef struct server {
  uv_loop_t *loop;
  srv_gen *gen;
  listener **listeners; /* current and retired, freed by server_free */
  size_t n_listeners;
  uv_signal_t sig_term, sig_int, sig_hup;
  uv_timer_t grace;
  bool stopping;
  bool spool_drained;           /* stopping: no spool delivery runs any more */
  struct metrics_http *metrics; /* /metrics and /healthz; NULL when off */
  struct spool *spool;          /* spool: section at start; NULL when none */
  struct spool_run *spool_run;
  struct spool_ctl *spool_ctl;
  struct probes *probes;    /* upstream probes (probe.h) */
  struct alerts *alerts;    /* alerts: webhook and email (alerts.h) */
  struct admin_http *admin; /* admin: section at start; NULL when none */
  const char *config_path;
} server;

int server_start(server *srv, uv_loop_t *loop, const char *config_path, stp_config *cfg);
void server_stop(server *srv);
int server_reload(server *srv);
/* After uv_run returned: free listeners and the generation. */
void server_free(server *srv);

#endif
