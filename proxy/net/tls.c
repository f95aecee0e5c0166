/* tls.c - BoringSSL contexts and memory-BIO connections (see tls.h).
 *
 * The engine never sees a socket: stream.c feeds ciphertext in with
 * tls_conn_feed() and pulls what must be sent with tls_conn_pull() after
 * every call that may produce output (handshake, read, write, shutdown).
 */
#include "tls.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/bytestring.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/util.h"

#define STP_DEFAULT_CA "/etc/ssl/certs/ca-certificates.crt"

struct tls_ctx {
  SSL_CTX *ssl;
  bool server;
};

struct tls_conn {
  SSL *ssl;
  BIO *in;  /* ciphertext from the network */
  BIO *out; /* ciphertext to the network */
  bool verify_failed;
  char error[256];
};

/* Drain the error queue into buf: the first entry is the most telling. */
static void take_errors(char *buf, size_t cap, const char *what) {
  unsigned long e = ERR_get_error();
  if (e) {
    char tmp[200];
    ERR_error_string_n((uint32_t)e, tmp, sizeof tmp);
    snprintf(buf, cap, "%s: %s", what, tmp);
  } else {
    snprintf(buf, cap, "%s", what);
  }
  ERR_clear_error();
}

static int set_versions(SSL_CTX *c, uint16_t min_version) {
  if (!SSL_CTX_set_min_proto_version(c, min_version ? min_version : TLS1_2_VERSION))
    return 0;
  return SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION);
}

tls_ctx *tls_ctx_client(const char *ca_file, uint16_t min_version, bool verify, char *err,
                        size_t errlen) {
  ERR_clear_error();
  SSL_CTX *c = SSL_CTX_new(TLS_method());
  if (!c) {
    take_errors(err, errlen, "SSL_CTX_new");
    return NULL;
  }
  /* The upstream side never goes below TLS 1.2, whatever was asked. */
  if (min_version < TLS1_2_VERSION)
    min_version = TLS1_2_VERSION;
  if (!set_versions(c, min_version)) {
    take_errors(err, errlen, "TLS version");
    SSL_CTX_free(c);
    return NULL;
  }
  if (verify) {
    const char *ca = ca_file ? ca_file : STP_DEFAULT_CA;
    if (!SSL_CTX_load_verify_locations(c, ca, NULL)) {
      char what[300];
      snprintf(what, sizeof what, "cannot load CA file %s", ca);
      take_errors(err, errlen, what);
      SSL_CTX_free(c);
      return NULL;
    }
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
  } else {
    SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL);
  }
  tls_ctx *t = stp_xcalloc(1, sizeof *t);
  t->ssl = c;
  return t;
}

/* A fresh key: RSA-2048 where old devices must connect (many TLS 1.0
 * stacks know no ECDSA), P-256 otherwise. */
static EVP_PKEY *make_key(bool rsa) {
  EVP_PKEY *pkey = EVP_PKEY_new();
  if (!pkey)
    return NULL;
  if (rsa) {
    RSA *r = RSA_new();
    BIGNUM *e = BN_new();
    int ok = r && e && BN_set_word(e, RSA_F4) && RSA_generate_key_ex(r, 2048, e, NULL) &&
             EVP_PKEY_assign_RSA(pkey, r);
    BN_free(e);
    if (!ok) {
      RSA_free(r);
      EVP_PKEY_free(pkey);
      return NULL;
    }
    return pkey;
  }
  EC_KEY *ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
  if (!ec || !EC_KEY_generate_key(ec) || !EVP_PKEY_assign_EC_KEY(pkey, ec)) {
    EC_KEY_free(ec);
    EVP_PKEY_free(pkey);
    return NULL;
  }
  return pkey;
}

