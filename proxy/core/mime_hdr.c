/* mime_hdr.c - header field values: the MIME fields an entity's handling
 * depends on, parameters (RFC 2045 5.1, RFC 2231), encoded-words (RFC 2047)
 * and charsets to UTF-8 (see mime.h).
 *
 * Every function writes into the caller's fixed buffer and cuts, never
 * overflows; text that is not valid in its declared charset keeps its raw
 * form (made valid UTF-8), so what a display shows is never less than what
 * was written.
 */
#include <errno.h>
#include <iconv.h>
#include <stdio.h>
#include <string.h>

#include "mime_internal.h"
#include "smtp-tls-proxy/util.h"

/* ---- UTF-8 ---------------------------------------------------------------- */

bool mime_is_utf8(const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  while (i < n) {
    unsigned c = p[i];
    size_t len;
    unsigned min;
    if (c < 0x80) {
      i++;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      len = 2, min = 0x80, c &= 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3, min = 0x800, c &= 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4, min = 0x10000, c &= 0x07;
    } else {
      return false;
    }
    if (i + len > n)
      return false;
    for (size_t k = 1; k < len; k++) {
      if ((p[i + k] & 0xc0) != 0x80)
        return false;
      c = (c << 6) | (p[i + k] & 0x3fu);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
      return false;
    i += len;
  }
  return true;
}

/* Windows-1252's 0x80..0x9f; the rest of the upper half is Latin-1. */
static const unsigned short cp1252_hi[32] = {
    0x20ac, 0xfffd, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160,
    0x2039, 0x0152, 0xfffd, 0x017d, 0xfffd, 0xfffd, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022,
    0x2013, 0x2014, 0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0xfffd, 0x017e, 0x0178};

/* Append s[0..n) to out (cut at a character boundary of valid UTF-8). */
static size_t put_utf8(char *out, size_t cap, size_t o, const char *s, size_t n) {
  if (o >= cap)
    return o;
  size_t room = cap - 1 - o;
  if (n > room) {
    n = room;
    while (n && ((unsigned char)s[n] & 0xc0) == 0x80)
      n--; /* not inside a character */
  }
  memcpy(out + o, s, n);
  out[o + n] = '\0';
  return o + n;
}

size_t mime_utf8_or_1252(const char *in, size_t n, char *out, size_t cap) {
  if (!cap)
    return 0;
  out[0] = '\0';
  if (mime_is_utf8(in, n))
    return put_utf8(out, cap, 0, in, n);
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned c = (unsigned char)in[i];
    char enc[4];
    size_t len = 1;
    if (c >= 0x80 && c < 0xa0)
      c = cp1252_hi[c - 0x80];
    if (c < 0x80) {
      enc[0] = (char)c;
    } else if (c < 0x800) {
      enc[0] = (char)(0xc0 | (c >> 6));
      enc[1] = (char)(0x80 | (c & 0x3f));
      len = 2;
    } else {
      enc[0] = (char)(0xe0 | (c >> 12));
      enc[1] = (char)(0x80 | ((c >> 6) & 0x3f));
      enc[2] = (char)(0x80 | (c & 0x3f));
      len = 3;
    }
    if (o + len + 1 > cap)
      break;
    memcpy(out + o, enc, len);
    o += len;
  }
  out[o] = '\0';
  return o;
}

/* Charset names mailers write that glibc spells differently. */
static const char *iconv_name(const char *cs) {
  static const char *const alias[][2] = {{"ks_c_5601-1987", "CP949"},
                                         {"x-sjis", "SHIFT_JIS"},
                                         {"x-gbk", "GBK"},
                                         {"unicode-1-1-utf-7", "UTF-7"}};
  for (size_t i = 0; i < sizeof alias / sizeof *alias; i++)
    if (!stp_ascii_casecmp(cs, alias[i][0]))
      return alias[i][1];
  return cs;
}

