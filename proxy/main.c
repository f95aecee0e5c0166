/* main.c - command line, configuration load, signals and the event loop.
 * Owns nothing but the process: every decision lives in the modules. */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "net/defer.h"
#include "net/login.h"
#include "net/oauth2_net.h"
#include "net/server.h"
#include "net/spool_ctl.h"
#include "net/testroute.h"
#include "smtp-tls-proxy/config.h"
#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/queuectl.h"

static void usage(FILE *f) {
  fputs("usage: smtp-tls-proxy -c FILE              run in the foreground, logs to stderr\n"
        "       smtp-tls-proxy -c FILE --check      validate the configuration and exit\n"
        "       smtp-tls-proxy -c FILE --test-route ROUTE --from A --to B\n"
        "                                           send one test message through ROUTE\n"
        "       smtp-tls-proxy -c FILE queue list | show ID | retry [ID] | hold ID |\n"
        "                                    release ID | delete ID\n"
        "                                           the running proxy's spool\n"
        "       smtp-tls-proxy -c FILE oauth2 login UPSTREAM [--flow device|code] [--reload]\n"
        "                                           get and save UPSTREAM's refresh token\n"
        "       smtp-tls-proxy --version | --help\n",
        f);
}

typedef struct args {
  const char *config;
  bool check;
  const char *test_route, *from, *to;
  int queue_argc; /* `queue ...`: the words after "queue" */
  char **queue_argv;
  const char *login; /* `oauth2 login UPSTREAM` */
  login_flow flow;
  bool reload;
} args;

/* `oauth2 login UPSTREAM [--flow device|code] [--reload]`: argv[i] is
 * "oauth2". Returns the index of its last word, or -1 (printed). */
static int parse_login(int argc, char **argv, int i, args *a) {
  if (i + 2 >= argc || strcmp(argv[i + 1], "login") != 0) {
    fprintf(stderr, "smtp-tls-proxy: expected oauth2 login UPSTREAM\n");
    return -1;
  }
  a->login = argv[i + 2];
  for (i += 3; i < argc; i++) {
    if (!strcmp(argv[i], "--reload")) {
      a->reload = true;
    } else if (!strcmp(argv[i], "--flow") && i + 1 < argc &&
               (!strcmp(argv[i + 1], "device") || !strcmp(argv[i + 1], "code"))) {
      a->flow = !strcmp(argv[++i], "device") ? LOGIN_FLOW_DEVICE : LOGIN_FLOW_CODE;
    } else {
      fprintf(stderr,
              "smtp-tls-proxy: oauth2 login: unexpected '%s' (--flow device|code, "
              "--reload)\n",
              argv[i]);
      return -1;
    }
  }
  return argc - 1;
}

/* 0 ok, 1 usage error, 2 handled (version/help). */
static int parse_args(int argc, char **argv, args *a) {
  for (int i = 1; i < argc; i++) {
    const char *s = argv[i];
    const char **slot = NULL;
    if (!strcmp(s, "--version")) {
      printf("smtp-tls-proxy %s\n", STP_VERSION);
      return 2;
    } else if (!strcmp(s, "--help") || !strcmp(s, "-h")) {
      usage(stdout);
      return 2;
    } else if (!strcmp(s, "--check")) {
      a->check = true;
      continue;
    } else if (!strcmp(s, "queue")) {
      a->queue_argc = argc - i - 1;
      a->queue_argv = argv + i + 1;
      break;
    } else if (!strcmp(s, "oauth2")) {
      if ((i = parse_login(argc, argv, i, a)) < 0)
        return 1;
      continue;
    } else if (!strcmp(s, "-c") || !strcmp(s, "--config")) {
      slot = &a->config;
    } else if (!strcmp(s, "--test-route")) {
      slot = &a->test_route;
    } else if (!strcmp(s, "--from")) {
      slot = &a->from;
    } else if (!strcmp(s, "--to")) {
      slot = &a->to;
    } else {
      fprintf(stderr, "smtp-tls-proxy: unknown argument '%s'\n", s);
      return 1;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "smtp-tls-proxy: %s needs a value\n", s);
      return 1;
    }
    *slot = argv[++i];
  }
  if (!a->config) {
    fprintf(stderr, "smtp-tls-proxy: -c FILE is required\n");
    return 1;
  }
  return 0;
}

/* A warning of a configuration that asks for log.format: json is a JSON
 * log line like every other (a log collector would not parse plain text);
 * --check and errors stay text, for the person at the terminal. */
