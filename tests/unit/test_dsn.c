/* test_dsn.c - the RFC 3464 failure notice: structure, status codes,
 * the original headers, bounds. (Its MIME structure is also parsed by
 * Python's email package in the integration tests.) */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp-tls-proxy/dsn.h"
#include "smtp-tls-proxy/smtp.h"

static const char HDRS[] = "From: Scanner <scan@printer.lan>\r\nTo: a@example.com\r\n"
                           "Subject: Scan 42\r\n\r\n";

static dsn_input input(const dsn_rcpt *r, size_t n, bool expired) {
  dsn_input in = {.reporting_mta = "proxy.test",
                  .to = "postmaster@example.com",
                  .orig_from = "scan@printer.lan",
                  .spool_id = "0189c2f3a4b5c6d7",
                  .arrival_ms = 1764547200000ull, /* Mon, 01 Dec 2025 00:00:00 */
                  .now_ms = 1764547260000ull,
                  .expired = expired,
                  .max_age = "5d",
                  .rcpts = r,
                  .n_rcpts = n,
                  .headers = HDRS,
                  .headers_len = sizeof HDRS - 1};
  return in;
}

static bool crlf_only(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r'))
      return false;
    if (s[i] == '\r' && (i + 1 >= n || s[i + 1] != '\n'))
      return false;
  }
  return true;
}

static size_t longest_line(const char *s) {
  size_t best = 0, cur = 0;
  for (; *s; s++) {
    if (*s == '\n') {
      best = cur > best ? cur : best;
      cur = 0;
    } else {
      cur++;
    }
  }
  return cur > best ? cur : best;
}

Test(dsn, structure_of_a_5xx_notice) {
  dsn_rcpt r[] = {{"a@example.com", "550 5.1.1 <a@example.com>: no such user", 0, NULL},
                  {"b@example.com", "554 rejected", 0, NULL}};
  dsn_input in = input(r, 2, false);
  size_t len;
  char *t = dsn_build(&in, &len);
  cr_assert_eq(strlen(t), len);
  cr_assert(crlf_only(t, len));
  cr_assert(!strncmp(t,
                     "From: Mail Delivery System <MAILER-DAEMON@proxy.test>\r\n"
                     "To: <postmaster@example.com>\r\n"
                     "Subject: Undelivered Mail Returned to Sender\r\n"
                     "Date: Mon, 01 Dec 2025 00:01:00 +0000\r\n"
                     "Message-ID: <0189c2f3a4b5c6d7.1764547260000.dsn@proxy.test>\r\n"
                     "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
                     "Content-Type: multipart/report; report-type=delivery-status;\r\n"
                     " boundary=\"=_stp-dsn-0189c2f3a4b5c6d7-0\"\r\n\r\n",
                     strlen("From: Mail Delivery System <MAILER-DAEMON@proxy.test>\r\n")),
            "%s", t);
  const char *status = strstr(t, "Content-Type: message/delivery-status\r\n\r\n");
  cr_assert_not_null(status);
  cr_assert(strstr(status, "Reporting-MTA: dns; proxy.test\r\n"
                           "X-Spool-Id: 0189c2f3a4b5c6d7\r\n"
                           "Arrival-Date: Mon, 01 Dec 2025 00:00:00 +0000\r\n"
                           "\r\nFinal-Recipient: rfc822; a@example.com\r\nAction: failed\r\n"
                           "Status: 5.1.1\r\n"
                           "Diagnostic-Code: smtp; 550 5.1.1 <a@example.com>: no such user\r\n"
                           "\r\nFinal-Recipient: rfc822; b@example.com\r\nAction: failed\r\n"
                           "Status: 5.0.0\r\nDiagnostic-Code: smtp; 554 rejected\r\n"),
            "%s", status);
  cr_assert(strstr(t, "Content-Type: text/rfc822-headers\r\n\r\n"
                      "From: Scanner <scan@printer.lan>\r\nTo: a@example.com\r\n"
                      "Subject: Scan 42\r\n\r\n--=_stp-dsn-0189c2f3a4b5c6d7-0--\r\n"));
  cr_assert(strstr(t, "--=_stp-dsn-0189c2f3a4b5c6d7-0\r\nContent-Type: text/plain; "
                      "charset=us-ascii\r\n\r\nThis is smtp-tls-proxy at proxy.test."));
  free(t);
}

