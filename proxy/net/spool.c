/* spool.c - the durable spool: the index, messages being received, and
 * the jobs that change the files (see spool.h; the blocking file code is
 * spool_files.c, the formats are the core's spool_fmt.c).
 *
 * Every job is a uv_work_t whose after-callback runs on the loop; it is
 * the only place that logs, updates the index and calls back. Jobs on one
 * message are serialised (entry->jobbing): a removal waits for a state
 * write, and a state changed while one is written is written again.
 */
#include "spool.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "msgcopy.h"
#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/util.h"
#include "spool_claim.h"
#include "spool_files.h"

struct spool {
  uv_loop_t *loop;
  stp_spool_cfg cfg; /* a copy: generations come and go, the spool stays */
  int lock_fd;
  spool_entry **v;
  size_t n, cap;
  uint64_t bytes;
  size_t pending_n; /* commits under way, counted against the limits */
  uint64_t pending_bytes;
  unsigned jobs;  /* in the thread pool */
  unsigned n_ins; /* spool_in alive */
  unsigned users; /* spool_hold()s: readers that keep using sp */
  bool recovered, closing;
  /* Group commit: renamed messages wait here for one fsync(queue/) that
   * covers them all; at most one such fsync runs at a time. */
  struct spool_in *sync_wait;
  bool syncing;
  /* spool.shared: the replica's liveness lock and the periodic rescan
   * (other replicas' commits and removals reach us only through it). */
  bool shared, rescanning, rescan_open;
  int live_fd;
  uv_timer_t rescan;
  unsigned scan_gen;
  /* Commits whose message is written while queue/ is still being read
   * back wait here: the limits count the queue only once it is known. */
  struct spool_in *rec_wait;
};

uint64_t spool_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- configuration ------------------------------------------------------- */

static void cfg_clear(stp_spool_cfg *c) {
  free(c->dir);
  free(c->retry_ms);
  free(c->notify);
  memset(c, 0, sizeof *c);
}

static void cfg_copy(stp_spool_cfg *dst, const stp_spool_cfg *src, const char *dir) {
  *dst = *src;
  dst->dir = stp_xstrdup(dir);
  dst->retry_ms = stp_xcalloc(src->n_retry ? src->n_retry : 1, sizeof *dst->retry_ms);
  memcpy(dst->retry_ms, src->retry_ms, src->n_retry * sizeof *dst->retry_ms);
  dst->notify = src->notify ? stp_xstrdup(src->notify) : NULL;
}

void spool_reconfigure(spool *sp, const stp_spool_cfg *cfg) {
  char *dir = stp_xstrdup(sp->cfg.dir);
  if (strcmp(cfg->dir, dir)) {
    stp_kv kv[] = {{"dir", dir}, {"new_dir", cfg->dir}};
    stp_log_kv(STP_LOG_WARN, NULL, "spool-dir-unchanged", kv, 2);
  }
  if (cfg->shared != sp->shared) { /* the directory's locks are taken once */
    stp_kv kv[] = {{"shared", sp->shared ? "true" : "false"}, {"effect", "after a restart"}};
    stp_log_kv(STP_LOG_WARN, NULL, "spool-shared-unchanged", kv, 2);
  }
  cfg_clear(&sp->cfg);
  cfg_copy(&sp->cfg, cfg, dir);
  free(dir);
}

const stp_spool_cfg *spool_cfg(const spool *sp) {
  return &sp->cfg;
}

const char *spool_dir(const spool *sp) {
  return sp->cfg.dir;
}

/* ---- the index ------------------------------------------------------------- */

static void index_add(spool *sp, spool_entry *e) {
  if (sp->n == sp->cap) {
    sp->cap = sp->cap ? sp->cap * 2 : 64;
    sp->v = stp_xrealloc(sp->v, sp->cap * sizeof *sp->v);
  }
  sp->v[sp->n++] = e;
  sp->bytes += e->file_size;
}

static void index_del(spool *sp, spool_entry *e) {
  for (size_t i = 0; i < sp->n; i++)
    if (sp->v[i] == e) {
      sp->v[i] = sp->v[--sp->n];
      sp->bytes -= e->file_size;
      return;
    }
}

spool_entry *spool_find(spool *sp, const char *id) {
  for (size_t i = 0; i < sp->n; i++)
    if (!strcmp(sp->v[i]->env.id, id))
      return sp->v[i];
  return NULL;
}

size_t spool_entries(spool *sp, spool_entry ***out) {
  *out = sp->v;
  return sp->n;
}

