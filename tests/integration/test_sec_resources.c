/* test_sec_resources.c - resource attacks from the LAN side (issue #5).
 *
 * A slowloris device, a 4 MiB command line without CRLF and 1000 idle
 * connections: the proxy stays responsive for other devices, its memory
 * (VmRSS from /proc/PID/status) stays bounded, and the idle timeout closes
 * what has gone silent. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

static const char body[] = "Subject: bystander\r\n\r\nserved meanwhile\r\n";

/* VmRSS of pid in KiB, or -1. */
static long rss_kib(pid_t pid) {
  char path[64], *s;
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  s = h_read_file(path, NULL);
  if (!s)
    return -1;
  const char *p = strstr(s, "VmRSS:");
  long v = p ? strtol(p + 6, NULL, 10) : -1;
  free(s);
  return v;
}

/* Under AddressSanitizer, freed memory sits in a quarantine (256 MiB by
 * default), so VmRSS counts every byte ever allocated rather than what is
 * live. For the tests that bound VmRSS the proxy runs without quarantine:
 * still sanitized, but its RSS means the same as in a normal build. The
 * proxy inherits this process's environment; no effect without ASan. */
static void asan_no_quarantine(void) {
  const char *old = getenv("ASAN_OPTIONS");
  char v[1024];
  snprintf(v, sizeof v, "%s%squarantine_size_mb=0:thread_local_quarantine_size_kb=0",
           old ? old : "", old && *old ? ":" : "");
  setenv("ASAN_OPTIONS", v, 1);
}

/* One bystander message on a fresh connection; returns its duration. */
static int64_t bystander(int port, const char *rcpt) {
  h_smtp b;
  int64_t t0 = h_now_ms();
  h_smtp_open(&b, port, true);
  char text[2048];
  const char *stage;
  int code = h_smtp_message(&b, "scan@printer.test", (const char *const[]){rcpt, NULL}, body,
                            sizeof body - 1, text, sizeof text, &stage);
  cr_assert_eq(code, 250, "bystander %s: %s %d %s", rcpt, stage, code, text);
  h_smtp_cmd(&b, "QUIT", text, sizeof text);
  h_smtp_close(&b);
  return h_now_ms() - t0;
}

/* (1) Slowloris: a device drips a command one byte per 200 ms. Meanwhile
 * other devices get their messages through promptly. The idle timer counts
 * from the last complete command, not the last byte, so idle_timeout (2s)
 * closes the dripping device with 421 4.4.2 while it still drips. */
