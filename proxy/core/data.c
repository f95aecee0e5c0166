/* data.c - DATA framing: end-of-data detection, bare CR/LF policy, dot
 * unstuffing of what the client sends and dot stuffing of what goes up.
 *
 * Owns: the one decision that SMTP smuggling attacks target, namely where a
 * message ends. Guarantees: the end is CRLF "." CRLF with both line ends
 * real (and, only when the listener says bare_lf: lenient, LF "." LF with
 * both line ends bare LFs); no NUL byte and nothing after one goes up; a "." line that is
 * content never loses or gains a dot; the output is a function of the
 * input bytes alone, never of how they were split into reads; no
 * allocation; constant state.
 *
 * How: a byte-level state machine over one line at a time. Most bytes are
 * copied unchanged (plain text, real CRLF, and ".." which unstuffs and
 * re-stuffs to itself), so the feed keeps a "run" of input that is output
 * verbatim and emits it in one call. Only bytes whose meaning depends on
 * what follows (a CR, a dot at the start of a line) are held back as
 * "pending"; when they resolve to something other than themselves the run
 * is cut before them and a constant replacement is emitted. Pending bytes
 * that straddle two feeds are never emitted from the old buffer: the run is
 * cut before them at the end of the feed, and their output (always a
 * constant) is written when the next feed resolves them.
 */
#include "smtp-tls-proxy/data.h"

#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* f->state */
enum {
  DF_BOL = 0, /* at the start of a line */
  DF_TEXT,    /* inside a line, its bytes emitted */
  DF_CR,      /* saw CR in or at the start of a line: CRLF or bare CR? */
  DF_DOT,     /* line began with '.': unstuff, ".." or end marker? */
  DF_DOT_CR,  /* line began with ".\r": end marker or content? */
};

void data_framer_init(data_framer *f, bool reject_bare, uint64_t max_size) {
  memset(f, 0, sizeof *f);
  f->reject_bare = reject_bare;
  f->max_size = max_size;
  f->state = DF_BOL;
  f->prev_crlf = true; /* the DATA command's own CRLF */
}

void data_framer_allow_lf_end(data_framer *f) {
  f->lf_end = true;
  f->prev_lf = true; /* an LF-only device ended its DATA command with LF */
}

typedef struct feed {
  data_framer *f;
  const char *in;
  size_t run; /* start of the verbatim run not yet emitted */
  data_emit_fn emit;
  void *ctx;
} feed;

static bool quiet(const data_framer *f) {
  return f->too_big || f->nul_seen || (f->reject_bare && f->bare_seen);
}

/* Emit the verbatim run up to (not including) in[upto]. */
static void flush(feed *s, size_t upto) {
  if (upto > s->run && !quiet(s->f))
    s->emit(s->ctx, s->in + s->run, upto - s->run);
  s->run = upto;
}

static void put(feed *s, const char *p, size_t n) {
  if (!quiet(s->f))
    s->emit(s->ctx, p, n);
}

/* Account for k output content bytes whose input starts at in[at]. If they
 * take the message over the limit, the run is cut before them and output
 * stops. Returns false when they must not be emitted. */
static bool grow(feed *s, uint64_t k, size_t at) {
  data_framer *f = s->f;
  bool fits = f->max_size == 0 || f->too_big || f->size + k <= f->max_size;
  if (!fits) {
    flush(s, at);
    f->too_big = true;
  }
  f->size += k;
  return !quiet(f);
}

static bool special(char c) {
  return c == '\r' || c == '\n' || c == '\0';
}

/* Index of the first CR, LF or NUL at or after i, or len. This scan is
 * where a large message spends its time in the proxy, so it looks at 16
 * bytes at a time (SSE2 is part of x86-64), elsewhere at 8 with the
 * classic has-zero-byte test on w, w^CR.. and w^LF.. (exact for "some byte
 * matches"; the byte loop then finds which). */
static size_t scan_text(const char *in, size_t i, size_t len) {
#if defined(__SSE2__)
  const __m128i cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n'), nul = _mm_setzero_si128();
  while (i + 16 <= len) {
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(in + i));
    __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)),
                               _mm_cmpeq_epi8(v, nul));
    unsigned m = (unsigned)_mm_movemask_epi8(hit);
    if (m)
      return i + (size_t)__builtin_ctz(m);
    i += 16;
  }
#else
  const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
  while (i + 8 <= len) {
    uint64_t w;
    memcpy(&w, in + i, 8);
    uint64_t c = w ^ (ones * '\r'), l = w ^ (ones * '\n');
    if ((((w - ones) & ~w) | ((c - ones) & ~c) | ((l - ones) & ~l)) & highs)
      break;
    i += 8;
  }
#endif
  while (i < len && !special(in[i]))
    i++;
  return i;
}

/* A NUL at in[at]: everything before it goes up, nothing from it on. */
static void nul_at(feed *s, size_t at) {
  flush(s, at);
  s->f->nul_seen = true;
  (void)grow(s, 1, at);
}

/* A line end that was not a real CRLF (lf: a bare LF, else a bare CR);
 * its input starts at in[at]. */
static void bare_end(feed *s, size_t at, bool lf) {
  flush(s, at);
  s->f->bare_seen = true;
  s->f->prev_crlf = false;
  s->f->prev_lf = lf;
  if (grow(s, 2, at))
    put(s, "\r\n", 2);
}

