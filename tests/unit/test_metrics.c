/* test_metrics.c - the metrics registry and its Prometheus text: byte-exact
 * output, escaping of hostile label values, histogram math, gauges, the
 * series cap, stable ordering, truncated rendering; and the pure HTTP
 * request-head parser (http1.c) as the /metrics endpoint uses it. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp-tls-proxy/metrics.h"
#include "smtp-tls-proxy/util.h"

static void setup(void) {
  metrics_reset();
}
static void teardown(void) {
  metrics_reset();
}

TestSuite(metrics, .init = setup, .fini = teardown);

/* The whole text as a NUL-terminated string. */
static char *render_all(void) {
  size_t n = metrics_render_size();
  char *s = malloc(n + 1);
  cr_assert_not_null(s);
  size_t w = metrics_render(s, n);
  cr_assert_eq(w, n, "render wrote %zu of %zu bytes", w, n);
  s[n] = '\0';
  return s;
}

/* The sample lines of one family (those starting with prefix), joined. */
static char *lines_of(const char *text, const char *prefix) {
  size_t cap = strlen(text) + 1, len = 0, pl = strlen(prefix);
  char *out = calloc(1, cap);
  cr_assert_not_null(out);
  for (const char *p = text; *p;) {
    const char *e = strchr(p, '\n');
    size_t n = e ? (size_t)(e - p) + 1 : strlen(p);
    if (n >= pl && !memcmp(p, prefix, pl)) {
      memcpy(out + len, p, n);
      len += n;
    }
    p += n;
  }
  return out;
}

/* clang-format off */
/* Every family's header, in order; no series but the dropped count. */
static const char empty_text[] =
    "# HELP smtp_proxy_failovers_total Times a route moved on from a failed upstream to the next one.\n"
    "# TYPE smtp_proxy_failovers_total counter\n"
    "# HELP smtp_proxy_message_bytes_total Message bytes received from clients, whatever the result.\n"
    "# TYPE smtp_proxy_message_bytes_total counter\n"
    "# HELP smtp_proxy_messages_total Messages by route, upstream and result (delivered, rejected = 5xx, deferred = 4xx, aborted).\n"
    "# TYPE smtp_proxy_messages_total counter\n"
    "# HELP smtp_proxy_metrics_dropped_series_total Metric updates lost because the series table was full.\n"
    "# TYPE smtp_proxy_metrics_dropped_series_total counter\n"
    "smtp_proxy_metrics_dropped_series_total 0\n"
    "# HELP smtp_proxy_oauth2_refresh_failures_total Failed OAuth2 token fetches by reason (the endpoint's OAuth error code, or network, http_status, bad_response, signing, command).\n"
    "# TYPE smtp_proxy_oauth2_refresh_failures_total counter\n"
    "# HELP smtp_proxy_oauth2_token_expiry_timestamp_seconds When the cached OAuth2 access token expires (unix time; 0: none yet).\n"
    "# TYPE smtp_proxy_oauth2_token_expiry_timestamp_seconds gauge\n"
    "# HELP smtp_proxy_rate_limited_total Commands or connections refused by a rate limit.\n"
    "# TYPE smtp_proxy_rate_limited_total counter\n"
    "# HELP smtp_proxy_refused_connections_total Client connections refused before SMTP (allow list, connection limits).\n"
    "# TYPE smtp_proxy_refused_connections_total counter\n"
    "# HELP smtp_proxy_sessions_active Client sessions open now.\n"
    "# TYPE smtp_proxy_sessions_active gauge\n"
    "# HELP smtp_proxy_sessions_total Client sessions started.\n"
    "# TYPE smtp_proxy_sessions_total counter\n"
    "# HELP smtp_proxy_spool_bytes Bytes of the messages in the local spool.\n"
    "# TYPE smtp_proxy_spool_bytes gauge\n"
    "# HELP smtp_proxy_spool_deliveries_total Delivery attempts from the local spool by result (delivered, deferred, failed = 5xx, expired = max_age).\n"
    "# TYPE smtp_proxy_spool_deliveries_total counter\n"
    "# HELP smtp_proxy_spool_messages Messages in the local spool.\n"
    "# TYPE smtp_proxy_spool_messages gauge\n"
    "# HELP smtp_proxy_spool_oldest_seconds Age of the oldest message in the local spool (0 when empty).\n"
    "# TYPE smtp_proxy_spool_oldest_seconds gauge\n"
    "# HELP smtp_proxy_upstream_failures_total Upstream failures and provider refusals by reason (dns, connect, tls, starttls, greeting, auth, timeout, closed, protocol, or the provider table word).\n"
    "# TYPE smtp_proxy_upstream_failures_total counter\n"
    "# HELP smtp_proxy_upstream_latency_seconds Upstream latency: TCP connect, ready to send mail, reply to the final dot.\n"
    "# TYPE smtp_proxy_upstream_latency_seconds histogram\n"
    "# HELP smtp_proxy_upstream_pool_connections Idle upstream connections kept for reuse.\n"
    "# TYPE smtp_proxy_upstream_pool_connections gauge\n";

