/* esc.h - escaping text for the admin page and its API, pure.
 *
 * Owns: turning arbitrary bytes (a device's sender, a provider's reply)
 * into safe JSON string content and safe HTML text. Guarantees: the output
 * is valid UTF-8 (a byte that is not part of a valid UTF-8 sequence
 * becomes U+FFFD), JSON gets every control character escaped, HTML gets
 * & < > " ' as entities, so no input can close a string, a tag or an
 * attribute. Appends fail with STP_EFULL at the buffer's bound.
 */
#ifndef STP_ESC_H
#define STP_ESC_H

#include <stddef.h>

#include "smtp-tls-proxy/util.h"

/* The content of a JSON string, without the quotes. */
int esc_json(stp_buf *b, const char *s);
/* "key":"value" with a leading comma unless first. NULL value: null. */
int esc_json_kv(stp_buf *b, const char *key, const char *val, int first);
/* HTML text or attribute value (double-quoted). */
int esc_html(stp_buf *b, const char *s);
/* Length of the longest prefix of s[0..max) that ends on a UTF-8 character
 * boundary (for caps that must not cut a character). */
size_t esc_utf8_cut(const char *s, size_t max);

#endif
