/* stream.c - libuv TCP with an optional memory-BIO TLS layer (see stream.h).
 *
 * Reads land in one loop-wide buffer (the data is consumed synchronously by
 * the owner), so an idle connection costs no read buffer. TLS plaintext that
 * is still buffered when the owner pauses is delivered from an idle handle
 * after it resumes, never re-entrantly from stream_pause().
 */
#include "stream.h"

#include <stdlib.h>
#include <string.h>

#include "smtp-tls-proxy/util.h"

#define STREAM_READ_MAX (64 * 1024)

struct stream {
  uv_tcp_t tcp;
  uv_idle_t resume; /* delivers buffered TLS plaintext after a resume */
  uv_connect_t connect_req;
  const stream_cbs *cbs;
  void *ctx;
  tls_conn *tls;
  bool tls_ready;
  bool tls_server;
  size_t queued;
  bool above_high;
  bool reading, paused, closing, flush_then_close, failed;
  int handles; /* open uv handles; free when 0 */
};

typedef struct wreq {
  uv_write_t req;
  stream *s;
  size_t len;
  char data[];
} wreq;

static char g_read_buf[STREAM_READ_MAX];
static char g_plain_buf[STREAM_READ_MAX];

static void handle_closed_cb(uv_handle_t *h) {
  stream *s = h->data;
  if (--s->handles > 0)
    return;
  tls_conn_free(s->tls);
  s->cbs->on_closed(s->ctx);
  free(s);
}

static void do_close(stream *s) {
  if (uv_is_closing((uv_handle_t *)&s->tcp))
    return;
  s->closing = true;
  uv_close((uv_handle_t *)&s->resume, handle_closed_cb);
  uv_close((uv_handle_t *)&s->tcp, handle_closed_cb);
}

static void fail(stream *s, const char *reason, bool tls, bool verify) {
  if (s->closing || s->failed)
    return;
  s->failed = true;
  if (s->reading)
    uv_read_stop((uv_stream_t *)&s->tcp);
  s->reading = false;
  s->cbs->on_error(s->ctx, reason, tls, verify);
}

stream *stream_new(uv_loop_t *loop, const stream_cbs *cbs, void *ctx) {
  stream *s = stp_xcalloc(1, sizeof *s);
  s->cbs = cbs;
  s->ctx = ctx;
  uv_tcp_init(loop, &s->tcp);
  uv_idle_init(loop, &s->resume);
  s->tcp.data = s;
  s->resume.data = s;
  s->handles = 2;
  return s;
}

uv_tcp_t *stream_tcp(stream *s) {
  return &s->tcp;
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
    return r;
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
      return r;
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

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *b) {
  stream *s = st->data;
  if (nread == 0 || s->closing)
    return;
  if (nread < 0) {
    fail(s, nread == UV_EOF ? "connection closed by peer" : uv_strerror((int)nread), false, false);
    return;
  }
  if (!s->tls) {
    s->cbs->on_read(s->ctx, b->base, (size_t)nread);
    return;
  }
  if (tls_conn_feed(s->tls, b->base, (size_t)nread) < 0) {
    fail(s, "out of memory", true, false);
    return;
  }
  drive_tls(s);
}

int stream_start(stream *s) {
  if (s->reading || s->closing)
    return 0;
  int r = uv_read_start((uv_stream_t *)&s->tcp, alloc_cb, read_cb);
  if (r == 0)
    s->reading = true;
  return r;
}

static void resume_cb(uv_idle_t *h) {
  stream *s = h->data;
  uv_idle_stop(h);
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
    uv_idle_start(&s->resume, resume_cb);
}

static void connect_cb(uv_connect_t *req, int status) {
  stream *s = req->data;
  if (s->closing)
    return;
  s->cbs->on_connect(s->ctx, status);
}

int stream_connect(stream *s, const struct sockaddr *addr) {
  s->connect_req.data = s;
  return uv_tcp_connect(&s->connect_req, &s->tcp, addr, connect_cb);
}

int stream_start_tls(stream *s, tls_ctx *ctx, const char *server_name, bool server) {
  if (s->tls)
    return STP_ESTATE;
  s->tls = tls_conn_new(ctx, server_name, server);
  if (!s->tls)
    return STP_ENOMEM;
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
