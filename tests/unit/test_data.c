/* test_data.c - DATA framing: end of data, smuggling look-alikes, bare
 * CR/LF policy, dot (un)stuffing, size limit, split invariance. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "smtp-tls-proxy/data.h"

#define L(s) s, sizeof(s) - 1

typedef struct sink {
  char *buf;
  size_t len, cap;
  size_t calls;
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
}

static void sink_free(sink *s) {
  free(s->buf);
}

typedef struct result {
  sink out;
  size_t consumed;
  data_framer f;
} result;

/* Feed `in` cut at the given offsets (ascending), stopping at end of data
 * as a real caller would. */
static void run_cuts(const char *in, size_t len, bool reject, uint64_t max, const size_t *cuts,
                     size_t ncuts, result *r) {
  memset(r, 0, sizeof *r);
  data_framer_init(&r->f, reject, max);
  size_t pos = 0;
  for (size_t k = 0; k <= ncuts && !r->f.done; k++) {
    size_t end = k < ncuts ? cuts[k] : len;
    size_t n = data_framer_feed(&r->f, in + pos, end - pos, sink_emit, &r->out);
    cr_assert(n == end - pos || r->f.done, "short consume without end");
    r->consumed += n;
    pos = end;
  }
}

static void run_whole(const char *in, size_t len, bool reject, uint64_t max, result *r) {
  run_cuts(in, len, reject, max, NULL, 0, r);
}

static void assert_same(const result *a, const result *b, const char *what, size_t at) {
  cr_assert_eq(a->out.len, b->out.len, "%s %zu: output length %zu vs %zu", what, at, a->out.len,
               b->out.len);
  cr_assert(a->out.len == 0 || memcmp(a->out.buf, b->out.buf, a->out.len) == 0,
            "%s %zu: output differs", what, at);
  cr_assert_eq(a->consumed, b->consumed, "%s %zu: consumed", what, at);
  cr_assert_eq(a->f.done, b->f.done, "%s %zu: done", what, at);
  cr_assert_eq(a->f.size, b->f.size, "%s %zu: size", what, at);
  cr_assert_eq(a->f.too_big, b->f.too_big, "%s %zu: too_big", what, at);
  cr_assert_eq(a->f.bare_seen, b->f.bare_seen, "%s %zu: bare_seen", what, at);
}

/* Output must be CRLF-framed with no bare CR/LF and no "." line. */
static void assert_clean(const char *o, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (o[i] == '\r')
      cr_assert(i + 1 < n && o[i + 1] == '\n', "bare CR in output at %zu", i);
    if (o[i] == '\n')
      cr_assert(i > 0 && o[i - 1] == '\r', "bare LF in output at %zu", i);
    bool bol = i == 0 || o[i - 1] == '\n';
    if (bol && o[i] == '.')
      cr_assert(i + 1 < n && o[i + 1] == '.', "unstuffed dot line start at %zu", i);
  }
}

/* The whole-feed result equals the one-byte-at-a-time result and every
 * one-cut and two-cut split. Returns the whole result in *whole. */
static void check_invariant(const char *in, size_t len, bool reject, uint64_t max, result *whole) {
  run_whole(in, len, reject, max, whole);
  result r;
  for (size_t a = 1; a < len; a++) {
    run_cuts(in, len, reject, max, &a, 1, &r);
    assert_same(whole, &r, "cut at", a);
    sink_free(&r.out);
    for (size_t b = a + 1; b < len && len <= 40; b++) {
      size_t cuts[2] = {a, b};
      run_cuts(in, len, reject, max, cuts, 2, &r);
      assert_same(whole, &r, "second cut at", b);
      sink_free(&r.out);
    }
  }
  size_t *all = malloc(len * sizeof *all);
  for (size_t i = 0; i < len; i++)
    all[i] = i + 1;
  run_cuts(in, len, reject, max, all, len ? len - 1 : 0, &r);
  assert_same(whole, &r, "bytewise", 0);
  sink_free(&r.out);
  free(all);
  if (!reject || !whole->f.bare_seen)
    assert_clean(whole->out.buf, whole->out.len);
}

