/* test_admin.c - the admin router, pure: framing bounds, routing, HTTP
 * Basic against crypt(3) hashes, the failure rate limit, sessions with
 * their CSRF token and the same-origin rule, the security headers, and
 * that no password or hash reaches an answer; plus the admin: config
 * section. The proxy's side is a fake admin_ops that counts calls. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp-tls-proxy/admin.h"
#include "smtp-tls-proxy/sasl.h"

#define HASH                                                                                       \
  "$6$unitsalt$MZv7mEChhpsKWOBJ0hQUtzhWLDO2lBydZgmFwCrhc3j3EOd."                                   \
  "ODjZL40KZxqxFWPY6S46LL5ucwAF1nm0wrbse1"
#define CFG                                                                                        \
  "listeners:\n  - name: lan\n    listen: \"127.0.0.1:0\"\n"                                       \
  "upstreams:\n  - name: up\n    host: smtp.example.com\n"                                         \
  "routes:\n  - name: all\n    upstream: up\n"                                                     \
  "admin:\n  listen: \"127.0.0.1:8025\"\n  users: { admin: \"" HASH "\" }\n"

static stp_config *cfg;
static history H;
static admin A;
static int acts;
static queuectl_op last_op;
static char last_id[32], last_by[300];
static unsigned char rnd_seed;

static bool f_spool(void *ctx, admin_spool_figs *f) {
  (void)ctx;
  memset(f, 0, sizeof *f);
  f->messages = 1;
  f->max_messages = 10;
  return true;
}
static size_t f_queue(void *ctx, admin_qrow *rows, size_t cap) {
  (void)ctx;
  if (cap) {
    memset(rows, 0, sizeof *rows);
    snprintf(rows[0].id, sizeof rows[0].id, "0123456789abcdef");
    snprintf(rows[0].from, sizeof rows[0].from, "<b>dev</b>@x");
  }
  return 1;
}
static int f_act(void *ctx, queuectl_op op, const char *id, const char *by, char *msg, size_t cap) {
  (void)ctx;
  acts++;
  last_op = op;
  snprintf(last_id, sizeof last_id, "%s", id);
  snprintf(last_by, sizeof last_by, "%s", by);
  snprintf(msg, cap, "%s done", id);
  return 0;
}
static void f_random(void *ctx, unsigned char *p, size_t n) {
  (void)ctx;
  for (size_t i = 0; i < n; i++)
    p[i] = (unsigned char)(rnd_seed++ * 37u + 11u);
}
static const admin_ops OPS = {f_spool, f_queue, f_act, f_random};

static const unsigned char TPL[] = "<html><!--@csrf-meta--><!--@queue--><!--@test--></html>";
static const unsigned char JS[] = "'use strict';";
static const admin_asset ASSETS[] = {{"index.html", "text/html", TPL, sizeof TPL - 1},
                                     {"/admin.js", "text/javascript", JS, sizeof JS - 1}};

static void setup(void) {
  stp_diag d = {0};
  cr_assert_eq(stp_config_load_string("t.yaml", CFG, strlen(CFG), &cfg, &d), STP_OK);
  stp_diag_free(&d);
  history_init(&H, 10, NULL);
  admin_init(&A, cfg, &H, &OPS, NULL, ASSETS, 2, 1000);
  acts = 0;
}

static void teardown(void) {
  admin_free(&A);
  history_free(&H);
  stp_config_free(cfg);
}

TestSuite(admin, .init = setup, .fini = teardown);

static char auth_hdr[256];
static const char *basic(const char *user, const char *pass) {
  char raw[128], b64[200];
  int n = snprintf(raw, sizeof raw, "%s:%s", user, pass);
  sasl_b64_encode(raw, (size_t)n, b64, sizeof b64);
  snprintf(auth_hdr, sizeof auth_hdr, "Authorization: Basic %s\r\n", b64);
  return auth_hdr;
}

/* Parse, check the credentials as the server would, handle. Returns the
 * status; *out gets the head and body (caller frees). */
static int run(const char *req, stp_buf *out) {
  admin_req r;
  admin_resp resp;
  memset(&resp, 0, sizeof resp);
  int rc = admin_parse(req, strlen(req), false, &r);
  if (rc != 0) {
    admin_error(&resp, rc, 0);
  } else if (!admin_check_credentials(cfg, &r)) {
    admin_failed(&A, "192.0.2.1", 5000);
    admin_error(&resp, 401, 0);
  } else {
    admin_handle(&A, &r, 1700000000000, 5000, &resp);
  }
  if (out) {
    stp_buf_init(out, 1 << 20);
    admin_resp_head(&resp, false, out);
    stp_buf_append(out, resp.body.data, resp.body.len);
    stp_buf_append(out, "", 1);
  }
  int status = resp.status;
  admin_resp_free(&resp);
  admin_req_wipe(&r);
  return status;
}

