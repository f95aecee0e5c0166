/* msgcopy.c - a message kept in a file (see msgcopy.h).
 *
 * The loop queues operations (write, patch, flush mark, close); one job at
 * a time takes everything queued so far into libuv's thread pool and runs
 * it in order, so the worker never shares an operation with the loop. The
 * after-callback frees what was written, runs the callbacks of the marks,
 * and starts the next job. Freeing while a job runs only marks the object;
 * a last job closes (and maybe unlinks) the file, and its after-callback
 * frees the memory.
 */
#include "msgcopy.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "smtp-tls-proxy/util.h"

typedef enum { OP_WRITE, OP_PATCH, OP_FLUSH, OP_CLOSE } op_kind;

typedef struct op {
  struct op *next;
  op_kind kind;
  bool sync; /* OP_CLOSE */
  uint64_t off;
  size_t len, cap;
  msgcopy_done_fn done;
  void *arg;
  int err;
  char *rename_to; /* OP_CLOSE */
  int fail;        /* OP_WRITE: the copy went over msgcopy_set_room's bound */
  char data[];
} op;

/* Bytes of every copy, from its append until its file is removed or
 * renamed away (the loop's only). */
static uint64_t g_tmp_bytes;
static uint64_t (*g_room)(void *ctx);
static void *g_room_ctx;

struct msgcopy {
  uv_loop_t *loop;
  char *path;
  void (*drain)(void *owner);
  void *owner;
  /* the worker's while a job runs */
  int fd;
  bool fd_done; /* closed for good */
  int err;      /* first error, sticky */
  SHA256_CTX sha;
  op *batch;
  /* the loop's */
  op *head, *tail;
  uv_work_t work;
  bool busy, dead, disposing, unlink, above;
  bool urgent;  /* a flush, patch or close is queued: write now */
  bool started; /* a job ever ran: the file may exist */
  size_t queued;
  uint64_t size, hash_from; /* hash_from: UINT64_MAX while nothing is hashed */
  uint64_t written;         /* the worker's: bytes appended to the file so far */
  uint64_t counted;         /* this copy's part of g_tmp_bytes */
  bool over;                /* went over the bound: appends are dropped */
};

static void start_job(msgcopy *c);

/* ---- the worker --------------------------------------------------------- */

static int write_all(int fd, const char *p, size_t n, uint64_t off, bool at) {
  while (n > 0) {
    ssize_t w = at ? pwrite(fd, p, n, (off_t)off) : write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      return -errno;
    if (w == 0)
      return -EIO;
    p += w;
    n -= (size_t)w;
    off += (uint64_t)w;
  }
  return 0;
}

/* The commit point of a file written under a temporary name. */
static int rename_noreplace(const char *from, const char *to) {
  if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
    return 0;
  if (errno != EINVAL && errno != ENOSYS)
    return -errno;
  /* A file system without RENAME_NOREPLACE: link refuses an existing name. */
  if (link(from, to) != 0)
    return -errno;
  unlink(from);
  return 0;
}

/* The digest, read back from the file at a flush (page cache, in the
 * thread pool): a copy that is dropped, as most are, is never hashed. */
static int hash_back(msgcopy *c) {
  if (c->hash_from == UINT64_MAX)
    return 0;
  SHA256_Init(&c->sha);
  char buf[MSGCOPY_CHUNK];
  for (uint64_t off = c->hash_from; off < c->written;) {
    size_t want = c->written - off < sizeof buf ? (size_t)(c->written - off) : sizeof buf;
    ssize_t got = pread(c->fd, buf, want, (off_t)off);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0)
      return got < 0 ? -errno : -EIO;
    SHA256_Update(&c->sha, buf, (size_t)got);
    off += (uint64_t)got;
  }
  return 0;
}

