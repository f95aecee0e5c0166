/* test_ops.c - what an operator sees: the per-message log line, secrets
 * kept out of logs and transcripts at any level, --check, --test-route,
 * --version. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* The log (and any output) must not contain the password, nor the base64
 * that carries it: PLAIN's "\0u\0password" and LOGIN's "password". */
static void assert_no_secret(const char *path, const char *what) {
  char b64_plain[256], b64_login[128];
  static const char plain[] = "\0" H_USER "\0" H_PW;
  h_base64(plain, sizeof plain - 1, b64_plain, sizeof b64_plain);
  h_base64(H_PW, strlen(H_PW), b64_login, sizeof b64_login);
  cr_assert(!h_file_contains(path, H_PW, strlen(H_PW)), "%s contains the password", what);
  cr_assert(!h_file_contains(path, b64_plain, strlen(b64_plain)),
            "%s contains the AUTH PLAIN payload %s", what, b64_plain);
  cr_assert(!h_file_contains(path, b64_login, strlen(b64_login)),
            "%s contains the AUTH LOGIN password %s", what, b64_login);
}

static void log_case(const char *upstream_auth) {
  h_upstream u;
  h_proxy px;
  h_upstream_start(&u, "starttls", NULL);
  h_proxy_opts o = {.up_port = u.port,
                    .log_level = "debug",
                    .no_upstream_auth = upstream_auth != NULL,
                    .upstream_extra = upstream_auth};
  h_proxy_start(&px, &o);
  h_smtp c;
  h_smtp_open(&c, px.port, true);
  char text[2048];
  const char *stage;
  static const char body[] = "Subject: logged\r\n\r\nbody\r\n";
  int code = h_smtp_message(&c, "scan@printer.test", (const char *const[]){"a@example.com", NULL},
                            body, sizeof body - 1, text, sizeof text, &stage);
  cr_assert_eq(code, 250, "%s: %d %s", stage, code, text);
  h_smtp_cmd(&c, "QUIT", text, sizeof text);

  cr_assert_eq(h_wait_records(u.record, "message", 1, 5000), 1);
  h_lines l;
  h_records(u.record, "message", &l);
  char qid[64], user[64];
  cr_assert_eq(h_json_str(l.v[0], "queue_id", qid, sizeof qid), 1);
  cr_assert_eq(h_json_str(l.v[0], "auth_user", user, sizeof user), 1,
               "upstream AUTH did not happen");
  h_lines_free(&l);

  /* One line per message: route, upstream, and the upstream's reply. */
  char line[4096];
  bool found =
      h_file_wait_line(px.log, (const char *const[]){"route=default", "upstream=up", qid, NULL},
                       3000, line, sizeof line);
  char *log = h_read_file(px.log, NULL);
  cr_assert(found,
            "no message line with route=default upstream=up and the "
            "upstream reply (%s):\n%s",
            qid, log);
  free(log);
  h_smtp_close(&c);
  /* The proxy flushes on exit: check what it wrote after shutdown too. */
  h_proc_signal(px.proc, SIGTERM);
  h_proc_wait_exit(px.proc, 5000);
  assert_no_secret(px.log, "the debug log");
}

/* 15 */
ITest(integ, log_message_line_and_no_secrets_auto) {
  log_case(NULL);
}

ITest(integ, log_no_secrets_login_mechanism) {
  log_case("    auth: { mechanism: login, username: " H_USER ", password_env: " H_PW_ENV " }\n");
}

ITest(integ, log_no_secrets_plain_mechanism) {
  log_case("    auth: { mechanism: plain, username: " H_USER ", password_env: " H_PW_ENV " }\n");
}

/* 16: --check */
static int check(const char *yaml, char *out, size_t cap, char *path, size_t pcap) {
  h_path(path, pcap, "check.yaml");
  h_write_file(path, yaml, strlen(yaml));
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "'%s' -c '%s' --check", STP_BINARY, path);
  return h_run(cmd, (char *const[]){H_PW_ENV "=" H_PW, NULL}, 10000, out, cap);
}

ITest(integ, check_good_config) {
  char yaml[8192], out[8192], path[512];
  h_proxy_yaml(&(h_proxy_opts){.up_port = 2525}, yaml, sizeof yaml);
  int rc = check(yaml, out, sizeof out, path, sizeof path);
  cr_assert_eq(rc, 0, "--check of a good config: exit %d\n%s\n%s", rc, out, yaml);
}

ITest(integ, check_unknown_top_level_key) {
  char yaml[8192], out[8192], path[512], want[600];
  /* top_extra starts at line 4 */
  h_proxy_yaml(&(h_proxy_opts){.up_port = 2525, .top_extra = "bogus_key: 1\n"}, yaml, sizeof yaml);
  int rc = check(yaml, out, sizeof out, path, sizeof path);
  cr_assert_eq(rc, 1, "exit %d\n%s", rc, out);
  snprintf(want, sizeof want, "%s:4:1:", path);
  cr_assert(strstr(out, want) != NULL, "want %s in:\n%s", want, out);
  cr_assert(strstr(out, "bogus_key") != NULL, "key not named:\n%s", out);
}

