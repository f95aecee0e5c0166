/* http1.c - the HTTP/1.1 codec (see http1.h).
 *
 * The response parser is a push state machine fed straight from reads: it
 * keeps one line at a time (status, header, chunk size, trailer), the
 * headers of the final response for lookups, and the decoded body, each in
 * a buffer whose size is fixed when it starts. Every byte it consumes is
 * counted against the response's bound, so chunk framing, interim
 * responses and trailers cannot make it hold more than max bytes.
 */
#include "smtp-tls-proxy/http1.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef STP_VERSION
#define STP_VERSION "0"
#endif

#define HTTP1_HEAD_MAX (32 * 1024) /* the stored headers of one response */

enum {
  S_STATUS,
  S_HEADER,
  S_BODY_LEN,
  S_CHUNK_SIZE,
  S_CHUNK_DATA,
  S_CHUNK_CR,
  S_CHUNK_LF,
  S_TRAILER,
  S_BODY_EOF,
  S_DONE
};

static bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

static bool tchar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) ||
         (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool span_ieq(const char *p, size_t n, const char *s) {
  return strlen(s) == n && !stp_ascii_ncasecmp(p, s, n);
}

/* ---- request heads ----------------------------------------------------- */

/* "METHOD SP target SP HTTP/1.x" */
static int parse_request_line(const char *p, size_t n, http1_request *out) {
  size_t i = 0;
  while (i < n && tchar(p[i]))
    i++;
  if (i == 0 || i >= n || p[i] != ' ')
    return STP_ESYNTAX;
  out->method = p;
  out->method_len = i;
  size_t t = ++i;
  while (i < n && (unsigned char)p[i] > 0x20 && (unsigned char)p[i] < 0x7f)
    i++;
  if (i == t || i >= n || p[i] != ' ')
    return STP_ESYNTAX;
  out->target = p + t;
  out->target_len = i - t;
  i++;
  if (n - i != 8 || memcmp(p + i, "HTTP/1.", 7) != 0 || !is_digit(p[i + 7]))
    return STP_ESYNTAX;
  out->minor = p[i + 7] == '0' ? 0 : 1; /* any 1.x above 1.1 is served as 1.1 */
  return STP_OK;
}

int http1_parse_request(const char *buf, size_t len, size_t max, http1_request *out) {
  size_t lim = len < max ? len : max;
  size_t line = 0; /* start of the current line */
  bool have_rl = false;
  memset(out, 0, sizeof *out);
  for (size_t i = 0; i < lim; i++) {
    unsigned char c = (unsigned char)buf[i];
    if (c == '\r') {
      if (i + 1 < lim && buf[i + 1] != '\n')
        return STP_ESYNTAX; /* a bare CR is never a line end */
      continue;
    }
    if (c != '\n') {
      if ((c < 0x20 && c != '\t') || c == 0x7f)
        return STP_ESYNTAX;
      continue;
    }
    size_t end = (i > line && buf[i - 1] == '\r') ? i - 1 : i;
    if (end == line) { /* an empty line */
      if (have_rl) {
        out->head_len = i + 1;
        return STP_OK;
      }
    } else if (!have_rl) {
      /* Judge the request line as soon as it is whole: garbage gets its
       * 400 now rather than after the whole head or the timeout. */
      if (parse_request_line(buf + line, end - line, out) != STP_OK)
        return STP_ESYNTAX;
      have_rl = true;
    }
    line = i + 1;
  }
  return len >= max ? STP_ETOOLONG : STP_EAGAIN;
}

/* ---- requests ---------------------------------------------------------- */

static bool is_token(const char *s) {
  if (!*s)
    return false;
  for (; *s; s++)
    if (!tchar(*s))
      return false;
  return true;
}

static bool value_ok(const char *s) {
  for (; *s; s++)
    if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f)
      return false;
  return true;
}

static bool codec_owns(const char *name) {
  static const char *const own[] = {"host", "content-length", "transfer-encoding", "connection"};
  for (size_t i = 0; i < sizeof own / sizeof *own; i++)
    if (!stp_ascii_casecmp(name, own[i]))
      return true;
  return false;
}

static int check_headers(const char *method, const http1_header *h, size_t n, bool *has_ua) {
  *has_ua = false;
  if (!is_token(method))
    return STP_EINVAL;
  for (size_t i = 0; i < n; i++) {
    if (!is_token(h[i].name) || !value_ok(h[i].value) || codec_owns(h[i].name))
      return STP_EINVAL;
    if (!stp_ascii_casecmp(h[i].name, "user-agent"))
      *has_ua = true;
  }
  return STP_OK;
}

