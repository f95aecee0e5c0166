/* mime.c - the streaming MIME reader and the body decoders (see mime.h).
 *
 * Lines are the unit: a line's first bytes (up to what a boundary line can
 * be) are kept in r->line until it is clear whether it is a boundary of an
 * enclosing multipart; the rest of a longer line streams through. The line
 * end before a line is held (r->eol) until that line is known not to be a
 * boundary, since the CRLF before a boundary belongs to the boundary (RFC
 * 2046 5.1.1). A CR at the end of a chunk is held the same way until the
 * next byte says whether it starts a CRLF. So everything the reader keeps
 * across calls is a few fixed buffers, and the split points of the input
 * cannot change what it decides.
 */
#include "smtp-tls-proxy/mime.h"

#include <stdio.h>
#include <string.h>

#include "mime_internal.h"
#include "smtp-tls-proxy/util.h"

enum { M_NONE, M_HEADERS, M_BODY, M_PREAMBLE, M_EPILOGUE };

/* ---- decoders ------------------------------------------------------------ */

static const signed char b64_value[256] = {
    ['A'] = 1,  ['B'] = 2,  ['C'] = 3,  ['D'] = 4,  ['E'] = 5,  ['F'] = 6,  ['G'] = 7,
    ['H'] = 8,  ['I'] = 9,  ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14,
    ['O'] = 15, ['P'] = 16, ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21,
    ['V'] = 22, ['W'] = 23, ['X'] = 24, ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28,
    ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32, ['g'] = 33, ['h'] = 34, ['i'] = 35,
    ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40, ['o'] = 41, ['p'] = 42,
    ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48, ['w'] = 49,
    ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
    ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['+'] = 63,
    ['/'] = 64}; /* value + 1; 0: not in the alphabet */

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

void mime_decoder_init(mime_decoder *d, mime_cte cte) {
  memset(d, 0, sizeof *d);
  d->cte = cte;
}

/* Characters outside the alphabet (line ends, blanks, junk) are skipped, as
 * RFC 2045 6.8 asks; decoding stops at the padding, as Python's does. */
static size_t b64_decode(mime_decoder *d, const char *in, size_t n, char *out) {
  size_t o = 0;
  for (size_t i = 0; i < n && !d->b64_done; i++) {
    unsigned char c = (unsigned char)in[i];
    if (c == '=') {
      if (d->nacc == 2)
        out[o++] = (char)(d->acc >> 4);
      else if (d->nacc == 3) {
        out[o++] = (char)(d->acc >> 10);
        out[o++] = (char)(d->acc >> 2);
      }
      d->nacc = 0;
      d->b64_done = d->nacc == 0;
      continue;
    }
    int v = b64_value[c];
    if (!v)
      continue;
    d->acc = (d->acc << 6) | (unsigned)(v - 1);
    if (++d->nacc == 4) {
      out[o++] = (char)(d->acc >> 16);
      out[o++] = (char)(d->acc >> 8);
      out[o++] = (char)d->acc;
      d->acc = d->nacc = 0;
    }
  }
  return o;
}

static size_t qp_flush_hold(mime_decoder *d, char *out) {
  memcpy(out, d->qp_hold, d->qp_nhold);
  size_t o = d->qp_nhold;
  d->qp_nhold = 0;
  return o;
}

/* A line end: blanks before it were transport padding (RFC 2045 6.7 (3)). */
static size_t qp_line_end(mime_decoder *d, char *out) {
  bool cr = d->qp_nhold && d->qp_hold[d->qp_nhold - 1] == '\r';
  size_t keep = d->qp_nhold - (cr ? 1 : 0);
  while (keep && (d->qp_hold[keep - 1] == ' ' || d->qp_hold[keep - 1] == '\t'))
    keep--;
  memcpy(out, d->qp_hold, keep);
  d->qp_nhold = 0;
  size_t o = keep;
  if (cr)
    out[o++] = '\r';
  out[o++] = '\n';
  return o;
}

/* States in nacc: 0 text, 1 after '=', 2 after '=' and one hex digit,
 * 3 after "=\r" (a soft line break if LF follows). */