long mime_to_utf8(const char *charset, const char *in, size_t n, char *out, size_t cap) {
  if (!cap)
    return -1;
  out[0] = '\0';
  if (!*charset || !stp_ascii_casecmp(charset, "us-ascii") ||
      !stp_ascii_casecmp(charset, "utf-8") || !stp_ascii_casecmp(charset, "utf8")) {
    if (!mime_is_utf8(in, n))
      return -1;
    return (long)put_utf8(out, cap, 0, in, n);
  }
  iconv_t cd = iconv_open("UTF-8", iconv_name(charset));
  if (cd == (iconv_t)-1)
    return -1;
  char *ip = (char *)in, *op = out;
  size_t il = n, ol = cap - 1;
  long rc = 0;
  while (il > 0) {
    if (iconv(cd, &ip, &il, &op, &ol) != (size_t)-1)
      continue;
    if (errno != E2BIG)
      rc = -1; /* invalid or incomplete in that charset */
    break;
  }
  if (rc == 0 && il == 0)
    iconv(cd, NULL, NULL, &op, &ol); /* stateful charsets return to their initial state */
  iconv_close(cd);
  if (rc < 0)
    return -1;
  size_t o = (size_t)(op - out);
  while (o && !mime_is_utf8(out, o))
    o--; /* cut inside a character by E2BIG */
  out[o] = '\0';
  return (long)o;
}

/* ---- encoded-words (RFC 2047) ------------------------------------------------ */

/* Two hex digits at s: their value, or -1. */
static int hex2(const char *s) {
  int v = 0;
  for (int k = 0; k < 2; k++) {
    char c = s[k];
    int d = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : -1;
    if (d < 0)
      return -1;
    v = v * 16 + d;
  }
  return v;
}

static bool token_char(char c) {
  return c > ' ' && c < 0x7f && !strchr("()<>@,;:\\\"/[]?=", c);
}

/* "=?charset?B|Q?text?=" at s[0..n): its length, the charset (the part
 * before a '*' language tag) and the decoded bytes; 0 when it is not one. */
static size_t encoded_word(const char *s, size_t n, char *cs, size_t cscap, char *dec,
                           size_t deccap, size_t *declen) {
  if (n < 8 || s[0] != '=' || s[1] != '?')
    return 0;
  size_t i = 2, c0 = 2;
  while (i < n && s[i] != '?' && token_char(s[i]))
    i++;
  if (i >= n || s[i] != '?' || i == c0 || i + 3 > n)
    return 0;
  size_t cslen = i - c0;
  const char *star = memchr(s + c0, '*', cslen);
  if (star)
    cslen = (size_t)(star - (s + c0));
  if (cslen >= cscap)
    return 0;
  memcpy(cs, s + c0, cslen);
  cs[cslen] = '\0';
  char enc = s[i + 1];
  if ((enc != 'B' && enc != 'b' && enc != 'Q' && enc != 'q') || s[i + 2] != '?')
    return 0;
  size_t t0 = i + 3, t = t0;
  while (t + 1 < n && !(s[t] == '?' && s[t + 1] == '=') && s[t] > ' ' && s[t] < 0x7f)
    t++;
  if (t + 1 >= n || s[t] != '?' || s[t + 1] != '=')
    return 0;
  size_t o = 0;
  if (enc == 'B' || enc == 'b') {
    mime_decoder d;
    mime_decoder_init(&d, MIME_CTE_BASE64);
    if (t - t0 > deccap)
      return 0;
    o = mime_decode(&d, s + t0, t - t0, dec);
    o += mime_decoder_finish(&d, dec + o, deccap - o);
  } else {
    for (size_t k = t0; k < t && o < deccap; k++) {
      if (s[k] == '_') {
        dec[o++] = ' ';
      } else if (s[k] == '=' && k + 2 < t && hex2(s + k + 1) >= 0) {
        dec[o++] = (char)hex2(s + k + 1);
        k += 2;
      } else {
        dec[o++] = s[k];
      }
    }
  }
  *declen = o;
  return t + 2;
}

/* Decoded bytes of adjacent encoded-words in one charset, converted
 * together: a character may be split across words. */
typedef struct words_acc {
  char cs[64];
  char buf[1024];
  size_t len;
  const char *raw; /* the words as written, kept if the charset fails */
  size_t raw_len;
} words_acc;

