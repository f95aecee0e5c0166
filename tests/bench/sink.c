/* sink.c - a fast upstream SMTP sink for the benchmark (tests/bench/run.sh).
 *
 * Owns: two listeners on 127.0.0.1, one offering STARTTLS (plain SMTP works
 * on it too: STARTTLS is offered, not required) and one speaking implicit
 * TLS. Any AUTH (PLAIN, LOGIN) is accepted; MAIL, RCPT get 250; the message
 * is scanned for CRLF "." CRLF and discarded; the final dot gets 250.
 *
 * Guarantees: memory per connection is bounded (one command line of 16 KiB
 * plus what TLS holds); nothing of a message is kept. A stats file, written
 * atomically (tmp + rename) every 20 ms when it changed, holds
 * "MSGS BYTES AUTHS TLS_HANDSHAKES\n", so a load generator can wait until every message handed to
 * a store-and-forward relay (Postfix) has really arrived here.
 *
 * usage: sink --cert FILE --key FILE [--starttls-port P] [--implicit-port P]
 *             [--stats FILE]
 * Prints "READY starttls=PORT implicit=PORT" on stdout once listening.
 * Loopback only, on purpose. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <uv.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#define LINE_CAP 16384
#define READ_CAP 65536

enum { ST_CMD, ST_DATA, ST_AUTH_PLAIN, ST_AUTH_USER, ST_AUTH_PASS };

typedef struct conn {
  uv_tcp_t tcp;
  SSL *ssl;
  int implicit;      /* listener kind */
  int greet_pending; /* implicit TLS: greet once the handshake is done */
  int st;
  int dstate; /* end-of-data scanner, see data_scan */
  int closing;
  int close_after_flush;
  uint64_t msg_bytes;
  size_t linelen;
  char *out;
  size_t outlen, outcap;
  char line[LINE_CAP];
} conn;

typedef struct wreq {
  uv_write_t req;
  char *buf;
} wreq;

static SSL_CTX *g_ctx;
static uint64_t g_msgs, g_bytes, g_auths, g_tls, g_written_msgs = UINT64_MAX;
static const char *g_stats;
static char g_readbuf[READ_CAP];
static char g_plain[READ_CAP];

static void conn_close_cb(uv_handle_t *h) {
  conn *c = h->data;
  if (c->ssl)
    SSL_free(c->ssl);
  free(c->out);
  free(c);
}

static void conn_close(conn *c) {
  if (c->closing)
    return;
  c->closing = 1;
  uv_close((uv_handle_t *)&c->tcp, conn_close_cb);
}

static void out_raw(conn *c, const char *p, size_t n) {
  if (c->outlen + n > c->outcap) {
    size_t cap = c->outcap ? c->outcap : 4096;
    while (cap < c->outlen + n)
      cap *= 2;
    char *nb = realloc(c->out, cap);
    if (!nb)
      abort();
    c->out = nb;
    c->outcap = cap;
  }
  memcpy(c->out + c->outlen, p, n);
  c->outlen += n;
}

/* Everything the TLS engine produced goes to the socket in order, after any
 * plaintext queued before TLS started (the STARTTLS 220). */
static void drain_tls(conn *c) {
  BIO *w = SSL_get_wbio(c->ssl);
  size_t pend;
  while ((pend = BIO_ctrl_pending(w)) > 0) {
    char tmp[16384];
    int n = BIO_read(w, tmp, (int)(pend < sizeof tmp ? pend : sizeof tmp));
    if (n <= 0)
      break;
    out_raw(c, tmp, (size_t)n);
  }
}

static void write_cb(uv_write_t *req, int status) {
  (void)status;
  wreq *w = (wreq *)req;
  free(w->buf);
  free(w);
}

static void close_after_write_cb(uv_write_t *req, int status) {
  conn *c = req->data;
  write_cb(req, status);
  conn_close(c);
}

