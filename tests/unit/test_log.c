/* test_log.c - the log line format: text key=value and JSON, escaping of
 * hostile values (one event is always one line), skipped NULL values,
 * truncation, and level filtering. Timestamps are cut off before comparing. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "smtp-tls-proxy/log.h"

/* The line without its leading timestamp (text) or "ts" member (JSON). */
static const char *strip_ts(const char *line, int json) {
  if (json) {
    const char *p = strstr(line, "\",\"level\"");
    cr_assert_not_null(p, "%s", line);
    return p + 2;
  }
  const char *p = strchr(line, ' ');
  cr_assert_not_null(p);
  return p + 1;
}

Test(log, text_format_quotes_only_what_needs_it) {
  char buf[512];
  stp_kv kv[] = {{"client", "192.0.2.1"}, {"reply", "250 2.0.0 Ok"}, {"skip", NULL}, {"empty", ""}};
  stp_log_format_line(buf, sizeof buf, 0, STP_LOG_INFO, "abc123", "message", kv, 4);
  cr_assert_str_eq(strip_ts(buf, 0),
                   "info message sid=abc123 client=192.0.2.1 reply=\"250 2.0.0 Ok\" empty=\"\"");
}

Test(log, json_format) {
  char buf[512];
  stp_kv kv[] = {{"route", "default"}, {"size", "245"}};
  stp_log_format_line(buf, sizeof buf, 1, STP_LOG_WARN, NULL, "message", kv, 2);
  cr_assert_eq(strncmp(buf, "{\"ts\":\"", 7), 0, "%s", buf);
  cr_assert_str_eq(strip_ts(buf, 1),
                   "\"level\":\"warn\",\"event\":\"message\",\"route\":\"default\",\"size\":245}");
}

/* Counts and durations are JSON numbers; a numeric key with a value that
 * is not an integer stays a string (the line is always valid JSON), and
 * other keys stay strings even when their value looks like a number. */
Test(log, json_numbers_are_numbers) {
  char buf[512];
  stp_kv kv[] = {{"rcpts", "3"},       {"size", "0"},     {"duration_ms", "1234"},
                 {"skip_ms", "30000"}, {"grace_ms", "-"}, {"size", "012"},
                 {"size", "1e3"},      {"reply", "250"},  {"client", "42"}};
  stp_log_format_line(buf, sizeof buf, 1, STP_LOG_INFO, "s1", "message", kv, 9);
  cr_assert_str_eq(strip_ts(buf, 1),
                   "\"level\":\"info\",\"event\":\"message\",\"sid\":\"s1\",\"rcpts\":3,"
                   "\"size\":0,\"duration_ms\":1234,\"skip_ms\":30000,\"grace_ms\":\"-\","
                   "\"size\":\"012\",\"size\":\"1e3\",\"reply\":\"250\",\"client\":\"42\"}");
  /* Text format unchanged. */
  stp_log_format_line(buf, sizeof buf, 0, STP_LOG_INFO, "s1", "message", kv, 3);
  cr_assert_str_eq(strip_ts(buf, 0), "info message sid=s1 rcpts=3 size=0 duration_ms=1234");
}

Test(log, hostile_values_cannot_break_the_line) {
  char buf[512];
  stp_kv kv[] = {{"from", "a\r\ninfo message sid=forged \"x\"\\\x01"}};
  for (int json = 0; json <= 1; json++) {
    stp_log_format_line(buf, sizeof buf, json, STP_LOG_INFO, "s", "message", kv, 1);
    cr_assert_null(strchr(buf, '\n'), "%s", buf);
    cr_assert_null(strchr(buf, '\r'), "%s", buf);
    cr_assert_null(strchr(buf, '\x01'), "%s", buf);
    cr_assert_not_null(strstr(buf, "a\\r\\ninfo message sid=forged \\\"x\\\"\\\\\\u0001"), "%s",
                       buf);
  }
}

