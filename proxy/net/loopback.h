/* loopback.h - the redirect listener of `oauth2 login` (RFC 8252 7.3): a
 * tiny HTTP/1.x server on 127.0.0.1, port chosen by the kernel, that hands
 * the request target of each GET to its owner and sends back the short
 * page the owner picks.
 *
 * Owns: the listening socket and its connections. Guarantees: loopback
 * only; at most LOOPBACK_MAX_CONNS connections, each bounded by a
 * LOOPBACK_HEAD_MAX request head and LOOPBACK_CONN_MS; the head is parsed
 * by the HTTP/1 codec (http1.h); the owner's function runs from the loop
 * (a read callback) and may call loopback_stop() there: the answer being
 * written still goes out. Memory is released in close callbacks.
 */
#ifndef STP_LOOPBACK_H
#define STP_LOOPBACK_H

#include <stddef.h>
#include <uv.h>

#define LOOPBACK_HEAD_MAX 16384
#define LOOPBACK_MAX_CONNS 16
#define LOOPBACK_CONN_MS 10000

typedef struct loopback loopback;

/* A GET for target[0..len): set *status (200, 400, 404) and *page (a
 * static text/plain body). */
typedef void (*loopback_fn)(void *arg, const char *target, size_t len, int *status,
                            const char **page);

/* Listen on 127.0.0.1:0; *port gets the port. NULL and err on failure. */
loopback *loopback_start(uv_loop_t *loop, loopback_fn fn, void *arg, int *port, char *err,
                         size_t errlen);
/* Stop listening and close idle connections; answers being written are
 * finished first. fn is not called again. */
void loopback_stop(loopback *lb);

#endif