spool_entry *spool_due(spool *sp, uint64_t now_ms) {
  spool_entry *best = NULL;
  for (size_t i = 0; i < sp->n; i++) {
    spool_entry *e = sp->v[i];
    if (e->busy || e->remove_asked)
      continue;
    /* A held message (by an admin, a corrupt body, a missing route) is
     * due once it has expired: a failure notice ends it like any other. */
    if (e->st.next_ms > now_ms ||
        (e->st.held && !spool_expired(&sp->cfg, e->env.created_ms, now_ms)))
      continue;
    if (sp->shared && (e->jobbing || e->skip_until_ms > now_ms))
      continue;
    if (!best || e->st.next_ms < best->st.next_ms)
      best = e;
  }
  return best;
}

bool spool_recovered(const spool *sp) {
  return sp->recovered;
}

size_t spool_count(const spool *sp) {
  return sp->n;
}

uint64_t spool_bytes(const spool *sp) {
  return sp->bytes;
}

uint64_t spool_oldest_ms(const spool *sp) {
  uint64_t oldest = 0;
  for (size_t i = 0; i < sp->n; i++)
    if (!oldest || sp->v[i]->env.created_ms < oldest)
      oldest = sp->v[i]->env.created_ms;
  return oldest;
}

bool spool_room(const spool *sp) {
  return !sp->closing && sp->n + sp->pending_n < sp->cfg.max_messages &&
         sp->bytes + sp->pending_bytes + msgcopy_tmp_bytes() < sp->cfg.max_size;
}

/* What copies in tmp/ may hold in all (msgcopy_set_room): max_size less
 * the queue and the commits under way. While a commit is under way its
 * bytes count twice (reserved, and still a copy): briefly stricter. */
static uint64_t tmp_room(void *ctx) {
  const spool *sp = ctx;
  uint64_t used = sp->bytes + sp->pending_bytes;
  return used < sp->cfg.max_size ? sp->cfg.max_size - used : 0;
}

bool spool_degraded(const spool *sp, char *why, size_t cap) {
  uint64_t used = sp->bytes + sp->pending_bytes;
  if (used * 10 <= sp->cfg.max_size * 9)
    return false;
  snprintf(why, cap, "spool at %" PRIu64 "%% of max_size (%" PRIu64 " of %" PRIu64 " bytes)",
           sp->cfg.max_size ? used * 100 / sp->cfg.max_size : 100, used, sp->cfg.max_size);
  return true;
}

void spool_msg_path(const spool *sp, const spool_entry *e, char *out, size_t cap) {
  snprintf(out, cap, "%s/queue/%s", sp->cfg.dir, e->env.id);
}

/* ---- teardown ---------------------------------------------------------------- */

static void maybe_destroy(spool *sp) {
  if (!sp->closing || sp->jobs || sp->n_ins || sp->rescan_open || sp->users)
    return;
  for (size_t i = 0; i < sp->n; i++) {
    if (sp->v[i]->claimed)
      close(sp->v[i]->claim_fd);
    spool_entry_free(sp->v[i]);
  }
  free(sp->v);
  if (sp->lock_fd >= 0)
    close(sp->lock_fd);
  if (sp->live_fd >= 0)
    close(sp->live_fd);
  cfg_clear(&sp->cfg);
  msgcopy_set_room(NULL, NULL);
  free(sp);
}

void spool_hold(spool *sp) {
  sp->users++;
}

void spool_unhold(spool *sp) {
  sp->users--;
  maybe_destroy(sp);
}

static void rescan_closed_cb(uv_handle_t *h) {
  spool *sp = h->data;
  sp->rescan_open = false;
  maybe_destroy(sp);
}

void spool_close(spool *sp) {
  if (!sp || sp->closing)
    return;
  sp->closing = true;
  if (sp->rescan_open && !uv_is_closing((uv_handle_t *)&sp->rescan))
    uv_close((uv_handle_t *)&sp->rescan, rescan_closed_cb);
  maybe_destroy(sp);
}

/* ---- jobs on one message: state writes and removal --------------------------- */

typedef struct entry_job {
  uv_work_t w;
  spool *sp;
  spool_entry *e;
  bool remove;
  char *text; /* the state, for a write */
  size_t len;
  int err;
  char why[128];
  char *dir; /* the worker's own copies: a reload may replace sp->cfg */
  char id[SPOOL_ID_LEN + 1];
  /* shared spool: a claim to take (claim) or to let go after the job */
  bool claim;
  int drop_fd, got_fd, st_rc;
  size_t n_rcpts;
  spool_state st;
  spool_claim_fn cb;
  void *cb_arg;
  spool_waiter *waiters; /* told when this job ends */
} entry_job;