Test(admin, framing_bounds_come_before_anything_else) {
  admin_req r;
  cr_assert_eq(admin_parse("GET / HTTP/1.1\r\nHost: x\r\n", 25, false, &r), STP_EAGAIN);
  char *big = malloc(ADMIN_MAX_HEAD + 100);
  memset(big, 'a', ADMIN_MAX_HEAD + 99);
  memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
  big[ADMIN_MAX_HEAD + 99] = '\0';
  cr_assert_eq(admin_parse(big, strlen(big), false, &r), 431);
  free(big);
  const char *post_nolen = "POST /api/queue/0123456789abcdef/hold HTTP/1.1\r\nHost: x\r\n\r\n";
  cr_assert_eq(admin_parse(post_nolen, strlen(post_nolen), false, &r), 411);
  const char *huge = "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 4097\r\n\r\n";
  cr_assert_eq(admin_parse(huge, strlen(huge), false, &r), 413);
  const char *te = "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  cr_assert_eq(admin_parse(te, strlen(te), false, &r), 501);
  const char *nohost = "GET / HTTP/1.1\r\n\r\n";
  cr_assert_eq(admin_parse(nohost, strlen(nohost), false, &r), 400);
  const char *two = "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic YTpi\r\n"
                    "Authorization: Basic YTpi\r\n\r\n";
  cr_assert_eq(admin_parse(two, strlen(two), false, &r), 400);
  const char *body = "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab";
  cr_assert_eq(admin_parse(body, strlen(body), false, &r), STP_EAGAIN, "waits for the body");
}

Test(admin, routes) {
  admin_req r;
  const char *d = "GET /api/deliveries?limit=5&result=spooled HTTP/1.1\r\nHost: x\r\n\r\n";
  cr_assert_eq(admin_parse(d, strlen(d), false, &r), 0);
  cr_assert_eq(r.act, ADM_DELIVERIES);
  cr_assert_eq(r.limit, 5);
  cr_assert_eq(r.result, HR_SPOOLED);
  cr_assert_eq(r.not_found, 0);
  const char *bad = "GET /api/deliveries?result=lost HTTP/1.1\r\nHost: x\r\n\r\n";
  cr_assert_eq(admin_parse(bad, strlen(bad), false, &r), 0);
  cr_assert_eq(r.not_found, 400, "judged after the credentials");
  const char *q = "POST /api/queue/0123456789ABCDEF/release HTTP/1.1\r\nHost: x\r\n"
                  "Content-Length: 0\r\n\r\n";
  cr_assert_eq(admin_parse(q, strlen(q), false, &r), 0);
  cr_assert_eq(r.act, ADM_QUEUE_ACTION);
  cr_assert_eq(r.op, QC_RELEASE);
  cr_assert_str_eq(r.id, "0123456789ABCDEF");
  const char *dots = "POST /api/queue/../../etc/passwd/delete HTTP/1.1\r\nHost: x\r\n"
                     "Content-Length: 0\r\n\r\n";
  cr_assert_eq(admin_parse(dots, strlen(dots), false, &r), 0);
  cr_assert_eq(r.not_found, 404);
  const char *lead = "\r\nGET /api/queue HTTP/1.1\r\nHost: h:1\r\n\r\n";
  cr_assert_eq(admin_parse(lead, strlen(lead), false, &r), 0, "empty lines before it");
  cr_assert_eq(r.act, ADM_QUEUE);
  cr_assert_str_eq(r.host, "h:1");
  const char *put = "PUT / HTTP/1.1\r\nHost: x\r\n\r\n";
  cr_assert_eq(admin_parse(put, strlen(put), false, &r), 0);
  cr_assert_eq(r.not_found, 405);
}

