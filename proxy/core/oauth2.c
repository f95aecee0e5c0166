/* oauth2.c - token endpoint requests and responses, pure (see oauth2.h).
 *
 * The JSON scanner is a small recursive-descent reader written for one job:
 * the flat object a token endpoint returns. It validates the whole document
 * (grammar, UTF-8, escapes, nesting bound) before anything is believed, and
 * keeps only the six string fields and expires_in that OAuth2 defines.
 */
#include "smtp-tls-proxy/oauth2.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef STP_VERSION
#define STP_VERSION "0"
#endif

#define JSON_MAX_DEPTH 16

/* ---- URL -------------------------------------------------------------- */

static bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
static bool is_alnum(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

int oauth2_url_parse(const char *url, oauth2_url *out) {
  memset(out, 0, sizeof *out);
  const char *p;
  if (!stp_ascii_ncasecmp(url, "https://", 8)) {
    out->https = true;
    out->port = 443;
    p = url + 8;
  } else if (!stp_ascii_ncasecmp(url, "http://", 7)) {
    out->port = 80;
    p = url + 7;
  } else {
    return STP_ESYNTAX;
  }
  for (const char *q = url; *q; q++)
    if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f || *q == '#')
      return STP_ESYNTAX;
  size_t alen = strcspn(p, "/?");
  const char *aend = p + alen;
  if (memchr(p, '@', alen))
    return STP_ESYNTAX; /* no credentials in URLs */
  const char *hend;
  if (*p == '[') {
    const char *rb = memchr(p, ']', alen);
    if (!rb || rb == p + 1)
      return STP_ESYNTAX;
    for (const char *q = p + 1; q < rb; q++)
      if (!(is_alnum(*q) || *q == ':' || *q == '.'))
        return STP_ESYNTAX;
    if ((size_t)(rb - p - 1) >= sizeof out->host)
      return STP_ETOOLONG;
    memcpy(out->host, p + 1, (size_t)(rb - p - 1));
    out->host_is_v6 = true;
    hend = rb + 1;
    if (hend != aend && *hend != ':')
      return STP_ESYNTAX;
  } else {
    hend = memchr(p, ':', alen);
    if (!hend)
      hend = aend;
    if (hend == p || (size_t)(hend - p) >= sizeof out->host)
      return hend == p ? STP_ESYNTAX : STP_ETOOLONG;
    for (const char *q = p; q < hend; q++)
      if (!(is_alnum(*q) || *q == '.' || *q == '-' || *q == '_'))
        return STP_ESYNTAX;
    if (*p == '-' || *p == '.')
      return STP_ESYNTAX;
    memcpy(out->host, p, (size_t)(hend - p));
  }
  if (hend < aend) { /* ":port" */
    const char *q = hend + 1;
    unsigned long port = 0;
    if (q == aend)
      return STP_ESYNTAX;
    for (; q < aend; q++) {
      if (!is_digit(*q))
        return STP_ESYNTAX;
      port = port * 10 + (unsigned long)(*q - '0');
      if (port > 65535)
        return STP_ESYNTAX;
    }
    if (port == 0)
      return STP_ESYNTAX;
    out->port = (uint16_t)port;
  }
  int n =
      snprintf(out->path, sizeof out->path, "%s%s", *aend == '?' ? "/" : "", *aend ? aend : "/");
  if (n < 0 || (size_t)n >= sizeof out->path)
    return STP_ETOOLONG;
  return STP_OK;
}

/* ---- form and request --------------------------------------------------- */

static int form_escape(stp_buf *b, const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  for (; *s; s++) {
    char c = *s;
    int rc;
    if (is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      rc = stp_buf_append(b, &c, 1);
    } else if (c == ' ') {
      rc = stp_buf_append(b, "+", 1);
    } else {
      unsigned char u = (unsigned char)c;
      char e[3] = {'%', hex[u >> 4], hex[u & 15]};
      rc = stp_buf_append(b, e, 3);
    }
    if (rc < 0)
      return rc;
  }
  return STP_OK;
}

