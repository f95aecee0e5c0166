/* loadgen.c - SMTP load generator for the benchmark (tests/bench/run.sh).
 *
 * Owns: N concurrent client sessions on one libuv loop, each doing greeting,
 * EHLO, optional STARTTLS (+ EHLO again), optional AUTH PLAIN, then M
 * messages of S octets (MAIL, RCPT, DATA, body, final dot; strictly in
 * lock-step, no PIPELINING, as a legacy device would), then QUIT. TLS uses
 * BoringSSL over memory BIOs; the body is streamed from one shared pattern
 * buffer with at most 256 KiB in flight per session, so a 100 MiB message
 * needs no 100 MiB buffer.
 *
 * A message's latency runs from sending MAIL to its final reply. A non-2xx
 * final reply (or a 4xx/5xx to MAIL, RCPT, DATA) counts as an error, and so
 * does a session that breaks before it finished.
 *
 * --duration T stops starting new messages after T seconds (each session
 * finishes the one in flight), so every case is bounded by count and time.
 * --sink-stats FILE (the sink's counter file) makes the run end only when the
 * sink has received every accepted message: end-to-end time through a
 * store-and-forward relay.
 * --idle T opens the sessions, does EHLO (and STARTTLS/AUTH if asked), prints
 * "IDLE_READY n=N" and holds them for T seconds.
 *
 * Output: one line
 *   RESULT label=.. msgs=.. seconds=.. msg_per_s=.. p50_ms=.. p99_ms=..
 *          bytes_per_s=.. errors=.. mean_ms=.. p90_ms=.. max_ms=..
 * Loopback only: --host must be 127.0.0.1 or ::1. */
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <uv.h>

#include <openssl/base64.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#define PAT_LINES 819
#define PAT_LEN (PAT_LINES * 80) /* 65520: 78 octets + CRLF per line */
#define INFLIGHT_MAX (256 * 1024)
#define CONNECT_RAMP 64 /* sessions between connect and ready at once */

enum {
  C_CONNECT,
  C_GREET,
  C_EHLO,
  C_STARTTLS,
  C_HANDSHAKE,
  C_AUTH,
  C_MAIL,
  C_RCPT,
  C_DATA,
  C_BODY,
  C_RSET,
  C_QUIT,
  C_IDLE,
};
enum { M_PLAIN, M_STARTTLS, M_IMPLICIT };

typedef struct sess {
  uv_tcp_t tcp;
  uv_connect_t creq;
  SSL *ssl;
  int st;
  int closing;
  int ready; /* counted as set up (for the ramp) */
  int authed;
  int msgs;
  int conns; /* connections this slot has made (--connections) */
  uint64_t t0;
  uint64_t off;    /* body octets queued */
  size_t inflight; /* octets handed to uv_write and not yet written */
  size_t linelen;
  char line[4096];
} sess;

typedef struct wreq {
  uv_write_t req;
  sess *s;
  size_t len;
  char *owned;
} wreq;

/* options */
static const char *o_host = "127.0.0.1";
static int o_port, o_mode = M_PLAIN, o_sessions = 1, o_messages = 1, o_connections = 1;
static uint64_t o_size = 10240;
static double o_duration = 0, o_idle = -1, o_timeout = 600;
static const char *o_auth, *o_label = "run", *o_sink_stats, *o_ca;
static int o_verbose;

/* state */
static uv_loop_t *g_loop;
static SSL_CTX *g_ctx;
static sess *g_sess;
static int g_started, g_ready, g_closed;
static int g_stop;
static uint64_t g_start_ns;
static uint64_t g_ok, g_errors;
static double *g_lat;
static size_t g_nlat, g_caplat;
static char g_hdr[512];
static size_t g_hdrlen;
static char g_pat[PAT_LEN];
static char *g_authline;
static uv_timer_t g_stop_timer, g_kill_timer;
static struct sockaddr_storage g_addr;
static char g_rbuf[65536], g_pbuf[65536];

static void start_one(void);
static void sess_close(sess *s);
static void stop_cb(uv_timer_t *t);
void pump(sess *s);
static int g_idle_ok;

/* Idle mode: once every session is either set up or gone, say so and hold. */
static void check_all_ready(void) {
  if (o_idle < 0 || g_ready != o_sessions)
    return;
  printf("IDLE_READY n=%d\n", g_idle_ok);
  fflush(stdout);
  uv_timer_start(&g_stop_timer, stop_cb, (uint64_t)(o_idle * 1000), 0);
}

