/* test_pool.c - pool.c from outside: real upstream connections (upconn.c,
 * the dialer, the upstream state machine) to a tiny SMTP server on the
 * same loop, handed to the pool and taken back. The server is a strict
 * stand-in (no real SMTP server can run on our loop): it greets, answers
 * EHLO, MAIL, RSET and QUIT, records every command per connection, and can
 * close a connection on its own. Covered: a connection given back is the
 * one taken next (one TCP connection for two uses); an open transaction is
 * reset before reuse and only a 250 makes it idle; the idle bound sends
 * the extra connection QUIT; an upstream that closes an idle connection
 * takes it out of the pool; the idle timeout and pool_close send QUIT.
 */
#include <string.h>

#include "../../proxy/net/pool.h"
#include "../../proxy/net/server.h"
#include "../../proxy/net/stream.h"
#include "net_test.h"
#include "smtp-tls-proxy/config.h"

/* ---- the SMTP stand-in ---- */

#define MAX_CONNS 8

typedef struct sconn {
  struct smtpd *d;
  stream *st;
  int id;
  char line[512];
  size_t len;
  char log[2048]; /* commands, one per line */
  bool closed;
} sconn;

typedef struct smtpd {
  uv_tcp_t srv;
  int port, n;
  sconn *c[MAX_CONNS];
} smtpd;

static void sd_cmd(sconn *c, const char *cmd) {
  size_t l = strlen(c->log);
  snprintf(c->log + l, sizeof c->log - l, "%.12s\n", cmd);
  const char *reply = "500 what\r\n";
  if (!strncmp(cmd, "EHLO", 4))
    reply = "250-stand-in\r\n250 PIPELINING\r\n";
  else if (!strncmp(cmd, "MAIL", 4) || !strncmp(cmd, "RSET", 4))
    reply = "250 ok\r\n";
  else if (!strncmp(cmd, "QUIT", 4))
    reply = "221 bye\r\n";
  stream_write(c->st, reply, strlen(reply));
  if (!strncmp(cmd, "QUIT", 4))
    stream_close_after_flush(c->st);
}

static void sd_read(void *ctx, const char *p, size_t n) {
  sconn *c = ctx;
  for (size_t i = 0; i < n; i++) {
    if (p[i] == '\n') {
      c->line[c->len && c->line[c->len - 1] == '\r' ? c->len - 1 : c->len] = '\0';
      c->len = 0;
      sd_cmd(c, c->line);
    } else if (c->len + 1 < sizeof c->line) {
      c->line[c->len++] = p[i];
    }
  }
}

static void sd_error(void *ctx, const char *r, bool t, bool v) {
  sconn *c = ctx;
  (void)r, (void)t, (void)v;
  stream_close(c->st);
}
static void sd_event(void *ctx) {
  (void)ctx;
}
static void sd_connect(void *ctx, const char *e) {
  (void)ctx, (void)e;
}
static void sd_closed(void *ctx) {
  ((sconn *)ctx)->closed = true;
}

static const stream_cbs sd_cbs = {sd_connect, sd_read, sd_error, sd_event, sd_event, sd_closed};

static void sd_accept(uv_stream_t *srv, int status) {
  smtpd *d = srv->data;
  ASSERT_EQ(status, 0);
  ASSERT(d->n < MAX_CONNS);
  sconn *c = calloc(1, sizeof *c);
  c->d = d;
  c->id = d->n;
  d->c[d->n++] = c;
  c->st = stream_new(net_loop(), &sd_cbs, c);
  ASSERT_EQ(uv_accept(srv, (uv_stream_t *)stream_tcp(c->st)), 0);
  stream_start(c->st);
  stream_write(c->st, "220 stand-in ESMTP\r\n", 20);
}

static void sd_stop(smtpd *d) {
  net_close((uv_handle_t *)&d->srv);
  for (int i = 0; i < d->n; i++)
    if (!d->c[i]->closed)
      stream_close(d->c[i]->st);
  for (int i = 0; i < d->n; i++) {
    bool *f = &d->c[i]->closed;
    ASSERT(net_run_until(f, 2000));
    free(d->c[i]);
  }
}

/* ---- the proxy side ---- */

typedef struct owner {
  bool ready, failed, replied;
  int code;
} owner;

static void o_ready(void *o, upconn *u) {
  NET_CB_ENTER();
  (void)u;
  ((owner *)o)->ready = true;
}
static void o_reply(void *o, const smtp_reply *r) {
  NET_CB_ENTER();
  ((owner *)o)->replied = true;
  ((owner *)o)->code = r->code;
}
static void o_failed(void *o, upstream_fail why, const char *detail, const provider_verdict *v) {
  NET_CB_ENTER();
  (void)why, (void)detail, (void)v;
  ((owner *)o)->failed = true;
}
static const upconn_owner_ops o_ops = {o_ready, o_reply, o_failed, NULL, NULL};

typedef struct env {
  smtpd d;
  srv_gen *gen;
  up_pool *pool;
} env;

static void env_start(env *e, const char *idle_timeout) {
  char yaml[1024], err[256];
  memset(e, 0, sizeof *e);
  e->d.port = net_listen(&e->d.srv, sd_accept, &e->d);
  snprintf(yaml, sizeof yaml,
           "hostname: proxy.test\n"
           "listeners: [{name: lan, listen: \"127.0.0.1:0\"}]\n"
           "routes: [{name: r, upstream: up}]\n"
           "upstreams:\n"
           "  - name: up\n"
           "    host: 127.0.0.1\n"
           "    port: %d\n"
           "    tls: none\n"
           "    insecure: true\n"
           "    pool_max_idle: 1\n"
           "    pool_idle_timeout: %s\n",
           e->d.port, idle_timeout);
  stp_config *cfg;
  stp_diag diag = {0};
  ASSERT_EQ(stp_config_load_string("pool.yaml", yaml, strlen(yaml), &cfg, &diag), 0);
  stp_diag_free(&diag);
  e->gen = srv_gen_new(cfg, err, sizeof err);
  ASSERT(e->gen);
  e->pool = pool_new(net_loop(), cfg);
}