#define STATE_RETRY_MS 1000 /* a failed state write is tried again after this */

/* Moves the waiters of list *from to the front of list *to. */
static void waiters_move(spool_waiter **from, spool_waiter **to) {
  spool_waiter *w = *from;
  if (!w)
    return;
  spool_waiter *last = w;
  while (last->next)
    last = last->next;
  last->next = *to;
  if (*to)
    (*to)->prev = &last->next;
  *to = w;
  w->prev = to;
  *from = NULL;
}

/* Each waiter of a finished job learns the outcome (from the loop). */
static void waiters_tell(spool_waiter **list, int err) {
  spool_waiter *w;
  while ((w = *list) != NULL) {
    spool_waiter_cancel(w);
    w->fn(w->arg, err);
  }
}

void spool_waiter_cancel(spool_waiter *w) {
  if (!w->prev)
    return;
  *w->prev = w->next;
  if (w->next)
    w->next->prev = w->prev;
  w->next = NULL;
  w->prev = NULL;
}

static void entry_next(spool *sp, spool_entry *e);

static void entry_work_cb(uv_work_t *w) {
  entry_job *j = w->data;
  if (j->claim) {
    j->err = spool_claim_take(j->dir, j->id, &j->got_fd);
    if (!j->err)
      j->st_rc = spool_claim_read_state(j->dir, j->id, j->n_rcpts, &j->st);
    return;
  }
  if (j->remove)
    j->err = spool_files_remove(j->dir, j->id);
  else if (j->text)
    j->err = spool_files_write_state(j->dir, j->id, j->text, j->len, true);
  if (j->drop_fd >= 0)
    close(j->drop_fd); /* the claim ends once the attempt's outcome is on disk */
}

static void claim_after(spool *sp, entry_job *j, int err);

static void entry_after_cb(uv_work_t *w, int status) {
  entry_job *j = w->data;
  spool *sp = j->sp;
  spool_entry *e = j->e;
  int err = status < 0 ? status : j->err;
  sp->jobs--;
  e->jobbing = false;
  if (j->claim) {
    claim_after(sp, j, err);
    return;
  }
  if (err) {
    stp_kv kv[] = {
        {"id", e->env.id}, {"op", j->remove ? "remove" : "state"}, {"error", strerror(-err)}};
    stp_log_kv(STP_LOG_ERROR, NULL, "spool-io-error", kv, 3);
    if (!j->remove) { /* not on disk: written again after a pause */
      e->st_dirty = true;
      e->st_retry_ms = spool_wall_ms() + STATE_RETRY_MS;
    }
  }
  waiters_tell(&j->waiters, j->remove && !err ? -ENOENT : err);
  if (j->remove) {
    if (j->why[0]) {
      stp_kv kv[] = {{"id", e->env.id}, {"reason", j->why}};
      stp_log_kv(STP_LOG_INFO, NULL, "spool-removed", kv, 2);
    }
    spool_entry_free(e);
  } else {
    entry_next(sp, e);
  }
  free(j->text);
  free(j->dir);
  free(j);
  maybe_destroy(sp);
}

static void entry_start(spool *sp, spool_entry *e, bool remove, const char *why) {
  entry_job *j = stp_xcalloc(1, sizeof *j);
  j->w.data = j;
  j->sp = sp;
  j->e = e;
  j->remove = remove;
  snprintf(j->why, sizeof j->why, "%s", why && *why ? why : "");
  memcpy(j->id, e->env.id, sizeof j->id);
  if (!remove && e->st_dirty) {
    j->text = spool_state_format(&e->st, &j->len);
    e->st_dirty = false;
    if (!j->text && !e->claimed) {
      free(j);
      return;
    }
  }
  j->drop_fd = -1;
  if (e->claimed && !e->busy) { /* a delivery's end: its claim goes with this job */
    j->drop_fd = e->claim_fd;
    e->claimed = false;
  }
  j->dir = stp_xstrdup(sp->cfg.dir);
  waiters_move(&e->waiters, &j->waiters);
  e->jobbing = true;
  sp->jobs++;
  (void)uv_queue_work(sp->loop, &j->w, entry_work_cb, entry_after_cb);
}

/* What the message still needs once its last job ended. */
static void entry_next(spool *sp, spool_entry *e) {
  if (e->jobbing || e->busy)
    return;
  if (e->remove_asked && !e->removed) {
    e->removed = true;
    entry_start(sp, e, true, e->remove_why);
    return;
  }
  if (((e->st_dirty && e->st_retry_ms <= spool_wall_ms()) || e->claimed) && !e->removed)
    entry_start(sp, e, false, NULL);
}

