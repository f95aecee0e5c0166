/* jwt_sign.c - RSA keys, certificate thumbprints and JWT signatures with
 * BoringSSL (see jwt_sign.h).
 */
#include "jwt_sign.h"

#include <openssl/bio.h>
#include <openssl/digest.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIN_RSA_BITS 2048

struct jwt_key {
  EVP_PKEY *pkey;
  char x5t[64];      /* base64url of 20 bytes: 27 characters */
  char x5t_s256[64]; /* of 32 bytes: 43 */
};

static void b64url_into(char *dst, size_t cap, const unsigned char *p, size_t n) {
  stp_buf b = {.data = dst, .len = 0, .cap = cap - 1};
  if (jwt_b64url(&b, p, n) < 0)
    b.len = 0;
  dst[b.len] = '\0';
}

/* An encrypted key is refused, never a prompt on a terminal. */
static int no_password(char *buf, int size, int rwflag, void *u) {
  (void)buf;
  (void)size;
  (void)rwflag;
  (void)u;
  return 0;
}

static EVP_PKEY *read_key(const char *pem, char *err, size_t errlen) {
  ERR_clear_error();
  BIO *bio = BIO_new_mem_buf(pem, (int)strlen(pem));
  EVP_PKEY *k = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_password, NULL) : NULL;
  BIO_free(bio);
  ERR_clear_error();
  if (!k)
    snprintf(err, errlen, "not a PEM private key (unencrypted PKCS#8 or PKCS#1 expected)");
  else if (EVP_PKEY_id(k) != EVP_PKEY_RSA)
    snprintf(err, errlen, "not an RSA key (RS256 and PS256 need RSA)");
  else if (EVP_PKEY_bits(k) < MIN_RSA_BITS)
    snprintf(err, errlen, "the RSA key has %d bits; at least %d are needed", EVP_PKEY_bits(k),
             MIN_RSA_BITS);
  else
    return k;
  EVP_PKEY_free(k);
  return NULL;
}

/* The certificate must hold k's public key; its thumbprints go into j. */
static int read_cert(jwt_key *j, const char *pem, char *err, size_t errlen) {
  ERR_clear_error();
  BIO *bio = BIO_new_mem_buf(pem, (int)strlen(pem));
  X509 *x = bio ? PEM_read_bio_X509(bio, NULL, no_password, NULL) : NULL;
  BIO_free(bio);
  uint8_t *der = NULL;
  int n = x ? i2d_X509(x, &der) : -1;
  int rc = -1;
  if (!x || n <= 0) {
    snprintf(err, errlen, "not a PEM X.509 certificate");
  } else if (X509_check_private_key(x, j->pkey) != 1) {
    snprintf(err, errlen, "the certificate does not belong to the private key");
  } else {
    unsigned char h1[SHA_DIGEST_LENGTH], h256[SHA256_DIGEST_LENGTH];
    SHA1(der, (size_t)n, h1);
    SHA256(der, (size_t)n, h256);
    b64url_into(j->x5t, sizeof j->x5t, h1, sizeof h1);
    b64url_into(j->x5t_s256, sizeof j->x5t_s256, h256, sizeof h256);
    rc = 0;
  }
  OPENSSL_free(der);
  X509_free(x);
  ERR_clear_error();
  return rc;
}

jwt_key *jwt_key_load(const char *key_pem, const char *cert_pem, char *err, size_t errlen) {
  jwt_key *j = stp_xcalloc(1, sizeof *j);
  j->pkey = read_key(key_pem, err, errlen);
  if (!j->pkey || (cert_pem && read_cert(j, cert_pem, err, errlen) < 0)) {
    jwt_key_free(j);
    return NULL;
  }
  return j;
}

void jwt_key_free(jwt_key *k) {
  if (!k)
    return;
  EVP_PKEY_free(k->pkey);
  free(k);
}

const char *jwt_key_x5t(const jwt_key *k) {
  return k->x5t;
}
const char *jwt_key_x5t_s256(const jwt_key *k) {
  return k->x5t_s256;
}

int jwt_key_sign(void *arg, jwt_alg alg, const unsigned char *in, size_t n, unsigned char *sig,
                 size_t cap, size_t *len) {
  jwt_key *k = arg;
  if ((size_t)EVP_PKEY_size(k->pkey) > cap)
    return STP_EFULL;
  ERR_clear_error();
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  EVP_PKEY_CTX *pctx = NULL;
  int ok = ctx && EVP_DigestSignInit(ctx, &pctx, EVP_sha256(), NULL, k->pkey) == 1;
  if (ok && alg == JWT_PS256)
    ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
         EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, -1) == 1; /* -1: the digest's length */
  *len = cap;
  if (ok)
    ok = EVP_DigestSign(ctx, sig, len, in, n) == 1;
  EVP_MD_CTX_free(ctx);
  ERR_clear_error();
  return ok ? STP_OK : STP_EIO;
}

void jwt_random_id(char out[37]) {
  unsigned char r[16];
  RAND_bytes(r, sizeof r);
  r[6] = (unsigned char)((r[6] & 0x0f) | 0x40); /* version 4 */
  r[8] = (unsigned char)((r[8] & 0x3f) | 0x80); /* RFC 4122 variant */
  snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0],
           r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14],
           r[15]);
}
