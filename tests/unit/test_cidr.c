/* test_cidr.c - prefix parsing, matching (incl. IPv4-mapped), rendering. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "smtp-tls-proxy/cidr.h"
#include "smtp-tls-proxy/util.h"

static struct sockaddr_storage ss;

static const struct sockaddr *addr(const char *ip) {
  memset(&ss, 0, sizeof ss);
  struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1) {
    sin->sin_family = AF_INET;
    sin->sin_port = htons(2525);
  } else {
    cr_assert_eq(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1, "bad test address %s", ip);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(2525);
  }
  return (const struct sockaddr *)&ss;
}

static bool match(const char *cidr, const char *ip) {
  stp_cidr c;
  cr_assert_eq(stp_cidr_parse(cidr, &c), STP_OK, "parse %s", cidr);
  return stp_cidr_match(&c, addr(ip));
}

Test(cidr, parses_ipv4) {
  stp_cidr c;
  cr_assert_eq(stp_cidr_parse("192.168.0.0/16", &c), STP_OK);
  cr_assert_eq(c.family, 4);
  cr_assert_eq(c.prefix, 16);
  cr_assert_eq(c.addr[0], 192);
  cr_assert_eq(c.addr[1], 168);
  cr_assert_eq(c.addr[2], 0);
  cr_assert(match("192.168.0.0/16", "192.168.255.1"));
  cr_assert_not(match("192.168.0.0/16", "192.169.0.1"));
  cr_assert(match("10.0.0.0/8", "10.255.255.255"));
  cr_assert_not(match("10.0.0.0/8", "11.0.0.0"));
}

Test(cidr, parses_ipv6) {
  stp_cidr c;
  cr_assert_eq(stp_cidr_parse("2001:db8::/32", &c), STP_OK);
  cr_assert_eq(c.family, 6);
  cr_assert_eq(c.prefix, 32);
  cr_assert_eq(c.addr[0], 0x20);
  cr_assert_eq(c.addr[1], 0x01);
  cr_assert_eq(c.addr[2], 0x0d);
  cr_assert_eq(c.addr[3], 0xb8);
  cr_assert(match("2001:db8::/32", "2001:db8:1::5"));
  cr_assert_not(match("2001:db8::/32", "2001:db9::5"));
  cr_assert(match("::1/128", "::1"));
  cr_assert_not(match("::1/128", "::2"));
}

Test(cidr, bare_address_is_full_length) {
  stp_cidr c;
  cr_assert_eq(stp_cidr_parse("192.0.2.7", &c), STP_OK);
  cr_assert_eq(c.family, 4);
  cr_assert_eq(c.prefix, 32);
  cr_assert(stp_cidr_match(&c, addr("192.0.2.7")));
  cr_assert_not(stp_cidr_match(&c, addr("192.0.2.8")));
  cr_assert_eq(stp_cidr_parse("2001:db8::7", &c), STP_OK);
  cr_assert_eq(c.family, 6);
  cr_assert_eq(c.prefix, 128);
  cr_assert(stp_cidr_match(&c, addr("2001:db8::7")));
  cr_assert_not(stp_cidr_match(&c, addr("2001:db8::8")));
}

Test(cidr, unaligned_prefixes) {
  cr_assert(match("192.168.2.0/23", "192.168.3.200"));
  cr_assert_not(match("192.168.2.0/23", "192.168.4.1"));
  cr_assert_not(match("192.168.2.0/23", "192.168.1.255"));
  cr_assert(match("10.0.0.128/25", "10.0.0.255"));
  cr_assert_not(match("10.0.0.128/25", "10.0.0.127"));
  cr_assert(match("2001:db8::80/121", "2001:db8::ff"));
  cr_assert_not(match("2001:db8::80/121", "2001:db8::7f"));
}

Test(cidr, zero_prefix) {
  stp_cidr c;
  cr_assert_eq(stp_cidr_parse("0.0.0.0/0", &c), STP_OK);
  cr_assert_eq(c.prefix, 0);
  cr_assert(match("0.0.0.0/0", "203.0.113.9"));
  cr_assert(match("0.0.0.0/0", "::ffff:203.0.113.9"));
  cr_assert_not(match("0.0.0.0/0", "2001:db8::1")); /* all of IPv4 only */
  cr_assert(match("::/0", "2001:db8::1"));
  cr_assert(match("::/0", "::1"));
  /* An IPv4 client is ::ffff:a.b.c.d in IPv6 terms, as on a dual-stack
   * socket: the answer must not depend on how the listener was bound. */
  cr_assert(match("::/0", "203.0.113.9"));
}

Test(cidr, v4_mapped_client_matches_v4_prefix) {
  cr_assert(match("1.2.3.0/24", "::ffff:1.2.3.4"));
  cr_assert(match("1.2.3.4", "::ffff:1.2.3.4"));
  cr_assert_not(match("1.2.3.0/24", "::ffff:1.2.4.4"));
  cr_assert(match("127.0.0.0/8", "::ffff:127.0.0.1"));
  /* ::1.2.3.4 (IPv4-compatible, deprecated) is not an IPv4 client. */
  cr_assert_not(match("1.2.3.0/24", "::1.2.3.4"));
  /* And the other way round: a v6 prefix written in mapped form. */
  cr_assert(match("::ffff:10.0.0.0/104", "10.1.2.3"));
  cr_assert_not(match("::ffff:10.0.0.0/104", "11.1.2.3"));
}