Test(log, truncation_keeps_json_closed) {
  char big[3000], buf[256];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = 0;
  stp_kv kv[] = {{"v", big}};
  size_t n = stp_log_format_line(buf, sizeof buf, 1, STP_LOG_INFO, NULL, "e", kv, 1);
  cr_assert_lt(n, sizeof buf);
  cr_assert_eq(buf[n - 1], '}', "%s", buf);
  n = stp_log_format_line(buf, sizeof buf, 0, STP_LOG_INFO, NULL, "e", kv, 1);
  cr_assert_eq(n, strlen(buf));
  cr_assert_lt(n, sizeof buf);
}

Test(log, levels_filter_and_parse) {
  int p[2];
  cr_assert_eq(pipe(p), 0);
  fcntl(p[0], F_SETFL, O_NONBLOCK);
  stp_log_setup(STP_LOG_WARN, 0, p[1]);
  stp_logf(STP_LOG_INFO, NULL, "not shown");
  stp_logf(STP_LOG_ERROR, "sid", "shown %d", 42);
  char buf[512];
  ssize_t n = read(p[0], buf, sizeof buf - 1);
  cr_assert_gt(n, 0);
  buf[n] = 0;
  cr_assert_null(strstr(buf, "not shown"));
  cr_assert_not_null(strstr(buf, " error log sid=sid msg=\"shown 42\"\n"), "%s", buf);
  stp_log_setup(STP_LOG_INFO, 0, 2);
  close(p[0]);
  close(p[1]);
  cr_assert_eq(stp_log_parse_level("WARNING"), STP_LOG_WARN);
  cr_assert_eq(stp_log_parse_level("debug"), STP_LOG_DEBUG);
  cr_assert_eq(stp_log_parse_level("loud"), -1);
}

struct obs_seen {
  int calls;
  char event[32];
  char rcpt[64];
  int level;
};

static void obs_cb(void *ctx, int level, const char *sid, const char *event, const stp_kv *kv,
                   size_t n) {
  (void)sid;
  struct obs_seen *o = ctx;
  o->calls++;
  o->level = level;
  snprintf(o->event, sizeof o->event, "%s", event);
  const char *r = stp_kv_get(kv, n, "_rcpt");
  snprintf(o->rcpt, sizeof o->rcpt, "%s", r ? r : "");
}

Test(log, observers_see_every_event_and_hidden_keys_whatever_the_level) {
  int fds[2];
  cr_assert_eq(pipe(fds), 0);
  stp_log_setup(STP_LOG_ERROR, 0, fds[1]);
  struct obs_seen o = {0};
  cr_assert_eq(stp_log_observe(obs_cb, &o), 0);
  stp_kv kv[] = {{"client", "10.1.1.1"}, {"_rcpt", "a@b.c"}};
  stp_log_kv(STP_LOG_INFO, "S1", "message", kv, 2);
  cr_expect_eq(o.calls, 1, "an INFO event reaches an observer under level error");
  cr_expect_str_eq(o.event, "message");
  cr_expect_str_eq(o.rcpt, "a@b.c");
  stp_log_kv(STP_LOG_ERROR, "S1", "message", kv, 2);
  char line[512] = {0};
  ssize_t got = read(fds[0], line, sizeof line - 1);
  cr_assert_gt(got, 0);
  cr_expect_not_null(strstr(line, "client=10.1.1.1"));
  cr_expect_null(strstr(line, "_rcpt"), "observer-only keys never reach the line: %s", line);
  cr_expect_null(strstr(line, "a@b.c"));
  stp_log_unobserve(obs_cb, &o);
  stp_log_kv(STP_LOG_ERROR, "S1", "message", kv, 2);
  cr_expect_eq(o.calls, 2, "no calls after unobserve");
  stp_log_setup(STP_LOG_INFO, 0, 2);
  close(fds[0]);
  close(fds[1]);
}
