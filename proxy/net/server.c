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

#include "metrics_http.h"
#include "pool.h"
#include "server.h"
#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/util.h"

srv_gen *srv_gen_ref(srv_gen *g) {
  g->refs++;
  return g;
}

void srv_gen_unref(srv_gen *g) {
  if (!g || --g->refs > 0)
    return;
  for (size_t i = 0; i < g->cfg->n_upstreams; i++)
    tls_ctx_free(g->up_tls[i]);
  for (size_t i = 0; i < g->cfg->n_listeners; i++)
    tls_ctx_free(g->lan_tls[i]);
  free(g->up_tls);
  free(g->lan_tls);
  limits_free(&g->limits);
  stp_config_free(g->cfg);
  free(g);
}

srv_gen *srv_gen_new(stp_config *cfg, char *err, size_t errlen) {
  srv_gen *g = stp_xcalloc(1, sizeof *g);
  g->refs = 1;
  g->cfg = cfg;
  g->up_tls = stp_xcalloc(cfg->n_upstreams, sizeof *g->up_tls);
  g->lan_tls = stp_xcalloc(cfg->n_listeners, sizeof *g->lan_tls);
  limits_init(&g->limits, cfg, stp_now_ms());
  char why[256];
  for (size_t i = 0; i < cfg->n_upstreams; i++) {
    const stp_upstream_cfg *u = &cfg->upstreams[i];
    if (u->tls == STP_TLS_NONE)
      continue;
    g->up_tls[i] = tls_ctx_client(u->ca_file, u->tls_min_version, u->verify, why, sizeof why);
    if (!g->up_tls[i]) {
      snprintf(err, errlen, "upstream %s: %s", u->name, why);
      srv_gen_unref(g);
      return NULL;
    }
    if (!u->verify)
      stp_logf(STP_LOG_WARN, NULL,
               "upstream %s: certificate verification is OFF (insecure: true); anyone on the "
               "path can read the credentials",
               u->name);
  }
  for (size_t i = 0; i < cfg->n_listeners; i++) {
    const stp_listener_cfg *l = &cfg->listeners[i];
    if (l->tls == STP_TLS_NONE)
      continue;
    g->lan_tls[i] = tls_ctx_server(l->certificate, l->private_key, l->tls_min_version,
                                   cfg->hostname, why, sizeof why);
    if (!g->lan_tls[i]) {
      snprintf(err, errlen, "listener %s: %s", l->name, why);
      srv_gen_unref(g);
      return NULL;
    }
  }
  return g;
}

static void close_signals(server *srv) {
  uv_close((uv_handle_t *)&srv->sig_term, NULL);
  uv_close((uv_handle_t *)&srv->sig_int, NULL);
  uv_close((uv_handle_t *)&srv->sig_hup, NULL);
  uv_close((uv_handle_t *)&srv->grace, NULL);
}

void server_listener_idle(server *srv) {
  if (!srv->stopping || uv_is_closing((uv_handle_t *)&srv->grace))
    return;
  for (size_t i = 0; i < srv->n_listeners; i++) {
    listener *l = srv->listeners[i];
    if (!l->closing || l->n_open > 0 || l->relays)
      return;
  }
  stp_log_kv(STP_LOG_INFO, NULL, "stopped", NULL, 0);
  close_signals(srv);
}

static void grace_cb(uv_timer_t *t) {
  server *srv = t->data;
  stp_logf(STP_LOG_WARN, NULL, "shutdown grace over: closing remaining sessions with 421");
  for (size_t i = 0; i < srv->n_listeners; i++)
    listener_shutdown_sessions(srv->listeners[i]);
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
  pool_close(srv->gen->pool); /* idle upstream connections get QUIT now */
  srv->gen->pool = NULL;
  metrics_http_stop(srv->metrics); /* /healthz fails from now on */
  srv->metrics = NULL;
  for (size_t i = 0; i < srv->n_listeners; i++)
    listener_close(srv->listeners[i]);
  server_listener_idle(srv);
}

static void signal_cb(uv_signal_t *h, int signum) {
  server *srv = h->data;
  if (signum == SIGHUP) {
    server_reload(srv);
    return;
  }
  server_stop(srv);
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
    if (l->closing)
      continue;
    size_t j = 0;
    while (j < g->cfg->n_listeners &&
           (kept[j] ||
            !listener_same_sockets(&l->gen->cfg->listeners[l->index], &g->cfg->listeners[j])))
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
  for (size_t i = 0; i < g->cfg->n_listeners; i++)
    if (!kept[i]) {
      char why[256];
      listener_open(srv, g, i, why, sizeof why); /* logged as listen-failed */
    }
  free(kept);
  srv_gen_unref(old);
  stp_log_setup(g->cfg->log_level, g->cfg->log_format == STP_LOG_JSON, 2);
  stp_log_kv(STP_LOG_INFO, NULL, "reloaded", NULL, 0);
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
    if (l->gen == srv->gen && (l->closing || l->n_open == 0))
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
  uv_timer_init(loop, &srv->grace);
  srv->grace.data = srv;
  uv_signal_init(loop, &srv->sig_term);
  uv_signal_init(loop, &srv->sig_int);
  uv_signal_init(loop, &srv->sig_hup);
  srv->sig_term.data = srv->sig_int.data = srv->sig_hup.data = srv;
  uv_signal_start(&srv->sig_term, signal_cb, SIGTERM);
  uv_signal_start(&srv->sig_int, signal_cb, SIGINT);
  uv_signal_start(&srv->sig_hup, signal_cb, SIGHUP);
  for (size_t i = 0; i < cfg->n_listeners; i++) {
    char why[256];
    int rc = listener_open(srv, srv->gen, i, why, sizeof why);
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