/* A throw-away certificate for `hostname`, valid one year. */
static int make_self_signed(SSL_CTX *c, const char *hostname, bool rsa, char *err, size_t errlen) {
  EVP_PKEY *pkey = make_key(rsa);
  X509 *x = X509_new();
  int ok = 0;
  if (!pkey || !x)
    goto out;
  X509_NAME *name = X509_get_subject_name(x);
  if (!X509_set_version(x, X509_VERSION_3) ||
      !ASN1_INTEGER_set(X509_get_serialNumber(x), (long)(stp_now_ms() & 0x7fffffff)) ||
      !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
      !X509_gmtime_adj(X509_getm_notAfter(x), 365L * 24 * 3600) || !X509_set_pubkey(x, pkey) ||
      !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const uint8_t *)hostname, -1, -1, 0) ||
      !X509_set_issuer_name(x, name) || !X509_sign(x, pkey, EVP_sha256()))
    goto out;
  if (!SSL_CTX_use_certificate(c, x) || !SSL_CTX_use_PrivateKey(c, pkey))
    goto out;
  uint8_t md[32];
  unsigned mdlen = 0;
  char fp[3 * 32 + 1] = "";
  if (X509_digest(x, EVP_sha256(), md, &mdlen))
    for (unsigned i = 0; i < mdlen; i++)
      snprintf(fp + 3 * i, sizeof fp - 3 * i, "%02X%s", md[i], i + 1 < mdlen ? ":" : "");
  stp_kv kv[] = {{"cn", hostname}, {"key", rsa ? "rsa2048" : "p256"}, {"sha256", fp}};
  stp_log_kv(STP_LOG_WARN, NULL, "self-signed-certificate", kv, 3);
  ok = 1;
out:
  if (!ok)
    take_errors(err, errlen, "self-signed certificate");
  EVP_PKEY_free(pkey);
  X509_free(x);
  return ok;
}

/* BoringSSL's cipher language (ssl.h): its default "ALL" still holds
 * DES-CBC3-SHA (SWEET32), and it has no RC4, export, NULL or anonymous
 * suites at all, so the OpenSSL exclusions (!RC4, !EXPORT, !eNULL, !aNULL)
 * are unknown words that only the lax SSL_CTX_set_cipher_list ignores. The
 * lists below name what is allowed, in the server's order; the strict
 * setter turns a typo into a start-up error instead of a silent "ALL".
 * TLS 1.3 suites are fixed by BoringSSL and not affected.
 *  - TLS 1.2+ listeners: forward-secret AEAD only.
 *  - listeners for old devices (tls_min_version below 1.2): the same first,
 *    then the CBC-SHA suites TLS 1.0/1.1 stacks need (ECDHE before plain
 *    RSA). Never 3DES. PSK suites are dropped: no PSK is configured. */
#define TLS_SERVER_CIPHERS "!aPSK:!3DES:ECDHE+AESGCM:ECDHE+CHACHA20"
#define TLS_SERVER_CIPHERS_LEGACY TLS_SERVER_CIPHERS ":ECDHE+AES:RSA+AESGCM:RSA+AES"

/* Server preference: a client listing a weak suite first still gets the
 * strongest one both sides have. */
static int set_server_ciphers(SSL_CTX *c, uint16_t min_version) {
  bool legacy = min_version && min_version < TLS1_2_VERSION;
  if (!SSL_CTX_set_strict_cipher_list(c, legacy ? TLS_SERVER_CIPHERS_LEGACY : TLS_SERVER_CIPHERS))
    return 0;
  SSL_CTX_set_options(c, SSL_OP_CIPHER_SERVER_PREFERENCE);
  return 1;
}

