/* admin_http.c - the admin server's sockets (see admin_http.h). The pure
 * router (proxy/core/admin.c) decides everything about a request; this
 * file reads it, runs the password check off the loop, performs queue
 * actions and test messages, writes the answer and closes.
 */
#include "admin_http.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin_assets.h"
#include "connset.h"
#include "netbind.h"
#include "smtp-tls-proxy/admin.h"
#include "smtp-tls-proxy/history.h"
#include "smtp-tls-proxy/log.h"
#include "spool.h"
#include "spool_ctl.h"
#include "stream.h"
#include "testroute.h"

typedef struct ah_conn ah_conn;

struct admin_http {
  uv_loop_t *loop;
  uv_tcp_t srv;
  srv_gen *gen;
  tls_ctx *tls; /* NULL: plain (loopback only, config_admin.c) */
  struct spool *sp;
  struct spool_run *run;
  history hist;
  admin core;
  connset set;
};

typedef enum { AC_READING, AC_CHECKING, AC_TESTING, AC_WRITING, AC_CLOSING } ac_state;

struct ah_conn {
  connset_link link; /* first: see connset.h */
  admin_http *h;
  stream *s;
  uv_timer_t timer;
  uv_work_t work;
  unsigned n_open; /* stream and timer not yet closed */
  bool working;    /* the password check holds this connection */
  bool check_ok;
  ac_state st;
  srv_gen *gen; /* the config the check reads, kept alive for it */
  testroute *test;
  char client[64];
  admin_req req;
  size_t len;
  char buf[ADMIN_MAX_REQUEST];
};

/* ---- lifetime ------------------------------------------------------------------ */

static void maybe_free_server(admin_http *h) {
  if (!connset_finished(&h->set))
    return;
  stp_log_unobserve(history_observe, &h->hist);
  history_free(&h->hist);
  admin_free(&h->core);
  tls_ctx_free(h->tls);
  srv_gen_unref(h->gen);
  free(h);
}

static void conn_release(ah_conn *c) {
  if (c->n_open || c->working)
    return;
  admin_http *h = c->h;
  connset_remove(&h->set, &c->link);
  admin_req_wipe(&c->req);
  stp_cleanse(c->buf, sizeof c->buf); /* it held an Authorization header */
  free(c);
  maybe_free_server(h);
}

static void handle_closed_cb(uv_handle_t *hd) {
  ah_conn *c = hd->data;
  c->n_open--;
  conn_release(c);
}

static void close_timer(ah_conn *c) {
  if (!uv_is_closing((uv_handle_t *)&c->timer))
    uv_close((uv_handle_t *)&c->timer, handle_closed_cb);
}

/* The stream's last callback (after a close or once the answer was
 * flushed): the stream is gone, the timer follows. */
static void stream_closed(void *ctx) {
  ah_conn *c = ctx;
  c->s = NULL;
  c->st = AC_CLOSING;
  testroute_cancel(c->test);
  c->test = NULL;
  c->n_open--;
  close_timer(c);
  conn_release(c);
}

static void conn_close(ah_conn *c) {
  if (c->st == AC_CLOSING)
    return;
  c->st = AC_CLOSING;
  testroute_cancel(c->test);
  c->test = NULL;
  if (c->s)
    stream_close(c->s);
  close_timer(c);
}

static void timeout_cb(uv_timer_t *t) {
  conn_close(t->data);
}

/* ---- answering ----------------------------------------------------------------- */

static void send_resp(ah_conn *c, admin_resp *resp) {
  stp_buf out;
  stp_buf_init(&out, 2048 + resp->body.len);
  admin_resp_head(resp, c->h->tls != NULL, &out);
  if (!resp->head_only)
    stp_buf_append(&out, resp->body.data, resp->body.len);
  c->st = AC_WRITING;
  stream_pause(c->s, true);
  uv_timer_start(&c->timer, timeout_cb, ADMIN_HTTP_TIMEOUT_MS, 0);
  if (stream_write(c->s, out.data, out.len) == 0)
    stream_close_after_flush(c->s);
  stp_buf_free(&out);
  admin_resp_free(resp);
}