typedef struct vec {
  const char *in;
  size_t in_len;
  const char *out;
  size_t out_len;
  size_t consumed; /* bytes up to and including the end marker */
  bool done;
  bool bare;
} vec;

#define V(i, o, c, d, b)                                                                           \
  { i, sizeof(i) - 1, o, sizeof(o) - 1, c, d, b }

static void check_vec(const vec *v, bool reject, uint64_t max) {
  result r;
  check_invariant(v->in, v->in_len, reject, max, &r);
  cr_assert_eq(r.out.len, v->out_len, "[%s] output length %zu, want %zu", v->in, r.out.len,
               v->out_len);
  cr_assert(v->out_len == 0 || memcmp(r.out.buf, v->out, v->out_len) == 0, "[%s] output bytes",
            v->in);
  cr_assert_eq(r.f.done, v->done, "[%s] done", v->in);
  cr_assert_eq(r.consumed, v->consumed, "[%s] consumed %zu, want %zu", v->in, r.consumed,
               v->consumed);
  cr_assert_eq(r.f.bare_seen, v->bare, "[%s] bare_seen", v->in);
  sink_free(&r.out);
}

/* ---- fix mode: byte-exact vectors, every split ---------------------------- */

Test(data, plain_message_ends_and_leaves_next_command) {
  static const vec v =
      V("Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n", "Subject: x\r\n\r\nbody\r\n", 23, true, false);
  check_vec(&v, false, 0);
}

Test(data, immediate_end_at_start) {
  static const vec v = V(".\r\nQUIT\r\n", "", 3, true, false);
  check_vec(&v, false, 0);
}

Test(data, lf_dot_lf_is_content) {
  static const vec v = V("a\n.\nb\r\n.\r\nX", "a\r\n\r\nb\r\n", 10, true, true);
  check_vec(&v, false, 0);
}

Test(data, lf_dot_crlf_is_content) {
  static const vec v = V("a\n.\r\nb\r\n.\r\nX", "a\r\n\r\nb\r\n", 11, true, true);
  check_vec(&v, false, 0);
}

Test(data, crlf_dot_lf_is_content) {
  static const vec v = V("a\r\n.\nb\r\n.\r\nX", "a\r\n\r\nb\r\n", 11, true, true);
  check_vec(&v, false, 0);
}

Test(data, cr_dot_cr_is_content) {
  static const vec v = V("a\r.\rb\r\n.\r\nX", "a\r\n\r\nb\r\n", 10, true, true);
  check_vec(&v, false, 0);
}

Test(data, crlf_dot_cr_is_content) {
  static const vec v = V("a\r\n.\rb\r\n.\r\nX", "a\r\n\r\nb\r\n", 11, true, true);
  check_vec(&v, false, 0);
}

Test(data, nul_before_dot_is_content_and_passes) {
  static const vec v = V("a\r\n\0.\r\n.\r\nX", "a\r\n\0.\r\n", 10, true, false);
  check_vec(&v, false, 0);
}

Test(data, nul_bytes_untouched) {
  static const vec v = V("\0a\0\r\n\0\r\n.\r\n", "\0a\0\r\n\0\r\n", 11, true, false);
  check_vec(&v, false, 0);
}

Test(data, stuffed_dot_line_stays_stuffed) {
  static const vec v = V("..\r\n.\r\n", "..\r\n", 7, true, false);
  check_vec(&v, false, 0);
}

Test(data, unstuffing_and_restuffing) {
  static const vec v =
      V("a\r\n.b\r\n..c\r\n...\r\n.\r\n", "a\r\nb\r\n..c\r\n...\r\n", 20, true, false);
  check_vec(&v, false, 0);
}

Test(data, cr_cr_lf_is_two_line_ends) {
  static const vec v = V("a\r\r\n.\r\nX", "a\r\n\r\n", 7, true, true);
  check_vec(&v, false, 0);
}

Test(data, dot_line_after_bare_line_then_real_end) {
  /* ".\n" is content; the next ".\r\n" follows a bare LF so is content too;
   * only the third, after a real CRLF, ends. */
  static const vec v = V("a\r\n.\n.\r\n.\r\nX", "a\r\n\r\n\r\n", 11, true, true);
  check_vec(&v, false, 0);
}

