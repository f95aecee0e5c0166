/* test_smtp.c - line reader, command lines, addresses, MAIL/RCPT parameters,
 * replies and EHLO capabilities. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp-tls-proxy/smtp.h"
#include "smtp-tls-proxy/util.h"

#define L(s) s, sizeof(s) - 1

/* ---- line reader -------------------------------------------------------------- */

typedef struct lines {
  char text[8][600];
  bool crlf[8];
  int rc[8];
  size_t n;
} lines_t;

/* Feed `in` in pieces of `step` bytes, collecting every line and error. */
static void lr_collect(smtp_linereader *lr, const char *in, size_t len, size_t step, lines_t *out) {
  memset(out, 0, sizeof *out);
  for (size_t pos = 0; pos < len;) {
    size_t piece = len - pos < step ? len - pos : step;
    size_t off = 0;
    while (off < piece) {
      size_t used = 0, ll = 0;
      const char *line = NULL;
      bool crlf = false;
      int rc = smtp_lr_feed(lr, in + pos + off, piece - off, &used, &line, &ll, &crlf);
      cr_assert_gt(used, 0);
      off += used;
      if (rc == 0) {
        cr_assert_eq(off, piece);
        continue;
      }
      cr_assert_lt(out->n, 8);
      out->rc[out->n] = rc;
      if (rc == 1) {
        cr_assert_lt(ll, 600);
        cr_assert_eq(line[ll], '\0');
        memcpy(out->text[out->n], line, ll);
        out->crlf[out->n] = crlf;
      }
      out->n++;
    }
    pos += piece;
  }
}

Test(smtp, lr_lines_and_terminators) {
  smtp_linereader lr;
  smtp_lr_init(&lr, SMTP_CMD_MAX);
  lines_t got;
  lr_collect(&lr, L("EHLO x\r\nNOOP\nQUIT\r\n\r\n"), 1000, &got);
  cr_assert_eq(got.n, 4);
  cr_assert_str_eq(got.text[0], "EHLO x");
  cr_assert(got.crlf[0]);
  cr_assert_str_eq(got.text[1], "NOOP");
  cr_assert_not(got.crlf[1]);
  cr_assert_str_eq(got.text[2], "QUIT");
  cr_assert_str_eq(got.text[3], "");
  cr_assert(got.crlf[3]);
  cr_assert_eq(smtp_lr_pending(&lr), 0);
  smtp_lr_free(&lr);
}

Test(smtp, lr_split_at_every_byte_same_lines) {
  static const char in[] = "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDA\rTA\r\n";
  smtp_linereader lr;
  smtp_lr_init(&lr, SMTP_CMD_MAX);
  lines_t whole, piece;
  lr_collect(&lr, in, sizeof in - 1, 1000, &whole);
  cr_assert_eq(whole.n, 3);
  cr_assert_str_eq(whole.text[2], "DA\rTA"); /* a CR inside is the parser's problem */
  for (size_t step = 1; step < sizeof in; step++) {
    lr_collect(&lr, in, sizeof in - 1, step, &piece);
    cr_assert_eq(memcmp(&whole, &piece, sizeof whole), 0, "step %zu", step);
  }
  smtp_lr_free(&lr);
}

Test(smtp, lr_exact_limit_counts_terminator) {
  smtp_linereader lr;
  smtp_lr_init(&lr, 8);
  lines_t got;
  lr_collect(&lr, L("123456\r\n1234567\r\n1234567\n12345678\n"), 1000, &got);
  cr_assert_eq(got.n, 4);
  cr_assert_eq(got.rc[0], 1);
  cr_assert_str_eq(got.text[0], "123456");
  cr_assert_eq(got.rc[1], STP_ETOOLONG);
  cr_assert_eq(got.rc[2], 1);
  cr_assert_str_eq(got.text[2], "1234567");
  cr_assert_eq(got.rc[3], STP_ETOOLONG);
  smtp_lr_free(&lr);
}

Test(smtp, lr_cmd_max_is_512_with_crlf) {
  char line[SMTP_CMD_MAX + 1];
  smtp_linereader lr;
  smtp_lr_init(&lr, SMTP_AUTH_LINE_MAX);
  lr.max = SMTP_CMD_MAX;
  memset(line, 'x', sizeof line);
  line[SMTP_CMD_MAX - 2] = '\r';
  line[SMTP_CMD_MAX - 1] = '\n';
  lines_t got;
  lr_collect(&lr, line, SMTP_CMD_MAX, 7, &got);
  cr_assert_eq(got.n, 1);
  cr_assert_eq(got.rc[0], 1);
  line[SMTP_CMD_MAX - 2] = 'x';
  line[SMTP_CMD_MAX - 1] = '\r';
  line[SMTP_CMD_MAX] = '\n';
  lr_collect(&lr, line, SMTP_CMD_MAX + 1, 7, &got);
  cr_assert_eq(got.n, 1);
  cr_assert_eq(got.rc[0], STP_ETOOLONG);
  smtp_lr_free(&lr);
}