/* Convert the words gathered so far. With `partial` (the buffer is full,
 * more words in the charset follow) a character cut at the end is held
 * back for the next words instead of failing the conversion. */
static size_t acc_flush(words_acc *a, char *out, size_t cap, size_t o, bool partial) {
  if (!a->raw_len) {
    a->len = 0; /* held bytes no word completes: dropped */
    return o;
  }
  char tmp[2048];
  size_t hold = 0;
  long u = mime_to_utf8(a->cs, a->buf, a->len, tmp, sizeof tmp);
  while (u < 0 && partial && hold < 3 && hold < a->len)
    u = mime_to_utf8(a->cs, a->buf, a->len - ++hold, tmp, sizeof tmp);
  if (u >= 0)
    o = put_utf8(out, cap, o, tmp, (size_t)u);
  else /* unknown charset or invalid in it: as written */
    o = put_utf8(out, cap, o, a->raw, a->raw_len);
  if (u >= 0 && hold) {
    memmove(a->buf, a->buf + a->len - hold, hold);
    a->len = hold;
    a->raw_len = 0; /* the held bytes' words are written already if they fail */
    return o;
  }
  a->len = a->raw_len = 0;
  a->cs[0] = '\0';
  return o;
}

/* The length of s without a UTF-8 sequence cut at its end (a field cut at
 * MIME_FIELD_MAX): s[0..len) is then judged as a whole. */
static size_t utf8_whole(const char *s, size_t n) {
  size_t k = n, back = 0;
  while (k && back < 3 && ((unsigned char)s[k - 1] & 0xc0) == 0x80) {
    k--;
    back++;
  }
  if (!k || (unsigned char)s[k - 1] < 0xc0)
    return n;
  unsigned char lead = (unsigned char)s[k - 1];
  size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
  return back + 1 < need ? k - 1 : n;
}

/* Plain text between words: raw 8-bit made UTF-8. UTF-8 is judged on the
 * whole run (a slice boundary inside a character must not turn the rest
 * into Windows-1252); Windows-1252 is converted in slices. */
static size_t put_text(char *out, size_t cap, size_t o, const char *s, size_t n) {
  size_t whole = utf8_whole(s, n);
  if (mime_is_utf8(s, whole))
    return put_utf8(out, cap, o, s, whole);
  char tmp[2048];
  while (n) {
    size_t take = n < 600 ? n : 600; /* 600 bytes of Windows-1252 fit tmp as UTF-8 */
    size_t u = mime_utf8_or_1252(s, take, tmp, sizeof tmp);
    o = put_utf8(out, cap, o, tmp, u);
    s += take;
    n -= take;
  }
  return o;
}

size_t mime_decode_words(const char *in, size_t n, char *out, size_t cap) {
  if (!cap)
    return 0;
  out[0] = '\0';
  words_acc a = {{0}, {0}, 0, NULL, 0};
  size_t o = 0, i = 0, text0 = 0;
  while (i < n) {
    char cs[64], dec[1024];
    size_t dlen = 0;
    size_t wl =
        in[i] == '=' ? encoded_word(in + i, n - i, cs, sizeof cs, dec, sizeof dec, &dlen) : 0;
    if (!wl) {
      i++;
      continue;
    }
    /* Text before the word: dropped when it is only blanks between two
     * words (RFC 2047 6.2), else written. */
    size_t k = text0;
    while (k < i && (in[k] == ' ' || in[k] == '\t' || in[k] == '\r' || in[k] == '\n'))
      k++;
    bool between = (a.raw_len || a.len) && k == i;
    if (!between) {
      o = acc_flush(&a, out, cap, o, false);
      o = put_text(out, cap, o, in + text0, i - text0);
    }
    if (a.raw_len && stp_ascii_casecmp(a.cs, cs))
      o = acc_flush(&a, out, cap, o, false);
    else if (a.raw_len && a.len + dlen > sizeof a.buf)
      o = acc_flush(&a, out, cap, o, true); /* same charset: a cut character is kept */
    if (!a.raw_len) {
      if (stp_ascii_casecmp(a.cs, cs))
        a.len = 0; /* held bytes belong to another charset */
      snprintf(a.cs, sizeof a.cs, "%s", cs);
      a.raw = in + i;
    }
    memcpy(a.buf + a.len, dec, dlen);
    a.len += dlen;
    a.raw_len = (size_t)(in + i + wl - a.raw);
    i += wl;
    text0 = i;
  }
  o = acc_flush(&a, out, cap, o, false);
  return put_text(out, cap, o, in + text0, n - text0);
}

