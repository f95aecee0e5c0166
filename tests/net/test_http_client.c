/* test_http_client.c - http_client.c against the in-process HTTP/1.1
 * server (httpd.h) on the same loop: Content-Length and chunked answers, an
 * answer over the bound, request bodies streamed from a callback (with
 * pauses, with the server not reading, and a source that fails), TLS
 * verified against the test CA and refused for a wrong name, keep-alive
 * reuse, a parked connection found closed (retried only when idempotent),
 * a close-delimited answer, failures known at once, refused connections,
 * DNS, the total and the stall timeouts, and cancel. Every `done` must
 * come from the loop, exactly once.
 */
#include <string.h>

#include "../../proxy/net/http_client.h"
#include "../../proxy/net/stream.h"
#include "httpd.h"
#include "net_test.h"
#include "smtp-tls-proxy/config.h"

typedef struct res {
  bool done;
  int calls;
  int status;
  http_fail why;
  char err[400];
  char body[256];
  size_t body_len;
  bool keep_alive;
  /* what to do from inside `done` */
  http_client *then_cl;
  http_req *then_req;
  const char *then_url;
  struct res *then_res;
} res;

static http_call *get(res *x, http_client *cl, const char *url, http_req *base);

static void done_cb(void *arg, const http1_response *r, http_fail why, const char *err) {
  NET_CB_ENTER();
  res *x = arg;
  x->calls++;
  x->done = true;
  x->why = why;
  snprintf(x->err, sizeof x->err, "%s", err ? err : "");
  if (r) {
    x->status = r->status;
    x->body_len = r->body_len;
    x->keep_alive = r->keep_alive;
    snprintf(x->body, sizeof x->body, "%s", r->body);
  }
  if (x->then_url) /* a new request from inside the callback is allowed */
    get(x->then_res, x->then_cl, x->then_url, x->then_req);
}

static http_call *get(res *x, http_client *cl, const char *url, http_req *base) {
  http_req req = {.method = "GET", .url = url, .keep_alive = true};
  if (base)
    req = *base;
  req.url = url;
  http_call *c;
  memset(x, 0, sizeof *x);
  CALL(c = http_request(net_loop(), cl, &req, done_cb, x));
  ASSERT(!x->done); /* never from inside http_request */
  return c;
}

static char *url(const httpd *h, const char *scheme, const char *host, const char *path) {
  static char buf[4][200];
  static int i;
  i = (i + 1) % 4;
  snprintf(buf[i], sizeof buf[i], "%s://%s:%d%s", scheme, host, h->port, path);
  return buf[i];
}

static void finish(httpd *h, res *x) {
  ASSERT(net_run_until(&x->done, 10000));
  net_run_for(10);
  ASSERT_EQ(x->calls, 1);
  (void)h;
}

/* ---- handlers ---- */

static void h_json(httpd *h, hd_conn *c, const hd_request *r) {
  (void)h;
  char body[300];
  int n = snprintf(body, sizeof body, "{\"m\":\"%s\",\"t\":\"%s\",\"len\":%llu}", r->method,
                   r->target, (unsigned long long)r->body_len);
  hd_sendf(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
           n, body);
}

static void h_chunked(httpd *h, hd_conn *c, const hd_request *r) {
  (void)h, (void)r;
  hd_sendf(c, "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n");
  hd_sendf(c, "1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: 1\r\n\r\n");
}

