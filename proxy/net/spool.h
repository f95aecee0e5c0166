/* spool.h - the durable spool on disk: messages the upstream could not
 * take right now, kept until the queue runner (spool_run.c) delivers them.
 *
 * Owns: spool.dir (created 0700, locked against a second process unless
 * every process has spool.shared: then spool_claim.h's claims), its
 * tmp/ (being written) and queue/ (committed) directories, the index of
 * committed messages with their delivery state, the messages being
 * received (spool_in), and the jobs that touch the files. Formats and
 * policy are the pure core's (smtp-tls-proxy/spool.h).
 *
 * Guarantees:
 *  - file I/O runs in libuv's thread pool, never on the loop (the one
 *    exception: opening the directory at start, before the listeners);
 *  - a message is committed by fsync(file), rename(tmp -> queue) and
 *    fsync(queue/): the rename is the commit point, and spool_in_commit
 *    reports success only after all three; a failure of any step (disk
 *    full, I/O error, over max_size or max_messages) is reported as such
 *    and the partial file is removed;
 *  - shared: a message is delivered only under its claim, the claim is
 *    let go only after the attempt's state or removal is on disk, and
 *    queue/ is read again every SPOOL_SHARED_RESCAN_MS;
 *  - at start tmp/ is emptied (shared: the files of dead replicas only)
 *    and queue/ is read back; a file that does
 *    not parse whole, or whose size disagrees with its envelope, is logged
 *    and never delivered; an orphan state file is removed; a commit whose
 *    message is written meanwhile waits for the read-back, so max_size
 *    and max_messages count the queue from the first second and nothing
 *    is delivered (or removed) before the index is whole;
 *  - the delivery state of a message is replaced atomically (write tmp,
 *    fsync, rename, fsync of queue/), retried until it is on disk; a lost
 *    or torn state file only resets the schedule;
 *  - callbacks come from the loop, never from inside a spool_* call.
 */
#ifndef STP_NET_SPOOL_H
#define STP_NET_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "smtp-tls-proxy/config.h"
#include "smtp-tls-proxy/spool.h"

typedef struct spool spool;

/* Someone waiting for a message's state to be on disk (spool_save_state_then).
 * Owned by the waiter; linked into the entry or the job writing it. */
typedef struct spool_waiter {
  struct spool_waiter *next, **prev;
  void (*fn)(void *arg, int err); /* 0: durable; else why not (a retry follows) */
  void *arg;
} spool_waiter;

/* One committed message. */
typedef struct spool_entry {
  spool_env env; /* as parsed from the file */
  spool_state st;
  uint64_t hdr_len;   /* the body starts here */
  uint64_t file_size; /* what it counts against max_size */
  bool busy;          /* a delivery holds it */
  bool force;         /* `queue retry`: the next try ignores upstream back-off */
  /* private to spool.c */
  bool jobbing, st_dirty, remove_asked, removed;
  char remove_why[64];
  /* shared spool (spool_claim.h): the claim held, and the rescans' marks */
  bool claimed;
  int claim_fd;
  unsigned born_gen, touched_gen;
  uint64_t skip_until_ms; /* claimed by another replica: not before */
  spool_waiter *waiters;  /* for the next state write */
  uint64_t st_retry_ms;   /* a failed state write is tried again then */
} spool_entry;

/* Wall clock in ms since the epoch (what spool files record). */
uint64_t spool_wall_ms(void);

/* Create and lock cfg->dir, empty tmp/, and start reading queue/ back in
 * the thread pool. 0, or STP_EIO with the reason in err. */
int spool_open(uv_loop_t *loop, const stp_spool_cfg *cfg, spool **out, char *err, size_t errlen);
/* A reload's limits, retry schedule and notify (dir stays as opened). */
void spool_reconfigure(spool *sp, const stp_spool_cfg *cfg);
const stp_spool_cfg *spool_cfg(const spool *sp);
const char *spool_dir(const spool *sp);
/* Stop: frees itself once the jobs and messages in flight have ended,
 * and every spool_hold() was undone. */
