/* test_sec_pipelining.c - a device that writes its whole dialogue at once.
 *
 * Many printers and every PIPELINING-happy library send EHLO, MAIL, RCPTs
 * and QUIT in one TCP write, although we do not offer PIPELINING. Each test
 * here sends such a burst in one write in a situation where the proxy
 * knows an outcome at once (back-off, a local refusal, a pooled
 * connection, a route mismatch, a rate limit, a refused upstream AUTH) and
 * requires exactly one reply per command, in order, 221 last and nothing
 * after it; then that the proxy is still up and delivers a normal message.
 * Before the callbacks rule was kept everywhere, the first burst below
 * made the proxy answer 451 forever and die of a stack overflow.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define BURST_MAX 512

/* Free port nobody listens on: connections to it are refused at once. */
#define DEAD_PORT 1

/* Send every command (CRLF added) in one write after the greeting, read
 * one reply per command into codes[], and require 221 last, then EOF with
 * no byte more. */
static void burst(int port, const char *const cmds[], size_t n, int codes[]) {
  size_t cap = 64 * 1024, len = 0;
  char *all = malloc(cap);
  cr_assert(all);
  for (size_t i = 0; i < n; i++) {
    int w = snprintf(all + len, cap - len, "%s\r\n", cmds[i]);
    cr_assert(w > 0 && (size_t)w < cap - len);
    len += (size_t)w;
  }
  h_smtp c;
  cr_assert_eq(h_smtp_connect(&c, port), 0);
  char text[4096];
  cr_assert_eq(h_smtp_reply(&c, H_REPLY_MS, text, sizeof text), 220);
  cr_assert_eq(h_smtp_send(&c, all, len), 0, "the burst went out in one write");
  free(all);
  for (size_t i = 0; i < n; i++) {
    codes[i] = h_smtp_reply(&c, H_REPLY_MS, text, sizeof text);
    cr_assert_gt(codes[i], 0, "reply %zu of %zu (to '%.40s') missing: %d", i + 1, n, cmds[i],
                 codes[i]);
  }
  cr_assert_eq(codes[n - 1], 221, "QUIT's 221 last, got %d %s", codes[n - 1], text);
  cr_assert_eq(c.len, 0, "bytes after 221: %.*s", (int)c.len, c.buf);
  cr_assert(h_smtp_wait_eof(&c, H_REPLY_MS), "the proxy closes after 221");
  h_smtp_close(&c);
}

static void expect(const int codes[], const int want[], size_t n) {
  for (size_t i = 0; i < n; i++)
    cr_assert_eq(codes[i], want[i], "reply %zu: got %d, want %d", i + 1, codes[i], want[i]);
}

/* The proxy still serves: a normal message through route `rcpt`'s upstream. */
static void still_delivers(const h_proxy *px, const h_upstream *u, const char *rcpt) {
  cr_assert(h_proc_alive(px->proc), "the proxy died");
  char text[1024];
  const char *stage = NULL;
  static const char body[] = "Subject: after the burst\r\n\r\nhello\r\n";
  int code = h_send_one(px->port, rcpt, body, sizeof body - 1, text, sizeof text, &stage);
  cr_assert_eq(code, 250, "after the burst: %d at %s: %s", code, stage ? stage : "?", text);
  cr_assert_geq(h_wait_records(u->record, "message", 1, H_REPLY_MS), 1);
}

static void upstream_block(char *out, size_t cap, const char *name, int port, const char *pw) {
  char auth[256];
  if (pw)
    snprintf(auth, sizeof auth, "password: %s", pw);
  else
    snprintf(auth, sizeof auth, "password_env: %s", H_PW_ENV);
  snprintf(out, cap,
           "  - name: %s\n"
           "    host: 127.0.0.1\n"
           "    port: %d\n"
           "    tls: starttls\n"
           "    server_name: localhost\n"
           "    ca_file: %s/ca.crt\n"
           "    connect_timeout: 3s\n"
           "    command_timeout: 5s\n"
           "    auth: { mechanism: auto, username: %s, %s }\n",
           name, port, h_certs(), H_USER, auth);
}

/* Listener "lan", upstream "good" (real, aiosmtpd) and "dead" (port
 * dead_port, password dead_pw or the right one), route "good" for
 * *@good.test and "default" to `default_up`. */