void spool_save_state(spool *sp, spool_entry *e) {
  e->st_dirty = true;
  e->touched_gen = sp->scan_gen;
  e->st_retry_ms = 0; /* a new state: at once */
  if (!e->jobbing && !e->removed && !sp->closing)
    entry_start(sp, e, false, NULL);
}

void spool_save_state_then(spool *sp, spool_entry *e, spool_waiter *w, void (*fn)(void *, int),
                           void *arg) {
  w->fn = fn;
  w->arg = arg;
  w->next = e->waiters;
  if (e->waiters)
    e->waiters->prev = &w->next;
  e->waiters = w;
  w->prev = &e->waiters;
  spool_save_state(sp, e);
}

void spool_retry_states(spool *sp, uint64_t now_ms) {
  for (size_t i = 0; i < sp->n && !sp->closing; i++) {
    spool_entry *e = sp->v[i];
    if (e->st_dirty && e->st_retry_ms && e->st_retry_ms <= now_ms && !e->jobbing && !e->removed)
      entry_start(sp, e, false, NULL);
  }
}

void spool_remove(spool *sp, spool_entry *e, const char *why) {
  if (e->remove_asked)
    return;
  e->remove_asked = true;
  snprintf(e->remove_why, sizeof e->remove_why, "%s", why ? why : "");
  index_del(sp, e);
  if (e->busy || e->jobbing)
    return; /* spool_release() or the job's end carries on */
  e->removed = true;
  entry_start(sp, e, true, why);
}

void spool_release(spool *sp, spool_entry *e) {
  e->busy = false;
  entry_next(sp, e);
}

/* ---- claims (a shared spool) ------------------------------------------------- */

bool spool_shared(const spool *sp) {
  return sp->shared;
}

void spool_claim(spool *sp, spool_entry *e, spool_claim_fn cb, void *arg) {
  entry_job *j = stp_xcalloc(1, sizeof *j);
  j->w.data = j;
  j->sp = sp;
  j->e = e;
  j->claim = true;
  j->drop_fd = j->got_fd = -1;
  j->n_rcpts = e->env.n_rcpts;
  j->cb = cb;
  j->cb_arg = arg;
  memcpy(j->id, e->env.id, sizeof j->id);
  j->dir = stp_xstrdup(sp->cfg.dir);
  e->busy = e->jobbing = true;
  sp->jobs++;
  (void)uv_queue_work(sp->loop, &j->w, entry_work_cb, entry_after_cb);
}

/* The claim's outcome: the file's state is the truth (other replicas
 * write it too); a message gone from queue/ leaves the index. */
static void claim_after(spool *sp, entry_job *j, int err) {
  spool_entry *e = j->e;
  e->touched_gen = sp->scan_gen;
  if (!err) {
    e->claimed = true;
    e->claim_fd = j->got_fd;
    if (!j->st_rc) {
      spool_state_free(&e->st);
      e->st = j->st;
    }
    j->cb(j->cb_arg, e, true);
  } else if (err == -ENOENT) {
    if (!e->remove_asked)
      index_del(sp, e);
    spool_entry_free(e);
    j->cb(j->cb_arg, NULL, false);
  } else {
    e->busy = false;
    if (err == -EAGAIN)
      e->skip_until_ms = spool_wall_ms() + SPOOL_SHARED_RESCAN_MS;
    else {
      stp_kv kv[] = {{"id", e->env.id}, {"op", "claim"}, {"error", strerror(-err)}};
      stp_log_kv(STP_LOG_ERROR, NULL, "spool-io-error", kv, 3);
    }
    j->cb(j->cb_arg, e, false);
    entry_next(sp, e);
  }
  free(j->dir);
  free(j);
  maybe_destroy(sp);
}

/* ---- messages being received ------------------------------------------------- */

struct spool_in {
  spool *sp;
  struct spool_in *next; /* waiting for, or in, a queue fsync */
  msgcopy *mc;
  spool_entry *e; /* the envelope as written (owned) */
  spool_env_offsets off;
  void (*drain)(void *owner);
  void *owner;
  spool_in_done_fn done;
  void *done_owner;
  bool committing, detached, reserved;
  uint64_t body_size, t0;
  char reason[SPOOL_REASON_MAX + 1];
};

static void in_drain_cb(void *arg) {
  spool_in *in = arg;
  if (!in->committing && in->drain)
    in->drain(in->owner);
}

/* The low 20 bits of an id: a counter from a random start, so ids of one
 * process differ unless a million messages arrive in one millisecond,
 * and a restart is unlikely to meet its predecessor's ids (a commit
 * would refuse a clash anyway: the rename never replaces a file). */