static void err(sess *s, const char *what) {
  g_errors++;
  if (o_verbose || g_errors <= 5)
    fprintf(stderr, "loadgen: session %d: %s\n", (int)(s - g_sess), what);
}

static void lat_add(double ms) {
  if (g_nlat == g_caplat) {
    g_caplat = g_caplat ? g_caplat * 2 : 4096;
    g_lat = realloc(g_lat, g_caplat * sizeof *g_lat);
    if (!g_lat)
      abort();
  }
  g_lat[g_nlat++] = ms;
}

static void write_cb(uv_write_t *req, int status) {
  wreq *w = (wreq *)req;
  sess *s = w->s;
  s->inflight -= w->len;
  free(w->owned);
  free(w);
  if (status < 0 || s->closing)
    return;
  if (s->st == C_BODY)
    pump(s);
}

/* Raw bytes to the socket; owned is freed after the write, or NULL when p is
 * static (the shared body pattern). */
static void raw_write(sess *s, const char *p, size_t n, char *owned) {
  wreq *w = malloc(sizeof *w);
  if (!w)
    abort();
  w->s = s;
  w->len = n;
  w->owned = owned;
  uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
  s->inflight += n;
  if (uv_write(&w->req, (uv_stream_t *)&s->tcp, &b, 1, write_cb) < 0) {
    s->inflight -= n;
    free(owned);
    free(w);
    err(s, "write failed");
    sess_close(s);
  }
}

static void drain_tls(sess *s) {
  BIO *wb = SSL_get_wbio(s->ssl);
  size_t pend = BIO_ctrl_pending(wb);
  if (pend == 0)
    return;
  char *buf = malloc(pend);
  if (!buf)
    abort();
  int n = BIO_read(wb, buf, (int)pend);
  if (n <= 0) {
    free(buf);
    return;
  }
  raw_write(s, buf, (size_t)n, buf);
}

static void send_bytes(sess *s, const char *p, size_t n, int is_static) {
  if (s->closing)
    return;
  if (s->ssl) {
    ERR_clear_error();
    if (SSL_write(s->ssl, p, (int)n) <= 0) {
      err(s, "SSL_write failed");
      sess_close(s);
      return;
    }
    drain_tls(s);
    return;
  }
  if (is_static) {
    raw_write(s, p, n, NULL);
  } else {
    char *c = malloc(n);
    if (!c)
      abort();
    memcpy(c, p, n);
    raw_write(s, c, n, c);
  }
}

static void cmd(sess *s, const char *line, int st) {
  s->st = st;
  send_bytes(s, line, strlen(line), 0);
}

static uint64_t now_ns(void) {
  return uv_hrtime();
}

/* The body: header block, then the pattern (repeated, possibly cut mid-line),
 * then CRLF "." CRLF. Pattern lines never start with '.', so no stuffing. */
static uint64_t body_total(void) {
  return o_size + 5;
}

void pump(sess *s) {
  while (!s->closing && s->st == C_BODY && s->inflight < INFLIGHT_MAX && s->off < body_total()) {
    const char *p;
    size_t n;
    uint64_t off = s->off;
    if (off < g_hdrlen) {
      p = g_hdr + off;
      n = g_hdrlen - off;
    } else if (off < o_size) {
      uint64_t po = (off - g_hdrlen) % PAT_LEN;
      p = g_pat + po;
      n = PAT_LEN - po;
      if (n > o_size - off)
        n = (size_t)(o_size - off);
    } else {
      static const char tail[] = "\r\n.\r\n";
      p = tail + (off - o_size);
      n = (size_t)(body_total() - off);
    }
    s->off += n;
    send_bytes(s, p, n, 1);
  }
}

static void next_message(sess *s) {
  if (g_stop || s->msgs >= o_messages) {
    cmd(s, "QUIT\r\n", C_QUIT);
    return;
  }
  s->t0 = now_ns();
  cmd(s, "MAIL FROM:<bench@client.example> SIZE=0\r\n", C_MAIL);
}

static void set_up(sess *s) {
  if (!s->ready) {
    s->ready = 1;
    g_ready++;
    if (g_started < o_sessions)
      start_one();
  }
  if (o_idle >= 0) {
    s->st = C_IDLE;
    g_idle_ok++;
    check_all_ready();
    return;
  }
  next_message(s);
}