static void send_error(ah_conn *c, int status, uint64_t retry_s) {
  admin_resp resp;
  memset(&resp, 0, sizeof resp);
  admin_error(&resp, status, retry_s);
  send_resp(c, &resp);
}

static void test_done(void *ctx, bool ok, const char *transcript) {
  ah_conn *c = ctx;
  c->test = NULL;
  admin_resp resp;
  admin_test_done(&c->h->core, &c->req, ok, transcript, (int64_t)spool_wall_ms(), &resp);
  send_resp(c, &resp);
}

static void authorised(ah_conn *c) {
  admin_http *h = c->h;
  admin_resp resp;
  admin_action a = admin_handle(&h->core, &c->req, (int64_t)spool_wall_ms(), stp_now_ms(), &resp);
  if (a != ADM_TEST) {
    send_resp(c, &resp);
    return;
  }
  stp_kv kv[] = {{"route", c->req.route}, {"by", c->req.user}};
  stp_log_kv(STP_LOG_INFO, NULL, "admin-test-route", kv, 2);
  c->st = AC_TESTING;
  uv_timer_start(&c->timer, timeout_cb, ADMIN_HTTP_TEST_MS, 0);
  c->test = testroute_start(h->loop, h->gen, c->req.route, c->req.from, c->req.to, test_done, c);
  if (!c->test)
    send_error(c, 404, 0); /* the route went away in a reload */
}

/* ---- the password check, off the loop -------------------------------------------- */

static void check_work(uv_work_t *w) {
  ah_conn *c = w->data;
  c->check_ok = admin_check_credentials(c->gen->cfg, &c->req);
}

static void check_done(uv_work_t *w, int status) {
  ah_conn *c = w->data;
  admin_http *h = c->h;
  c->working = false;
  srv_gen_unref(c->gen);
  c->gen = NULL;
  stp_cleanse(c->req.pass, sizeof c->req.pass);
  if (c->st != AC_CHECKING) { /* closed meanwhile */
    conn_release(c);
    return;
  }
  if (status < 0 || !c->check_ok) {
    admin_failed(&h->core, c->client, stp_now_ms());
    stp_kv kv[] = {{"client", c->client}, {"user", c->req.user}};
    stp_log_kv(STP_LOG_WARN, NULL, "admin-auth-failed", kv, 2);
    send_error(c, 401, 0);
    return;
  }
  authorised(c);
}

static void request_ready(ah_conn *c) {
  admin_http *h = c->h;
  uint64_t wait = admin_gate(&h->core, c->client, stp_now_ms());
  if (wait) {
    stp_kv kv[] = {{"client", c->client}};
    stp_log_kv(STP_LOG_WARN, NULL, "admin-auth-rate-limited", kv, 1);
    send_error(c, 429, wait);
    return;
  }
  if (!c->req.has_creds) {
    send_error(c, 401, 0);
    return;
  }
  c->st = AC_CHECKING;
  c->working = true;
  c->gen = srv_gen_ref(h->gen);
  c->work.data = c;
  if (uv_queue_work(h->loop, &c->work, check_work, check_done) < 0) {
    c->working = false;
    srv_gen_unref(c->gen);
    c->gen = NULL;
    send_error(c, 503, 0);
  }
}

/* ---- reading ------------------------------------------------------------------- */

static void on_read(void *ctx, const char *p, size_t n) {
  ah_conn *c = ctx;
  if (c->st != AC_READING)
    return;
  size_t room = sizeof c->buf - c->len, take = n < room ? n : room;
  memcpy(c->buf + c->len, p, take);
  c->len += take;
  int rc = admin_parse(c->buf, c->len, c->h->tls != NULL, &c->req);
  if (rc == STP_EAGAIN && c->len == sizeof c->buf)
    rc = 413;
  if (rc == STP_EAGAIN)
    return;
  if (rc != 0)
    send_error(c, rc, 0);
  else
    request_ready(c);
}

static void on_error(void *ctx, const char *reason, bool tls_failure, bool tls_verify) {
  ah_conn *c = ctx;
  (void)tls_verify;
  if (tls_failure) {
    stp_kv kv[] = {{"client", c->client}, {"reason", reason}};
    stp_log_kv(STP_LOG_INFO, NULL, "admin-tls-failed", kv, 2);
  }
  conn_close(c);
}