Test(data, bare_lf_at_start_then_dot) {
  static const vec v = V("\n.\r\n.\r\n", "\r\n\r\n", 7, true, true);
  check_vec(&v, false, 0);
}

Test(data, cr_dot_crlf_at_start_is_content) {
  static const vec v = V("\r.\r\n.\r\n", "\r\n\r\n", 7, true, true);
  check_vec(&v, false, 0);
}

Test(data, dot_cr_cr_lf) {
  /* ".\r" then "\r\n": the dot line ends in a bare CR (content), then an
   * empty line with a real CRLF, after which "." ends. */
  static const vec v = V("a\r\n.\r\r\n.\r\n", "a\r\n\r\n\r\n", 10, true, true);
  check_vec(&v, false, 0);
}

Test(data, no_end_without_real_crlf_dot_crlf) {
  static const vec v = V("a\n.\n\r.\r\n.\n", "a\r\n\r\n\r\n\r\n\r\n", 10, false, true);
  check_vec(&v, false, 0);
}

Test(data, incomplete_end_marker_not_done) {
  static const vec v = V("a\r\n.\r", "a\r\n", 5, false, false);
  check_vec(&v, false, 0);
}

Test(data, dot_text_line_unstuffed_at_start) {
  static const vec v = V(".foo\r\n.\r\n", "foo\r\n", 9, true, false);
  check_vec(&v, false, 0);
}

Test(data, trailing_dot_text_not_end) {
  static const vec v = V("a\r\n.\r\nb", "a\r\n", 6, true, false);
  check_vec(&v, false, 0);
}

Test(data, dot_space_is_not_end) {
  static const vec w = V("a\r\n. \r\n.\r\n", "a\r\n \r\n", 10, true, false);
  check_vec(&w, false, 0);
}

/* ---- reject mode ------------------------------------------------------------ */

Test(data, reject_clean_message_passes) {
  static const vec v = V("a\r\n..b\r\n.\r\nQUIT\r\n", "a\r\n..b\r\n", 11, true, false);
  check_vec(&v, true, 0);
}

Test(data, reject_bare_lf_stops_output_keeps_consuming) {
  static const vec v = V("a\nb\r\nc\r\n.\r\nQUIT\r\n", "a", 11, true, true);
  check_vec(&v, true, 0);
}

Test(data, reject_lf_dot_lf_look_alike) {
  static const vec v = V("a\r\n.\nb\r\n.\r\nQUIT", "a\r\n", 11, true, true);
  check_vec(&v, true, 0);
}

Test(data, reject_look_alike_does_not_end) {
  /* After a bare LF the ".\r\n" is content even when rejecting. */
  static const vec v = V("a\n.\r\nQUIT\r\n", "a", 11, false, true);
  check_vec(&v, true, 0);
}

Test(data, reject_bare_cr) {
  static const vec v = V("ab\rc\r\n.\r\n", "ab", 9, true, true);
  check_vec(&v, true, 0);
}

Test(data, reject_cr_cr_lf) {
  static const vec v = V("a\r\r\n.\r\nX", "a", 7, true, true);
  check_vec(&v, true, 0);
}

Test(data, reject_cr_dot_cr) {
  static const vec v = V("a\r\n\r.\r\r\n.\r\n", "a\r\n", 11, true, true);
  check_vec(&v, true, 0);
}

/* ---- size limit ------------------------------------------------------------- */

static void check_size(const char *in, size_t len, uint64_t want_size) {
  result r;
  check_invariant(in, len, false, want_size, &r);
  cr_assert(r.f.done);
  cr_assert_eq(r.f.size, want_size, "size %llu want %llu", (unsigned long long)r.f.size,
               (unsigned long long)want_size);
  cr_assert_not(r.f.too_big, "size == max must pass");
  sink_free(&r.out);

  check_invariant(in, len, false, want_size - 1, &r);
  cr_assert(r.f.done, "too big must still find the end");
  cr_assert_eq(r.consumed, len);
  cr_assert(r.f.too_big, "max+1 must be too big");
  cr_assert_lt(r.out.len, want_size + 1);
  sink_free(&r.out);
}

