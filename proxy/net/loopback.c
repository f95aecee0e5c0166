/* loopback.c - the redirect listener of `oauth2 login` (see loopback.h).
 * Bytes in, one answer out, close: the parsing is http1.c's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connset.h"
#include "loopback.h"
#include "smtp-tls-proxy/http1.h"
#include "smtp-tls-proxy/util.h"

typedef struct lb_conn lb_conn;

struct loopback {
  uv_tcp_t srv;
  loopback_fn fn;
  void *arg;
  connset set;
};

struct lb_conn {
  connset_link link; /* first: see connset.h */
  loopback *lb;
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_write_t wr;
  unsigned n_open;
  bool answered, closing;
  char *resp;
  size_t len;
  char head[LOOPBACK_HEAD_MAX];
};

static void maybe_free(loopback *lb) {
  if (connset_finished(&lb->set))
    free(lb);
}

static void conn_closed(uv_handle_t *h) {
  lb_conn *c = h->data;
  if (--c->n_open)
    return;
  loopback *lb = c->lb;
  connset_remove(&lb->set, &c->link);
  stp_cleanse(c->head, sizeof c->head); /* it held an authorization code */
  free(c->resp);
  free(c);
  maybe_free(lb);
}

static void conn_close(lb_conn *c) {
  if (c->closing)
    return;
  c->closing = true;
  uv_close((uv_handle_t *)&c->tcp, conn_closed);
  uv_close((uv_handle_t *)&c->timer, conn_closed);
}

static void write_cb(uv_write_t *w, int status) {
  (void)status;
  conn_close(w->data);
}

static void answer(lb_conn *c, int status, const char *page) {
  const char *word = status == 200 ? "OK" : status == 404 ? "Not Found" : "Bad Request";
  size_t cap = strlen(page) + 256;
  c->resp = stp_xmalloc(cap);
  int n = snprintf(c->resp, cap,
                   "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                   "Content-Length: %zu\r\nCache-Control: no-store\r\n"
                   "Connection: close\r\n\r\n%s",
                   status, word, strlen(page), page);
  c->len = (size_t)n;
  c->answered = true;
  uv_read_stop((uv_stream_t *)&c->tcp);
  uv_buf_t b = uv_buf_init(c->resp, (unsigned)c->len);
  c->wr.data = c;
  if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, write_cb) < 0)
    conn_close(c);
}

static void alloc_cb(uv_handle_t *h, size_t sz, uv_buf_t *b) {
  lb_conn *c = h->data;
  (void)sz;
  *b = uv_buf_init(c->head + c->len, (unsigned)(sizeof c->head - c->len));
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  lb_conn *c = s->data;
  (void)b;
  if (n < 0) {
    conn_close(c);
    return;
  }
  c->len += (size_t)n;
  http1_request r;
  int rc = http1_parse_request(c->head, c->len, sizeof c->head, &r);
  if (rc == STP_EAGAIN)
    return;
  if (rc < 0) {
    answer(c, 400, "This is not a request this listener understands.\n");
  } else if (r.method_len != 3 || memcmp(r.method, "GET", 3) != 0 || c->lb->set.stopping) {
    answer(c, 404, "Nothing here.\n");
  } else {
    int status = 404;
    const char *page = "Nothing here.\n";
    c->answered = true; /* fn may stop the listener: this answer still goes */
    c->lb->fn(c->lb->arg, r.target, r.target_len, &status, &page);
    answer(c, status, page);
  }
}

static void timer_cb(uv_timer_t *t) {
  conn_close(t->data);
}

static void accept_cb(uv_stream_t *srv, int status) {
  loopback *lb = srv->data;
  if (status < 0 || lb->set.stopping)
    return;
  lb_conn *c = stp_xcalloc(1, sizeof *c);
  c->lb = lb;
  uv_tcp_init(srv->loop, &c->tcp);
  uv_timer_init(srv->loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  c->n_open = 2;
  unsigned n = connset_add(&lb->set, &c->link);
  if (uv_accept(srv, (uv_stream_t *)&c->tcp) < 0 || n > LOOPBACK_MAX_CONNS) {
    conn_close(c);
    return;
  }
  uv_timer_start(&c->timer, timer_cb, LOOPBACK_CONN_MS, 0);
  uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}

static void srv_closed(uv_handle_t *h) {
  loopback *lb = h->data;
  lb->set.srv_open = false;
  maybe_free(lb);
}

loopback *loopback_start(uv_loop_t *loop, loopback_fn fn, void *arg, int *port, char *err,
                         size_t errlen) {
  loopback *lb = stp_xcalloc(1, sizeof *lb);
  lb->fn = fn;
  lb->arg = arg;
  uv_tcp_init(loop, &lb->srv);
  lb->srv.data = lb;
  lb->set.srv_open = true;
  struct sockaddr_in sa;
  struct sockaddr_storage got;
  int len = sizeof got;
  uv_ip4_addr("127.0.0.1", 0, &sa);
  int rc = uv_tcp_bind(&lb->srv, (const struct sockaddr *)&sa, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&lb->srv, 16, accept_cb);
  if (rc == 0)
    rc = uv_tcp_getsockname(&lb->srv, (struct sockaddr *)&got, &len);
  if (rc < 0) {
    snprintf(err, errlen, "cannot listen on 127.0.0.1: %s", uv_strerror(rc));
    loopback_stop(lb);
    return NULL;
  }
  *port = ntohs(((struct sockaddr_in *)&got)->sin_port);
  return lb;
}

void loopback_stop(loopback *lb) {
  if (!lb || lb->set.stopping)
    return;
  lb->set.stopping = true;
  uv_close((uv_handle_t *)&lb->srv, srv_closed);
  for (connset_link *k = lb->set.head; k; k = k->next) {
    lb_conn *c = (lb_conn *)k;
    if (!c->answered)
      conn_close(c);
  }
}