int oauth2_form_add(stp_buf *b, const char *key, const char *val) {
  size_t mark = b->len;
  int rc = b->len ? stp_buf_append(b, "&", 1) : STP_OK;
  if (rc == 0)
    rc = form_escape(b, key);
  if (rc == 0)
    rc = stp_buf_append(b, "=", 1);
  if (rc == 0)
    rc = form_escape(b, val);
  if (rc < 0) {
    stp_cleanse(b->data + mark, b->len - mark);
    b->len = mark;
  }
  return rc;
}

int oauth2_build_request(stp_buf *b, const oauth2_url *u, const char *form, size_t formlen) {
  char port[8] = "";
  if (u->port != (u->https ? 443 : 80))
    snprintf(port, sizeof port, ":%u", u->port);
  int rc = stp_buf_appendf(b,
                           "POST %s HTTP/1.1\r\n"
                           "Host: %s%s%s%s\r\n"
                           "User-Agent: smtp-tls-proxy/%s\r\n"
                           "Accept: application/json\r\n"
                           "Content-Type: application/x-www-form-urlencoded\r\n"
                           "Content-Length: %zu\r\n"
                           "Connection: close\r\n\r\n",
                           u->path, u->host_is_v6 ? "[" : "", u->host, u->host_is_v6 ? "]" : "",
                           port, STP_VERSION, formlen);
  if (rc == 0)
    rc = stp_buf_append(b, form, formlen);
  return rc;
}

/* ---- HTTP response ------------------------------------------------------ */

static const char *find_crlf(const char *p, const char *end) {
  for (; p + 1 < end; p++)
    if (p[0] == '\r' && p[1] == '\n')
      return p;
  return NULL;
}

/* "HTTP/1.x NNN reason" */
static int parse_status_line(const char *p, size_t n, int *status) {
  if (n < 12 || memcmp(p, "HTTP/1.", 7) || !is_digit(p[7]) || p[8] != ' ' || !is_digit(p[9]) ||
      !is_digit(p[10]) || !is_digit(p[11]) || (n > 12 && p[12] != ' '))
    return STP_ESYNTAX;
  *status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
  return *status >= 100 ? STP_OK : STP_ESYNTAX;
}

