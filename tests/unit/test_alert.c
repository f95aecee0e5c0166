/* test_alert.c - alert decisions with a fake clock: which events alert,
 * the dedupe over min_interval, alert_after, recovery, the spool's 80%,
 * refresh-token expiry, the bounded queue, the texts and the JSON. The
 * events go through the real log module to uphealth and then here, as in
 * the proxy. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp-tls-proxy/alert.h"
#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/uphealth.h"

static int64_t now_s;
static int64_t clock_fn(void) {
  return now_s;
}

static stp_upstream_cfg U[2];
static stp_config C;
static stp_alerts_cfg A = {.min_interval_ms = 3600000, .alert_after_ms = 300000};
static alerter *AL;

static void obs(void *ctx, int level, const char *sid, const char *event, const stp_kv *kv,
                size_t n) {
  (void)ctx;
  (void)level;
  (void)sid;
  alerter_observe(AL, now_s, event, kv, n);
}

static void setup(void) {
  memset(U, 0, sizeof U);
  U[0].name = "m365";
  U[0].has_auth = true;
  U[1].name = "gmail";
  U[1].kind = STP_UP_GMAIL;
  C.upstreams = U;
  C.n_upstreams = 2;
  now_s = 1800000000;
  uphealth_set_clock(clock_fn);
  uphealth_reset(&C);
  stp_log_setup(STP_LOG_ERROR, 0, -1);
  cr_assert_eq(uphealth_install(), 0);
  AL = alerter_new(&A, "proxy.example");
  cr_assert_eq(stp_log_observe(obs, NULL), 0);
}

static void teardown(void) {
  alerter_free(AL);
  uphealth_reset(NULL);
  uphealth_set_clock(NULL);
}

TestSuite(alert, .init = setup, .fini = teardown);

#define LOG(ev, ...)                                                                               \
  do {                                                                                             \
    stp_kv kv_[] = {__VA_ARGS__};                                                                  \
    stp_log_kv(STP_LOG_INFO, NULL, ev, kv_, sizeof kv_ / sizeof *kv_);                             \
  } while (0)

#define AUTH_FAIL(up)                                                                              \
  LOG("upstream-failed", {"upstream", up}, {"reason", "m365-5.7.139-smtp-auth-disabled"},          \
      {"failure", "auth"}, {"phase", "auth"},                                                      \
      {"provider_reply", "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is "   \
                         "disabled for the Tenant."},                                              \
      {"hint", "enable Authenticated SMTP for the mailbox"})

static alert next(void) {
  alert al;
  cr_assert(alerter_next(AL, &al), "an alert was expected");
  return al;
}

static void none(void) {
  alert al;
  cr_assert_not(alerter_next(AL, &al), "unexpected alert %s: %s", alert_event_name(al.event),
                al.text);
}

Test(alert, credentials_refused_at_once_then_once_per_min_interval) {
  AUTH_FAIL("m365");
  alert al = next();
  cr_assert_eq(al.event, ALERT_CREDENTIALS_REFUSED);
  cr_assert_not(al.suppressed);
  cr_assert_str_eq(al.upstream, "m365");
  cr_assert_str_eq(al.hint, "enable Authenticated SMTP for the mailbox");
  cr_assert_str_eq(al.text,
                   "proxy.example: upstream m365 refused the proxy's credentials "
                   "(m365-5.7.139-smtp-auth-disabled: 535 5.7.139 Authentication unsuccessful, "
                   "SmtpClientAuthentication is disabled for the Tenant.). Fix: enable "
                   "Authenticated SMTP for the mailbox");
  none();
  now_s += 60;
  AUTH_FAIL("m365");
  al = next();
  cr_assert(al.suppressed, "within min_interval: suppressed (and logged by the caller)");
  cr_assert_eq(al.last_sent, 1800000000);
  LOG("upstream-backoff", {"upstream", "m365"}, {"reason", "auth"});
  none();
  now_s += 3600;
  AUTH_FAIL("m365");
  al = next();
  cr_assert_not(al.suppressed, "an hour later it goes again");
  cr_assert_eq(next().event, ALERT_UPSTREAM_DOWN, "and it has been down for over alert_after");
  /* A connection failure is no credentials alert. */
  LOG("upstream-failed", {"upstream", "gmail"}, {"reason", "connect"}, {"detail", "refused"});
  none();
}

