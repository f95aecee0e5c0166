/* test_http1.c - the HTTP/1.1 codec's client half: the request serializer
 * (bytes, header injection refused, codec-owned headers) and the response
 * parser (Content-Length, chunked with extensions and trailers, close-
 * delimited, interim responses, no-body responses, keep-alive decisions,
 * header lookup, bytes after the response, every split of the input, and
 * every bound). The request-head parser is tested in test_metrics.c, where
 * the endpoint that uses it is. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp-tls-proxy/http1.h"
#include "smtp-tls-proxy/util.h"

#define L(s) s, sizeof(s) - 1

/* ---- requests ---- */

static char *request(const char *method, const char *url, const http1_header *h, size_t n,
                     int64_t len, bool keep, int *rc) {
  static char out[4096];
  stp_url u;
  stp_buf b;
  cr_assert_eq(stp_url_parse(url, &u), 0);
  stp_buf_init(&b, sizeof out - 1);
  *rc = http1_write_request(&b, method, &u, h, n, len, keep);
  memcpy(out, b.data, b.len);
  out[b.len] = '\0';
  stp_buf_free(&b);
  return out;
}

Test(http1_write, post_with_form) {
  int rc;
  http1_header h[] = {{"Accept", "application/json"},
                      {"Content-Type", "application/x-www-form-urlencoded"}};
  char *s = request("POST", "https://login.example:8443/t/oauth2/v2.0/token", h, 2, 3, false, &rc);
  cr_assert_eq(rc, 0);
  cr_assert_str_eq(s, "POST /t/oauth2/v2.0/token HTTP/1.1\r\n"
                      "Host: login.example:8443\r\n"
                      "User-Agent: smtp-tls-proxy/" STP_VERSION "\r\n"
                      "Accept: application/json\r\n"
                      "Content-Type: application/x-www-form-urlencoded\r\n"
                      "Content-Length: 3\r\n"
                      "Connection: close\r\n\r\n");
}

Test(http1_write, get_keep_alive_own_user_agent_v6_host) {
  int rc;
  http1_header h[] = {{"user-agent", "x/1"}, {"Authorization", "Bearer abc"}};
  char *s = request("GET", "https://[::1]/v1.0/me?$select=id", h, 2, -1, true, &rc);
  cr_assert_eq(rc, 0);
  cr_assert_str_eq(s, "GET /v1.0/me?$select=id HTTP/1.1\r\nHost: [::1]\r\n"
                      "user-agent: x/1\r\nAuthorization: Bearer abc\r\n\r\n");
}

Test(http1_write, refusals_leave_the_buffer_as_it_was) {
  static const http1_header bad[][1] = {
      {{"X-A", "v\r\nInjected: 1"}},
      {{"X-A", "v\nx"}},
      {{"X-A", "v\x7f"}},
      {{"X A", "v"}},
      {{"", "v"}},
      {{"Host", "evil"}},
      {{"content-length", "5"}},
      {{"Transfer-Encoding", "chunked"}},
      {{"Connection", "upgrade"}},
  };
  stp_url u;
  stp_buf b;
  cr_assert_eq(stp_url_parse("http://h/", &u), 0);
  stp_buf_init(&b, 4096);
  stp_buf_append(&b, "kept", 4);
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    cr_assert_eq(http1_write_request(&b, "GET", &u, bad[i], 1, -1, false), STP_EINVAL, "#%zu", i);
    cr_assert_eq(b.len, 4);
  }
  cr_assert_eq(http1_write_request(&b, "GE T", &u, NULL, 0, -1, false), STP_EINVAL);
  cr_assert_eq(http1_write_request(&b, "", &u, NULL, 0, -1, false), STP_EINVAL);
  stp_buf_free(&b);
  stp_buf_init(&b, 40); /* too small for the head */
  stp_buf_append(&b, "kept", 4);
  cr_assert_eq(http1_write_request(&b, "GET", &u, NULL, 0, -1, false), STP_EFULL);
  cr_assert_eq(b.len, 4);
  cr_assert(memcmp(b.data, "kept", 4) == 0);
  stp_buf_free(&b);
}

/* ---- responses ---- */

/* Feed s whole (then EOF when asked); the caller frees r. */
static int parse_max(const char *s, size_t n, bool eof, size_t max, http1_response *r) {
  size_t used;
  http1_response_init(r, max, false);
  int rc = http1_response_feed(r, s, n, &used);
  if (rc == 0 && eof)
    rc = http1_response_eof(r);
  return rc;
}

static int parse(const char *s, bool eof, http1_response *r) {
  return parse_max(s, strlen(s), eof, 0, r);
}

