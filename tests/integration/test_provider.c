/* test_provider.c - provider fidelity through the real proxy: for every row
 * of the provider table, a replay upstream (tests/tools/replay_upstream.py,
 * a stand-in: the providers cannot be reached from here) plays the
 * recorded dialogue that ends in that refusal; the device must get the
 * row's class and words, and the log one line with the row's reason=, the
 * provider's own words in provider_reply= and the row's hint=. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "provider_expect.h"
#include "smtp-tls-proxy/provider.h"

/* The dialogue's needs from the proxy, from replay_upstream.py --list:
 * "name {"proxy_auth": "none", "proxy_tls": "none"}". */
static void dialogue_needs(const char *id, char *auth, size_t acap, char *tls, size_t tcap) {
  static char out[16384];
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "%s %s/replay_upstream.py --list", H_PYTHON, STP_TOOLS_DIR);
  cr_assert_eq(h_run(cmd, NULL, 10000, out, sizeof out), 0, "%s", out);
  char want[160];
  snprintf(want, sizeof want, "\n%s {", id);
  char *line = strstr(out, want);
  if (!line && !strncmp(out, want + 1, strlen(want + 1)))
    line = out - 1;
  cr_assert_not_null(line, "replay_upstream.py has no dialogue %s:\n%s", id, out);
  line++;
  char *eol = strchr(line, '\n');
  if (eol)
    *eol = '\0';
  snprintf(auth, acap, "%s",
           strstr(line, "\"proxy_auth\": \"none\"")      ? "none"
           : strstr(line, "\"proxy_auth\": \"xoauth2\"") ? "xoauth2"
                                                         : "plain");
  snprintf(tls, tcap, "%s", strstr(line, "\"proxy_tls\": \"none\"") ? "none" : "starttls");
}

/* key="value" (or key=value) of a log line, unescaped into out. */
static bool log_value(const char *line, const char *key, char *out, size_t cap) {
  char k[64];
  snprintf(k, sizeof k, " %s=", key);
  const char *p = strstr(line, k);
  if (!p)
    return false;
  p += strlen(k);
  size_t o = 0;
  if (*p == '"') {
    for (p++; *p && *p != '"' && o + 1 < cap; p++) {
      if (*p == '\\' && p[1])
        p++;
      out[o++] = *p;
    }
  } else {
    while (*p && *p != ' ' && *p != '\n' && o + 1 < cap)
      out[o++] = *p++;
  }
  out[o] = '\0';
  return true;
}

static void start_proxy_for(h_proxy *px, const h_upstream *u, const char *auth, const char *tls,
                            const char *top_extra) {
  static char extra[1024];
  extra[0] = '\0';
  if (!strcmp(tls, "none"))
    snprintf(extra, sizeof extra, "    insecure: true\n");
  if (!strcmp(auth, "xoauth2")) {
    char tok[512];
    h_path(tok, sizeof tok, "token");
    h_write_file(tok, "ya29.test-access-token\n", 23);
    size_t n = strlen(extra);
    snprintf(extra + n, sizeof extra - n,
             "    auth: { mechanism: xoauth2, username: %s, token_file: %s }\n", H_USER, tok);
  }
  h_proxy_opts o = {.up_port = u->port,
                    .up_tls = tls,
                    .connect_timeout = "5s",
                    .command_timeout = "5s",
                    .data_timeout = "5s",
                    .no_upstream_auth = strcmp(auth, "plain") != 0,
                    .upstream_extra = extra,
                    .top_extra = top_extra};
  h_proxy_start(px, &o);
}

