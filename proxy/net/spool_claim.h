/* spool_claim.h - one spool directory shared by several proxy processes
 * (spool.shared: true): the replica's identity, its start, and the
 * per-message claims (spool_claim.c).
 *
 * Owns: the replica tag (8 hex digits, random per process start), the
 * replica's liveness lock ctl/<tag>.lock, its names in tmp/ ("<tag>.")
 * and the claim of a message file for a delivery.
 *
 * The lock: an open-file-description lock (fcntl F_OFD_SETLK, F_WRLCK on
 * the whole file). Chosen over classic POSIX fcntl locks because those
 * belong to the process, so closing *any* descriptor of the file (the
 * body reader opens the message file again) would drop the claim, and two
 * claims inside one process would not exclude each other; and over flock
 * because Linux emulates flock on NFS with a POSIX lock anyway. The kernel
 * drops an OFD lock when its last descriptor closes, so when the process
 * dies; on NFSv4 the client takes it as a byte-range lock from the
 * server, which drops it when the client's lease ends (a dead host).
 *
 * Guarantees: a message is claimed by at most one process at a time; a
 * claim is only reported for a file that is still queue/<id> (not one
 * another replica unlinked after we opened it); start-up touches only the
 * files of replicas whose liveness lock is free (dead ones); a directory
 * whose locks do not exclude each other is refused. Blocking: the thread
 * pool's, except spool_claim_prepare (at start, before the listeners).
 */
#ifndef STP_SPOOL_CLAIM_H
#define STP_SPOOL_CLAIM_H

#include <stdbool.h>
#include <stddef.h>

#include "smtp-tls-proxy/spool.h"

#define SPOOL_TAG_LEN 8

/* The replica tag ("" when not shared). */
const char *spool_replica_tag(void);

/* Shared start: dir, tmp/, queue/, ctl/ (0700); a shared lock on dir (a
 * process with spool.shared off holds it exclusively: refused both
 * ways); the lock probe; this replica's liveness lock (*live_fd) and the
 * files of dead replicas removed. *dir_fd holds the directory lock.
 * 0, or a negative errno with the reason in err. */
int spool_claim_prepare(const char *dir, int *dir_fd, int *live_fd, char *err, size_t errlen);

/* What dead replicas left (ctl/ sockets and locks, tmp/ files): removed
 * by every replica now and then, so a crash's leftovers do not wait for
 * a restart. */
void spool_claim_sweep(const char *dir);

/* The control socket's path: control.sock, or ctl/<tag> when shared. */
void spool_claim_ctl_path(const char *dir, bool shared, char *out, size_t cap);

/* Claim queue/<id>: 0 with *fd holding the lock, -EAGAIN when another
 * process holds it, -ENOENT when the message is gone, or -errno. */
int spool_claim_take(const char *dir, const char *id, int *fd);
/* The state file of a claimed message, parsed into *st: 0, -ENOENT (none
 * yet: the message was never tried), or -EINVAL. */
int spool_claim_read_state(const char *dir, const char *id, size_t n_rcpts, spool_state *st);

#endif