/* Parse s split at every point into two feeds and byte by byte: the verdict
 * and body must not depend on the split. */
static void same_at_every_split(const char *s, int want, const char *body) {
  size_t n = strlen(s);
  for (size_t cut = 0; cut <= n; cut++) {
    http1_response r;
    size_t used, total = 0;
    http1_response_init(&r, 0, false);
    int rc = http1_response_feed(&r, s, cut, &used);
    total += used;
    if (rc == 0) {
      rc = http1_response_feed(&r, s + cut, n - cut, &used);
      total += used;
    }
    if (rc == 0)
      rc = http1_response_eof(&r);
    cr_assert_eq(rc, want, "cut %zu: %d", cut, rc);
    if (want == 1 && body)
      cr_assert_str_eq(r.body, body, "cut %zu", cut);
    http1_response_free(&r);
  }
  http1_response r;
  http1_response_init(&r, 0, false);
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    size_t used;
    rc = http1_response_feed(&r, s + i, 1, &used);
  }
  if (rc == 0)
    rc = http1_response_eof(&r);
  cr_assert_eq(rc, want, "byte by byte");
  http1_response_free(&r);
}

Test(http1_response, content_length_every_cut) {
  static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             "Content-Length: 7\r\n\r\n{\"a\":1}";
  for (size_t cut = 0; cut < sizeof resp - 1; cut++) {
    http1_response r;
    cr_assert_eq(parse_max(resp, cut, false, 0, &r), 0, "cut %zu", cut);
    http1_response_free(&r);
    cr_assert_lt(parse_max(resp, cut, true, 0, &r), 0, "truncated at %zu", cut);
    http1_response_free(&r);
  }
  http1_response r;
  cr_assert_eq(parse(resp, false, &r), 1);
  cr_assert_eq(r.status, 200);
  cr_assert_eq(r.body_len, 7);
  cr_assert_str_eq(r.body, "{\"a\":1}");
  cr_assert(r.keep_alive);
  size_t n;
  const char *v = http1_response_header(&r, "CONTENT-TYPE", &n);
  cr_assert_not_null(v);
  cr_assert_eq(n, strlen("application/json"));
  cr_assert(!memcmp(v, "application/json", n));
  cr_assert_null(http1_response_header(&r, "Location", &n));
  http1_response_free(&r);
  same_at_every_split(resp, 1, "{\"a\":1}");
}

Test(http1_response, chunked_with_extensions_and_trailers) {
  const char *s = "HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "4;ext=1\r\n{\"er\r\n9\r\nror\":\"x\"}\r\n0\r\nX-T: y\r\n\r\n";
  http1_response r;
  cr_assert_eq(parse(s, false, &r), 1);
  cr_assert_eq(r.status, 400);
  cr_assert_str_eq(r.body, "{\"error\":\"x\"}");
  cr_assert(r.keep_alive);
  size_t n;
  cr_assert_null(http1_response_header(&r, "X-T", &n), "trailers are not headers");
  http1_response_free(&r);
  same_at_every_split(s, 1, "{\"error\":\"x\"}");
  /* incomplete: needs more; at EOF: malformed */
  const char *cut = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nab";
  cr_assert_eq(parse(cut, false, &r), 0);
  http1_response_free(&r);
  cr_assert_eq(parse(cut, true, &r), STP_ESYNTAX);
  http1_response_free(&r);
  static const char *const bad[] = {
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXX0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n;x\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nbad trailer\r\n\r\n",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    cr_assert_eq(parse(bad[i], false, &r), STP_ESYNTAX, "#%zu", i);
    http1_response_free(&r);
  }
  /* framing fields in trailers are only checked, then dropped with them */
  cr_assert_eq(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n"
                     "Content-Length: 9\r\nTransfer-Encoding: gzip\r\n\r\n",
                     false, &r),
               1);
  cr_assert_str_eq(r.body, "x");
  http1_response_free(&r);
  /* a chunk size past the bound */
  cr_assert_eq(
      parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffff\r\n", false, &r),
      STP_ETOOLONG);
  http1_response_free(&r);
}

