/* test_uphealth.c - upstream health read off the log events, with a fake
 * clock, through the real log module's observer hook. */
#include <criterion/criterion.h>
#include <string.h>

#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/uphealth.h"

static int64_t fake_now;
static int64_t clock_fn(void) {
  return fake_now;
}

static stp_upstream_cfg U[3];
static stp_config C;

static void setup(void) {
  memset(U, 0, sizeof U);
  U[0].name = "m365";
  U[0].has_auth = true;
  U[1].name = "graph";
  U[1].kind = STP_UP_GRAPH;
  U[2].name = "pass"; /* passthrough: the device's own credentials */
  C.upstreams = U;
  C.n_upstreams = 3;
  fake_now = 1000;
  uphealth_set_clock(clock_fn);
  uphealth_reset(&C);
  stp_log_setup(STP_LOG_ERROR, 0, -1); /* lines dropped; observers see all */
  cr_assert_eq(uphealth_install(), 0);
}

static void teardown(void) {
  uphealth_reset(NULL);
  uphealth_set_clock(NULL);
}

TestSuite(uphealth, .init = setup, .fini = teardown);

static uph_status get(const char *name) {
  uph_status s;
  memset(&s, 0x55, sizeof s);
  cr_assert_eq(uphealth_get(name, &s), 0, "%s known", name);
  return s;
}

#define LOG(ev, ...)                                                                               \
  do {                                                                                             \
    stp_kv kv_[] = {__VA_ARGS__};                                                                  \
    stp_log_kv(STP_LOG_INFO, "sid1", ev, kv_, sizeof kv_ / sizeof *kv_);                           \
  } while (0)

Test(uphealth, unknown_until_an_event_and_unknown_names_refused) {
  uph_status s = get("m365");
  cr_assert_eq(s.state, UPH_UNKNOWN);
  cr_assert_eq(s.last_success, 0);
  cr_assert_eq(s.last_failure, 0);
  cr_assert_str_eq(s.last_error, "");
  uph_status x = {.state = UPH_UP};
  cr_assert_eq(uphealth_get("nope", &x), -1);
  cr_assert_eq(x.state, UPH_UP, "untouched");
  cr_assert_eq(uphealth_get(NULL, &x), -1);
  cr_assert_eq(uphealth_count(), 3);
  cr_assert_str_eq(uphealth_name(1), "graph");
  cr_assert_null(uphealth_name(3));
  LOG("upstream-failed", {"upstream", "nope"}, {"reason", "connect"});
  cr_assert_eq(get("m365").state, UPH_UNKNOWN);
}

Test(uphealth, delivered_message_is_a_success_other_results_are_not) {
  LOG("message", {"upstream", "m365"}, {"result", "rejected"}, {"reply", "550 no"});
  cr_assert_eq(get("m365").state, UPH_UNKNOWN);
  fake_now = 1234;
  LOG("message", {"client", "1.2.3.4"}, {"upstream", "m365"}, {"result", "delivered"});
  uph_status s = get("m365");
  cr_assert_eq(s.state, UPH_UP);
  cr_assert_eq(s.last_success, 1234);
  cr_assert_eq(s.down_since, 0);
  LOG("message", {"upstream", "-"}, {"result", "delivered"});
  cr_assert_eq(get("graph").state, UPH_UNKNOWN);
}

Test(uphealth, provider_refusal_sets_reason_words_and_hint_then_success_clears_the_run) {
  fake_now = 2000;
  LOG("upstream-failed", {"id", NULL}, {"upstream", "m365"}, {"host", "smtp.office365.com"},
      {"reason", "m365-5.7.139-smtp-auth-disabled"}, {"failure", "auth"}, {"phase", "auth"},
      {"provider", "Microsoft 365"},
      {"provider_reply", "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is "
                         "disabled for the Tenant."},
      {"hint", "turn on Authenticated SMTP for the mailbox"});
  uph_status s = get("m365");
  cr_assert_eq(s.state, UPH_DOWN);
  cr_assert_eq(s.last_failure, 2000);
  cr_assert_eq(s.down_since, 2000);
  cr_assert_str_eq(s.last_reason, "m365-5.7.139-smtp-auth-disabled");
  cr_assert_str_eq(s.last_error, "m365-5.7.139-smtp-auth-disabled: 535 5.7.139 Authentication "
                                 "unsuccessful, SmtpClientAuthentication is disabled for the "
                                 "Tenant.");
  cr_assert_str_eq(s.hint, "turn on Authenticated SMTP for the mailbox");
  cr_assert(s.credentials_refused);
  cr_assert_eq(s.failures, 1);

  fake_now = 2100; /* the back-off line keeps the first failure's words and start */
  LOG("upstream-backoff", {"upstream", "m365"}, {"reason", "auth"}, {"skip_ms", "30000"});
  fake_now = 2200;
  LOG("upstream-failed", {"upstream", "m365"}, {"host", "h"}, {"reason", "connect"},
      {"detail", "connection refused"});
  s = get("m365");
  cr_assert_eq(s.down_since, 2000, "the run started at the first failure");
  cr_assert_eq(s.last_failure, 2200);
  cr_assert_str_eq(s.last_error, "connect: connection refused");
  cr_assert_str_eq(s.hint, "", "no stale hint");
  cr_assert_not(s.credentials_refused);
  cr_assert_eq(s.failures, 2);

  fake_now = 2300;
  LOG("upstream-recovered", {"upstream", "m365"});
  s = get("m365");
  cr_assert_eq(s.state, UPH_UP);
  cr_assert_eq(s.last_success, 2300);
  cr_assert_eq(s.last_failure, 2200, "kept for the page");
  cr_assert_eq(s.down_since, 0);
  cr_assert_eq(s.failures, 0);
  cr_assert_str_eq(s.last_error, "connect: connection refused", "the last error stays shown");
}

