/* test_oauth_login.c - `smtp-tls-proxy -c FILE oauth2 login UPSTREAM`, the
 * real binary against tests/tools/authz_server.py (a strict authorization
 * server: PKCE S256 verifier, exact loopback redirect URI, state echo,
 * single-use codes, device code polling with slow_down and refusals).
 * The test is the browser: it GETs the authorization URL the command
 * printed, follows the redirect to the command's loopback listener with
 * curl, or pastes the redirect URL on the command's standard input (a
 * FIFO). Then the saved token carries a mail through the XOAUTH2 upstream
 * of the same tool, which accepts only the access tokens it issued.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "oauth_common.h"

typedef oauth_srv asrv;

static void asrv_start(asrv *a, const char *const extra[]) {
  oauth_srv_start(a, "authz_server", NULL, extra);
}

#define M365_SCOPE "https://outlook.office365.com/SMTP.Send offline_access"

/* The proxy's YAML: upstream "up" is the tool's SMTP side; its oauth2 uses
 * `preset` with the tool's endpoints as overrides. Also written to
 * proxy.yaml for the login command. */
static void write_config(const asrv *a, const char *preset, const char *top, char *yaml,
                         size_t cap) {
  char auth[2048], path[512], dev[256] = "";
  bool google = !strcmp(preset, "google");
  if (!google)
    snprintf(dev, sizeof dev,
             "        tenant: contoso.example\n"
             "        device_authorization_url: https://127.0.0.1:%d/devicecode\n",
             a->http_port);
  snprintf(auth, sizeof auth,
           "    auth:\n"
           "      username: scanner@example.com\n"
           "      oauth2:\n"
           "        preset: %s\n"
           "%s"
           "        client_id: client-1\n"
           "%s"
           "        refresh_token_file: tokens/up.rt\n"
           "        token_url: https://127.0.0.1:%d/token\n"
           "        authorization_url: https://127.0.0.1:%d/authorize\n"
           "        ca_file: %s/ca.crt\n"
           "    pool: false\n",
           preset, dev, google ? "        client_secret_file: client.secret\n" : "", a->http_port,
           a->http_port, h_certs());
  h_proxy_opts o = {
      .up_port = a->smtp_port, .no_upstream_auth = true, .upstream_extra = auth, .top_extra = top};
  h_proxy_yaml(&o, yaml, cap);
  h_path(path, sizeof path, "tokens");
  mkdir(path, 0700);
  h_path(path, sizeof path, "client.secret");
  h_write_file(path, "gs3cret-desktop\n", 16);
  chmod(path, 0600);
  h_path(path, sizeof path, "proxy.yaml");
  h_write_file(path, yaml, strlen(yaml));
}

typedef struct login_run {
  h_proc *proc;
  int in_fd; /* the FIFO on its standard input, or -1 */
  char out[16384];
  size_t out_len;
} login_run;

/* Start the login command; with_stdin: its standard input is a FIFO the
 * test writes to (else /dev/null). */
static void login_start(login_run *r, const char *args, bool with_stdin) {
  char cmd[2048], cfg[512], fifo[512];
  h_path(cfg, sizeof cfg, "proxy.yaml");
  h_path(fifo, sizeof fifo, "stdin.fifo");
  if (with_stdin)
    cr_assert_eq(mkfifo(fifo, 0600), 0);
  snprintf(cmd, sizeof cmd, "exec %s -c %s oauth2 login up %s < %s", STP_BINARY, cfg, args,
           with_stdin ? fifo : "/dev/null");
  r->proc = h_spawn("login", (char *const[]){"/bin/sh", "-c", cmd, NULL}, NULL);
  r->in_fd = with_stdin ? open(fifo, O_WRONLY) : -1; /* blocks until the shell opens it */
  r->out_len = 0;
}

/* Wait for a stdout line starting with prefix (lines before it are kept in
 * r->out for the no-secret check). */