static void after_ehlo(sess *s) {
  if (o_mode == M_STARTTLS && !s->ssl) {
    cmd(s, "STARTTLS\r\n", C_STARTTLS);
    return;
  }
  if (o_auth && !s->authed) {
    cmd(s, g_authline, C_AUTH);
    return;
  }
  set_up(s);
}

static void start_tls(sess *s) {
  s->ssl = SSL_new(g_ctx);
  if (!s->ssl)
    abort();
  SSL_set_bio(s->ssl, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
  SSL_set_connect_state(s->ssl);
  SSL_set_tlsext_host_name(s->ssl, "localhost");
  ERR_clear_error();
  SSL_do_handshake(s->ssl);
  drain_tls(s);
}

static void on_reply(sess *s, int code) {
  int ok2 = code >= 200 && code < 300;
  switch (s->st) {
  case C_GREET:
    if (code != 220) {
      err(s, "greeting not 220");
      sess_close(s);
      return;
    }
    cmd(s, "EHLO loadgen.bench\r\n", C_EHLO);
    return;
  case C_EHLO:
    if (code != 250) {
      err(s, "EHLO refused");
      sess_close(s);
      return;
    }
    after_ehlo(s);
    return;
  case C_STARTTLS:
    if (code != 220) {
      err(s, "STARTTLS refused");
      sess_close(s);
      return;
    }
    s->st = C_HANDSHAKE;
    start_tls(s);
    return;
  case C_AUTH:
    if (code != 235) {
      err(s, "AUTH refused");
      sess_close(s);
      return;
    }
    s->authed = 1;
    set_up(s);
    return;
  case C_MAIL:
    if (!ok2) {
      err(s, "MAIL refused");
      cmd(s, "RSET\r\n", C_RSET);
      s->msgs++;
      return;
    }
    cmd(s, "RCPT TO:<sink@upstream.example>\r\n", C_RCPT);
    return;
  case C_RCPT:
    if (!ok2) {
      err(s, "RCPT refused");
      cmd(s, "RSET\r\n", C_RSET);
      s->msgs++;
      return;
    }
    cmd(s, "DATA\r\n", C_DATA);
    return;
  case C_DATA:
    if (code != 354) {
      err(s, "DATA refused");
      cmd(s, "RSET\r\n", C_RSET);
      s->msgs++;
      return;
    }
    s->st = C_BODY;
    s->off = 0;
    pump(s);
    return;
  case C_BODY:
    s->msgs++;
    if (s->off < body_total()) {
      /* replied before the whole body went out: the server gave up */
      err(s, "reply before end of data");
      sess_close(s);
      return;
    }
    if (ok2) {
      g_ok++;
      lat_add((double)(now_ns() - s->t0) / 1e6);
    } else {
      char m[64];
      snprintf(m, sizeof m, "final reply %d", code);
      err(s, m);
    }
    next_message(s);
    return;
  case C_RSET:
    next_message(s);
    return;
  case C_QUIT:
    sess_close(s);
    return;
  default:
    err(s, "unexpected reply");
    sess_close(s);
    return;
  }
}

static void feed(sess *s, const char *p, size_t n) {
  while (n > 0 && !s->closing) {
    const char *nl = memchr(p, '\n', n);
    size_t take = nl ? (size_t)(nl - p) + 1 : n;
    if (s->linelen + take >= sizeof s->line) {
      err(s, "reply line too long");
      sess_close(s);
      return;
    }
    memcpy(s->line + s->linelen, p, take);
    s->linelen += take;
    p += take;
    n -= take;
    if (!nl)
      return;
    s->line[s->linelen] = '\0';
    size_t ll = s->linelen;
    s->linelen = 0;
    if (ll < 4 || s->line[0] < '2' || s->line[0] > '5') {
      err(s, "malformed reply");
      sess_close(s);
      return;
    }
    if (s->line[3] == '-')
      continue;
    int st_before = s->st;
    on_reply(s, atoi(s->line));
    /* after STARTTLS's 220 nothing in plaintext may follow */
    if (st_before == C_STARTTLS)
      return;
  }
}

static void alloc_cb(uv_handle_t *h, size_t sz, uv_buf_t *b) {
  (void)h;
  (void)sz;
  *b = uv_buf_init(g_rbuf, sizeof g_rbuf);
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *b) {
  sess *s = st->data;
  if (nread < 0) {
    if (s->st != C_QUIT && s->st != C_IDLE)
      err(s, nread == UV_EOF ? "connection closed by server" : uv_strerror((int)nread));
    else if (s->st == C_IDLE && !g_stop)
      err(s, "idle session closed by server");
    sess_close(s);
    return;
  }
  if (nread == 0)
    return;
  if (!s->ssl) {
    feed(s, b->base, (size_t)nread);
    return;
  }
  BIO_write(SSL_get_rbio(s->ssl), b->base, (int)nread);
  if (!SSL_is_init_finished(s->ssl)) {
    ERR_clear_error();
    int r = SSL_do_handshake(s->ssl);
    drain_tls(s);
    if (r <= 0) {
      int e = SSL_get_error(s->ssl, r);
      if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
        err(s, "TLS handshake failed");
        sess_close(s);
      }
      return;
    }
    if (s->st == C_HANDSHAKE)
      cmd(s, "EHLO loadgen.bench\r\n", C_EHLO);
  }
  for (;;) {
    if (s->closing)
      return;
    ERR_clear_error();
    int r = SSL_read(s->ssl, g_pbuf, sizeof g_pbuf);
    if (r > 0) {
      feed(s, g_pbuf, (size_t)r);
      continue;
    }
    int e = SSL_get_error(s->ssl, r);
    drain_tls(s);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
      if (s->st != C_QUIT)
        err(s, "TLS read failed");
      sess_close(s);
    }
    return;
  }
}

