/* test_oauth2.c - the pure half of OAuth2: form encoding, the strict JSON
 * token response through jansson (hostile and malformed inputs, duplicate
 * keys, bounds, every block wiped on free), judging an answer, expiry
 * arithmetic, token_command output, the atomic refresh-token file, and the
 * oauth2/token_command configuration. (URLs: test_url.c; HTTP: test_http1.c.) */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg_test.h"
#include "smtp-tls-proxy/config.h"
#include "smtp-tls-proxy/json.h"
#include "smtp-tls-proxy/oauth2.h"
#include "smtp-tls-proxy/secret_file.h"
#include "smtp-tls-proxy/util.h"

#define L(s) s, sizeof(s) - 1

/* ---- the form ---- */

Test(oauth2, form_encoding) {
  stp_buf b;
  stp_buf_init(&b, 256);
  cr_assert_eq(oauth2_form_add(&b, "grant_type", "refresh_token"), 0);
  cr_assert_eq(oauth2_form_add(&b, "scope", "https://mail.google.com/ offline_access"), 0);
  cr_assert_eq(oauth2_form_add(&b, "x", "a+b&c=d~._-\xc3\xa9"), 0);
  cr_assert_eq(b.len, strlen("grant_type=refresh_token&scope=https%3A%2F%2Fmail.google.com%2F+"
                             "offline_access&x=a%2Bb%26c%3Dd~._-%C3%A9"));
  cr_assert_eq(memcmp(b.data,
                      "grant_type=refresh_token&scope=https%3A%2F%2Fmail.google.com%2F+"
                      "offline_access&x=a%2Bb%26c%3Dd~._-%C3%A9",
                      b.len),
               0);
  stp_buf_free(&b);
}

Test(oauth2, form_bound_leaves_buffer_unchanged) {
  stp_buf b;
  stp_buf_init(&b, 20);
  cr_assert_eq(oauth2_form_add(&b, "a", "b"), 0);
  cr_assert_eq(oauth2_form_add(&b, "key", "a value far too long"), STP_EFULL);
  cr_assert_eq(b.len, 3);
  stp_buf_free(&b);
}

/* ---- JSON ---- */

Test(oauth2, json_google_style_answer) {
  oauth2_token_resp t;
  const char *s = "{\n  \"access_token\": \"ya29.a0Af-_x\",\n  \"expires_in\": 3599,\n"
                  "  \"scope\": \"https://mail.google.com/\",\n  \"token_type\": \"Bearer\",\n"
                  "  \"id_token\": {\"nested\": [1, 2.5e3, true, false, null, \"x\"]}\n}\n";
  cr_assert_eq(oauth2_json_parse(s, strlen(s), &t), 0);
  cr_assert_str_eq(t.access_token, "ya29.a0Af-_x");
  cr_assert(t.has_expires_in);
  cr_assert_eq(t.expires_in, 3599);
  cr_assert_str_eq(t.token_type, "Bearer");
  cr_assert_str_eq(t.scope, "https://mail.google.com/");
  cr_assert_null(t.refresh_token);
  oauth2_token_resp_free(&t);
}

Test(oauth2, json_escapes_and_string_expires_in) {
  oauth2_token_resp t;
  const char *s = "{\"error\":\"invalid_grant\",\"error_description\":\"a\\\"b\\\\c\\/d\\n"
                  "\\u00e9\\ud83d\\ude00\",\"expires_in\":\"3600\",\"refresh_token\":null}";
  cr_assert_eq(oauth2_json_parse(s, strlen(s), &t), 0);
  cr_assert_str_eq(t.error, "invalid_grant");
  cr_assert_str_eq(t.error_description, "a\"b\\c/d\n\xc3\xa9\xf0\x9f\x98\x80");
  cr_assert_eq(t.expires_in, 3600);
  cr_assert_null(t.refresh_token);
  oauth2_token_resp_free(&t);
}

