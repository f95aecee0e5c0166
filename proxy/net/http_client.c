/* http_client.c - HTTP/1.1 requests over the dialer and stream.c (see
 * http_client.h).
 *
 * A call owns its timer and, while it runs, one connection (hconn); the
 * connection owns its stream and is what the stream reports to, so an idle
 * connection parked in the client needs no call. A call frees itself in
 * its timer's close callback, a connection in its stream's: never inside a
 * handler that might still touch them. One timer per call serves both
 * limits: armed for the nearer of the deadline and the stall limit, and
 * re-armed when it fires early because bytes moved meanwhile.
 */
#include "http_client.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "defer.h"
#include "dialer.h"
#include "smtp-tls-proxy/util.h"
#include "stream.h"

#define HEAD_MAX (16 * 1024) /* the request line and headers we send */
#define PUMP_MAX (64 * 1024) /* one read from a body source */

typedef struct hconn hconn;

struct http_client {
  uv_loop_t *loop;
  hconn *idle; /* parked connections, at most one per origin */
  size_t n_idle;
  unsigned n_calls; /* calls started on this client and not released */
  uint64_t idle_ms;
  uv_timer_t sweep;
  bool closing;
};

struct hconn {
  http_client *cl; /* set while parked */
  hconn *prev, *next;
  stream *st; /* NULL until the dial succeeded */
  http_call *call;
  char origin[300];
  tls_ctx *tls;
  uint64_t idle_since;
};

struct http_call {
  uv_loop_t *loop;
  http_client *cl;
  http_done_fn done;
  void *arg;
  stp_url url;
  char origin[300];
  bool idempotent, keep_alive, head;
  tls_ctx *tls;
  stp_buf out; /* the head, and a body from memory */
  http_body_fn body_fn;
  void *body_arg;
  uint64_t body_size, body_sent;
  bool body_started, body_waiting;
  dialer *dial;
  hconn *conn;
  bool reused, got_bytes, extra_bytes;
  http1_response resp;
  size_t body_keep; /* http1_response_skip's, again for a new connection */
  uint64_t skip_max;
  void (*tap)(void *arg, const char *p, size_t n);
  void *tap_arg;
  size_t max;
  uint64_t deadline, stall_ms, last_progress;
  uv_timer_t timer;
  defer_item ev;      /* an early failure, or the send on a parked connection */
  defer_item pump_ev; /* http_call_resume */
  http_fail early_why;
  char early[160];
  bool finished;
  bool connect_only; /* http_preconnect: park the connection, send nothing */
};

static char g_pump[PUMP_MAX];

