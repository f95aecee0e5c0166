/* stream.c - libuv TCP with an optional memory-BIO TLS layer (see stream.h).
 *
 * Reads land in one loop-wide buffer (the data is consumed synchronously by
 * the owner), so an idle connection costs no read buffer; the plaintext is
 * wiped once the owner has taken it (a device's AUTH line passes through).
 * Callbacks rule: nothing the owner calls (stream_write, stream_connect,
 * stream_pause, stream_start_tls) calls the owner back. A failure found
 * inside such a call, and TLS plaintext still buffered when the owner
 * resumes, are delivered from the loop (defer.h). libuv's error codes stop
 * here: the owner gets STP_* codes and a reason string.
 */
#include "stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "defer.h"
#include "smtp-tls-proxy/util.h"

#define STREAM_READ_MAX (64 * 1024)

struct stream {
  uv_tcp_t tcp;
  uv_loop_t *loop;
  defer_item resume_ev; /* delivers buffered TLS plaintext after a resume */
  defer_item fail_ev;   /* reports a failure found inside an owner's call */
  defer_item conn_ev;   /* reports a connect that failed at once */
  defer_item unread_ev; /* delivers bytes given back by stream_unread */
  char *unread;         /* those bytes; reading waits while set */
  size_t unread_n;
  uv_connect_t connect_req;
  const stream_cbs *cbs;
  void *ctx;
  tls_conn *tls;
  bool tls_ready;
  bool tls_server;
  size_t queued;
  bool above_high;
  bool reading, paused, closing, flush_then_close, failed;
  bool fail_tls, fail_verify;
  char fail_reason[160];
};

typedef struct wreq {
  uv_write_t req;
  stream *s;
  size_t len;
  char data[];
} wreq;

static char g_read_buf[STREAM_READ_MAX];
static char g_plain_buf[STREAM_READ_MAX];

static void drop_unread(stream *s) {
  if (s->unread)
    stp_cleanse(s->unread, s->unread_n);
  free(s->unread);
  s->unread = NULL;
  s->unread_n = 0;
}

static void handle_closed_cb(uv_handle_t *h) {
  stream *s = h->data;
  drop_unread(s);
  tls_conn_free(s->tls);
  s->cbs->on_closed(s->ctx);
  free(s);
}

static void do_close(stream *s) {
  if (uv_is_closing((uv_handle_t *)&s->tcp))
    return;
  s->closing = true;
  defer_cancel(&s->resume_ev);
  defer_cancel(&s->fail_ev);
  defer_cancel(&s->conn_ev);
  defer_cancel(&s->unread_ev);
  uv_close((uv_handle_t *)&s->tcp, handle_closed_cb);
}

static void fail_ev_cb(void *arg) {
  stream *s = arg;
  s->cbs->on_error(s->ctx, s->fail_reason, s->fail_tls, s->fail_verify);
}

/* The first failure stops reading and is reported once, from the loop:
 * it may be found inside stream_write(), where the owner is on the stack. */
static void fail(stream *s, const char *reason, bool tls, bool verify) {
  if (s->closing || s->failed)
    return;
  s->failed = true;
  if (s->reading)
    uv_read_stop((uv_stream_t *)&s->tcp);
  s->reading = false;
  snprintf(s->fail_reason, sizeof s->fail_reason, "%s", reason);
  s->fail_tls = tls;
  s->fail_verify = verify;
  defer_post(s->loop, &s->fail_ev, fail_ev_cb, s);
}

stream *stream_new(uv_loop_t *loop, const stream_cbs *cbs, void *ctx) {
  stream *s = stp_xcalloc(1, sizeof *s);
  s->cbs = cbs;
  s->ctx = ctx;
  s->loop = loop;
  uv_tcp_init(loop, &s->tcp);
  s->tcp.data = s;
  return s;
}

uv_tcp_t *stream_tcp(stream *s) {
  return &s->tcp;
}

void stream_set_owner(stream *s, const stream_cbs *cbs, void *ctx) {
  s->cbs = cbs;
  s->ctx = ctx;
}