ITest(integ, check_unknown_listener_key) {
  char yaml[8192], out[8192], path[512], want[600];
  /* listener_extra starts at line 7, indented 4 */
  h_proxy_yaml(&(h_proxy_opts){.up_port = 2525, .listener_extra = "    colour: blue\n"}, yaml,
               sizeof yaml);
  int rc = check(yaml, out, sizeof out, path, sizeof path);
  cr_assert_eq(rc, 1, "exit %d\n%s", rc, out);
  snprintf(want, sizeof want, "%s:7:5:", path);
  cr_assert(strstr(out, want) != NULL, "want %s in:\n%s\n%s", want, out, yaml);
}

ITest(integ, check_unset_password_env) {
  char yaml[8192], out[8192], path[512], cmd[1024];
  h_proxy_yaml(&(h_proxy_opts){.up_port = 2525}, yaml, sizeof yaml);
  h_path(path, sizeof path, "check.yaml");
  h_write_file(path, yaml, strlen(yaml));
  snprintf(cmd, sizeof cmd, "env -u %s '%s' -c '%s' --check", H_PW_ENV, STP_BINARY, path);
  int rc = h_run(cmd, NULL, 10000, out, sizeof out);
  cr_assert_eq(rc, 1, "unset password_env accepted: exit %d\n%s", rc, out);
  cr_assert(strstr(out, path) != NULL, "no FILE:LINE:COL:\n%s", out);
}

/* --test-route sends one message and prints the transcript, redacted. */
ITest(integ, test_route_sends_and_redacts) {
  h_upstream u;
  h_upstream_start(&u, "starttls", NULL);
  char yaml[8192], path[512], outpath[512], cmd[2048];
  h_proxy_yaml(&(h_proxy_opts){.up_port = u.port}, yaml, sizeof yaml);
  h_path(path, sizeof path, "route.yaml");
  h_write_file(path, yaml, strlen(yaml));
  h_path(outpath, sizeof outpath, "test-route.out");
  snprintf(cmd, sizeof cmd,
           "'%s' -c '%s' --test-route default --from probe@printer.test "
           "--to check@example.com > '%s' 2>&1",
           STP_BINARY, path, outpath);
  int rc = h_run(cmd, (char *const[]){H_PW_ENV "=" H_PW, NULL}, 20000, NULL, 0);
  char *out = h_read_file(outpath, NULL);
  cr_assert_eq(rc, 0, "--test-route exit %d:\n%s", rc, out);
  cr_assert(strstr(out, "STARTTLS") != NULL, "no transcript:\n%s", out);
  free(out);
  assert_no_secret(outpath, "the --test-route transcript");
  cr_assert_eq(h_wait_records(u.record, "message", 1, 5000), 1);
  h_lines l;
  h_records(u.record, "message", &l);
  char v[128];
  cr_assert_eq(h_json_str(l.v[0], "mail_from", v, sizeof v), 1);
  cr_assert_str_eq(v, "probe@printer.test");
  bool found;
  h_json_strlist(l.v[0], "rcpt_tos", "check@example.com", &found);
  cr_assert(found, "%s", l.v[0]);
  h_lines_free(&l);
}

ITest(integ, version_flag) {
  char cmd[1024], out[1024];
  snprintf(cmd, sizeof cmd, "'%s' --version", STP_BINARY);
  int rc = h_run(cmd, NULL, 5000, out, sizeof out);
  cr_assert_eq(rc, 0, "--version exit %d: %s", rc, out);
  cr_assert(strstr(out, "0.") != NULL || strstr(out, "1.") != NULL, "no version number: %s", out);
}

/* --test-route applies the route's rewrites as a device's message gets them. */
ITest(integ, test_route_applies_the_route_rewrites) {
  h_upstream u;
  h_upstream_start(&u, "starttls", NULL);
  char yaml[8192], path[512], cmd[2048], out[16384];
  h_proxy_yaml(&(h_proxy_opts){.up_port = u.port}, yaml, sizeof yaml);
  cr_assert(strlen(yaml) > 16 && !strcmp(yaml + strlen(yaml) - 17, "    upstream: up\n"), "%s",
            yaml);
  strcat(yaml, "    rewrite:\n      mail_from: scanner@example.com\n"
               "      header_from: \"Office Scanner <scanner@example.com>\"\n");
  h_path(path, sizeof path, "route.yaml");
  h_write_file(path, yaml, strlen(yaml));
  snprintf(cmd, sizeof cmd,
           "'%s' -c '%s' --test-route default --from probe@printer.test --to check@example.com",
           STP_BINARY, path);
  int rc = h_run(cmd, (char *const[]){H_PW_ENV "=" H_PW, NULL}, 20000, out, sizeof out);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert_not_null(strstr(out, "C: MAIL FROM:<scanner@example.com>"), "%s", out);
  cr_assert_eq(h_wait_records(u.record, "message", 1, 5000), 1);
  h_lines l;
  h_records(u.record, "message", &l);
  size_t len;
  unsigned char *data = h_json_b64(l.v[0], "data_b64", &len);
  cr_assert_not_null(strstr((char *)data, "From: Office Scanner <scanner@example.com>\r\n"), "%s",
                     (char *)data);
  cr_assert_not_null(strstr((char *)data, "Reply-To: <probe@printer.test>\r\n"), "%s",
                     (char *)data);
  free(data);
  h_lines_free(&l);
}

