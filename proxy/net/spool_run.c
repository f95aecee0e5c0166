/* spool_run.c - the queue runner (see spool_run.h).
 *
 * One delivery (dlv) per message: the route's failover walk (core
 * failover.c, the generation's back-off table), a connection from the pool
 * or upconn_open, MAIL, one RCPT per recipient still pending, DATA, the
 * body read back from the file chunk by chunk (never more than one chunk
 * and the upstream's write queue in memory), the final dot, and then the
 * state: per recipient delivered, failed (5xx: a failure notice) or still
 * pending (4xx, a lost connection: the next try after the retry interval).
 *
 * Callbacks rule: upconn and the msgcopy reader call us from the loop
 * only; we call nobody back (the runner is its own owner), and what a
 * finished delivery frees up is picked on the next loop turn (defer.h).
 */
#include "spool_run.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "defer.h"
#include "msgcopy.h"
#include "pool.h"
#include "smtp-tls-proxy/backoff.h"
#include "smtp-tls-proxy/failover.h"
#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/metrics.h"
#include "smtp-tls-proxy/provider.h"
#include "smtp-tls-proxy/util.h"
#include "spool_notice.h"
#include "stream.h"
#include "upconn.h"

typedef enum { D_OPEN, D_MAIL, D_RCPT, D_DATA, D_BODY, D_DOT, D_END } dstep;

typedef struct dlv {
  struct dlv *next;
  spool_run *run;
  srv_gen *gen;
  spool_entry *e;
  size_t route;
  failover fo;
  upconn *up;
  bool up_ready, reused, bp;
  dstep step;
  size_t rcpt;            /* the recipient whose RCPT is out */
  spool_rcpt_result *res; /* per recipient */
  char **perm;            /* per recipient: the 5xx it got */
  size_t n_ok;
  bool expired, corrupt, noticing;
  char last[SPOOL_REASON_MAX + 1];
  char up_name[64];
  msgcopy_reader *rd;
  backoff_state *no_backoff; /* `queue retry`: a table where nobody backs off */
} dlv;

struct spool_run {
  uv_loop_t *loop;
  spool *sp;
  srv_gen *gen;
  uv_timer_t timer;
  defer_item kick;
  dlv *active;
  unsigned n_active;
  unsigned n_claiming; /* shared spool: claims asked for, not yet answered */
  bool stopping, timer_closed;
  /* SIGTERM: no delivery starts; drained(arg) once none is left */
  bool draining;
  void (*drained)(void *arg);
  void *drained_arg;
  defer_item drain_item;
};

static void drained_cb(void *arg) {
  spool_run *run = arg;
  void (*fn)(void *) = run->drained;
  run->drained = NULL; /* once */
  if (fn)
    fn(run->drained_arg);
}

static void maybe_drained(spool_run *run) {
  if (run->draining && !run->stopping && !run->n_active && !run->n_claiming)
    defer_post(run->loop, &run->drain_item, drained_cb, run);
}

/* Gone once stopped, its timer closed and its last notice spooled. */
static void run_maybe_free(spool_run *run) {
  maybe_drained(run);
  if (!run->stopping || !run->timer_closed || run->n_active || run->n_claiming)
    return;
  srv_gen_unref(run->gen);
  free(run);
}

static void try_upstream(dlv *d, bool allow_pool);
static void finish(dlv *d);

/* ---- bookkeeping ----------------------------------------------------------- */

static void dlv_free(dlv *d) {
  spool_run *run = d->run;
  for (dlv **p = &run->active; *p; p = &(*p)->next)
    if (*p == d) {
      *p = d->next;
      break;
    }
  run->n_active--;
  for (size_t i = 0; d->perm && i < d->e->env.n_rcpts; i++)
    free(d->perm[i]);
  free(d->perm);
  free(d->res);
  free(d->no_backoff);
  srv_gen_unref(d->gen);
  free(d);
  run_maybe_free(run);
}

static const stp_route_cfg *dlv_route(const dlv *d) {
  return &d->gen->cfg->routes[d->route];
}

static void set_last(dlv *d, const smtp_reply *r) {
  snprintf(d->last, sizeof d->last, "%03d %.*s", r->code, (int)strcspn(r->text, "\n"), r->text);
}

