/* test_spool_shared.c - several proxy processes on one spool directory
 * (spool.shared: true), against the real binary.
 *
 *  - three replicas with the upstream down take 300 messages between
 *    them; `LIST` on replica 1 shows all of them; the upstream comes back
 *    (upstream.py, aiosmtpd, holding each final reply back a little) and
 *    replica 3 is SIGKILLed while the queue drains: every message that got
 *    250 arrives at least once, duplicates are counted, and no message is
 *    ever being delivered by two processes at once (the upstream records
 *    MAIL..final-reply intervals per Message-ID: two that overlap fail);
 *  - a second unshared process on the directory is refused, and so are a
 *    shared one next to an unshared one and vice versa;
 *  - shared mode is refused where the lock probe fails (fault_shim.c:
 *    F_OFD_SETLK failing, or granting every lock);
 *  - SIGTERM drains: a replica stuck in a delivery exits 0 at once and
 *    releases its claim, and the other replica delivers the message.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "harness.h"
#include "spool_common.h"

#define N_REPLICAS 3
#define N_MSGS 300
#define RESCAN_WAIT_MS 3000 /* longer than the replicas' rescan (2 s) */

TestSuite(spool_shared, .init = h_setup, .fini = h_teardown, .timeout = 90);

/* A proxy with its spool in <test dir>/spool (shared or not), route
 * "default" to an upstream at up_port, nothing retried by itself for an
 * hour, 20 s of shutdown grace. */
static void spool_proxy_yaml(int up_port, bool shared, char *yaml, size_t cap) {
  char top[1024];
  snprintf(top, sizeof top,
           "spool:\n  dir: %s/spool\n  notify: postmaster@example.com\n"
           "  retry: [1h]\n  shared: %s\n",
           h_dir(), shared ? "true" : "false");
  h_proxy_opts o = {.up_port = up_port,
                    .connect_timeout = "2s",
                    .command_timeout = "15s",
                    .data_timeout = "5s",
                    .shutdown_grace = "20s",
                    .top_extra = top,
                    .route_extra = "    on_upstream_failure: spool\n"};
  h_proxy_yaml(&o, yaml, cap);
}

static void replica_yaml(int up_port, char *yaml, size_t cap) {
  spool_proxy_yaml(up_port, true, yaml, cap);
}

/* The replica tag from its "spool-shared ... replica=TAG" log line. */
static void replica_tag(const h_proxy *px, char tag[16]) {
  char line[1024];
  const char *const all[] = {"spool-shared", NULL};
  cr_assert(h_file_wait_line(px->log, all, 5000, line, sizeof line), "no spool-shared line");
  const char *p = strstr(line, "replica=");
  cr_assert_not_null(p, "%s", line);
  p += strlen("replica=");
  size_t n = strspn(p, "0123456789abcdef");
  cr_assert_eq(n, 8, "%s", line);
  memcpy(tag, p, n);
  tag[n] = '\0';
}

/* One request on a replica's own control socket; the answer in out.
 * Returns true when it ended with an OK line. */
static bool ask(const char *tag, const char *req, char *out, size_t cap) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s/spool/ctl/%s", h_dir(), tag);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  cr_assert_geq(fd, 0);
  out[0] = '\0';
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    close(fd);
    return false;
  }
  (void)!write(fd, req, strlen(req));
  size_t have = 0;
  int64_t deadline = h_now_ms() + 10000;
  while (have + 1 < cap && h_now_ms() < deadline) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 200) <= 0)
      continue;
    ssize_t r = read(fd, out + have, cap - 1 - have);
    if (r <= 0)
      break;
    have += (size_t)r;
  }
  out[have] = '\0';
  close(fd);
  return strstr(out, "\nOK ") || !strncmp(out, "OK", 2);
}

/* Until LIST on tag says "OK <n> message" (bounded). */
static bool wait_count(const char *tag, unsigned n, int timeout_ms, char *out, size_t cap) {
  char want[64];
  snprintf(want, sizeof want, "OK %u message", n);
  int64_t deadline = h_now_ms() + timeout_ms;
  do {
    if (ask(tag, "LIST\n", out, cap) && strstr(out, want))
      return true;
    h_sleep_ms(200);
  } while (h_now_ms() < deadline);
  return false;
}