int http1_write_request(stp_buf *b, const char *method, const stp_url *u, const http1_header *h,
                        size_t n, int64_t content_length, bool keep_alive) {
  bool has_ua;
  char auth[300];
  int rc = check_headers(method, h, n, &has_ua);
  if (rc < 0)
    return rc;
  if (stp_url_authority(u, auth, sizeof auth) < 0)
    return STP_EFULL;
  size_t mark = b->len;
  rc = stp_buf_appendf(b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, u->path, auth);
  if (rc == 0 && !has_ua)
    rc = stp_buf_appendf(b, "User-Agent: smtp-tls-proxy/%s\r\n", STP_VERSION);
  for (size_t i = 0; rc == 0 && i < n; i++)
    rc = stp_buf_appendf(b, "%s: %s\r\n", h[i].name, h[i].value);
  if (rc == 0 && content_length >= 0)
    rc = stp_buf_appendf(b, "Content-Length: %lld\r\n", (long long)content_length);
  if (rc == 0 && !keep_alive)
    rc = stp_buf_appendf(b, "Connection: close\r\n");
  if (rc == 0)
    rc = stp_buf_append(b, "\r\n", 2);
  if (rc < 0) {
    stp_cleanse(b->data + mark, b->len - mark); /* headers may carry a bearer token */
    b->len = mark;
  }
  return rc;
}

/* ---- responses: setup -------------------------------------------------- */

void http1_response_init(http1_response *r, size_t max, bool no_body) {
  memset(r, 0, sizeof *r);
  r->max = max ? max : HTTP1_RESPONSE_MAX;
  r->no_body = no_body;
  r->state = S_STATUS;
  stp_buf_init(&r->line, HTTP1_LINE_MAX);
  stp_buf_init(&r->head, r->max < HTTP1_HEAD_MAX ? r->max : HTTP1_HEAD_MAX);
  r->body_keep = SIZE_MAX;
}

void http1_response_skip(http1_response *r, size_t keep, uint64_t skip_max,
                         void (*tap)(void *arg, const char *p, size_t n), void *tap_arg) {
  r->body_keep = keep < r->max ? keep : r->max;
  r->skip_max = skip_max;
  r->tap = tap;
  r->tap_arg = tap_arg;
}

static void wipe_buf(stp_buf *b) {
  if (b->data)
    stp_cleanse(b->data, b->cap);
  stp_buf_free(b);
}

void http1_response_free(http1_response *r) {
  wipe_buf(&r->line);
  wipe_buf(&r->head);
  if (r->body)
    stp_cleanse(r->body, r->body_cap + 1);
  free(r->body);
  r->body = NULL;
  r->body_len = r->body_cap = 0;
}

/* ---- responses: lines -------------------------------------------------- */

/* Move bytes into r->line until a CRLF: 1 with the line (without CRLF) in
 * r->line, 0 when p ran out, <0 for a bare CR or LF or an overlong line. */
static int take_line(http1_response *r, const char *p, size_t n, size_t *i) {
  while (*i < n) {
    char c = p[(*i)++];
    if (++r->seen > r->max)
      return STP_ETOOLONG;
    bool after_cr = r->line.len && r->line.data[r->line.len - 1] == '\r';
    if (c == '\n') {
      if (!after_cr)
        return STP_ESYNTAX;
      r->line.len--;
      return 1;
    }
    if (after_cr)
      return STP_ESYNTAX;
    if (stp_buf_append(&r->line, &c, 1) < 0)
      return STP_ETOOLONG;
  }
  return 0;
}

/* "HTTP/1.x NNN[ reason]" */
static int parse_status(http1_response *r, const char *p, size_t n) {
  if (n < 12 || memcmp(p, "HTTP/1.", 7) || !is_digit(p[7]) || p[8] != ' ' || !is_digit(p[9]) ||
      !is_digit(p[10]) || !is_digit(p[11]) || (n > 12 && p[12] != ' '))
    return STP_ESYNTAX;
  for (size_t i = 12; i < n; i++)
    if (((unsigned char)p[i] < 0x20 && p[i] != '\t') || p[i] == 0x7f)
      return STP_ESYNTAX;
  r->minor = p[7] - '0';
  r->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
  return r->status >= 100 && r->status != 101 ? STP_OK : STP_ESYNTAX;
}

static int parse_length(http1_response *r, const char *v, size_t n) {
  uint64_t cl = 0;
  if (r->has_len || n == 0 || n > 12)
    return STP_ESYNTAX;
  for (size_t i = 0; i < n; i++) {
    if (!is_digit(v[i]))
      return STP_ESYNTAX;
    cl = cl * 10 + (uint64_t)(v[i] - '0');
  }
  r->has_len = true;
  r->content_len = cl;
  return STP_OK;
}

