/* relay.c - one device connection: a session wired to upstream connections.
 *
 * Owns: the device stream, the session, the idle and DATA-deadline timers,
 * the choice of the current upstream connection (upconn.c), failover across
 * a route's upstreams, and back-pressure between the two sides. Lifecycle:
 * the relay is freed only when its device stream and its timers are closed;
 * a dropped upconn is detached first and frees itself, so no callback ever
 * reaches freed memory.
 *
 * Callbacks rule: the session calls us (sess_* below) and we answer it only
 * from the loop. What we know at once inside such a call (every upstream of
 * the route backing off, a pooled connection ready for use, a request the
 * upstream machine refused, a password check that could not be queued) is
 * posted to `evq` and delivered by defer.h on the loop's next turn; what
 * upconn, the thread pool and the streams report arrives from the loop
 * already. Debug builds assert it (session_busy() is never true when we
 * deliver): a broken rule once let one pipelined write recurse until the
 * stack overflowed.
 */
#include <assert.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "defer.h"
#include "msgcopy.h"
#include "pool.h"
#include "relay.h"
#include "relay_pp.h"
#include "smtp-tls-proxy/backoff.h"
#include "smtp-tls-proxy/cidr.h"
#include "smtp-tls-proxy/failover.h"
#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/metrics.h"
#include "smtp-tls-proxy/session.h"
#include "smtp-tls-proxy/upstream.h"
#include "smtp-tls-proxy/util.h"
#include "spool.h"
#include "stream.h"
#include "upconn.h"

#define RELAY_CLOSE_GRACE_MS 10000 /* bound on flushing our last reply */
#define RELAY_EVQ_MAX 4            /* outcomes known at once, awaiting the loop */

typedef enum {
  RELAY_EV_READY,
  RELAY_EV_FAILED,
  RELAY_EV_PASSWORD,
  RELAY_EV_UNSPOOLED /* a commit with no copy to commit */
} relay_ev_kind;
typedef struct relay_ev {
  relay_ev_kind kind;
  upstream_fail why; /* RELAY_EV_FAILED */
  bool ok;           /* RELAY_EV_PASSWORD */
} relay_ev;

struct relay {
  void (*gone)(void *owner); /* the listener's bookkeeping */
  void *owner;
  srv_gen *gen;
  uv_loop_t *loop;
  stream *client;
  session sess;
  upconn *up;    /* current upstream connection, NULL when none */
  size_t lindex; /* our listener in r->gen (the listener may move on to a
                    newer generation on reload; this relay does not) */
  uv_timer_t idle_timer;
  uv_timer_t data_timer; /* the listener's data_deadline for one message */
  int open_handles;      /* client stream + the two timers */
  defer_item ev_item;    /* delivers evq from the loop */
  relay_ev evq[RELAY_EVQ_MAX];
  unsigned ev_head, ev_n;
  bool ready_posted; /* a pooled connection's READY waits in evq */
  bool closing;
  bool refusing;
  bool in_session;      /* session_init ran (relay_start) */
  relay_pp pp;          /* a balancer's PROXY header; a direct client's first bytes */
  relay_admit_fn admit; /* the listener's verdict on the client it names */
  bool pause_session, pause_bp, pause_client_bp;
  bool pause_copy_bp;   /* the spool copy's writes lag behind */
  spool_in *copy;       /* routes that spool: the message's copy */
  bool greet_after_tls; /* implicit TLS: the greeting waits for the handshake */
  bool up_ready;
  struct hash_job *hash_job; /* a password check in the thread pool */
  uint64_t up_t0;            /* when the current connection was opened (latency) */
  uint64_t dot_t0;           /* when the final dot went out (latency) */
  bool up_reused;            /* r->up came from the pool */
  bool mail_pending;         /* MAIL sent, its reply not yet seen */
  bool replay_mail;          /* a pooled connection died before MAIL's reply: resend */
  char mail_from[SMTP_ADDR_MAX + 1];
  smtp_mail_args mail_args;
  size_t route;
  failover fo; /* the walk along the route's upstreams */
  char sid[16];
};