Test(smtp, lr_endless_line_bounded_memory_one_error) {
  smtp_linereader lr;
  smtp_lr_init(&lr, SMTP_CMD_MAX);
  char chunk[4096];
  memset(chunk, 'A', sizeof chunk);
  char *buf = lr.buf;
  for (int i = 0; i < 1024; i++) { /* 4 MiB */
    size_t used, ll;
    const char *line;
    bool crlf;
    cr_assert_eq(smtp_lr_feed(&lr, chunk, sizeof chunk, &used, &line, &ll, &crlf), 0);
    cr_assert_eq(used, sizeof chunk);
    cr_assert_leq(lr.len, lr.cap);
    cr_assert_gt(smtp_lr_pending(&lr), 0);
  }
  cr_assert_eq(lr.buf, buf);
  cr_assert_eq(lr.cap, SMTP_CMD_MAX);
  size_t used, ll;
  const char *line;
  bool crlf;
  cr_assert_eq(smtp_lr_feed(&lr, L("AA\r\nQUIT\r\n"), &used, &line, &ll, &crlf), STP_ETOOLONG);
  cr_assert_eq(used, 4);
  cr_assert_eq(smtp_lr_feed(&lr, L("QUIT\r\n"), &used, &line, &ll, &crlf), 1);
  cr_assert_str_eq(line, "QUIT");
  smtp_lr_free(&lr);
}

Test(smtp, lr_max_raised_for_auth_line) {
  static char big[1000 + 2];
  memset(big, 'Q', 1000);
  big[1000] = '\r';
  big[1001] = '\n';
  smtp_linereader lr;
  smtp_lr_init(&lr, SMTP_AUTH_LINE_MAX);
  lr.max = SMTP_CMD_MAX;
  size_t used, ll;
  const char *line;
  bool crlf;
  cr_assert_eq(smtp_lr_feed(&lr, big, sizeof big, &used, &line, &ll, &crlf), STP_ETOOLONG);
  lr.max = SMTP_AUTH_LINE_MAX;
  cr_assert_eq(smtp_lr_feed(&lr, big, sizeof big, &used, &line, &ll, &crlf), 1);
  cr_assert_eq(ll, 1000);
  cr_assert(crlf);
  lr.max = SMTP_CMD_MAX;
  cr_assert_eq(smtp_lr_feed(&lr, big, sizeof big, &used, &line, &ll, &crlf), STP_ETOOLONG);
  smtp_lr_free(&lr);
}

Test(smtp, lr_pending_and_reset) {
  smtp_linereader lr;
  smtp_lr_init(&lr, 16);
  size_t used, ll;
  const char *line;
  bool crlf;
  cr_assert_eq(smtp_lr_feed(&lr, L("EHL"), &used, &line, &ll, &crlf), 0);
  cr_assert_eq(smtp_lr_pending(&lr), 3);
  smtp_lr_reset(&lr);
  cr_assert_eq(smtp_lr_pending(&lr), 0);
  cr_assert_eq(smtp_lr_feed(&lr, L("QUIT\r\n"), &used, &line, &ll, &crlf), 1);
  cr_assert_str_eq(line, "QUIT");
  /* Overflowing counts as pending even though nothing is stored. */
  cr_assert_eq(smtp_lr_feed(&lr, L("0123456789abcdefXYZ"), &used, &line, &ll, &crlf), 0);
  cr_assert_eq(smtp_lr_pending(&lr), 1);
  smtp_lr_free(&lr);
}

Test(smtp, lr_stops_after_one_line) {
  smtp_linereader lr;
  smtp_lr_init(&lr, 64);
  size_t used, ll;
  const char *line;
  bool crlf;
  cr_assert_eq(smtp_lr_feed(&lr, L("A\r\nB\r\n"), &used, &line, &ll, &crlf), 1);
  cr_assert_eq(used, 3);
  cr_assert_str_eq(line, "A");
  smtp_lr_free(&lr);
}

/* ---- commands ------------------------------------------------------------------ */

static smtp_cmd cmd_ok(const char *s, smtp_verb verb, const char *arg) {
  smtp_cmd c;
  cr_assert_eq(smtp_parse_command(s, strlen(s), &c), 0, "parse [%s]", s);
  cr_assert_eq(c.verb, verb, "verb of [%s]", s);
  cr_assert_eq(c.arg_len, strlen(arg), "arg length of [%s]: %zu", s, c.arg_len);
  cr_assert_eq(memcmp(c.arg, arg, c.arg_len), 0, "arg of [%s]", s);
  return c;
}

Test(smtp, cmd_verbs_case_insensitive) {
  cmd_ok("ehlo scanner", SMTP_EHLO, "scanner");
  cmd_ok("HeLo scanner", SMTP_HELO, "scanner");
  cmd_ok("StartTLS", SMTP_STARTTLS, "");
  cmd_ok("AUTH PLAIN AGEAYg==", SMTP_AUTH, "PLAIN AGEAYg==");
  cmd_ok("data", SMTP_DATA, "");
  cmd_ok("RSET", SMTP_RSET, "");
  cmd_ok("noop x", SMTP_NOOP, "x");
  cmd_ok("QUIT", SMTP_QUIT, "");
  cmd_ok("VRFY a", SMTP_VRFY, "a");
  cmd_ok("EXPN a", SMTP_EXPN, "a");
  cmd_ok("HELP", SMTP_HELP, "");
  cmd_ok("BDAT 10 LAST", SMTP_BDAT, "10 LAST");
}

