/* test_sec_smuggling.c - SMTP smuggling end-of-data look-alikes (issue #5).
 *
 * SEC Consult (2023) smuggled a second transaction inside a message body by
 * ending it with something a lenient server takes for CRLF "." CRLF while
 * the next hop does not. Each look-alike below is followed by a complete
 * smuggled transaction and then the one real end of data:
 *
 *   ...before<LOOK-ALIKE>MAIL FROM:<evil@x>\r\nRCPT TO:<b@example.com>\r\n
 *   DATA\r\nsmuggled\r\n.\r\n
 *
 * A proxy that accepted the look-alike would hand the upstream (aiosmtpd,
 * which executes what it is sent) two messages, the second for
 * b@example.com from evil@x. Exactly one message (or a refusal) may arrive,
 * never two, and the device sees exactly one reply for it. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

typedef struct lookalike {
  const char *name;
  const char *bytes;
  size_t len;
  bool bare; /* contains a bare CR or LF: bare_lf: reject must refuse it */
} lookalike;

#define LA(name, s, bare)                                                                          \
  { name, s, sizeof s - 1, bare }
static const lookalike lookalikes[] = {
    LA("LF.LF", "\n.\n", true),
    LA("LF.CRLF", "\n.\r\n", true),
    LA("CR.CRLF", "\r.\r\n", true),
    LA("CRLF.CR", "\r\n.\r", true),
    LA("CRLF NUL.CRLF", "\r\n\0.\r\n", false),
    LA("CRLF.LF", "\r\n.\n", true),
    LA("CR.LF", "\r.\n", true),
    LA("CR.CR", "\r.\r", true),
    LA("CRLF.CR CRLF", "\r\n.\r\r\n", true),
    LA("LF.", "\n.", true),
};
#define N_LA (sizeof lookalikes / sizeof *lookalikes)

static const char smuggled[] = "MAIL FROM:<evil@x>\r\n"
                               "RCPT TO:<b@example.com>\r\n"
                               "DATA\r\n"
                               "smuggled\r\n";

/* The body for case i (without the final ".\r\n" h_smtp_message adds). */
static size_t make_body(size_t i, char *out, size_t cap) {
  int n = snprintf(out, cap, "Subject: smuggle %zu\r\nX-Variant: v%zu\r\n\r\nbefore", i, i);
  cr_assert(n > 0 && (size_t)n + lookalikes[i].len + sizeof smuggled < cap);
  size_t len = (size_t)n;
  memcpy(out + len, lookalikes[i].bytes, lookalikes[i].len);
  len += lookalikes[i].len;
  memcpy(out + len, smuggled, sizeof smuggled - 1);
  return len + sizeof smuggled - 1;
}

static size_t count_messages(const h_upstream *u) {
  h_lines l;
  size_t n = h_records(u->record, "message", &l);
  h_lines_free(&l);
  return n;
}

/* Every upstream message: one recipient (a@example.com), our sender, and
 * never the smuggled envelope. Returns how many carry variant i. */
static size_t check_records(const h_upstream *u, size_t i) {
  h_lines l;
  size_t n = h_records(u->record, "message", &l);
  size_t hits = 0;
  char tag[32];
  snprintf(tag, sizeof tag, "X-Variant: v%zu\r\n", i);
  for (size_t k = 0; k < n; k++) {
    char from[256];
    bool found;
    cr_assert_eq(h_json_str(l.v[k], "mail_from", from, sizeof from), 1, "%s", l.v[k]);
    cr_assert_str_eq(from, "scan@printer.test", "a smuggled sender reached the upstream: %s",
                     l.v[k]);
    cr_assert_eq(h_json_strlist(l.v[k], "rcpt_tos", "a@example.com", &found), 1,
                 "a smuggled recipient reached the upstream: %s", l.v[k]);
    cr_assert(found, "%s", l.v[k]);
    size_t blen;
    unsigned char *b = h_json_b64(l.v[k], "data_b64", &blen);
    cr_assert_not_null(b);
    if (memmem(b, blen, tag, strlen(tag))) {
      hits++;
      /* The smuggled transaction is content of this one message. */
      cr_assert(memmem(b, blen, "MAIL FROM:<evil@x>", 18) != NULL,
                "[%s] smuggled MAIL line missing from the content", lookalikes[i].name);
      cr_assert(memmem(b, blen, "smuggled\r\n", 10) != NULL,
                "[%s] body cut short before 'smuggled'", lookalikes[i].name);
      /* Re-framed: no bare CR or LF goes upstream. */
      for (size_t j = 0; j < blen; j++) {
        if (b[j] == '\n')
          cr_assert(j > 0 && b[j - 1] == '\r', "[%s] bare LF upstream at %zu", lookalikes[i].name,
                    j);
        if (b[j] == '\r')
          cr_assert(j + 1 < blen && b[j + 1] == '\n', "[%s] bare CR upstream at %zu",
                    lookalikes[i].name, j);
      }
    }
    free(b);
  }
  h_lines_free(&l);
  return hits;
}