static void relay_try_upstream(relay *r, bool allow_pool);
static void idle_cb(uv_timer_t *t);
static void header_read(relay *r, const char *p, size_t n);
static bool sniff_read(relay *r, const char **p, size_t *n);

/* ---- teardown ------------------------------------------------------------ */

static void relay_handle_gone(relay *r) {
  if (--r->open_handles > 0)
    return;
  defer_cancel(&r->ev_item);
  relay_pp_free(&r->pp);
  if (r->in_session) {
    session_free(&r->sess);
    metrics_session_close(r->gen->cfg->listeners[r->lindex].name);
  }
  r->gone(r->owner);
  srv_gen_unref(r->gen);
  free(r);
}

static void timer_closed_cb(uv_handle_t *h) {
  relay_handle_gone(h->data);
}

static void relay_close(relay *r) {
  if (r->closing)
    return;
  r->closing = true;
  uv_timer_stop(&r->data_timer);
  /* A last reply gets a bounded time to reach the device. */
  uv_timer_start(&r->idle_timer, idle_cb, RELAY_CLOSE_GRACE_MS, 0);
  stream_close_after_flush(r->client);
}

/* The device is read unless the session holds input, the upstream's write
 * queue is full, or the device does not read our replies. */
static void update_client_reading(relay *r) {
  stream_pause(r->client,
               r->pause_session || r->pause_bp || r->pause_client_bp || r->pause_copy_bp);
}

/* The upstream drained, or went away: its back-pressure no longer holds
 * the device. */
static void end_upstream_backpressure(relay *r) {
  if (r->pause_bp) {
    r->pause_bp = false;
    update_client_reading(r);
  }
}

/* Drop the relay's upstream connection; none of its callbacks reaches the
 * relay afterwards. */
static void relay_drop_upstream(relay *r, bool graceful) {
  upconn *u = r->up;
  r->up = NULL;
  if (u && graceful && r->up_ready)
    pool_give(r->gen->pool, u, upconn_index(u)); /* RSET and keep, or QUIT */
  else
    upconn_detach(u, graceful);
  r->up_ready = false;
  end_upstream_backpressure(r);
}

/* ---- outcomes known at once, delivered from the loop ----------------------- */

static void up_ready(void *owner, upconn *u);

/* Every delivery to the session goes through here or through a loop
 * callback; in debug builds both check that the session is not on the
 * stack. */
static session *sess_for_delivery(relay *r) {
  assert(!session_busy(&r->sess) && "relay must not re-enter its session");
  return &r->sess;
}

static void relay_ev_cb(void *arg) {
  relay *r = arg;
  while (r->ev_n > 0 && !r->closing) {
    relay_ev ev = r->evq[r->ev_head];
    r->ev_head = (r->ev_head + 1) % RELAY_EVQ_MAX;
    r->ev_n--;
    switch (ev.kind) {
    case RELAY_EV_READY:
      /* Unless the pooled connection died meanwhile (up_failed replaced it). */
      if (r->ready_posted && r->up) {
        r->ready_posted = false;
        up_ready(r, r->up);
      }
      break;
    case RELAY_EV_FAILED:
      session_up_failed(sess_for_delivery(r), ev.why);
      break;
    case RELAY_EV_PASSWORD:
      session_password_checked(sess_for_delivery(r), ev.ok);
      break;
    case RELAY_EV_UNSPOOLED:
      session_spooled(sess_for_delivery(r), false, "spool unavailable");
      break;
    }
  }
  r->ev_n = 0;
}

static void relay_post(relay *r, relay_ev ev) {
  if (r->ev_n >= RELAY_EVQ_MAX) {
    /* More outcomes than requests: a bug. Never a silent hang or a stack
     * overflow: the device is told to come back. */
    assert(!"relay outcome queue overflow");
    stp_logf(STP_LOG_ERROR, r->sid, "internal error: outcome queue full");
    session_shutdown(&r->sess, "421 4.3.0 Internal error, try again later\r\n");
    return;
  }
  r->evq[(r->ev_head + r->ev_n) % RELAY_EVQ_MAX] = ev;
  r->ev_n++;
  defer_post(r->loop, &r->ev_item, relay_ev_cb, r);
}

