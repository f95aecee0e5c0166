/* test_spool_edges.c - the spool's edges (issue 18) through the real
 * binary: DSN requests kept and honoured, held and corrupt messages
 * expiring, state changes as durable as the message, the start-up scan
 * against new commits, SIGTERM during a failure notice's read, failure
 * notices for UTF-8 addresses, `queue list`/`show` without control
 * characters, and the route's rate limit pacing spool deliveries. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "spool_common.h"

/* One message with SMTPUTF8 and the given MAIL/RCPT parameters; returns
 * the dot's code (or the first failing one). */
static int send_params(int port, const char *from, const char *mail_params,
                       const char *const rcpts[], const char *rcpt_params, const char *body,
                       char *text, size_t cap) {
  h_smtp c;
  h_smtp_open(&c, port, true);
  char line[1024];
  snprintf(line, sizeof line, "MAIL FROM:<%s>%s", from, mail_params ? mail_params : "");
  int code = h_smtp_cmd(&c, line, text, cap);
  for (size_t i = 0; code == 250 && rcpts[i]; i++) {
    snprintf(line, sizeof line, "RCPT TO:<%s>%s", rcpts[i], rcpt_params ? rcpt_params : "");
    code = h_smtp_cmd(&c, line, text, cap);
  }
  if (code == 250 && (code = h_smtp_cmd(&c, "DATA", text, cap)) == 354) {
    h_smtp_sendstr(&c, body);
    h_smtp_sendstr(&c, ".\r\n");
    code = h_smtp_reply(&c, 15000, text, cap);
  }
  h_smtp_sendstr(&c, "QUIT\r\n");
  h_smtp_close(&c);
  return code;
}

/* No byte of text is a C0 control (but LF), DEL, a C1 control as UTF-8
 * (C2 80..C2 9F) or a raw byte 0x80..0x9F outside a UTF-8 sequence. */
static void assert_printable(const char *what, const char *text) {
  const unsigned char *p = (const unsigned char *)text;
  for (size_t i = 0; p[i]; i++) {
    cr_assert(!(p[i] < 0x20 && p[i] != '\n') && p[i] != 0x7f, "%s: control 0x%02x at %zu: %s",
              what, p[i], i, text);
    cr_assert(!(p[i] == 0xc2 && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f),
              "%s: C1 control U+00%02X at %zu", what, p[i + 1], i);
    if (p[i] >= 0x80 && p[i] <= 0xbf)
      cr_assert(i > 0 && p[i - 1] >= 0x80, "%s: raw byte 0x%02x at %zu", what, p[i], i);
  }
}

Test(integ, spool_queue_list_and_show_print_no_control_characters) {
  int port = h_free_port();
  h_proxy px;
  sp_start(&px, port, "starttls", "  retry: [1h]\n");
  /* U+009B is CSI: "\xc2\x9b" "2J" clears a terminal that obeys C1. */
  const char *const to[] = {"a\xc2\x9b"
                            "2Jb@example.com",
                            "c\xc2\x85"
                            "d@example.com",
                            NULL};
  char text[1024], id[32];
  int code = send_params(px.port, "scan\xc2\x9b@printer.test", " SMTPUTF8", to, NULL,
                         "Subject: c1\r\n\r\nx\r\n", text, sizeof text);
  cr_assert_eq(code, 250, "%s", text);
  cr_assert(sp_queued_id(text, id), "%s", text);
  char out[8192], args[64];
  cr_assert_eq(sp_queue(&px, "list", out, sizeof out), 0, "%s", out);
  cr_assert(strstr(out, id), "%s", out);
  cr_assert(strstr(out, "a?2Jb@example.com"), "the C1 control is shown as '?': %s", out);
  assert_printable("queue list", out);
  snprintf(args, sizeof args, "show %s", id);
  cr_assert_eq(sp_queue(&px, args, out, sizeof out), 0, "%s", out);
  cr_assert(strstr(out, "rcpt: <c?d@example.com>"), "%s", out);
  assert_printable("queue show", out);
}
