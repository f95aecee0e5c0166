/* test_backoff.c - the upstream back-off schedule and its state changes. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "smtp-tls-proxy/backoff.h"
#include "smtp-tls-proxy/log.h"

Test(backoff, schedule_doubles_to_the_cap) {
  static const uint64_t want[] = {30000, 60000, 120000, 240000, 480000, 600000, 600000};
  for (unsigned n = 1; n <= 7; n++)
    cr_assert_eq(backoff_delay_ms(n), want[n - 1], "failure %u", n);
  cr_assert_eq(backoff_delay_ms(1000), 600000);
  cr_assert_eq(backoff_delay_ms(~0u), 600000);
}

Test(backoff, consecutive_failures_after_each_expiry) {
  backoff_state b = {0};
  uint64_t now = 5000;
  static const uint64_t want[] = {30000, 60000, 120000, 240000, 480000, 600000, 600000};
  for (unsigned i = 0; i < 7; i++) {
    bool changed = backoff_failed(&b, now);
    cr_assert_eq(changed, i == 0, "only the first failure is a state change (%u)", i);
    cr_assert_eq(b.failures, i + 1);
    cr_assert_eq(backoff_remaining(&b, now), want[i], "failure %u", i + 1);
    cr_assert(backoff_active(&b, now));
    cr_assert(backoff_active(&b, now + want[i] - 1));
    cr_assert_not(backoff_active(&b, now + want[i]));
    cr_assert_eq(backoff_remaining(&b, now + want[i] - 1), 1);
    cr_assert_eq(backoff_remaining(&b, now + want[i]), 0);
    cr_assert_eq(backoff_remaining(&b, now + want[i] + 5), 0);
    now += want[i]; /* retried when the back-off ends, fails again */
  }
}

Test(backoff, failures_during_backoff_do_not_count) {
  backoff_state b = {0};
  cr_assert(backoff_failed(&b, 1000));
  cr_assert_not(backoff_failed(&b, 1001));
  cr_assert_not(backoff_failed(&b, 30999));
  cr_assert_eq(b.failures, 1);
  cr_assert_eq(b.until_ms, 31000);
  cr_assert_not(backoff_failed(&b, 31000));
  cr_assert_eq(b.failures, 2);
  cr_assert_eq(b.until_ms, 91000);
}

Test(backoff, success_resets) {
  backoff_state b = {0};
  cr_assert_not(backoff_succeeded(&b), "healthy stays healthy: no state change");
  cr_assert_not(backoff_active(&b, 0));
  cr_assert_eq(backoff_remaining(&b, 0), 0);
  cr_assert(backoff_failed(&b, 0));
  cr_assert(backoff_failed(&b, 30000) == false);
  cr_assert(backoff_succeeded(&b), "failing -> healthy is a state change");
  cr_assert_eq(b.failures, 0);
  cr_assert_not(backoff_active(&b, 30001));
  cr_assert_not(backoff_succeeded(&b));
  /* after a success the schedule starts over at 30 s */
  cr_assert(backoff_failed(&b, 100000));
  cr_assert_eq(backoff_remaining(&b, 100000), 30000);
}

Test(backoff, clock_near_the_end_saturates) {
  backoff_state b = {0};
  cr_assert(backoff_failed(&b, UINT64_MAX - 10));
  cr_assert_eq(b.until_ms, UINT64_MAX);
  cr_assert(backoff_active(&b, UINT64_MAX - 1));
}

static int g_recovered, g_started;
static char g_skip[24];

static void count_events(void *ctx, int level, const char *sid, const char *event, const stp_kv *kv,
                         size_t n) {
  (void)ctx;
  (void)level;
  (void)sid;
  if (!strcmp(event, "upstream-recovered"))
    g_recovered++;
  if (!strcmp(event, "upstream-backoff")) {
    g_started++;
    const char *s = stp_kv_get(kv, n, "skip_ms");
    snprintf(g_skip, sizeof g_skip, "%s", s ? s : "");
  }
}

/* Every path that talks to an upstream reports through these two, so the
 * events uphealth and the alerts read are logged once per change. */
Test(backoff, reports_log_each_change_once) {
  cr_assert_eq(stp_log_observe(count_events, NULL), 0);
  backoff_state b = {0};
  backoff_report_ready(&b, "up", NULL);
  cr_expect_eq(g_recovered, 0, "healthy to healthy is no event");
  backoff_report_started("up", "connect", 0, NULL);
  cr_expect_eq(g_started, 0, "no back-off began: no event");
  cr_assert(backoff_failed(&b, 1000));
  backoff_report_started("up", "connect", backoff_remaining(&b, 1000), "S1");
  cr_expect_eq(g_started, 1);
  cr_expect_str_eq(g_skip, "30000");
  backoff_report_ready(&b, "up", NULL);
  backoff_report_ready(&b, "up", NULL);
  cr_expect_eq(g_recovered, 1, "failing to healthy is one event");
  cr_expect_eq(b.failures, 0u);
  stp_log_unobserve(count_events, NULL);
}