static int send_msg(int port, int i, char reply[512]) {
  char body[512];
  snprintf(body, sizeof body,
           "Message-ID: <shared-%d@printer.test>\r\nSubject: shared %d\r\n\r\n"
           "message %d of the shared spool test\r\n",
           i, i, i);
  const char *rcpts[] = {"someone@example.com", NULL};
  return sp_send(port, rcpts, body, reply, 512);
}

/* ---- what the upstream saw ------------------------------------------------ */

typedef struct seen {
  int n;            /* deliveries of message i */
  double at[16][2]; /* [mail_at, end_at] of each (the first 16) */
} seen;

/* Counts per message, duplicates and overlapping deliveries. */
static void tally(const char *record, seen *s, int *arrived, int *dups, int *overlaps,
                  const bool *ok) {
  h_lines l;
  size_t n = h_records(record, "message", &l);
  memset(s, 0, N_MSGS * sizeof *s);
  for (size_t k = 0; k < n; k++) {
    char mid[128];
    int i;
    if (h_json_str(l.v[k], "message_id", mid, sizeof mid) != 1 ||
        sscanf(mid, "<shared-%d@", &i) != 1 || i < 0 || i >= N_MSGS)
      continue;
    const char *a = strstr(l.v[k], "\"mail_at\":"), *b = strstr(l.v[k], "\"end_at\":");
    cr_assert(a && b, "%s", l.v[k]);
    if (s[i].n < 16) {
      s[i].at[s[i].n][0] = strtod(a + 10, NULL);
      s[i].at[s[i].n][1] = strtod(b + 9, NULL);
    }
    s[i].n++;
  }
  h_lines_free(&l);
  *arrived = *dups = *overlaps = 0;
  for (int i = 0; i < N_MSGS; i++) {
    *arrived += ok[i] && s[i].n > 0;
    *dups += s[i].n > 1 ? s[i].n - 1 : 0;
    int m = s[i].n < 16 ? s[i].n : 16;
    for (int x = 0; x < m; x++)
      for (int y = x + 1; y < m; y++)
        *overlaps += s[i].at[x][0] < s[i].at[y][1] && s[i].at[y][0] < s[i].at[x][1];
  }
}

/* Lines of a replica's log with `event`. */
static int log_count(const h_proxy *px, const char *event) {
  char *log = h_read_file(px->log, NULL);
  int n = 0;
  for (const char *p = log; p && (p = strstr(p, event)) != NULL; p++)
    n++;
  free(log);
  return n;
}

/* OFD locks a process holds now (/proc/PID/fdinfo "lock:" lines): its
 * liveness lock and one per message it has claimed. */
static int ofd_locks(pid_t pid) {
  char p[128], f[400];
  snprintf(p, sizeof p, "/proc/%d/fdinfo", (int)pid);
  DIR *d = opendir(p);
  if (!d)
    return -1;
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.')
      continue;
    snprintf(f, sizeof f, "%s/%s", p, de->d_name);
    char *text = h_read_file(f, NULL);
    for (const char *q = text; q && (q = strstr(q, "OFDLCK")) != NULL; q++)
      n++;
    free(text);
  }
  closedir(d);
  return n;
}

static int ok_count(const bool *ok) {
  int n = 0;
  for (int i = 0; i < N_MSGS; i++)
    n += ok[i];
  return n;
}

