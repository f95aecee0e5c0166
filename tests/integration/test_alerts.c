/* test_alerts.c - alerts through the real binary: a wrong-password
 * upstream found by a probe raises credentials_refused and upstream_down,
 * once each (later ones are suppressed and logged), POSTed as JSON to a
 * local HTTPS receiver (tests/tools/webhook_receiver.py) with verified TLS
 * and mailed through the route to aiosmtpd; a webhook whose certificate
 * the configured CA does not sign gets nothing, and the log says so; a
 * receiver answering 503 first gets the alert on a retry. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "probe_common.h"
#include "spool_common.h"

typedef struct receiver {
  h_proc *proc;
  int port;
  char record[512];
} receiver;

static void receiver_start(receiver *r, const char *fail_first) {
  static unsigned seq;
  char script[512], crt[512], key[512], name[32], line[128];
  snprintf(name, sizeof name, "hook%u", seq++);
  snprintf(script, sizeof script, "%s/webhook_receiver.py", STP_TOOLS_DIR);
  snprintf(crt, sizeof crt, "%s/server.crt", h_certs());
  snprintf(key, sizeof key, "%s/server.key", h_certs());
  snprintf(r->record, sizeof r->record, "%s/%s.jsonl", h_dir(), name);
  char *argv[] = {H_PYTHON,  script,         "--cert",           crt, "--key", key, "--record",
                  r->record, "--fail-first", (char *)fail_first, NULL};
  r->proc = h_spawn(name, argv, NULL);
  cr_assert_eq(h_proc_wait_line(r->proc, "READY ", 15000, line, sizeof line), 0);
  cr_assert_eq(sscanf(line, "READY %d", &r->port), 1);
}

/* Upstream "up" (good, carries the route and the alert mail) and "bad"
 * (same server, a password it refuses), probed every second. */
static void proxy_start_route(h_proxy *px, const h_upstream *u, const char *alerts,
                              const char *route_upstream) {
  probe_start_two(px, u, "0s", alerts, route_upstream);
}

static void proxy_start(h_proxy *px, const h_upstream *u, const char *alerts) {
  proxy_start_route(px, u, alerts, "    upstream: up\n");
}

static size_t count_event(const char *record, const char *event) {
  h_lines l;
  size_t n = 0;
  h_records(record, event, &l);
  n = l.n;
  h_lines_free(&l);
  return n;
}

ITest(integ, alerts_webhook_and_email_once_per_event_with_the_hint) {
  h_upstream u;
  h_proxy px;
  receiver r;
  h_upstream_start(&u, "starttls", NULL);
  receiver_start(&r, "0");
  char alerts[1024];
  snprintf(alerts, sizeof alerts,
           "alerts:\n  webhook: https://localhost:%d/hooks/T000/B000\n  ca_file: %s/ca.crt\n"
           "  email: admin@example.com\n  min_interval: 1h\n  alert_after: 2s\n",
           r.port, h_certs());
  proxy_start(&px, &u, alerts);
  cr_assert_eq(h_wait_records(r.record, "credentials_refused", 1, 8000), 1);
  cr_assert_eq(h_wait_records(r.record, "upstream_down", 1, 8000), 1);
  /* More probes fail meanwhile: suppressed, and the log says so. */
  char line[4096];
  const char *sup[] = {"alert-suppressed", "alert=credentials_refused", "upstream=bad", NULL};
  cr_assert(h_file_wait_line(px.log, sup, 5000, line, sizeof line), "no suppressed line");
  h_sleep_ms(1500);
  cr_assert_eq(count_event(r.record, "credentials_refused"), 1, "deduplicated");
  cr_assert_eq(count_event(r.record, "upstream_down"), 1, "deduplicated");
  h_lines l;
  cr_assert_eq(h_records(r.record, "credentials_refused", &l), 1);
  const char *j = l.v[0];
  char s[1024];
  cr_assert_eq(h_json_str(j, "upstream", s, sizeof s), 1);
  cr_assert_str_eq(s, "bad");
  cr_assert_eq(h_json_str(j, "host", s, sizeof s), 1);
  cr_assert_str_eq(s, "proxy.test");
  cr_assert_eq(h_json_str(j, "hint", s, sizeof s), 1, "%s", j);
  cr_assert(strstr(s, "credentials"), "hint: %s", s);
  cr_assert_eq(h_json_str(j, "reason", s, sizeof s), 1);
  cr_assert(strstr(s, "535"), "the provider's words: %s", s);
  cr_assert_eq(h_json_str(j, "text", s, sizeof s), 1);
  cr_assert(!strncmp(s, "proxy.test: upstream bad refused the proxy's credentials (", 58), "%s", s);
  cr_assert_null(strchr(s, '\n'), "one line");
  cr_assert_eq(h_json_str(j, "time", s, sizeof s), 1);
  cr_assert_eq(strlen(s), 20, "RFC 3339 UTC: %s", s);
  cr_assert_eq(h_json_str(j, "_path", s, sizeof s), 1);
  cr_assert_str_eq(s, "/hooks/T000/B000");
  cr_assert_null(strstr(j, "not-the-password"));
  h_lines_free(&l);
  /* The same alerts by mail, through route "default" to upstream "up". */
  cr_assert_geq(h_wait_records(u.record, "message", 2, 8000), 2);
  h_records(u.record, "message", &l);
  bool creds = false, down = false;
  for (size_t i = 0; i < l.n; i++) {
    bool to_admin = false;
    cr_assert_eq(h_json_strlist(l.v[i], "rcpt_tos", "admin@example.com", &to_admin), 1);
    cr_assert(to_admin);
    cr_assert_eq(h_json_str(l.v[i], "mail_from", s, sizeof s), 1);
    cr_assert(!strcmp(s, "") || !strcmp(s, "<>"), "alerts go from <>: %s", s);
    size_t len;
    unsigned char *data = h_json_b64(l.v[i], "data_b64", &len);
    cr_assert_not_null(data);
    creds |= strstr((char *)data, "Subject: [smtp-tls-proxy] credentials_refused bad") != NULL;
    down |= strstr((char *)data, "Subject: [smtp-tls-proxy] upstream_down bad") != NULL;
    cr_assert_null(strstr((char *)data, "not-the-password"));
    free(data);
  }
  h_lines_free(&l);
  cr_assert(creds && down, "both alerts mailed");
}

