/* jwt.h - the pure half of signed JWTs (RFC 7519, JWS compact form of RFC
 * 7515) for the two OAuth2 grants that need no refresh token: Google's
 * service-account JWT bearer grant (RFC 7523 2.1) and Microsoft's
 * certificate client assertion (RFC 7523 2.2).
 *
 * Owns: base64url without padding, the JOSE header and claim set as compact
 * JSON (jansson, keys in a fixed order), the signing input
 * "b64(header).b64(claims)", the final "input.b64(signature)", the claim
 * sets of both grants, and reading Google's service-account JSON key.
 * Signing itself is a callback (BoringSSL lives in proxy/net/jwt_sign.c:
 * this library stays free of TLS headers).
 * Guarantees: every output is bounded (JWT_MAX); a JWT, like the private key
 * it was signed with, is a secret: every buffer that held one is wiped when
 * freed (release a JWT with stp_free_secret). Nothing here logs.
 */
#ifndef STP_JWT_H
#define STP_JWT_H

#include <stddef.h>
#include <stdint.h>

#include "smtp-tls-proxy/util.h"

#define JWT_MAX 16384        /* a whole JWT */
#define JWT_SIG_MAX 1024     /* a signature: RSA up to 8192 bits */
#define JWT_SA_LIFETIME 3600 /* Google: exp at most one hour after iat */
#define JWT_CA_LIFETIME 600  /* Entra: exp 5 to 10 minutes after nbf */

typedef enum { JWT_RS256 = 0, JWT_PS256 } jwt_alg;
const char *jwt_alg_name(jwt_alg a);

/* Append base64url (RFC 4648 5, no '=' padding) of p[0..n) to b.
 * STP_EFULL past b's bound, with b as it was. */
int jwt_b64url(stp_buf *b, const void *p, size_t n);

/* JOSE header: alg and typ "JWT", then each non-NULL of kid, x5t (base64url
 * SHA-1 thumbprint) and x5t#S256 (base64url SHA-256 thumbprint). */
typedef struct jwt_header {
  jwt_alg alg;
  const char *kid;
  const char *x5t;
  const char *x5t_s256;
} jwt_header;

/* Claims: each non-NULL string and each non-zero time (unix seconds), in
 * the order iss, sub, aud, scope, jti, iat, nbf, exp. */
typedef struct jwt_claims {
  const char *iss, *sub, *aud, *scope, *jti;
  int64_t iat, nbf, exp;
} jwt_claims;

/* The compact JSON of each, malloc'd (free()); NULL when a string is not
 * valid UTF-8. */
char *jwt_header_json(const jwt_header *h);
char *jwt_claims_json(const jwt_claims *c);

/* Signs in[0..n) with alg into sig (cap bytes), *len the signature's
 * length; 0 or a negative code. */
typedef int (*jwt_sign_fn)(void *arg, jwt_alg alg, const unsigned char *in, size_t n,
                           unsigned char *sig, size_t cap, size_t *len);

/* "b64url(header_json).b64url(claims_json)" into out (cleared first). */
int jwt_signing_input(stp_buf *out, const char *header_json, size_t hn, const char *claims_json,
                      size_t cn);

/* The whole JWT: signing input, '.', base64url of the signature made by
 * sign. *out is malloc'd (release with stp_free_secret); on failure NULL
 * and a negative code (the signer's, or STP_EFULL past JWT_MAX). */
int jwt_build(const jwt_header *h, const jwt_claims *c, jwt_sign_fn sign, void *arg, char **out);

/* The claim set of Google's service-account grant: iss = client_email,
 * sub = the mailbox to act as, aud = the token endpoint, scope, iat = now,
 * exp = now + JWT_SA_LIFETIME. */
void jwt_sa_claims(jwt_claims *c, const char *client_email, const char *subject, const char *aud,
                   const char *scope, int64_t now);
/* The claim set of a client assertion: iss = sub = client_id, aud = the
 * token endpoint, jti (fresh for each), iat = nbf = now, exp = now +
 * JWT_CA_LIFETIME. */
void jwt_assertion_claims(jwt_claims *c, const char *client_id, const char *aud, const char *jti,
                          int64_t now);

/* Google's service-account JSON key: the four members this proxy uses,
 * strings, NUL-free; type must be "service_account" when present. */
typedef struct jwt_sa_key {
  char *client_email;
  char *private_key; /* PEM; a secret, wiped when freed */
  char *private_key_id;
  char *token_uri;
} jwt_sa_key;

/* 0, or STP_ESYNTAX with a one-line reason in err (never the key). */
int jwt_sa_parse(const char *p, size_t n, jwt_sa_key *out, char *err, size_t errlen);
void jwt_sa_free(jwt_sa_key *k);

#endif