/* Every recipient still open (accepted ones too, when `accepted`) gets `to`. */
static void settle(dlv *d, spool_rcpt_result from, spool_rcpt_result to, const char *reply) {
  for (size_t i = 0; i < d->e->env.n_rcpts; i++) {
    if (d->res[i] != from)
      continue;
    d->res[i] = to;
    if (to == SPOOL_RCPT_PERM && !d->perm[i])
      d->perm[i] = stp_xstrdup(reply ? reply : d->last);
  }
}

/* ---- the upstream dialogue --------------------------------------------------- */

static void next_rcpt(dlv *d) {
  spool_entry *e = d->e;
  while (d->rcpt < e->env.n_rcpts && d->res[d->rcpt] == SPOOL_RCPT_SKIP)
    d->rcpt++;
  if (d->rcpt < e->env.n_rcpts) {
    /* The device's NOTIFY and ORCPT, sent on when the upstream offers
     * DSN (upstream.c drops them, logged, when it does not). */
    smtp_rcpt_dsn dsn;
    memset(&dsn, 0, sizeof dsn);
    dsn.notify = e->env.notify ? e->env.notify[d->rcpt] : 0;
    if (e->env.orcpt && e->env.orcpt[d->rcpt])
      snprintf(dsn.orcpt, sizeof dsn.orcpt, "%s", e->env.orcpt[d->rcpt]);
    d->step = D_RCPT;
    if (upconn_rcpt(d->up, e->env.rcpts[d->rcpt], &dsn) < 0)
      finish(d);
    return;
  }
  if (d->n_ok == 0) { /* nobody accepted: the pool gets it back after RSET */
    finish(d);
    return;
  }
  d->step = D_DATA;
  if (upconn_data(d->up) < 0)
    finish(d);
}

static void send_mail(dlv *d) {
  const spool_env *env = &d->e->env;
  smtp_mail_args a;
  memset(&a, 0, sizeof a);
  a.has_size = true;
  a.size = env->size;
  a.body = env->body;
  a.smtputf8 = env->smtputf8;
  a.ret = env->ret;
  snprintf(a.envid, sizeof a.envid, "%s", env->envid ? env->envid : "");
  d->step = D_MAIL;
  if (upconn_mail(d->up, env->up_from, &a) < 0)
    finish(d);
}

static void read_cb(void *arg, const char *p, size_t n, int err);

static void read_next(dlv *d) {
  msgcopy_read(d->rd, read_cb, d);
}

/* The whole body went out: only a body that matches its hash gets the
 * final dot. */
static void body_done(dlv *d) {
  uint8_t got[32];
  msgcopy_reader_digest(d->rd, got);
  if (memcmp(got, d->e->env.sha256, sizeof got)) {
    d->corrupt = true;
    snprintf(d->last, sizeof d->last, "the spool file does not match its hash (not sent)");
    finish(d);
    return;
  }
  d->step = D_DOT;
  if (upconn_end(d->up) < 0)
    finish(d);
}

static void read_cb(void *arg, const char *p, size_t n, int err) {
  dlv *d = arg;
  if (err) {
    snprintf(d->last, sizeof d->last, "cannot read the spool file (%s)", uv_strerror(err));
    d->corrupt = true;
    finish(d);
    return;
  }
  if (n == 0) {
    body_done(d);
    return;
  }
  if (upconn_body(d->up, p, n) < 0) {
    finish(d);
    return;
  }
  if (upconn_queued(d->up) > STREAM_HIGH_WATER)
    d->bp = true; /* on_drain reads on */
  else
    read_next(d);
}

static void start_body(dlv *d) {
  char path[512];
  spool_msg_path(d->run->sp, d->e, path, sizeof path);
  d->step = D_BODY;
  d->rd = msgcopy_reader_open(d->run->loop, path, d->e->hdr_len, d->e->env.size);
  read_next(d);
}

/* A refusal in the provider table is judged as for a device: one an admin
 * can fix is temporary (retried until max_age, never a failure notice the
 * next minute), and it is logged once with its hint. */
static int reply_class(dlv *d, const smtp_reply *r) {
  provider_phase ph;
  if (d->step == D_MAIL)
    ph = PROV_MAIL;
  else if (d->step == D_RCPT)
    ph = PROV_RCPT;
  else if (d->step == D_DATA)
    ph = PROV_DATA;
  else if (d->step == D_DOT)
    ph = PROV_DOT;
  else
    return r->code / 100;
  if (r->code < 400)
    return r->code / 100;
  provider_verdict v;
  provider_classify(&v, ph, r);
  if (!v.rule)
    return r->code / 100;
  provider_log_refusal(NULL, d->up_name, NULL, d->e->env.id, &v);
  return provider_temporary(&v) ? 4 : 5;
}

