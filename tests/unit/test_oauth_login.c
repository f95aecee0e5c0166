/* test_oauth_login.c - the pure half of `oauth2 login`: the redirect /
 * query parser (oauthq.c) byte by byte, base64url against RFC 7636
 * appendix B, the authorization URL, the device answer, the token
 * verdicts, the provider error table, and the config keys it adds.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg_test.h"
#include "smtp-tls-proxy/config.h"
#include "smtp-tls-proxy/oauth_login.h"
#include "smtp-tls-proxy/oauthq.h"

static int parse(const char *s, oauthq *q) {
  return oauthq_parse(s, strlen(s), q);
}

/* ---- oauthq ---- */

Test(oauthq, pasted_url_loopback_and_query_forms) {
  static const char *const forms[] = {
      "http://127.0.0.1:43210/"
      "?code=4%2F0AX-y_z.1&state=St4te&scope=https%3A%2F%2Fmail.google.com%2F",
      "  http://127.0.0.1:43210/?state=St4te&code=4%2F0AX-y_z.1  \r\n",
      "/?code=4%2F0AX-y_z.1&state=St4te",
      "?code=4%2F0AX-y_z.1&state=St4te",
      "code=4%2F0AX-y_z.1&state=St4te",
      "https://localhost/cb?session_state=x&code=4/0AX-y_z.1&&state=St4te#frag&code=no",
  };
  for (size_t i = 0; i < sizeof forms / sizeof *forms; i++) {
    oauthq q;
    cr_assert_eq(parse(forms[i], &q), STP_OK, "form %zu", i);
    cr_assert(q.has_code && q.has_state && !q.has_error, "form %zu", i);
    cr_assert_str_eq(q.code, "4/0AX-y_z.1", "form %zu", i);
    cr_assert_str_eq(q.state, "St4te", "form %zu", i);
    oauthq_wipe(&q);
  }
}

Test(oauthq, error_response) {
  oauthq q;
  cr_assert_eq(parse("/?error=access_denied&error_description=The+user+said+no%21&state=s", &q),
               STP_OK);
  cr_assert(q.has_error && !q.has_code);
  cr_assert_str_eq(q.error, "access_denied");
  cr_assert_str_eq(q.error_description, "The user said no!");
}

Test(oauthq, nothing_to_take) {
  oauthq q;
  cr_assert_eq(parse("/favicon.ico", &q), STP_ENOTFOUND);
  cr_assert_eq(parse("http://127.0.0.1:5/", &q), STP_ENOTFOUND);
  cr_assert_eq(parse("/?state=only", &q), STP_ENOTFOUND);
  cr_assert_eq(parse("", &q), STP_ENOTFOUND);
  cr_assert_eq(parse("/path#code=x", &q), STP_ENOTFOUND, "a fragment is not the query");
}

Test(oauthq, malformed_refused) {
  static const char *const bad[] = {
      "/?code=a&code=b",                   /* twice (RFC 6749 3.1) */
      "/?state=a&code=x&state=a",          /* twice */
      "/?code=%4",                         /* cut escape */
      "/?code=%zz",                        /* not hex */
      "/?code=a%",                         /* cut at the end */
      "/?code=a%20b",                      /* a space in a code */
      "/?code=a%0Ab",                      /* a line break */
      "/?error_description=a%00b&error=x", /* NUL */
      "/?code=a%C3%A9",                    /* 8-bit in a code */
      "/?code=a b",                        /* a raw space inside */
      "/?code=\x01",                       /* a raw control byte */
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    oauthq q;
    cr_assert_eq(parse(bad[i], &q), STP_ESYNTAX, "'%s'", bad[i]);
    cr_assert(!q.has_code && !q.code[0], "nothing kept from a refused answer");
  }
}

