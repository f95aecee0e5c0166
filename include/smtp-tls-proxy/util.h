/* util.h - the one error scheme, bounded byte buffers and small helpers.
 *
 * Owns: the project-wide error codes (one X-macro table, negative values,
 * 0 is success), a fixed-capacity byte buffer that never reallocates, and
 * secret-cleansing helpers. Guarantees: no function here allocates behind
 * the caller's back except the explicit stp_xstrdup/stp_xmalloc family,
 * which abort on OOM (a proxy that cannot allocate 100 bytes cannot serve).
 */
#ifndef STP_UTIL_H
#define STP_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Values start at -5001, away from libuv's codes (negative errno values,
 * UV_EAI_* near -3000, UV_EOF at -4095): a uv code that leaked through an
 * `int` could never read as one of ours. The network layer maps libuv's
 * codes to these at its boundary (tests/unit/test_util.c checks both). */
#define STP_ERRORS(X)                                                                              \
  X(STP_OK, 0, "ok")                                                                               \
  X(STP_ENOMEM, -5001, "out of memory")                                                            \
  X(STP_EINVAL, -5002, "invalid argument")                                                         \
  X(STP_ETOOLONG, -5003, "too long")                                                               \
  X(STP_ESYNTAX, -5004, "syntax error")                                                            \
  X(STP_EAGAIN, -5005, "need more input")                                                          \
  X(STP_EFULL, -5006, "buffer full")                                                               \
  X(STP_EBARELF, -5007, "bare LF or CR")                                                           \
  X(STP_EADDR, -5008, "bad address")                                                               \
  X(STP_EPARAM, -5009, "bad parameter")                                                            \
  X(STP_EIO, -5010, "i/o error")                                                                   \
  X(STP_ENOTFOUND, -5011, "not found")                                                             \
  X(STP_ESTATE, -5012, "wrong state")                                                              \
  X(STP_ENET, -5013, "network error")

enum {
#define STP_ERR_ENUM(name, val, str) name = (val),
  STP_ERRORS(STP_ERR_ENUM)
#undef STP_ERR_ENUM
};

const char *stp_strerror(int err);

/* A byte buffer with a fixed capacity chosen at init. Appends past the
 * capacity fail with STP_EFULL: every buffer has a bound. */
typedef struct stp_buf {
  char *data;
  size_t len;
  size_t cap;
} stp_buf;

void stp_buf_init(stp_buf *b, size_t cap);
void stp_buf_free(stp_buf *b);
int stp_buf_append(stp_buf *b, const void *p, size_t n);
int stp_buf_appendf(stp_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Remove the first n bytes. */
void stp_buf_consume(stp_buf *b, size_t n);
static inline size_t stp_buf_space(const stp_buf *b) {
  return b->cap - b->len;
}

void *stp_xmalloc(size_t n);
void *stp_xcalloc(size_t n, size_t sz);
void *stp_xrealloc(void *p, size_t n);
char *stp_xstrdup(const char *s);
char *stp_xstrndup(const char *s, size_t n);

/* Zero memory so the compiler cannot elide it, then free. For secrets. */
void stp_cleanse(void *p, size_t n);
void stp_free_secret(char *s);

/* ASCII-only, locale-independent helpers (SMTP is ASCII). */
int stp_ascii_casecmp(const char *a, const char *b);
int stp_ascii_ncasecmp(const char *a, const char *b, size_t n);
static inline char stp_ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}
/* The value (0..63) of one base64 digit whose last two digits are c62 and
 * c63 ('+' '/' for base64, '-' '_' for base64url), -1 for any other char. */
int stp_b64_digit(char c, char c62, char c63);
/* The length (2..4) of the valid multi-byte UTF-8 sequence at s[0..n)
 * (RFC 3629: no overlong form, no surrogate, at most U+10FFFF), or 0 when
 * it is not one (ASCII included); *cp (may be NULL) gets the code point. */
size_t stp_utf8_seq(const unsigned char *s, size_t n, uint32_t *cp);

/* Case-insensitive glob with '*' (any run) and '?' (one char). */
bool stp_glob_match(const char *pattern, const char *s);

/* Monotonic milliseconds; tests may install a fake clock. */
uint64_t stp_now_ms(void);
void stp_set_fake_clock(const uint64_t *now_ms);

#endif
