/* test_sec_soak.c - no loss, no lies, under churn (issue #5).
 *
 * About 30 s of 20 concurrent device threads sending many messages, each
 * with a unique Message-ID, some of them hanging up mid-DATA, against
 * fault_upstream.py --mode chaos: per RCPT and per message a seeded RNG
 * picks 451 to RCPT, RST after 354, RST after the final dot without a
 * reply, 451 to the dot, a 0-500 ms delay before the 250, or a plain 250.
 *
 * Every device attempt is classified by what the device saw and by what
 * the upstream recorded for its Message-ID:
 *   delivered          250 to the device, exactly one accepted copy
 *   refused            4xx/5xx (or a lost connection) before or at the
 *                      dot, and no copy upstream
 *   unknown_after_dot  4xx at the dot while the upstream vanished after
 *                      taking the dot: at most one copy
 *   abandoned          the device hung up mid-DATA, no copy upstream
 *   violations         250 but no accepted copy; two copies; a copy of a
 *                      message whose device hung up before the end of
 *                      DATA; a copy although refused before the dot; an
 *                      upstream message nobody sent
 * Devices never reuse a Message-ID, so any second copy is a proxy bug. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

#define SOAK_THREADS 20
#define SOAK_MS 30000
#define SOAK_SEED 20231218
#define MAX_ATTEMPTS 4000 /* per thread; far above what 30 s allows */

enum outcome {
  O_ACK,             /* 250 to the dot */
  O_REFUSED,         /* non-2xx before the dot */
  O_DOT_4XX,         /* 4xx to the dot */
  O_DOT_5XX,         /* 5xx to the dot */
  O_ABANDONED,       /* the device hung up mid-DATA */
  O_LOST_BEFORE_DOT, /* EOF/timeout before the dot */
  O_NOREPLY_DOT,     /* EOF/timeout waiting for the dot's reply */
};

typedef struct attempt {
  char id[32];
  unsigned char outcome;
  short code;
  char stage;                   /* M R D . */
  unsigned short acc, van, rej; /* upstream copies by outcome */
  unsigned short altered;       /* copies whose bytes differ from what was sent */
  uint64_t fnv;                 /* FNV-1a of the content (dot-unstuffed) */
} attempt;

typedef struct worker {
  int idx;
  int port;
  uint64_t rng;
  int64_t deadline;
  attempt *a;
  size_t n;
  int connects, connect_failures, greet_failures;
  h_smtp *c; /* heap: 64 KiB */
} worker;

static uint64_t rnd(worker *w) {
  uint64_t x = w->rng;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return w->rng = x;
}

static unsigned rnd_below(worker *w, unsigned n) {
  return (unsigned)(rnd(w) % n);
}

/* h_smtp_connect without the harness's registry (not thread-safe, and
 * limited to 32 sockets); the worker closes its own sockets. */
static int dev_connect(h_smtp *c, int port) {
  memset(c, 0, sizeof *c);
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (c->fd < 0)
    return -1;
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    struct pollfd pfd = {.fd = c->fd, .events = POLLOUT};
    int err = 0;
    socklen_t len = sizeof err;
    if (errno != EINPROGRESS || poll(&pfd, 1, 5000) != 1 ||
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
      close(c->fd);
      c->fd = -1;
      return -1;
    }
  }
  return 0;
}

static void dev_close(h_smtp *c, bool rst) {
  if (c->fd < 0)
    return;
  if (rst) {
    struct linger lg = {1, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  }
  close(c->fd);
  c->fd = -1;
}

/* A body with a unique Message-ID, 1..150 lines, some starting with a dot
 * (sent dot-stuffed). Never contains CRLF "." CRLF. */
static size_t make_body(worker *w, const char *id, char *out, size_t cap) {
  size_t n = (size_t)snprintf(out, cap,
                              "Message-ID: <%s@soak.test>\r\n"
                              "From: dev%d@printer.test\r\n"
                              "Subject: soak %s\r\n\r\n",
                              id, w->idx, id);
  unsigned lines = 1 + rnd_below(w, 150);
  for (unsigned k = 0; k < lines && n + 128 < cap; k++) {
    const char *lead = rnd_below(w, 20) == 0 ? ".." : "";
    n += (size_t)snprintf(out + n, cap - n, "%s%s line %u of %u: %016llx\r\n", lead, id, k, lines,
                          (unsigned long long)rnd(w));
  }
  return n;
}

static uint64_t fnv1a(const void *p, size_t n) {
  const unsigned char *b = p;
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++)
    h = (h ^ b[i]) * 0x100000001b3ull;
  return h;
}

/* FNV-1a of the body as the upstream must record it: a leading dot of a
 * line removed (RFC 5321 4.5.2). */
