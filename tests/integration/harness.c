/* harness.c - see harness.h. Everything a test starts is tracked here and
 * released in h_teardown(), which Criterion runs after every test of the
 * suite, also after a failed assertion. */
#include "harness.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

TestSuite(integ, .init = h_setup, .fini = h_teardown, .timeout = 60);

#define MAX_PROCS 16
#define MAX_CONNS 32

static char g_dir[256];
static char g_certs[300];
static bool g_certs_made;
static h_proc *g_procs[MAX_PROCS];
static size_t g_nprocs;
/* Socket fds, not h_smtp pointers: the structs live on the stack of test
 * functions that have returned by the time .fini runs. */
static int g_conns[MAX_CONNS];
static size_t g_nconns;
/* A proxy stopped uncleanly: keep the directory with its stderr. */
static bool g_keep_dir;

/* ------------------------------------------------------------------------ */
int64_t h_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void h_sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

int h_free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  cr_assert(fd >= 0);
  struct sockaddr_in sa = {.sin_family = AF_INET};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
  close(fd);
  return ntohs(sa.sin_port);
}

static int remaining(int64_t deadline) {
  int64_t r = deadline - h_now_ms();
  return r < 0 ? 0 : (int)r;
}

/* ------------------------------------------------------------------------ */
void h_setup(void) {
  signal(SIGPIPE, SIG_IGN);
  g_nprocs = 0;
  g_nconns = 0;
  g_certs_made = false;
  g_keep_dir = false;
  snprintf(g_dir, sizeof g_dir, "/tmp/stp-integ-XXXXXX");
  cr_assert_not_null(mkdtemp(g_dir), "mkdtemp: %s", strerror(errno));
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  remove(path);
  return 0;
}

static int64_t teardown_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Where a sanitizer's report starts in a child's stderr, or NULL. The log
 * comes first and a report last, so the whole file is searched. */
static const char *sanitizer_report(const char *err, const char **what) {
  static const struct {
    const char *mark, *what;
  } marks[] = {{"ERROR: AddressSanitizer", "AddressSanitizer"},
               {"ERROR: LeakSanitizer", "LeakSanitizer"},
               {"runtime error:", "UBSan runtime error"}};
  for (size_t i = 0; i < sizeof marks / sizeof *marks; i++) {
    const char *at = strstr(err, marks[i].mark);
    if (at) {
      *what = marks[i].what;
      /* Back to the start of the report's line ("==PID==ERROR: ..."). */
      while (at > err && at[-1] != '\n')
        at--;
      return at;
    }
  }
  return NULL;
}

static void check_clean_exit(h_proc *p, char *failure, size_t cap) {
  kill(p->pid, SIGTERM);
  int64_t deadline = teardown_now_ms() + 15000;
  int st = 0;
  while (waitpid(p->pid, &st, WNOHANG) != p->pid) {
    if (teardown_now_ms() > deadline) {
      snprintf(failure, cap, "%s did not exit within 15 s of SIGTERM (dir kept: %s)", p->name,
               g_dir);
      return;
    }
    struct timespec d = {0, 10 * 1000000};
    nanosleep(&d, NULL);
  }
  p->reaped = true;
  p->status = st;
  size_t len = 0;
  char *err = h_read_file(p->err_path, &len);
  const char *what = "bad exit";
  const char *report = err ? sanitizer_report(err, &what) : NULL;
  if (report || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    /* The report itself (it comes last), else the end of the log, where
     * the reason for a bad exit is. */
    const char *show = report ? report : err ? err + (len > 3000 ? len - 3000 : 0) : "";
    snprintf(failure, cap, "%s stopped uncleanly (%s, status %d); its stderr%s:\n%s", p->name, what,
             WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st),
             report ? " from the report on" : " (end)", show);
  }
  free(err);
}

bool h_procs_unclean(char *failure, size_t cap) {
  failure[0] = '\0';
  /* The proxy first (it may hold connections to the upstreams). */
  for (size_t i = g_nprocs; i > 0 && !failure[0]; i--) {
    h_proc *p = g_procs[i - 1];
    if (p->checked_exit && !p->reaped)
      check_clean_exit(p, failure, cap);
  }
  return failure[0] != '\0';
}

void h_check_procs(void) {
  static char failure[16384];
  if (h_procs_unclean(failure, sizeof failure)) {
    g_keep_dir = true;
    cr_assert_fail("%s", failure);
  }
}

/* Cleanup only: Criterion ignores assertions here, so the clean-exit check
 * runs inside every test body instead (ITest, h_check_procs). What is left
 * is from a test that already failed: kill it. */