tls_ctx *tls_ctx_server(const char *cert, const char *key, uint16_t min_version,
                        const char *hostname, char *err, size_t errlen) {
  ERR_clear_error();
  SSL_CTX *c = SSL_CTX_new(TLS_method());
  if (!c) {
    take_errors(err, errlen, "SSL_CTX_new");
    return NULL;
  }
  if (!set_versions(c, min_version)) {
    take_errors(err, errlen, "TLS version");
    SSL_CTX_free(c);
    return NULL;
  }
  if (!set_server_ciphers(c, min_version)) {
    take_errors(err, errlen, "cipher list");
    SSL_CTX_free(c);
    return NULL;
  }
  if (cert && key) {
    if (!SSL_CTX_use_certificate_chain_file(c, cert)) {
      take_errors(err, errlen, "cannot load certificate");
      SSL_CTX_free(c);
      return NULL;
    }
    if (!SSL_CTX_use_PrivateKey_file(c, key, SSL_FILETYPE_PEM) || !SSL_CTX_check_private_key(c)) {
      take_errors(err, errlen, "cannot load private key");
      SSL_CTX_free(c);
      return NULL;
    }
  } else if (!make_self_signed(c, hostname ? hostname : "localhost",
                               min_version && min_version < TLS1_2_VERSION, err, errlen)) {
    SSL_CTX_free(c);
    return NULL;
  }
  tls_ctx *t = stp_xcalloc(1, sizeof *t);
  t->ssl = c;
  t->server = true;
  return t;
}

void tls_ctx_free(tls_ctx *c) {
  if (!c)
    return;
  SSL_CTX_free(c->ssl);
  free(c);
}

tls_conn *tls_conn_new(tls_ctx *c, const char *server_name, bool server) {
  ERR_clear_error();
  tls_conn *t = stp_xcalloc(1, sizeof *t);
  t->ssl = SSL_new(c->ssl);
  t->in = BIO_new(BIO_s_mem());
  t->out = BIO_new(BIO_s_mem());
  if (!t->ssl || !t->in || !t->out) {
    BIO_free(t->in);
    BIO_free(t->out);
    SSL_free(t->ssl);
    free(t);
    return NULL;
  }
  BIO_set_mem_eof_return(t->in, -1);
  SSL_set_bio(t->ssl, t->in, t->out); /* SSL owns both BIOs now */
  if (server) {
    SSL_set_accept_state(t->ssl);
  } else {
    SSL_set_connect_state(t->ssl);
    if (server_name) {
      SSL_set_tlsext_host_name(t->ssl, server_name);
      /* RFC 7817 / 6125: the certificate must carry this DNS name (or IP). */
      X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);
      X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      if (!X509_VERIFY_PARAM_set1_ip_asc(vp, server_name))
        X509_VERIFY_PARAM_set1_host(vp, server_name, strlen(server_name));
      ERR_clear_error();
    }
  }
  return t;
}

void tls_conn_free(tls_conn *t) {
  if (!t)
    return;
  SSL_free(t->ssl);
  free(t);
}

int tls_conn_feed(tls_conn *t, const char *p, size_t n) {
  if (n > (size_t)INT32_MAX)
    return STP_EINVAL;
  return BIO_write(t->in, p, (int)n) == (int)n ? 0 : STP_ENOMEM;
}

/* An alert's RFC 8446 name from BoringSSL's words ("internal error" ->
 * "internal_error"), for logs that admins search for. */
static void alert_name(int alert, char *out, size_t cap) {
  snprintf(out, cap, "%s", SSL_alert_desc_string_long(alert));
  for (char *p = out; *p; p++)
    if (*p == ' ')
      *p = '_';
}

/* SSL_ERROR_SSL, said precisely. Only a real verification result may say
 * "certificate": SSL_get_verify_result() answers "Invalid certificate
 * verification context" when the peer aborted before any certificate was
 * checked (a server that answers the ClientHello with an alert, as a
 * broken OpenSMTPD set-up does), which once sent admins after certificates
 * that were fine. A received alert is named with the handshake step. */
