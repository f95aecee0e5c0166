/* fuzz_data.c - DATA framing, the smuggling-relevant decision, on hostile
 * bytes.
 *
 * Input: byte 0 = mode (bit 0: bare_lf reject; bit 1: a size limit taken
 * from byte 1; bit 2: bare_lf lenient, LF "." LF also ends the data),
 * byte 2 = number of split points (0..15), then two bytes per
 * split point (offsets into the body), then the body.
 * Invariants:
 *  - feeding the body split at those offsets gives exactly the output,
 *    flags, size and consumed count of feeding it whole (data.h);
 *  - the output never has a bare CR or LF, never a NUL, never a line that
 *    is exactly ".", and every line that starts with '.' starts with ".."
 *    (stuffed);
 *  - unstuffing the output gives exactly the counted size;
 *  - the output equals (fix mode, no limit) or is a prefix of (otherwise)
 *    what a line-by-line reference model of SPEC.md's rules gives. In the
 *    model a "." line that does not end the data is the content "." (goes
 *    up as ".."), and a NUL is content like any byte;
 *  - lflf_seen exactly when the model met a "." line ended by a bare LF
 *    right after a line ended by a bare LF, and took it as content;
 *  - NUL: nul_seen exactly when a NUL came before the end marker, and then
 *    the output is the model's output cut right before its first NUL (or,
 *    when the NUL is in an unfinished last line, holds no NUL at all).
 */
#include "fuzz_common.h"

#include "smtp-tls-proxy/data.h"

typedef struct out {
  char *p;
  size_t n, cap;
} out;

static void emit_cb(void *ctx, const char *p, size_t n) {
  out *o = ctx;
  CHECK(n > 0);
  if (o->n + n > o->cap) {
    o->cap = (o->n + n) * 2;
    o->p = realloc(o->p, o->cap);
    CHECK(o->p);
  }
  memcpy(o->p + o->n, p, n);
  o->n += n;
}

typedef struct result {
  out o;
  size_t consumed;
  data_framer f;
} result;

static void frame(const char *in, size_t len, const size_t *cuts, size_t ncuts, bool reject,
                  bool lenient, uint64_t max, result *r) {
  memset(r, 0, sizeof *r);
  data_framer_init(&r->f, reject, max);
  if (lenient)
    data_framer_allow_lf_end(&r->f);
  size_t prev = 0;
  for (size_t k = 0; k <= ncuts; k++) {
    size_t at = k < ncuts ? cuts[k] : len;
    /* A fresh copy of each piece, so a read past it is an ASan report. */
    char *piece = malloc(at - prev + 1);
    CHECK(piece);
    memcpy(piece, in + prev, at - prev);
    size_t used = data_framer_feed(&r->f, piece, at - prev, emit_cb, &r->o);
    free(piece);
    CHECK(used <= at - prev);
    CHECK(used == at - prev || r->f.done);
    r->consumed += used;
    if (r->f.done && used < at - prev)
      break; /* the rest belongs to the next command */
    prev = at;
  }
}

/* Reference: split into lines ended by CRLF, bare LF or bare CR (a CR at
 * the very end is undecided and ends nothing), then apply the end rule
 * (CRLF "." CRLF; lenient: LF "." LF too, the DATA line counting as
 * either), unstuff (a lone "." stays "."), and stuff again. Returns the
 * content size; *bare, *lflf and *done as the framer's flags, *consumed up
 * to the end marker. */
static uint64_t reference(const char *in, size_t len, bool lenient, out *o, bool *bare, bool *lflf,
                          bool *done, size_t *consumed) {
  uint64_t size = 0;
  bool prev_crlf = true, prev_lf = lenient;
  size_t i = 0;
  *bare = *lflf = *done = false;
  *consumed = len;
  while (i < len) {
    size_t s = i, e;
    size_t term;
    for (;;) {
      if (i >= len)
        return size; /* an unfinished line: no output in the reference */
      if (in[i] == '\n') {
        e = i;
        term = 1;
        break;
      }
      if (in[i] == '\r') {
        if (i + 1 >= len)
          return size;
        e = i;
        term = in[i + 1] == '\n' ? 2 : 1;
        break;
      }
      i++;
    }
    bool crlf = term == 2, lf = term == 1 && in[e] == '\n';
    i = e + term;
    bool dot_line = e - s == 1 && in[s] == '.';
    if (dot_line && ((crlf && prev_crlf) || (lenient && lf && prev_lf))) {
      *done = true;
      *consumed = i;
      return size;
    }
    if (dot_line && lf && prev_lf)
      *lflf = true;
    if (!crlf)
      *bare = true;
    const char *c = in + s;
    size_t cl = e - s;
    if (cl > 1 && c[0] == '.') { /* RFC 5321 4.5.2: only if more follows */
      c++;
      cl--;
    }
    if (cl && c[0] == '.')
      emit_cb(o, ".", 1);
    if (cl)
      emit_cb(o, c, cl);
    emit_cb(o, "\r\n", 2);
    size += cl + 2;
    prev_crlf = crlf;
    prev_lf = lf;
  }
  return size;
}