static void on_quiet(void *ctx) {
  (void)ctx; /* TLS ready, write queue drained: nothing to do */
}

static const stream_cbs conn_cbs = {NULL, on_read, on_error, on_quiet, on_quiet, stream_closed};

static void on_connection(uv_stream_t *srv, int status) {
  admin_http *h = srv->data;
  if (status < 0 || h->set.stopping)
    return;
  ah_conn *c = stp_xcalloc(1, sizeof *c);
  c->h = h;
  unsigned n = connset_add(&h->set, &c->link);
  c->s = stream_new(h->loop, &conn_cbs, c);
  uv_timer_init(h->loop, &c->timer);
  c->timer.data = c;
  c->n_open = 2;
  c->st = AC_READING;
  if (uv_accept(srv, (uv_stream_t *)stream_tcp(c->s)) < 0 || n > ADMIN_HTTP_MAX_CONNS) {
    conn_close(c);
    return;
  }
  struct sockaddr_storage ss;
  int len = sizeof ss;
  snprintf(c->client, sizeof c->client, "?");
  if (uv_tcp_getpeername(stream_tcp(c->s), (struct sockaddr *)&ss, &len) == 0) {
    if (ss.ss_family == AF_INET)
      uv_ip4_name((struct sockaddr_in *)&ss, c->client, sizeof c->client);
    else if (ss.ss_family == AF_INET6)
      uv_ip6_name((struct sockaddr_in6 *)&ss, c->client, sizeof c->client);
  }
  uv_timer_start(&c->timer, timeout_cb, ADMIN_HTTP_TIMEOUT_MS, 0);
  stream_start(c->s);
  if (h->tls && stream_start_tls(c->s, h->tls, NULL, true) < 0)
    conn_close(c);
}

/* ---- what the router asks of the proxy --------------------------------------------- */

static bool op_spool(void *ctx, admin_spool_figs *f) {
  admin_http *h = ctx;
  if (!h->sp)
    return false;
  const stp_spool_cfg *cfg = spool_cfg(h->sp);
  uint64_t now = spool_wall_ms(), oldest = spool_oldest_ms(h->sp);
  f->messages = spool_count(h->sp);
  f->bytes = spool_bytes(h->sp);
  f->max_messages = cfg->max_messages;
  f->max_bytes = cfg->max_size;
  f->oldest_s = oldest && now > oldest ? (now - oldest) / 1000 : 0;
  f->recovered = spool_recovered(h->sp);
  return true;
}

static int by_created(const void *a, const void *b) {
  const spool_entry *x = *(spool_entry *const *)a, *y = *(spool_entry *const *)b;
  return x->env.created_ms < y->env.created_ms ? -1 : x->env.created_ms > y->env.created_ms;
}

static size_t op_queue(void *ctx, admin_qrow *rows, size_t cap) {
  admin_http *h = ctx;
  if (!h->sp)
    return 0;
  spool_entry **v;
  size_t n = spool_entries(h->sp, &v);
  spool_entry **sorted = stp_xcalloc(n ? n : 1, sizeof *sorted);
  if (n)
    memcpy(sorted, v, n * sizeof *v);
  qsort(sorted, n, sizeof *sorted, by_created);
  for (size_t i = 0; i < n && i < cap; i++) {
    const spool_entry *e = sorted[i];
    admin_qrow *q = &rows[i];
    snprintf(q->id, sizeof q->id, "%s", e->env.id);
    snprintf(q->route, sizeof q->route, "%s", e->env.route);
    snprintf(q->from, sizeof q->from, "%s", e->env.from);
    snprintf(q->last, sizeof q->last, "%s", e->st.last);
    q->created_ms = e->env.created_ms;
    q->next_ms = e->st.next_ms;
    q->size = e->env.size;
    q->attempts = e->st.attempts;
    q->n_rcpts = (unsigned)e->env.n_rcpts;
    q->held = (int)e->st.held;
    q->busy = e->busy;
  }
  free(sorted);
  return n;
}

