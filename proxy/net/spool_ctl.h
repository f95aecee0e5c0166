/* spool_ctl.h - the spool's control socket, server side (spool_ctl.c).
 *
 * Owns: the unix socket control.sock in the spool directory (mode 0600 in
 * a 0700 directory: only the proxy's own user can reach it) and its
 * connections. Serves the queuectl.h protocol for `smtp-tls-proxy -c FILE
 * queue ...`: list, show, retry, hold, release, delete. Guarantees: one
 * bounded request line per connection, at most SPOOL_CTL_MAX_CONNS at
 * once, each closed after SPOOL_CTL_TIMEOUT_MS; runs on the loop and
 * touches no file itself (state changes go through spool.c's jobs); hold
 * and release answer OK only once the new state is on disk; no answer
 * line carries a control character (queuectl_printable).
 */
#ifndef STP_SPOOL_CTL_H
#define STP_SPOOL_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "smtp-tls-proxy/queuectl.h"
#include "spool.h"
#include "spool_run.h"

#define SPOOL_CTL_MAX_CONNS 8
#define SPOOL_CTL_TIMEOUT_MS 10000

typedef struct spool_ctl spool_ctl;

/* Listen on <spool dir>/control.sock. 0, or STP_ENET with err. */
int spool_ctl_start(uv_loop_t *loop, spool *sp, spool_run *run, spool_ctl **out, char *err,
                    size_t errlen);
/* Close the socket and every connection; frees itself from the loop. */
void spool_ctl_stop(spool_ctl *c);

/* The same requests from inside the process (the admin page): the answer
 * lines as the socket would send them, appended to out (free out->data).
 * by names who asked, for the log ("admin:NAME"). */
typedef struct spool_ctl_out {
  char *data;
  size_t len, cap;
} spool_ctl_out;
void spool_ctl_exec(spool *sp, spool_run *run, const queuectl_req *q, const char *by,
                    spool_ctl_out *out);

/* The client: send one request line to the socket of dir (shared: the
 * first replica's socket in dir/ctl/ that answers), print the
 * answer (output on stdout, errors on stderr). Returns the exit status:
 * 0 for OK, 1 otherwise. Blocking, bounded by SPOOL_CTL_TIMEOUT_MS. */
int spool_ctl_client(const char *dir, bool shared, const char *line);

#endif
