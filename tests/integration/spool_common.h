/* spool_common.h - helpers shared by the spool's integration tests
 * (spool_common.c): a proxy with a spool route, sending, the queue
 * command, and looking into the spool directory. */
#ifndef STP_INTEG_SPOOL_COMMON_H
#define STP_INTEG_SPOOL_COMMON_H

#include <stdbool.h>
#include <stddef.h>

#include "harness.h"

/* The harness's proxy with route "default" on_upstream_failure: spool, a
 * spool in <test dir>/spool notifying postmaster@example.com, and short
 * upstream timeouts; spool_extra: more lines (2 spaces) of the section,
 * top_extra: more top-level YAML. */
void sp_yaml_top(int up_port, const char *up_tls, const char *spool_extra, const char *top_extra,
                 char *yaml, size_t cap);
void sp_yaml(int up_port, const char *up_tls, const char *spool_extra, char *yaml, size_t cap);
void sp_start(h_proxy *px, int up_port, const char *up_tls, const char *spool_extra);

/* A session: EHLO, one message from scan@printer.test to rcpts (NULL
 * ended), QUIT. Returns the last reply's code (the dot's, unless an
 * earlier command failed). */
int sp_send(int port, const char *const rcpts[], const char *body, char *text, size_t cap);
/* The id in "... queued locally as ID ...". */
bool sp_queued_id(const char *reply, char id[32]);
/* `smtp-tls-proxy -c CONFIG queue ARGS` without the proxy's environment;
 * returns its exit status, with stdout and stderr in out. */
int sp_queue(const h_proxy *px, const char *args, char *out, size_t cap);
/* Until `queue list` says 0 messages (bounded). */
bool sp_wait_empty(const h_proxy *px, int timeout_ms);
bool sp_queue_dir_empty(const h_proxy *px);
bool sp_tmp_dir_empty(const h_proxy *px);
/* tmp/ empties within timeout_ms (a failed commit's file goes in the
 * thread pool, just after the device's answer). */
bool sp_wait_tmp_empty(const h_proxy *px, int timeout_ms);
int sp_count_lines(const char *text, const char *needle);
/* in with the first `from` replaced by `to`. */
void sp_replace(const char *in, const char *from, const char *to, char *out, size_t cap);

#endif
