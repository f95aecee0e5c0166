/* test_sec_faults.c - a hostile or broken upstream (issue #5).
 *
 * STARTTLS response injection, a tarpitting upstream next to a healthy one,
 * silence after the final dot, a reset after 354 and a TLS record layer
 * broken mid-stream: the device always gets a 4xx within the configured
 * timeouts (never a 250 for what the upstream did not accept), nothing is
 * sent that must not be, and the proxy keeps serving. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static const char body[] = "Subject: sec fault\r\n\r\nmust not be lost\r\n";

static int send_one(h_smtp *c, const char *rcpt, char *text, size_t cap, const char **stage) {
  return h_smtp_message(c, "scan@printer.test", (const char *const[]){rcpt, NULL}, body,
                        sizeof body - 1, text, cap, stage);
}

/* The proxy is alive and a fresh device still gets a greeting and EHLO. */
static void assert_proxy_serves(h_proxy *px) {
  cr_assert(h_proc_alive(px->proc), "the proxy died");
  h_smtp c;
  h_smtp_open(&c, px->port, true);
  char text[512];
  cr_assert_eq(h_smtp_cmd(&c, "NOOP", text, sizeof text), 250, "%s", text);
  h_smtp_cmd(&c, "QUIT", text, sizeof text);
  h_smtp_close(&c);
}

/* STARTTLS answered with "220 go ahead\r\n250 injected\r\n" in one write:
 * the injected line must not be taken as a reply, and the fault record
 * shows no AUTH and no MAIL (nor RCPT) at all - in plaintext or in TLS. */
ITest(integ, sec_starttls_injection_sends_nothing) {
  h_upstream u;
  h_proxy px;
  h_fault_start(&u, "starttls-extra", "starttls", "server");
  h_proxy_opts o = {
      .up_port = u.port, .connect_timeout = "2s", .command_timeout = "2s", .data_timeout = "2s"};
  h_proxy_start(&px, &o);
  h_smtp c;
  h_smtp_open(&c, px.port, true);
  char text[2048];
  const char *stage;
  int64_t t0 = h_now_ms();
  int code = send_one(&c, "a@example.com", text, sizeof text, &stage);
  int64_t took = h_now_ms() - t0;
  cr_assert(code >= 400 && code < 500, "device got %d at %s (want 4xx): %s", code, stage, text);
  cr_assert(took < 8000, "4xx took %lld ms", (long long)took);
  cr_log_info("starttls injection: %s %d %s (%lld ms)", stage, code, text, (long long)took);
  h_sleep_ms(500);
  char *rec = h_read_file(u.record, NULL);
  cr_assert_geq(h_fault_commands(&u, "STARTTLS", 0), 1, "no STARTTLS attempted:\n%s", rec);
  cr_assert_eq(h_fault_commands(&u, "AUTH", -1), 0, "AUTH sent after injection:\n%s", rec);
  cr_assert_eq(h_fault_commands(&u, "MAIL", -1), 0, "MAIL sent after injection:\n%s", rec);
  cr_assert_eq(h_fault_commands(&u, "RCPT", -1), 0, "RCPT sent after injection:\n%s", rec);
  cr_assert_eq(h_fault_commands(&u, "DATA", -1), 0, "DATA sent after injection:\n%s", rec);
  h_lines l;
  cr_assert_eq(h_records(u.record, "auth", &l), 0, "%s", rec);
  h_lines_free(&l);
  /* Aborted before the handshake: the injected bytes were seen first. */
  cr_assert_eq(h_records(u.record, "tls", &l), 0, "TLS handshake after injection:\n%s", rec);
  h_lines_free(&l);
  cr_assert_eq(h_records(u.record, "message", &l), 0, "%s", rec);
  h_lines_free(&l);
  cr_assert_eq(h_records(u.record, "plaintext_after_starttls", &l), 0,
               "plaintext pipelined after STARTTLS:\n%s", rec);
  h_lines_free(&l);
  free(rec);
  assert_proxy_serves(&px);
}

/* Two routes: *@slow.test goes to a tarpit (greeting at 1 byte/s), the rest
 * to a healthy aiosmtpd. While one device waits on the tarpit, another's
 * message goes through promptly; the first gets a 4xx within
 * connect_timeout + command_timeout (+ slack), not the 37 s the greeting
 * would take. */