static uint32_t id_counter(void) {
  static uint32_t next;
  static bool seeded;
  if (!seeded) {
    if (getrandom(&next, sizeof next, GRND_NONBLOCK) != (ssize_t)sizeof next)
      next = (uint32_t)getpid() * 2654435761u;
    seeded = true;
  }
  return next++;
}

spool_in *spool_in_begin(spool *sp, const spool_env *env, void (*drain)(void *owner), void *owner) {
  if (sp->closing)
    return NULL;
  spool_env copy = *env;
  copy.created_ms = spool_wall_ms();
  copy.size = 0;
  memset(copy.sha256, 0, sizeof copy.sha256);
  spool_id_make(copy.id, copy.created_ms, id_counter());
  size_t len, hdr_len;
  spool_env_offsets off;
  char *hdr = spool_env_format(&copy, &len, &off);
  if (!hdr)
    return NULL;
  spool_in *in = stp_xcalloc(1, sizeof *in);
  in->e = stp_xcalloc(1, sizeof *in->e);
  if (spool_env_parse(hdr, len, &in->e->env, &hdr_len) != STP_OK) {
    free(hdr);
    spool_entry_free(in->e);
    free(in);
    return NULL;
  }
  in->sp = sp;
  in->e->hdr_len = hdr_len;
  in->off = off;
  in->drain = drain;
  in->owner = owner;
  char path[512];
  snprintf(path, sizeof path, "%s/tmp/%s%s", sp->cfg.dir, spool_files_tmp_prefix(), copy.id);
  in->mc = msgcopy_create(sp->loop, path, in_drain_cb, in);
  msgcopy_append(in->mc, hdr, len);
  msgcopy_hash_start(in->mc);
  free(hdr);
  sp->n_ins++;
  return in;
}

void spool_in_body(spool_in *in, const char *p, size_t n) {
  if (!in->committing)
    msgcopy_append(in->mc, p, n);
}

size_t spool_in_queued(const spool_in *in) {
  return msgcopy_queued(in->mc);
}

static void in_free(spool_in *in, bool unlink) {
  spool *sp = in->sp;
  if (in->reserved) {
    sp->pending_n--;
    sp->pending_bytes -= in->e->hdr_len + in->body_size;
  }
  msgcopy_free(in->mc, unlink);
  spool_entry_free(in->e);
  free(in);
  sp->n_ins--;
  maybe_destroy(sp);
}

static uint64_t ms_since(uint64_t t0) {
  return uv_hrtime() / 1000000u - t0;
}

static void log_spooled(const spool_in *in, const spool_entry *e) {
  char ms[24], size[24], rcpts[16];
  snprintf(ms, sizeof ms, "%" PRIu64, ms_since(in->t0));
  snprintf(size, sizeof size, "%" PRIu64, in->body_size);
  snprintf(rcpts, sizeof rcpts, "%zu", e->env.n_rcpts);
  stp_kv kv[] = {
      {"id", e->env.id},       {"kind", e->env.kind == SPOOL_KIND_NOTICE ? "notice" : NULL},
      {"route", e->env.route}, {"from", e->env.from[0] ? e->env.from : "<>"},
      {"rcpts", rcpts},        {"size", size},
      {"reason", in->reason},  {"commit_ms", ms}};
  stp_log_kv(STP_LOG_INFO, NULL, "spooled", kv, sizeof kv / sizeof *kv);
}

/* A commit that did not happen: the file goes, the owner learns why. */
static void in_fail(spool_in *in, const char *error) {
  stp_kv kv[] = {{"id", in->e->env.id}, {"route", in->e->env.route}, {"error", error}};
  stp_log_kv(STP_LOG_ERROR, NULL, "spool-commit-failed", kv, 3);
  /* The owner first: in_free may end a closing spool. */
  if (!in->detached)
    in->done(in->done_owner, false, error);
  in_free(in, true);
}

/* Durable: into the index; the entry moves over from the spool_in. */
static void in_committed(spool_in *in) {
  spool *sp = in->sp;
  spool_entry *e = in->e;
  in->e = NULL;
  e->file_size = e->hdr_len + in->body_size;
  sp->pending_n--;
  sp->pending_bytes -= e->file_size;
  in->reserved = false;
  spool_state_init(&e->st, e->env.n_rcpts, &sp->cfg, e->env.created_ms, e->env.reason);
  e->born_gen = sp->scan_gen;
  index_add(sp, e);
  log_spooled(in, e);
  if (!in->detached)
    in->done(in->done_owner, true, e->env.id);
  in_free(in, false);
}

