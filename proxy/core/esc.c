/* esc.c - JSON and HTML escaping for the admin page and API (see esc.h). */
#include "smtp-tls-proxy/esc.h"

#include <stdint.h>
#include <string.h>

/* Length of the character at s (1..4; s NUL-terminated), or 0 when it is
 * no valid UTF-8: a NUL stops stp_utf8_seq before it reads further. */
static size_t utf8_len(const unsigned char *s) {
  return *s < 0x80 ? 1 : stp_utf8_seq(s, 4, NULL);
}

size_t esc_utf8_cut(const char *s, size_t max) {
  size_t i = 0;
  while (i < max && s[i]) {
    size_t n = utf8_len((const unsigned char *)s + i);
    if (n == 0)
      n = 1; /* an invalid byte is one unit: it is replaced on output */
    if (i + n > max)
      break;
    i += n;
  }
  return i;
}

#define REPLACEMENT "\xEF\xBF\xBD"

/* Copy s (NULL: "") to b: a valid multi-byte UTF-8 sequence as it is, an
 * invalid byte as U+FFFD, and each ASCII byte through one(). */
static int esc_walk(stp_buf *b, const char *s, int (*one)(stp_buf *b, unsigned char c)) {
  int rc = 0;
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p && rc == 0;) {
    size_t n = utf8_len(p);
    if (n == 0) {
      rc = stp_buf_append(b, REPLACEMENT, 3);
      p++;
    } else if (n > 1) {
      rc = stp_buf_append(b, p, n);
      p += n;
    } else {
      rc = one(b, *p++);
    }
  }
  return rc;
}

static int json_byte(stp_buf *b, unsigned char c) {
  if (c == '"' || c == '\\')
    return stp_buf_appendf(b, "\\%c", (char)c);
  if (c < 0x20 || c == 0x7F || c == '<' || c == '>' || c == '&')
    return stp_buf_appendf(b, "\\u%04x", c); /* safe inside a <script> too */
  return stp_buf_append(b, &c, 1);
}

int esc_json(stp_buf *b, const char *s) {
  return esc_walk(b, s, json_byte);
}

int esc_json_kv(stp_buf *b, const char *key, const char *val, int first) {
  int rc = stp_buf_appendf(b, "%s\"%s\":", first ? "" : ",", key);
  if (rc == 0 && !val)
    return stp_buf_append(b, "null", 4);
  if (rc == 0)
    rc = stp_buf_append(b, "\"", 1);
  if (rc == 0)
    rc = esc_json(b, val);
  if (rc == 0)
    rc = stp_buf_append(b, "\"", 1);
  return rc;
}

static int html_byte(stp_buf *b, unsigned char c) {
  static const char *const entity[128] = {
      ['&'] = "&amp;", ['<'] = "&lt;", ['>'] = "&gt;", ['"'] = "&quot;", ['\''] = "&#39;"};
  if (c < 128 && entity[c])
    return stp_buf_append(b, entity[c], strlen(entity[c]));
  if (c < 0x20 || c == 0x7F)
    return stp_buf_append(b, REPLACEMENT, 3);
  return stp_buf_append(b, &c, 1);
}

int esc_html(stp_buf *b, const char *s) {
  return esc_walk(b, s, html_byte);
}
