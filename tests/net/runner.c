/* runner.c - runs the net tests (list.h), each in a forked child with a
 * time limit, and prints one TAP-like line per test:
 *
 *   net_tests [--list] [NAME-SUBSTRING...]
 *
 * The child initialises its own loop, runs the test, then closes the loop:
 * pending close callbacks and DNS requests are let finish (bounded), and a
 * handle still open fails the test (uv_print_all_handles shows it). Exit
 * status: 0 when every selected test passed. Under ASan the child's leak
 * check runs at its exit, so a leak fails that test too.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../proxy/net/defer.h"
#include "list.h"
#include "net_test.h"
#include "smtp-tls-proxy/log.h"

#define TEST_SECONDS 30

#define DECLARE(name) void test_##name(void);
NET_TESTS(DECLARE)

static const struct {
  const char *name;
  void (*fn)(void);
} g_tests[] = {
#define ENTRY(name) {#name, test_##name},
    NET_TESTS(ENTRY)};

int net_inside;
static uv_loop_t g_loop;
static char g_certs[256];

uv_loop_t *net_loop(void) {
  return &g_loop;
}

const char *net_certs(void) {
  return g_certs;
}

char *net_cert_path(const char *file) {
  static char buf[4][320];
  static int i;
  i = (i + 1) % 4;
  snprintf(buf[i], sizeof buf[i], "%s/%s", g_certs, file);
  return buf[i];
}

static void stop_cb(uv_timer_t *t) {
  *(bool *)t->data = true;
}

bool net_run_until(const bool *flag, uint64_t ms) {
  bool expired = false;
  uv_timer_t t;
  uv_timer_init(&g_loop, &t);
  t.data = &expired;
  uv_timer_start(&t, stop_cb, ms, 0);
  while (!*flag && !expired)
    uv_run(&g_loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&g_loop, UV_RUN_NOWAIT);
  return *flag;
}

void net_run_for(uint64_t ms) {
  bool never = false;
  net_run_until(&never, ms);
}

static void closed_cb(uv_handle_t *h) {
  *(bool *)h->data = true;
}

void net_close(uv_handle_t *h) {
  bool closed = false;
  h->data = &closed;
  uv_close(h, closed_cb);
  ASSERT(net_run_until(&closed, 2000));
}

int net_listen(uv_tcp_t *srv, uv_connection_cb cb, void *data) {
  struct sockaddr_in sa;
  uv_ip4_addr("127.0.0.1", 0, &sa);
  ASSERT_EQ(uv_tcp_init(&g_loop, srv), 0);
  srv->data = data;
  ASSERT_EQ(uv_tcp_bind(srv, (const struct sockaddr *)&sa, 0), 0);
  ASSERT_EQ(uv_listen((uv_stream_t *)srv, 64, cb), 0);
  struct sockaddr_storage ss;
  int len = sizeof ss;
  ASSERT_EQ(uv_tcp_getsockname(srv, (struct sockaddr *)&ss, &len), 0);
  return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

int net_free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof sa;
  ASSERT(fd >= 0);
  ASSERT_EQ(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  ASSERT_EQ(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
  close(fd);
  return ntohs(sa.sin_port);
}

/* listen(fd, 0) accepts one pending connection; the ones after it get no
 * answer to their SYN while nobody accepts, so a connect to it hangs. */
int net_blackhole(int *fd_out, int *fds, size_t nfds) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof sa;
  ASSERT_EQ(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  ASSERT_EQ(listen(fd, 0), 0);
  ASSERT_EQ(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
  for (size_t i = 0; i < nfds; i++) { /* fill the backlog */
    fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int r = connect(fds[i], (struct sockaddr *)&sa, sizeof sa);
    ASSERT(r == 0 || errno == EINPROGRESS);
  }
  usleep(100 * 1000);
  *fd_out = fd;
  return ntohs(sa.sin_port);
}

void net_blackhole_close(int fd, int *fds, size_t nfds) {
  for (size_t i = 0; i < nfds; i++)
    close(fds[i]);
  close(fd);
}

/* ---- the child ---------------------------------------------------------------- */

static int run_child(void (*fn)(void)) {
  alarm(TEST_SECONDS);
  signal(SIGPIPE, SIG_IGN);
  stp_log_setup(getenv("NET_TEST_LOG") ? STP_LOG_DEBUG : STP_LOG_ERROR, 0, 2);
  ASSERT_EQ(uv_loop_init(&g_loop), 0);
  fn();
  ASSERT_EQ(net_inside, 0);
  defer_shutdown();
  /* Close callbacks and cancelled DNS requests finish within a few turns. */
  for (int i = 0; i < 400 && uv_loop_alive(&g_loop); i++) {
    uv_run(&g_loop, UV_RUN_NOWAIT);
    if (uv_loop_alive(&g_loop))
      usleep(5000);
  }
  if (uv_loop_close(&g_loop) != 0) {
    fprintf(stderr, "handles left open at the end of the test:\n");
    uv_print_all_handles(&g_loop, stderr);
    return 1;
  }
  return 0;
}

static bool selected(const char *name, int argc, char **argv) {
  int filters = 0;
  for (int i = 1; i < argc; i++) {
    if (argv[i][0] == '-')
      continue;
    filters++;
    if (strstr(name, argv[i]))
      return true;
  }
  return filters == 0;
}

static void make_certs(void) {
  snprintf(g_certs, sizeof g_certs, "/tmp/stp-net-XXXXXX");
  ASSERT(mkdtemp(g_certs));
  char cmd[768];
  snprintf(cmd, sizeof cmd, "sh '%s/gen_certs.sh' '%s'", STP_TOOLS_DIR, g_certs);
  ASSERT_EQ(system(cmd), 0);
}

static void remove_certs(void) {
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_certs);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", g_certs);
}

int main(int argc, char **argv) {
  size_t n = sizeof g_tests / sizeof *g_tests, run = 0, failed = 0;
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "--list")) {
      for (size_t k = 0; k < n; k++)
        puts(g_tests[k].name);
      return 0;
    }
  make_certs();
  for (size_t k = 0; k < n; k++) {
    if (!selected(g_tests[k].name, argc, argv))
      continue;
    fflush(stdout);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0)
      exit(run_child(g_tests[k].fn));
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
      ;
    run++;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
      printf("ok %zu - %s\n", run, g_tests[k].name);
    } else {
      failed++;
      if (WIFSIGNALED(st))
        printf("not ok %zu - %s (signal %d%s)\n", run, g_tests[k].name, WTERMSIG(st),
               WTERMSIG(st) == SIGALRM ? ": timed out" : "");
      else
        printf("not ok %zu - %s (exit %d)\n", run, g_tests[k].name, WEXITSTATUS(st));
    }
  }
  remove_certs();
  printf("net_tests: %zu run, %zu passed, %zu failed\n", run, run - failed, failed);
  return failed || run == 0 ? 1 : 0;
}