Test(smtp, cmd_mail_forms) {
  cmd_ok("MAIL FROM:<a@b>", SMTP_MAIL, "<a@b>");
  cmd_ok("MAIL FROM: <a@b>", SMTP_MAIL, "<a@b>");
  cmd_ok("mail from:a@b", SMTP_MAIL, "a@b");
  cmd_ok("MAIL FROM : <a@b> SIZE=10  ", SMTP_MAIL, "<a@b> SIZE=10");
  cmd_ok("MAIL FROM:<>", SMTP_MAIL, "<>");
  cmd_ok("RCPT TO:<c@d>  ", SMTP_RCPT, "<c@d>");
  cmd_ok("rcpt to: c@d", SMTP_RCPT, "c@d");
}

Test(smtp, cmd_mail_rcpt_syntax_errors) {
  static const char *bad[] = {"MAIL",      "MAIL ",          "MAIL TO:<a@b>",
                              "MAIL FROM", "MAIL FROM<a@b>", "RCPT FROM:<a@b>",
                              "RCPT",      "RCPT TO <a@b>",  "MAIL FROMX:<a@b>"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    smtp_cmd c;
    cr_assert_eq(smtp_parse_command(bad[i], strlen(bad[i]), &c), STP_ESYNTAX, "[%s]", bad[i]);
  }
}

Test(smtp, cmd_verb_needs_space_or_end) {
  cmd_ok("MAILX FROM:<a@b>", SMTP_UNKNOWN, "FROM:<a@b>");
  cmd_ok("QUITNOW", SMTP_UNKNOWN, "");
  cmd_ok("DATA2", SMTP_UNKNOWN, "");
  cmd_ok("", SMTP_UNKNOWN, "");
  cmd_ok("XCLIENT ADDR=1.2.3.4", SMTP_UNKNOWN, "ADDR=1.2.3.4");
}

Test(smtp, cmd_nul_is_syntax_error) {
  smtp_cmd c;
  cr_assert_eq(smtp_parse_command(L("NOOP\0x"), &c), STP_ESYNTAX);
  cr_assert_eq(smtp_parse_command(L("MAIL FROM:<a\0@b>"), &c), STP_ESYNTAX);
  cr_assert_eq(smtp_parse_command(L("\0"), &c), STP_ESYNTAX);
}

Test(smtp, verb_names) {
  cr_assert_str_eq(smtp_verb_name(SMTP_STARTTLS), "STARTTLS");
  cr_assert_str_eq(smtp_verb_name(SMTP_MAIL), "MAIL");
  cr_assert_str_eq(smtp_verb_name(SMTP_UNKNOWN), "UNKNOWN");
}

/* ---- addresses ----------------------------------------------------------------- */

static void path_ok(const char *s, bool utf8, const char *want) {
  smtp_path p;
  size_t end = 0;
  int rc = smtp_parse_path(s, strlen(s), utf8, &p, &end);
  cr_assert_eq(rc, 0, "[%s] rc %d", s, rc);
  cr_assert_str_eq(p.addr, want, "[%s]", s);
  cr_assert_eq(p.null_path, false);
}

static void path_bad(const char *s, bool utf8) {
  smtp_path p;
  size_t end = 0;
  int rc = smtp_parse_path(s, strlen(s), utf8, &p, &end);
  cr_assert_eq(rc, STP_EADDR, "[%s] should be STP_EADDR, got %d (%s)", s, rc, p.addr);
}

Test(smtp, path_canonical_lowercases_domain_only) {
  path_ok("<John.Doe@Example.COM>", false, "John.Doe@example.com");
  path_ok("john@example.com", false, "john@example.com");
  path_ok("   <a@b>", false, "a@b");
  path_ok("<a+tag@sub-1.example.org>", false, "a+tag@sub-1.example.org");
  path_ok("<o'brien#x$y&z*=?^_`{|}~-/@x.y>", false, "o'brien#x$y&z*=?^_`{|}~-/@x.y");
}

Test(smtp, path_null_and_end_index) {
  smtp_path p;
  size_t end = 0;
  cr_assert_eq(smtp_parse_path(L("<> SIZE=1"), false, &p, &end), 0);
  cr_assert(p.null_path);
  cr_assert_str_eq(p.addr, "");
  cr_assert_eq(end, 2);
  cr_assert_eq(smtp_parse_path(L(" <a@b> X"), false, &p, &end), 0);
  cr_assert_eq(end, 6);
  cr_assert_eq(smtp_parse_path(L("a@b X"), false, &p, &end), 0);
  cr_assert_eq(end, 3);
}

Test(smtp, path_source_route_stripped) {
  path_ok("<@relay.example:a@b.example>", false, "a@b.example");
  path_ok("<@x.org,@Y.org:User@Dest.ORG>", false, "User@dest.org");
  path_bad("<@x.org,a@b>", false);
  path_bad("<@:a@b>", false);
  path_bad("<@x.org;@y:a@b>", false);
}