Test(alert, invalid_grant_and_a_token_refused_twice) {
  LOG("oauth2-failed", {"upstream", "gmail"}, {"reason", "Token has been expired or revoked."},
      {"error", "invalid_grant"});
  alert al = next();
  cr_assert_eq(al.event, ALERT_CREDENTIALS_REFUSED);
  cr_assert_str_eq(al.reason, "invalid_grant: Token has been expired or revoked.");
  cr_assert(strstr(al.hint, "oauth2 login"));
  LOG("oauth2-failed", {"upstream", "m365"}, {"reason", "connect: refused"});
  none();
  LOG("api-refused", {"upstream", "m365"}, {"reason", "token-refused-twice"},
      {"code", "InvalidAuthenticationToken"}, {"hint", "check the app registration"});
  al = next();
  cr_assert_eq(al.event, ALERT_CREDENTIALS_REFUSED);
  cr_assert_str_eq(al.upstream, "m365");
}

Test(alert, upstream_down_after_alert_after_and_recovered) {
  int64_t t0 = now_s;
  LOG("upstream-failed", {"upstream", "m365"}, {"reason", "connect"}, {"detail", "refused"});
  alerter_tick(AL, now_s, NULL);
  none();
  now_s = t0 + 299;
  LOG("upstream-failed", {"upstream", "m365"}, {"reason", "timeout"}, {"detail", "30 s"});
  alerter_tick(AL, now_s, NULL);
  none();
  now_s = t0 + 300;
  alerter_tick(AL, now_s, NULL);
  alert al = next();
  cr_assert_eq(al.event, ALERT_UPSTREAM_DOWN);
  cr_assert_str_eq(al.text, "proxy.example: upstream m365 has been failing for 5m (timeout: 30 s)");
  cr_assert_str_eq(al.reason, "timeout: 30 s");
  now_s += 600;
  alerter_tick(AL, now_s, NULL);
  none();
  now_s += 60;
  LOG("message", {"upstream", "m365"}, {"result", "delivered"});
  al = next();
  cr_assert_eq(al.event, ALERT_UPSTREAM_RECOVERED);
  cr_assert_str_eq(al.text, "proxy.example: upstream m365 works again (it was failing for 16m)");
  alerter_tick(AL, now_s, NULL);
  none();
  /* A short failure that recovers before alert_after alerts nothing. */
  LOG("upstream-failed", {"upstream", "m365"}, {"reason", "connect"});
  now_s += 100;
  LOG("probe", {"upstream", "m365"}, {"result", "ok"});
  now_s += 1000;
  alerter_tick(AL, now_s, NULL);
  none();
}

Test(alert, suppressed_down_gets_no_recovered) {
  stp_alerts_cfg z = {.min_interval_ms = 3600000, .alert_after_ms = 0};
  alerter_set_cfg(AL, &z, "h");
  LOG("upstream-failed", {"upstream", "m365"}, {"reason", "connect"});
  cr_assert_eq(next().event, ALERT_UPSTREAM_DOWN);
  now_s += 10;
  LOG("probe", {"upstream", "m365"}, {"result", "ok"});
  cr_assert_eq(next().event, ALERT_UPSTREAM_RECOVERED);
  now_s += 10;
  LOG("upstream-failed", {"upstream", "m365"}, {"reason", "connect"});
  alert al = next();
  cr_assert_eq(al.event, ALERT_UPSTREAM_DOWN);
  cr_assert(al.suppressed);
  now_s += 10;
  LOG("probe", {"upstream", "m365"}, {"result", "ok"});
  none();
}

