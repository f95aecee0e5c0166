/* test_oauth2.c - XOAUTH2 upstreams with tokens the proxy fetches itself:
 * refresh_token and client_credentials grants against a local HTTPS token
 * endpoint (tests/tools/token_server.py), caching and expiry, a rotated
 * refresh token saved with mode 0600, invalid_grant as a 4xx with a clear
 * log line, a refused token refreshed and retried once, token_command, and
 * no token or secret in the proxy's log. The upstream is aiosmtpd with an
 * XOAUTH2 hook in the same tool, accepting only tokens the endpoint issued.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"
#include "oauth_common.h"

typedef oauth_srv tsrv;

static void tsrv_start(tsrv *t, const char *const extra[]) {
  oauth_srv_start(t, "token_server", (const char *const[]){"--smtp", NULL}, extra);
}

/* A proxy whose upstream authenticates with `auth` (lines indented 4). */
static void proxy_start(h_proxy *px, const tsrv *t, const char *auth) {
  h_proxy_opts o = {.up_port = t->smtp_port, .no_upstream_auth = true, .upstream_extra = auth};
  char yaml[8192];
  h_proxy_yaml(&o, yaml, sizeof yaml);
  h_proxy_start_yaml(px, yaml);
}

/* The auth block for the refresh_token grant with the refresh token in
 * dir/rt; `more` adds lines inside oauth2 (indented 8) or after it. */
static const char *oauth2_auth(const tsrv *t, const char *more, const char *after) {
  static char buf[4096];
  char rt[512];
  h_path(rt, sizeof rt, "rt");
  snprintf(buf, sizeof buf,
           "    auth:\n"
           "      username: scanner@example.com\n"
           "      oauth2:\n"
           "        token_url: https://127.0.0.1:%d/token\n"
           "        client_id: client-1\n"
           "        ca_file: %s/ca.crt\n"
           "%s"
           "%s",
           t->http_port, h_certs(), more ? more : "        refresh_token_file: rt\n",
           after ? after : "");
  (void)rt;
  return buf;
}

static void write_rt(const char *value) {
  char path[512];
  h_path(path, sizeof path, "rt");
  h_write_file(path, value, strlen(value));
  chmod(path, 0600);
}

static int send_one(const h_proxy *px, const char *from, char *text, size_t cap) {
  return oauth_send_one(px, from, "oauth2", text, cap);
}

/* No token or secret of the token server's in the proxy's log. */
static void assert_log_clean(const h_proxy *px) {
  static const char *const secrets[] = {"at-1-", "at-2-", "at-3-",     "rt-initial",
                                        "rt-1-", "rt-2-", "cc-s3cret", "static-tok"};
  for (size_t i = 0; i < sizeof secrets / sizeof *secrets; i++)
    cr_assert(!h_file_contains(px->log, secrets[i], strlen(secrets[i])),
              "the proxy log contains %s", secrets[i]);
}

/* refresh_token grant: a message goes through with a fetched token, the
 * token is cached for the next session, nothing secret is logged. */
ITest(integ, oauth2_refresh_token_delivers_and_caches) {
  tsrv t;
  h_proxy px;
  tsrv_start(&t, (const char *const[]){"--expires-in", "3600", NULL});
  write_rt("rt-initial\n");
  proxy_start(&px, &t, oauth2_auth(&t, NULL, "    pool: false\n"));
  cr_assert_eq(send_one(&px, "scan@printer.test", NULL, 0), 250);
  cr_assert_eq(send_one(&px, "scan@printer.test", NULL, 0), 250);
  cr_assert_eq(h_wait_records(t.record, "message", 2, 5000), 2);
  h_lines l;
  cr_assert_eq(h_records(t.record, "token_request", &l), 1, "the token is cached");
  char s[256];
  cr_assert_eq(h_json_str(l.v[0], "grant_type", s, sizeof s), 1);
  cr_assert_str_eq(s, "refresh_token");
  cr_assert_eq(h_json_str(l.v[0], "content_type", s, sizeof s), 1);
  cr_assert_str_eq(s, "application/x-www-form-urlencoded");
  h_lines_free(&l);
  cr_assert_eq(h_records(t.record, "message", &l), 2);
  cr_assert_eq(h_json_str(l.v[1], "auth_user", s, sizeof s), 1);
  cr_assert_str_eq(s, "scanner@example.com");
  h_lines_free(&l);
  cr_assert_eq(h_records(t.record, "auth", &l), 2);
  h_lines_free(&l);
  const char *const want[] = {"oauth2-token", "upstream=up", NULL};
  char line[1024];
  cr_assert(h_file_wait_line(px.log, want, 2000, line, sizeof line));
  assert_log_clean(&px);
}

