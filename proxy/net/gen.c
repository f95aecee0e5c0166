/* gen.c - configuration generations (see gen.h). */
#include "gen.h"
#include "oauth2_net.h"

#include <stdio.h>
#include <stdlib.h>

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
  if (tok_prepare(cfg, err, errlen) < 0) { /* a signing key that does not load */
    srv_gen_unref(g);
    return NULL;
  }
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
