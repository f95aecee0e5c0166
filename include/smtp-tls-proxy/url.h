/* url.h - http and https URLs, pure.
 *
 * Owns: the one parser for the URLs the proxy talks to (token endpoints,
 * HTTP API endpoints). Guarantees: no allocation; everything it accepts
 * fits the fixed fields below; user info, fragments, spaces, control and
 * non-ASCII bytes and percent-escapes in the host are refused, so a host
 * is always safe to resolve, to name in TLS and to put in a Host header.
 */
#ifndef STP_URL_H
#define STP_URL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct stp_url {
  bool https;
  char host[256]; /* without brackets for IPv6 literals */
  uint16_t port;
  char path[1024]; /* path and query, at least "/" */
  bool host_is_v6;
} stp_url;

/* "https://host[:port][/path[?query]]" (and "http://" with https false).
 * STP_ESYNTAX for anything else, STP_ETOOLONG when a part does not fit. */
int stp_url_parse(const char *url, stp_url *out);

/* "host", "host:port" or "[v6]:port": the Host header's value, with the
 * port only when it is not the scheme's default. 0, or STP_EFULL. */
int stp_url_authority(const stp_url *u, char *buf, size_t cap);

#endif