Test(smtp, path_quoted_local_part_kept) {
  path_ok("<\"john doe\"@X.org>", false, "\"john doe\"@x.org");
  path_ok("\"a.b c#d\"@x", false, "\"a.b c#d\"@x");
  path_ok("<\"a\\\"b\"@x>", false, "\"a\\\"b\"@x");
  path_ok("<\"a:b,c;d<e>\"@x>", false, "\"a:b,c;d<e>\"@x");
  path_bad("<\"unterminated@x>", false);
  path_bad("<\"a\"b@x>", false);
  path_bad("<\"a\tb\"@x>", false);
  path_bad("<\"a\x01\"@x>", false);
}

/* Postfix routes on what is inside quotes (resolve_dequoted_address), so
 * "v@evil.test"@example.com would pass a rule for example.com and leave for
 * evil.test. '@', '%' and '!' are refused in a quoted local part, escaped
 * or not, bracketed or not, in MAIL and RCPT alike. */
static const char *const quoted_routing[] = {
    "<\"v@evil.test\"@example.com>",
    "<\"v%evil.test\"@example.com>",
    "<\"v!evil.test\"@example.com>",
    "<\"evil.test!v\"@example.com>",
    "<\"v\\@evil.test\"@example.com>",
    "<\"v\\%evil.test\"@example.com>",
    "<\"v\\!evil.test\"@example.com>",
    "\"v@evil.test\"@example.com",
    "<@relay.test:\"v@evil.test\"@example.com>",
    "<\"@\"@example.com>",
    "<\"v@\"@example.com>",
};

Test(smtp, path_quoted_local_part_with_routing_chars_refused) {
  for (size_t i = 0; i < sizeof quoted_routing / sizeof quoted_routing[0]; i++) {
    const char *a = quoted_routing[i];
    path_bad(a, false);
    path_bad(a, true);
    smtp_path r;
    cr_assert_eq(smtp_parse_rcpt(a, strlen(a), false, &r), STP_EADDR, "RCPT [%s]", a);
    cr_assert_eq(smtp_parse_rcpt(a, strlen(a), true, &r), STP_EADDR, "RCPT utf8 [%s]", a);
    smtp_mail_args m;
    cr_assert_eq(smtp_parse_mail(a, strlen(a), &m), STP_EADDR, "MAIL [%s]", a);
    char with_param[128];
    snprintf(with_param, sizeof with_param, "%s SIZE=10 SMTPUTF8", a);
    cr_assert_eq(smtp_parse_mail(with_param, strlen(with_param), &m), STP_EADDR, "MAIL [%s]",
                 with_param);
  }
}

Test(smtp, path_quoted_local_part_without_routing_chars_passes_mail_and_rcpt) {
  smtp_path r;
  cr_assert_eq(smtp_parse_rcpt(L("<\"john doe\"@Example.com>"), false, &r), 0);
  cr_assert_str_eq(r.addr, "\"john doe\"@example.com");
  smtp_mail_args m;
  cr_assert_eq(smtp_parse_mail(L("<\"scan ner\"@printer.test> SIZE=5"), &m), 0);
  cr_assert_str_eq(m.from.addr, "\"scan ner\"@printer.test");
}

Test(smtp, path_domain_after_last_at) {
  smtp_path p;
  size_t end;
  cr_assert_eq(smtp_parse_path(L("<\"x y\"@Example.COM>"), false, &p, &end), 0);
  cr_assert_str_eq(smtp_path_domain(&p), "example.com");
  cr_assert_eq(smtp_parse_path(L("<>"), false, &p, &end), 0);
  cr_assert_str_eq(smtp_path_domain(&p), "");
}

Test(smtp, path_address_literals) {
  path_ok("<a@[192.0.2.1]>", false, "a@[192.0.2.1]");
  path_ok("<a@[ipv6:2001:DB8::1]>", false, "a@[IPv6:2001:db8::1]");
  path_ok("<a@[IPv6:::1]>", false, "a@[IPv6:::1]");
  path_bad("<a@[192.0.2]>", false);
  path_bad("<a@[300.0.2.1]>", false);
  path_bad("<a@[foo]>", false);
  path_bad("<a@[IPv6:zz::1]>", false);
  path_bad("<a@[192.0.2.1>", false);
  path_bad("<a@[192.0.2.1]x>", false);
}

Test(smtp, path_rejects_relay_hacks_and_garbage) {
  static const char *bad[] = {"a@b@c",   "<a@b@c>", "a%b@c",   "<b!a@c>",   "@c",
                              "<@c>",    "a@",      "<a@>",    "<a@b",      "a@b>",
                              "<a b@c>", "<a@b c>", "< a@b>",  "<a@b >",    "<a@b..c>",
                              "<a@.b>",  "<a@b.>",  "<a@b_c>", "<a\x01@b>", "<a@b\x7f>",
                              "<a@b\r>", "<ab>",    "ab",      "<<a@b>>",   "<a@b>>"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    smtp_path p;
    size_t end = 0;
    int rc = smtp_parse_path(bad[i], strlen(bad[i]), true, &p, &end);
    if (rc == 0 && end < strlen(bad[i]) && bad[i][end] != ' ')
      rc = STP_ESYNTAX; /* trailing junk: the MAIL/RCPT layer rejects it */
    cr_assert_neq(rc, 0, "[%s] accepted as %s", bad[i], p.addr);
  }
  path_bad("a@b@c", false);
  path_bad("a%b@c", false);
  path_bad("b!a@c", false);
  path_bad("<a@b", false);
  path_bad("<@c>", false);
}