static void on_reply(void *owner, const smtp_reply *r) {
  dlv *d = owner;
  int cls = reply_class(d, r);
  if (d->step != D_DATA || r->code != 354)
    set_last(d, r);
  switch (d->step) {
  case D_MAIL:
    if (cls == 2) {
      d->rcpt = 0;
      next_rcpt(d);
      return;
    }
    if (cls == 5)
      settle(d, SPOOL_RCPT_TEMP, SPOOL_RCPT_PERM, d->last);
    break;
  case D_RCPT:
    if (cls == 2) {
      d->res[d->rcpt] = SPOOL_RCPT_OK;
      d->n_ok++;
    } else if (cls == 5) {
      d->res[d->rcpt] = SPOOL_RCPT_PERM;
      d->perm[d->rcpt] = stp_xstrdup(d->last);
    }
    d->rcpt++;
    next_rcpt(d);
    return;
  case D_DATA:
    if (r->code == 354) {
      start_body(d);
      return;
    }
    settle(d, SPOOL_RCPT_OK, cls == 5 ? SPOOL_RCPT_PERM : SPOOL_RCPT_TEMP, d->last);
    break;
  case D_DOT:
    if (cls != 2)
      settle(d, SPOOL_RCPT_OK, cls == 5 ? SPOOL_RCPT_PERM : SPOOL_RCPT_TEMP, d->last);
    d->step = D_END;
    break;
  default:
    return;
  }
  finish(d);
}

static void on_ready(void *owner, upconn *u) {
  dlv *d = owner;
  d->up_ready = true;
  snprintf(d->up_name, sizeof d->up_name, "%s", upconn_cfg(u)->name);
  backoff_report_ready(&d->gen->limits.upstream[failover_current(&d->fo)], d->up_name, NULL);
  send_mail(d);
}

static void on_failed(void *owner, upstream_fail why, const char *detail,
                      const provider_verdict *v) {
  dlv *d = owner;
  const stp_upstream_cfg *c = &d->gen->cfg->upstreams[failover_current(&d->fo)];
  bool was_ready = d->up_ready;
  bool dead_pooled = d->reused && d->step == D_MAIL;
  d->up = NULL; /* detached by upconn already */
  d->up_ready = false;
  d->reused = false;
  if (dead_pooled) { /* closed while it idled in the pool: a fresh one */
    try_upstream(d, false);
    return;
  }
  upconn_log_failed(NULL, d->e->env.id, c, why, detail, v);
  uint64_t skip_ms;
  bool more = failover_failed(&d->fo, d->gen->limits.upstream, upstream_fail_name(why), !was_ready,
                              true, stp_now_ms(), &skip_ms);
  backoff_report_started(c->name, upstream_fail_name(why), skip_ms, NULL);
  if (more) {
    try_upstream(d, false);
    return;
  }
  snprintf(d->last, sizeof d->last, "upstream %s: %s: %.160s", c->name, upstream_fail_name(why),
           detail);
  /* After the final dot the upstream may have the message: a try again
   * can duplicate it (SPEC allows one), never lose it. */
  settle(d, SPOOL_RCPT_OK, SPOOL_RCPT_TEMP, NULL);
  finish(d);
}

static void on_drain(void *owner) {
  dlv *d = owner;
  if (d->bp && d->step == D_BODY) {
    d->bp = false;
    read_next(d);
  }
}

static const upconn_owner_ops dlv_ops = {on_ready, on_reply, on_failed, on_drain, NULL};

static void try_upstream(dlv *d, bool allow_pool) {
  const backoff_state *table = d->no_backoff ? d->no_backoff : d->gen->limits.upstream;
  long pick = failover_pick(&d->fo, table, stp_now_ms());
  if (pick < 0) {
    snprintf(d->last, sizeof d->last, "every upstream of route %s is backing off (%.160s)",
             dlv_route(d)->name, d->fo.skipped);
    finish(d);
    return;
  }
  d->step = D_OPEN;
  upconn *u = allow_pool ? pool_take(d->gen->pool, (size_t)pick, &dlv_ops, d) : NULL;
  if (u) {
    d->up = u;
    d->reused = d->up_ready = true;
    snprintf(d->up_name, sizeof d->up_name, "%s", upconn_cfg(u)->name);
    send_mail(d);
    return;
  }
  d->up = upconn_open(d->run->loop, d->gen, (size_t)pick, &dlv_ops, d, "spool");
}