static void call_fail(http_call *call, http_fail why, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- connections ------------------------------------------------------- */

static void idle_unlink(hconn *k) {
  http_client *cl = k->cl;
  if (!cl)
    return;
  if (k->prev)
    k->prev->next = k->next;
  else
    cl->idle = k->next;
  if (k->next)
    k->next->prev = k->prev;
  k->prev = k->next = NULL;
  k->cl = NULL;
  cl->n_idle--;
}

static void conn_close(hconn *k) {
  idle_unlink(k);
  k->call = NULL;
  if (k->st)
    stream_close(k->st); /* k is freed in st_closed */
  else
    free(k);
}

static void call_read(http_call *call, const char *p, size_t n);
static void call_error(http_call *call, const char *reason, bool tls, bool verify);
static void call_send(http_call *call);
static void call_pump(http_call *call);

static void st_connect(void *ctx, const char *error) {
  (void)ctx, (void)error; /* connected by the dialer */
}
static void st_read(void *ctx, const char *p, size_t n) {
  hconn *k = ctx;
  if (k->call)
    call_read(k->call, p, n);
  else
    conn_close(k); /* nothing may arrive on an idle connection */
}
static void st_error(void *ctx, const char *reason, bool tls, bool verify) {
  hconn *k = ctx;
  if (k->call)
    call_error(k->call, reason, tls, verify);
  else
    conn_close(k);
}
static void st_tls(void *ctx) {
  hconn *k = ctx;
  if (k->call)
    call_send(k->call);
}
static void st_drain(void *ctx) {
  hconn *k = ctx;
  if (k->call)
    call_pump(k->call);
}
static void st_closed(void *ctx) {
  hconn *k = ctx;
  idle_unlink(k);
  free(k);
}

static const stream_cbs conn_cbs = {st_connect, st_read, st_error, st_tls, st_drain, st_closed};

/* ---- the client's idle connections ------------------------------------- */

static void sweep_cb(uv_timer_t *t) {
  http_client *cl = t->data;
  uint64_t now = uv_now(cl->loop), next = 0;
  for (hconn *k = cl->idle, *nx; k; k = nx) {
    nx = k->next;
    uint64_t end = k->idle_since + cl->idle_ms;
    if (end <= now)
      conn_close(k);
    else if (!next || end < next)
      next = end;
  }
  if (next)
    uv_timer_start(&cl->sweep, sweep_cb, next - now, 0);
}

static hconn *idle_take(http_client *cl, const char *origin, tls_ctx *tls) {
  for (hconn *k = cl->idle; k; k = k->next) {
    if (k->tls == tls && !strcmp(k->origin, origin)) {
      idle_unlink(k);
      return k;
    }
  }
  return NULL;
}

/* After a complete exchange: keep the connection when everything allows. */
static void park_or_close(http_call *call, hconn *k) {
  http_client *cl = call->cl;
  bool ok = cl && !cl->closing && call->keep_alive && call->resp.keep_alive && !call->extra_bytes &&
            call->body_sent == call->body_size;
  for (hconn *o = ok ? cl->idle : NULL; o; o = o->next)
    if (o->tls == k->tls && !strcmp(o->origin, k->origin))
      ok = false; /* one per origin */
  if (!ok) {
    conn_close(k);
    return;
  }
  k->call = NULL;
  k->cl = cl;
  k->prev = NULL;
  k->next = cl->idle;
  if (cl->idle)
    cl->idle->prev = k;
  cl->idle = k;
  cl->n_idle++;
  k->idle_since = uv_now(cl->loop);
  if (!uv_is_active((uv_handle_t *)&cl->sweep))
    uv_timer_start(&cl->sweep, sweep_cb, cl->idle_ms, 0);
}

static void client_closed_cb(uv_handle_t *h) {
  free(h->data);
}

static void client_maybe_free(http_client *cl) {
  if (cl->closing && cl->n_calls == 0 && !uv_is_closing((uv_handle_t *)&cl->sweep))
    uv_close((uv_handle_t *)&cl->sweep, client_closed_cb);
}

http_client *http_client_new(uv_loop_t *loop) {
  http_client *cl = stp_xcalloc(1, sizeof *cl);
  cl->loop = loop;
  cl->idle_ms = HTTP_IDLE_MS;
  uv_timer_init(loop, &cl->sweep);
  cl->sweep.data = cl;
  return cl;
}

void http_client_set_idle_ms(http_client *c, uint64_t ms) {
  c->idle_ms = ms ? ms : HTTP_IDLE_MS;
}

void http_client_free(http_client *c) {
  if (!c || c->closing)
    return;
  c->closing = true;
  while (c->idle)
    conn_close(c->idle);
  uv_timer_stop(&c->sweep);
  client_maybe_free(c);
}

size_t http_client_idle_count(const http_client *c) {
  return c ? c->n_idle : 0;
}

/* ---- the end of a call ------------------------------------------------- */

static void call_closed_cb(uv_handle_t *h) {
  http_call *call = h->data;
  http_client *cl = call->cl;
  stp_cleanse(call->out.data, call->out.cap);
  stp_buf_free(&call->out);
  http1_response_free(&call->resp);
  free(call);
  if (cl) {
    cl->n_calls--;
    client_maybe_free(cl);
  }
}

/* Stop everything the call started; the memory goes in the timer's close
 * callback. The connection, if still held, is closed. */
static void call_release(http_call *call) {
  call->finished = true;
  defer_cancel(&call->ev);
  defer_cancel(&call->pump_ev);
  dialer_cancel(call->dial);
  call->dial = NULL;
  if (call->conn)
    conn_close(call->conn);
  call->conn = NULL;
  uv_close((uv_handle_t *)&call->timer, call_closed_cb);
}

static void call_fail(http_call *call, http_fail why, const char *fmt, ...) {
  char err[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, sizeof err, fmt, ap);
  va_end(ap);
  call->finished = true;
  if (call->conn)
    conn_close(call->conn);
  call->conn = NULL;
  call->done(call->arg, NULL, why, err);
  call_release(call);
}

static void call_complete(http_call *call) {
  call->finished = true;
  hconn *k = call->conn;
  call->conn = NULL;
  park_or_close(call, k); /* first, so that `done` may reuse it at once */
  call->done(call->arg, &call->resp, HTTP_OK, NULL);
  call_release(call);
}

/* http_preconnect: the connection is up (TLS verified); it is parked for
 * the next call to its origin, unless one is parked already. */
static void call_connected(http_call *call) {
  call->finished = true;
  hconn *k = call->conn;
  call->conn = NULL;
  http_client *cl = call->cl;
  bool ok = cl && !cl->closing;
  for (hconn *o = ok ? cl->idle : NULL; o; o = o->next)
    if (o->tls == k->tls && !strcmp(o->origin, k->origin))
      ok = false;
  if (ok) {
    call->resp.keep_alive = true; /* nothing was exchanged that could forbid reuse */
    call->keep_alive = true;
    park_or_close(call, k);
  } else {
    conn_close(k);
  }
  call->done(call->arg, NULL, HTTP_OK, NULL);
  call_release(call);
}

void http_call_cancel(http_call *call) {
  if (call && !call->finished)
    call_release(call);
}

/* ---- timing ------------------------------------------------------------ */

static void timer_cb(uv_timer_t *t);

static void arm(http_call *call) {
  uint64_t now = uv_now(call->loop), at = call->deadline;
  if (call->stall_ms && call->last_progress + call->stall_ms < at)
    at = call->last_progress + call->stall_ms;
  uv_timer_start(&call->timer, timer_cb, at > now ? at - now : 0, 0);
}

static void timer_cb(uv_timer_t *t) {
  http_call *call = t->data;
  uint64_t now = uv_now(call->loop);
  if (now >= call->deadline)
    call_fail(call, HTTP_FAIL_TIMEOUT, "%s did not answer in time", call->url.host);
  else if (call->stall_ms && now - call->last_progress >= call->stall_ms)
    call_fail(call, HTTP_FAIL_TIMEOUT, "%s stalled: nothing moved for %llu ms", call->url.host,
              (unsigned long long)call->stall_ms);
  else
    arm(call); /* bytes moved since it was armed */
}

static void progress(http_call *call) {
  call->last_progress = uv_now(call->loop);
}

/* ---- sending ----------------------------------------------------------- */

/* Feed the body source while the write queue has room. */
static void call_pump(http_call *call) {
  stream *st = call->conn ? call->conn->st : NULL;
  while (!call->finished && st && call->body_sent < call->body_size &&
         stream_queued(st) < STREAM_HIGH_WATER) {
    uint64_t left = call->body_size - call->body_sent;
    size_t cap = left < PUMP_MAX ? (size_t)left : PUMP_MAX;
    call->body_started = true;
    long n = call->body_fn(call->body_arg, g_pump, cap);
    if (call->finished)
      return; /* cancelled from inside the source */
    if (n == 0) {
      call->body_waiting = true;
      return;
    }
    if (n < 0 || (size_t)n > cap) {
      call_fail(call, HTTP_FAIL_BODY, "request body for %s: %s", call->url.host,
                n < 0 ? "the source failed" : "the source gave more than asked");
      return;
    }
    stream_write(st, g_pump, (size_t)n); /* a failure arrives as st_error */
    stp_cleanse(g_pump, (size_t)n);
    call->body_sent += (uint64_t)n;
    progress(call);
  }
}

static void pump_ev_cb(void *arg) {
  call_pump(arg);
}

void http_call_resume(http_call *call) {
  if (!call || call->finished || !call->body_waiting)
    return;
  call->body_waiting = false;
  defer_post(call->loop, &call->pump_ev, pump_ev_cb, call);
}

static void call_connected(http_call *call);

/* The connection is ready (connected, TLS done, or parked and taken). */
static void call_send(http_call *call) {
  if (call->finished || !call->conn)
    return;
  if (call->connect_only) {
    call_connected(call);
    return;
  }
  progress(call);
  stream_write(call->conn->st, call->out.data, call->out.len);
  if (call->body_fn)
    call_pump(call);
}

/* ---- receiving --------------------------------------------------------- */

static void bad_response(http_call *call, int rc) {
  if (rc == STP_ETOOLONG)
    call_fail(call, HTTP_FAIL_TOO_BIG, "bad HTTP response from %s: larger than %zu KiB",
              call->url.host, call->max / 1024);
  else
    call_fail(call, HTTP_FAIL_PROTOCOL, "bad HTTP response from %s: malformed or cut short",
              call->url.host);
}

static void call_read(http_call *call, const char *p, size_t n) {
  size_t used;
  call->got_bytes = true;
  progress(call);
  int rc = http1_response_feed(&call->resp, p, n, &used);
  if (rc < 0) {
    bad_response(call, rc);
  } else if (rc == 1) {
    call->extra_bytes = used < n;
    call_complete(call);
  }
}

static void start_dial(http_call *call);

static bool replayable(const http_call *call) {
  return call->idempotent && !call->body_started;
}

static void call_error(http_call *call, const char *reason, bool tls, bool verify) {
  if (tls && !call->got_bytes) {
    call_fail(call, HTTP_FAIL_TLS, "TLS with %s: %s%s", call->url.host, reason,
              verify ? " (certificate not trusted or wrong name)" : "");
  } else if (call->got_bytes) {
    int rc = http1_response_eof(&call->resp); /* a close-delimited body ends here */
    if (rc == 1)
      call_complete(call);
    else
      bad_response(call, rc);
  } else if (call->reused && replayable(call)) {
    /* The server closed the parked connection as we sent: once more on a
     * new one. */
    conn_close(call->conn);
    call->conn = NULL;
    call->reused = false;
    start_dial(call);
  } else {
    call_fail(call, HTTP_FAIL_CLOSED, "%s closed the connection without an answer: %s",
              call->url.host, reason);
  }
}

/* ---- connecting -------------------------------------------------------- */

static void dial_cb(void *arg, stream *st, dial_result why, const char *reason) {
  http_call *call = arg;
  call->dial = NULL;
  if (!st) {
    conn_close(call->conn);
    call->conn = NULL;
    if (why == DIAL_DNS)
      call_fail(call, HTTP_FAIL_DNS, "resolve %s: %s", call->url.host, reason);
    else
      call_fail(call, HTTP_FAIL_CONNECT, "connect %s:%u: %s", call->url.host, call->url.port,
                reason);
    return;
  }
  call->conn->st = st;
  /* A request is a head and a body in separate writes, and the answer waits
   * for both: Nagle would hold the second for the peer's delayed ACK. */
  uv_tcp_nodelay(stream_tcp(st), 1);
  stream_start(st);
  if (call->url.https)
    stream_start_tls(st, call->tls, call->url.host, false); /* a failure: st_error */
  else
    call_send(call);
}

static void start_dial(http_call *call) {
  hconn *k = stp_xcalloc(1, sizeof *k);
  snprintf(k->origin, sizeof k->origin, "%s", call->origin);
  k->tls = call->tls;
  k->call = call;
  call->conn = k;
  call->got_bytes = call->extra_bytes = false;
  http1_response_free(&call->resp);
  http1_response_init(&call->resp, call->max, call->head);
  if (call->skip_max)
    http1_response_skip(&call->resp, call->body_keep, call->skip_max, call->tap, call->tap_arg);
  call->dial =
      dialer_start(call->loop, call->url.host, call->url.port, NULL, &conn_cbs, k, dial_cb, call);
}

static void ev_cb(void *arg) {
  http_call *call = arg;
  if (call->early[0])
    call_fail(call, call->early_why, "%s", call->early);
  else
    call_send(call); /* on a parked connection */
}

/* ---- starting ---------------------------------------------------------- */

static http_call *http_request_prepared(uv_loop_t *loop, http_client *cl, const http_req *req,
                                        http_done_fn done, void *arg, bool connect_only);

static bool is_idempotent(const char *m) {
  static const char *const ok[] = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS"};
  for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
    if (!strcmp(m, ok[i]))
      return true;
  return false;
}

/* Everything that can be judged before any I/O: "" or why not. */
static const char *prepare(http_call *call, const http_req *req) {
  if (stp_url_parse(req->url, &call->url) < 0)
    return "bad URL";
  if (call->url.https && !req->tls)
    return "https needs a TLS context";
  if (req->body && req->body_fn)
    return "a body from memory and from a source at once";
  bool has_body = req->body || req->body_fn;
  uint64_t len = req->body_fn ? req->body_size : req->body_len;
  bool wants_len = has_body || !strcmp(req->method, "POST") || !strcmp(req->method, "PUT");
  stp_buf_init(&call->out, HEAD_MAX + (req->body ? req->body_len : 0));
  int rc = http1_write_request(&call->out, req->method, &call->url, req->headers, req->n_headers,
                               wants_len ? (int64_t)len : -1, call->keep_alive);
  if (rc < 0)
    return rc == STP_EINVAL ? "bad method or header" : "request head too large";
  if (req->body)
    stp_buf_append(&call->out, req->body, req->body_len);
  return "";
}

static http_call *call_new(uv_loop_t *loop, http_client *cl, const http_req *req, http_done_fn done,
                           void *arg) {
  http_call *call = stp_xcalloc(1, sizeof *call);
  call->loop = loop;
  call->cl = cl;
  call->done = done;
  call->arg = arg;
  call->tls = req->tls;
  call->keep_alive = cl && req->keep_alive;
  call->idempotent = is_idempotent(req->method);
  call->body_fn = req->body_fn;
  call->body_arg = req->body_arg;
  call->body_size = req->body_fn ? req->body_size : 0;
  call->max = req->response_max ? req->response_max : HTTP1_RESPONSE_MAX;
  call->stall_ms = req->stall_ms;
  call->head = !strcmp(req->method, "HEAD");
  http1_response_init(&call->resp, call->max, call->head);
  call->body_keep = req->body_keep;
  call->skip_max = req->skip_max;
  call->tap = req->tap;
  call->tap_arg = req->tap_arg;
  if (call->skip_max)
    http1_response_skip(&call->resp, call->body_keep, call->skip_max, call->tap, call->tap_arg);
  uv_timer_init(loop, &call->timer);
  call->timer.data = call;
  progress(call);
  call->deadline =
      call->last_progress + (req->timeout_ms ? req->timeout_ms : HTTP_DEFAULT_TIMEOUT_MS);
  arm(call);
  if (cl)
    cl->n_calls++;
  return call;
}

http_call *http_preconnect(uv_loop_t *loop, http_client *cl, const char *url, tls_ctx *tls,
                           uint64_t timeout_ms, http_done_fn done, void *arg) {
  http_req req = {
      .method = "GET", .url = url, .tls = tls, .timeout_ms = timeout_ms, .keep_alive = true};
  http_call *call = http_request_prepared(loop, cl, &req, done, arg, true);
  return call;
}

http_call *http_request(uv_loop_t *loop, http_client *cl, const http_req *req, http_done_fn done,
                        void *arg) {
  return http_request_prepared(loop, cl, req, done, arg, false);
}

static http_call *http_request_prepared(uv_loop_t *loop, http_client *cl, const http_req *req,
                                        http_done_fn done, void *arg, bool connect_only) {
  if (cl && cl->closing)
    cl = NULL;
  http_call *call = call_new(loop, cl, req, done, arg);
  call->connect_only = connect_only;
  const char *bad = prepare(call, req);
  if (bad[0]) {
    call->early_why = HTTP_FAIL_REQUEST;
    snprintf(call->early, sizeof call->early, "request not sent: %s", bad);
    defer_post(loop, &call->ev, ev_cb, call);
    return call;
  }
  snprintf(call->origin, sizeof call->origin, "%s://%s:%u", call->url.https ? "https" : "http",
           call->url.host, call->url.port);
  hconn *k = call->keep_alive ? idle_take(cl, call->origin, call->tls) : NULL;
  if (k) {
    k->call = call;
    call->conn = k;
    call->reused = true;
    defer_post(loop, &call->ev, ev_cb, call); /* never send from inside the caller */
  } else {
    start_dial(call);
  }
  return call;
}
