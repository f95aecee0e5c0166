/* cidr.c - IPv4/IPv6 prefixes: parsing, matching, rendering.
 *
 * Owns: the text form of allow lists and route `client:` conditions.
 * Guarantees: a parsed prefix never has host bits set; matching treats an
 * IPv4 client and the same client seen through a dual-stack socket
 * (::ffff:a.b.c.d) as one address, so the result never depends on how the
 * listener was bound. Pure: inet_pton/inet_ntop only, no sockets.
 */
#include "smtp-tls-proxy/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "smtp-tls-proxy/util.h"

static const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* True when the first `bits` bits of a and b are equal. */
static bool prefix_equal(const uint8_t *a, const uint8_t *b, unsigned bits) {
  unsigned whole = bits / 8, rest = bits % 8;
  if (whole && memcmp(a, b, whole) != 0)
    return false;
  if (rest) {
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    if ((a[whole] & mask) != (b[whole] & mask))
      return false;
  }
  return true;
}

static bool host_bits_clear(const uint8_t *a, unsigned bits, unsigned total) {
  for (unsigned i = bits; i < total; i++)
    if (a[i / 8] & (0x80u >> (i % 8)))
      return false;
  return true;
}

int stp_cidr_parse(const char *s, stp_cidr *out) {
  char addr[INET6_ADDRSTRLEN + 1];
  const char *slash = strchr(s, '/');
  size_t alen = slash ? (size_t)(slash - s) : strlen(s);
  if (alen == 0 || alen >= sizeof addr)
    return STP_ESYNTAX;
  memcpy(addr, s, alen);
  addr[alen] = '\0';

  stp_cidr c;
  memset(&c, 0, sizeof c);
  unsigned maxbits;
  if (inet_pton(AF_INET, addr, c.addr) == 1) {
    c.family = 4;
    maxbits = 32;
  } else if (inet_pton(AF_INET6, addr, c.addr) == 1) {
    c.family = 6;
    maxbits = 128;
  } else {
    return STP_ESYNTAX;
  }

  unsigned bits = maxbits;
  if (slash) {
    /* Digits only: no sign, no spaces, no hex; at most three of them so
     * a long run of digits cannot overflow. */
    const char *p = slash + 1;
    size_t nd = strlen(p);
    if (nd == 0 || nd > 3)
      return STP_ESYNTAX;
    bits = 0;
    for (size_t i = 0; i < nd; i++) {
      if (p[i] < '0' || p[i] > '9')
        return STP_ESYNTAX;
      bits = bits * 10 + (unsigned)(p[i] - '0');
    }
    if (bits > maxbits)
      return STP_ESYNTAX;
  }
  if (!host_bits_clear(c.addr, bits, maxbits))
    return STP_ESYNTAX;
  c.prefix = (uint8_t)bits;
  *out = c;
  return STP_OK;
}

/* The client's address in both forms: v4 (if it is IPv4 or IPv4-mapped)
 * and v6 (native, or ::ffff:a.b.c.d for an IPv4 client). */
static bool client_forms(const struct sockaddr *sa, uint8_t v4[4], bool *has_v4, uint8_t v6[16]) {
  if (!sa)
    return false;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)sa;
    memcpy(v4, &sin->sin_addr, 4);
    *has_v4 = true;
    memcpy(v6, v4mapped_prefix, 12);
    memcpy(v6 + 12, v4, 4);
    return true;
  }
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)sa;
    memcpy(v6, &sin6->sin6_addr, 16);
    *has_v4 = memcmp(v6, v4mapped_prefix, 12) == 0;
    if (*has_v4)
      memcpy(v4, v6 + 12, 4);
    return true;
  }
  return false;
}

bool stp_cidr_match(const stp_cidr *c, const struct sockaddr *sa) {
  uint8_t v4[4], v6[16];
  bool has_v4 = false;
  if (!c || !client_forms(sa, v4, &has_v4, v6))
    return false;
  if (c->family == 4)
    return has_v4 && prefix_equal(c->addr, v4, c->prefix);
  if (c->family == 6)
    return prefix_equal(c->addr, v6, c->prefix);
  return false;
}

bool stp_cidr_match_any(const stp_cidr *list, size_t n, const struct sockaddr *sa) {
  for (size_t i = 0; i < n; i++)
    if (stp_cidr_match(&list[i], sa))
      return true;
  return false;
}

/* IPv4-mapped addresses are rendered as plain dotted quads: logs then show
 * the same client the same way whatever the listener's socket family. */
const char *stp_sockaddr_ip(const struct sockaddr *sa, char *buf, unsigned buflen) {
  uint8_t v4[4], v6[16];
  bool has_v4 = false;
  if (!buf || buflen == 0)
    return buf;
  buf[0] = '\0';
  if (!client_forms(sa, v4, &has_v4, v6)) {
    snprintf(buf, buflen, "unknown");
    return buf;
  }
  const char *r = has_v4 ? inet_ntop(AF_INET, v4, buf, (socklen_t)buflen)
                         : inet_ntop(AF_INET6, v6, buf, (socklen_t)buflen);
  if (!r)
    snprintf(buf, buflen, "?");
  return buf;
}
