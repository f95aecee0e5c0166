/* url.c - http and https URL parsing (see url.h). */
#include "smtp-tls-proxy/url.h"

#include <stdio.h>
#include <string.h>

#include "smtp-tls-proxy/util.h"

static bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
static bool is_alnum(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* "[v6]" at p..aend; *hend is set past the ']'. */
static int parse_v6(const char *p, const char *aend, stp_url *out, const char **hend) {
  const char *rb = memchr(p, ']', (size_t)(aend - p));
  if (!rb || rb == p + 1)
    return STP_ESYNTAX;
  for (const char *q = p + 1; q < rb; q++)
    if (!(is_alnum(*q) || *q == ':' || *q == '.'))
      return STP_ESYNTAX;
  if ((size_t)(rb - p - 1) >= sizeof out->host)
    return STP_ETOOLONG;
  memcpy(out->host, p + 1, (size_t)(rb - p - 1));
  out->host_is_v6 = true;
  *hend = rb + 1;
  return *hend != aend && **hend != ':' ? STP_ESYNTAX : STP_OK;
}

static int parse_name(const char *p, const char *aend, stp_url *out, const char **hend) {
  const char *e = memchr(p, ':', (size_t)(aend - p));
  if (!e)
    e = aend;
  if (e == p)
    return STP_ESYNTAX;
  if ((size_t)(e - p) >= sizeof out->host)
    return STP_ETOOLONG;
  for (const char *q = p; q < e; q++)
    if (!(is_alnum(*q) || *q == '.' || *q == '-' || *q == '_'))
      return STP_ESYNTAX;
  if (*p == '-' || *p == '.')
    return STP_ESYNTAX;
  memcpy(out->host, p, (size_t)(e - p));
  *hend = e;
  return STP_OK;
}

/* ":port" from q (just past the ':') to aend. */
static int parse_port(const char *q, const char *aend, uint16_t *port) {
  unsigned long v = 0;
  if (q == aend)
    return STP_ESYNTAX;
  for (; q < aend; q++) {
    if (!is_digit(*q))
      return STP_ESYNTAX;
    v = v * 10 + (unsigned long)(*q - '0');
    if (v > 65535)
      return STP_ESYNTAX;
  }
  if (v == 0)
    return STP_ESYNTAX;
  *port = (uint16_t)v;
  return STP_OK;
}

int stp_url_parse(const char *url, stp_url *out) {
  memset(out, 0, sizeof *out);
  const char *p;
  if (!stp_ascii_ncasecmp(url, "https://", 8)) {
    out->https = true;
    out->port = 443;
    p = url + 8;
  } else if (!stp_ascii_ncasecmp(url, "http://", 7)) {
    out->port = 80;
    p = url + 7;
  } else {
    return STP_ESYNTAX;
  }
  for (const char *q = url; *q; q++)
    if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f || *q == '#')
      return STP_ESYNTAX;
  size_t alen = strcspn(p, "/?");
  const char *aend = p + alen, *hend;
  if (memchr(p, '@', alen))
    return STP_ESYNTAX; /* no credentials in URLs */
  int rc = *p == '[' ? parse_v6(p, aend, out, &hend) : parse_name(p, aend, out, &hend);
  if (rc == 0 && hend < aend)
    rc = parse_port(hend + 1, aend, &out->port);
  if (rc < 0)
    return rc;
  int n =
      snprintf(out->path, sizeof out->path, "%s%s", *aend == '?' ? "/" : "", *aend ? aend : "/");
  if (n < 0 || (size_t)n >= sizeof out->path)
    return STP_ETOOLONG;
  return STP_OK;
}

int stp_url_authority(const stp_url *u, char *buf, size_t cap) {
  char port[8] = "";
  if (u->port != (u->https ? 443 : 80))
    snprintf(port, sizeof port, ":%u", u->port);
  int n = snprintf(buf, cap, "%s%s%s%s", u->host_is_v6 ? "[" : "", u->host,
                   u->host_is_v6 ? "]" : "", port);
  return n < 0 || (size_t)n >= cap ? STP_EFULL : STP_OK;
}