static void relay_post_failed(relay *r, upstream_fail why) {
  relay_post(r, (relay_ev){.kind = RELAY_EV_FAILED, .why = why});
}

/* ---- device side ------------------------------------------------------------ */

static void sess_write(void *ctx, const char *p, size_t n) {
  relay *r = ctx;
  stream_write(r->client, p, n);
  if (stream_queued(r->client) > STREAM_HIGH_WATER && !r->pause_client_bp) {
    /* The device does not read our replies: stop reading its commands. */
    r->pause_client_bp = true;
    update_client_reading(r);
  }
}

static void sess_close(void *ctx) {
  relay_close(ctx);
}

static void sess_pause(void *ctx, bool paused) {
  relay *r = ctx;
  r->pause_session = paused;
  update_client_reading(r);
}

static void sess_start_tls(void *ctx) {
  relay *r = ctx;
  tls_ctx *t = r->gen->lan_tls ? r->gen->lan_tls[r->lindex] : NULL;
  if (!t || stream_start_tls(r->client, t, NULL, true) < 0) {
    stp_logf(STP_LOG_ERROR, r->sid, "cannot start LAN TLS");
    relay_close(r);
  }
}

static void up_body_written(relay *r) {
  if (r->up && upconn_queued(r->up) > STREAM_HIGH_WATER && !r->pause_bp) {
    r->pause_bp = true;
    update_client_reading(r);
  }
}

/* A request the upstream machine refused is a bug, not the network's fault;
 * it still ends as a 4xx for the device, never as a hang. */
static void sm_call_failed(relay *r, int rc) {
  if (rc < 0) {
    stp_logf(STP_LOG_ERROR, r->sid, "upstream request in wrong state %s",
             r->up ? upconn_proto_state(r->up) : "none");
    relay_drop_upstream(r, false);
    relay_post_failed(r, UP_FAIL_PROTOCOL);
  }
}

static void sess_up_open(void *ctx, size_t route) {
  relay *r = ctx;
  r->route = route;
  failover_begin(&r->fo, r->gen->cfg, route);
  relay_try_upstream(r, true);
}

static void sess_up_mail(void *ctx, const char *from, const smtp_mail_args *a) {
  relay *r = ctx;
  /* Kept so that MAIL can be sent again on a fresh connection when a
   * pooled one turns out dead before it answered. */
  snprintf(r->mail_from, sizeof r->mail_from, "%s", from);
  r->mail_args = *a;
  r->mail_pending = true;
  sm_call_failed(r, r->up ? upconn_mail(r->up, from, a) : STP_ESTATE);
}

static void sess_up_rcpt(void *ctx, const char *to, const smtp_rcpt_dsn *dsn) {
  relay *r = ctx;
  sm_call_failed(r, r->up ? upconn_rcpt(r->up, to, dsn) : STP_ESTATE);
}

static void sess_up_data(void *ctx) {
  relay *r = ctx;
  sm_call_failed(r, r->up ? upconn_data(r->up) : STP_ESTATE);
}

static void sess_up_body(void *ctx, const char *p, size_t n) {
  relay *r = ctx;
  if (r->up && upconn_body(r->up, p, n) == 0)
    up_body_written(r);
}

static void sess_up_end(void *ctx) {
  relay *r = ctx;
  r->dot_t0 = stp_now_ms();
  sm_call_failed(r, r->up ? upconn_end(r->up) : STP_ESTATE);
}

static void sess_up_rset(void *ctx) {
  relay *r = ctx;
  sm_call_failed(r, r->up ? upconn_rset(r->up) : STP_ESTATE);
}

static void sess_up_close(void *ctx, bool graceful) {
  relay_drop_upstream(ctx, graceful);
}

/* ---- password hashes, off the loop ---------------------------------------- */

