/* oauth_login.h - the pure half of `smtp-tls-proxy oauth2 login`: the
 * authorization request URL with PKCE (RFC 7636, S256), the device
 * authorization answer (RFC 8628 3.2), the token endpoint's answers while
 * polling (RFC 8628 3.5) or redeeming a code, and what each provider error
 * means for the admin.
 *
 * Owns: every byte the login command sends to or reads from an
 * authorization server, and the table of provider errors with their public
 * sources. Guarantees: no I/O and no randomness (the caller brings the
 * random bytes and the SHA-256: the core holds no crypto library); answers
 * are read with the strict JSON reader (json.h) and bounded like token
 * answers (OAUTH2_RESPONSE_MAX); texts meant for the terminal contain no
 * control byte; a device code, an authorization code or a token never
 * appears in an error text.
 */
#ifndef STP_OAUTH_LOGIN_H
#define STP_OAUTH_LOGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtp-tls-proxy/oauth2.h"
#include "smtp-tls-proxy/util.h"

#define OAUTH_LOGIN_TEXT_MAX 1024 /* a URL, user code or message kept */
#define OAUTH_LOGIN_SLOW_DOWN_S 5 /* RFC 8628 3.5: slow_down adds 5 s */

/* base64url without padding (RFC 7636 appendix A). Returns the length, or
 * STP_EFULL when out (cap bytes, NUL included) is too small. */
long oauth_b64url(const unsigned char *in, size_t n, char *out, size_t cap);

/* The authorization request (RFC 6749 4.1.1 with RFC 7636 4.3):
 * response_type=code, client_id, redirect_uri, scope, state,
 * code_challenge, code_challenge_method=S256; with google also
 * access_type=offline and prompt=consent (so that Google issues a refresh
 * token every time). base may carry a query already. */
typedef struct oauth_authz_req {
  const char *base, *client_id, *redirect_uri, *scope, *state, *challenge;
  bool google;
} oauth_authz_req;
int oauth_authz_url(stp_buf *b, const oauth_authz_req *r);

/* A device authorization answer (RFC 8628 3.2; Google spells the address
 * verification_url, Microsoft adds message). Strings are NUL-terminated,
 * printable. */
typedef struct oauth_device {
  char *device_code; /* a secret of sorts: wiped on free */
  char user_code[128];
  char verification_uri[OAUTH_LOGIN_TEXT_MAX];
  char verification_uri_complete[OAUTH_LOGIN_TEXT_MAX];
  char message[OAUTH_LOGIN_TEXT_MAX];
  int64_t expires_in; /* seconds */
  int64_t interval;   /* seconds; 5 when absent (RFC 8628 3.2) */
} oauth_device;
/* 0, or a negative code and a one-line reason in err (the endpoint's error
 * and description, see oauth_login_explain for advice). */
int oauth_device_parse(int status, const char *body, size_t len, oauth_device *d, char *err,
                       size_t errlen);
void oauth_device_free(oauth_device *d);

/* What a token endpoint answer means for the login. */
typedef enum {
  OL_TOKEN = 0, /* t holds the tokens */
  OL_PENDING,   /* authorization_pending: poll again */
  OL_SLOW_DOWN, /* slow_down: poll again, OAUTH_LOGIN_SLOW_DOWN_S later */
  OL_EXPIRED,   /* expired_token: the user code is dead, start again */
  OL_DENIED,    /* access_denied / authorization_declined */
  OL_FAILED     /* anything else: err says what */
} oauth_verdict;

/* Judge a token endpoint answer to a device code or authorization code
 * request. On OL_TOKEN, t is filled (free it with oauth2_token_resp_free)
 * and must hold a refresh token, else OL_FAILED; extra gets the fields
 * that oauth2.h does not read. err: the endpoint's error and description,
 * one line. */
typedef struct oauth_extra {
  bool has_rt_expires_in;
  int64_t rt_expires_in; /* refresh_token_expires_in (Google, app in Testing) */
  char account[256];     /* from the id_token, if any: email or preferred_username */
} oauth_extra;
oauth_verdict oauth_token_verdict(int status, const char *body, size_t len, oauth2_token_resp *t,
                                  oauth_extra *extra, char *err, size_t errlen);

/* One provider error the login explains. */
typedef struct oauth_login_rule {
  const char *provider; /* "Microsoft Entra", "Google", "RFC 8628" */
  const char *error;    /* the `error` value, or NULL: any */
  const char *needle;   /* in error_description ("AADSTS50199"), or NULL */
  bool use_code_flow;   /* the advice is --flow code */
  const char *advice;
  const char *source; /* the public page that documents it */
} oauth_login_rule;

size_t oauth_login_rules(const oauth_login_rule **rules);
/* The first rule for this error and description, or NULL. */
const oauth_login_rule *oauth_login_explain(const char *error, const char *description);
/* The same for a line "HTTP 400: error: description" as this module and
 * oauth2.h write them. */
const oauth_login_rule *oauth_login_explain_line(const char *line);

#endif
