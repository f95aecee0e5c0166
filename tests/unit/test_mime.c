/* test_mime.c - the streaming MIME reader on messages as scan-to-email
 * devices and mailers write them: a PDF scan, inline images, nested
 * alternative/related, non-UTF-8 subjects and filenames (RFC 2047, RFC
 * 2231, raw 8-bit), a missing final boundary; every message also fed one
 * byte at a time and cut at every offset, which must not change the
 * events; each part read again from its byte range with mime_decoder. */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp-tls-proxy/mime.h"

/* ---- an event log ------------------------------------------------------------ */

#define MAXP 64

typedef struct logbuf {
  char *s;
  size_t len, cap;
  /* per part: decoded bytes and the final part record */
  char *data[MAXP];
  size_t dlen[MAXP];
  mime_part end[MAXP];
  bool ended[MAXP];
  unsigned nparts;
} logbuf;

static void lprintf(logbuf *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void lprintf(logbuf *l, const char *fmt, ...) {
  va_list ap;
  char tmp[20000];
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  cr_assert(n >= 0 && (size_t)n < sizeof tmp);
  if (l->len + (size_t)n + 1 > l->cap) {
    l->cap = (l->len + (size_t)n + 1) * 2;
    l->s = realloc(l->s, l->cap);
  }
  memcpy(l->s + l->len, tmp, (size_t)n + 1);
  l->len += (size_t)n;
}

static const char *cte_name(mime_cte c) {
  return c == MIME_CTE_BASE64 ? "b64" : c == MIME_CTE_QP ? "qp" : "id";
}

/* DATA is not logged piecewise (its split may vary): the bytes are kept per
 * part and summarised at END. */
static void on_event(void *arg, const mime_event *ev) {
  logbuf *l = arg;
  const mime_part *p = ev->part;
  cr_assert_lt(p->index, MAXP);
  switch (ev->kind) {
  case MIME_EV_HEADER:
    lprintf(l, "H%u %.*s: %.*s%s\n", p->index, (int)ev->name_len, ev->name, (int)ev->len, ev->data,
            ev->cut ? " [cut]" : "");
    break;
  case MIME_EV_BEGIN:
    lprintf(l, "B%u parent=%u depth=%u %s%s cs=%s cte=%s disp=%d fn=%s cid=%s alt=%d @%llu\n",
            p->index, p->parent, p->depth, p->type, p->multipart ? " multi" : "", p->charset,
            cte_name(p->cte), (int)p->disp, p->filename, p->content_id, p->in_alternative,
            (unsigned long long)p->body_start);
    if (p->index + 1 > l->nparts)
      l->nparts = p->index + 1;
    break;
  case MIME_EV_DATA:
    cr_assert_gt(ev->len, 0);
    cr_assert(!p->multipart);
    l->data[p->index] = realloc(l->data[p->index], l->dlen[p->index] + ev->len + 1);
    memcpy(l->data[p->index] + l->dlen[p->index], ev->data, ev->len);
    l->dlen[p->index] += ev->len;
    l->data[p->index][l->dlen[p->index]] = '\0';
    break;
  case MIME_EV_END:
    cr_assert(!l->ended[p->index], "part %u ended twice", p->index);
    l->ended[p->index] = true;
    l->end[p->index] = *p;
    if (!p->multipart)
      cr_assert_eq(p->decoded_size, l->dlen[p->index]);
    lprintf(l, "E%u [%llu,%llu) size=%llu%s\n", p->index, (unsigned long long)p->body_start,
            (unsigned long long)p->body_end, (unsigned long long)p->decoded_size,
            p->truncated ? " truncated" : "");
    break;
  }
}

static void log_free(logbuf *l) {
  free(l->s);
  for (unsigned i = 0; i < MAXP; i++)
    free(l->data[i]);
  memset(l, 0, sizeof *l);
}

/* Feed msg in pieces of `step` bytes (0: whole). */
static void run(const char *msg, size_t len, size_t step, logbuf *l) {
  static mime_reader r; /* large: not on the stack */
  memset(l, 0, sizeof *l);
  mime_reader_init(&r, on_event, l);
  if (!step)
    step = len ? len : 1;
  for (size_t i = 0; i < len; i += step) {
    size_t n = len - i < step ? len - i : step;
    char *piece = malloc(n); /* a read past the piece is an ASan report */
    memcpy(piece, msg + i, n);
    mime_feed(&r, piece, n);
    free(piece);
  }
  mime_finish(&r);
  for (unsigned i = 0; i < l->nparts; i++)
    cr_assert(l->ended[i], "part %u never ended", i);
}

/* Whole, byte by byte, and cut in two at every offset: the same log and
 * the same bytes per part. Each leaf decoded again from its byte range. */
static void check_splits(const char *msg, size_t len, logbuf *whole) {
  run(msg, len, 0, whole);
  logbuf l;
  run(msg, len, 1, &l);
  cr_assert_str_eq(l.s, whole->s, "byte by byte differs");
  log_free(&l);
  for (size_t cut = 1; cut<len; cut += len> 3000 ? 97 : 1) {
    static mime_reader r;
    memset(&l, 0, sizeof l);
    mime_reader_init(&r, on_event, &l);
    mime_feed(&r, msg, cut);
    mime_feed(&r, msg + cut, len - cut);
    mime_finish(&r);
    cr_assert_str_eq(l.s, whole->s, "cut at %zu differs", cut);
    for (unsigned i = 0; i < whole->nparts; i++)
      cr_assert(l.dlen[i] == whole->dlen[i] &&
                (!l.dlen[i] || !memcmp(l.data[i], whole->data[i], l.dlen[i])));
    log_free(&l);
  }
  for (unsigned i = 0; i < whole->nparts; i++) {
    const mime_part *p = &whole->end[i];
    if (p->multipart)
      continue;
    mime_decoder d;
    mime_decoder_init(&d, p->cte);
    size_t rl = (size_t)(p->body_end - p->body_start);
    char *out = malloc(rl + 200);
    size_t o = mime_decode(&d, msg + p->body_start, rl, out);
    o += mime_decoder_finish(&d, out + o, 200);
    cr_assert_eq(o, whole->dlen[i], "part %u: range decodes to %zu, stream gave %zu", i, o,
                 whole->dlen[i]);
    cr_assert(!o || !memcmp(out, whole->data[i], o));
    free(out);
  }
}

/* ---- base64 of test payloads ----------------------------------------------- */

static char *b64_lines(const unsigned char *p, size_t n, size_t *olen) {
  static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char *o = malloc(n * 2 + 16);
  size_t k = 0, col = 0;
  for (size_t i = 0; i < n; i += 3) {
    unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) |
                 (i + 2 < n ? p[i + 2] : 0);
    o[k++] = al[v >> 18 & 63];
    o[k++] = al[v >> 12 & 63];
    o[k++] = i + 1 < n ? al[v >> 6 & 63] : '=';
    o[k++] = i + 2 < n ? al[v & 63] : '=';
    if ((col += 4) == 76) {
      o[k++] = '\r';
      o[k++] = '\n';
      col = 0;
    }
  }
  if (col) {
    o[k++] = '\r';
    o[k++] = '\n';
  }
  o[k] = '\0';
  *olen = k;
  return o;
}