void h_teardown(void) {
  for (size_t i = 0; i < g_nconns; i++)
    if (g_conns[i] >= 0)
      close(g_conns[i]);
  g_nconns = 0;
  for (size_t i = g_nprocs; i > 0; i--) {
    h_proc *p = g_procs[i - 1];
    h_proc_kill(p);
    if (p->out_fd >= 0)
      close(p->out_fd);
    free(p);
  }
  g_nprocs = 0;
  if (g_dir[0] && !getenv("STP_INTEG_KEEP") && !g_keep_dir)
    nftw(g_dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  g_dir[0] = '\0';
}

const char *h_dir(void) {
  return g_dir;
}

char *h_path(char *out, size_t cap, const char *name) {
  snprintf(out, cap, "%s/%s", g_dir, name);
  return out;
}

const char *h_certs(void) {
  if (!g_certs_made) {
    char cmd[1024], out[4096];
    snprintf(g_certs, sizeof g_certs, "%s/certs", g_dir);
    snprintf(cmd, sizeof cmd, "sh '%s/gen_certs.sh' '%s'", STP_TOOLS_DIR, g_certs);
    int rc = h_run(cmd, NULL, 30000, out, sizeof out);
    cr_assert_eq(rc, 0, "gen_certs.sh failed (%d): %s", rc, out);
    g_certs_made = true;
  }
  return g_certs;
}

/* --- processes ----------------------------------------------------------- */
static void child_exec(char *const argv[], char *const env_add[], int out_wr,
                       const char *err_path) {
  setpgid(0, 0);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  signal(SIGPIPE, SIG_DFL);
  int devnull = open("/dev/null", O_RDONLY);
  if (devnull >= 0) {
    dup2(devnull, 0);
    close(devnull);
  }
  if (out_wr >= 0) {
    dup2(out_wr, 1);
    close(out_wr);
  }
  int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
  if (err >= 0) {
    if (out_wr < 0)
      dup2(err, 1);
    dup2(err, 2);
    close(err);
  }
  for (size_t i = 0; env_add && env_add[i]; i++)
    putenv(env_add[i]);
  execvp(argv[0], argv);
  fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
  _exit(127);
}

h_proc *h_spawn(const char *name, char *const argv[], char *const env_add[]) {
  cr_assert(g_nprocs < MAX_PROCS, "too many processes in one test");
  h_proc *p = calloc(1, sizeof *p);
  cr_assert_not_null(p);
  snprintf(p->name, sizeof p->name, "%s", name);
  snprintf(p->err_path, sizeof p->err_path, "%s/%s.err", g_dir, name);
  /* A restarted process must not be judged by its predecessor's output
   * until the child has truncated the file. */
  unlink(p->err_path);
  int fds[2];
  cr_assert_eq(pipe2(fds, O_CLOEXEC), 0);
  pid_t pid = fork();
  cr_assert(pid >= 0, "fork: %s", strerror(errno));
  if (pid == 0) {
    close(fds[0]);
    int wr = dup(fds[1]); /* without O_CLOEXEC */
    child_exec(argv, env_add, wr, p->err_path);
  }
  setpgid(pid, pid); /* both sides, whichever runs first */
  close(fds[1]);
  p->pid = pid;
  p->out_fd = fds[0];
  g_procs[g_nprocs++] = p;
  return p;
}

int h_proc_wait_line(h_proc *p, const char *prefix, int timeout_ms, char *line, size_t cap) {
  int64_t deadline = h_now_ms() + timeout_ms;
  size_t plen = strlen(prefix);
  for (;;) {
    /* Scan the complete lines buffered so far. */
    size_t start = 0;
    for (size_t i = 0; i < p->out_len; i++) {
      if (p->out_buf[i] != '\n')
        continue;
      size_t n = i - start;
      if (n >= plen && memcmp(p->out_buf + start, prefix, plen) == 0) {
        if (line && cap) {
          size_t m = n < cap - 1 ? n : cap - 1;
          memcpy(line, p->out_buf + start, m);
          line[m] = '\0';
        }
        memmove(p->out_buf, p->out_buf + i + 1, p->out_len - i - 1);
        p->out_len -= i + 1;
        return 0;
      }
      start = i + 1;
    }
    if (start > 0) { /* drop non-matching complete lines */
      memmove(p->out_buf, p->out_buf + start, p->out_len - start);
      p->out_len -= start;
    }
    if (p->out_fd < 0 || remaining(deadline) == 0)
      return -1;
    struct pollfd pfd = {.fd = p->out_fd, .events = POLLIN};
    int r = poll(&pfd, 1, remaining(deadline));
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return -1;
    if (p->out_len >= sizeof p->out_buf - 1)
      p->out_len = 0; /* an absurd line: forget it */
    ssize_t n = read(p->out_fd, p->out_buf + p->out_len, sizeof p->out_buf - 1 - p->out_len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      close(p->out_fd);
      p->out_fd = -1;
      continue;
    }
    p->out_len += (size_t)n;
  }
}

void h_proc_signal(h_proc *p, int sig) {
  if (!p->reaped)
    kill(p->pid, sig);
}

static bool try_reap(h_proc *p, int flags) {
  if (p->reaped)
    return true;
  int st;
  pid_t r = waitpid(p->pid, &st, flags);
  if (r == p->pid) {
    p->reaped = true;
    p->status = st;
    return true;
  }
  return false;
}

bool h_proc_alive(h_proc *p) {
  return !try_reap(p, WNOHANG);
}

int h_proc_wait_exit(h_proc *p, int timeout_ms) {
  int64_t deadline = h_now_ms() + timeout_ms;
  while (!try_reap(p, WNOHANG)) {
    if (remaining(deadline) == 0)
      return -1;
    h_sleep_ms(10);
  }
  if (WIFEXITED(p->status))
    return WEXITSTATUS(p->status);
  if (WIFSIGNALED(p->status))
    return 128 + WTERMSIG(p->status);
  return -1;
}

void h_proc_kill(h_proc *p) {
  if (!p->reaped) {
    kill(-p->pid, SIGKILL);
    kill(p->pid, SIGKILL);
    try_reap(p, 0);
  } else {
    kill(-p->pid, SIGKILL); /* leftovers in its group, if any */
  }
}

void h_proc_forget(h_proc *p) {
  h_proc_kill(p);
  if (p->out_fd >= 0)
    close(p->out_fd);
  for (size_t i = 0; i < g_nprocs; i++)
    if (g_procs[i] == p) {
      memmove(&g_procs[i], &g_procs[i + 1], (g_nprocs - i - 1) * sizeof *g_procs);
      g_nprocs--;
      break;
    }
  free(p);
}

int h_run(const char *cmd, char *const env_add[], int timeout_ms, char *out, size_t cap) {
  static unsigned seq;
  char out_path[512];
  snprintf(out_path, sizeof out_path, "%s/run-%u.out", g_dir, seq++);
  pid_t pid = fork();
  cr_assert(pid >= 0, "fork: %s", strerror(errno));
  if (pid == 0) {
    char *argv[] = {"/bin/sh", "-c", (char *)cmd, NULL};
    child_exec(argv, env_add, -1, out_path);
  }
  setpgid(pid, pid);
  int64_t deadline = h_now_ms() + timeout_ms;
  int st = 0, rc = -1;
  for (;;) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) {
      rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      break;
    }
    if (remaining(deadline) == 0) {
      kill(-pid, SIGKILL);
      waitpid(pid, &st, 0);
      rc = -1;
      break;
    }
    h_sleep_ms(10);
  }
  kill(-pid, SIGKILL); /* anything it left behind */
  if (out && cap) {
    size_t n = 0;
    char *s = h_read_file(out_path, &n);
    size_t m = s ? (n < cap - 1 ? n : cap - 1) : 0;
    if (s)
      memcpy(out, s, m);
    out[m] = '\0';
    free(s);
  }
  return rc;
}