static void connect_one(sess *s);

static void close_cb(uv_handle_t *h) {
  sess *s = h->data;
  if (s->ssl) {
    SSL_free(s->ssl);
    s->ssl = NULL;
  }
  /* --connections: the slot reconnects, as a printer opens a new session
   * for every scan; each new session pays its own greeting, TLS and AUTH. */
  if (!g_stop && s->conns < o_connections && s->st == C_QUIT) {
    int conns = s->conns, ready = s->ready;
    memset(s, 0, sizeof *s);
    s->conns = conns;
    s->ready = ready;
    connect_one(s);
    return;
  }
  g_closed++;
  if (g_closed == o_sessions) {
    uv_timer_stop(&g_stop_timer);
    uv_timer_stop(&g_kill_timer);
    uv_close((uv_handle_t *)&g_stop_timer, NULL);
    uv_close((uv_handle_t *)&g_kill_timer, NULL);
  }
}

static void sess_close(sess *s) {
  if (s->closing)
    return;
  s->closing = 1;
  if (!s->ready) {
    /* never got set up: keep the ramp going */
    s->ready = 1;
    g_ready++;
    if (g_started < o_sessions)
      start_one();
    check_all_ready();
  }
  uv_close((uv_handle_t *)&s->tcp, close_cb);
}

static void connect_cb(uv_connect_t *req, int status) {
  sess *s = req->data;
  if (status < 0) {
    err(s, uv_strerror(status));
    sess_close(s);
    return;
  }
  uv_tcp_nodelay(&s->tcp, 1);
  uv_read_start((uv_stream_t *)&s->tcp, alloc_cb, read_cb);
  s->st = C_GREET;
  if (o_mode == M_IMPLICIT)
    start_tls(s);
}

static void start_one(void) {
  sess *s = &g_sess[g_started++];
  memset(s, 0, sizeof *s);
  connect_one(s);
}

static void connect_one(sess *s) {
  s->conns++;
  uv_tcp_init(g_loop, &s->tcp);
  s->tcp.data = s;
  s->creq.data = s;
  s->st = C_CONNECT;
  int rc = uv_tcp_connect(&s->creq, &s->tcp, (const struct sockaddr *)&g_addr, connect_cb);
  if (rc < 0) {
    err(s, uv_strerror(rc));
    sess_close(s);
  }
}

static void stop_cb(uv_timer_t *t) {
  (void)t;
  g_stop = 1;
  if (o_idle >= 0) {
    for (int i = 0; i < g_started; i++)
      if (!g_sess[i].closing && g_sess[i].st == C_IDLE)
        cmd(&g_sess[i], "QUIT\r\n", C_QUIT);
  }
}