static void h_big(httpd *h, hd_conn *c, const hd_request *r) {
  (void)h, (void)r;
  static char body[70000];
  memset(body, 'b', sizeof body);
  hd_sendf(c, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", sizeof body);
  hd_send(c, body, sizeof body);
}

static void h_silent(httpd *h, hd_conn *c, const hd_request *r) {
  (void)h, (void)c, (void)r;
}

/* ---- plain answers ---- */

void test_http_content_length(void) {
  httpd h;
  res x;
  httpd_start(&h, NULL, h_json);
  http_req post = {.method = "POST", .body = "a=1&b=2", .body_len = 7};
  get(&x, NULL, url(&h, "http", "127.0.0.1", "/token?x=1"), &post);
  finish(&h, &x);
  ASSERT_EQ(x.why, HTTP_OK);
  ASSERT_EQ(x.status, 200);
  ASSERT_EQ(strcmp(x.body, "{\"m\":\"POST\",\"t\":\"/token?x=1\",\"len\":7}"), 0);
  ASSERT_EQ(strcmp(h.last.body_start, "a=1&b=2"), 0);
  ASSERT_CONTAINS(h.last.head, "\r\nContent-Length: 7\r\n");
  ASSERT_CONTAINS(h.last.head, "\r\nConnection: close\r\n"); /* no client: no keep-alive */
  ASSERT_CONTAINS(h.last.head, "\r\nHost: 127.0.0.1:");
  httpd_stop(&h);
}

void test_http_chunked(void) {
  httpd h;
  res x;
  httpd_start(&h, NULL, h_chunked);
  get(&x, NULL, url(&h, "http", "localhost", "/"), NULL);
  finish(&h, &x);
  ASSERT_EQ(x.why, HTTP_OK);
  ASSERT_EQ(x.status, 201);
  ASSERT_EQ(strcmp(x.body, "hello world"), 0);
  ASSERT_EQ(x.body_len, 11);
  httpd_stop(&h);
}

void test_http_response_over_bound_refused(void) {
  httpd h;
  res x;
  httpd_start(&h, NULL, h_big);
  get(&x, NULL, url(&h, "http", "127.0.0.1", "/"), NULL);
  finish(&h, &x);
  ASSERT_EQ(x.why, HTTP_FAIL_TOO_BIG);
  ASSERT_CONTAINS(x.err, "larger than 64 KiB");
  http_req big = {.method = "GET", .response_max = 80000};
  get(&x, NULL, url(&h, "http", "127.0.0.1", "/"), &big);
  finish(&h, &x);
  ASSERT_EQ(x.why, HTTP_OK);
  ASSERT_EQ(x.body_len, 70000);
  httpd_stop(&h);
}

/* ---- streamed bodies ---- */

typedef struct src {
  uint64_t size, given, asked_max;
  uint64_t hash;
  int calls, zeros, fail_at;
  http_call *call;
  uv_timer_t t;
  bool timer_open, paused_resume;
} src;

static void fnv(uint64_t *h, const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    *h ^= (unsigned char)p[i];
    *h *= 1099511628211ull;
  }
}

static void resume_cb(uv_timer_t *t) {
  src *s = t->data;
  CALL(http_call_resume(s->call));
}

/* Deterministic bytes; every 7th call has nothing yet and resumes 2 ms
 * later from a timer, as a source reading a file in the thread pool would. */
static long body_fn(void *arg, char *buf, size_t cap) {
  NET_CB_ENTER();
  src *s = arg;
  s->calls++;
  ASSERT(cap > 0 && cap <= s->size - s->given); /* never more than declared */
  if (s->fail_at && s->calls == s->fail_at)
    return -1;
  if (s->paused_resume && s->calls % 7 == 0 && !uv_is_active((uv_handle_t *)&s->t)) {
    s->zeros++;
    uv_timer_start(&s->t, resume_cb, 2, 0);
    return 0;
  }
  size_t n = cap > 50000 ? 50000 : cap; /* less than asked is fine */
  for (size_t i = 0; i < n; i++)
    buf[i] = (char)('A' + (s->given + i) % 53);
  fnv(&s->hash, buf, n);
  s->given += n;
  return (long)n;
}

static void src_init(src *s, uint64_t size) {
  memset(s, 0, sizeof *s);
  s->size = size;
  s->hash = 14695981039346656037ull;
  uv_timer_init(net_loop(), &s->t);
  s->t.data = s;
}

static http_req put_req(src *s) {
  http_req r = {.method = "PUT", .body_fn = body_fn, .body_arg = s, .body_size = s->size};
  return r;
}

