/* test_ratelimit.c - rate parsing (the one parser, config.h's), token buckets with a fake clock, and
 * the bounded per-key table. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "smtp-tls-proxy/config.h"
#include "smtp-tls-proxy/ratelimit.h"
#include "smtp-tls-proxy/util.h"

Test(ratelimit, parse_accepts) {
  static const struct {
    const char *s;
    uint32_t count;
    uint64_t ms;
  } ok[] = {
      {"100/1m", 100, 60000},     {"10/s", 10, 1000},
      {"1000/1h", 1000, 3600000}, {"5/10s", 5, 10000},
      {"1/5m", 1, 300000},        {"2/d", 2, 86400000},
      {"1/m", 1, 60000},          {"3/h", 3, 3600000},
      {"7/1d", 7, 86400000},      {"4294967295/s", 4294967295u, 1000},
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    uint32_t c = 0;
    uint64_t p = 0;
    cr_assert_eq(stp_parse_rate(ok[i].s, &c, &p), STP_OK, "%s", ok[i].s);
    cr_assert_eq(c, ok[i].count, "%s", ok[i].s);
    cr_assert_eq(p, ok[i].ms, "%s", ok[i].s);
  }
}

Test(ratelimit, parse_refuses) {
  static const char *bad[] = {
      "",
      "10",
      "/s",
      "0/s",
      "-1/s",
      "10/",
      "10/0s",
      "10/x",
      "10/1x",
      " 10/s",
      "10 /s",
      "10/ s",
      "10/s ",
      "10/-1s",
      "1.5/s",
      "10//s",
      "10/s/s",
      "4294967296/s",
      "99999999999999999999/s",
      "4294967295/1000000d",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    uint32_t c = 77;
    uint64_t p = 77;
    cr_assert_eq(stp_parse_rate(bad[i], &c, &p), STP_ESYNTAX, "[%s]", bad[i]);
    cr_assert_eq(c, 77, "output untouched on error [%s]", bad[i]);
    cr_assert_eq(p, 77);
  }
  uint32_t c;
  uint64_t p;
  cr_assert_eq(stp_parse_rate(NULL, &c, &p), STP_ESYNTAX);
}

Test(ratelimit, burst_then_exact_wait) {
  ratelimit_bucket b;
  ratelimit_init(&b, 1000);
  for (int i = 0; i < 100; i++)
    cr_assert_eq(ratelimit_take(&b, 100, 60000, 1000), 0, "take %d of the burst", i);
  /* 100/1m: one token every 600 ms */
  cr_assert_eq(ratelimit_take(&b, 100, 60000, 1000), 600);
  cr_assert_eq(ratelimit_take(&b, 100, 60000, 1001), 599);
  cr_assert_eq(ratelimit_take(&b, 100, 60000, 1599), 1, "never 0 while refused");
  cr_assert_eq(ratelimit_take(&b, 100, 60000, 1600), 0, "refilled after period/N");
  cr_assert_eq(ratelimit_take(&b, 100, 60000, 1600), 600);
}

Test(ratelimit, wait_rounds_up_and_is_exact) {
  /* 3/10s: 3333.33 ms per token */
  ratelimit_bucket b;
  ratelimit_init(&b, 0);
  for (int i = 0; i < 3; i++)
    cr_assert_eq(ratelimit_take(&b, 3, 10000, 0), 0);
  uint64_t w = ratelimit_take(&b, 3, 10000, 0);
  cr_assert_eq(w, 3334);
  ratelimit_bucket probe = b;
  cr_assert_neq(ratelimit_take(&probe, 3, 10000, w - 1), 0, "one ms early is refused");
  cr_assert_eq(ratelimit_take(&b, 3, 10000, w), 0, "exactly at the wait is allowed");
  /* the 0.67 ms of credit left over counts: next token at 6666.67 */
  cr_assert_eq(ratelimit_take(&b, 3, 10000, w), 6667 - w);
}

Test(ratelimit, refill_is_continuous_and_capped) {
  ratelimit_bucket b;
  ratelimit_init(&b, 0);
  for (int i = 0; i < 10; i++)
    cr_assert_eq(ratelimit_take(&b, 10, 1000, 0), 0);
  cr_assert_eq(ratelimit_take(&b, 10, 1000, 0), 100);
  /* 350 ms later: 3.5 tokens */
  for (int i = 0; i < 3; i++)
    cr_assert_eq(ratelimit_take(&b, 10, 1000, 350), 0);
  cr_assert_eq(ratelimit_take(&b, 10, 1000, 350), 50);
  /* an hour idle refills to 10, not more */
  for (int i = 0; i < 10; i++)
    cr_assert_eq(ratelimit_take(&b, 10, 1000, 3600000), 0);
  cr_assert_neq(ratelimit_take(&b, 10, 1000, 3600000), 0);
  cr_assert(!ratelimit_full(&b, 10, 1000, 3600999));
  cr_assert(ratelimit_full(&b, 10, 1000, 3601000));
}

