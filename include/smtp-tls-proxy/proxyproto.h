/* proxyproto.h - the PROXY protocol header a load balancer puts before a
 * device's bytes (HAProxy's proxy-protocol.txt, version 1 text and
 * version 2 binary, told apart by their first bytes).
 *
 * Owns: parsing one header from the start of a connection, byte by byte
 * if it arrives so, and the check that a connection from an address not
 * allowed to send one does not start with one. Guarantees: never reads past
 * the header (the bytes after it are the device's and are left to the
 * caller untouched), never holds more than PP_HEADER_MAX bytes, and any
 * sequence that does not match the protocol exactly is refused as soon as
 * it is seen. Pure: no I/O, no allocation.
 */
#ifndef STP_PROXYPROTO_H
#define STP_PROXYPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define PP_V1_MAX 107      /* the spec's longest line, CRLF included */
#define PP_V2_FIXED 16     /* signature, version/command, family, length */
#define PP_V2_LEN_MAX 1024 /* address block and TLVs we take */
#define PP_HEADER_MAX (PP_V2_FIXED + PP_V2_LEN_MAX)

typedef enum { PP_MORE = 0, PP_DONE = 1, PP_BAD = -1 } pp_status;

typedef enum {
  PP_PROXIED, /* src/dst are the device's connection */
  PP_LOCAL,   /* v2 LOCAL: the balancer's own connection (a health check) */
  PP_UNKNOWN  /* v1 UNKNOWN, or v2 with a family or protocol we do not map */
} pp_kind;

typedef struct pp_header {
  int version; /* 1 or 2 */
  pp_kind kind;
  /* PP_PROXIED only: the device's address and the one it connected to
   * (AF_INET or AF_INET6, ports filled in). Otherwise the connection's own
   * endpoints are the client, as the spec says. */
  struct sockaddr_storage src, dst;
  size_t len; /* bytes of the header */
} pp_header;

/* Parse a header at the start of p[0..n): PP_DONE with *out filled (the
 * header is out->len bytes), PP_MORE when p is a proper prefix of a header
 * that could still be valid, PP_BAD with a short reason in *why. */
pp_status pp_parse(const uint8_t *p, size_t n, pp_header *out, const char **why);

/* Incremental reader for bytes as the socket gives them. */
typedef struct pp_reader {
  uint8_t buf[PP_HEADER_MAX];
  size_t n;
  const char *why; /* after PP_BAD */
} pp_reader;

void pp_reader_init(pp_reader *r);
/* Take what belongs to the header from p[0..n). *used is how many bytes
 * of p it took: all of them on PP_MORE; on PP_DONE the rest, p[*used..n),
 * is the first of the device's own bytes. */
pp_status pp_reader_feed(pp_reader *r, const uint8_t *p, size_t n, size_t *used, pp_header *out);
/* Why the header was refused (after PP_BAD). */
const char *pp_reader_error(const pp_reader *r);

typedef enum { PP_SNIFF_NO = 0, PP_SNIFF_MAYBE, PP_SNIFF_YES } pp_sniff_result;
#define PP_SNIFF_MAX 12 /* bytes that decide */
/* Does a connection that begins with p[0..n) begin with a PROXY header
 * (v1 "PROXY " or the v2 signature)? MAYBE while p is a prefix of one. */
pp_sniff_result pp_sniff(const uint8_t *p, size_t n);

#endif