void test_http_streamed_body_with_pauses(void) {
  httpd h;
  res x;
  src s;
  httpd_start(&h, NULL, h_json);
  src_init(&s, (3u << 20) + 17);
  s.paused_resume = true;
  http_req r = put_req(&s);
  s.call = get(&x, NULL, url(&h, "http", "127.0.0.1", "/upload"), &r);
  finish(&h, &x);
  ASSERT_EQ(x.why, HTTP_OK);
  ASSERT_EQ(h.last.body_len, s.size);
  ASSERT_EQ(h.last.body_hash, s.hash);
  ASSERT_EQ(s.given, s.size);
  ASSERT(s.zeros > 0);
  ASSERT_CONTAINS(h.last.head, "\r\nContent-Length: 3145745\r\n");
  net_close((uv_handle_t *)&s.t);
  httpd_stop(&h);
}

/* While the server reads nothing, the client pulls from the source only
 * what the kernel buffers and the stream's high-water mark hold, not the
 * 48 MiB body. */
void test_http_streamed_body_backpressure(void) {
  httpd h;
  res x;
  src s;
  httpd_start(&h, NULL, h_json);
  h.paused = true;
  src_init(&s, 48u << 20);
  http_req r = put_req(&s);
  r.timeout_ms = 25000;
  s.call = get(&x, NULL, url(&h, "http", "127.0.0.1", "/big"), &r);
  net_run_for(600);
  uint64_t pulled = s.given;
  fprintf(stderr, "pulled while the server did not read: %llu KiB\n",
          (unsigned long long)pulled / 1024);
  ASSERT(pulled > 0);
  ASSERT(pulled < (16u << 20));
  ASSERT(!x.done);
  hd_pause(hd_first(&h), false);
  finish(&h, &x);
  ASSERT_EQ(x.why, HTTP_OK);
  ASSERT_EQ(h.last.body_len, s.size);
  ASSERT_EQ(h.last.body_hash, s.hash);
  net_close((uv_handle_t *)&s.t);
  httpd_stop(&h);
}

void test_http_body_source_failure(void) {
  httpd h;
  res x;
  src s;
  httpd_start(&h, NULL, h_json);
  src_init(&s, 1u << 20);
  s.fail_at = 3;
  http_req r = put_req(&s);
  s.call = get(&x, NULL, url(&h, "http", "127.0.0.1", "/"), &r);
  finish(&h, &x);
  ASSERT_EQ(x.why, HTTP_FAIL_BODY);
  ASSERT_CONTAINS(x.err, "the source failed");
  net_run_for(50);
  ASSERT_EQ(h.n_requests, 0); /* the server never saw a whole request */
  ASSERT_EQ(h.n_closed, 1);
  net_close((uv_handle_t *)&s.t);
  httpd_stop(&h);
}

/* ---- TLS ---- */

static tls_ctx *client_tls(void) {
  char err[256];
  tls_ctx *t = tls_ctx_client(net_cert_path("ca.crt"), STP_TLS1_2, true, err, sizeof err);
  ASSERT(t);
  return t;
}

void test_http_tls_verified(void) {
  httpd h;
  res x;
  tls_ctx *t = client_tls();
  httpd_start(&h, "server", h_chunked);
  http_req r = {.method = "GET", .tls = t};
  get(&x, NULL, url(&h, "https", "localhost", "/a"), &r);
  finish(&h, &x);
  ASSERT_EQ(x.why, HTTP_OK);
  ASSERT_EQ(strcmp(x.body, "hello world"), 0);
  get(&x, NULL, url(&h, "https", "127.0.0.1", "/b"), &r);
  finish(&h, &x);
  ASSERT_EQ(x.why, HTTP_OK);
  httpd_stop(&h);
  tls_ctx_free(t);
}