static void start_two_routes(h_proxy *px, h_upstream *good, const char *default_up,
                             const char *listener_extra, int dead_port, const char *dead_pw) {
  h_upstream_start(good, "starttls", NULL);
  char g[2048], d[2048], yaml[8192];
  upstream_block(g, sizeof g, "good", good->port, NULL);
  upstream_block(d, sizeof d, "dead", dead_port, dead_pw);
  snprintf(yaml, sizeof yaml,
           "hostname: proxy.test\n"
           "log: { level: info, format: text }\n"
           "shutdown_grace: 2s\n"
           "listeners:\n"
           "  - name: lan\n"
           "    listen: \"127.0.0.1:0\"\n%s"
           "upstreams:\n%s%s"
           "routes:\n"
           "  - name: good\n"
           "    match: { rcpt_to: [\"*@good.test\"] }\n"
           "    upstream: good\n"
           "  - name: default\n"
           "    upstream: %s\n",
           listener_extra ? listener_extra : "", g, d, default_up);
  h_proxy_start_yaml(px, yaml);
}

/* The first case: the first RCPT's connect fails later, the second
 * RCPT finds the upstream backing off and is answered at once. The dead
 * upstream is a fault upstream that says 421 at the greeting and counts
 * connections: exactly one connection, and the back-off logged, show that
 * the second answer came from the back-off path and not from a second
 * failed attempt. */
ITest(integ, burst_dead_route_backoff) {
  h_proxy px;
  h_upstream good, dead;
  h_fault_start(&dead, "greeting-421", "starttls", "server");
  start_two_routes(&px, &good, "dead", NULL, dead.port, NULL);
  const char *cmds[] = {"EHLO x", "MAIL FROM:<a@b.test>", "RCPT TO:<x@example.com>",
                        "RCPT TO:<x@example.com>", "QUIT"};
  int codes[5], want[] = {250, 250, 451, 451, 221};
  burst(px.port, cmds, 5, codes);
  expect(codes, want, 5);
  cr_assert_eq(h_wait_records(dead.record, "connect", 2, 500), 1,
               "the second RCPT connected again instead of finding the back-off");
  const char *need[] = {" upstream-backoff ", "upstream=dead", NULL};
  char line[1024];
  cr_assert(h_file_wait_line(px.log, need, 2000, line, sizeof line), "no back-off logged");
  still_delivers(&px, &good, "y@good.test");
}

/* 300 RCPTs to a dead route in one write: 300 answers, no recursion. */
ITest(integ, burst_300_rcpts_dead_route) {
  h_proxy px;
  h_upstream good;
  start_two_routes(&px, &good, "dead", NULL, DEAD_PORT, NULL);
  static const char *cmds[303];
  static int codes[303];
  cmds[0] = "EHLO x";
  cmds[1] = "MAIL FROM:<a@b.test>";
  for (size_t i = 2; i < 302; i++)
    cmds[i] = "RCPT TO:<x@example.com>";
  cmds[302] = "QUIT";
  burst(px.port, cmds, 303, codes);
  cr_assert_eq(codes[0], 250);
  cr_assert_eq(codes[1], 250);
  for (size_t i = 2; i < 302; i++)
    cr_assert_eq(codes[i], 451, "RCPT %zu: %d", i - 1, codes[i]);
  still_delivers(&px, &good, "y@good.test");
}

/* The second case: MAIL's SIZE is above the upstream's advertised
 * SIZE, so upstream.c refuses it locally, at once, for each RCPT. */
ITest(integ, burst_size_refused_locally) {
  h_upstream u;
  h_proxy px;
  const char *extra[] = {"--size-limit", "1000", NULL};
  h_upstream_start(&u, "starttls", extra);
  h_proxy_start(&px, &(h_proxy_opts){.up_port = u.port});
  const char *cmds[] = {"EHLO x", "MAIL FROM:<a@b.test> SIZE=5000", "RCPT TO:<x@example.com>",
                        "RCPT TO:<x@example.com>", "QUIT"};
  int codes[5], want[] = {250, 250, 552, 552, 221};
  burst(px.port, cmds, 5, codes);
  expect(codes, want, 5);
  still_delivers(&px, &u, "y@example.com");
}

/* A RCPT for another route is refused at once (452 4.5.3); RSET then goes
 * upstream. */
ITest(integ, burst_route_mismatch) {
  h_proxy px;
  h_upstream good;
  start_two_routes(&px, &good, "dead", NULL, DEAD_PORT, NULL);
  const char *cmds[] = {"EHLO x",
                        "MAIL FROM:<a@b.test>",
                        "RCPT TO:<x@good.test>",
                        "RCPT TO:<y@example.com>",
                        "RCPT TO:<z@good.test>",
                        "RSET",
                        "NOOP",
                        "QUIT"};
  int codes[8], want[] = {250, 250, 250, 452, 250, 250, 250, 221};
  burst(px.port, cmds, 8, codes);
  expect(codes, want, 8);
  still_delivers(&px, &good, "y@good.test");
}

