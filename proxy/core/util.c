/* util.c - error strings, bounded buffers, allocation and secret cleansing.
 * Owns nothing global but the optional fake clock used by tests. */
#include "smtp-tls-proxy/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *stp_strerror(int err) {
  switch (err) {
#define STP_ERR_CASE(name, val, str)                                                               \
  case name:                                                                                       \
    return str;
    STP_ERRORS(STP_ERR_CASE)
#undef STP_ERR_CASE
  default:
    return "unknown error";
  }
}

void *stp_xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) {
    fputs("smtp-tls-proxy: out of memory\n", stderr);
    abort();
  }
  return p;
}

void *stp_xcalloc(size_t n, size_t sz) {
  void *p = calloc(n ? n : 1, sz ? sz : 1);
  if (!p) {
    fputs("smtp-tls-proxy: out of memory\n", stderr);
    abort();
  }
  return p;
}

void *stp_xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) {
    fputs("smtp-tls-proxy: out of memory\n", stderr);
    abort();
  }
  return q;
}

char *stp_xstrdup(const char *s) {
  return stp_xstrndup(s, strlen(s));
}

char *stp_xstrndup(const char *s, size_t n) {
  char *p = stp_xmalloc(n + 1);
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

void stp_cleanse(void *p, size_t n) {
  if (p && n)
    explicit_bzero(p, n);
}

void stp_free_secret(char *s) {
  if (!s)
    return;
  stp_cleanse(s, strlen(s));
  free(s);
}

void stp_buf_init(stp_buf *b, size_t cap) {
  b->data = stp_xmalloc(cap);
  b->len = 0;
  b->cap = cap;
}

void stp_buf_free(stp_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

int stp_buf_append(stp_buf *b, const void *p, size_t n) {
  if (n > b->cap - b->len)
    return STP_EFULL;
  if (n)
    memcpy(b->data + b->len, p, n);
  b->len += n;
  return STP_OK;
}

int stp_buf_appendf(stp_buf *b, const char *fmt, ...) {
  va_list ap;
  size_t room = b->cap - b->len;
  va_start(ap, fmt);
  int n = vsnprintf(b->data + b->len, room, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= room)
    return STP_EFULL;
  b->len += (size_t)n;
  return STP_OK;
}

void stp_buf_consume(stp_buf *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
    return;
  }
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
}

int stp_b64_digit(char c, char c62, char c63) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  return c == c62 ? 62 : c == c63 ? 63 : -1;
}

int stp_ascii_ncasecmp(const char *a, const char *b, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char ca = stp_ascii_lower(a[i]), cb = stp_ascii_lower(b[i]);
    if (ca != cb)
      return (unsigned char)ca - (unsigned char)cb;
    if (!ca)
      return 0;
  }
  return 0;
}

int stp_ascii_casecmp(const char *a, const char *b) {
  return stp_ascii_ncasecmp(a, b, (size_t)-1);
}

bool stp_glob_match(const char *p, const char *s) {
  const char *star = NULL, *resume = NULL;
  while (*s) {
    if (*p == '*') {
      star = p++;
      resume = s;
    } else if (*p == '?' || (*p && stp_ascii_lower(*p) == stp_ascii_lower(*s))) {
      p++;
      s++;
    } else if (star) {
      p = star + 1;
      s = ++resume;
    } else {
      return false;
    }
  }
  while (*p == '*')
    p++;
  return *p == '\0';
}

static const uint64_t *fake_clock;

void stp_set_fake_clock(const uint64_t *now_ms) {
  fake_clock = now_ms;
}

uint64_t stp_now_ms(void) {
  if (fake_clock)
    return *fake_clock;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

size_t stp_utf8_seq(const unsigned char *s, size_t n, uint32_t *cp) {
  unsigned c = n ? s[0] : 0;
  size_t len = c >= 0xf0 && c <= 0xf4  ? 4
               : c >= 0xe0 && c < 0xf0 ? 3
               : c >= 0xc2 && c < 0xe0 ? 2
                                       : 0;
  if (!len || len > n)
    return 0;
  uint32_t v = c & (0x7fu >> len);
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80)
      return 0;
    v = v << 6 | (s[i] & 0x3fu);
  }
  if ((len == 3 && (v < 0x800 || (v >= 0xd800 && v <= 0xdfff))) ||
      (len == 4 && (v < 0x10000 || v > 0x10ffff)))
    return 0;
  if (cp)
    *cp = v;
  return len;
}
