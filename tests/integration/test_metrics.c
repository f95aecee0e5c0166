/* test_metrics.c - /metrics after known traffic, /healthz, and the HTTP
 * edge cases (404, 405), against the real binary with curl. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"

static int metrics_port(const h_proxy *px) {
  return h_proxy_listen_port(px, "metrics-listening");
}

static int curl(const char *args, int port, const char *path, char *out, size_t cap) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "curl -s -o - -w '\\nHTTP %%{http_code}\\n' %s http://127.0.0.1:%d%s",
           args, port, path);
  return h_run(cmd, NULL, 10000, out, cap);
}

static void message(int port, const char *rcpt) {
  h_smtp c;
  h_smtp_open(&c, port, true);
  static const char body[] = "Subject: m\r\n\r\nx\r\n";
  h_smtp_message(&c, "a@printer.test", (const char *const[]){rcpt, NULL}, body, sizeof body - 1,
                 NULL, 0, NULL);
  h_smtp_cmd(&c, "QUIT", NULL, 0);
  h_smtp_close(&c);
}

ITest(integ, metrics_after_known_traffic) {
  h_upstream u;
  h_proxy px;
  h_upstream_start(&u, "starttls", (const char *const[]){"--reject-rcpt", "*@nowhere.test", NULL});
  h_proxy_start(&px, &(h_proxy_opts){.up_port = u.port,
                                     .top_extra = "metrics: { listen: \"127.0.0.1:0\" }\n"});
  int mp = metrics_port(&px);
  message(px.port, "a@example.com");
  message(px.port, "b@example.com");
  message(px.port, "c@nowhere.test"); /* refused at RCPT: no message line */
  cr_assert_eq(h_wait_records(u.record, "message", 2, 5000), 2);
  char out[65536];
  cr_assert_eq(curl("", mp, "/metrics", out, sizeof out), 0);
  cr_log_info("%s", out);
  cr_assert_not_null(strstr(out, "HTTP 200"), "%s", out);
  cr_assert_not_null(strstr(out, "# TYPE smtp_proxy_messages_total counter\n"), "%s", out);
  cr_assert_not_null(
      strstr(
          out,
          "smtp_proxy_messages_total{route=\"default\",upstream=\"up\",result=\"delivered\"} 2\n"),
      "%s", out);
  cr_assert_not_null(strstr(out, "smtp_proxy_sessions_total{listener=\"lan\"} 3\n"), "%s", out);
  cr_assert_not_null(
      strstr(out, "smtp_proxy_upstream_latency_seconds_count{upstream=\"up\",phase=\"dot\"} 2\n"),
      "%s", out);
  cr_assert_not_null(strstr(out, "smtp_proxy_upstream_pool_connections{upstream=\"up\"} 1\n"),
                     "one pooled connection: %s", out);
}

ITest(integ, metrics_counts_failures_and_refusals) {
  h_upstream bad;
  h_proxy px;
  h_fault_start(&bad, "greeting-421", "starttls", "server");
  h_proxy_start(&px, &(h_proxy_opts){.up_port = bad.port,
                                     .top_extra = "metrics: { listen: \"127.0.0.1:0\" }\n",
                                     .listener_extra = "    max_connections_per_client: 1\n"});
  int mp = metrics_port(&px);
  h_smtp a, b;
  h_smtp_open(&a, px.port, true);
  cr_assert_eq(h_smtp_connect(&b, px.port), 0);
  cr_assert_eq(h_smtp_reply(&b, 5000, NULL, 0), 421);
  cr_assert_eq(h_smtp_cmd(&a, "MAIL FROM:<a@printer.test>", NULL, 0), 250);
  cr_assert_eq(h_smtp_cmd(&a, "RCPT TO:<x@example.com>", NULL, 0), 451);
  char out[65536];
  curl("", mp, "/metrics", out, sizeof out);
  cr_assert_not_null(
      strstr(out, "smtp_proxy_upstream_failures_total{upstream=\"up\",reason=\"greeting\"} 1\n"),
      "%s", out);
  cr_assert_not_null(strstr(out, "smtp_proxy_refused_connections_total{listener=\"lan\",reason="
                                 "\"max_connections_per_client\"} 1\n"),
                     "%s", out);
  cr_assert_not_null(strstr(out, "smtp_proxy_sessions_active{listener=\"lan\"} 1\n"), "%s", out);
}

ITest(integ, metrics_healthz_and_http_edges) {
  h_upstream u;
  h_proxy px;
  h_upstream_start(&u, "starttls", NULL);
  h_proxy_start(&px, &(h_proxy_opts){.up_port = u.port,
                                     .top_extra = "metrics: { listen: \"127.0.0.1:0\" }\n"});
  int mp = metrics_port(&px);
  char out[8192];
  curl("", mp, "/healthz", out, sizeof out);
  cr_assert_not_null(strstr(out, "ok\n\nHTTP 200"), "%s", out);
  curl("", mp, "/nope", out, sizeof out);
  cr_assert_not_null(strstr(out, "HTTP 404"), "%s", out);
  curl("-X POST -d x=1", mp, "/metrics", out, sizeof out);
  cr_assert_not_null(strstr(out, "HTTP 405"), "%s", out);
}