ITest(integ, sec_tarpit_upstream_isolated) {
  h_upstream slow, good;
  h_fault_start(&slow, "tarpit", "starttls", "server");
  h_upstream_start(&good, "starttls", NULL);
  char yaml[8192];
  const char *certs = h_certs();
  int n = snprintf(yaml, sizeof yaml,
                   "hostname: proxy.test\n"
                   "log: { level: info, format: text }\n"
                   "shutdown_grace: 2s\n"
                   "listeners:\n"
                   "  - name: lan\n"
                   "    listen: \"127.0.0.1:0\"\n"
                   "upstreams:\n"
                   "  - name: slow\n"
                   "    host: 127.0.0.1\n"
                   "    port: %d\n"
                   "    tls: starttls\n"
                   "    server_name: localhost\n"
                   "    ca_file: %s/ca.crt\n"
                   "    connect_timeout: 2s\n"
                   "    command_timeout: 2s\n"
                   "    data_timeout: 2s\n"
                   "    auth: { mechanism: auto, username: %s, password_env: %s }\n"
                   "  - name: good\n"
                   "    host: 127.0.0.1\n"
                   "    port: %d\n"
                   "    tls: starttls\n"
                   "    server_name: localhost\n"
                   "    ca_file: %s/ca.crt\n"
                   "    connect_timeout: 2s\n"
                   "    command_timeout: 2s\n"
                   "    data_timeout: 2s\n"
                   "    auth: { mechanism: auto, username: %s, password_env: %s }\n"
                   "routes:\n"
                   "  - name: to-slow\n"
                   "    match: { rcpt_to: [\"*@slow.test\"] }\n"
                   "    upstream: slow\n"
                   "  - name: default\n"
                   "    upstream: good\n",
                   slow.port, certs, H_USER, H_PW_ENV, good.port, certs, H_USER, H_PW_ENV);
  cr_assert(n > 0 && (size_t)n < sizeof yaml);
  h_proxy px;
  h_proxy_start_yaml(&px, yaml);

  /* Device A: MAIL and RCPT for the tarpit; do not wait for the reply. */
  h_smtp a;
  h_smtp_open(&a, px.port, true);
  char text[2048];
  cr_assert_eq(h_smtp_cmd(&a, "MAIL FROM:<scan@printer.test>", text, sizeof text), 250);
  int64_t t0 = h_now_ms();
  h_smtp_sendstr(&a, "RCPT TO:<victim@slow.test>\r\n");
  h_sleep_ms(300); /* A is now stuck upstream */

  /* Device B, meanwhile: three messages to the healthy route. */
  h_smtp b;
  h_smtp_open(&b, px.port, true);
  for (int i = 0; i < 3; i++) {
    const char *stage;
    int64_t tb = h_now_ms();
    int code = send_one(&b, "b@example.com", text, sizeof text, &stage);
    int64_t tookb = h_now_ms() - tb;
    cr_assert_eq(code, 250, "device B next to a tarpit: %s %d %s", stage, code, text);
    cr_assert(tookb < 1500, "device B's message took %lld ms next to a tarpit", (long long)tookb);
  }
  cr_assert_eq(h_wait_records(good.record, "message", 3, 5000), 3);

  /* A's answer: a 4xx at RCPT, or a 250 and then a 4xx at DATA/dot. */
  int code = h_smtp_reply(&a, 10000, text, sizeof text);
  const char *stage = "RCPT";
  if (code == 250) {
    stage = "DATA";
    code = h_smtp_cmd(&a, "DATA", text, sizeof text);
    if (code == 354) {
      stage = "DOT";
      h_smtp_send(&a, body, sizeof body - 1);
      h_smtp_sendstr(&a, ".\r\n");
      code = h_smtp_reply(&a, 10000, text, sizeof text);
    }
  }
  int64_t took = h_now_ms() - t0;
  cr_log_info("tarpit: device A got %d at %s after %lld ms: %s", code, stage, (long long)took,
              text);
  cr_assert(code >= 400 && code < 500, "device A behind a tarpit got %d at %s: %s", code, stage,
            text);
  /* connect_timeout 2s + command_timeout 2s, plus slack for ASan builds. */
  cr_assert(took < 7000, "device A waited %lld ms for its 4xx", (long long)took);
  h_lines l;
  cr_assert_eq(h_records(slow.record, "message", &l), 0);
  h_lines_free(&l);
  assert_proxy_serves(&px);
}

/* The upstream takes the message and never answers the final dot: with
 * data_timeout 2s the device gets 451 4.4.2 about 2 s after its dot, and
 * never a 250 (not even late). At most the one copy the upstream holds. */