static uint64_t content_hash(const char *body, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  bool bol = true;
  for (size_t i = 0; i < n; i++) {
    if (bol && body[i] == '.') {
      bol = false;
      continue;
    }
    h = (h ^ (unsigned char)body[i]) * 0x100000001b3ull;
    bol = body[i] == '\n';
  }
  return h;
}

static attempt *new_attempt(worker *w, unsigned seq) {
  attempt *at = &w->a[w->n++];
  memset(at, 0, sizeof *at);
  snprintf(at->id, sizeof at->id, "soak-%02d-%05u", w->idx, seq);
  return at;
}

static void *device_thread(void *arg) {
  worker *w = arg;
  h_smtp *c = w->c;
  c->fd = -1;
  static const char *const tails[] = {"", "\r\n.", "\r\n.\r", "\r\n"};
  char *bodybuf = malloc(16384);
  char text[1024], line[256];
  unsigned seq = 0;
  while (h_now_ms() < w->deadline && w->n < MAX_ATTEMPTS) {
    if (c->fd < 0) {
      w->connects++;
      if (dev_connect(c, w->port) != 0) {
        w->connect_failures++;
        h_sleep_ms(50);
        continue;
      }
      if (h_smtp_reply(c, 10000, text, sizeof text) != 220 ||
          h_smtp_cmd(c, "EHLO soak.device.test", text, sizeof text) != 250) {
        w->greet_failures++; /* e.g. 421 4.7.0 too many connections */
        dev_close(c, false);
        h_sleep_ms(50);
        continue;
      }
    }
    attempt *at = new_attempt(w, seq++);
    int code;
    snprintf(line, sizeof line, "MAIL FROM:<dev%d@printer.test>", w->idx);
    at->stage = 'M';
    code = h_smtp_cmd(c, line, text, sizeof text);
    if (code == 250) {
      at->stage = 'R';
      snprintf(line, sizeof line, "RCPT TO:<rcpt%d@example.com>", w->idx);
      code = h_smtp_cmd(c, line, text, sizeof text);
    }
    if (code == 250) {
      at->stage = 'D';
      code = h_smtp_cmd(c, "DATA", text, sizeof text);
    }
    if (code != 250 && !(at->stage == 'D' && code == 354)) {
      at->code = (short)code;
      at->outcome = code > 0 ? O_REFUSED : O_LOST_BEFORE_DOT;
      dev_close(c, false);
      continue;
    }
    size_t blen = make_body(w, at->id, bodybuf, 16384);
    at->fnv = content_hash(bodybuf, blen);
    if (rnd_below(w, 100) < 8) {
      /* Hang up mid-DATA: part of the body, maybe half a terminator.
       * A cut right after the first dot of a stuffed line followed by a
       * CRLF tail would be a real CRLF "." CRLF: shorten the stream until
       * it holds none, so that the device really never ended DATA. */
      size_t cut = rnd_below(w, (unsigned)blen);
      const char *tail = tails[rnd_below(w, 4)];
      size_t tl = strlen(tail);
      memcpy(bodybuf + cut, tail, tl); /* the body is not needed any more */
      size_t sl = cut + tl;
      while (sl > 0 &&
             (memmem(bodybuf, sl, "\r\n.\r\n", 5) || (sl >= 3 && memcmp(bodybuf, ".\r\n", 3) == 0)))
        sl--;
      h_smtp_send(c, bodybuf, sl);
      h_sleep_ms((int)rnd_below(w, 30));
      at->outcome = O_ABANDONED;
      at->stage = '.';
      dev_close(c, rnd_below(w, 2) == 0);
      continue;
    }
    at->stage = '.';
    h_smtp_send(c, bodybuf, blen);
    h_smtp_sendstr(c, ".\r\n");
    code = h_smtp_reply(c, 15000, text, sizeof text);
    at->code = (short)code;
    if (code >= 200 && code < 300) {
      at->outcome = O_ACK;
      if (rnd_below(w, 10) < 3) {
        h_smtp_cmd(c, "QUIT", text, sizeof text);
        dev_close(c, false);
      }
    } else if (code >= 400 && code < 500) {
      at->outcome = O_DOT_4XX;
      dev_close(c, false);
    } else if (code >= 500) {
      at->outcome = O_DOT_5XX;
      dev_close(c, false);
    } else {
      at->outcome = O_NOREPLY_DOT;
      dev_close(c, false);
    }
  }
  dev_close(c, false);
  free(bodybuf);
  return NULL;
}

static int cmp_attempt(const void *x, const void *y) {
  return strcmp((*(attempt *const *)x)->id, (*(attempt *const *)y)->id);
}

static int cmp_key(const void *k, const void *y) {
  return strcmp(k, (*(attempt *const *)y)->id);
}

