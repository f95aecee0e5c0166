/* test_config_api.c - `kind: graph | gmail` upstreams: mailbox, api_url and
 * what is derived from it, save_to_sent_items, the two API presets, and
 * the errors (FILE:LINE:COL) for keys of the other kind and for auth that
 * an API cannot use. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg_test.h"
#include "smtp-tls-proxy/config.h"
#include "smtp-tls-proxy/util.h"

static stp_config *load(const char *yaml) {
  setenv("STP_TEST_CS", "cs-value", 1);
  return cfg_load(yaml);
}

static void fails_with(const char *yaml, const char *expected) {
  setenv("STP_TEST_CS", "cs-value", 1);
  cfg_fails_with(yaml, expected);
  cfg_diag_reset();
}

#define HEAD "listeners:\n  - name: lan\n    listen: \":0\"\nupstreams:\n"
#define TAIL "routes:\n  - name: all\n    upstream: up\n"
#define GRAPH_AUTH                                                                                 \
  "    auth:\n      oauth2: { preset: microsoft365-graph, tenant: contoso.example, client_id: "    \
  "app-1, client_secret_env: STP_TEST_CS }\n"

Test(config_api, graph_defaults_and_derived_address) {
  stp_config *cfg = load(
      HEAD "  - name: up\n    kind: graph\n    mailbox: scan@contoso.example\n" GRAPH_AUTH TAIL);
  cr_assert_not_null(cfg, "%s", cfg_diags());
  const stp_upstream_cfg *u = &cfg->upstreams[0];
  cr_assert_eq(u->kind, STP_UP_GRAPH);
  cr_assert_str_eq(u->mailbox, "scan@contoso.example");
  cr_assert_str_eq(u->api_url, "https://graph.microsoft.com");
  cr_assert_str_eq(u->host, "graph.microsoft.com");
  cr_assert_str_eq(u->server_name, "graph.microsoft.com");
  cr_assert_eq(u->port, 443);
  cr_assert_eq(u->tls, STP_TLS_IMPLICIT);
  cr_assert(u->save_to_sent_items, "Graph's own default");
  cr_assert_not_null(u->token_src);
  cr_assert_eq(u->token_src->grant, STP_GRANT_CLIENT_CREDENTIALS, "the preset's default grant");
  cr_assert_str_eq(u->token_src->token_url,
                   "https://login.microsoftonline.com/contoso.example/oauth2/v2.0/token");
  cr_assert_str_eq(u->token_src->scope, "https://graph.microsoft.com/.default");
  cr_assert_str_eq(u->token_src->client_secret, "cs-value");
  cr_assert_null(u->username);
  stp_config_free(cfg);
  stp_diag_free(&cfg_diag);
}

Test(config_api, gmail_defaults_and_api_url_override) {
  char rt[] = "/tmp/stp-cfgapi-rtXXXXXX";
  int fd = mkstemp(rt);
  cr_assert_geq(fd, 0);
  cr_assert_eq(write(fd, "rt-1\n", 5), 5);
  close(fd);
  char yaml[2048];
  snprintf(yaml, sizeof yaml,
           HEAD "  - name: up\n    kind: gmail\n    api_url: https://127.0.0.1:8443/\n"
                "    save_to_sent_items: false\n"
                "    auth:\n      oauth2: { preset: google-gmail-api, client_id: c, "
                "refresh_token_file: %s }\n" TAIL,
           rt);
  /* save_to_sent_items is Graph's; on gmail it is an error. */
  stp_config *cfg = load(yaml);
  cr_assert_null(cfg);
  cr_assert_str_eq(cfg_diags(),
                   "t.yaml:8:5: error: save_to_sent_items is only used with kind: graph");
  snprintf(yaml, sizeof yaml,
           HEAD "  - name: up\n    kind: gmail\n    api_url: https://127.0.0.1:8443/\n"
                "    auth:\n      oauth2: { preset: google-gmail-api, client_id: c, "
                "refresh_token_file: %s }\n" TAIL,
           rt);
  cfg = load(yaml);
  cr_assert_not_null(cfg, "%s", cfg_diags());
  const stp_upstream_cfg *u = &cfg->upstreams[0];
  cr_assert_eq(u->kind, STP_UP_GMAIL);
  cr_assert_str_eq(u->mailbox, "me");
  cr_assert_str_eq(u->api_url, "https://127.0.0.1:8443", "trailing '/' dropped");
  cr_assert_str_eq(u->host, "127.0.0.1");
  cr_assert_eq(u->port, 8443);
  cr_assert_eq(u->token_src->grant, STP_GRANT_REFRESH_TOKEN);
  cr_assert_str_eq(u->token_src->token_url, "https://oauth2.googleapis.com/token");
  cr_assert_str_eq(u->token_src->scope, "https://www.googleapis.com/auth/gmail.send");
  stp_config_free(cfg);
  stp_diag_free(&cfg_diag);
  unlink(rt);
}

