/* test_loopback.c - the redirect listener of `oauth2 login`
 * (proxy/net/loopback.c): a GET's target reaches the owner from the loop,
 * the owner's page goes back even when the owner stops the listener from
 * its callback, and anything but a GET is answered without the owner. */
#include <string.h>

#include "../../proxy/net/loopback.h"
#include "net_test.h"

typedef struct client {
  uv_tcp_t tcp;
  uv_connect_t conn;
  uv_write_t wr;
  const char *req;
  size_t req_len;
  char resp[4096];
  size_t len;
  bool done;
} client;

typedef struct owner {
  loopback *lb;
  int calls;
  char target[256];
  bool stop_in_callback;
} owner;

static void on_request(void *arg, const char *target, size_t len, int *status, const char **page) {
  NET_CB_ENTER();
  owner *o = arg;
  o->calls++;
  snprintf(o->target, sizeof o->target, "%.*s", (int)len, target);
  *status = 200;
  *page = "You may close this window.\n";
  if (o->stop_in_callback) {
    loopback_stop(o->lb);
    o->lb = NULL;
  }
}

static void c_closed(uv_handle_t *h) {
  client *c = h->data;
  c->done = true;
}

static void c_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b) {
  client *c = h->data;
  (void)sz;
  *b = uv_buf_init(c->resp + c->len, (unsigned)(sizeof c->resp - 1 - c->len));
}

static void c_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  client *c = s->data;
  (void)b;
  if (n > 0) {
    c->len += (size_t)n;
    c->resp[c->len] = '\0';
  } else if (n < 0) {
    uv_close((uv_handle_t *)s, c_closed);
  }
}

static void c_written(uv_write_t *w, int status) {
  (void)w;
  (void)status;
}

static void c_connected(uv_connect_t *r, int status) {
  client *c = r->data;
  ASSERT_EQ(status, 0);
  uv_buf_t b = uv_buf_init((char *)c->req, (unsigned)c->req_len);
  uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, c_written);
  uv_read_start((uv_stream_t *)&c->tcp, c_alloc, c_read);
}

/* Send req to the port and read the answer to the close. */
static void exchange(int port, const char *req, size_t len, client *c) {
  memset(c, 0, sizeof *c);
  c->req = req;
  c->req_len = len;
  struct sockaddr_in sa;
  uv_ip4_addr("127.0.0.1", port, &sa);
  uv_tcp_init(net_loop(), &c->tcp);
  c->tcp.data = c->conn.data = c;
  ASSERT_EQ(uv_tcp_connect(&c->conn, &c->tcp, (const struct sockaddr *)&sa, c_connected), 0);
  ASSERT(net_run_until(&c->done, 5000));
}

void test_loopback_answers_and_stops_from_its_callback(void) {
  owner o = {.stop_in_callback = true};
  char err[200];
  int port = 0;
  CALL(o.lb = loopback_start(net_loop(), on_request, &o, &port, err, sizeof err));
  ASSERT(o.lb != NULL);
  ASSERT(port > 0);
  ASSERT_EQ(o.calls, 0);
  client c;
  static const char req[] = "GET /?code=abc&state=s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  exchange(port, req, sizeof req - 1, &c);
  ASSERT_EQ(o.calls, 1);
  ASSERT(!strcmp(o.target, "/?code=abc&state=s"));
  ASSERT_CONTAINS(c.resp, "HTTP/1.1 200 OK\r\n");
  ASSERT_CONTAINS(c.resp, "Cache-Control: no-store");
  ASSERT_CONTAINS(c.resp, "\r\n\r\nYou may close this window.\n");
  net_run_for(50); /* the listener's close callbacks */
}

void test_loopback_refuses_junk_without_the_owner(void) {
  owner o = {0};
  char err[200];
  int port = 0;
  CALL(o.lb = loopback_start(net_loop(), on_request, &o, &port, err, sizeof err));
  ASSERT(o.lb != NULL);
  client c;
  static const char post[] = "POST /?code=abc HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
  exchange(port, post, sizeof post - 1, &c);
  ASSERT_CONTAINS(c.resp, "HTTP/1.1 404 ");
  static const char junk[] = "GET /\x01 HTTP/1.1\r\n\r\n";
  exchange(port, junk, sizeof junk - 1, &c);
  ASSERT_CONTAINS(c.resp, "HTTP/1.1 400 ");
  static char big[LOOPBACK_HEAD_MAX + 100];
  memset(big, 'a', sizeof big);
  memcpy(big, "GET /?code=", 11);
  exchange(port, big, sizeof big, &c);
  ASSERT_CONTAINS(c.resp, "HTTP/1.1 400 ");
  ASSERT_EQ(o.calls, 0);
  CALL(loopback_stop(o.lb));
  net_run_for(50);
}