Test(ratelimit, one_per_period) {
  ratelimit_bucket b;
  ratelimit_init(&b, 5);
  cr_assert_eq(ratelimit_take(&b, 1, 86400000, 5), 0);
  cr_assert_eq(ratelimit_take(&b, 1, 86400000, 5), 86400000);
  cr_assert_eq(ratelimit_take(&b, 1, 86400000, 86400004), 1);
  cr_assert_eq(ratelimit_take(&b, 1, 86400000, 86400005), 0);
}

Test(ratelimit, clock_going_back_refills_nothing) {
  ratelimit_bucket b;
  ratelimit_init(&b, 10000);
  cr_assert_eq(ratelimit_take(&b, 1, 1000, 10000), 0);
  cr_assert_eq(ratelimit_take(&b, 1, 1000, 5000), 1000);
  cr_assert_eq(ratelimit_take(&b, 1, 1000, 10500), 500);
  cr_assert_eq(ratelimit_take(&b, 1, 1000, 11000), 0);
}

Test(ratelimit, no_limit_and_huge_rates) {
  ratelimit_bucket b;
  ratelimit_init(&b, 0);
  for (int i = 0; i < 1000; i++)
    cr_assert_eq(ratelimit_take(&b, 0, 1000, 0), 0);
  cr_assert_eq(ratelimit_take(&b, 5, 0, 0), 0);
  /* count * period beyond 2^62 given directly: no overflow, still limits */
  ratelimit_init(&b, 0);
  cr_assert_eq(ratelimit_take(&b, 1, UINT64_MAX, 0), 0);
  cr_assert_neq(ratelimit_take(&b, 1, UINT64_MAX, 0), 0);
  ratelimit_init(&b, 0);
  for (int i = 0; i < 1000; i++)
    cr_assert_eq(ratelimit_take(&b, UINT32_MAX, UINT64_MAX / 2, 0), 0);
}

Test(ratelimit, rate_change_clamps_credit) {
  ratelimit_bucket b;
  ratelimit_init(&b, 0);
  cr_assert_eq(ratelimit_take(&b, 100, 1000, 0), 0); /* 99 left */
  /* reloaded as 2/s: at most 2 */
  cr_assert_eq(ratelimit_take(&b, 2, 1000, 0), 0);
  cr_assert_eq(ratelimit_take(&b, 2, 1000, 0), 0);
  cr_assert_eq(ratelimit_take(&b, 2, 1000, 0), 500);
}

Test(ratelimit, table_keys_are_separate) {
  ratelimit_table t;
  ratelimit_table_init(&t, 16);
  cr_assert_eq(ratelimit_table_take(&t, "192.168.1.10", 2, 1000, 0), 0);
  cr_assert_eq(ratelimit_table_take(&t, "192.168.1.10", 2, 1000, 0), 0);
  cr_assert_eq(ratelimit_table_take(&t, "192.168.1.10", 2, 1000, 0), 500);
  cr_assert_eq(ratelimit_table_take(&t, "192.168.1.11", 2, 1000, 0), 0);
  cr_assert_eq(ratelimit_table_take(&t, "2001:db8::1", 2, 1000, 0), 0);
  cr_assert_eq(ratelimit_table_size(&t), 3);
  cr_assert_eq(ratelimit_table_take(&t, "192.168.1.10", 2, 1000, 500), 0);
  ratelimit_table_free(&t);
}

Test(ratelimit, table_long_keys_are_truncated_not_overflowed) {
  ratelimit_table t;
  ratelimit_table_init(&t, 4);
  char a[200], b[200];
  memset(a, 'k', sizeof a - 1);
  a[sizeof a - 1] = '\0';
  memcpy(b, a, sizeof b);
  b[150] = 'x'; /* differs only beyond RATELIMIT_KEY_MAX */
  cr_assert_eq(ratelimit_table_take(&t, a, 1, 1000, 0), 0);
  cr_assert_eq(ratelimit_table_take(&t, b, 1, 1000, 0), 1000, "same bucket");
  cr_assert_eq(ratelimit_table_size(&t), 1);
  ratelimit_table_free(&t);
}