ITest(spool_shared, three_replicas_one_killed_every_message_once_at_a_time) {
  int up_port = h_free_port();
  h_proxy px[N_REPLICAS];
  char tag[N_REPLICAS][16], yaml[8192], name[16];
  static char out[1 << 20];
  for (int r = 0; r < N_REPLICAS; r++) {
    replica_yaml(up_port, yaml, sizeof yaml);
    snprintf(name, sizeof name, "replica%d", r + 1);
    h_proxy_start_as(&px[r], name, yaml, NULL);
    replica_tag(&px[r], tag[r]);
  }
  /* The upstream is down (nothing listens on up_port): 300 messages
   * spread over the three, each spooled before its 250. */
  static bool ok[N_MSGS];
  char reply[512];
  int64_t t0 = h_now_ms();
  for (int i = 0; i < N_MSGS; i++)
    ok[i] = send_msg(px[i % N_REPLICAS].port, i, reply) == 250;
  int n_ok = ok_count(ok);
  cr_log_info("shared: %d sent, %d got 250 in %lld ms", N_MSGS, n_ok, (long long)(h_now_ms() - t0));
  cr_assert_eq(n_ok, N_MSGS, "every message is spooled while the upstream is down: %s", reply);

  /* Any replica shows the whole queue: replica 1 lists the others'. */
  cr_assert(wait_count(tag[0], N_MSGS, 8000, out, sizeof out), "replica 1's LIST: %.300s", out);
  /* The queue command asks whichever replica answers first: each sees
   * the whole queue once its rescan (every 2 s) has run. */
  for (int r = 1; r < N_REPLICAS; r++)
    cr_assert(wait_count(tag[r], N_MSGS, 8000, out, sizeof out), "replica %d's LIST: %.300s", r + 1,
              out);
  cr_assert_eq(sp_count_lines(out, "to=<someone@example.com>"), N_MSGS, "one line per message");
  char cli[4096];
  cr_assert_eq(sp_queue(&px[1], "list | tail -1", cli, sizeof cli), 0, "%s", cli);
  cr_assert(strstr(cli, "300 messages"), "the queue command on a shared spool: %s", cli);

  /* The upstream comes back; each replica is told to retry now (past its
   * back-off); replica 3 is killed in the middle of the delivery. */
  char port_s[16];
  snprintf(port_s, sizeof port_s, "%d", up_port);
  const char *extra[] = {"--port", port_s, "--data-delay", "0.02", NULL};
  h_upstream up;
  h_upstream_start(&up, "starttls", extra);
  for (int r = 0; r < N_REPLICAS; r++)
    cr_assert(ask(tag[r], "RETRY\n", out, sizeof out), "RETRY on replica %d: %s", r + 1, out);
  size_t got = h_wait_records(up.record, "message", 40, 20000);
  cr_assert_geq(got, 40, "deliveries started");
  /* Killed while it holds at least one message's claim. */
  int64_t until = h_now_ms() + 10000;
  while (ofd_locks(px[2].proc->pid) < 2 && h_now_ms() < until)
    h_sleep_ms(1);
  int locks = ofd_locks(px[2].proc->pid);
  h_proc_kill(px[2].proc);
  cr_assert_geq(locks, 2, "replica 3 held a claim when it was killed");
  cr_assert(wait_count(tag[0], 0, 40000, out, sizeof out), "queue drained: %.300s", out);
  /* The killed replica's socket is still in ctl/: the command skips it. */
  cr_assert_eq(sp_queue(&px[0], "list", cli, sizeof cli), 0, "%s", cli);
  cr_assert(!strncmp(cli, "0 messages", 10), "%s", cli);
  h_wait_records(up.record, "message", (size_t)n_ok, 5000);

  static seen s[N_MSGS];
  int arrived, dups, overlaps;
  tally(up.record, s, &arrived, &dups, &overlaps, ok);
  fprintf(stderr,
          "spool_shared kill test: sent=%d 250=%d arrived=%d duplicates=%d overlaps=%d "
          "(replica 3 killed holding %d claims after %zu deliveries; delivered by replica "
          "1/2/3: %d/%d/%d)\n",
          N_MSGS, n_ok, arrived, dups, overlaps, locks - 1, got,
          log_count(&px[0], "spool-delivered"), log_count(&px[1], "spool-delivered"),
          log_count(&px[2], "spool-delivered"));
  cr_assert_eq(arrived, n_ok, "every 250'd message arrives");
  cr_assert_eq(overlaps, 0, "no message is delivered by two processes at once");
  cr_assert_leq(dups, 2 * 2, "at most the killed replica's deliveries after their dot repeat");
}