static void run_op(msgcopy *c, op *o) {
  if (o->fail && !c->err)
    c->err = o->fail;
  if (!c->err && c->fd < 0 && !c->fd_done) {
    c->fd = open(c->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (c->fd < 0)
      c->err = -errno;
  }
  if (!c->err) {
    switch (o->kind) {
    case OP_WRITE:
      c->err = write_all(c->fd, o->data, o->len, 0, false);
      c->written += o->len;
      break;
    case OP_PATCH:
      c->err = write_all(c->fd, o->data, o->len, o->off, true);
      break;
    case OP_CLOSE:
      if (o->sync && fsync(c->fd) != 0)
        c->err = -errno;
      break;
    case OP_FLUSH:
      c->err = hash_back(c);
      break;
    }
  }
  if (o->kind == OP_CLOSE && c->fd >= 0) {
    if (close(c->fd) != 0 && !c->err)
      c->err = -errno;
    c->fd = -1;
    c->fd_done = true;
    if (!c->err && o->rename_to)
      c->err = rename_noreplace(c->path, o->rename_to);
  }
  o->err = c->err;
}

static void work_cb(uv_work_t *w) {
  msgcopy *c = w->data;
  if (c->disposing) {
    if (c->fd >= 0)
      close(c->fd);
    c->fd = -1;
    if (c->unlink)
      unlink(c->path);
    return;
  }
  for (op *o = c->batch; o; o = o->next)
    run_op(c, o);
}

/* ---- the loop --------------------------------------------------------------- */

static void op_free(op *o) {
  free(o->rename_to);
  free(o);
}

static void destroy(msgcopy *c) {
  g_tmp_bytes -= c->counted;
  for (op *o = c->head; o;) {
    op *n = o->next;
    op_free(o);
    o = n;
  }
  free(c->path);
  free(c);
}

/* Callbacks of the finished batch, in order; one of them may free c. */
static void after_batch(msgcopy *c, op *b) {
  while (b) {
    op *o = b;
    b = b->next;
    if (o->kind == OP_WRITE)
      c->queued -= o->len;
    if (o->kind == OP_CLOSE && o->rename_to && !o->err) { /* no longer a copy */
      g_tmp_bytes -= c->counted;
      c->counted = 0;
    }
    msgcopy_done_fn done = o->done;
    void *arg = o->arg;
    int err = o->err;
    op_free(o);
    if (done && !c->dead)
      done(arg, err);
  }
}

static void after_cb(uv_work_t *w, int status) {
  msgcopy *c = w->data;
  (void)status;
  c->busy = false;
  if (c->disposing) {
    destroy(c);
    return;
  }
  op *b = c->batch;
  c->batch = NULL;
  after_batch(c, b);
  if (!c->dead && c->above && c->queued < MSGCOPY_LOW_WATER) {
    c->above = false;
    if (c->drain)
      c->drain(c->owner);
  }
  start_job(c);
}

static void start_job(msgcopy *c) {
  if (c->busy)
    return;
  if (c->dead) {
    c->disposing = true;
  } else {
    if (!c->head || (!c->urgent && c->queued < MSGCOPY_BATCH))
      return;
    c->batch = c->head;
    c->head = c->tail = NULL;
    c->urgent = false;
  }
  c->work.data = c;
  c->busy = true;
  c->started = true;
  /* uv_queue_work fails only without a work callback. */
  (void)uv_queue_work(c->loop, &c->work, work_cb, after_cb);
}

static op *push(msgcopy *c, op_kind kind, size_t cap) {
  op *o = stp_xmalloc(sizeof *o + cap); /* the data is not cleared: 64 KiB a message */
  memset(o, 0, sizeof *o);
  o->kind = kind;
  o->cap = cap;
  if (kind != OP_WRITE)
    c->urgent = true;
  if (c->tail)
    c->tail->next = o;
  else
    c->head = o;
  c->tail = o;
  return o;
}

msgcopy *msgcopy_create(uv_loop_t *loop, const char *path, void (*drain)(void *owner),
                        void *owner) {
  msgcopy *c = stp_xcalloc(1, sizeof *c);
  c->loop = loop;
  c->path = stp_xstrdup(path);
  c->drain = drain;
  c->owner = owner;
  c->fd = -1;
  c->hash_from = UINT64_MAX;
  SHA256_Init(&c->sha);
  return c;
}

uint64_t msgcopy_tmp_bytes(void) {
  return g_tmp_bytes;
}

void msgcopy_set_room(uint64_t (*room)(void *ctx), void *ctx) {
  g_room = room;
  g_room_ctx = ctx;
}

void msgcopy_append(msgcopy *c, const void *p, size_t n) {
  if (c->dead || c->over || n == 0)
    return;
  if (g_room && g_tmp_bytes + n > g_room(g_room_ctx)) {
    c->over = true; /* nothing more: flush and close report -EDQUOT */
    push(c, OP_WRITE, 0)->fail = -EDQUOT;
    c->urgent = true;
    start_job(c);
    return;
  }
  g_tmp_bytes += n;
  c->counted += n;
  op *t = c->tail;
  if (!t || t->kind != OP_WRITE || t->cap - t->len < n)
    t = push(c, OP_WRITE, n > MSGCOPY_CHUNK ? n : MSGCOPY_CHUNK);
  memcpy(t->data + t->len, p, n);
  t->len += n;
  c->queued += n;
  c->size += n;
  if (c->queued > MSGCOPY_HIGH_WATER)
    c->above = true;
  start_job(c);
}

void msgcopy_hash_start(msgcopy *c) {
  c->hash_from = c->size;
}

size_t msgcopy_queued(const msgcopy *c) {
  return c->queued;
}

uint64_t msgcopy_size(const msgcopy *c) {
  return c->size;
}

uint64_t msgcopy_hashed_size(const msgcopy *c) {
  return c->hash_from == UINT64_MAX ? 0 : c->size - c->hash_from;
}

const char *msgcopy_path(const msgcopy *c) {
  return c->path;
}

void msgcopy_flush(msgcopy *c, msgcopy_done_fn done, void *arg) {
  op *o = push(c, OP_FLUSH, 0);
  o->done = done;
  o->arg = arg;
  start_job(c);
}

void msgcopy_digest(const msgcopy *c, uint8_t out[32]) {
  SHA256_CTX copy = c->sha; /* final only when no job runs */
  SHA256_Final(out, &copy);
}

void msgcopy_patch(msgcopy *c, uint64_t off, const void *p, size_t n) {
  op *o = push(c, OP_PATCH, n);
  memcpy(o->data, p, n);
  o->len = n;
  o->off = off;
  start_job(c);
}

void msgcopy_close(msgcopy *c, bool sync, const char *rename_to, msgcopy_done_fn done, void *arg) {
  op *o = push(c, OP_CLOSE, 0);
  o->sync = sync;
  o->rename_to = rename_to ? stp_xstrdup(rename_to) : NULL;
  o->done = done;
  o->arg = arg;
  start_job(c);
}

void msgcopy_free(msgcopy *c, bool unlink) {
  if (!c || c->dead)
    return;
  c->dead = true;
  c->unlink = unlink;
  if (!c->started) { /* never written: no file, nothing to close */
    destroy(c);
    return;
  }
  start_job(c); /* the last job, unless one runs: then after it */
}

/* ---- reading back ------------------------------------------------------------ */

struct msgcopy_reader {
  uv_loop_t *loop;
  char *path;
  uint64_t off, left;
  int fd;
  SHA256_CTX sha;
  uv_work_t work;
  bool busy, dead;
  int err;
  size_t n;
  msgcopy_read_fn cb;
  void *arg;
  char buf[MSGCOPY_CHUNK];
};

static void read_work_cb(uv_work_t *w) {
  msgcopy_reader *r = w->data;
  r->n = 0;
  if (r->dead || r->err || r->left == 0) {
    if (r->fd >= 0)
      close(r->fd);
    r->fd = -1;
    return;
  }
  if (r->fd < 0 && (r->fd = open(r->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
    r->err = -errno;
    return;
  }
  size_t want = r->left < sizeof r->buf ? (size_t)r->left : sizeof r->buf;
  ssize_t got;
  do
    got = pread(r->fd, r->buf, want, (off_t)r->off);
  while (got < 0 && errno == EINTR);
  if (got <= 0) {
    r->err = got < 0 ? -errno : -EIO; /* shorter than its envelope says */
    return;
  }
  r->n = (size_t)got;
  r->off += (uint64_t)got;
  r->left -= (uint64_t)got;
  SHA256_Update(&r->sha, r->buf, r->n);
}

static void read_after_cb(uv_work_t *w, int status) {
  msgcopy_reader *r = w->data;
  r->busy = false;
  if (r->dead) {
    if (r->fd >= 0) { /* the file is still open: one more job closes it */
      r->busy = true;
      (void)uv_queue_work(r->loop, &r->work, read_work_cb, read_after_cb);
      return;
    }
    free(r->path);
    free(r);
    return;
  }
  int err = status < 0 ? status : r->err;
  msgcopy_read_fn cb = r->cb;
  r->cb = NULL;
  cb(r->arg, r->buf, err ? 0 : r->n, err);
}

msgcopy_reader *msgcopy_reader_open(uv_loop_t *loop, const char *path, uint64_t offset,
                                    uint64_t len) {
  msgcopy_reader *r = stp_xcalloc(1, sizeof *r);
  r->loop = loop;
  r->path = stp_xstrdup(path);
  r->off = offset;
  r->left = len;
  r->fd = -1;
  r->work.data = r;
  SHA256_Init(&r->sha);
  return r;
}

void msgcopy_read(msgcopy_reader *r, msgcopy_read_fn cb, void *arg) {
  if (r->busy || r->dead)
    return;
  r->cb = cb;
  r->arg = arg;
  r->busy = true;
  (void)uv_queue_work(r->loop, &r->work, read_work_cb, read_after_cb);
}

void msgcopy_reader_digest(const msgcopy_reader *r, uint8_t out[32]) {
  SHA256_CTX copy = r->sha;
  SHA256_Final(out, &copy);
}

void msgcopy_reader_free(msgcopy_reader *r) {
  if (!r || r->dead)
    return;
  r->dead = true;
  if (r->busy)
    return; /* read_after_cb finishes the job */
  r->busy = true;
  (void)uv_queue_work(r->loop, &r->work, read_work_cb, read_after_cb);
}
