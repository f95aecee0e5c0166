/* test_failover.c - the walk along a route's upstreams that the relay and
 * --test-route share: order, back-off skipping and recording, summary. */
#include <criterion/criterion.h>
#include <string.h>

#include "smtp-tls-proxy/failover.h"

static stp_config C;
static stp_upstream_cfg U[3];
static stp_route_cfg R;
static size_t ORDER[3] = {0, 1, 2};
static backoff_state B[3];

static void setup(void) {
  memset(&C, 0, sizeof C);
  memset(U, 0, sizeof U);
  memset(&R, 0, sizeof R);
  memset(B, 0, sizeof B);
  U[0].name = "a587";
  U[1].name = "a465";
  U[2].name = "b";
  R.name = "printers";
  R.upstreams = ORDER;
  R.n_upstreams = 3;
  C.upstreams = U;
  C.n_upstreams = 3;
  C.routes = &R;
  C.n_routes = 1;
}

TestSuite(failover, .init = setup);

Test(failover, first_upstream_when_all_healthy) {
  failover f;
  failover_begin(&f, &C, 0);
  cr_assert_eq(failover_pick(&f, B, 1000), 0);
  cr_assert_not(failover_moved(&f));
  cr_assert_str_eq(f.skipped, "");
}

Test(failover, failure_before_ready_backs_off_and_moves_on) {
  failover f;
  failover_begin(&f, &C, 0);
  cr_assert_eq(failover_pick(&f, B, 1000), 0);
  uint64_t skip;
  cr_assert(failover_failed(&f, B, "connect", true, true, 1000, &skip));
  cr_assert_eq(skip, BACKOFF_BASE_MS, "the first failure starts a 30 s back-off");
  cr_assert_eq(failover_pick(&f, B, 1000), 1);
  cr_assert(failover_moved(&f));
  cr_assert_eq(f.prev, 0);
  cr_assert_str_eq(f.skipped, "a587:connect");
  /* The next attempt (another session) skips it while it backs off. */
  failover g;
  failover_begin(&g, &C, 0);
  cr_assert_eq(failover_pick(&g, B, 2000), 1);
  cr_assert_str_eq(g.skipped, "a587:backoff");
  /* After the back-off it is tried first again. */
  failover h;
  failover_begin(&h, &C, 0);
  cr_assert_eq(failover_pick(&h, B, 1000 + BACKOFF_BASE_MS), 0);
}

Test(failover, all_backing_off_is_minus_one) {
  for (int i = 0; i < 3; i++)
    backoff_failed(&B[i], 500);
  failover f;
  failover_begin(&f, &C, 0);
  cr_assert_eq(failover_pick(&f, B, 1000), -1);
  cr_assert_str_eq(f.skipped, "a587:backoff,a465:backoff,b:backoff");
}

Test(failover, failure_after_ready_neither_moves_nor_backs_off) {
  failover f;
  failover_begin(&f, &C, 0);
  failover_pick(&f, B, 1000);
  uint64_t skip;
  cr_assert_not(failover_failed(&f, B, "closed", false, true, 1000, &skip));
  cr_assert_eq(skip, 0);
  cr_assert_not(backoff_active(&B[0], 1000));
  cr_assert_str_eq(f.skipped, "a587:closed");
}

Test(failover, uncounted_failure_moves_on_without_back_off) {
  /* A device's own passthrough password refused: not the upstream's fault. */
  failover f;
  failover_begin(&f, &C, 0);
  failover_pick(&f, B, 1000);
  uint64_t skip;
  cr_assert(failover_failed(&f, B, "auth", true, false, 1000, &skip));
  cr_assert_eq(skip, 0);
  cr_assert_not(backoff_active(&B[0], 1000));
  cr_assert_eq(failover_pick(&f, B, 1000), 1);
}

Test(failover, last_upstream_failing_ends_the_walk) {
  failover f;
  failover_begin(&f, &C, 0);
  uint64_t skip;
  for (int i = 0; i < 2; i++) {
    failover_pick(&f, B, 1000);
    cr_assert(failover_failed(&f, B, "tls", true, true, 1000, &skip));
  }
  cr_assert_eq(failover_pick(&f, B, 1000), 2);
  cr_assert_not(failover_failed(&f, B, "greeting", true, true, 1000, &skip));
  cr_assert_str_eq(f.skipped, "a587:tls,a465:tls,b:greeting");
}
