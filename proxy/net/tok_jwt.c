/* tok_jwt.c - the signed-JWT half of a token request: Google's
 * service-account JWT bearer grant (RFC 7523 2.1) and Microsoft's
 * certificate client assertion (RFC 7523 2.2, the private_key_jwt of
 * OpenID Connect).
 *
 * Owns: the source's parsed key (jwt_sign.h), the claims of each grant
 * (jwt.h) with the wall clock's time and a fresh jti, the JWT's place in
 * the form. Guarantees: the JWT exists only inside the form buffer and a
 * local copy, both wiped (the form by tok_fetch.c); it never reaches a log:
 * a failure says what is wrong with the key or the certificate only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jwt_sign.h"
#include "tok_internal.h"

#define JWT_BEARER_GRANT "urn:ietf:params:oauth:grant-type:jwt-bearer"
#define JWT_ASSERTION_TYPE "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

int tok_jwt_check(const stp_oauth2_cfg *o, char *why, size_t cap) {
  if (!o || o->kind != STP_TOKSRC_OAUTH2 || !o->private_key)
    return STP_OK;
  jwt_key *k = jwt_key_load(o->private_key, o->certificate, why, cap);
  if (!k)
    return STP_EINVAL;
  jwt_key_free(k);
  return STP_OK;
}

static int add_jwt(stp_buf *form, const char *name, const jwt_header *h, const jwt_claims *c,
                   jwt_key *k, char *why, size_t cap) {
  char *jwt = NULL;
  int rc = jwt_build(h, c, jwt_key_sign, k, &jwt);
  if (rc < 0)
    snprintf(why, cap, "cannot sign the JWT (%s)", stp_strerror(rc));
  else if ((rc = oauth2_form_add(form, name, jwt)) < 0)
    snprintf(why, cap, "token request too large");
  stp_free_secret(jwt);
  return rc;
}

int tok_jwt_form(tok_src *s, stp_buf *form, char *why, size_t cap) {
  bool sa = s->grant == STP_GRANT_SERVICE_ACCOUNT;
  if (!s->private_key)
    return STP_OK;
  if (!s->jkey) {
    char w[200];
    s->jkey = jwt_key_load(s->private_key, sa ? NULL : s->certificate, w, sizeof w);
    if (!s->jkey) {
      snprintf(why, cap, "%s: %s", sa ? "service_account_file" : "client_key_file", w);
      return STP_EINVAL;
    }
  }
  int64_t now = (int64_t)time(NULL);
  jwt_claims c;
  if (sa) {
    jwt_header h = {.alg = JWT_RS256, .kid = s->sa_key_id};
    jwt_sa_claims(&c, s->sa_email, s->subject, s->token_url, s->scope, now);
    int rc = oauth2_form_add(form, "grant_type", JWT_BEARER_GRANT);
    return rc < 0 ? rc : add_jwt(form, "assertion", &h, &c, s->jkey, why, cap);
  }
  /* Entra's current advice: PS256 with the SHA-256 thumbprint. */
  char jti[37];
  jwt_random_id(jti);
  jwt_header h = {.alg = JWT_PS256, .x5t_s256 = jwt_key_x5t_s256(s->jkey)};
  jwt_assertion_claims(&c, s->client_id, s->token_url, jti, now);
  int rc = oauth2_form_add(form, "client_assertion_type", JWT_ASSERTION_TYPE);
  return rc < 0 ? rc : add_jwt(form, "client_assertion", &h, &c, s->jkey, why, cap);
}
