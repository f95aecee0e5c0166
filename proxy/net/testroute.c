/* testroute.c - `--test-route ROUTE --from A --to B`: one test message
 * through a route's upstreams, exactly as a device's message would go
 * (failover order, sender rewrite, TLS, AUTH), with the upstream dialogue
 * printed on stdout.
 *
 * Owns: the test message and the transcript. Guarantees: AUTH payloads are
 * printed as "<redacted>" (upconn marks them); exit status 0 only when the
 * upstream answered the final dot with 2xx.
 */
#include "testroute.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "defer.h"
#include "gen.h"
#include "smtp-tls-proxy/data.h"
#include "smtp-tls-proxy/failover.h"
#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/rewrite.h"
#include "smtp-tls-proxy/util.h"
#include "upconn.h"

typedef enum { TR_OPEN, TR_MAIL, TR_RCPT, TR_DATA, TR_DOT, TR_DONE } tr_step;

struct testroute {
  uv_loop_t *loop;
  srv_gen *gen;
  const stp_route_cfg *route;
  failover fo; /* the relay's walk along the route's upstreams */
  upconn *up;
  tr_step step;
  const char *from, *to;
  int result;            /* 0 delivered, 1 not */
  char partial[2][1024]; /* an unfinished trace line per direction */
  /* From a running proxy (testroute_start): the transcript goes to a
   * bounded buffer and done gets it from the loop; NULL: stdout. */
  testroute_done_fn done;
  void *done_ctx;
  stp_buf transcript;
  defer_item finished;
  bool async;
};

/* One transcript line: stdout for the command, the buffer for the page
 * (past its bound, the rest of the dialogue is left out). */