/* A crypt(3) check in libuv's thread pool. The job owns copies of the hash
 * and the password (the relay and its configuration may be gone before it
 * finishes); the password copy is wiped in the after-callback. */
typedef struct hash_job {
  uv_work_t req;
  relay *r; /* NULL once the relay went away */
  bool ok;
  char hash[512];
  char pass[LANAUTH_PASS_MAX + 1];
} hash_job;

static void hash_work_cb(uv_work_t *req) {
  hash_job *j = req->data;
  j->ok = lanauth_check_hash(j->hash, j->pass);
}

static void hash_done_cb(uv_work_t *req, int status) {
  hash_job *j = req->data;
  relay *r = j->r;
  bool ok = status == 0 && j->ok;
  stp_cleanse(j->pass, sizeof j->pass);
  free(j);
  if (!r)
    return;
  r->hash_job = NULL;
  session_password_checked(sess_for_delivery(r), ok);
}

static void sess_check_password(void *ctx, const char *hash, const char *pass) {
  relay *r = ctx;
  hash_job *j = stp_xcalloc(1, sizeof *j);
  j->req.data = j;
  j->r = r;
  bool fits = strlen(hash) < sizeof j->hash && strlen(pass) < sizeof j->pass;
  if (fits) {
    memcpy(j->hash, hash, strlen(hash) + 1);
    memcpy(j->pass, pass, strlen(pass) + 1);
  }
  if (!fits || uv_queue_work(r->loop, &j->req, hash_work_cb, hash_done_cb) < 0) {
    stp_cleanse(j->pass, sizeof j->pass);
    free(j);
    relay_post(r, (relay_ev){.kind = RELAY_EV_PASSWORD, .ok = false});
    return;
  }
  r->hash_job = j;
}

static void data_timer_cb(uv_timer_t *t) {
  relay *r = t->data;
  if (!r->closing)
    session_on_data_deadline(sess_for_delivery(r));
}

static void sess_data_started(void *ctx, uint64_t ms) {
  relay *r = ctx;
  uv_timer_start(&r->data_timer, data_timer_cb, ms, 0);
}

/* ---- the copy for the spool (routes with on_upstream_failure: spool) ---- */

static bool sess_spool_room(void *ctx) {
  relay *r = ctx;
  return r->gen->spool && spool_room(r->gen->spool);
}

static void end_copy_backpressure(relay *r) {
  if (r->pause_copy_bp) {
    r->pause_copy_bp = false;
    update_client_reading(r);
  }
}

static void copy_drain_cb(void *owner) {
  end_copy_backpressure(owner);
}

static void relay_drop_copy(relay *r) {
  spool_in_release(r->copy); /* a commit under way still finishes */
  r->copy = NULL;
  end_copy_backpressure(r);
}

static void sess_copy_begin(void *ctx, const spool_env *env) {
  relay *r = ctx;
  relay_drop_copy(r);
  if (r->gen->spool)
    r->copy = spool_in_begin(r->gen->spool, env, copy_drain_cb, r);
}

/* The device is read no faster than the copy is written. */
static void sess_copy_body(void *ctx, const char *p, size_t n) {
  relay *r = ctx;
  if (!r->copy)
    return;
  spool_in_body(r->copy, p, n);
  if (spool_in_queued(r->copy) > MSGCOPY_HIGH_WATER && !r->pause_copy_bp) {
    r->pause_copy_bp = true;
    update_client_reading(r);
  }
}

static void copy_committed_cb(void *owner, bool ok, const char *id_or_error) {
  relay *r = owner;
  r->copy = NULL;
  end_copy_backpressure(r);
  session_spooled(sess_for_delivery(r), ok, id_or_error);
}

static void sess_copy_commit(void *ctx, const char *reason) {
  relay *r = ctx;
  if (!r->copy) {
    relay_post(r, (relay_ev){.kind = RELAY_EV_UNSPOOLED});
    return;
  }
  end_copy_backpressure(r);
  spool_in_commit(r->copy, reason, copy_committed_cb, r);
}