Test(admin, basic_auth_against_the_crypt_hash) {
  char req[512];
  stp_buf out;
  snprintf(req, sizeof req, "GET /api/status HTTP/1.1\r\nHost: x\r\n%s\r\n", basic("admin", "pw1"));
  cr_assert_eq(run(req, &out), 200);
  cr_assert_null(strstr(out.data, HASH), "no hash in an answer");
  cr_assert_null(strstr(out.data, "pw1"));
  stp_buf_free(&out);
  snprintf(req, sizeof req, "GET /api/status HTTP/1.1\r\nHost: x\r\n%s\r\n", basic("admin", "pw2"));
  cr_assert_eq(run(req, &out), 401);
  cr_assert_not_null(strstr(out.data, "\r\nWWW-Authenticate: Basic realm="));
  stp_buf_free(&out);
  snprintf(req, sizeof req, "GET /api/status HTTP/1.1\r\nHost: x\r\n%s\r\n", basic("root", "pw1"));
  cr_assert_eq(run(req, NULL), 401, "an unknown user with a valid password of another");
  cr_assert_eq(run("GET / HTTP/1.1\r\nHost: x\r\n\r\n", NULL), 401);
}

Test(admin, failures_are_rate_limited_per_client_and_overall) {
  for (int i = 0; i < ADMIN_FAIL_COUNT; i++) {
    cr_assert_eq(admin_gate(&A, "192.0.2.1", 1000), 0);
    admin_failed(&A, "192.0.2.1", 1000);
  }
  uint64_t w = admin_gate(&A, "192.0.2.1", 1000);
  cr_assert_gt(w, 0, "the sixth failure within a minute waits");
  cr_assert_leq(w, ADMIN_FAIL_PERIOD_MS / 1000);
  cr_assert_eq(admin_gate(&A, "192.0.2.2", 1000), 0, "another client is not locked out");
  cr_assert_eq(admin_gate(&A, "192.0.2.1", 1000 + ADMIN_FAIL_PERIOD_MS), 0, "and it ends");
  for (int i = 0; i < ADMIN_FAIL_GLOBAL_COUNT; i++) {
    char ip[32];
    snprintf(ip, sizeof ip, "198.51.100.%d", i);
    admin_failed(&A, ip, 2000);
  }
  cr_assert_gt(admin_gate(&A, "203.0.113.9", 2000), 0, "many clients together are limited too");
}

/* GET / for a session: returns the Cookie header line and the CSRF token. */
static void login(char cookie[64], char token[40]) {
  char req[512];
  stp_buf out;
  snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: 127.0.0.1:8025\r\n%s\r\n",
           basic("admin", "pw1"));
  cr_assert_eq(run(req, &out), 200);
  const char *sc = strstr(out.data, "Set-Cookie: stp_admin=");
  cr_assert_not_null(sc);
  cr_assert_not_null(strstr(sc, "HttpOnly; SameSite=Strict"));
  snprintf(cookie, 64, "stp_admin=%.32s", sc + 22);
  const char *m = strstr(out.data, "name=\"csrf-token\" content=\"");
  cr_assert_not_null(m);
  snprintf(token, 40, "%.32s", m + 27);
  cr_assert_not_null(strstr(out.data, "name=\"csrf\" value=\""), "every form carries it");
  cr_assert_null(strstr(out.data, "<b>dev</b>"), "queue text is escaped");
  stp_buf_free(&out);
}

static int post(const char *cookie, const char *origin, const char *hdr_token, const char *body) {
  char req[1024];
  snprintf(req, sizeof req,
           "POST /api/queue/0123456789abcdef/hold HTTP/1.1\r\nHost: 127.0.0.1:8025\r\n%s"
           "Cookie: other=1; %s\r\n%s%s%s%s%s\r\nContent-Length: %zu\r\n\r\n%s",
           basic("admin", "pw1"), cookie, origin ? "Origin: " : "", origin ? origin : "",
           origin ? "\r\n" : "", hdr_token ? "X-CSRF-Token: " : "X-Other: 1",
           hdr_token ? hdr_token : "", strlen(body), body);
  return run(req, NULL);
}

Test(admin, state_changes_need_the_session_token_and_the_same_origin) {
  char cookie[64], token[40], body[80];
  login(cookie, token);
  cr_assert_eq(post(cookie, "http://127.0.0.1:8025", NULL, ""), 403, "no token");
  cr_assert_eq(post(cookie, "http://127.0.0.1:8025", "00000000000000000000000000000000", ""), 403);
  cr_assert_eq(post(cookie, "http://evil.example", token, ""), 403, "cross-site");
  cr_assert_eq(post(cookie, NULL, token, ""), 403, "no Origin");
  cr_assert_eq(
      post("stp_admin=ffffffffffffffffffffffffffffffff", "http://127.0.0.1:8025", token, ""), 403,
      "another session's token");
  cr_assert_eq(acts, 0, "nothing was done");
  cr_assert_eq(post(cookie, "http://127.0.0.1:8025", token, ""), 200);
  cr_assert_eq(acts, 1);
  cr_assert_eq(last_op, QC_HOLD);
  cr_assert_str_eq(last_id, "0123456789abcdef");
  cr_assert_str_eq(last_by, "admin:admin");
  snprintf(body, sizeof body, "csrf=%s&op=hold", token);
  cr_assert_eq(post(cookie, "http://127.0.0.1:8025", NULL, body), 200, "the form's field");
  cr_assert_eq(acts, 2);
}