/* The queue command's own code (spool_ctl_exec), so the page and the
 * command act and log alike. */
static int op_queue_act(void *ctx, queuectl_op op, const char *id, const char *by, char *msg,
                        size_t cap) {
  admin_http *h = ctx;
  if (!h->sp || !h->run) {
    snprintf(msg, cap, "no spool is configured");
    return -1;
  }
  queuectl_req q;
  memset(&q, 0, sizeof q);
  q.op = op;
  snprintf(q.id, sizeof q.id, "%s", id);
  spool_ctl_out out = {0};
  spool_ctl_exec(h->sp, h->run, &q, by, &out);
  int rc = -1;
  /* the answer's last line: "OK text" or "ERR text" */
  if (out.len) {
    out.data[out.len - 1] = '\0';
    char *last = strrchr(out.data, '\n');
    const char *text = "";
    queuectl_reply_kind k = queuectl_reply(last ? last + 1 : out.data, &text);
    rc = k == QC_REPLY_OK ? 0 : -1;
    snprintf(msg, cap, "%s", *text ? text : rc == 0 ? "done" : "failed");
  }
  free(out.data);
  return rc;
}

static void op_random(void *ctx, unsigned char *p, size_t n) {
  (void)ctx;
  if (RAND_bytes(p, n) != 1)
    abort(); /* no randomness: no session can be safe */
}

static const admin_ops ops = {op_spool, op_queue, op_queue_act, op_random};

static int64_t wall_clock_ms(void) {
  return (int64_t)spool_wall_ms();
}

/* ---- start and stop ---------------------------------------------------------------- */

static void srv_closed_cb(uv_handle_t *hd) {
  admin_http *h = hd->data;
  h->set.srv_open = false;
  maybe_free_server(h);
}

int admin_http_start(uv_loop_t *loop, srv_gen *gen, struct spool *sp, struct spool_run *run,
                     admin_http **out, char *err, size_t errlen) {
  const stp_admin_cfg *ac = gen->cfg->admin;
  *out = NULL;
  tls_ctx *tls = NULL;
  if (ac->certificate && !(tls = tls_ctx_server(ac->certificate, ac->private_key, STP_TLS1_2,
                                                gen->cfg->hostname, err, errlen)))
    return STP_EINVAL;
  admin_http *h = stp_xcalloc(1, sizeof *h);
  h->loop = loop;
  h->gen = srv_gen_ref(gen);
  h->tls = tls;
  h->sp = sp;
  h->run = run;
  history_init(&h->hist, ac->history, wall_clock_ms);
  admin_init(&h->core, gen->cfg, &h->hist, &ops, h, admin_assets, admin_assets_n,
             (int64_t)(spool_wall_ms() / 1000));
  uv_tcp_init(loop, &h->srv);
  h->srv.data = h;
  h->set.srv_open = true;
  char addr[80];
  int rc = netbind_listen(&h->srv, ac->listen, 64, on_connection, addr, sizeof addr, err, errlen);
  if (rc == 0 && stp_log_observe(history_observe, &h->hist) < 0) {
    snprintf(err, errlen, "no room for the delivery history's log observer");
    rc = STP_EINVAL;
  }
  if (rc < 0) {
    h->set.stopping = true;
    uv_close((uv_handle_t *)&h->srv, srv_closed_cb);
    return rc;
  }
  stp_kv kv[] = {{"addr", addr}, {"tls", tls ? "yes" : "no"}};
  stp_log_kv(STP_LOG_INFO, NULL, "admin-listening", kv, 2);
  *out = h;
  return 0;
}

void admin_http_set_gen(admin_http *h, srv_gen *gen) {
  if (!h || !gen->cfg->admin)
    return;
  srv_gen *old = h->gen;
  h->gen = srv_gen_ref(gen);
  admin_set_config(&h->core, gen->cfg);
  srv_gen_unref(old);
}

void admin_http_stop(admin_http *h) {
  if (!h || h->set.stopping)
    return;
  h->set.stopping = true;
  uv_close((uv_handle_t *)&h->srv, srv_closed_cb);
  for (connset_link *k = h->set.head; k; k = k->next)
    conn_close((ah_conn *)k);
}