Test(oauth2, json_hostile_and_malformed) {
  static const char *const bad[] = {
      "",
      "[]",
      "\"x\"",
      "{",
      "{\"a\":1,}",
      "{\"a\" 1}",
      "{\"a\":1}x",
      "{\"a\":1}{}",
      "{'a':1}",
      "{\"a\":01}",
      "{\"a\":1.}",
      "{\"a\":-}",
      "{\"a\":1e}",
      "{\"a\":tru}",
      "{\"a\":\"\x01\"}",
      "{\"a\":\"\\x\"}",
      "{\"a\":\"\\u12\"}",
      "{\"a\":\"\\ud800\"}",
      "{\"a\":\"\\udc00\"}",
      "{\"a\":\"\xc0\x80\"}",
      "{\"a\":\"\xed\xa0\x80\"}",
      "{\"a\":\"\xff\"}",
      "{\"access_token\":\"a\",\"access_token\":\"b\"}",
      "{\"access_token\":1}",
      "{\"access_token\":\"a\\u0000b\"}",
      "{\"expires_in\":-1}",
      "{\"expires_in\":1.5}",
      "{\"expires_in\":\"12a\"}",
      "{\"expires_in\":true}",
      "{\"expires_in\":99999999999999999999}",
      "{\"a\":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    oauth2_token_resp t;
    cr_assert_lt(oauth2_json_parse(bad[i], strlen(bad[i]), &t), 0, "accepted #%zu: %s", i, bad[i]);
    cr_assert_null(t.access_token);
  }
}

Test(oauth2, json_token_bound) {
  size_t n = OAUTH2_TOKEN_MAX + 100;
  char *s = malloc(n + 40);
  int k = sprintf(s, "{\"access_token\":\"");
  memset(s + k, 'a', n);
  strcpy(s + k + n, "\"}");
  oauth2_token_resp t;
  cr_assert_eq(oauth2_json_parse(s, strlen(s), &t), STP_ETOOLONG);
  /* the same length under an unknown key is only validated */
  memcpy(s, "{\"xxxxxx_token\":\"", 17);
  cr_assert_eq(oauth2_json_parse(s, strlen(s), &t), 0);
  oauth2_token_resp_free(&t);
  free(s);
}

Test(oauth2, json_duplicate_keys_refused_known_or_not) {
  static const char *const dup[] = {
      "{\"access_token\":\"a\",\"x\":1,\"x\":2}",
      "{\"access_token\":\"a\",\"scope\":\"s\",\"scope\":\"s\"}",
      "{\"access_token\":\"a\",\"x\":{\"y\":1,\"y\":1}}",
  };
  for (size_t i = 0; i < sizeof dup / sizeof *dup; i++) {
    oauth2_token_resp t;
    cr_assert_eq(oauth2_json_parse(dup[i], strlen(dup[i]), &t), STP_ESYNTAX, "#%zu", i);
    cr_assert_null(t.access_token);
  }
}

/* The answer's bound: a document of exactly OAUTH2_RESPONSE_MAX bytes is
 * read, one byte more is refused before jansson sees it. */
Test(oauth2, json_answer_bound) {
  size_t n = OAUTH2_RESPONSE_MAX;
  char *s = malloc(n + 2);
  const char *head = "{\"access_token\":\"tok\",\"pad\":\"";
  size_t h = strlen(head);
  memcpy(s, head, h);
  memset(s + h, 'p', n - h - 2);
  memcpy(s + n - 2, "\"}", 2);
  oauth2_token_resp t;
  cr_assert_eq(oauth2_json_parse(s, n, &t), 0);
  cr_assert_str_eq(t.access_token, "tok");
  oauth2_token_resp_free(&t);
  memmove(s + h + 1, s + h, n - h); /* one more padding byte */
  cr_assert_eq(oauth2_json_parse(s, n + 1, &t), STP_ETOOLONG);
  cr_assert_null(t.access_token);
  free(s);
}

Test(oauth2, json_nesting_bound_is_16_levels) {
  char s[128];
  /* the outer object is level 1; 15 arrays make 16 */
  snprintf(s, sizeof s, "{\"a\":%.*s1%.*s}", 15, "[[[[[[[[[[[[[[[[[[[[", 15,
           "]]]]]]]]]]]]]]]]]]]]");
  oauth2_token_resp t;
  cr_assert_eq(oauth2_json_parse(s, strlen(s), &t), 0, "%s", s);
  oauth2_token_resp_free(&t);
  snprintf(s, sizeof s, "{\"a\":%.*s1%.*s}", 16, "[[[[[[[[[[[[[[[[[[[[", 16,
           "]]]]]]]]]]]]]]]]]]]]");
  cr_assert_eq(oauth2_json_parse(s, strlen(s), &t), STP_ESYNTAX, "%s", s);
}