static const char small_text[] =
    "# HELP smtp_proxy_failovers_total Times a route moved on from a failed upstream to the next one.\n"
    "# TYPE smtp_proxy_failovers_total counter\n"
    "smtp_proxy_failovers_total{route=\"scanners\",from=\"gmail\",to=\"gmail-465\"} 1\n"
    "# HELP smtp_proxy_message_bytes_total Message bytes received from clients, whatever the result.\n"
    "# TYPE smtp_proxy_message_bytes_total counter\n"
    "smtp_proxy_message_bytes_total{route=\"scanners\",upstream=\"gmail\"} 1024\n"
    "# HELP smtp_proxy_messages_total Messages by route, upstream and result (delivered, rejected = 5xx, deferred = 4xx, aborted).\n"
    "# TYPE smtp_proxy_messages_total counter\n"
    "smtp_proxy_messages_total{route=\"scanners\",upstream=\"gmail\",result=\"deferred\"} 1\n"
    "smtp_proxy_messages_total{route=\"scanners\",upstream=\"gmail\",result=\"delivered\"} 1\n"
    "# HELP smtp_proxy_metrics_dropped_series_total Metric updates lost because the series table was full.\n"
    "# TYPE smtp_proxy_metrics_dropped_series_total counter\n"
    "smtp_proxy_metrics_dropped_series_total 0\n"
    "# HELP smtp_proxy_oauth2_refresh_failures_total Failed OAuth2 token fetches by reason (the endpoint's OAuth error code, or network, http_status, bad_response, signing, command).\n"
    "# TYPE smtp_proxy_oauth2_refresh_failures_total counter\n"
    "# HELP smtp_proxy_oauth2_token_expiry_timestamp_seconds When the cached OAuth2 access token expires (unix time; 0: none yet).\n"
    "# TYPE smtp_proxy_oauth2_token_expiry_timestamp_seconds gauge\n"
    "# HELP smtp_proxy_rate_limited_total Commands or connections refused by a rate limit.\n"
    "# TYPE smtp_proxy_rate_limited_total counter\n"
    "smtp_proxy_rate_limited_total{scope=\"listener\",name=\"lan\"} 1\n"
    "# HELP smtp_proxy_refused_connections_total Client connections refused before SMTP (allow list, connection limits).\n"
    "# TYPE smtp_proxy_refused_connections_total counter\n"
    "smtp_proxy_refused_connections_total{listener=\"lan\",reason=\"allow\"} 1\n"
    "# HELP smtp_proxy_sessions_active Client sessions open now.\n"
    "# TYPE smtp_proxy_sessions_active gauge\n"
    "smtp_proxy_sessions_active{listener=\"lan\"} 1\n"
    "# HELP smtp_proxy_sessions_total Client sessions started.\n"
    "# TYPE smtp_proxy_sessions_total counter\n"
    "smtp_proxy_sessions_total{listener=\"lan\"} 2\n"
    "# HELP smtp_proxy_spool_bytes Bytes of the messages in the local spool.\n"
    "# TYPE smtp_proxy_spool_bytes gauge\n"
    "smtp_proxy_spool_bytes 4096\n"
    "# HELP smtp_proxy_spool_deliveries_total Delivery attempts from the local spool by result (delivered, deferred, failed = 5xx, expired = max_age).\n"
    "# TYPE smtp_proxy_spool_deliveries_total counter\n"
    "smtp_proxy_spool_deliveries_total{result=\"deferred\"} 2\n"
    "smtp_proxy_spool_deliveries_total{result=\"delivered\"} 1\n"
    "# HELP smtp_proxy_spool_messages Messages in the local spool.\n"
    "# TYPE smtp_proxy_spool_messages gauge\n"
    "smtp_proxy_spool_messages 3\n"
    "# HELP smtp_proxy_spool_oldest_seconds Age of the oldest message in the local spool (0 when empty).\n"
    "# TYPE smtp_proxy_spool_oldest_seconds gauge\n"
    "smtp_proxy_spool_oldest_seconds 120\n"
    "# HELP smtp_proxy_upstream_failures_total Upstream failures and provider refusals by reason (dns, connect, tls, starttls, greeting, auth, timeout, closed, protocol, or the provider table word).\n"
    "# TYPE smtp_proxy_upstream_failures_total counter\n"
    "smtp_proxy_upstream_failures_total{upstream=\"gmail\",reason=\"tls\"} 1\n"
    "# HELP smtp_proxy_upstream_latency_seconds Upstream latency: TCP connect, ready to send mail, reply to the final dot.\n"
    "# TYPE smtp_proxy_upstream_latency_seconds histogram\n"
    "smtp_proxy_upstream_latency_seconds_bucket{upstream=\"gmail\",phase=\"connect\",le=\"0.005\"} 0\n"
    "smtp_proxy_upstream_latency_seconds_bucket{upstream=\"gmail\",phase=\"connect\",le=\"0.01\"} 0\n"
    "smtp_proxy_upstream_latency_seconds_bucket{upstream=\"gmail\",phase=\"connect\",le=\"0.025\"} 1\n"
    "smtp_proxy_upstream_latency_seconds_bucket{upstream=\"gmail\",phase=\"connect\",le=\"0.05\"} 1\n"
    "smtp_proxy_upstream_latency_seconds_bucket{upstream=\"gmail\",phase=\"connect\",le=\"0.1\"} 1\n"
    "smtp_proxy_upstream_latency_seconds_bucket{upstream=\"gmail\",phase=\"connect\",le=\"0.25\"} 1\n"
    "smtp_proxy_upstream_latency_seconds_bucket{upstream=\"gmail\",phase=\"connect\",le=\"0.5\"} 1\n"
    "smtp_proxy_upstream_latency_seconds_bucket{upstream=\"gmail\",phase=\"connect\",le=\"1\"} 1\n"
    "smtp_proxy_upstream_latency_seconds_bucket{upstream=\"gmail\",phase=\"connect\",le=\"2.5\"} 1\n"
    "smtp_proxy_upstream_latency_seconds_bucket{upstream=\"gmail\",phase=\"connect\",le=\"5\"} 1\n"
    "smtp_proxy_upstream_latency_seconds_bucket{upstream=\"gmail\",phase=\"connect\",le=\"10\"} 1\n"
    "smtp_proxy_upstream_latency_seconds_bucket{upstream=\"gmail\",phase=\"connect\",le=\"30\"} 1\n"
    "smtp_proxy_upstream_latency_seconds_bucket{upstream=\"gmail\",phase=\"connect\",le=\"60\"} 1\n"
    "smtp_proxy_upstream_latency_seconds_bucket{upstream=\"gmail\",phase=\"connect\",le=\"+Inf\"} 1\n"
    "smtp_proxy_upstream_latency_seconds_sum{upstream=\"gmail\",phase=\"connect\"} 0.02\n"
    "smtp_proxy_upstream_latency_seconds_count{upstream=\"gmail\",phase=\"connect\"} 1\n"
    "# HELP smtp_proxy_upstream_pool_connections Idle upstream connections kept for reuse.\n"
    "# TYPE smtp_proxy_upstream_pool_connections gauge\n"
    "smtp_proxy_upstream_pool_connections{upstream=\"gmail\"} 3\n";