static void write_cb(uv_write_t *req, int status) {
  wreq *w = (wreq *)req;
  stream *s = w->s;
  s->queued -= w->len;
  free(w);
  if (s->closing)
    return;
  if (status < 0) {
    fail(s, uv_strerror(status), false, false);
    return;
  }
  if (s->flush_then_close && s->queued == 0) {
    do_close(s);
    return;
  }
  if (s->above_high && s->queued <= STREAM_LOW_WATER) {
    s->above_high = false;
    s->cbs->on_drain(s->ctx);
  }
}

static int raw_write(stream *s, const char *p, size_t n) {
  if (n == 0)
    return 0;
  wreq *w = stp_xmalloc(sizeof *w + n);
  memcpy(w->data, p, n);
  w->s = s;
  w->len = n;
  uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
  int r = uv_write(&w->req, (uv_stream_t *)&s->tcp, &b, 1, write_cb);
  if (r < 0) {
    free(w);
    fail(s, uv_strerror(r), false, false);
    return STP_EIO;
  }
  s->queued += n;
  if (s->queued > STREAM_HIGH_WATER)
    s->above_high = true;
  return 0;
}

/* Move TLS output to the socket in large writes. */
static int flush_tls(stream *s) {
  size_t pending;
  while ((pending = tls_conn_pending_out(s->tls)) > 0) {
    size_t n = pending > STREAM_READ_MAX ? STREAM_READ_MAX : pending;
    wreq *w = stp_xmalloc(sizeof *w + n);
    w->len = tls_conn_pull(s->tls, w->data, n);
    w->s = s;
    uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
    int r = uv_write(&w->req, (uv_stream_t *)&s->tcp, &b, 1, write_cb);
    if (r < 0) {
      free(w);
      fail(s, uv_strerror(r), false, false);
      return STP_EIO;
    }
    s->queued += w->len;
  }
  if (s->queued > STREAM_HIGH_WATER)
    s->above_high = true;
  return 0;
}

int stream_write(stream *s, const char *p, size_t n) {
  if (s->closing || s->failed)
    return STP_EIO;
  if (!s->tls)
    return raw_write(s, p, n);
  if (tls_conn_write(s->tls, p, n) < 0) {
    fail(s, tls_conn_error(s->tls), true, false);
    return STP_EIO;
  }
  return flush_tls(s);
}

const char *stream_state_name(const stream *s) {
  if (s->closing)
    return "closing";
  if (s->failed)
    return "failed";
  if (s->tls && !s->tls_ready)
    return "tls-handshake";
  if (s->paused)
    return s->tls ? "tls-paused" : "paused";
  if (s->flush_then_close)
    return "flushing";
  return s->tls ? "tls" : "open";
}

size_t stream_queued(const stream *s) {
  return s->queued;
}

/* Deliver decrypted plaintext until the engine is empty or the owner paused
 * or closed us. */
static void deliver_tls(stream *s) {
  while (!s->closing && !s->failed && !s->paused) {
    long n = tls_conn_read(s->tls, g_plain_buf, sizeof g_plain_buf);
    flush_tls(s); /* reads may produce alerts or session tickets */
    if (n > 0) {
      s->cbs->on_read(s->ctx, g_plain_buf, (size_t)n);
      stp_cleanse(g_plain_buf, (size_t)n);
      continue;
    }
    if (n < 0)
      fail(s, tls_conn_error(s->tls), true, false);
    return;
  }
}

static void drive_tls(stream *s) {
  if (!s->tls_ready) {
    int r = tls_conn_handshake(s->tls);
    flush_tls(s);
    if (r < 0) {
      fail(s, tls_conn_error(s->tls), true, tls_conn_verify_failed(s->tls));
      return;
    }
    if (r == 0)
      return;
    s->tls_ready = true;
    s->cbs->on_tls(s->ctx);
    if (s->closing || s->failed)
      return;
  }
  deliver_tls(s);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  (void)h;
  (void)suggested;
  *b = uv_buf_init(g_read_buf, sizeof g_read_buf);
}

/* Bytes from the socket (or given back): to the owner, or through TLS. */
static void deliver_raw(stream *s, char *p, size_t n) {
  if (!s->tls) {
    s->cbs->on_read(s->ctx, p, n);
    stp_cleanse(p, n);
    return;
  }
  if (tls_conn_feed(s->tls, p, n) < 0) {
    fail(s, "out of memory", true, false);
    return;
  }
  drive_tls(s);
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *b) {
  stream *s = st->data;
  if (nread == 0 || s->closing)
    return;
  if (nread < 0) {
    fail(s, nread == UV_EOF ? "connection closed by peer" : uv_strerror((int)nread), false, false);
    return;
  }
  deliver_raw(s, b->base, (size_t)nread);
}

