/* spool_ctl.c - the control socket's server (see spool_ctl.h): one request
 * line in, the answer out, close. The grammar is the core's queuectl.c.
 */
#include "spool_ctl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "smtp-tls-proxy/dsn.h"
#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/queuectl.h"
#include "smtp-tls-proxy/util.h"
#include "spool_claim.h"

typedef struct ctl_conn ctl_conn;

struct spool_ctl {
  uv_loop_t *loop;
  spool *sp;
  spool_run *run;
  uv_pipe_t srv;
  ctl_conn *conns;
  unsigned n_conns;
  bool stopping, srv_closed;
};

struct ctl_conn {
  spool_ctl *c;
  ctl_conn *next;
  uv_pipe_t pipe;
  uv_timer_t timer;
  uv_write_t wr;
  int open_handles;
  bool answered, closing;
  size_t len;
  char line[QUEUECTL_LINE_MAX];
  spool_ctl_out out;
  /* hold and release are answered once the state is on disk */
  spool_waiter saved;
  bool waiting;
  char saved_id[SPOOL_ID_LEN + 1];
  const char *saved_what; /* "held", "released" */
};

/* One request's execution: where it acts and where its answer goes. */
typedef struct ctl_exec {
  spool *sp;
  spool_run *run;
  const char *by; /* for the log: queue-command, admin:NAME */
  spool_ctl_out *out;
  ctl_conn *conn; /* the socket's connection; NULL from inside (admin) */
} ctl_exec;

/* ---- the answer ------------------------------------------------------------ */

