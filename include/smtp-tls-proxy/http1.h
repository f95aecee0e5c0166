/* http1.h - the HTTP/1.1 codec, pure: request heads in (the metrics
 * server), requests out and responses in (the HTTP client).
 *
 * Owns: every HTTP/1.x byte the proxy parses or writes. Guarantees: no
 * sockets, no event loop; every input is bounded (a request head by the
 * caller's max, a response as a whole - status line, headers, chunk framing,
 * trailers and body - by the parser's max, one line by HTTP1_LINE_MAX) and a
 * bound is an error, never a reallocation; the response parser gives the
 * same result however its input is split; header names and values that
 * could smuggle a line break are refused both ways; response memory is
 * wiped when freed (bodies carry tokens).
 */
#ifndef STP_HTTP1_H
#define STP_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtp-tls-proxy/url.h"
#include "smtp-tls-proxy/util.h"

#define HTTP1_LINE_MAX 8192            /* one status, header, chunk or trailer line */
#define HTTP1_RESPONSE_MAX (64 * 1024) /* the client's default bound */

/* ---- request heads (server side) --------------------------------------- */

typedef struct http1_request {
  const char *method; /* points into the parsed buffer, not NUL-terminated */
  size_t method_len;
  const char *target;
  size_t target_len;
  int minor;       /* HTTP/1.<minor>: 0 or 1 */
  size_t head_len; /* bytes up to and including the empty line */
} http1_request;

/* Parse a request head from buf[0..len). Returns STP_OK (head complete),
 * STP_EAGAIN (need more bytes, len < max), STP_ETOOLONG (no end of head in
 * the first max bytes), or STP_ESYNTAX (bad request line or a control byte
 * in the head). Lines may end in CRLF or LF; empty lines before the request
 * line are skipped. */
int http1_parse_request(const char *buf, size_t len, size_t max, http1_request *out);

/* ---- requests (client side) -------------------------------------------- */

typedef struct http1_header {
  const char *name;
  const char *value;
} http1_header;

/* Append "METHOD path HTTP/1.1", Host (from u), User-Agent (unless given),
 * the caller's headers, Content-Length when content_length >= 0 and
 * "Connection: close" unless keep_alive, then the empty line. STP_EINVAL
 * for a method or header name that is not a token, a value with a control
 * byte, or a header the codec owns (Host, Content-Length,
 * Transfer-Encoding, Connection); STP_EFULL past the buffer's bound. On
 * failure the buffer is as it was. */
int http1_write_request(stp_buf *b, const char *method, const stp_url *u, const http1_header *h,
                        size_t n, int64_t content_length, bool keep_alive);

/* ---- responses (client side) ------------------------------------------- */

typedef struct http1_response {
  /* the caller's settings */
  size_t max;   /* bound of the whole response, interim ones included */
  bool no_body; /* the request was HEAD */
  /* the result, valid once http1_response_feed returned 1 */
  int status;
  int minor;
  bool keep_alive; /* the connection may carry another request */
  char *body;      /* decoded, NUL-terminated (body[body_len] == 0) */
  size_t body_len;
  /* private */
  int state;
  size_t seen;   /* bytes of this exchange consumed, against max */
  uint64_t left; /* of the Content-Length body or the current chunk */
  bool chunked, has_len, conn_close, conn_keep;
  uint64_t content_len;
  stp_buf line; /* the line being read */
  stp_buf head; /* "name:value\n" per header of the final response */
  size_t body_cap;
  /* http1_response_skip: body bytes past body_keep are read and dropped
   * (up to skip_max of them), every body byte is shown to tap */
  size_t body_keep;
  uint64_t skip_max, skipped;
  void (*tap)(void *arg, const char *p, size_t n);
  void *tap_arg;
  bool body_cut; /* result: bytes past body_keep were dropped */
} http1_response;

/* Ready a parser for one response bounded by max bytes (0: the default). */
void http1_response_init(http1_response *r, size_t max, bool no_body);
/* After init: keep at most `keep` bytes of the body (keep < max) and read
 * up to skip_max more without holding them (body_cut tells); tap (may be
 * NULL) sees every body byte, decoded, as it comes. For answers whose size
 * the peer chooses (Graph echoes a whole message) and of which the caller
 * needs a few fields: memory stays bounded by max, the time by the
 * caller's timeouts. */
void http1_response_skip(http1_response *r, size_t keep, uint64_t skip_max,
                         void (*tap)(void *arg, const char *p, size_t n), void *tap_arg);
/* Wipe and free everything (also the body); the parser may be re-inited. */
void http1_response_free(http1_response *r);

/* Feed bytes as they arrive. Returns 1 once the response is complete (*used
 * tells how many of these bytes it took; the rest came after it), 0 when it
 * needs more, STP_ESYNTAX for a malformed response, STP_ETOOLONG past max
 * or HTTP1_LINE_MAX. Interim 1xx responses are skipped; 101 is refused.
 * Bodies: Content-Length, chunked (extensions ignored, trailers checked and
 * dropped), or up to the close; none for 204, 304 and no_body. A response
 * with both Content-Length and Transfer-Encoding is refused (RFC 9112
 * 6.3: a smuggling attempt), as is any coding but chunked. */
int http1_response_feed(http1_response *r, const char *p, size_t n, size_t *used);
/* The peer closed: 1 when that completes the response (a close-delimited
 * body, or it was complete already), STP_ESYNTAX when it was cut short. */
int http1_response_eof(http1_response *r);

/* The value of the first header called `name` (any case) of a complete
 * response, not NUL-terminated, with *len; NULL when absent. */
const char *http1_response_header(const http1_response *r, const char *name, size_t *len);

#endif
