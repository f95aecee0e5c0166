/* test_history.c - the delivery history: fed through the real log
 * module's observer hook by "message" events only, bounded fields and ring,
 * JSON as SPEC.md lists it; and the escaping it relies on. */
#include <criterion/criterion.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "smtp-tls-proxy/esc.h"
#include "smtp-tls-proxy/history.h"
#include "smtp-tls-proxy/log.h"

static int64_t fake_ms = 1765057200123; /* 2025-12-06T21:40:00.123Z */
static int64_t clock_fn(void) {
  return fake_ms;
}

static history H;

static void setup(void) {
  history_init(&H, 3, clock_fn);
  stp_log_setup(STP_LOG_ERROR, 0, -1); /* lines dropped; observers see all */
  cr_assert_eq(stp_log_observe(history_observe, &H), 0);
}

static void teardown(void) {
  stp_log_unobserve(history_observe, &H);
  history_free(&H);
}

TestSuite(history, .init = setup, .fini = teardown);

static void message(const char *sid, const char *result, const char *from, const char *spool_id) {
  stp_kv kv[] = {{"client", "192.0.2.7"},
                 {"from", from},
                 {"from_rewritten", NULL},
                 {"rcpts", "2"},
                 {"route", "scanners"},
                 {"upstream", "m365"},
                 {"tls", "TLSv1.3"},
                 {"size", "1234"},
                 {"result", result},
                 {"reply", "250 2.0.0 OK <id@x>"},
                 {"duration_ms", "87"},
                 {"_listener", "lan"},
                 {"_rcpt_list", "a@x.org,b@y.org"},
                 {"_spool_id", spool_id}};
  stp_log_kv(STP_LOG_INFO, sid, "message", kv, sizeof kv / sizeof *kv);
}

Test(history, keeps_every_field_of_the_message_event) {
  message("s1", "spooled", "dev@scan.lan", "0123456789abcdef");
  cr_assert_eq(H.n, 1);
  const history_entry *e = history_get(&H, 0);
  cr_assert_not_null(e);
  cr_assert_eq(e->time_ms, fake_ms);
  cr_assert_str_eq(history_field(e, HF_SID), "s1");
  cr_assert_str_eq(history_field(e, HF_CLIENT), "192.0.2.7");
  cr_assert_str_eq(history_field(e, HF_LISTENER), "lan");
  cr_assert_str_eq(history_field(e, HF_ROUTE), "scanners");
  cr_assert_str_eq(history_field(e, HF_UPSTREAM), "m365");
  cr_assert_str_eq(history_field(e, HF_FROM), "dev@scan.lan");
  cr_assert_str_eq(history_field(e, HF_FROM_REWRITTEN), "");
  cr_assert_str_eq(history_field(e, HF_RCPTS), "a@x.org,b@y.org");
  cr_assert_str_eq(history_field(e, HF_SPOOL_ID), "0123456789abcdef");
  cr_assert_eq(e->result, HR_SPOOLED);
  cr_assert_eq(e->size, 1234);
  cr_assert_eq(e->duration_ms, 87);
  cr_assert_eq(e->n_rcpts, 2);
}

Test(history, other_events_and_unknown_results_are_not_kept) {
  stp_kv kv[] = {{"result", "delivered"}};
  stp_log_kv(STP_LOG_INFO, "s", "spool-delivered", kv, 1);
  message("s", "exploded", "a@b", NULL);
  cr_assert_eq(H.n, 0);
  cr_assert_eq(H.total, 0);
}

Test(history, the_ring_keeps_the_newest_and_frees_the_rest) {
  const char *sids[] = {"a", "b", "c", "d", "e"};
  for (int i = 0; i < 5; i++)
    message(sids[i], "delivered", "x@y", NULL);
  cr_assert_eq(H.n, 3);
  cr_assert_eq(H.total, 5);
  cr_assert_str_eq(history_field(history_get(&H, 0), HF_SID), "e");
  cr_assert_str_eq(history_field(history_get(&H, 2), HF_SID), "c");
  cr_assert_null(history_get(&H, 3));
  size_t sum = 0;
  for (size_t i = 0; i < 3; i++)
    sum += history_get(&H, i)->bytes;
  cr_assert_eq(H.bytes, sum, "the byte count follows what is kept");
}