/* clang-format on */

Test(metrics, empty_registry_is_all_headers) {
  char *s = render_all();
  cr_assert_str_eq(s, empty_text);
  free(s);
}

Test(metrics, small_case_byte_exact) {
  metrics_session_open("lan");
  metrics_session_open("lan");
  metrics_session_close("lan");
  metrics_message("scanners", "gmail", "delivered", 1000);
  metrics_message("scanners", "gmail", "deferred", 24);
  metrics_upstream_failure("gmail", "tls");
  metrics_failover("scanners", "gmail", "gmail-465");
  metrics_rate_limited("listener", "lan");
  metrics_refused_connection("lan", "allow");
  metrics_pool_size("gmail", 3);
  metrics_upstream_latency("gmail", "connect", 0.02);
  metrics_spool(3, 4096, 120);
  metrics_spool_delivery("deferred");
  metrics_spool_delivery("delivered");
  metrics_spool_delivery("deferred");
  char *s = render_all();
  cr_assert_str_eq(s, small_text);
  free(s);
}

Test(metrics, hostile_label_values_are_escaped) {
  /* A value that tries to close the label, end the line and forge a sample. */
  metrics_session_open("a\"} 999\nsmtp_proxy_sessions_total{listener=\"x\\");
  char *s = render_all();
  char *got = lines_of(s, "smtp_proxy_sessions_total{");
  cr_assert_str_eq(got, "smtp_proxy_sessions_total{listener=\"a\\\"} 999\\nsmtp_proxy_sessions_"
                        "total{listener=\\\"x\\\\\"} 1\n");
  /* Exactly one sample line for the family: nothing was forged. */
  cr_assert_eq(strchr(got, '\n'), got + strlen(got) - 1, "a forged line got through");
  free(got);
  free(s);
}

