/* test_data.c - DATA framing: end of data, smuggling look-alikes, bare
 * CR/LF policy, NUL bytes, dot (un)stuffing (lone "." content lines),
 * size limit, split invariance. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lookalikes.h"
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

/* bare_lf: lenient for the whole test (each test is its own process). */
static bool lenient_mode;

/* Feed `in` cut at the given offsets (ascending), stopping at end of data
 * as a real caller would. */
static void run_cuts(const char *in, size_t len, bool reject, uint64_t max, const size_t *cuts,
                     size_t ncuts, result *r) {
  memset(r, 0, sizeof *r);
  data_framer_init(&r->f, reject, max);
  if (lenient_mode)
    data_framer_allow_lf_end(&r->f);
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
  cr_assert_eq(a->f.nul_seen, b->f.nul_seen, "%s %zu: nul_seen", what, at);
  cr_assert_eq(a->f.lflf_seen, b->f.lflf_seen, "%s %zu: lflf_seen", what, at);
}

/* Output must be CRLF-framed with no bare CR/LF, no NUL and no "." line. */
static void assert_clean(const char *o, size_t n) {
  for (size_t i = 0; i < n; i++) {
    cr_assert_neq(o[i], '\0', "NUL in output at %zu", i);
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
  bool nul;
} vec;

#define V(i, o, c, d, b)                                                                           \
  { i, sizeof(i) - 1, o, sizeof(o) - 1, c, d, b, false }
/* The same for an input holding a NUL (nul_seen expected). */
#define VN(i, o, c, d, b)                                                                          \
  { i, sizeof(i) - 1, o, sizeof(o) - 1, c, d, b, true }

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
  cr_assert_eq(r.f.nul_seen, v->nul, "[%s] nul_seen", v->in);
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
  static const vec v = V("a\n.\nb\r\n.\r\nX", "a\r\n..\r\nb\r\n", 10, true, true);
  check_vec(&v, false, 0);
}

Test(data, lf_dot_crlf_is_content) {
  static const vec v = V("a\n.\r\nb\r\n.\r\nX", "a\r\n..\r\nb\r\n", 11, true, true);
  check_vec(&v, false, 0);
}

Test(data, crlf_dot_lf_is_content) {
  static const vec v = V("a\r\n.\nb\r\n.\r\nX", "a\r\n..\r\nb\r\n", 11, true, true);
  check_vec(&v, false, 0);
}

Test(data, cr_dot_cr_is_content) {
  static const vec v = V("a\r.\rb\r\n.\r\nX", "a\r\n..\r\nb\r\n", 10, true, true);
  check_vec(&v, false, 0);
}

Test(data, crlf_dot_cr_is_content) {
  static const vec v = V("a\r\n.\rb\r\n.\r\nX", "a\r\n..\r\nb\r\n", 11, true, true);
  check_vec(&v, false, 0);
}

/* CRLF NUL "." CRLF: a next hop that drops NULs sees an end of data. The
 * NUL stops the output before it, and the real end is still found. */
Test(data, nul_before_dot_stops_output) {
  static const vec v = VN("a\r\n\0.\r\nMAIL FROM:<e@x>\r\n.\r\nX", "a\r\n", 27, true, false);
  check_vec(&v, false, 0);
  check_vec(&v, true, 0);
}

Test(data, nul_after_dot_stops_output) {
  static const vec v = VN("a\r\n.\0\r\nb\r\n.\r\nX", "a\r\n", 13, true, false);
  check_vec(&v, false, 0);
  check_vec(&v, true, 0);
}

Test(data, nul_at_start) {
  static const vec v = VN("\0a\0\r\n\0\r\n.\r\n", "", 11, true, false);
  check_vec(&v, false, 0);
}

Test(data, nul_mid_line_keeps_what_came_before) {
  static const vec v = VN("ab\r\ncd\0ef\r\n.\r\nQUIT\r\n", "ab\r\ncd", 14, true, false);
  check_vec(&v, false, 0);
  check_vec(&v, true, 0);
}

