/* test_dialer.c - dialer.c on loopback: a name and a number that connect,
 * a refused address followed by one that answers, every address refused,
 * DNS failures that never reach the network (a name glibc refuses before
 * any query, and RFC 6761's .invalid, refused by the dialer itself), the
 * total timeout and the per-address timeout against a listener whose
 * backlog is full, and a cancel that calls nothing. Every outcome must come
 * from the loop, never from inside dialer_start (CALL/NET_CB_ENTER).
 */
#include <arpa/inet.h>
#include <string.h>
#include <unistd.h>

#include "../../proxy/net/dialer.h"
#include "net_test.h"

typedef struct dial_t {
  bool done;
  int calls;
  stream *st;
  dial_result why;
  char reason[160];
  uint64_t took_ms;
  uint64_t t0;
  bool st_closed;
  int accepted;
} dial_t;

static void st_connect(void *ctx, const char *e) {
  (void)ctx, (void)e;
  ASSERT(!"on_connect after the hand-over");
}
static void st_read(void *ctx, const char *p, size_t n) {
  (void)ctx, (void)p, (void)n;
}
static void st_error(void *ctx, const char *r, bool t, bool v) {
  (void)ctx, (void)r, (void)t, (void)v;
}
static void st_event(void *ctx) {
  (void)ctx;
}
static void st_closed(void *ctx) {
  NET_CB_ENTER();
  ((dial_t *)ctx)->st_closed = true;
}
static const stream_cbs owner_cbs = {st_connect, st_read, st_error, st_event, st_event, st_closed};

static void done_cb(void *arg, stream *st, dial_result why, const char *reason) {
  NET_CB_ENTER();
  dial_t *d = arg;
  d->calls++;
  d->done = true;
  d->st = st;
  d->why = why;
  d->took_ms = uv_now(net_loop()) - d->t0;
  snprintf(d->reason, sizeof d->reason, "%s", reason ? reason : "");
}

static void on_accept(uv_stream_t *srv, int status) {
  dial_t *d = srv->data;
  ASSERT_EQ(status, 0);
  uv_tcp_t *c = malloc(sizeof *c);
  uv_tcp_init(net_loop(), c);
  ASSERT_EQ(uv_accept(srv, (uv_stream_t *)c), 0);
  d->accepted++;
  uv_close((uv_handle_t *)c, (uv_close_cb)free);
}

static dialer *dial(dial_t *d, const char *host, int port, const dial_opts *o) {
  dialer *r;
  memset(d, 0, sizeof *d);
  uv_update_time(net_loop());
  d->t0 = uv_now(net_loop());
  CALL(r = dialer_start(net_loop(), host, (uint16_t)port, o, &owner_cbs, d, done_cb, d));
  return r;
}

/* The stream handed over belongs to us: its close reaches our callbacks. */
static void close_stream(dial_t *d) {
  CALL(stream_close(d->st));
  ASSERT(net_run_until(&d->st_closed, 2000));
}

void test_dialer_connects_by_name_and_number(void) {
  uv_tcp_t srv;
  dial_t d;
  int port = net_listen(&srv, on_accept, &d);
  const char *hosts[] = {"127.0.0.1", "localhost"};
  for (int i = 0; i < 2; i++) {
    dial(&d, hosts[i], port, NULL);
    srv.data = &d;
    ASSERT(!d.done); /* never from inside dialer_start */
    ASSERT(net_run_until(&d.done, 5000));
    ASSERT_EQ(d.why, DIAL_OK);
    ASSERT(d.st != NULL);
    net_run_for(20);
    ASSERT_EQ(d.accepted, 1);
    ASSERT_EQ(d.calls, 1);
    close_stream(&d);
  }
  net_close((uv_handle_t *)&srv);
}

static void sin_at(struct sockaddr_in *sa, int port) {
  uv_ip4_addr("127.0.0.1", port, sa);
}

void test_dialer_refused_tries_next_address(void) {
  uv_tcp_t srv;
  dial_t d;
  int port = net_listen(&srv, on_accept, &d);
  struct sockaddr_in a, b;
  sin_at(&a, net_free_port());
  sin_at(&b, port);
  const struct sockaddr *addrs[] = {(struct sockaddr *)&a, (struct sockaddr *)&b};
  memset(&d, 0, sizeof d);
  CALL(dialer_start_addrs(net_loop(), addrs, 2, NULL, &owner_cbs, &d, done_cb, &d));
  ASSERT(net_run_until(&d.done, 5000));
  ASSERT_EQ(d.why, DIAL_OK);
  net_run_for(20);
  ASSERT_EQ(d.accepted, 1);
  close_stream(&d);
  net_close((uv_handle_t *)&srv);
}