ITest(integ, sec_slowloris_idle_timeout, .timeout = 40) {
  h_upstream u;
  h_proxy px;
  h_upstream_start(&u, "starttls", NULL);
  h_proxy_opts o = {.up_port = u.port, .listener_extra = "    idle_timeout: 2s\n"};
  h_proxy_start(&px, &o);

  h_smtp s;
  cr_assert_eq(h_smtp_connect(&s, px.port), 0);
  char text[2048];
  cr_assert_eq(h_smtp_reply(&s, H_REPLY_MS, text, sizeof text), 220, "%s", text);

  static const char drip[] = "EHLO slowloris.device.test.example.invalid";
  const int n_drip = 20; /* 4 s: twice the idle timeout, never a full line */
  int64_t t_start = h_now_ms(), t_last = t_start, closed_at = -1;
  int served = 0;
  for (int i = 0; i < n_drip && closed_at < 0; i++) {
    int64_t next = t_start + (int64_t)i * 200;
    while (h_now_ms() < next)
      h_sleep_ms(5);
    if (h_smtp_send(&s, drip + i, 1) != 0) {
      closed_at = h_now_ms();
      break;
    }
    t_last = h_now_ms();
    if (!h_smtp_quiet(&s, 0)) { /* something arrived: the proxy gave up on it */
      closed_at = h_now_ms();
      break;
    }
    if (i == 2 || i == 6) {
      int64_t took = bystander(px.port, "a@example.com");
      cr_assert(took < 2000, "a bystander took %lld ms next to a slowloris", (long long)took);
      served++;
    }
  }
  /* idle_timeout restarts on progress (a whole command), not on a byte:
   * the drip is cut off about idle_timeout after the greeting. */
  cr_assert_geq(closed_at, 0, "slowloris still open after dripping %d bytes over %lld ms", n_drip,
                (long long)(t_last - t_start));
  cr_log_info("slowloris: closed after %lld ms while dripping", (long long)(closed_at - t_start));
  cr_assert(closed_at - t_start >= 1500 && closed_at - t_start < 3500,
            "closed %lld ms into the drip; idle_timeout is 2s", (long long)(closed_at - t_start));
  cr_assert_eq(served, 2);

  /* Silent from now on: 421 4.4.2 within idle_timeout (+ slack). */
  int code = h_smtp_reply(&s, 6000, text, sizeof text);
  int64_t t_reply = h_now_ms();
  cr_assert_eq(code, 421, "slowloris: %d %s (want 421 4.4.2)", code, text);
  cr_assert(strstr(text, "4.4.2") != NULL, "%s", text);
  cr_assert(h_smtp_wait_eof(&s, 3000), "slowloris not closed after its 421");
  int64_t silent = t_reply - t_last;
  cr_log_info("slowloris: 421 %lld ms after its last byte", (long long)silent);
  cr_assert(closed_at >= 0 || (silent >= 1500 && silent < 4500),
            "421 came %lld ms after the last byte, idle_timeout is 2s", (long long)silent);
  cr_assert_geq(h_wait_records(u.record, "message", (size_t)served, 5000), (size_t)served);
  /* And the proxy still serves. */
  cr_assert(bystander(px.port, "b@example.com") < 2000);
}

/* (2) A 4 MiB command line with no CRLF: the proxy discards it as it
 * reads (its memory does not grow with the line), serves another device
 * meanwhile, and answers 500 5.5.2 once the line ends; the session goes on. */
ITest(integ, sec_long_line_bounded_memory, .timeout = 40) {
  h_upstream u;
  h_proxy px;
  h_upstream_start(&u, "starttls", NULL);
  h_proxy_opts o = {.up_port = u.port};
  asan_no_quarantine();
  h_proxy_start(&px, &o);
  bystander(px.port, "warmup@example.com"); /* TLS contexts, first upstream */
  h_sleep_ms(200);
  long rss0 = rss_kib(px.proc->pid);
  cr_assert_gt(rss0, 0);

  h_smtp a;
  h_smtp_open(&a, px.port, true);
  static char chunk[64 * 1024];
  memset(chunk, 'x', sizeof chunk);
  memcpy(chunk, "NOOP ", 5);
  const size_t total = 4u << 20;
  long rss_max = rss0;
  int64_t t0 = h_now_ms();
  for (size_t sent = 0; sent < total; sent += sizeof chunk) {
    cr_assert_eq(h_smtp_send(&a, chunk, sizeof chunk), 0,
                 "the proxy stopped reading the long line at %zu bytes", sent);
    if (sent == 0)
      memcpy(chunk, "xxxxx", 5);
    long r = rss_kib(px.proc->pid);
    if (r > rss_max)
      rss_max = r;
    if (sent == total / 2) {
      int64_t took = bystander(px.port, "b@example.com");
      cr_assert(took < 3000, "a bystander took %lld ms during the long line", (long long)took);
    }
  }
  int64_t send_ms = h_now_ms() - t0;
  h_sleep_ms(300);
  long rss1 = rss_kib(px.proc->pid);
  if (rss1 > rss_max)
    rss_max = rss1;
  cr_log_info("4 MiB line: sent in %lld ms, VmRSS %ld KiB before, max %ld KiB (+%ld KiB)",
              (long long)send_ms, rss0, rss_max, rss_max - rss0);
  cr_assert_lt(rss_max - rss0, 8 * 1024, "VmRSS grew by %ld KiB for a 4 MiB line", rss_max - rss0);

  char text[2048];
  h_smtp_sendstr(&a, "\r\n");
  int code = h_smtp_reply(&a, H_REPLY_MS, text, sizeof text);
  cr_assert_eq(code, 500, "end of the 4 MiB line: %d %s", code, text);
  cr_assert(strstr(text, "5.5.2") != NULL, "%s", text);
  /* Now the proxy has consumed every byte of the line. */
  long rss2 = rss_kib(px.proc->pid);
  cr_log_info("4 MiB line: VmRSS %ld KiB after the 500", rss2);
  cr_assert_lt(rss2 - rss0, 8 * 1024, "VmRSS grew by %ld KiB for a 4 MiB line", rss2 - rss0);
  code = h_smtp_cmd(&a, "NOOP", text, sizeof text);
  cr_assert_eq(code, 250, "NOOP after the long line: %d %s (one reply per line)", code, text);
  const char *stage;
  code = h_smtp_message(&a, "scan@printer.test", (const char *const[]){"c@example.com", NULL}, body,
                        sizeof body - 1, text, sizeof text, &stage);
  cr_assert_eq(code, 250, "message after the long line: %s %d %s", stage, code, text);
  cr_assert_eq(h_wait_records(u.record, "message", 3, 5000), 3);
}

