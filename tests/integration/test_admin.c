/* test_admin.c - the admin page and API through the real binary, from
 * outside with curl: the delivery history and the queue after real
 * traffic (aiosmtpd upstream, then none, then back), a retry through the
 * API, the status; and the refusals: no credentials, a wrong password
 * (401, then 429), a cross-site Origin and a missing CSRF token (403), TLS
 * 1.2+ when a certificate is given, and no password or hash anywhere. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "spool_common.h"

#define ADM_PW "adm-Pa55word"
#define ADM_HASH                                                                                   \
  "$6$integsalt$cBbVuGtHlhAn3zNBYRFaXDeWxtEoqwyBIqV12Jps.vptAzv2jVXsvy309oQ/u3og."                 \
  "DWWIunEDTlGBISqnVMsm/"
#define ADMIN_YAML                                                                                 \
  "admin:\n  listen: \"127.0.0.1:0\"\n  users: { admin: \"" ADM_HASH "\" }\n  history: 50\n"

static int admin_port(const h_proxy *px) {
  return h_proxy_listen_port(px, "admin-listening");
}

/* curl ARGS URL: body, then "\nHTTP <code>" (and the head with -i in args). */
static int curl(const char *args, int port, const char *path, char *out, size_t cap) {
  char cmd[12288];
  snprintf(cmd, sizeof cmd,
           "cd '%s' && curl -s -o - -w '\\nHTTP %%{http_code}\\n' %s http://127.0.0.1:%d%s",
           h_dir(), args, port, path);
  return h_run(cmd, NULL, 10000, out, cap);
}

/* GET / with a cookie jar: the page's CSRF token. */
static void login(int port, char token[40]) {
  char out[65536];
  cr_assert_eq(curl("-c jar -u admin:" ADM_PW, port, "/", out, sizeof out), 0);
  cr_assert_not_null(strstr(out, "HTTP 200"), "%s", out);
  const char *m = strstr(out, "name=\"csrf-token\" content=\"");
  cr_assert_not_null(m, "%s", out);
  snprintf(token, 40, "%.32s", m + 27);
}

