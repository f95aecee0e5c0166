/* proxyproto.c - PROXY protocol v1/v2 header parsing (see proxyproto.h).
 *
 * Follows HAProxy's proxy-protocol.txt strictly: v1 fields are checked one
 * by one (one space between them, no leading zeros, ports 0..65535, the
 * line ends in CRLF within 107 bytes, a lone CR or LF is refused); v2 must
 * be version 2 with command LOCAL or PROXY, a known family and protocol,
 * and an address block at least as long as its family needs. TLVs after
 * the addresses are skipped, as the spec allows. LOCAL, UNKNOWN and the
 * families we do not map report the kind so that the caller uses the
 * socket's own endpoints.
 */
#include "smtp-tls-proxy/proxyproto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char v1_sig[6] = "PROXY ";

static size_t min_sz(size_t a, size_t b) {
  return a < b ? a : b;
}

static pp_status bad(const char **why, const char *reason) {
  if (why)
    *why = reason;
  return PP_BAD;
}

/* ---- version 1 -------------------------------------------------------- */

/* A decimal number without leading zeros, at most `max`, ended by `end`.
 * Advances *s past the number and the end character. */
static bool v1_number(const char **s, const char *lim, unsigned max, char end, unsigned *out) {
  const char *p = *s;
  unsigned v = 0;
  size_t digits = 0;
  while (p < lim && *p >= '0' && *p <= '9') {
    if (digits == 1 && v == 0)
      return false; /* leading zero */
    v = v * 10 + (unsigned)(*p - '0');
    if (v > max)
      return false;
    p++;
    digits++;
  }
  if (digits == 0 || p >= lim || *p != end)
    return false;
  *s = p + 1;
  *out = v;
  return true;
}

static bool v1_ipv4(const char **s, const char *lim, struct in_addr *out) {
  uint8_t b[4];
  for (int i = 0; i < 4; i++) {
    unsigned v;
    if (!v1_number(s, lim, 255, i < 3 ? '.' : ' ', &v))
      return false;
    b[i] = (uint8_t)v;
  }
  memcpy(out, b, 4);
  return true;
}

/* Hex groups and colons only (no embedded IPv4 form), then inet_pton. */
static bool v1_ipv6(const char **s, const char *lim, struct in6_addr *out) {
  const char *p = *s;
  char text[40];
  size_t n = 0;
  while (p < lim && *p != ' ') {
    char ch = *p;
    bool ok = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F') ||
              ch == ':';
    if (!ok || n >= sizeof text - 1)
      return false;
    text[n++] = ch;
    p++;
  }
  if (p >= lim)
    return false;
  text[n] = '\0';
  if (inet_pton(AF_INET6, text, out) != 1)
    return false;
  *s = p + 1;
  return true;
}

static void set_v4(struct sockaddr_storage *ss, const struct in_addr *a, unsigned port) {
  struct sockaddr_in *sin = (struct sockaddr_in *)ss;
  memset(ss, 0, sizeof *ss);
  sin->sin_family = AF_INET;
  sin->sin_addr = *a;
  sin->sin_port = htons((uint16_t)port);
}

static void set_v6(struct sockaddr_storage *ss, const struct in6_addr *a, unsigned port) {
  struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
  memset(ss, 0, sizeof *ss);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_addr = *a;
  sin6->sin6_port = htons((uint16_t)port);
}