Test(uphealth, passthrough_auth_failure_is_the_device_s) {
  LOG("upstream-failed", {"upstream", "pass"}, {"reason", "auth"}, {"detail", "535 bad"});
  cr_assert_eq(get("pass").state, UPH_UNKNOWN);
  LOG("upstream-failed", {"upstream", "pass"}, {"reason", "tls"}, {"detail", "handshake"});
  cr_assert_eq(get("pass").state, UPH_DOWN);
}

Test(uphealth, api_events_and_spool_and_probe) {
  LOG("api-refused", {"upstream", "graph"}, {"api", "sendMail"}, {"reply", "554"},
      {"reason", "token-refused-twice"}, {"code", "InvalidAuthenticationToken"},
      {"hint", "check the app registration"});
  uph_status s = get("graph");
  cr_assert_eq(s.state, UPH_DOWN);
  cr_assert_str_eq(s.last_error, "token-refused-twice: InvalidAuthenticationToken");
  cr_assert(s.credentials_refused);
  fake_now = 3000;
  LOG("api-sent", {"upstream", "graph"}, {"api", "sendMail"});
  cr_assert_eq(get("graph").state, UPH_UP);
  cr_assert_eq(get("graph").last_success, 3000);
  LOG("probe", {"upstream", "graph"}, {"result", "failed"}, {"reason", "api-deferred"},
      {"reply", "503 ServiceUnavailable"}, {"hint", "wait"});
  s = get("graph");
  cr_assert_eq(s.state, UPH_DOWN);
  cr_assert_str_eq(s.last_error, "api-deferred: 503 ServiceUnavailable");
  cr_assert_str_eq(s.hint, "wait");
  fake_now = 3100;
  LOG("probe", {"upstream", "graph"}, {"result", "ok"});
  cr_assert_eq(get("graph").state, UPH_UP);
  LOG("spool-deferred", {"id", "x"}, {"upstream", "m365"}, {"reply", "451"});
  cr_assert_eq(get("m365").state, UPH_UNKNOWN);
  LOG("spool-delivered", {"id", "x"}, {"upstream", "m365"}, {"reply", "250 ok"});
  cr_assert_eq(get("m365").state, UPH_UP);
}

Test(uphealth, oauth_token_lifetimes_and_refusal) {
  fake_now = 5000;
  LOG("oauth2-token", {"upstream", "graph"}, {"source", "oauth2"}, {"expires_in", "3599"});
  cr_assert_eq(get("graph").token_expiry, 8599);
  cr_assert_eq(get("graph").state, UPH_UNKNOWN, "a token is not a delivery");
  LOG("oauth2-token", {"upstream", "graph"}, {"expires_in", "3599"}, {"expires_at", "9000"},
      {"refresh_token_expires_at", "90000"});
  cr_assert_eq(get("graph").token_expiry, 9000);
  cr_assert_eq(get("graph").refresh_token_expiry, 90000);
  LOG("oauth2-token", {"upstream", "graph"}, {"expires_in", "junk"});
  cr_assert_eq(get("graph").token_expiry, 0, "unknown lifetime");
  cr_assert_eq(get("graph").refresh_token_expiry, 90000, "kept when not said");
  LOG("oauth2-failed", {"upstream", "graph"}, {"source", "oauth2"}, {"endpoint", "https://t"},
      {"reason", "AADSTS700082: The refresh token has expired"}, {"error", "invalid_grant"});
  uph_status s = get("graph");
  cr_assert_eq(s.state, UPH_DOWN);
  cr_assert_str_eq(s.last_error, "invalid_grant: AADSTS700082: The refresh token has expired");
  cr_assert(s.credentials_refused);
  cr_assert(strstr(s.hint, "oauth2 login"));
  LOG("oauth2-failed", {"upstream", "graph"}, {"reason", "connect: refused"});
  s = get("graph");
  cr_assert_not(s.credentials_refused);
  cr_assert_str_eq(s.last_error, "oauth2-failed: connect: refused");
}

Test(uphealth, reload_keeps_records_by_name_and_bounds_strings) {
  char big[1000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  LOG("upstream-failed", {"upstream", "m365"}, {"reason", big}, {"detail", big}, {"hint", big});
  uph_status s = get("m365");
  cr_assert_eq(strlen(s.last_error), sizeof s.last_error - 1);
  cr_assert_eq(strlen(s.hint), sizeof s.hint - 1);
  LOG("message", {"upstream", "graph"}, {"result", "delivered"});
  stp_upstream_cfg v[2] = {{.name = "new"}, {.name = "m365", .has_auth = true}};
  stp_config c2 = {.upstreams = v, .n_upstreams = 2};
  uphealth_reset(&c2);
  cr_assert_eq(uphealth_count(), 2);
  cr_assert_eq(get("m365").state, UPH_DOWN, "kept");
  cr_assert_eq(get("new").state, UPH_UNKNOWN);
  uph_status x;
  cr_assert_eq(uphealth_get("graph", &x), -1, "dropped");
  cr_assert_str_eq(uph_state_name(UPH_DOWN), "down");
}