Test(metrics, invalid_utf8_becomes_replacement_char) {
  metrics_session_open("ok-\xC3\xA9-\xFF-\xC3-\xED\xA0\x80-\xF0\x9F\x93\xA0");
  char *s = render_all();
  char *got = lines_of(s, "smtp_proxy_sessions_total{");
  cr_assert_str_eq(got,
                   "smtp_proxy_sessions_total{listener=\"ok-\xC3\xA9-\xEF\xBF\xBD-"
                   "\xEF\xBF\xBD-\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD-\xF0\x9F\x93\xA0\"} 1\n");
  free(got);
  free(s);
}

Test(metrics, null_label_reads_as_empty) {
  metrics_upstream_failure(NULL, "dns");
  char *s = render_all();
  char *got = lines_of(s, "smtp_proxy_upstream_failures_total{");
  cr_assert_str_eq(got, "smtp_proxy_upstream_failures_total{upstream=\"\",reason=\"dns\"} 1\n");
  free(got);
  free(s);
}

Test(metrics, long_label_is_truncated_on_a_char_boundary) {
  char v[300];
  memset(v, 'a', sizeof v);
  /* A two-byte é straddling byte 128 must go whole, not half. */
  v[METRICS_MAX_LABEL - 1] = '\xC3';
  v[METRICS_MAX_LABEL] = '\xA9';
  v[sizeof v - 1] = '\0';
  metrics_pool_size(v, 1);
  v[METRICS_MAX_LABEL + 5] = 'b'; /* differs only past the cut: same series */
  metrics_pool_size(v, 7);
  char *s = render_all();
  char *got = lines_of(s, "smtp_proxy_upstream_pool_connections{");
  char want[400];
  snprintf(want, sizeof want, "smtp_proxy_upstream_pool_connections{upstream=\"%.*s\"} 7\n",
           METRICS_MAX_LABEL - 1, v);
  cr_assert_str_eq(got, want);
  free(got);
  free(s);
}