static void sess_copy_discard(void *ctx) {
  relay_drop_copy(ctx);
}

static const session_ops relay_session_ops = {
    .write = sess_write,
    .close = sess_close,
    .pause = sess_pause,
    .start_tls = sess_start_tls,
    .up_open = sess_up_open,
    .up_mail = sess_up_mail,
    .up_rcpt = sess_up_rcpt,
    .up_data = sess_up_data,
    .up_body = sess_up_body,
    .up_end = sess_up_end,
    .up_rset = sess_up_rset,
    .up_close = sess_up_close,
    .check_password = sess_check_password,
    .data_started = sess_data_started,
    .spool_room = sess_spool_room,
    .copy_begin = sess_copy_begin,
    .copy_body = sess_copy_body,
    .copy_commit = sess_copy_commit,
    .copy_discard = sess_copy_discard,
};

/* The idle timer restarts on progress (a whole command, or message data),
 * not on every byte: a device that drips a command one byte at a time is
 * idle as far as idle_timeout is concerned (slowloris). */
static void feed_session(relay *r, const char *p, size_t n) {
  uint64_t before = session_progress(&r->sess);
  session_feed(sess_for_delivery(r), p, n);
  if (session_progress(&r->sess) != before && !r->closing)
    uv_timer_again(&r->idle_timer);
}

static void client_on_read(void *ctx, const char *p, size_t n) {
  relay *r = ctx;
  if (relay_pp_reading(&r->pp)) {
    header_read(r, p, n);
    return;
  }
  if (r->pp.sniff && !sniff_read(r, &p, &n))
    return;
  if (n)
    feed_session(r, p, n);
}

/* For debug logs: what the relay is doing, from its flags. */
static const char *relay_state_name(const relay *r) {
  if (r->refusing)
    return "refusing";
  if (r->closing)
    return "closing";
  if (r->ev_n)
    return "delivering";
  if (r->up && !r->up_ready)
    return "connecting";
  if (r->pause_bp || r->pause_client_bp)
    return "back-pressure";
  return r->up ? "upstream-ready" : "idle";
}

static void header_refuse(relay *r, const char *reply);

static void client_on_error(void *ctx, const char *reason, bool tls, bool verify) {
  relay *r = ctx;
  (void)verify;
  if (relay_pp_reading(&r->pp)) {
    header_refuse(r, relay_pp_lost(&r->pp, reason));
    return;
  }
  if (!r->in_session) {
    /* Refused (relay_refuse) and the peer went away before our reply
     * was flushed: there is no session to tell. */
    stream_close(r->client);
    return;
  }
  if (stp_log_level() >= STP_LOG_DEBUG || tls) {
    stp_kv kv[] = {{"reason", reason},
                   {"relay", relay_state_name(r)},
                   {"upstream", r->up ? upconn_state_name(r->up) : NULL},
                   {"stream", stream_state_name(r->client)}};
    stp_log_kv(tls ? STP_LOG_WARN : STP_LOG_DEBUG, r->sid, "client-closed", kv, 4);
  }
  session_on_eof(sess_for_delivery(r));
}

static void client_on_tls(void *ctx) {
  relay *r = ctx;
  session_tls_ready(sess_for_delivery(r), stream_tls_version(r->client));
  if (r->greet_after_tls) {
    r->greet_after_tls = false;
    session_start(&r->sess);
  }
}

static void client_on_drain(void *ctx) {
  relay *r = ctx;
  if (r->pause_client_bp) {
    r->pause_client_bp = false;
    update_client_reading(r);
  }
}

static void client_on_closed(void *ctx) {
  relay *r = ctx;
  if (r->hash_job) /* it finishes on its own; its answer goes nowhere */
    r->hash_job->r = NULL;
  relay_drop_upstream(r, false);
  relay_drop_copy(r);
  if (!uv_is_closing((uv_handle_t *)&r->idle_timer))
    uv_close((uv_handle_t *)&r->idle_timer, timer_closed_cb);
  if (!uv_is_closing((uv_handle_t *)&r->data_timer))
    uv_close((uv_handle_t *)&r->data_timer, timer_closed_cb);
  relay_handle_gone(r);
}

