/* server.c - start, reload and graceful stop of the whole proxy.
 *
 * Owns: the configuration generations (config + TLS contexts, reference
 * counted so that live sessions finish on the generation they started
 * with), the listeners, the signal handlers and the shutdown grace timer.
 * Guarantees: SIGTERM/SIGINT stop accepting at once, let sessions finish
 * for shutdown_grace, then answer 421 to the rest; the loop then runs dry
 * and main() exits 0. A reload with a bad file changes nothing.
 * Callbacks rule: a reload runs from the SIGHUP handler, on the loop, and
 * calls no session: live relays keep their generation, listeners switch to
 * the new one for connections accepted from then on.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin_http.h"
#include "alerts.h"
#include "apiconn.h"
#include "gen.h"
#include "listener.h"
#include "metrics_http.h"
#include "pool.h"
#include "probe.h"
#include "server.h"
#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/uphealth.h"
#include "smtp-tls-proxy/util.h"
#include "spool.h"
#include "spool_ctl.h"
#include "spool_files.h"
#include "spool_run.h"

/* Once no session is left: the runner cuts its deliveries (they are tried
 * again at the next start), the control socket closes, the spool frees
 * itself when its last job has ended. */
static void stop_spool(server *srv) {
  admin_http_stop(srv->admin); /* it acts on the spool: it goes first */
  srv->admin = NULL;
  spool_run_stop(srv->spool_run);
  spool_ctl_stop(srv->spool_ctl);
  spool_close(srv->spool);
  srv->spool_run = NULL;
  srv->spool_ctl = NULL;
  srv->spool = NULL;
  if (srv->gen)
    srv->gen->spool = NULL;
}

static void close_signals(server *srv) {
  stop_spool(srv);
  uv_close((uv_handle_t *)&srv->sig_term, NULL);
  uv_close((uv_handle_t *)&srv->sig_int, NULL);
  uv_close((uv_handle_t *)&srv->sig_hup, NULL);
  uv_close((uv_handle_t *)&srv->grace, NULL);
}

/* A closing listener went quiet, or the spool's deliveries ended (from
 * the loop): when all have, stop. */
static void listener_quiet_cb(void *ctx) {
  server *srv = ctx;
  if (!srv->stopping || uv_is_closing((uv_handle_t *)&srv->grace) || !srv->spool_drained)
    return;
  for (size_t i = 0; i < srv->n_listeners; i++)
    if (!listener_quiet(srv->listeners[i]))
      return;
  stp_log_kv(STP_LOG_INFO, NULL, "stopped", NULL, 0);
  close_signals(srv);
}

/* Grace over: the spool's deliveries still running are cut when the
 * sessions are gone (stop_spool). */
static void grace_cb(uv_timer_t *t) {
  server *srv = t->data;
  stp_logf(STP_LOG_WARN, NULL, "shutdown grace over: closing remaining sessions with 421");
  srv->spool_drained = true;
  for (size_t i = 0; i < srv->n_listeners; i++)
    listener_shutdown_sessions(srv->listeners[i]);
  listener_quiet_cb(srv);
}

static void spool_drained_cb(void *ctx) {
  server *srv = ctx;
  srv->spool_drained = true;
  listener_quiet_cb(srv);
}

void server_stop(server *srv) {
  if (srv->stopping)
    return;
  srv->stopping = true;
  char grace[32];
  snprintf(grace, sizeof grace, "%llu", (unsigned long long)srv->gen->cfg->shutdown_grace_ms);
  stp_kv kv[] = {{"grace_ms", grace}};
  stp_log_kv(STP_LOG_INFO, NULL, "stopping", kv, 1);
  uv_timer_start(&srv->grace, grace_cb, srv->gen->cfg->shutdown_grace_ms, 0);
  probes_stop(srv->probes);
  srv->probes = NULL;
  alerts_stop(srv->alerts);
  srv->alerts = NULL;
  /* No spool delivery starts from now on; the running ones end (shared:
   * those before their final dot are cut and left to the other replicas). */
  srv->spool_drained = !srv->spool_run;
  spool_run_drain(srv->spool_run, spool_drained_cb, srv);
  pool_close(srv->gen->pool); /* idle upstream connections get QUIT now */
  srv->gen->pool = NULL;
  metrics_http_stop(srv->metrics); /* /healthz fails from now on */
  srv->metrics = NULL;
  admin_http_stop(srv->admin);
  srv->admin = NULL;
  for (size_t i = 0; i < srv->n_listeners; i++)
    listener_close(srv->listeners[i]);
  if (srv->n_listeners == 0)
    close_signals(srv);
}

/* Open listener `index` of gen and keep it (also when it failed: its
 * closing handles must be waited for). */
