/* test_framing.c - DATA framing, size limits, command length and
 * synchronisation, end to end: what a device sends versus what the real
 * upstream (aiosmtpd) received. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static void start(h_proxy *px, h_upstream *u, const char *listener_extra) {
  h_upstream_start(u, "starttls", NULL);
  h_proxy_opts o = {.up_port = u->port, .listener_extra = listener_extra};
  h_proxy_start(px, &o);
}

static void assert_nothing_delivered(const h_upstream *u) {
  h_sleep_ms(1000);
  char *rec = h_read_file(u->record, NULL);
  cr_assert_eq(h_wait_records(u->record, "message", 1, 200), 0, "upstream received a message:\n%s",
               rec ? rec : "");
  free(rec);
}

static unsigned char *only_body(const h_upstream *u, size_t *len, char **line) {
  cr_assert_eq(h_wait_records(u->record, "message", 1, 5000), 1);
  h_lines l;
  size_t n = h_records(u->record, "message", &l);
  cr_assert_eq(n, 1, "upstream recorded %zu messages, want exactly 1", n);
  unsigned char *b = h_json_b64(l.v[0], "data_b64", len);
  cr_assert_not_null(b);
  if (line)
    *line = strdup(l.v[0]);
  h_lines_free(&l);
  return b;
}

/* One message through a fresh proxy (listener_extra applied); the upstream
 * must receive exactly `want`. */
static void expect_delivered_as(const char *listener_extra, const char *body, size_t body_len,
                                const char *want, size_t want_len) {
  h_upstream u;
  h_proxy px;
  start(&px, &u, listener_extra);
  h_smtp c;
  h_smtp_open(&c, px.port, true);
  char text[2048];
  const char *stage;
  int code = h_smtp_message(&c, "scan@printer.test", (const char *const[]){"a@example.com", NULL},
                            body, body_len, text, sizeof text, &stage);
  cr_assert_eq(code, 250, "%s: %d %s", stage, code, text);
  size_t len;
  unsigned char *got = only_body(&u, &len, NULL);
  cr_assert_eq(len, want_len, "got:\n%s", (char *)got);
  cr_assert(memcmp(got, want, len) == 0, "got:\n%s", (char *)got);
  free(got);
}

/* 9a: bare LF and bare CR are rewritten to CRLF (bare_lf: fix, default). */
ITest(integ, bare_lf_fixed_to_crlf) {
  static const char body[] = "Subject: bare\nX-Test: 1\n\nhello\nworld\r\n"
                             "cr\rhere\r\nend\r\n";
  static const char want[] = "Subject: bare\r\nX-Test: 1\r\n\r\nhello\r\nworld\r\n"
                             "cr\r\nhere\r\nend\r\n";
  expect_delivered_as(NULL, body, sizeof body - 1, want, sizeof want - 1);
}

/* 9b: bare_lf: reject answers 550 5.5.2 and delivers nothing - also for a
 * smuggling payload; the smuggled commands are never executed. */
ITest(integ, bare_lf_reject) {
  h_upstream u;
  h_proxy px;
  start(&px, &u, "    bare_lf: reject\n");
  h_smtp c;
  h_smtp_open(&c, px.port, true);
  static const char body[] = "Subject: bare\r\n\r\nbefore\r\n.\n"
                             "MAIL FROM:<evil@attacker.test>\r\n"
                             "RCPT TO:<victim@example.com>\r\n"
                             "DATA\r\nevil\r\n";
  char text[2048];
  const char *stage;
  int code = h_smtp_message(&c, "scan@printer.test", (const char *const[]){"a@example.com", NULL},
                            body, sizeof body - 1, text, sizeof text, &stage);
  cr_assert_eq(code, 550, "%s: %d %s", stage, code, text);
  cr_assert(strstr(text, "5.5.2") != NULL, "%s", text);
  /* The next reply belongs to our next command, not to smuggled ones. */
  code = h_smtp_cmd(&c, "QUIT", text, sizeof text);
  cr_assert(code == 221 || code == 0, "after reject, QUIT got %d %s", code, text);
  assert_nothing_delivered(&u);
}

/* 9c: "\r\n.\n" and "\n.\r\n" look-alikes do not end the message: exactly
 * one message upstream, holding them as content. */