/* Call fn on each comma-separated element of a list value, trimmed. */
static int each_element(http1_response *r, const char *v, size_t n,
                        int (*fn)(http1_response *, const char *, size_t)) {
  size_t i = 0;
  while (i <= n) {
    size_t j = i;
    while (j < n && v[j] != ',')
      j++;
    size_t a = i, e = j;
    while (a < e && (v[a] == ' ' || v[a] == '\t'))
      a++;
    while (e > a && (v[e - 1] == ' ' || v[e - 1] == '\t'))
      e--;
    int rc = fn(r, v + a, e - a);
    if (rc < 0)
      return rc;
    i = j + 1;
  }
  return STP_OK;
}

/* Transfer-Encoding: only chunked (once, last) and identity are known. */
static int coding(http1_response *r, const char *v, size_t n) {
  if (r->chunked)
    return STP_ESYNTAX; /* nothing may follow chunked */
  if (span_ieq(v, n, "chunked"))
    r->chunked = true;
  else if (!span_ieq(v, n, "identity"))
    return STP_ESYNTAX;
  return STP_OK;
}

static int conn_option(http1_response *r, const char *v, size_t n) {
  if (span_ieq(v, n, "close"))
    r->conn_close = true;
  else if (span_ieq(v, n, "keep-alive"))
    r->conn_keep = true;
  return STP_OK;
}

/* One header line; a trailer (trailer set) is only checked. */
static int parse_header(http1_response *r, const char *p, size_t n, bool trailer) {
  const char *colon = memchr(p, ':', n);
  if (!colon || colon == p)
    return STP_ESYNTAX;
  for (const char *q = p; q < colon; q++)
    if (!tchar(*q))
      return STP_ESYNTAX;
  const char *v = colon + 1, *ve = p + n;
  while (v < ve && (*v == ' ' || *v == '\t'))
    v++;
  while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
    ve--;
  for (const char *q = v; q < ve; q++)
    if (((unsigned char)*q < 0x20 && *q != '\t') || *q == 0x7f)
      return STP_ESYNTAX;
  size_t klen = (size_t)(colon - p), vlen = (size_t)(ve - v);
  int rc = STP_OK;
  if (trailer)
    return STP_OK;
  if (span_ieq(p, klen, "content-length"))
    rc = parse_length(r, v, vlen);
  else if (span_ieq(p, klen, "transfer-encoding"))
    rc = each_element(r, v, vlen, coding);
  else if (span_ieq(p, klen, "connection"))
    rc = each_element(r, v, vlen, conn_option);
  if (rc == 0 && r->status >= 200 &&
      (stp_buf_append(&r->head, p, klen + 1) < 0 || stp_buf_append(&r->head, v, vlen) < 0 ||
       stp_buf_append(&r->head, "\n", 1) < 0))
    rc = STP_ETOOLONG;
  return rc;
}

/* ---- responses: the body ----------------------------------------------- */

static int body_start(http1_response *r) {
  if (r->chunked && r->has_len)
    return STP_ESYNTAX;
  bool close_delimited = !r->chunked && !r->has_len;
  if (r->no_body || r->status == 204 || r->status == 304) {
    close_delimited = r->chunked = false;
    r->has_len = true;
    r->content_len = 0;
  }
  size_t budget = r->max - r->seen;
  if (budget > r->body_keep)
    budget = r->body_keep;
  if (r->has_len && r->content_len > budget && r->content_len - budget > r->skip_max)
    return STP_ETOOLONG;
  r->body_cap = r->has_len && r->content_len < budget ? (size_t)r->content_len : budget;
  r->body = stp_xmalloc(r->body_cap + 1);
  r->body[0] = '\0';
  r->keep_alive = !close_delimited && !r->conn_close && (r->minor >= 1 || r->conn_keep);
  r->left = r->content_len;
  if (r->chunked)
    r->state = S_CHUNK_SIZE;
  else if (close_delimited)
    r->state = S_BODY_EOF;
  else
    r->state = r->left ? S_BODY_LEN : S_DONE;
  return STP_OK;
}

/* After the empty line: an interim response starts over, else the body. */
static int head_done(http1_response *r) {
  if (r->status >= 200)
    return body_start(r);
  r->chunked = r->has_len = r->conn_close = r->conn_keep = false;
  r->content_len = 0;
  r->state = S_STATUS;
  return STP_OK;
}