Test(dsn, expired_notice) {
  dsn_rcpt r[] = {{"a@example.com", "451 4.4.1 Upstream not reachable", 0, NULL}};
  dsn_input in = input(r, 1, true);
  size_t len;
  char *t = dsn_build(&in, &len);
  cr_assert(strstr(t, "could not be delivered within 5d (spool max_age)"));
  cr_assert(strstr(t, "Status: 4.4.1\r\nDiagnostic-Code: smtp; 451 4.4.1 Upstream not "
                      "reachable\r\nLast-Attempt-Date: Mon, 01 Dec 2025 00:01:00 +0000\r\n"),
            "%s", t);
  free(t);
}

Test(dsn, status_codes) {
  char s[16];
  dsn_status("550 5.7.1 no", false, s);
  cr_assert_str_eq(s, "5.7.1");
  dsn_status("550-5.7.26 unauthenticated", false, s);
  cr_assert_str_eq(s, "5.7.26");
  dsn_status("550 no enhanced code", false, s);
  cr_assert_str_eq(s, "5.0.0");
  dsn_status("550 5.x.1 broken", false, s);
  cr_assert_str_eq(s, "5.0.0");
  dsn_status("451 4.3.0 later", true, s);
  cr_assert_str_eq(s, "4.3.0");
  dsn_status("", true, s);
  cr_assert_str_eq(s, "4.4.7");
  dsn_status(NULL, false, s);
  cr_assert_str_eq(s, "5.0.0");
}