static bool login_line(login_run *r, const char *prefix, char *line, size_t cap) {
  char buf[8192];
  while (h_proc_wait_line(r->proc, "", 20000, buf, sizeof buf) == 0) {
    int n = snprintf(r->out + r->out_len, sizeof r->out - r->out_len, "%s\n", buf);
    if (n > 0 && r->out_len + (size_t)n < sizeof r->out)
      r->out_len += (size_t)n;
    if (!strncmp(buf, prefix, strlen(prefix))) {
      if (line) {
        size_t n = strnlen(buf, cap - 1);
        memcpy(line, buf, n);
        line[n] = '\0';
      }
      return true;
    }
  }
  return false;
}

static char *login_stderr(const login_run *r) {
  size_t len;
  char *s = h_read_file(r->proc->err_path, &len);
  return s ? s : strdup("");
}

/* All remaining stdout, then the exit code; a sanitizer build's report in
 * the command's stderr fails the test. */
static int login_finish(login_run *r) {
  login_line(r, "\x01never", NULL, 0);
  if (r->in_fd >= 0)
    close(r->in_fd);
  int rc = h_proc_wait_exit(r->proc, 20000);
  char *err = login_stderr(r);
  cr_assert(!strstr(err, "Sanitizer") && !strstr(err, "runtime error"), "%s", err);
  free(err);
  return rc;
}

/* No token, code, verifier or device code of the tool's on the terminal. */
static void assert_nothing_secret(const login_run *r) {
  static const char *const secrets[] = {"rt-login-", "at-login-", "code-", "dc-", "gs3cret"};
  char *err = login_stderr(r);
  for (size_t i = 0; i < sizeof secrets / sizeof *secrets; i++) {
    cr_assert(!strstr(r->out, secrets[i]), "stdout shows %s", secrets[i]);
    cr_assert(!strstr(err, secrets[i]), "stderr shows %s", secrets[i]);
  }
  free(err);
}

/* The refresh token file: mode 0600, one issued refresh token. */
static void assert_token_file(void) {
  char path[512];
  struct stat st;
  h_path(path, sizeof path, "tokens/up.rt");
  cr_assert_eq(stat(path, &st), 0, "no refresh token file");
  cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
  size_t len;
  char *rt = h_read_file(path, &len);
  cr_assert(rt && !strncmp(rt, "rt-login-", 9) && rt[len - 1] == '\n', "file holds %s", rt);
  free(rt);
}

static bool token_file_exists(void) {
  char path[512];
  struct stat st;
  h_path(path, sizeof path, "tokens/up.rt");
  return stat(path, &st) == 0;
}

/* The browser: GET the authorization URL, return where it redirects. */
static void browse(const char *url, char *redirect, size_t cap) {
  char cmd[4096];
  snprintf(cmd, sizeof cmd,
           "curl -s --max-time 10 --cacert %s/ca.crt -o /dev/null -w '%%{redirect_url}' '%s'",
           h_certs(), url);
  cr_assert_eq(h_run(cmd, NULL, 15000, redirect, cap), 0);
  cr_assert(!strncmp(redirect, "http://127.0.0.1:", 17), "redirected to '%s'", redirect);
}

static int send_mail(const h_proxy *px) {
  static const char body[] = "Subject: login\r\n\r\nscan\r\n";
  return h_send_one(px->port, "to@example.com", body, sizeof body - 1, NULL, 0, NULL);
}

/* The first event of that kind in the record, into line. */
static bool record_line(const asrv *a, const char *event, size_t idx, char *line, size_t cap) {
  h_lines l;
  bool ok = h_records(a->record, event, &l) > idx;
  if (ok)
    snprintf(line, cap, "%s", l.v[idx]);
  h_lines_free(&l);
  return ok;
}

/* Google: authorization code + PKCE, the browser reaches the loopback
 * listener; the token is saved 0600, never shown; Testing status warned;
 * then a mail goes out with it. */