ITest(integ, admin_history_queue_retry_and_status) {
  h_upstream u, u2;
  h_proxy px;
  char yaml[8192], out[65536], text[512], id[32], args[512], portarg[16];
  h_upstream_start(&u, "starttls", NULL);
  sp_yaml_top(u.port, "starttls", NULL, ADMIN_YAML, yaml, sizeof yaml);
  h_proxy_start_yaml(&px, yaml);
  int ap = admin_port(&px);

  cr_assert_eq(sp_send(px.port, (const char *const[]){"a@example.com", "b@example.com", NULL},
                       "Subject: one\r\n\r\nx\r\n", text, sizeof text),
               250, "%s", text);
  int up_port = u.port;
  h_proc_kill(u.proc); /* the upstream goes away: the next message is spooled */
  cr_assert_eq(sp_send(px.port, (const char *const[]){"c@example.com", NULL},
                       "Subject: two\r\n\r\ny\r\n", text, sizeof text),
               250, "%s", text);
  cr_assert(sp_queued_id(text, id), "%s", text);

  cr_assert_eq(curl("-u admin:" ADM_PW, ap, "/api/deliveries?limit=10", out, sizeof out), 0);
  cr_log_info("%s", out);
  cr_assert_not_null(strstr(out, "HTTP 200"), "%s", out);
  cr_assert_not_null(strstr(out, "\"listener\":\"lan\",\"route\":\"default\",\"upstream\":\"up\","
                                 "\"from\":\"scan@printer.test\""),
                     "%s", out);
  cr_assert_not_null(strstr(out, "\"rcpts\":[\"a@example.com\",\"b@example.com\"],\"n_rcpts\":2"),
                     "%s", out);
  cr_assert_not_null(strstr(out, "\"result\":\"delivered\""), "%s", out);
  char want[128];
  snprintf(want, sizeof want, "\"spool_id\":\"%s\"", id);
  cr_assert_not_null(strstr(out, want), "%s", out);
  cr_assert_lt(strstr(out, "\"result\":\"spooled\""), strstr(out, "\"result\":\"delivered\""),
               "newest first: %s", out);
  cr_assert_eq(curl("-u admin:" ADM_PW, ap, "/api/deliveries?result=delivered", out, sizeof out),
               0);
  cr_assert_null(strstr(out, "spooled"), "filtered: %s", out);
  cr_assert_eq(curl("-u admin:" ADM_PW, ap, "/api/deliveries?limit=1", out, sizeof out), 0);
  cr_assert_null(strstr(out, "delivered"), "limited to the newest: %s", out);
  cr_assert_eq(curl("-u admin:" ADM_PW, ap, "/api/deliveries?result=lost", out, sizeof out), 0);
  cr_assert_not_null(strstr(out, "HTTP 400"), "%s", out);

  cr_assert_eq(curl("-u admin:" ADM_PW, ap, "/api/queue", out, sizeof out), 0);
  snprintf(want, sizeof want, "{\"total\":1,\"messages\":[{\"id\":\"%s\"", id);
  cr_assert_not_null(strstr(out, want), "%s", out);
  cr_assert_eq(curl("-u admin:" ADM_PW, ap, "/api/status", out, sizeof out), 0);
  cr_assert_not_null(strstr(out, "{\"name\":\"up\",\"kind\":\"smtp\",\"state\":\"down\""), "%s",
                     out);
  cr_assert_not_null(strstr(out, "\"spool\":{\"messages\":1,"), "%s", out);
  cr_assert_not_null(strstr(out, "\"version\":\""), "%s", out);

  /* the upstream comes back on its port; a retry through the API sends it */
  snprintf(portarg, sizeof portarg, "%d", up_port);
  h_upstream_start(&u2, "starttls", (const char *const[]){"--port", portarg, NULL});
  cr_assert_eq(u2.port, up_port);
  char token[40];
  login(ap, token);
  snprintf(args, sizeof args,
           "-b jar -u admin:" ADM_PW " -X POST -H 'Origin: http://127.0.0.1:%d' "
           "-H 'X-CSRF-Token: %s' --data ''",
           ap, token);
  char path[128];
  snprintf(path, sizeof path, "/api/queue/%s/retry", id);
  cr_assert_eq(curl(args, ap, path, out, sizeof out), 0);
  cr_assert_not_null(strstr(out, "{\"ok\":true,\"message\":\"1 message scheduled now\"}"), "%s",
                     out);
  cr_assert_eq(h_wait_records(u2.record, "message", 1, 10000), 1, "delivered after the retry");
  cr_assert(sp_wait_empty(&px, 10000));
  cr_assert_eq(curl("-u admin:" ADM_PW, ap, "/api/queue", out, sizeof out), 0);
  cr_assert_not_null(strstr(out, "{\"total\":0,\"messages\":[]}"), "%s", out);
  /* the test-message form of route "default", as an API client posts it */
  snprintf(
      args, sizeof args,
      "-b jar -u admin:" ADM_PW " -X POST -H 'Origin: http://127.0.0.1:%d' "
      "-H 'X-CSRF-Token: %s' --data 'route=default&from=t%%40printer.test&to=x%%40example.com'",
      ap, token);
  cr_assert_eq(curl(args, ap, "/api/test-route", out, sizeof out), 0);
  cr_assert_not_null(strstr(out, "{\"ok\":true,\"message\":\"Test message through route default: "
                                 "the upstream accepted it\""),
                     "%s", out);
  cr_assert_not_null(strstr(out, "C: AUTH PLAIN \\u003credacted\\u003e"), "%s", out);
  cr_assert_null(strstr(out, H_PW), "no upstream password in the transcript");
  cr_assert_eq(h_wait_records(u2.record, "message", 2, 10000), 2, "the test message arrived");
  char *log = h_read_file(px.log, NULL);
  snprintf(want, sizeof want, "spool-retry id=%s by=admin:admin", id);
  cr_assert_not_null(strstr(log, want), "the queue command's own log line");
  free(log);
}