/* --- upstreams ----------------------------------------------------------- */
static void start_tool(h_upstream *u, const char *name, char **argv) {
  u->proc = h_spawn(name, argv, NULL);
  char line[128];
  int rc = h_proc_wait_line(u->proc, "READY ", 15000, line, sizeof line);
  if (rc != 0) {
    char *err = h_read_file(u->proc->err_path, NULL);
    cr_assert_fail("%s did not become ready: %s", name, err ? err : "");
  }
  u->port = atoi(line + 6);
  cr_assert(u->port > 0 && u->port < 65536, "bad READY line: %s", line);
}

void h_upstream_start(h_upstream *u, const char *tls, const char *const extra[]) {
  static unsigned seq;
  const char *certs = h_certs();
  char script[512], cert[512], key[512], user[128], name[32];
  memset(u, 0, sizeof *u);
  snprintf(name, sizeof name, "upstream%u", seq++);
  snprintf(script, sizeof script, "%s/upstream.py", STP_TOOLS_DIR);
  snprintf(cert, sizeof cert, "%s/server.crt", certs);
  snprintf(key, sizeof key, "%s/server.key", certs);
  snprintf(user, sizeof user, "%s:%s", H_USER, H_PW);
  snprintf(u->record, sizeof u->record, "%s/%s.jsonl", g_dir, name);
  char *argv[64];
  size_t n = 0;
  argv[n++] = H_PYTHON;
  argv[n++] = script;
  argv[n++] = "--host";
  argv[n++] = "127.0.0.1";
  argv[n++] = "--port";
  argv[n++] = "0";
  argv[n++] = "--tls";
  argv[n++] = (char *)tls;
  argv[n++] = "--cert";
  argv[n++] = cert;
  argv[n++] = "--key";
  argv[n++] = key;
  argv[n++] = "--auth-require";
  argv[n++] = "--user";
  argv[n++] = user;
  argv[n++] = "--record";
  argv[n++] = u->record;
  argv[n++] = "--lifetime";
  argv[n++] = "120";
  for (size_t i = 0; extra && extra[i] && n < 62; i++)
    argv[n++] = (char *)extra[i];
  argv[n] = NULL;
  start_tool(u, name, argv);
}

void h_fault_start(h_upstream *u, const char *mode, const char *tls, const char *cert_name) {
  static unsigned seq;
  const char *certs = h_certs();
  char script[512], cert[512], key[512], name[32];
  memset(u, 0, sizeof *u);
  snprintf(name, sizeof name, "fault%u", seq++);
  snprintf(script, sizeof script, "%s/fault_upstream.py", STP_TOOLS_DIR);
  snprintf(cert, sizeof cert, "%s/%s.crt", certs, cert_name);
  snprintf(key, sizeof key, "%s/%s.key", certs, cert_name);
  snprintf(u->record, sizeof u->record, "%s/%s.jsonl", g_dir, name);
  char *argv[] = {H_PYTHON,     script,    "--host",     "127.0.0.1", "--port", "0",     "--mode",
                  (char *)mode, "--tls",   (char *)tls,  "--cert",    cert,     "--key", key,
                  "--record",   u->record, "--lifetime", "120",       NULL};
  start_tool(u, name, argv);
}