static void check_output(const out *o, const data_framer *f) {
  uint64_t dots = 0;
  bool bol = true;
  for (size_t i = 0; i < o->n; i++) {
    char c = o->p[i];
    CHECK(c != '\0');
    if (c == '\r')
      CHECK(i + 1 < o->n && o->p[i + 1] == '\n');
    if (c == '\n')
      CHECK(i > 0 && o->p[i - 1] == '\r');
    if (bol && c == '.') {
      CHECK(i + 1 < o->n && o->p[i + 1] == '.');
      dots++;
    }
    bol = c == '\n';
  }
  if (!f->too_big && !f->nul_seen && !(f->reject_bare && f->bare_seen))
    CHECK(o->n - dots == f->size);
  CHECK(f->too_big == (f->max_size && f->size > f->max_size));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 3)
    return 0;
  bool reject = data[0] & 1, lenient = data[0] & 4;
  uint64_t max = (data[0] & 2) ? (uint64_t)data[1] + 1 : 0;
  size_t ncuts = data[2] & 15;
  if (size < 3 + 2 * ncuts)
    return 0;
  const char *in = (const char *)data + 3 + 2 * ncuts;
  size_t len = size - 3 - 2 * ncuts;
  size_t cuts[16];
  for (size_t k = 0; k < ncuts; k++) {
    size_t v = (size_t)data[3 + 2 * k] << 8 | data[4 + 2 * k];
    size_t c = v % (len + 1), j = k;
    while (j > 0 && cuts[j - 1] > c) { /* insertion sort */
      cuts[j] = cuts[j - 1];
      j--;
    }
    cuts[j] = c;
  }

  result whole, split;
  frame(in, len, NULL, 0, reject, lenient, max, &whole);
  frame(in, len, cuts, ncuts, reject, lenient, max, &split);
  CHECK(whole.o.n == split.o.n && (whole.o.n == 0 || !memcmp(whole.o.p, split.o.p, whole.o.n)));
  CHECK(whole.consumed == split.consumed);
  CHECK(whole.f.done == split.f.done && whole.f.size == split.f.size);
  CHECK(whole.f.too_big == split.f.too_big && whole.f.bare_seen == split.f.bare_seen);
  CHECK(whole.f.nul_seen == split.f.nul_seen && whole.f.lflf_seen == split.f.lflf_seen);
  CHECK(whole.f.done || whole.consumed == len);
  check_output(&whole.o, &whole.f);

  /* The reference knows nothing of limits and modes: compare with it. */
  out ref = {0};
  bool bare, lflf, done;
  size_t consumed;
  uint64_t rsize = reference(in, len, lenient, &ref, &bare, &lflf, &done, &consumed);
  CHECK(done == whole.f.done);
  CHECK(lflf == whole.f.lflf_seen);
  if (done)
    CHECK(consumed == whole.consumed && rsize == whole.f.size && bare == whole.f.bare_seen);
  /* NUL: seen exactly when one came before the end; the output stops right
   * before the model's first NUL. */
  CHECK(whole.f.nul_seen == (whole.consumed && memchr(in, '\0', whole.consumed) != NULL));
  const char *rnul = ref.n ? memchr(ref.p, '\0', ref.n) : NULL;
  size_t ref_cut = rnul ? (size_t)(rnul - ref.p) : ref.n;
  CHECK(!rnul || whole.f.nul_seen);
  CHECK(whole.o.n <= ref_cut || !done);
  bool stopped = whole.f.too_big || (reject && whole.f.bare_seen);
  if (rnul)
    CHECK(whole.o.n == ref_cut || (stopped && whole.o.n < ref_cut));
  if (!done && !rnul) {
    /* An unfinished last line: the framer may already have written part of
     * it, so only the reference's complete lines must match. */
    CHECK(whole.o.n >= ref.n || stopped);
  }
  size_t common = whole.o.n < ref_cut ? whole.o.n : ref_cut;
  CHECK(common == 0 || !memcmp(whole.o.p, ref.p, common));
  if (done && !reject && !max)
    CHECK(whole.o.n == ref_cut);

  free(ref.p);
  free(whole.o.p);
  free(split.o.p);
  return 0;
}