static void start_chaos(h_upstream *u) {
  const char *certs = h_certs();
  char script[512], cert[512], key[512], seed[32];
  memset(u, 0, sizeof *u);
  snprintf(script, sizeof script, "%s/fault_upstream.py", STP_TOOLS_DIR);
  snprintf(cert, sizeof cert, "%s/server.crt", certs);
  snprintf(key, sizeof key, "%s/server.key", certs);
  snprintf(seed, sizeof seed, "%d", SOAK_SEED);
  h_path(u->record, sizeof u->record, "chaos.jsonl");
  char *argv[] = {H_PYTHON,   script,    "--host",     "127.0.0.1", "--port", "0",     "--mode",
                  "chaos",    "--tls",   "starttls",   "--cert",    cert,     "--key", key,
                  "--record", u->record, "--lifetime", "120",       "--seed", seed,    NULL};
  u->proc = h_spawn("chaos", argv, NULL);
  char line[128];
  if (h_proc_wait_line(u->proc, "READY ", 15000, line, sizeof line) != 0) {
    char *err = h_read_file(u->proc->err_path, NULL);
    cr_assert_fail("chaos upstream did not become ready: %s", err ? err : "");
  }
  u->port = atoi(line + 6);
}

static size_t count_chaos(const h_lines *chaos, const char *action) {
  size_t n = 0;
  char v[64];
  for (size_t i = 0; i < chaos->n; i++)
    if (h_json_str(chaos->v[i], "action", v, sizeof v) == 1 && strcmp(v, action) == 0)
      n++;
  return n;
}

