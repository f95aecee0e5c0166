/* login.c - the `oauth2 login` command: pick the flow, hold the loop, and
 * once a refresh token arrives save it, prove it with one refresh, and
 * tell (or signal) the running proxy. The two flows are login_flow.c's.
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
#include "smtp-tls-proxy/json.h"
#include "smtp-tls-proxy/secret_file.h"

void login_form_init(login *l, stp_buf *form) {
  stp_buf_init(form, LOGIN_FORM_MAX);
  oauth2_form_add(form, "client_id", l->o->client_id);
  if (l->o->client_secret)
    oauth2_form_add(form, "client_secret", l->o->client_secret);
}

void login_post(login *l, const char *url, stp_buf *form, http_done_fn cb) {
  static const http1_header hdrs[] = {{"Accept", "application/json"},
                                      {"Content-Type", "application/x-www-form-urlencoded"}};
  http_req req = {.method = "POST",
                  .url = url,
                  .headers = hdrs,
                  .n_headers = 2,
                  .body = form->data,
                  .body_len = form->len,
                  .tls = l->tls,
                  .response_max = OAUTH2_RESPONSE_MAX,
                  .timeout_ms = l->o->timeout_ms ? l->o->timeout_ms : 30000};
  l->call = http_request(l->loop, NULL, &req, cb, l); /* the body is copied */
  stp_cleanse(form->data, form->cap);
  stp_buf_free(form);
}

void login_fail(login *l, const char *what, const char *err) {
  fprintf(stderr, "smtp-tls-proxy: oauth2 login %s: %s: %s\n", l->up->name, what, err);
  const oauth_login_rule *r = oauth_login_explain_line(err);
  if (r)
    fprintf(stderr, "  what to do: %s\n  (%s: %s)\n", r->advice, r->provider, r->source);
  login_end(l, 1);
}

static void timer_closed(uv_handle_t *h) {
  (void)h;
}

static void in_closed(uv_handle_t *h) {
  (void)h;
}

void login_end(login *l, int rc) {
  if (l->ended)
    return;
  l->ended = true;
  l->rc = rc;
  if (l->call)
    http_call_cancel(l->call);
  l->call = NULL;
  loopback_stop(l->lb);
  l->lb = NULL;
  if (!uv_is_closing((uv_handle_t *)&l->timer))
    uv_close((uv_handle_t *)&l->timer, timer_closed);
  if (l->in_open) {
    l->in_open = false;
    uv_close((uv_handle_t *)&l->in, in_closed);
  }
}

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

/* ---- after the tokens --------------------------------------------------- */

static void save_or_fail(login *l, const char *rt) {
  char err[300];
  if (stp_secret_file_save(l->o->refresh_token_file, rt, err, sizeof err) < 0)
    login_fail(l, "cannot save the refresh token", err);
}

static void verify_done(void *arg, const http1_response *r, http_fail why, const char *err) {
  login *l = arg;
  (void)why;
  l->call = NULL;
  if (!r) {
    login_fail(l, "the first refresh failed", err);
    return;
  }
  char reason[600];
  oauth2_token_resp t;
  if (oauth2_evaluate(r->status, r->body, r->body_len, &t, reason, sizeof reason) < 0) {
    login_fail(l, "the saved refresh token does not work", reason);
    return;
  }
  if (t.refresh_token) /* rotated at once (Entra does): keep the newest */
    save_or_fail(l, t.refresh_token);
  if (!l->ended) {
    printf("verified: the token endpoint issued an access token (expires in %llds)\n",
           t.has_expires_in ? (long long)t.expires_in : (long long)OAUTH2_DEFAULT_EXPIRES_S);
    printf("scopes: %s\n", t.scope ? t.scope : l->o->scope ? l->o->scope : "(none reported)");
    login_end(l, 0);
  }
  oauth2_token_resp_free(&t);
}

static void warn_expiry(const oauth_extra *x) {
  if (!x->has_rt_expires_in)
    return;
  long long days = (long long)(x->rt_expires_in / 86400);
  printf("warning: this refresh token stops working in %lld day%s (%lld seconds). Google "
         "does that for apps whose OAuth consent screen is in \"Testing\" status. Publish the "
         "app (Google Cloud console > Google Auth Platform > Audience > Publish app; a "
         "Workspace-only app can be made \"Internal\" instead), then run this login again.\n",
         days, days == 1 ? "" : "s", (long long)x->rt_expires_in);
}

void login_got_tokens(login *l, oauth2_token_resp *t, const oauth_extra *x) {
  save_or_fail(l, t->refresh_token);
  if (l->ended)
    return;
  printf("saved: the refresh token is in %s (mode 0600)\n", l->o->refresh_token_file);
  const char *user = l->up->username ? l->up->username : l->up->mailbox;
  if (x->account[0])
    printf("account: %s%s\n", x->account,
           user && stp_ascii_casecmp(user, x->account) ? " (not the configured account!)" : "");
  else
    printf("account: %s (as configured; the answer did not name it)\n", user ? user : "?");
  warn_expiry(x);
  stp_buf form;
  login_form_init(l, &form);
  oauth2_form_add(&form, "grant_type", "refresh_token");
  oauth2_form_add(&form, "refresh_token", t->refresh_token);
  if (l->o->scope)
    oauth2_form_add(&form, "scope", l->o->scope);
  login_post(l, l->o->token_url, &form, verify_done);
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

int login_run(const stp_config *cfg, const char *cfg_path, const char *name, login_flow flow,
              bool reload) {
  const stp_upstream_cfg *u = find_upstream(cfg, name);
  const stp_oauth2_cfg *o = usable(u, name);
  if (!o || (flow = pick_flow(o, flow, name)) == LOGIN_FLOW_AUTO)
    return 1;
  setvbuf(stdout, NULL, _IOLBF, 0);
  signal(SIGPIPE, SIG_IGN);
  login l = {.loop = uv_default_loop(), .cfg_path = cfg_path, .up = u, .o = o, .reload = reload};
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