static size_t qp_decode(mime_decoder *d, const char *in, size_t n, char *out) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    char c = in[i];
    switch (d->nacc) {
    case 1:
      if (c == '\n') {
        d->nacc = 0; /* soft line break */
      } else if (c == '\r') {
        d->nacc = 3;
      } else if (hexval(c) >= 0) {
        d->qp_hex = c;
        d->nacc = 2;
      } else {
        out[o++] = '=';
        d->nacc = 0;
        i--; /* again, as text */
      }
      continue;
    case 2:
      if (hexval(c) >= 0) {
        out[o++] = (char)(hexval(d->qp_hex) * 16 + hexval(c));
      } else {
        out[o++] = '=';
        out[o++] = d->qp_hex;
        i--;
      }
      d->nacc = 0;
      continue;
    case 3:
      d->nacc = 0;
      if (c == '\n')
        continue; /* "=\r\n": soft line break */
      out[o++] = '=';
      i--; /* the CR and this byte as text: CR first */
      d->qp_hold[d->qp_nhold++] = '\r';
      continue;
    default:
      break;
    }
    if (c == ' ' || c == '\t' || c == '\r') {
      if (d->qp_nhold == sizeof d->qp_hold)
        o += qp_flush_hold(d, out + o);
      d->qp_hold[d->qp_nhold++] = c;
    } else if (c == '\n') {
      o += qp_line_end(d, out + o);
    } else {
      o += qp_flush_hold(d, out + o);
      if (c == '=')
        d->nacc = 1;
      else
        out[o++] = c;
    }
  }
  return o;
}

size_t mime_decode(mime_decoder *d, const char *in, size_t n, char *out) {
  switch (d->cte) {
  case MIME_CTE_BASE64:
    return b64_decode(d, in, n, out);
  case MIME_CTE_QP:
    return qp_decode(d, in, n, out);
  default:
    memcpy(out, in, n);
    return n;
  }
}

size_t mime_decoder_finish(mime_decoder *d, char *out, size_t cap) {
  char tmp[sizeof d->qp_hold + 8];
  size_t o = 0;
  if (d->cte == MIME_CTE_BASE64 && !d->b64_done) {
    /* An unpadded last quantum: what its bits hold. */
    if (d->nacc == 2)
      tmp[o++] = (char)(d->acc >> 4);
    else if (d->nacc == 3) {
      tmp[o++] = (char)(d->acc >> 10);
      tmp[o++] = (char)(d->acc >> 2);
    }
  } else if (d->cte == MIME_CTE_QP) {
    /* The body's last line ends here: its trailing blanks go too. */
    bool cr = d->qp_nhold && d->qp_hold[d->qp_nhold - 1] == '\r';
    size_t keep = d->qp_nhold - (cr ? 1 : 0);
    while (keep && (d->qp_hold[keep - 1] == ' ' || d->qp_hold[keep - 1] == '\t'))
      keep--;
    memcpy(tmp, d->qp_hold, keep);
    o = keep;
    if (cr)
      tmp[o++] = '\r';
    if (d->nacc == 1 || d->nacc == 3)
      tmp[o++] = '=';
    else if (d->nacc == 2) {
      tmp[o++] = '=';
      tmp[o++] = d->qp_hex;
    }
    if (d->nacc == 3)
      tmp[o++] = '\r';
  }
  mime_decoder_init(d, d->cte);
  if (o > cap)
    o = cap;
  memcpy(out, tmp, o);
  return o;
}

/* ---- events -------------------------------------------------------------- */

static void emit(mime_reader *r, mime_ev_kind kind, const mime_part *p, const char *data,
                 size_t len) {
  mime_event ev = {.kind = kind, .part = p, .data = data, .len = len};
  r->cb(r->arg, &ev);
}

static void flush_out(mime_reader *r) {
  if (r->out_len) {
    r->cur.decoded_size += r->out_len;
    emit(r, MIME_EV_DATA, &r->cur, r->out, r->out_len);
    r->out_len = 0;
  }
}

/* Content bytes of the leaf being read. */
static void content(mime_reader *r, const char *p, size_t n) {
  if (r->mode != M_BODY)
    return; /* preamble, epilogue: nobody's content */
  const size_t slack = sizeof r->dec.qp_hold + 8;
  while (n) {
    size_t room = sizeof r->out - r->out_len - slack;
    size_t take = n < room ? n : room;
    r->out_len += mime_decode(&r->dec, p, take, r->out + r->out_len);
    p += take;
    n -= take;
    if (r->out_len > sizeof r->out / 2)
      flush_out(r);
  }
}