Test(dsn, hostile_inputs_stay_inside_their_lines) {
  char big[5000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  memcpy(big, "550 5.1.1 a\r\nInjected: yes\r\n", 29);
  dsn_rcpt r[] = {{"a\r\nBcc: victim@x", big, 0, NULL}};
  dsn_input in = input(r, 1, false);
  char hdrs[3000];
  memset(hdrs, 'h', sizeof hdrs);
  memcpy(hdrs, "X-Long: ", 8);
  memcpy(hdrs + sizeof hdrs - 4, "\r\n\r\n", 4);
  in.headers = hdrs;
  in.headers_len = sizeof hdrs;
  size_t len;
  char *t = dsn_build(&in, &len);
  cr_assert(crlf_only(t, len));
  cr_assert_leq(longest_line(t), 998);
  cr_assert_null(strstr(t, "\r\nInjected: yes"));
  cr_assert_null(strstr(t, "\r\nBcc:"));
  free(t);
}

Test(dsn, boundary_never_inside_a_part) {
  dsn_rcpt r[] = {{"a@example.com", "550 --=_stp-dsn-0189c2f3a4b5c6d7-0 looks like one", 0, NULL}};
  dsn_input in = input(r, 1, false);
  size_t len;
  char *t = dsn_build(&in, &len);
  cr_assert(strstr(t, "boundary=\"=_stp-dsn-0189c2f3a4b5c6d7-1\""));
  free(t);
}

Test(dsn, header_block_of_a_stored_body) {
  static const char body[] = "Subject: a\r\n..dotted: header\r\nX: y\r\n\r\nbody text\r\n";
  char out[DSN_HEADERS_MAX];
  size_t n = dsn_header_block(body, sizeof body - 1, out, sizeof out);
  cr_assert_eq(n, strlen("Subject: a\r\n.dotted: header\r\nX: y\r\n\r\n"));
  cr_assert(!memcmp(out, "Subject: a\r\n.dotted: header\r\nX: y\r\n\r\n", n));
  /* A partial last line of what was read is left out. */
  n = dsn_header_block("A: 1\r\nB: 2", 11, out, sizeof out);
  cr_assert_eq(n, 6);
  /* Bounded. */
  char *huge = calloc(1, 3 * DSN_HEADERS_MAX);
  for (size_t i = 0; i + 10 <= 3 * DSN_HEADERS_MAX; i += 10)
    memcpy(huge + i, "X: 12345\r\n", 10);
  n = dsn_header_block(huge, 3 * DSN_HEADERS_MAX - 2, out, sizeof out);
  cr_assert_leq(n, DSN_HEADERS_MAX);
  cr_assert_eq(n % 10, 0, "cut at a line end");
  free(huge);
}

/* RFC 6533: a UTF-8 address makes the notice international. */
Test(dsn, utf8_address_gives_a_global_notice) {
  dsn_rcpt r[] = {{"j\xc3\xb6rg+x@example.com", "550 5.1.1 unknown", 0, NULL}};
  dsn_input in = input(r, 1, false);
  cr_assert(dsn_is_global(&in));
  size_t len;
  char *t = dsn_build(&in, &len);
  cr_assert(crlf_only(t, len));
  cr_assert(strstr(t, "Content-Type: message/global-delivery-status\r\n"
                      "Content-Transfer-Encoding: 8bit\r\n\r\n"),
            "%s", t);
  cr_assert_null(strstr(t, "Content-Type: message/delivery-status"));
  /* unitext: UTF-8 stays, '+' is escaped. */
  cr_assert(strstr(t, "Final-Recipient: utf-8; j\xc3\xb6rg\\x{2B}x@example.com\r\n"), "%s", t);
  /* The explanation names the address in UTF-8 and says 8bit. */
  cr_assert(strstr(t, "Content-Type: text/plain; charset=utf-8\r\n"
                      "Content-Transfer-Encoding: 8bit\r\n"),
            "%s", t);
  cr_assert(strstr(t, "Content-Type: message/global-headers\r\n"), "%s", t);
  free(t);
  /* An ASCII notice keeps RFC 3464's types and declares nothing 8-bit. */
  dsn_rcpt a[] = {{"a@example.com", "550 5.1.1 unknown", 0, NULL}};
  in = input(a, 1, false);
  cr_assert_not(dsn_is_global(&in));
  t = dsn_build(&in, &len);
  cr_assert(strstr(t, "Content-Type: message/delivery-status\r\n\r\n"), "%s", t);
  cr_assert(strstr(t, "Content-Type: text/rfc822-headers\r\n\r\n"), "%s", t);
  cr_assert_null(strstr(t, "8bit"), "%s", t);
  free(t);
  /* 8-bit original headers alone: global headers, declared 8bit. */
  static const char H8[] = "Subject: Gr\xc3\xbc\xc3\x9f"
                           "e\r\n\r\n";
  in = input(a, 1, false);
  in.headers = H8;
  in.headers_len = sizeof H8 - 1;
  cr_assert(dsn_is_global(&in));
  t = dsn_build(&in, &len);
  cr_assert(
      strstr(t, "Content-Type: message/global-headers\r\nContent-Transfer-Encoding: 8bit\r\n"),
      "%s", t);
  free(t);
}

/* The device's DSN requests show in the notice (RFC 3464 2.2.1, 2.3.1). */
Test(dsn, envid_and_orcpt_are_reported) {
  dsn_rcpt r[] = {{"a@example.com", "550 5.1.1 unknown", SMTP_NOTIFY_FAILURE,
                   "rfc822;Alias+2Bone@example.com"}};
  dsn_input in = input(r, 1, false);
  in.envid = "job+2042";
  size_t len;
  char *t = dsn_build(&in, &len);
  cr_assert(strstr(t, "Original-Envelope-Id: job 42\r\n"), "%s", t);
  cr_assert(strstr(t, "\r\nOriginal-Recipient: rfc822;Alias+one@example.com\r\n"
                      "Final-Recipient: rfc822; a@example.com\r\n"),
            "%s", t);
  free(t);
  cr_assert(dsn_wants_failure(0));
  cr_assert(dsn_wants_failure(SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY));
  cr_assert_not(dsn_wants_failure(SMTP_NOTIFY_NEVER));
  cr_assert_not(dsn_wants_failure(SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_DELAY));
}
