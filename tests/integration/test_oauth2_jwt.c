/* test_oauth2_jwt.c - the two credentials that need no refresh token,
 * through the real binary: a Google service account (grant:
 * service_account, Google's JSON key with a fresh RSA key) and a Microsoft
 * certificate credential (client_certificate_file + client_key_file, a
 * fresh RSA key and certificate), each getting a token from the strict
 * stand-in tests/tools/jwt_server.py (which checks the JWT's signature and
 * claims) and sending a mail out through its XOAUTH2 upstream; the
 * expiry and refresh-failure metrics on /metrics; the expires_at and error
 * keys of the oauth2 log events; a key that does not match its
 * certificate refused at start; no JWT, token or key in the log.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "harness.h"
#include "oauth_common.h"

typedef oauth_srv jsrv;

/* RSA keys and a certificate made with the openssl command, once per test. */
static void make_keys(void) {
  char cmd[2048], out[2048];
  snprintf(cmd, sizeof cmd,
           "cd '%s' && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.pem "
           "&& openssl req -x509 -newkey rsa:2048 -nodes -keyout app.key -out app.crt -days 2 "
           "-sha256 -subj /CN=smtp-relay-app && openssl req -x509 -newkey rsa:2048 -nodes "
           "-keyout other.key -out other.crt -days 2 -sha256 -subj /CN=other "
           "&& chmod 600 sa.pem app.key other.key",
           h_dir());
  cr_assert_eq(h_run(cmd, NULL, 60000, out, sizeof out), 0, "openssl: %s", out);
}

/* Google's JSON key around sa.pem, naming the stand-in as token_uri. */
static void write_sa_json(int http_port) {
  char path[512], json[8192];
  h_path(path, sizeof path, "sa.pem");
  char *pem = h_read_file(path, NULL);
  cr_assert_not_null(pem);
  size_t n = (size_t)snprintf(json, sizeof json,
                              "{\n  \"type\": \"service_account\",\n  \"project_id\": \"proj\",\n"
                              "  \"private_key_id\": \"kid-1\",\n  \"private_key\": \"");
  for (const char *p = pem; *p && n + 4 < sizeof json; p++) {
    if (*p == '\n') {
      json[n++] = '\\';
      json[n++] = 'n';
    } else {
      json[n++] = *p;
    }
  }
  free(pem);
  snprintf(json + n, sizeof json - n,
           "\",\n  \"client_email\": \"relay@proj.iam.gserviceaccount.com\",\n"
           "  \"client_id\": \"1234567890\",\n"
           "  \"token_uri\": \"https://127.0.0.1:%d/token\"\n}\n",
           http_port);
  h_path(path, sizeof path, "sa.json");
  h_write_file(path, json, strlen(json));
  chmod(path, 0600);
}

static void jsrv_start(jsrv *t, const char *const extra[]) {
  char sa[512], app[512];
  h_path(sa, sizeof sa, "sa.pem");
  h_path(app, sizeof app, "app.crt");
  oauth_srv_start(t, "jwt_server", (const char *const[]){"--sa-key", sa, "--app-cert", app, NULL},
                  extra);
}

static void proxy_start(h_proxy *px, const jsrv *t, const char *auth) {
  h_proxy_opts o = {.up_port = t->smtp_port,
                    .no_upstream_auth = true,
                    .upstream_extra = auth,
                    .top_extra = "metrics: { listen: \"127.0.0.1:0\" }\n"};
  char yaml[8192];
  h_proxy_yaml(&o, yaml, sizeof yaml);
  h_proxy_start_yaml(px, yaml);
}

static const char *sa_auth(void) {
  static char buf[1024];
  snprintf(buf, sizeof buf,
           "    pool: false\n"
           "    auth:\n"
           "      username: scanner@example.com\n"
           "      oauth2:\n"
           "        grant: service_account\n"
           "        service_account_file: %s/sa.json\n"
           "        scope: https://mail.google.com/\n"
           "        ca_file: %s/ca.crt\n",
           h_dir(), h_certs());
  return buf;
}