/* One row through the proxy; returns the upstream name's log line. */
static void run_row(const provider_rule *row, h_proxy *px) {
  char auth[16], tls[16];
  dialogue_needs(row->id, auth, sizeof auth, tls, sizeof tls);
  h_upstream u;
  h_replay_start(&u, row->id);
  start_proxy_for(px, &u, auth, tls, NULL);

  h_smtp c;
  h_smtp_open(&c, px->port, true);
  char text[2048];
  const char *stage = NULL;
  static const char body[] = "Subject: provider fidelity\r\n\r\nscan attached\r\n";
  int code = h_smtp_message(&c, "scan@printer.test", (const char *const[]){"a@example.com", NULL},
                            body, sizeof body - 1, text, sizeof text, &stage);
  /* The class from the providers' documentation, not from the product. */
  const provider_expect *exp = provider_expect_find(row->id);
  cr_assert_not_null(exp, "%s has no documented expectation", row->id);
  cr_assert_eq(code / 100, exp->cls, "%s: device got %d at %s: %s (documented: %s)", row->id, code,
               stage, text, exp->why);

  /* One line with the row's reason, the provider's words and the hint. */
  char want_reason[96], line[4096];
  snprintf(want_reason, sizeof want_reason, " reason=%s ", row->reason);
  const char *need[] = {want_reason, "provider_reply=", "hint=", NULL};
  char *logtxt = NULL;
  if (!h_file_wait_line(px->log, need, 10000, line, sizeof line)) {
    logtxt = h_read_file(px->log, NULL);
    char *rec = h_read_file(u.record, NULL);
    cr_assert_fail("%s: no log line with%s; device got %d %s\nlog:\n%s\nupstream saw:\n%s", row->id,
                   want_reason, code, text, logtxt, rec);
  }
  cr_assert(strstr(line, " upstream-failed ") || strstr(line, " upstream-refused "), "%s", line);
  char phase_s[32], hint[1024], reply[1024];
  cr_assert(log_value(line, "phase", phase_s, sizeof phase_s), "%s", line);
  cr_assert(log_value(line, "hint", hint, sizeof hint), "%s", line);
  cr_assert(log_value(line, "provider_reply", reply, sizeof reply), "%s", line);
  cr_assert_str_eq(hint, row->hint, "%s", line);
  cr_assert_not_null(row->pattern ? strstr(reply, row->pattern) : reply,
                     "%s: the provider's words are not in the log: %s", row->id, line);

  /* The device's reply is the row's, for the phase it happened in. */
  provider_phase ph = PROV_NPHASES;
  for (unsigned p = 0; p < PROV_NPHASES; p++)
    if (!strcmp(phase_s, provider_phase_name((provider_phase)p)))
      ph = (provider_phase)p;
  cr_assert(ph != PROV_NPHASES && (row->phases & PROV_BIT(ph)), "%s: phase %s", row->id, phase_s);
  char want[256];
  provider_rule_device_reply(row, ph, want, sizeof want);
  want[strcspn(want, "\r\n")] = '\0';
  cr_assert_str_eq(text, want, "%s at %s", row->id, stage);

  /* The dialogue reached its refusal (not some other failure). */
  cr_assert_geq(
      h_wait_records(u.record, row->phases & PROV_BIT(PROV_TLS) ? NULL : "refused", 1, 2000), 1,
      "%s: the replay upstream never refused", row->id);
  h_smtp_close(&c);
  free(logtxt);
}

ParameterizedTestParameters(integ, provider_row) {
  const provider_rule *rules;
  size_t n = provider_rules(&rules);
  static size_t idx[128];
  cr_assert_leq(n, sizeof idx / sizeof *idx);
  for (size_t i = 0; i < n; i++)
    idx[i] = i;
  return cr_make_param_array(size_t, idx, n);
}

ParameterizedTest(size_t *i, integ, provider_row) {
  const provider_rule *rules;
  provider_rules(&rules);
  h_proxy px;
  run_row(&rules[*i], &px);
  h_check_procs();
}

/* Every dialogue the replay tool knows is either a row of the table or
 * named here for another test: no recording goes untested. */
ITest(integ, provider_every_dialogue_is_used) {
  static char out[16384];
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "%s %s/replay_upstream.py --list", H_PYTHON, STP_TOOLS_DIR);
  cr_assert_eq(h_run(cmd, NULL, 10000, out, sizeof out), 0, "%s", out);
  const provider_rule *rules;
  size_t n = provider_rules(&rules), seen = 0;
  for (char *l = strtok(out, "\n"); l; l = strtok(NULL, "\n")) {
    l[strcspn(l, " ")] = '\0';
    bool known = !strcmp(l, "gmail-helo-literal-ok");
    for (size_t i = 0; i < n; i++)
      if (!strcmp(l, rules[i].id)) {
        known = true;
        seen++;
      }
    cr_assert(known, "dialogue %s is neither a table row nor used by another test", l);
  }
  cr_assert_eq(seen, n, "every table row has a recorded dialogue");
}

/* The metric counts a classified failure under the row's reason word. */
ITest(integ, provider_reason_is_the_metric_label) {
  h_upstream u;
  h_replay_start(&u, "m365-5.7.139-basic-auth-disabled");
  h_proxy px;
  start_proxy_for(&px, &u, "plain", "starttls", "metrics: { listen: \"127.0.0.1:0\" }\n");
  h_smtp c;
  h_smtp_open(&c, px.port, true);
  static const char body[] = "Subject: m\r\n\r\nx\r\n";
  int code = h_smtp_message(&c, "scan@printer.test", (const char *const[]){"a@example.com", NULL},
                            body, sizeof body - 1, NULL, 0, NULL);
  cr_assert_eq(code, 454);
  char *log = NULL;
  int mp = -1;
  for (int k = 0; k < 100 && mp < 0; k++) {
    free(log);
    log = h_read_file(px.log, NULL);
    const char *p = log ? strstr(log, "metrics-listening addr=127.0.0.1:") : NULL;
    if (p)
      mp = atoi(p + strlen("metrics-listening addr=127.0.0.1:"));
    else
      h_sleep_ms(50);
  }
  free(log);
  cr_assert_gt(mp, 0);
  char cmd[256], out[65536];
  snprintf(cmd, sizeof cmd, "curl -s http://127.0.0.1:%d/metrics", mp);
  cr_assert_eq(h_run(cmd, NULL, 10000, out, sizeof out), 0);
  cr_assert_not_null(strstr(out, "smtp_proxy_upstream_failures_total{upstream=\"up\",reason="
                                 "\"basic_auth_disabled\"} 1\n"),
                     "%s", out);
}