void h_replay_start(h_upstream *u, const char *dialogue) {
  static unsigned seq;
  char script[512], name[32];
  memset(u, 0, sizeof *u);
  snprintf(name, sizeof name, "replay%u", seq++);
  snprintf(script, sizeof script, "%s/replay_upstream.py", STP_TOOLS_DIR);
  snprintf(u->record, sizeof u->record, "%s/%s.jsonl", g_dir, name);
  char *argv[] = {H_PYTHON,   script,       "--host",         "127.0.0.1", "--port",
                  "0",        "--dialogue", (char *)dialogue, "--certs",   (char *)h_certs(),
                  "--record", u->record,    "--lifetime",     "120",       NULL};
  start_tool(u, name, argv);
}

/* --- the proxy ----------------------------------------------------------- */
char *h_proxy_yaml(const h_proxy_opts *o, char *yaml, size_t cap) {
  const char *certs = h_certs();
  char auth[256] = "";
  if (!o->no_upstream_auth)
    snprintf(auth, sizeof auth, "    auth: { mechanism: auto, username: %s, password_env: %s }\n",
             H_USER, H_PW_ENV);
  int n = snprintf(
      yaml, cap,
      "hostname: proxy.test\n"
      "log: { level: %s, format: text }\n"
      "shutdown_grace: %s\n"
      "%s"
      "listeners:\n"
      "  - name: lan\n"
      "    listen: \"127.0.0.1:0\"\n"
      "%s"
      "upstreams:\n"
      "  - name: up\n"
      "    host: 127.0.0.1\n"
      "    port: %d\n"
      "    tls: %s\n"
      "    server_name: localhost\n"
      "    ca_file: %s/ca.crt\n"
      "    connect_timeout: %s\n"
      "    command_timeout: %s\n"
      "    data_timeout: %s\n"
      "%s%s"
      "routes:\n"
      "  - name: default\n"
      "    upstream: up\n"
      "%s",
      o->log_level ? o->log_level : "info", o->shutdown_grace ? o->shutdown_grace : "2s",
      o->top_extra ? o->top_extra : "", o->listener_extra ? o->listener_extra : "", o->up_port,
      o->up_tls ? o->up_tls : "starttls", certs, o->connect_timeout ? o->connect_timeout : "5s",
      o->command_timeout ? o->command_timeout : "10s", o->data_timeout ? o->data_timeout : "20s",
      auth, o->upstream_extra ? o->upstream_extra : "", o->route_extra ? o->route_extra : "");
  cr_assert(n > 0 && (size_t)n < cap, "yaml buffer too small");
  return yaml;
}

/* Port of `listening listener=lan addr=127.0.0.1:<port>` in the log. */
static int find_listen_port(const char *log) {
  const char *p = log;
  while ((p = strstr(p, "listening")) != NULL) {
    const char *eol = strchr(p, '\n');
    if (!eol)
      return -1; /* the line is not complete yet */
    const char *l = strstr(p, "listener=lan");
    const char *a = strstr(p, "addr=127.0.0.1:");
    if (l && a && l < eol && a < eol)
      return atoi(a + strlen("addr=127.0.0.1:"));
    p = eol;
  }
  return -1;
}

void h_proxy_start_yaml(h_proxy *px, const char *yaml) {
  h_proxy_start_yaml_env(px, yaml, NULL);
}

void h_proxy_start_yaml_env(h_proxy *px, const char *yaml, char *const env_add[]) {
  h_proxy_start_as(px, "proxy", yaml, env_add);
}

void h_proxy_start_as(h_proxy *px, const char *name, const char *yaml, char *const env_add[]) {
  char file[64];
  memset(px, 0, sizeof *px);
  snprintf(file, sizeof file, "%s.yaml", name);
  h_path(px->config, sizeof px->config, file);
  h_write_file(px->config, yaml, strlen(yaml));
  char *argv[] = {STP_BINARY, "-c", px->config, NULL};
  char *env[16] = {H_PW_ENV "=" H_PW};
  for (size_t i = 0; env_add && env_add[i] && i + 2 < sizeof env / sizeof *env; i++)
    env[i + 1] = env_add[i];
  px->proc = h_spawn(name, argv, env);
  px->proc->checked_exit = true;
  snprintf(px->log, sizeof px->log, "%s", px->proc->err_path);
  int64_t deadline = h_now_ms() + 10000;
  for (;;) {
    char *log = h_read_file(px->log, NULL);
    int port = log ? find_listen_port(log) : -1;
    if (port > 0) {
      free(log);
      px->port = port;
      return;
    }
    bool dead = !h_proc_alive(px->proc);
    if (dead || remaining(deadline) == 0) {
      cr_assert_fail("proxy %s (no 'listening listener=lan addr=127.0.0.1:"
                     "PORT' line); config:\n%s\nlog:\n%s",
                     dead ? "exited" : "not ready in 10 s", yaml, log ? log : "(none)");
    }
    free(log);
    h_sleep_ms(20);
  }
}