static void flush(conn *c) {
  if (c->closing)
    return;
  if (c->outlen == 0) {
    if (c->close_after_flush)
      conn_close(c);
    return;
  }
  wreq *w = malloc(sizeof *w);
  if (!w)
    abort();
  w->buf = c->out;
  uv_buf_t b = uv_buf_init(c->out, (unsigned)c->outlen);
  c->out = NULL;
  c->outlen = c->outcap = 0;
  w->req.data = c;
  int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1,
                    c->close_after_flush ? close_after_write_cb : write_cb);
  if (rc < 0) {
    free(w->buf);
    free(w);
    conn_close(c);
  }
}

static void reply(conn *c, const char *s) {
  size_t n = strlen(s);
  if (c->ssl) {
    ERR_clear_error();
    if (SSL_write(c->ssl, s, (int)n) <= 0) {
      conn_close(c);
      return;
    }
    drain_tls(c);
  } else {
    out_raw(c, s, n);
  }
}

static void greet(conn *c) {
  reply(c, "220 127.0.0.1 ESMTP bench sink\r\n");
}

static void stats_tick(uv_timer_t *t) {
  (void)t;
  if (!g_stats || g_msgs + g_auths + g_tls == g_written_msgs)
    return;
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp", g_stats);
  FILE *f = fopen(tmp, "w");
  if (!f)
    return;
  fprintf(f, "%" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", g_msgs, g_bytes, g_auths, g_tls);
  if (fclose(f) == 0 && rename(tmp, g_stats) == 0)
    g_written_msgs = g_msgs + g_auths + g_tls;
}

/* Scan message bytes for CRLF "." CRLF. States: 0 inside a line, 1 after
 * CR, 2 at the start of a line, 3 after a '.' at line start, 4 after ".\r".
 * Returns bytes consumed; *done is set when the terminator ended. */
static size_t data_scan(conn *c, const char *p, size_t n, int *done) {
  size_t i = 0;
  int s = c->dstate;
  *done = 0;
  while (i < n) {
    if (s == 0) {
      const char *cr = memchr(p + i, '\r', n - i);
      if (!cr) {
        i = n;
        break;
      }
      i = (size_t)(cr - p) + 1;
      s = 1;
      continue;
    }
    char ch = p[i++];
    switch (s) {
    case 1:
      s = ch == '\n' ? 2 : ch == '\r' ? 1 : 0;
      break;
    case 2:
      s = ch == '.' ? 3 : ch == '\r' ? 1 : 0;
      break;
    case 3:
      s = ch == '\r' ? 4 : 0;
      break;
    case 4:
      if (ch == '\n') {
        c->dstate = 2;
        *done = 1;
        return i;
      }
      s = ch == '\r' ? 1 : 0;
      break;
    }
  }
  c->dstate = s;
  return i;
}

static int verb_is(const char *line, const char *verb) {
  size_t n = strlen(verb);
  return strncasecmp(line, verb, n) == 0 && (line[n] == '\0' || line[n] == ' ');
}

/* Returns 1 when the rest of the current input must be dropped (STARTTLS:
 * plaintext pipelined after it is never executed). */
static int handle_line(conn *c) {
  char *l = c->line;
  size_t n = c->linelen;
  while (n > 0 && (l[n - 1] == '\n' || l[n - 1] == '\r'))
    n--;
  l[n] = '\0';

  switch (c->st) {
  case ST_AUTH_PLAIN:
  case ST_AUTH_PASS:
    c->st = ST_CMD;
    g_auths++;
    reply(c, "235 2.7.0 Authentication successful\r\n");
    return 0;
  case ST_AUTH_USER:
    c->st = ST_AUTH_PASS;
    reply(c, "334 UGFzc3dvcmQ6\r\n");
    return 0;
  default:
    break;
  }

  if (verb_is(l, "EHLO")) {
    reply(c, "250-127.0.0.1\r\n250-PIPELINING\r\n250-SIZE 2147483648\r\n"
             "250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n");
    if (!c->ssl && !c->implicit)
      reply(c, "250-STARTTLS\r\n");
    reply(c, "250-AUTH PLAIN LOGIN\r\n250 SMTPUTF8\r\n");
  } else if (verb_is(l, "HELO")) {
    reply(c, "250 127.0.0.1\r\n");
  } else if (verb_is(l, "STARTTLS")) {
    if (c->ssl || c->implicit) {
      reply(c, "503 5.5.1 TLS already active\r\n");
      return 0;
    }
    reply(c, "220 2.0.0 Ready to start TLS\r\n");
    c->ssl = SSL_new(g_ctx);
    if (!c->ssl) {
      conn_close(c);
      return 1;
    }
    SSL_set_bio(c->ssl, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
    SSL_set_accept_state(c->ssl);
    c->st = ST_CMD;
    return 1;
  } else if (verb_is(l, "AUTH")) {
    const char *mech = l + 5;
    const char *sp = strchr(mech, ' ');
    if (strncasecmp(mech, "PLAIN", 5) == 0) {
      if (sp && sp[1]) {
        g_auths++;
        reply(c, "235 2.7.0 Authentication successful\r\n");
      } else {
        c->st = ST_AUTH_PLAIN;
        reply(c, "334 \r\n");
      }
    } else if (strncasecmp(mech, "LOGIN", 5) == 0) {
      if (sp && sp[1]) {
        c->st = ST_AUTH_PASS;
        reply(c, "334 UGFzc3dvcmQ6\r\n");
      } else {
        c->st = ST_AUTH_USER;
        reply(c, "334 VXNlcm5hbWU6\r\n");
      }
    } else {
      reply(c, "504 5.5.4 Unrecognized authentication type\r\n");
    }
  } else if (verb_is(l, "MAIL")) {
    reply(c, "250 2.1.0 Ok\r\n");
  } else if (verb_is(l, "RCPT")) {
    reply(c, "250 2.1.5 Ok\r\n");
  } else if (verb_is(l, "DATA")) {
    c->st = ST_DATA;
    c->dstate = 2;
    c->msg_bytes = 0;
    reply(c, "354 End data with <CR><LF>.<CR><LF>\r\n");
  } else if (verb_is(l, "RSET") || verb_is(l, "NOOP")) {
    reply(c, "250 2.0.0 Ok\r\n");
  } else if (verb_is(l, "QUIT")) {
    reply(c, "221 2.0.0 Bye\r\n");
    c->close_after_flush = 1;
    return 1;
  } else {
    reply(c, "502 5.5.2 Error: command not recognized\r\n");
  }
  return 0;
}

static void feed_plain(conn *c, const char *p, size_t n) {
  while (n > 0 && !c->closing) {
    if (c->st == ST_DATA) {
      int done;
      size_t used = data_scan(c, p, n, &done);
      c->msg_bytes += used;
      p += used;
      n -= used;
      if (done) {
        g_msgs++;
        g_bytes += c->msg_bytes;
        c->st = ST_CMD;
        reply(c, "250 2.0.0 Ok: queued\r\n");
      }
      continue;
    }
    const char *nl = memchr(p, '\n', n);
    size_t take = nl ? (size_t)(nl - p) + 1 : n;
    if (c->linelen + take >= LINE_CAP) {
      reply(c, "500 5.5.2 Error: line too long\r\n");
      c->close_after_flush = 1;
      return;
    }
    memcpy(c->line + c->linelen, p, take);
    c->linelen += take;
    p += take;
    n -= take;
    if (nl) {
      int drop = handle_line(c);
      c->linelen = 0;
      if (drop)
        return;
    }
  }
}

static void alloc_cb(uv_handle_t *h, size_t sz, uv_buf_t *b) {
  (void)h;
  (void)sz;
  *b = uv_buf_init(g_readbuf, sizeof g_readbuf);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  conn *c = s->data;
  if (nread < 0) {
    conn_close(c);
    return;
  }
  if (nread == 0)
    return;
  if (!c->ssl) {
    feed_plain(c, b->base, (size_t)nread);
    flush(c);
    return;
  }
  BIO_write(SSL_get_rbio(c->ssl), b->base, (int)nread);
  if (!SSL_is_init_finished(c->ssl)) {
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r <= 0) {
      int e = SSL_get_error(c->ssl, r);
      drain_tls(c);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        flush(c);
      } else {
        flush(c);
        conn_close(c);
      }
      return;
    }
    drain_tls(c);
    g_tls++;
    if (c->greet_pending) {
      c->greet_pending = 0;
      greet(c);
    }
  }
  for (;;) {
    if (c->closing || c->close_after_flush)
      break;
    ERR_clear_error();
    int r = SSL_read(c->ssl, g_plain, sizeof g_plain);
    if (r > 0) {
      feed_plain(c, g_plain, (size_t)r);
      continue;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
      drain_tls(c);
      flush(c);
      conn_close(c);
      return;
    }
    break;
  }
  drain_tls(c);
  flush(c);
}