static void say(testroute *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(testroute *t, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (!t->async) {
    vprintf(fmt, ap);
  } else {
    char line[1200];
    vsnprintf(line, sizeof line, fmt, ap);
    if (stp_buf_space(&t->transcript) > strlen(line) + 32)
      stp_buf_append(&t->transcript, line, strlen(line));
  }
  va_end(ap);
}

static void deliver_cb(void *arg) {
  testroute *t = arg;
  stp_buf_append(&t->transcript, "", 1); /* room was kept for the NUL */
  if (t->done)
    t->done(t->done_ctx, t->result == 0, t->transcript.data);
  stp_buf_free(&t->transcript);
  srv_gen_unref(t->gen);
  free(t);
}

/* The test is over: the command's loop runs dry; the page hears it from
 * the loop. */
static void conclude(testroute *t, int result) {
  t->step = TR_DONE;
  t->result = result;
  if (t->async)
    defer_post(t->loop, &t->finished, deliver_cb, t);
}

/* Print traced bytes line by line with a direction prefix. */
static void trace_lines(testroute *t, bool out, const char *p, size_t n) {
  char *part = t->partial[out];
  for (size_t i = 0; i < n; i++) {
    size_t len = strlen(part);
    if (p[i] == '\n') {
      if (len && part[len - 1] == '\r')
        part[--len] = '\0';
      say(t, "%s %s\n", out ? "C:" : "S:", part);
      part[0] = '\0';
    } else if (len + 1 < sizeof t->partial[0]) {
      part[len] = p[i];
      part[len + 1] = '\0';
    }
  }
}

/* "AUTH PLAIN <b64>" -> "AUTH PLAIN <redacted>"; a bare continuation line
 * (LOGIN, XOAUTH2) -> "<redacted>". Nothing of a payload is printed. */
static void trace(void *owner, bool out, bool redact, const char *p, size_t n) {
  testroute *t = owner;
  if (!(out && redact)) {
    trace_lines(t, out, p, n);
    return;
  }
  bool is_auth = n > 5 && !strncmp(p, "AUTH ", 5);
  const char *mech_end = is_auth ? memchr(p + 5, ' ', n - 5) : NULL;
  if (is_auth && !mech_end)
    say(t, "C: %.*s\n", (int)strcspn(p, "\r\n"), p);
  else if (mech_end)
    say(t, "C: %.*s <redacted>\n", (int)(mech_end - p), p);
  else
    say(t, "C: <redacted>\n");
}

static void next_upstream(testroute *t);

static void finish(testroute *t, int result) {
  upconn *u = t->up;
  t->up = NULL;
  upconn_detach(u, true);
  conclude(t, result);
}

static void emit_body(void *ctx, const char *p, size_t n) {
  testroute *t = ctx;
  upconn_body(t->up, p, n);
}

static void send_message(testroute *t) {
  char msg[2048], date[64], host[128] = "localhost";
  time_t now = time(NULL);
  struct tm tm;
  gethostname(host, sizeof host - 1);
  strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", gmtime_r(&now, &tm));
  int n = snprintf(msg, sizeof msg,
                   "From: <%s>\r\nTo: <%s>\r\nSubject: smtp-tls-proxy test via route %s\r\n"
                   "Date: %s\r\nMessage-ID: <%ld.%d.test-route@%s>\r\nMIME-Version: 1.0\r\n"
                   "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
                   "This is a test message sent by smtp-tls-proxy --test-route.\r\n"
                   "Route: %s, upstream: %s\r\n",
                   t->from, t->to, t->route->name, date, (long)now, (int)getpid(), host,
                   t->route->name, upconn_cfg(t->up)->name);
  /* The route's header rewrite applies as it would to a device's message
   * (the text above has no line starting with '.', so it needs no
   * stuffing before the rewrite_ctx, which expects stuffed input). */
  rewrite_ctx rw;
  if (t->route->rewrite_header_from &&
      rewrite_init(&rw, t->route->rewrite_header_from, REWRITE_DEFAULT_MAX) == 0) {
    rewrite_feed(&rw, msg, (size_t)n, emit_body, t);
    rewrite_finish(&rw, emit_body, t);
    rewrite_free(&rw);
  } else {
    data_stuff_block(msg, (size_t)n, emit_body, t);
  }
  t->step = TR_DOT;
  upconn_end(t->up);
}

static void on_ready(void *owner, upconn *u) {
  testroute *t = owner;
  (void)u;
  const char *from = t->route->rewrite_mail_from ? t->route->rewrite_mail_from : t->from;
  t->step = TR_MAIL;
  upconn_mail(t->up, from, NULL);
}

/* A refusal the provider table knows: what it means and what to change. */
static void explain_refusal(testroute *t, const smtp_reply *r) {
  static const provider_phase phase[] = {
      [TR_MAIL] = PROV_MAIL, [TR_RCPT] = PROV_RCPT, [TR_DATA] = PROV_DATA, [TR_DOT] = PROV_DOT};
  if (r->code < 400 ||
      (t->step != TR_MAIL && t->step != TR_RCPT && t->step != TR_DATA && t->step != TR_DOT))
    return;
  provider_verdict v;
  provider_classify(&v, phase[t->step], r);
  if (v.rule)
    say(t, "== reason %s (%s): %s\n", v.rule->reason, v.rule->provider, v.rule->hint);
}

static void on_reply(void *owner, const smtp_reply *r) {
  testroute *t = owner;
  bool ok = r->code / 100 == 2;
  explain_refusal(t, r);
  switch (t->step) {
  case TR_MAIL:
    if (!ok)
      break;
    t->step = TR_RCPT;
    upconn_rcpt(t->up, t->to, NULL);
    return;
  case TR_RCPT:
    if (!ok)
      break;
    t->step = TR_DATA;
    upconn_data(t->up);
    return;
  case TR_DATA:
    if (r->code != 354)
      break;
    send_message(t);
    return;
  case TR_DOT:
    say(t, "== %s: the upstream %s the message\n", ok ? "OK" : "FAILED",
        ok ? "accepted" : "refused");
    finish(t, ok ? 0 : 1);
    return;
  default:
    return;
  }
  say(t, "== FAILED: the upstream refused the transaction (%d)\n", r->code);
  finish(t, 1);
}

/* As the relay does: a failure before the connection was ready starts
 * the upstream's back-off (reported, since a running proxy would now skip
 * it) and moves on along the route. */
static void on_failed(void *owner, upstream_fail why, const char *detail,
                      const provider_verdict *v) {
  testroute *t = owner;
  const stp_upstream_cfg *c = &t->gen->cfg->upstreams[failover_current(&t->fo)];
  t->up = NULL;
  say(t, "== upstream %s failed (%s): %s\n", c->name, upstream_fail_name(why), detail);
  if (v->rule)
    say(t, "== reason %s (%s): %s\n", v->rule->reason, v->rule->provider, v->rule->hint);
  uint64_t skip_ms;
  bool more = failover_failed(&t->fo, t->gen->limits.upstream, upstream_fail_name(why),
                              t->step == TR_OPEN, true, stp_now_ms(), &skip_ms);
  if (skip_ms)
    say(t, "== upstream %s: back-off %llu s (a running proxy skips it meanwhile)\n", c->name,
        (unsigned long long)(skip_ms / 1000));
  if (more) {
    next_upstream(t);
    return;
  }
  say(t, "== FAILED: no upstream of route %s left to try (passed over: %s)\n", t->route->name,
      t->fo.skipped);
  conclude(t, 1);
}

static const upconn_owner_ops tr_ops = {on_ready, on_reply, on_failed, NULL, trace};

static void next_upstream(testroute *t) {
  long pick = failover_pick(&t->fo, t->gen->limits.upstream, stp_now_ms());
  if (pick < 0) {
    say(t, "== FAILED: every remaining upstream of route %s is backing off (%s)\n", t->route->name,
        t->fo.skipped);
    conclude(t, 1);
    return;
  }
  const stp_upstream_cfg *c = &t->gen->cfg->upstreams[pick];
  say(t, "== route %s: trying upstream %s (%s:%u, tls %s)\n", t->route->name, c->name, c->host,
      c->port,
      c->tls == STP_TLS_IMPLICIT   ? "implicit"
      : c->tls == STP_TLS_STARTTLS ? "starttls"
                                   : "none");
  t->step = TR_OPEN;
  t->up = upconn_open(t->loop, t->gen, (size_t)pick, &tr_ops, t, "test-route");
}

int testroute_run(stp_config *cfg, const char *route, const char *from, const char *to) {
  const stp_route_cfg *rt = NULL;
  size_t route_index = 0;
  for (size_t i = 0; i < cfg->n_routes; i++)
    if (!strcmp(cfg->routes[i].name, route)) {
      rt = &cfg->routes[i];
      route_index = i;
    }
  if (!rt || !from || !to) {
    fprintf(stderr, "smtp-tls-proxy: %s\n",
            !rt ? "no such route" : "--test-route needs --from and --to");
    stp_config_free(cfg);
    return 1;
  }
  char err[512];
  srv_gen *gen = srv_gen_new(cfg, err, sizeof err);
  if (!gen) {
    fprintf(stderr, "smtp-tls-proxy: %s\n", err);
    return 1;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  testroute t = {
      .loop = uv_default_loop(), .gen = gen, .route = rt, .from = from, .to = to, .result = 1};
  failover_begin(&t.fo, gen->cfg, route_index);
  next_upstream(&t);
  uv_run(t.loop, UV_RUN_DEFAULT);
  defer_shutdown();
  uv_run(t.loop, UV_RUN_DEFAULT); /* runs the close callback */
  srv_gen_unref(gen);
  uv_loop_close(t.loop);
  return t.result;
}

testroute *testroute_start(uv_loop_t *loop, srv_gen *gen, const char *route, const char *from,
                           const char *to, testroute_done_fn done, void *ctx) {
  long idx = -1;
  for (size_t i = 0; i < gen->cfg->n_routes; i++)
    if (!strcmp(gen->cfg->routes[i].name, route))
      idx = (long)i;
  if (idx < 0)
    return NULL;
  testroute *t = stp_xcalloc(1, sizeof *t + 2 * TESTROUTE_FIELD_MAX + 2);
  char *fbuf = (char *)(t + 1);
  snprintf(fbuf, TESTROUTE_FIELD_MAX + 1, "%s", from);
  snprintf(fbuf + TESTROUTE_FIELD_MAX + 1, TESTROUTE_FIELD_MAX + 1, "%s", to);
  t->loop = loop;
  t->gen = srv_gen_ref(gen);
  t->route = &gen->cfg->routes[idx];
  t->from = fbuf;
  t->to = fbuf + TESTROUTE_FIELD_MAX + 1;
  t->result = 1;
  t->async = true;
  t->done = done;
  t->done_ctx = ctx;
  stp_buf_init(&t->transcript, TESTROUTE_TRANSCRIPT_MAX);
  failover_begin(&t->fo, gen->cfg, (size_t)idx);
  next_upstream(t);
  return t;
}

void testroute_cancel(testroute *t) {
  if (t)
    t->done = NULL; /* it runs to its end and frees itself, telling nobody */
}