/* A fake PDF: the header a scanner writes, then binary bytes. */
static unsigned char *fake_pdf(size_t n) {
  unsigned char *p = malloc(n);
  memcpy(p, "%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", 15);
  unsigned x = 12345;
  for (size_t i = 15; i < n; i++) {
    x = x * 1103515245u + 12345u;
    p[i] = (unsigned char)(x >> 16);
  }
  return p;
}

/* ---- tests -------------------------------------------------------------------- */

/* As a Ricoh/Savin-style multifunction device sends a scan. */
Test(mime, scanner_pdf_attachment) {
  size_t pdf_len = 5000, b64len;
  unsigned char *pdf = fake_pdf(pdf_len);
  char *b64 = b64_lines(pdf, pdf_len, &b64len);
  char *msg = malloc(b64len + 4096);
  int n = sprintf(msg,
                  "Return-Path: <scanner@example.com>\r\n"
                  "From: \"RICOH MP C3004\" <scanner@example.com>\r\n"
                  "To: user@example.com\r\n"
                  "Subject: Scan Data from MP C3004\r\n"
                  "Date: Wed, 15 Nov 2023 10:30:00 +0100\r\n"
                  "Message-ID: <20231115103000.0001@mpc3004.example.com>\r\n"
                  "MIME-Version: 1.0\r\n"
                  "Content-Type: multipart/mixed;\r\n"
                  "\tboundary=\"----=_Part_0_12345.1700040600\"\r\n"
                  "\r\n"
                  "This is a multi-part message in MIME format.\r\n"
                  "------=_Part_0_12345.1700040600\r\n"
                  "Content-Type: text/plain; charset=us-ascii\r\n"
                  "Content-Transfer-Encoding: 7bit\r\n"
                  "\r\n"
                  "Scan Data from MP C3004\r\n"
                  "\r\n"
                  "------=_Part_0_12345.1700040600\r\n"
                  "Content-Type: application/pdf; name=\"20231115103000.pdf\"\r\n"
                  "Content-Transfer-Encoding: base64\r\n"
                  "Content-Disposition: attachment;\r\n"
                  " filename=\"20231115103000.pdf\"\r\n"
                  "\r\n"
                  "%s"
                  "------=_Part_0_12345.1700040600--\r\n",
                  b64);
  logbuf l;
  check_splits(msg, (size_t)n, &l);
  cr_assert_eq(l.nparts, 3);
  cr_assert(l.end[0].multipart);
  cr_assert_str_eq(l.end[0].type, "multipart/mixed");
  cr_assert_str_eq(l.end[0].boundary, "----=_Part_0_12345.1700040600");
  cr_assert_str_eq(l.end[1].type, "text/plain");
  cr_assert_str_eq(l.data[1], "Scan Data from MP C3004\r\n",
                   "the CRLF before the boundary is "
                   "not content");
  cr_assert_str_eq(l.end[2].type, "application/pdf");
  cr_assert_str_eq(l.end[2].filename, "20231115103000.pdf");
  cr_assert_eq(l.end[2].disp, MIME_DISP_ATTACHMENT);
  cr_assert_eq(l.dlen[2], pdf_len);
  cr_assert(!memcmp(l.data[2], pdf, pdf_len), "the PDF decodes byte for byte");
  cr_assert(!l.end[0].truncated && !l.end[2].truncated);
  cr_assert(
      strstr(l.s, "H0 Content-Type: multipart/mixed;\tboundary=\"----=_Part_0_12345.1700040600\""),
      "folded header unfolded: %s", l.s);
  log_free(&l);
  free(msg);
  free(b64);
  free(pdf);
}

