/* test_rewrite.c - From:/Reply-To:/Sender: rewriting, byte-exact, split
 * invariance, header bound, body pass-through without holding. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp-tls-proxy/rewrite.h"
#include "smtp-tls-proxy/util.h"

#define L(s) s, sizeof(s) - 1
#define HF "Office Scanner <scanner@example.com>"
#define NEWFROM "From: " HF "\r\n"

typedef struct sink {
  char *buf;
  size_t len, cap;
  size_t calls;
  const char *last_p; /* pointer of the last emit, to see copies */
} sink;

static void sink_emit(void *ctx, const char *p, size_t n) {
  sink *s = ctx;
  cr_assert_gt(n, 0, "emit called with nothing");
  if (s->len + n > s->cap) {
    s->cap = (s->len + n) * 2 + 64;
    s->buf = realloc(s->buf, s->cap);
    cr_assert_not_null(s->buf);
  }
  memcpy(s->buf + s->len, p, n);
  s->len += n;
  s->calls++;
  s->last_p = p;
}

/* Rewrite `in` fed in pieces ending at cuts[] (ascending), then finish. */
static int run_cuts(const char *in, size_t len, const size_t *cuts, size_t ncuts, size_t max,
                    sink *out, rewrite_ctx *h) {
  memset(out, 0, sizeof *out);
  cr_assert_eq(rewrite_init(h, HF, max), STP_OK);
  size_t pos = 0;
  int rc = STP_OK;
  for (size_t k = 0; k <= ncuts && rc == STP_OK; k++) {
    size_t end = k < ncuts ? cuts[k] : len;
    rc = rewrite_feed(h, in + pos, end - pos, sink_emit, out);
    pos = end;
  }
  if (rc == STP_OK)
    rc = rewrite_finish(h, sink_emit, out);
  return rc;
}

/* Whole-input rewrite; returns the output as a NUL-terminated string. */
static char *rewrite(const char *in, size_t len, rewrite_ctx *h) {
  sink out;
  cr_assert_eq(run_cuts(in, len, NULL, 0, 0, &out, h), STP_OK);
  char *s = malloc(out.len + 1);
  cr_assert_not_null(s);
  if (out.len)
    memcpy(s, out.buf, out.len);
  s[out.len] = '\0';
  free(out.buf);
  return s;
}

static void expect(const char *in, const char *want) {
  rewrite_ctx h;
  char *got = rewrite(in, strlen(in), &h);
  cr_assert_str_eq(got, want, "input:\n%s", in);
  free(got);
  rewrite_free(&h);
}

Test(rewrite, replaces_from_and_keeps_it_in_reply_to) {
  rewrite_ctx h;
  char *got = rewrite(L("From: \"Jane\" <jane@scanner.local>\r\n"
                        "To: a@example.com\r\n"
                        "Subject: scan\r\n"
                        "\r\n"
                        "body\r\n"),
                      &h);
  cr_assert_str_eq(got, NEWFROM "Reply-To: \"Jane\" <jane@scanner.local>\r\n"
                                "To: a@example.com\r\n"
                                "Subject: scan\r\n"
                                "\r\n"
                                "body\r\n");
  cr_assert(h.from_replaced);
  cr_assert_not(h.from_added);
  cr_assert(h.reply_to_added);
  cr_assert_not(h.sender_removed);
  free(got);
  rewrite_free(&h);
}

Test(rewrite, folded_from_is_replaced_whole_and_unfolded_into_reply_to) {
  expect("Subject: x\r\n"
         "from: \"Jane\"\r\n"
         " <jane@scanner.local>\r\n"
         "\t(scanner)\r\n"
         "To: y@example.com\r\n"
         "\r\n"
         "B\r\n",
         "Subject: x\r\n" NEWFROM "Reply-To: \"Jane\" <jane@scanner.local>\t(scanner)\r\n"
         "To: y@example.com\r\n"
         "\r\n"
         "B\r\n");
}

Test(rewrite, every_from_replaced_by_one_and_first_value_kept) {
  expect("FROM : first@scanner.local\r\n"
         "X-A: 1\r\n"
         "From: second@evil.example\r\n"
         "X-B: 2\r\n"
         "\r\n",
         NEWFROM "Reply-To: first@scanner.local\r\n"
                 "X-A: 1\r\n"
                 "X-B: 2\r\n"
                 "\r\n");
}

Test(rewrite, name_must_match_exactly) {
  /* From-like names that are not From: stay. */
  expect("Fromage: cheese\r\nX-From: a@b\r\nResent-From: c@d\r\n\r\n",
         "Fromage: cheese\r\nX-From: a@b\r\nResent-From: c@d\r\n" NEWFROM "\r\n");
}