/* A short-lived token is fetched again once it is due (halfway through a
 * 2 s lifetime), and the endpoint's chunked answers are understood. */
ITest(integ, oauth2_expiry_fetches_again_chunked) {
  tsrv t;
  h_proxy px;
  tsrv_start(&t, (const char *const[]){"--expires-in", "2", "--chunked", NULL});
  write_rt("rt-initial");
  proxy_start(&px, &t, oauth2_auth(&t, NULL, "    pool: false\n"));
  cr_assert_eq(send_one(&px, "scan@printer.test", NULL, 0), 250);
  h_sleep_ms(1500);
  cr_assert_eq(send_one(&px, "scan@printer.test", NULL, 0), 250);
  h_lines l;
  cr_assert_eq(h_records(t.record, "token_request", &l), 2);
  h_lines_free(&l);
  cr_assert_eq(h_wait_records(t.record, "message", 2, 5000), 2);
  assert_log_clean(&px);
}

/* A rotated refresh token replaces the file atomically, mode 0600, and is
 * the one used for the next refresh. */
ITest(integ, oauth2_rotated_refresh_token_saved) {
  tsrv t;
  h_proxy px;
  tsrv_start(&t, (const char *const[]){"--expires-in", "2", "--rotate", NULL});
  write_rt("rt-initial\n");
  proxy_start(&px, &t, oauth2_auth(&t, NULL, "    pool: false\n"));
  cr_assert_eq(send_one(&px, "scan@printer.test", NULL, 0), 250);
  char path[512], tmp[600];
  h_path(path, sizeof path, "rt");
  size_t len;
  char *rt = h_read_file(path, &len);
  cr_assert(rt && !strncmp(rt, "rt-1-", 5), "refresh token file holds %s", rt ? rt : "(none)");
  cr_assert_eq(rt[len - 1], '\n');
  free(rt);
  struct stat st;
  cr_assert_eq(stat(path, &st), 0);
  cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  cr_assert_neq(stat(tmp, &st), 0, "no temporary file left");
  /* The next refresh presents the rotated token (the server refuses the
   * old one), and rotates again. */
  h_sleep_ms(1500);
  cr_assert_eq(send_one(&px, "scan@printer.test", NULL, 0), 250);
  rt = h_read_file(path, &len);
  cr_assert(rt && !strncmp(rt, "rt-2-", 5), "refresh token file holds %s", rt ? rt : "(none)");
  free(rt);
  const char *const want[] = {"oauth2-token", "refresh_token_rotated=yes", NULL};
  char line[1024];
  cr_assert(h_file_wait_line(px.log, want, 2000, line, sizeof line));
  assert_log_clean(&px);
}

/* invalid_grant: the device gets 454 4.7.0 (it will retry), the log says
 * what the endpoint said, and no message reaches the upstream. */
ITest(integ, oauth2_invalid_grant_is_4xx_with_log) {
  tsrv t;
  h_proxy px;
  tsrv_start(&t, (const char *const[]){"--mode", "invalid_grant", NULL});
  write_rt("rt-initial\n");
  proxy_start(&px, &t, oauth2_auth(&t, NULL, NULL));
  char text[512];
  int code = send_one(&px, "scan@printer.test", text, sizeof text);
  cr_assert_eq(code, 454, "got %d %s", code, text);
  cr_assert(strstr(text, "4.7.0"), "%s", text);
  const char *const want[] = {"oauth2-failed", "upstream=up", "invalid_grant",
                              "Token has been expired or revoked.", NULL};
  char line[1024];
  cr_assert(h_file_wait_line(px.log, want, 3000, line, sizeof line));
  h_lines l;
  cr_assert_eq(h_records(t.record, "message", &l), 0);
  h_lines_free(&l);
  cr_assert_eq(h_records(t.record, "auth", &l), 0, "no AUTH without a token");
  h_lines_free(&l);
  assert_log_clean(&px);
}