Test(data, nul_resolves_pending_bytes_like_text) {
  /* A pending CR, dot or ".\r" before the NUL resolves as before any
   * other text byte; only then does output stop. */
  static const vec v[] = {
      VN("a\r\0\r\n.\r\n", "a\r\n", 8, true, true),
      VN("a\r\n.\0b\r\n.\r\n", "a\r\n", 11, true, false),
      VN("a\r\n..\0\r\n.\r\n", "a\r\n..", 11, true, false),
      VN("a\r\n.\r\0\r\n.\r\n", "a\r\n..\r\n", 11, true, true),
  };
  for (size_t k = 0; k < sizeof v / sizeof v[0]; k++)
    check_vec(&v[k], false, 0);
}

Test(data, nul_in_unfinished_message_stops_output) {
  static const vec v = VN("abc\r\n\0.\r\nmore", "abc\r\n", 13, false, false);
  check_vec(&v, false, 0);
}

Test(data, nul_counts_as_one_byte_of_size) {
  result r;
  run_whole(L("ab\0c\r\n.\r\n"), false, 0, &r);
  cr_assert(r.f.nul_seen);
  cr_assert_eq(r.f.size, 6);
  cr_assert_eq(r.out.len, 2);
  sink_free(&r.out);
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
  static const vec v = V("a\r\n.\n.\r\n.\r\nX", "a\r\n..\r\n..\r\n", 11, true, true);
  check_vec(&v, false, 0);
}

Test(data, bare_lf_at_start_then_dot) {
  static const vec v = V("\n.\r\n.\r\n", "\r\n..\r\n", 7, true, true);
  check_vec(&v, false, 0);
}

Test(data, cr_dot_crlf_at_start_is_content) {
  static const vec v = V("\r.\r\n.\r\n", "\r\n..\r\n", 7, true, true);
  check_vec(&v, false, 0);
}

Test(data, dot_cr_cr_lf) {
  /* ".\r" then "\r\n": the dot line ends in a bare CR (content), then an
   * empty line with a real CRLF, after which "." ends. */
  static const vec v = V("a\r\n.\r\r\n.\r\n", "a\r\n..\r\n\r\n", 10, true, true);
  check_vec(&v, false, 0);
}

