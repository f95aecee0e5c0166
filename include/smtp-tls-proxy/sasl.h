/* sasl.h - SASL for SMTP AUTH (RFC 4954): strict base64 and the client side
 * of PLAIN, LOGIN and XOAUTH2, plus mechanism choice.
 *
 * Owns: the exact bytes of every AUTH exchange the proxy sends upstream.
 * Guarantees: pure; every buffer that held a secret is cleansed by the
 * function that filled it or is the caller's (documented per function).
 */
#ifndef STP_SASL_H
#define STP_SASL_H

#include <stdbool.h>
#include <stddef.h>

#include "smtp-tls-proxy/config.h"

/* Encoded length of n bytes (without NUL). */
size_t sasl_b64_len(size_t n);
/* Encode into out (cap includes room for NUL). Returns length or STP_EFULL. */
long sasl_b64_encode(const void *in, size_t n, char *out, size_t cap);
/* Strict decode: only A-Z a-z 0-9 + /, correct '=' padding, length a
 * multiple of 4, no whitespace. Returns decoded length, STP_ESYNTAX or
 * STP_EFULL. */
long sasl_b64_decode(const char *in, size_t n, unsigned char *out, size_t cap);

/* Pick the mechanism to use with an upstream: `want` from the config;
 * `offered` is the SMTP_AUTH_* bit set from EHLO. auto picks XOAUTH2 when
 * the secret is a token, else PLAIN, else LOGIN. Returns STP_MECH_PLAIN/
 * LOGIN/XOAUTH2, or STP_ENOTFOUND when the server offers nothing usable. */
int sasl_choose(stp_auth_mech want, bool secret_is_token, unsigned offered);

/* Whole "AUTH ..." command lines with CRLF, written into out (cap bytes).
 * The caller cleanses `out` after sending. Return length or STP_EFULL.
 *   PLAIN:   "AUTH PLAIN <b64(\0user\0pass)>\r\n"
 *   XOAUTH2: "AUTH XOAUTH2 <b64(user=U\1auth=Bearer T\1\1)>\r\n"
 *   LOGIN:   "AUTH LOGIN\r\n", then sasl_login_step() answers each 334. */
long sasl_initial(int mech, const char *user, const char *secret, char *out, size_t cap);
/* For LOGIN: the 334 challenge text (base64 of "Username:" or "Password:",
 * case-insensitive, tolerate servers that send other prompts: the first
 * challenge gets the user name, the second the password). step is 0 for the
 * first 334 and 1 for the second. Writes "<b64>\r\n". */
long sasl_login_step(unsigned step, const char *user, const char *secret, char *out, size_t cap);

#endif
