/* metrics_http.c - a minimal HTTP/1.x server for /metrics and /healthz.
 *
 * Owns: the metrics listening socket and its short-lived connections. The
 * request head is parsed by the HTTP/1.1 codec (http1.c) and judged by
 * metrics_http_classify (metrics.c); this file only moves bytes.
 * Guarantees: see metrics_http.h. A connection reads into a fixed
 * METRICS_HTTP_MAX_HEAD buffer, answers once, half-closes, then drains what
 * the client still sends (bounded, briefly) before the close, so a 431
 * reaches the client instead of being lost to a reset. Connections are
 * freed only in close callbacks, once both handles closed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connset.h"
#include "metrics_http.h"
#include "netbind.h"
#include "smtp-tls-proxy/cidr.h"
#include "smtp-tls-proxy/config.h"
#include "smtp-tls-proxy/http1.h"
#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/metrics.h"
#include "smtp-tls-proxy/util.h"

#define LINGER_MS 2000
#define LINGER_MAX_BYTES (64 * 1024)

typedef enum { C_READING, C_WRITING, C_LINGER, C_CLOSING } conn_state;

typedef struct mh_conn mh_conn;

struct metrics_http {
  uv_loop_t *loop;
  uv_tcp_t srv;
  bool (*healthy)(void *);
  void *ctx;
  bool (*degraded)(void *ctx, char *why, size_t cap);
  connset set;
};

struct mh_conn {
  connset_link link; /* first: see connset.h */
  metrics_http *h;
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_write_t wr;
  uv_shutdown_t sh;
  unsigned n_open; /* handles not yet closed */
  conn_state st;
  char *resp;
  size_t lingered;
  size_t len;
  char head[METRICS_HTTP_MAX_HEAD];
};

static void maybe_free(metrics_http *h) {
  if (connset_finished(&h->set))
    free(h);
}

static void conn_closed_cb(uv_handle_t *hd) {
  mh_conn *c = hd->data;
  if (--c->n_open)
    return;
  metrics_http *h = c->h;
  connset_remove(&h->set, &c->link);
  free(c->resp);
  free(c);
  maybe_free(h);
}

static void conn_close(mh_conn *c) {
  if (c->st == C_CLOSING)
    return;
  c->st = C_CLOSING;
  uv_close((uv_handle_t *)&c->tcp, conn_closed_cb);
  uv_close((uv_handle_t *)&c->timer, conn_closed_cb);
}

static void timeout_cb(uv_timer_t *t) {
  conn_close(t->data);
}

static void alloc_cb(uv_handle_t *hd, size_t suggested, uv_buf_t *buf) {
  /* Lingering bytes are thrown away as soon as they arrive, and the loop
   * runs one read callback at a time, so all connections can share this. */
  static char discard[4096];
  mh_conn *c = hd->data;
  (void)suggested;
  if (c->st == C_READING)
    *buf = uv_buf_init(c->head + c->len, (unsigned)(sizeof c->head - c->len));
  else
    *buf = uv_buf_init(discard, sizeof discard);
}

static void linger_start(mh_conn *c);

static void shutdown_cb(uv_shutdown_t *req, int status) {
  mh_conn *c = req->data;
  if (c->st != C_WRITING)
    return; /* closed meanwhile; the close callback frees */
  if (status < 0)
    conn_close(c);
  else
    linger_start(c);
}

static void write_cb(uv_write_t *req, int status) {
  mh_conn *c = req->data;
  if (c->st != C_WRITING)
    return;
  c->sh.data = c;
  if (status < 0 || uv_shutdown(&c->sh, (uv_stream_t *)&c->tcp, shutdown_cb) < 0)
    conn_close(c);
}

static const char *reason_phrase(int code) {
  switch (code) {
  case 200:
    return "OK";
  case 400:
    return "Bad Request";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 431:
    return "Request Header Fields Too Large";
  case 503:
    return "Service Unavailable";
  default:
    return "Error";
  }
}

/* Build the response in one buffer and send it. For /metrics the body is
 * rendered straight into that buffer (body == NULL). */
static void respond(mh_conn *c, int code, const char *ctype, const char *extra, const char *body,
                    bool head_only) {
  bool render = body == NULL;
  size_t blen = render ? metrics_render_size() : strlen(body);
  char hdr[512];
  int n = snprintf(hdr, sizeof hdr,
                   "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                   "Cache-Control: no-store\r\n%sConnection: close\r\n\r\n",
                   code, reason_phrase(code), ctype, blen, extra);
  size_t hlen = (size_t)n; /* hdr is far larger than any of these heads */
  size_t total = hlen + (head_only ? 0 : blen);
  c->resp = stp_xmalloc(total);
  memcpy(c->resp, hdr, hlen);
  if (!head_only) {
    if (render)
      total = hlen + metrics_render(c->resp + hlen, blen); /* same loop turn: same text */
    else
      memcpy(c->resp + hlen, body, blen);
  }
  c->st = C_WRITING;
  uv_read_stop((uv_stream_t *)&c->tcp);
  uv_timer_start(&c->timer, timeout_cb, METRICS_HTTP_TIMEOUT_MS, 0);
  uv_buf_t b = uv_buf_init(c->resp, (unsigned)total);
  c->wr.data = c;
  if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, write_cb) < 0)
    conn_close(c);
}

