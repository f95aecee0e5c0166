/* fuzz_sasl.c - strict base64 and the AUTH lines the proxy sends upstream.
 *
 * Input: byte 0 = how many bytes short of the needed capacity to make the
 * output buffers (0..3, to reach the STP_EFULL edges), the rest both the
 * base64 text to decode and, split at its first 0xff byte, the user and
 * the secret (NULs cut them, as C strings).
 * Invariants: decode never writes past cap; what decodes re-encodes to the
 * same text but for the pad bits of its last character (sasl.c accepts
 * those on purpose) and decodes again to the same bytes; decode(encode(x))
 * == x; the AUTH PLAIN / XOAUTH2 / LOGIN lines carry exactly base64 of the
 * RFC 4616 / XOAUTH2 / LOGIN messages; too small buffers give STP_EFULL.
 * Buffers are heap copies of exact size, so any overflow is reported.
 */
#include "fuzz_common.h"

#include "smtp-tls-proxy/sasl.h"

static unsigned char *decode(const char *b64, size_t n, long *len) {
  unsigned char *d = malloc(n / 4 * 3 + 1);
  CHECK(d);
  *len = sasl_b64_decode(b64, n, d, n / 4 * 3);
  return d;
}

/* AUTH line -> decoded SASL message (malloc'd), checking the frame. */
static unsigned char *payload(const char *line, long n, const char *prefix, long *dlen) {
  size_t pl = strlen(prefix);
  CHECK(n >= (long)pl + 2 && memcmp(line, prefix, pl) == 0);
  CHECK(line[n - 2] == '\r' && line[n - 1] == '\n' && line[n] == '\0');
  unsigned char *d = decode(line + pl, (size_t)n - pl - 2, dlen);
  CHECK(*dlen >= 0);
  return d;
}

static void check_initial(int mech, const char *user, const char *secret, size_t short_by) {
  size_t ul = strlen(user), sl = strlen(secret);
  size_t raw = mech == STP_MECH_PLAIN ? 2 + ul + sl : 5 + ul + 13 + sl + 2;
  const char *prefix = mech == STP_MECH_PLAIN ? "AUTH PLAIN " : "AUTH XOAUTH2 ";
  size_t need = strlen(prefix) + sasl_b64_len(raw) + 2 + 1;
  bool forged = mech == STP_MECH_XOAUTH2 && (strchr(user, '\1') || strchr(secret, '\1'));

  char *out = malloc(need - short_by);
  CHECK(out);
  long n = sasl_initial(mech, user, secret, out, need - short_by);
  if (forged) {
    CHECK(n == STP_EINVAL);
  } else if (short_by) {
    CHECK(n == STP_EFULL);
  } else {
    CHECK(n == (long)need - 1);
    long dl;
    unsigned char *d = payload(out, n, prefix, &dl);
    CHECK((size_t)dl == raw);
    if (mech == STP_MECH_PLAIN) {
      CHECK(d[0] == 0 && !memcmp(d + 1, user, ul) && d[1 + ul] == 0);
      CHECK(!memcmp(d + 2 + ul, secret, sl));
    } else {
      CHECK(!memcmp(d, "user=", 5) && !memcmp(d + 5, user, ul));
      CHECK(!memcmp(d + 5 + ul, "\1auth=Bearer ", 13) && !memcmp(d + 18 + ul, secret, sl));
      CHECK(!memcmp(d + 18 + ul + sl, "\1\1", 2));
    }
    free(d);
  }
  free(out);
}