void spool_close(spool *sp);
/* Whoever reads the spool's files or entries outside its own jobs (a
 * failure notice reading the original headers) holds it, so that a
 * SIGTERM meanwhile cannot free it under the reader. */
void spool_hold(spool *sp);
void spool_unhold(spool *sp);

/* queue/ has been read back. */
bool spool_recovered(const spool *sp);
/* Below max_messages and max_size (counting commits in flight). */
bool spool_room(const spool *sp);
size_t spool_count(const spool *sp);
uint64_t spool_bytes(const spool *sp);
/* created_ms of the oldest message, 0 when empty. */
uint64_t spool_oldest_ms(const spool *sp);
/* Above 90% of max_size: the reason text, for /healthz. */
bool spool_degraded(const spool *sp, char *why, size_t cap);

/* ---- messages being received ------------------------------------------- */
typedef struct spool_in spool_in;
/* ok: the message is durable as `id_or_error`; else why it is not. */
typedef void (*spool_in_done_fn)(void *owner, bool ok, const char *id_or_error);

/* A new message with envelope env (borrowed; id and created are set
 * here). drain(owner) when the write queue has gone down (see msgcopy.h).
 * NULL when env cannot be written (bad characters, no recipients). */
spool_in *spool_in_begin(spool *sp, const spool_env *env, void (*drain)(void *owner), void *owner);
void spool_in_body(spool_in *in, const char *p, size_t n);
size_t spool_in_queued(const spool_in *in);
/* Make it durable; done(owner, ...) from the loop. `reason` becomes the
 * state's last reply. The spool_in is freed after done. */
void spool_in_commit(spool_in *in, const char *reason, spool_in_done_fn done, void *owner);
/* The owner is gone: a message not yet committing is dropped (its file
 * removed); a commit under way goes on, its result only logged. */
void spool_in_release(spool_in *in);

/* ---- the index (for the runner and the control socket) -------------------- */
spool_entry *spool_find(spool *sp, const char *id);
size_t spool_entries(spool *sp, spool_entry ***out); /* borrowed array */
/* The oldest due message (not busy, next try reached; when held, only
 * once past max_age), or NULL. */
spool_entry *spool_due(spool *sp, uint64_t now_ms);
/* Path of the message file (for reading its body). */
void spool_msg_path(const spool *sp, const spool_entry *e, char *out, size_t cap);
/* Write e->st (serialised per message; the latest state wins): file
 * fsync, rename into queue/, fsync of queue/, as durable as the message.
 * A write that fails is tried again (spool_retry_states). */
void spool_save_state(spool *sp, spool_entry *e);
/* The same, and w->fn(arg, err) from the loop once a write that began
 * after this call has ended (err 0: on disk; -ENOENT: the message was
 * removed meanwhile). Cancel with spool_waiter_cancel before w goes. */
void spool_save_state_then(spool *sp, spool_entry *e, spool_waiter *w, void (*fn)(void *, int),
                           void *arg);
void spool_waiter_cancel(spool_waiter *w);
/* Start again the state writes that failed, once their pause is over
 * (the queue runner calls it on its tick). */
void spool_retry_states(spool *sp, uint64_t now_ms);
/* Remove the message (files, index); while busy, once spool_release()d.
 * `why` for the log line (event spool-removed) unless NULL. */
void spool_remove(spool *sp, spool_entry *e, const char *why);
/* A delivery is done with e. */
void spool_release(spool *sp, spool_entry *e);

/* ---- a spool shared by several processes (spool.shared) -------------------- */
#define SPOOL_SHARED_RESCAN_MS 2000 /* how often queue/ is read again */
bool spool_shared(const spool *sp);
/* e is claimed (ok) with e->busy set and its state read again from the
 * file; or not (!ok): e->busy is cleared, and e is NULL when the message
 * is gone (another replica removed it; it has left the index). */
typedef void (*spool_claim_fn)(void *arg, spool_entry *e, bool ok);
/* Claim e for a delivery (shared spools only): the message file's lock,
 * held until spool_release()'s state write or removal has ended. cb from
 * the loop. */
void spool_claim(spool *sp, spool_entry *e, spool_claim_fn cb, void *arg);

#endif
