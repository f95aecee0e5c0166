/* test_url.c - http and https URLs: defaults, ports, IPv6 literals,
 * queries, every refusal, the bounds of host and path, and the Host
 * header's authority. */
#include <criterion/criterion.h>
#include <string.h>

#include "smtp-tls-proxy/url.h"
#include "smtp-tls-proxy/util.h"

Test(url, https_default_port_and_path) {
  stp_url u;
  cr_assert_eq(stp_url_parse("https://oauth2.googleapis.com/token", &u), 0);
  cr_assert(u.https);
  cr_assert_str_eq(u.host, "oauth2.googleapis.com");
  cr_assert_eq(u.port, 443);
  cr_assert_str_eq(u.path, "/token");
  cr_assert_eq(stp_url_parse("https://127.0.0.1:8443", &u), 0);
  cr_assert_eq(u.port, 8443);
  cr_assert_str_eq(u.path, "/");
  cr_assert_eq(stp_url_parse("HTTPS://[::1]:9/t?x=1", &u), 0);
  cr_assert(u.host_is_v6);
  cr_assert_str_eq(u.host, "::1");
  cr_assert_str_eq(u.path, "/t?x=1");
  cr_assert_eq(stp_url_parse("https://h?q", &u), 0);
  cr_assert_str_eq(u.path, "/?q");
  cr_assert_eq(stp_url_parse("http://h/x", &u), 0);
  cr_assert(!u.https);
  cr_assert_eq(u.port, 80);
}

Test(url, refusals) {
  static const char *const bad[] = {"ftp://h/",
                                    "https://",
                                    "https:///x",
                                    "https://user:pw@h/",
                                    "https://h/#frag",
                                    "https://h:0/",
                                    "https://h:65536/",
                                    "https://h:/",
                                    "https://h:8x/",
                                    "https://h /",
                                    "https://h/a b",
                                    "https://[::1/",
                                    "https://[]/",
                                    "https://-h/",
                                    "https://h\x01/",
                                    "https://[::1]x/",
                                    "https://h%41/",
                                    "//h/",
                                    ""};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    stp_url u;
    cr_assert_lt(stp_url_parse(bad[i], &u), 0, "accepted %s", bad[i]);
  }
}

Test(url, bounds_of_host_and_path) {
  char s[2200];
  stp_url u;
  memset(s, 0, sizeof s);
  memcpy(s, "https://", 8);
  memset(s + 8, 'h', 255);
  cr_assert_eq(stp_url_parse(s, &u), 0, "a 255-byte host fits");
  s[8 + 255] = 'h';
  cr_assert_eq(stp_url_parse(s, &u), STP_ETOOLONG);
  memset(s, 0, sizeof s);
  memcpy(s, "https://h/", 10);
  memset(s + 10, 'p', 1022);
  cr_assert_eq(stp_url_parse(s, &u), 0, "a 1023-byte path fits");
  s[10 + 1022] = 'p';
  cr_assert_eq(stp_url_parse(s, &u), STP_ETOOLONG);
}

Test(url, authority_for_the_host_header) {
  stp_url u;
  char a[300];
  cr_assert_eq(stp_url_parse("https://login.example/t", &u), 0);
  cr_assert_eq(stp_url_authority(&u, a, sizeof a), 0);
  cr_assert_str_eq(a, "login.example");
  cr_assert_eq(stp_url_parse("https://login.example:8443/t", &u), 0);
  cr_assert_eq(stp_url_authority(&u, a, sizeof a), 0);
  cr_assert_str_eq(a, "login.example:8443");
  cr_assert_eq(stp_url_parse("http://[::1]:80/", &u), 0);
  cr_assert_eq(stp_url_authority(&u, a, sizeof a), 0);
  cr_assert_str_eq(a, "[::1]");
  cr_assert_eq(stp_url_parse("https://[::1]:80/", &u), 0);
  cr_assert_eq(stp_url_authority(&u, a, sizeof a), 0);
  cr_assert_str_eq(a, "[::1]:80");
  cr_assert_eq(stp_url_authority(&u, a, 5), STP_EFULL);
}
