/* oauth2.h - the pure half of OAuth2 for XOAUTH2 upstreams: token endpoint
 * URLs, the form-encoded POST, the HTTP/1.1 response, the JSON token
 * response, cache expiry arithmetic and the atomic refresh-token file.
 *
 * Owns: every byte the proxy sends to a token endpoint and every byte it
 * accepts from one. Guarantees: no sockets and no event loop (the HTTPS
 * client lives in oauth2_net.c); every input is bounded (a response over
 * OAUTH2_RESPONSE_MAX, a JSON nesting deeper than 16, a token over
 * OAUTH2_TOKEN_MAX are errors, not reallocations); the JSON scanner is
 * strict RFC 8259 (a malformed document is refused as a whole, duplicate
 * known keys are refused); error texts never contain a token or a secret
 * (only the endpoint's `error` and `error_description`, escaped by the log).
 */
#ifndef STP_OAUTH2_H
#define STP_OAUTH2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtp-tls-proxy/util.h"

#define OAUTH2_RESPONSE_MAX (64 * 1024) /* whole HTTP response, headers included */
#define OAUTH2_TOKEN_MAX 8192           /* an access or refresh token */
#define OAUTH2_REFRESH_MARGIN_S 60      /* refresh this long before expiry */
#define OAUTH2_DEFAULT_EXPIRES_S 600    /* when the endpoint gives no expires_in */

typedef struct oauth2_url {
  bool https;
  char host[256]; /* without brackets for IPv6 literals */
  uint16_t port;
  char path[1024]; /* path and query, at least "/" */
  bool host_is_v6;
} oauth2_url;

/* "https://host[:port][/path[?query]]" (and "http://" with https false).
 * No user info, no fragment, no spaces or control characters. */
int oauth2_url_parse(const char *url, oauth2_url *out);

/* Append "key=value" (with a leading '&' unless b is empty), both
 * percent-encoded as application/x-www-form-urlencoded (space as '+',
 * unreserved characters as is). STP_EFULL past the buffer's bound. */
int oauth2_form_add(stp_buf *b, const char *key, const char *val);

/* The whole POST request for a form body, with Host, Content-Type,
 * Content-Length, Accept and Connection: close. The caller cleanses `b`
 * (the form holds secrets). */
int oauth2_build_request(stp_buf *b, const oauth2_url *u, const char *form, size_t formlen);

/* An HTTP/1.x response. */
typedef struct oauth2_http_resp {
  int status;
  char *body; /* malloc'd, NUL-terminated, decoded (chunked), cleanse on free */
  size_t body_len;
} oauth2_http_resp;

/* Parse a response received so far (len bytes; eof: the peer closed).
 * Returns 1 when complete (out filled: the caller frees out->body with
 * oauth2_http_resp_free), 0 when more input is needed, STP_ESYNTAX for a
 * malformed response, STP_ETOOLONG past OAUTH2_RESPONSE_MAX. Supports
 * Content-Length, chunked transfer coding (extensions and trailers
 * skipped), and a body delimited by the close. */
int oauth2_http_parse(const char *buf, size_t len, bool eof, oauth2_http_resp *out);
void oauth2_http_resp_free(oauth2_http_resp *r);

/* The fields of a token endpoint's JSON answer (RFC 6749 5.1 and 5.2).
 * Strings are malloc'd and NUL-free; NULL when absent. */
typedef struct oauth2_token_resp {
  char *access_token;
  char *token_type;
  char *refresh_token;
  char *scope;
  char *error;
  char *error_description;
  bool has_expires_in;
  int64_t expires_in; /* seconds; a JSON integer or a string of digits */
} oauth2_token_resp;

/* Strict: one JSON object (whitespace around it allowed). STP_ESYNTAX for
 * anything else, for nesting over 16 levels, a known key twice, or a known
 * key with a value of the wrong type; STP_ETOOLONG for a string value of a
 * known key over OAUTH2_TOKEN_MAX. */
int oauth2_json_parse(const char *p, size_t n, oauth2_token_resp *out);
void oauth2_token_resp_free(oauth2_token_resp *t); /* cleanses the tokens */

/* Judge a token endpoint's answer. 0: t->access_token is a usable bearer
 * token (printable ASCII, token_type absent or "Bearer"), refresh_token (if
 * any) too. Otherwise a negative code and a one-line reason in err, such as
 * "HTTP 400: invalid_grant: Token has been expired or revoked." (the
 * endpoint's own error and error_description; never a token). */
int oauth2_evaluate(int status, const char *body, size_t len, oauth2_token_resp *t, char *err,
                    size_t errlen);

/* When to fetch a new token, for one fetched at now_ms: OAUTH2_REFRESH_MARGIN_S
 * before expiry, or halfway for short-lived tokens (expires_in <= 2 margins),
 * OAUTH2_DEFAULT_EXPIRES_S when the endpoint said nothing. */
uint64_t oauth2_refresh_at(uint64_t now_ms, bool has_expires_in, int64_t expires_in);

/* True for a non-empty token of printable ASCII (0x21..0x7e) within
 * OAUTH2_TOKEN_MAX: what may follow "Bearer " and be stored in a file. */
bool oauth2_token_ok(const char *s, size_t n);

/* token_command output: surrounding whitespace trimmed, then
 * oauth2_token_ok. Returns a malloc'd copy in *out, or STP_ESYNTAX. */
int oauth2_token_from_output(const char *p, size_t n, char **out);

/* Replace the file at path with secret + "\n", atomically: path.tmp is
 * created with O_EXCL and mode 0600 (a stale one is removed first),
 * written, fsync'd and renamed over path; the directory is fsync'd. On
 * failure path is unchanged and err says why (never the secret). */
int oauth2_save_secret_file(const char *path, const char *secret, char *err, size_t errlen);

#endif
