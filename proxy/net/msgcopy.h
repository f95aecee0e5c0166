/* msgcopy.h - a message kept in a file: appended from the loop with
 * back-pressure, written by libuv's thread pool, read back in chunks.
 *
 * For whatever needs the bytes of a message after the device sent them:
 * the spool (spool.c) and upstreams that send a message from disk. It
 * knows nothing of commits or queues.
 *
 * Owns: one file, the bytes queued for it and the jobs that write them.
 * Guarantees: file I/O never runs on the loop; the file is created only
 * once there is reason to (MSGCOPY_BATCH bytes, or a flush, patch or
 * close); writes reach the file in the order they were queued; memory is bounded by the caller, who
 * stops appending above MSGCOPY_HIGH_WATER queued bytes and resumes on the drain callback (below
 * MSGCOPY_LOW_WATER); the first error is sticky and reported by msgcopy_flush()/msgcopy_close();
 * msgcopy_flush() gives the SHA-256 of what was appended after msgcopy_hash_start(), read back in
 * the thread pool (a copy that is dropped is never hashed); callbacks come from the loop, never
 * from inside a msgcopy call; msgcopy_free() may be called at any time: the object goes once the
 * job in flight has finished, and no callback follows.
 */
#ifndef STP_MSGCOPY_H
#define STP_MSGCOPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define MSGCOPY_CHUNK (64 * 1024)
#define MSGCOPY_HIGH_WATER (1024 * 1024)
#define MSGCOPY_LOW_WATER (256 * 1024)
/* Appends wait in memory until this many are queued (or a flush, patch or
 * close asks for the file): a copy that is dropped small never touches
 * the disk. Equal to the low-water mark, so a paused owner always gets
 * its drain callback. */
#define MSGCOPY_BATCH MSGCOPY_LOW_WATER

typedef struct msgcopy msgcopy;
/* err: 0, or a negative errno (libuv's convention). */
typedef void (*msgcopy_done_fn)(void *arg, int err);

/* A new file at path (created 0600, O_EXCL). drain(owner) is called when
 * the queue falls below MSGCOPY_LOW_WATER after it was above the high
 * water mark; may be NULL. */
msgcopy *msgcopy_create(uv_loop_t *loop, const char *path, void (*drain)(void *owner), void *owner);
void msgcopy_append(msgcopy *c, const void *p, size_t n);
/* Process-wide: the bytes appended to copies whose files are neither
 * removed nor renamed away yet (what sits in tmp/ or is about to). */
uint64_t msgcopy_tmp_bytes(void);
/* A bound on them: room(ctx) is how many bytes copies may hold in all; an
 * append beyond it fails that copy (the rest is dropped; its flush and
 * close report -EDQUOT). NULL: no bound. The spool sets it (max_size). */
void msgcopy_set_room(uint64_t (*room)(void *ctx), void *ctx);
/* The bytes appended from now on are the ones msgcopy_flush hashes. */
void msgcopy_hash_start(msgcopy *c);
/* Bytes queued and not yet written. */
size_t msgcopy_queued(const msgcopy *c);
/* Bytes appended in all, and of those the hashed ones. */
uint64_t msgcopy_size(const msgcopy *c);
uint64_t msgcopy_hashed_size(const msgcopy *c);
/* done(arg, err) once everything queued so far is written and the
 * hashed bytes read back: msgcopy_digest is then their SHA-256. */
void msgcopy_flush(msgcopy *c, msgcopy_done_fn done, void *arg);
void msgcopy_digest(const msgcopy *c, uint8_t out[32]);
/* Overwrite n bytes at off (queued after what is queued already). */
void msgcopy_patch(msgcopy *c, uint64_t off, const void *p, size_t n);
/* fsync when `sync`, close the file and, when rename_to is given, rename
 * it there (never over an existing file); done(arg, err). */
void msgcopy_close(msgcopy *c, bool sync, const char *rename_to, msgcopy_done_fn done, void *arg);
/* Stop: no callback follows; the file is removed when `unlink`. */
void msgcopy_free(msgcopy *c, bool unlink);
const char *msgcopy_path(const msgcopy *c);

/* ---- reading a message back ---------------------------------------------- */
typedef struct msgcopy_reader msgcopy_reader;
/* p/n: the next chunk (n <= MSGCOPY_CHUNK), valid during the call; n == 0
 * with err == 0: the end. A file shorter than offset + len is -EIO. */
typedef void (*msgcopy_read_fn)(void *arg, const char *p, size_t n, int err);

/* Reads len bytes of path from offset, hashing them (SHA-256). */
msgcopy_reader *msgcopy_reader_open(uv_loop_t *loop, const char *path, uint64_t offset,
                                    uint64_t len);
/* The next chunk; one read at a time. cb comes from the loop. */
void msgcopy_read(msgcopy_reader *r, msgcopy_read_fn cb, void *arg);
/* The hash of everything read so far. */
void msgcopy_reader_digest(const msgcopy_reader *r, uint8_t out[32]);
/* Stop: a read in flight ends without its callback. */
void msgcopy_reader_free(msgcopy_reader *r);

#endif
