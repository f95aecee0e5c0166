/* fuzz_config.c - the config loader on hostile YAML: stp_config_load_string,
 * then stp_config_free and stp_diag_free (LeakSanitizer checks that both
 * free everything).
 *
 * Invariants (config.h): success means no error diagnostics and a
 * consistent config (every listener has an address, every route names
 * existing upstreams, names are set); failure means at least one error;
 * every diagnostic is one line starting with the name given.
 */
#include "fuzz_common.h"

#include "smtp-tls-proxy/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* An exact-size copy without a NUL: reading past `size` is a report. */
  char *yaml = malloc(size ? size : 1);
  CHECK(yaml);
  if (size)
    memcpy(yaml, data, size);
  stp_config *cfg = NULL;
  stp_diag diag = {0};
  int rc = stp_config_load_string("fuzz.yaml", yaml, size, &cfg, &diag);
  free(yaml);

  CHECK(diag.n == diag.n_errors + diag.n_warnings);
  for (size_t i = 0; i < diag.n; i++) {
    const char *l = diag.lines[i];
    CHECK(strncmp(l, "fuzz.yaml:", 10) == 0);
    for (const char *q = l; *q; q++)
      CHECK((unsigned char)*q >= 0x20 && *q != 0x7f);
  }
  if (rc == 0) {
    CHECK(cfg && diag.n_errors == 0);
    for (size_t i = 0; i < cfg->n_listeners; i++) {
      const stp_listener_cfg *l = &cfg->listeners[i];
      CHECK(l->name && l->listen.n >= 1);
      CHECK(stp_config_listener(cfg, l->name) != NULL);
      CHECK(l->max_message_size > 0 && l->idle_timeout_ms > 0);
      CHECK(l->tls_min_version >= STP_TLS1_0 && l->tls_min_version <= STP_TLS1_3);
    }
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
      const stp_upstream_cfg *u = &cfg->upstreams[i];
      CHECK(u->name && u->host && u->server_name && u->port > 0);
      CHECK(u->tls_min_version >= STP_TLS1_2 && u->tls_min_version <= STP_TLS1_3);
      CHECK(u->verify || u->insecure);
      CHECK(u->tls != STP_TLS_NONE || u->insecure);
    }
    for (size_t i = 0; i < cfg->n_routes; i++) {
      const stp_route_cfg *r = &cfg->routes[i];
      CHECK(r->name && r->n_upstreams >= 1);
      for (size_t j = 0; j < r->n_upstreams; j++)
        CHECK(r->upstreams[j] < cfg->n_upstreams);
      for (size_t j = 0; j < r->match_listener.n; j++)
        CHECK(stp_config_listener(cfg, r->match_listener.v[j]) != NULL);
    }
  } else {
    CHECK(rc < 0 && cfg == NULL && diag.n_errors >= 1);
  }
  stp_config_free(cfg);
  stp_diag_free(&diag);
  return 0;
}