ITest(spool_shared, an_unshared_second_process_is_refused_both_ways) {
  char yaml[8192], out[4096];
  h_proxy a;
  sp_start(&a, h_free_port(), NULL, NULL); /* unshared, <test dir>/spool */
  /* A second unshared one, and a shared one, on the same directory. */
  char shared[8192];
  replica_yaml(h_free_port(), shared, sizeof shared);
  sp_yaml(h_free_port(), NULL, NULL, yaml, sizeof yaml);
  const char *cfgs[] = {yaml, shared};
  const char *why[] = {"in use by another smtp-tls-proxy", "without spool.shared"};
  for (int i = 0; i < 2; i++) {
    char path[512], cmd[1100];
    snprintf(path, sizeof path, "%s/second%d.yaml", h_dir(), i);
    h_write_file(path, cfgs[i], strlen(cfgs[i]));
    snprintf(cmd, sizeof cmd, "'%s' -c '%s'", STP_BINARY, path);
    char *env[] = {H_PW_ENV "=" H_PW, NULL};
    cr_assert_eq(h_run(cmd, env, 10000, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, why[i]), "%s", out);
  }
  /* A reload cannot make it shared: the directory's locks are taken once. */
  h_write_file(a.config, shared, strlen(shared));
  h_proc_signal(a.proc, SIGHUP);
  const char *warn[] = {"spool-shared-unchanged", "shared=false", NULL};
  cr_assert(h_file_wait_line(a.log, warn, 5000, out, sizeof out), "no warning at the reload");
  h_proc_signal(a.proc, SIGTERM);
  cr_assert_eq(h_proc_wait_exit(a.proc, 10000), 0);
  /* The other way round: shared first, then an unshared one. */
  h_proxy b;
  h_proxy_start_as(&b, "shared1", shared, NULL);
  char cmd[1100];
  snprintf(cmd, sizeof cmd, "'%s' -c '%s/second0.yaml'", STP_BINARY, h_dir());
  char *env[] = {H_PW_ENV "=" H_PW, NULL};
  cr_assert_eq(h_run(cmd, env, 10000, out, sizeof out), 1, "%s", out);
  cr_assert(strstr(out, "in use by another smtp-tls-proxy"), "%s", out);
}

ITest(spool_shared, refused_where_the_lock_probe_fails) {
  char yaml[8192], path[512], ctl[512], cmd[1100], out[4096];
  char preload[600], fault[600], asan[1024];
  replica_yaml(h_free_port(), yaml, sizeof yaml);
  snprintf(path, sizeof path, "%s/shared.yaml", h_dir());
  h_write_file(path, yaml, strlen(yaml));
  snprintf(ctl, sizeof ctl, "%s/faults", h_dir());
  snprintf(preload, sizeof preload, "LD_PRELOAD=%s", STP_FAULT_SHIM);
  snprintf(fault, sizeof fault, "STP_FAULT_FILE=%s", ctl);
  /* An ASan build wants its runtime first; the shim comes first here. */
  const char *ao = getenv("ASAN_OPTIONS");
  snprintf(asan, sizeof asan, "ASAN_OPTIONS=%s%sverify_asan_link_order=0", ao ? ao : "",
           ao && *ao ? ":" : "");
  char *env[] = {H_PW_ENV "=" H_PW, preload, fault, asan, NULL};
  snprintf(cmd, sizeof cmd, "'%s' -c '%s'", STP_BINARY, path);
  const char *words[] = {"lock-fail", "lock-fake"};
  const char *why[] = {"gives no file locks", "do not exclude each other"};
  for (int i = 0; i < 2; i++) {
    h_write_file(ctl, words[i], strlen(words[i]));
    cr_assert_eq(h_run(cmd, env, 10000, out, sizeof out), 1, "%s: %s", words[i], out);
    cr_assert(strstr(out, why[i]), "%s: %s", words[i], out);
  }
  /* The same shim with no fault: it starts (the refusals were the probe's). */
  h_write_file(ctl, "", 0);
  h_proxy px;
  h_proxy_start_yaml_env(&px, yaml, (char *const[]){preload, fault, asan, NULL});
  h_proc_signal(px.proc, SIGTERM);
  cr_assert_eq(h_proc_wait_exit(px.proc, 10000), 0);
}

/* A TCP port that accepts (in the kernel's backlog) and never greets. */
static int blackhole(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  cr_assert_eq(listen(fd, 16), 0);
  socklen_t len = sizeof a;
  getsockname(fd, (struct sockaddr *)&a, &len);
  *port = ntohs(a.sin_port);
  return fd;
}