Test(data, no_end_without_real_crlf_dot_crlf) {
  static const vec v = V("a\n.\n\r.\r\n.\n", "a\r\n..\r\n\r\n..\r\n..\r\n", 10, false, true);
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

/* Every lone-dot line: after the start, a CRLF, a bare LF or a bare CR, and
 * ended by LF, CR, CRLF or CR CR LF. Only CRLF "." CRLF after a real line
 * end is the end; every other "." line is the content "." and arrives as
 * ".." CRLF: no dot lost (an empty line) and none added. */
Test(data, lone_dot_line_every_combination) {
  static const struct {
    const char *in, *out;
    bool crlf;
  } before[] = {
      {"", "", true}, {"a\r\n", "a\r\n", true}, {"a\n", "a\r\n", false}, {"a\r", "a\r\n", false}};
  static const struct {
    const char *in, *out;
    bool crlf;
  } ends[] = {{"\n", "..\r\n", false},
              {"\r", "..\r\n", false},
              {"\r\n", "..\r\n", true},
              {"\r\r\n", "..\r\n\r\n", false}};
  for (size_t b = 0; b < sizeof before / sizeof before[0]; b++) {
    for (size_t e = 0; e < sizeof ends / sizeof ends[0]; e++) {
      for (int reject = 0; reject < 2; reject++) {
        char in[64], want[64];
        int n = snprintf(in, sizeof in, "%s.%sb\r\n.\r\nQUIT\r\n", before[b].in, ends[e].in);
        size_t len = (size_t)n;
        bool ends_here = before[b].crlf && ends[e].crlf;
        bool bare = !before[b].crlf || (!ends_here && !ends[e].crlf);
        size_t consumed;
        int w;
        if (ends_here) {
          w = snprintf(want, sizeof want, "%s", before[b].out);
          consumed = strlen(before[b].in) + 3;
        } else {
          w = snprintf(want, sizeof want, "%s%sb\r\n", before[b].out, ends[e].out);
          consumed = len - 6;
        }
        if (reject && bare) /* output stops at the first bare line end */
          w = before[b].crlf ? (int)strlen(before[b].out) : 1;
        vec v = {in, len, want, (size_t)w, consumed, true, bare, false};
        check_vec(&v, reject, 0);
      }
    }
  }
}

/* A NUL at any offset of a message: framing is as if it were an ordinary
 * text byte (same end of data, same flags), but output stops right before
 * it, in every mode. */
static void check_nul_everywhere(const char *base, size_t len) {
  for (size_t k = 0; k <= len; k++) {
    for (int reject = 0; reject < 2; reject++) {
      char with_nul[128], with_x[128];
      cr_assert_lt(len + 1, sizeof with_nul);
      memcpy(with_nul, base, k);
      with_nul[k] = '\0';
      memcpy(with_nul + k + 1, base + k, len - k);
      memcpy(with_x, with_nul, len + 1);
      with_x[k] = 'X';
      result rx, rn;
      run_whole(with_x, len + 1, reject, 0, &rx);
      if (rx.f.done && rx.consumed <= k) {
        sink_free(&rx.out); /* the NUL would come after the end */
        continue;
      }
      check_invariant(with_nul, len + 1, reject, 0, &rn);
      cr_assert(rn.f.nul_seen, "NUL at %zu not seen", k);
      cr_assert_eq(rn.f.done, rx.f.done, "NUL at %zu: done", k);
      cr_assert_eq(rn.consumed, rx.consumed, "NUL at %zu: consumed", k);
      cr_assert_eq(rn.f.bare_seen, rx.f.bare_seen, "NUL at %zu: bare_seen", k);
      cr_assert_eq(rn.f.size, rx.f.size, "NUL at %zu: size", k);
      /* Output: what the X version wrote before its X. */
      const char *x = memchr(rx.out.buf ? rx.out.buf : "", 'X', rx.out.len);
      size_t upto = x ? (size_t)(x - rx.out.buf) : rx.out.len;
      cr_assert_eq(rn.out.len, upto, "NUL at %zu: output %zu bytes, want %zu", k, rn.out.len, upto);
      cr_assert(upto == 0 || memcmp(rn.out.buf, rx.out.buf, upto) == 0, "NUL at %zu: bytes", k);
      sink_free(&rx.out);
      sink_free(&rn.out);
    }
  }
}

Test(data, nul_at_every_offset) {
  check_nul_everywhere(L("ab\r\n.c\r\n..\r\n\r\nd\n.\ne\r.\rf\r\n.\r\nQUIT\r\n"));
  check_nul_everywhere(L(".\r\r\n.\n\r\n.\r\n"));
}

/* ---- SMTP smuggling look-alikes (public tools) ----------------------------- */

/* The end-of-data look-alikes of hannob's smtpsmug (lflf, crcr, crlf, lfcr,
 * lfcrlf, crlflf, crcrlf, crlfcr, nullbefore, nullafter), SEC Consult's
 * SMTP-Smuggling-Tools (inbound and outbound lists, adding \r\n.\r\r\n and
 * \r\r\n.\r\r\n) and the extra ones of smtp_smuggling_checker. */

/* What a lenient receiver takes for end of data: CR, LF or CRLF (or the
 * start), any NULs, ".", any NULs, then CR, LF or CRLF. */
static bool lenient_end(const char *o, size_t n) {
  for (size_t i = 0; i <= n; i++) {
    size_t j;
    if (i == 0)
      j = 0; /* the DATA command's line end */
    else if (o[i - 1] == '\n' || (o[i - 1] == '\r' && (i >= n || o[i] != '\n')))
      j = i;
    else
      continue;
    while (j < n && o[j] == '\0')
      j++;
    if (j >= n || o[j] != '.')
      continue;
    j++;
    while (j < n && o[j] == '\0')
      j++;
    if (j < n && (o[j] == '\r' || o[j] == '\n'))
      return true;
  }
  return false;
}

Test(data, lenient_end_detector_sanity) {
  /* The detector itself must see every look-alike and a real end. */
  for (size_t i = 0; i < N_LA; i++) {
    char buf[32];
    memcpy(buf, "x", 1);
    memcpy(buf + 1, lookalikes[i].bytes, lookalikes[i].len);
    memcpy(buf + 1 + lookalikes[i].len, "\r\n", 2);
    cr_assert(lenient_end(buf, lookalikes[i].len + 3), "[%s]", lookalikes[i].name);
  }
  cr_assert(lenient_end(L("a\r\n.\r\n")));
  cr_assert(lenient_end(L(".\r\n")));
  cr_assert_not(lenient_end(L("a\r\n..\r\nb\r\n")));
  cr_assert_not(lenient_end(L("a\r\n.b\r\n")));
}

static const char smuggled[] = "MAIL FROM:<evil@x>\r\n"
                               "RCPT TO:<b@example.com>\r\n"
                               "DATA\r\n"
                               "smuggled\r\n";

/* ctx 0: right after text, as test_sec_smuggling sends it; ctx 1: between
 * CRLF lines, as SEC Consult's scanner sends it. */
static size_t smuggle_body(size_t i, int ctx, char *out, size_t cap) {
  const char *pre = ctx ? "Subject: t\r\n\r\nline\r\n" : "Subject: t\r\n\r\nbefore";
  const char *post = ctx ? "\r\n" : "";
  size_t n = 0;
  cr_assert_lt(strlen(pre) + lookalikes[i].len + strlen(post) + sizeof smuggled + 12, cap);
  memcpy(out, pre, strlen(pre));
  n += strlen(pre);
  memcpy(out + n, lookalikes[i].bytes, lookalikes[i].len);
  n += lookalikes[i].len;
  memcpy(out + n, post, strlen(post));
  n += strlen(post);
  memcpy(out + n, smuggled, sizeof smuggled - 1);
  n += sizeof smuggled - 1;
  memcpy(out + n, ".\r\nQUIT\r\n", 9);
  return n + 9;
}

Test(data, smuggling_lookalikes_never_end_or_leak) {
  for (size_t i = 0; i < N_LA; i++) {
    for (int ctx = 0; ctx < 2; ctx++) {
      /* Between CRLF lines "\r\n." is the real CRLF "." CRLF. */
      if (ctx == 1 && strcmp(lookalikes[i].name, "CRLF.") == 0)
        continue;
      for (int reject = 0; reject < 2; reject++) {
        const lookalike *la = &lookalikes[i];
        char in[256];
        size_t len = smuggle_body(i, ctx, in, sizeof in);
        result r;
        check_invariant(in, len, reject, 0, &r);
        cr_assert(r.f.done, "[%s ctx %d] no end", la->name, ctx);
        cr_assert_eq(r.consumed, len - 6, "[%s ctx %d] ended early at %zu", la->name, ctx,
                     r.consumed);
        cr_assert_eq(r.f.nul_seen, la->nul, "[%s ctx %d] nul_seen", la->name, ctx);
        cr_assert_eq(r.f.bare_seen, la->bare, "[%s ctx %d] bare_seen", la->name, ctx);
        cr_assert_not(lenient_end(r.out.buf, r.out.len),
                      "[%s ctx %d %s] output holds an end-of-data look-alike", la->name, ctx,
                      reject ? "reject" : "fix");
        bool stopped = la->nul || (reject && la->bare);
        bool has = r.out.len && memmem(r.out.buf, r.out.len, "smuggled\r\n", 10);
        cr_assert_eq(has, !stopped, "[%s ctx %d] smuggled text %s", la->name, ctx,
                     has ? "went up" : "missing");
        if (!stopped)
          cr_assert(memmem(r.out.buf, r.out.len, "\r\nMAIL FROM:<evil@x>\r\n", 22),
                    "[%s ctx %d] the smuggled MAIL is not a content line", la->name, ctx);
        sink_free(&r.out);
      }
    }
  }
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
  /* "a" CRLF, then the content line "." CRLF (its stuffing dot is not
   * counted). */
  check_size(L("a\n.\r\n.\r\n"), 6);
  check_size(L("a\r\n.\nb\r\n.\r\n"), 9);
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

/* ---- bare_lf: lenient -------------------------------------------------------- */

/* An LF-only device: every line, the final "." included, ends in LF. */
Test(data, lenient_lf_dot_lf_ends_and_leaves_next_command) {
  lenient_mode = true;
  static const vec v = V("Subject: x\nhello\n.\nQUIT\n", "Subject: x\r\nhello\r\n", 19, true, true);
  check_vec(&v, false, 0);
}

Test(data, lenient_empty_message_after_lf_data_command) {
  lenient_mode = true;
  static const vec v = V(".\nQUIT\n", "", 2, true, false);
  check_vec(&v, false, 0);
}

Test(data, lenient_keeps_crlf_end) {
  lenient_mode = true;
  static const vec v = V("a\r\n.\r\nQUIT\r\n", "a\r\n", 6, true, false);
  check_vec(&v, false, 0);
}

/* Only LF "." LF is added: the mixed forms and every bare CR stay content. */
Test(data, lenient_mixed_forms_stay_content) {
  lenient_mode = true;
  static const vec v[] = {
      V("a\r\n.\nb\n.\n", "a\r\n..\r\nb\r\n", 9, true, true),      /* CRLF . LF */
      V("a\n.\r\nb\r\n.\r\n", "a\r\n..\r\nb\r\n", 11, true, true), /* LF . CRLF */
      V("a\r.\nb", "a\r\n..\r\nb", 5, false, true),                /* CR . LF */
      V("a\n.\rb", "a\r\n..\r\nb", 5, false, true),                /* LF . CR */
      V("a\r.\r\n", "a\r\n..\r\n", 5, false, true),                /* CR . CRLF */
  };
  for (size_t i = 0; i < sizeof v / sizeof *v; i++)
    check_vec(&v[i], false, 0);
}

Test(data, lenient_flag_never_set_and_fix_flags_lf_dot_lf) {
  result r;
  lenient_mode = true;
  run_whole(L("a\n.\nb\r\n.\r\n"), false, 0, &r);
  cr_assert(r.f.done);
  cr_assert_not(r.f.lflf_seen, "lenient takes it as the end, not as content");
  sink_free(&r.out);
  lenient_mode = false;
  /* fix: LF "." LF is content (what the device will wait on), flagged so
   * the session can warn; the real end still works. */
  static const vec v = V("a\n.\nb\r\n.\r\n", "a\r\n..\r\nb\r\n", 10, true, true);
  check_vec(&v, false, 0);
  run_whole(L("a\n.\nb\r\n.\r\n"), false, 0, &r);
  cr_assert(r.f.lflf_seen);
  sink_free(&r.out);
  /* Not after a CRLF line, not after a bare CR line. */
  run_whole(L("a\r\n.\nb\r.\n"), false, 0, &r);
  cr_assert_not(r.f.lflf_seen);
  sink_free(&r.out);
  /* reject flags it too (the device hangs there as well). */
  run_whole(L("a\n.\n"), true, 0, &r);
  cr_assert(r.f.lflf_seen);
  cr_assert_not(r.f.done);
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
    {".\n", "..\r\n"},
    {"bare cr\rx\r\n", "bare cr\r\nx\r\n"},
    {"\ttab\x7f\r\n", "\ttab\x7f\r\n"},
    {"\r\n", "\r\n"},
    {"a fairly long line of text, like a base64 body: QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=\r\n",
     "a fairly long line of text, like a base64 body: QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=\r\n"},
};
static const size_t pattern_in_len[] = {24, 15, 13, 8, 2, 11, 7, 2, 86};
static const size_t pattern_out_len[] = {24, 15, 12, 9, 4, 12, 7, 2, 86};

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
  /* Two stuffing dots per repetition: "..leading dot" and the ".." of
   * the lone-dot line. */
  cr_assert_eq(f.size, (uint64_t)reps * ol - (uint64_t)reps * 2);
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
