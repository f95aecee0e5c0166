/* test_util.c - bounded buffers, glob matching, error strings. */
#include <criterion/criterion.h>
#include <string.h>
#include <uv.h> /* only its error table: the codes must not collide */

#include "smtp-tls-proxy/util.h"

Test(util, buf_respects_capacity) {
  stp_buf b;
  stp_buf_init(&b, 8);
  cr_assert_eq(stp_buf_append(&b, "12345", 5), STP_OK);
  cr_assert_eq(stp_buf_append(&b, "6789", 4), STP_EFULL);
  cr_assert_eq(b.len, 5);
  cr_assert_eq(stp_buf_append(&b, "678", 3), STP_OK);
  cr_assert_eq(memcmp(b.data, "12345678", 8), 0);
  stp_buf_consume(&b, 3);
  cr_assert_eq(b.len, 5);
  cr_assert_eq(memcmp(b.data, "45678", 5), 0);
  stp_buf_free(&b);
}

Test(util, buf_appendf_refuses_truncation) {
  stp_buf b;
  stp_buf_init(&b, 6);
  cr_assert_eq(stp_buf_appendf(&b, "%d", 12345), STP_OK);
  cr_assert_eq(stp_buf_appendf(&b, "%d", 67), STP_EFULL);
  cr_assert_eq(b.len, 5);
  stp_buf_free(&b);
}

Test(util, glob) {
  cr_assert(stp_glob_match("*@example.com", "Scan@EXAMPLE.com"));
  cr_assert(stp_glob_match("*", ""));
  cr_assert(stp_glob_match("a?c", "abc"));
  cr_assert_not(stp_glob_match("*@example.com", "a@example.com.evil"));
  cr_assert_not(stp_glob_match("*@scanner.local", "x@notscanner.local.org"));
  cr_assert(stp_glob_match("*@*.local", "x@a.b.local"));
  cr_assert_not(stp_glob_match("a*b*c", "aXbY"));
}

Test(util, strerror_table) {
  cr_assert_str_eq(stp_strerror(STP_OK), "ok");
  cr_assert_str_eq(stp_strerror(STP_EFULL), "buffer full");
  cr_assert_str_eq(stp_strerror(-999), "unknown error");
}

/* One error scheme: every STP_* code means one thing, and none of them can
 * be mistaken for a libuv code that leaked through an int (STP_ENOMEM used
 * to be -1, which is UV_EPERM; STP_EIO was -10, UV_ECHILD). */
Test(util, error_codes_are_unique_and_apart_from_libuv) {
  static const int stp[] = {
#define STP_ERR_VAL(name, val, str) val,
      STP_ERRORS(STP_ERR_VAL)
#undef STP_ERR_VAL
  };
  static const int uv[] = {
#define UV_ERR_VAL(name, str) UV_##name,
      UV_ERRNO_MAP(UV_ERR_VAL)
#undef UV_ERR_VAL
  };
  size_t n = sizeof stp / sizeof *stp, m = sizeof uv / sizeof *uv;
  cr_assert_gt(m, 50, "libuv's error table looks empty");
  for (size_t i = 0; i < n; i++) {
    for (size_t j = i + 1; j < n; j++)
      cr_assert_neq(stp[i], stp[j], "two STP codes share the value %d", stp[i]);
    for (size_t j = 0; j < m && stp[i] != 0; j++)
      cr_assert_neq(stp[i], uv[j], "STP code %d is also a libuv code", stp[i]);
    cr_assert_str_neq(stp_strerror(stp[i]), "unknown error");
  }
}

/* The one UTF-8 decoder (metrics labels, admin escaping, queue output). */
Test(util, utf8_seq_takes_only_rfc3629_sequences) {
  uint32_t cp = 0;
  cr_assert_eq(stp_utf8_seq((const unsigned char *)"\xC3\xA9", 2, &cp), 2);
  cr_assert_eq(cp, 0xE9u);
  cr_assert_eq(stp_utf8_seq((const unsigned char *)"\xE2\x82\xAC", 3, &cp), 3);
  cr_assert_eq(cp, 0x20ACu);
  cr_assert_eq(stp_utf8_seq((const unsigned char *)"\xF0\x9F\x93\xA0", 4, &cp), 4);
  cr_assert_eq(cp, 0x1F4E0u);
  cr_assert_eq(stp_utf8_seq((const unsigned char *)"\xC2\x85", 2, NULL), 2, "C1 is valid UTF-8");
  static const char *const bad[] = {
      "A",                /* ASCII is no multi-byte sequence */
      "\xC0\xAF",         /* overlong */
      "\xE0\x80\xAF",     /* overlong */
      "\xED\xA0\x80",     /* surrogate */
      "\xF4\x90\x80\x80", /* past U+10FFFF */
      "\xF5\x80\x80\x80", /* no such lead byte */
      "\x80",             /* a lone continuation */
      "\xE2\x82",         /* cut short */
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    cr_expect_eq(stp_utf8_seq((const unsigned char *)bad[i], strlen(bad[i]), NULL), 0, "case %zu",
                 i);
}