ITest(integ, smuggling_lookalikes_are_content) {
  h_upstream u;
  h_proxy px;
  start(&px, &u, NULL);
  h_smtp c;
  h_smtp_open(&c, px.port, true);
  static const char body[] = "Subject: smuggle\r\n\r\nbefore\r\n"
                             ".\n"
                             "MAIL FROM:<evil@attacker.test>\r\n"
                             "RCPT TO:<victim@example.com>\r\n"
                             "DATA\r\n"
                             "evil one\r\n"
                             "middle\n"
                             ".\r\n"
                             "MAIL FROM:<evil2@attacker.test>\r\n"
                             "RCPT TO:<victim2@example.com>\r\n"
                             "DATA\r\n"
                             "evil two\r\n"
                             "after\r\n";
  char text[2048];
  const char *stage;
  int code = h_smtp_message(&c, "scan@printer.test", (const char *const[]){"a@example.com", NULL},
                            body, sizeof body - 1, text, sizeof text, &stage);
  cr_assert_eq(code, 250, "%s: %d %s", stage, code, text);
  /* Nothing else is pending: no replies to smuggled commands. */
  cr_assert(h_smtp_quiet(&c, 500), "extra replies after the message");
  code = h_smtp_cmd(&c, "QUIT", text, sizeof text);
  cr_assert_eq(code, 221, "QUIT: %d %s", code, text);

  h_sleep_ms(500);
  size_t len;
  char *line;
  unsigned char *got = only_body(&u, &len, &line);
  cr_assert_eq(h_json_strlist(line, "rcpt_tos", NULL, NULL), 1, "%s", line);
  cr_assert(strstr((char *)got, "MAIL FROM:<evil@attacker.test>") != NULL,
            "look-alike 1 missing from the content:\n%s", (char *)got);
  cr_assert(strstr((char *)got, "MAIL FROM:<evil2@attacker.test>") != NULL,
            "look-alike 2 missing from the content:\n%s", (char *)got);
  cr_assert(strstr((char *)got, "after\r\n") != NULL, "%s", (char *)got);
  /* Upstream never sees a bare CR or LF. */
  for (size_t i = 0; i < len; i++) {
    if (got[i] == '\n')
      cr_assert(i > 0 && got[i - 1] == '\r', "bare LF at %zu", i);
    if (got[i] == '\r')
      cr_assert(i + 1 < len && got[i + 1] == '\n', "bare CR at %zu", i);
  }
  free(got);
  free(line);
}

/* Dot-stuffing both ways: a stuffed line arrives unstuffed at the upstream
 * (the proxy re-stuffs what it sends). */
ITest(integ, dot_lines_survive) {
  static const char body[] = "Subject: dots\r\n\r\n..\r\n...x\r\n. \r\n";
  /* RFC 5321 4.5.2: the first of a line's leading dots is removed. */
  static const char want[] = "Subject: dots\r\n\r\n.\r\n..x\r\n \r\n";
  expect_delivered_as(NULL, body, sizeof body - 1, want, sizeof want - 1);
}

/* 10: max_message_size is advertised and enforced while streaming. */
ITest(integ, max_message_size_enforced) {
  h_upstream u;
  h_proxy px;
  start(&px, &u, "    max_message_size: 1024\n");
  h_smtp c;
  h_smtp_open(&c, px.port, true);
  char body[6000];
  size_t n = 0;
  n += (size_t)snprintf(body, sizeof body, "Subject: too big\r\n\r\n");
  while (n < 5 * 1024)
    n += (size_t)snprintf(body + n, sizeof body - n,
                          "0123456789012345678901234567890123456789012345678\r\n");
  char text[2048];
  const char *stage;
  int code = h_smtp_message(&c, "scan@printer.test", (const char *const[]){"a@example.com", NULL},
                            body, n, text, sizeof text, &stage);
  cr_assert_eq(code, 552, "%s: %d %s", stage, code, text);
  cr_assert(strstr(text, "5.3.4") != NULL, "%s", text);
  assert_nothing_delivered(&u);
}