/* The held line end turns out to be content. */
static void release_eol(mime_reader *r) {
  if (r->eol_len)
    content(r, r->eol, r->eol_len);
  r->eol_len = 0;
}

/* ---- header fields ------------------------------------------------------- */

static bool field_name_ok(const char *s, size_t n) {
  if (!n)
    return false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f || s[i] == ':')
      return false;
  return true;
}

/* The pending field is complete: emit it and note what it says. */
static void field_done(mime_reader *r) {
  if (!r->field_open)
    return;
  r->field_open = false;
  char *colon = memchr(r->field, ':', r->field_len);
  if (!colon) {
    r->field_len = 0; /* cannot happen: header_line_end checked it */
    return;
  }
  size_t nlen = (size_t)(colon - r->field);
  while (nlen && (r->field[nlen - 1] == ' ' || r->field[nlen - 1] == '\t'))
    nlen--; /* obsolete "Name :" */
  size_t v = (size_t)(colon - r->field) + 1;
  while (v < r->field_len && (r->field[v] == ' ' || r->field[v] == '\t'))
    v++;
  mime_header_apply(&r->cur, r->field, nlen, r->field + v, r->field_len - v, &r->disp_name);
  if (r->fields++ < MIME_FIELDS_MAX) {
    mime_event ev = {.kind = MIME_EV_HEADER,
                     .part = &r->cur,
                     .name = r->field,
                     .name_len = nlen,
                     .data = r->field + v,
                     .len = r->field_len - v,
                     .cut = r->field_cut};
    r->cb(r->arg, &ev);
  }
  r->field_len = 0;
  r->field_cut = false;
}

static void field_append(mime_reader *r, const char *p, size_t n) {
  size_t room = sizeof r->field - r->field_len;
  if (n > room) {
    r->field_cut = true;
    n = room;
  }
  memcpy(r->field + r->field_len, p, n);
  r->field_len += n;
}

/* ---- entities ------------------------------------------------------------- */

static void part_start(mime_reader *r, uint64_t at) {
  mime_part *p = &r->cur;
  memset(p, 0, sizeof *p);
  p->index = r->next_index++;
  if (r->depth) {
    mime_frame *f = &r->stack[r->depth - 1];
    p->parent = f->index;
    p->depth = r->depth;
    p->in_alternative = f->alternative;
    f->child_open = true;
    /* RFC 2046 5.1.5: in a digest the default type is a message. */
    snprintf(p->type, sizeof p->type, "%s",
             strcmp(f->parent.type, "multipart/digest") ? "text/plain" : "message/rfc822");
  } else {
    snprintf(p->type, sizeof p->type, "text/plain");
  }
  p->body_start = at;
  r->mode = M_HEADERS;
  r->fields = 0;
  r->disp_name = false;
  r->field_len = 0;
  r->field_open = r->field_cut = false;
}

/* The headers ended (at input offset `at`, where the body begins). */
static void headers_done(mime_reader *r, uint64_t at, bool may_nest) {
  field_done(r);
  mime_part *p = &r->cur;
  p->body_start = at;
  bool multi = may_nest && !strncmp(p->type, "multipart/", 10) && p->boundary[0] &&
               r->depth < MIME_DEPTH_MAX;
  p->multipart = multi;
  emit(r, MIME_EV_BEGIN, p, NULL, 0);
  if (multi) {
    mime_frame *f = &r->stack[r->depth++];
    memset(f, 0, sizeof *f);
    f->blen = strlen(p->boundary);
    memcpy(f->boundary, p->boundary, f->blen + 1);
    f->index = p->index;
    f->alternative = !strcmp(p->type, "multipart/alternative");
    f->parent = *p;
    r->mode = M_PREAMBLE;
  } else {
    mime_decoder_init(&r->dec, p->cte);
    r->mode = M_BODY;
  }
}

/* End the leaf being read (its body ends at `end`). */
static void leaf_end(mime_reader *r, uint64_t end, bool truncated) {
  if (r->mode == M_HEADERS)
    headers_done(r, end, false); /* cut off inside its headers: an empty body */
  if (r->mode != M_BODY)
    return;
  r->out_len += mime_decoder_finish(&r->dec, r->out + r->out_len, sizeof r->out - r->out_len);
  flush_out(r);
  r->cur.body_end = end < r->cur.body_start ? r->cur.body_start : end;
  r->cur.truncated = truncated;
  emit(r, MIME_EV_END, &r->cur, NULL, 0);
  r->mode = M_NONE;
  if (r->depth)
    r->stack[r->depth - 1].child_open = false;
}

