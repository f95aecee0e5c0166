/* test_config_alerts.c - `alerts:` and an upstream's probe_interval:
 * defaults, every key, and the errors (byte-exact, FILE:LINE:COL). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg_test.h"
#include "smtp-tls-proxy/config.h"
#include "smtp-tls-proxy/util.h"

TestSuite(config_alerts, .fini = cfg_diag_reset);

#define LST "listeners:\n  - name: lan\n    listen: \":0\"\n"
#define UPS "upstreams:\n  - name: up\n    host: smtp.example.com\n"
#define RT "routes:\n  - name: r\n    upstream: up\n"

Test(config_alerts, probe_interval_default_off_and_value) {
  stp_config *cfg = cfg_load(LST UPS RT);
  cr_assert_not_null(cfg, "%s", cfg_diags());
  cr_assert_eq(cfg->upstreams[0].probe_interval_ms, 15 * 60 * 1000);
  cr_assert_null(cfg->alerts);
  stp_config_free(cfg);
  cfg = cfg_load(LST UPS "    probe_interval: 0s\n" RT);
  cr_assert_not_null(cfg, "%s", cfg_diags());
  cr_assert_eq(cfg->upstreams[0].probe_interval_ms, 0);
  stp_config_free(cfg);
  cfg = cfg_load(LST UPS "    probe_interval: 30s\n" RT);
  cr_assert_eq(cfg->upstreams[0].probe_interval_ms, 30000);
  stp_config_free(cfg);
  cfg_fails_with(
      LST UPS "    probe_interval: soon\n" RT,
      "t.yaml:7:21: error: bad duration 'soon' for probe_interval (use e.g. 30s, 5m, 1h, "
      "250ms)");
}

Test(config_alerts, defaults_and_every_key) {
  stp_config *cfg = cfg_load(LST UPS RT "alerts:\n  email: admin@example.com\n");
  cr_assert_not_null(cfg, "%s", cfg_diags());
  const stp_alerts_cfg *a = cfg->alerts;
  cr_assert_str_eq(a->email, "admin@example.com");
  cr_assert_null(a->webhook);
  cr_assert_eq(a->min_interval_ms, 3600000);
  cr_assert_eq(a->alert_after_ms, 300000);
  cr_assert_str_eq(a->ca_file, "/etc/ssl/certs/ca-certificates.crt");
  stp_config_free(cfg);
  cfg = cfg_load(LST UPS RT "alerts:\n  webhook: https://127.0.0.1:8443/hook?x=1\n"
                            "  min_interval: 10m\n  alert_after: 0s\n");
  cr_assert_not_null(cfg, "%s", cfg_diags());
  cr_assert_str_eq(cfg->alerts->webhook, "https://127.0.0.1:8443/hook?x=1");
  cr_assert_eq(cfg->alerts->min_interval_ms, 600000);
  cr_assert_eq(cfg->alerts->alert_after_ms, 0);
  stp_config_free(cfg);
}

Test(config_alerts, errors) {
  cfg_fails_with(LST UPS RT "alerts:\n  webhook: http://hooks.example.com/x\n",
                 "t.yaml:11:12: error: bad webhook URL 'http://hooks.example.com/x' (expected "
                 "https://host[:port]/path)");
  cfg_fails_with(
      LST UPS RT "alerts:\n  email: not an address\n",
      "t.yaml:11:10: error: bad address 'not an address' for email (expected user@domain)");
  cfg_fails_with(LST UPS RT "alerts:\n  min_interval: 1h\n",
                 "t.yaml:11:3: error: alerts needs 'webhook' or 'email' (or both)");
  cfg_fails_with(LST UPS RT "alerts:\n  email: a@b.c\n  min_interval: 0s\n",
                 "t.yaml:12:17: error: min_interval must be greater than 0");
  cfg_fails_with(LST UPS RT "alerts:\n  email: a@b.c\n  color: red\n",
                 "t.yaml:12:3: error: unknown key 'color' in alerts");
  cfg_fails_with(
      LST UPS "routes:\n  - name: r\n    upstream: up\n    match:\n      rcpt_to: [\"*@lan\"]\n"
              "alerts:\n  email: admin@example.com\n",
      "t.yaml:13:10: error: no route takes alert mail to 'admin@example.com' (sender <>, "
      "no listener): add a route whose match allows it");
}