Test(data, size_exact_boundary_text) {
  check_size(L("abc\r\n.\r\n"), 5);
}

Test(data, size_counts_unstuffed_not_stuffing) {
  /* ".." -> "." is 1 byte + CRLF; ".x" -> "x". */
  check_size(L("..\r\n.x\r\n.\r\n"), 6);
}

Test(data, size_counts_fixed_line_ends_as_two) {
  check_size(L("a\nb\rc\r\n.\r\n"), 9);
}

Test(data, size_counts_dot_line_content) {
  check_size(L("a\n.\r\n.\r\n"), 5);
}

Test(data, size_unlimited_when_zero) {
  result r;
  run_whole(L("abcdef\r\n.\r\n"), false, 0, &r);
  cr_assert_not(r.f.too_big);
  cr_assert_eq(r.f.size, 8);
  sink_free(&r.out);
}

Test(data, too_big_stops_output_at_limit) {
  result r;
  check_invariant(L("0123456789\r\nabcdefghij\r\n.\r\nQUIT\r\n"), false, 4, &r);
  cr_assert(r.f.too_big);
  cr_assert(r.f.done);
  cr_assert_eq(r.consumed, 27);
  cr_assert_eq(r.out.len, 4);
  cr_assert_eq(memcmp(r.out.buf, "0123", 4), 0);
  cr_assert_eq(r.f.size, 24);
  sink_free(&r.out);
}

/* ---- behaviour of the feed itself ----------------------------------------- */

Test(data, verbatim_input_is_one_emit) {
  result r;
  run_whole(L("hello\r\n..world\r\n\r\nbye\r\n.\r\n"), false, 0, &r);
  cr_assert_eq(r.out.calls, 1);
  cr_assert_eq(r.out.len, 23);
  sink_free(&r.out);
}

Test(data, feed_after_done_consumes_nothing) {
  data_framer f;
  sink s = {0};
  data_framer_init(&f, false, 0);
  cr_assert_eq(data_framer_feed(&f, L("x\r\n.\r\nMAIL"), sink_emit, &s), 6);
  cr_assert_eq(data_framer_feed(&f, L("MAIL FROM:<a@b>\r\n"), sink_emit, &s), 0);
  cr_assert_eq(s.len, 3);
  sink_free(&s);
}

Test(data, empty_feed) {
  data_framer f;
  sink s = {0};
  data_framer_init(&f, false, 0);
  cr_assert_eq(data_framer_feed(&f, "", 0, sink_emit, &s), 0);
  cr_assert_eq(s.calls, 0);
  cr_assert_not(f.done);
  sink_free(&s);
}

Test(data, fix_mode_records_bare_seen_but_keeps_output) {
  result r;
  run_whole(L("a\nb\r\n.\r\n"), false, 0, &r);
  cr_assert(r.f.bare_seen);
  cr_assert_eq(r.out.len, 6);
  cr_assert_eq(memcmp(r.out.buf, "a\r\nb\r\n", 6), 0);
  sink_free(&r.out);
}

/* ---- streaming 10 MB in constant memory ------------------------------------ */

/* Input lines and what each must become. The pattern ends in a real CRLF,
 * so each repetition is framed independently of the one before. */
static const struct {
  const char *in, *out;
} pattern[] = {
    {"Received: from scanner\r\n", "Received: from scanner\r\n"},
    {"..leading dot\r\n", "..leading dot\r\n"},
    {".single dot\r\n", "single dot\r\n"},
    {"bare lf\n", "bare lf\r\n"},
    {".\n", "\r\n"},
    {"bare cr\rx\r\n", "bare cr\r\nx\r\n"},
    {"\0nul\0\r\n", "\0nul\0\r\n"},
    {"\r\n", "\r\n"},
    {"a fairly long line of text, like a base64 body: QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=\r\n",
     "a fairly long line of text, like a base64 body: QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=\r\n"},
};
static const size_t pattern_in_len[] = {24, 15, 13, 8, 2, 11, 7, 2, 86};
static const size_t pattern_out_len[] = {24, 15, 12, 9, 2, 12, 7, 2, 86};