/* The innermost multipart ends, with whatever it holds. */
static void frame_pop(mime_reader *r, uint64_t end) {
  mime_frame *f = &r->stack[r->depth - 1];
  if (r->mode == M_HEADERS || r->mode == M_BODY)
    leaf_end(r, end, true);
  f->parent.body_end = end < f->parent.body_start ? f->parent.body_start : end;
  f->parent.truncated = !f->closed;
  emit(r, MIME_EV_END, &f->parent, NULL, 0);
  r->depth--;
  r->mode = M_NONE;
  if (r->depth)
    r->stack[r->depth - 1].child_open = false;
}

/* A boundary line of frame j starts at r->line_off. */
static void boundary(mime_reader *r, unsigned j, bool close, uint64_t next_line) {
  uint64_t end = r->line_off - r->eol_len;
  r->eol_len = 0; /* the CRLF before a boundary belongs to it */
  while (r->depth > j + 1)
    frame_pop(r, end);
  mime_frame *f = &r->stack[j];
  if (r->mode == M_HEADERS || r->mode == M_BODY)
    leaf_end(r, end, false);
  if (close) {
    f->closed = true;
    r->mode = M_EPILOGUE;
  } else {
    part_start(r, next_line);
  }
}

/* Whether line[0..n) is "--boundary" or "--boundary--" of a frame (blanks
 * may follow: RFC 2046 5.1.1); sets *j and *close. */
