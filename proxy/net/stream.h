/* stream.h - one TCP connection on libuv, optionally wrapped in TLS.
 *
 * Owns: the uv_tcp_t, its write queue and the TLS engine. Reports events to
 * its owner through callbacks and never frees itself inside one: the object
 * is freed after on_closed, which is always the last callback. After
 * stream_close() no other callback is made. No callback is ever made from
 * inside a stream_* call: failures found there arrive from the loop.
 * Back-pressure: stream_queued() tells how many bytes wait to be written;
 * on_drain fires when that falls to STREAM_LOW_WATER after exceeding
 * STREAM_HIGH_WATER.
 */
#ifndef STP_STREAM_H
#define STP_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "tls.h"

#define STREAM_HIGH_WATER (256 * 1024)
#define STREAM_LOW_WATER (64 * 1024)

typedef struct stream stream;

typedef struct stream_cbs {
  /* Only for stream_connect: error is NULL on success, else the reason. */
  void (*on_connect)(void *ctx, const char *error);
  void (*on_read)(void *ctx, const char *p, size_t n);
  /* EOF, reset, or TLS failure; `tls_verify` when a certificate was
   * refused. The owner should close the stream. */
  void (*on_error)(void *ctx, const char *reason, bool tls_failure, bool tls_verify);
  void (*on_tls)(void *ctx);
  void (*on_drain)(void *ctx);
  void (*on_closed)(void *ctx);
} stream_cbs;

/* A stream whose TCP handle is initialised on `loop`; accept into
 * stream_tcp() or call stream_connect(). */
stream *stream_new(uv_loop_t *loop, const stream_cbs *cbs, void *ctx);
uv_tcp_t *stream_tcp(stream *s);
/* Hand the stream to another owner: later callbacks (on_closed included)
 * go to cbs/ctx. The dialer uses it to give away a connected stream. */
void stream_set_owner(stream *s, const stream_cbs *cbs, void *ctx);
/* The outcome arrives through on_connect, always from the loop. */
void stream_connect(stream *s, const struct sockaddr *addr);
/* Start reading (after accept or connect); a failure arrives as on_error. */
void stream_start(stream *s);
void stream_pause(stream *s, bool paused);
/* 0, or STP_EIO when the stream has failed (on_error follows, from the
 * loop, once). */
int stream_write(stream *s, const char *p, size_t n);
size_t stream_queued(const stream *s);
/* For debug logs: open, paused, tls-handshake, tls, flushing, failed, ... */
const char *stream_state_name(const stream *s);
/* Begin TLS; bytes written before this call go out in plaintext first.
 * A failure (also one to create the session) arrives as on_error. */
int stream_start_tls(stream *s, tls_ctx *ctx, const char *server_name, bool server);
const char *stream_tls_version(const stream *s); /* NULL without TLS */
const char *stream_tls_cipher(const stream *s);
/* Give back bytes the owner read but that belong to what follows (the
 * device's first bytes behind a PROXY header): they are delivered again
 * from the loop, through TLS if it was started by then, before anything
 * read later (reading waits for them). Copied; once per stream. */
void stream_unread(stream *s, const char *p, size_t n);
/* Close once the write queue is empty (bounded by the caller's timers). */
void stream_close_after_flush(stream *s);
/* Close now; queued writes are dropped. */
void stream_close(stream *s);

#endif