/* Every block jansson frees has been wiped first: the hook sees each one
 * after the wipe and before free(), among them the access token's own. */
static struct {
  size_t blocks, dirty;
  bool saw_token_block;
} g_wiped;
static size_t g_token_len;

static void wiped_hook(const unsigned char *p, size_t n) {
  g_wiped.blocks++;
  for (size_t i = 0; i < n; i++)
    if (p[i])
      g_wiped.dirty++;
  if (n > g_token_len) /* big enough to have held it */
    g_wiped.saw_token_block = true;
}

Test(oauth2, json_blocks_are_wiped_when_freed) {
  const char *tok = "ya29.a0AfH6SMBx-this-is-the-secret-access-token";
  char doc[512];
  snprintf(doc, sizeof doc,
           "{\"access_token\":\"%s\",\"refresh_token\":\"1//0secret-refresh\","
           "\"expires_in\":3599,\"extra\":{\"k\":[\"v\",1,true]}}",
           tok);
  g_token_len = strlen(tok);
  stp_json_set_free_hook(wiped_hook);
  oauth2_token_resp t;
  cr_assert_eq(oauth2_json_parse(doc, strlen(doc), &t), 0);
  stp_json_set_free_hook(NULL);
  cr_assert_str_eq(t.access_token, tok);
  oauth2_token_resp_free(&t);
  cr_assert_gt(g_wiped.blocks, 5, "jansson's blocks did not pass the wiping free");
  cr_assert(g_wiped.saw_token_block, "the token's block was not seen");
  cr_assert_eq(g_wiped.dirty, 0, "%zu bytes left unwiped", g_wiped.dirty);
}

/* ---- judging ---- */

Test(oauth2, evaluate_success_and_errors) {
  oauth2_token_resp t;
  char err[512];
  const char *ok = "{\"access_token\":\"tok\",\"token_type\":\"bearer\",\"expires_in\":60,"
                   "\"refresh_token\":\"rt2\"}";
  cr_assert_eq(oauth2_evaluate(200, ok, strlen(ok), &t, err, sizeof err), 0);
  cr_assert_str_eq(t.access_token, "tok");
  cr_assert_str_eq(t.refresh_token, "rt2");
  oauth2_token_resp_free(&t);

  const char *ig = "{\"error\":\"invalid_grant\",\"error_description\":\"Token has been "
                   "expired or revoked.\"}";
  cr_assert_lt(oauth2_evaluate(400, ig, strlen(ig), &t, err, sizeof err), 0);
  cr_assert_str_eq(err, "HTTP 400: invalid_grant: Token has been expired or revoked.");

  cr_assert_lt(oauth2_evaluate(500, L("<html>"), &t, err, sizeof err), 0);
  cr_assert_str_eq(err, "HTTP 500 without an OAuth2 error object");

  const char *ctl = "{\"error\":\"x\\ny\",\"error_description\":\"\\u001b[31m\"}";
  cr_assert_lt(oauth2_evaluate(401, ctl, strlen(ctl), &t, err, sizeof err), 0);
  cr_assert_str_eq(err, "HTTP 401: x?y: ?[31m");

  static const char *const bad[] = {
      "{\"token_type\":\"Bearer\"}",
      "{\"access_token\":\"has space\"}",
      "{\"access_token\":\"a\\u0001\"}",
      "{\"access_token\":\"a\",\"token_type\":\"mac\"}",
      "{\"access_token\":\"a\",\"refresh_token\":\"b c\"}",
      "{\"access_token\":\"\"}",
      "not json",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    cr_assert_lt(oauth2_evaluate(200, bad[i], strlen(bad[i]), &t, err, sizeof err), 0, "#%zu", i);
    cr_assert_null(t.access_token);
    cr_assert_null(strstr(err, "has space"));
  }
  /* an error object with status 200 is still an error */
  cr_assert_lt(
      oauth2_evaluate(200, L("{\"error\":\"e\",\"access_token\":\"t\"}"), &t, err, sizeof err), 0);
  cr_assert_null(strstr(err, "\"t\""));
}

