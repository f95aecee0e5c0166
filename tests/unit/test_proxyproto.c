/* test_proxyproto.c - PROXY protocol v1/v2 headers: every example of
 * HAProxy's proxy-protocol.txt, LOCAL and UNKNOWN, garbage, truncated and
 * oversized headers, TLVs skipped, the reader fed one byte at a time, and
 * the sniff for headers from addresses that may not send one. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <string.h>

#include "smtp-tls-proxy/proxyproto.h"

#define SIG "\r\n\r\n\0\r\nQUIT\n"

static pp_header h;
static const char *why;

static pp_status parse_s(const char *s) {
  why = NULL;
  return pp_parse((const uint8_t *)s, strlen(s), &h, &why);
}

static pp_status parse_b(const void *p, size_t n) {
  why = NULL;
  return pp_parse(p, n, &h, &why);
}

static const char *ip_of(const struct sockaddr_storage *ss, unsigned *port) {
  static char buf[64];
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    *port = ntohs(a->sin_port);
    return inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
  }
  const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
  *port = ntohs(a->sin6_port);
  return inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
}

static void expect_src(const char *ip, unsigned port) {
  unsigned got;
  cr_assert_eq(h.kind, PP_PROXIED);
  cr_assert_str_eq(ip_of(&h.src, &got), ip);
  cr_assert_eq(got, port);
}

static void expect_dst(const char *ip, unsigned port) {
  unsigned got;
  cr_assert_str_eq(ip_of(&h.dst, &got), ip);
  cr_assert_eq(got, port);
}

/* ---- version 1: the spec's examples -------------------------------------- */

Test(proxyproto, v1_spec_example_before_data) {
  const char *s = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n";
  cr_assert_eq(parse_s(s), PP_DONE);
  cr_assert_eq(h.version, 1);
  cr_assert_eq(h.len, strlen("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"));
  expect_src("192.168.0.1", 56324);
  expect_dst("192.168.0.11", 443);
}