ITest(integ, oauth_login_code_loopback_then_mail) {
  asrv a;
  asrv_start(&a, (const char *const[]){"--google", "--client-secret", "gs3cret-desktop",
                                       "--rt-expires-in", "604799", "--id-email",
                                       "scanner@example.com", NULL});
  char yaml[8192], url[4096], redirect[4096], page[512], line[1024];
  write_config(&a, "google", NULL, yaml, sizeof yaml);
  login_run r;
  login_start(&r, "", true);
  cr_assert(login_line(&r, "https://127.0.0.1:", url, sizeof url), "no authorization URL");
  cr_assert(strstr(url, "code_challenge_method=S256") && strstr(url, "state="));
  cr_assert(strstr(url, "access_type=offline") && strstr(url, "prompt=consent"));
  browse(url, redirect, sizeof redirect);
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "curl -s --max-time 10 '%s'", redirect);
  cr_assert_eq(h_run(cmd, NULL, 15000, page, sizeof page), 0);
  cr_assert(strstr(page, "You may close this window"), "page: %s", page);
  cr_assert(login_line(&r, "saved: ", NULL, 0));
  cr_assert(login_line(&r, "account: scanner@example.com", NULL, 0));
  cr_assert(
      login_line(&r, "warning: this refresh token stops working in 6 days", line, sizeof line));
  cr_assert(strstr(line, "Publish the app"), "%s", line);
  cr_assert(login_line(&r, "scopes: https://mail.google.com/", NULL, 0));
  cr_assert_eq(login_finish(&r), 0);
  assert_token_file();
  assert_nothing_secret(&r);
  cr_assert(record_line(&a, "authorize", 0, line, sizeof line));
  cr_assert_eq(h_json_bool(line, "redirect_ok"), 1);
  cr_assert(record_line(&a, "token", 0, line, sizeof line));
  cr_assert_eq(h_json_bool(line, "verifier_ok"), 1, "%s", line);
  cr_assert_eq(h_json_bool(line, "redirect_ok"), 1, "%s", line);

  h_proxy px;
  h_proxy_start_yaml(&px, yaml);
  cr_assert_eq(send_mail(&px), 250);
  cr_assert_eq(h_wait_records(a.record, "message", 1, 5000), 1);
}

/* Microsoft with --flow code, the admin's browser elsewhere: the redirect
 * URL is pasted (with stray blanks around it); one with a wrong state
 * first is ignored and the wait goes on. */
ITest(integ, oauth_login_code_pasted_url_checks_state) {
  asrv a;
  asrv_start(&a, (const char *const[]){"--scope", M365_SCOPE, NULL});
  char yaml[8192], url[4096], redirect[4096], bad[4200];
  write_config(&a, "microsoft365", NULL, yaml, sizeof yaml);
  login_run r;
  login_start(&r, "--flow code", true);
  cr_assert(login_line(&r, "https://127.0.0.1:", url, sizeof url));
  cr_assert(!strstr(url, "access_type="), "Google's parameters only for Google");
  browse(url, redirect, sizeof redirect);
  /* the same URL with another state */
  snprintf(bad, sizeof bad, "%s\n", redirect);
  char *st = strstr(bad, "state=");
  cr_assert(st);
  st[6] = st[6] == 'A' ? 'B' : 'A';
  cr_assert_eq(write(r.in_fd, bad, strlen(bad)), (ssize_t)strlen(bad));
  const char *const want[] = {"wrong state", NULL};
  char errline[512];
  cr_assert(h_file_wait_line(r.proc->err_path, want, 5000, errline, sizeof errline));
  cr_assert(h_proc_alive(r.proc), "a wrong state must not end the login");
  snprintf(bad, sizeof bad, "  %s  \n", redirect);
  cr_assert_eq(write(r.in_fd, bad, strlen(bad)), (ssize_t)strlen(bad));
  cr_assert(login_line(&r, "saved: ", NULL, 0));
  cr_assert_eq(login_finish(&r), 0);
  assert_token_file();
  assert_nothing_secret(&r);
  char line[1024];
  cr_assert(record_line(&a, "token", 0, line, sizeof line));
  cr_assert_eq(h_json_bool(line, "verifier_ok"), 1, "%s", line);
}

/* Microsoft device code, the default: the address, the code and Entra's
 * own message are shown; slow_down makes the next poll 5 s later; the
 * stand-in approves after two pending answers. */
