/* rewrite.c - streaming From:/Reply-To:/Sender: header rewriting.
 *
 * Owns: the header block of messages on routes with rewrite.header_from.
 * Guarantees: see rewrite.h. The output depends on the input bytes alone:
 * everything up to the end of the header block is held (bounded), the
 * decision where that block ends is made byte by byte with a small line
 * state, and the rewrite itself runs once over the complete block. After
 * that, feed is a pass-through.
 *
 * Why hold the whole block: whether to add Reply-To depends on a Reply-To:
 * that may come after the From:, and the new From: takes the old one's
 * place, so nothing can be emitted before the block is complete.
 */
#include "smtp-tls-proxy/rewrite.h"

#include <stdlib.h>
#include <string.h>

#include "smtp-tls-proxy/util.h"

/* h->state: where in the current header-block line the last byte left us */
enum {
  HS_START = 0, /* at the start of a line */
  HS_NAME,      /* in a field name */
  HS_NAME_WSP,  /* white space between a field name and its ':' (obs-syntax) */
  HS_VALUE,     /* after the ':' or in a continuation line, up to its LF */
  HS_CR,        /* the line began with CR: the empty line, or not a header */
};

/* what a byte does to the header block */
enum { ACT_HOLD, ACT_END, ACT_BODY };

#define LINE_MAX_OCTETS 998 /* RFC 5322 2.1.1, without CRLF */
#define ADDR_CAP 512

static bool is_wsp(char c) {
  return c == ' ' || c == '\t';
}

/* Strip outer white space from out[0..o) in place, NUL-terminate; the new
 * length. */
static size_t trim_wsp(char *out, size_t o) {
  size_t a = 0;
  while (a < o && is_wsp(out[a]))
    a++;
  while (o > a && is_wsp(out[o - 1]))
    o--;
  memmove(out, out + a, o - a);
  out[o - a] = '\0';
  return o - a;
}

/* RFC 5322 ftext: printable US-ASCII except ':' */
static bool is_ftext(char c) {
  unsigned char u = (unsigned char)c;
  return u >= 33 && u <= 126 && u != ':';
}

/* The address of a header value: what is inside the first <...> found
 * outside quoted strings and comments, else the value with comments
 * removed, trimmed. Written NUL-terminated to out; returns its length, 0
 * when there is none or it does not fit. */
static size_t value_addr(const char *v, size_t n, char *out, size_t cap) {
  bool quoted = false;
  unsigned depth = 0;
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    char c = v[i];
    if (quoted || depth) {
      if (c == '\\')
        i++;
      else if (quoted && c == '"')
        quoted = false;
      else if (!quoted && c == '(')
        depth++;
      else if (!quoted && c == ')')
        depth--;
      continue;
    }
    if (c == '"') {
      quoted = true;
    } else if (c == '(') {
      depth = 1;
    } else if (c == '<') {
      const char *gt = memchr(v + i + 1, '>', n - i - 1);
      if (!gt)
        return 0;
      const char *a = v + i + 1, *e = gt;
      while (a < e && is_wsp(*a))
        a++;
      while (e > a && is_wsp(e[-1]))
        e--;
      if ((size_t)(e - a) >= cap)
        return 0;
      memcpy(out, a, (size_t)(e - a));
      out[e - a] = '\0';
      return (size_t)(e - a);
    }
  }
  /* No angle brackets: a bare addr-spec, maybe with comments. */
  quoted = false;
  depth = 0;
  for (size_t i = 0; i < n; i++) {
    char c = v[i];
    if (depth) {
      if (c == '\\')
        i++;
      else if (c == '(')
        depth++;
      else if (c == ')')
        depth--;
      continue;
    }
    if (!quoted && c == '(') {
      depth = 1;
      continue;
    }
    if (c == '"')
      quoted = !quoted;
    if (o + 1 >= cap)
      return 0;
    out[o++] = c;
    if (quoted && c == '\\' && i + 1 < n) {
      if (o + 1 >= cap)
        return 0;
      out[o++] = v[++i];
    }
  }
  return trim_wsp(out, o);
}

static bool addr_is(const char *v, size_t n, const char *want) {
  char a[ADDR_CAP];
  size_t len = value_addr(v, n, a, sizeof a);
  return len > 0 && *want && stp_ascii_casecmp(a, want) == 0;
}

int rewrite_init(rewrite_ctx *h, const char *header_from, size_t max_header) {
  memset(h, 0, sizeof *h);
  if (!header_from || !*header_from)
    return STP_EINVAL;
  for (const char *s = header_from; *s; s++) {
    unsigned char u = (unsigned char)*s;
    if ((u < 0x20 && u != '\t') || u == 0x7f)
      return STP_EINVAL;
  }
  h->from_len = strlen(header_from);
  h->header_from = stp_xstrndup(header_from, h->from_len);
  char a[ADDR_CAP];
  size_t alen = value_addr(header_from, h->from_len, a, sizeof a);
  h->from_addr = stp_xstrndup(a, alen);
  h->max_header = max_header ? max_header : REWRITE_DEFAULT_MAX;
  return STP_OK;
}