void h_proxy_start(h_proxy *px, const h_proxy_opts *o) {
  static char yaml[8192];
  h_proxy_start_yaml(px, h_proxy_yaml(o, yaml, sizeof yaml));
}

void h_proxy_with_upstream(h_proxy *px, h_upstream *u, const char *tls) {
  h_upstream_start(u, tls, NULL);
  h_proxy_opts o = {.up_port = u->port, .up_tls = tls};
  h_proxy_start(px, &o);
}

/* --- SMTP client --------------------------------------------------------- */
int h_smtp_connect(h_smtp *c, int port) {
  return h_smtp_connect_from(c, port, NULL);
}

int h_smtp_connect_from(h_smtp *c, int port, const char *src_ip) {
  memset(c, 0, sizeof *c);
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (c->fd < 0)
    return -1;
  size_t slot = g_nconns;
  for (size_t i = 0; i < g_nconns; i++)
    if (g_conns[i] < 0)
      slot = i;
  cr_assert(slot < MAX_CONNS, "too many connections in one test");
  g_conns[slot] = c->fd;
  if (slot == g_nconns)
    g_nconns++;
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (src_ip) {
    struct sockaddr_in src = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, src_ip, &src.sin_addr) != 1 ||
        bind(c->fd, (struct sockaddr *)&src, sizeof src) != 0)
      return -1;
  }
  if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    if (errno != EINPROGRESS)
      return -1;
    struct pollfd pfd = {.fd = c->fd, .events = POLLOUT};
    if (poll(&pfd, 1, 5000) != 1)
      return -1;
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0)
      return -1;
  }
  return 0;
}

void h_smtp_close(h_smtp *c) {
  if (c->fd >= 0) {
    for (size_t i = 0; i < g_nconns; i++)
      if (g_conns[i] == c->fd)
        g_conns[i] = -1;
    close(c->fd);
  }
  c->fd = -1;
}