ITest(integ, alerts_webhook_with_a_wrong_ca_gets_nothing) {
  h_upstream u;
  h_proxy px;
  receiver r;
  h_upstream_start(&u, "starttls", NULL);
  receiver_start(&r, "0");
  char alerts[1024];
  /* selfsigned.crt is a CA file that did not sign server.crt. */
  snprintf(alerts, sizeof alerts,
           "alerts:\n  webhook: https://localhost:%d/x\n  ca_file: %s/selfsigned.crt\n"
           "  alert_after: 1h\n",
           r.port, h_certs());
  proxy_start(&px, &u, alerts);
  char line[2048];
  const char *fail[] = {"alert-webhook-failed", "alert=credentials_refused", "retry_in=5s", NULL};
  cr_assert(h_file_wait_line(px.log, fail, 8000, line, sizeof line), "no failure line");
  cr_assert(strstr(line, "detail="), "%s", line);
  cr_assert_eq(count_event(r.record, NULL), 0, "nothing reached the receiver");
}

ITest(integ, alerts_webhook_retried_after_a_503) {
  h_upstream u;
  h_proxy px;
  receiver r;
  h_upstream_start(&u, "starttls", NULL);
  receiver_start(&r, "1");
  char alerts[1024];
  snprintf(alerts, sizeof alerts,
           "alerts:\n  webhook: https://localhost:%d/x\n  ca_file: %s/ca.crt\n  alert_after: 1h\n",
           r.port, h_certs());
  proxy_start(&px, &u, alerts);
  cr_assert_eq(h_wait_records(r.record, "refused", 1, 8000), 1);
  char line[2048];
  const char *fail[] = {"alert-webhook-failed", "detail=\"HTTP 503\"", "retry_in=5s", NULL};
  cr_assert(h_file_wait_line(px.log, fail, 3000, line, sizeof line), "no retry line");
  cr_assert_eq(h_wait_records(r.record, "credentials_refused", 1, 10000), 1, "delivered on retry");
}

/* A reload that fixes the password: the next probe works and the down
 * alert is followed by upstream_recovered (the health and the dedupe state
 * outlive the reload). */