/* TLS diagnosis: a server that aborts the handshake with an alert (a
 * stand-in answering the ClientHello with a fatal internal_error, as a
 * broken OpenSMTPD set-up on Debian 12 does) is logged as that alert and
 * the step, never as a certificate problem; real verification failures
 * keep saying "certificate" with BoringSSL's reason. */
static void tls_log_line(h_proxy *px, char *line, size_t cap) {
  h_smtp c;
  h_smtp_open(&c, px->port, true);
  static const char body[] = "Subject: t\r\n\r\nx\r\n";
  char text[512];
  int code = h_smtp_message(&c, "scan@printer.test", (const char *const[]){"a@example.com", NULL},
                            body, sizeof body - 1, text, sizeof text, NULL);
  cr_assert_eq(code, 451, "%s", text);
  const char *need[] = {" upstream-failed ", " failure=tls ", NULL};
  cr_assert(h_file_wait_line(px->log, need, 10000, line, cap), "no upstream-failed line");
  h_smtp_close(&c);
}

ITest(integ, tls_peer_alert_is_named_not_blamed_on_certificates) {
  h_upstream u;
  h_replay_start(&u, "tls-peer-alert");
  h_proxy px;
  start_proxy_for(&px, &u, "plain", "starttls", NULL);
  char line[4096];
  tls_log_line(&px, line, sizeof line);
  cr_assert_not_null(strstr(line, "provider_reply=\"TLS handshake: peer sent TLS alert "
                                  "internal_error during the handshake (step: "),
                     "%s", line);
  cr_assert_null(strstr(line, "certificate verify"), "%s", line);
  cr_assert_not_null(strstr(line, " reason=tls_peer_alert "), "%s", line);
}

static void cert_case(const char *cert, const char *words) {
  h_upstream u;
  h_fault_start(&u, "ok", "starttls", cert);
  h_proxy px;
  start_proxy_for(&px, &u, "plain", "starttls", NULL);
  char line[4096];
  tls_log_line(&px, line, sizeof line);
  cr_assert_not_null(strstr(line, words), "%s: %s", cert, line);
  cr_assert_not_null(strstr(line, " reason=certificate "), "%s", line);
}

ITest(integ, tls_wrong_name_still_says_certificate) {
  cert_case("wrongname", "certificate verify failed: Hostname mismatch");
}

ITest(integ, tls_expired_still_says_certificate) {
  cert_case("expired", "certificate verify failed: certificate has expired");
}

ITest(integ, tls_self_signed_still_says_certificate) {
  cert_case("selfsigned", "certificate verify failed: self signed certificate");
}

/* --test-route names the provider table's reason and fix as well, for a
 * failed connection and for a refused transaction. */
static void test_route_explains(const char *dialogue, const char *want) {
  h_upstream u;
  h_replay_start(&u, dialogue);
  char yaml[8192], path[512], cmd[2048], out[16384];
  h_proxy_yaml(&(h_proxy_opts){.up_port = u.port}, yaml, sizeof yaml);
  h_path(path, sizeof path, "route.yaml");
  h_write_file(path, yaml, strlen(yaml));
  snprintf(cmd, sizeof cmd,
           "'%s' -c '%s' --test-route default --from scan@printer.test --to a@example.com",
           STP_BINARY, path);
  int rc = h_run(cmd, (char *const[]){H_PW_ENV "=" H_PW, NULL}, 20000, out, sizeof out);
  cr_assert_eq(rc, 1, "--test-route exit %d:\n%s", rc, out);
  cr_assert_not_null(strstr(out, want), "%s", out);
}

ITest(integ, test_route_explains_a_failed_connection) {
  test_route_explains("gmail-5.7.9-app-password",
                      "== reason app_password_required (Gmail): the Google account has 2-Step");
}

ITest(integ, test_route_explains_a_refused_message) {
  test_route_explains("ses-identity-not-verified",
                      "== reason identity_not_verified (Amazon SES): verify the sender");
}
