/* netbind.h - bind and listen on one "host:port" string, for the SMTP
 * listeners and the metrics server alike.
 *
 * Owns nothing: the caller initialises and later closes the handle. libuv
 * error codes stop here: the caller gets an STP_* code and the reason text.
 */
#ifndef STP_NETBIND_H
#define STP_NETBIND_H

#include <stddef.h>
#include <uv.h>

/* Bind `h` (already uv_tcp_init'ed) to spec ("0.0.0.0:25", "[::]:2525",
 * ":25" or "*:25" for every address) and listen. On success returns 0 and
 * writes the address really bound (port 0 resolved) to bound; otherwise
 * STP_EINVAL (bad spec) or STP_ENET with the reason in err. */
int netbind_listen(uv_tcp_t *h, const char *spec, int backlog, uv_connection_cb cb, char *bound,
                   size_t bound_cap, char *err, size_t err_cap);

#endif