static const stream_cbs client_cbs = {NULL,          client_on_read,  client_on_error,
                                      client_on_tls, client_on_drain, client_on_closed};

static void idle_cb(uv_timer_t *t) {
  relay *r = t->data;
  if (r->closing) {
    stream_close(r->client); /* the device did not take our last reply */
    return;
  }
  if (session_waiting(&r->sess) || r->pause_bp) {
    uv_timer_again(t); /* the upstream is the slow side; its timer rules */
    return;
  }
  session_on_idle_timeout(sess_for_delivery(r));
}

/* ---- upstream side ------------------------------------------------------ */

static void up_ready(void *owner, upconn *u) {
  relay *r = owner;
  r->up_ready = true;
  if (!r->up_reused)
    metrics_upstream_latency(upconn_cfg(u)->name, "ready",
                             (double)(stp_now_ms() - r->up_t0) / 1000.0);
  if (r->replay_mail) {
    r->replay_mail = false;
    sm_call_failed(r, upconn_mail(u, r->mail_from, &r->mail_args));
    return;
  }
  backoff_report_ready(&r->gen->limits.upstream[failover_current(&r->fo)], upconn_cfg(u)->name,
                       r->sid);
  session_up_skipped(&r->sess, r->fo.skipped);
  session_up_ready(sess_for_delivery(r), upconn_cfg(u)->name, upconn_tls_version(u));
}

static void up_reply(void *owner, const smtp_reply *rep) {
  relay *r = owner;
  r->mail_pending = false;
  if (r->dot_t0 && r->up) {
    metrics_upstream_latency(upconn_cfg(r->up)->name, "dot",
                             (double)(stp_now_ms() - r->dot_t0) / 1000.0);
    r->dot_t0 = 0;
  }
  session_up_reply(sess_for_delivery(r), rep);
}

static bool device_credentials(const relay *r, const char **user, const char **secret) {
  const char *u, *p;
  bool yes = session_passthrough(&r->sess, &u, &p);
  if (user)
    *user = u;
  if (secret)
    *secret = p;
  return yes;
}

/* An upstream that failed before it was ready is skipped by every session
 * for a back-off period (30 s doubling to 10 min), except when the fault
 * was a device's own passthrough credentials. Returns whether the route
 * has another upstream to try. */
static bool record_failure(relay *r, size_t index, upstream_fail why, bool before_ready) {
  bool count = !(why == UP_FAIL_AUTH && device_credentials(r, NULL, NULL));
  uint64_t skip_ms;
  bool more = failover_failed(&r->fo, r->gen->limits.upstream, upstream_fail_name(why),
                              before_ready, count, stp_now_ms(), &skip_ms);
  backoff_report_started(r->gen->cfg->upstreams[index].name, upstream_fail_name(why), skip_ms,
                         r->sid);
  return more;
}

/* Failures before the connection was ready may fail over to the route's
 * next upstream; later ones belong to the message in flight. */
/* One line per failed connection. A refusal the provider table knows is
 * logged by its reason word, the provider's own words and the fix; the
 * metric counts it under that word too. */

static void up_failed(void *owner, upstream_fail why, const char *detail,
                      const provider_verdict *v) {
  relay *r = owner;
  const stp_config *cfg = r->gen->cfg;
  size_t index = failover_current(&r->fo);
  const stp_upstream_cfg *c = &cfg->upstreams[index];
  bool was_ready = r->up_ready;
  bool dead_pooled = r->up_reused && (r->mail_pending || r->ready_posted);
  r->up = NULL; /* already detached by upconn */
  r->up_ready = false;
  r->up_reused = false;
  if (dead_pooled) {
    /* The upstream closed a pooled connection while it idled: replace it
     * without the device noticing, and send its MAIL again if it went. */
    stp_kv kv[] = {{"upstream", c->name}, {"detail", detail}};
    stp_log_kv(STP_LOG_INFO, r->sid, "pooled-connection-dead", kv, 2);
    r->replay_mail = r->mail_pending;
    r->ready_posted = false;
    relay_try_upstream(r, false);
    return;
  }
  upconn_log_failed(r->sid, NULL, c, why, detail, v);
  end_upstream_backpressure(r);
  if (record_failure(r, index, why, !was_ready)) {
    relay_try_upstream(r, false);
    return;
  }
  r->replay_mail = false;
  session_up_skipped(&r->sess, r->fo.skipped);
  session_up_failed_verdict(sess_for_delivery(r), why, v);
}