Test(config_api, graph_needs_mailbox_and_auth) {
  fails_with(HEAD "  - name: up\n    kind: graph\n" GRAPH_AUTH TAIL,
             "t.yaml:5:5: error: kind: graph needs mailbox (the user whose mailbox sends: "
             "/users/{mailbox}/sendMail)");
  fails_with(HEAD "  - name: up\n    kind: graph\n    mailbox: a@b\n" TAIL,
             "t.yaml:5:5: error: kind: graph needs auth: { oauth2: { preset: microsoft365-graph, "
             "... } } (or token_command)");
  fails_with(HEAD "  - name: up\n    kind: graph\n    mailbox: a/b\n" GRAPH_AUTH TAIL,
             "t.yaml:7:14: error: bad mailbox 'a/b' (expected an address, a user principal name "
             "or an object id)");
  fails_with(HEAD "  - name: up\n    kind: fax\n" TAIL,
             "t.yaml:5:5: error: upstream needs a host\n"
             "t.yaml:6:11: error: bad kind 'fax' (expected smtp, graph or gmail)");
}

Test(config_api, smtp_keys_on_api_kinds_and_api_keys_on_smtp) {
  fails_with(HEAD
             "  - name: up\n    kind: graph\n    mailbox: a@b\n    host: smtp.x\n"
             "    port: 587\n    tls: starttls\n    server_name: x\n    helo: h\n" GRAPH_AUTH TAIL,
             "t.yaml:8:5: error: 'host' is not used with kind: graph (the API's address is "
             "api_url)\n"
             "t.yaml:9:5: error: 'port' is not used with kind: graph (the API's address is "
             "api_url)\n"
             "t.yaml:10:5: error: 'tls' is not used with kind: graph (the API's address is "
             "api_url)\n"
             "t.yaml:11:5: error: 'server_name' is not used with kind: graph (the API's address "
             "is api_url)\n"
             "t.yaml:12:5: error: 'helo' is not used with kind: graph (the API's address is "
             "api_url)");
  fails_with(HEAD "  - name: up\n    host: smtp.x\n    mailbox: a@b\n    api_url: https://x\n"
                  "    save_to_sent_items: true\n" TAIL,
             "t.yaml:7:5: error: 'mailbox' is only used with kind: graph or gmail\n"
             "t.yaml:8:5: error: 'api_url' is only used with kind: graph or gmail\n"
             "t.yaml:9:5: error: 'save_to_sent_items' is only used with kind: graph or gmail");
}