static bool log_warning(const stp_config *cfg, const char *line) {
  const char *w = strstr(line, ": warning: ");
  if (!cfg || cfg->log_format != STP_LOG_JSON || !w)
    return false;
  char at[512];
  snprintf(at, sizeof at, "%.*s", (int)(w - line), line);
  stp_log_setup(cfg->log_level, 1, 2);
  stp_kv kv[] = {{"at", at}, {"warning", w + strlen(": warning: ")}};
  stp_log_kv(STP_LOG_WARN, NULL, "config-warning", kv, 2);
  return true;
}

/* Warnings are for starting and --check; `queue` shows errors only and
 * needs no secrets (it runs from an operator's shell). */
static stp_config *load(const char *path, bool queue, bool warnings, bool check) {
  stp_config *cfg = NULL;
  stp_diag diag = {0};
  int rc = queue ? stp_config_load_layout(path, &cfg, &diag) : stp_config_load(path, &cfg, &diag);
  for (size_t i = 0; i < diag.n; i++)
    if ((warnings || !strstr(diag.lines[i], ": warning: ")) &&
        (check || queue || !log_warning(rc < 0 ? NULL : cfg, diag.lines[i])))
      fprintf(stderr, "%s\n", diag.lines[i]);
  stp_diag_free(&diag);
  return rc < 0 ? NULL : cfg;
}

/* `queue ...`: one request to the running proxy over the control socket. */
static int queue_command(const args *a, stp_config *cfg) {
  char line[QUEUECTL_LINE_MAX], err[256];
  int rc = 1;
  if (!cfg->spool)
    fprintf(stderr, "smtp-tls-proxy: %s has no spool: section\n", a->config);
  else if (queuectl_from_args(a->queue_argc, a->queue_argv, line, sizeof line, err, sizeof err))
    fprintf(stderr, "smtp-tls-proxy: %s\n", err);
  else
    rc = spool_ctl_client(cfg->spool->dir, cfg->spool->shared, line);
  stp_config_free(cfg);
  return rc;
}

int main(int argc, char **argv) {
  args a = {0};
  int rc = parse_args(argc, argv, &a);
  if (rc) {
    if (rc == 1)
      usage(stderr);
    return rc == 2 ? 0 : 1;
  }
  /* login: its own missing refresh_token_file is no news, so errors only */
  stp_config *cfg = load(a.config, a.queue_argv != NULL, !a.queue_argv && !a.login, a.check);
  if (!cfg)
    return 1;
  if (a.login) {
    rc = login_run(cfg, a.login, a.flow, a.reload);
    stp_config_free(cfg);
    return rc;
  }
  if (a.queue_argv)
    return queue_command(&a, cfg);
  if (a.check) {
    char why[512];
    if (tok_prepare(cfg, why, sizeof why) < 0) { /* a signing key BoringSSL cannot use */
      fprintf(stderr, "%s: %s\n", a.config, why);
      stp_config_free(cfg);
      return 1;
    }
    printf("%s: configuration OK (%zu listeners, %zu upstreams, %zu routes)\n", a.config,
           cfg->n_listeners, cfg->n_upstreams, cfg->n_routes);
    stp_config_free(cfg);
    return 0;
  }
  signal(SIGPIPE, SIG_IGN);
  /* libuv's thread pool runs DNS, password hashes and every spool write
   * and fsync; 4 threads (its default) would let a burst of fsyncs delay
   * a device's DNS lookup. An operator's own setting wins. */
  setenv("UV_THREADPOOL_SIZE", "16", 0);
  /* Message data passes through 64 KiB write buffers that are freed as
   * soon as written; without this, glibc hands the top of the heap back
   * to the kernel on every free and faults it in again on the next
   * malloc (5% of the CPU on large messages). Memory stays bounded by the
   * back-pressure marks either way. */
  mallopt(M_TRIM_THRESHOLD, 8 * 1024 * 1024);
  mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
  stp_log_setup(cfg->log_level, cfg->log_format == STP_LOG_JSON, 2);
  if (a.test_route)
    return testroute_run(cfg, a.test_route, a.from, a.to);
  uv_loop_t *loop = uv_default_loop();
  server srv;
  rc = server_start(&srv, loop, a.config, cfg);
  uv_run(loop, UV_RUN_DEFAULT);
  defer_shutdown();
  uv_run(loop, UV_RUN_DEFAULT); /* runs the close callback */
  server_free(&srv);
  uv_loop_close(loop);
  return rc < 0 ? 1 : 0;
}
