/* test_config_spool.c - the `spool:` section and on_upstream_failure:
 * defaults, every key, and the errors (byte-exact, FILE:LINE:COL). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg_test.h"
#include "smtp-tls-proxy/config.h"
#include "smtp-tls-proxy/util.h"

TestSuite(config_spool, .fini = cfg_diag_reset);

#define LST "listeners:\n  - name: lan\n    listen: \":0\"\n"
#define UPS "upstreams:\n  - name: up\n    host: smtp.example.com\n"
#define RT_SPOOL "routes:\n  - name: r\n    upstream: up\n    on_upstream_failure: spool\n"

Test(config_spool, defaults) {
  stp_config *cfg =
      cfg_load(LST UPS RT_SPOOL "spool:\n  dir: /var/spool/stp\n  notify: pm@x.test\n");
  cr_assert_not_null(cfg, "%s", cfg_diags());
  const stp_spool_cfg *s = cfg->spool;
  cr_assert_str_eq(s->dir, "/var/spool/stp");
  cr_assert_eq(s->max_size, 2ull << 30);
  cr_assert_eq(s->max_messages, 10000);
  cr_assert_eq(s->n_retry, 4);
  cr_assert_eq(s->retry_ms[0], 60000);
  cr_assert_eq(s->retry_ms[3], 3600000);
  cr_assert_eq(s->max_age_ms, 5ull * 86400 * 1000);
  cr_assert_str_eq(s->notify, "pm@x.test");
  cr_assert_not(s->notify_sender);
  cr_assert(cfg->routes[0].spool);
  cr_assert_eq(cfg_diag.n, 0, "%s", cfg_diags());
  stp_config_free(cfg);
}

Test(config_spool, every_key) {
  stp_config *cfg = cfg_load(LST UPS RT_SPOOL "spool:\n  dir: /s/\n  max_size: 10MiB\n"
                                              "  max_messages: 5\n  retry: [10s, 2m]\n"
                                              "  max_age: 1h\n  notify: pm@x.test\n"
                                              "  notify_sender: true\n");
  cr_assert_not_null(cfg, "%s", cfg_diags());
  const stp_spool_cfg *s = cfg->spool;
  cr_assert_str_eq(s->dir, "/s", "a trailing slash is dropped");
  cr_assert_eq(s->max_size, 10u << 20);
  cr_assert_eq(s->max_messages, 5);
  cr_assert_eq(s->n_retry, 2);
  cr_assert_eq(s->retry_ms[0], 10000);
  cr_assert_eq(s->retry_ms[1], 120000);
  cr_assert_eq(s->max_age_ms, 3600000);
  cr_assert(s->notify_sender);
  stp_config_free(cfg);
}

Test(config_spool, retry_single_value_and_defer_is_the_default) {
  stp_config *cfg = cfg_load(LST UPS "routes:\n  - name: r\n    upstream: up\n"
                                     "spool:\n  dir: /s\n  retry: 30s\n  notify_sender: true\n");
  cr_assert_not_null(cfg, "%s", cfg_diags());
  cr_assert_eq(cfg->spool->n_retry, 1);
  cr_assert_eq(cfg->spool->retry_ms[0], 30000);
  cr_assert_not(cfg->routes[0].spool);
  stp_config_free(cfg);
}

Test(config_spool, no_spool_section_means_no_spool) {
  stp_config *cfg = cfg_load(LST UPS "routes:\n  - name: r\n    upstream: up\n"
                                     "    on_upstream_failure: defer\n");
  cr_assert_not_null(cfg, "%s", cfg_diags());
  cr_assert_null(cfg->spool);
  cr_assert_not(cfg->routes[0].spool);
  stp_config_free(cfg);
}

Test(config_spool, spool_route_needs_the_section) {
  cfg_fails_with(LST UPS RT_SPOOL,
                 "t.yaml:10:26: error: on_upstream_failure: spool needs a top-level "
                 "'spool:' section (dir, max_size, ...)");
}

Test(config_spool, passthrough_listener_cannot_spool) {
  cfg_fails_with(
      "listeners:\n  - name: lan\n    listen: \":0\"\n"
      "  - name: pt\n    listen: \":1\"\n    tls: implicit\n    auth: passthrough\n" UPS RT_SPOOL
      "spool: { dir: /s, notify: a@b.c }\n",
      "t.yaml:6:10: warning: no certificate: a self-signed one will be generated at start\n"
      "t.yaml:14:26: error: route 'r' cannot spool: listener 'pt' uses auth: passthrough "
      "(the device's own password would have to be kept for the retries); set "
      "match.listener to other listeners or use on_upstream_failure: defer");
}

Test(config_spool, passthrough_listener_elsewhere_is_fine) {
  stp_config *cfg =
      cfg_load("listeners:\n  - name: lan\n    listen: \":0\"\n"
               "  - name: pt\n    listen: \":1\"\n    auth: passthrough\n" UPS
               "routes:\n  - name: r\n    match: { listener: lan }\n    upstream: up\n"
               "    on_upstream_failure: spool\nspool: { dir: /s, notify: a@b.c }\n");
  cr_assert_not_null(cfg, "%s", cfg_diags());
  cr_assert(cfg->routes[0].spool);
  stp_config_free(cfg);
}

Test(config_spool, bad_values) {
  cfg_fails_with(
      LST UPS RT_SPOOL "spool:\n  max_size: 0\n  max_messages: x\n  retry: []\n"
                       "  max_age: soon\n  notify: nobody\n  notify_sender: maybe\n"
                       "  colour: red\n",
      "t.yaml:12:3: error: spool needs 'dir' (e.g. /var/spool/smtp-tls-proxy)\n"
      "t.yaml:12:13: error: max_size must be greater than 0\n"
      "t.yaml:13:17: error: bad max_messages 'x' (expected an integer from 1 to 10000000)\n"
      "t.yaml:14:10: error: 'retry' needs 1 to 32 intervals\n"
      "t.yaml:15:12: error: bad duration 'soon' for max_age (use e.g. 30s, 5m, 1h, 250ms)\n"
      "t.yaml:16:11: error: bad address 'nobody' for notify (expected user@domain)\n"
      "t.yaml:17:18: error: bad notify_sender 'maybe' (expected true or false)\n"
      "t.yaml:18:3: error: unknown key 'colour' in spool");
}

Test(config_spool, bad_on_upstream_failure) {
  cfg_fails_with(LST UPS "routes:\n  - name: r\n    upstream: up\n    on_upstream_failure: queue\n",
                 "t.yaml:10:26: error: bad on_upstream_failure 'queue' (expected defer or spool)");
}

Test(config_spool, dir_too_long_for_the_socket) {
  char yaml[1024], dir[120];
  memset(dir, 'd', sizeof dir - 1);
  dir[0] = '/';
  dir[sizeof dir - 1] = '\0';
  snprintf(yaml, sizeof yaml,
           LST UPS "routes:\n  - name: r\n    upstream: up\nspool: { dir: %s }\n", dir);
  stp_config *cfg = cfg_load(yaml);
  cr_assert_null(cfg);
  cr_assert(strstr(cfg_diags(), "is too long (at most 94 characters)"), "%s", cfg_diags());
}

Test(config_spool, nobody_to_notify_is_a_warning) {
  stp_config *cfg =
      cfg_load(LST UPS "routes:\n  - name: r\n    upstream: up\nspool: { dir: /s }\n");
  cr_assert_not_null(cfg, "%s", cfg_diags());
  cr_assert_str_eq(cfg_diags(),
                   "t.yaml:10:8: warning: spool has neither 'notify' nor 'notify_sender': "
                   "a message that finally fails is only logged");
  stp_config_free(cfg);
}

Test(config_spool, relative_dir_resolves_against_the_file) {
  char dir[] = "/tmp/stp-cfg-spool-XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  char path[256], yaml[512];
  snprintf(path, sizeof path, "%s/p.yaml", dir);
  snprintf(yaml, sizeof yaml,
           LST UPS "routes:\n  - name: r\n    upstream: up\n"
                   "spool: { dir: ./q, notify: a@b.c }\n");
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fputs(yaml, f);
  fclose(f);
  stp_config *cfg = NULL;
  cfg_diag_reset();
  cr_assert_eq(stp_config_load(path, &cfg, &cfg_diag), STP_OK, "%s", cfg_diags());
  char want[300];
  snprintf(want, sizeof want, "%s/q", dir);
  cr_assert_str_eq(cfg->spool->dir, want);
  stp_config_free(cfg);
  unlink(path);
  rmdir(dir);
}

/* `queue` runs from an operator's shell, without the service's secrets. */
Test(config_spool, layout_load_reads_no_secret) {
  char dir[] = "/tmp/stp-cfg-layout-XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  char path[256];
  snprintf(path, sizeof path, "%s/p.yaml", dir);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fputs(LST "upstreams:\n  - name: up\n    host: smtp.example.com\n"
            "    auth: { username: u, password_env: STP_SURELY_UNSET_VAR,"
            " }\n  - name: up2\n    host: smtp.example.com\n"
            "    auth: { username: u, password_file: /nonexistent/secret }\n" RT_SPOOL
            "spool: { dir: /s, notify: a@b.c }\n",
        f);
  fclose(f);
  stp_config *cfg = NULL;
  cfg_diag_reset();
  cr_assert_lt(stp_config_load(path, &cfg, &cfg_diag), 0, "a normal load needs the secrets");
  cr_assert(strstr(cfg_diags(), "environment variable STP_SURELY_UNSET_VAR is not set"), "%s",
            cfg_diags());
  cfg_diag_reset();
  cr_assert_eq(stp_config_load_layout(path, &cfg, &cfg_diag), STP_OK, "%s", cfg_diags());
  cr_assert_str_eq(cfg->spool->dir, "/s");
  cr_assert_str_eq(cfg->upstreams[0].secret, "(not read)");
  cr_assert_str_eq(cfg->upstreams[1].secret, "(not read)");
  stp_config_free(cfg);
  unlink(path);
  rmdir(dir);
}

Test(config_spool, shared_defaults_to_false_and_is_a_bool) {
  stp_config *cfg = cfg_load(LST UPS RT_SPOOL "spool:\n  dir: /s\n  notify: pm@x.test\n");
  cr_assert_not_null(cfg, "%s", cfg_diags());
  cr_assert_not(cfg->spool->shared);
  stp_config_free(cfg);
  cfg = cfg_load(LST UPS RT_SPOOL "spool:\n  dir: /s\n  notify: pm@x.test\n  shared: true\n");
  cr_assert_not_null(cfg, "%s", cfg_diags());
  cr_assert(cfg->spool->shared);
  stp_config_free(cfg);
  cfg = cfg_load(LST UPS RT_SPOOL "spool:\n  dir: /s\n  notify: pm@x.test\n  shared: often\n");
  cr_assert_null(cfg);
}