/* (2b) The same 4 MiB without CRLF inside a message body: it streams
 * through (or is refused) without the proxy buffering the line. When it is
 * accepted, the upstream got exactly the bytes sent. */
ITest(integ, sec_long_body_line_bounded_memory, .timeout = 40) {
  h_upstream u;
  h_proxy px;
  h_upstream_start(&u, "starttls", NULL);
  h_proxy_opts o = {.up_port = u.port};
  asan_no_quarantine();
  h_proxy_start(&px, &o);
  bystander(px.port, "warmup@example.com");
  h_sleep_ms(200);
  long rss0 = rss_kib(px.proc->pid), rss_max = rss0;

  h_smtp a;
  h_smtp_open(&a, px.port, true);
  char text[2048];
  cr_assert_eq(h_smtp_cmd(&a, "MAIL FROM:<scan@printer.test>", text, sizeof text), 250);
  cr_assert_eq(h_smtp_cmd(&a, "RCPT TO:<long@example.com>", text, sizeof text), 250);
  cr_assert_eq(h_smtp_cmd(&a, "DATA", text, sizeof text), 354, "%s", text);
  static const char head[] = "Subject: one long line\r\n\r\n";
  h_sha256 sha;
  h_sha256_init(&sha);
  h_smtp_sendstr(&a, head);
  h_sha256_update(&sha, head, sizeof head - 1);
  static char chunk[64 * 1024];
  memset(chunk, 'y', sizeof chunk);
  const size_t total = 4u << 20;
  for (size_t sent = 0; sent < total; sent += sizeof chunk) {
    cr_assert_eq(h_smtp_send(&a, chunk, sizeof chunk), 0, "stalled at %zu bytes", sent);
    h_sha256_update(&sha, chunk, sizeof chunk);
    long r = rss_kib(px.proc->pid);
    if (r > rss_max)
      rss_max = r;
    if (sent == total / 2)
      cr_assert(bystander(px.port, "b@example.com") < 3000);
  }
  h_sha256_update(&sha, "\r\n", 2);
  h_smtp_sendstr(&a, "\r\n.\r\n");
  int code = h_smtp_reply(&a, H_REPLY_MS * 2, text, sizeof text);
  long r = rss_kib(px.proc->pid);
  if (r > rss_max)
    rss_max = r;
  cr_log_info("4 MiB body line: dot %d %s; VmRSS %ld -> max %ld KiB (+%ld KiB)", code, text, rss0,
              rss_max, rss_max - rss0);
  cr_assert(code == 250 || (code >= 500 && code < 600), "4 MiB body line: %d %s", code, text);
  cr_assert_lt(rss_max - rss0, 8 * 1024, "VmRSS grew by %ld KiB for a 4 MiB body line",
               rss_max - rss0);
  if (code == 250) {
    char want[65], got[80];
    h_sha256_hex(&sha, want);
    cr_assert_eq(h_wait_records(u.record, "message", 3, 5000), 3);
    h_lines l;
    h_records(u.record, "message", &l);
    bool found = false;
    for (size_t i = 0; i < l.n; i++)
      if (h_json_str(l.v[i], "data_sha256", got, sizeof got) == 1 && strcmp(got, want) == 0)
        found = true;
    h_lines_free(&l);
    cr_assert(found, "no upstream message with the sent bytes (sha256 %s)", want);
  }
  cr_assert_eq(h_smtp_cmd(&a, "NOOP", text, sizeof text), 250, "%s", text);
}

