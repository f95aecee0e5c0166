/* oauth2.h - the pure half of OAuth2 for XOAUTH2 upstreams: the
 * form-encoded token request, the JSON token response and judging it, cache
 * expiry arithmetic and token_command output.
 *
 * Owns: what the proxy says to a token endpoint and what it believes of the
 * answer (the HTTP framing is http1.h's, the JSON grammar jansson's through
 * json.h). Guarantees: no sockets and no event loop (the fetch runs in
 * proxy/net/tok_fetch.c); every input is bounded (an answer over
 * OAUTH2_RESPONSE_MAX, a JSON nesting deeper than 16, a token over
 * OAUTH2_TOKEN_MAX are errors, not reallocations); a malformed document is
 * refused as a whole, so are duplicate keys; every copy of a token is
 * wiped when freed, jansson's too; error texts never contain a token or a
 * secret (only the endpoint's `error` and `error_description`, escaped by
 * the log).
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

/* Append "key=value" (with a leading '&' unless b is empty), both
 * percent-encoded as application/x-www-form-urlencoded (space as '+',
 * unreserved characters as is). STP_EFULL past the buffer's bound, with
 * the buffer as it was. */
int oauth2_form_add(stp_buf *b, const char *key, const char *val);

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
  bool has_refresh_token_expires_in;
  int64_t refresh_token_expires_in; /* Google, apps in "Testing": 7 days */
} oauth2_token_resp;

/* Strict: one JSON object (whitespace around it allowed). STP_ESYNTAX for
 * anything else, for nesting over 16 levels, any key twice, or a known key
 * with a value of the wrong type; STP_ETOOLONG for a document over
 * OAUTH2_RESPONSE_MAX or a string value of a known key over
 * OAUTH2_TOKEN_MAX. */
int oauth2_json_parse(const char *p, size_t n, oauth2_token_resp *out);
void oauth2_token_resp_free(oauth2_token_resp *t); /* cleanses the tokens */

/* Judge a token endpoint's answer. 0: t->access_token is a usable bearer
 * token (printable ASCII, token_type absent or "Bearer"), refresh_token (if
 * any) too. Otherwise a negative code and a one-line reason in err, such as
 * "HTTP 400: invalid_grant: Token has been expired or revoked." (the
 * endpoint's own error and error_description; never a token). */
int oauth2_evaluate(int status, const char *body, size_t len, oauth2_token_resp *t, char *err,
                    size_t errlen);

/* The OAuth error code as a metrics label: itself when RFC 6749 or RFC 8628
 * defines it, else "other" (an endpoint cannot grow the label set). */
const char *oauth2_error_reason(const char *error);

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

#endif