static int open_listener(server *srv, srv_gen *gen, size_t index, char *err, size_t errlen) {
  listener *l = NULL;
  int rc = listener_open(srv->loop, gen, index, listener_quiet_cb, srv, &l, err, errlen);
  srv->listeners = stp_xrealloc(srv->listeners, (srv->n_listeners + 1) * sizeof *srv->listeners);
  srv->listeners[srv->n_listeners++] = l;
  return rc;
}

static void signal_cb(uv_signal_t *h, int signum) {
  server *srv = h->data;
  if (signum == SIGHUP) {
    server_reload(srv);
    return;
  }
  server_stop(srv);
}

/* The queue stays across reloads; the spool takes the new limits and
 * schedule, the runner the new routes and upstreams. Opening or moving
 * the spool directory needs a restart (it is locked and read back once). */
static void reload_spool(server *srv, srv_gen *g) {
  const stp_spool_cfg *sc = g->cfg->spool;
  g->spool = srv->spool;
  if (srv->spool && sc)
    spool_reconfigure(srv->spool, sc);
  if (!srv->spool != !sc) {
    stp_kv kv[] = {{"spool", sc ? "added" : "removed"},
                   {"effect", sc ? "routes pass through until a restart"
                                 : "the queue keeps being delivered until a restart"}};
    stp_log_kv(STP_LOG_WARN, NULL, "reload-spool-needs-restart", kv, 2);
  }
  if (srv->spool_run)
    spool_run_set_gen(srv->spool_run, g);
}

int server_reload(server *srv) {
  stp_config *cfg = NULL;
  stp_diag diag = {0};
  int rc = stp_config_load(srv->config_path, &cfg, &diag);
  for (size_t i = 0; i < diag.n; i++) {
    stp_kv kv[] = {{"diagnostic", diag.lines[i]}};
    stp_log_kv(rc < 0 ? STP_LOG_ERROR : STP_LOG_WARN, NULL, "reload", kv, 1);
  }
  stp_diag_free(&diag);
  if (rc < 0) {
    stp_logf(STP_LOG_ERROR, NULL, "reload refused: the old configuration stays in force");
    return rc;
  }
  char err[512];
  srv_gen *g = srv_gen_new(cfg, err, sizeof err);
  if (!g) {
    stp_logf(STP_LOG_ERROR, NULL, "reload refused (%s): the old configuration stays", err);
    return STP_EINVAL;
  }
  /* A listener whose addresses did not change keeps its sockets, so no
   * connection waiting in its accept queue is lost; the others close
   * before the new ones bind (the same ports may be wanted). Live sessions
   * keep the old generation until they end. */
  bool *kept = stp_xcalloc(g->cfg->n_listeners ? g->cfg->n_listeners : 1, sizeof *kept);
  size_t old_n = srv->n_listeners;
  for (size_t i = 0; i < old_n; i++) {
    listener *l = srv->listeners[i];
    if (listener_closing(l))
      continue;
    size_t j = 0;
    while (j < g->cfg->n_listeners &&
           (kept[j] || !listener_same_sockets(listener_cfg(l), &g->cfg->listeners[j])))
      j++;
    if (j < g->cfg->n_listeners) {
      listener_adopt(l, g, j);
      kept[j] = true;
    } else {
      listener_close(l);
    }
  }
  srv_gen *old = srv->gen;
  pool_close(old->pool); /* old connections may carry old credentials */
  old->pool = NULL;
  g->pool = pool_new(srv->loop, g->cfg);
  srv->gen = g;
  uphealth_reset(g->cfg); /* names kept across the reload keep their health */
  if (srv->probes)
    probes_set_gen(srv->probes, g);
  char aerr[256];
  if (srv->alerts && alerts_set_gen(srv->alerts, g, aerr, sizeof aerr) < 0) {
    stp_kv kv[] = {{"reason", aerr}, {"effect", "the old alert settings stay"}};
    stp_log_kv(STP_LOG_ERROR, NULL, "reload-alerts", kv, 2);
  }
  admin_http_set_gen(srv->admin, g);
  reload_spool(srv, g);
  for (size_t i = 0; i < g->cfg->n_listeners; i++)
    if (!kept[i]) {
      char why[256];
      open_listener(srv, g, i, why, sizeof why); /* logged as listen-failed */
    }
  free(kept);
  srv_gen_unref(old);
  stp_log_setup(g->cfg->log_level, g->cfg->log_format == STP_LOG_JSON, 2);
  stp_log_kv(STP_LOG_INFO, NULL, "reloaded", NULL, 0);
  return 0;
}

static bool server_degraded(void *ctx, char *why, size_t cap) {
  server *srv = ctx;
  return srv->spool && spool_degraded(srv->spool, why, cap);
}

/* The spool is opened (and queue/ read back) before the listeners, so
 * that tmp/ is emptied before any session writes to it. */