Test(metrics, histogram_buckets_are_cumulative) {
  /* One observation in each of: <=0.005 (incl. a negative), 0.1 exactly
   * (le is inclusive), 0.3, 59.9, and one past the last bucket. */
  double obs[] = {-1, 0.005, 0.1, 0.3, 59.9, 61};
  for (size_t i = 0; i < sizeof obs / sizeof obs[0]; i++)
    metrics_upstream_latency("up", "dot", obs[i]);
  metrics_upstream_latency("up", "dot", NAN); /* NaN: ignored */
  char *s = render_all();
  char *got = lines_of(s, "smtp_proxy_upstream_latency_seconds");
  /* clang-format off */
  const char *want =
      "smtp_proxy_upstream_latency_seconds_bucket{upstream=\"up\",phase=\"dot\",le=\"0.005\"} 2\n"
      "smtp_proxy_upstream_latency_seconds_bucket{upstream=\"up\",phase=\"dot\",le=\"0.01\"} 2\n"
      "smtp_proxy_upstream_latency_seconds_bucket{upstream=\"up\",phase=\"dot\",le=\"0.025\"} 2\n"
      "smtp_proxy_upstream_latency_seconds_bucket{upstream=\"up\",phase=\"dot\",le=\"0.05\"} 2\n"
      "smtp_proxy_upstream_latency_seconds_bucket{upstream=\"up\",phase=\"dot\",le=\"0.1\"} 3\n"
      "smtp_proxy_upstream_latency_seconds_bucket{upstream=\"up\",phase=\"dot\",le=\"0.25\"} 3\n"
      "smtp_proxy_upstream_latency_seconds_bucket{upstream=\"up\",phase=\"dot\",le=\"0.5\"} 4\n"
      "smtp_proxy_upstream_latency_seconds_bucket{upstream=\"up\",phase=\"dot\",le=\"1\"} 4\n"
      "smtp_proxy_upstream_latency_seconds_bucket{upstream=\"up\",phase=\"dot\",le=\"2.5\"} 4\n"
      "smtp_proxy_upstream_latency_seconds_bucket{upstream=\"up\",phase=\"dot\",le=\"5\"} 4\n"
      "smtp_proxy_upstream_latency_seconds_bucket{upstream=\"up\",phase=\"dot\",le=\"10\"} 4\n"
      "smtp_proxy_upstream_latency_seconds_bucket{upstream=\"up\",phase=\"dot\",le=\"30\"} 4\n"
      "smtp_proxy_upstream_latency_seconds_bucket{upstream=\"up\",phase=\"dot\",le=\"60\"} 5\n"
      "smtp_proxy_upstream_latency_seconds_bucket{upstream=\"up\",phase=\"dot\",le=\"+Inf\"} 6\n"
      "smtp_proxy_upstream_latency_seconds_sum{upstream=\"up\",phase=\"dot\"} 121.305\n"
      "smtp_proxy_upstream_latency_seconds_count{upstream=\"up\",phase=\"dot\"} 6\n";
  /* clang-format on */
  cr_assert_str_eq(got, want);
  free(got);
  free(s);
}

Test(metrics, gauges_go_up_and_down) {
  metrics_session_open("lan");
  metrics_session_open("lan");
  metrics_session_open("lan");
  metrics_session_close("lan");
  metrics_session_close("lan");
  metrics_session_close("lan");
  metrics_session_close("lan"); /* unmatched: stays at 0, never -1 */
  metrics_session_open("lan");
  metrics_pool_size("gmail", 5);
  metrics_pool_size("gmail", 2);
  char *s = render_all();
  char *a = lines_of(s, "smtp_proxy_sessions_active{");
  char *t = lines_of(s, "smtp_proxy_sessions_total{");
  char *p = lines_of(s, "smtp_proxy_upstream_pool_connections{");
  cr_assert_str_eq(a, "smtp_proxy_sessions_active{listener=\"lan\"} 1\n");
  cr_assert_str_eq(t, "smtp_proxy_sessions_total{listener=\"lan\"} 4\n");
  cr_assert_str_eq(p, "smtp_proxy_upstream_pool_connections{upstream=\"gmail\"} 2\n");
  free(a);
  free(t);
  free(p);
  free(s);
}

