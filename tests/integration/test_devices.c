/* test_devices.c - devices the proxy used to turn away or misread, against
 * the real upstream (aiosmtpd, tests/tools/upstream.py): an LF-only device
 * (every line, the final "." included, ends in a bare LF) under bare_lf:
 * lenient and under fix. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* A raw client writing every line with a bare LF, as some printers do. */
static int lf_cmd(h_smtp *c, const char *line, char *text, size_t cap) {
  char buf[1024];
  snprintf(buf, sizeof buf, "%s\n", line);
  cr_assert_eq(h_smtp_sendstr(c, buf), 0);
  return h_smtp_reply(c, H_REPLY_MS, text, cap);
}

static void lf_device_to_data(h_smtp *c, int port) {
  char text[1024];
  cr_assert_eq(h_smtp_connect(c, port), 0);
  cr_assert_eq(h_smtp_reply(c, H_REPLY_MS, text, sizeof text), 220);
  cr_assert_eq(lf_cmd(c, "EHLO lf-printer", text, sizeof text), 250, "%s", text);
  cr_assert_eq(lf_cmd(c, "MAIL FROM:<scan@printer.test>", text, sizeof text), 250, "%s", text);
  cr_assert_eq(lf_cmd(c, "RCPT TO:<a@example.com>", text, sizeof text), 250, "%s", text);
  cr_assert_eq(lf_cmd(c, "DATA", text, sizeof text), 354, "%s", text);
}

static const char lf_body[] = "Subject: lf only\n\nline one\n..dotted\nline two\n.\n";
static const char lf_body_crlf[] = "Subject: lf only\r\n\r\nline one\r\n.dotted\r\nline two\r\n";

ITest(integ, lf_only_device_delivered_under_lenient) {
  h_upstream u;
  h_upstream_start(&u, "starttls", NULL);
  h_proxy px;
  h_proxy_opts o = {.up_port = u.port, .listener_extra = "    bare_lf: lenient\n"};
  h_proxy_start(&px, &o);
  h_smtp c;
  lf_device_to_data(&c, px.port);
  cr_assert_eq(h_smtp_sendstr(&c, lf_body), 0);
  char text[1024];
  int code = h_smtp_reply(&c, H_REPLY_MS, text, sizeof text);
  cr_assert_eq(code, 250, "%d %s", code, text);
  cr_assert_eq(lf_cmd(&c, "QUIT", text, sizeof text), 221, "%s", text);
  /* What aiosmtpd got: CRLF lines, the dotted line intact, once. */
  cr_assert_eq(h_wait_records(u.record, "message", 1, 5000), 1);
  h_lines l;
  cr_assert_eq(h_records(u.record, "message", &l), 1);
  size_t len;
  unsigned char *got = h_json_b64(l.v[0], "data_b64", &len);
  cr_assert_eq(len, sizeof lf_body_crlf - 1, "%.*s", (int)len, (char *)got);
  cr_assert_eq(memcmp(got, lf_body_crlf, len), 0, "%.*s", (int)len, (char *)got);
  free(got);
  h_lines_free(&l);
}

/* Under fix the same device gets no answer to its LF "." LF (it is content
 * there): it waits until idle_timeout and gets 421 4.4.2, nothing is
 * delivered, and the log names bare_lf: lenient. */
ITest(integ, lf_only_device_under_fix_warned_and_nothing_delivered) {
  h_upstream u;
  h_upstream_start(&u, "starttls", NULL);
  h_proxy px;
  h_proxy_opts o = {.up_port = u.port, .listener_extra = "    idle_timeout: 2s\n"};
  h_proxy_start(&px, &o);
  h_smtp c;
  lf_device_to_data(&c, px.port);
  cr_assert_eq(h_smtp_sendstr(&c, lf_body), 0);
  const char *need[] = {" bare-lf-end-ignored ", "bare_lf=fix", "set bare_lf: lenient", NULL};
  char line[2048];
  cr_assert(h_file_wait_line(px.log, need, 5000, line, sizeof line), "no warning line");
  char text[1024];
  int64_t t0 = h_now_ms();
  int code = h_smtp_reply(&c, 6000, text, sizeof text);
  cr_assert_eq(code, 421, "the device waits for idle_timeout: %d %s", code, text);
  cr_assert_not_null(strstr(text, "4.4.2 Idle timeout"), "%s", text);
  cr_assert_geq(h_now_ms() - t0, 1000, "the answer came only at idle_timeout");
  cr_assert_eq(h_wait_records(u.record, "message", 1, 500), 0, "nothing delivered");
}

/* ---- DSN (RFC 3461) from a device using Python's smtplib -------------------- */

