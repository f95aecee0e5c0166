/* httpd.c - the test HTTP/1.1 server (see httpd.h). */
#include "httpd.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net_test.h"
#include "smtp-tls-proxy/config.h"
#include "smtp-tls-proxy/http1.h"
#include "smtp-tls-proxy/util.h"

struct hd_conn {
  httpd *h;
  hd_conn *next;
  stream *st;
  int id;
  char head[4096];
  size_t len;
  uint64_t body_left;
  bool in_body, closed;
  hd_request req;
};

static void fnv(uint64_t *h, const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    *h ^= (unsigned char)p[i];
    *h *= 1099511628211ull;
  }
}

/* Content-Length of a head, 0 when absent. */
static uint64_t content_length(const char *head) {
  const char *p = head;
  while ((p = strchr(p, '\n')) != NULL) {
    p++;
    if (!stp_ascii_ncasecmp(p, "content-length:", 15))
      return strtoull(p + 15, NULL, 10);
  }
  return 0;
}

static void request_done(hd_conn *c) {
  c->in_body = false;
  c->h->n_requests++;
  c->h->last = c->req;
  c->h->handler(c->h, c, &c->req);
}

static void take_body(hd_conn *c, const char **p, size_t *n) {
  size_t k = *n < c->body_left ? *n : (size_t)c->body_left;
  hd_request *r = &c->req;
  if (r->body_len < sizeof r->body_start - 1) {
    size_t room = sizeof r->body_start - 1 - (size_t)r->body_len;
    memcpy(r->body_start + r->body_len, *p, k < room ? k : room);
  }
  fnv(&r->body_hash, *p, k);
  r->body_len += k;
  c->h->body_read += k;
  c->body_left -= k;
  *p += k;
  *n -= k;
  if (!c->body_left)
    request_done(c);
}

/* Head bytes: once the head is whole, the request starts. */
static void take_head(hd_conn *c, const char **p, size_t *n) {
  size_t k = *n < sizeof c->head - c->len ? *n : sizeof c->head - c->len;
  memcpy(c->head + c->len, *p, k);
  c->len += k;
  http1_request rq;
  int rc = http1_parse_request(c->head, c->len, sizeof c->head, &rq);
  ASSERT(rc == STP_OK || rc == STP_EAGAIN);
  if (rc == STP_EAGAIN) {
    *p += k;
    *n -= k;
    return;
  }
  size_t over = c->len - rq.head_len; /* body bytes that came with the head */
  *p += k - over;
  *n -= k - over;
  memset(&c->req, 0, sizeof c->req);
  c->req.body_hash = 14695981039346656037ull;
  c->req.conn_id = c->id;
  snprintf(c->req.method, sizeof c->req.method, "%.*s", (int)rq.method_len, rq.method);
  snprintf(c->req.target, sizeof c->req.target, "%.*s", (int)rq.target_len, rq.target);
  snprintf(c->req.head, sizeof c->req.head, "%.*s", (int)rq.head_len, c->head);
  c->len = 0;
  c->body_left = content_length(c->req.head);
  c->in_body = c->body_left > 0;
  if (!c->in_body)
    request_done(c);
}

static void on_read(void *ctx, const char *p, size_t n) {
  hd_conn *c = ctx;
  while (n && !c->closed) {
    if (c->in_body)
      take_body(c, &p, &n);
    else
      take_head(c, &p, &n);
  }
}

static void on_error(void *ctx, const char *reason, bool tls, bool verify) {
  hd_conn *c = ctx;
  (void)reason, (void)tls, (void)verify;
  hd_close(c);
}

static void on_event(void *ctx) {
  (void)ctx;
}
static void on_connect(void *ctx, const char *e) {
  (void)ctx, (void)e;
}

static void on_closed(void *ctx) {
  hd_conn *c = ctx;
  httpd *h = c->h;
  h->n_closed++;
  for (hd_conn **pp = &h->conns; *pp; pp = &(*pp)->next)
    if (*pp == c) {
      *pp = c->next;
      break;
    }
  free(c);
}

static const stream_cbs hd_cbs = {on_connect, on_read, on_error, on_event, on_event, on_closed};

static void on_accept(uv_stream_t *srv, int status) {
  httpd *h = srv->data;
  ASSERT_EQ(status, 0);
  hd_conn *c = calloc(1, sizeof *c);
  c->h = h;
  c->id = ++h->n_conns;
  c->next = h->conns;
  h->conns = c;
  c->st = stream_new(net_loop(), &hd_cbs, c);
  ASSERT_EQ(uv_accept(srv, (uv_stream_t *)stream_tcp(c->st)), 0);
  stream_start(c->st);
  if (h->paused)
    stream_pause(c->st, true);
  if (h->tls)
    stream_start_tls(c->st, h->tls, NULL, true);
}

void httpd_start(httpd *h, const char *tls, hd_handler handler) {
  memset(h, 0, sizeof *h);
  h->handler = handler;
  if (tls) {
    char crt[64], key[64], err[256];
    snprintf(crt, sizeof crt, "%s.crt", tls);
    snprintf(key, sizeof key, "%s.key", tls);
    h->tls = tls_ctx_server(net_cert_path(crt), net_cert_path(key), STP_TLS1_2, "localhost", err,
                            sizeof err);
    ASSERT(h->tls);
  }
  h->port = net_listen(&h->srv, on_accept, h);
}

void httpd_stop(httpd *h) {
  net_close((uv_handle_t *)&h->srv);
  for (hd_conn *c = h->conns; c; c = c->next) {
    c->closed = true;
    stream_close(c->st); /* also one still flushing */
  }
  while (h->conns)
    uv_run(net_loop(), UV_RUN_ONCE);
  tls_ctx_free(h->tls);
  h->tls = NULL;
}

void hd_send(hd_conn *c, const char *p, size_t n) {
  if (!c->closed)
    stream_write(c->st, p, n);
}

void hd_sendf(hd_conn *c, const char *fmt, ...) {
  char buf[8192];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  ASSERT(n > 0 && (size_t)n < sizeof buf);
  hd_send(c, buf, (size_t)n);
}

void hd_close(hd_conn *c) {
  if (c->closed)
    return;
  c->closed = true;
  stream_close_after_flush(c->st);
}

void hd_pause(hd_conn *c, bool p) {
  if (!c->closed)
    stream_pause(c->st, p);
}

hd_conn *hd_first(httpd *h) {
  return h->conns;
}