/* ---- expiry ---- */

Test(oauth2, refresh_at_arithmetic) {
  cr_assert_eq(oauth2_refresh_at(1000, true, 3600), 1000 + 3540 * 1000);
  cr_assert_eq(oauth2_refresh_at(1000, true, 121), 1000 + 61 * 1000);
  cr_assert_eq(oauth2_refresh_at(1000, true, 120), 1000 + 60 * 1000); /* halfway */
  cr_assert_eq(oauth2_refresh_at(1000, true, 2), 2000);
  cr_assert_eq(oauth2_refresh_at(1000, true, 0), 1000);
  cr_assert_eq(oauth2_refresh_at(1000, true, -5), 1000);
  cr_assert_eq(oauth2_refresh_at(0, false, 0), (OAUTH2_DEFAULT_EXPIRES_S - 60) * 1000);
  /* absurd lifetimes are capped, never overflow */
  cr_assert_lt(oauth2_refresh_at(1, true, INT64_MAX), UINT64_C(400) * 365 * 86400 * 1000);
}

Test(oauth2, refresh_at_with_fake_clock) {
  uint64_t now = 5000;
  stp_set_fake_clock(&now);
  uint64_t due = oauth2_refresh_at(stp_now_ms(), true, 3600);
  now += 3539 * 1000;
  cr_assert_lt(stp_now_ms(), due);
  now += 1000;
  cr_assert_geq(stp_now_ms(), due);
  stp_set_fake_clock(NULL);
}

/* ---- token_command output ---- */

Test(oauth2, token_from_output) {
  char *t;
  cr_assert_eq(oauth2_token_from_output(L("  ya29.tok\r\n\n"), &t), 0);
  cr_assert_str_eq(t, "ya29.tok");
  stp_free_secret(t);
  cr_assert_lt(oauth2_token_from_output(L("two words\n"), &t), 0);
  cr_assert_lt(oauth2_token_from_output(L("a\nb\n"), &t), 0);
  cr_assert_lt(oauth2_token_from_output(L(" \n"), &t), 0);
  cr_assert_lt(oauth2_token_from_output(L("tok\x01"), &t), 0);
  cr_assert_null(t);
}

/* ---- the refresh-token file (secret_file.c) ---- */

Test(oauth2, save_secret_file_atomic_0600) {
  char dir[] = "/tmp/stp-oauth2-XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  char path[256], tmp[300], err[256];
  snprintf(path, sizeof path, "%s/rt", dir);
  snprintf(tmp, sizeof tmp, "%s/rt.tmp", dir);
  FILE *f = fopen(path, "w");
  fputs("old\n", f);
  fclose(f);
  chmod(path, 0644);
  f = fopen(tmp, "w"); /* a stale temporary file from a crash */
  fputs("stale", f);
  fclose(f);
  cr_assert_eq(stp_secret_file_save(path, "new-token", err, sizeof err), 0, "%s", err);
  char buf[64] = "";
  f = fopen(path, "r");
  cr_assert_not_null(fgets(buf, sizeof buf, f));
  fclose(f);
  cr_assert_str_eq(buf, "new-token\n");
  struct stat st;
  cr_assert_eq(stat(path, &st), 0);
  cr_assert_eq(st.st_mode & 0777, 0600);
  cr_assert_neq(stat(tmp, &st), 0);
  /* a directory that cannot be written: the old file stays */
  snprintf(path, sizeof path, "%s/missing/rt", dir);
  cr_assert_lt(stp_secret_file_save(path, "secret-value", err, sizeof err), 0);
  cr_assert_null(strstr(err, "secret-value"));
  snprintf(path, sizeof path, "%s/rt", dir);
  unlink(path);
  rmdir(dir);
}

/* ---- configuration ---- */