ITest(spool_shared, sigterm_drains_and_hands_the_message_over) {
  char yaml[8192], reply[512], out[8192], id[32], tag[16];
  /* Replica A spools a message (its upstream is down), then is pointed
   * (reload) at an upstream that never greets and told to retry: its
   * delivery hangs there, holding the message's claim. */
  int down = h_free_port(), hole_port;
  int hole = blackhole(&hole_port);
  h_proxy a, b;
  replica_yaml(down, yaml, sizeof yaml);
  h_proxy_start_as(&a, "replicaA", yaml, NULL);
  replica_tag(&a, tag);
  cr_assert_eq(send_msg(a.port, 7, reply), 250, "%s", reply);
  cr_assert(sp_queued_id(reply, id), "%s", reply);
  replica_yaml(hole_port, yaml, sizeof yaml);
  h_write_file(a.config, yaml, strlen(yaml));
  h_proc_signal(a.proc, SIGHUP);
  const char *reloaded[] = {"reloaded", NULL};
  cr_assert(h_file_wait_line(a.log, reloaded, 5000, out, sizeof out));
  cr_assert(ask(tag, "RETRY\n", out, sizeof out), "%s", out);
  char show[64];
  snprintf(show, sizeof show, "SHOW %s\n", id);
  int64_t deadline = h_now_ms() + 5000;
  while (!(ask(tag, show, out, sizeof out) && strstr(out, "delivering: yes")) &&
         h_now_ms() < deadline)
    h_sleep_ms(50);
  cr_assert(strstr(out, "delivering: yes"), "%s", out);

  /* Replica B, with a working upstream, cannot take it while A holds it. */
  h_upstream up;
  h_upstream_start(&up, "starttls", NULL);
  replica_yaml(up.port, yaml, sizeof yaml);
  h_proxy_start_as(&b, "replicaB", yaml, NULL);
  h_sleep_ms(RESCAN_WAIT_MS);
  cr_assert_eq(h_wait_records(up.record, "message", 1, 0), 0, "B waits while A holds it");

  /* SIGTERM: A cuts its delivery (no final dot was sent), lets go of the
   * claim and exits 0 long before its 20 s grace or 15 s greeting
   * timeout; B delivers the message without waiting for A. */
  int64_t t_term = h_now_ms();
  h_proc_signal(a.proc, SIGTERM);
  cr_assert_eq(h_proc_wait_exit(a.proc, 10000), 0, "A exits 0");
  int64_t t_exit = h_now_ms();
  cr_assert_eq(h_wait_records(up.record, "message", 1, 10000), 1, "B delivers A's message");
  cr_log_info("drain: A exited %lld ms after SIGTERM, B delivered %lld ms after that",
              (long long)(t_exit - t_term), (long long)(h_now_ms() - t_exit));
  cr_assert_lt(t_exit - t_term, 10000, "A did not wait for its stuck delivery");
  cr_assert(!h_file_contains(a.log, "spool-deferred", 14), "A's attempt was cut, not failed");
  cr_assert(sp_wait_empty(&b, 10000), "B's queue is empty");
  close(hole);
}

ITest(spool_shared, start_up_removes_only_dead_replicas_tmp_files) {
  char yaml[8192], tag[16], live[600], dead[600], stray[600], lockf[600];
  replica_yaml(h_free_port(), yaml, sizeof yaml);
  h_proxy a, b;
  h_proxy_start_as(&a, "replica1", yaml, NULL);
  replica_tag(&a, tag);
  /* A file replica 1 is writing, one of a replica that died (its
   * liveness file is there, unlocked) and one without a replica name. */
  snprintf(live, sizeof live, "%s/spool/tmp/%s.0189c2f3a4b5c6d7", h_dir(), tag);
  snprintf(dead, sizeof dead, "%s/spool/tmp/deadbeef.0189c2f3a4b5c6d8", h_dir());
  snprintf(lockf, sizeof lockf, "%s/spool/ctl/deadbeef.lock", h_dir());
  snprintf(stray, sizeof stray, "%s/spool/tmp/0189c2f3a4b5c6d9", h_dir());
  h_write_file(live, "being written", 13);
  h_write_file(dead, "left by a crash", 15);
  h_write_file(lockf, "", 0);
  h_write_file(stray, "left unshared", 13);
  h_proxy_start_as(&b, "replica2", yaml, NULL);
  cr_assert(access(live, F_OK) == 0, "a live replica's file stays");
  cr_assert(access(dead, F_OK) != 0, "a dead replica's file goes");
  cr_assert(access(lockf, F_OK) != 0, "and its liveness file");
  cr_assert(access(stray, F_OK) != 0, "a file without a replica name goes");
  /* While they run, what a replica that died leaves goes too (the sweep
   * every 5th rescan, 10 s), and a live one's stays. */
  h_write_file(dead, "left by a crash", 15);
  h_write_file(lockf, "", 0);
  int64_t deadline = h_now_ms() + 15000;
  while ((access(dead, F_OK) == 0 || access(lockf, F_OK) == 0) && h_now_ms() < deadline)
    h_sleep_ms(200);
  cr_assert(access(dead, F_OK) != 0 && access(lockf, F_OK) != 0, "swept while running");
  cr_assert(access(live, F_OK) == 0, "a live replica's file stays");
}

