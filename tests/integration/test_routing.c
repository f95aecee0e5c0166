/* test_routing.c - routes, failover and rewrites, end to end with two real
 * upstreams (aiosmtpd) and the fault upstream as a broken first choice. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"

/* An upstream block named `name` for 127.0.0.1:port with STARTTLS + AUTH. */
static int upstream_yaml(char *out, size_t cap, const char *name, int port) {
  return snprintf(out, cap,
                  "  - name: %s\n"
                  "    host: 127.0.0.1\n"
                  "    port: %d\n"
                  "    tls: starttls\n"
                  "    server_name: localhost\n"
                  "    ca_file: %s/ca.crt\n"
                  "    connect_timeout: 3s\n"
                  "    command_timeout: 3s\n"
                  "    auth: { mechanism: auto, username: %s, password_env: %s }\n",
                  name, port, h_certs(), H_USER, H_PW_ENV);
}

static void start_with_routes(h_proxy *px, const char *upstreams_yaml, const char *routes_yaml) {
  char yaml[8192];
  int n = snprintf(yaml, sizeof yaml,
                   "hostname: proxy.test\n"
                   "log: { level: info, format: text }\n"
                   "shutdown_grace: 2s\n"
                   "listeners:\n"
                   "  - name: lan\n"
                   "    listen: \"127.0.0.1:0\"\n"
                   "upstreams:\n%s"
                   "routes:\n%s",
                   upstreams_yaml, routes_yaml);
  cr_assert(n > 0 && (size_t)n < sizeof yaml);
  h_proxy_start_yaml(px, yaml);
}

static size_t messages(const h_upstream *u) {
  h_lines l;
  size_t n = h_records(u->record, "message", &l);
  h_lines_free(&l);
  return n;
}

/* No matching route: 550 5.7.1. */
ITest(integ, route_no_match_550) {
  h_upstream u;
  h_proxy px;
  h_upstream_start(&u, "starttls", NULL);
  char ups[2048];
  upstream_yaml(ups, sizeof ups, "up", u.port);
  start_with_routes(&px, ups,
                    "  - name: only-example\n"
                    "    match: { rcpt_to: [\"*@example.com\"] }\n"
                    "    upstream: up\n");
  h_smtp c;
  h_smtp_open(&c, px.port, true);
  char text[2048];
  cr_assert_eq(h_smtp_cmd(&c, "MAIL FROM:<scan@printer.test>", text, sizeof text), 250);
  int code = h_smtp_cmd(&c, "RCPT TO:<x@elsewhere.test>", text, sizeof text);
  cr_assert_eq(code, 550, "unrouted RCPT: %d %s", code, text);
  cr_assert(strstr(text, "5.7.1") != NULL, "%s", text);
  code = h_smtp_cmd(&c, "RCPT TO:<y@example.com>", text, sizeof text);
  cr_assert_eq(code, 250, "routed RCPT: %d %s", code, text);
}

/* The first accepted RCPT fixes the route; a RCPT for another route gets
 * 452 4.5.3 and the message goes to the first route's upstream only. */