static void release_buf(rewrite_ctx *h) {
  free(h->buf);
  h->buf = NULL;
  h->len = h->cap = h->line_start = 0;
}

void rewrite_free(rewrite_ctx *h) {
  free(h->header_from);
  free(h->from_addr);
  free(h->buf);
  memset(h, 0, sizeof *h);
}

/* Grow within the bound (plus 2 for the CRLF finish may add). */
static void reserve(rewrite_ctx *h, size_t need) {
  if (need <= h->cap)
    return;
  size_t limit = h->max_header + 2;
  size_t cap = h->cap ? h->cap * 2 : 1024;
  if (cap < need)
    cap = need;
  if (cap > limit)
    cap = limit;
  h->buf = stp_xrealloc(h->buf, cap);
  h->cap = cap;
}

static int hold(rewrite_ctx *h, const char *p, size_t k) {
  if (k > h->max_header - h->len) {
    h->failed = true;
    release_buf(h);
    return STP_ETOOLONG;
  }
  reserve(h, h->len + k);
  memcpy(h->buf + h->len, p, k);
  h->len += k;
  return STP_OK;
}

/* One header field in the held block: its first line and continuations. */
typedef struct field {
  size_t start, end; /* [start, end), end just after the last LF */
  size_t name_len;
  size_t value; /* offset just after the ':' */
} field;

static void field_at(const char *b, size_t blen, size_t pos, field *f) {
  f->start = pos;
  size_t i = pos;
  while (i < blen && is_ftext(b[i]))
    i++;
  f->name_len = i - pos;
  while (i < blen && b[i] != ':')
    i++; /* only WSP here: the line state machine admitted this line */
  f->value = i < blen ? i + 1 : i;
  for (;;) {
    const char *lf = memchr(b + i, '\n', blen - i);
    i = lf ? (size_t)(lf - b) + 1 : blen;
    if (i >= blen || !is_wsp(b[i]))
      break;
  }
  f->end = i;
}

static bool field_is(const char *b, const field *f, const char *name) {
  size_t n = strlen(name);
  return f->name_len == n && stp_ascii_ncasecmp(b + f->start, name, n) == 0;
}

/* The value of a field unfolded (CR and LF removed), outer WSP trimmed;
 * returned in a new buffer, *n its length. */
static char *unfold(const char *b, const field *f, size_t *n) {
  char *out = stp_xmalloc(f->end - f->value + 1);
  size_t o = 0;
  for (size_t i = f->value; i < f->end; i++)
    if (b[i] != '\r' && b[i] != '\n')
      out[o++] = b[i];
  *n = trim_wsp(out, o);
  return out;
}

static void put(data_emit_fn emit, void *ctx, const char *p, size_t n) {
  if (n)
    emit(ctx, p, n);
}

static void put_from(const rewrite_ctx *h, data_emit_fn emit, void *ctx) {
  put(emit, ctx, "From: ", 6);
  put(emit, ctx, h->header_from, h->from_len);
  put(emit, ctx, "\r\n", 2);
}

/* Rewrite and emit the complete header block buf[0, blen). */
static void rewrite_block(rewrite_ctx *h, size_t blen, data_emit_fn emit, void *ctx) {
  const char *b = h->buf;
  field f, from = {0};
  bool have_from = false, have_reply_to = false;
  for (size_t pos = 0; pos < blen; pos = f.end) {
    field_at(b, blen, pos, &f);
    if (field_is(b, &f, "Reply-To"))
      have_reply_to = true;
    else if (!have_from && field_is(b, &f, "From")) {
      from = f;
      have_from = true;
    }
  }

  char *rt = NULL;
  size_t rt_len = 0;
  if (have_from && !have_reply_to) {
    rt = unfold(b, &from, &rt_len);
    if (rt_len == 0 || addr_is(rt, rt_len, h->from_addr)) {
      free(rt);
      rt = NULL;
    }
  }

  size_t run = 0; /* start of the kept bytes not yet emitted */
  bool from_done = false;
  for (size_t pos = 0; pos < blen; pos = f.end) {
    field_at(b, blen, pos, &f);
    bool is_from = field_is(b, &f, "From");
    bool drop = is_from;
    if (field_is(b, &f, "Sender")) {
      size_t sl;
      char *sv = unfold(b, &f, &sl);
      drop = !addr_is(sv, sl, h->from_addr);
      free(sv);
      if (drop)
        h->sender_removed = true;
    }
    if (!drop)
      continue;
    put(emit, ctx, b + run, f.start - run);
    run = f.end;
    if (!is_from || from_done)
      continue;
    from_done = true;
    h->from_replaced = true;
    put_from(h, emit, ctx);
    if (!rt)
      continue;
    h->reply_to_added = true;
    if (10 + rt_len <= LINE_MAX_OCTETS) {
      put(emit, ctx, "Reply-To: ", 10);
      put(emit, ctx, rt, rt_len);
      put(emit, ctx, "\r\n", 2);
    } else {
      /* too long for one line: keep the original folding */
      put(emit, ctx, "Reply-To:", 9);
      put(emit, ctx, b + from.value, from.end - from.value);
    }
  }
  if (blen > run)
    put(emit, ctx, b + run, blen - run);
  if (!from_done) {
    h->from_added = true;
    put_from(h, emit, ctx);
  }
  free(rt);
}