static int load(const char *yaml, stp_config **cfg, stp_diag *d) {
  memset(d, 0, sizeof *d);
  *cfg = NULL;
  return stp_config_load_string("t.yaml", yaml, strlen(yaml), cfg, d);
}

Test(oauth2_config, google_preset_refresh_token) {
  char dir[] = "/tmp/stp-oauth2c-XXXXXX", yaml[2048];
  cr_assert_not_null(mkdtemp(dir));
  char rt[300];
  snprintf(rt, sizeof rt, "%s/rt", dir);
  FILE *f = fopen(rt, "w");
  fputs("1//0refresh\n", f);
  fclose(f);
  chmod(rt, 0600);
  setenv("STP_T_CS", "cs-value", 1);
  snprintf(yaml, sizeof yaml,
           CFG_AUTH_HEAD
           "      oauth2: {preset: google, client_id: id.apps, client_secret_env: STP_T_CS,\n"
           "               refresh_token_file: %s}\n",
           rt);
  stp_config *cfg;
  stp_diag d;
  cr_assert_eq(load(yaml, &cfg, &d), 0, "%s", d.n ? d.lines[0] : "");
  const stp_upstream_cfg *u = &cfg->upstreams[0];
  cr_assert_not_null(u->token_src);
  cr_assert_eq(u->mechanism, STP_MECH_XOAUTH2);
  cr_assert(u->secret_is_token);
  cr_assert_eq(u->token_src->grant, STP_GRANT_REFRESH_TOKEN);
  cr_assert_str_eq(u->token_src->token_url, "https://oauth2.googleapis.com/token");
  cr_assert_str_eq(u->token_src->scope, "https://mail.google.com/");
  cr_assert_str_eq(u->token_src->client_secret, "cs-value");
  cr_assert_str_eq(u->token_src->refresh_token, "1//0refresh");
  cr_assert_str_eq(u->token_src->refresh_token_file, rt);
  cr_assert_eq(u->token_src->timeout_ms, u->connect_timeout_ms);
  for (size_t i = 0; i < d.n; i++)
    cr_assert_null(strstr(d.lines[i], "cs-value"));
  stp_config_free(cfg);
  stp_diag_free(&d);
  unlink(rt);
  rmdir(dir);
}

Test(oauth2_config, microsoft365_client_credentials) {
  stp_config *cfg;
  stp_diag d;
  setenv("STP_T_CS", "cs-value", 1);
  const char *yaml = CFG_AUTH_HEAD "      oauth2:\n"
                                   "        preset: microsoft365\n"
                                   "        tenant: contoso.onmicrosoft.com\n"
                                   "        grant: client_credentials\n"
                                   "        client_id: 00000000-0000-0000-0000-000000000000\n"
                                   "        client_secret_env: STP_T_CS\n";
  cr_assert_eq(load(yaml, &cfg, &d), 0, "%s", d.n ? d.lines[0] : "");
  const stp_oauth2_cfg *o = cfg->upstreams[0].token_src;
  cr_assert_eq(o->grant, STP_GRANT_CLIENT_CREDENTIALS);
  cr_assert_str_eq(o->token_url,
                   "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token");
  cr_assert_str_eq(o->scope, "https://outlook.office365.com/.default");
  stp_config_free(cfg);
  stp_diag_free(&d);
}

Test(oauth2_config, token_command_and_ttl) {
  stp_config *cfg;
  stp_diag d;
  const char *yaml = CFG_AUTH_HEAD "      token_command: [get-token, --account, me]\n"
                                   "      token_ttl: 10m\n";
  cr_assert_eq(load(yaml, &cfg, &d), 0, "%s", d.n ? d.lines[0] : "");
  const stp_oauth2_cfg *o = cfg->upstreams[0].token_src;
  cr_assert_eq(o->kind, STP_TOKSRC_COMMAND);
  cr_assert_eq(o->command.n, 3);
  cr_assert_str_eq(o->command.v[0], "get-token");
  cr_assert_null(o->command.v[3]);
  cr_assert_eq(o->token_ttl_ms, 600000);
  stp_config_free(cfg);
  stp_diag_free(&d);
}