Test(metrics, series_cap_counts_drops) {
  char name[32];
  for (int i = 0; i < METRICS_MAX_SERIES; i++) {
    snprintf(name, sizeof name, "u%05d", i);
    metrics_upstream_failure(name, "connect");
  }
  metrics_upstream_failure("one-too-many", "connect");
  metrics_upstream_failure("one-too-many", "connect");
  metrics_session_open("lan");                   /* two new series, both dropped */
  metrics_upstream_failure("u00042", "connect"); /* existing series still count */
  char *s = render_all();
  char *d = lines_of(s, "smtp_proxy_metrics_dropped_series_total ");
  cr_assert_str_eq(d, "smtp_proxy_metrics_dropped_series_total 4\n");
  char *f = lines_of(s, "smtp_proxy_upstream_failures_total{upstream=\"u00042\"");
  cr_assert_str_eq(f, "smtp_proxy_upstream_failures_total{upstream=\"u00042\",reason=\"connect\"} "
                      "2\n");
  cr_assert_null(strstr(s, "one-too-many"));
  cr_assert_null(strstr(s, "smtp_proxy_sessions_total{"));
  free(d);
  free(f);
  free(s);
  metrics_reset(); /* reset frees the table: room again */
  metrics_session_open("lan");
  s = render_all();
  cr_assert_not_null(strstr(s, "smtp_proxy_sessions_total{listener=\"lan\"} 1\n"));
  cr_assert_not_null(strstr(s, "smtp_proxy_metrics_dropped_series_total 0\n"));
  free(s);
}

Test(metrics, ordering_is_sorted_and_independent_of_insertion) {
  const char *names[] = {"zeta", "alpha", "mid", "Alpha", "alpha2", "a"};
  size_t n = sizeof names / sizeof names[0];
  for (size_t i = 0; i < n; i++)
    metrics_failover("r", names[i], "x");
  metrics_failover("q", "zeta", "x");
  char *first = render_all();
  metrics_reset();
  metrics_failover("q", "zeta", "x");
  for (size_t i = n; i-- > 0;)
    metrics_failover("r", names[i], "x");
  char *second = render_all();
  cr_assert_str_eq(first, second);
  char *got = lines_of(first, "smtp_proxy_failovers_total{");
#define F(r, from) "smtp_proxy_failovers_total{route=\"" r "\",from=\"" from "\",to=\"x\"} 1\n"
  cr_assert_str_eq(got, F("q", "zeta") F("r", "Alpha") F("r", "a") F("r", "alpha") F("r", "alpha2")
                            F("r", "mid") F("r", "zeta"));
#undef F
  free(got);
  free(first);
  free(second);
}

Test(metrics, label_boundaries_do_not_collide) {
  metrics_message("ab", "c", "delivered", 1);
  metrics_message("a", "bc", "delivered", 2);
  char *s = render_all();
  char *got = lines_of(s, "smtp_proxy_message_bytes_total{");
  cr_assert_str_eq(got, "smtp_proxy_message_bytes_total{route=\"a\",upstream=\"bc\"} 2\n"
                        "smtp_proxy_message_bytes_total{route=\"ab\",upstream=\"c\"} 1\n");
  free(got);
  free(s);
}

Test(metrics, render_truncates_on_line_boundaries) {
  metrics_session_open("lan");
  metrics_message("r", "u", "rejected", 5);
  size_t n = metrics_render_size();
  char *full = malloc(n);
  cr_assert_eq(metrics_render(full, n), n);
  char *buf = malloc(n);
  for (size_t cap = 0; cap < n; cap += 7) {
    memset(buf, 0x55, n);
    size_t w = metrics_render(buf, cap);
    cr_assert_leq(w, cap);
    cr_assert(w == 0 || buf[w - 1] == '\n', "cap %zu: partial line", cap);
    cr_assert_eq(memcmp(buf, full, w), 0);
    cr_assert_eq((unsigned char)buf[cap], 0x55, "cap %zu: wrote past the end", cap);
    /* It stops at the last whole line that fits: the next one would not. */
    const char *next = memchr(full + w, '\n', n - w);
    cr_assert_gt((size_t)(next - full) + 1, cap);
  }
  cr_assert_eq(metrics_render(NULL, 100), 0);
  free(buf);
  free(full);
}

