/* oauthq.c - the authorization response parser (see oauthq.h): a byte at a
 * time, with no allocation, so that a fuzzer can drive it at speed.
 */
#include <string.h>

#include "smtp-tls-proxy/oauthq.h"
#include "smtp-tls-proxy/util.h"

static bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Decode application/x-www-form-urlencoded p[0..n) into out (cap bytes,
 * NUL included). Returns the length, STP_ESYNTAX or STP_ETOOLONG. */
static long decode(const char *p, size_t n, char *out, size_t cap) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    char c = p[i];
    if (c == '+') {
      c = ' ';
    } else if (c == '%') {
      if (n - i < 3)
        return STP_ESYNTAX;
      int hi = hexval(p[i + 1]), lo = hexval(p[i + 2]);
      if (hi < 0 || lo < 0)
        return STP_ESYNTAX;
      c = (char)(hi * 16 + lo);
      i += 2;
    }
    if (o + 1 >= cap)
      return STP_ETOOLONG;
    out[o++] = c;
  }
  out[o] = '\0';
  return (long)o;
}

/* The parameters kept; the rest are ignored. */
enum { Q_CODE, Q_STATE, Q_ERROR, Q_DESC, Q_N };
static const char *const q_names[Q_N] = {"code", "state", "error", "error_description"};

static char *q_buf(oauthq *q, int k, size_t *cap, bool **seen) {
  switch (k) {
  case Q_CODE:
    *cap = sizeof q->code;
    *seen = &q->has_code;
    return q->code;
  case Q_STATE:
    *cap = sizeof q->state;
    *seen = &q->has_state;
    return q->state;
  case Q_ERROR:
    *cap = sizeof q->error;
    *seen = &q->has_error;
    return q->error;
  default:
    *cap = sizeof q->error_description;
    *seen = &q->has_error_description;
    return q->error_description;
  }
}

/* code, state, error: VSCHAR / NQCHAR (visible ASCII, no space for the
 * first three); error_description: no control byte. */
static bool value_ok(int k, const char *v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)v[i];
    if (c < 0x20 || c == 0x7f)
      return false;
    if (k != Q_DESC && (c == 0x20 || c > 0x7e))
      return false;
  }
  return true;
}

/* One "key=value" pair (no '&' inside). */
static int take_pair(const char *p, size_t n, oauthq *q) {
  const char *eq = memchr(p, '=', n);
  size_t klen = eq ? (size_t)(eq - p) : n;
  char key[32];
  long kn = decode(p, klen, key, sizeof key);
  if (kn == STP_ETOOLONG)
    return STP_OK; /* a long name is none of ours */
  if (kn < 0)
    return (int)kn;
  for (int k = 0; k < Q_N; k++) {
    if (strcmp(key, q_names[k]) != 0 || (size_t)kn != strlen(q_names[k]))
      continue;
    size_t cap;
    bool *seen;
    char *out = q_buf(q, k, &cap, &seen);
    if (*seen)
      return STP_ESYNTAX; /* RFC 6749 3.1: not more than once */
    const char *v = eq ? eq + 1 : p + n;
    long vn = decode(v, (size_t)(p + n - v), out, cap);
    if (vn < 0)
      return (int)vn;
    if (!value_ok(k, out, (size_t)vn))
      return STP_ESYNTAX;
    *seen = true;
    return STP_OK;
  }
  return STP_OK;
}

/* Where the query starts in a trimmed input, and where it ends. */
static void find_query(const char *p, size_t n, size_t *qs, size_t *qe) {
  const char *q = memchr(p, '?', n);
  const char *h = memchr(p, '#', n);
  size_t end = h ? (size_t)(h - p) : n;
  bool has_scheme = false;
  for (size_t i = 0; i + 2 < n && p[i] != '/' && p[i] != '?'; i++)
    if (p[i] == ':' && p[i + 1] == '/' && p[i + 2] == '/')
      has_scheme = true;
  if (q && (size_t)(q - p) < end)
    *qs = (size_t)(q - p) + 1;
  else if (has_scheme || (n && p[0] == '/'))
    *qs = end; /* an address without a query */
  else
    *qs = 0; /* the query alone */
  *qe = end;
}

int oauthq_parse(const char *p, size_t n, oauthq *out) {
  memset(out, 0, sizeof *out);
  while (n && is_space(p[0])) {
    p++;
    n--;
  }
  while (n && is_space(p[n - 1]))
    n--;
  if (n > OAUTHQ_INPUT_MAX)
    return STP_ETOOLONG;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] >= 0x7f)
      return STP_ESYNTAX; /* a URL has no raw space, control or 8-bit byte */
  size_t qs, qe;
  find_query(p, n, &qs, &qe);
  int rc = STP_OK;
  for (size_t i = qs; i < qe && rc == STP_OK;) {
    const char *amp = memchr(p + i, '&', qe - i);
    size_t j = amp ? (size_t)(amp - p) : qe;
    if (j > i)
      rc = take_pair(p + i, j - i, out);
    i = j + 1;
  }
  if (rc == STP_OK && !out->has_code && !out->has_error)
    rc = STP_ENOTFOUND;
  if (rc != STP_OK && rc != STP_ENOTFOUND)
    oauthq_wipe(out);
  return rc;
}

void oauthq_wipe(oauthq *q) {
  stp_cleanse(q, sizeof *q);
}