static void on_connection(uv_stream_t *srv, int status) {
  if (status < 0)
    return;
  conn *c = calloc(1, sizeof *c);
  if (!c)
    abort();
  c->implicit = srv->data != NULL;
  uv_tcp_init(srv->loop, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(srv, (uv_stream_t *)&c->tcp) < 0) {
    conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  if (c->implicit) {
    c->ssl = SSL_new(g_ctx);
    SSL_set_bio(c->ssl, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
    SSL_set_accept_state(c->ssl);
    c->greet_pending = 1;
  } else {
    greet(c);
    flush(c);
  }
  uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}

static int listen_on(uv_loop_t *loop, uv_tcp_t *h, int port, int implicit) {
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", port, &a);
  uv_tcp_init(loop, h);
  h->data = implicit ? (void *)1 : NULL;
  int rc = uv_tcp_bind(h, (const struct sockaddr *)&a, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)h, 4096, on_connection);
  if (rc < 0) {
    fprintf(stderr, "sink: listen 127.0.0.1:%d: %s\n", port, uv_strerror(rc));
    return -1;
  }
  struct sockaddr_in got;
  int len = sizeof got;
  uv_tcp_getsockname(h, (struct sockaddr *)&got, &len);
  return ntohs(got.sin_port);
}

int main(int argc, char **argv) {
  const char *cert = NULL, *key = NULL;
  int sport = 0, iport = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) {
      fprintf(stderr, "sink: %s needs a value\n", a);
      return 2;
    }
    if (!strcmp(a, "--cert"))
      cert = v;
    else if (!strcmp(a, "--key"))
      key = v;
    else if (!strcmp(a, "--starttls-port"))
      sport = atoi(v);
    else if (!strcmp(a, "--implicit-port"))
      iport = atoi(v);
    else if (!strcmp(a, "--stats"))
      g_stats = v;
    else {
      fprintf(stderr, "usage: sink --cert F --key F [--starttls-port P] [--implicit-port P] "
                      "[--stats FILE]\n");
      return 2;
    }
    i++;
  }
  if (!cert || !key) {
    fprintf(stderr, "sink: --cert and --key are required\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  g_ctx = SSL_CTX_new(TLS_server_method());
  SSL_CTX_set_min_proto_version(g_ctx, TLS1_2_VERSION);
  if (SSL_CTX_use_certificate_chain_file(g_ctx, cert) != 1 ||
      SSL_CTX_use_PrivateKey_file(g_ctx, key, SSL_FILETYPE_PEM) != 1) {
    fprintf(stderr, "sink: cannot load %s / %s\n", cert, key);
    return 1;
  }

  uv_loop_t *loop = uv_default_loop();
  uv_tcp_t ls, li;
  sport = listen_on(loop, &ls, sport, 0);
  iport = listen_on(loop, &li, iport, 1);
  if (sport < 0 || iport < 0)
    return 1;
  uv_timer_t t;
  uv_timer_init(loop, &t);
  uv_timer_start(&t, stats_tick, 0, 20);
  g_written_msgs = UINT64_MAX;
  printf("READY starttls=%d implicit=%d\n", sport, iport);
  fflush(stdout);
  return uv_run(loop, UV_RUN_DEFAULT);
}