ITest(integ, oauth_login_device_code_obeys_slow_down) {
  asrv a;
  asrv_start(&a, (const char *const[]){"--scope", M365_SCOPE, "--slow-down-first", NULL});
  char yaml[8192], line[1024];
  write_config(&a, "microsoft365", NULL, yaml, sizeof yaml);
  login_run r;
  login_start(&r, "", false);
  cr_assert(login_line(&r, "verification address: https://127.0.0.1:", NULL, 0));
  cr_assert(login_line(&r, "user code: WDJB-MJHT", NULL, 0));
  cr_assert(login_line(&r, "the provider says: To sign in", NULL, 0));
  cr_assert(login_line(&r, "saved: ", NULL, 0));
  cr_assert_eq(login_finish(&r), 0);
  assert_token_file();
  assert_nothing_secret(&r);
  cr_assert(record_line(&a, "poll", 1, line, sizeof line));
  long long gap = h_json_int(line, "gap_ms", -1);
  cr_assert(gap >= 5800, "the poll after slow_down came %lld ms later", gap);
  cr_assert(record_line(&a, "poll", 2, line, sizeof line));
  gap = h_json_int(line, "gap_ms", -1);
  cr_assert(gap >= 5800, "the interval stays raised (%lld ms)", gap);
}

/* Refusals end the command with exit 1 and a line that says what to do. */
static void device_refusal(const char *mode, const char *want_err, const char *want_advice) {
  asrv a;
  asrv_start(&a, (const char *const[]){"--scope", M365_SCOPE, "--device-mode", mode,
                                       "--approve-after", "1", NULL});
  char yaml[8192];
  write_config(&a, "microsoft365", NULL, yaml, sizeof yaml);
  login_run r;
  login_start(&r, "", false);
  cr_assert_eq(login_finish(&r), 1);
  char *err = login_stderr(&r);
  cr_assert(strstr(err, want_err), "stderr: %s", err);
  cr_assert(strstr(err, want_advice), "stderr: %s", err);
  free(err);
  cr_assert(!token_file_exists());
  assert_nothing_secret(&r);
}

ITest(integ, oauth_login_device_conditional_access_says_flow_code) {
  device_refusal("refuse", "AADSTS53003", "--flow code");
}

ITest(integ, oauth_login_device_declined) {
  device_refusal("deny", "authorization_declined", "run the login again and accept");
}

ITest(integ, oauth_login_device_expired) {
  device_refusal("expire", "expired_token", "enter the code before it expires");
}

ITest(integ, oauth_login_device_public_client_off) {
  device_refusal("public", "AADSTS7000218", "Allow public client flows");
}

/* The user denies consent: the redirect carries error=access_denied. */
ITest(integ, oauth_login_code_denied) {
  asrv a;
  asrv_start(&a, (const char *const[]){"--google", "--deny", NULL});
  char yaml[8192], url[4096], redirect[4096], page[512], cmd[4200];
  write_config(&a, "google", NULL, yaml, sizeof yaml);
  login_run r;
  login_start(&r, "", true);
  cr_assert(login_line(&r, "https://127.0.0.1:", url, sizeof url));
  browse(url, redirect, sizeof redirect);
  snprintf(cmd, sizeof cmd, "curl -s --max-time 10 '%s'", redirect);
  cr_assert_eq(h_run(cmd, NULL, 15000, page, sizeof page), 0);
  cr_assert(strstr(page, "failed"), "page: %s", page);
  cr_assert_eq(login_finish(&r), 1);
  char *err = login_stderr(&r);
  cr_assert(strstr(err, "access_denied"), "stderr: %s", err);
  free(err);
  cr_assert(!token_file_exists());
}

/* Before the login: --check warns and names the command (exit 0), the
 * upstream has no token (a 4xx with the reason in the log); the login
 * with --reload finds the running proxy over the spool's control socket
 * and the next mail goes out. */