ITest(integ, route_fixed_by_first_rcpt) {
  h_upstream a, b;
  h_proxy px;
  h_upstream_start(&a, "starttls", NULL);
  h_upstream_start(&b, "starttls", NULL);
  char ups[4096];
  int n = upstream_yaml(ups, sizeof ups, "upa", a.port);
  upstream_yaml(ups + n, sizeof ups - (size_t)n, "upb", b.port);
  start_with_routes(&px, ups,
                    "  - name: to-a\n"
                    "    match: { rcpt_to: [\"*@a.test\"] }\n"
                    "    upstream: upa\n"
                    "  - name: default\n"
                    "    upstream: upb\n");
  h_smtp c;
  h_smtp_open(&c, px.port, true);
  char text[2048];
  cr_assert_eq(h_smtp_cmd(&c, "MAIL FROM:<scan@printer.test>", text, sizeof text), 250);
  int code = h_smtp_cmd(&c, "RCPT TO:<one@a.test>", text, sizeof text);
  cr_assert_eq(code, 250, "%d %s", code, text);
  code = h_smtp_cmd(&c, "RCPT TO:<two@b.test>", text, sizeof text);
  cr_assert_eq(code, 452, "RCPT for another route: %d %s", code, text);
  cr_assert(strstr(text, "4.5.3") != NULL, "%s", text);
  cr_assert_eq(h_smtp_cmd(&c, "DATA", text, sizeof text), 354);
  h_smtp_sendstr(&c, "Subject: routed\r\n\r\nto a\r\n.\r\n");
  code = h_smtp_reply(&c, H_REPLY_MS, text, sizeof text);
  cr_assert_eq(code, 250, "%d %s", code, text);
  /* The client retries the other recipient in a new transaction. */
  static const char body[] = "Subject: retry\r\n\r\nto b\r\n";
  const char *stage;
  code = h_smtp_message(&c, "scan@printer.test", (const char *const[]){"two@b.test", NULL}, body,
                        sizeof body - 1, text, sizeof text, &stage);
  cr_assert_eq(code, 250, "%s: %d %s", stage, code, text);

  cr_assert_eq(h_wait_records(a.record, "message", 1, 5000), 1);
  cr_assert_eq(h_wait_records(b.record, "message", 1, 5000), 1);
  h_sleep_ms(200);
  cr_assert_eq(messages(&a), 1);
  cr_assert_eq(messages(&b), 1);
  h_lines l;
  h_records(a.record, "message", &l);
  bool found;
  cr_assert_eq(h_json_strlist(l.v[0], "rcpt_tos", "one@a.test", &found), 1);
  cr_assert(found);
  h_lines_free(&l);
  h_records(b.record, "message", &l);
  cr_assert_eq(h_json_strlist(l.v[0], "rcpt_tos", "two@b.test", &found), 1);
  cr_assert(found);
  h_lines_free(&l);
}

/* Failover: the first upstream refuses at the greeting (421), the second
 * gets the message. */
ITest(integ, route_failover_to_second_upstream) {
  h_upstream bad, good;
  h_proxy px;
  h_fault_start(&bad, "greeting-421", "starttls", "server");
  h_upstream_start(&good, "starttls", NULL);
  char ups[4096];
  int n = upstream_yaml(ups, sizeof ups, "first", bad.port);
  upstream_yaml(ups + n, sizeof ups - (size_t)n, "second", good.port);
  start_with_routes(&px, ups,
                    "  - name: default\n"
                    "    upstream: [first, second]\n");
  char text[2048];
  const char *stage;
  static const char body[] = "Subject: failover\r\n\r\nvia the second\r\n";
  int code = h_send_one(px.port, "a@example.com", body, sizeof body - 1, text, sizeof text, &stage);
  cr_assert_eq(code, 250, "%s: %d %s", stage, code, text);
  cr_assert_eq(h_wait_records(good.record, "message", 1, 5000), 1);
  h_lines l;
  cr_assert_geq(h_records(bad.record, "connect", &l), 1, "first upstream not tried");
  h_lines_free(&l);
}

/* rewrite.mail_from replaces the envelope sender; header_from replaces
 * From: and keeps the original address in Reply-To. */