static const char *cert_auth(const jsrv *t, const char *crt) {
  static char buf[1024];
  snprintf(buf, sizeof buf,
           "    pool: false\n"
           "    auth:\n"
           "      username: scanner@example.com\n"
           "      oauth2:\n"
           "        grant: client_credentials\n"
           "        token_url: https://127.0.0.1:%d/token\n"
           "        client_id: app-1\n"
           "        client_certificate_file: %s/%s\n"
           "        client_key_file: %s/app.key\n"
           "        scope: https://outlook.office365.com/.default\n"
           "        ca_file: %s/ca.crt\n",
           t->http_port, h_dir(), crt, h_dir(), h_certs());
  return buf;
}

static int send_one(const h_proxy *px, char *text, size_t cap) {
  return oauth_send_one(px, "scan@printer.test", "jwt", text, cap);
}

static int metrics_port(const h_proxy *px) {
  return h_proxy_listen_port(px, "metrics-listening");
}

/* The value of the sample line starting with `series` on /metrics. */
static long long metric(const h_proxy *px, const char *series) {
  char cmd[512], out[65536];
  snprintf(cmd, sizeof cmd, "curl -s http://127.0.0.1:%d/metrics", metrics_port(px));
  cr_assert_eq(h_run(cmd, NULL, 10000, out, sizeof out), 0);
  const char *p = strstr(out, series);
  cr_assert_not_null(p, "no %s in:\n%s", series, out);
  return atoll(p + strlen(series));
}

/* No JWT (every JWT here starts with the base64url of {"alg":), no
 * access token, no key material in the proxy's log. */
static void assert_log_clean(const h_proxy *px) {
  static const char *const secrets[] = {"eyJhbGciOi", "at-1-",       "at-2-",
                                        "at-3-",      "PRIVATE KEY", "MII"};
  for (size_t i = 0; i < sizeof secrets / sizeof *secrets; i++)
    cr_assert(!h_file_contains(px->log, secrets[i], strlen(secrets[i])),
              "the proxy log contains %s", secrets[i]);
}

/* grant: service_account: an RS256 JWT with kid, iss, sub, aud, scope and a
 * one-hour lifetime buys the token; the mail goes out as the subject; the
 * token is cached; the expiry shows in /metrics and the log. */
ITest(integ, oauth2_service_account_delivers) {
  jsrv t;
  h_proxy px;
  make_keys();
  jsrv_start(&t, NULL);
  write_sa_json(t.http_port);
  proxy_start(&px, &t, sa_auth());
  long long before = (long long)time(NULL);
  char text[512];
  cr_assert_eq(send_one(&px, text, sizeof text), 250, "%s", text);
  cr_assert_eq(send_one(&px, text, sizeof text), 250, "%s", text);
  cr_assert_eq(h_wait_records(t.record, "message", 2, 5000), 2);
  h_lines l;
  cr_assert_eq(h_records(t.record, "token_request", &l), 1, "the token is cached");
  char s[256];
  cr_assert_eq(h_json_str(l.v[0], "error", s, sizeof s), -1, "refused: %s", l.v[0]);
  cr_assert_eq(h_json_str(l.v[0], "grant_type", s, sizeof s), 1);
  cr_assert_str_eq(s, "urn:ietf:params:oauth:grant-type:jwt-bearer");
  cr_assert_eq(h_json_str(l.v[0], "alg", s, sizeof s), 1);
  cr_assert_str_eq(s, "RS256");
  cr_assert_eq(h_json_str(l.v[0], "kid", s, sizeof s), 1);
  cr_assert_str_eq(s, "kid-1");
  cr_assert_eq(h_json_str(l.v[0], "sub", s, sizeof s), 1);
  cr_assert_str_eq(s, "scanner@example.com");
  cr_assert_eq(h_json_int(l.v[0], "lifetime", -1), 3600);
  h_lines_free(&l);
  cr_assert_eq(h_records(t.record, "message", &l), 2);
  cr_assert_eq(h_json_str(l.v[0], "auth_user", s, sizeof s), 1);
  cr_assert_str_eq(s, "scanner@example.com");
  h_lines_free(&l);
  long long exp = metric(&px, "smtp_proxy_oauth2_token_expiry_timestamp_seconds{upstream=\"up\"} ");
  cr_assert(exp >= before + 3599 && exp <= (long long)time(NULL) + 3599, "expiry %lld", exp);
  const char *const want[] = {"oauth2-token", "upstream=up", "expires_at=", NULL};
  char line[1024];
  cr_assert(h_file_wait_line(px.log, want, 2000, line, sizeof line));
  assert_log_clean(&px);
}