Test(cidr, bad_syntax) {
  static const char *const bad[] = {
      "",
      "/8",
      "10.0.0.0/",
      "10.0.0.0/8/8",
      "10.0.0.0/+8",
      "10.0.0.0/ 8",
      "10.0.0.0 /8",
      " 10.0.0.0/8",
      "10.0.0.0/8 ",
      "10.0.0/8",
      "256.0.0.0/8",
      "010.0.0.0/8",
      "1.2.3.4.5",
      "fe80::1%eth0",
      "fe80::1%eth0/64",
      "2001:db8:::1",
      "10.0.0.0/0x8",
      "10.0.0.0/-1",
      "example.com",
      "10.0.0.0/1000",
      "[::1]/128",
      "::1/",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    stp_cidr c;
    cr_assert_eq(stp_cidr_parse(bad[i], &c), STP_ESYNTAX, "'%s' should be refused", bad[i]);
  }
}

Test(cidr, prefix_too_long) {
  stp_cidr c;
  cr_assert_eq(stp_cidr_parse("10.0.0.0/32", &c), STP_OK);
  cr_assert_eq(stp_cidr_parse("10.0.0.0/33", &c), STP_ESYNTAX);
  cr_assert_eq(stp_cidr_parse("10.0.0.0/128", &c), STP_ESYNTAX);
  cr_assert_eq(stp_cidr_parse("2001:db8::/128", &c), STP_OK);
  cr_assert_eq(stp_cidr_parse("2001:db8::/129", &c), STP_ESYNTAX);
  cr_assert_eq(stp_cidr_parse("2001:db8::/999", &c), STP_ESYNTAX);
}

Test(cidr, host_bits_set_is_an_error) {
  stp_cidr c;
  cr_assert_eq(stp_cidr_parse("10.0.0.1/8", &c), STP_ESYNTAX);
  cr_assert_eq(stp_cidr_parse("192.168.1.0/16", &c), STP_ESYNTAX);
  cr_assert_eq(stp_cidr_parse("10.0.0.129/25", &c), STP_ESYNTAX);
  cr_assert_eq(stp_cidr_parse("2001:db8::1/64", &c), STP_ESYNTAX);
  cr_assert_eq(stp_cidr_parse("1.0.0.0/0", &c), STP_ESYNTAX);
  cr_assert_eq(stp_cidr_parse("10.0.0.128/25", &c), STP_OK);
}

Test(cidr, parse_failure_leaves_output_alone) {
  stp_cidr c = {.family = 9, .prefix = 77};
  cr_assert_eq(stp_cidr_parse("10.0.0.1/8", &c), STP_ESYNTAX);
  cr_assert_eq(c.family, 9);
  cr_assert_eq(c.prefix, 77);
}

Test(cidr, match_any) {
  stp_cidr list[3];
  cr_assert_eq(stp_cidr_parse("192.168.0.0/16", &list[0]), STP_OK);
  cr_assert_eq(stp_cidr_parse("10.0.0.0/8", &list[1]), STP_OK);
  cr_assert_eq(stp_cidr_parse("fd00::/8", &list[2]), STP_OK);
  cr_assert(stp_cidr_match_any(list, 3, addr("10.9.8.7")));
  cr_assert(stp_cidr_match_any(list, 3, addr("fd12::1")));
  cr_assert(stp_cidr_match_any(list, 3, addr("::ffff:192.168.5.5")));
  cr_assert_not(stp_cidr_match_any(list, 3, addr("172.16.0.1")));
  cr_assert_not(stp_cidr_match_any(list, 0, addr("10.9.8.7")));
}

Test(cidr, unknown_family_never_matches) {
  stp_cidr c;
  struct sockaddr_storage un;
  memset(&un, 0, sizeof un);
  un.ss_family = AF_UNIX;
  cr_assert_eq(stp_cidr_parse("::/0", &c), STP_OK);
  cr_assert_not(stp_cidr_match(&c, (const struct sockaddr *)&un));
  cr_assert_not(stp_cidr_match(&c, NULL));
  char buf[64];
  cr_assert_str_eq(stp_sockaddr_ip((const struct sockaddr *)&un, buf, sizeof buf), "unknown");
}

Test(cidr, sockaddr_ip) {
  char buf[INET6_ADDRSTRLEN];
  cr_assert_str_eq(stp_sockaddr_ip(addr("192.0.2.1"), buf, sizeof buf), "192.0.2.1");
  cr_assert_str_eq(stp_sockaddr_ip(addr("2001:db8::1"), buf, sizeof buf), "2001:db8::1");
  /* Mapped clients are logged as the IPv4 address they are. */
  cr_assert_str_eq(stp_sockaddr_ip(addr("::ffff:192.0.2.1"), buf, sizeof buf), "192.0.2.1");
  char tiny[4];
  stp_sockaddr_ip(addr("192.0.2.1"), tiny, sizeof tiny);
  cr_assert_eq(tiny[sizeof tiny - 1], '\0');
}