/* The fields between "PROXY " and the CRLF at line[0..len). */
static pp_status v1_fields(const char *s, const char *lim, pp_header *out, const char **why) {
  if ((size_t)(lim - s) >= 7 && !memcmp(s, "UNKNOWN", 7) && (s + 7 == lim || s[7] == ' ')) {
    out->kind = PP_UNKNOWN; /* the rest of the line is ignored */
    return PP_DONE;
  }
  bool v6;
  if ((size_t)(lim - s) >= 5 && !memcmp(s, "TCP4 ", 5))
    v6 = false;
  else if ((size_t)(lim - s) >= 5 && !memcmp(s, "TCP6 ", 5))
    v6 = true;
  else
    return bad(why, "v1: protocol is not TCP4, TCP6 or UNKNOWN");
  s += 5;
  /* Ports are followed by ' ' and by the end of the line: a sentinel. */
  char tail[16];
  struct in_addr a4[2];
  struct in6_addr a6[2];
  for (int i = 0; i < 2; i++) {
    bool ok = v6 ? v1_ipv6(&s, lim, &a6[i]) : v1_ipv4(&s, lim, &a4[i]);
    if (!ok)
      return bad(why, v6 ? "v1: bad IPv6 address" : "v1: bad IPv4 address");
  }
  unsigned sport, dport;
  size_t rest = (size_t)(lim - s);
  if (rest >= sizeof tail - 1)
    return bad(why, "v1: bad port");
  memcpy(tail, s, rest);
  tail[rest] = '\n';
  const char *t = tail, *tlim = tail + rest + 1;
  if (!v1_number(&t, tlim, 65535, ' ', &sport) || !v1_number(&t, tlim, 65535, '\n', &dport) ||
      t != tlim)
    return bad(why, "v1: bad port");
  out->kind = PP_PROXIED;
  if (v6) {
    set_v6(&out->src, &a6[0], sport);
    set_v6(&out->dst, &a6[1], dport);
  } else {
    set_v4(&out->src, &a4[0], sport);
    set_v4(&out->dst, &a4[1], dport);
  }
  return PP_DONE;
}

static pp_status parse_v1(const uint8_t *p, size_t n, pp_header *out, const char **why) {
  if (memcmp(p, v1_sig, min_sz(n, sizeof v1_sig)))
    return bad(why, "not a PROXY header");
  /* The first CR or LF must be the CRLF that ends the line. */
  /* The CR may stand at index PP_V1_MAX - 2 at the latest. */
  size_t i = sizeof v1_sig;
  while (i < n && i < PP_V1_MAX - 1 && p[i] != '\r' && p[i] != '\n')
    i++;
  if (i >= PP_V1_MAX - 1)
    return bad(why, "v1: no CRLF within 107 bytes");
  if (i >= n)
    return PP_MORE;
  if (p[i] == '\n')
    return bad(why, "v1: line ends in a lone LF");
  if (i + 1 >= n)
    return PP_MORE;
  if (p[i + 1] != '\n')
    return bad(why, "v1: lone CR in the line");
  out->version = 1;
  out->len = i + 2;
  const char *line = (const char *)p;
  return v1_fields(line + sizeof v1_sig, line + i, out, why);
}

/* ---- version 2 -------------------------------------------------------- */