Test(oauthq, bounds) {
  static char big[OAUTHQ_INPUT_MAX + 64];
  oauthq q;
  /* a code of exactly OAUTHQ_CODE_MAX bytes fits, one more does not */
  strcpy(big, "/?code=");
  memset(big + 7, 'c', OAUTHQ_CODE_MAX);
  big[7 + OAUTHQ_CODE_MAX] = '\0';
  cr_assert_eq(parse(big, &q), STP_OK);
  cr_assert_eq(strlen(q.code), OAUTHQ_CODE_MAX);
  strcat(big, "c");
  cr_assert_eq(parse(big, &q), STP_ETOOLONG);
  /* the input as a whole */
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  memcpy(big, "/?code=a&x=", 11);
  cr_assert_eq(parse(big, &q), STP_ETOOLONG);
  /* an unknown parameter with a long name is ignored, not an error */
  cr_assert_eq(parse("/?a_very_long_parameter_name_indeed_yes=1&code=k", &q), STP_OK);
  cr_assert_str_eq(q.code, "k");
}

/* Every split of a valid answer decodes the same; every prefix of it
 * gives a defined result (the fuzzer's invariant, here by hand). */
Test(oauthq, every_prefix_is_defined) {
  const char *s = "http://127.0.0.1:1/?code=ab%2Fc&state=xy&error_description=d+e";
  oauthq q;
  for (size_t n = 0; n <= strlen(s); n++) {
    int rc = oauthq_parse(s, n, &q);
    cr_assert(rc == STP_OK || rc == STP_ENOTFOUND || rc == STP_ESYNTAX, "prefix %zu: %d", n, rc);
  }
  cr_assert_eq(oauthq_parse(s, strlen(s), &q), STP_OK);
  cr_assert_str_eq(q.code, "ab/c");
  cr_assert_str_eq(q.error_description, "d e");
}

/* ---- PKCE and the authorization URL ---- */