/* Canon/Brother style: no disposition, the name only on Content-Type, an
 * unquoted boundary, and the scan with LF-only line ends. */
Test(mime, scanner_octet_stream_name_only_lf) {
  const char *msg = "From: scan@printer.lan\n"
                    "Subject: Scanned image\n"
                    "Content-Type: multipart/mixed; boundary=BRO_SCAN_7788\n"
                    "\n"
                    "--BRO_SCAN_7788\n"
                    "Content-Type: application/octet-stream; name=Scan0001.pdf\n"
                    "Content-Transfer-Encoding: base64\n"
                    "\n"
                    "JVBERi0xLjMK\n"
                    "--BRO_SCAN_7788--\n";
  logbuf l;
  check_splits(msg, strlen(msg), &l);
  cr_assert_eq(l.nparts, 2);
  cr_assert_str_eq(l.end[1].filename, "Scan0001.pdf");
  cr_assert_eq(l.end[1].disp, MIME_DISP_NONE);
  cr_assert_str_eq(l.data[1], "%PDF-1.3\n");
  log_free(&l);
}

/* An HTML mail with an inline logo, inside alternative inside mixed. */
Test(mime, nested_alternative_related_inline_image) {
  const char *msg = "Subject: Report\r\n"
                    "MIME-Version: 1.0\r\n"
                    "Content-Type: multipart/mixed; boundary=\"outer\"\r\n"
                    "\r\n"
                    "--outer\r\n"
                    "Content-Type: multipart/alternative; boundary=\"alt\"\r\n"
                    "\r\n"
                    "--alt\r\n"
                    "Content-Type: text/plain; charset=\"utf-8\"\r\n"
                    "Content-Transfer-Encoding: quoted-printable\r\n"
                    "\r\n"
                    "Gr=C3=BC=C3=9Fe, see the logo =3D attached  \r\n"
                    "soft=\r\n"
                    "break\r\n"
                    "--alt\r\n"
                    "Content-Type: multipart/related; boundary=\"rel\"; type=\"text/html\"\r\n"
                    "\r\n"
                    "--rel\r\n"
                    "Content-Type: text/html; charset=utf-8\r\n"
                    "\r\n"
                    "<p><img src=\"cid:logo@x\"></p>\r\n"
                    "--rel\r\n"
                    "Content-Type: image/png\r\n"
                    "Content-ID: <logo@x>\r\n"
                    "Content-Disposition: inline; filename=\"logo.png\"\r\n"
                    "Content-Transfer-Encoding: base64\r\n"
                    "\r\n"
                    "iVBORw0KGgo=\r\n"
                    "--rel--\r\n"
                    "--alt--\r\n"
                    "--outer\r\n"
                    "Content-Type: text/csv; name=\"data.csv\"\r\n"
                    "Content-Disposition: attachment\r\n"
                    "\r\n"
                    "a,b\r\n"
                    "--outer--\r\n"
                    "epilogue text\r\n";
  logbuf l;
  check_splits(msg, strlen(msg), &l);
  cr_assert_eq(l.nparts, 7);
  cr_assert_str_eq(l.end[1].type, "multipart/alternative");
  cr_assert_eq(l.end[2].parent, 1);
  cr_assert(l.end[2].in_alternative);
  cr_assert_str_eq(l.data[2], "Grüße, see the logo = attached\r\nsoftbreak",
                   "QP: escapes, trailing blanks, soft break");
  cr_assert_str_eq(l.end[3].type, "multipart/related");
  cr_assert(l.end[3].in_alternative);
  cr_assert_eq(l.end[4].parent, 3);
  cr_assert_eq(l.end[4].depth, 3);
  cr_assert_str_eq(l.end[5].content_id, "logo@x");
  cr_assert_eq(l.end[5].disp, MIME_DISP_INLINE);
  cr_assert_eq(l.dlen[5], 8);
  cr_assert(!memcmp(l.data[5], "\x89PNG\r\n\x1a\n", 8));
  cr_assert_str_eq(l.end[6].filename, "data.csv");
  cr_assert_str_eq(l.data[6], "a,b");
  for (unsigned i = 0; i < 7; i++)
    cr_assert(!l.end[i].truncated, "part %u", i);
  log_free(&l);
}

