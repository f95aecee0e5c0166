/* test_sasl.c - strict base64, AUTH PLAIN/LOGIN/XOAUTH2 bytes, mechanism
 * choice. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "smtp-tls-proxy/sasl.h"
#include "smtp-tls-proxy/smtp.h"
#include "smtp-tls-proxy/util.h"

#define L(s) s, sizeof(s) - 1

/* RFC 4648 section 10. */
static const struct {
  const char *raw, *b64;
} rfc4648[] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};

Test(sasl, b64_encode_rfc4648_vectors) {
  for (size_t i = 0; i < sizeof rfc4648 / sizeof rfc4648[0]; i++) {
    char out[16];
    size_t n = strlen(rfc4648[i].raw);
    cr_assert_eq(sasl_b64_len(n), strlen(rfc4648[i].b64));
    long got = sasl_b64_encode(rfc4648[i].raw, n, out, sizeof out);
    cr_assert_eq(got, (long)strlen(rfc4648[i].b64));
    cr_assert_str_eq(out, rfc4648[i].b64);
  }
}

Test(sasl, b64_decode_rfc4648_vectors) {
  for (size_t i = 0; i < sizeof rfc4648 / sizeof rfc4648[0]; i++) {
    unsigned char out[16];
    long got = sasl_b64_decode(rfc4648[i].b64, strlen(rfc4648[i].b64), out, sizeof out);
    cr_assert_eq(got, (long)strlen(rfc4648[i].raw), "[%s]", rfc4648[i].b64);
    cr_assert_eq(memcmp(out, rfc4648[i].raw, (size_t)got), 0);
  }
}

Test(sasl, b64_encode_capacity_includes_nul) {
  char out[9];
  cr_assert_eq(sasl_b64_encode("foobar", 6, out, 8), STP_EFULL);
  cr_assert_eq(sasl_b64_encode("foobar", 6, out, 9), 8);
  cr_assert_str_eq(out, "Zm9vYmFy");
  cr_assert_eq(sasl_b64_encode("", 0, out, 0), STP_EFULL);
  cr_assert_eq(sasl_b64_encode("", 0, out, 1), 0);
  cr_assert_str_eq(out, "");
}

Test(sasl, b64_decode_rejects_bad_input) {
  static const char *bad[] = {
      "Zg=",  "Zg===", "Z===", "====", "Zg",   "Z",        "Zm9v YmFy", "Zm9v\r\n",   " Zm9v",
      "Zm9-", "Zm9_",  "Zm9.", "Zg=a", "=Zg=", "Zg==Zg==", "Zm=v",      "Zm9vYmFy\n", "Zm9\x80",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    unsigned char out[16];
    cr_assert_eq(sasl_b64_decode(bad[i], strlen(bad[i]), out, sizeof out), STP_ESYNTAX, "[%s]",
                 bad[i]);
  }
  unsigned char out[4];
  cr_assert_eq(sasl_b64_decode(L("Zm\0v"), out, sizeof out), STP_ESYNTAX);
}

Test(sasl, b64_decode_accepts_nonzero_trailing_bits) {
  /* Lenient by design (see sasl.c): "Zh==" carries stray low bits. */
  unsigned char out[4];
  cr_assert_eq(sasl_b64_decode(L("Zh=="), out, sizeof out), 1);
  cr_assert_eq(out[0], 'f');
  cr_assert_eq(sasl_b64_decode(L("Zm9="), out, sizeof out), 2);
  cr_assert_eq(memcmp(out, "fo", 2), 0);
}

Test(sasl, b64_decode_capacity) {
  unsigned char out[6];
  cr_assert_eq(sasl_b64_decode(L("Zm9vYmFy"), out, 5), STP_EFULL);
  cr_assert_eq(sasl_b64_decode(L("Zm9vYmFy"), out, 6), 6);
  cr_assert_eq(sasl_b64_decode(L("Zm9vYmE="), out, 5), 5);
  cr_assert_eq(sasl_b64_decode(L(""), out, 0), 0);
}