static bool is_boundary(const mime_reader *r, const char *s, size_t n, unsigned *j, bool *close) {
  if (n < 3 || s[0] != '-' || s[1] != '-')
    return false;
  while (n > 2 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
    n--;
  for (unsigned k = r->depth; k-- > 0;) {
    const mime_frame *f = &r->stack[k];
    if (n >= f->blen + 2 && !memcmp(s + 2, f->boundary, f->blen)) {
      size_t rest = n - 2 - f->blen;
      if (rest == 0 || (rest == 2 && s[n - 1] == '-' && s[n - 2] == '-')) {
        *j = k;
        *close = rest == 2;
        return true;
      }
    }
  }
  return false;
}

/* ---- lines ------------------------------------------------------------------ */

/* The line's bytes so far (r->line) are not a boundary: pass them on. A
 * CR last may start the line end: it waits for the next byte. */
static void line_bytes(mime_reader *r, const char *p, size_t n);

/* `whole`: the line's end was seen already, so a CR last is content. */
static void line_settle(mime_reader *r, bool whole) {
  size_t n = r->line_len;
  r->line_content = true;
  if (!whole && n && r->line[n - 1] == '\r') {
    n--;
    r->line_cr = true;
  }
  if (r->mode == M_BODY)
    release_eol(r); /* this line is content: so was the end of the last */
  line_bytes(r, r->line, n);
}

/* Bytes of a settled line (not its end). In the headers, the line's first
 * byte says whether it continues the field before it. */
static void line_bytes(mime_reader *r, const char *p, size_t n) {
  if (!n)
    return;
  if (r->mode != M_HEADERS) {
    r->line_any = true;
    content(r, p, n);
    return;
  }
  if (!r->line_any) {
    bool cont = p[0] == ' ' || p[0] == '\t';
    if (!(cont && r->field_open)) {
      field_done(r);
      r->field_open = true;
      r->field_new = true; /* its name is checked at the line's end */
    }
  }
  r->line_any = true;
  field_append(r, p, n);
}

/* A new header line ended: a field, or (no name and colon) the first line
 * of the body. */
static void header_line_end(mime_reader *r, const char *eol, size_t eol_len) {
  if (!r->field_new)
    return; /* a continuation */
  r->field_new = false;
  const char *colon = memchr(r->field, ':', r->field_len);
  size_t nlen = colon ? (size_t)(colon - r->field) : 0;
  while (nlen && (r->field[nlen - 1] == ' ' || r->field[nlen - 1] == '\t'))
    nlen--;
  if (colon && field_name_ok(r->field, nlen))
    return;
  bool stray = r->field_len && (r->field[0] == ' ' || r->field[0] == '\t');
  /* An mbox "From " separator as the message's first line (mailers that
   * pipe a mailbox file): no field, dropped as Python's email does. */
  bool mbox_from =
      r->cur.index == 0 && r->fields == 0 && r->field_len >= 5 && !memcmp(r->field, "From ", 5);
  r->field_open = false; /* not a field: never emitted */
  if (stray || mbox_from) {
    r->field_len = 0; /* a blank-led line before any field: dropped */
    return;
  }
  headers_done(r, r->line_off, false);
  content(r, r->field, r->field_len);
  memcpy(r->eol, eol, eol_len);
  r->eol_len = eol_len;
}

/* The line ended: eol is its terminator ("\r\n", "\n" or "" at the end of
 * input); next is the offset of the next line. */
static void line_end(mime_reader *r, const char *eol, size_t eol_len, uint64_t next) {
  unsigned j;
  bool close;
  if (!r->line_content && is_boundary(r, r->line, r->line_len, &j, &close)) {
    boundary(r, j, close, next);
  } else {
    if (!r->line_content)
      line_settle(r, true);
    if (r->mode == M_HEADERS && !r->line_any) {
      headers_done(r, next, true);
    } else if (r->mode == M_HEADERS) {
      header_line_end(r, eol, eol_len);
    } else {
      memcpy(r->eol, eol, eol_len);
      r->eol_len = eol_len;
    }
  }
  r->line_len = 0;
  r->line_content = r->line_any = false;
  r->line_off = next;
}

/* A byte at the start of a line: kept while the line may still be a
 * boundary of an enclosing multipart. */
static void line_start_byte(mime_reader *r, char c) {
  r->line[r->line_len++] = c;
  bool maybe = r->depth > 0 && r->line_len < sizeof r->line &&
               (r->line_len > 1 ? r->line[1] == '-' && r->line[0] == '-' : c == '-');
  if (!maybe)
    line_settle(r, false);
}

void mime_feed(mime_reader *r, const char *p, size_t n) {
  size_t i = 0;
  while (i < n && !r->finished) {
    if (r->line_cr) {
      r->line_cr = false;
      if (p[i] == '\n') {
        i++;
        r->off++;
        line_end(r, "\r\n", 2, r->off);
        continue;
      }
      line_bytes(r, "\r", 1); /* a bare CR: content */
    }
    if (!r->line_content) {
      char c = p[i++];
      r->off++;
      if (c != '\n') {
        line_start_byte(r, c);
        continue;
      }
      bool cr = r->line_len && r->line[r->line_len - 1] == '\r';
      r->line_len -= cr ? 1 : 0;
      line_end(r, cr ? "\r\n" : "\n", cr ? 2 : 1, r->off);
      continue;
    }
    const char *q = memchr(p + i, '\n', n - i);
    size_t span = q ? (size_t)(q - (p + i)) : n - i;
    bool cr = span && p[i + span - 1] == '\r';
    line_bytes(r, p + i, span - (cr ? 1 : 0));
    i += span;
    r->off += span;
    if (q) {
      i++;
      r->off++;
      line_end(r, cr ? "\r\n" : "\n", cr ? 2 : 1, r->off);
    } else {
      r->line_cr = cr;
    }
  }
}

void mime_finish(mime_reader *r) {
  if (r->finished)
    return;
  if (r->line_cr) {
    r->line_cr = false;
    line_end(r, "\r", 1, r->off); /* a CR last: the line's end */
  } else if (r->line_len && !r->line_content && r->line[r->line_len - 1] == '\r') {
    r->line_len--;
    line_end(r, "\r", 1, r->off);
  } else if (r->line_len || r->line_content) {
    line_end(r, "", 0, r->off);
  }
  if (r->mode == M_BODY)
    release_eol(r); /* the message's last line end is content */
  r->eol_len = 0;
  while (r->depth)
    frame_pop(r, r->off);
  if (r->mode == M_HEADERS || r->mode == M_BODY)
    leaf_end(r, r->off, false);
  r->finished = true;
}

void mime_reader_init(mime_reader *r, mime_cb cb, void *arg) {
  memset(r, 0, sizeof *r);
  r->cb = cb;
  r->arg = arg;
  part_start(r, 0);
}