typedef struct sync_job {
  uv_work_t w;
  spool *sp;
  spool_in *batch;
  char (*ids)[SPOOL_ID_LEN + 1];
  size_t n;
  char *dir;
  int err;
} sync_job;

static void start_sync(spool *sp);

static void sync_work_cb(uv_work_t *w) {
  sync_job *j = w->data;
  j->err = spool_files_sync_queue(j->dir);
  /* Not durable: take the renames back, so that no 250 is owed for them. */
  for (size_t i = 0; j->err && i < j->n; i++)
    spool_files_unqueue(j->dir, j->ids[i]);
}

static void sync_after_cb(uv_work_t *w, int status) {
  sync_job *j = w->data;
  spool *sp = j->sp;
  int err = status < 0 ? status : j->err;
  sp->jobs++; /* held until the batch is answered: none of it may end sp */
  for (spool_in *in = j->batch, *next; in; in = next) {
    next = in->next;
    if (!err) {
      in_committed(in);
      continue;
    }
    char why[96];
    snprintf(why, sizeof why, "fsync of queue/: %s", strerror(-err));
    in_fail(in, why);
  }
  sp->jobs -= 2;
  sp->syncing = false;
  free(j->ids);
  free(j->dir);
  free(j);
  start_sync(sp);
  maybe_destroy(sp);
}

static void start_sync(spool *sp) {
  if (sp->syncing || !sp->sync_wait)
    return;
  sync_job *j = stp_xcalloc(1, sizeof *j);
  j->w.data = j;
  j->sp = sp;
  j->batch = sp->sync_wait;
  sp->sync_wait = NULL;
  for (spool_in *in = j->batch; in; in = in->next)
    j->n++;
  j->ids = stp_xcalloc(j->n, sizeof *j->ids);
  size_t i = 0;
  for (spool_in *in = j->batch; in; in = in->next)
    memcpy(j->ids[i++], in->e->env.id, SPOOL_ID_LEN + 1);
  j->dir = stp_xstrdup(sp->cfg.dir);
  sp->syncing = true;
  sp->jobs++;
  (void)uv_queue_work(sp->loop, &j->w, sync_work_cb, sync_after_cb);
}

/* fsync'd, closed and renamed into queue/: only the directory's fsync is
 * left, shared with the other commits of the moment. */
static void closed_cb(void *arg, int err) {
  spool_in *in = arg;
  if (err) {
    char why[96];
    snprintf(why, sizeof why, "fsync/rename: %s", strerror(-err));
    in_fail(in, why);
    return;
  }
  in->next = in->sp->sync_wait;
  in->sp->sync_wait = in;
  start_sync(in->sp);
}

static void admit(spool_in *in);

/* Everything is written: once queue/ has been read back, admit it. */
static void flushed_cb(void *arg, int err) {
  spool_in *in = arg;
  spool *sp = in->sp;
  if (err) {
    char why[96];
    snprintf(why, sizeof why, "write: %s", strerror(-err));
    in_fail(in, err == -EDQUOT ? "spool full (max_size, counting tmp/)" : why);
    return;
  }
  if (!sp->recovered) { /* rec_after_cb admits it */
    in->next = sp->rec_wait;
    sp->rec_wait = in;
    return;
  }
  admit(in);
}

/* Check the limits with the real size, fill in size and hash, then fsync
 * and close. */
static void admit(spool_in *in) {
  spool *sp = in->sp;
  in->body_size = msgcopy_hashed_size(in->mc);
  uint64_t total = in->e->hdr_len + in->body_size;
  /* A failure notice takes the place of the message it is about, which
   * goes once the notice is durable: refused for a full spool, it would
   * keep that message (and the spool full) for ever. So notices pass the
   * limits; at most 2 * SPOOL_RUN_MAX of them (each under DSN_HEADERS_MAX
   * plus its text) are in flight at once. */
  bool notice = in->e->env.kind == SPOOL_KIND_NOTICE;
  if (!notice && sp->n + sp->pending_n >= sp->cfg.max_messages) {
    in_fail(in, "spool full (max_messages)");
    return;
  }
  if (!notice && sp->bytes + sp->pending_bytes + total > sp->cfg.max_size) {
    in_fail(in, "spool full (max_size)");
    return;
  }
  in->reserved = true;
  sp->pending_n++;
  sp->pending_bytes += total;
  spool_env *env = &in->e->env;
  env->size = in->body_size;
  msgcopy_digest(in->mc, env->sha256);
  char size[SPOOL_SIZE_DIGITS], hash[SPOOL_HASH_HEX], reason[SPOOL_REASON_MAX];
  spool_env_size_text(env->size, size);
  spool_env_hash_text(env->sha256, hash);
  spool_env_reason_text(in->reason, reason);
  msgcopy_patch(in->mc, in->off.size, size, sizeof size);
  msgcopy_patch(in->mc, in->off.hash, hash, sizeof hash);
  msgcopy_patch(in->mc, in->off.reason, reason, sizeof reason);
  /* The entry's reason, as the file now says: the parsed value sits in
   * the SPOOL_REASON_MAX characters the header reserved for it. */
  char *r = (char *)env->reason;
  memcpy(r, reason, sizeof reason);
  for (size_t n = sizeof reason; n > 0 && r[n - 1] == ' '; n--)
    r[n - 1] = '\0';
  char path[512];
  snprintf(path, sizeof path, "%s/queue/%s", sp->cfg.dir, env->id);
  msgcopy_close(in->mc, true, path, closed_cb, in);
}