/* The subject is not delegated: Google's 401 unauthorized_client is a 4xx
 * for the device, an oauth2-failed line with error=unauthorized_client,
 * and a count in smtp_proxy_oauth2_refresh_failures_total. */
ITest(integ, oauth2_service_account_refused_counts) {
  jsrv t;
  h_proxy px;
  make_keys();
  jsrv_start(&t, (const char *const[]){"--deny-subject", NULL});
  write_sa_json(t.http_port);
  proxy_start(&px, &t, sa_auth());
  char text[512];
  int code = send_one(&px, text, sizeof text);
  cr_assert(code >= 400 && code < 500, "got %d %s", code, text);
  const char *const want[] = {"oauth2-failed", "upstream=up", "error=unauthorized_client",
                              "Client is unauthorized", NULL};
  char line[1024];
  cr_assert(h_file_wait_line(px.log, want, 3000, line, sizeof line));
  cr_assert_eq(metric(&px, "smtp_proxy_oauth2_refresh_failures_total{upstream=\"up\",reason="
                           "\"unauthorized_client\"} "),
               1);
  cr_assert_eq(metric(&px, "smtp_proxy_oauth2_token_expiry_timestamp_seconds{upstream=\"up\"} "), 0,
               "no token yet");
  h_lines l;
  cr_assert_eq(h_records(t.record, "message", &l), 0);
  h_lines_free(&l);
  assert_log_clean(&px);
}

/* Certificate credential: a PS256 client assertion with x5t#S256, a fresh
 * jti each time (the stand-in refuses a reused one), a 10-minute lifetime;
 * the token expires in 2 s, so the second message needs a second
 * assertion. */
ITest(integ, oauth2_certificate_credential_delivers) {
  jsrv t;
  h_proxy px;
  make_keys();
  jsrv_start(&t, (const char *const[]){"--expires-in", "2", NULL});
  proxy_start(&px, &t, cert_auth(&t, "app.crt"));
  char text[512];
  cr_assert_eq(send_one(&px, text, sizeof text), 250, "%s", text);
  h_sleep_ms(1500);
  cr_assert_eq(send_one(&px, text, sizeof text), 250, "%s", text);
  cr_assert_eq(h_wait_records(t.record, "message", 2, 5000), 2);
  h_lines l;
  cr_assert_eq(h_records(t.record, "token_request", &l), 2);
  for (size_t i = 0; i < 2; i++) {
    char s[256];
    cr_assert_eq(h_json_str(l.v[i], "error", s, sizeof s), -1, "refused: %s", l.v[i]);
    cr_assert_eq(h_json_str(l.v[i], "alg", s, sizeof s), 1);
    cr_assert_str_eq(s, "PS256");
    cr_assert_eq(h_json_bool(l.v[i], "x5t_s256_ok"), 1);
    cr_assert_eq(h_json_bool(l.v[i], "has_jti"), 1);
    cr_assert_eq(h_json_str(l.v[i], "iss", s, sizeof s), 1);
    cr_assert_str_eq(s, "app-1");
    cr_assert_eq(h_json_int(l.v[i], "lifetime", -1), 600);
  }
  h_lines_free(&l);
  cr_assert_gt(metric(&px, "smtp_proxy_oauth2_token_expiry_timestamp_seconds{upstream=\"up\"} "),
               (long long)time(NULL) - 5);
  assert_log_clean(&px);
}

