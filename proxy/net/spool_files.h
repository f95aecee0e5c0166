/* spool_files.h - the blocking file operations of the spool (spool_files.c).
 *
 * For libuv's thread pool only (spool.c runs them as jobs), except
 * spool_files_prepare, which runs once at start before the listeners open.
 * Every function returns 0 or a negative errno; none logs (workers do not
 * write the log: the after-callbacks on the loop do).
 */
#ifndef STP_SPOOL_FILES_H
#define STP_SPOOL_FILES_H

#include <stdbool.h>
#include <stddef.h>

#include "smtp-tls-proxy/config.h"
#include "spool.h"

/* dir, dir/tmp, dir/queue (0700), an exclusive lock on dir (*lock_fd), a
 * stale control socket removed, and tmp/ emptied (what a crash left there
 * was never committed). */
int spool_files_prepare(const char *dir, int *lock_fd, char *err, size_t errlen);

/* mkdir 0700 (or chmod an existing one to 0700); not a symlink. */
int spool_files_mkdir(const char *p);
/* What the names this process writes into tmp/ begin with: "" unless the
 * spool is shared ("<replica>.", set once at start by spool_claim.c). */
void spool_files_set_tmp_prefix(const char *prefix);
const char *spool_files_tmp_prefix(void);

/* The state text of message id, written to tmp/, fsync'd when `sync`,
 * renamed over queue/<id>.state, and queue/ fsync'd when `sync`. */
int spool_files_write_state(const char *dir, const char *id, const char *text, size_t len,
                            bool sync);
/* fsync(queue/): what makes the renames into it durable. One call covers
 * every rename that finished before it (group commit). */
int spool_files_sync_queue(const char *dir);
/* A rename into queue/ that could not be made durable is taken back:
 * queue/<id> and queue/<id>.state go, without a sync. */
void spool_files_unqueue(const char *dir, const char *id);
/* queue/<id>, then queue/<id>.state, then fsync(queue/). */
int spool_files_remove(const char *dir, const char *id);

/* What reading queue/ back found. */
typedef struct spool_scan {
  spool_entry **v; /* parsed messages with their state */
  size_t n;
  char **bad; /* "name: why" of files refused */
  size_t n_bad;
  size_t orphan_states; /* removed */
  size_t bad_states;    /* unreadable state files: schedule reset */
} spool_scan;

void spool_files_scan(const char *dir, const stp_spool_cfg *cfg, spool_scan *out);
void spool_entry_free(spool_entry *e);

#endif