static void env_close_pool(env *e) {
  CALL(pool_close(e->pool));
  net_run_for(100); /* QUITs go out, connections close */
}

static void env_end(env *e) {
  sd_stop(&e->d);
  srv_gen_unref(e->gen);
}

static void env_stop(env *e) {
  env_close_pool(e);
  env_end(e);
}

static upconn *open_ready(env *e, owner *o) {
  upconn *u;
  memset(o, 0, sizeof *o);
  CALL(u = upconn_open(net_loop(), e->gen, 0, &o_ops, o, "t"));
  ASSERT(net_run_until(&o->ready, 5000));
  return u;
}

static bool log_has(const env *e, int conn, const char *cmd) {
  return conn < e->d.n && strstr(e->d.c[conn]->log, cmd) != NULL;
}

static void run_until_idle(env *e, size_t n) {
  for (int i = 0; i < 400 && pool_idle_count(e->pool, 0) != n; i++)
    net_run_for(5);
  ASSERT_EQ(pool_idle_count(e->pool, 0), n);
}

void test_pool_give_take_reuses_connection(void) {
  env e;
  owner o1, o2;
  env_start(&e, "60s");
  upconn *u = open_ready(&e, &o1);
  CALL(pool_give(e.pool, u, 0));
  ASSERT_EQ(pool_idle_count(e.pool, 0), 1);
  memset(&o2, 0, sizeof o2);
  upconn *v;
  CALL(v = pool_take(e.pool, 0, &o_ops, &o2));
  ASSERT(v == u);
  ASSERT_EQ(pool_idle_count(e.pool, 0), 0);
  CALL(v = pool_take(e.pool, 0, &o_ops, &o2));
  ASSERT(v == NULL);
  ASSERT_EQ(e.d.n, 1); /* one TCP connection for both uses */
  CALL(pool_give(e.pool, u, 0));
  net_run_for(50);
  ASSERT(!log_has(&e, 0, "RSET")); /* nothing open: nothing to reset */
  ASSERT(!o1.failed && !o2.failed);
  env_close_pool(&e);
  ASSERT(log_has(&e, 0, "QUIT"));
  env_end(&e);
}

void test_pool_reset_before_reuse(void) {
  env e;
  owner o;
  env_start(&e, "60s");
  upconn *u = open_ready(&e, &o);
  smtp_mail_args a;
  memset(&a, 0, sizeof a);
  CALL(ASSERT_EQ(upconn_mail(u, "dev@example.com", &a), 0));
  ASSERT(net_run_until(&o.replied, 5000));
  ASSERT_EQ(o.code, 250);
  ASSERT(upconn_in_txn(u));
  CALL(pool_give(e.pool, u, 0));
  upconn *v;
  CALL(v = pool_take(e.pool, 0, &o_ops, &o));
  ASSERT(v == NULL); /* not before the RSET's 250 */
  for (int i = 0; i < 400 && !v; i++) {
    net_run_for(5);
    CALL(v = pool_take(e.pool, 0, &o_ops, &o));
  }
  ASSERT(v == u);
  ASSERT(log_has(&e, 0, "RSET"));
  ASSERT(!upconn_in_txn(v));
  CALL(upconn_detach(v, true));
  env_stop(&e);
}

void test_pool_bound_and_upstream_close(void) {
  env e;
  owner o1, o2;
  env_start(&e, "60s");
  upconn *u1 = open_ready(&e, &o1);
  upconn *u2 = open_ready(&e, &o2);
  ASSERT_EQ(e.d.n, 2);
  CALL(pool_give(e.pool, u1, 0));
  CALL(pool_give(e.pool, u2, 0)); /* over pool_max_idle: 1 */
  net_run_for(100);
  ASSERT_EQ(pool_idle_count(e.pool, 0), 1);
  ASSERT(log_has(&e, 1, "QUIT"));
  ASSERT(!log_has(&e, 0, "QUIT"));
  /* the upstream drops the idle one: it leaves the pool */
  CALL(stream_close(e.d.c[0]->st));
  run_until_idle(&e, 0);
  upconn *v;
  CALL(v = pool_take(e.pool, 0, &o_ops, &o1));
  ASSERT(v == NULL);
  env_stop(&e);
}

void test_pool_idle_timeout_and_close(void) {
  env e;
  owner o1, o2;
  env_start(&e, "1s");
  upconn *u1 = open_ready(&e, &o1);
  CALL(pool_give(e.pool, u1, 0));
  ASSERT_EQ(pool_idle_count(e.pool, 0), 1);
  for (int i = 0; i < 500 && !log_has(&e, 0, "QUIT"); i++)
    net_run_for(10); /* the sweep runs each second */
  ASSERT(log_has(&e, 0, "QUIT"));
  ASSERT_EQ(pool_idle_count(e.pool, 0), 0);
  upconn *u2 = open_ready(&e, &o2);
  CALL(pool_give(e.pool, u2, 0));
  ASSERT_EQ(pool_idle_count(e.pool, 0), 1);
  CALL(pool_close(e.pool));
  upconn *v;
  CALL(v = pool_take(e.pool, 0, &o_ops, &o1)); /* before the loop frees the pool */
  ASSERT(v == NULL);
  net_run_for(100);
  ASSERT(log_has(&e, 1, "QUIT"));
  sd_stop(&e.d);
  srv_gen_unref(e.gen);
}