Test(alert, spool_filling_at_80_percent_rearmed_below_70) {
  alert_spool sp = {.messages = 79, .bytes = 10, .max_messages = 100, .max_size = 1000};
  alerter_tick(AL, now_s, &sp);
  none();
  sp.bytes = 800;
  alerter_tick(AL, now_s, &sp);
  alert al = next();
  cr_assert_eq(al.event, ALERT_SPOOL_FILLING);
  cr_assert_str_eq(al.upstream, "");
  cr_assert_str_eq(al.text, "proxy.example: the spool is 80% full (79 of 100 messages, 800 of "
                            "1000 bytes); at 100% devices get 452");
  cr_assert_neq(al.hint[0], '\0');
  sp.messages = 95;
  alerter_tick(AL, now_s, &sp);
  none();
  sp.messages = 69;
  sp.bytes = 0;
  alerter_tick(AL, now_s, &sp);
  sp.messages = 85;
  now_s += 7200;
  alerter_tick(AL, now_s, &sp);
  cr_assert_eq(next().event, ALERT_SPOOL_FILLING);
  alerter_tick(AL, now_s, &(alert_spool){0});
  none();
}

Test(alert, message_failed_from_the_spool_events) {
  LOG("spool-failed", {"id", "20261206-abc"}, {"route", "scan"}, {"upstream", "m365"},
      {"attempts", "1"}, {"reply", "550 5.7.60 SMTP; Client does not have permissions"});
  alert al = next();
  cr_assert_eq(al.event, ALERT_MESSAGE_FAILED);
  cr_assert_str_eq(al.text, "proxy.example: spooled message 20261206-abc was refused by upstream "
                            "m365: 550 5.7.60 SMTP; Client does not have permissions; a failure "
                            "notice was sent");
  cr_assert_neq(al.hint[0], '\0');
  LOG("spool-expired", {"id", "x2"}, {"route", "scan"}, {"attempts", "9"}, {"reply", "451 later"});
  al = next();
  cr_assert_eq(al.event, ALERT_MESSAGE_FAILED);
  cr_assert_str_eq(al.upstream, "");
  cr_assert(strstr(al.text, "x2 expired undelivered: 451 later"), "%s", al.text);
  LOG("spool-deferred", {"id", "x3"}, {"upstream", "m365"}, {"reply", "451"});
  none();
}

Test(alert, refresh_token_expiring_once_per_token) {
  char at[24];
  snprintf(at, sizeof at, "%lld", (long long)(now_s + 3 * 86400));
  LOG("oauth2-token", {"upstream", "gmail"}, {"expires_in", "3599"},
      {"refresh_token_expires_at", at});
  alerter_tick(AL, now_s, NULL);
  none();
  now_s += 86400 + 1;
  alerter_tick(AL, now_s, NULL);
  alert al = next();
  cr_assert_eq(al.event, ALERT_REFRESH_TOKEN_EXPIRING);
  cr_assert_str_eq(al.text, "proxy.example: the refresh token of upstream gmail expires in 1d 23h "
                            "(2027-01-18T08:00:00Z). Fix: sign in again: smtp-tls-proxy -c CONFIG "
                            "oauth2 login gmail");
  now_s += 7200;
  alerter_tick(AL, now_s, NULL);
  none();
}

Test(alert, queue_is_bounded_and_json_is_exact) {
  for (int i = 0; i < ALERT_QUEUE + 6; i++) {
    char id[16];
    snprintf(id, sizeof id, "m%d", i);
    LOG("spool-failed", {"id", id}, {"reply", "550 no"});
  }
  cr_assert_eq(alerter_dropped(AL), 6);
  alert al = next();
  cr_assert(strstr(al.text, "message m6 "), "the oldest went: %s", al.text);
  char *js = alert_json(&al, "proxy.example");
  cr_assert_str_eq(js, "{\"text\":\"proxy.example: spooled message m6 was refused: 550 no; a "
                       "failure notice was sent\",\"event\":\"message_failed\",\"upstream\":null,"
                       "\"reason\":\"refused: 550 no\",\"hint\":\"the upstream refused the "
                       "message for good (5xx): see the reply\",\"time\":\"2027-01-15T08:00:00Z\","
                       "\"host\":\"proxy.example\"}");
  free(js);
  alert q = {.event = ALERT_UPSTREAM_DOWN, .time = 0, .text = "a \"q\" \xc3\xa9"};
  js = alert_json(&q, "h");
  cr_assert(strstr(js, "\"text\":\"a \\\"q\\\" \\u00E9\""), "%s", js);
  free(js);
}