int h_smtp_send(h_smtp *c, const void *data, size_t n) {
  const char *p = data;
  while (n > 0) {
    ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
    if (w > 0) {
      p += w;
      n -= (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      struct pollfd pfd = {.fd = c->fd, .events = POLLOUT};
      if (poll(&pfd, 1, H_REPLY_MS * 3) != 1)
        return -1;
      if (pfd.revents & (POLLERR | POLLHUP))
        return -1;
      continue;
    }
    return -1;
  }
  return 0;
}

int h_smtp_sendstr(h_smtp *c, const char *s) {
  return h_smtp_send(c, s, strlen(s));
}

/* Read more bytes into the buffer. 1 got some, 0 EOF/reset, -1 timeout. */
static int fill(h_smtp *c, int64_t deadline) {
  if (c->eof)
    return 0;
  if (c->len >= sizeof c->buf)
    return -2;
  for (;;) {
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    int r = poll(&pfd, 1, remaining(deadline));
    if (r < 0 && errno == EINTR)
      continue;
    if (r == 0)
      return -1;
    if (r < 0)
      return 0;
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
      continue;
    if (n <= 0) {
      c->eof = true;
      return 0;
    }
    c->len += (size_t)n;
    return 1;
  }
}

int h_smtp_reply(h_smtp *c, int timeout_ms, char *text, size_t cap) {
  int64_t deadline = h_now_ms() + timeout_ms;
  size_t tlen = 0;
  if (text && cap)
    text[0] = '\0';
  for (;;) {
    char *nl = memchr(c->buf, '\n', c->len);
    if (!nl) {
      int r = fill(c, deadline);
      if (r == 1)
        continue;
      return r == -2 ? -2 : r; /* 0 EOF, -1 timeout */
    }
    size_t llen = (size_t)(nl - c->buf) + 1;
    size_t body = llen - 1;
    if (body > 0 && c->buf[body - 1] == '\r')
      body--;
    int code = -2;
    bool last = true;
    if (body >= 3 && c->buf[0] >= '1' && c->buf[0] <= '5' && c->buf[1] >= '0' && c->buf[1] <= '9' &&
        c->buf[2] >= '0' && c->buf[2] <= '9' &&
        (body == 3 || c->buf[3] == ' ' || c->buf[3] == '-')) {
      code = (c->buf[0] - '0') * 100 + (c->buf[1] - '0') * 10 + (c->buf[2] - '0');
      last = body == 3 || c->buf[3] == ' ';
    }
    if (text && cap) {
      if (tlen > 0 && tlen < cap - 1)
        text[tlen++] = '\n';
      size_t m = body < cap - 1 - tlen ? body : cap - 1 - tlen;
      memcpy(text + tlen, c->buf, m);
      tlen += m;
      text[tlen] = '\0';
    }
    memmove(c->buf, c->buf + llen, c->len - llen);
    c->len -= llen;
    if (code < 0)
      return -2;
    if (last)
      return code;
  }
}

int h_smtp_cmd(h_smtp *c, const char *line, char *text, size_t cap) {
  char buf[2048];
  snprintf(buf, sizeof buf, "%s\r\n", line);
  if (h_smtp_sendstr(c, buf) != 0) {
    /* The peer may have answered and closed: still read its reply. */
  }
  return h_smtp_reply(c, H_REPLY_MS, text, cap);
}

void h_smtp_open(h_smtp *c, int port, bool ehlo) {
  char text[2048];
  cr_assert_eq(h_smtp_connect(c, port), 0, "connect to 127.0.0.1:%d", port);
  int code = h_smtp_reply(c, H_REPLY_MS, text, sizeof text);
  cr_assert_eq(code, 220, "greeting: %d %s", code, text);
  code = h_smtp_cmd(c, ehlo ? "EHLO device.test" : "HELO device.test", text, sizeof text);
  cr_assert_eq(code, 250, "%s: %d %s", ehlo ? "EHLO" : "HELO", code, text);
}

bool h_smtp_wait_eof(h_smtp *c, int timeout_ms) {
  int64_t deadline = h_now_ms() + timeout_ms;
  for (;;) {
    c->len = 0;
    int r = fill(c, deadline);
    if (r == 0)
      return true;
    if (r == -1)
      return false;
  }
}

bool h_smtp_quiet(h_smtp *c, int timeout_ms) {
  if (c->len > 0)
    return false;
  int r = fill(c, h_now_ms() + timeout_ms);
  return r == -1;
}

int h_smtp_message(h_smtp *c, const char *from, const char *const rcpts[], const void *body,
                   size_t body_len, char *text, size_t cap, const char **stage) {
  char line[1024];
  const char *st = "MAIL";
  int code;
  snprintf(line, sizeof line, "MAIL FROM:<%s>", from);
  code = h_smtp_cmd(c, line, text, cap);
  if (code != 250)
    goto out;
  st = "RCPT";
  for (size_t i = 0; rcpts[i]; i++) {
    snprintf(line, sizeof line, "RCPT TO:<%s>", rcpts[i]);
    code = h_smtp_cmd(c, line, text, cap);
    if (code != 250)
      goto out;
  }
  st = "DATA";
  code = h_smtp_cmd(c, "DATA", text, cap);
  if (code != 354)
    goto out;
  st = "DOT";
  (void)h_smtp_send(c, body, body_len); /* a failed send still has a reply */
  (void)h_smtp_sendstr(c, ".\r\n");
  code = h_smtp_reply(c, H_REPLY_MS * 3, text, cap);
out:
  if (stage)
    *stage = st;
  return code;
}

/* --- records ------------------------------------------------------------- */
size_t h_records(const char *path, const char *event, h_lines *out) {
  memset(out, 0, sizeof *out);
  char *s = h_read_file(path, NULL);
  if (!s)
    return 0;
  char ev[64];
  for (char *line = s, *next; line && *line; line = next) {
    char *nl = strchr(line, '\n');
    if (!nl)
      break; /* a line still being written */
    *nl = '\0';
    next = nl + 1;
    if (event && (h_json_str(line, "event", ev, sizeof ev) != 1 || strcmp(ev, event) != 0))
      continue;
    out->v = realloc(out->v, (out->n + 1) * sizeof *out->v);
    cr_assert_not_null(out->v);
    out->v[out->n++] = strdup(line);
  }
  free(s);
  return out->n;
}

void h_lines_free(h_lines *l) {
  for (size_t i = 0; i < l->n; i++)
    free(l->v[i]);
  free(l->v);
  l->v = NULL;
  l->n = 0;
}

size_t h_wait_records(const char *path, const char *event, size_t n, int timeout_ms) {
  int64_t deadline = h_now_ms() + timeout_ms;
  for (;;) {
    h_lines l;
    size_t got = h_records(path, event, &l);
    h_lines_free(&l);
    if (got >= n || remaining(deadline) == 0)
      return got;
    h_sleep_ms(25);
  }
}

size_t h_fault_commands(const h_upstream *u, const char *verb, int tls) {
  h_lines l;
  size_t count = 0;
  char v[64];
  h_records(u->record, "command", &l);
  for (size_t i = 0; i < l.n; i++) {
    if (verb && (h_json_str(l.v[i], "verb", v, sizeof v) != 1 || strcmp(v, verb) != 0))
      continue;
    if (tls >= 0 && h_json_bool(l.v[i], "tls") != tls)
      continue;
    count++;
  }
  h_lines_free(&l);
  return count;
}

/* Position just after `"key":` at the top level of a flat object. */
static const char *json_find(const char *line, const char *key) {
  char pat[128];
  snprintf(pat, sizeof pat, "\"%s\":", key);
  size_t plen = strlen(pat);
  bool in_str = false;
  int depth = 0;
  for (const char *p = line; *p; p++) {
    if (in_str) {
      if (*p == '\\' && p[1])
        p++;
      else if (*p == '"')
        in_str = false;
      continue;
    }
    if (*p == '{' || *p == '[') {
      depth++;
      continue;
    }
    if (*p == '}' || *p == ']') {
      depth--;
      continue;
    }
    if (*p != '"')
      continue;
    if (depth == 1 && p > line && (p[-1] == '{' || p[-1] == ',') && strncmp(p, pat, plen) == 0)
      return p + plen;
    in_str = true;
  }
  return NULL;
}

static void put_utf8(char *out, size_t cap, size_t *o, unsigned long cp) {
  unsigned char b[4];
  size_t n;
  if (cp < 0x80) {
    b[0] = (unsigned char)cp;
    n = 1;
  } else if (cp < 0x800) {
    b[0] = (unsigned char)(0xC0 | (cp >> 6));
    b[1] = (unsigned char)(0x80 | (cp & 0x3F));
    n = 2;
  } else if (cp < 0x10000) {
    b[0] = (unsigned char)(0xE0 | (cp >> 12));
    b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    b[2] = (unsigned char)(0x80 | (cp & 0x3F));
    n = 3;
  } else {
    b[0] = (unsigned char)(0xF0 | (cp >> 18));
    b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    b[3] = (unsigned char)(0x80 | (cp & 0x3F));
    n = 4;
  }
  for (size_t i = 0; i < n && *o + 1 < cap; i++)
    out[(*o)++] = (char)b[i];
}

/* Decode the JSON string starting at p (the opening quote). Returns the
 * position after the closing quote, or NULL. */
static const char *json_string(const char *p, char *out, size_t cap) {
  size_t o = 0;
  if (*p != '"')
    return NULL;
  for (p++; *p && *p != '"'; p++) {
    unsigned long cp;
    if (*p != '\\') {
      if (o + 1 < cap)
        out[o++] = *p;
      continue;
    }
    p++;
    switch (*p) {
    case 'n':
      cp = '\n';
      break;
    case 'r':
      cp = '\r';
      break;
    case 't':
      cp = '\t';
      break;
    case 'b':
      cp = '\b';
      break;
    case 'f':
      cp = '\f';
      break;
    case 'u': {
      char hex[5] = {0};
      memcpy(hex, p + 1, 4);
      cp = strtoul(hex, NULL, 16);
      p += 4;
      if (cp >= 0xD800 && cp < 0xDC00 && p[1] == '\\' && p[2] == 'u') {
        memcpy(hex, p + 3, 4);
        unsigned long lo = strtoul(hex, NULL, 16);
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        p += 6;
      }
      break;
    }
    case '\0':
      return NULL;
    default:
      cp = (unsigned char)*p;
      break;
    }
    put_utf8(out, cap, &o, cp);
  }
  if (cap)
    out[o < cap ? o : cap - 1] = '\0';
  return *p == '"' ? p + 1 : NULL;
}

int h_json_str(const char *line, const char *key, char *out, size_t cap) {
  const char *p = json_find(line, key);
  if (!p)
    return -1;
  if (strncmp(p, "null", 4) == 0) {
    if (cap)
      out[0] = '\0';
    return 0;
  }
  return json_string(p, out, cap) ? 1 : -1;
}

int h_json_bool(const char *line, const char *key) {
  const char *p = json_find(line, key);
  if (!p)
    return -1;
  if (strncmp(p, "true", 4) == 0)
    return 1;
  if (strncmp(p, "false", 5) == 0)
    return 0;
  return -1;
}

long long h_json_int(const char *line, const char *key, long long dflt) {
  const char *p = json_find(line, key);
  if (!p || !((*p >= '0' && *p <= '9') || *p == '-'))
    return dflt;
  return strtoll(p, NULL, 10);
}

int h_json_strlist(const char *line, const char *key, const char *val, bool *found) {
  const char *p = json_find(line, key);
  if (found)
    *found = false;
  if (!p || *p != '[')
    return -1;
  p++;
  int n = 0;
  char buf[4096];
  while (*p && *p != ']') {
    if (*p == ',') {
      p++;
      continue;
    }
    p = json_string(p, buf, sizeof buf);
    if (!p)
      return -1;
    n++;
    if (val && found && strcmp(buf, val) == 0)
      *found = true;
  }
  return n;
}

static int b64val(int ch) {
  if (ch >= 'A' && ch <= 'Z')
    return ch - 'A';
  if (ch >= 'a' && ch <= 'z')
    return ch - 'a' + 26;
  if (ch >= '0' && ch <= '9')
    return ch - '0' + 52;
  if (ch == '+')
    return 62;
  if (ch == '/')
    return 63;
  return -1;
}

unsigned char *h_json_b64(const char *line, const char *key, size_t *len) {
  const char *p = json_find(line, key);
  if (!p || *p != '"')
    return NULL;
  const char *end = strchr(p + 1, '"');
  if (!end)
    return NULL;
  size_t n = (size_t)(end - p - 1);
  unsigned char *out = malloc(n / 4 * 3 + 4);
  cr_assert_not_null(out);
  size_t o = 0;
  unsigned acc = 0;
  int bits = 0;
  for (const char *q = p + 1; q < end; q++) {
    int v = b64val((unsigned char)*q);
    if (v < 0)
      continue; /* '=' padding */
    acc = (acc << 6) | (unsigned)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (unsigned char)(acc >> bits);
    }
  }
  out[o] = '\0';
  if (len)
    *len = o;
  return out;
}