/* ---- the end of an attempt ------------------------------------------------------ */

static void log_attempt(dlv *d, const char *event, const char *result) {
  char att[16], next[16] = "", ok[16];
  uint64_t now = spool_wall_ms();
  snprintf(att, sizeof att, "%u", d->e->st.attempts);
  snprintf(ok, sizeof ok, "%zu", d->n_ok);
  if (!strcmp(result, "deferred"))
    spool_fmt_age(d->e->st.next_ms > now ? d->e->st.next_ms - now : 0, next, sizeof next);
  stp_kv kv[] = {{"id", d->e->env.id},
                 {"route", d->e->env.route},
                 {"upstream", d->up_name[0] ? d->up_name : NULL},
                 {"attempts", att},
                 {"rcpts_ok", strcmp(result, "delivered") ? NULL : ok},
                 {"next", next[0] ? next : NULL},
                 {"reply", d->last}};
  stp_log_kv(!strcmp(result, "delivered") ? STP_LOG_INFO : STP_LOG_WARN, NULL, event, kv, 7);
  metrics_spool_delivery(result);
}

static void conclude(dlv *d) {
  spool *sp = d->run->sp;
  spool_entry *e = d->e;
  bool any_perm = false;
  for (size_t i = 0; i < e->env.n_rcpts; i++)
    any_perm |= d->res[i] == SPOOL_RCPT_PERM;
  if (d->corrupt) {
    e->st.held = SPOOL_HELD_ADMIN;
    stp_kv kv[] = {{"id", e->env.id}, {"reason", d->last}};
    stp_log_kv(STP_LOG_ERROR, NULL, "spool-held", kv, 2);
  }
  bool all = spool_state_after_attempt(&e->st, d->res, spool_cfg(sp), spool_wall_ms(), d->last);
  if (d->expired)
    log_attempt(d, "spool-expired", "expired");
  else if (!all)
    log_attempt(d, "spool-deferred", "deferred");
  else
    log_attempt(d, any_perm ? "spool-failed" : "spool-delivered",
                any_perm ? "failed" : "delivered");
  if (all)
    spool_remove(sp, e, d->expired ? "expired" : any_perm ? "failed" : "delivered");
  else
    spool_save_state(sp, e);
  spool_release(sp, e);
  spool_run *run = d->run;
  spool_run_kick(run);
  dlv_free(d);
}

/* A notice that could not be spooled keeps its recipients pending: the
 * next attempt meets the same 5xx and tries the notice again. */
static void notice_done_cb(void *arg, bool ok) {
  dlv *d = arg;
  d->noticing = false;
  if (!ok)
    settle(d, SPOOL_RCPT_PERM, SPOOL_RCPT_TEMP, NULL);
  conclude(d);
}

static void finish(dlv *d) {
  if (d->rd) {
    msgcopy_reader_free(d->rd);
    d->rd = NULL;
  }
  if (d->up) {
    upconn *u = d->up;
    d->up = NULL;
    if (d->up_ready && !d->corrupt)
      pool_give(d->gen->pool, u, upconn_index(u)); /* RSET and keep, or QUIT */
    else
      upconn_detach(u, false); /* never a final dot for it */
  }
  /* Without the upstream's 2xx to the final dot, an accepted recipient is
   * not delivered: whatever cut the attempt short, it stays pending. */
  if (d->step != D_END)
    settle(d, SPOOL_RCPT_OK, SPOOL_RCPT_TEMP, NULL);
  d->step = D_END;
  size_t n = 0;
  dsn_rcpt *fail = stp_xcalloc(d->e->env.n_rcpts, sizeof *fail);
  for (size_t i = 0; i < d->e->env.n_rcpts; i++)
    if (d->res[i] == SPOOL_RCPT_PERM)
      fail[n++] =
          (dsn_rcpt){d->e->env.rcpts[i], d->perm[i], d->e->env.notify ? d->e->env.notify[i] : 0,
                     d->e->env.orcpt ? d->e->env.orcpt[i] : NULL};
  if (n) {
    d->noticing = true;
    spool_notice_send(d->run->loop, d->run->sp, d->gen->cfg, d->gen->cfg->hostname, d->e, fail, n,
                      d->expired, notice_done_cb, d);
    free(fail);
    return;
  }
  free(fail);
  conclude(d);
}