void test_http_tls_wrong_name_fails(void) {
  httpd h;
  res x;
  tls_ctx *t = client_tls();
  httpd_start(&h, "wrongname", h_json);
  http_req r = {.method = "GET", .tls = t};
  get(&x, NULL, url(&h, "https", "localhost", "/"), &r);
  finish(&h, &x);
  ASSERT_EQ(x.why, HTTP_FAIL_TLS);
  ASSERT_CONTAINS(x.err, "TLS with localhost");
  ASSERT_CONTAINS(x.err, "certificate not trusted or wrong name");
  ASSERT_EQ(h.n_requests, 0);
  httpd_stop(&h);
  tls_ctx_free(t);
}

/* ---- keep-alive ---- */

static void close_client(http_client *cl) {
  CALL(http_client_free(cl));
  net_run_for(20);
}

void test_http_keep_alive_reuses_one_connection(void) {
  httpd h;
  res a, b, c;
  tls_ctx *t = client_tls();
  httpd_start(&h, "server", h_json);
  http_client *cl = http_client_new(net_loop());
  http_req r = {.method = "GET", .tls = t, .keep_alive = true};
  get(&a, cl, url(&h, "https", "localhost", "/1"), &r);
  a.then_cl = cl; /* the second request starts inside the first's `done` */
  a.then_req = &r;
  a.then_url = url(&h, "https", "localhost", "/2");
  a.then_res = &b;
  ASSERT(net_run_until(&a.done, 5000));
  ASSERT(net_run_until(&b.done, 5000));
  ASSERT_EQ(b.why, HTTP_OK);
  ASSERT_CONTAINS(b.body, "\"/2\"");
  get(&c, cl, url(&h, "https", "localhost", "/3"), &r);
  finish(&h, &c);
  ASSERT_EQ(c.why, HTTP_OK);
  ASSERT_EQ(h.n_requests, 3);
  ASSERT_EQ(h.n_conns, 1);
  ASSERT_EQ(http_client_idle_count(cl), 1);
  ASSERT(strstr(h.last.head, "Connection:") == NULL);
  close_client(cl);
  net_run_for(50);
  ASSERT_EQ(h.n_closed, 1);
  httpd_stop(&h);
  tls_ctx_free(t);
}

/* The second request on connection 1 is met with a close, as when a
 * server's keep-alive timer fires just as the request goes out. */
static void h_drop_second(httpd *h, hd_conn *c, const hd_request *r) {
  if (r->conn_id == 1 && h->n_requests == 2)
    hd_close(c);
  else
    h_json(h, c, r);
}

static void stale(const char *method, res *x, httpd *h) {
  http_client *cl = http_client_new(net_loop());
  http_req r = {.method = "GET", .keep_alive = true};
  res first;
  httpd_start(h, NULL, h_drop_second);
  get(&first, cl, url(h, "http", "127.0.0.1", "/1"), &r);
  finish(h, &first);
  ASSERT_EQ(http_client_idle_count(cl), 1);
  r.method = method;
  r.body = "x=1";
  r.body_len = 3;
  get(x, cl, url(h, "http", "127.0.0.1", "/2"), &r);
  finish(h, x);
  close_client(cl);
}

void test_http_stale_connection_retried_when_idempotent(void) {
  httpd h;
  res x;
  stale("PUT", &x, &h);
  ASSERT_EQ(x.why, HTTP_OK);
  ASSERT_CONTAINS(x.body, "\"PUT\"");
  ASSERT_EQ(h.n_conns, 2);
  ASSERT_EQ(h.n_requests, 3);
  httpd_stop(&h);
}

void test_http_stale_connection_post_not_retried(void) {
  httpd h;
  res x;
  stale("POST", &x, &h);
  ASSERT_EQ(x.why, HTTP_FAIL_CLOSED);
  ASSERT_CONTAINS(x.err, "closed the connection without an answer");
  ASSERT_EQ(h.n_conns, 1);
  httpd_stop(&h);
}

static void h_close_delimited(httpd *h, hd_conn *c, const hd_request *r) {
  (void)h, (void)r;
  hd_sendf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the close");
  hd_close(c);
}