Test(sasl, b64_round_trip_all_bytes_all_lengths) {
  unsigned char raw[256], back[256];
  char enc[400];
  for (int i = 0; i < 256; i++)
    raw[i] = (unsigned char)(255 - i);
  for (size_t n = 0; n <= sizeof raw; n++) {
    long e = sasl_b64_encode(raw, n, enc, sizeof enc);
    cr_assert_eq(e, (long)sasl_b64_len(n));
    for (long k = 0; k < e; k++)
      cr_assert(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=",
                       enc[k]) != NULL);
    long d = sasl_b64_decode(enc, (size_t)e, back, sizeof back);
    cr_assert_eq(d, (long)n);
    cr_assert_eq(memcmp(raw, back, n), 0, "length %zu", n);
  }
}

/* ---- mechanism choice -------------------------------------------------------- */

Test(sasl, choose_auto_password) {
  unsigned all = SMTP_AUTH_PLAIN | SMTP_AUTH_LOGIN | SMTP_AUTH_XOAUTH2 | SMTP_AUTH_CRAM_MD5;
  cr_assert_eq(sasl_choose(STP_MECH_AUTO, false, all), STP_MECH_PLAIN);
  cr_assert_eq(sasl_choose(STP_MECH_AUTO, false, SMTP_AUTH_LOGIN | SMTP_AUTH_XOAUTH2),
               STP_MECH_LOGIN);
  cr_assert_eq(sasl_choose(STP_MECH_AUTO, false, SMTP_AUTH_XOAUTH2), STP_ENOTFOUND);
  cr_assert_eq(sasl_choose(STP_MECH_AUTO, false, SMTP_AUTH_CRAM_MD5), STP_ENOTFOUND);
  cr_assert_eq(sasl_choose(STP_MECH_AUTO, false, 0), STP_ENOTFOUND);
}

Test(sasl, choose_auto_token) {
  cr_assert_eq(sasl_choose(STP_MECH_AUTO, true, SMTP_AUTH_PLAIN | SMTP_AUTH_XOAUTH2),
               STP_MECH_XOAUTH2);
  /* A token is never sent as a password. */
  cr_assert_eq(sasl_choose(STP_MECH_AUTO, true, SMTP_AUTH_PLAIN | SMTP_AUTH_LOGIN), STP_ENOTFOUND);
}

Test(sasl, choose_explicit_needs_offer) {
  unsigned all = SMTP_AUTH_PLAIN | SMTP_AUTH_LOGIN | SMTP_AUTH_XOAUTH2;
  cr_assert_eq(sasl_choose(STP_MECH_LOGIN, false, all), STP_MECH_LOGIN);
  cr_assert_eq(sasl_choose(STP_MECH_PLAIN, false, all), STP_MECH_PLAIN);
  cr_assert_eq(sasl_choose(STP_MECH_XOAUTH2, true, all), STP_MECH_XOAUTH2);
  cr_assert_eq(sasl_choose(STP_MECH_PLAIN, false, SMTP_AUTH_LOGIN), STP_ENOTFOUND);
  cr_assert_eq(sasl_choose(STP_MECH_LOGIN, false, SMTP_AUTH_PLAIN), STP_ENOTFOUND);
  cr_assert_eq(sasl_choose(STP_MECH_XOAUTH2, true, SMTP_AUTH_PLAIN), STP_ENOTFOUND);
}

/* ---- AUTH lines ----------------------------------------------------------------- */

Test(sasl, plain_initial_exact) {
  char out[64];
  long n = sasl_initial(STP_MECH_PLAIN, "user", "pass", out, sizeof out);
  cr_assert_eq(n, 29);
  cr_assert_str_eq(out, "AUTH PLAIN AHVzZXIAcGFzcw==\r\n");
}

Test(sasl, xoauth2_initial_matches_google_example) {
  char out[256];
  long n = sasl_initial(STP_MECH_XOAUTH2, "someuser@example.com",
                        "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg", out, sizeof out);
  static const char want[] =
      "AUTH XOAUTH2 dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52Yj"
      "NSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==\r\n";
  cr_assert_eq(n, (long)sizeof want - 1);
  cr_assert_str_eq(out, want);
}