/* ---- starting a delivery ----------------------------------------------------------- */

static long route_by_name(const stp_config *cfg, const char *name) {
  for (size_t i = 0; i < cfg->n_routes; i++)
    if (!strcmp(cfg->routes[i].name, name))
      return (long)i;
  return -1;
}

static void hold_for_route(spool_run *run, spool_entry *e) {
  e->st.held = SPOOL_HELD_ROUTE;
  snprintf(e->st.last, sizeof e->st.last, "route %s is not in the configuration", e->env.route);
  stp_kv kv[] = {{"id", e->env.id}, {"route", e->env.route}, {"reason", "route-missing"}};
  stp_log_kv(STP_LOG_WARN, NULL, "spool-held", kv, 3);
  spool_save_state(run->sp, e);
}

static void dlv_start(spool_run *run, spool_entry *e) {
  const stp_config *cfg = run->gen->cfg;
  long route = route_by_name(cfg, e->env.route);
  bool expired = spool_expired(spool_cfg(run->sp), e->env.created_ms, spool_wall_ms());
  if (route < 0 && !expired) {
    hold_for_route(run, e);
    return;
  }
  uint64_t wait = expired ? 0 : limits_route(&run->gen->limits, (size_t)route, stp_now_ms());
  if (wait) { /* the route's rate limit, shared with the devices */
    e->st.next_ms = spool_wall_ms() + wait;
    return;
  }
  dlv *d = stp_xcalloc(1, sizeof *d);
  d->run = run;
  d->gen = srv_gen_ref(run->gen);
  d->e = e;
  d->route = route < 0 ? 0 : (size_t)route; /* expiring: no upstream is tried */
  d->res = stp_xcalloc(e->env.n_rcpts, sizeof *d->res);
  d->perm = stp_xcalloc(e->env.n_rcpts, sizeof *d->perm);
  for (size_t i = 0; i < e->env.n_rcpts; i++)
    d->res[i] = e->st.done[i] ? SPOOL_RCPT_SKIP : SPOOL_RCPT_TEMP;
  d->next = run->active;
  run->active = d;
  run->n_active++;
  e->busy = true;
  if (expired) { /* held or not: a failure notice, and the message goes */
    d->expired = true;
    snprintf(d->last, sizeof d->last, "%s", e->st.last[0] ? e->st.last : "max_age reached");
    settle(d, SPOOL_RCPT_TEMP, SPOOL_RCPT_PERM, d->last);
    finish(d);
    return;
  }
  if (e->force) /* an administrator asked for this try: past back-off */
    d->no_backoff = stp_xcalloc(cfg->n_upstreams ? cfg->n_upstreams : 1, sizeof *d->no_backoff);
  e->force = false;
  failover_begin(&d->fo, cfg, (size_t)route);
  try_upstream(d, true);
}

static void update_metrics(spool *sp) {
  uint64_t oldest = spool_oldest_ms(sp), now = spool_wall_ms();
  metrics_spool(spool_count(sp), spool_bytes(sp),
                oldest && now > oldest ? (now - oldest) / 1000 : 0);
}

/* Every upstream of e's route is backing off here. In a shared spool
 * such a replica leaves the message to one that may try it now (its
 * back-off is over, or an administrator's `queue retry` went to it),
 * rather than writing a deferral that would push that try back. */
static bool backing_off(spool_run *run, const spool_entry *e) {
  long route = route_by_name(run->gen->cfg, e->env.route);
  if (route < 0 || e->force)
    return false;
  failover fo;
  failover_begin(&fo, run->gen->cfg, (size_t)route);
  return failover_pick(&fo, run->gen->limits.upstream, stp_now_ms()) < 0;
}

/* A shared spool's claim came back: deliver what the file's state still
 * says is due, and let go of the rest. */
static void claimed_cb(void *arg, spool_entry *e, bool ok) {
  spool_run *run = arg;
  run->n_claiming--;
  if (ok) {
    spool *sp = run->sp;
    uint64_t now = spool_wall_ms();
    bool due = !e->st.held && e->st.next_ms <= now && !e->remove_asked;
    e->busy = false; /* dlv_start sets it again when a delivery starts */
    if (!spool_state_pending(&e->st))
      spool_remove(sp, e, "delivered"); /* its deliverer died before removing it */
    else if (due && backing_off(run, e))
      e->skip_until_ms = now + SPOOL_SHARED_RESCAN_MS;
    else if (due && !run->stopping && !run->draining)
      dlv_start(run, e);
    if (!e->busy)
      spool_release(sp, e);
  }
  if (run->stopping || run->draining)
    run_maybe_free(run);
  else
    spool_run_kick(run);
}