Test(oauth2_config, errors_with_positions) {
  static const struct {
    const char *auth, *want;
  } cases[] = {
      {"      oauth2: {client_id: x, grant: client_credentials}\n", "needs token_url or preset"},
      {"      oauth2: {token_url: \"https://h/t\", grant: client_credentials}\n",
       "needs client_id"},
      {"      oauth2: {token_url: \"https://h/t\", client_id: x, grant: client_credentials}\n",
       "needs client_secret_env or client_secret_file"},
      {"      oauth2: {token_url: \"https://h/t\", client_id: x}\n",
       "needs refresh_token_file (grant: refresh_token) or grant: client_credentials"},
      {"      oauth2: {preset: microsoft365, client_id: x, grant: client_credentials, "
       "client_secret_env: STP_T_CS}\n",
       "needs tenant"},
      {"      oauth2: {preset: google, tenant: t, client_id: x, refresh_token_file: /nope}\n",
       "tenant is only used with preset: microsoft365"},
      {"      oauth2: {preset: yahoo, client_id: x}\n", "bad preset 'yahoo'"},
      {"      oauth2: {token_url: \"http://h/t\", client_id: x, grant: client_credentials, "
       "client_secret_env: STP_T_CS}\n",
       "needs insecure: true"},
      {"      oauth2: {token_url: \"https://u:p@h/t\", client_id: x, grant: "
       "client_credentials, client_secret_env: STP_T_CS}\n",
       "bad token_url"},
      {"      oauth2: {token_url: \"https://h/t\", client_id: x, refresh_token_file: "
       "/nonexistent/rt}\n",
       "cannot read refresh_token_file"},
      {"      oauth2: {token_url: \"https://h/t\", client_id: x, bogus: 1, grant: "
       "client_credentials, client_secret_env: STP_T_CS}\n",
       "unknown key 'bogus'"},
      {"      mechanism: plain\n      token_command: [x]\n", "needs mechanism xoauth2"},
      {"      token_command: []\n", "'token_command' is empty"},
      {"      password_env: STP_T_CS\n      token_ttl: 1m\n",
       "token_ttl is only used with token_command"},
      {"      token_file: /etc/hostname\n      oauth2: {client_id: x}\n",
       "'oauth2' conflicts with 'token_file'"},
  };
  setenv("STP_T_CS", "cs-value", 1);
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char yaml[2048];
    snprintf(yaml, sizeof yaml, CFG_AUTH_HEAD "%s", cases[i].auth);
    stp_config *cfg;
    stp_diag d;
    cr_assert_lt(load(yaml, &cfg, &d), 0, "case %zu accepted", i);
    cr_assert(cfg_diag_has(&d, cases[i].want), "case %zu: want '%s', got '%s'", i, cases[i].want,
              d.n ? d.lines[0] : "");
    cr_assert(cfg_diag_has(&d, "t.yaml:"), "case %zu: no position", i);
    stp_diag_free(&d);
  }
}

/* Google answers apps in "Testing" with a refresh token that dies in 7 days. */
Test(oauth2, refresh_token_expires_in_and_error_reasons) {
  oauth2_token_resp t;
  const char *s = "{\"access_token\":\"a\",\"expires_in\":3599,\"refresh_token\":\"r\","
                  "\"refresh_token_expires_in\":604799}";
  cr_assert_eq(oauth2_json_parse(s, strlen(s), &t), 0);
  cr_assert(t.has_refresh_token_expires_in);
  cr_assert_eq(t.refresh_token_expires_in, 604799);
  oauth2_token_resp_free(&t);
  s = "{\"access_token\":\"a\",\"refresh_token_expires_in\":\"x\"}";
  cr_assert_eq(oauth2_json_parse(s, strlen(s), &t), STP_ESYNTAX);
  cr_assert_str_eq(oauth2_error_reason("invalid_grant"), "invalid_grant");
  cr_assert_str_eq(oauth2_error_reason("invalid_client"), "invalid_client");
  cr_assert_str_eq(oauth2_error_reason("AADSTS700027"), "other", "the label set stays bounded");
  cr_assert_str_eq(oauth2_error_reason(NULL), "other");
}