Test(smtp, path_empty_is_syntax_error) {
  smtp_path p;
  size_t end;
  cr_assert_eq(smtp_parse_path(L(""), false, &p, &end), STP_ESYNTAX);
  cr_assert_eq(smtp_parse_path(L("   "), false, &p, &end), STP_ESYNTAX);
}

Test(smtp, path_utf8_only_when_allowed) {
  path_bad("<j\xc3\xb6rg@example.de>", false);
  path_ok("<j\xc3\xb6rg@example.de>", true, "j\xc3\xb6rg@example.de");
  path_bad("<a@b\xc3\xbc"
           "cher.de>",
           false);
  path_ok("<a@B\xc3\xbc"
          "cher.de>",
          true,
          "a@b\xc3\xbc"
          "cher.de");
  path_bad("<\"\xc3\xb6\"@x>", false);
  path_ok("<\"\xc3\xb6\"@x>", true, "\"\xc3\xb6\"@x");
}

Test(smtp, path_length_limit) {
  char s[400], want[400];
  /* 64 + 1 + 255 = 320 = SMTP_ADDR_MAX */
  size_t n = 0;
  s[n++] = '<';
  memset(s + n, 'l', 64);
  n += 64;
  s[n++] = '@';
  for (int label = 0; label < 4; label++) { /* 4 * 63 + 3 dots = 255 */
    if (label)
      s[n++] = '.';
    memset(s + n, 'd', 63);
    n += 63;
  }
  s[n++] = '>';
  s[n] = '\0';
  memcpy(want, s + 1, n - 2);
  want[n - 2] = '\0';
  cr_assert_eq(strlen(want), SMTP_ADDR_MAX);
  path_ok(s, false, want);
  memmove(s + 2, s + 1, n);
  s[1] = 'l';
  path_bad(s, false);
}

Test(smtp, path_label_too_long) {
  char s[100] = "<a@";
  memset(s + 3, 'x', 64);
  strcpy(s + 67, ".com>");
  path_bad(s, false);
  memmove(s + 3, s + 4, strlen(s + 4) + 1); /* 63 is fine */
  char want[100] = "a@";
  memset(want + 2, 'x', 63);
  strcpy(want + 65, ".com");
  path_ok(s, false, want);
}

/* ---- MAIL / RCPT -------------------------------------------------------------- */

Test(smtp, mail_params) {
  smtp_mail_args m;
  cr_assert_eq(smtp_parse_mail(L("<a@B> SIZE=1000 BODY=8BITMIME"), &m), 0);
  cr_assert_str_eq(m.from.addr, "a@b");
  cr_assert(m.has_size);
  cr_assert_eq(m.size, 1000);
  cr_assert_eq(m.body, SMTP_BODY_8BITMIME);
  cr_assert_not(m.smtputf8);

  cr_assert_eq(smtp_parse_mail(L("<a@b>  body=7bit   size=0 "), &m), 0);
  cr_assert_eq(m.body, SMTP_BODY_7BIT);
  cr_assert(m.has_size);
  cr_assert_eq(m.size, 0);

  cr_assert_eq(smtp_parse_mail(L("<>"), &m), 0);
  cr_assert(m.from.null_path);
  cr_assert_not(m.has_size);
  cr_assert_eq(m.body, SMTP_BODY_NONE);

  cr_assert_eq(smtp_parse_mail(L("a@b AUTH=<> "), &m), 0);
  cr_assert_eq(smtp_parse_mail(L("<a@b> AUTH=scanner+40example.com"), &m), 0);
}

Test(smtp, mail_size_limits) {
  smtp_mail_args m;
  cr_assert_eq(smtp_parse_mail(L("<a@b> SIZE=18446744073709551615"), &m), 0);
  cr_assert_eq(m.size, UINT64_MAX);
  cr_assert_eq(smtp_parse_mail(L("<a@b> SIZE=18446744073709551616"), &m), STP_EPARAM);
  cr_assert_eq(smtp_parse_mail(L("<a@b> SIZE=99999999999999999999999"), &m), STP_EPARAM);
  cr_assert_eq(smtp_parse_mail(L("<a@b> SIZE="), &m), STP_EPARAM);
  cr_assert_eq(smtp_parse_mail(L("<a@b> SIZE"), &m), STP_EPARAM);
  cr_assert_eq(smtp_parse_mail(L("<a@b> SIZE=12a"), &m), STP_EPARAM);
  cr_assert_eq(smtp_parse_mail(L("<a@b> SIZE=-1"), &m), STP_EPARAM);
}