ITest(integ, oauth_login_missing_file_then_reload) {
  asrv a;
  asrv_start(&a, (const char *const[]){"--scope", M365_SCOPE, NULL});
  char yaml[8192], top[1024], out[4096], cmd[1200], cfg[512];
  snprintf(top, sizeof top, "spool:\n  dir: %s/spool\n  notify: postmaster@example.com\n", h_dir());
  write_config(&a, "microsoft365", top, yaml, sizeof yaml);
  h_path(cfg, sizeof cfg, "proxy.yaml");
  snprintf(cmd, sizeof cmd, "%s -c %s --check", STP_BINARY, cfg);
  cr_assert_eq(h_run(cmd, NULL, 10000, out, sizeof out), 0, "%s", out);
  cr_assert(strstr(out, "warning: refresh_token_file") && strstr(out, "oauth2 login up"), "%s",
            out);

  h_proxy px;
  h_proxy_start_yaml(&px, yaml);
  h_smtp c;
  h_smtp_open(&c, px.port, true);
  char text[512];
  int code = h_smtp_message(&c, "scan@printer.test", (const char *const[]){"to@example.com", NULL},
                            "Subject: x\r\n\r\ny\r\n", 17, text, sizeof text, NULL);
  h_smtp_close(&c);
  cr_assert(code / 100 == 4 || code == 250, "got %d", code); /* 250: spooled */
  const char *const want[] = {"oauth2 login up", NULL};
  char line[2048];
  cr_assert(h_file_wait_line(px.log, want, 5000, line, sizeof line), "no hint in the log");

  login_run r;
  login_start(&r, "--reload", false);
  cr_assert(login_line(&r, "reload: sent SIGHUP to the running proxy (pid ", NULL, 0));
  cr_assert_eq(login_finish(&r), 0);
  const char *const reloaded[] = {"reloaded", NULL};
  cr_assert(h_file_wait_line(px.log, reloaded, 5000, line, sizeof line));
  cr_assert_eq(send_mail(&px), 250);
  cr_assert(h_wait_records(a.record, "message", 1, 10000) >= 1);
}

/* Usage errors are one line and exit 1, before any network traffic. */
ITest(integ, oauth_login_usage_errors) {
  asrv a;
  asrv_start(&a, (const char *const[]){"--google", NULL});
  char yaml[8192], cmd[1200], cfg[512], out[2048];
  write_config(&a, "google", NULL, yaml, sizeof yaml);
  h_path(cfg, sizeof cfg, "proxy.yaml");
  static const struct {
    const char *args, *want;
  } cases[] = {
      {"oauth2 login nosuch", "no upstream named 'nosuch'"},
      {"oauth2 login up --flow device", "--flow device needs device_authorization_url"},
      {"oauth2 login up --flow sideways", "unexpected '--flow'"},
      {"oauth2 logout up", "expected oauth2 login UPSTREAM"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    snprintf(cmd, sizeof cmd, "%s -c %s %s </dev/null", STP_BINARY, cfg, cases[i].args);
    cr_assert_eq(h_run(cmd, NULL, 10000, out, sizeof out), 1, "%s: %s", cases[i].args, out);
    cr_assert(strstr(out, cases[i].want), "%s: %s", cases[i].args, out);
  }
  h_lines l;
  cr_assert_eq(h_records(a.record, NULL, &l), 0, "no request reached the server");
  h_lines_free(&l);
}

/* Without a spool, a mail before the first login gets a 4xx (the device
 * retries), the proxy keeps running, and the log names the command. */
ITest(integ, oauth_login_missing_file_is_4xx_with_hint) {
  asrv a;
  asrv_start(&a, (const char *const[]){"--scope", M365_SCOPE, NULL});
  char yaml[8192], text[512], line[2048];
  write_config(&a, "microsoft365", NULL, yaml, sizeof yaml);
  h_proxy px;
  h_proxy_start_yaml(&px, yaml);
  static const char body[] = "Subject: x\r\n\r\ny\r\n";
  int code = h_send_one(px.port, "to@example.com", body, sizeof body - 1, text, sizeof text, NULL);
  cr_assert_eq(code / 100, 4, "got %d %s", code, text);
  const char *const want[] = {"no refresh token", "does not exist yet", "oauth2 login up", NULL};
  cr_assert(h_file_wait_line(px.log, want, 5000, line, sizeof line), "no hint in the log");
  cr_assert(h_proc_alive(px.proc));
  h_lines l;
  cr_assert_eq(h_records(a.record, NULL, &l), 0, "no request without a refresh token");
  h_lines_free(&l);
}