ITest(integ, admin_refusals_from_outside) {
  h_upstream u;
  h_proxy px;
  char yaml[8192], out[65536], args[512], token[40];
  h_upstream_start(&u, "starttls", NULL);
  sp_yaml_top(u.port, "starttls", NULL, ADMIN_YAML, yaml, sizeof yaml);
  h_proxy_start_yaml(&px, yaml);
  int ap = admin_port(&px);

  cr_assert_eq(curl("-i", ap, "/api/status", out, sizeof out), 0);
  cr_assert_not_null(strstr(out, "HTTP 401"), "no credentials: %s", out);
  cr_assert_not_null(strstr(out, "WWW-Authenticate: Basic realm="), "%s", out);
  cr_assert_not_null(strstr(out, "Content-Security-Policy: default-src 'none'"), "%s", out);

  login(ap, token);
  cr_assert_eq(curl("-i -b jar -u admin:" ADM_PW, ap, "/", out, sizeof out), 0);
  cr_assert_not_null(strstr(out, "frame-ancestors 'none'"), "%s", out);
  cr_assert_not_null(strstr(out, "X-Content-Type-Options: nosniff"), "%s", out);
  cr_assert_not_null(strstr(out, "Cache-Control: no-store"), "%s", out);
  cr_assert_null(strstr(out, "<script>"), "no inline script: %s", out);
  cr_assert_null(strstr(out, ADM_HASH), "no hash in the page");
  cr_assert_null(strstr(out, ADM_PW), "no password in the page");

  const char *fake = "/api/queue/0123456789abcdef/delete";
  snprintf(args, sizeof args,
           "-b jar -u admin:" ADM_PW " -X POST -H 'Origin: http://127.0.0.1:%d' --data ''", ap);
  cr_assert_eq(curl(args, ap, fake, out, sizeof out), 0);
  cr_assert_not_null(strstr(out, "HTTP 403"), "missing CSRF token: %s", out);
  snprintf(args, sizeof args,
           "-b jar -u admin:" ADM_PW " -X POST -H 'Origin: https://evil.example' "
           "-H 'X-CSRF-Token: %s' --data ''",
           token);
  cr_assert_eq(curl(args, ap, fake, out, sizeof out), 0);
  cr_assert_not_null(strstr(out, "HTTP 403"), "cross-site Origin: %s", out);
  snprintf(args, sizeof args,
           "-b jar -u admin:" ADM_PW " -X POST -H 'Origin: http://127.0.0.1:%d' "
           "-H 'X-CSRF-Token: %s' --data ''",
           ap, token);
  cr_assert_eq(curl(args, ap, fake, out, sizeof out), 0);
  cr_assert_not_null(strstr(out, "HTTP 409"), "with both, it reaches the queue: %s", out);

  /* bounded requests: a head over 8 KiB, a body over 4 KiB, chunked */
  char big[9100], cmd[9600];
  memset(big, 'a', 9000);
  big[9000] = '\0';
  snprintf(cmd, sizeof cmd, "-H 'X-Big: %s'", big);
  cr_assert_eq(curl(cmd, ap, "/", out, sizeof out), 0);
  cr_assert_not_null(strstr(out, "HTTP 431"), "%s", out);
  snprintf(cmd, sizeof cmd, "-u admin:" ADM_PW " -X POST --data '%.4100s'", big);
  cr_assert_eq(curl(cmd, ap, fake, out, sizeof out), 0);
  cr_assert_not_null(strstr(out, "HTTP 413"), "%s", out);
  cr_assert_eq(curl("-u admin:" ADM_PW " -X POST -H 'Transfer-Encoding: chunked' --data x", ap,
                    fake, out, sizeof out),
               0);
  cr_assert_not_null(strstr(out, "HTTP 501"), "%s", out);

  /* at most 16 connections: a 17th is closed at once, the others stay */
  h_smtp conns[17];
  for (int i = 0; i < 17; i++)
    cr_assert_eq(h_smtp_connect(&conns[i], ap), 0);
  cr_assert(h_smtp_wait_eof(&conns[16], 3000), "the 17th connection is closed");
  cr_assert(h_smtp_quiet(&conns[0], 300), "the first one is still open");
  for (int i = 0; i < 17; i++)
    h_smtp_close(&conns[i]);

  for (int i = 0; i < 5; i++) {
    cr_assert_eq(curl("-u admin:wrong-password", ap, "/api/status", out, sizeof out), 0);
    cr_assert_not_null(strstr(out, "HTTP 401"), "wrong password %d: %s", i, out);
  }
  cr_assert_eq(curl("-i -u admin:" ADM_PW, ap, "/api/status", out, sizeof out), 0);
  cr_assert_not_null(strstr(out, "HTTP 429"), "rate-limited, even the right one: %s", out);
  cr_assert_not_null(strstr(out, "Retry-After: "), "%s", out);

  char *log = h_read_file(px.log, NULL);
  cr_assert_not_null(strstr(log, "admin-auth-failed client=127.0.0.1 user=admin"));
  cr_assert_not_null(strstr(log, "admin-auth-rate-limited client=127.0.0.1"));
  cr_assert_null(strstr(log, "wrong-password"), "no password in the log");
  cr_assert_null(strstr(log, ADM_PW));
  cr_assert_null(strstr(log, token), "no CSRF token in the log");
  free(log);
}