ITest(spool_shared, one_queue_retry_reaches_replicas_still_backing_off) {
  /* Both replicas back off from the upstream (30 s); `queue retry` goes
   * to one of them. The other must not answer the now-due messages with
   * a deferral of its own (that would push them back by the retry
   * interval, an hour here): it leaves them to the one that may try. */
  int up_port = h_free_port();
  char yaml[8192], reply[512], out[4096], name[16];
  h_proxy px[2];
  for (int r = 0; r < 2; r++) {
    replica_yaml(up_port, yaml, sizeof yaml);
    snprintf(name, sizeof name, "replica%d", r + 1);
    h_proxy_start_as(&px[r], name, yaml, NULL);
  }
  /* 40 messages at 0.2 s each: the replica told to retry is still at
   * it when the other one's rescan sees them due. */
  for (int i = 0; i < 40; i++)
    cr_assert_eq(send_msg(px[i % 2].port, i, reply), 250, "%s", reply);
  h_sleep_ms(RESCAN_WAIT_MS); /* each replica knows them all */
  char port_s[16];
  snprintf(port_s, sizeof port_s, "%d", up_port);
  const char *extra[] = {"--port", port_s, "--data-delay", "0.2", NULL};
  h_upstream up;
  h_upstream_start(&up, "starttls", extra);
  cr_assert_eq(sp_queue(&px[0], "retry", out, sizeof out), 0, "%s", out);
  cr_assert_eq(h_wait_records(up.record, "message", 40, 20000), 40, "all, long before 1 h");
  cr_assert(sp_wait_empty(&px[1], 10000));
}

/* SIGTERM while a spool delivery waits for the answer to its final dot
 * (the upstream holds it back 3 s): the delivery ends, the message is
 * removed after the upstream's 250, and the process exits 0. Cutting it
 * would leave a message the upstream has, to be sent again. */
static void dot_answer_awaited(bool shared) {
  int up_port = h_free_port();
  char yaml[8192], reply[512], out[8192], id[32], show[64];
  spool_proxy_yaml(up_port, shared, yaml, sizeof yaml);
  h_proxy px;
  h_proxy_start_as(&px, "replica1", yaml, NULL);
  cr_assert_eq(send_msg(px.port, 3, reply), 250, "%s", reply);
  cr_assert(sp_queued_id(reply, id), "%s", reply);
  char port_s[16];
  snprintf(port_s, sizeof port_s, "%d", up_port);
  const char *extra[] = {"--port", port_s, "--data-delay", "3", NULL};
  h_upstream up;
  h_upstream_start(&up, "starttls", extra);
  cr_assert_eq(sp_queue(&px, "retry", out, sizeof out), 0, "%s", out);
  snprintf(show, sizeof show, "show %s", id);
  int64_t deadline = h_now_ms() + 5000;
  while (!(sp_queue(&px, show, out, sizeof out) == 0 && strstr(out, "delivering: yes")) &&
         h_now_ms() < deadline)
    h_sleep_ms(50);
  cr_assert(strstr(out, "delivering: yes"), "%s", out);
  h_sleep_ms(1000); /* the body is out: the dot's answer is awaited */
  h_proc_signal(px.proc, SIGTERM);
  cr_assert_eq(h_proc_wait_exit(px.proc, 15000), 0);
  cr_assert_eq(h_wait_records(up.record, "message", 1, 0), 1);
  cr_assert(h_file_contains(px.log, "spool-delivered", 15), "the delivery ended");
  cr_assert(sp_queue_dir_empty(&px), "and the message is gone from the queue");
}

ITest(spool_shared, sigterm_lets_a_delivery_awaiting_its_dot_answer_end_shared) {
  dot_answer_awaited(true);
}

ITest(spool_shared, sigterm_lets_a_delivery_awaiting_its_dot_answer_end_unshared) {
  dot_answer_awaited(false);
}