Test(smtp, mail_bad_params) {
  static const char *bad[] = {
      "<a@b> BODY=BINARYMIME",
      "<a@b> BODY=",
      "<a@b> BODY",
      "<a@b> SMTPUTF8=yes",
      "<a@b> AUTH=",
      "<a@b> AUTH",
      "<a@b> RET=",
      "<a@b> RET=NONE",
      "<a@b> RET",
      "<a@b> RET=HDRS RET=FULL",
      "<a@b> ENVID=",
      "<a@b> ENVID",
      "<a@b> ENVID=a+2",  /* hexchar cut short */
      "<a@b> ENVID=a+2b", /* hexchars are upper case */
      "<a@b> ENVID=a=b",  /* '=' only as +3D */
      "<a@b> ENVID=x ENVID=y",
      "<a@b> FOO",
      "<a@b> SIZE=1 SIZE=2",
      "<a@b> BODY=7BIT body=8bitmime",
      "<a@b> SMTPUTF8 smtputf8",
      "<a@b> AUTH=<> AUTH=<>",
      "<a@b> =x",
      "<a@b> SIZE=1\x01",
      "<a@b> X=\xc3\xa4",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    smtp_mail_args m;
    cr_assert_eq(smtp_parse_mail(bad[i], strlen(bad[i]), &m), STP_EPARAM, "[%s]", bad[i]);
  }
}

/* DSN (RFC 3461): RET and ENVID on MAIL, NOTIFY and ORCPT on RCPT, strict. */
Test(smtp, dsn_mail_params) {
  smtp_mail_args m;
  cr_assert_eq(smtp_parse_mail(L("<a@b> RET=hdrs ENVID=Q123+2B45"), &m), 0);
  cr_assert_eq(m.ret, SMTP_RET_HDRS);
  cr_assert_str_eq(m.envid, "Q123+2B45");
  cr_assert_eq(smtp_parse_mail(L("<a@b> RET=FULL"), &m), 0);
  cr_assert_eq(m.ret, SMTP_RET_FULL);
  cr_assert_str_eq(m.envid, "");
  char envid[400];
  memset(envid, 'x', 100);
  snprintf(envid + 100, sizeof envid - 100, "%s", "");
  char line[512];
  snprintf(line, sizeof line, "<a@b> ENVID=%s", envid);
  cr_assert_eq(smtp_parse_mail(line, strlen(line), &m), 0, "100 octets is the limit");
  snprintf(line, sizeof line, "<a@b> ENVID=%sy", envid);
  cr_assert_eq(smtp_parse_mail(line, strlen(line), &m), STP_EPARAM, "101 octets");
}

Test(smtp, dsn_rcpt_params) {
  smtp_path p;
  smtp_rcpt_dsn d;
  cr_assert_eq(
      smtp_parse_rcpt_dsn(L("<a@b> NOTIFY=failure,Success ORCPT=rfc822;a+2Bx@b"), false, &p, &d),
      0);
  cr_assert_eq(d.notify, SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE);
  cr_assert_str_eq(d.orcpt, "rfc822;a+2Bx@b");
  char n[64];
  cr_assert_str_eq(smtp_notify_text(d.notify, n, sizeof n), "SUCCESS,FAILURE");
  cr_assert_eq(smtp_parse_rcpt_dsn(L("<a@b> NOTIFY=NEVER"), false, &p, &d), 0);
  cr_assert_str_eq(smtp_notify_text(d.notify, n, sizeof n), "NEVER");
  static const char *bad[] = {
      "<a@b> NOTIFY=",
      "<a@b> NOTIFY",
      "<a@b> NOTIFY=NEVER,SUCCESS", /* NEVER stands alone */
      "<a@b> NOTIFY=SUCCESS,SUCCESS",
      "<a@b> NOTIFY=SUCCESS,",
      "<a@b> NOTIFY=SOMETIMES",
      "<a@b> NOTIFY=DELAY NOTIFY=DELAY",
      "<a@b> ORCPT=a@b", /* no addr-type */
      "<a@b> ORCPT=;a@b",
      "<a@b> ORCPT=rfc 822;a@b",
      "<a@b> ORCPT=rfc822;",
      "<a@b> ORCPT=rfc822;a+zz",
      "<a@b> ORCPT=rfc822;a=b",
      "<a@b> ORCPT=rfc822;a ORCPT=rfc822;b",
      "<a@b> XNOTIFY=NEVER",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cr_assert_eq(smtp_parse_rcpt_dsn(bad[i], strlen(bad[i]), false, &p, &d), STP_EPARAM, "[%s]",
                 bad[i]);
    cr_assert_eq(d.notify, 0, "nothing kept from a refused RCPT [%s]", bad[i]);
    cr_assert_str_eq(d.orcpt, "");
  }
}

Test(smtp, dsn_capability) {
  smtp_reply r = {0};
  cr_assert_eq(smtp_reply_feed(&r, L("250-mx.test")), 0);
  cr_assert_eq(smtp_reply_feed(&r, L("250 DSN")), 1);
  smtp_caps c;
  smtp_caps_parse(&r, &c);
  cr_assert(c.dsn);
}

Test(smtp, mail_errors_by_kind) {
  smtp_mail_args m;
  cr_assert_eq(smtp_parse_mail(L(""), &m), STP_ESYNTAX);
  cr_assert_eq(smtp_parse_mail(L("<a@b>SIZE=1"), &m), STP_ESYNTAX);
  cr_assert_eq(smtp_parse_mail(L("<a@b@c>"), &m), STP_EADDR);
  cr_assert_eq(smtp_parse_mail(L("<a@b"), &m), STP_EADDR);
  cr_assert_eq(smtp_parse_mail(L("<a@b>\0"), &m), STP_ESYNTAX);
}