ITest(integ, admin_tls_and_the_loopback_rule) {
  h_upstream u;
  h_proxy px;
  char yaml[8192], top[2048], out[65536], cmd[2048];
  const char *certs = h_certs();
  h_upstream_start(&u, "starttls", NULL);
  snprintf(top, sizeof top,
           "admin:\n  listen: \"127.0.0.1:0\"\n  users: { admin: \"" ADM_HASH "\" }\n"
           "  certificate: %s/server.crt\n  private_key: %s/server.key\n",
           certs, certs);
  sp_yaml_top(u.port, "starttls", NULL, top, yaml, sizeof yaml);
  h_proxy_start_yaml(&px, yaml);
  int ap = admin_port(&px);
  snprintf(cmd, sizeof cmd,
           "curl -s -i --cacert %s/ca.crt --resolve localhost:%d:127.0.0.1 -u admin:" ADM_PW
           " https://localhost:%d/api/status",
           certs, ap, ap);
  cr_assert_eq(h_run(cmd, NULL, 10000, out, sizeof out), 0, "%s", out);
  cr_assert_not_null(strstr(out, "HTTP/1.1 200 OK"), "%s", out);
  cr_assert_not_null(strstr(out, "Strict-Transport-Security:"), "%s", out);
  snprintf(cmd, sizeof cmd,
           "curl -s --tlsv1.0 --tls-max 1.1 --cacert %s/ca.crt --resolve localhost:%d:127.0.0.1 "
           "-u admin:" ADM_PW " https://localhost:%d/api/status",
           certs, ap, ap);
  cr_assert_neq(h_run(cmd, NULL, 10000, out, sizeof out), 0, "TLS 1.1 refused: %s", out);

  /* outside loopback without certificate: a config error at the address */
  snprintf(top, sizeof top,
           "admin:\n  listen: \"0.0.0.0:0\"\n  users: { admin: \"" ADM_HASH "\" }\n");
  sp_yaml_top(u.port, "starttls", NULL, top, yaml, sizeof yaml);
  char path[600];
  FILE *f = fopen(h_path(path, sizeof path, "bad.yaml"), "w");
  cr_assert_not_null(f);
  fputs(yaml, f);
  fclose(f);
  snprintf(cmd, sizeof cmd, "cd '%s' && STP_TEST_PW=x %s -c bad.yaml", h_dir(), STP_BINARY);
  int rc = h_run(cmd, NULL, 10000, out, sizeof out);
  cr_assert_neq(rc, 0, "%s", out);
  cr_assert_not_null(strstr(out, "bad.yaml:"), "%s", out);
  cr_assert_not_null(strstr(out, ": error: admin listen '0.0.0.0:0' is not a loopback address"),
                     "%s", out);
}