static void tick(spool_run *run) {
  update_metrics(run->sp);
  if (run->stopping || run->draining || !spool_recovered(run->sp))
    return;
  uint64_t now = spool_wall_ms();
  spool_retry_states(run->sp, now);
  spool_entry *e;
  bool shared = spool_shared(run->sp);
  /* Each start either runs or moves the message's next try on. */
  for (unsigned guard = 0; run->n_active + run->n_claiming < SPOOL_RUN_MAX && guard < 64; guard++) {
    if (!(e = spool_due(run->sp, now)))
      break;
    if (shared) { /* another process may hold it: claim it first */
      run->n_claiming++;
      spool_claim(run->sp, e, claimed_cb, run);
    } else {
      dlv_start(run, e);
    }
  }
}

static void timer_cb(uv_timer_t *t) {
  tick(t->data);
}

static void kick_cb(void *arg) {
  tick(arg);
}

void spool_run_kick(spool_run *run) {
  if (!run->stopping)
    defer_post(run->loop, &run->kick, kick_cb, run);
}

spool_run *spool_run_new(uv_loop_t *loop, spool *sp, srv_gen *gen) {
  spool_run *run = stp_xcalloc(1, sizeof *run);
  run->loop = loop;
  run->sp = sp;
  run->gen = srv_gen_ref(gen);
  uv_timer_init(loop, &run->timer);
  run->timer.data = run;
  uv_timer_start(&run->timer, timer_cb, SPOOL_RUN_TICK_MS, SPOOL_RUN_TICK_MS);
  return run;
}

void spool_run_set_gen(spool_run *run, srv_gen *gen) {
  srv_gen *old = run->gen;
  run->gen = srv_gen_ref(gen);
  srv_gen_unref(old);
  spool_entry **v;
  size_t n = spool_entries(run->sp, &v);
  for (size_t i = 0; i < n; i++) {
    spool_entry *e = v[i];
    if (e->st.held != SPOOL_HELD_ROUTE || route_by_name(gen->cfg, e->env.route) < 0)
      continue;
    e->st.held = SPOOL_HELD_NO;
    e->st.next_ms = spool_wall_ms();
    stp_kv kv[] = {{"id", e->env.id}, {"route", e->env.route}, {"reason", "route-back"}};
    stp_log_kv(STP_LOG_INFO, NULL, "spool-released", kv, 3);
    spool_save_state(run->sp, e);
  }
  spool_run_kick(run);
}

static void run_closed_cb(uv_handle_t *h) {
  spool_run *run = h->data;
  run->timer_closed = true;
  run_maybe_free(run);
}

/* A delivery cut short: no final dot for it, the message stays as it
 * was (its claim, in a shared spool, is let go). */
static void cut(dlv *d) {
  msgcopy_reader_free(d->rd);
  d->rd = NULL;
  upconn_detach(d->up, false);
  d->up = NULL;
  spool_release(d->run->sp, d->e);
  dlv_free(d);
}

/* Deliveries on the wire are cut (the message stays as it was: tried
 * again at the next start); one spooling its failure notice finishes. */
void spool_run_stop(spool_run *run) {
  if (!run || run->stopping)
    return;
  run->stopping = true;
  defer_cancel(&run->kick);
  defer_cancel(&run->drain_item);
  for (dlv *d = run->active, *next; d; d = next) {
    next = d->next;
    if (!d->noticing)
      cut(d);
  }
  uv_close((uv_handle_t *)&run->timer, run_closed_cb);
}

void spool_run_drain(spool_run *run, void (*drained)(void *arg), void *arg) {
  if (!run || run->stopping || run->draining)
    return;
  run->draining = true;
  run->drained = drained;
  run->drained_arg = arg;
  defer_cancel(&run->kick);
  /* Shared: another replica takes over at once, so what has not reached
   * its final dot is cut now (nothing was delivered: no duplicate). An
   * attempt waiting for the dot's answer ends normally. */
  for (dlv *d = run->active, *next; d; d = next) {
    next = d->next;
    if (spool_shared(run->sp) && !d->noticing && d->step < D_DOT)
      cut(d);
  }
  maybe_drained(run);
}