static void check_login(const char *user, const char *secret, size_t short_by) {
  char *out = malloc(sizeof "AUTH LOGIN\r\n" - short_by);
  CHECK(out);
  long n = sasl_initial(STP_MECH_LOGIN, user, secret, out, sizeof "AUTH LOGIN\r\n" - short_by);
  CHECK(short_by ? n == STP_EFULL : (n == 12 && !strcmp(out, "AUTH LOGIN\r\n")));
  free(out);
  for (unsigned step = 0; step < 3; step++) {
    const char *s = step == 0 ? user : secret;
    size_t need = sasl_b64_len(strlen(s)) + 3;
    out = malloc(need - short_by);
    CHECK(out);
    n = sasl_login_step(step, user, secret, out, need - short_by);
    if (step == 2) {
      CHECK(n == STP_EINVAL);
    } else if (short_by) {
      CHECK(n == STP_EFULL);
    } else {
      long dl;
      unsigned char *d = payload(out, n, "", &dl);
      CHECK((size_t)dl == strlen(s) && !memcmp(d, s, strlen(s)));
      free(d);
    }
    free(out);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  size_t short_by = data[0] & 3;
  const char *in = (const char *)data + 1;
  size_t len = size - 1;

  /* 1. strict decode of arbitrary text, into an exact-size buffer */
  char *copy = malloc(len ? len : 1);
  CHECK(copy);
  memcpy(copy, in, len);
  size_t cap = len / 4 * 3;
  cap = cap > short_by ? cap - short_by : 0;
  unsigned char *dec = malloc(cap ? cap : 1);
  CHECK(dec);
  long dn = sasl_b64_decode(copy, len, dec, cap);
  CHECK(dn == STP_ESYNTAX || dn == STP_EFULL || (dn >= 0 && (size_t)dn <= cap));
  if (dn >= 0) {
    CHECK(len % 4 == 0 && (size_t)dn == len / 4 * 3 - (len && in[len - 1] == '=') -
                                            (len > 1 && in[len - 2] == '='));
    size_t el = sasl_b64_len((size_t)dn);
    char *enc = malloc(el + 1);
    CHECK(enc);
    CHECK(sasl_b64_encode(dec, (size_t)dn, enc, el + 1) == (long)el && el == len);
    size_t pad = (size_t)((len && in[len - 1] == '=') + (len > 1 && in[len - 2] == '='));
    size_t last = len - pad - 1; /* the character whose low bits may differ */
    for (size_t i = 0; i < len; i++)
      CHECK(enc[i] == in[i] || (pad && i == last));
    long dn2;
    unsigned char *dec2 = decode(enc, el, &dn2);
    CHECK(dn2 == dn && !memcmp(dec2, dec, (size_t)dn));
    free(dec2);
    free(enc);
  }
  free(dec);
  free(copy);

  /* 2. decode(encode(x)) == x, with the encoder's EFULL edge */
  size_t el = sasl_b64_len(len), ecap = el + 1 > short_by ? el + 1 - short_by : 0;
  char *enc = malloc(ecap ? ecap : 1);
  CHECK(enc);
  long en = sasl_b64_encode(in, len, enc, ecap);
  if (short_by) {
    CHECK(en == STP_EFULL);
  } else {
    CHECK(en == (long)el && enc[el] == '\0');
    long rn;
    unsigned char *round = decode(enc, el, &rn);
    CHECK(rn == (long)len && (len == 0 || !memcmp(round, in, len)));
    free(round);
  }
  free(enc);

  /* 3. the AUTH lines */
  const char *ff = memchr(in, 0xff, len);
  size_t ul = ff ? (size_t)(ff - in) : len;
  char *user = strndup(in, ul);
  char *secret = ff ? strndup(ff + 1, len - ul - 1) : strdup("");
  CHECK(user && secret);
  check_initial(STP_MECH_PLAIN, user, secret, short_by);
  check_initial(STP_MECH_XOAUTH2, user, secret, short_by);
  check_login(user, secret, short_by);
  char tmp[64];
  CHECK(sasl_initial(STP_MECH_PLAIN, NULL, secret, tmp, sizeof tmp) == STP_EINVAL);
  CHECK(sasl_initial(99, user, secret, tmp, sizeof tmp) == STP_EINVAL);
  free(user);
  free(secret);
  return 0;
}