/* ---- structured values ----------------------------------------------------- */

/* Skip blanks and (nested) comments. */
static size_t skip_cfws(const char *s, size_t n, size_t i) {
  while (i < n) {
    if (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n') {
      i++;
    } else if (s[i] == '(') {
      int depth = 0;
      for (; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n)
          i++;
        else if (s[i] == '(')
          depth++;
        else if (s[i] == ')' && --depth == 0) {
          i++;
          break;
        }
      }
    } else {
      break;
    }
  }
  return i;
}

void mime_value_token(const char *v, size_t n, char *out, size_t cap) {
  size_t i = skip_cfws(v, n, 0), o = 0;
  while (i < n && v[i] != ';' && v[i] != ' ' && v[i] != '\t' && v[i] != '(' && o + 1 < cap)
    out[o++] = stp_ascii_lower(v[i++]);
  out[o] = '\0';
}

/* A value at s[i..): quoted string (escapes removed) or token. */
static size_t param_value(const char *s, size_t n, size_t i, char *out, size_t cap, size_t *olen) {
  size_t o = 0;
  if (i < n && s[i] == '"') {
    for (i++; i < n && s[i] != '"'; i++) {
      if (s[i] == '\\' && i + 1 < n)
        i++;
      if (o + 1 < cap)
        out[o++] = s[i];
    }
    if (i < n)
      i++;
  } else {
    /* Tolerant: up to ';' (mailers write unquoted names with blanks). */
    while (i < n && s[i] != ';') {
      if (o + 1 < cap)
        out[o++] = s[i];
      i++;
    }
    while (o && (out[o - 1] == ' ' || out[o - 1] == '\t'))
      o--;
  }
  out[o] = '\0';
  *olen = o;
  return i;
}

static size_t pct_decode(const char *s, size_t n, char *out, size_t cap) {
  size_t o = 0;
  for (size_t i = 0; i < n && o < cap; i++) {
    if (s[i] == '%' && i + 2 < n && hex2(s + i + 1) >= 0) {
      out[o++] = (char)hex2(s + i + 1);
      i += 2;
    } else {
      out[o++] = s[i];
    }
  }
  return o;
}

#define PARAM_SEGS 32

typedef struct param_parts {
  char ext[2048]; /* name*= (charset'lang'value), raw */
  size_t ext_len;
  bool has_ext;
  char plain[2048];
  size_t plain_len;
  bool has_plain;
  char seg[PARAM_SEGS][256]; /* name*N / name*N* */
  size_t seg_len[PARAM_SEGS];
  bool seg_has[PARAM_SEGS], seg_ext[PARAM_SEGS];
} param_parts;

/* Does attribute a[0..al) name `name`, and how: 0 no, 1 plain, 2 name*,
 * 3 name*N (segment *seg), 4 name*N*. */
static int attr_kind(const char *a, size_t al, const char *name, unsigned *seg) {
  size_t nl = strlen(name);
  if (al < nl || stp_ascii_ncasecmp(a, name, nl))
    return 0;
  if (al == nl)
    return 1;
  if (a[nl] != '*')
    return 0;
  if (al == nl + 1)
    return 2;
  unsigned v = 0;
  size_t i = nl + 1;
  if (i >= al || a[i] < '0' || a[i] > '9')
    return 0;
  while (i < al && a[i] >= '0' && a[i] <= '9' && v < 1000)
    v = v * 10 + (unsigned)(a[i++] - '0');
  *seg = v;
  if (i == al)
    return 3;
  return i + 1 == al && a[i] == '*' ? 4 : 0;
}

