/* test_lan.c - the LAN side: access list, EHLO capabilities, connection
 * limits, and SIGTERM with a connected client. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "harness.h"

static void start(h_proxy *px, h_upstream *u, const h_proxy_opts *extra) {
  h_upstream_start(u, "starttls", NULL);
  h_proxy_opts o = extra ? *extra : (h_proxy_opts){0};
  o.up_port = u->port;
  h_proxy_start(px, &o);
}

/* 11: a client outside `allow` gets 554 5.7.1 and the connection closes. */
ITest(integ, allow_list_rejects_client) {
  h_upstream u;
  h_proxy px;
  start(&px, &u, &(h_proxy_opts){.listener_extra = "    allow: [\"10.0.0.0/8\"]\n"});
  h_smtp c;
  cr_assert_eq(h_smtp_connect(&c, px.port), 0);
  char text[2048];
  int code = h_smtp_reply(&c, H_REPLY_MS, text, sizeof text);
  cr_assert_eq(code, 554, "greeting for a client not allowed: %d %s", code, text);
  cr_assert(strstr(text, "5.7.1") != NULL, "%s", text);
  cr_assert(h_smtp_wait_eof(&c, 5000), "connection not closed after 554");
}

/* The default allow list is loopback only, and loopback is allowed. */
ITest(integ, allow_default_loopback) {
  h_upstream u;
  h_proxy px;
  start(&px, &u, NULL);
  h_smtp c;
  h_smtp_open(&c, px.port, false);
}

/* Keywords of an EHLO reply, one per line after the first. */
static bool has_keyword(const char *text, const char *kw, char *arg, size_t cap) {
  const char *line = strchr(text, '\n'); /* skip the greeting line */
  size_t kl = strlen(kw);
  while (line) {
    line++;
    const char *p = line + 4; /* "250-" or "250 " */
    if (strncasecmp(p, kw, kl) == 0 &&
        (p[kl] == '\0' || p[kl] == ' ' || p[kl] == '\n' || p[kl] == '=')) {
      if (arg && cap) {
        const char *a = p + kl + (p[kl] == ' ' || p[kl] == '=');
        size_t n = strcspn(a, "\n");
        if (p[kl] == '\0' || p[kl] == '\n')
          n = 0;
        snprintf(arg, cap, "%.*s", (int)n, a);
      }
      return true;
    }
    line = strchr(line, '\n');
  }
  return false;
}

/* 14: EHLO advertises SIZE, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES; not
 * PIPELINING; no AUTH with auth: none; no STARTTLS with tls: none. */
ITest(integ, ehlo_capabilities) {
  h_upstream u;
  h_proxy px;
  start(&px, &u, &(h_proxy_opts){.listener_extra = "    max_message_size: 10MiB\n"});
  h_smtp c;
  cr_assert_eq(h_smtp_connect(&c, px.port), 0);
  char text[4096], arg[64];
  int code = h_smtp_reply(&c, H_REPLY_MS, text, sizeof text);
  cr_assert_eq(code, 220, "%d %s", code, text);
  cr_assert(strstr(text, "proxy.test") != NULL, "banner without hostname: %s", text);
  code = h_smtp_cmd(&c, "EHLO device.test", text, sizeof text);
  cr_assert_eq(code, 250, "%d %s", code, text);
  cr_assert(has_keyword(text, "SIZE", arg, sizeof arg), "no SIZE:\n%s", text);
  cr_assert_str_eq(arg, "10485760", "SIZE value:\n%s", text);
  cr_assert(has_keyword(text, "8BITMIME", NULL, 0), "no 8BITMIME:\n%s", text);
  cr_assert(has_keyword(text, "SMTPUTF8", NULL, 0), "no SMTPUTF8:\n%s", text);
  cr_assert(has_keyword(text, "ENHANCEDSTATUSCODES", NULL, 0), "no ENHANCEDSTATUSCODES:\n%s", text);
  cr_assert(!has_keyword(text, "PIPELINING", NULL, 0), "PIPELINING offered:\n%s", text);
  cr_assert(!has_keyword(text, "AUTH", NULL, 0), "AUTH offered with auth: none:\n%s", text);
  cr_assert(!has_keyword(text, "STARTTLS", NULL, 0), "STARTTLS offered with tls: none:\n%s", text);
}