ITest(integ, sec_soak_no_loss_no_lies, .timeout = 100) {
  h_upstream u;
  h_proxy px;
  start_chaos(&u);
  h_proxy_opts o = {.up_port = u.port,
                    .connect_timeout = "3s",
                    .command_timeout = "3s",
                    .data_timeout = "3s",
                    .listener_extra = "    max_connections_per_client: 200\n"};
  h_proxy_start(&px, &o);

  static worker w[SOAK_THREADS];
  pthread_t th[SOAK_THREADS];
  int64_t deadline = h_now_ms() + SOAK_MS;
  for (int i = 0; i < SOAK_THREADS; i++) {
    w[i] = (worker){.idx = i,
                    .port = px.port,
                    .rng = (SOAK_SEED ^ ((uint64_t)(i + 1) * 0x9E3779B97F4A7C15ull)) | 1,
                    .deadline = deadline};
    w[i].a = calloc(MAX_ATTEMPTS, sizeof *w[i].a);
    w[i].c = calloc(1, sizeof *w[i].c);
    cr_assert(w[i].a && w[i].c);
    cr_assert_eq(pthread_create(&th[i], NULL, device_thread, &w[i]), 0);
  }
  for (int i = 0; i < SOAK_THREADS; i++)
    pthread_join(th[i], NULL);
  cr_assert(h_proc_alive(px.proc), "the proxy died during the soak");
  /* Let the last upstream records land. */
  h_sleep_ms(1500);

  size_t total = 0;
  for (int i = 0; i < SOAK_THREADS; i++)
    total += w[i].n;
  attempt **idx = calloc(total ? total : 1, sizeof *idx);
  cr_assert_not_null(idx);
  size_t k = 0;
  int connects = 0, connect_failures = 0, greet_failures = 0;
  for (int i = 0; i < SOAK_THREADS; i++) {
    for (size_t j = 0; j < w[i].n; j++)
      idx[k++] = &w[i].a[j];
    connects += w[i].connects;
    connect_failures += w[i].connect_failures;
    greet_failures += w[i].greet_failures;
  }
  qsort(idx, total, sizeof *idx, cmp_attempt);

  size_t violations = 0, strays = 0;
  h_lines msgs;
  h_records(u.record, "message", &msgs);
  for (size_t m = 0; m < msgs.n; m++) {
    size_t blen;
    unsigned char *b = h_json_b64(msgs.v[m], "data_b64", &blen);
    char id[32] = "";
    uint64_t got_fnv = b ? fnv1a(b, blen) : 0;
    const char *p = b ? strstr((char *)b, "Message-ID: <") : NULL;
    if (p) {
      p += strlen("Message-ID: <");
      const char *e = strchr(p, '@');
      if (e && (size_t)(e - p) < sizeof id)
        snprintf(id, sizeof id, "%.*s", (int)(e - p), p);
    }
    attempt **hit = id[0] ? bsearch(id, idx, total, sizeof *idx, cmp_key) : NULL;
    if (hit && got_fnv != (*hit)->fnv)
      (*hit)->altered++;
    free(b);
    if (!hit) {
      strays++;
      violations++;
      cr_log_error("soak violation: upstream message nobody sent (id '%s'): %.300s", id, msgs.v[m]);
      continue;
    }
    char oc[32] = "";
    h_json_str(msgs.v[m], "outcome", oc, sizeof oc);
    if (strcmp(oc, "accepted") == 0)
      (*hit)->acc++;
    else if (strcmp(oc, "vanished") == 0)
      (*hit)->van++;
    else
      (*hit)->rej++;
  }
  size_t upstream_msgs = msgs.n;
  h_lines_free(&msgs);

  size_t delivered = 0, refused = 0, unknown = 0, abandoned = 0, noreply_dot = 0, lost_before = 0,
         reported = 0;
  for (size_t i = 0; i < total; i++) {
    attempt *at = idx[i];
    unsigned copies = at->acc + at->van + at->rej; /* final dots upstream */
    unsigned kept = at->acc + at->van;             /* copies the upstream may deliver */
    const char *bad = NULL;
    if (at->altered && at->outcome != O_ABANDONED) {
      bad = "the upstream got other bytes than the device sent";
    } else {
      switch (at->outcome) {
      case O_ACK:
        if (at->acc == 1 && copies == 1)
          delivered++;
        else
          bad = at->acc == 0 ? "acknowledged 250 but not delivered"
                             : "acknowledged 250 and delivered more than once";
        break;
      case O_DOT_4XX:
      case O_NOREPLY_DOT:
        if (at->outcome == O_NOREPLY_DOT)
          noreply_dot++;
        if (copies > 1)
          bad = "delivered twice";
        else if (kept == 1)
          unknown++;
        else
          refused++;
        break;
      case O_DOT_5XX:
        if (kept)
          bad = "5xx to the device but delivered";
        else
          refused++;
        break;
      case O_REFUSED:
      case O_LOST_BEFORE_DOT:
        if (at->outcome == O_LOST_BEFORE_DOT)
          lost_before++;
        if (copies)
          bad = "refused before the final dot but a final dot went upstream";
        else
          refused++;
        break;
      case O_ABANDONED:
        if (copies)
          bad = "delivered although the device hung up before the end of DATA";
        else
          abandoned++;
        break;
      }
    }
    if (bad) {
      violations++;
      if (reported++ < 20)
        cr_log_error("soak violation: %s: %s (device: outcome %d, stage %c, code %d; "
                     "upstream: accepted %u, vanished %u, rejected %u)",
                     bad, at->id, at->outcome, at->stage, at->code, at->acc, at->van, at->rej);
    }
  }

  h_lines chaos;
  h_records(u.record, "chaos", &chaos);
  size_t c_rcpt = count_chaos(&chaos, "rcpt-451"), c_rst = count_chaos(&chaos, "rst-after-354"),
         c_van = count_chaos(&chaos, "vanish"), c_d451 = count_chaos(&chaos, "dot-451"),
         c_delay = count_chaos(&chaos, "delay"), c_norm = count_chaos(&chaos, "normal");
  h_lines_free(&chaos);

  cr_log_info("soak: %zu attempts by %d devices in %d s over %d connections (%d connect "
              "failures, %d greeting/EHLO failures); upstream messages %zu",
              total, SOAK_THREADS, SOAK_MS / 1000, connects, connect_failures, greet_failures,
              upstream_msgs);
  cr_log_info("soak: delivered=%zu refused=%zu unknown_after_dot=%zu abandoned=%zu "
              "violations=%zu (no reply to the dot %zu, lost before the dot %zu, strays %zu)",
              delivered, refused, unknown, abandoned, violations, noreply_dot, lost_before, strays);
  cr_log_info("soak: chaos actions rcpt-451=%zu rst-after-354=%zu vanish=%zu dot-451=%zu "
              "delay=%zu normal=%zu",
              c_rcpt, c_rst, c_van, c_d451, c_delay, c_norm);
  printf("soak: delivered=%zu refused=%zu unknown_after_dot=%zu violations=%zu\n", delivered,
         refused, unknown, violations);
  fflush(stdout);

  cr_assert_eq(delivered + refused + unknown + abandoned + (violations - strays), total);
  cr_assert_eq(violations, 0, "%zu soak violations (see the log above)", violations);
  cr_assert_gt(delivered, 0, "nothing delivered during the soak");
  /* Every kind of chaos and of hang-up happened, so the run proved something. */
  cr_assert(c_rcpt && c_rst && c_van && c_d451 && c_delay,
            "a chaos action never fired: rcpt-451=%zu rst=%zu vanish=%zu dot-451=%zu "
            "delay=%zu",
            c_rcpt, c_rst, c_van, c_d451, c_delay);
  cr_assert_gt(abandoned, 0);
  /* RFC 5321 / SPEC: a failure is a 4xx to the device, never silence. */
  cr_assert_eq(noreply_dot, 0, "%zu final dots got no reply at all", noreply_dot);
  for (int i = 0; i < SOAK_THREADS; i++) {
    free(w[i].a);
    free(w[i].c);
  }
  free(idx);
}