/* (3) 1000 idle connections (greeted and EHLO'd, then silent): a normal
 * device still gets its message through, and each idle connection costs
 * the proxy under 32 KiB of VmRSS. */
#define N_IDLE 1000
ITest(integ, sec_1000_idle_connections, .timeout = 60) {
  struct rlimit rl;
  cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
  if (rl.rlim_cur < N_IDLE + 200) {
    rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
  }
  cr_assert_geq(rl.rlim_cur, N_IDLE + 100, "RLIMIT_NOFILE %llu is too low",
                (unsigned long long)rl.rlim_cur);
  /* The proxy inherits the raised limit. */
  h_upstream u;
  h_proxy px;
  h_upstream_start(&u, "starttls", NULL);
  h_proxy_opts o = {.up_port = u.port,
                    .listener_extra = "    max_connections: 2000\n"
                                      "    max_connections_per_client: 2000\n"};
  asan_no_quarantine();
  h_proxy_start(&px, &o);
  bystander(px.port, "warmup@example.com");
  h_sleep_ms(300);
  long rss0 = rss_kib(px.proc->pid);
  cr_assert_gt(rss0, 0);

  static int fds[N_IDLE];
  static size_t got[N_IDLE];
  static struct pollfd pfd[N_IDLE];
  char buf[4096];
  int64_t deadline = h_now_ms() + 30000;
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)px.port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  /* Connect in batches of 100, each batch fully greeted before the next. */
  for (int base = 0; base < N_IDLE; base += 100) {
    for (int i = base; i < base + 100; i++) {
      fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      cr_assert(fds[i] >= 0, "socket %d: %s", i, strerror(errno));
      int r = connect(fds[i], (struct sockaddr *)&sa, sizeof sa);
      cr_assert(r == 0 || errno == EINPROGRESS, "connect %d: %s", i, strerror(errno));
      got[i] = 0;
    }
    int pending = 100;
    while (pending > 0) {
      int np = 0;
      int idx[100];
      for (int i = base; i < base + 100; i++)
        if (got[i] == 0) {
          pfd[np].fd = fds[i];
          pfd[np].events = POLLIN;
          idx[np++] = i;
        }
      int left = (int)(deadline - h_now_ms());
      cr_assert(left > 0, "greetings for connections %d..%d: %d still missing", base, base + 99,
                pending);
      int r = poll(pfd, (nfds_t)np, left);
      cr_assert(r >= 0 || errno == EINTR);
      for (int k = 0; k < np; k++) {
        if (!(pfd[k].revents & (POLLIN | POLLHUP | POLLERR)))
          continue;
        ssize_t n = recv(fds[idx[k]], buf, sizeof buf, 0);
        cr_assert(n > 0, "connection %d closed before its greeting", idx[k]);
        cr_assert(n >= 4 && memcmp(buf, "220 ", 4) == 0, "connection %d greeted with: %.*s", idx[k],
                  (int)n, buf);
        got[idx[k]] = (size_t)n;
        pending--;
        static const char ehlo[] = "EHLO idle.device.test\r\n";
        cr_assert_eq(send(fds[idx[k]], ehlo, sizeof ehlo - 1, MSG_NOSIGNAL),
                     (ssize_t)sizeof ehlo - 1);
      }
    }
  }
  /* Drain the EHLO replies (250-... lines) so the proxy is not blocked on
   * writing them, then let it settle. */
  h_sleep_ms(500);
  int ehlo_ok = 0;
  for (int i = 0; i < N_IDLE; i++) {
    ssize_t n = recv(fds[i], buf, sizeof buf, MSG_DONTWAIT);
    if (n > 4 && memcmp(buf, "250", 3) == 0)
      ehlo_ok++;
  }
  h_sleep_ms(300);
  long rss1 = rss_kib(px.proc->pid);
  cr_assert(h_proc_alive(px.proc), "the proxy died with %d connections", N_IDLE);
  double per = (double)(rss1 - rss0) * 1024.0 / N_IDLE;
  cr_log_info("%d idle connections (%d answered EHLO): VmRSS %ld -> %ld KiB, %.0f bytes "
              "per connection",
              N_IDLE, ehlo_ok, rss0, rss1, per);
  printf("idle: connections=%d rss_before_kib=%ld rss_after_kib=%ld bytes_per_conn=%.0f\n", N_IDLE,
         rss0, rss1, per);
  cr_assert_geq(ehlo_ok, N_IDLE * 9 / 10, "only %d of %d idle connections got an EHLO reply",
                ehlo_ok, N_IDLE);

  /* A normal device next to them. */
  int64_t took = bystander(px.port, "b@example.com");
  cr_log_info("a message next to %d idle connections took %lld ms", N_IDLE, (long long)took);
  cr_assert(took < 3000, "a device next to %d idle connections took %lld ms", N_IDLE,
            (long long)took);
  cr_assert_geq(h_wait_records(u.record, "message", 2, 5000), 2);
  cr_assert_lt(per, 32.0 * 1024, "%.0f bytes of VmRSS per idle connection", per);

  for (int i = 0; i < N_IDLE; i++)
    close(fds[i]);
  h_sleep_ms(300);
  cr_assert(bystander(px.port, "c@example.com") < 3000);
}