static void collect_params(const char *v, size_t n, const char *name, param_parts *pp) {
  size_t i = 0;
  while (i < n && v[i] != ';') /* the leading token */
    i = v[i] == '"' ? param_value(v, n, i, pp->plain, 2, &pp->plain_len) : i + 1;
  while (i < n) {
    i = skip_cfws(v, n, i + 1); /* past ';' */
    size_t a0 = i;
    while (i < n && v[i] != '=' && v[i] != ';' && v[i] != ' ' && v[i] != '\t')
      i++;
    size_t al = i - a0;
    i = skip_cfws(v, n, i);
    if (i >= n || v[i] != '=') {
      while (i < n && v[i] != ';')
        i++;
      continue;
    }
    i = skip_cfws(v, n, i + 1);
    char val[2048];
    size_t vl;
    i = param_value(v, n, i, val, sizeof val, &vl);
    while (i < n && v[i] != ';')
      i++;
    unsigned seg = 0;
    int kind = attr_kind(v + a0, al, name, &seg);
    if (kind == 1 && !pp->has_plain) {
      memcpy(pp->plain, val, vl + 1);
      pp->plain_len = vl;
      pp->has_plain = true;
    } else if (kind == 2 && !pp->has_ext) {
      memcpy(pp->ext, val, vl + 1);
      pp->ext_len = vl;
      pp->has_ext = true;
    } else if ((kind == 3 || kind == 4) && seg < PARAM_SEGS && !pp->seg_has[seg]) {
      size_t take = vl < sizeof pp->seg[0] - 1 ? vl : sizeof pp->seg[0] - 1;
      memcpy(pp->seg[seg], val, take);
      pp->seg_len[seg] = take;
      pp->seg_has[seg] = true;
      pp->seg_ext[seg] = kind == 4;
    }
  }
}

/* charset'lang'pct-text (already joined) to UTF-8. */
static bool ext_to_utf8(const char *s, size_t n, char *out, size_t cap) {
  const char *q1 = memchr(s, '\'', n);
  const char *q2 = q1 ? memchr(q1 + 1, '\'', (size_t)(s + n - q1 - 1)) : NULL;
  if (!q2)
    return false;
  char cs[64];
  size_t cl = (size_t)(q1 - s);
  if (cl >= sizeof cs)
    return false;
  memcpy(cs, s, cl);
  cs[cl] = '\0';
  char raw[2048];
  size_t rl = pct_decode(q2 + 1, (size_t)(s + n - q2 - 1), raw, sizeof raw);
  if (mime_to_utf8(cs, raw, rl, out, cap) >= 0)
    return true;
  mime_utf8_or_1252(raw, rl, out, cap);
  return true;
}

bool mime_param(const char *v, size_t n, const char *name, char *out, size_t cap) {
  static __thread param_parts pp; /* 10 KiB: not on the stack of every caller */
  memset(&pp, 0, sizeof pp);
  if (!cap)
    return false;
  out[0] = '\0';
  collect_params(v, n, name, &pp);
  if (pp.has_ext && ext_to_utf8(pp.ext, pp.ext_len, out, cap))
    return true;
  if (pp.seg_has[0]) {
    /* RFC 2231 3: segments in order; the charset is in the first, and
     * only the extended ones are percent-encoded. */
    char joined[2048];
    size_t jl = 0;
    const char *cs_end = pp.seg_ext[0] ? memchr(pp.seg[0], '\'', pp.seg_len[0]) : NULL;
    const char *lang_end =
        cs_end ? memchr(cs_end + 1, '\'', (size_t)(pp.seg[0] + pp.seg_len[0] - cs_end - 1)) : NULL;
    for (unsigned k = 0; k < PARAM_SEGS && pp.seg_has[k]; k++) {
      const char *s = pp.seg[k];
      size_t sl = pp.seg_len[k];
      if (k == 0 && lang_end) {
        sl -= (size_t)(lang_end + 1 - s);
        s = lang_end + 1;
      }
      jl += pp.seg_ext[k] ? pct_decode(s, sl, joined + jl, sizeof joined - jl)
                          : (sl < sizeof joined - jl ? (memcpy(joined + jl, s, sl), sl) : 0);
    }
    char cs[64] = "";
    if (lang_end && (size_t)(cs_end - pp.seg[0]) < sizeof cs) {
      memcpy(cs, pp.seg[0], (size_t)(cs_end - pp.seg[0]));
      cs[cs_end - pp.seg[0]] = '\0';
    }
    if (!cs[0] || mime_to_utf8(cs, joined, jl, out, cap) < 0)
      mime_decode_words(joined, jl, out, cap);
    return true;
  }
  if (pp.has_plain) {
    mime_decode_words(pp.plain, pp.plain_len, out, cap);
    return true;
  }
  return false;
}