static void kill_cb(uv_timer_t *t) {
  (void)t;
  fprintf(stderr, "loadgen: hard timeout, %d sessions still open\n", o_sessions - g_closed);
  for (int i = 0; i < g_started; i++)
    if (!g_sess[i].closing) {
      err(&g_sess[i], "timed out");
      sess_close(&g_sess[i]);
    }
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double pct(double p) {
  if (g_nlat == 0)
    return 0;
  size_t i = (size_t)ceil(p * (double)g_nlat) - 1;
  if (i >= g_nlat)
    i = g_nlat - 1;
  return g_lat[i];
}

static int read_sink(const char *f, uint64_t *msgs) {
  FILE *fp = fopen(f, "r");
  if (!fp)
    return -1;
  int ok = fscanf(fp, "%" SCNu64, msgs) == 1;
  fclose(fp);
  return ok ? 0 : -1;
}

static uint64_t parse_size(const char *v) {
  char *end;
  double d = strtod(v, &end);
  if (*end == 'k' || *end == 'K')
    d *= 1024;
  else if (*end == 'm' || *end == 'M')
    d *= 1024 * 1024;
  else if (*end == 'g' || *end == 'G')
    d *= 1024.0 * 1024 * 1024;
  return (uint64_t)d;
}

static void usage(void) {
  fprintf(stderr,
          "usage: loadgen --port P [--host 127.0.0.1] [--mode plain|starttls|implicit]\n"
          "               [--auth USER:PASS] [--sessions N] [--messages M] [--connections C]\n"
          "               [--size S[k|m]]\n"
          "               [--duration SEC] [--timeout SEC] [--sink-stats FILE]\n"
          "               [--idle SEC] [--ca FILE] [--label NAME] [-v]\n");
  exit(2);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-v")) {
      o_verbose = 1;
      continue;
    }
    if (i + 1 >= argc)
      usage();
    const char *v = argv[++i];
    if (!strcmp(a, "--host"))
      o_host = v;
    else if (!strcmp(a, "--port"))
      o_port = atoi(v);
    else if (!strcmp(a, "--mode"))
      o_mode = !strcmp(v, "plain")      ? M_PLAIN
               : !strcmp(v, "starttls") ? M_STARTTLS
               : !strcmp(v, "implicit") ? M_IMPLICIT
                                        : (usage(), 0);
    else if (!strcmp(a, "--auth"))
      o_auth = v;
    else if (!strcmp(a, "--sessions"))
      o_sessions = atoi(v);
    else if (!strcmp(a, "--messages"))
      o_messages = atoi(v);
    else if (!strcmp(a, "--connections"))
      o_connections = atoi(v);
    else if (!strcmp(a, "--size"))
      o_size = parse_size(v);
    else if (!strcmp(a, "--duration"))
      o_duration = atof(v);
    else if (!strcmp(a, "--timeout"))
      o_timeout = atof(v);
    else if (!strcmp(a, "--sink-stats"))
      o_sink_stats = v;
    else if (!strcmp(a, "--idle"))
      o_idle = atof(v);
    else if (!strcmp(a, "--ca"))
      o_ca = v;
    else if (!strcmp(a, "--label"))
      o_label = v;
    else
      usage();
  }
  if (o_port <= 0 || o_sessions <= 0 || o_messages <= 0 || o_connections <= 0)
    usage();
  if (strcmp(o_host, "127.0.0.1") != 0 && strcmp(o_host, "::1") != 0) {
    fprintf(stderr, "loadgen: loopback only (127.0.0.1 or ::1)\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (strchr(o_host, ':'))
    uv_ip6_addr(o_host, o_port, (struct sockaddr_in6 *)&g_addr);
  else
    uv_ip4_addr(o_host, o_port, (struct sockaddr_in *)&g_addr);

  g_hdrlen = (size_t)snprintf(g_hdr, sizeof g_hdr,
                              "From: <bench@client.example>\r\n"
                              "To: <sink@upstream.example>\r\n"
                              "Subject: smtp-tls-proxy benchmark\r\n"
                              "Message-ID: <bench@client.example>\r\n\r\n");
  if (o_size < g_hdrlen + 2) {
    fprintf(stderr, "loadgen: --size must be at least %zu\n", g_hdrlen + 2);
    return 2;
  }
  for (int l = 0; l < PAT_LINES; l++) {
    char *p = g_pat + l * 80;
    for (int k = 0; k < 78; k++)
      p[k] = (char)('A' + (l + k) % 26);
    p[78] = '\r';
    p[79] = '\n';
  }

  if (o_auth) {
    const char *colon = strchr(o_auth, ':');
    if (!colon)
      usage();
    size_t ul = (size_t)(colon - o_auth), pl = strlen(colon + 1);
    size_t rawlen = 1 + ul + 1 + pl;
    uint8_t *raw = malloc(rawlen);
    raw[0] = 0;
    memcpy(raw + 1, o_auth, ul);
    raw[1 + ul] = 0;
    memcpy(raw + 2 + ul, colon + 1, pl);
    size_t enclen;
    EVP_EncodedLength(&enclen, rawlen);
    g_authline = malloc(enclen + 16);
    strcpy(g_authline, "AUTH PLAIN ");
    EVP_EncodeBlock((uint8_t *)g_authline + 11, raw, rawlen);
    strcat(g_authline, "\r\n");
    free(raw);
  }

  if (o_mode != M_PLAIN) {
    g_ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(g_ctx, TLS1_2_VERSION);
    if (o_ca) {
      if (SSL_CTX_load_verify_locations(g_ctx, o_ca, NULL) != 1) {
        fprintf(stderr, "loadgen: cannot load %s\n", o_ca);
        return 1;
      }
      SSL_CTX_set_verify(g_ctx, SSL_VERIFY_PEER, NULL);
    } else {
      SSL_CTX_set_verify(g_ctx, SSL_VERIFY_NONE, NULL);
    }
  }

  uint64_t sink_base = 0;
  if (o_sink_stats && read_sink(o_sink_stats, &sink_base) < 0) {
    fprintf(stderr, "loadgen: cannot read %s\n", o_sink_stats);
    return 1;
  }

  g_loop = uv_default_loop();
  g_sess = calloc((size_t)o_sessions, sizeof *g_sess);
  if (!g_sess)
    abort();
  uv_timer_init(g_loop, &g_stop_timer);
  uv_timer_init(g_loop, &g_kill_timer);
  g_start_ns = now_ns();
  if (o_idle >= 0) {
    /* the stop timer is armed by set_up once every session is ready */
    o_duration = 0;
  } else if (o_duration > 0) {
    uv_timer_start(&g_stop_timer, stop_cb, (uint64_t)(o_duration * 1000), 0);
  }
  uv_timer_start(&g_kill_timer, kill_cb, (uint64_t)(o_timeout * 1000), 0);
  for (int i = 0; i < o_sessions && i < CONNECT_RAMP; i++)
    start_one();
  uv_run(g_loop, UV_RUN_DEFAULT);
  uint64_t end_ns = now_ns();

  if (o_sink_stats && g_ok > 0) {
    /* store and forward: the run ends when the sink has everything */
    uint64_t got = 0;
    double limit = o_timeout;
    for (;;) {
      if (read_sink(o_sink_stats, &got) == 0 && got >= sink_base + g_ok)
        break;
      if ((double)(now_ns() - g_start_ns) / 1e9 > limit) {
        fprintf(stderr, "loadgen: sink got %" PRIu64 " of %" PRIu64 " in time\n", got - sink_base,
                g_ok);
        g_errors += sink_base + g_ok - got;
        g_ok = got - sink_base;
        break;
      }
      struct timespec ts = {0, 5 * 1000 * 1000};
      nanosleep(&ts, NULL);
    }
    end_ns = now_ns();
  }

  double secs = (double)(end_ns - g_start_ns) / 1e9;
  if (o_idle >= 0) {
    printf("RESULT label=%s mode=idle sessions=%d ready=%d seconds=%.3f errors=%" PRIu64 "\n",
           o_label, o_sessions, g_ready, secs, g_errors);
    return g_errors ? 1 : 0;
  }
  qsort(g_lat, g_nlat, sizeof *g_lat, cmp_d);
  double sum = 0;
  for (size_t i = 0; i < g_nlat; i++)
    sum += g_lat[i];
  printf("RESULT label=%s sessions=%d size=%" PRIu64 " msgs=%" PRIu64
         " seconds=%.3f msg_per_s=%.1f p50_ms=%.2f p99_ms=%.2f bytes_per_s=%.0f"
         " errors=%" PRIu64 " mean_ms=%.2f p90_ms=%.2f max_ms=%.2f\n",
         o_label, o_sessions, o_size, g_ok, secs, (double)g_ok / secs, pct(0.50), pct(0.99),
         (double)g_ok * (double)o_size / secs, g_errors, g_nlat ? sum / (double)g_nlat : 0,
         pct(0.90), g_nlat ? g_lat[g_nlat - 1] : 0);
  return 0;
}