Test(history, fields_are_capped_on_a_character_boundary) {
  char from[1000];
  memset(from, 'a', sizeof from);
  memcpy(from + HISTORY_ADDR_MAX - 1, "\xC3\xA9", 2); /* é across the cap */
  from[sizeof from - 1] = '\0';
  message("s", "rejected", from, NULL);
  const history_entry *e = history_get(&H, 0);
  cr_assert_eq(strlen(history_field(e, HF_FROM)), HISTORY_ADDR_MAX - 1);
  cr_assert_leq(e->bytes, HISTORY_ENTRY_MAX);
}

Test(history, json_filters_by_result_and_limit) {
  message("a", "delivered", "x@y", NULL);
  message("b", "spooled", "x@y", "00000000000000aa");
  message("c", "delivered", "q\"<t>@y", NULL);
  stp_buf b;
  stp_buf_init(&b, 1 << 16);
  cr_assert_eq(history_json(&H, 1, HR_DELIVERED, &b), 0);
  stp_buf_append(&b, "", 1);
  cr_assert_str_eq(b.data,
                   "[{\"time\":\"2025-12-06T21:40:00.123Z\",\"sid\":\"c\",\"client\":\"192.0.2.7\","
                   "\"listener\":\"lan\",\"route\":\"scanners\",\"upstream\":\"m365\","
                   "\"from\":\"q\\\"\\u003ct\\u003e@y\",\"from_rewritten\":null,"
                   "\"reply\":\"250 2.0.0 OK \\u003cid@x\\u003e\",\"spool_id\":null,"
                   "\"rcpts\":[\"a@x.org\",\"b@y.org\"],\"n_rcpts\":2,\"size\":1234,"
                   "\"result\":\"delivered\",\"duration_ms\":87}]");
  b.len = 0;
  cr_assert_eq(history_json(&H, 0, HR_SPOOLED, &b), 0);
  stp_buf_append(&b, "", 1);
  cr_assert_not_null(strstr(b.data, "\"spool_id\":\"00000000000000aa\""));
  cr_assert_null(strstr(b.data, "\"sid\":\"a\""));
  stp_buf_free(&b);
}

Test(history, memory_per_1000_typical_messages_is_bounded) {
  history big;
  size_t heap0 = mallinfo2().uordblks;
  history_init(&big, 1000, clock_fn);
  cr_assert_eq(stp_log_observe(history_observe, &big), 0);
  for (int i = 0; i < 1000; i++)
    message("000b31640001", "delivered", "scanner-3rd-floor@printers.example.com", NULL);
  stp_log_unobserve(history_observe, &big);
  size_t heap = mallinfo2().uordblks - heap0; /* what malloc really handed out */
  size_t total = big.bytes + big.cap * sizeof(history_entry *);
  cr_log_info("history: %zu bytes for 1000 typical messages (%zu per entry); heap %zu bytes", total,
              total / 1000, heap);
  cr_assert_lt(heap, 1000 * 400, "with the allocator's overhead too");
  cr_assert_lt(total, 1000 * 400, "a typical entry stays under 400 bytes");
  cr_assert_leq(big.bytes, 1000 * HISTORY_ENTRY_MAX);
  history_free(&big);
}

Test(esc, html_and_json_cannot_be_broken_out_of) {
  stp_buf b;
  stp_buf_init(&b, 256);
  esc_html(&b, "<script>\"x'&\x01\xff");
  stp_buf_append(&b, "", 1);
  cr_assert_str_eq(b.data, "&lt;script&gt;&quot;x&#39;&amp;\xEF\xBF\xBD\xEF\xBF\xBD");
  b.len = 0;
  esc_json(&b, "a\"\\\n</script>\xC3\xA9\xC3");
  stp_buf_append(&b, "", 1);
  cr_assert_str_eq(b.data, "a\\\"\\\\\\u000a\\u003c/script\\u003e\xC3\xA9\xEF\xBF\xBD");
  stp_buf_free(&b);
}

Test(history, json_past_the_bound_is_still_a_list_of_the_newest) {
  message("a", "delivered", "x@y", NULL);
  message("b", "delivered", "x@y", NULL);
  stp_buf b;
  stp_buf_init(&b, 500); /* room for one entry, not two */
  cr_assert_eq(history_json(&H, 0, -1, &b), 0);
  stp_buf_append(&b, "", 1);
  cr_assert_not_null(strstr(b.data, "\"sid\":\"b\""), "%s", b.data);
  cr_assert_null(strstr(b.data, "\"sid\":\"a\""), "%s", b.data);
  cr_assert_eq(b.data[strlen(b.data) - 1], ']');
  stp_buf_free(&b);
}