void h_base64(const void *in, size_t n, char *out, size_t cap) {
  static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const unsigned char *s = in;
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    unsigned v = (unsigned)s[i] << 16;
    if (i + 1 < n)
      v |= (unsigned)s[i + 1] << 8;
    if (i + 2 < n)
      v |= s[i + 2];
    char q[4] = {tbl[(v >> 18) & 63], tbl[(v >> 12) & 63], i + 1 < n ? tbl[(v >> 6) & 63] : '=',
                 i + 2 < n ? tbl[v & 63] : '='};
    for (int k = 0; k < 4 && o + 1 < cap; k++)
      out[o++] = q[k];
  }
  if (cap)
    out[o] = '\0';
}

/* --- files --------------------------------------------------------------- */
char *h_read_file(const char *path, size_t *len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return NULL;
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap + 1);
  cr_assert_not_null(buf);
  for (;;) {
    if (n == cap) {
      cap *= 2;
      buf = realloc(buf, cap + 1);
      cr_assert_not_null(buf);
    }
    ssize_t r = read(fd, buf + n, cap - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    n += (size_t)r;
  }
  close(fd);
  buf[n] = '\0';
  if (len)
    *len = n;
  return buf;
}

void h_write_file(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f, "open %s: %s", path, strerror(errno));
  cr_assert_eq(fwrite(data, 1, len, f), len);
  cr_assert_eq(fclose(f), 0);
}