Test(rewrite, no_from_adds_one_at_end_of_block) {
  rewrite_ctx h;
  char *got = rewrite(L("To: a@example.com\r\nSubject: s\r\n\r\nbody\r\n"), &h);
  cr_assert_str_eq(got, "To: a@example.com\r\nSubject: s\r\n" NEWFROM "\r\nbody\r\n");
  cr_assert(h.from_added);
  cr_assert_not(h.from_replaced);
  cr_assert_not(h.reply_to_added);
  free(got);
  rewrite_free(&h);
}

Test(rewrite, existing_reply_to_is_kept_and_none_added) {
  expect("Reply-To: boss@example.com\r\nFrom: jane@scanner.local\r\n\r\nb\r\n",
         "Reply-To: boss@example.com\r\n" NEWFROM "\r\nb\r\n");
  expect("From: jane@scanner.local\r\nreply-to:\r\n  boss@example.com\r\n\r\nb\r\n",
         NEWFROM "reply-to:\r\n  boss@example.com\r\n\r\nb\r\n");
}

Test(rewrite, no_reply_to_for_empty_or_same_address) {
  expect("From:\r\nTo: t@x\r\n\r\n", NEWFROM "To: t@x\r\n\r\n");
  expect("From:   \r\n\r\n", NEWFROM "\r\n");
  expect("From: Someone <SCANNER@Example.COM>\r\n\r\n", NEWFROM "\r\n");
  expect("From: scanner@example.com\r\n\r\n", NEWFROM "\r\n");
}

Test(rewrite, sender_removed_unless_it_is_the_new_address) {
  rewrite_ctx h;
  char *got =
      rewrite(L("Sender: jane@scanner.local\r\nFrom: jane@scanner.local\r\nTo: t@x\r\n\r\n"), &h);
  cr_assert_str_eq(got, NEWFROM "Reply-To: jane@scanner.local\r\nTo: t@x\r\n\r\n");
  cr_assert(h.sender_removed);
  free(got);
  rewrite_free(&h);

  got = rewrite(L("From: jane@scanner.local\r\nSender: The Scanner <Scanner@EXAMPLE.com>\r\n\r\n"),
                &h);
  cr_assert_str_eq(got, NEWFROM "Reply-To: jane@scanner.local\r\n"
                                "Sender: The Scanner <Scanner@EXAMPLE.com>\r\n\r\n");
  cr_assert_not(h.sender_removed);
  free(got);
  rewrite_free(&h);

  /* bare addr-spec with a comment, and a folded one that does not match */
  expect("SENDER: scanner@example.com (the scanner)\r\n\r\n",
         "SENDER: scanner@example.com (the scanner)\r\n" NEWFROM "\r\n");
  expect("Sender: \"Jane <x>\"\r\n <jane@scanner.local>\r\nX: y\r\n\r\n",
         "X: y\r\n" NEWFROM "\r\n");
  /* a quoted display name before the address */
  expect("Sender: \"Scan, \\\"the\\\" (one)\" <scanner@example.com>\r\n\r\n",
         "Sender: \"Scan, \\\"the\\\" (one)\" <scanner@example.com>\r\n" NEWFROM "\r\n");
  /* "<" inside a quoted display name does not fool the address match */
  expect("Sender: \"<scanner@example.com>\" <jane@scanner.local>\r\n\r\n", NEWFROM "\r\n");
}

Test(rewrite, stuffed_lines_are_kept) {
  expect("..X-Dot: y\r\nFrom: a@b\r\n\r\n..\r\n...x\r\n",
         "..X-Dot: y\r\n" NEWFROM "Reply-To: a@b\r\n\r\n..\r\n...x\r\n");
  /* a stuffed line that is no header field starts the body, unchanged */
  expect("From: a@b\r\n..x\r\n", NEWFROM "Reply-To: a@b\r\n\r\n..x\r\n");
}

Test(rewrite, a_non_header_line_ends_the_block_with_an_inserted_empty_line) {
  expect("From: a@b\r\nThis is not a header\r\nmore\r\n",
         NEWFROM "Reply-To: a@b\r\n\r\nThis is not a header\r\nmore\r\n");
  expect("Hello\r\n", NEWFROM "\r\nHello\r\n");
  expect(" leading continuation\r\n", NEWFROM "\r\n leading continuation\r\n");
  expect("Subject: s\r\nNo colon here\r\n", "Subject: s\r\n" NEWFROM "\r\nNo colon here\r\n");
  expect("Subject: s\r\n:empty name\r\n", "Subject: s\r\n" NEWFROM "\r\n:empty name\r\n");
  expect("Subject: s\r\nBad name\x80: x\r\n", "Subject: s\r\n" NEWFROM "\r\nBad name\x80: x\r\n");
  /* the empty line itself is not duplicated */
  expect("Subject: s\r\n\r\nNot: a header\r\n", "Subject: s\r\n" NEWFROM "\r\nNot: a header\r\n");
}