ITest(integ, sec_no_reply_after_dot_is_451) {
  h_upstream u;
  h_proxy px;
  h_fault_start(&u, "no-reply-after-dot", "starttls", "server");
  h_proxy_opts o = {
      .up_port = u.port, .connect_timeout = "2s", .command_timeout = "2s", .data_timeout = "2s"};
  h_proxy_start(&px, &o);
  h_smtp c;
  h_smtp_open(&c, px.port, true);
  char text[2048];
  cr_assert_eq(h_smtp_cmd(&c, "MAIL FROM:<scan@printer.test>", text, sizeof text), 250);
  cr_assert_eq(h_smtp_cmd(&c, "RCPT TO:<a@example.com>", text, sizeof text), 250);
  cr_assert_eq(h_smtp_cmd(&c, "DATA", text, sizeof text), 354);
  h_smtp_send(&c, body, sizeof body - 1);
  int64_t t0 = h_now_ms();
  h_smtp_sendstr(&c, ".\r\n");
  int code = h_smtp_reply(&c, 10000, text, sizeof text);
  int64_t took = h_now_ms() - t0;
  cr_log_info("no reply after dot: %d %s after %lld ms", code, text, (long long)took);
  cr_assert_eq(code, 451, "dot: %d %s (want 451 4.4.2)", code, text);
  cr_assert(strstr(text, "4.4.2") != NULL, "%s", text);
  cr_assert(took >= 1500 && took < 6000, "451 after %lld ms with data_timeout 2s", (long long)took);
  /* Nothing else comes, in particular no late 250. */
  cr_assert(h_smtp_quiet(&c, 1500), "a late reply after the 451: %.*s", (int)c.len, c.buf);
  code = h_smtp_cmd(&c, "NOOP", text, sizeof text);
  cr_assert(code == 250 || code == 0 || code == 421, "NOOP after 451: %d %s", code, text);
  h_lines l;
  cr_assert_leq(h_records(u.record, "message", &l), 1);
  h_lines_free(&l);
  assert_proxy_serves(&px);
}

/* The upstream resets the connection right after its 354: a 4xx (4.4.2),
 * nothing recorded, and the proxy keeps serving. */
ITest(integ, sec_reset_after_354_is_4xx) {
  h_upstream u;
  h_proxy px;
  h_fault_start(&u, "reset-after-354", "starttls", "server");
  h_proxy_opts o = {
      .up_port = u.port, .connect_timeout = "2s", .command_timeout = "2s", .data_timeout = "2s"};
  h_proxy_start(&px, &o);
  for (int round = 0; round < 2; round++) {
    h_smtp c;
    h_smtp_open(&c, px.port, true);
    char text[2048];
    const char *stage;
    int code = send_one(&c, "a@example.com", text, sizeof text, &stage);
    cr_log_info("reset after 354 (round %d): %s %d %s", round, stage, code, text);
    cr_assert(code >= 400 && code < 500, "round %d: %s %d %s (want 4xx)", round, stage, code, text);
    cr_assert(strstr(text, "4.4.2") != NULL, "round %d: %s", round, text);
    h_smtp_close(&c);
  }
  h_sleep_ms(300);
  h_lines l;
  cr_assert_eq(h_records(u.record, "message", &l), 0);
  h_lines_free(&l);
  cr_assert_geq(h_records(u.record, "rst", &l), 1, "the fault never fired");
  h_lines_free(&l);
  assert_proxy_serves(&px);
}

/* After TLS and the 354, bytes that are not TLS records (garbage, or a
 * plaintext fatal alert) arrive under the TLS layer: the device gets a 4xx,
 * the proxy neither crashes nor hangs, and keeps serving. */
static void broken_tls(const char *mode) {
  h_upstream u;
  h_proxy px;
  h_fault_start(&u, mode, "starttls", "server");
  h_proxy_opts o = {
      .up_port = u.port, .connect_timeout = "2s", .command_timeout = "2s", .data_timeout = "2s"};
  h_proxy_start(&px, &o);
  for (int round = 0; round < 2; round++) {
    h_smtp c;
    h_smtp_open(&c, px.port, true);
    char text[2048];
    const char *stage;
    int64_t t0 = h_now_ms();
    int code = send_one(&c, "a@example.com", text, sizeof text, &stage);
    int64_t took = h_now_ms() - t0;
    cr_log_info("%s (round %d): %s %d %s after %lld ms", mode, round, stage, code, text,
                (long long)took);
    cr_assert(code >= 400 && code < 500, "%s round %d: %s %d %s (want 4xx)", mode, round, stage,
              code, text);
    cr_assert(took < 6000, "%s: 4xx after %lld ms", mode, (long long)took);
    code = h_smtp_cmd(&c, "NOOP", text, sizeof text);
    cr_assert(code == 250 || code == 0 || code == 421, "NOOP: %d %s", code, text);
    h_smtp_close(&c);
  }
  h_sleep_ms(300);
  h_lines l;
  cr_assert_geq(h_records(u.record, "tls_broken", &l), 1, "the fault never fired");
  h_lines_free(&l);
  cr_assert_eq(h_records(u.record, "message", &l), 0);
  h_lines_free(&l);
  assert_proxy_serves(&px);
}

ITest(integ, sec_tls_garbage_after_354) {
  broken_tls("tls-garbage-after-354");
}

ITest(integ, sec_tls_alert_after_354) {
  broken_tls("tls-alert-after-354");
}