/* The header block is complete: it is buf[0, line_start); buf[line_start,
 * len) is the empty line that ended it, or the start of a body line (then
 * an empty line is inserted before it). */
static void emit_headers(rewrite_ctx *h, bool insert_blank, data_emit_fn emit, void *ctx) {
  rewrite_block(h, h->line_start, emit, ctx);
  if (insert_blank)
    put(emit, ctx, "\r\n", 2);
  if (h->len > h->line_start) /* h->buf may be NULL when nothing was held */
    put(emit, ctx, h->buf + h->line_start, h->len - h->line_start);
  release_buf(h);
  h->in_body = true;
}

/* Advance the line state by one byte outside a field value. */
static int classify(rewrite_ctx *h, char c) {
  switch (h->state) {
  case HS_START:
    if (c == '\r') {
      h->state = HS_CR;
      return ACT_HOLD;
    }
    if (c == '\n')
      return ACT_END; /* a bare LF empty line; data.c never sends one */
    if (is_wsp(c)) {
      if (h->line_start == 0)
        return ACT_BODY; /* a continuation of nothing */
      h->state = HS_VALUE;
      return ACT_HOLD;
    }
    if (is_ftext(c)) {
      h->state = HS_NAME;
      return ACT_HOLD;
    }
    return ACT_BODY;
  case HS_NAME:
  case HS_NAME_WSP:
    if (c == ':') {
      h->state = HS_VALUE;
      return ACT_HOLD;
    }
    if (is_wsp(c)) {
      h->state = HS_NAME_WSP;
      return ACT_HOLD;
    }
    return h->state == HS_NAME && is_ftext(c) ? ACT_HOLD : ACT_BODY;
  case HS_CR:
    return c == '\n' ? ACT_END : ACT_BODY;
  default:
    return ACT_BODY;
  }
}

int rewrite_feed(rewrite_ctx *h, const char *p, size_t n, data_emit_fn emit, void *ctx) {
  if (h->failed)
    return STP_ETOOLONG;
  if (h->in_body) {
    put(emit, ctx, p, n);
    return STP_OK;
  }
  size_t i = 0;
  while (i < n) {
    if (h->state == HS_VALUE) {
      const char *lf = memchr(p + i, '\n', n - i);
      size_t k = lf ? (size_t)(lf - (p + i)) + 1 : n - i;
      if (hold(h, p + i, k) != STP_OK)
        return STP_ETOOLONG;
      i += k;
      if (lf) {
        h->state = HS_START;
        h->line_start = h->len;
      }
      continue;
    }
    int act = classify(h, p[i]);
    if (act == ACT_BODY) {
      emit_headers(h, true, emit, ctx);
      put(emit, ctx, p + i, n - i);
      return STP_OK;
    }
    if (hold(h, p + i, 1) != STP_OK)
      return STP_ETOOLONG;
    i++;
    if (act == ACT_END) {
      emit_headers(h, false, emit, ctx);
      put(emit, ctx, p + i, n - i);
      return STP_OK;
    }
  }
  return STP_OK;
}

int rewrite_finish(rewrite_ctx *h, data_emit_fn emit, void *ctx) {
  if (h->failed)
    return STP_ETOOLONG;
  if (h->in_body)
    return STP_OK;
  switch (h->state) {
  case HS_VALUE: /* an unterminated header line: give it its CRLF */
    reserve(h, h->len + 2);
    memcpy(h->buf + h->len, "\r\n", 2);
    h->len += 2;
    h->line_start = h->len;
    /* fall through */
  case HS_START:
    emit_headers(h, false, emit, ctx);
    break;
  default: /* a partial line that is not a header field: body */
    emit_headers(h, true, emit, ctx);
    break;
  }
  return STP_OK;
}