static void up_drain(void *owner) {
  relay *r = owner;
  end_upstream_backpressure(r);
}

static const upconn_owner_ops relay_upconn_ops = {up_ready, up_reply, up_failed, up_drain, NULL};

/* Open the route's upstream at try_pos, or the next one not in back-off.
 * All of them backing off: a 4xx at once, without a connection attempt. */
static void relay_try_upstream(relay *r, bool allow_pool) {
  const stp_config *cfg = r->gen->cfg;
  const stp_route_cfg *rt = r->fo.route;
  long pick = failover_pick(&r->fo, r->gen->limits.upstream, stp_now_ms());
  if (pick < 0) {
    session_up_skipped(&r->sess, r->fo.skipped);
    relay_post_failed(r, UP_FAIL_CONNECT);
    return;
  }
  size_t index = (size_t)pick;
  if (failover_moved(&r->fo)) {
    stp_kv fk[] = {
        {"route", rt->name}, {"to", cfg->upstreams[index].name}, {"skipped", r->fo.skipped}};
    stp_log_kv(STP_LOG_WARN, r->sid, "failover", fk, 3);
    metrics_failover(rt->name, cfg->upstreams[r->fo.prev].name, cfg->upstreams[index].name);
  }
  r->up_ready = false;
  r->up_reused = false;
  const char *pt_user, *pt_secret;
  bool passthrough = device_credentials(r, &pt_user, &pt_secret);
  if (allow_pool && !passthrough) {
    upconn *u = pool_take(r->gen->pool, index, &relay_upconn_ops, r);
    if (u) {
      stp_kv kv[] = {{"upstream", cfg->upstreams[index].name}};
      stp_log_kv(STP_LOG_DEBUG, r->sid, "upstream-reused", kv, 1);
      r->up = u;
      r->up_reused = true;
      r->up_ready = true;
      r->ready_posted = true;
      relay_post(r, (relay_ev){.kind = RELAY_EV_READY});
      return;
    }
  }
  r->up_t0 = stp_now_ms();
  r->up = upconn_open(r->loop, r->gen, index, &relay_upconn_ops, r, r->sid);
  if (passthrough) /* auth: passthrough: the device's own credentials */
    upconn_set_credentials(r->up, pt_user, pt_secret);
}

/* ---- lifecycle -------------------------------------------------------------- */

relay *relay_new(uv_loop_t *loop, srv_gen *gen, size_t lindex, void (*gone)(void *owner),
                 void *owner) {
  relay *r = stp_xcalloc(1, sizeof *r);
  r->gone = gone;
  r->owner = owner;
  r->gen = srv_gen_ref(gen);
  r->lindex = lindex;
  r->loop = loop;
  r->client = stream_new(loop, &client_cbs, r);
  uv_timer_init(loop, &r->idle_timer);
  r->idle_timer.data = r;
  uv_timer_init(loop, &r->data_timer);
  r->data_timer.data = r;
  r->open_handles = 3;
  return r;
}

uv_tcp_t *relay_client_tcp(relay *r) {
  return stream_tcp(r->client);
}

static void make_sid(relay *r) {
  static unsigned long counter;
  snprintf(r->sid, sizeof r->sid, "%08lx%04lx", (unsigned long)(stp_now_ms() & 0xffffffffu),
           ++counter & 0xffffu);
}

void relay_refuse(relay *r, const char *reply) {
  r->refusing = true;
  r->closing = true;
  stream_start(r->client);
  stream_write(r->client, reply, strlen(reply));
  stream_close_after_flush(r->client);
  uv_timer_start(&r->idle_timer, idle_cb, RELAY_CLOSE_GRACE_MS, 0);
}