Test(smtp, mail_smtputf8_enables_8bit_address) {
  smtp_mail_args m;
  cr_assert_eq(smtp_parse_mail(L("<j\xc3\xb6rg@b\xc3\xbc"
                                 "cher.de>"),
                               &m),
               STP_EADDR);
  cr_assert_eq(smtp_parse_mail(L("<j\xc3\xb6rg@B\xc3\xbc"
                                 "cher.de> SMTPUTF8 BODY=8BITMIME"),
                               &m),
               0);
  cr_assert(m.smtputf8);
  cr_assert_str_eq(m.from.addr, "j\xc3\xb6rg@b\xc3\xbc"
                                "cher.de");
}

Test(smtp, rcpt_rules) {
  smtp_path p;
  cr_assert_eq(smtp_parse_rcpt(L("<Boss@Example.com>"), false, &p), 0);
  cr_assert_str_eq(p.addr, "Boss@example.com");
  cr_assert_eq(smtp_parse_rcpt(L("boss@example.com  "), false, &p), 0);
  cr_assert_eq(smtp_parse_rcpt(L("<>"), false, &p), STP_EADDR);
  cr_assert_eq(smtp_parse_rcpt(L("<a@b> NOTIFY=NEVER"), false, &p), 0, "DSN is offered");
  cr_assert_eq(smtp_parse_rcpt(L("<a@b> FOO=BAR"), false, &p), STP_EPARAM);
  cr_assert_eq(smtp_parse_rcpt(L("<a@b>x"), false, &p), STP_ESYNTAX);
  cr_assert_eq(smtp_parse_rcpt(L("<\xc3\xa4@b>"), false, &p), STP_EADDR);
  cr_assert_eq(smtp_parse_rcpt(L("<\xc3\xa4@b>"), true, &p), 0);
  cr_assert_eq(smtp_parse_rcpt(L(""), false, &p), STP_ESYNTAX);
}

/* ---- replies ------------------------------------------------------------------- */

static int feed(smtp_reply *r, const char *s) {
  return smtp_reply_feed(r, s, strlen(s));
}

Test(smtp, reply_multiline) {
  smtp_reply r;
  memset(&r, 0, sizeof r);
  cr_assert_eq(feed(&r, "250-mx.example"), 0);
  cr_assert_eq(feed(&r, "250-SIZE 35882577"), 0);
  cr_assert_eq(feed(&r, "250 AUTH LOGIN PLAIN"), 1);
  cr_assert_eq(r.code, 250);
  cr_assert_str_eq(r.text, "mx.example\nSIZE 35882577\nAUTH LOGIN PLAIN");
  cr_assert_eq(r.text_len, strlen(r.text));
  cr_assert_eq(r.lines, 3);
}

Test(smtp, reply_bare_code_and_empty_text) {
  smtp_reply r;
  memset(&r, 0, sizeof r);
  cr_assert_eq(feed(&r, "250"), 1);
  cr_assert_eq(r.code, 250);
  cr_assert_eq(r.text_len, 0);
  memset(&r, 0, sizeof r);
  cr_assert_eq(feed(&r, "220-"), 0);
  cr_assert_eq(feed(&r, "220 ready"), 1);
  cr_assert_str_eq(r.text, "\nready");
  memset(&r, 0, sizeof r);
  cr_assert_eq(feed(&r, "354 "), 1);
  cr_assert_eq(r.code, 354);
  cr_assert_str_eq(r.text, "");
}

Test(smtp, reply_malformed) {
  static const char *bad[] = {"2500 x", "25",    "",      "abc",    "25x ok", "650 x",
                              "199 x",  "050 x", "250_x", "250\tx", " 250 x"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    smtp_reply r;
    memset(&r, 0, sizeof r);
    cr_assert_eq(feed(&r, bad[i]), STP_ESYNTAX, "[%s]", bad[i]);
  }
}

Test(smtp, reply_code_change_mid_reply) {
  smtp_reply r;
  memset(&r, 0, sizeof r);
  cr_assert_eq(feed(&r, "250-a"), 0);
  cr_assert_eq(feed(&r, "550 b"), STP_ESYNTAX);
}

Test(smtp, reply_line_count_limit) {
  smtp_reply r;
  memset(&r, 0, sizeof r);
  for (int i = 0; i < 100; i++)
    cr_assert_eq(feed(&r, "250-x"), 0);
  cr_assert_eq(feed(&r, "250 x"), STP_ESYNTAX);
  memset(&r, 0, sizeof r);
  for (int i = 0; i < 99; i++)
    cr_assert_eq(feed(&r, "250-x"), 0);
  cr_assert_eq(feed(&r, "250 x"), 1);
  cr_assert_eq(r.lines, 100);
}

Test(smtp, reply_text_truncated_not_error) {
  char line[505];
  memset(line, 'y', sizeof line);
  memcpy(line, "250-", 4);
  smtp_reply r;
  memset(&r, 0, sizeof r);
  for (int i = 0; i < 20; i++)
    cr_assert_eq(smtp_reply_feed(&r, line, sizeof line), 0);
  line[3] = ' ';
  cr_assert_eq(smtp_reply_feed(&r, line, sizeof line), 1);
  cr_assert_eq(r.text_len, SMTP_REPLY_MAX);
  cr_assert_eq(r.text[SMTP_REPLY_MAX], '\0');
  cr_assert_eq(r.lines, 21);
}