/* A listener's rate limit answers MAIL at once. */
ITest(integ, burst_rate_limited_listener) {
  h_proxy px;
  h_upstream good;
  start_two_routes(&px, &good, "good", "    rate_limit: \"2/1h\"\n", DEAD_PORT, NULL);
  const char *cmds[] = {"EHLO x",
                        "MAIL FROM:<a@b.test>",
                        "RSET",
                        "MAIL FROM:<a@b.test>",
                        "RSET",
                        "MAIL FROM:<a@b.test>",
                        "RCPT TO:<x@good.test>",
                        "QUIT"};
  int codes[8], want[] = {250, 250, 250, 250, 250, 451, 503, 221};
  burst(px.port, cmds, 8, codes);
  expect(codes, want, 8);
  cr_assert(h_proc_alive(px.proc));
}

/* The upstream refuses our credentials (454 for the device); the next
 * RCPT finds it backing off and is answered at once. */
ITest(integ, burst_refused_upstream_auth) {
  h_proxy px;
  h_upstream good, bad;
  h_upstream_start(&bad, "starttls", NULL);
  start_two_routes(&px, &good, "dead", NULL, bad.port, "not-the-password");
  const char *cmds[] = {"EHLO x",
                        "MAIL FROM:<a@b.test>",
                        "RCPT TO:<x@example.com>",
                        "RCPT TO:<x@example.com>",
                        "RCPT TO:<x@example.com>",
                        "QUIT"};
  int codes[6];
  burst(px.port, cmds, 6, codes);
  cr_assert_eq(codes[0], 250);
  cr_assert_eq(codes[1], 250);
  cr_assert_eq(codes[2], 454, "refused AUTH: %d", codes[2]);
  cr_assert_eq(codes[3], 451, "backing off: %d", codes[3]);
  cr_assert_eq(codes[4], 451, "backing off: %d", codes[4]);
  still_delivers(&px, &good, "y@good.test");
}

/* A pooled connection is ready at once for the second device session. */
ITest(integ, burst_pooled_connection) {
  h_upstream u;
  h_proxy px;
  h_upstream_start(&u, "starttls", NULL);
  h_proxy_start(&px, &(h_proxy_opts){.up_port = u.port});
  still_delivers(&px, &u, "first@example.com"); /* leaves a pooled connection */
  const char *cmds[] = {
      "EHLO x", "MAIL FROM:<a@b.test>", "RCPT TO:<x@example.com>", "RCPT TO:<y@example.com>",
      "RSET",   "MAIL FROM:<a@b.test>", "RCPT TO:<x@example.com>", "QUIT"};
  int codes[8], want[] = {250, 250, 250, 250, 250, 250, 250, 221};
  burst(px.port, cmds, 8, codes);
  expect(codes, want, 8);
  still_delivers(&px, &u, "third@example.com");
  /* Three sessions, one upstream connection: the burst rode the pool. */
  h_lines l;
  size_t n = h_records(u.record, "message", &l);
  cr_assert_eq(n, 2);
  char p0[64], p1[64];
  cr_assert_eq(h_json_str(l.v[0], "peer", p0, sizeof p0), 1);
  cr_assert_eq(h_json_str(l.v[1], "peer", p1, sizeof p1), 1);
  cr_assert_str_eq(p0, p1, "the pooled connection carried all of them");
  h_lines_free(&l);
}

/* DATA's 354 comes from the upstream, later; a body pipelined behind DATA
 * is the synchronisation error (554 5.5.0) and nothing reaches the
 * upstream; the commands before it get their replies first. */
ITest(integ, burst_body_before_354_is_sync_error) {
  h_upstream u;
  h_proxy px;
  h_upstream_start(&u, "starttls", NULL);
  h_proxy_start(&px, &(h_proxy_opts){.up_port = u.port});
  h_smtp c;
  cr_assert_eq(h_smtp_connect(&c, px.port), 0);
  char text[2048];
  cr_assert_eq(h_smtp_reply(&c, H_REPLY_MS, text, sizeof text), 220);
  static const char all[] = "EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@example.com>\r\n"
                            "DATA\r\nSubject: smuggled\r\n\r\nbody\r\n.\r\nQUIT\r\n";
  cr_assert_eq(h_smtp_send(&c, all, sizeof all - 1), 0);
  int want[] = {250, 250, 250, 554};
  for (size_t i = 0; i < 4; i++)
    cr_assert_eq(h_smtp_reply(&c, H_REPLY_MS, text, sizeof text), want[i], "reply %zu: %s", i + 1,
                 text);
  cr_assert(strstr(text, "5.5.0"), "%s", text);
  cr_assert(h_smtp_wait_eof(&c, H_REPLY_MS));
  h_smtp_close(&c);
  h_sleep_ms(300);
  h_lines l;
  cr_assert_eq(h_records(u.record, "message", &l), 0, "nothing delivered");
  h_lines_free(&l);
  still_delivers(&px, &u, "y@example.com");
}