/* ---- the fields that shape an entity --------------------------------------- */

enum { SEEN_TYPE = 1, SEEN_CTE = 2, SEEN_DISP = 4, SEEN_CID = 8 };

static void apply_type(mime_part *p, const char *v, size_t n, bool disp_name) {
  char t[MIME_TYPE_MAX];
  mime_value_token(v, n, t, sizeof t);
  const char *slash = strchr(t, '/');
  if (slash && slash != t && slash[1])
    snprintf(p->type, sizeof p->type, "%s", t); /* else the default stays (RFC 2045 5.2) */
  char cs[64];
  if (mime_param(v, n, "charset", cs, sizeof cs)) {
    for (char *c = cs; *c; c++)
      *c = stp_ascii_lower(*c);
    snprintf(p->charset, sizeof p->charset, "%s", cs);
  }
  char b[256];
  size_t bl;
  if (!strncmp(p->type, "multipart/", 10) && mime_param(v, n, "boundary", b, sizeof b) &&
      (bl = strlen(b)) <= MIME_BOUNDARY_MAX)
    memcpy(p->boundary, b, bl + 1); /* a longer one is not a boundary: the part is a leaf */
  if (!disp_name)
    mime_param(v, n, "name", p->filename, sizeof p->filename);
}

static void apply_cid(mime_part *p, const char *v, size_t n) {
  size_t i = skip_cfws(v, n, 0), o = 0;
  if (i < n && v[i] == '<')
    i++;
  while (i < n && v[i] != '>' && v[i] != ' ' && v[i] != '\t' && o + 1 < sizeof p->content_id)
    p->content_id[o++] = v[i++];
  p->content_id[o] = '\0';
}

void mime_header_apply(mime_part *p, const char *name, size_t nlen, const char *v, size_t vlen,
                       bool *disp_name) {
  char tok[32];
  if (nlen == 12 && !stp_ascii_ncasecmp(name, "Content-Type", 12) && !(p->seen & SEEN_TYPE)) {
    p->seen |= SEEN_TYPE;
    apply_type(p, v, vlen, *disp_name);
  } else if (nlen == 25 && !stp_ascii_ncasecmp(name, "Content-Transfer-Encoding", 25) &&
             !(p->seen & SEEN_CTE)) {
    p->seen |= SEEN_CTE;
    mime_value_token(v, vlen, tok, sizeof tok);
    p->cte = !strcmp(tok, "base64")             ? MIME_CTE_BASE64
             : !strcmp(tok, "quoted-printable") ? MIME_CTE_QP
                                                : MIME_CTE_7BIT;
  } else if (nlen == 19 && !stp_ascii_ncasecmp(name, "Content-Disposition", 19) &&
             !(p->seen & SEEN_DISP)) {
    p->seen |= SEEN_DISP;
    mime_value_token(v, vlen, tok, sizeof tok);
    p->disp = !strcmp(tok, "attachment") ? MIME_DISP_ATTACHMENT
              : !strcmp(tok, "inline")   ? MIME_DISP_INLINE
                                         : MIME_DISP_NONE;
    char fn[MIME_NAME_MAX];
    if (mime_param(v, vlen, "filename", fn, sizeof fn) && fn[0]) {
      snprintf(p->filename, sizeof p->filename, "%s", fn);
      *disp_name = true;
    }
  } else if (nlen == 10 && !stp_ascii_ncasecmp(name, "Content-ID", 10) && !(p->seen & SEEN_CID)) {
    p->seen |= SEEN_CID;
    apply_cid(p, v, vlen);
  }
}