bool h_file_contains(const char *path, const void *needle, size_t n) {
  size_t len;
  char *s = h_read_file(path, &len);
  if (!s)
    return false;
  bool found = memmem(s, len, needle, n) != NULL;
  free(s);
  return found;
}

int h_proxy_listen_port(const h_proxy *px, const char *event) {
  char line[512];
  const char *want[] = {event, "addr=127.0.0.1:", NULL};
  cr_assert(h_file_wait_line(px->log, want, 5000, line, sizeof line), "no %s line", event);
  int port = atoi(strstr(line, "addr=127.0.0.1:") + strlen("addr=127.0.0.1:"));
  cr_assert_gt(port, 0, "%s", line);
  return port;
}

bool h_file_wait_line(const char *path, const char *const all[], int timeout_ms, char *line,
                      size_t cap) {
  int64_t deadline = h_now_ms() + timeout_ms;
  for (;;) {
    char *s = h_read_file(path, NULL);
    for (char *l = s, *next; l && *l; l = next) {
      char *nl = strchr(l, '\n');
      if (!nl)
        break;
      *nl = '\0';
      next = nl + 1;
      bool ok = true;
      for (size_t i = 0; all[i] && ok; i++)
        ok = strstr(l, all[i]) != NULL;
      if (ok) {
        if (line && cap)
          snprintf(line, cap, "%s", l);
        free(s);
        return true;
      }
    }
    free(s);
    if (remaining(deadline) == 0)
      return false;
    h_sleep_ms(25);
  }
}

/* --- SHA-256 (FIPS 180-4), to compare big bodies with the record --------- */
static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha_block(h_sha256 *s, const unsigned char *b) {
  uint32_t w[64];
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)b[4 * i] << 24 | (uint32_t)b[4 * i + 1] << 16 | (uint32_t)b[4 * i + 2] << 8 |
           b[4 * i + 3];
  for (int i = 16; i < 64; i++) {
    uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  uint32_t a = s->h[0], bb = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4], f = s->h[5],
           g = s->h[6], h = s->h[7];
  for (int i = 0; i < 64; i++) {
    uint32_t t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
    uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & bb) ^ (a & c) ^ (bb & c));
    h = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = bb;
    bb = a;
    a = t1 + t2;
  }
  s->h[0] += a;
  s->h[1] += bb;
  s->h[2] += c;
  s->h[3] += d;
  s->h[4] += e;
  s->h[5] += f;
  s->h[6] += g;
  s->h[7] += h;
}

void h_sha256_init(h_sha256 *s) {
  static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  memcpy(s->h, iv, sizeof iv);
  s->bytes = 0;
  s->used = 0;
}

void h_sha256_update(h_sha256 *s, const void *data, size_t n) {
  const unsigned char *p = data;
  s->bytes += n;
  while (n > 0) {
    size_t take = 64 - s->used < n ? 64 - s->used : n;
    memcpy(s->blk + s->used, p, take);
    s->used += take;
    p += take;
    n -= take;
    if (s->used == 64) {
      sha_block(s, s->blk);
      s->used = 0;
    }
  }
}

void h_sha256_hex(h_sha256 *s, char out[65]) {
  uint64_t bits = s->bytes * 8;
  unsigned char pad = 0x80;
  h_sha256_update(s, &pad, 1);
  pad = 0;
  while (s->used != 56)
    h_sha256_update(s, &pad, 1);
  unsigned char len[8];
  for (int i = 0; i < 8; i++)
    len[i] = (unsigned char)(bits >> (56 - 8 * i));
  h_sha256_update(s, len, 8);
  for (int i = 0; i < 8; i++)
    snprintf(out + 8 * i, 9, "%08x", s->h[i]);
}

int h_send_one(int port, const char *rcpt, const void *body, size_t body_len, char *text,
               size_t cap, const char **stage) {
  h_smtp c;
  h_smtp_open(&c, port, true);
  int code = h_smtp_message(&c, "scan@printer.test", (const char *const[]){rcpt, NULL}, body,
                            body_len, text, cap, stage);
  h_smtp_cmd(&c, "QUIT", NULL, 0);
  h_smtp_close(&c);
  return code;
}