ITest(integ, route_rewrite_sender_and_from_header) {
  h_upstream u;
  h_proxy px;
  h_upstream_start(&u, "starttls", NULL);
  char ups[2048];
  upstream_yaml(ups, sizeof ups, "up", u.port);
  start_with_routes(&px, ups,
                    "  - name: default\n"
                    "    upstream: up\n"
                    "    rewrite:\n"
                    "      mail_from: scanner@example.com\n"
                    "      header_from: \"Office Scanner <scanner@example.com>\"\n");
  h_smtp c;
  h_smtp_open(&c, px.port, true);
  char text[2048];
  const char *stage;
  static const char body[] = "From: Old Device <old@printer.test>\r\n"
                             "Subject: rewritten\r\n"
                             "\r\n"
                             "From: this body line is not a header\r\n";
  int code = h_smtp_message(&c, "old@printer.test", (const char *const[]){"a@example.com", NULL},
                            body, sizeof body - 1, text, sizeof text, &stage);
  cr_assert_eq(code, 250, "%s: %d %s", stage, code, text);
  cr_assert_eq(h_wait_records(u.record, "message", 1, 5000), 1);
  h_lines l;
  h_records(u.record, "message", &l);
  char from[256];
  cr_assert_eq(h_json_str(l.v[0], "mail_from", from, sizeof from), 1);
  cr_assert_str_eq(from, "scanner@example.com");
  size_t len;
  char *got = (char *)h_json_b64(l.v[0], "data_b64", &len);
  cr_assert_not_null(got);
  char *hdr_end = strstr(got, "\r\n\r\n");
  cr_assert_not_null(hdr_end, "%s", got);
  *hdr_end = '\0';
  cr_assert(strstr(got, "From: Office Scanner <scanner@example.com>") != NULL,
            "From not rewritten:\n%s", got);
  cr_assert(strstr(got, "Old Device <old@printer.test>") == NULL ||
                strstr(got, "Reply-To:") != NULL,
            "old From kept as From:\n%s", got);
  char *rt = strstr(got, "Reply-To:");
  cr_assert_not_null(rt, "no Reply-To:\n%s", got);
  cr_assert(strstr(rt, "old@printer.test") != NULL, "Reply-To lacks the original:\n%s", got);
  /* The body is untouched. */
  cr_assert(strstr(hdr_end + 4, "From: this body line is not a header") != NULL);
  free(got);
  h_lines_free(&l);
}

/* auth: any - a device that insists on AUTH is accepted with any
 * credentials; the upstream still sees the stored ones. */
ITest(integ, lan_auth_any) {
  h_upstream u;
  h_proxy px;
  h_upstream_start(&u, "starttls", NULL);
  h_proxy_opts o = {.up_port = u.port, .listener_extra = "    auth: any\n"};
  h_proxy_start(&px, &o);
  char cmd[1024], out[16384];
  snprintf(cmd, sizeof cmd,
           "swaks --server 127.0.0.1:%d --helo device.test -a PLAIN "
           "-au printer -ap whatever --from scan@printer.test "
           "--to a@example.com --timeout 15",
           px.port);
  int rc = h_run(cmd, NULL, 30000, out, sizeof out);
  cr_assert_eq(rc, 0, "swaks exit %d:\n%s", rc, out);
  cr_assert_eq(h_wait_records(u.record, "message", 1, 5000), 1);
  h_lines l;
  h_records(u.record, "message", &l);
  char user[64];
  cr_assert_eq(h_json_str(l.v[0], "auth_user", user, sizeof user), 1);
  cr_assert_str_eq(user, H_USER);
  h_lines_free(&l);
}

/* ---- failover, back-off, routing by client/sender/user, rate limits ---- */

static int send_one(int port, const char *from, const char *rcpt, char *text, size_t cap) {
  h_smtp c;
  h_smtp_open(&c, port, true);
  const char *stage;
  static const char body[] = "Subject: routing\r\n\r\nhello\r\n";
  int code = h_smtp_message(&c, from, (const char *const[]){rcpt, NULL}, body, sizeof body - 1,
                            text, cap, &stage);
  h_smtp_cmd(&c, "QUIT", NULL, 0);
  h_smtp_close(&c);
  return code;
}

static size_t events(const h_upstream *u, const char *ev) {
  h_lines l;
  size_t n = h_records(u->record, ev, &l);
  h_lines_free(&l);
  return n;
}

