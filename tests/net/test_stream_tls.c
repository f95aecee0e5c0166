/* test_stream_tls.c - stream.c with TLS, both ends on one loop: a server
 * stream (the test PKI's server certificate) and a client stream that
 * verifies it against the test CA. Echo both ways, a 4 MiB echo through the
 * back-pressure marks, and the two ways verification refuses a server: a
 * certificate for another name, and one from no trusted CA.
 */
#include <string.h>

#include "../../proxy/net/stream.h"
#include "net_test.h"
#include "smtp-tls-proxy/config.h"

typedef struct end {
  stream *st;
  bool connected, tls_up, closed, failed, tls_fail, verify_fail;
  size_t got, drains;
  uint64_t hash; /* of the bytes read */
  char first[64];
  struct pair *pr;
} end;

typedef struct pair {
  uv_tcp_t srv;
  tls_ctx *srv_tls, *cli_tls;
  end s, c;
  bool echo;      /* the server writes back what it reads */
  size_t want;    /* the client closes after this many bytes back */
  size_t to_send; /* the client still has this much to write */
  bool done;
} pair;

static void fnv(uint64_t *h, const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    *h ^= (unsigned char)p[i];
    *h *= 1099511628211ull;
  }
}

static void on_read(void *ctx, const char *p, size_t n) {
  NET_CB_ENTER();
  end *e = ctx;
  pair *pr = e->pr;
  if (e->got < sizeof e->first)
    memcpy(e->first + e->got, p,
           n < sizeof e->first - e->got - 1 ? n : sizeof e->first - e->got - 1);
  e->got += n;
  fnv(&e->hash, p, n);
  if (e == &pr->s && pr->echo)
    CALL(stream_write(e->st, p, n));
  if (e == &pr->c && e->got >= pr->want)
    pr->done = true;
}

static void on_error(void *ctx, const char *reason, bool tls, bool verify) {
  NET_CB_ENTER();
  end *e = ctx;
  (void)reason;
  e->failed = true;
  e->tls_fail = tls;
  e->verify_fail = verify;
  if (e == &e->pr->c)
    e->pr->done = true;
}

static void pump(end *e) {
  static char chunk[16384];
  pair *pr = e->pr;
  while (pr->to_send && stream_queued(e->st) < STREAM_HIGH_WATER) {
    size_t n = pr->to_send < sizeof chunk ? pr->to_send : sizeof chunk;
    for (size_t i = 0; i < n; i++)
      chunk[i] = (char)('a' + (pr->to_send - i) % 26);
    CALL(stream_write(e->st, chunk, n));
    pr->to_send -= n;
  }
}

static void on_tls(void *ctx) {
  NET_CB_ENTER();
  end *e = ctx;
  e->tls_up = true;
  if (e == &e->pr->c) {
    if (e->pr->to_send)
      pump(e);
    else
      CALL(stream_write(e->st, "ping\r\n", 6));
  }
}

static void on_drain(void *ctx) {
  NET_CB_ENTER();
  end *e = ctx;
  e->drains++;
  if (e == &e->pr->c)
    pump(e);
}

static void on_closed(void *ctx) {
  NET_CB_ENTER();
  ((end *)ctx)->closed = true;
}

static void on_connect(void *ctx, const char *error) {
  NET_CB_ENTER();
  end *e = ctx;
  ASSERT(error == NULL);
  e->connected = true;
  CALL(stream_start(e->st));
}

static const stream_cbs cbs = {on_connect, on_read, on_error, on_tls, on_drain, on_closed};

static void on_accept(uv_stream_t *srv, int status) {
  pair *pr = srv->data;
  ASSERT_EQ(status, 0);
  pr->s.st = stream_new(net_loop(), &cbs, &pr->s);
  ASSERT_EQ(uv_accept(srv, (uv_stream_t *)stream_tcp(pr->s.st)), 0);
  CALL(stream_start(pr->s.st));
  CALL(stream_start_tls(pr->s.st, pr->srv_tls, NULL, true));
}