Test(rewrite, finish_without_empty_line) {
  expect("From: a@b\r\nSubject: s\r\n", NEWFROM "Reply-To: a@b\r\nSubject: s\r\n");
  expect("Subject: s", "Subject: s\r\n" NEWFROM);
  expect("From: a@b", NEWFROM "Reply-To: a@b\r\n");
  expect("Subject: s\r\nno header", "Subject: s\r\n" NEWFROM "\r\nno header");
  expect("", NEWFROM);
}

Test(rewrite, overlong_reply_to_keeps_original_folding) {
  char in[2200], want[2400];
  char name[1100];
  memset(name, 'n', 1000);
  name[1000] = '\0';
  snprintf(in, sizeof in, "From: \"%s\"\r\n <jane@scanner.local>\r\n\r\n", name);
  snprintf(want, sizeof want, NEWFROM "Reply-To: \"%s\"\r\n <jane@scanner.local>\r\n\r\n", name);
  expect(in, want);
}

Test(rewrite, init_refuses_header_injection) {
  rewrite_ctx h;
  cr_assert_eq(rewrite_init(&h, "A <a@b>\r\nBcc: x@y", 0), STP_EINVAL);
  rewrite_free(&h);
  cr_assert_eq(rewrite_init(&h, "A <a@b>\n.", 0), STP_EINVAL);
  rewrite_free(&h);
  cr_assert_eq(rewrite_init(&h, "", 0), STP_EINVAL);
  rewrite_free(&h);
  cr_assert_eq(rewrite_init(&h, NULL, 0), STP_EINVAL);
  rewrite_free(&h);
  cr_assert_eq(rewrite_init(&h, "A\t<a@b>", 0), STP_OK);
  cr_assert_str_eq(h.from_addr, "a@b");
  rewrite_free(&h);
}

static const char *split_msgs[] = {
    "Received: from x\r\n\tby y\r\n"
    "From: \"Jane\"\r\n <jane@scanner.local>\r\n"
    "Sender: jane@scanner.local\r\n"
    "..X-Dot: 1\r\n"
    "Subject: s\r\n"
    "FROM :again@x\r\n"
    "\r\n"
    "body\r\n..\r\n\r\nFrom: not a header\r\n",
    "To: a@b\r\nnot a header\r\nbody\r\n",
    "Subject: only headers\r\nFrom: x@y\r\n",
    "Hello\r\n\r\n",
    "\r\nFrom: body@only\r\n",
    "Subject: s\r\nReply-To: r@x\r\nSender: Scanner <scanner@example.com>\r\n\r\nB",
};

Test(rewrite, output_is_independent_of_splits) {
  for (size_t m = 0; m < sizeof split_msgs / sizeof split_msgs[0]; m++) {
    const char *in = split_msgs[m];
    size_t len = strlen(in);
    rewrite_ctx h;
    sink whole;
    cr_assert_eq(run_cuts(in, len, NULL, 0, 0, &whole, &h), STP_OK);
    rewrite_free(&h);
    for (size_t at = 0; at <= len; at++) {
      sink part;
      size_t cut = at;
      cr_assert_eq(run_cuts(in, len, &cut, 1, 0, &part, &h), STP_OK);
      cr_assert_eq(part.len, whole.len, "msg %zu cut %zu: length", m, at);
      cr_assert(memcmp(part.buf, whole.buf, whole.len) == 0, "msg %zu cut %zu: bytes", m, at);
      free(part.buf);
      rewrite_free(&h);
    }
    size_t *cuts = malloc(len * sizeof *cuts);
    for (size_t i = 0; i < len; i++)
      cuts[i] = i + 1;
    sink bytes;
    cr_assert_eq(run_cuts(in, len, cuts, len, 0, &bytes, &h), STP_OK);
    cr_assert_eq(bytes.len, whole.len, "msg %zu bytewise: length", m);
    cr_assert(memcmp(bytes.buf, whole.buf, whole.len) == 0, "msg %zu bytewise: bytes", m);
    free(bytes.buf);
    free(cuts);
    rewrite_free(&h);
    free(whole.buf);
  }
}

/* A header block of `total` bytes including its empty line. */
static char *block_of(size_t total) {
  char *s = malloc(total + 16);
  cr_assert_not_null(s);
  const char *head = "X-Pad: ";
  size_t hl = strlen(head);
  cr_assert_geq(total, hl + 4);
  memcpy(s, head, hl);
  memset(s + hl, 'p', total - hl - 4);
  memcpy(s + total - 4, "\r\n\r\n", 4);
  memcpy(s + total, "body\r\n", 7);
  return s;
}

