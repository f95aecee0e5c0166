/* http_client.h - HTTP/1.1 requests on the loop: the token fetch now, the
 * HTTP API upstreams (Graph sendMail and upload sessions, Gmail media
 * upload) next.
 *
 * Owns: for each call, its dial (dialer.h), its connection (stream.h, TLS
 * verified against the caller's tls_ctx with the URL's host as the name),
 * the request bytes, a bounded response parser (http1.h) and one timer; for
 * a client, at most one idle keep-alive connection per origin.
 * Guarantees: `done` runs exactly once per call, from the loop - never from
 * inside http_request() or http_call_resume(), even for a failure known at
 * once - unless http_call_cancel() came first; the body source is called
 * from the loop only, never for more than the Content-Length it declared,
 * and only while the connection's write queue is below STREAM_HIGH_WATER,
 * so a 35 MB upload holds a few hundred KiB; a response is never held past
 * its bound (default 64 KiB, headers and framing included); a call ends by
 * its total timeout, or earlier when no byte moved either way for the
 * stall time; request and response memory is wiped (bearer tokens, form
 * secrets). A connection is reused only after a complete, length-delimited
 * response to a request whose body was sent whole; a request that finds a
 * reused connection closed before any answer is sent again on a new one
 * when it is idempotent (RFC 9110 9.2.2) and its body can be replayed.
 */
#ifndef STP_HTTP_CLIENT_H
#define STP_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "smtp-tls-proxy/http1.h"
#include "tls.h"

typedef struct http_client http_client;
typedef struct http_call http_call;

#define HTTP_DEFAULT_TIMEOUT_MS 30000
#define HTTP_IDLE_MS 30000 /* an idle keep-alive connection is closed after this */

/* A streamed request body: copy up to cap bytes into buf. Returns the
 * count (> 0), 0 when nothing is ready yet (call http_call_resume() once
 * it is), or < 0 to abandon the call (HTTP_FAIL_BODY). */
typedef long (*http_body_fn)(void *arg, char *buf, size_t cap);

typedef struct http_req {
  const char *method; /* "GET", "POST", "PUT", ... */
  const char *url;    /* http:// or https:// (see url.h) */
  const http1_header *headers;
  size_t n_headers;
  /* The body: from memory (copied at once, so it need not outlive the
   * call), or streamed from body_fn, exactly body_size bytes. Neither: no
   * body, and no Content-Length unless the method is POST or PUT. */
  const char *body;
  size_t body_len;
  http_body_fn body_fn;
  void *body_arg;
  uint64_t body_size;
  tls_ctx *tls;        /* required for https; borrowed, must outlive the call */
  size_t response_max; /* 0: HTTP1_RESPONSE_MAX */
  /* Large answers (http1_response_skip): with skip_max, body bytes past
   * body_keep are read and dropped, up to skip_max of them; tap sees
   * every body byte. 0: the whole response within response_max. */
  size_t body_keep;
  uint64_t skip_max;
  void (*tap)(void *arg, const char *p, size_t n);
  void *tap_arg;
  uint64_t timeout_ms; /* the whole call; 0: HTTP_DEFAULT_TIMEOUT_MS */
  uint64_t stall_ms;   /* no byte in or out for this long; 0: no limit */
  bool keep_alive;     /* with a client: reuse and keep its connection */
} http_req;

typedef enum {
  HTTP_OK = 0,
  HTTP_FAIL_REQUEST, /* bad URL or header, or https without a tls_ctx */
  HTTP_FAIL_DNS,
  HTTP_FAIL_CONNECT,
  HTTP_FAIL_TLS,
  HTTP_FAIL_CLOSED,   /* closed or reset before a complete answer */
  HTTP_FAIL_PROTOCOL, /* malformed response */
  HTTP_FAIL_TOO_BIG,  /* response over response_max */
  HTTP_FAIL_TIMEOUT,  /* the total or the stall timeout */
  HTTP_FAIL_BODY      /* body_fn gave up or broke its promise */
} http_fail;

/* r: the complete response (status, headers, decoded body), valid during
 * the call only; or NULL with why and a one-line reason naming the host
 * (never a header value or a body byte); NULL with HTTP_OK for
 * http_preconnect. */
typedef void (*http_done_fn)(void *arg, const http1_response *r, http_fail why, const char *err);

/* A client keeps idle connections for reuse; calls may also be made
 * without one (client NULL: one connection per call, "Connection: close"). */
http_client *http_client_new(uv_loop_t *loop);
/* How long a parked connection is kept (0: HTTP_IDLE_MS). */
void http_client_set_idle_ms(http_client *c, uint64_t ms);
/* Close the idle connections; the client's calls must be over or
 * cancelled. Memory is released from close callbacks. */
void http_client_free(http_client *c);
size_t http_client_idle_count(const http_client *c);

http_call *http_request(uv_loop_t *loop, http_client *c, const http_req *req, http_done_fn done,
                        void *arg);
/* Connect to url's origin ahead of the calls that will use it (an API
 * upstream proves it can reach its API before it says it is ready): dial,
 * TLS verified as for a request, nothing sent; the connection is parked in
 * the client (needs a client) for the next call to that origin. `done`
 * gets r == NULL with HTTP_OK when it is up (also when one was parked
 * already), or a failure as a request would. */
http_call *http_preconnect(uv_loop_t *loop, http_client *c, const char *url, tls_ctx *tls,
                           uint64_t timeout_ms, http_done_fn done, void *arg);
/* body_fn returned 0 and has bytes now. */
void http_call_resume(http_call *call);
/* No callback follows; the connection is closed. Not after `done`. */
void http_call_cancel(http_call *call);

#endif