ITest(integ, route_backoff_skips_a_failed_upstream_without_connecting) {
  h_upstream bad, good;
  h_proxy px;
  h_fault_start(&bad, "greeting-421", "starttls", "server");
  h_upstream_start(&good, "starttls", NULL);
  char ups[4096], text[1024];
  int n = upstream_yaml(ups, sizeof ups, "first", bad.port);
  upstream_yaml(ups + n, sizeof ups - (size_t)n, "second", good.port);
  start_with_routes(&px, ups, "  - name: default\n    upstream: [first, second]\n");
  cr_assert_eq(send_one(px.port, "a@printer.test", "x@example.com", text, sizeof text), 250);
  cr_assert_eq(events(&bad, "connect"), 1);
  cr_assert(h_file_contains(px.log, "upstream-backoff", 16));
  cr_assert_eq(send_one(px.port, "a@printer.test", "y@example.com", text, sizeof text), 250);
  cr_assert_eq(h_wait_records(good.record, "message", 2, 5000), 2);
  cr_assert_eq(events(&bad, "connect"), 1, "the backed-off upstream was not contacted again");
  cr_assert(h_file_contains(px.log, "skipped=first:backoff", 21), "the message line names it");
}

ITest(integ, route_failover_past_dead_port_bad_certificate_and_refused_credentials) {
  h_upstream wrongcert, badauth, good;
  h_proxy px;
  h_fault_start(&wrongcert, "ok", "starttls", "wrongname");
  h_fault_start(&badauth, "auth-fail", "starttls", "server");
  h_upstream_start(&good, "starttls", NULL);
  char ups[8192], text[1024];
  int n = upstream_yaml(ups, sizeof ups, "dead", 1); /* nothing listens on port 1 */
  n += upstream_yaml(ups + n, sizeof ups - (size_t)n, "wrongcert", wrongcert.port);
  n += upstream_yaml(ups + n, sizeof ups - (size_t)n, "badauth", badauth.port);
  upstream_yaml(ups + n, sizeof ups - (size_t)n, "good", good.port);
  start_with_routes(&px, ups,
                    "  - name: default\n    upstream: [dead, wrongcert, badauth, good]\n");
  cr_assert_eq(send_one(px.port, "a@printer.test", "x@example.com", text, sizeof text), 250, "%s",
               text);
  cr_assert_eq(h_wait_records(good.record, "message", 1, 5000), 1);
  cr_assert_eq(h_fault_commands(&wrongcert, "AUTH", -1), 0, "no credentials to a bad cert");
  cr_assert(h_file_contains(px.log, "skipped=dead:connect,wrongcert:tls,badauth:auth", 47),
            "the message line lists what was skipped and why");
}

ITest(integ, route_all_upstreams_down_is_4xx) {
  char ups[2048], text[1024];
  h_proxy px;
  int n = upstream_yaml(ups, sizeof ups, "dead1", 1);
  upstream_yaml(ups + n, sizeof ups - (size_t)n, "dead2", 1);
  start_with_routes(&px, ups, "  - name: default\n    upstream: [dead1, dead2]\n");
  int code = send_one(px.port, "a@printer.test", "x@example.com", text, sizeof text);
  cr_assert_eq(code / 100, 4, "%d %s", code, text);
}

static void two_upstreams(h_upstream *a, h_upstream *b, char *ups, size_t cap) {
  h_upstream_start(a, "starttls", NULL);
  h_upstream_start(b, "implicit", NULL);
  int n = upstream_yaml(ups, cap, "a", a->port);
  n += snprintf(ups + n, cap - (size_t)n,
                "  - name: b\n    host: 127.0.0.1\n    port: %d\n    tls: implicit\n"
                "    server_name: localhost\n    ca_file: %s/ca.crt\n"
                "    auth: { username: %s, password_env: %s }\n",
                b->port, h_certs(), H_USER, H_PW_ENV);
}

ITest(integ, route_by_sender_and_recipient) {
  h_upstream a, b;
  h_proxy px;
  char ups[4096], text[1024];
  two_upstreams(&a, &b, ups, sizeof ups);
  start_with_routes(&px, ups,
                    "  - name: scanners\n    match: { mail_from: [\"*@scanner.local\"] }\n"
                    "    upstream: a\n"
                    "  - name: finance\n    match: { rcpt_to: [\"*@finance.example\"] }\n"
                    "    upstream: b\n"
                    "  - name: default\n    upstream: a\n");
  cr_assert_eq(send_one(px.port, "s@scanner.local", "x@finance.example", text, sizeof text), 250);
  cr_assert_eq(send_one(px.port, "p@printer.lan", "x@finance.example", text, sizeof text), 250);
  cr_assert_eq(h_wait_records(a.record, "message", 1, 5000), 1, "sender route to a");
  cr_assert_eq(h_wait_records(b.record, "message", 1, 5000), 1, "recipient route to b");
}