ITest(integ, max_message_size_size_param) {
  h_upstream u;
  h_proxy px;
  start(&px, &u, "    max_message_size: 1024\n");
  h_smtp c;
  cr_assert_eq(h_smtp_connect(&c, px.port), 0);
  char text[4096];
  cr_assert_eq(h_smtp_reply(&c, H_REPLY_MS, text, sizeof text), 220);
  int code = h_smtp_cmd(&c, "EHLO device.test", text, sizeof text);
  cr_assert_eq(code, 250);
  cr_assert(strstr(text, "SIZE 1024") != NULL, "SIZE not advertised: %s", text);
  code = h_smtp_cmd(&c, "MAIL FROM:<scan@printer.test> SIZE=999999", text, sizeof text);
  cr_assert_eq(code, 552, "MAIL SIZE=999999: %d %s", code, text);
  /* A fitting SIZE is fine. */
  code = h_smtp_cmd(&c, "MAIL FROM:<scan@printer.test> SIZE=100", text, sizeof text);
  cr_assert_eq(code, 250, "MAIL SIZE=100: %d %s", code, text);
}

/* 12: command lines are limited to 512 octets including CRLF. */
ITest(integ, command_line_length_limit) {
  h_upstream u;
  h_proxy px;
  start(&px, &u, NULL);
  h_smtp c;
  h_smtp_open(&c, px.port, true);
  char line[600];
  char text[2048];
  /* "NOOP " + pad + CRLF == 512 octets */
  memcpy(line, "NOOP ", 5);
  memset(line + 5, 'x', 505);
  memcpy(line + 510, "\r\n", 3);
  cr_assert_eq(strlen(line), 512);
  h_smtp_sendstr(&c, line);
  int code = h_smtp_reply(&c, H_REPLY_MS, text, sizeof text);
  cr_assert_eq(code, 250, "512-octet NOOP: %d %s", code, text);

  memset(line + 5, 'x', 506);
  memcpy(line + 511, "\r\n", 3);
  cr_assert_eq(strlen(line), 513);
  h_smtp_sendstr(&c, line);
  code = h_smtp_reply(&c, H_REPLY_MS, text, sizeof text);
  cr_assert_eq(code, 500, "513-octet NOOP: %d %s", code, text);
  cr_assert(strstr(text, "5.5.2") != NULL, "%s", text);
}

/* 13: bytes sent after DATA before our 354 are a synchronisation error. */
ITest(integ, data_pipelined_before_354) {
  h_upstream u;
  h_proxy px;
  start(&px, &u, NULL);
  h_smtp c;
  h_smtp_open(&c, px.port, true);
  char text[2048];
  cr_assert_eq(h_smtp_cmd(&c, "MAIL FROM:<scan@printer.test>", text, sizeof text), 250);
  cr_assert_eq(h_smtp_cmd(&c, "RCPT TO:<a@example.com>", text, sizeof text), 250);
  h_smtp_sendstr(&c, "DATA\r\nSubject: x\r\n\r\nsmuggled\r\n.\r\n");
  int code = h_smtp_reply(&c, H_REPLY_MS, text, sizeof text);
  cr_assert_eq(code, 554, "DATA+body in one write: %d %s", code, text);
  cr_assert(strstr(text, "5.5.0") != NULL, "%s", text);
  cr_assert(h_smtp_wait_eof(&c, 5000), "connection not closed after 554");
  assert_nothing_delivered(&u);
}

/* Commands a device pipelines anyway (without PIPELINING) are answered in
 * order. */
ITest(integ, early_commands_answered_in_order) {
  h_upstream u;
  h_proxy px;
  start(&px, &u, NULL);
  h_smtp c;
  h_smtp_open(&c, px.port, true);
  char text[2048];
  h_smtp_sendstr(&c, "MAIL FROM:<scan@printer.test>\r\n"
                     "RCPT TO:<a@example.com>\r\n"
                     "RCPT TO:<b@example.com>\r\n"
                     "NOOP\r\n");
  for (int i = 0; i < 4; i++) {
    int code = h_smtp_reply(&c, H_REPLY_MS, text, sizeof text);
    cr_assert_eq(code, 250, "reply %d: %d %s", i, code, text);
  }
  cr_assert_eq(h_smtp_cmd(&c, "DATA", text, sizeof text), 354);
  h_smtp_sendstr(&c, "Subject: pipelined\r\n\r\nok\r\n.\r\n");
  int code = h_smtp_reply(&c, H_REPLY_MS, text, sizeof text);
  cr_assert_eq(code, 250, "dot: %d %s", code, text);
  cr_assert_eq(h_wait_records(u.record, "message", 1, 5000), 1);
  h_lines l;
  h_records(u.record, "message", &l);
  cr_assert_eq(h_json_strlist(l.v[0], "rcpt_tos", NULL, NULL), 2);
  h_lines_free(&l);
}
