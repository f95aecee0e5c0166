/* sasl.c - strict base64 and the client side of AUTH PLAIN, LOGIN and
 * XOAUTH2 (RFC 4954, RFC 4616, Google's XOAUTH2).
 *
 * Owns: the exact bytes of every AUTH line sent upstream.
 * Guarantees: no allocation, no I/O. Secrets are never copied into a
 * temporary buffer: the SASL message is base64-encoded piece by piece
 * straight into the caller's `out`, and the few bytes carried between
 * pieces are cleansed before returning. `out` is the caller's to cleanse.
 */
#include "smtp-tls-proxy/sasl.h"

#include <stdint.h>
#include <string.h>

#include "smtp-tls-proxy/smtp.h"
#include "smtp-tls-proxy/util.h"

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t sasl_b64_len(size_t n) {
  return (n + 2) / 3 * 4;
}

static void b64_quad(const unsigned char *in, size_t n, char *out) {
  unsigned v = (unsigned)in[0] << 16;
  if (n > 1)
    v |= (unsigned)in[1] << 8;
  if (n > 2)
    v |= in[2];
  out[0] = b64_alphabet[(v >> 18) & 63];
  out[1] = b64_alphabet[(v >> 12) & 63];
  out[2] = n > 1 ? b64_alphabet[(v >> 6) & 63] : '=';
  out[3] = n > 2 ? b64_alphabet[v & 63] : '=';
}

long sasl_b64_encode(const void *in, size_t n, char *out, size_t cap) {
  size_t need = sasl_b64_len(n);
  if (cap < need + 1)
    return STP_EFULL;
  const unsigned char *p = in;
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3, o += 4)
    b64_quad(p + i, n - i < 3 ? n - i : 3, out + o);
  out[o] = '\0';
  return (long)o;
}

static int b64_value(char c) {
  return stp_b64_digit(c, '+', '/');
}

/* Non-zero bits left over in the last character before '=' are accepted
 * (RFC 4648 3.5 lets decoders reject them, but some SASL servers produce
 * them and nothing depends on them being zero). */
long sasl_b64_decode(const char *in, size_t n, unsigned char *out, size_t cap) {
  if (n % 4 != 0)
    return STP_ESYNTAX;
  size_t pad = 0;
  if (n > 0 && in[n - 1] == '=')
    pad = (n > 1 && in[n - 2] == '=') ? 2 : 1;
  size_t outlen = n / 4 * 3 - pad;
  for (size_t i = 0; i < n - pad; i++)
    if (b64_value(in[i]) < 0)
      return STP_ESYNTAX; /* includes a '=' before the padding */
  if (outlen > cap)
    return STP_EFULL;
  size_t o = 0;
  for (size_t i = 0; i < n; i += 4) {
    size_t last = i + 4 == n ? pad : 0;
    unsigned v = 0;
    for (size_t k = 0; k < 4; k++)
      v = (v << 6) | (k < 4 - last ? (unsigned)b64_value(in[i + k]) : 0u);
    out[o++] = (unsigned char)(v >> 16);
    if (last < 2)
      out[o++] = (unsigned char)(v >> 8);
    if (last < 1)
      out[o++] = (unsigned char)v;
  }
  return (long)o;
}

int sasl_choose(stp_auth_mech want, bool secret_is_token, unsigned offered) {
  switch (want) {
  case STP_MECH_PLAIN:
    return (offered & SMTP_AUTH_PLAIN) ? STP_MECH_PLAIN : STP_ENOTFOUND;
  case STP_MECH_LOGIN:
    return (offered & SMTP_AUTH_LOGIN) ? STP_MECH_LOGIN : STP_ENOTFOUND;
  case STP_MECH_XOAUTH2:
    return (offered & SMTP_AUTH_XOAUTH2) ? STP_MECH_XOAUTH2 : STP_ENOTFOUND;
  case STP_MECH_AUTO:
    break;
  }
  /* A bearer token is not a password: offering it to PLAIN or LOGIN would
   * fail at best and leak it to a server that does not expect it at worst. */
  if (secret_is_token)
    return (offered & SMTP_AUTH_XOAUTH2) ? STP_MECH_XOAUTH2 : STP_ENOTFOUND;
  if (offered & SMTP_AUTH_PLAIN)
    return STP_MECH_PLAIN;
  if (offered & SMTP_AUTH_LOGIN)
    return STP_MECH_LOGIN;
  return STP_ENOTFOUND;
}