Test(oauth_login, b64url_rfc7636_appendix_b) {
  static const unsigned char verifier_octets[] = {
      116, 24,  223, 180, 151, 153, 224, 37,  79, 250, 96, 125, 216, 173, 187, 186,
      22,  212, 37,  77,  105, 214, 191, 240, 91, 88,  5,  88,  83,  132, 141, 121};
  static const unsigned char challenge_octets[] = {
      19,  211, 30,  150, 26,  26,  216, 236, 47,  22,  177, 12, 76,  152, 46,  8,
      118, 168, 120, 173, 109, 241, 68,  86,  110, 225, 137, 74, 203, 112, 249, 195};
  char out[64];
  cr_assert_eq(oauth_b64url(verifier_octets, 32, out, sizeof out), 43);
  cr_assert_str_eq(out, "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
  cr_assert_eq(oauth_b64url(challenge_octets, 32, out, sizeof out), 43);
  cr_assert_str_eq(out, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
  cr_assert_eq(oauth_b64url((const unsigned char *)"f", 1, out, sizeof out), 2);
  cr_assert_str_eq(out, "Zg");
  cr_assert_eq(oauth_b64url((const unsigned char *)"fo", 2, out, sizeof out), 3);
  cr_assert_str_eq(out, "Zm8");
  cr_assert_eq(oauth_b64url(verifier_octets, 32, out, 43), STP_EFULL, "room for the NUL");
}

Test(oauth_login, authorization_url) {
  stp_buf b;
  stp_buf_init(&b, 4096);
  oauth_authz_req r = {.base = "https://accounts.example/auth",
                       .client_id = "id 1",
                       .redirect_uri = "http://127.0.0.1:5555/",
                       .scope = "https://mail.google.com/",
                       .state = "st",
                       .challenge = "ch",
                       .google = true};
  cr_assert_eq(oauth_authz_url(&b, &r), 0);
  cr_assert_str_eq(b.data, "https://accounts.example/auth?response_type=code&client_id=id+1"
                           "&redirect_uri=http%3A%2F%2F127.0.0.1%3A5555%2F"
                           "&scope=https%3A%2F%2Fmail.google.com%2F&state=st&code_challenge=ch"
                           "&code_challenge_method=S256&access_type=offline&prompt=consent");
  b.len = 0;
  r.base = "https://login.example/t/authorize?p=1";
  r.google = false;
  cr_assert_eq(oauth_authz_url(&b, &r), 0);
  cr_assert(strstr(b.data, "authorize?p=1&response_type=code"));
  cr_assert_null(strstr(b.data, "access_type"));
  stp_buf_free(&b);
  stp_buf_init(&b, 40);
  cr_assert_eq(oauth_authz_url(&b, &r), STP_EFULL);
  cr_assert_eq(b.len, 0);
  stp_buf_free(&b);
}

/* ---- device answers ---- */

static int dev(int status, const char *body, oauth_device *d, char *err) {
  return oauth_device_parse(status, body, strlen(body), d, err, 300);
}

Test(oauth_login, device_answer_microsoft_and_google) {
  oauth_device d;
  char err[300];
  cr_assert_eq(dev(200,
                   "{\"user_code\":\"WDJB-MJHT\",\"device_code\":\"dc.1\",\"verification_uri\":"
                   "\"https://microsoft.com/devicelogin\",\"expires_in\":900,\"interval\":5,"
                   "\"message\":\"To sign in, use a web browser\"}",
                   &d, err),
               0, "%s", err);
  cr_assert_str_eq(d.user_code, "WDJB-MJHT");
  cr_assert_str_eq(d.device_code, "dc.1");
  cr_assert_str_eq(d.verification_uri, "https://microsoft.com/devicelogin");
  cr_assert_str_eq(d.message, "To sign in, use a web browser");
  cr_assert_eq(d.expires_in, 900);
  cr_assert_eq(d.interval, 5);
  oauth_device_free(&d);
  /* Google's spelling, no interval (RFC 8628: 5 s) */
  cr_assert_eq(dev(200,
                   "{\"device_code\":\"AH-1\",\"user_code\":\"GQVQ-JKEC\",\"verification_url\":"
                   "\"https://www.google.com/device\",\"expires_in\":\"1800\"}",
                   &d, err),
               0, "%s", err);
  cr_assert_str_eq(d.verification_uri, "https://www.google.com/device");
  cr_assert_eq(d.interval, 5);
  cr_assert_eq(d.expires_in, 1800);
  oauth_device_free(&d);
}

Test(oauth_login, device_answer_refused) {
  oauth_device d;
  char err[300];
  cr_assert_lt(dev(400, "{\"error\":\"invalid_client\",\"error_description\":\"AADSTS7000218: x\"}",
                   &d, err),
               0);
  cr_assert_str_eq(err, "HTTP 400: invalid_client: AADSTS7000218: x");
  cr_assert_lt(
      dev(200, "{\"user_code\":\"A\",\"verification_uri\":\"u\",\"expires_in\":9}", &d, err), 0);
  cr_assert(strstr(err, "device_code"));
  cr_assert_lt(
      dev(200, "{\"device_code\":\"d\",\"verification_uri\":\"u\",\"expires_in\":9}", &d, err), 0);
  cr_assert(strstr(err, "user_code"));
  cr_assert_lt(dev(200, "{\"device_code\":\"d\",\"user_code\":\"A\",\"expires_in\":9}", &d, err),
               0);
  cr_assert(strstr(err, "verification_uri"));
  cr_assert_lt(
      dev(200, "{\"device_code\":\"d\",\"user_code\":\"A\",\"verification_uri\":\"u\"}", &d, err),
      0);
  cr_assert_lt(dev(200, "[1]", &d, err), 0);
  cr_assert_lt(dev(200,
                   "{\"device_code\":\"d d\",\"user_code\":\"A\",\"verification_uri\":\"u\","
                   "\"expires_in\":9}",
                   &d, err),
               0, "a device code with a space cannot be sent back as is");
  cr_assert_null(d.device_code);
}

/* ---- token answers ---- */

static oauth_verdict verdict(int status, const char *body, oauth2_token_resp *t, oauth_extra *x,
                             char *err) {
  return oauth_token_verdict(status, body, strlen(body), t, x, err, 300);
}

Test(oauth_login, token_verdicts) {
  oauth2_token_resp t;
  oauth_extra x;
  char err[300];
  cr_assert_eq(verdict(400, "{\"error\":\"authorization_pending\"}", &t, &x, err), OL_PENDING);
  cr_assert_eq(verdict(400, "{\"error\":\"slow_down\"}", &t, &x, err), OL_SLOW_DOWN);
  cr_assert_eq(verdict(400, "{\"error\":\"expired_token\"}", &t, &x, err), OL_EXPIRED);
  cr_assert_eq(verdict(400, "{\"error\":\"access_denied\"}", &t, &x, err), OL_DENIED);
  cr_assert_eq(verdict(400, "{\"error\":\"authorization_declined\"}", &t, &x, err), OL_DENIED);
  cr_assert_eq(verdict(401, "{\"error\":\"authorization_pending\"}", &t, &x, err), OL_FAILED,
               "RFC 8628 3.5: only a 400 answer carries these");
  cr_assert_eq(verdict(500, "<html>", &t, &x, err), OL_FAILED);
  cr_assert_str_eq(err, "HTTP 500 without an OAuth2 error object");
  cr_assert_eq(verdict(200, "{\"access_token\":\"a\",\"token_type\":\"Bearer\"}", &t, &x, err),
               OL_FAILED, "no refresh token is no login");
  cr_assert(strstr(err, "offline_access"));
  cr_assert_null(t.access_token);
}

Test(oauth_login, token_with_expiry_and_account) {
  oauth2_token_resp t;
  oauth_extra x;
  char err[300];
  /* id_token payload {"email":"scanner@example.com"} */
  const char *body =
      "{\"access_token\":\"at\",\"refresh_token\":\"rt\",\"token_type\":\"Bearer\","
      "\"expires_in\":3599,\"refresh_token_expires_in\":604799,\"scope\":\"s\","
      "\"id_token\":\"eyJhbGciOiJSUzI1NiJ9.eyJlbWFpbCI6InNjYW5uZXJAZXhhbXBsZS5jb20ifQ."
      "c2ln\"}";
  cr_assert_eq(verdict(200, body, &t, &x, err), OL_TOKEN, "%s", err);
  cr_assert_str_eq(t.refresh_token, "rt");
  cr_assert(x.has_rt_expires_in);
  cr_assert_eq(x.rt_expires_in, 604799);
  cr_assert_str_eq(x.account, "scanner@example.com");
  oauth2_token_resp_free(&t);
  /* Entra: preferred_username; a broken id_token names nobody */
  body = "{\"access_token\":\"at\",\"refresh_token\":\"rt\",\"id_token\":\"x.eyJwcmVmZXJyZWRfdX"
         "Nlcm5hbWUiOiJhQGIuYyJ9.y\"}";
  cr_assert_eq(verdict(200, body, &t, &x, err), OL_TOKEN, "%s", err);
  cr_assert_str_eq(x.account, "a@b.c");
  cr_assert(!x.has_rt_expires_in);
  oauth2_token_resp_free(&t);
  body = "{\"access_token\":\"at\",\"refresh_token\":\"rt\",\"id_token\":\"x.!!!.y\"}";
  cr_assert_eq(verdict(200, body, &t, &x, err), OL_TOKEN);
  cr_assert_str_eq(x.account, "");
  oauth2_token_resp_free(&t);
}

/* ---- the error table ---- */

Test(oauth_login, every_rule_has_advice_and_a_public_source) {
  const oauth_login_rule *r;
  size_t n = oauth_login_rules(&r);
  cr_assert_gt(n, 20);
  for (size_t i = 0; i < n; i++) {
    cr_assert(r[i].error || r[i].needle, "rule %zu matches nothing", i);
    cr_assert(r[i].advice && strlen(r[i].advice) > 20, "rule %zu", i);
    cr_assert(r[i].source && !strncmp(r[i].source, "https://", 8), "rule %zu", i);
    /* each rule is reachable: no earlier rule shadows it */
    const char *desc = r[i].needle ? r[i].needle : "";
    cr_assert_eq(oauth_login_explain(r[i].error ? r[i].error : "invalid_grant", desc), &r[i],
                 "rule %zu is shadowed", i);
  }
}

Test(oauth_login, explain_conditional_access_and_google) {
  const oauth_login_rule *r = oauth_login_explain_line(
      "HTTP 400: invalid_grant: AADSTS53003: Access has been blocked by Conditional Access");
  cr_assert_not_null(r);
  cr_assert(r->use_code_flow);
  cr_assert(strstr(r->advice, "--flow code"));
  r = oauth_login_explain_line("HTTP 400: invalid_grant: AADSTS50199: CmsiInterrupt");
  cr_assert(r && r->use_code_flow);
  r = oauth_login_explain_line("HTTP 400: invalid_scope: Invalid scope");
  cr_assert(r && !strcmp(r->provider, "Google") && r->use_code_flow);
  r = oauth_login_explain_line("HTTP 302 redirect: access_denied: no");
  cr_assert(r && !strcmp(r->error, "access_denied"));
  cr_assert_null(oauth_login_explain_line("HTTP 400: temporarily_unavailable"));
  cr_assert_null(oauth_login_explain_line("network down"));
}

/* ---- config ---- */

Test(oauth_login_config, presets_and_overrides) {
  char dir[] = "/tmp/stp-login-XXXXXX", yaml[2048];
  cr_assert_not_null(mkdtemp(dir));
  stp_config *cfg;
  stp_diag d = {0};
  snprintf(yaml, sizeof yaml,
           CFG_AUTH_HEAD "      oauth2: {preset: microsoft365, tenant: contoso.com, client_id: x,\n"
                         "               refresh_token_file: %s/m.rt}\n",
           dir);
  cr_assert_eq(stp_config_load_string("t.yaml", yaml, strlen(yaml), &cfg, &d), 0);
  const stp_oauth2_cfg *o = cfg->upstreams[0].token_src;
  cr_assert_str_eq(o->authorization_url,
                   "https://login.microsoftonline.com/contoso.com/oauth2/v2.0/authorize");
  cr_assert_str_eq(o->device_authorization_url,
                   "https://login.microsoftonline.com/contoso.com/oauth2/v2.0/devicecode");
  cr_assert(!o->login_google);
  cr_assert_null(o->refresh_token);
  cr_assert(cfg_diag_has(&d, "t.yaml:9:"), "position of the warning");
  cr_assert(cfg_diag_has(&d, "warning: refresh_token_file"));
  cr_assert(cfg_diag_has(&d, "oauth2 login up`"));
  stp_config_free(cfg);
  stp_diag_free(&d);

  snprintf(yaml, sizeof yaml,
           CFG_AUTH_HEAD
           "      oauth2: {preset: google, client_id: x, refresh_token_file: %s/g.rt,\n"
           "               authorization_url: \"https://a.example/auth\",\n"
           "               device_authorization_url: \"https://a.example/device\"}\n",
           dir);
  memset(&d, 0, sizeof d);
  cr_assert_eq(stp_config_load_string("t.yaml", yaml, strlen(yaml), &cfg, &d), 0);
  o = cfg->upstreams[0].token_src;
  cr_assert_str_eq(o->authorization_url, "https://a.example/auth");
  cr_assert_str_eq(o->device_authorization_url, "https://a.example/device");
  cr_assert(o->login_google);
  stp_config_free(cfg);
  stp_diag_free(&d);

  /* Google's preset has no device endpoint */
  snprintf(yaml, sizeof yaml,
           CFG_AUTH_HEAD
           "      oauth2: {preset: google, client_id: x, refresh_token_file: %s/g.rt}\n",
           dir);
  memset(&d, 0, sizeof d);
  cr_assert_eq(stp_config_load_string("t.yaml", yaml, strlen(yaml), &cfg, &d), 0);
  o = cfg->upstreams[0].token_src;
  cr_assert_str_eq(o->authorization_url, "https://accounts.google.com/o/oauth2/v2/auth");
  cr_assert_null(o->device_authorization_url);
  stp_config_free(cfg);
  stp_diag_free(&d);
  rmdir(dir);
}

Test(oauth_login_config, url_errors) {
  stp_config *cfg;
  stp_diag d = {0};
  const char *yaml = CFG_AUTH_HEAD
      "      oauth2: {token_url: \"https://h/t\", client_id: x, refresh_token_file: /tmp/x.rt,\n"
      "               authorization_url: \"http://h/a\", device_authorization_url: nope}\n";
  cr_assert_lt(stp_config_load_string("t.yaml", yaml, strlen(yaml), &cfg, &d), 0);
  cr_assert(cfg_diag_has(&d, "t.yaml:9:35: error: authorization_url over http:// needs insecure"));
  cr_assert(cfg_diag_has(&d, "error: bad device_authorization_url 'nope'"));
  stp_diag_free(&d);
}