Test(http1_response, close_delimited_and_interim) {
  http1_response r;
  cr_assert_eq(parse("HTTP/1.0 200 OK\r\n\r\n{}", false, &r), 0);
  http1_response_free(&r);
  cr_assert_eq(parse("HTTP/1.0 200 OK\r\n\r\n{}", true, &r), 1);
  cr_assert_str_eq(r.body, "{}");
  cr_assert(!r.keep_alive, "a close-delimited body ends the connection");
  http1_response_free(&r);
  same_at_every_split("HTTP/1.1 200 OK\r\n\r\nabc", 1, "abc");
  const char *s = "HTTP/1.1 100 Continue\r\nX-I: 1\r\n\r\n"
                  "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
  cr_assert_eq(parse(s, false, &r), 1);
  cr_assert_eq(r.status, 200);
  size_t n;
  cr_assert_null(http1_response_header(&r, "X-I", &n), "interim headers are not kept");
  http1_response_free(&r);
  same_at_every_split(s, 1, "{}");
  cr_assert_eq(parse("HTTP/1.1 101 Switching Protocols\r\n\r\n", false, &r), STP_ESYNTAX);
  http1_response_free(&r);
}

Test(http1_response, no_body_responses_and_keep_alive) {
  http1_response r;
  size_t used;
  /* 204 and 304 have no body whatever they declare */
  const char *s = "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\nHTTP/1.1";
  cr_assert_eq(parse(s, false, &r), 1);
  cr_assert_eq(r.body_len, 0);
  http1_response_free(&r);
  /* a response to HEAD: the same */
  http1_response_init(&r, 0, true);
  s = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
  cr_assert_eq(http1_response_feed(&r, s, strlen(s), &used), 1);
  cr_assert_eq(used, strlen(s));
  cr_assert(r.keep_alive);
  http1_response_free(&r);
  /* Connection: close, and HTTP/1.0 without keep-alive, end it */
  cr_assert_eq(
      parse("HTTP/1.1 200 OK\r\nConnection: Keep-Alive, close\r\nContent-Length: 0\r\n\r\n", false,
            &r),
      1);
  cr_assert(!r.keep_alive);
  http1_response_free(&r);
  cr_assert_eq(parse("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false, &r), 1);
  cr_assert(!r.keep_alive);
  http1_response_free(&r);
  cr_assert_eq(
      parse("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", false, &r),
      1);
  cr_assert(r.keep_alive);
  http1_response_free(&r);
}

Test(http1_response, bytes_after_the_response_are_not_taken) {
  http1_response r;
  size_t used;
  const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokGARBAGE";
  http1_response_init(&r, 0, false);
  cr_assert_eq(http1_response_feed(&r, s, strlen(s), &used), 1);
  cr_assert_eq(used, strlen(s) - 7);
  cr_assert_str_eq(r.body, "ok");
  cr_assert_eq(http1_response_feed(&r, "x", 1, &used), 1, "complete stays complete");
  cr_assert_eq(used, 0);
  http1_response_free(&r);
}

Test(http1_response, malformed) {
  static const char *const bad[] = {
      "HTTP/2 200 OK\r\n\r\n",
      "HTTP/1.1 20 OK\r\n\r\n",
      "HTTP/1.1 200OK\r\n\r\n",
      "XTTP/1.1 200 OK\r\n\r\n",
      "HTTP/1.1 099 x\r\n\r\n",
      "HTTP/1.1 200 O\x01K\r\n\r\n",
      "HTTP/1.1 200 OK\nX: y\r\n\r\n",
      "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
      "HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n",
      "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
      "HTTP/1.1 200 OK\r\n: empty\r\n\r\n",
      "HTTP/1.1 200 OK\r\n folded: x\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
      /* both framings: a smuggling attempt (RFC 9112 6.3) */
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
      "HTTP/1.1 200 OK\r\nX: a\x01b\r\n\r\n",
      "HTTP/1.1 200 OK\r\nX: a\x7f\r\n\r\n",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    http1_response r;
    cr_assert_eq(parse(bad[i], false, &r), STP_ESYNTAX, "accepted #%zu", i);
    http1_response_free(&r);
    same_at_every_split(bad[i], STP_ESYNTAX, NULL);
  }
  http1_response r;
  cr_assert_eq(
      parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n", false, &r),
      1);
  http1_response_free(&r);
}

Test(http1_response, bounds) {
  http1_response r;
  /* a close-delimited body past the bound */
  size_t big = HTTP1_RESPONSE_MAX + 10;
  char *p = malloc(big);
  memset(p, 'a', big);
  memcpy(p, "HTTP/1.1 200 OK\r\n\r\n", 19);
  cr_assert_eq(parse_max(p, big, true, 0, &r), STP_ETOOLONG);
  http1_response_free(&r);
  /* the bound counts the whole response: exactly max is fine, one more is not */
  const char *head = "HTTP/1.1 200 OK\r\nContent-Length: 81\r\n\r\n";
  size_t h = strlen(head);
  cr_assert_eq(h + 81, 120);
  memcpy(p, head, h);
  cr_assert_eq(parse_max(p, 120, false, 120, &r), 1);
  cr_assert_eq(r.body_len, 81);
  http1_response_free(&r);
  cr_assert_eq(parse_max(p, 120, false, 119, &r), STP_ETOOLONG,
               "refused on the declared length, before the body arrives");
  http1_response_free(&r);
  /* interim responses count too */
  char s[400];
  snprintf(s, sizeof s, "HTTP/1.1 100 Continue\r\n\r\n%s",
           "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  cr_assert_eq(parse_max(s, strlen(s), false, strlen(s), &r), 1);
  http1_response_free(&r);
  cr_assert_eq(parse_max(s, strlen(s), false, strlen(s) - 1, &r), STP_ETOOLONG);
  http1_response_free(&r);
  /* chunk framing counts: 40 one-byte chunks take 6 bytes each */
  size_t k = (size_t)snprintf(s, sizeof s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
  for (int i = 0; i < 40; i++)
    k += (size_t)snprintf(s + k, sizeof s - k, "1\r\nx\r\n");
  k += (size_t)snprintf(s + k, sizeof s - k, "0\r\n\r\n");
  cr_assert_eq(parse_max(s, k, false, k, &r), 1);
  cr_assert_eq(r.body_len, 40);
  http1_response_free(&r);
  cr_assert_eq(parse_max(s, k, false, k - 1, &r), STP_ETOOLONG);
  http1_response_free(&r);
  /* one line over HTTP1_LINE_MAX */
  size_t n = HTTP1_LINE_MAX + 100;
  memset(p, 'a', n);
  memcpy(p, "HTTP/1.1 200 OK\r\nX-Long: ", 26);
  cr_assert_eq(parse_max(p, n, false, 0, &r), STP_ETOOLONG);
  http1_response_free(&r);
  free(p);
}

static void tap_count(void *arg, const char *p, size_t n) {
  (void)p;
  *(size_t *)arg += n;
}

/* A body larger than the bound, with http1_response_skip: the first `keep`
 * bytes are kept, the rest read and dropped (tap sees them all), for
 * Content-Length and chunked alike; past skip_max it is still too long. */
Test(http1_response, skip_keeps_a_prefix_and_taps_everything) {
  size_t big = 300 * 1024;
  char *body = malloc(big);
  memset(body, 'x', big);
  memcpy(body, "{\"id\":\"A\"}", 10);
  for (int chunked = 0; chunked < 2; chunked++) {
    stp_buf b;
    stp_buf_init(&b, big * 2);
    if (chunked) {
      stp_buf_appendf(&b, "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n");
      for (size_t i = 0; i < big; i += 50000) {
        size_t n = big - i < 50000 ? big - i : 50000;
        stp_buf_appendf(&b, "%zx\r\n", n);
        stp_buf_append(&b, body + i, n);
        stp_buf_appendf(&b, "\r\n");
      }
      stp_buf_appendf(&b, "0\r\n\r\n");
    } else {
      stp_buf_appendf(&b, "HTTP/1.1 201 Created\r\nContent-Length: %zu\r\n\r\n", big);
      stp_buf_append(&b, body, big);
    }
    http1_response r;
    size_t used, seen = 0;
    http1_response_init(&r, 0, false);
    cr_assert_eq(http1_response_feed(&r, b.data, b.len, &used), STP_ETOOLONG, "no skip: refused");
    http1_response_free(&r);
    http1_response_init(&r, 0, false);
    http1_response_skip(&r, 1024, big, tap_count, &seen);
    int rc = 0;
    for (size_t i = 0; i < b.len && rc == 0; i += 777) /* any split */
      rc = http1_response_feed(&r, b.data + i, b.len - i < 777 ? b.len - i : 777, &used);
    cr_assert_eq(rc, 1, "chunked %d", chunked);
    cr_assert_eq(r.status, 201);
    cr_assert_eq(r.body_len, 1024);
    cr_assert(r.body_cut);
    cr_assert_eq(seen, big, "the tap saw every body byte");
    cr_assert(!memcmp(r.body, "{\"id\":\"A\"}", 10));
    cr_assert(r.keep_alive);
    http1_response_free(&r);
    http1_response_init(&r, 0, false);
    http1_response_skip(&r, 1024, big / 2, NULL, NULL);
    cr_assert_eq(http1_response_feed(&r, b.data, b.len, &used), STP_ETOOLONG, "past skip_max");
    http1_response_free(&r);
    stp_buf_free(&b);
  }
  free(body);
}