/* Send as much of buf (repeated) as the proxy takes without reading any
 * reply; stop at max bytes or when nothing moves for stall_ms. Returns the
 * number of bytes sent. */
static size_t flood_unread(h_smtp *c, const char *unit, size_t max, int stall_ms, pid_t pid,
                           long *rss_max) {
  static char buf[64 * 1024];
  size_t ul = strlen(unit), bl = sizeof buf / ul * ul;
  for (size_t i = 0; i < bl; i += ul)
    memcpy(buf + i, unit, ul);
  size_t sent = 0, off = 0;
  int64_t last_progress = h_now_ms(), last_sample = 0;
  while (sent < max) {
    ssize_t w = send(c->fd, buf + off, bl - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      sent += (size_t)w;
      off = (off + (size_t)w) % bl;
      last_progress = h_now_ms();
    } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      if (h_now_ms() - last_progress > stall_ms)
        break;
      struct pollfd pfd = {.fd = c->fd, .events = POLLOUT};
      poll(&pfd, 1, 50);
    } else {
      break; /* the proxy closed it */
    }
    if (h_now_ms() - last_sample > 50) {
      long r = rss_kib(pid);
      if (r > *rss_max)
        *rss_max = r;
      last_sample = h_now_ms();
    }
  }
  return sent;
}

/* A device that pipelines commands and never reads the replies: the proxy
 * must stop reading it once its replies back up (write back-pressure), not
 * queue replies without bound. EHLO is the most amplifying command (a
 * ~16-byte line, a ~200-byte reply). Afterwards every reply is there, in
 * order, and the session is still usable. */
