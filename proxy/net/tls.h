/* tls.h - TLS with BoringSSL over memory BIOs; no sockets, no event loop.
 *
 * Owns: SSL_CTX setup (client: verified chain and host name against a CA
 * bundle, TLS 1.2+ unless told otherwise; server: certificate, key and a
 * minimum version that may go down to 1.0 for old devices; server cipher
 * preference, never 3DES, forward-secret AEAD only unless the listener
 * accepts TLS below 1.2, where the CBC-SHA suites old stacks need follow)
 * and the per-connection engine: ciphertext in, plaintext out and the
 * reverse.
 * Guarantees: the OpenSSL error queue is cleared before every SSL_* call
 * and drained into a readable reason after a failure; every SSL_ERROR_* is
 * handled in one switch.
 */
#ifndef STP_TLS_H
#define STP_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tls_ctx tls_ctx;
typedef struct tls_conn tls_conn;

/* ca_file NULL: system bundle. verify false only for `insecure`. Returns
 * NULL with a reason in err on failure. */
tls_ctx *tls_ctx_client(const char *ca_file, uint16_t min_version, bool verify, char *err,
                        size_t errlen);
/* cert/key may be NULL: a self-signed certificate for `hostname` is made. */
tls_ctx *tls_ctx_server(const char *cert, const char *key, uint16_t min_version,
                        const char *hostname, char *err, size_t errlen);
void tls_ctx_free(tls_ctx *c);

/* server_name: SNI and the name the certificate must carry (client only;
 * NULL for servers). */
tls_conn *tls_conn_new(tls_ctx *c, const char *server_name, bool server);
void tls_conn_free(tls_conn *t);

/* Ciphertext from the network. */
int tls_conn_feed(tls_conn *t, const char *p, size_t n);
/* Drive the handshake: 1 done, 0 needs more input, <0 failed (reason). */
int tls_conn_handshake(tls_conn *t);
/* Plaintext out: >0 bytes, 0 needs more input, STP_EIO closed or failed. */
long tls_conn_read(tls_conn *t, char *buf, size_t cap);
/* Plaintext in; the ciphertext is then available via tls_conn_pull. */
int tls_conn_write(tls_conn *t, const char *p, size_t n);
/* Ciphertext to send: copies up to cap bytes, returns count (0 = none). */
size_t tls_conn_pull(tls_conn *t, char *buf, size_t cap);
size_t tls_conn_pending_out(tls_conn *t);
/* Queue a close_notify alert. */
void tls_conn_shutdown(tls_conn *t);

const char *tls_conn_version(const tls_conn *t); /* "TLSv1.3" */
const char *tls_conn_cipher(const tls_conn *t);
const char *tls_conn_error(const tls_conn *t);  /* last failure reason */
bool tls_conn_verify_failed(const tls_conn *t); /* certificate problem */

#endif