static bool tchar(char c) {
  return is_alnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

typedef struct http_head {
  int status;
  bool chunked;
  bool has_len;
  uint64_t content_len;
  size_t body_off;
} http_head;

/* Headers of one response starting at buf[off]: 1 complete, 0 need more. */
static int parse_head(const char *buf, size_t len, size_t off, http_head *h) {
  const char *p = buf + off, *end = buf + len;
  memset(h, 0, sizeof *h);
  const char *eol = find_crlf(p, end);
  if (!eol)
    return 0;
  if (parse_status_line(p, (size_t)(eol - p), &h->status) < 0)
    return STP_ESYNTAX;
  p = eol + 2;
  for (;;) {
    eol = find_crlf(p, end);
    if (!eol)
      return 0;
    if (eol == p) {
      h->body_off = (size_t)(eol + 2 - buf);
      return 1;
    }
    const char *colon = memchr(p, ':', (size_t)(eol - p));
    if (!colon || colon == p)
      return STP_ESYNTAX;
    for (const char *q = p; q < colon; q++)
      if (!tchar(*q))
        return STP_ESYNTAX;
    const char *v = colon + 1, *ve = eol;
    while (v < ve && (*v == ' ' || *v == '\t'))
      v++;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
      ve--;
    for (const char *q = v; q < ve; q++)
      if ((unsigned char)*q < 0x20 && *q != '\t')
        return STP_ESYNTAX;
    size_t klen = (size_t)(colon - p), vlen = (size_t)(ve - v);
    if (klen == 14 && !stp_ascii_ncasecmp(p, "content-length", 14)) {
      uint64_t cl = 0;
      if (h->has_len || vlen == 0 || vlen > 12)
        return STP_ESYNTAX;
      for (size_t i = 0; i < vlen; i++) {
        if (!is_digit(v[i]))
          return STP_ESYNTAX;
        cl = cl * 10 + (uint64_t)(v[i] - '0');
      }
      h->has_len = true;
      h->content_len = cl;
    } else if (klen == 17 && !stp_ascii_ncasecmp(p, "transfer-encoding", 17)) {
      /* Only "chunked" (possibly after identity) is understood. */
      if (vlen >= 7 && !stp_ascii_ncasecmp(ve - 7, "chunked", 7) &&
          (vlen == 7 || ve[-8] == ' ' || ve[-8] == ','))
        h->chunked = true;
      else if (!(vlen == 8 && !stp_ascii_ncasecmp(v, "identity", 8)))
        return STP_ESYNTAX;
    }
    p = eol + 2;
  }
}

/* Decode a chunked body: 1 complete, 0 need more, <0 malformed. */
static int dechunk(const char *p, const char *end, stp_buf *out) {
  for (;;) {
    const char *eol = find_crlf(p, end);
    if (!eol)
      return (size_t)(end - p) > 64 ? STP_ESYNTAX : 0;
    uint64_t sz = 0;
    const char *q = p;
    for (; q < eol && *q != ';' && *q != ' ' && *q != '\t'; q++) {
      char c = stp_ascii_lower(*q);
      int d = is_digit(c) ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
      if (d < 0 || sz > OAUTH2_RESPONSE_MAX)
        return STP_ESYNTAX;
      sz = sz * 16 + (uint64_t)d;
    }
    if (q == p)
      return STP_ESYNTAX;
    p = eol + 2;
    if (sz == 0) { /* trailers until an empty line */
      for (;;) {
        eol = find_crlf(p, end);
        if (!eol)
          return 0;
        if (eol == p)
          return 1;
        p = eol + 2;
      }
    }
    if (sz > OAUTH2_RESPONSE_MAX)
      return STP_ETOOLONG;
    if ((uint64_t)(end - p) < sz + 2)
      return 0;
    if (stp_buf_append(out, p, (size_t)sz) < 0)
      return STP_ETOOLONG;
    p += sz;
    if (p[0] != '\r' || p[1] != '\n')
      return STP_ESYNTAX;
    p += 2;
  }
}

void oauth2_http_resp_free(oauth2_http_resp *r) {
  if (r->body)
    stp_cleanse(r->body, r->body_len);
  free(r->body);
  r->body = NULL;
  r->body_len = 0;
}

int oauth2_http_parse(const char *buf, size_t len, bool eof, oauth2_http_resp *out) {
  memset(out, 0, sizeof *out);
  if (len > OAUTH2_RESPONSE_MAX)
    return STP_ETOOLONG;
  http_head h;
  size_t off = 0;
  for (;;) {
    int r = parse_head(buf, len, off, &h);
    if (r < 0)
      return r;
    if (r == 0)
      return eof ? STP_ESYNTAX : 0;
    if (h.status >= 200)
      break;
    off = h.body_off; /* 1xx interim response: the real one follows */
  }
  const char *body = buf + h.body_off, *end = buf + len;
  size_t avail = (size_t)(end - body);
  stp_buf b;
  if (h.status == 204 || h.status == 304) {
    avail = 0;
    h.chunked = false;
    h.has_len = true;
    h.content_len = 0;
  }
  if (h.chunked) {
    stp_buf_init(&b, OAUTH2_RESPONSE_MAX + 1);
    int r = dechunk(body, end, &b);
    if (r <= 0) {
      stp_cleanse(b.data, b.len);
      stp_buf_free(&b);
      return r < 0 ? r : eof ? STP_ESYNTAX : 0;
    }
  } else if (h.has_len) {
    if (h.content_len > OAUTH2_RESPONSE_MAX)
      return STP_ETOOLONG;
    if (avail < h.content_len)
      return eof ? STP_ESYNTAX : 0;
    stp_buf_init(&b, (size_t)h.content_len + 1);
    stp_buf_append(&b, body, (size_t)h.content_len);
  } else {
    if (!eof)
      return 0;
    stp_buf_init(&b, avail + 1);
    stp_buf_append(&b, body, avail);
  }
  b.data[b.len] = '\0';
  out->status = h.status;
  out->body = b.data;
  out->body_len = b.len;
  return 1;
}

/* ---- JSON ---------------------------------------------------------------- */

typedef struct jp {
  const char *p, *end;
} jp;

static void skip_ws(jp *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
    j->p++;
}

static int hexval(char c) {
  c = stp_ascii_lower(c);
  return is_digit(c) ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

static int read_u4(jp *j, unsigned *out) {
  if (j->end - j->p < 4)
    return STP_ESYNTAX;
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    int d = hexval(j->p[i]);
    if (d < 0)
      return STP_ESYNTAX;
    v = v * 16 + (unsigned)d;
  }
  j->p += 4;
  *out = v;
  return STP_OK;
}

/* Length of a valid UTF-8 sequence at p (first byte >= 0x80), or 0. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end) {
  size_t n;
  unsigned cp;
  if (p[0] >= 0xc2 && p[0] <= 0xdf) {
    n = 2;
    cp = p[0] & 0x1fu;
  } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
    n = 3;
    cp = p[0] & 0x0fu;
  } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
    n = 4;
    cp = p[0] & 0x07u;
  } else {
    return 0;
  }
  if ((size_t)(end - p) < n)
    return 0;
  for (size_t i = 1; i < n; i++) {
    if ((p[i] & 0xc0) != 0x80)
      return 0;
    cp = (cp << 6) | (p[i] & 0x3fu);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
      (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return n;
}

static int put_utf8(stp_buf *b, unsigned cp) {
  char u[4];
  size_t n;
  if (cp < 0x80) {
    u[0] = (char)cp;
    n = 1;
  } else if (cp < 0x800) {
    u[0] = (char)(0xc0 | (cp >> 6));
    u[1] = (char)(0x80 | (cp & 0x3f));
    n = 2;
  } else if (cp < 0x10000) {
    u[0] = (char)(0xe0 | (cp >> 12));
    u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    u[2] = (char)(0x80 | (cp & 0x3f));
    n = 3;
  } else {
    u[0] = (char)(0xf0 | (cp >> 18));
    u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    u[3] = (char)(0x80 | (cp & 0x3f));
    n = 4;
  }
  return stp_buf_append(b, u, n) < 0 ? STP_ETOOLONG : STP_OK;
}

/* A string at j->p ('"'). With b, the decoded bytes are appended (a NUL
 * code point is refused there); without, it is only validated. */
static int json_string(jp *j, stp_buf *b) {
  if (j->p >= j->end || *j->p != '"')
    return STP_ESYNTAX;
  j->p++;
  while (j->p < j->end) {
    unsigned char c = (unsigned char)*j->p;
    if (c == '"') {
      j->p++;
      return STP_OK;
    }
    if (c < 0x20)
      return STP_ESYNTAX;
    if (c >= 0x80) {
      size_t n = utf8_len((const unsigned char *)j->p, (const unsigned char *)j->end);
      if (!n)
        return STP_ESYNTAX;
      if (b && stp_buf_append(b, j->p, n) < 0)
        return STP_ETOOLONG;
      j->p += n;
      continue;
    }
    if (c != '\\') {
      if (b && stp_buf_append(b, j->p, 1) < 0)
        return STP_ETOOLONG;
      j->p++;
      continue;
    }
    if (++j->p >= j->end)
      return STP_ESYNTAX;
    char e = *j->p++;
    static const char esc_in[] = "\"\\/bfnrt", esc_out[] = "\"\\/\b\f\n\r\t";
    const char *hit = e ? strchr(esc_in, e) : NULL;
    if (hit) {
      if (b && stp_buf_append(b, &esc_out[hit - esc_in], 1) < 0)
        return STP_ETOOLONG;
      continue;
    }
    if (e != 'u')
      return STP_ESYNTAX;
    unsigned cp;
    if (read_u4(j, &cp) < 0)
      return STP_ESYNTAX;
    if (cp >= 0xdc00 && cp <= 0xdfff)
      return STP_ESYNTAX; /* a lone low surrogate */
    if (cp >= 0xd800 && cp <= 0xdbff) {
      unsigned lo;
      if (j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u')
        return STP_ESYNTAX;
      j->p += 2;
      if (read_u4(j, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
        return STP_ESYNTAX;
      cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    }
    if (b && cp == 0)
      return STP_ESYNTAX;
    if (b) {
      int rc = put_utf8(b, cp);
      if (rc < 0)
        return rc;
    }
  }
  return STP_ESYNTAX;
}

/* A number; *is_int and *v (when it is an integer that fits) are set. */
static int json_number(jp *j, bool *is_int, int64_t *v) {
  const char *s = j->p;
  bool neg = false;
  uint64_t acc = 0;
  bool overflow = false;
  *is_int = true;
  if (j->p < j->end && *j->p == '-') {
    neg = true;
    j->p++;
  }
  if (j->p >= j->end || !is_digit(*j->p))
    return STP_ESYNTAX;
  if (*j->p == '0') {
    j->p++;
  } else {
    while (j->p < j->end && is_digit(*j->p)) {
      if (acc > (uint64_t)INT64_MAX / 10)
        overflow = true;
      acc = acc * 10 + (uint64_t)(*j->p - '0');
      j->p++;
    }
  }
  if (j->p < j->end && *j->p == '.') {
    *is_int = false;
    j->p++;
    if (j->p >= j->end || !is_digit(*j->p))
      return STP_ESYNTAX;
    while (j->p < j->end && is_digit(*j->p))
      j->p++;
  }
  if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
    *is_int = false;
    j->p++;
    if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
      j->p++;
    if (j->p >= j->end || !is_digit(*j->p))
      return STP_ESYNTAX;
    while (j->p < j->end && is_digit(*j->p))
      j->p++;
  }
  if (overflow || acc > (uint64_t)INT64_MAX)
    *is_int = false;
  if (*is_int)
    *v = neg ? -(int64_t)acc : (int64_t)acc;
  (void)s;
  return STP_OK;
}

static bool json_lit(jp *j, const char *lit) {
  size_t n = strlen(lit);
  if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n))
    return false;
  j->p += n;
  return true;
}

static int json_value(jp *j, unsigned depth);

static int json_container(jp *j, unsigned depth, bool object) {
  if (depth >= JSON_MAX_DEPTH)
    return STP_ESYNTAX;
  j->p++; /* '{' or '[' */
  skip_ws(j);
  char close = object ? '}' : ']';
  if (j->p < j->end && *j->p == close) {
    j->p++;
    return STP_OK;
  }
  for (;;) {
    skip_ws(j);
    if (object) {
      if (json_string(j, NULL) < 0)
        return STP_ESYNTAX;
      skip_ws(j);
      if (j->p >= j->end || *j->p != ':')
        return STP_ESYNTAX;
      j->p++;
    }
    int rc = json_value(j, depth + 1);
    if (rc < 0)
      return rc;
    skip_ws(j);
    if (j->p >= j->end)
      return STP_ESYNTAX;
    if (*j->p == close) {
      j->p++;
      return STP_OK;
    }
    if (*j->p != ',')
      return STP_ESYNTAX;
    j->p++;
  }
}

static int json_value(jp *j, unsigned depth) {
  skip_ws(j);
  if (j->p >= j->end)
    return STP_ESYNTAX;
  switch (*j->p) {
  case '{':
    return json_container(j, depth, true);
  case '[':
    return json_container(j, depth, false);
  case '"':
    return json_string(j, NULL);
  case 't':
    return json_lit(j, "true") ? STP_OK : STP_ESYNTAX;
  case 'f':
    return json_lit(j, "false") ? STP_OK : STP_ESYNTAX;
  case 'n':
    return json_lit(j, "null") ? STP_OK : STP_ESYNTAX;
  default: {
    bool is_int;
    int64_t v;
    return json_number(j, &is_int, &v);
  }
  }
}

void oauth2_token_resp_free(oauth2_token_resp *t) {
  stp_free_secret(t->access_token);
  stp_free_secret(t->refresh_token);
  free(t->token_type);
  free(t->scope);
  free(t->error);
  free(t->error_description);
  memset(t, 0, sizeof *t);
}

enum { K_ACCESS, K_TYPE, K_REFRESH, K_SCOPE, K_ERROR, K_DESC, K_EXPIRES, K_N };
static const char *const known_keys[K_N] = {"access_token", "token_type", "refresh_token",
                                            "scope",        "error",      "error_description",
                                            "expires_in"};

static char **field_of(oauth2_token_resp *t, int k) {
  switch (k) {
  case K_ACCESS:
    return &t->access_token;
  case K_TYPE:
    return &t->token_type;
  case K_REFRESH:
    return &t->refresh_token;
  case K_SCOPE:
    return &t->scope;
  case K_ERROR:
    return &t->error;
  default:
    return &t->error_description;
  }
}

/* The value of a known key. */
static int known_value(jp *j, oauth2_token_resp *t, int k) {
  if (json_lit(j, "null"))
    return STP_OK; /* absent */
  if (k == K_EXPIRES && j->p < j->end && *j->p != '"') {
    bool is_int;
    int64_t v = 0;
    if (json_number(j, &is_int, &v) < 0 || !is_int || v < 0)
      return STP_ESYNTAX;
    t->has_expires_in = true;
    t->expires_in = v;
    return STP_OK;
  }
  if (j->p >= j->end || *j->p != '"')
    return STP_ESYNTAX;
  stp_buf b;
  stp_buf_init(&b, OAUTH2_TOKEN_MAX + 1);
  int rc = json_string(j, &b);
  if (rc == 0 && k == K_EXPIRES) { /* "3599", as some endpoints send */
    int64_t v = 0;
    if (b.len == 0 || b.len > 12)
      rc = STP_ESYNTAX;
    for (size_t i = 0; rc == 0 && i < b.len; i++) {
      if (!is_digit(b.data[i]))
        rc = STP_ESYNTAX;
      else
        v = v * 10 + (b.data[i] - '0');
    }
    if (rc == 0) {
      t->has_expires_in = true;
      t->expires_in = v;
    }
    stp_buf_free(&b);
    return rc;
  }
  if (rc < 0) {
    stp_cleanse(b.data, b.len);
    stp_buf_free(&b);
    return rc;
  }
  b.data[b.len] = '\0';
  *field_of(t, k) = stp_xstrndup(b.data, b.len);
  stp_cleanse(b.data, b.len);
  stp_buf_free(&b);
  return STP_OK;
}

int oauth2_json_parse(const char *p, size_t n, oauth2_token_resp *out) {
  memset(out, 0, sizeof *out);
  jp j = {p, p + n};
  bool seen[K_N] = {false};
  int rc = STP_OK;
  skip_ws(&j);
  if (j.p >= j.end || *j.p != '{')
    return STP_ESYNTAX;
  j.p++;
  skip_ws(&j);
  if (j.p < j.end && *j.p == '}') {
    j.p++;
  } else {
    for (;;) {
      skip_ws(&j);
      stp_buf key;
      stp_buf_init(&key, 32);
      const char *kstart = j.p;
      rc = json_string(&j, &key);
      int k = -1;
      if (rc == STP_ETOOLONG) { /* a long unknown key: validate only */
        j.p = kstart;
        rc = json_string(&j, NULL);
      } else if (rc == 0) {
        for (int i = 0; i < K_N; i++)
          if (key.len == strlen(known_keys[i]) && !memcmp(key.data, known_keys[i], key.len))
            k = i;
      }
      stp_buf_free(&key);
      if (rc < 0)
        break;
      skip_ws(&j);
      if (j.p >= j.end || *j.p != ':') {
        rc = STP_ESYNTAX;
        break;
      }
      j.p++;
      skip_ws(&j);
      if (k >= 0) {
        if (seen[k]) {
          rc = STP_ESYNTAX;
          break;
        }
        seen[k] = true;
        rc = known_value(&j, out, k);
      } else {
        rc = json_value(&j, 1);
      }
      if (rc < 0)
        break;
      skip_ws(&j);
      if (j.p < j.end && *j.p == ',') {
        j.p++;
        continue;
      }
      if (j.p < j.end && *j.p == '}') {
        j.p++;
        break;
      }
      rc = STP_ESYNTAX;
      break;
    }
  }
  if (rc == 0) {
    skip_ws(&j);
    if (j.p != j.end)
      rc = STP_ESYNTAX;
  }
  if (rc < 0)
    oauth2_token_resp_free(out);
  return rc;
}

/* ---- judging an answer ---------------------------------------------------- */

bool oauth2_token_ok(const char *s, size_t n) {
  if (!s || n == 0 || n > OAUTH2_TOKEN_MAX)
    return false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
      return false;
  return true;
}

/* Endpoint text for an error line: printable ASCII only, bounded. */
static void clean_copy(char *dst, size_t cap, const char *s, size_t max) {
  size_t i = 0;
  for (; s && *s && i + 1 < cap && i < max; s++)
    dst[i++] = ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e) ? '?' : *s;
  dst[i] = '\0';
}

