/* test_config_jwt.c - the oauth2 keys of the signed-JWT credentials
 * (config_jwt.c): grant: service_account with Google's JSON key (its
 * token_uri, the subject's defaults, the scope of the presets) and
 * certificate credentials for client_credentials; each mistake a
 * FILE:LINE:COL error, a key file open to others a warning, no key
 * material in any diagnostic. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg_test.h"
#include "smtp-tls-proxy/config.h"
#include "smtp-tls-proxy/util.h"

static char dir[64];

#define PEM_KEY "-----BEGIN PRIVATE KEY-----\nMIIEsecretmaterial\n-----END PRIVATE KEY-----\n"
/* as read from a file: the trailing newline stripped */
#define PEM_KEY_READ "-----BEGIN PRIVATE KEY-----\nMIIEsecretmaterial\n-----END PRIVATE KEY-----"
#define SA_JSON(uri)                                                                               \
  "{\"type\":\"service_account\",\"private_key_id\":\"kid-7\",\"private_key\":"                    \
  "\"-----BEGIN PRIVATE KEY-----\\nMIIEsecretmaterial\\n-----END PRIVATE KEY-----\\n\","           \
  "\"client_email\":\"relay@proj.iam.gserviceaccount.com\",\"token_uri\":\"" uri "\"}"

static void put(const char *name, const char *text, mode_t mode) {
  char path[128];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fputs(text, f);
  fclose(f);
  chmod(path, mode);
}