Test(metrics, large_counter_values) {
  metrics_message("r", "u", "delivered", UINT64_MAX - 1);
  char *s = render_all();
  cr_assert_not_null(strstr(
      s, "smtp_proxy_message_bytes_total{route=\"r\",upstream=\"u\"} 18446744073709551614\n"));
  free(s);
}

/* --- HTTP request head ---------------------------------------------------- */

#define L(s) s, sizeof(s) - 1

static int parse(const char *s, size_t n, http1_request *r) {
  return http1_parse_request(s, n, METRICS_HTTP_MAX_HEAD, r);
}

Test(metrics_http, parses_a_get) {
  const char req[] = "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\nextra";
  http1_request r;
  cr_assert_eq(parse(L(req), &r), STP_OK);
  cr_assert_eq(r.method_len, 3);
  cr_assert_eq(memcmp(r.method, "GET", 3), 0);
  cr_assert_eq(r.target_len, 8);
  cr_assert_eq(memcmp(r.target, "/metrics", 8), 0);
  cr_assert_eq(r.minor, 1);
  cr_assert_eq(r.head_len, sizeof req - 1 - 5);
  bool head = true;
  cr_assert_eq(metrics_http_classify(&r, &head), METRICS_HTTP_METRICS);
  cr_assert_not(head);
}

Test(metrics_http, every_split_is_eagain_until_complete) {
  const char req[] = "HEAD /healthz HTTP/1.0\r\n\r\n";
  http1_request r;
  for (size_t n = 0; n < sizeof req - 1; n++)
    cr_assert_eq(parse(req, n, &r), STP_EAGAIN, "at %zu", n);
  cr_assert_eq(parse(L(req), &r), STP_OK);
  cr_assert_eq(r.minor, 0);
  bool head = false;
  cr_assert_eq(metrics_http_classify(&r, &head), METRICS_HTTP_HEALTHZ);
  cr_assert(head);
}

Test(metrics_http, bare_lf_and_leading_blank_lines) {
  http1_request r;
  cr_assert_eq(parse(L("\r\n\nGET /healthz HTTP/1.1\nHost: a\n\n"), &r), STP_OK);
  cr_assert_eq(r.target_len, 8);
  cr_assert_eq(r.head_len, sizeof "\r\n\nGET /healthz HTTP/1.1\nHost: a\n\n" - 1);
}

Test(metrics_http, classify) {
  static const struct {
    const char *req;
    metrics_http_target want;
  } cases[] = {
      {"GET /metrics?name[]=x HTTP/1.1\r\n\r\n", METRICS_HTTP_METRICS},
      {"GET /metrics/ HTTP/1.1\r\n\r\n", METRICS_HTTP_NOT_FOUND},
      {"GET /METRICS HTTP/1.1\r\n\r\n", METRICS_HTTP_NOT_FOUND},
      {"GET / HTTP/1.1\r\n\r\n", METRICS_HTTP_NOT_FOUND},
      {"GET * HTTP/1.1\r\n\r\n", METRICS_HTTP_NOT_FOUND},
      {"POST /metrics HTTP/1.1\r\n\r\n", METRICS_HTTP_BAD_METHOD},
      {"get /metrics HTTP/1.1\r\n\r\n", METRICS_HTTP_BAD_METHOD}, /* methods are case-sensitive */
      {"OPTIONS * HTTP/1.1\r\n\r\n", METRICS_HTTP_BAD_METHOD},
      {"GETX /metrics HTTP/1.1\r\n\r\n", METRICS_HTTP_BAD_METHOD},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    http1_request r;
    bool head;
    cr_assert_eq(parse(cases[i].req, strlen(cases[i].req), &r), STP_OK, "%s", cases[i].req);
    cr_assert_eq(metrics_http_classify(&r, &head), cases[i].want, "%s", cases[i].req);
  }
}

