/* login.c - the `oauth2 login` command: find the upstream, pick the flow,
 * run the loop, then tell (or signal) the running proxy. The two flows are
 * login_flow.c's; what they share, and the handling of the tokens, is
 * login_tokens.c's.
 *
 * The running proxy is found through its control socket (spool dir's
 * control.sock, the one `queue` uses): SO_PEERCRED names the process that
 * listens there, which --reload sends SIGHUP. Without a spool there is
 * no socket, and the admin is told to send SIGHUP.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "defer.h"
#include "login_int.h"

/* ---- the running proxy ------------------------------------------------- */

/* The pid listening on dir/control.sock, or -1 with err. */
static pid_t proxy_pid(const char *dir, char *err, size_t errlen) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  int n = snprintf(sa.sun_path, sizeof sa.sun_path, "%s/control.sock", dir);
  if (n < 0 || (size_t)n >= sizeof sa.sun_path) {
    snprintf(err, errlen, "spool dir %s is too long for a socket address", dir);
    return -1;
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct ucred cred;
  socklen_t len = sizeof cred;
  pid_t pid = -1;
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
    snprintf(err, errlen, "no running proxy answers at %s: %s", sa.sun_path, strerror(errno));
  else if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.pid <= 0)
    snprintf(err, errlen, "cannot tell which process listens at %s", sa.sun_path);
  else
    pid = cred.pid;
  if (fd >= 0)
    close(fd);
  return pid;
}

static int tell_proxy(login *l, const stp_config *cfg) {
  char err[300];
  pid_t pid = cfg->spool ? proxy_pid(cfg->spool->dir, err, sizeof err) : -1;
  if (!cfg->spool)
    snprintf(err, sizeof err, "without a spool: section there is no control socket to find it");
  if (!l->reload) {
    if (pid > 0)
      printf("next: the running proxy (pid %d) still has no token: send it SIGHUP "
             "(kill -HUP %d), or run this command with --reload\n",
             (int)pid, (int)pid);
    else
      printf("next: send SIGHUP to the running proxy so that it reads the new token "
             "(or run this command with --reload)\n");
    return 0;
  }
  if (pid > 0 && kill(pid, SIGHUP) == 0) {
    printf("reload: sent SIGHUP to the running proxy (pid %d)\n", (int)pid);
    return 0;
  }
  if (pid > 0)
    snprintf(err, sizeof err, "cannot signal pid %d: %s", (int)pid, strerror(errno));
  fprintf(stderr, "smtp-tls-proxy: --reload: %s; send SIGHUP to the proxy yourself\n", err);
  return 2;
}

/* ---- the command -------------------------------------------------------- */

static const stp_upstream_cfg *find_upstream(const stp_config *cfg, const char *name) {
  for (size_t i = 0; i < cfg->n_upstreams; i++)
    if (!strcmp(cfg->upstreams[i].name, name))
      return &cfg->upstreams[i];
  return NULL;
}

/* The upstream's oauth2 block if it can log in, else NULL and a message. */
static const stp_oauth2_cfg *usable(const stp_upstream_cfg *u, const char *name) {
  const stp_oauth2_cfg *o = u ? u->token_src : NULL;
  if (!u)
    fprintf(stderr, "smtp-tls-proxy: oauth2 login: no upstream named '%s'\n", name);
  else if (!o || o->kind != STP_TOKSRC_OAUTH2)
    fprintf(stderr, "smtp-tls-proxy: oauth2 login: upstream %s has no auth.oauth2\n", name);
  else if (o->grant != STP_GRANT_REFRESH_TOKEN || !o->refresh_token_file)
    fprintf(stderr,
            "smtp-tls-proxy: oauth2 login: upstream %s does not use grant: refresh_token with "
            "a refresh_token_file (nothing to log in for)\n",
            name);
  else
    return o;
  return NULL;
}

static login_flow pick_flow(const stp_oauth2_cfg *o, login_flow want, const char *name) {
  if (want == LOGIN_FLOW_AUTO)
    want = o->device_authorization_url ? LOGIN_FLOW_DEVICE : LOGIN_FLOW_CODE;
  if (want == LOGIN_FLOW_DEVICE && !o->device_authorization_url) {
    fprintf(stderr,
            "smtp-tls-proxy: oauth2 login %s: --flow device needs device_authorization_url "
            "(the google preset has none: Google's device flow refuses the Gmail scopes)\n",
            name);
    return LOGIN_FLOW_AUTO;
  }
  if (want == LOGIN_FLOW_CODE && !o->authorization_url) {
    fprintf(stderr, "smtp-tls-proxy: oauth2 login %s: --flow code needs authorization_url\n", name);
    return LOGIN_FLOW_AUTO;
  }
  return want;
}

int login_run(const stp_config *cfg, const char *name, login_flow flow, bool reload) {
  const stp_upstream_cfg *u = find_upstream(cfg, name);
  const stp_oauth2_cfg *o = usable(u, name);
  if (!o || (flow = pick_flow(o, flow, name)) == LOGIN_FLOW_AUTO)
    return 1;
  setvbuf(stdout, NULL, _IOLBF, 0);
  signal(SIGPIPE, SIG_IGN);
  login l = {.loop = uv_default_loop(), .up = u, .o = o, .reload = reload};
  char err[400];
  l.tls = tls_ctx_client(o->ca_file, STP_TLS1_2, true, err, sizeof err);
  if (!l.tls) {
    fprintf(stderr, "smtp-tls-proxy: oauth2 login %s: %s\n", name, err);
    return 1;
  }
  uv_timer_init(l.loop, &l.timer);
  if (flow == LOGIN_FLOW_DEVICE)
    login_device_start(&l);
  else
    login_code_start(&l);
  uv_run(l.loop, UV_RUN_DEFAULT);
  defer_shutdown();
  uv_run(l.loop, UV_RUN_DEFAULT);
  oauth_device_free(&l.dev);
  stp_cleanse(l.verifier, sizeof l.verifier);
  stp_cleanse(l.line, sizeof l.line);
  tls_ctx_free(l.tls);
  uv_loop_close(l.loop);
  if (l.rc == 0)
    l.rc = tell_proxy(&l, cfg);
  return l.rc;
}