/* The device never wrote the close delimiter: the parts still end, with
 * their bytes, flagged. */
Test(mime, missing_final_boundary) {
  const char *msg = "Content-Type: multipart/mixed; boundary=b\r\n"
                    "\r\n"
                    "--b\r\n"
                    "Content-Type: application/pdf\r\n"
                    "Content-Transfer-Encoding: base64\r\n"
                    "\r\n"
                    "JVBERi0x\r\n"
                    "LjQK\r\n";
  logbuf l;
  check_splits(msg, strlen(msg), &l);
  cr_assert_eq(l.nparts, 2);
  cr_assert(l.end[0].truncated);
  cr_assert(l.end[1].truncated);
  cr_assert_str_eq(l.data[1], "%PDF-1.4\n");
  log_free(&l);
  /* Cut inside the part's headers. */
  const char *cut = "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: app";
  check_splits(cut, strlen(cut), &l);
  cr_assert_eq(l.nparts, 2);
  cr_assert_eq(l.dlen[1], 0);
  cr_assert(l.end[1].truncated);
  log_free(&l);
}

/* Lines that only look like boundaries are content; blanks after a
 * boundary are allowed; an outer boundary ends an unclosed inner part. */
Test(mime, boundary_lookalikes_and_outer_boundary) {
  const char *msg = "Content-Type: multipart/mixed; boundary=\"xy\"\r\n"
                    "\r\n"
                    "--xy  \r\n"
                    "\r\n"
                    "--xyz is not it\r\n"
                    "-- xy neither\r\n"
                    "--xy-- nor this\r\n"
                    "--xy\r\n"
                    "Content-Type: multipart/alternative; boundary=in\r\n"
                    "\r\n"
                    "--in\r\n"
                    "\r\n"
                    "inner, never closed\r\n"
                    "--xy--\r\n";
  logbuf l;
  check_splits(msg, strlen(msg), &l);
  cr_assert_eq(l.nparts, 4);
  cr_assert_str_eq(l.data[1], "--xyz is not it\r\n-- xy neither\r\n--xy-- nor this");
  cr_assert_str_eq(l.data[3], "inner, never closed");
  cr_assert(l.end[3].truncated, "its own multipart never closed");
  cr_assert(l.end[2].truncated);
  cr_assert(!l.end[0].truncated);
  log_free(&l);
}