static pp_status parse_v2(const uint8_t *p, size_t n, pp_header *out, const char **why) {
  if (memcmp(p, v2_sig, min_sz(n, sizeof v2_sig)))
    return bad(why, "not a PROXY header");
  if (n > 12 && (p[12] >> 4) != 2)
    return bad(why, "v2: version is not 2");
  if (n > 12 && (p[12] & 0x0F) > 1)
    return bad(why, "v2: command is neither LOCAL nor PROXY");
  if (n > 13 && ((p[13] >> 4) > 3 || (p[13] & 0x0F) > 2))
    return bad(why, "v2: unknown address family or protocol");
  if (n < PP_V2_FIXED)
    return PP_MORE;
  size_t len = (size_t)p[14] << 8 | p[15];
  if (len > PP_V2_LEN_MAX)
    return bad(why, "v2: header longer than 1040 bytes");
  if (n < PP_V2_FIXED + len)
    return PP_MORE;
  out->version = 2;
  out->len = PP_V2_FIXED + len;
  const uint8_t *a = p + PP_V2_FIXED;
  if ((p[12] & 0x0F) == 0) {
    out->kind = PP_LOCAL; /* the address block, if any, is ignored */
    return PP_DONE;
  }
  if (p[13] == 0x11) { /* TCP over IPv4 */
    if (len < 12)
      return bad(why, "v2: IPv4 address block too short");
    struct in_addr s4, d4;
    memcpy(&s4, a, 4);
    memcpy(&d4, a + 4, 4);
    set_v4(&out->src, &s4, (unsigned)a[8] << 8 | a[9]);
    set_v4(&out->dst, &d4, (unsigned)a[10] << 8 | a[11]);
  } else if (p[13] == 0x21) { /* TCP over IPv6 */
    if (len < 36)
      return bad(why, "v2: IPv6 address block too short");
    struct in6_addr s6, d6;
    memcpy(&s6, a, 16);
    memcpy(&d6, a + 16, 16);
    set_v6(&out->src, &s6, (unsigned)a[32] << 8 | a[33]);
    set_v6(&out->dst, &d6, (unsigned)a[34] << 8 | a[35]);
  } else {
    /* UNSPEC, UDP, UNIX: valid, but no TCP client address to take. */
    out->kind = PP_UNKNOWN;
    return PP_DONE;
  }
  out->kind = PP_PROXIED;
  return PP_DONE;
}

pp_status pp_parse(const uint8_t *p, size_t n, pp_header *out, const char **why) {
  memset(out, 0, sizeof *out);
  if (n == 0)
    return PP_MORE;
  if (p[0] == v2_sig[0])
    return parse_v2(p, n, out, why);
  return parse_v1(p, n, out, why);
}

/* ---- incremental reader ----------------------------------------------- */

void pp_reader_init(pp_reader *r) {
  r->n = 0;
  r->why = NULL;
}

const char *pp_reader_error(const pp_reader *r) {
  return r->why ? r->why : "";
}

/* How many of p[0..n) may belong to the header given what is buffered:
 * never a byte past its end. v1 ends at the first LF; v2's length is
 * known after 16 bytes; before the version is known, one byte at a time. */
static size_t header_take(const pp_reader *r, const uint8_t *p, size_t n) {
  if (r->n == 0)
    return 1;
  if (r->buf[0] == v2_sig[0]) {
    if (r->n < PP_V2_FIXED)
      return min_sz(n, PP_V2_FIXED - r->n);
    size_t total = PP_V2_FIXED + ((size_t)r->buf[14] << 8 | r->buf[15]);
    return min_sz(n, total - r->n);
  }
  size_t room = PP_V1_MAX - r->n, i = 0;
  while (i < n && i < room && p[i] != '\n')
    i++;
  return i < n && i < room ? i + 1 : min_sz(n, room);
}

pp_status pp_reader_feed(pp_reader *r, const uint8_t *p, size_t n, size_t *used, pp_header *out) {
  size_t i = 0;
  *used = 0;
  if (r->why)
    return PP_BAD;
  while (i < n) {
    size_t take = header_take(r, p + i, n - i);
    memcpy(r->buf + r->n, p + i, take);
    r->n += take;
    i += take;
    *used = i;
    pp_status st = pp_parse(r->buf, r->n, out, &r->why);
    if (st == PP_BAD && !r->why)
      r->why = "bad header";
    if (st != PP_MORE)
      return st;
  }
  return PP_MORE;
}

/* ---- headers where none is allowed ------------------------------------ */

pp_sniff_result pp_sniff(const uint8_t *p, size_t n) {
  size_t n1 = min_sz(n, sizeof v1_sig), n2 = min_sz(n, sizeof v2_sig);
  if (!memcmp(p, v1_sig, n1))
    return n1 == sizeof v1_sig ? PP_SNIFF_YES : PP_SNIFF_MAYBE;
  if (!memcmp(p, v2_sig, n2))
    return n2 == sizeof v2_sig ? PP_SNIFF_YES : PP_SNIFF_MAYBE;
  return PP_SNIFF_NO;
}