Test(admin, every_answer_has_the_security_headers) {
  char req[512];
  stp_buf out;
  snprintf(req, sizeof req, "GET /admin.js HTTP/1.1\r\nHost: x\r\n%s\r\n", basic("admin", "pw1"));
  cr_assert_eq(run(req, &out), 200);
  cr_assert_not_null(strstr(out.data, "\r\nContent-Security-Policy: default-src 'none'; "
                                      "script-src 'self'; style-src 'self'"));
  cr_assert_not_null(strstr(out.data, "frame-ancestors 'none'"));
  cr_assert_null(strstr(out.data, "unsafe-inline"));
  cr_assert_not_null(strstr(out.data, "\r\nX-Content-Type-Options: nosniff\r\n"));
  cr_assert_not_null(strstr(out.data, "\r\nCache-Control: no-store\r\n"));
  cr_assert_not_null(strstr(out.data, "\r\n\r\n'use strict';"));
  stp_buf_free(&out);
  snprintf(req, sizeof req, "GET /index.html HTTP/1.1\r\nHost: x\r\n%s\r\n", basic("admin", "pw1"));
  cr_assert_eq(run(req, NULL), 404, "the template is not served raw");
}

/* ---- the admin: section ---------------------------------------------------------------- */

static stp_diag D;
static const char *load_err(const char *yaml) {
  static char first[512];
  stp_config *c = NULL;
  memset(&D, 0, sizeof D);
  int rc = stp_config_load_string("t.yaml", yaml, strlen(yaml), &c, &D);
  snprintf(first, sizeof first, "%s", rc == 0 ? "" : D.n ? D.lines[0] : "?");
  stp_config_free(c);
  stp_diag_free(&D);
  return first;
}

#define BASE                                                                                       \
  "listeners:\n  - name: lan\n    listen: \"127.0.0.1:0\"\n"                                       \
  "upstreams:\n  - name: up\n    host: smtp.example.com\n"                                         \
  "routes:\n  - name: all\n    upstream: up\n"

Test(admin_config, outside_loopback_needs_tls) {
  cr_assert_str_eq(
      load_err(BASE "admin:\n  listen: \"0.0.0.0:8025\"\n  users: { a: \"" HASH "\" }\n"),
      "t.yaml:11:11: error: admin listen '0.0.0.0:8025' is not a loopback address: it "
      "needs certificate and private_key (HTTP Basic passwords must not cross a "
      "network in clear)");
  cr_assert_str_eq(
      load_err(BASE "admin:\n  listen: \"[::1]:8025\"\n  users: { a: \"" HASH "\" }\n"), "");
  cr_assert_str_eq(
      load_err(BASE "admin:\n  listen: \"127.0.0.2:8025\"\n  users: { a: \"" HASH "\" }\n"), "");
}

Test(admin_config, keys_and_values) {
  cr_assert_str_eq(load_err(BASE "admin:\n  listen: \"127.0.0.1:1\"\n  users: { a: \"" HASH
                                 "\" }\n  colour: red\n"),
                   "t.yaml:13:3: error: unknown key 'colour' in admin");
  cr_assert_str_eq(load_err(BASE "admin:\n  listen: \"127.0.0.1:1\"\n"),
                   "t.yaml:11:3: error: admin needs 'users' (name: crypt(3) hash, e.g. from "
                   "mkpasswd -m sha-512)");
  cr_assert_str_eq(load_err(BASE "admin:\n  listen: \"127.0.0.1:1\"\n  users: { a: \"" HASH
                                 "\" }\n  history: 0\n"),
                   "t.yaml:13:12: error: bad history '0' (expected an integer from 1 to 100000)");
  stp_config *c = NULL;
  stp_diag d = {0};
  const char *y =
      BASE "admin:\n  listen: \"127.0.0.1:1\"\n  users: { a: \"" HASH "\" }\n  history: 50\n";
  cr_assert_eq(stp_config_load_string("t.yaml", y, strlen(y), &c, &d), 0);
  cr_assert_eq(c->admin->history, 50);
  cr_assert_eq(c->admin->n_users, 1);
  stp_config_free(c);
  stp_diag_free(&d);
}