Test(sasl, login_exchange) {
  char out[64];
  cr_assert_eq(sasl_initial(STP_MECH_LOGIN, "scanner@example.com", "pw", out, sizeof out), 12);
  cr_assert_str_eq(out, "AUTH LOGIN\r\n");
  cr_assert_eq(sasl_login_step(0, "scanner@example.com", "pw", out, sizeof out), 30);
  cr_assert_str_eq(out, "c2Nhbm5lckBleGFtcGxlLmNvbQ==\r\n");
  cr_assert_eq(sasl_login_step(1, "scanner@example.com", "Password:", out, sizeof out), 14);
  cr_assert_str_eq(out, "UGFzc3dvcmQ6\r\n");
  cr_assert_eq(sasl_login_step(2, "u", "p", out, sizeof out), STP_EINVAL);
}

Test(sasl, initial_exact_capacity_and_no_overrun) {
  char out[40];
  memset(out, '#', sizeof out);
  /* needs 29 bytes + NUL */
  cr_assert_eq(sasl_initial(STP_MECH_PLAIN, "user", "pass", out, 29), STP_EFULL);
  cr_assert_eq(out[0], '#', "nothing written on EFULL");
  cr_assert_eq(sasl_initial(STP_MECH_PLAIN, "user", "pass", out, 30), 29);
  cr_assert_eq(out[29], '\0');
  cr_assert_eq(out[30], '#');
  cr_assert_eq(sasl_initial(STP_MECH_LOGIN, "u", "p", out, 12), STP_EFULL);
  cr_assert_eq(sasl_login_step(0, "user", "p", out, 10), STP_EFULL);
  cr_assert_eq(sasl_login_step(0, "user", "p", out, 11), 10);
  cr_assert_str_eq(out, "dXNlcg==\r\n");
}

Test(sasl, initial_rejects_bad_input) {
  char out[128];
  cr_assert_eq(sasl_initial(STP_MECH_XOAUTH2, "u", "tok\1en", out, sizeof out), STP_EINVAL);
  cr_assert_eq(sasl_initial(STP_MECH_XOAUTH2, "u\1auth=x", "tok", out, sizeof out), STP_EINVAL);
  cr_assert_eq(sasl_initial(STP_MECH_AUTO, "u", "p", out, sizeof out), STP_EINVAL);
  cr_assert_eq(sasl_initial(99, "u", "p", out, sizeof out), STP_EINVAL);
  cr_assert_eq(sasl_initial(STP_MECH_PLAIN, NULL, "p", out, sizeof out), STP_EINVAL);
}

Test(sasl, plain_piecewise_encoding_all_length_mixes) {
  /* The encoder streams pieces without a temporary copy; every alignment of
   * user and password against the 3-byte groups must match a one-shot
   * encoding of the assembled message. */
  char user[12], pass[12], raw[32], b64[64], want[96], got[96];
  for (size_t ul = 0; ul < 8; ul++) {
    for (size_t pl = 0; pl < 8; pl++) {
      memset(user, 0, sizeof user);
      memset(pass, 0, sizeof pass);
      for (size_t i = 0; i < ul; i++)
        user[i] = (char)('a' + i);
      for (size_t i = 0; i < pl; i++)
        pass[i] = (char)('Z' - i);
      size_t rl = 0;
      raw[rl++] = '\0';
      memcpy(raw + rl, user, ul);
      rl += ul;
      raw[rl++] = '\0';
      memcpy(raw + rl, pass, pl);
      rl += pl;
      cr_assert_geq(sasl_b64_encode(raw, rl, b64, sizeof b64), 0);
      snprintf(want, sizeof want, "AUTH PLAIN %s\r\n", b64);
      long n = sasl_initial(STP_MECH_PLAIN, user, pass, got, sizeof got);
      cr_assert_eq(n, (long)strlen(want));
      cr_assert_str_eq(got, want, "user %zu pass %zu", ul, pl);
    }
  }
}

Test(sasl, plain_decodes_back_to_fields) {
  char out[128];
  long n = sasl_initial(STP_MECH_PLAIN, "scanner@example.com", "s3cr\xc3\xa9t!", out, sizeof out);
  cr_assert_gt(n, 13);
  cr_assert_eq(memcmp(out + n - 2, "\r\n", 2), 0);
  unsigned char raw[64];
  long r = sasl_b64_decode(out + 11, (size_t)n - 13, raw, sizeof raw);
  static const char want[] = "\0scanner@example.com\0s3cr\xc3\xa9t!";
  cr_assert_eq(r, (long)sizeof want - 1);
  cr_assert_eq(memcmp(raw, want, sizeof want - 1), 0);
}
