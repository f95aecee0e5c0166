/* fuzz_oauth2.c - what a token endpoint sends back: the HTTP/1.1 response
 * parser as the token fetch drives it, then the token-response JSON reader
 * (jansson) and the evaluator, all fed untrusted network bytes.
 *
 * Input: byte 0 picks the read size (1..16), the rest is the response.
 * Invariants: the response parser gives the same verdict and body whether
 * the response arrives whole or in reads of that size; a complete body is
 * exactly body_len bytes, NUL-terminated, within OAUTH2_RESPONSE_MAX;
 * whatever body comes out, the JSON reader and the evaluator return without
 * crashing, and a usable token they accept is printable ASCII.
 */
#include "fuzz_common.h"

#include "smtp-tls-proxy/http1.h"
#include "smtp-tls-proxy/oauth2.h"

/* Feed p in reads of `step` bytes, then the close. */
static int read_response(const char *p, size_t n, size_t step, http1_response *r) {
  http1_response_init(r, OAUTH2_RESPONSE_MAX, false);
  int rc = 0;
  for (size_t off = 0; off < n && rc == 0; off += step) {
    size_t used;
    rc = http1_response_feed(r, p + off, n - off < step ? n - off : step, &used);
  }
  return rc == 0 ? http1_response_eof(r) : rc;
}

static void judge(const http1_response *r) {
  CHECK(r->body != NULL && r->body[r->body_len] == '\0');
  CHECK(r->body_len <= OAUTH2_RESPONSE_MAX);
  oauth2_token_resp t;
  char err[256];
  int re = oauth2_evaluate(r->status, r->body, r->body_len, &t, err, sizeof err);
  if (re == 0)
    CHECK(t.access_token && oauth2_token_ok(t.access_token, strlen(t.access_token)));
  else
    CHECK(memchr(err, '\0', sizeof err) != NULL);
  oauth2_token_resp_free(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  size_t step = (size_t)(data[0] % 16) + 1;
  const char *p = (const char *)data + 1;
  size_t n = size - 1;

  http1_response whole, parts;
  int rw = read_response(p, n, n ? n : 1, &whole);
  int rp = read_response(p, n, step, &parts);
  CHECK(rw == 1 || rw == STP_ESYNTAX || rw == STP_ETOOLONG);
  CHECK(rp == rw);
  if (rw == 1) {
    CHECK(parts.status == whole.status && parts.body_len == whole.body_len);
    CHECK(memcmp(parts.body, whole.body, whole.body_len) == 0);
    judge(&whole);
  }
  http1_response_free(&whole);
  http1_response_free(&parts);

  /* The JSON reader on the raw input too (bodies are arbitrary bytes). */
  oauth2_token_resp j;
  int rj = oauth2_json_parse(p, n, &j);
  CHECK(rj == 0 || rj == STP_ESYNTAX || rj == STP_ETOOLONG);
  if (rj < 0)
    CHECK(j.access_token == NULL);
  oauth2_token_resp_free(&j);
  return 0;
}