static void unread_ev_cb(void *arg) {
  stream *s = arg;
  char *p = s->unread;
  size_t n = s->unread_n;
  s->unread = NULL;
  s->unread_n = 0;
  if (!s->closing && !s->failed)
    deliver_raw(s, p, n);
  stp_cleanse(p, n);
  free(p);
  if (!s->closing && !s->failed && !s->paused)
    stream_start(s);
}

void stream_unread(stream *s, const char *p, size_t n) {
  if (n == 0 || s->closing || s->failed || s->unread)
    return;
  s->unread = stp_xmalloc(n);
  memcpy(s->unread, p, n);
  s->unread_n = n;
  if (s->reading)
    uv_read_stop((uv_stream_t *)&s->tcp);
  s->reading = false;
  defer_post(s->loop, &s->unread_ev, unread_ev_cb, s);
}

void stream_start(stream *s) {
  if (s->reading || s->closing || s->failed || s->unread)
    return;
  int r = uv_read_start((uv_stream_t *)&s->tcp, alloc_cb, read_cb);
  if (r < 0)
    fail(s, uv_strerror(r), false, false);
  else
    s->reading = true;
}

static void resume_cb(void *arg) {
  stream *s = arg;
  if (s->tls && s->tls_ready)
    deliver_tls(s);
}

void stream_pause(stream *s, bool paused) {
  if (s->closing || s->failed || s->paused == paused)
    return;
  s->paused = paused;
  if (paused) {
    if (s->reading)
      uv_read_stop((uv_stream_t *)&s->tcp);
    s->reading = false;
    return;
  }
  stream_start(s);
  if (s->tls && s->tls_ready)
    defer_post(s->loop, &s->resume_ev, resume_cb, s);
}

static void connect_cb(uv_connect_t *req, int status) {
  stream *s = req->data;
  if (s->closing)
    return;
  s->cbs->on_connect(s->ctx, status < 0 ? uv_strerror(status) : NULL);
}

static void conn_ev_cb(void *arg) {
  stream *s = arg;
  s->cbs->on_connect(s->ctx, s->fail_reason);
}

void stream_connect(stream *s, const struct sockaddr *addr) {
  s->connect_req.data = s;
  int rc = uv_tcp_connect(&s->connect_req, &s->tcp, addr, connect_cb);
  if (rc < 0) {
    /* Refused before any packet (no route, bad family): reported like a
     * refused connection, from the loop. */
    snprintf(s->fail_reason, sizeof s->fail_reason, "%s", uv_strerror(rc));
    defer_post(s->loop, &s->conn_ev, conn_ev_cb, s);
  }
}

int stream_start_tls(stream *s, tls_ctx *ctx, const char *server_name, bool server) {
  if (s->tls)
    return STP_ESTATE;
  s->tls = tls_conn_new(ctx, server_name, server);
  if (!s->tls) {
    fail(s, "cannot create TLS session", true, false);
    return STP_ENOMEM;
  }
  s->tls_server = server;
  if (!server)
    drive_tls(s); /* sends the ClientHello */
  return 0;
}

const char *stream_tls_version(const stream *s) {
  return s->tls && s->tls_ready ? tls_conn_version(s->tls) : NULL;
}

const char *stream_tls_cipher(const stream *s) {
  return s->tls && s->tls_ready ? tls_conn_cipher(s->tls) : NULL;
}

void stream_close_after_flush(stream *s) {
  if (s->closing)
    return;
  if (s->reading)
    uv_read_stop((uv_stream_t *)&s->tcp);
  s->reading = false;
  if (s->tls && s->tls_ready && !s->failed) {
    tls_conn_shutdown(s->tls);
    flush_tls(s);
  }
  if (s->queued == 0 || s->failed) {
    do_close(s);
    return;
  }
  s->flush_then_close = true;
}

void stream_close(stream *s) {
  do_close(s);
}