/* --test-route walks the route as the relay does: a refused first upstream
 * is reported with the back-off a running proxy would give it, and the
 * next upstream carries the message. */
ITest(integ, test_route_fails_over_and_reports_backoff) {
  h_upstream u;
  h_upstream_start(&u, "starttls", NULL);
  char yaml[8192], path[512], outpath[512], cmd[2048];
  snprintf(yaml, sizeof yaml,
           "hostname: proxy.test\n"
           "listeners:\n"
           "  - name: lan\n"
           "    listen: \"127.0.0.1:0\"\n"
           "upstreams:\n"
           "  - name: first\n"
           "    host: 127.0.0.1\n"
           "    port: 1\n"
           "    tls: starttls\n"
           "    connect_timeout: 3s\n"
           "  - name: second\n"
           "    host: 127.0.0.1\n"
           "    port: %d\n"
           "    tls: starttls\n"
           "    server_name: localhost\n"
           "    ca_file: %s/ca.crt\n"
           "    auth: { mechanism: auto, username: %s, password_env: %s }\n"
           "routes:\n"
           "  - name: default\n"
           "    upstream: [first, second]\n",
           u.port, h_certs(), H_USER, H_PW_ENV);
  h_path(path, sizeof path, "route.yaml");
  h_write_file(path, yaml, strlen(yaml));
  h_path(outpath, sizeof outpath, "test-route.out");
  snprintf(cmd, sizeof cmd,
           "'%s' -c '%s' --test-route default --from probe@printer.test "
           "--to check@example.com > '%s' 2>&1",
           STP_BINARY, path, outpath);
  int rc = h_run(cmd, (char *const[]){H_PW_ENV "=" H_PW, NULL}, 20000, NULL, 0);
  char *out = h_read_file(outpath, NULL);
  cr_assert_eq(rc, 0, "--test-route exit %d:\n%s", rc, out);
  cr_assert(strstr(out, "upstream first failed (connect)"), "%s", out);
  cr_assert(strstr(out, "upstream first: back-off 30 s"), "%s", out);
  cr_assert(strstr(out, "trying upstream second"), "%s", out);
  cr_assert(strstr(out, "== OK"), "%s", out);
  free(out);
  cr_assert_eq(h_wait_records(u.record, "message", 1, 5000), 1);
}

/* issue 21: under log.format: json a start-up configuration warning is a
 * JSON log line too, not text in the middle of the JSON stream. */
ITest(integ, config_warning_is_json_under_json_logs) {
  char yaml[8192], path[512], line[2048];
  h_proxy_yaml(&(h_proxy_opts){.up_port = 1,
                               .no_upstream_auth = true,
                               .listener_extra = "    users: { a: \"$6$x$y\" }\n"},
               yaml, sizeof yaml);
  char *fmt = strstr(yaml, "format: text");
  cr_assert_not_null(fmt);
  memcpy(fmt, "format: json", 12);
  h_write_file(h_path(path, sizeof path, "json.yaml"), yaml, strlen(yaml));
  char *argv[] = {(char *)STP_BINARY, "-c", path, NULL};
  h_proc *p = h_spawn("jsonlog", argv, NULL);
  cr_assert(h_file_wait_line(p->err_path, (const char *const[]){"listening", NULL}, 10000, line,
                             sizeof line),
            "proxy did not start");
  cr_assert(h_file_wait_line(p->err_path, (const char *const[]){"config-warning", NULL}, 1000, line,
                             sizeof line));
  cr_assert(strstr(line, "\"warning\":\"users are not used unless auth: users\""), "%s", line);
  cr_assert(strstr(line, "json.yaml:"), "%s", line);
  size_t n;
  char *all = h_read_file(p->err_path, &n);
  for (char *l = all; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : l + strlen(l))
    cr_assert_eq(*l, '{', "a line that is not JSON: %.80s", l);
  free(all);
  h_proc_signal(p, SIGTERM);
  cr_assert_eq(h_proc_wait_exit(p, 10000), 0);
}