static void setup(void) {
  snprintf(dir, sizeof dir, "/tmp/stp-cfgjwt-XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
  put("sa.json", SA_JSON("https://oauth2.googleapis.com/token"), 0600);
  put("sa-http.json", SA_JSON("http://127.0.0.1:9/token"), 0600);
  put("bad.json", "{\"type\":\"service_account\"}", 0600);
  put("app.key", PEM_KEY, 0600);
  put("open.key", PEM_KEY, 0644);
  put("enc.key",
      "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIE\n-----END ENCRYPTED PRIVATE KEY-----\n", 0600);
  put("app.crt", "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n", 0644);
}

static void teardown(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  cr_assert_eq(system(cmd), 0);
  stp_diag_free(&cfg_diag);
}

/* The config with `auth` (lines indented 4) on an SMTP upstream; %D is dir. */
static stp_config *load(const char *auth) {
  char yaml[4096], a[2048];
  const char *p = auth;
  size_t n = 0;
  for (; *p && n + 40 < sizeof a; p++) {
    if (p[0] == '%' && p[1] == 'D') {
      n += (size_t)snprintf(a + n, sizeof a - n, "%s", dir);
      p++;
    } else {
      a[n++] = *p;
    }
  }
  a[n] = '\0';
  snprintf(yaml, sizeof yaml,
           "listeners:\n  - name: lan\n    listen: \":0\"\nupstreams:\n  - name: up\n"
           "    host: smtp.gmail.com\n%sroutes:\n  - name: all\n    upstream: up\n",
           a);
  stp_config *cfg = NULL;
  stp_diag_free(&cfg_diag);
  setenv("STP_TEST_CS", "cs-value", 1);
  stp_config_load_string("t.yaml", yaml, strlen(yaml), &cfg, &cfg_diag);
  cr_assert(!strstr(cfg_diags(), "secretmaterial"), "key material in a diagnostic: %s",
            cfg_diags());
  return cfg;
}

static void fails_with(const char *auth, const char *expected) {
  stp_config *cfg = load(auth);
  cr_assert_null(cfg, "loaded, expected: %s", expected);
  cr_assert_str_eq(cfg_diags(), expected);
}

TestSuite(config_jwt, .init = setup, .fini = teardown);

Test(config_jwt, service_account_from_googles_key) {
  stp_config *cfg = load("    auth:\n      username: scan@example.com\n      oauth2:\n"
                         "        preset: google\n        grant: service_account\n"
                         "        service_account_file: %D/sa.json\n");
  cr_assert_not_null(cfg, "%s", cfg_diags());
  const stp_oauth2_cfg *o = cfg->upstreams[0].token_src;
  cr_assert_eq(o->grant, STP_GRANT_SERVICE_ACCOUNT);
  cr_assert_str_eq(o->token_url, "https://oauth2.googleapis.com/token", "the key's token_uri");
  cr_assert_str_eq(o->sa_email, "relay@proj.iam.gserviceaccount.com");
  cr_assert_str_eq(o->sa_key_id, "kid-7");
  cr_assert_str_eq(o->private_key, PEM_KEY);
  cr_assert_str_eq(o->subject, "scan@example.com", "auth.username by default");
  cr_assert_str_eq(o->scope, "https://mail.google.com/", "the preset's scope");
  cr_assert_null(o->client_id);
  cr_assert_eq(cfg->upstreams[0].mechanism, STP_MECH_XOAUTH2);
  stp_config_free(cfg);
}

Test(config_jwt, service_account_subject_scope_and_token_url_written) {
  stp_config *cfg = load("    insecure: true\n    auth:\n      username: scan@example.com\n"
                         "      oauth2:\n        grant: service_account\n"
                         "        service_account_file: %D/sa-http.json\n"
                         "        subject: other@example.com\n        scope: s1 s2\n");
  cr_assert_not_null(cfg, "%s", cfg_diags());
  const stp_oauth2_cfg *o = cfg->upstreams[0].token_src;
  cr_assert_str_eq(o->subject, "other@example.com");
  cr_assert_str_eq(o->scope, "s1 s2");
  cr_assert_str_eq(o->token_url, "http://127.0.0.1:9/token");
  stp_config_free(cfg);
}

Test(config_jwt, service_account_mistakes) {
  fails_with("    auth:\n      username: scanner\n      oauth2:\n        grant: service_account\n"
             "        service_account_file: %D/sa.json\n",
             "t.yaml:10:9: error: grant: service_account needs subject (the mailbox to act as; "
             "the default, auth.username, is not an address)\n"
             "t.yaml:10:9: error: grant: service_account needs scope (https://mail.google.com/ "
             "for SMTP)");
  fails_with("    auth:\n      username: a@b.c\n      oauth2:\n        grant: service_account\n"
             "        scope: x\n",
             "t.yaml:10:9: error: grant: service_account needs service_account_file (Google's "
             "JSON key)");
  char want[512];
  snprintf(want, sizeof want,
           "t.yaml:10:31: error: cannot use service_account_file '%s/missing.json': "
           "No such file or directory",
           dir);
  stp_config *cfg = load("    auth:\n      username: a@b.c\n      oauth2:\n"
                         "        grant: service_account\n        scope: x\n"
                         "        service_account_file: %D/missing.json\n");
  cr_assert_null(cfg);
  cr_assert(strstr(cfg_diags(), "missing.json"), "%s", cfg_diags());
  snprintf(want, sizeof want,
           "t.yaml:13:31: error: cannot use service_account_file '%s/bad.json': it has no "
           "client_email (expected Google's service-account JSON key)",
           dir);
  cfg = load("    auth:\n      username: a@b.c\n      oauth2:\n"
             "        grant: service_account\n        scope: x\n        client_id: c\n"
             "        service_account_file: %D/bad.json\n");
  cr_assert_null(cfg);
  cr_assert_str_eq(cfg_diags(), want);
  fails_with("    auth:\n      username: a@b.c\n      oauth2:\n        grant: service_account\n"
             "        service_account_file: %D/sa.json\n        scope: x\n"
             "        client_secret_env: STP_TEST_CS\n        refresh_token_file: /x\n",
             "t.yaml:13:9: error: client secrets are not used with grant: service_account (the "
             "service_account_file holds the key)\n"
             "t.yaml:14:9: error: refresh_token_file is not used with grant: service_account");
  fails_with("    auth:\n      username: a@b.c\n      oauth2:\n        grant: service_account\n"
             "        preset: microsoft365\n        tenant: t\n"
             "        service_account_file: %D/sa.json\n",
             "t.yaml:10:16: error: grant: service_account is Google's: use preset: google or "
             "google-gmail-api, or no preset");
  snprintf(want, sizeof want,
           "t.yaml:11:31: error: service_account_file '%s/sa-http.json': token_uri over "
           "http:// needs insecure: true",
           dir);
  fails_with("    auth:\n      username: a@b.c\n      oauth2:\n        grant: service_account\n"
             "        service_account_file: %D/sa-http.json\n        scope: x\n",
             want);
}

Test(config_jwt, service_account_for_gmail_api_acts_as_mailbox) {
  char yaml[2048];
  snprintf(yaml, sizeof yaml,
           "listeners:\n  - name: lan\n    listen: \":0\"\nupstreams:\n  - name: up\n"
           "    kind: gmail\n    mailbox: scan@example.com\n    auth:\n      oauth2:\n"
           "        preset: google-gmail-api\n        grant: service_account\n"
           "        service_account_file: %s/sa.json\n"
           "routes:\n  - name: all\n    upstream: up\n",
           dir);
  stp_config *cfg = NULL;
  stp_diag_free(&cfg_diag);
  stp_config_load_string("t.yaml", yaml, strlen(yaml), &cfg, &cfg_diag);
  cr_assert_not_null(cfg, "%s", cfg_diags());
  const stp_oauth2_cfg *o = cfg->upstreams[0].token_src;
  cr_assert_str_eq(o->subject, "scan@example.com");
  cr_assert_str_eq(o->scope, "https://www.googleapis.com/auth/gmail.send");
  stp_config_free(cfg);
}

Test(config_jwt, certificate_credentials) {
  stp_config *cfg =
      load("    auth:\n      username: a@b.c\n      oauth2:\n        preset: microsoft365\n"
           "        tenant: contoso.example\n        client_id: app-1\n"
           "        grant: client_credentials\n        client_certificate_file: %D/app.crt\n"
           "        client_key_file: %D/app.key\n");
  cr_assert_not_null(cfg, "%s", cfg_diags());
  const stp_oauth2_cfg *o = cfg->upstreams[0].token_src;
  cr_assert_null(o->client_secret);
  cr_assert_str_eq(o->private_key, PEM_KEY_READ);
  cr_assert(!strncmp(o->certificate, "-----BEGIN CERTIFICATE-----", 27));
  cr_assert_eq(cfg_diag.n, 0, "a certificate readable by all draws no warning: %s", cfg_diags());
  stp_config_free(cfg);
  /* a key readable by others: a warning, still loads */
  cfg = load("    auth:\n      username: a@b.c\n      oauth2:\n        token_url: https://h/t\n"
             "        client_id: app-1\n        grant: client_credentials\n"
             "        client_certificate_file: %D/app.crt\n        client_key_file: %D/open.key\n");
  cr_assert_not_null(cfg, "%s", cfg_diags());
  cr_assert(strstr(cfg_diags(), "t.yaml:14:26: warning: client_key_file"), "%s", cfg_diags());
  cr_assert(strstr(cfg_diags(), "is readable by group or others (chmod 600 it)"), "%s",
            cfg_diags());
  stp_config_free(cfg);
}

Test(config_jwt, certificate_mistakes) {
  fails_with("    auth:\n      username: a@b.c\n      oauth2:\n        token_url: https://h/t\n"
             "        client_id: app-1\n        grant: client_credentials\n"
             "        client_secret_env: STP_TEST_CS\n"
             "        client_certificate_file: %D/app.crt\n        client_key_file: %D/app.key\n",
             "t.yaml:14:9: error: 'client_certificate_file' conflicts with 'client_secret_env': "
             "give a client secret or a certificate, not both");
  fails_with("    auth:\n      username: a@b.c\n      oauth2:\n        token_url: https://h/t\n"
             "        client_id: app-1\n        grant: client_credentials\n"
             "        client_certificate_file: %D/app.crt\n",
             "t.yaml:13:9: error: client_certificate_file needs client_key_file");
  fails_with("    auth:\n      username: a@b.c\n      oauth2:\n        token_url: https://h/t\n"
             "        client_id: app-1\n        grant: client_credentials\n",
             "t.yaml:10:9: error: grant: client_credentials needs client_secret_env or "
             "client_secret_file (or client_certificate_file with client_key_file)");
  stp_config *cfg =
      load("    auth:\n      username: a@b.c\n      oauth2:\n        token_url: https://h/t\n"
           "        client_id: app-1\n        grant: client_credentials\n"
           "        client_certificate_file: %D/app.key\n        client_key_file: %D/enc.key\n");
  cr_assert_null(cfg);
  char want[600];
  snprintf(want, sizeof want,
           "t.yaml:13:34: error: client_certificate_file does not hold a PEM certificate\n"
           "t.yaml:14:26: error: client_key_file '%s/enc.key' does not hold a PEM private key "
           "(an encrypted key cannot be used)",
           dir);
  cr_assert_str_eq(cfg_diags(), want);
  fails_with("    auth:\n      username: a@b.c\n      oauth2:\n        token_url: https://h/t\n"
             "        client_id: app-1\n        grant: client_credentials\n"
             "        client_secret_env: STP_TEST_CS\n        subject: x@y.z\n",
             "t.yaml:14:9: error: subject is only used with grant: service_account");
}