Test(proxyproto, v1_spec_longest_lines) {
  const char *v4 = "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
  cr_assert_eq(strlen(v4), 56);
  cr_assert_eq(parse_s(v4), PP_DONE);
  expect_src("255.255.255.255", 65535);
  const char *v6 = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                   "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
  cr_assert_eq(strlen(v6), 104);
  cr_assert_eq(parse_s(v6), PP_DONE);
  cr_assert_eq(h.len, 104);
  expect_src("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
  const char *worst = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
  cr_assert_eq(strlen(worst), PP_V1_MAX);
  cr_assert_eq(parse_s(worst), PP_DONE);
  cr_assert_eq(h.kind, PP_UNKNOWN);
  cr_assert_eq(h.len, 107);
}

Test(proxyproto, v1_unknown_short_and_ignored_rest) {
  cr_assert_eq(parse_s("PROXY UNKNOWN\r\nEHLO x\r\n"), PP_DONE);
  cr_assert_eq(h.kind, PP_UNKNOWN);
  cr_assert_eq(h.len, 15);
  /* "the receiver must ignore anything presented before the CRLF" */
  cr_assert_eq(parse_s("PROXY UNKNOWN whatever 1.2.3 zz\r\n"), PP_DONE);
  cr_assert_eq(h.kind, PP_UNKNOWN);
  cr_assert_eq(parse_s("PROXY UNKNOWNX\r\n"), PP_BAD);
}

Test(proxyproto, v1_ipv6_compressed_and_mixed_case) {
  cr_assert_eq(parse_s("PROXY TCP6 2001:DB8::1 ::1 1234 25\r\n"), PP_DONE);
  expect_src("2001:db8::1", 1234);
  expect_dst("::1", 25);
  cr_assert_eq(parse_s("PROXY TCP4 0.0.0.0 10.0.0.1 0 25\r\n"), PP_DONE);
  expect_src("0.0.0.0", 0);
}

Test(proxyproto, v1_exactness) {
  const char *bad[] = {
      "PROXY TCP4 192.168.0.01 10.0.0.1 1 25\r\n",   /* leading zero */
      "PROXY TCP4 192.168.0.1 10.0.0.1 01 25\r\n",   /* leading zero in a port */
      "PROXY TCP4 192.168.0.1 10.0.0.1 1 65536\r\n", /* port range */
      "PROXY TCP4 256.1.1.1 10.0.0.1 1 25\r\n",      /* octet range */
      "PROXY TCP4 1.1.1 10.0.0.1 1 25\r\n",          /* three octets */
      "PROXY TCP4 1.1.1.1  10.0.0.1 1 25\r\n",       /* two spaces */
      "PROXY  TCP4 1.1.1.1 10.0.0.1 1 25\r\n",
      "PROXY TCP4 1.1.1.1 10.0.0.1 1 25 \r\n", /* trailing space */
      "PROXY TCP4 1.1.1.1 10.0.0.1 1\r\n",     /* one port */
      "PROXY TCP4 ::1 ::1 1 25\r\n",           /* family mismatch */
      "PROXY TCP6 1.1.1.1 ::1 1 25\r\n",
      "PROXY TCP6 ::ffff:1.1.1.1 ::1 1 25\r\n", /* no dotted form in v6 */
      "PROXY TCP6 1::2::3 ::1 1 25\r\n",
      "PROXY UDP4 1.1.1.1 10.0.0.1 1 25\r\n",
      "PROXY tcp4 1.1.1.1 10.0.0.1 1 25\r\n",
      "PROXY TCP4 1.1.1.1 10.0.0.1 1 25\n",    /* lone LF */
      "PROXY TCP4 1.1.1.1 10.0.0.1 1 25\rX\n", /* lone CR */
      "PROXY TCP4 1.1.1.1\r10.0.0.1 1 25\r\n",
      "proxy TCP4 1.1.1.1 10.0.0.1 1 25\r\n",
      "PROXY\r\n",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    cr_expect_eq(parse_s(bad[i]), PP_BAD, "accepted: %s", bad[i]);
    cr_expect(why && *why, "no reason for %s", bad[i]);
  }
}

Test(proxyproto, v1_oversized_line) {
  char line[200];
  memset(line, 'x', sizeof line);
  memcpy(line, "PROXY UNKNOWN ", 14);
  /* CR at index 106: the line would be 108 bytes. */
  line[106] = '\r';
  line[107] = '\n';
  cr_assert_eq(parse_b(line, 108), PP_BAD);
  cr_assert_str_eq(why, "v1: no CRLF within 107 bytes");
  /* 106 bytes without a CR are enough to refuse: CRLF no longer fits. */
  cr_assert_eq(parse_b(line, 105), PP_MORE);
  cr_assert_eq(parse_b(line, 106), PP_BAD);
}

Test(proxyproto, v1_truncated_is_more) {
  const char *s = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
  for (size_t k = 0; k < strlen(s); k++)
    cr_assert_eq(parse_b(s, k), PP_MORE, "prefix of %zu bytes", k);
}

/* ---- version 2 ------------------------------------------------------------ */

static size_t v2(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const uint8_t *addr, size_t len) {
  memcpy(out, SIG, 12);
  out[12] = ver_cmd;
  out[13] = fam;
  out[14] = (uint8_t)(len >> 8);
  out[15] = (uint8_t)len;
  if (len)
    memcpy(out + 16, addr, len);
  return 16 + len;
}

static const uint8_t tcp4_block[12] = {192, 168, 0, 1, 192, 168, 0, 11, 0xdc, 0x04, 0x01, 0xbb};

Test(proxyproto, v2_tcp4) {
  uint8_t b[64];
  size_t n = v2(b, 0x21, 0x11, tcp4_block, 12);
  memcpy(b + n, "EHLO", 4); /* the device's bytes follow */
  cr_assert_eq(parse_b(b, n + 4), PP_DONE);
  cr_assert_eq(h.version, 2);
  cr_assert_eq(h.len, 28);
  expect_src("192.168.0.1", 56324);
  expect_dst("192.168.0.11", 443);
}

Test(proxyproto, v2_tcp6) {
  uint8_t a[36] = {0x20, 0x01, 0x0d, 0xb8};
  a[15] = 1;
  a[16] = 0x20;
  a[17] = 0x01;
  a[18] = 0x0d;
  a[19] = 0xb8;
  a[31] = 2;
  a[32] = 0x04;
  a[33] = 0xd2;
  a[35] = 25;
  uint8_t b[64];
  size_t n = v2(b, 0x21, 0x21, a, 36);
  cr_assert_eq(parse_b(b, n), PP_DONE);
  expect_src("2001:db8::1", 1234);
  expect_dst("2001:db8::2", 25);
}

Test(proxyproto, v2_tlvs_skipped) {
  uint8_t a[12 + 3 + 5 + 3 + 128];
  memcpy(a, tcp4_block, 12);
  uint8_t *t = a + 12;
  *t++ = 0x02; /* AUTHORITY */
  *t++ = 0;
  *t++ = 5;
  memcpy(t, "a.com", 5);
  t += 5;
  *t++ = 0x05; /* UNIQUE_ID */
  *t++ = 0;
  *t++ = 128;
  memset(t, 0xff, 128);
  uint8_t b[256];
  size_t n = v2(b, 0x21, 0x11, a, sizeof a);
  cr_assert_eq(parse_b(b, n), PP_DONE);
  cr_assert_eq(h.len, n);
  expect_src("192.168.0.1", 56324);
}

Test(proxyproto, v2_local_ignores_addresses) {
  uint8_t b[64];
  size_t n = v2(b, 0x20, 0x00, NULL, 0);
  cr_assert_eq(parse_b(b, n), PP_DONE);
  cr_assert_eq(h.kind, PP_LOCAL);
  cr_assert_eq(h.len, 16);
  /* "must not assume zero is presented for LOCAL connections" */
  n = v2(b, 0x20, 0x11, tcp4_block, 12);
  cr_assert_eq(parse_b(b, n), PP_DONE);
  cr_assert_eq(h.kind, PP_LOCAL);
  cr_assert_eq(h.len, 28);
}

Test(proxyproto, v2_unspec_udp_unix_use_the_socket) {
  uint8_t b[300], a[216] = {0};
  uint8_t fams[] = {0x00, 0x12, 0x22, 0x31, 0x32, 0x10, 0x01};
  for (size_t i = 0; i < sizeof fams; i++) {
    size_t n = v2(b, 0x21, fams[i], a, fams[i] >> 4 == 3 ? 216 : 36);
    cr_expect_eq(parse_b(b, n), PP_DONE, "family 0x%02x", fams[i]);
    cr_expect_eq(h.kind, PP_UNKNOWN, "family 0x%02x", fams[i]);
  }
}

Test(proxyproto, v2_invalid_fields) {
  uint8_t b[64];
  size_t n = v2(b, 0x11, 0x11, tcp4_block, 12); /* version 1 in a v2 header */
  cr_assert_eq(parse_b(b, n), PP_BAD);
  cr_assert_eq(parse_b(b, 13), PP_BAD, "refused as soon as the version is seen");
  n = v2(b, 0x22, 0x11, tcp4_block, 12); /* command 2 */
  cr_assert_eq(parse_b(b, n), PP_BAD);
  n = v2(b, 0x21, 0x41, tcp4_block, 12); /* family 4 */
  cr_assert_eq(parse_b(b, n), PP_BAD);
  n = v2(b, 0x21, 0x13, tcp4_block, 12); /* protocol 3 */
  cr_assert_eq(parse_b(b, n), PP_BAD);
  n = v2(b, 0x21, 0x11, tcp4_block, 11); /* block shorter than IPv4 needs */
  cr_assert_eq(parse_b(b, n), PP_BAD);
  n = v2(b, 0x21, 0x21, tcp4_block, 12); /* shorter than IPv6 needs */
  cr_assert_eq(parse_b(b, n), PP_BAD);
  uint8_t sig[16];
  memcpy(sig, SIG, 12);
  sig[3] = 'X';
  cr_assert_eq(parse_b(sig, 4), PP_BAD, "a wrong signature byte is enough");
}

Test(proxyproto, v2_length_bound) {
  static uint8_t b[16 + 2000];
  static const uint8_t big[2000];
  size_t n = v2(b, 0x21, 0x11, big, PP_V2_LEN_MAX);
  cr_assert_eq(parse_b(b, n), PP_DONE);
  n = v2(b, 0x21, 0x11, big, PP_V2_LEN_MAX + 1);
  cr_assert_eq(parse_b(b, 16), PP_BAD, "an oversized length is refused before its bytes");
  cr_assert_eq(parse_b(b, n), PP_BAD);
}

Test(proxyproto, v2_truncated_is_more) {
  uint8_t b[64];
  size_t n = v2(b, 0x21, 0x11, tcp4_block, 12);
  for (size_t k = 0; k < n; k++)
    cr_assert_eq(parse_b(b, k), PP_MORE, "prefix of %zu bytes", k);
}

Test(proxyproto, garbage) {
  const char *g[] = {"EHLO printer\r\n", "GET / HTTP/1.1\r\n", "\x16\x03\x01\x02\x00", "P\r\n",
                     "\r\n\r\nQUIT"};
  for (size_t i = 0; i < sizeof g / sizeof *g; i++)
    cr_expect_eq(parse_s(g[i]), PP_BAD, "accepted %s", g[i]);
}

/* ---- the reader: byte by byte, and never a byte past the header ----------- */

static void read_all(const uint8_t *p, size_t n, size_t chunk, pp_status want, size_t want_used) {
  static pp_reader r;
  pp_reader_init(&r);
  size_t off = 0, used;
  pp_status st = PP_MORE;
  while (off < n && st == PP_MORE) {
    size_t k = n - off < chunk ? n - off : chunk;
    st = pp_reader_feed(&r, p + off, k, &used, &h);
    off += used;
  }
  cr_assert_eq(st, want, "chunk %zu", chunk);
  if (want == PP_DONE)
    cr_assert_eq(off, want_used, "chunk %zu took %zu bytes, header is %zu", chunk, off, want_used);
  if (want == PP_BAD)
    cr_assert(*pp_reader_error(&r));
}

Test(proxyproto, reader_stops_at_header_end) {
  const char *s = "PROXY TCP4 10.1.2.3 10.0.0.1 5000 25\r\nEHLO printer\r\n";
  size_t hl = strlen("PROXY TCP4 10.1.2.3 10.0.0.1 5000 25\r\n");
  for (size_t chunk = 1; chunk <= strlen(s); chunk++)
    read_all((const uint8_t *)s, strlen(s), chunk, PP_DONE, hl);
  expect_src("10.1.2.3", 5000);
  /* The short UNKNOWN form: 15 bytes, the 16th is the device's. */
  read_all((const uint8_t *)"PROXY UNKNOWN\r\nX", 16, 16, PP_DONE, 15);
  uint8_t b[64];
  size_t n = v2(b, 0x21, 0x11, tcp4_block, 12);
  memcpy(b + n, "\x16\x03\x01", 3); /* a TLS ClientHello right behind it */
  for (size_t chunk = 1; chunk <= n + 3; chunk++)
    read_all(b, n + 3, chunk, PP_DONE, n);
}

Test(proxyproto, reader_refuses) {
  read_all((const uint8_t *)"EHLO x\r\n", 8, 8, PP_BAD, 0);
  char line[300];
  memset(line, '1', sizeof line);
  memcpy(line, "PROXY UNKNOWN ", 14);
  read_all((const uint8_t *)line, sizeof line, 64, PP_BAD, 0);
  read_all((const uint8_t *)line, sizeof line, 1, PP_BAD, 0);
  static pp_reader r;
  pp_reader_init(&r);
  size_t used;
  cr_assert_eq(pp_reader_feed(&r, (const uint8_t *)"X", 1, &used, &h), PP_BAD);
  cr_assert_eq(pp_reader_feed(&r, (const uint8_t *)"PROXY", 5, &used, &h), PP_BAD, "stays refused");
}

/* ---- headers where none may come ---------------------------------------------- */

Test(proxyproto, sniff) {
  cr_assert_eq(pp_sniff((const uint8_t *)"PROXY TCP4", 10), PP_SNIFF_YES);
  cr_assert_eq(pp_sniff((const uint8_t *)"PROX", 4), PP_SNIFF_MAYBE);
  cr_assert_eq(pp_sniff((const uint8_t *)SIG, 12), PP_SNIFF_YES);
  cr_assert_eq(pp_sniff((const uint8_t *)SIG, 5), PP_SNIFF_MAYBE);
  cr_assert_eq(pp_sniff((const uint8_t *)"EHLO x\r\n", 8), PP_SNIFF_NO);
  cr_assert_eq(pp_sniff((const uint8_t *)"PROXYX", 6), PP_SNIFF_NO);
  cr_assert_eq(pp_sniff((const uint8_t *)"\r\nEHLO", 6), PP_SNIFF_NO);
}