ITest(integ, alerts_upstream_recovered_after_a_reload_fixes_the_password) {
  h_upstream u;
  h_proxy px;
  receiver r;
  h_upstream_start(&u, "starttls", NULL);
  receiver_start(&r, "0");
  char alerts[1024];
  snprintf(alerts, sizeof alerts,
           "alerts:\n  webhook: https://localhost:%d/x\n  ca_file: %s/ca.crt\n  alert_after: 1s\n",
           r.port, h_certs());
  proxy_start(&px, &u, alerts);
  cr_assert_eq(h_wait_records(r.record, "upstream_down", 1, 8000), 1);
  cr_assert_eq(count_event(r.record, "upstream_recovered"), 0);
  size_t len;
  char *yaml = h_read_file(px.config, &len);
  char fixed[8192];
  sp_replace(yaml, "password_env: STP_WRONG_PW", "password_env: STP_TEST_PW", fixed, sizeof fixed);
  free(yaml);
  h_write_file(px.config, fixed, strlen(fixed));
  h_proc_signal(px.proc, SIGHUP);
  cr_assert_eq(h_wait_records(r.record, "upstream_recovered", 1, 8000), 1);
  h_lines l;
  h_records(r.record, "upstream_recovered", &l);
  char s[512];
  cr_assert_eq(h_json_str(l.v[0], "text", s, sizeof s), 1);
  cr_assert(strstr(s, "upstream bad works again"), "%s", s);
  h_lines_free(&l);
}

/* spool_filling at 80% of max_messages, and message_failed when spooled
 * messages expire (one alert: the rest are the same event, suppressed). */
ITest(integ, alerts_spool_filling_and_message_failed) {
  receiver r;
  receiver_start(&r, "0");
  char alerts[1024], yaml[8192];
  snprintf(alerts, sizeof alerts,
           "alerts:\n  webhook: https://localhost:%d/x\n  ca_file: %s/ca.crt\n  alert_after: 1h\n",
           r.port, h_certs());
  sp_yaml_top(h_free_port(), "starttls", "  max_messages: 5\n  retry: [1s]\n  max_age: 2s\n",
              alerts, yaml, sizeof yaml);
  h_proxy px;
  h_proxy_start_yaml(&px, yaml);
  for (int i = 0; i < 4; i++) {
    char text[512];
    cr_assert_eq(sp_send(px.port, (const char *const[]){"a@example.com", NULL},
                         "Subject: s\r\n\r\nx\r\n", text, sizeof text),
                 250, "%s", text);
  }
  cr_assert_eq(h_wait_records(r.record, "spool_filling", 1, 8000), 1);
  h_lines l;
  h_records(r.record, "spool_filling", &l);
  char s[512];
  cr_assert_eq(h_json_str(l.v[0], "text", s, sizeof s), 1);
  cr_assert(strstr(s, "the spool is 80% full (4 of 5 messages"), "%s", s);
  cr_assert_eq(h_json_str(l.v[0], "upstream", s, sizeof s), 0, "null: %s", l.v[0]);
  h_lines_free(&l);
  cr_assert_eq(h_wait_records(r.record, "message_failed", 1, 15000), 1);
  h_records(r.record, "message_failed", &l);
  cr_assert_eq(h_json_str(l.v[0], "text", s, sizeof s), 1);
  cr_assert(strstr(s, "expired undelivered"), "%s", s);
  h_lines_free(&l);
  char line[1024];
  const char *sup[] = {"alert-suppressed", "alert=message_failed", NULL};
  cr_assert(h_file_wait_line(px.log, sup, 8000, line, sizeof line));
  cr_assert_eq(count_event(r.record, "message_failed"), 1);
}

/* The route that carries alert mail goes through the failing upstream:
 * the mail fails (logged), and the next failures of the same upstream are
 * suppressed instead of mailing again: no loop; the webhook still goes. */
ITest(integ, alerts_about_the_alert_route_do_not_loop) {
  h_upstream u;
  h_proxy px;
  receiver r;
  h_upstream_start(&u, "starttls", NULL);
  receiver_start(&r, "0");
  char alerts[1024];
  snprintf(alerts, sizeof alerts,
           "alerts:\n  webhook: https://localhost:%d/x\n  ca_file: %s/ca.crt\n"
           "  email: admin@example.com\n  alert_after: 1h\n",
           r.port, h_certs());
  proxy_start_route(&px, &u, alerts, "    upstream: bad\n");
  cr_assert_eq(h_wait_records(r.record, "credentials_refused", 1, 8000), 1);
  char line[2048];
  const char *mail[] = {"alert-email-failed", "alert=credentials_refused", NULL};
  cr_assert(h_file_wait_line(px.log, mail, 8000, line, sizeof line), "no mail failure line");
  h_sleep_ms(3500); /* three more failed probes */
  char *log = h_read_file(px.log, NULL);
  cr_assert_eq(sp_count_lines(log, "alert-email-failed"), 1, "%s", log);
  cr_assert_geq(sp_count_lines(log, "alert-suppressed"), 2, "%s", log);
  free(log);
  cr_assert_eq(count_event(r.record, "credentials_refused"), 1);
  h_lines l;
  cr_assert_eq(h_records(u.record, "message", &l), 0, "nothing was mailed");
  h_lines_free(&l);
}
