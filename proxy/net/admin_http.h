/* admin_http.h - the admin page and API server on admin.listen.
 *
 * Owns: the listening socket, its connections (plain, or TLS 1.2+ through
 * stream.c when admin.certificate and private_key are given), the delivery
 * history (a log observer for the process's life) and the glue from the
 * pure router (admin.h) to the spool's control code (spool_ctl_exec) and
 * the test-route machinery (testroute_start). Guarantees: at most
 * ADMIN_HTTP_MAX_CONNS connections (more are closed at once); a request
 * is read into a fixed ADMIN_MAX_REQUEST buffer; every connection ends
 * within ADMIN_HTTP_TIMEOUT_MS (a test message: ADMIN_HTTP_TEST_MS); the
 * password check runs on libuv's thread pool, never on the loop; one
 * response per connection, then close.
 */
#ifndef STP_ADMIN_HTTP_H
#define STP_ADMIN_HTTP_H

#include <stddef.h>
#include <uv.h>

#include "gen.h"

#define ADMIN_HTTP_MAX_CONNS 16
#define ADMIN_HTTP_TIMEOUT_MS 15000
#define ADMIN_HTTP_TEST_MS 90000

typedef struct admin_http admin_http;
struct spool;
struct spool_run;

/* Serve gen->cfg->admin. Logs event=admin-listening addr=IP:PORT. 0 and
 * *out, or a negative code with the reason in err. */
int admin_http_start(uv_loop_t *loop, srv_gen *gen, struct spool *sp, struct spool_run *run,
                     admin_http **out, char *err, size_t errlen);
/* A reload: users, upstreams and routes of the new generation (the
 * address, TLS and history length stay as started). */
void admin_http_set_gen(admin_http *h, srv_gen *gen);
/* Close everything; memory goes in close callbacks (run the loop). */
void admin_http_stop(admin_http *h);

#endif