ITest(integ, sec_unread_replies_bounded_memory, .timeout = 60) {
  h_upstream u;
  h_proxy px;
  h_upstream_start(&u, "starttls", NULL);
  h_proxy_opts o = {.up_port = u.port};
  asan_no_quarantine();
  h_proxy_start(&px, &o);
  bystander(px.port, "warmup@example.com");
  h_sleep_ms(200);
  long rss0 = rss_kib(px.proc->pid), rss_max = rss0;

  h_smtp a;
  h_smtp_open(&a, px.port, true);
  static const char unit[] = "EHLO flood.device.test\r\n";
  size_t sent = flood_unread(&a, unit, 64u << 20, 1500, px.proc->pid, &rss_max);
  size_t lines = sent / (sizeof unit - 1);
  h_sleep_ms(300);
  long r = rss_kib(px.proc->pid);
  if (r > rss_max)
    rss_max = r;
  cr_log_info("unread replies: %zu bytes (%zu EHLO) taken before the proxy stopped reading; "
              "VmRSS %ld -> max %ld KiB (+%ld KiB)",
              sent, lines, rss0, rss_max, rss_max - rss0);
  int64_t took = bystander(px.port, "b@example.com");
  cr_log_info("unread replies: bystander took %lld ms", (long long)took);
  cr_assert(took < 3000, "a bystander took %lld ms", (long long)took);
  cr_assert_lt(sent, (size_t)64 << 20,
               "the proxy read 64 MiB of commands whose replies "
               "nobody read (no write back-pressure)");
  cr_assert_lt(rss_max - rss0, 16 * 1024, "VmRSS grew by %ld KiB queueing unread replies",
               rss_max - rss0);

  /* Now read: one final "250 " line per complete EHLO sent, no more, no
   * less. A partial last EHLO is completed after that (sending it now
   * could block: the proxy is not reading us while we are not reading). */
  size_t partial = sent % (sizeof unit - 1);
  static char rb[256 * 1024];
  size_t finals = 0, carry = 0;
  bool bol = true;
  int64_t t_drain = h_now_ms(), deadline = t_drain + 30000;
  while (finals < lines && h_now_ms() < deadline) {
    struct pollfd pfd = {.fd = a.fd, .events = POLLIN};
    if (poll(&pfd, 1, 1000) <= 0)
      continue;
    ssize_t n = recv(a.fd, rb + carry, sizeof rb - carry, 0);
    cr_assert(n > 0, "the proxy closed the flooding device after %zu of %zu replies", finals,
              lines);
    size_t len = carry + (size_t)n, i = 0;
    for (; i < len; i++) {
      if (bol) {
        if (len - i < 4)
          break; /* keep the start of this line for the next read */
        if (memcmp(rb + i, "250 ", 4) == 0)
          finals++;
        bol = false;
      }
      if (rb[i] == '\n')
        bol = true;
    }
    carry = len - i;
    memmove(rb, rb + i, carry);
  }
  cr_log_info("unread replies: drained %zu of %zu in %lld ms", finals, lines,
              (long long)(h_now_ms() - t_drain));
  cr_assert_eq(finals, lines, "%zu EHLO sent, %zu final replies read", lines, finals);
  a.len = 0;
  memcpy(a.buf, rb, carry); /* the start of a line, if any */
  a.len = carry;
  char text[256];
  if (partial) {
    h_smtp_send(&a, unit + partial, sizeof unit - 1 - partial);
    cr_assert_eq(h_smtp_reply(&a, H_REPLY_MS, text, sizeof text), 250, "the split EHLO: %s", text);
  }
  cr_assert(h_smtp_quiet(&a, 300), "replies beyond one per EHLO");
  cr_assert_eq(h_smtp_cmd(&a, "NOOP", text, sizeof text), 250, "%s", text);
}