/* The upstream refuses the first token (334 + 535, as for a revoked one):
 * the proxy fetches a new token and retries once; the device sees 250. */
ITest(integ, oauth2_refused_token_refreshed_and_retried) {
  tsrv t;
  h_proxy px;
  tsrv_start(&t, (const char *const[]){"--revoke-first", NULL});
  write_rt("rt-initial\n");
  proxy_start(&px, &t, oauth2_auth(&t, NULL, NULL));
  char text[512];
  int code = send_one(&px, "scan@printer.test", text, sizeof text);
  cr_assert_eq(code, 250, "got %d %s", code, text);
  h_lines l;
  cr_assert_eq(h_records(t.record, "token_request", &l), 2);
  h_lines_free(&l);
  cr_assert_eq(h_records(t.record, "auth", &l), 2);
  cr_assert_eq(h_json_bool(l.v[0], "ok"), 0);
  cr_assert_eq(h_json_bool(l.v[1], "ok"), 1);
  h_lines_free(&l);
  const char *const want[] = {"oauth2-token-refused", "535", NULL};
  char line[1024];
  cr_assert(h_file_wait_line(px.log, want, 2000, line, sizeof line));
  assert_log_clean(&px);
}

/* client_credentials: the client secret from a file and the scope go in
 * the form; no refresh token is involved. */
ITest(integ, oauth2_client_credentials) {
  tsrv t;
  h_proxy px;
  tsrv_start(&t, (const char *const[]){"--client-secret", "cc-s3cret", NULL});
  char path[512];
  h_path(path, sizeof path, "secret");
  h_write_file(path, "cc-s3cret\n", 10);
  chmod(path, 0600);
  char more[1024];
  snprintf(more, sizeof more,
           "        grant: client_credentials\n"
           "        client_secret_file: %s\n"
           "        scope: https://outlook.office365.com/.default\n",
           path);
  proxy_start(&px, &t, oauth2_auth(&t, more, NULL));
  cr_assert_eq(send_one(&px, "scan@printer.test", NULL, 0), 250);
  h_lines l;
  cr_assert_eq(h_records(t.record, "token_request", &l), 1);
  char s[256];
  cr_assert_eq(h_json_str(l.v[0], "grant_type", s, sizeof s), 1);
  cr_assert_str_eq(s, "client_credentials");
  cr_assert_eq(h_json_str(l.v[0], "scope", s, sizeof s), 1);
  cr_assert_str_eq(s, "https://outlook.office365.com/.default");
  cr_assert_eq(h_json_bool(l.v[0], "has_secret"), 1);
  h_lines_free(&l);
  assert_log_clean(&px);
}

/* token_command: argv without a shell; its stdout (trimmed) is the token. */
ITest(integ, oauth2_token_command) {
  tsrv t;
  h_proxy px;
  tsrv_start(&t, (const char *const[]){"--static-token", "static-tok-42", NULL});
  proxy_start(&px, &t,
              "    auth:\n"
              "      username: scanner@example.com\n"
              "      token_command: [\"/bin/sh\", \"-c\", \"printf ' static-tok-42\\\\n'\"]\n"
              "      token_ttl: 1m\n");
  char text[512];
  int code = send_one(&px, "scan@printer.test", text, sizeof text);
  cr_assert_eq(code, 250, "got %d %s", code, text);
  h_lines l;
  cr_assert_eq(h_records(t.record, "auth", &l), 1);
  cr_assert_eq(h_json_bool(l.v[0], "ok"), 1);
  h_lines_free(&l);
  assert_log_clean(&px);
}

/* A failing token_command is a 4xx for the device and a log line. */
ITest(integ, oauth2_token_command_failure) {
  tsrv t;
  h_proxy px;
  tsrv_start(&t, NULL);
  proxy_start(&px, &t,
              "    auth:\n"
              "      username: scanner@example.com\n"
              "      token_command: [\"/bin/false\"]\n");
  char text[512];
  int code = send_one(&px, "scan@printer.test", text, sizeof text);
  cr_assert_eq(code, 454, "got %d %s", code, text);
  const char *const want[] = {"oauth2-failed", "token_command", "status 1", NULL};
  char line[1024];
  cr_assert(h_file_wait_line(px.log, want, 3000, line, sizeof line));
}