Test(metrics_http, malformed_request_lines) {
  static const char *bad[] = {
      "GET /metrics\r\n\r\n",                     /* HTTP/0.9 */
      "GET  /metrics HTTP/1.1\r\n\r\n",           /* two spaces */
      "GET /metrics HTTP/1.1 \r\n\r\n",           /* trailing space */
      "GET /metrics HTTP/2.0\r\n\r\n",            /* not 1.x */
      "GET /metrics http/1.1\r\n\r\n",            /* version is case-sensitive */
      "GET /metrics HTTP/1.10\r\n\r\n",           /* one digit */
      " GET /metrics HTTP/1.1\r\n\r\n",           /* leading space */
      "G(T /metrics HTTP/1.1\r\n\r\n",            /* not a token */
      "GET /met\x01rics HTTP/1.1\r\n\r\n",        /* control byte */
      "GET /metr\x80 HTTP/1.1\r\n\r\n",           /* non-ASCII target */
      "GET /metrics HTTP/1.1\r\nX: a\rb\r\n\r\n", /* bare CR in a header */
      "GET /metrics HTTP/1.1\r\nX: \x7f\r\n\r\n", /* DEL in a header */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    http1_request r;
    cr_assert_eq(parse(bad[i], strlen(bad[i]), &r), STP_ESYNTAX, "case %zu", i);
  }
}

Test(metrics_http, bad_request_line_is_judged_before_the_head_ends) {
  http1_request r;
  /* No empty line yet, but the request line is already wrong. */
  cr_assert_eq(parse(L("HELO there\r\n"), &r), STP_ESYNTAX);
  cr_assert_eq(parse(L("\x16\x03\x01\x02\x00"), &r), STP_ESYNTAX); /* a TLS ClientHello */
}

Test(metrics_http, head_over_the_bound_is_too_long) {
  size_t max = 64;
  char buf[200];
  memset(buf, 'a', sizeof buf);
  memcpy(buf, "GET /metrics HTTP/1.1\r\nX: ", 26);
  http1_request r;
  cr_assert_eq(http1_parse_request(buf, 63, max, &r), STP_EAGAIN);
  cr_assert_eq(http1_parse_request(buf, 64, max, &r), STP_ETOOLONG);
  cr_assert_eq(http1_parse_request(buf, sizeof buf, max, &r), STP_ETOOLONG);
  /* The end of the head past the bound does not count. */
  memcpy(buf + 70, "\r\n\r\n", 4);
  cr_assert_eq(http1_parse_request(buf, sizeof buf, max, &r), STP_ETOOLONG);
  /* Exactly at the bound is fine. */
  memcpy(buf + 60, "\r\n\r\n", 4);
  cr_assert_eq(http1_parse_request(buf, 64, max, &r), STP_OK);
  cr_assert_eq(r.head_len, 64);
}

Test(metrics, oauth2_expiry_gauge_and_refresh_failures) {
  metrics_oauth2_expiry("workspace", 0);
  metrics_oauth2_expiry("workspace", 1800000000);
  metrics_oauth2_refresh_failure("m365-app", "invalid_client");
  metrics_oauth2_refresh_failure("m365-app", "invalid_client");
  metrics_oauth2_refresh_failure("m365-app", "network");
  char *s = render_all();
  char *g = lines_of(s, "smtp_proxy_oauth2_token_expiry_timestamp_seconds{");
  cr_assert_str_eq(g, "smtp_proxy_oauth2_token_expiry_timestamp_seconds{upstream=\"workspace\"} "
                      "1800000000\n");
  char *f = lines_of(s, "smtp_proxy_oauth2_refresh_failures_total{");
  cr_assert_str_eq(f, "smtp_proxy_oauth2_refresh_failures_total{upstream=\"m365-app\",reason=\""
                      "invalid_client\"} 2\n"
                      "smtp_proxy_oauth2_refresh_failures_total{upstream=\"m365-app\",reason=\""
                      "network\"} 1\n");
  free(g);
  free(f);
  free(s);
}
