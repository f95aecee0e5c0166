/* httpd.h - an HTTP/1.1 server on the test loop, a strict stand-in for the
 * token endpoints and HTTP APIs the client talks to (no real one can run
 * in-process on our loop). It reads request heads with the core's parser
 * (http1.h), counts a Content-Length body without keeping it (a hash and
 * the first bytes), and lets the test answer each request with whatever
 * bytes it likes, or not at all. Plain or TLS (the test PKI).
 */
#ifndef STP_NET_HTTPD_H
#define STP_NET_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../proxy/net/stream.h"

typedef struct httpd httpd;
typedef struct hd_conn hd_conn;

typedef struct hd_request {
  char method[16];
  char target[256];
  char head[4096]; /* the whole head, NUL-terminated */
  uint64_t body_len;
  uint64_t body_hash; /* FNV-1a of the body */
  char body_start[256];
  int conn_id; /* which accepted connection (1, 2, ...) */
} hd_request;

typedef void (*hd_handler)(httpd *h, hd_conn *c, const hd_request *r);

struct httpd {
  uv_tcp_t srv;
  tls_ctx *tls;
  int port;
  hd_handler handler;
  void *data;
  int n_conns, n_requests, n_closed;
  hd_request last;
  bool paused;        /* new connections do not read (tests back-pressure) */
  uint64_t body_read; /* body bytes read so far, all requests */
  hd_conn *conns;
};

/* tls: NULL for plain, else the server certificate's base name
 * ("server", "wrongname"). */
void httpd_start(httpd *h, const char *tls, hd_handler handler);
void httpd_stop(httpd *h); /* then run the loop a little */
void hd_send(hd_conn *c, const char *p, size_t n);
void hd_sendf(hd_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void hd_close(hd_conn *c);         /* after what was sent */
void hd_pause(hd_conn *c, bool p); /* stop or resume reading */
hd_conn *hd_first(httpd *h);

#endif