Test(rewrite, header_block_bound) {
  const size_t max = 4096;
  for (size_t total = max - 1; total <= max + 1; total++) {
    char *in = block_of(total);
    size_t len = total + 6;
    sink out;
    rewrite_ctx h;
    int rc = run_cuts(in, len, NULL, 0, max, &out, &h);
    if (total <= max) {
      cr_assert_eq(rc, STP_OK, "total %zu", total);
      cr_assert_eq(out.len, len + strlen(NEWFROM));
    } else {
      cr_assert_eq(rc, STP_ETOOLONG, "total %zu", total);
      cr_assert_eq(out.len, 0, "nothing emitted after the bound");
      cr_assert_null(h.buf, "held block released");
      cr_assert_eq(rewrite_feed(&h, L("more"), sink_emit, &out), STP_ETOOLONG);
      cr_assert_eq(rewrite_finish(&h, sink_emit, &out), STP_ETOOLONG);
      cr_assert_eq(out.len, 0);
    }
    /* the same bound byte by byte */
    size_t *cuts = malloc(len * sizeof *cuts);
    for (size_t i = 0; i < len; i++)
      cuts[i] = i + 1;
    rewrite_free(&h);
    free(out.buf);
    rc = run_cuts(in, len, cuts, len, max, &out, &h);
    cr_assert_eq(rc, total <= max ? STP_OK : STP_ETOOLONG, "bytewise total %zu", total);
    free(cuts);
    free(out.buf);
    rewrite_free(&h);
    free(in);
  }
}

Test(rewrite, unterminated_header_line_is_bounded_too) {
  rewrite_ctx h;
  sink out = {0};
  cr_assert_eq(rewrite_init(&h, HF, 100), STP_OK);
  char line[100];
  memset(line, 'v', sizeof line);
  memcpy(line, "X-Long: ", 8);
  cr_assert_eq(rewrite_feed(&h, line, 100, sink_emit, &out), STP_OK);
  cr_assert_eq(rewrite_feed(&h, "v", 1, sink_emit, &out), STP_ETOOLONG);
  cr_assert_eq(out.len, 0);
  rewrite_free(&h);
}

Test(rewrite, body_passes_through_immediately_and_is_not_held) {
  rewrite_ctx h;
  sink out = {0};
  cr_assert_eq(rewrite_init(&h, HF, 1024), STP_OK);
  static const char head[] = "From: a@b\r\nSubject: big\r\n\r\n";
  cr_assert_eq(rewrite_feed(&h, L(head), sink_emit, &out), STP_OK);
  const char *want_head = NEWFROM "Reply-To: a@b\r\nSubject: big\r\n\r\n";
  cr_assert_eq(out.len, strlen(want_head));
  cr_assert(memcmp(out.buf, want_head, out.len) == 0);
  cr_assert_null(h.buf, "header buffer released once emitted");

  const size_t body_len = 1024 * 1024, chunk = 4096;
  char *body = malloc(body_len);
  for (size_t i = 0; i < body_len; i++)
    body[i] = (i % 80 == 78) ? '\r' : (i % 80 == 79) ? '\n' : (char)('a' + i % 26);
  size_t before = out.len;
  for (size_t off = 0; off < body_len; off += chunk) {
    size_t calls = out.calls, len = out.len;
    cr_assert_eq(rewrite_feed(&h, body + off, chunk, sink_emit, &out), STP_OK);
    cr_assert_eq(out.calls, calls + 1, "one emit per chunk at %zu", off);
    cr_assert_eq(out.len, len + chunk, "the whole chunk emitted at %zu", off);
    cr_assert_eq(out.last_p, body + off, "emitted from the caller's buffer, not a copy");
    cr_assert_null(h.buf);
  }
  cr_assert_eq(rewrite_finish(&h, sink_emit, &out), STP_OK);
  cr_assert_eq(out.len - before, body_len);
  cr_assert(memcmp(out.buf + before, body, body_len) == 0);
  free(body);
  free(out.buf);
  rewrite_free(&h);
}

Test(rewrite, body_bytes_in_the_same_feed_as_the_empty_line_pass_at_once) {
  rewrite_ctx h;
  sink out = {0};
  cr_assert_eq(rewrite_init(&h, HF, 0), STP_OK);
  static const char in[] = "Subject: s\r\n\r\nbody line\r\n";
  cr_assert_eq(rewrite_feed(&h, L(in), sink_emit, &out), STP_OK);
  static const char want[] = "Subject: s\r\n" NEWFROM "\r\nbody line\r\n";
  cr_assert_eq(out.len, sizeof want - 1, "everything emitted before finish");
  cr_assert(memcmp(out.buf, want, out.len) == 0);
  cr_assert_eq(out.last_p, in + 14, "body emitted from the input");
  cr_assert_eq(rewrite_finish(&h, sink_emit, &out), STP_OK);
  cr_assert_eq(out.len, sizeof want - 1);
  free(out.buf);
  rewrite_free(&h);
}