void test_http_close_delimited_not_reused(void) {
  httpd h;
  res x;
  httpd_start(&h, NULL, h_close_delimited);
  http_client *cl = http_client_new(net_loop());
  http_req r = {.method = "GET", .keep_alive = true};
  get(&x, cl, url(&h, "http", "127.0.0.1", "/"), &r);
  finish(&h, &x);
  ASSERT_EQ(x.why, HTTP_OK);
  ASSERT_EQ(strcmp(x.body, "until the close"), 0);
  ASSERT(!x.keep_alive);
  ASSERT_EQ(http_client_idle_count(cl), 0);
  close_client(cl);
  httpd_stop(&h);
}

/* ---- failures ---- */

void test_http_immediate_errors_from_the_loop(void) {
  res x;
  http_req bad_hdr = {.method = "GET",
                      .headers = (const http1_header[]){{"X-A", "v\r\nInjected: 1"}},
                      .n_headers = 1};
  http_req both = {.method = "PUT", .body = "a", .body_len = 1, .body_fn = body_fn};
  struct {
    const char *url;
    http_req *req;
    const char *want;
  } cases[] = {
      {"ftp://h/", NULL, "bad URL"},
      {"https://localhost/", NULL, "https needs a TLS context"},
      {"http://localhost/", &bad_hdr, "bad method or header"},
      {"http://localhost/", &both, "at once"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    get(&x, NULL, cases[i].url, cases[i].req);
    ASSERT(net_run_until(&x.done, 2000));
    net_run_for(10);
    ASSERT_EQ(x.calls, 1);
    ASSERT_EQ(x.why, HTTP_FAIL_REQUEST);
    ASSERT_CONTAINS(x.err, cases[i].want);
  }
}

void test_http_connect_refused(void) {
  res x;
  char u[100];
  int port = net_free_port();
  snprintf(u, sizeof u, "http://127.0.0.1:%d/", port);
  get(&x, NULL, u, NULL);
  finish(NULL, &x);
  ASSERT_EQ(x.why, HTTP_FAIL_CONNECT);
  char want[100];
  snprintf(want, sizeof want, "connect 127.0.0.1:%d: ", port);
  ASSERT_CONTAINS(x.err, want);
  ASSERT_CONTAINS(x.err, "refused");
  get(&x, NULL, "http://bad..name/", NULL);
  finish(NULL, &x);
  ASSERT_EQ(x.why, HTTP_FAIL_DNS);
  ASSERT_CONTAINS(x.err, "resolve bad..name: ");
}

void test_http_total_timeout(void) {
  httpd h;
  res x;
  httpd_start(&h, NULL, h_silent);
  http_req r = {.method = "GET", .timeout_ms = 300};
  uv_update_time(net_loop());
  uint64_t t0 = uv_now(net_loop());
  get(&x, NULL, url(&h, "http", "127.0.0.1", "/"), &r);
  finish(&h, &x);
  uint64_t took = uv_now(net_loop()) - t0;
  ASSERT_EQ(x.why, HTTP_FAIL_TIMEOUT);
  ASSERT_CONTAINS(x.err, "did not answer in time");
  ASSERT(took >= 290 && took < 2000);
  httpd_stop(&h);
}

/* A server that sends one byte every 50 ms never stalls for 200 ms, so
 * only the total timeout ends the call; a silent one stalls. */
static hd_conn *g_drip;
static void drip_cb(uv_timer_t *t) {
  (void)t;
  if (g_drip)
    hd_send(g_drip, "H", 1);
}
static void h_drip(httpd *h, hd_conn *c, const hd_request *r) {
  (void)h, (void)r;
  g_drip = c;
}

void test_http_stall_timeout(void) {
  httpd h;
  res x;
  httpd_start(&h, NULL, h_silent);
  http_req r = {.method = "GET", .timeout_ms = 5000, .stall_ms = 200};
  get(&x, NULL, url(&h, "http", "127.0.0.1", "/"), &r);
  finish(&h, &x);
  ASSERT_EQ(x.why, HTTP_FAIL_TIMEOUT);
  ASSERT_CONTAINS(x.err, "stalled");
  httpd_stop(&h);

  httpd_start(&h, NULL, h_drip);
  uv_timer_t t;
  uv_timer_init(net_loop(), &t);
  uv_timer_start(&t, drip_cb, 50, 50);
  r.timeout_ms = 800;
  get(&x, NULL, url(&h, "http", "127.0.0.1", "/"), &r);
  ASSERT(net_run_until(&x.done, 5000));
  g_drip = NULL; /* the client closes the connection now */
  net_close((uv_handle_t *)&t);
  ASSERT_EQ(x.calls, 1);
  ASSERT_EQ(x.why, HTTP_FAIL_TIMEOUT);
  ASSERT_CONTAINS(x.err, "did not answer in time");
  httpd_stop(&h);
}

void test_http_cancel_calls_nothing(void) {
  httpd h;
  res x, y;
  httpd_start(&h, NULL, h_silent);
  http_req r = {.method = "GET", .timeout_ms = 200};
  http_call *c = get(&x, NULL, url(&h, "http", "127.0.0.1", "/"), &r);
  net_run_for(50); /* connected and sent */
  CALL(http_call_cancel(c));
  http_call *d = get(&y, NULL, "ftp://nope/", &r); /* a failure already queued */
  CALL(http_call_cancel(d));
  net_run_for(400);
  ASSERT_EQ(x.calls, 0);
  ASSERT_EQ(y.calls, 0);
  ASSERT_EQ(h.n_requests, 1);
  ASSERT_EQ(h.n_closed, 1);
  httpd_stop(&h);
}

/* ---- preconnect (API upstreams prove their API is reachable first) ---- */

static void pre_cb(void *arg, const http1_response *r, http_fail why, const char *err) {
  NET_CB_ENTER();
  res *x = arg;
  x->calls++;
  x->done = true;
  x->why = why;
  x->status = r ? r->status : -1;
  snprintf(x->err, sizeof x->err, "%s", err ? err : "");
}

void test_http_preconnect_parks_for_the_next_call(void) {
  httpd h;
  res p, x;
  tls_ctx *t = client_tls();
  httpd_start(&h, "server", h_json);
  http_client *cl = http_client_new(net_loop());
  memset(&p, 0, sizeof p);
  CALL(http_preconnect(net_loop(), cl, url(&h, "https", "localhost", "/"), t, 5000, pre_cb, &p));
  ASSERT(!p.done);
  finish(&h, &p);
  ASSERT_EQ(p.why, HTTP_OK);
  ASSERT_EQ(p.status, -1); /* no response: nothing was sent */
  ASSERT_EQ(h.n_conns, 1);
  ASSERT_EQ(h.n_requests, 0);
  ASSERT_EQ(http_client_idle_count(cl), 1);
  /* Again: the parked connection counts, no second one is made. */
  memset(&p, 0, sizeof p);
  CALL(http_preconnect(net_loop(), cl, url(&h, "https", "localhost", "/"), t, 5000, pre_cb, &p));
  finish(&h, &p);
  ASSERT_EQ(p.why, HTTP_OK);
  ASSERT_EQ(h.n_conns, 1);
  /* A POST then goes over it. */
  http_req post = {.method = "POST", .tls = t, .body = "x", .body_len = 1, .keep_alive = true};
  get(&x, cl, url(&h, "https", "localhost", "/send"), &post);
  finish(&h, &x);
  ASSERT_EQ(x.why, HTTP_OK);
  ASSERT_EQ(h.n_conns, 1);
  ASSERT_EQ(h.n_requests, 1);
  /* A certificate for another name fails the preconnect itself. */
  httpd w;
  httpd_start(&w, "wrongname", h_json);
  memset(&p, 0, sizeof p);
  CALL(http_preconnect(net_loop(), cl, url(&w, "https", "localhost", "/"), t, 5000, pre_cb, &p));
  finish(&w, &p);
  ASSERT_EQ(p.why, HTTP_FAIL_TLS);
  ASSERT_CONTAINS(p.err, "certificate not trusted or wrong name");
  close_client(cl);
  httpd_stop(&w);
  httpd_stop(&h);
  tls_ctx_free(t);
}