/* Subjects as old devices and mailers write them. */
Test(mime, encoded_words_and_charsets) {
  char out[512];
  struct {
    const char *in, *want;
  } cases[] = {
      {"=?iso-8859-1?Q?Gr=FC=DFe_aus_K=F6ln?=", "Grüße aus Köln"},
      {"=?windows-1252?B?k1NjYW6UIIA=?=", "\xe2\x80\x9cScan\xe2\x80\x9d \xe2\x82\xac"},
      {"Scan =?UTF-8?B?w6Q=?= =?UTF-8?B?w7Y=?= done", "Scan äö done"},
      /* one character split across two words (as some encoders do) */
      {"=?UTF-8?B?4oI=?= =?UTF-8?B?rA==?=", "€"},
      {"=?ISO-2022-JP?B?GyRCJTklLSVjJXMbKEI=?=", "スキャン"},
      {"=?shift_jis?B?g1iDTIODg5M=?=", "スキャン"},
      {"=?utf-8*en?Q?language_tag?=", "language tag"},
      {"=?x-unknown?Q?kept?= as is", "=?x-unknown?Q?kept?= as is"},
      {"=?utf-8?Q?bad=FF?=", "=?utf-8?Q?bad=FF?="},
      {"not =?utf-8?Q?a word", "not =?utf-8?Q?a word"},
      /* raw 8-bit: Latin-1 from an old device, and valid UTF-8 */
      {"Gr\xfc\xdf"
       "e",
       "Grüße"},
      {"Gr\xc3\xbc\xc3\x9f"
       "e",
       "Grüße"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    mime_decode_words(cases[i].in, strlen(cases[i].in), out, sizeof out);
    cr_assert_str_eq(out, cases[i].want, "case %zu", i);
  }
  /* Bounded: cut at a character boundary, still valid UTF-8. */
  size_t n = mime_decode_words("=?UTF-8?B?w6TDpMOk?=", 20, out, 4);
  cr_assert_eq(n, 2);
  cr_assert_str_eq(out, "ä");
}

Test(mime, filename_parameters) {
  char out[256];
  struct {
    const char *v, *want;
  } cases[] = {
      {"attachment; filename=\"scan 01.pdf\"", "scan 01.pdf"},
      {"attachment; filename*=UTF-8''%E2%82%AC%20rate.pdf", "€ rate.pdf"},
      {"attachment; filename*=iso-8859-1'de'Gr%FC%DFe.pdf", "Grüße.pdf"},
      {"attachment; filename*0*=UTF-8''%C3%A4%C3%B6; filename*1=\"-part two\"; filename*2=.pdf",
       "äö-part two.pdf"},
      {"attachment; filename=\"=?UTF-8?B?w6Rydw==?=.pdf\"", "ärw.pdf"},
      {"attachment; filename=Bericht M\xe4rz.pdf", "Bericht März.pdf"},
      {"attachment; FILENAME = \"a\\\"b.pdf\" (comment)", "a\"b.pdf"},
      {"attachment; filename=\"plain.pdf\"; filename*=UTF-8''star.pdf", "star.pdf"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    cr_assert(mime_param(cases[i].v, strlen(cases[i].v), "filename", out, sizeof out), "case %zu",
              i);
    cr_assert_str_eq(out, cases[i].want, "case %zu", i);
  }
  cr_assert(!mime_param("inline", 6, "filename", out, sizeof out));
  mime_value_token(" Text/HTML ; charset=x", 22, out, sizeof out);
  cr_assert_str_eq(out, "text/html");
}

Test(mime, header_bounds_depth_and_defaults) {
  /* A header over MIME_FIELD_MAX is cut and flagged, and parsing goes on. */
  size_t big = MIME_FIELD_MAX + 5000;
  char *msg = malloc(big + 200);
  int n = sprintf(msg, "X-Long: ");
  memset(msg + n, 'a', big);
  n += (int)big;
  n += sprintf(msg + n, "\r\nSubject: after\r\n\r\nbody\r\n");
  logbuf l;
  run(msg, (size_t)n, 777, &l);
  cr_assert(strstr(l.s, " [cut]\nH0 Subject: after\n"), "%.200s", l.s + l.len - 200);
  cr_assert_str_eq(l.data[0], "body\r\n");
  log_free(&l);
  free(msg);
  /* Nesting past MIME_DEPTH_MAX: the deepest multipart is a leaf. */
  char deep[8192];
  size_t o = 0;
  for (int d = 0; d <= MIME_DEPTH_MAX; d++)
    o += (size_t)sprintf(deep + o, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n",
                         d, d);
  o += (size_t)sprintf(deep + o, "\r\nleaf\r\n");
  check_splits(deep, o, &l);
  cr_assert_eq(l.nparts, MIME_DEPTH_MAX + 1);
  cr_assert(!l.end[MIME_DEPTH_MAX].multipart, "too deep: a leaf");
  cr_assert(l.end[MIME_DEPTH_MAX - 1].multipart);
  log_free(&l);
  /* No Content-Type: text/plain; in a digest: message/rfc822. A body line
   * that is no header ends the headers. */
  const char *dg =
      "Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nFrom: x\r\n--d--\r\n";
  check_splits(dg, strlen(dg), &l);
  cr_assert_str_eq(l.end[1].type, "message/rfc822");
  log_free(&l);
  const char *nh = "Subject: s\r\nthis is no header\r\nmore\r\n";
  check_splits(nh, strlen(nh), &l);
  cr_assert_str_eq(l.data[0], "this is no header\r\nmore\r\n");
  cr_assert_str_eq(l.end[0].type, "text/plain");
  log_free(&l);
}

/* A line that ends CR CRLF: the first CR is the line's content, not the
 * start of the next line (found by fuzz_mime: the next header turned into
 * body). Both in a header block and where a boundary might start. */
Test(mime, cr_before_crlf_stays_on_its_line) {
  const char *msg = "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
                    "--X-Field: starts like a boundary\r\r\n"
                    "Content-Type: application/pdf\r\n\r\n"
                    "--x\r\r\nbody\r\n--b--\r\n";
  logbuf l;
  check_splits(msg, strlen(msg), &l);
  cr_assert_str_eq(l.end[1].type, "application/pdf", "%s", l.s);
  cr_assert(strstr(l.s, "H1 --X-Field: starts like a boundary\r\n"), "%s", l.s);
  cr_assert_str_eq(l.data[1], "--x\r\r\nbody");
  log_free(&l);
}

Test(mime, decoder_edge_cases) {
  mime_decoder d;
  char out[256];
  mime_decoder_init(&d, MIME_CTE_QP);
  const char *qp = "a=3Db  \r\nc=\r\nd=ZZ=4";
  size_t o = mime_decode(&d, qp, strlen(qp), out);
  o += mime_decoder_finish(&d, out + o, sizeof out - o);
  out[o] = '\0';
  cr_assert_str_eq(out, "a=b\r\ncd=ZZ=4");
  mime_decoder_init(&d, MIME_CTE_BASE64);
  const char *b = "QUJD\r\nRA=\r\n=RUY=";
  o = mime_decode(&d, b, strlen(b), out);
  o += mime_decoder_finish(&d, out + o, sizeof out - o);
  cr_assert_eq(o, 4, "stops at the padding, as Python does");
  cr_assert(!memcmp(out, "ABCD", 4));
  mime_decoder_init(&d, MIME_CTE_BASE64);
  o = mime_decode(&d, "QUJDRA", 6, out); /* unpadded */
  o += mime_decoder_finish(&d, out + o, sizeof out - o);
  cr_assert_eq(o, 4);
}

Test(mime, address_lists) {
  mime_addr a[8];
  const char *v = "\"Doe, Jane\" <jane@example.com>, bob@example.org (Bob B), "
                  "=?utf-8?Q?J=C3=B6rg?= <joerg@example.de>, Team: x@t.example, "
                  "<y@t.example>;, undisclosed-recipients:;, "
                  "\"quoted local\"@example.net, <@route.example:z@example.com>";
  size_t n = mime_addr_list(v, strlen(v), a, 8);
  cr_assert_eq(n, 7);
  cr_assert_str_eq(a[0].addr, "jane@example.com");
  cr_assert_str_eq(a[0].name, "Doe, Jane");
  cr_assert_str_eq(a[1].addr, "bob@example.org");
  cr_assert_str_eq(a[1].name, "Bob B");
  cr_assert_str_eq(a[2].addr, "joerg@example.de");
  cr_assert_str_eq(a[2].name, "Jörg");
  cr_assert_str_eq(a[3].addr, "x@t.example");
  cr_assert_str_eq(a[4].addr, "y@t.example");
  cr_assert_str_eq(a[5].addr, "\"quoted local\"@example.net");
  cr_assert_str_eq(a[6].addr, "z@example.com");
  cr_assert_eq(mime_addr_list(v, strlen(v), a, 2), 7, "the count says some were dropped");
}

Test(mime, utf8_checks) {
  cr_assert(mime_is_utf8("a\xc3\xa4\xe2\x82\xac\xf0\x9f\x98\x80", 10));
  cr_assert(!mime_is_utf8("\xc0\xaf", 2), "overlong");
  cr_assert(!mime_is_utf8("\xed\xa0\x80", 3), "surrogate");
  cr_assert(!mime_is_utf8("\xe2\x82", 2), "cut");
  char out[16];
  cr_assert_eq(mime_to_utf8("x-no-such-charset", "a", 1, out, sizeof out), -1);
  cr_assert_eq(mime_to_utf8("iso-8859-15", "\xa4", 1, out, sizeof out), 3);
  cr_assert_str_eq(out, "€");
}

/* Long UTF-8 text is converted in whole characters: a raw UTF-8 subject
 * longer than one conversion slice, encoded-words whose decoded bytes
 * overflow one batch with a character across the edge, and a field cut
 * inside a character all stay UTF-8 (never read as Windows-1252). */
Test(mime, long_utf8_stays_utf8_across_slices) {
  static char in[8192], out[16384], want[8192];
  /* raw UTF-8: 'a' then "ü" x 400 = 801 bytes, a boundary at 600 inside "ü" */
  size_t o = 0;
  in[o++] = 'a';
  for (int i = 0; i < 400; i++) {
    in[o++] = (char)0xc3;
    in[o++] = (char)0xbc;
  }
  in[o] = '\0';
  mime_decode_words(in, o, out, sizeof out);
  cr_assert_str_eq(out, in, "raw UTF-8 over a slice boundary");
  /* encoded-words: 600 x "€" (1800 bytes) in words of 45 bytes each
   * (15 characters), a word boundary inside a character every other word */
  o = 0;
  size_t w = 0;
  static const unsigned char euro[3] = {0xe2, 0x82, 0xac};
  unsigned char raw[1800];
  for (int i = 0; i < 600; i++)
    memcpy(raw + i * 3, euro, 3);
  for (size_t i = 0; i < sizeof raw; i += 44) {
    size_t n = sizeof raw - i < 44 ? sizeof raw - i : 44; /* 44: cuts characters */
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    o += (size_t)sprintf(in + o, "%s=?UTF-8?B?", i ? " " : "");
    for (size_t k = 0; k < n; k += 3) {
      unsigned v = (unsigned)raw[i + k] << 16 | (k + 1 < n ? (unsigned)raw[i + k + 1] << 8 : 0) |
                   (k + 2 < n ? raw[i + k + 2] : 0);
      in[o++] = b64[v >> 18 & 63];
      in[o++] = b64[v >> 12 & 63];
      in[o++] = k + 1 < n ? b64[v >> 6 & 63] : '=';
      in[o++] = k + 2 < n ? b64[v & 63] : '=';
    }
    o += (size_t)sprintf(in + o, "?=");
    w++;
  }
  memcpy(want, raw, sizeof raw);
  want[sizeof raw] = '\0';
  mime_decode_words(in, o, out, sizeof out);
  cr_assert_str_eq(out, want, "%zu words over the 1 KiB batch", w);
  /* a field cut inside a character: the whole characters before it kept */
  o = 0;
  for (int i = 0; i < 300; i++) {
    in[o++] = (char)0xc3;
    in[o++] = (char)0xa9;
  }
  in[o++] = (char)0xc3; /* cut here */
  mime_decode_words(in, o, out, sizeof out);
  cr_assert_eq(strlen(out), 600);
  cr_assert(mime_is_utf8(out, strlen(out)));
  cr_assert(!memcmp(out, in, 600), "read as Windows-1252");
}
