/* fuzz_oauthq.c - what reaches `oauth2 login` from a browser or a
 * terminal: the loopback listener's request head (http1.c) and the
 * authorization response in its target or in a pasted line (oauthq.c),
 * and the device and token answers of an authorization server
 * (oauth_login.c).
 *
 * Invariants: the parser returns one of its four codes; on STP_OK the
 * answer has a code or an error, every kept value is NUL-terminated within
 * its bound, code/state/error are visible ASCII and error_description has
 * no control byte; on a refusal nothing is kept; surrounding whitespace
 * does not change the verdict; the same bytes as a request target behind
 * "GET " parse the same; the answer readers never crash and never accept
 * a device code or refresh token a form could not carry.
 */
#include "fuzz_common.h"

#include "smtp-tls-proxy/http1.h"
#include "smtp-tls-proxy/oauth_login.h"
#include "smtp-tls-proxy/oauthq.h"

static void check_value(const char *v, size_t cap, bool desc) {
  size_t n = strnlen(v, cap);
  CHECK(n < cap);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)v[i];
    CHECK(c >= 0x20 && c != 0x7f);
    if (!desc)
      CHECK(c > 0x20 && c < 0x7f);
  }
}

static int parse_checked(const char *p, size_t n, oauthq *q) {
  int rc = oauthq_parse(p, n, q);
  CHECK(rc == STP_OK || rc == STP_ENOTFOUND || rc == STP_ESYNTAX || rc == STP_ETOOLONG);
  if (rc == STP_OK) {
    CHECK(q->has_code || q->has_error);
    check_value(q->code, sizeof q->code, false);
    check_value(q->state, sizeof q->state, false);
    check_value(q->error, sizeof q->error, false);
    check_value(q->error_description, sizeof q->error_description, true);
  } else if (rc != STP_ENOTFOUND) {
    CHECK(!q->has_code && !q->code[0] && !q->has_state && !q->has_error);
  }
  return rc;
}

/* The input as a request target the listener would pass on. */
static void as_request(const char *p, size_t n, int rc_direct) {
  static char buf[OAUTHQ_INPUT_MAX + 64];
  if (n > OAUTHQ_INPUT_MAX || memchr(p, '\n', n) || memchr(p, '\r', n))
    return;
  memcpy(buf, "GET ", 4);
  memcpy(buf + 4, p, n);
  memcpy(buf + 4 + n, " HTTP/1.1\r\n\r\n", 13);
  http1_request r;
  if (http1_parse_request(buf, n + 17, sizeof buf, &r) != STP_OK)
    return;
  oauthq q;
  int rc = parse_checked(r.target, r.target_len, &q);
  if (r.target == buf + 4 && r.target_len == n)
    CHECK(rc == rc_direct);
  oauthq_wipe(&q);
}

static void answers(const char *p, size_t n) {
  oauth_device d;
  char err[300];
  if (oauth_device_parse(200, p, n, &d, err, sizeof err) == 0) {
    CHECK(d.device_code && oauth2_token_ok(d.device_code, strlen(d.device_code)));
    CHECK(d.interval >= 1 && d.interval <= 60 && d.expires_in > 0);
  }
  oauth_device_free(&d);
  oauth2_token_resp t;
  oauth_extra x;
  if (oauth_token_verdict(200, p, n, &t, &x, err, sizeof err) == OL_TOKEN)
    CHECK(t.refresh_token && oauth2_token_ok(t.refresh_token, strlen(t.refresh_token)));
  oauth2_token_resp_free(&t);
  CHECK(memchr(x.account, '\0', sizeof x.account) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *p = (const char *)data;
  oauthq q;
  int rc = parse_checked(p, size, &q);
  oauthq_wipe(&q);
  /* blanks around a pasted line change nothing */
  if (size <= OAUTHQ_INPUT_MAX) {
    static char padded[OAUTHQ_INPUT_MAX + 8];
    padded[0] = ' ';
    padded[1] = '\t';
    memcpy(padded + 2, p, size);
    memcpy(padded + 2 + size, "\r\n", 2);
    CHECK(parse_checked(padded, size + 4, &q) == rc);
    oauthq_wipe(&q);
  }
  as_request(p, size, rc);
  answers(p, size);
  return 0;
}
