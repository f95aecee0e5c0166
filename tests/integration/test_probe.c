/* test_probe.c - upstream probes through the real binary against aiosmtpd
 * (tests/tools/upstream.py): a good login and a wrong password, the
 * metrics they set, and the back-off a failed probe starts for live mail. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "probe_common.h"

static int metrics_port(const h_proxy *px) {
  return h_proxy_listen_port(px, "metrics-listening");
}

static void scrape(int port, char *out, size_t cap) {
  char cmd[256];
  snprintf(cmd, sizeof cmd, "curl -s http://127.0.0.1:%d/metrics", port);
  cr_assert_eq(h_run(cmd, NULL, 10000, out, cap), 0);
}

/* A second upstream "bad": the same server, a password it refuses. */
static void start_two(h_proxy *px, h_upstream *u, const char *good_probe, const char *route) {
  probe_start_two(px, u, good_probe, "metrics: { listen: \"127.0.0.1:0\" }\n", route);
}

ITest(integ, probe_good_and_wrong_password_set_the_metrics) {
  h_upstream u;
  h_proxy px;
  h_upstream_start(&u, "starttls", NULL);
  start_two(&px, &u, "1s", "    upstream: up\n");
  int mp = metrics_port(&px);
  char line[2048];
  const char *ok[] = {" probe ", "upstream=up ", "result=ok", NULL};
  cr_assert(h_file_wait_line(px.log, ok, 5000, line, sizeof line), "no ok probe");
  const char *bad[] = {" probe ", "upstream=bad ", "result=failed", "reason=auth", NULL};
  cr_assert(h_file_wait_line(px.log, bad, 5000, line, sizeof line), "no failed probe");
  cr_assert_not_null(strstr(line, "reply="), "%s", line);
  cr_assert_null(strstr(line, "not-the-password"), "%s", line);
  char out[65536];
  scrape(mp, out, sizeof out);
  cr_assert_not_null(strstr(out, "smtp_proxy_upstream_up{upstream=\"up\"} 1\n"), "%s", out);
  cr_assert_not_null(strstr(out, "smtp_proxy_upstream_up{upstream=\"bad\"} 0\n"), "%s", out);
  const char *ts =
      strstr(out, "smtp_proxy_upstream_last_success_timestamp_seconds{upstream=\"up\"} ");
  cr_assert_not_null(ts, "%s", out);
  long long when = atoll(strchr(ts, '}') + 2);
  long long now = (long long)time(NULL);
  cr_assert(when > now - 60 && when <= now + 1, "last success %lld, now %lld", when, now);
  cr_assert_null(strstr(out, "last_success_timestamp_seconds{upstream=\"bad\"}"), "%s", out);
  /* Probes log in and QUIT: the upstream never saw a message. */
  h_lines msgs;
  cr_assert_eq(h_records(u.record, "message", &msgs), 0);
  h_lines_free(&msgs);
}

ITest(integ, probe_failure_starts_the_backoff_live_mail_skips_it) {
  h_upstream u;
  h_proxy px;
  h_upstream_start(&u, "starttls", NULL);
  start_two(&px, &u, "0s", "    upstream: [bad, up]\n");
  char line[2048];
  const char *bk[] = {"upstream-backoff", "sid=probe", "upstream=bad", "skip_ms=30000", NULL};
  cr_assert(h_file_wait_line(px.log, bk, 5000, line, sizeof line), "no back-off from the probe");
  static const char body[] = "Subject: t\r\n\r\nhello\r\n";
  char text[512];
  cr_assert_eq(h_send_one(px.port, "x@example.com", body, sizeof body - 1, text, sizeof text, NULL),
               250, "%s", text);
  const char *msg[] = {" message ", "upstream=up", "skipped=bad:backoff", "result=delivered", NULL};
  cr_assert(h_file_wait_line(px.log, msg, 5000, line, sizeof line),
            "the live message did not skip the upstream the probe found failing");
  /* The probes log "probe", not "upstream-failed": any such line would be
   * the live session trying bad. */
  char *log = h_read_file(px.log, NULL);
  cr_assert_null(strstr(log, "upstream-failed"), "%s", log);
  free(log);
}