/* Server with cert/key, client trusting ca and asking for `name`. */
static void start(pair *pr, const char *cert, const char *key, const char *ca, const char *name) {
  char err[256];
  memset(pr, 0, sizeof *pr);
  pr->s.pr = pr->c.pr = pr;
  pr->srv_tls = tls_ctx_server(net_cert_path(cert), net_cert_path(key), STP_TLS1_2, "localhost",
                               err, sizeof err);
  ASSERT(pr->srv_tls);
  pr->cli_tls = tls_ctx_client(net_cert_path(ca), STP_TLS1_2, true, err, sizeof err);
  ASSERT(pr->cli_tls);
  int port = net_listen(&pr->srv, on_accept, pr);
  struct sockaddr_in sa;
  uv_ip4_addr("127.0.0.1", port, &sa);
  pr->c.st = stream_new(net_loop(), &cbs, &pr->c);
  CALL(stream_connect(pr->c.st, (const struct sockaddr *)&sa));
  ASSERT(net_run_until(&pr->c.connected, 5000));
  CALL(stream_start_tls(pr->c.st, pr->cli_tls, name, false));
}

static void finish(pair *pr) {
  CALL(stream_close(pr->c.st));
  if (pr->s.st)
    CALL(stream_close(pr->s.st));
  net_close((uv_handle_t *)&pr->srv);
  bool both = false;
  for (int i = 0; i < 200 && !both; i++) {
    net_run_for(5);
    both = pr->c.closed && (!pr->s.st || pr->s.closed);
  }
  ASSERT(both);
  tls_ctx_free(pr->srv_tls);
  tls_ctx_free(pr->cli_tls);
}

void test_stream_tls_echo_both_ways(void) {
  pair pr;
  start(&pr, "server.crt", "server.key", "ca.crt", "localhost");
  pr.echo = true;
  pr.want = 6;
  ASSERT(net_run_until(&pr.done, 5000));
  ASSERT(pr.c.tls_up && pr.s.tls_up);
  ASSERT(!pr.c.failed && !pr.s.failed);
  ASSERT_EQ(pr.s.got, 6);
  ASSERT_EQ(strcmp(pr.c.first, "ping\r\n"), 0);
  ASSERT(stream_tls_version(pr.c.st) != NULL);
  ASSERT(strstr(stream_tls_version(pr.c.st), "TLSv1."));
  finish(&pr);
}

void test_stream_tls_large_echo_with_backpressure(void) {
  pair pr;
  start(&pr, "server.crt", "server.key", "ca.crt", "127.0.0.1");
  size_t total = 4u << 20;
  pr.echo = true;
  pr.want = total;
  pr.to_send = total;
  ASSERT(net_run_until(&pr.done, 20000));
  ASSERT(!pr.c.failed && !pr.s.failed);
  ASSERT_EQ(pr.s.got, total);
  ASSERT_EQ(pr.c.got, total);
  ASSERT_EQ(pr.c.hash, pr.s.hash); /* the same bytes came back in the same order */
  ASSERT(pr.c.drains > 0);         /* the writer crossed the high-water mark */
  finish(&pr);
}

void test_stream_tls_wrong_name_refused(void) {
  pair pr;
  start(&pr, "wrongname.crt", "wrongname.key", "ca.crt", "localhost");
  ASSERT(net_run_until(&pr.done, 5000));
  ASSERT(pr.c.failed && pr.c.tls_fail && pr.c.verify_fail);
  ASSERT(!pr.c.tls_up);
  ASSERT_EQ(pr.s.got, 0);
  finish(&pr);
}

void test_stream_tls_untrusted_refused(void) {
  pair pr;
  start(&pr, "selfsigned.crt", "selfsigned.key", "ca.crt", "localhost");
  ASSERT(net_run_until(&pr.done, 5000));
  ASSERT(pr.c.failed && pr.c.tls_fail && pr.c.verify_fail);
  ASSERT(!pr.c.tls_up);
  finish(&pr);
}