void spool_in_commit(spool_in *in, const char *reason, spool_in_done_fn done, void *owner) {
  in->committing = true;
  in->done = done;
  in->done_owner = owner;
  in->t0 = uv_hrtime() / 1000000u;
  snprintf(in->reason, sizeof in->reason, "%s", reason ? reason : "");
  msgcopy_flush(in->mc, flushed_cb, in);
}

void spool_in_release(spool_in *in) {
  if (!in)
    return;
  if (in->committing) {
    in->detached = true;
    return;
  }
  in_free(in, true);
}

/* ---- start: reading queue/ back -------------------------------------------- */

typedef struct rec_job {
  uv_work_t w;
  spool *sp;
  stp_spool_cfg cfg; /* the worker's own copy */
  spool_scan scan;
} rec_job;

static void rec_work_cb(uv_work_t *w) {
  rec_job *j = w->data;
  spool_files_scan(j->cfg.dir, &j->cfg, &j->scan);
}

static void rec_after_cb(uv_work_t *w, int status) {
  rec_job *j = w->data;
  spool *sp = j->sp;
  (void)status;
  sp->jobs--;
  for (size_t i = 0; i < j->scan.n; i++) {
    if (sp->closing || spool_find(sp, j->scan.v[i]->env.id))
      spool_entry_free(j->scan.v[i]);
    else
      index_add(sp, j->scan.v[i]);
  }
  for (size_t i = 0; i < j->scan.n_bad; i++) {
    stp_kv kv[] = {{"dir", j->cfg.dir}, {"file", j->scan.bad[i]}};
    stp_log_kv(STP_LOG_ERROR, NULL, "spool-corrupt", kv, 2);
    free(j->scan.bad[i]);
  }
  char n[24], bytes[24], bad[24], orphans[24], states[24];
  snprintf(n, sizeof n, "%zu", sp->n);
  snprintf(bytes, sizeof bytes, "%" PRIu64, sp->bytes);
  snprintf(bad, sizeof bad, "%zu", j->scan.n_bad);
  snprintf(orphans, sizeof orphans, "%zu", j->scan.orphan_states);
  snprintf(states, sizeof states, "%zu", j->scan.bad_states);
  stp_kv kv[] = {{"dir", j->cfg.dir},        {"messages", n},
                 {"bytes", bytes},           {"corrupt", bad},
                 {"orphan_states", orphans}, {"reset_states", states}};
  stp_log_kv(STP_LOG_INFO, NULL, "spool-recovered", kv, 6);
  sp->recovered = true;
  /* The commits that waited for the queue meet the limits now, with the
   * messages already on disk counted. */
  sp->jobs++; /* none of them may end sp meanwhile */
  for (spool_in *in = sp->rec_wait, *next; in; in = next) {
    next = in->next;
    in->next = NULL;
    admit(in);
  }
  sp->rec_wait = NULL;
  sp->jobs--;
  free(j->scan.v);
  free(j->scan.bad);
  cfg_clear(&j->cfg);
  free(j);
  maybe_destroy(sp);
}

/* ---- a shared spool: reading queue/ again --------------------------------------- */

static int by_id(const void *a, const void *b) {
  return strcmp((*(spool_entry *const *)a)->env.id, (*(spool_entry *const *)b)->env.id);
}

/* What another replica did since: its new messages join the index, the
 * ones it removed leave it, and the state it wrote replaces ours where we
 * changed nothing since the scan began (gen). */