void relay_start(relay *r, const struct sockaddr *peer) {
  const stp_listener_cfg *lc = &r->gen->cfg->listeners[r->lindex];
  make_sid(r);
  metrics_session_open(lc->name);
  session_init(&r->sess, r->gen->cfg, lc, peer, r->sid, &relay_session_ops, r);
  session_set_limits(&r->sess, &r->gen->limits);
  r->in_session = true;
  if (lc->n_proxy_protocol > 0 && !r->pp.via[0])
    relay_pp_sniff_start(&r->pp, lc->name);
  char ip[64];
  stp_kv kv[] = {{"listener", lc->name},
                 {"client", stp_sockaddr_ip(peer, ip, sizeof ip)},
                 {"via", r->pp.via[0] ? r->pp.via : NULL}};
  stp_log_kv(STP_LOG_INFO, r->sid, "connect", kv, 3);
  uv_tcp_nodelay(stream_tcp(r->client), 1);
  uv_timer_start(&r->idle_timer, idle_cb, lc->idle_timeout_ms, lc->idle_timeout_ms);
  stream_start(r->client);
  if (lc->tls == STP_TLS_IMPLICIT) {
    session_expect_tls(&r->sess);
    r->greet_after_tls = true;
    sess_start_tls(r);
    return;
  }
  session_start(&r->sess);
}

void relay_shutdown(relay *r) {
  if (r->closing)
    return;
  if (!r->in_session) { /* still waiting for a PROXY header */
    relay_pp_free(&r->pp);
    r->refusing = true;
    relay_close(r);
    return;
  }
  session_shutdown(&r->sess, NULL);
}

/* ---- the PROXY header (listeners with proxy_protocol; relay_pp.c) -------- */

static void header_refuse(relay *r, const char *reply) {
  if (reply) {
    relay_refuse(r, reply);
    return;
  }
  r->refusing = true;
  relay_close(r);
}

static void header_timeout_cb(uv_timer_t *t) {
  relay *r = t->data;
  if (relay_pp_reading(&r->pp))
    header_refuse(r, relay_pp_timeout(&r->pp));
}

static void header_read(relay *r, const char *p, size_t n) {
  size_t used;
  const struct sockaddr *client;
  const char *reply;
  relay_pp_step st = relay_pp_read(&r->pp, p, n, &used, &client, &reply);
  if (st == RELAY_PP_MORE)
    return;
  if (st == RELAY_PP_REFUSE) {
    header_refuse(r, reply);
    return;
  }
  uv_timer_stop(&r->idle_timer);
  reply = r->admit(r->owner, client);
  if (reply) {
    relay_refuse(r, reply); /* the listener logged why */
    return;
  }
  relay_start(r, client);
  stream_unread(r->client, p + used, n - used);
}

static bool sniff_read(relay *r, const char **p, size_t *n) {
  const char *reply;
  relay_pp_step st = relay_pp_sniff(&r->pp, p, n, r->sid, r->sess.client_ip, &reply);
  if (st == RELAY_PP_MORE)
    return false;
  if (st == RELAY_PP_REFUSE) {
    session_shutdown(&r->sess, reply);
    return false;
  }
  feed_session(r, (const char *)r->pp.sniffed, r->pp.n_sniffed);
  return !r->closing;
}

void relay_await_header(relay *r, const struct sockaddr *balancer, relay_admit_fn admit) {
  const stp_listener_cfg *lc = &r->gen->cfg->listeners[r->lindex];
  relay_pp_await(&r->pp, lc->name, balancer);
  r->admit = admit;
  uint64_t ms =
      lc->idle_timeout_ms < RELAY_PP_TIMEOUT_MS ? lc->idle_timeout_ms : RELAY_PP_TIMEOUT_MS;
  uv_timer_start(&r->idle_timer, header_timeout_cb, ms, 0);
  stream_start(r->client);
}