#define TEXT "text/plain; charset=utf-8"

static void answer(mh_conn *c, int rc, const http1_request *req) {
  bool head = false;
  if (rc == STP_ETOOLONG) {
    respond(c, 431, TEXT, "", "request header fields too large\n", false);
    return;
  }
  if (rc != STP_OK) {
    respond(c, 400, TEXT, "", "bad request\n", false);
    return;
  }
  switch (metrics_http_classify(req, &head)) {
  case METRICS_HTTP_METRICS:
    respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", "", NULL, head);
    break;
  case METRICS_HTTP_HEALTHZ: {
    metrics_http *h = c->h;
    bool ok = !h->set.stopping && (!h->healthy || h->healthy(h->ctx));
    char why[256], body[300];
    if (ok && h->degraded && h->degraded(h->ctx, why, sizeof why)) {
      /* Still 200: a liveness probe that failed would restart the proxy,
       * which frees no disk and loses the connections (README). */
      snprintf(body, sizeof body, "degraded: %s\n", why);
      respond(c, 200, TEXT, "", body, head);
      break;
    }
    respond(c, ok ? 200 : 503, TEXT, "", ok ? "ok\n" : "unhealthy\n", head);
    break;
  }
  case METRICS_HTTP_NOT_FOUND:
    respond(c, 404, TEXT, "", "not found\n", head);
    break;
  case METRICS_HTTP_BAD_METHOD:
    respond(c, 405, TEXT, "Allow: GET, HEAD\r\n", "method not allowed\n", false);
    break;
  }
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  mh_conn *c = s->data;
  (void)buf;
  if (nread == 0 || c->st == C_CLOSING)
    return;
  if (nread < 0) { /* EOF or error: nothing left to answer or to drain */
    conn_close(c);
    return;
  }
  if (c->st == C_LINGER) {
    c->lingered += (size_t)nread;
    if (c->lingered > LINGER_MAX_BYTES)
      conn_close(c);
    return;
  }
  if (c->st != C_READING)
    return;
  c->len += (size_t)nread;
  http1_request req;
  int rc = http1_parse_request(c->head, c->len, sizeof c->head, &req);
  if (rc != STP_EAGAIN)
    answer(c, rc, &req);
}

static void linger_start(mh_conn *c) {
  c->st = C_LINGER;
  uv_timer_start(&c->timer, timeout_cb, LINGER_MS, 0);
  if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) < 0)
    conn_close(c);
}

static void on_connection(uv_stream_t *srv, int status) {
  metrics_http *h = srv->data;
  if (status < 0) {
    stp_logf(STP_LOG_WARN, NULL, "metrics accept failed: %s", uv_strerror(status));
    return;
  }
  mh_conn *c = stp_xcalloc(1, sizeof *c);
  c->h = h;
  unsigned n = connset_add(&h->set, &c->link);
  uv_tcp_init(h->loop, &c->tcp);
  uv_timer_init(h->loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  c->n_open = 2;
  c->st = C_READING;
  if (uv_accept(srv, (uv_stream_t *)&c->tcp) < 0 || n > METRICS_HTTP_MAX_CONNS) {
    conn_close(c);
    return;
  }
  uv_timer_start(&c->timer, timeout_cb, METRICS_HTTP_TIMEOUT_MS, 0);
  if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) < 0)
    conn_close(c);
}

static void srv_closed_cb(uv_handle_t *hd) {
  metrics_http *h = hd->data;
  h->set.srv_open = false;
  maybe_free(h);
}

static int bind_listen(metrics_http *h, const char *listen, char *err, size_t errlen) {
  char addr[80];
  int rc = netbind_listen(&h->srv, listen, 64, on_connection, addr, sizeof addr, err, errlen);
  if (rc < 0)
    return rc;
  stp_kv kv[] = {{"addr", addr}};
  stp_log_kv(STP_LOG_INFO, NULL, "metrics-listening", kv, 1);
  return 0;
}

int metrics_http_start(uv_loop_t *loop, const char *listen, bool (*healthy)(void *), void *ctx,
                       metrics_http **out, char *err, size_t errlen) {
  metrics_http *h = stp_xcalloc(1, sizeof *h);
  h->loop = loop;
  h->healthy = healthy;
  h->ctx = ctx;
  uv_tcp_init(loop, &h->srv);
  h->srv.data = h;
  h->set.srv_open = true;
  *out = NULL;
  int rc = bind_listen(h, listen, err, errlen);
  if (rc < 0) {
    h->set.stopping = true;
    uv_close((uv_handle_t *)&h->srv, srv_closed_cb);
    return rc;
  }
  *out = h;
  return 0;
}

void metrics_http_set_degraded(metrics_http *h,
                               bool (*degraded)(void *ctx, char *why, size_t cap)) {
  if (h)
    h->degraded = degraded;
}

void metrics_http_stop(metrics_http *h) {
  if (!h || h->set.stopping)
    return;
  h->set.stopping = true;
  uv_close((uv_handle_t *)&h->srv, srv_closed_cb);
  for (connset_link *k = h->set.head; k; k = k->next)
    conn_close((mh_conn *)k);
}