typedef struct verifier {
  const char *want;
  size_t want_len, pos;
  uint64_t total;
  size_t calls;
} verifier;

static void verify_emit(void *ctx, const char *p, size_t n) {
  verifier *v = ctx;
  v->calls++;
  v->total += n;
  for (size_t i = 0; i < n; i++) {
    if (p[i] != v->want[v->pos])
      cr_assert_fail("output differs at byte %llu", (unsigned long long)(v->total - n + i));
    v->pos = (v->pos + 1) % v->want_len;
  }
}

Test(data, ten_megabytes_streamed_in_odd_chunks) {
  char in_pat[256], out_pat[256];
  size_t il = 0, ol = 0;
  for (size_t k = 0; k < sizeof pattern / sizeof pattern[0]; k++) {
    cr_assert_eq(strlen(pattern[k].in) <= pattern_in_len[k], true);
    memcpy(in_pat + il, pattern[k].in, pattern_in_len[k]);
    il += pattern_in_len[k];
    memcpy(out_pat + ol, pattern[k].out, pattern_out_len[k]);
    ol += pattern_out_len[k];
  }
  data_framer f;
  data_framer_init(&f, false, 0);
  verifier v = {out_pat, ol, 0, 0, 0};
  const size_t reps = (10u << 20) / il + 1;
  const uint64_t total_in = (uint64_t)reps * il;
  char chunk[4093]; /* prime: cuts fall everywhere in the pattern */
  uint64_t fed = 0;
  size_t feeds = 0;
  while (fed < total_in) {
    size_t n = 0;
    while (n < sizeof chunk && fed + n < total_in) {
      chunk[n] = in_pat[(fed + n) % il];
      n++;
    }
    cr_assert_eq(data_framer_feed(&f, chunk, n, verify_emit, &v), n);
    fed += n;
    feeds++;
  }
  cr_assert_not(f.done);
  cr_assert_eq(data_framer_feed(&f, L(".\r\nQUIT\r\n"), verify_emit, &v), 3);
  cr_assert(f.done);
  cr_assert_eq(v.total, (uint64_t)reps * ol);
  cr_assert_eq(f.size, (uint64_t)reps * ol - (uint64_t)reps * 1 /* one stuffing dot per rep */);
  /* Batched: a handful of emits per repetition (one per rewritten line
   * end or dropped dot), not one per byte. */
  cr_assert_lt(v.calls, reps * 8 + feeds * 2);
  cr_assert_gt(total_in, 10u << 20);
}

/* ---- data_stuff_block --------------------------------------------------------- */

static void check_stuff(const char *in, size_t len, const char *want, size_t want_len) {
  sink s = {0};
  data_stuff_block(in, len, sink_emit, &s);
  cr_assert_eq(s.len, want_len, "stuffed length %zu want %zu", s.len, want_len);
  cr_assert(want_len == 0 || memcmp(s.buf, want, want_len) == 0);
  sink_free(&s);
}

Test(data, stuff_block_lines_starting_with_dot) {
  check_stuff(L(".a\r\nb\r\n.\r\n..c\r\n"), L("..a\r\nb\r\n..\r\n...c\r\n"));
}

Test(data, stuff_block_leaves_inner_dots) {
  check_stuff(L("a.b\r\nx .\r\n"), L("a.b\r\nx .\r\n"));
}

Test(data, stuff_block_empty) {
  check_stuff("", 0, "", 0);
}

Test(data, stuffed_block_round_trips_through_framer) {
  static const char body[] = ".hidden\r\n.\r\nafter\r\n";
  sink s = {0};
  data_stuff_block(body, sizeof body - 1, sink_emit, &s);
  sink_emit(&s, ".\r\n", 3);
  result r;
  run_whole(s.buf, s.len, true, 0, &r);
  cr_assert(r.f.done);
  cr_assert_eq(r.consumed, s.len);
  /* Unstuffed then re-stuffed: what goes upstream is the stuffed block. */
  cr_assert_eq(r.out.len, s.len - 3);
  cr_assert_eq(memcmp(r.out.buf, s.buf, s.len - 3), 0);
  cr_assert_eq(r.f.size, sizeof body - 1);
  sink_free(&r.out);
  sink_free(&s);
}