static int chunk_size(http1_response *r, const char *p, size_t n) {
  uint64_t sz = 0;
  size_t i = 0;
  for (; i < n && p[i] != ';' && p[i] != ' ' && p[i] != '\t'; i++) {
    char c = stp_ascii_lower(p[i]);
    int d = is_digit(c) ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (d < 0)
      return STP_ESYNTAX;
    if (sz > (UINT64_C(1) << 56))
      return STP_ETOOLONG;
    sz = sz * 16 + (uint64_t)d;
  }
  if (i == 0)
    return STP_ESYNTAX;
  if (sz > (r->max - r->seen) + (r->skip_max - r->skipped))
    return STP_ETOOLONG;
  r->left = sz;
  r->state = sz ? S_CHUNK_DATA : S_TRAILER;
  return STP_OK;
}

/* Copy body bytes (Content-Length, a chunk, or up to the close). */
static int take_body(http1_response *r, const char *p, size_t n, size_t *i) {
  size_t k = n - *i;
  if (r->state != S_BODY_EOF && k > r->left)
    k = (size_t)r->left;
  size_t keep = k;
  if (keep > r->body_cap - r->body_len)
    keep = r->body_cap - r->body_len; /* the rest is dropped, within skip_max */
  if (keep > r->max - r->seen || k - keep > r->skip_max - r->skipped)
    return STP_ETOOLONG;
  if (r->tap && k)
    r->tap(r->tap_arg, p + *i, k);
  memcpy(r->body + r->body_len, p + *i, keep);
  r->body_len += keep;
  r->body[r->body_len] = '\0';
  r->seen += keep;
  r->skipped += k - keep;
  r->body_cut = r->body_cut || k > keep;
  *i += k;
  if (r->state != S_BODY_EOF) {
    r->left -= k;
    if (!r->left)
      r->state = r->state == S_BODY_LEN ? S_DONE : S_CHUNK_CR;
  }
  return STP_OK;
}

static int take_crlf(http1_response *r, char c) {
  if (++r->seen > r->max)
    return STP_ETOOLONG;
  if (c != (r->state == S_CHUNK_CR ? '\r' : '\n'))
    return STP_ESYNTAX;
  r->state = r->state == S_CHUNK_CR ? S_CHUNK_LF : S_CHUNK_SIZE;
  return STP_OK;
}

/* A complete line in r->line, by state. */
static int on_line(http1_response *r) {
  const char *p = r->line.data;
  size_t n = r->line.len;
  r->line.len = 0;
  switch (r->state) {
  case S_STATUS:
    if (parse_status(r, p, n) < 0)
      return STP_ESYNTAX;
    r->state = S_HEADER;
    return STP_OK;
  case S_HEADER:
    return n ? parse_header(r, p, n, false) : head_done(r);
  case S_CHUNK_SIZE:
    return chunk_size(r, p, n);
  default: /* S_TRAILER: checked like a header, then dropped */
    if (n)
      return parse_header(r, p, n, true);
    r->state = S_DONE;
    return STP_OK;
  }
}

static int step(http1_response *r, const char *p, size_t n, size_t *i) {
  switch (r->state) {
  case S_BODY_LEN:
  case S_CHUNK_DATA:
  case S_BODY_EOF:
    return take_body(r, p, n, i);
  case S_CHUNK_CR:
  case S_CHUNK_LF:
    return take_crlf(r, p[(*i)++]);
  default: {
    int rc = take_line(r, p, n, i);
    return rc <= 0 ? rc : on_line(r);
  }
  }
}

int http1_response_feed(http1_response *r, const char *p, size_t n, size_t *used) {
  size_t i = 0;
  *used = 0;
  if (r->state < 0)
    return r->state;
  while (r->state != S_DONE && i < n) {
    int rc = step(r, p, n, &i);
    if (rc < 0) {
      r->state = rc;
      return rc;
    }
  }
  *used = i;
  return r->state == S_DONE ? 1 : 0;
}

int http1_response_eof(http1_response *r) {
  if (r->state == S_BODY_EOF)
    r->state = S_DONE;
  if (r->state == S_DONE)
    return 1;
  if (r->state >= 0)
    r->state = STP_ESYNTAX;
  return r->state;
}

const char *http1_response_header(const http1_response *r, const char *name, size_t *len) {
  size_t nl = strlen(name);
  const char *p = r->head.data, *end = p + r->head.len;
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    const char *colon = memchr(p, ':', (size_t)(eol - p));
    if ((size_t)(colon - p) == nl && !stp_ascii_ncasecmp(p, name, nl)) {
      *len = (size_t)(eol - colon - 1);
      return colon + 1;
    }
    p = eol + 1;
  }
  *len = 0;
  return NULL;
}