Test(ratelimit, table_stays_bounded_with_10000_keys) {
  ratelimit_table t;
  ratelimit_table_init(&t, 0);
  cr_assert_eq(t.capacity, RATELIMIT_TABLE_DEFAULT_CAPACITY);
  const ratelimit_entry *mem = t.e;
  char key[32];
  for (uint32_t i = 0; i < 10000; i++) {
    snprintf(key, sizeof key, "10.%u.%u.%u", (i >> 16) & 255, (i >> 8) & 255, i & 255);
    /* 2/1h: each key uses one token and stays limited for the test */
    cr_assert_eq(ratelimit_table_take(&t, key, 2, 3600000, i), 0, "%s", key);
    cr_assert_leq(ratelimit_table_size(&t), RATELIMIT_TABLE_DEFAULT_CAPACITY);
  }
  cr_assert_eq(ratelimit_table_size(&t), RATELIMIT_TABLE_DEFAULT_CAPACITY);
  cr_assert_eq(t.evictions, 10000 - RATELIMIT_TABLE_DEFAULT_CAPACITY);
  cr_assert_eq(t.e, mem, "never reallocated");
  /* the most recent keys are still there with their state */
  for (uint32_t i = 10000 - 100; i < 10000; i++) {
    snprintf(key, sizeof key, "10.%u.%u.%u", (i >> 16) & 255, (i >> 8) & 255, i & 255);
    cr_assert_eq(ratelimit_table_take(&t, key, 2, 3600000, 10000), 0, "second token of %s", key);
    cr_assert_neq(ratelimit_table_take(&t, key, 2, 3600000, 10000), 0, "%s still limited", key);
  }
  /* every key can still be found: chains and recency list are consistent */
  uint32_t n = 0;
  for (uint32_t i = t.newest; i != UINT32_MAX; i = t.e[i].older)
    n++;
  cr_assert_eq(n, RATELIMIT_TABLE_DEFAULT_CAPACITY);
  ratelimit_table_free(&t);
}

Test(ratelimit, table_evicts_a_full_entry_before_a_limited_one) {
  ratelimit_table t;
  ratelimit_table_init(&t, 3);
  /* 10/10s. "hog" empties its bucket at t=0 (full again at 10000);
   * "light" uses one token at t=100 (full again at 1100). */
  for (int i = 0; i < 10; i++)
    cr_assert_eq(ratelimit_table_take(&t, "hog", 10, 10000, 0), 0);
  cr_assert_eq(ratelimit_table_take(&t, "light", 10, 10000, 100), 0);
  cr_assert_eq(ratelimit_table_take(&t, "other", 10, 10000, 200), 0);
  /* at 1150 "hog" is the least recent but not full; "light" is full */
  cr_assert_eq(ratelimit_table_take(&t, "new", 10, 10000, 1150), 0);
  cr_assert_eq(t.evictions, 1);
  /* hog has refilled 1.15 tokens, not 10: a second take must wait */
  cr_assert_eq(ratelimit_table_take(&t, "hog", 10, 10000, 1150), 0);
  cr_assert_eq(ratelimit_table_take(&t, "hog", 10, 10000, 1150), 850, "hog kept its limit");
  cr_assert_eq(t.evictions, 1, "hog was still there");
  /* with nothing full (other is full at 1200), the least recent goes: "other" */
  cr_assert_eq(ratelimit_table_take(&t, "newer", 10, 10000, 1199), 0);
  cr_assert_eq(t.evictions, 2);
  uint32_t found_other = 0;
  for (uint32_t i = 0; i < t.used; i++)
    found_other += strcmp(t.e[i].key, "other") == 0;
  cr_assert_eq(found_other, 0);
  ratelimit_table_free(&t);
}

Test(ratelimit, peek_never_takes) {
  ratelimit_table t;
  ratelimit_table_init(&t, 16);
  cr_assert_eq(ratelimit_table_peek(&t, "10.0.0.1", 2, 1000, 0), 0, "unknown key: full");
  cr_assert_eq(ratelimit_table_take(&t, "10.0.0.1", 2, 1000, 0), 0);
  cr_assert_eq(ratelimit_table_take(&t, "10.0.0.1", 2, 1000, 0), 0);
  for (int i = 0; i < 5; i++)
    cr_assert_eq(ratelimit_table_peek(&t, "10.0.0.1", 2, 1000, 0), 500, "peeking is free");
  cr_assert_eq(ratelimit_table_peek(&t, "10.0.0.1", 2, 1000, 500), 0, "a token is back");
  cr_assert_eq(ratelimit_table_size(&t), 1, "peek adds no entries");
  ratelimit_table_free(&t);
}