static void rescan_merge(spool *sp, spool_scan *s, unsigned gen) {
  if (s->n)
    qsort(s->v, s->n, sizeof *s->v, by_id);
  bool *seen = stp_xcalloc(s->n ? s->n : 1, sizeof *seen);
  for (size_t i = 0; i < sp->n;) {
    spool_entry *e = sp->v[i];
    spool_entry **hit = s->n ? bsearch(&e, s->v, s->n, sizeof *s->v, by_id) : NULL;
    bool quiet =
        !e->busy && !e->jobbing && !e->st_dirty && !e->remove_asked && e->touched_gen < gen;
    if (hit) {
      seen[hit - s->v] = true;
      if (quiet) {
        spool_state_free(&e->st);
        e->st = (*hit)->st;
        (*hit)->st.done = NULL;
      }
    } else if (quiet && e->born_gen < gen) {
      index_del(sp, e); /* v[i] is now another entry */
      spool_entry_free(e);
      continue;
    }
    i++;
  }
  for (size_t i = 0; i < s->n; i++) {
    if (seen[i] || sp->closing) {
      spool_entry_free(s->v[i]);
      continue;
    }
    s->v[i]->born_gen = gen;
    index_add(sp, s->v[i]);
  }
  free(seen);
}

typedef struct rescan_job {
  uv_work_t w;
  spool *sp;
  stp_spool_cfg cfg;
  spool_scan scan;
  unsigned gen;
} rescan_job;

#define SPOOL_SWEEP_EVERY 5 /* rescans: every 10 s */

static void rescan_work_cb(uv_work_t *w) {
  rescan_job *j = w->data;
  spool_files_scan(j->cfg.dir, &j->cfg, &j->scan);
  if (j->gen % SPOOL_SWEEP_EVERY == 0)
    spool_claim_sweep(j->cfg.dir);
}

static void rescan_after_cb(uv_work_t *w, int status) {
  rescan_job *j = w->data;
  spool *sp = j->sp;
  (void)status;
  sp->jobs--;
  sp->rescanning = false;
  rescan_merge(sp, &j->scan, j->gen);
  for (size_t i = 0; i < j->scan.n_bad; i++)
    free(j->scan.bad[i]); /* logged by the first reading */
  free(j->scan.v);
  free(j->scan.bad);
  cfg_clear(&j->cfg);
  free(j);
  maybe_destroy(sp);
}

static void rescan_timer_cb(uv_timer_t *t) {
  spool *sp = t->data;
  if (sp->rescanning || sp->closing || !sp->recovered)
    return;
  rescan_job *j = stp_xcalloc(1, sizeof *j);
  j->w.data = j;
  j->sp = sp;
  j->gen = ++sp->scan_gen;
  cfg_copy(&j->cfg, &sp->cfg, sp->cfg.dir);
  sp->rescanning = true;
  sp->jobs++;
  (void)uv_queue_work(sp->loop, &j->w, rescan_work_cb, rescan_after_cb);
}

int spool_open(uv_loop_t *loop, const stp_spool_cfg *cfg, spool **out, char *err, size_t errlen) {
  int lock_fd = -1, live_fd = -1;
  *out = NULL;
  if (cfg->shared ? spool_claim_prepare(cfg->dir, &lock_fd, &live_fd, err, errlen) < 0
                  : spool_files_prepare(cfg->dir, &lock_fd, err, errlen) < 0)
    return STP_EIO;
  spool *sp = stp_xcalloc(1, sizeof *sp);
  sp->loop = loop;
  sp->lock_fd = lock_fd;
  sp->live_fd = live_fd;
  sp->shared = cfg->shared;
  if (sp->shared) {
    uv_timer_init(loop, &sp->rescan);
    sp->rescan.data = sp;
    sp->rescan_open = true;
    uv_timer_start(&sp->rescan, rescan_timer_cb, SPOOL_SHARED_RESCAN_MS, SPOOL_SHARED_RESCAN_MS);
    stp_kv kv[] = {{"dir", cfg->dir}, {"replica", spool_replica_tag()}, {"lock", "fcntl-ofd"}};
    stp_log_kv(STP_LOG_INFO, NULL, "spool-shared", kv, 3);
  }
  cfg_copy(&sp->cfg, cfg, cfg->dir);
  /* Copies in tmp/ (pass-through, API sends) count against max_size. */
  msgcopy_set_room(tmp_room, sp);
  rec_job *j = stp_xcalloc(1, sizeof *j);
  j->w.data = j;
  j->sp = sp;
  cfg_copy(&j->cfg, cfg, cfg->dir);
  sp->jobs++;
  (void)uv_queue_work(loop, &j->w, rec_work_cb, rec_after_cb);
  *out = sp;
  return 0;
}