int oauth2_evaluate(int status, const char *body, size_t len, oauth2_token_resp *t, char *err,
                    size_t errlen) {
  int jrc = oauth2_json_parse(body, len, t);
  char e[80] = "", d[320] = "";
  if (jrc == 0) {
    clean_copy(e, sizeof e, t->error, 64);
    clean_copy(d, sizeof d, t->error_description, 300);
  }
  if (status != 200 || (jrc == 0 && t->error)) {
    if (jrc == 0 && t->error)
      snprintf(err, errlen, "HTTP %d: %s%s%s", status, e, d[0] ? ": " : "", d);
    else
      snprintf(err, errlen, "HTTP %d without an OAuth2 error object", status);
    oauth2_token_resp_free(t);
    return STP_EIO;
  }
  if (jrc < 0) {
    snprintf(err, errlen, "token response is not a valid JSON object (%s)", stp_strerror(jrc));
    return jrc;
  }
  const char *why = NULL;
  if (!t->access_token)
    why = "token response has no access_token";
  else if (!oauth2_token_ok(t->access_token, strlen(t->access_token)))
    why = "access_token has characters a bearer token cannot have";
  else if (t->token_type && stp_ascii_casecmp(t->token_type, "bearer"))
    why = "token_type is not Bearer";
  else if (t->refresh_token && !oauth2_token_ok(t->refresh_token, strlen(t->refresh_token)))
    why = "refresh_token has characters a token cannot have";
  if (why) {
    snprintf(err, errlen, "%s", why);
    oauth2_token_resp_free(t);
    return STP_ESYNTAX;
  }
  return STP_OK;
}