/* Like h_smtp_message, but the bytes from the look-alike on are sent one
 * per segment (TCP_NODELAY, 2 ms apart), so that every split of the
 * look-alike and of the real terminator crosses a read boundary. */
static int message_split(h_smtp *c, const char *b, size_t blen, size_t split_at, char *text,
                         size_t cap, const char **stage) {
  *stage = "MAIL";
  int code = h_smtp_cmd(c, "MAIL FROM:<scan@printer.test>", text, cap);
  if (code != 250)
    return code;
  *stage = "RCPT";
  if ((code = h_smtp_cmd(c, "RCPT TO:<a@example.com>", text, cap)) != 250)
    return code;
  *stage = "DATA";
  if ((code = h_smtp_cmd(c, "DATA", text, cap)) != 354)
    return code;
  *stage = "DOT";
  h_smtp_send(c, b, split_at);
  for (size_t i = split_at; i < blen; i++) {
    h_smtp_send(c, b + i, 1);
    h_sleep_ms(2);
  }
  for (const char *t = ".\r\n"; *t; t++) {
    h_smtp_send(c, t, 1);
    h_sleep_ms(2);
  }
  return h_smtp_reply(c, H_REPLY_MS * 3, text, cap);
}

static void run_lookalikes(bool reject, bool split) {
  h_upstream u;
  h_proxy px;
  h_upstream_start(&u, "starttls", NULL);
  h_proxy_opts o = {.up_port = u.port, .listener_extra = reject ? "    bare_lf: reject\n" : NULL};
  h_proxy_start(&px, &o);
  size_t delivered = 0;
  for (size_t i = 0; i < N_LA; i++) {
    const lookalike *la = &lookalikes[i];
    h_smtp c;
    h_smtp_open(&c, px.port, true);
    char body[1024], text[2048];
    size_t blen = make_body(i, body, sizeof body);
    const char *stage;
    /* Where the look-alike starts: after "...before". */
    size_t at = (size_t)(strstr(body, "\r\n\r\nbefore") - body) + 10;
    int code = split ? message_split(&c, body, blen, at, text, sizeof text, &stage)
                     : h_smtp_message(&c, "scan@printer.test",
                                      (const char *const[]){"a@example.com", NULL}, body, blen,
                                      text, sizeof text, &stage);
    cr_log_info("smuggling %s%s [%s]: %s %d %s", reject ? "reject" : "fix", split ? " split" : "",
                la->name, stage, code, text);
    cr_assert_str_eq(stage, "DOT", "[%s] failed before the body: %d %s", la->name, code, text);
    if (reject && la->bare) {
      cr_assert_eq(code, 550, "[%s] bare_lf: reject: %d %s", la->name, code, text);
      cr_assert(strstr(text, "5.5.2") != NULL, "[%s] %s", la->name, text);
    } else if (!reject) {
      /* bare_lf: fix - the look-alike is content (or, at most, refused). */
      cr_assert(code == 250 || (code >= 400 && code < 600), "[%s] %d %s", la->name, code, text);
    }
    cr_assert(code != 0 && code != -1 && code != -2, "[%s] no proper reply: %d", la->name, code);
    int dot = code;
    /* Exactly one reply: none for the smuggled MAIL/RCPT/DATA/dot. */
    cr_assert(h_smtp_quiet(&c, 300), "[%s] extra replies (smuggled commands executed?)", la->name);
    code = h_smtp_cmd(&c, "NOOP", text, sizeof text);
    cr_assert_eq(code, 250, "[%s] NOOP after the message: %d %s", la->name, code, text);
    h_smtp_cmd(&c, "QUIT", text, sizeof text);
    h_smtp_close(&c);

    /* 250: exactly one new message; a refusal: none. Wait a little longer
     * than needed for a second one to show up. */
    if (dot == 250)
      h_wait_records(u.record, "message", delivered + 1, 5000);
    h_sleep_ms(150);
    size_t hits = check_records(&u, i);
    size_t total = count_messages(&u);
    cr_assert_eq(hits, dot == 250 ? 1u : 0u, "[%s] dot reply %d but %zu messages upstream",
                 la->name, dot, hits);
    cr_assert_eq(total, delivered + hits,
                 "[%s] the upstream got %zu messages, want %zu (smuggled second message?)",
                 la->name, total, delivered + hits);
    delivered = total;
  }
  /* Late arrivals (a smuggled message the upstream got after all). */
  h_sleep_ms(500);
  for (size_t i = 0; i < N_LA; i++)
    (void)check_records(&u, i);
  cr_assert_eq(count_messages(&u), delivered, "late extra messages upstream");
}

Test(integ, sec_smuggling_lookalikes_bare_lf_fix) {
  run_lookalikes(false, false);
}

/* The same, with each byte of the look-alike, the smuggled commands and
 * the real terminator in a segment of its own. */
Test(integ, sec_smuggling_lookalikes_split_segments) {
  run_lookalikes(false, true);
}

Test(integ, sec_smuggling_lookalikes_bare_lf_reject) {
  run_lookalikes(true, false);
}
