/* test_lan_auth.c - LAN AUTH modes end to end with swaks as the device and
 * aiosmtpd (users u:H_PW) as the upstream: `users` checks crypt(3) hashes,
 * `passthrough` hands the device's own credentials to the upstream and
 * relays its verdict. */
#include <criterion/criterion.h>
#include <crypt.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"

static int swaks_auth(int port, const char *mech, const char *user, const char *pw, char *out,
                      size_t cap) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "swaks --server 127.0.0.1:%d --helo device.test -a %s -au '%s' -ap '%s' "
           "--from scan@printer.test --to a@example.com --timeout 15 2>&1",
           port, mech, user, pw);
  return h_run(cmd, NULL, 30000, out, cap);
}

static void users_proxy(h_proxy *px, h_upstream *u) {
  struct crypt_data cd;
  memset(&cd, 0, sizeof cd);
  char extra[1024];
  snprintf(extra, sizeof extra, "    auth: users\n    users: { scanner1: \"%s\" }\n",
           crypt_r("scan-Pw-1", "$6$integsalt$", &cd));
  h_upstream_start(u, "starttls", NULL);
  h_proxy_start(px, &(h_proxy_opts){.up_port = u->port, .listener_extra = extra});
}

ITest(integ, lan_auth_users_right_password_delivers) {
  h_upstream u;
  h_proxy px;
  users_proxy(&px, &u);
  char out[16384];
  int rc = swaks_auth(px.port, "LOGIN", "scanner1", "scan-Pw-1", out, sizeof out);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert_eq(h_wait_records(u.record, "message", 1, 5000), 1);
  cr_assert(h_file_contains(px.log, "user=scanner1 mode=users result=ok", 34));
  cr_assert_not(h_file_contains(px.log, "scan-Pw-1", 9), "password in the log");
}

ITest(integ, lan_auth_users_wrong_password_is_535) {
  h_upstream u;
  h_proxy px;
  users_proxy(&px, &u);
  char out[16384];
  int rc = swaks_auth(px.port, "PLAIN", "scanner1", "guess", out, sizeof out);
  cr_assert_neq(rc, 0);
  cr_assert_not_null(strstr(out, "535 5.7.8"), "%s", out);
  cr_assert_eq(h_wait_records(u.record, "message", 1, 500), 0);
}

ITest(integ, lan_auth_users_mail_without_auth_is_530) {
  h_upstream u;
  h_proxy px;
  users_proxy(&px, &u);
  h_smtp c;
  h_smtp_open(&c, px.port, true);
  cr_assert_eq(h_smtp_cmd(&c, "MAIL FROM:<a@printer.test>", NULL, 0), 530);
}

static void passthrough_proxy(h_proxy *px, h_upstream *u) {
  h_upstream_start(u, "starttls", NULL);
  h_proxy_start(px, &(h_proxy_opts){.up_port = u->port,
                                    .no_upstream_auth = true,
                                    .listener_extra = "    auth: passthrough\n"});
}

ITest(integ, lan_auth_passthrough_uses_the_device_credentials) {
  h_upstream u;
  h_proxy px;
  passthrough_proxy(&px, &u);
  char out[16384];
  int rc = swaks_auth(px.port, "PLAIN", H_USER, H_PW, out, sizeof out);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert_eq(h_wait_records(u.record, "message", 1, 5000), 1);
  h_lines l;
  h_records(u.record, "message", &l);
  char user[64];
  cr_assert_eq(h_json_str(l.v[0], "auth_user", user, sizeof user), 1);
  cr_assert_str_eq(user, H_USER);
  h_lines_free(&l);
}

ITest(integ, lan_auth_passthrough_wrong_password_gets_the_upstreams_535) {
  h_upstream u;
  h_proxy px;
  passthrough_proxy(&px, &u);
  char out[16384];
  int rc = swaks_auth(px.port, "LOGIN", H_USER, "not-the-password", out, sizeof out);
  cr_assert_neq(rc, 0);
  cr_assert_not_null(strstr(out, "535 5.7.8"), "%s", out);
  cr_assert_eq(h_wait_records(u.record, "message", 1, 500), 0);
  cr_assert_not(h_file_contains(px.log, "not-the-password", 16), "password in the log");
}
