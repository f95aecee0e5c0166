/* jwt_sign.h - the BoringSSL half of signed JWTs (the pure half is jwt.h).
 *
 * Owns: an RSA private key read from PEM (PKCS#8 "PRIVATE KEY", as in
 * Google's JSON key, or PKCS#1 "RSA PRIVATE KEY"), optionally paired with
 * its X.509 certificate, whose SHA-1 and SHA-256 thumbprints it keeps in
 * base64url (the x5t and x5t#S256 header members); RS256 and PS256 (salt
 * length = digest length, RFC 7518 3.5) signatures; fresh random JWT ids.
 * Guarantees: a key under 2048 bits, not RSA, or not matching the
 * certificate is refused with a one-line reason that never contains key
 * material; the key lives in BoringSSL's memory, which is wiped when freed.
 */
#ifndef STP_JWT_SIGN_H
#define STP_JWT_SIGN_H

#include <stddef.h>

#include "smtp-tls-proxy/jwt.h"

typedef struct jwt_key jwt_key;

/* key_pem: the private key; cert_pem: its certificate or NULL. NULL with
 * the reason in err. */
jwt_key *jwt_key_load(const char *key_pem, const char *cert_pem, char *err, size_t errlen);
void jwt_key_free(jwt_key *k);

/* A jwt_sign_fn; arg is the jwt_key. */
int jwt_key_sign(void *arg, jwt_alg alg, const unsigned char *in, size_t n, unsigned char *sig,
                 size_t cap, size_t *len);

/* Base64url thumbprints of the certificate's DER; "" without one. */
const char *jwt_key_x5t(const jwt_key *k);
const char *jwt_key_x5t_s256(const jwt_key *k);

/* A random UUID (version 4) as 36 characters and a NUL: a jti. */
void jwt_random_id(char out[37]);

#endif