/* 17: max_connections_per_client: 1 - a second concurrent connection gets
 * 421; the first is unaffected; after it leaves, a new one is welcome. */
ITest(integ, max_connections_per_client) {
  h_upstream u;
  h_proxy px;
  start(&px, &u, &(h_proxy_opts){.listener_extra = "    max_connections_per_client: 1\n"});
  h_smtp c1, c2;
  h_smtp_open(&c1, px.port, true);
  cr_assert_eq(h_smtp_connect(&c2, px.port), 0);
  char text[2048];
  int code = h_smtp_reply(&c2, H_REPLY_MS, text, sizeof text);
  cr_assert_eq(code, 421, "second connection: %d %s", code, text);
  cr_assert(h_smtp_wait_eof(&c2, 5000), "second connection not closed");
  code = h_smtp_cmd(&c1, "NOOP", text, sizeof text);
  cr_assert_eq(code, 250, "first connection after the refusal: %d %s", code, text);
  code = h_smtp_cmd(&c1, "QUIT", text, sizeof text);
  cr_assert_eq(code, 221);
  h_smtp_close(&c1);
  /* The slot is released once the proxy saw the close. */
  int64_t deadline = h_now_ms() + 3000;
  for (;;) {
    h_smtp c3;
    cr_assert_eq(h_smtp_connect(&c3, px.port), 0);
    code = h_smtp_reply(&c3, H_REPLY_MS, text, sizeof text);
    h_smtp_close(&c3);
    if (code == 220)
      break;
    cr_assert(h_now_ms() < deadline, "slot not released: %d %s", code, text);
    h_sleep_ms(100);
  }
}

/* 18: SIGTERM with an idle connected client: the client gets 421 and the
 * proxy exits 0 within shutdown_grace. */
ITest(integ, sigterm_idle_client_gets_421) {
  h_upstream u;
  h_proxy px;
  start(&px, &u, &(h_proxy_opts){.shutdown_grace = "1s"});
  h_smtp c;
  h_smtp_open(&c, px.port, true);
  int64_t t0 = h_now_ms();
  h_proc_signal(px.proc, SIGTERM);
  char text[2048];
  int code = h_smtp_reply(&c, 5000, text, sizeof text);
  cr_assert_eq(code, 421, "idle client at shutdown: %d %s", code, text);
  int rc = h_proc_wait_exit(px.proc, 5000);
  int64_t took = h_now_ms() - t0;
  cr_assert_eq(rc, 0, "proxy exit status %d after SIGTERM", rc);
  cr_assert(took < 1000 + 1500, "shutdown took %lld ms with grace 1s", (long long)took);
  cr_assert(h_smtp_wait_eof(&c, 2000), "client not disconnected");
}

/* SIGTERM stops accepting but lets a transaction in progress finish. */
ITest(integ, sigterm_lets_transaction_finish) {
  h_upstream u;
  h_proxy px;
  start(&px, &u, &(h_proxy_opts){.shutdown_grace = "5s"});
  h_smtp c;
  h_smtp_open(&c, px.port, true);
  char text[2048];
  cr_assert_eq(h_smtp_cmd(&c, "MAIL FROM:<scan@printer.test>", text, sizeof text), 250);
  cr_assert_eq(h_smtp_cmd(&c, "RCPT TO:<a@example.com>", text, sizeof text), 250);
  h_proc_signal(px.proc, SIGTERM);
  h_sleep_ms(200);
  int code = h_smtp_cmd(&c, "DATA", text, sizeof text);
  cr_assert_eq(code, 354, "DATA during shutdown: %d %s", code, text);
  h_smtp_sendstr(&c, "Subject: last one\r\n\r\nbefore shutdown\r\n.\r\n");
  code = h_smtp_reply(&c, H_REPLY_MS, text, sizeof text);
  cr_assert_eq(code, 250, "message during shutdown: %d %s", code, text);
  cr_assert_eq(h_wait_records(u.record, "message", 1, 5000), 1);
  h_smtp_cmd(&c, "QUIT", text, sizeof text);
  h_smtp_close(&c);
  int rc = h_proc_wait_exit(px.proc, 8000);
  cr_assert_eq(rc, 0, "proxy exit status %d", rc);
}