static int smtplib_device(int port, char *out, size_t cap) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "%s %s/smtplib_device.py --port %d --mail-option RET=HDRS "
           "--mail-option ENVID=scan-0042+2B1 --rcpt-option NOTIFY=SUCCESS,FAILURE "
           "--rcpt-option 'ORCPT=rfc822;a@example.com'",
           H_PYTHON, STP_TOOLS_DIR, port);
  return h_run(cmd, NULL, 20000, out, cap);
}

static void one_message_record(const h_upstream *u, char *line, size_t cap) {
  cr_assert_eq(h_wait_records(u->record, "message", 1, 5000), 1);
  h_lines l;
  cr_assert_eq(h_records(u->record, "message", &l), 1);
  snprintf(line, cap, "%s", l.v[0]);
  h_lines_free(&l);
}

ITest(integ, dsn_device_parameters_pass_to_a_dsn_upstream) {
  h_upstream u;
  h_upstream_start(&u, "starttls", (const char *const[]){"--dsn", NULL});
  h_proxy px;
  h_proxy_opts o = {.up_port = u.port};
  h_proxy_start(&px, &o);
  char out[2048];
  cr_assert_eq(smtplib_device(px.port, out, sizeof out), 0, "%s", out);
  char rec[8192];
  one_message_record(&u, rec, sizeof rec);
  bool found;
  h_json_strlist(rec, "mail_options", "RET=HDRS", &found);
  cr_assert(found, "%s", rec);
  h_json_strlist(rec, "mail_options", "ENVID=scan-0042+2B1", &found);
  cr_assert(found, "%s", rec);
  h_json_strlist(rec, "rcpt_options", "NOTIFY=SUCCESS,FAILURE", &found);
  cr_assert(found, "%s", rec);
  h_json_strlist(rec, "rcpt_options", "ORCPT=rfc822;a@example.com", &found);
  cr_assert(found, "%s", rec);
  cr_assert_not(h_file_contains(px.log, "dsn-dropped", 11));
}

/* aiosmtpd without DSN refuses those parameters (555): the proxy drops
 * them (RFC 3461 4) and says so, and the message goes through. */
ITest(integ, dsn_device_parameters_dropped_for_an_upstream_without_dsn) {
  h_upstream u;
  h_upstream_start(&u, "starttls", NULL);
  h_proxy px;
  h_proxy_opts o = {.up_port = u.port};
  h_proxy_start(&px, &o);
  char out[2048];
  cr_assert_eq(smtplib_device(px.port, out, sizeof out), 0, "%s", out);
  char rec[8192];
  one_message_record(&u, rec, sizeof rec);
  bool found;
  h_json_strlist(rec, "mail_options", "RET=HDRS", &found);
  cr_assert_not(found, "%s", rec);
  cr_assert_eq(h_json_strlist(rec, "rcpt_options", NULL, NULL), 0, "%s", rec);
  const char *need[] = {" dsn-dropped ", "params=RET,ENVID", NULL};
  char line[1024];
  cr_assert(h_file_wait_line(px.log, need, 2000, line, sizeof line), "no dsn-dropped line");
}

/* ---- EHLO names an upstream refuses ------------------------------------------ */

/* Gmail answers 501 5.5.4 to an EHLO name it dislikes and hangs up (a
 * stand-in replays its words): the proxy tries once more, on a new
 * connection, with an address literal of its own end, and says so. */
ITest(integ, helo_refused_retried_with_address_literal) {
  h_upstream u;
  h_replay_start(&u, "gmail-helo-literal-ok");
  h_proxy px;
  h_proxy_opts o = {.up_port = u.port};
  h_proxy_start(&px, &o);
  h_smtp c;
  h_smtp_open(&c, px.port, true);
  static const char body[] = "Subject: helo\r\n\r\nx\r\n";
  char text[1024];
  const char *stage;
  int code = h_smtp_message(&c, "scan@printer.test", (const char *const[]){"a@example.com", NULL},
                            body, sizeof body - 1, text, sizeof text, &stage);
  cr_assert_eq(code, 250, "%s: %d %s", stage, code, text);
  h_lines l;
  size_t n = h_records(u.record, "command", &l);
  size_t ehlo = 0;
  char arg[128];
  for (size_t i = 0; i < n; i++) {
    char verb[16];
    if (h_json_str(l.v[i], "verb", verb, sizeof verb) == 1 && !strcmp(verb, "EHLO") &&
        h_json_str(l.v[i], "arg", arg, sizeof arg) == 1 && ehlo++ == 1)
      cr_assert_str_eq(arg, "[127.0.0.1]", "the retry's name");
  }
  h_lines_free(&l);
  cr_assert_geq(ehlo, 2, "the refused name, then the literal");
  const char *need[] = {" helo-refused ", "helo=proxy.test", "retry_with=[127.0.0.1]", NULL};
  char line[2048];
  cr_assert(h_file_wait_line(px.log, need, 2000, line, sizeof line), "no helo-refused line");
  cr_assert_eq(h_wait_records(u.record, "message", 1, 2000), 1);
}