Test(config_api, api_kinds_refuse_password_auth) {
  fails_with(HEAD
             "  - name: up\n    kind: graph\n    mailbox: a@b\n    auth:\n"
             "      username: u\n      mechanism: plain\n      password_env: STP_TEST_CS\n" TAIL,
             "t.yaml:9:7: error: 'username' is not used with kind: graph (the account is "
             "mailbox)\n"
             "t.yaml:10:7: error: 'mechanism' is not used with kind: graph (the API takes a "
             "bearer token)\n"
             "t.yaml:11:7: error: kind: graph authenticates with oauth2 or token_command, not "
             "password_env");
  fails_with(HEAD "  - name: up\n    kind: gmail\n    auth: { token_ttl: 5m }\n" TAIL,
             "t.yaml:7:11: error: kind: gmail needs oauth2 (preset: google-gmail-api) or "
             "token_command");
  /* token_command is a token source like oauth2: accepted. */
  stp_config *cfg = load(HEAD "  - name: up\n    kind: gmail\n"
                              "    auth: { token_command: [/bin/echo, tok] }\n" TAIL);
  cr_assert_not_null(cfg, "%s", cfg_diags());
  cr_assert_eq(cfg->upstreams[0].token_src->kind, STP_TOKSRC_COMMAND);
  stp_config_free(cfg);
  stp_diag_free(&cfg_diag);
}

Test(config_api, presets_must_fit_the_kind) {
  fails_with(HEAD "  - name: up\n    kind: graph\n    mailbox: a@b\n    auth:\n"
                  "      oauth2: { preset: microsoft365, tenant: t, client_id: a, "
                  "client_secret_env: STP_TEST_CS, grant: client_credentials }\n" TAIL,
             "t.yaml:9:25: error: preset: microsoft365 is for SMTP upstreams; kind: graph needs "
             "preset: microsoft365-graph");
  fails_with(HEAD "  - name: up\n    host: smtp.x\n    auth:\n      username: u\n"
                  "      oauth2: { preset: google-gmail-api, client_id: a, grant: "
                  "client_credentials, client_secret_env: STP_TEST_CS }\n" TAIL,
             "t.yaml:9:25: error: preset: google-gmail-api is for kind: gmail upstreams\n"
             "t.yaml:9:64: error: preset: google-gmail-api needs grant: refresh_token (Google "
             "has no client credentials grant for Gmail)");
  fails_with(HEAD "  - name: up\n    kind: graph\n    mailbox: a@b\n    auth:\n"
                  "      oauth2: { preset: microsoft365-graph, client_id: a, client_secret_env: "
                  "STP_TEST_CS }\n" TAIL,
             "t.yaml:9:17: error: preset: microsoft365-graph needs tenant (a tenant id or "
             "domain)");
}

Test(config_api, api_url_checks) {
  fails_with(HEAD "  - name: up\n    kind: graph\n    mailbox: a@b\n"
                  "    api_url: http://127.0.0.1:8080\n" GRAPH_AUTH TAIL,
             "t.yaml:8:14: error: api_url over http:// needs insecure: true (mail and tokens "
             "would cross the network in clear)");
  fails_with(HEAD "  - name: up\n    kind: graph\n    mailbox: a@b\n"
                  "    api_url: ftp://x\n" GRAPH_AUTH TAIL,
             "t.yaml:8:14: error: bad api_url 'ftp://x' (expected https://host[:port][/path])");
  /* http:// with insecure: allowed, loudly. */
  stp_config *cfg =
      load(HEAD "  - name: up\n    kind: graph\n    mailbox: a@b\n    insecure: true\n"
                "    api_url: http://127.0.0.1:8080/g\n" GRAPH_AUTH TAIL);
  cr_assert_not_null(cfg, "%s", cfg_diags());
  cr_assert_str_eq(cfg_diags(),
                   "t.yaml:9:14: warning: api_url over http://: mail and credentials to "
                   "upstream 'up' cross the network in clear");
  cr_assert_eq(cfg->upstreams[0].tls, STP_TLS_NONE);
  cr_assert_eq(cfg->upstreams[0].port, 8080);
  cr_assert_str_eq(cfg->upstreams[0].api_url, "http://127.0.0.1:8080/g");
  stp_config_free(cfg);
  stp_diag_free(&cfg_diag);
}
