/* oauthq.h - the authorization response of an OAuth2 authorization code
 * flow (RFC 6749 4.1.2 and 4.1.2.1), as it reaches `oauth2 login`: the
 * request target the browser sends to the loopback listener (RFC 8252
 * 7.3), or the whole redirect URL an admin pasted from the address bar.
 *
 * Owns: finding the query and reading code, state, error and
 * error_description from it. Guarantees: pure (no I/O), the input bounded
 * by OAUTHQ_INPUT_MAX and every value by its buffer (STP_ETOOLONG, never a
 * truncation); percent-escapes must be complete (%XX); a parameter given
 * twice is refused (RFC 6749 3.1); code, state and error are visible ASCII
 * (RFC 6749 A.11, A.5, A.7), error_description has no control byte; the
 * code is wiped by oauthq_wipe.
 */
#ifndef STP_OAUTHQ_H
#define STP_OAUTHQ_H

#include <stdbool.h>
#include <stddef.h>

#define OAUTHQ_INPUT_MAX 16384
#define OAUTHQ_CODE_MAX 4096 /* Entra's codes run to about 1.5 KB */
#define OAUTHQ_STATE_MAX 256
#define OAUTHQ_TEXT_MAX 512 /* error and error_description */

typedef struct oauthq {
  char code[OAUTHQ_CODE_MAX + 1];
  char state[OAUTHQ_STATE_MAX + 1];
  char error[OAUTHQ_TEXT_MAX + 1];
  char error_description[OAUTHQ_TEXT_MAX + 1];
  bool has_code, has_state, has_error, has_error_description;
} oauthq;

/* p[0..n) is one of, after surrounding whitespace is trimmed:
 *   scheme://authority/path?query#fragment   (a pasted redirect URL)
 *   /path?query                              (an HTTP request target)
 *   ?query  or  query                        (a pasted query alone)
 * The fragment is ignored, so are parameters other than the four.
 * Returns STP_OK with at least code or error set; STP_ENOTFOUND when the
 * query has neither (a favicon request, the bare address); STP_ESYNTAX for
 * a malformed escape, a value with a forbidden byte or a parameter given
 * twice; STP_ETOOLONG past a bound. out is zeroed first, whatever the
 * outcome. */
int oauthq_parse(const char *p, size_t n, oauthq *out);

/* Cleanse everything (the code is a one-time credential). */
void oauthq_wipe(oauthq *q);

#endif