uint64_t oauth2_refresh_at(uint64_t now_ms, bool has_expires_in, int64_t expires_in) {
  int64_t e = has_expires_in ? expires_in : OAUTH2_DEFAULT_EXPIRES_S;
  if (e <= 0)
    return now_ms;
  if (e > 10LL * 365 * 86400)
    e = 10LL * 365 * 86400;
  uint64_t keep_ms = e > 2 * OAUTH2_REFRESH_MARGIN_S
                         ? (uint64_t)(e - OAUTH2_REFRESH_MARGIN_S) * 1000
                         : (uint64_t)e * 1000 / 2;
  return now_ms + keep_ms;
}

int oauth2_token_from_output(const char *p, size_t n, char **out) {
  *out = NULL;
  while (n && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) {
    p++;
    n--;
  }
  while (n && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\r' || p[n - 1] == '\n'))
    n--;
  if (!oauth2_token_ok(p, n))
    return STP_ESYNTAX;
  *out = stp_xstrndup(p, n);
  return STP_OK;
}

/* ---- the refresh-token file ----------------------------------------------- */

static int write_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

int oauth2_save_secret_file(const char *path, const char *secret, char *err, size_t errlen) {
  size_t plen = strlen(path);
  char *tmp = stp_xmalloc(plen + 5);
  memcpy(tmp, path, plen);
  memcpy(tmp + plen, ".tmp", 5);
  const char *step = "create";
  int fd = -1, rc = STP_EIO, saved = 0;
  if (unlink(tmp) != 0 && errno != ENOENT) {
    saved = errno;
    step = "remove stale";
    goto out;
  }
  fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    saved = errno;
    goto out;
  }
  step = "write";
  if (fchmod(fd, 0600) != 0 || write_all(fd, secret, strlen(secret)) != 0 ||
      write_all(fd, "\n", 1) != 0) {
    saved = errno;
    goto out;
  }
  step = "fsync";
  if (fsync(fd) != 0) {
    saved = errno;
    goto out;
  }
  step = "close";
  int c = close(fd);
  fd = -1;
  if (c != 0) {
    saved = errno;
    goto out;
  }
  step = "rename";
  if (rename(tmp, path) != 0) {
    saved = errno;
    goto out;
  }
  /* The rename itself must survive a power cut, or the old (now revoked)
   * refresh token comes back. */
  char *slash = strrchr(tmp, '/');
  if (slash) {
    *slash = '\0';
    int dfd = open(slash == tmp ? "/" : tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      fsync(dfd);
      close(dfd);
    }
  }
  rc = STP_OK;
  free(tmp);
  return rc;
out:
  snprintf(err, errlen, "%s %s.tmp: %s", step, path, strerror(saved ? saved : EIO));
  if (fd >= 0)
    close(fd);
  if (strcmp(step, "create") && strcmp(step, "remove stale"))
    unlink(tmp);
  free(tmp);
  return rc;
}