static void describe_ssl_error(tls_conn *t, const char *what) {
  uint32_t e = ERR_peek_error();
  int reason = ERR_GET_REASON(e);
  if (ERR_GET_LIB(e) == ERR_LIB_SSL && reason >= SSL_AD_REASON_OFFSET) {
    char alert[64];
    alert_name(reason - SSL_AD_REASON_OFFSET, alert, sizeof alert);
    if (SSL_in_init(t->ssl))
      snprintf(t->error, sizeof t->error,
               "%s: peer sent TLS alert %s during the handshake (step: %s)", what, alert,
               SSL_state_string_long(t->ssl));
    else
      snprintf(t->error, sizeof t->error, "%s: peer sent TLS alert %s", what, alert);
    ERR_clear_error();
    return;
  }
  long vr = SSL_get_verify_result(t->ssl);
  if (ERR_GET_LIB(e) == ERR_LIB_SSL && reason == SSL_R_CERTIFICATE_VERIFY_FAILED &&
      vr != X509_V_OK) {
    t->verify_failed = true;
    snprintf(t->error, sizeof t->error, "%s: certificate verify failed: %s", what,
             X509_verify_cert_error_string(vr));
    ERR_clear_error();
    return;
  }
  take_errors(t->error, sizeof t->error, what);
}

/* One switch over every SSL_ERROR_*: returns 0 (retry later) or STP_EIO. */
static int classify(tls_conn *t, int ret, const char *what) {
  int e = SSL_get_error(t->ssl, ret);
  switch (e) {
  case SSL_ERROR_WANT_READ:
  case SSL_ERROR_WANT_WRITE: /* memory BIOs never block on write */
    return 0;
  case SSL_ERROR_ZERO_RETURN:
    snprintf(t->error, sizeof t->error, "%s: peer closed the TLS session", what);
    return STP_EIO;
  case SSL_ERROR_SYSCALL:
    snprintf(t->error, sizeof t->error, "%s: connection closed during TLS", what);
    ERR_clear_error();
    return STP_EIO;
  case SSL_ERROR_SSL:
    describe_ssl_error(t, what);
    return STP_EIO;
  default: /* WANT_X509_LOOKUP, WANT_ACCEPT, ... are not used here */
    snprintf(t->error, sizeof t->error, "%s: unexpected SSL error %d", what, e);
    ERR_clear_error();
    return STP_EIO;
  }
}

int tls_conn_handshake(tls_conn *t) {
  ERR_clear_error();
  int r = SSL_do_handshake(t->ssl);
  if (r == 1)
    return 1;
  return classify(t, r, "TLS handshake");
}

long tls_conn_read(tls_conn *t, char *buf, size_t cap) {
  ERR_clear_error();
  int r = SSL_read(t->ssl, buf, cap > INT32_MAX ? INT32_MAX : (int)cap);
  if (r > 0)
    return r;
  return classify(t, r, "TLS read");
}

int tls_conn_write(tls_conn *t, const char *p, size_t n) {
  while (n > 0) {
    ERR_clear_error();
    int chunk = n > 16384 ? 16384 : (int)n;
    int r = SSL_write(t->ssl, p, chunk);
    if (r <= 0)
      return classify(t, r, "TLS write") < 0 ? STP_EIO : STP_EAGAIN;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

size_t tls_conn_pending_out(tls_conn *t) {
  return BIO_pending(t->out);
}

size_t tls_conn_pull(tls_conn *t, char *buf, size_t cap) {
  int r = BIO_read(t->out, buf, cap > INT32_MAX ? INT32_MAX : (int)cap);
  return r > 0 ? (size_t)r : 0;
}

void tls_conn_shutdown(tls_conn *t) {
  ERR_clear_error();
  SSL_shutdown(t->ssl);
  ERR_clear_error();
}

const char *tls_conn_version(const tls_conn *t) {
  return SSL_get_version(t->ssl);
}

const char *tls_conn_cipher(const tls_conn *t) {
  const SSL_CIPHER *c = SSL_get_current_cipher(t->ssl);
  return c ? SSL_CIPHER_get_name(c) : "";
}

const char *tls_conn_error(const tls_conn *t) {
  return t->error[0] ? t->error : "TLS error";
}

bool tls_conn_verify_failed(const tls_conn *t) {
  return t->verify_failed;
}