Test(smtp, reply_control_chars_neutralised) {
  smtp_reply r;
  memset(&r, 0, sizeof r);
  cr_assert_eq(smtp_reply_feed(&r, L("550 bad\rinjected\0x\ty")), 1);
  cr_assert_eq(r.text_len, 16);
  cr_assert_eq(memcmp(r.text, "bad?injected?x\ty", 16), 0);
}

Test(smtp, reply_enhanced_status) {
  static const struct {
    const char *line;
    size_t want;
  } v[] = {
      {"250 2.1.0 Ok", 5}, {"550 5.7.1 no", 5}, {"250 2.123.456 x", 9}, {"451 4.4.2", 5},
      {"250 ok", 0},       {"550 2.0.0 x", 0},  {"250 2.1.0x", 0},      {"250 2.1000.0 x", 0},
      {"250 2..0 x", 0},   {"250 3.1.0 x", 0},  {"250 2.1. x", 0},      {"250", 0},
  };
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    smtp_reply r;
    memset(&r, 0, sizeof r);
    cr_assert_eq(feed(&r, v[i].line), 1);
    cr_assert_eq(smtp_reply_enhanced(&r), v[i].want, "[%s]", v[i].line);
  }
  smtp_reply r;
  memset(&r, 0, sizeof r);
  cr_assert_eq(feed(&r, "250-2.0.0"), 0);
  cr_assert_eq(feed(&r, "250 2.0.0 more"), 1);
  cr_assert_eq(smtp_reply_enhanced(&r), 5);
}

/* ---- capabilities ---------------------------------------------------------------- */

static void ehlo(smtp_caps *c, const char *const *lines, size_t n) {
  smtp_reply r;
  memset(&r, 0, sizeof r);
  for (size_t i = 0; i < n; i++)
    cr_assert_eq(feed(&r, lines[i]), i + 1 == n ? 1 : 0);
  smtp_caps_parse(&r, c);
}

Test(smtp, caps_gmail_like) {
  static const char *const l[] = {"250-smtp.gmail.com at your service",
                                  "250-SIZE 35882577",
                                  "250-8BITMIME",
                                  "250-STARTTLS",
                                  "250-ENHANCEDSTATUSCODES",
                                  "250-PIPELINING",
                                  "250-CHUNKING",
                                  "250 SMTPUTF8"};
  smtp_caps c;
  ehlo(&c, l, 8);
  cr_assert(c.starttls && c.pipelining && c.eightbitmime && c.smtputf8 && c.enhancedstatuscodes);
  cr_assert(c.has_size);
  cr_assert_eq(c.size, 35882577);
  cr_assert_eq(c.auth, 0);
}

Test(smtp, caps_auth_forms_case_insensitive) {
  static const char *const l[] = {"250-mx", "250-auth login Plain", "250-AUTH=LOGIN PLAIN",
                                  "250-AUTH XOAUTH2 CRAM-MD5 DIGEST-MD5", "250 size"};
  smtp_caps c;
  ehlo(&c, l, 5);
  cr_assert_eq(c.auth, SMTP_AUTH_LOGIN | SMTP_AUTH_PLAIN | SMTP_AUTH_XOAUTH2 | SMTP_AUTH_CRAM_MD5);
  cr_assert(c.has_size);
  cr_assert_eq(c.size, 0);
  cr_assert_not(c.starttls);
}

Test(smtp, caps_legacy_auth_equals_only) {
  static const char *const l[] = {"250-mx", "250 AUTH=LOGIN"};
  smtp_caps c;
  ehlo(&c, l, 2);
  cr_assert_eq(c.auth, SMTP_AUTH_LOGIN);
}

Test(smtp, caps_greeting_line_and_lookalikes_ignored) {
  static const char *const l[] = {"250-STARTTLS", "250-STARTTLSX", "250-XSTARTTLS",
                                  "250-AUTHX PLAIN", "250 SIZEX 10"};
  smtp_caps c;
  ehlo(&c, l, 5);
  cr_assert_not(c.starttls);
  cr_assert_eq(c.auth, 0);
  cr_assert_not(c.has_size);
}

Test(smtp, caps_helo_only_and_non_250) {
  static const char *const one[] = {"250 mx.example"};
  smtp_caps c;
  ehlo(&c, one, 1);
  cr_assert_not(c.starttls);
  cr_assert_not(c.has_size);
  static const char *const err[] = {"502-STARTTLS", "502 AUTH PLAIN"};
  ehlo(&c, err, 2);
  cr_assert_not(c.starttls);
  cr_assert_eq(c.auth, 0);
}

Test(smtp, address_literal_with_nul_is_rejected) {
  /* fuzz_address found "<u@[1.2.3.4\0]>" accepted as "u@[1.2.3.4" */
  static const char in[] = "<u@[1.2.3.4\0]>";
  smtp_path p;
  size_t end = 0;
  cr_assert_lt(smtp_parse_path(in, sizeof in - 1, false, &p, &end), 0);
}