/* Streaming base64 writer: pieces of a SASL message go in, base64 comes out
 * in `out`, with at most two bytes carried between pieces. */
typedef struct b64w {
  char *out;
  size_t o;
  unsigned char carry[3];
  size_t nc;
} b64w;

static void b64w_put(b64w *w, const void *p, size_t n) {
  const unsigned char *s = p;
  for (size_t i = 0; i < n; i++) {
    w->carry[w->nc++] = s[i];
    if (w->nc == 3) {
      b64_quad(w->carry, 3, w->out + w->o);
      w->o += 4;
      w->nc = 0;
    }
  }
}

static void b64w_finish(b64w *w) {
  if (w->nc) {
    b64_quad(w->carry, w->nc, w->out + w->o);
    w->o += 4;
  }
  stp_cleanse(w->carry, sizeof w->carry);
  w->nc = 0;
}

static void append(char *out, size_t *o, const char *s) {
  size_t n = strlen(s);
  memcpy(out + *o, s, n);
  *o += n;
}

long sasl_initial(int mech, const char *user, const char *secret, char *out, size_t cap) {
  if (mech == STP_MECH_LOGIN) {
    static const char cmd[] = "AUTH LOGIN\r\n";
    if (cap < sizeof cmd)
      return STP_EFULL;
    memcpy(out, cmd, sizeof cmd);
    return (long)(sizeof cmd - 1);
  }
  if (!user || !secret)
    return STP_EINVAL;
  size_t ul = strlen(user), sl = strlen(secret);
  if (ul > SIZE_MAX / 4 || sl > SIZE_MAX / 4)
    return STP_EFULL;
  const char *prefix;
  size_t raw;
  if (mech == STP_MECH_PLAIN) {
    /* RFC 4616: [authzid] NUL authcid NUL passwd, authzid empty. */
    prefix = "AUTH PLAIN ";
    raw = 1 + ul + 1 + sl;
  } else if (mech == STP_MECH_XOAUTH2) {
    /* ^A separates the fields; one inside a value would forge a field. */
    if (memchr(user, '\1', ul) || memchr(secret, '\1', sl))
      return STP_EINVAL;
    prefix = "AUTH XOAUTH2 ";
    raw = 5 + ul + 1 + 12 + sl + 2;
  } else {
    return STP_EINVAL;
  }
  size_t need = strlen(prefix) + sasl_b64_len(raw) + 2;
  if (cap < need + 1)
    return STP_EFULL;

  size_t o = 0;
  append(out, &o, prefix);
  b64w w = {out + o, 0, {0, 0, 0}, 0};
  if (mech == STP_MECH_PLAIN) {
    b64w_put(&w, "", 1);
    b64w_put(&w, user, ul);
    b64w_put(&w, "", 1);
    b64w_put(&w, secret, sl);
  } else {
    b64w_put(&w, "user=", 5);
    b64w_put(&w, user, ul);
    b64w_put(&w, "\1auth=Bearer ", 13);
    b64w_put(&w, secret, sl);
    b64w_put(&w, "\1\1", 2);
  }
  b64w_finish(&w);
  o += w.o;
  append(out, &o, "\r\n");
  out[o] = '\0';
  stp_cleanse(&w, sizeof w);
  return (long)o;
}

long sasl_login_step(unsigned step, const char *user, const char *secret, char *out, size_t cap) {
  const char *s = step == 0 ? user : step == 1 ? secret : NULL;
  if (!s)
    return STP_EINVAL;
  size_t n = strlen(s);
  size_t need = sasl_b64_len(n) + 2;
  if (cap < need + 1)
    return STP_EFULL;
  b64w w = {out, 0, {0, 0, 0}, 0};
  b64w_put(&w, s, n);
  b64w_finish(&w);
  memcpy(out + w.o, "\r\n", 3);
  size_t o = w.o + 2;
  stp_cleanse(&w, sizeof w);
  return (long)o;
}