/* Connect from a chosen loopback source address (127.0.0.x). */
static int connect_from(const char *src, int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  cr_assert(fd >= 0);
  struct sockaddr_in me = {.sin_family = AF_INET};
  inet_pton(AF_INET, src, &me.sin_addr);
  cr_assert_eq(bind(fd, (struct sockaddr *)&me, sizeof me), 0, "bind %s: %s", src, strerror(errno));
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0, "connect: %s", strerror(errno));
  struct timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

/* One client address hoarding connections hits max_connections_per_client
 * (421 4.7.0) and cannot starve another client address. */
ITest(integ, sec_per_client_limit_isolates_hoarder) {
  h_upstream u;
  h_proxy px;
  h_upstream_start(&u, "starttls", NULL);
  h_proxy_opts o = {.up_port = u.port, .listener_extra = "    max_connections_per_client: 5\n"};
  h_proxy_start(&px, &o);
  int fds[8];
  char buf[512];
  for (int i = 0; i < 8; i++) {
    fds[i] = connect_from("127.0.0.2", px.port);
    ssize_t n = recv(fds[i], buf, sizeof buf - 1, 0);
    cr_assert(n > 0, "hoarder connection %d: no greeting", i);
    buf[n] = '\0';
    if (i < 5)
      cr_assert(strncmp(buf, "220 ", 4) == 0, "hoarder connection %d: %s", i, buf);
    else
      cr_assert(strncmp(buf, "421 4.7.0", 9) == 0, "hoarder connection %d over the limit: %s", i,
                buf);
  }
  /* Another address is served normally meanwhile. */
  int64_t took = bystander(px.port, "b@example.com");
  cr_assert(took < 2000, "the other client took %lld ms", (long long)took);
  for (int i = 0; i < 8; i++)
    close(fds[i]);
}

/* A device that drips its message inside DATA makes progress with every
 * byte, so idle_timeout never fires; data_deadline cuts it with 421 4.4.2,
 * the upstream gets no final dot and nothing is delivered. */
ITest(integ, sec_data_drip_cut_at_data_deadline, .timeout = 40) {
  h_upstream u;
  h_proxy px;
  h_upstream_start(&u, "starttls", NULL);
  h_proxy_opts o = {.up_port = u.port,
                    .listener_extra = "    idle_timeout: 10s\n    data_deadline: 2s\n"};
  h_proxy_start(&px, &o);
  h_smtp s;
  h_smtp_open(&s, px.port, true);
  char text[2048];
  cr_assert_eq(h_smtp_cmd(&s, "MAIL FROM:<scan@printer.test>", text, sizeof text), 250);
  cr_assert_eq(h_smtp_cmd(&s, "RCPT TO:<a@example.com>", text, sizeof text), 250);
  cr_assert_eq(h_smtp_cmd(&s, "DATA", text, sizeof text), 354);
  int64_t t0 = h_now_ms(), cut = -1;
  static const char drip[] = "Subject: drip\r\n\r\nthis message arrives one byte at a time....\r\n";
  for (size_t i = 0; i < sizeof drip - 1 && h_now_ms() - t0 < 8000; i++) {
    if (h_smtp_send(&s, drip + i, 1) != 0 || !h_smtp_quiet(&s, 150)) {
      cut = h_now_ms() - t0;
      break;
    }
  }
  cr_assert_geq(cut, 0, "still open after dripping for %lld ms", (long long)(h_now_ms() - t0));
  cr_assert(cut >= 1500 && cut < 4000, "cut %lld ms into DATA; data_deadline is 2s",
            (long long)cut);
  int code = h_smtp_reply(&s, 3000, text, sizeof text);
  cr_assert_eq(code, 421, "%d %s", code, text);
  cr_assert(strstr(text, "4.4.2"), "%s", text);
  cr_assert(h_smtp_wait_eof(&s, 3000));
  h_smtp_close(&s);
  h_sleep_ms(300);
  h_lines l;
  cr_assert_eq(h_records(u.record, "message", &l), 0, "nothing delivered");
  h_lines_free(&l);
}