static int start_spool(server *srv, const stp_config *cfg) {
  char err[512];
  if (!cfg->spool)
    return 0;
  int rc = spool_open(srv->loop, cfg->spool, &srv->spool, err, sizeof err);
  if (rc == 0) {
    char tmp[600];
    if (cfg->spool->shared) /* tmp/<tag>.api: this replica's own */
      snprintf(tmp, sizeof tmp, "%s/tmp/%sapi", cfg->spool->dir, spool_files_tmp_prefix());
    else
      snprintf(tmp, sizeof tmp, "%s/tmp", cfg->spool->dir);
    apiconn_set_tmpdir(tmp); /* API upstreams' copies: the spool's disk, private */
    srv->gen->spool = srv->spool;
    srv->spool_run = spool_run_new(srv->loop, srv->spool, srv->gen);
    rc = spool_ctl_start(srv->loop, srv->spool, srv->spool_run, &srv->spool_ctl, err, sizeof err);
  }
  if (rc < 0) {
    fprintf(stderr, "smtp-tls-proxy: %s\n", err);
    return STP_EIO;
  }
  return 0;
}

/* Healthy while the loop runs, we are not stopping, and every listener of
 * the current configuration has its sockets open. */
static bool server_healthy(void *ctx) {
  server *srv = ctx;
  if (srv->stopping)
    return false;
  for (size_t i = 0; i < srv->n_listeners; i++) {
    listener *l = srv->listeners[i];
    if (listener_gen(l) == srv->gen && !listener_serving(l, srv->gen))
      return false;
  }
  return true;
}

int server_start(server *srv, uv_loop_t *loop, const char *config_path, stp_config *cfg) {
  memset(srv, 0, sizeof *srv);
  srv->loop = loop;
  srv->config_path = config_path;
  char err[512];
  srv->gen = srv_gen_new(cfg, err, sizeof err);
  if (!srv->gen) {
    fprintf(stderr, "smtp-tls-proxy: %s\n", err);
    return STP_EINVAL;
  }
  srv->gen->pool = pool_new(loop, cfg);
  uphealth_reset(cfg);
  if (uphealth_install() < 0) {
    fprintf(stderr, "smtp-tls-proxy: too many log observers\n");
    return STP_EINVAL;
  }
  uv_timer_init(loop, &srv->grace);
  srv->grace.data = srv;
  uv_signal_init(loop, &srv->sig_term);
  uv_signal_init(loop, &srv->sig_int);
  uv_signal_init(loop, &srv->sig_hup);
  srv->sig_term.data = srv->sig_int.data = srv->sig_hup.data = srv;
  uv_signal_start(&srv->sig_term, signal_cb, SIGTERM);
  uv_signal_start(&srv->sig_int, signal_cb, SIGINT);
  uv_signal_start(&srv->sig_hup, signal_cb, SIGHUP);
  if (start_spool(srv, cfg) < 0) {
    server_stop(srv);
    return STP_EIO;
  }
  for (size_t i = 0; i < cfg->n_listeners; i++) {
    char why[256];
    int rc = open_listener(srv, srv->gen, i, why, sizeof why);
    if (rc < 0) {
      fprintf(stderr, "smtp-tls-proxy: cannot listen on listener %s: %s\n", cfg->listeners[i].name,
              why);
      server_stop(srv);
      return rc;
    }
  }
  if (cfg->metrics_listen) {
    char why[256];
    int rc = metrics_http_start(loop, cfg->metrics_listen, server_healthy, srv, &srv->metrics, why,
                                sizeof why);
    if (rc < 0) {
      fprintf(stderr, "smtp-tls-proxy: cannot serve metrics on %s: %s\n", cfg->metrics_listen, why);
      server_stop(srv);
      return rc;
    }
    metrics_http_set_degraded(srv->metrics, server_degraded);
  }
  srv->alerts = alerts_start(loop, srv->gen, err, sizeof err);
  if (!srv->alerts) {
    fprintf(stderr, "smtp-tls-proxy: alerts: %s\n", err);
    server_stop(srv);
    return STP_EINVAL;
  }
  srv->probes = probes_start(loop, srv->gen);
  if (cfg->admin) {
    char why[256];
    int rc =
        admin_http_start(loop, srv->gen, srv->spool, srv->spool_run, &srv->admin, why, sizeof why);
    if (rc < 0) {
      fprintf(stderr, "smtp-tls-proxy: cannot serve the admin page on %s: %s\n", cfg->admin->listen,
              why);
      server_stop(srv);
      return rc;
    }
  }
  stp_log_kv(STP_LOG_INFO, NULL, "started", NULL, 0);
  return 0;
}

void server_free(server *srv) {
  for (size_t i = 0; i < srv->n_listeners; i++)
    listener_free(srv->listeners[i]);
  free(srv->listeners);
  srv_gen_unref(srv->gen);
}
