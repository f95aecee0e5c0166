/* cidr.h - IPv4/IPv6 prefixes for allow lists and route matching.
 * Owns: parsing "a.b.c.d/n", "x::y/n" and bare addresses (full-length
 * prefix), and matching a socket address against a prefix. IPv4-mapped
 * IPv6 client addresses (::ffff:a.b.c.d) match IPv4 prefixes. Pure. */
#ifndef STP_CIDR_H
#define STP_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sockaddr;

typedef struct stp_cidr {
  uint8_t addr[16]; /* network byte order; IPv4 uses the first 4 bytes */
  uint8_t family;   /* 4 or 6 */
  uint8_t prefix;   /* 0..32 or 0..128 */
} stp_cidr;

/* 0 or STP_ESYNTAX. Host bits set beyond the prefix are an error
 * ("10.0.0.1/8" is almost always a typo for a host). */
int stp_cidr_parse(const char *s, stp_cidr *out);
bool stp_cidr_match(const stp_cidr *c, const struct sockaddr *sa);
bool stp_cidr_match_any(const stp_cidr *list, size_t n, const struct sockaddr *sa);
/* Render the socket address's IP as text (no port) into buf. */
const char *stp_sockaddr_ip(const struct sockaddr *sa, char *buf, unsigned buflen);

#endif