void test_dialer_all_refused_reports_connect(void) {
  dial_t d;
  struct sockaddr_in a, b;
  sin_at(&a, net_free_port());
  sin_at(&b, net_free_port());
  const struct sockaddr *addrs[] = {(struct sockaddr *)&a, (struct sockaddr *)&b};
  memset(&d, 0, sizeof d);
  CALL(dialer_start_addrs(net_loop(), addrs, 2, NULL, &owner_cbs, &d, done_cb, &d));
  ASSERT(net_run_until(&d.done, 5000));
  ASSERT_EQ(d.why, DIAL_CONNECT);
  ASSERT(d.st == NULL);
  ASSERT_CONTAINS(d.reason, "refused");
  dial(&d, "127.0.0.1", net_free_port(), NULL);
  ASSERT(net_run_until(&d.done, 5000));
  ASSERT_EQ(d.why, DIAL_CONNECT);
  ASSERT_CONTAINS(d.reason, "refused");
  memset(&d, 0, sizeof d);
  CALL(dialer_start_addrs(net_loop(), addrs, 0, NULL, &owner_cbs, &d, done_cb, &d));
  ASSERT(!d.done);
  ASSERT(net_run_until(&d.done, 1000));
  ASSERT_EQ(d.why, DIAL_CONNECT);
}

/* glibc refuses "bad..name" (an empty label) before sending a query, and
 * the dialer refuses .invalid names itself: neither touches the network. */
void test_dialer_dns_failure_without_network(void) {
  dial_t d;
  const char *names[] = {"bad..name", "nonexistent.invalid", "x.INVALID."};
  for (int i = 0; i < 3; i++) {
    dial(&d, names[i], 25, NULL);
    ASSERT(!d.done);
    ASSERT(net_run_until(&d.done, 5000));
    ASSERT_EQ(d.why, DIAL_DNS);
    ASSERT(d.st == NULL);
    ASSERT(d.reason[0] != '\0');
    ASSERT_EQ(d.calls, 1);
  }
}

void test_dialer_total_timeout(void) {
  int fd, fds[4];
  int port = net_blackhole(&fd, fds, 4);
  dial_t d;
  dial_opts o = {.timeout_ms = 300};
  dial(&d, "127.0.0.1", port, &o);
  ASSERT(net_run_until(&d.done, 5000));
  ASSERT_EQ(d.why, DIAL_TIMEOUT);
  ASSERT(d.st == NULL);
  ASSERT_CONTAINS(d.reason, "timed out");
  ASSERT(d.took_ms >= 290 && d.took_ms < 2000);
  net_blackhole_close(fd, fds, 4);
}

/* The first address hangs; after attempt_ms the dialer leaves it for the
 * second, which answers, well within the total timeout. */
void test_dialer_attempt_timeout_moves_on(void) {
  int fd, fds[4];
  int hole = net_blackhole(&fd, fds, 4);
  uv_tcp_t srv;
  dial_t d;
  int port = net_listen(&srv, on_accept, &d);
  struct sockaddr_in a, b;
  sin_at(&a, hole);
  sin_at(&b, port);
  const struct sockaddr *addrs[] = {(struct sockaddr *)&a, (struct sockaddr *)&b};
  dial_opts o = {.timeout_ms = 5000, .attempt_ms = 200};
  memset(&d, 0, sizeof d);
  uv_update_time(net_loop());
  d.t0 = uv_now(net_loop());
  CALL(dialer_start_addrs(net_loop(), addrs, 2, &o, &owner_cbs, &d, done_cb, &d));
  ASSERT(net_run_until(&d.done, 5000));
  ASSERT_EQ(d.why, DIAL_OK);
  ASSERT(d.took_ms >= 190 && d.took_ms < 2000);
  net_run_for(20);
  ASSERT_EQ(d.accepted, 1);
  close_stream(&d);
  net_close((uv_handle_t *)&srv);
  net_blackhole_close(fd, fds, 4);
}

void test_dialer_cancel_calls_nothing(void) {
  int fd, fds[4];
  int hole = net_blackhole(&fd, fds, 4);
  dial_t d;
  dial_opts o = {.timeout_ms = 200};
  dialer *x = dial(&d, "127.0.0.1", hole, &o); /* connecting */
  net_run_for(50);
  CALL(dialer_cancel(x));
  dialer *y = dial(&d, "localhost", hole, &o); /* resolving */
  CALL(dialer_cancel(y));
  dialer *z = dial(&d, "x.invalid", 25, NULL); /* an outcome already queued */
  CALL(dialer_cancel(z));
  net_run_for(400); /* past the timeout: nothing may fire */
  ASSERT_EQ(d.calls, 0);
  net_blackhole_close(fd, fds, 4);
}