static void say(ctl_exec *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(ctl_exec *k, const char *fmt, ...) {
  char line[QUEUECTL_REPLY_MAX];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line - 1, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  size_t len = (size_t)n < sizeof line - 1 ? (size_t)n : sizeof line - 2;
  for (size_t i = 0; i < len; i++) /* one line each, whatever the text */
    if (line[i] == '\n' || line[i] == '\r')
      line[i] = ' ';
  line[len++] = '\n';
  spool_ctl_out *o = k->out;
  if (o->len + len > o->cap) {
    o->cap = (o->len + len) * 2;
    o->data = stp_xrealloc(o->data, o->cap);
  }
  memcpy(o->data + o->len, line, len);
  o->len += len;
}

static int by_id(const void *a, const void *b) {
  const spool_entry *x = *(spool_entry *const *)a, *y = *(spool_entry *const *)b;
  return strcmp(x->env.id, y->env.id);
}

static void do_list(ctl_exec *k) {
  spool_entry **v;
  size_t n = spool_entries(k->sp, &v);
  spool_entry **sorted = stp_xcalloc(n ? n : 1, sizeof *sorted);
  if (n)
    memcpy(sorted, v, n * sizeof *v);
  qsort(sorted, n, sizeof *sorted, by_id);
  uint64_t now = spool_wall_ms();
  char line[2048];
  for (size_t i = 0; i < n; i++) {
    spool_list_line(&sorted[i]->env, &sorted[i]->st, now, line, sizeof line);
    say(k, ". %s", line);
  }
  free(sorted);
  say(k, "OK %zu message%s, %" PRIu64 " bytes%s", n, n == 1 ? "" : "s", spool_bytes(k->sp),
      spool_recovered(k->sp) ? "" : " (the queue is still being read back)");
}

static void do_show(ctl_exec *k, spool_entry *e) {
  static const char *const held[] = {"no", "admin", "route missing"};
  char date[64], age[16], hash[SPOOL_HASH_HEX + 1] = {0};
  uint64_t now = spool_wall_ms();
  dsn_date(e->env.created_ms, date, sizeof date);
  spool_fmt_age(now > e->env.created_ms ? now - e->env.created_ms : 0, age, sizeof age);
  spool_env_hash_text(e->env.sha256, hash);
  say(k, ". id: %s", e->env.id);
  say(k, ". kind: %s", e->env.kind == SPOOL_KIND_NOTICE ? "failure notice" : "message");
  say(k, ". created: %s (%s ago)", date, age);
  say(k, ". route: %s", e->env.route);
  say(k, ". listener: %s", e->env.listener);
  say(k, ". client: %s", e->env.client);
  say(k, ". from: <%s>", e->env.from);
  say(k, ". upstream-from: <%s>", e->env.up_from);
  say(k, ". size: %" PRIu64, e->env.size);
  say(k, ". sha256: %s", hash);
  for (size_t i = 0; i < e->env.n_rcpts; i++)
    say(k, ". rcpt: <%s> %s", e->env.rcpts[i], e->st.done[i] ? "done" : "pending");
  say(k, ". attempts: %u", e->st.attempts);
  if (e->st.held)
    say(k, ". next: held");
  else if (e->st.next_ms <= now)
    say(k, ". next: now");
  else {
    spool_fmt_age(e->st.next_ms - now, age, sizeof age);
    say(k, ". next: in %s", age);
  }
  say(k, ". held: %s", held[e->st.held < 3 ? e->st.held : 0]);
  say(k, ". last: %s", e->st.last);
  say(k, ". delivering: %s", e->busy ? "yes" : "no");
  say(k, "OK");
}

static void log_action(const ctl_exec *k, const char *event, const char *id) {
  stp_kv kv[] = {{"id", id}, {"by", k->by}};
  stp_log_kv(STP_LOG_INFO, NULL, event, kv, 2);
}

static void answer(ctl_conn *k);

/* The state of a hold or release reached the disk, or could not. */
static void saved_cb(void *arg, int err) {
  ctl_conn *k = arg;
  ctl_exec x = {k->c->sp, k->c->run, "queue-command", &k->out, k};
  k->waiting = false;
  if (!err)
    say(&x, "OK %s %s", k->saved_id, k->saved_what);
  else if (err == -ENOENT)
    say(&x, "ERR %s was deleted meanwhile", k->saved_id);
  else
    say(&x, "ERR %s %s, but not yet on disk (%s): the write is tried again", k->saved_id,
        k->saved_what, strerror(-err));
  answer(k);
}

/* The socket's answer waits in saved_cb until the new state is durable.
 * From inside (the admin page, whose calls are synchronous) the answer
 * comes at once; the write is the same and retried on failure. */
static void save_then_answer(ctl_exec *x, spool_entry *e, const char *what) {
  ctl_conn *k = x->conn;
  if (!k) {
    spool_save_state(x->sp, e);
    say(x, "OK %s %s", e->env.id, what);
    return;
  }
  memcpy(k->saved_id, e->env.id, sizeof k->saved_id);
  k->saved_what = what;
  k->waiting = true;
  uv_read_stop((uv_stream_t *)&k->pipe); /* one request per connection */
  spool_save_state_then(x->sp, e, &k->saved, saved_cb, k);
}

static void do_retry(ctl_exec *k, const queuectl_req *q, spool_entry *e) {
  spool *sp = k->sp;
  uint64_t now = spool_wall_ms();
  size_t n = 0, held = 0;
  spool_entry **v;
  size_t total = q->all ? spool_entries(sp, &v) : 1;
  for (size_t i = 0; i < total; i++) {
    spool_entry *x = q->all ? v[i] : e;
    if (x->st.held) {
      held++;
      continue;
    }
    x->st.next_ms = now;
    x->force = true;
    spool_save_state(sp, x);
    log_action(k, "spool-retry", x->env.id);
    n++;
  }
  spool_run_kick(k->run);
  if (!q->all && held)
    say(k, "ERR %s is held: release it", e->env.id);
  else
    say(k, "OK %zu message%s scheduled now%s", n, n == 1 ? "" : "s",
        held ? " (held ones left)" : "");
}

static void handle(ctl_exec *k, const queuectl_req *q) {
  spool *sp = k->sp;
  if (q->op == QC_LIST) {
    do_list(k);
    return;
  }
  spool_entry *e = q->id[0] ? spool_find(sp, q->id) : NULL;
  if (!e && !(q->op == QC_RETRY && q->all)) {
    say(k, "ERR no message %s in the spool", q->id);
    return;
  }
  switch (q->op) {
  case QC_SHOW:
    do_show(k, e);
    return;
  case QC_RETRY:
    do_retry(k, q, e);
    return;
  case QC_HOLD:
    e->st.held = SPOOL_HELD_ADMIN;
    log_action(k, "spool-held", e->env.id);
    save_then_answer(k, e, e->busy ? "held (the delivery under way goes on)" : "held");
    return;
  case QC_RELEASE:
    if (!e->st.held) {
      say(k, "ERR %s is not held", e->env.id);
      return;
    }
    e->st.held = SPOOL_HELD_NO;
    e->st.next_ms = spool_wall_ms();
    e->force = true;
    spool_run_kick(k->run);
    log_action(k, "spool-released", e->env.id);
    save_then_answer(k, e, "released");
    return;
  case QC_DELETE: {
    char id[SPOOL_ID_LEN + 1];
    memcpy(id, e->env.id, sizeof id);
    bool busy = e->busy;
    log_action(k, "spool-deleted", id);
    spool_remove(sp, e, "deleted");
    say(k, "OK %s deleted%s", id, busy ? " (after the delivery under way)" : "");
    return;
  }
  default:
    say(k, "ERR bad request");
  }
}

void spool_ctl_exec(spool *sp, spool_run *run, const queuectl_req *q, const char *by,
                    spool_ctl_out *out) {
  ctl_exec k = {sp, run, by, out, NULL};
  handle(&k, q);
}

/* ---- connections ------------------------------------------------------------ */

static void conn_closed_cb(uv_handle_t *h) {
  ctl_conn *k = h->data;
  if (--k->open_handles)
    return;
  spool_ctl *c = k->c;
  for (ctl_conn **p = &c->conns; *p; p = &(*p)->next)
    if (*p == k) {
      *p = k->next;
      break;
    }
  c->n_conns--;
  free(k->out.data);
  free(k);
  if (c->stopping && !c->n_conns && c->srv_closed)
    free(c);
}

static void conn_close(ctl_conn *k) {
  if (k->closing)
    return;
  k->closing = true;
  spool_waiter_cancel(&k->saved); /* its answer has nobody to go to */
  uv_close((uv_handle_t *)&k->pipe, conn_closed_cb);
  uv_close((uv_handle_t *)&k->timer, conn_closed_cb);
}

static void written_cb(uv_write_t *w, int status) {
  (void)status;
  conn_close(w->data);
}

static void answer(ctl_conn *k) {
  if (k->closing)
    return;
  k->answered = true;
  uv_read_stop((uv_stream_t *)&k->pipe);
  uv_buf_t b = uv_buf_init(k->out.data, (unsigned)k->out.len);
  k->wr.data = k;
  if (uv_write(&k->wr, (uv_stream_t *)&k->pipe, &b, 1, written_cb) < 0)
    conn_close(k);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  ctl_conn *k = h->data;
  (void)hint;
  b->base = k->line + k->len;
  b->len = sizeof k->line - k->len;
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  ctl_conn *k = s->data;
  (void)b;
  if (n < 0) {
    conn_close(k);
    return;
  }
  k->len += (size_t)n;
  char *nl = memchr(k->line, '\n', k->len);
  if (!nl && k->len < sizeof k->line)
    return;
  queuectl_req q;
  ctl_exec x = {k->c->sp, k->c->run, "queue-command", &k->out, k};
  if (!nl || queuectl_parse(k->line, (size_t)(nl - k->line), &q) < 0)
    say(&x, "ERR bad request (expected LIST, SHOW id, RETRY [id], HOLD id, RELEASE id, DELETE id)");
  else
    handle(&x, &q);
  if (!k->waiting)
    answer(k);
}

static void conn_timer_cb(uv_timer_t *t) {
  conn_close(t->data);
}

static void accept_cb(uv_stream_t *srv, int status) {
  spool_ctl *c = srv->data;
  if (status < 0 || c->stopping)
    return;
  ctl_conn *k = stp_xcalloc(1, sizeof *k);
  k->c = c;
  uv_pipe_init(c->loop, &k->pipe, 0);
  uv_timer_init(c->loop, &k->timer);
  k->pipe.data = k->timer.data = k;
  k->open_handles = 2;
  k->next = c->conns;
  c->conns = k;
  c->n_conns++;
  if (uv_accept(srv, (uv_stream_t *)&k->pipe) < 0 || c->n_conns > SPOOL_CTL_MAX_CONNS) {
    conn_close(k);
    return;
  }
  uv_timer_start(&k->timer, conn_timer_cb, SPOOL_CTL_TIMEOUT_MS, 0);
  uv_read_start((uv_stream_t *)&k->pipe, alloc_cb, read_cb);
}

int spool_ctl_start(uv_loop_t *loop, spool *sp, spool_run *run, spool_ctl **out, char *err,
                    size_t errlen) {
  char path[512];
  spool_claim_ctl_path(spool_dir(sp), spool_shared(sp), path, sizeof path);
  spool_ctl *c = stp_xcalloc(1, sizeof *c);
  c->loop = loop;
  c->sp = sp;
  c->run = run;
  uv_pipe_init(loop, &c->srv, 0);
  c->srv.data = c;
  int rc = uv_pipe_bind(&c->srv, path);
  /* 0600 in a 0700 directory; set once at start, before anyone connects. */
  if (rc == 0 && chmod(path, 0600) != 0)
    rc = UV_EPERM;
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&c->srv, 8, accept_cb);
  if (rc < 0) {
    snprintf(err, errlen, "control socket %s: %s", path, uv_strerror(rc));
    c->stopping = true;
    spool_ctl_stop(c);
    *out = NULL;
    return STP_ENET;
  }
  *out = c;
  return 0;
}

static void srv_closed_cb(uv_handle_t *h) {
  spool_ctl *c = h->data;
  c->srv_closed = true;
  if (!c->n_conns)
    free(c);
}

void spool_ctl_stop(spool_ctl *c) {
  if (!c || uv_is_closing((uv_handle_t *)&c->srv))
    return;
  c->stopping = true;
  for (ctl_conn *k = c->conns; k; k = k->next)
    conn_close(k);
  uv_close((uv_handle_t *)&c->srv, srv_closed_cb);
}