ITest(integ, route_by_client_address) {
  h_upstream a, b;
  h_proxy px;
  char ups[4096], cmd[1024], out[16384];
  two_upstreams(&a, &b, ups, sizeof ups);
  start_with_routes(&px, ups,
                    "  - name: floor2\n    match: { client: [\"127.0.0.2/32\"] }\n"
                    "    upstream: a\n"
                    "  - name: floor3\n    match: { client: [\"127.0.0.3\"] }\n"
                    "    upstream: b\n");
  for (int i = 2; i <= 3; i++) {
    snprintf(cmd, sizeof cmd,
             "swaks --server 127.0.0.1:%d --local-interface 127.0.0.%d --from d@printer.lan "
             "--to x@example.com --timeout 15 2>&1",
             px.port, i);
    cr_assert_eq(h_run(cmd, NULL, 20000, out, sizeof out), 0, "%s", out);
  }
  cr_assert_eq(h_wait_records(a.record, "message", 1, 5000), 1, "127.0.0.2 -> a");
  cr_assert_eq(h_wait_records(b.record, "message", 1, 5000), 1, "127.0.0.3 -> b");
  cr_assert_eq(send_one(px.port, "d@printer.lan", "x@example.com", out, sizeof out), 550,
               "127.0.0.1 matches no route");
}

ITest(integ, route_by_auth_user) {
  h_upstream a, b;
  h_proxy px;
  char ups[4096], cmd[1024], out[16384];
  two_upstreams(&a, &b, ups, sizeof ups);
  char yaml[8192];
  snprintf(yaml, sizeof yaml,
           "hostname: proxy.test\nlisteners:\n  - name: lan\n    listen: \"127.0.0.1:0\"\n"
           "    auth: any\nupstreams:\n%sroutes:\n"
           "  - name: hr\n    match: { auth_user: [hr-scanner] }\n    upstream: b\n"
           "  - name: default\n    upstream: a\n",
           ups);
  h_proxy_start_yaml(&px, yaml);
  const char *users[] = {"hr-scanner", "lobby"};
  for (int i = 0; i < 2; i++) {
    snprintf(cmd, sizeof cmd,
             "swaks --server 127.0.0.1:%d -a PLAIN -au %s -ap x --from d@printer.lan "
             "--to x@example.com --timeout 15 2>&1",
             px.port, users[i]);
    cr_assert_eq(h_run(cmd, NULL, 20000, out, sizeof out), 0, "%s", out);
  }
  cr_assert_eq(h_wait_records(b.record, "message", 1, 5000), 1, "hr-scanner -> b");
  cr_assert_eq(h_wait_records(a.record, "message", 1, 5000), 1, "lobby -> a");
}

ITest(integ, listener_rate_limit_4xx_then_recovery) {
  h_upstream u;
  h_proxy px;
  h_upstream_start(&u, "starttls", NULL);
  h_proxy_start(&px,
                &(h_proxy_opts){.up_port = u.port, .listener_extra = "    rate_limit: 1/2s\n"});
  char text[1024];
  cr_assert_eq(send_one(px.port, "a@printer.test", "x@example.com", text, sizeof text), 250);
  int code = send_one(px.port, "a@printer.test", "x@example.com", text, sizeof text);
  cr_assert_eq(code, 451, "%d %s", code, text);
  cr_assert_not_null(strstr(text, "4.7.0"), "%s", text);
  struct timespec d = {2, 200 * 1000000};
  nanosleep(&d, NULL);
  cr_assert_eq(send_one(px.port, "a@printer.test", "x@example.com", text, sizeof text), 250,
               "recovered after the period");
  cr_assert_eq(h_wait_records(u.record, "message", 2, 5000), 2);
}