/* A key that does not belong to its certificate: the proxy does not start,
 * and says which upstream and file. */
ITest(integ, oauth2_certificate_not_matching_key_refused_at_start) {
  jsrv t;
  make_keys();
  jsrv_start(&t, NULL);
  h_proxy_opts o = {.up_port = t.smtp_port,
                    .no_upstream_auth = true,
                    .upstream_extra = cert_auth(&t, "other.crt")};
  char yaml[8192], path[512], cmd[1200], out[4096];
  h_proxy_yaml(&o, yaml, sizeof yaml);
  h_path(path, sizeof path, "bad.yaml");
  h_write_file(path, yaml, strlen(yaml));
  snprintf(cmd, sizeof cmd, "timeout 20 '%s' -c '%s'", STP_BINARY, path);
  int rc = h_run(cmd, NULL, 25000, out, sizeof out);
  cr_assert_neq(rc, 0, "started with a foreign certificate:\n%s", out);
  cr_assert(strstr(out, "upstream up: client_key_file: the certificate does not belong to the "
                        "private key"),
            "%s", out);
  cr_assert(!strstr(out, "MII"), "key material in the output:\n%s", out);
  /* --check says the same */
  snprintf(cmd, sizeof cmd, "'%s' -c '%s' --check", STP_BINARY, path);
  rc = h_run(cmd, NULL, 20000, out, sizeof out);
  cr_assert_eq(rc, 1, "--check exit %d:\n%s", rc, out);
  cr_assert(strstr(out, "upstream up: client_key_file: the certificate does not belong"), "%s",
            out);
}

/* Certificate credential with the refresh_token grant (a delegated app):
 * the refresh token and the client assertion go together. */
ITest(integ, oauth2_certificate_credential_with_refresh_token) {
  jsrv t;
  h_proxy px;
  make_keys();
  jsrv_start(&t, (const char *const[]){"--rt-expires-in", "604799", NULL});
  char rt[512], auth[1400];
  h_path(rt, sizeof rt, "rt");
  h_write_file(rt, "rt-initial\n", 11);
  chmod(rt, 0600);
  snprintf(auth, sizeof auth,
           "    auth:\n"
           "      username: scanner@example.com\n"
           "      oauth2:\n"
           "        token_url: https://127.0.0.1:%d/token\n"
           "        client_id: app-1\n"
           "        refresh_token_file: %s\n"
           "        client_certificate_file: %s/app.crt\n"
           "        client_key_file: %s/app.key\n"
           "        ca_file: %s/ca.crt\n",
           t.http_port, rt, h_dir(), h_dir(), h_certs());
  proxy_start(&px, &t, auth);
  char text[512];
  cr_assert_eq(send_one(&px, text, sizeof text), 250, "%s", text);
  h_lines l;
  cr_assert_eq(h_records(t.record, "token_request", &l), 1);
  char s[256];
  cr_assert_eq(h_json_str(l.v[0], "error", s, sizeof s), -1, "refused: %s", l.v[0]);
  cr_assert_eq(h_json_str(l.v[0], "grant_type", s, sizeof s), 1);
  cr_assert_str_eq(s, "refresh_token");
  cr_assert_eq(h_json_bool(l.v[0], "x5t_s256_ok"), 1);
  h_lines_free(&l);
  /* refresh_token_expires_in reaches the log as a time, for the alerts */
  const char *const want[] = {"oauth2-token", "upstream=up",
                              "expires_at=", "refresh_token_expires_at=", NULL};
  char line[1024];
  cr_assert(h_file_wait_line(px.log, want, 2000, line, sizeof line));
  const char *at = strstr(line, "refresh_token_expires_at=");
  long long when = atoll(at + strlen("refresh_token_expires_at="));
  long long now = (long long)time(NULL);
  cr_assert(when > now + 604700 && when <= now + 604799, "%s", line);
  assert_log_clean(&px);
  cr_assert(!h_file_contains(px.log, "rt-initial", 10), "the refresh token in the log");
}