/* A line that is just "." and is content (not the end of data), ended by a
 * real CRLF or not; its input starts at in[at]. The content is the text
 * "." (RFC 5321 4.5.2 drops a leading dot only when more follows), so it
 * goes up stuffed: "..". Writing an empty line instead would lose the dot. */
static void lone_dot(feed *s, size_t at, bool crlf, bool lf) {
  flush(s, at);
  if (!crlf)
    s->f->bare_seen = true;
  s->f->prev_crlf = crlf;
  s->f->prev_lf = lf;
  if (grow(s, 3, at))
    put(s, "..\r\n", 4);
}

/* One function on purpose: the whole framing state machine in one switch,
 * so every transition of the security-critical end-of-data rule can be
 * read (and fuzzed) in one place, and the hot path stays in one frame. */
size_t data_framer_feed(data_framer *f, const char *in, size_t len, data_emit_fn emit, void *ctx) {
  if (f->done)
    return 0;
  feed s = {f, in, 0, emit, ctx};
  /* Where the pending bytes (CR, '.', ".\r") start in this buffer; when they
   * began in an earlier feed, `carried` is set and ps is 0. */
  size_t ps = 0;
  bool carried = f->state == DF_CR || f->state == DF_DOT || f->state == DF_DOT_CR;
  size_t i = 0;

  while (i < len) {
    char c = in[i];
    switch (f->state) {
    case DF_BOL:
      if (c == '.') {
        ps = i++;
        carried = false;
        f->state = DF_DOT;
      } else if (c == '\r') {
        ps = i++;
        carried = false;
        f->state = DF_CR;
      } else if (c == '\n') {
        bare_end(&s, i, true);
        s.run = ++i;
      } else {
        f->state = DF_TEXT;
      }
      break;

    case DF_TEXT: {
      /* Hot path: everything up to the next CR or LF is copied as is. */
      size_t j = scan_text(in, i, len);
      if (j > i) {
        data_framer *g = s.f;
        uint64_t n = (uint64_t)(j - i);
        if (g->max_size && !g->too_big && g->size + n > g->max_size) {
          flush(&s, i + (size_t)(g->max_size - g->size));
          g->too_big = true;
        }
        g->size += n;
        i = j;
      }
      if (i < len) {
        if (in[i] == '\r') {
          ps = i++;
          carried = false;
          f->state = DF_CR;
        } else if (in[i] == '\n') {
          bare_end(&s, i, true);
          s.run = ++i;
          f->state = DF_BOL;
        } else {
          nul_at(&s, i);
          s.run = ++i;
        }
      }
      break;
    }

    case DF_CR:
      if (c == '\n') {
        /* Real CRLF: output as is. */
        if (grow(&s, 2, ps) && carried)
          put(&s, "\r", 1); /* the CR was in the previous buffer */
        f->prev_crlf = true;
        f->prev_lf = false;
        f->state = DF_BOL;
        i++;
      } else {
        /* Bare CR: it alone ends the line; c starts the next one. */
        bare_end(&s, ps, false);
        s.run = i;
        f->state = DF_BOL;
      }
      break;

    case DF_DOT:
      if (c == '\r') {
        f->state = DF_DOT_CR;
        i++;
      } else if (c == '\n') {
        if (f->prev_lf && f->lf_end) {
          /* LF "." LF under bare_lf: lenient: the end of data. */
          flush(&s, ps);
          f->done = true;
          return ++i;
        }
        /* ".\n": a content line "."; after a bare LF line it is what an
         * LF-only device means as the end, which only lenient takes. */
        if (f->prev_lf)
          f->lflf_seen = true;
        lone_dot(&s, ps, false, true);
        s.run = ++i;
        f->state = DF_BOL;
      } else if (c == '.') {
        /* "..": unstuffed to "." and stuffed again: output as is. The first
         * dot is stuffing and does not count. */
        if (grow(&s, 1, ps) && carried)
          put(&s, ".", 1);
        f->state = DF_TEXT;
        i++;
      } else {
        /* ".x" (x may be NUL, which DF_TEXT handles): drop the stuffing
         * dot. */
        flush(&s, ps);
        s.run = i;
        f->state = DF_TEXT;
      }
      break;

    case DF_DOT_CR:
      if (c == '\n') {
        flush(&s, ps);
        i++;
        if (f->prev_crlf) {
          f->done = true;
          return i;
        }
        /* ".\r\n" after a bare line end: content, the line ".". */
        lone_dot(&s, ps, true, false);
        s.run = i;
        f->state = DF_BOL;
      } else {
        /* ".\r" then something else: the "." line ended in a bare CR; c
         * starts the next line. */
        lone_dot(&s, ps, false, false);
        s.run = i;
        f->state = DF_BOL;
      }
      break;
    }
  }
  /* Pending bytes stay unemitted; the next feed writes their output. */
  bool pending = f->state == DF_CR || f->state == DF_DOT || f->state == DF_DOT_CR;
  flush(&s, pending && !carried ? ps : (pending ? s.run : len));
  return len;
}

void data_stuff_block(const char *in, size_t len, data_emit_fn emit, void *ctx) {
  size_t run = 0;
  bool bol = true;
  for (size_t i = 0; i < len; i++) {
    if (bol && in[i] == '.') {
      if (i > run)
        emit(ctx, in + run, i - run);
      emit(ctx, ".", 1);
      run = i; /* the original dot follows the added one */
    }
    bol = in[i] == '\n';
  }
  if (len > run)
    emit(ctx, in + run, len - run);
}
