/* fuzz_oauth2.c - what a token endpoint sends back: the HTTP response
 * reader and the token-response JSON reader, both fed untrusted network
 * bytes.
 *
 * Input: byte 0 picks the split points' step (1..16), the rest is the
 * response. Invariants: the HTTP reader gives the same verdict and body
 * whether the response arrives whole or grows in steps (as reads deliver
 * it: each call sees all bytes so far); a complete body is exactly
 * body_len bytes and NUL-terminated; whatever body comes out, the JSON
 * reader and the evaluator return without crashing, and a usable token
 * they accept is printable ASCII. */
#include "fuzz_common.h"

#include "smtp-tls-proxy/oauth2.h"

static int parse_whole(const char *p, size_t n, bool eof, oauth2_http_resp *r) {
  memset(r, 0, sizeof *r);
  return oauth2_http_parse(p, n, eof, r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  size_t step = (size_t)(data[0] % 16) + 1;
  const char *p = (const char *)data + 1;
  size_t n = size - 1;
  char *copy = malloc(n ? n : 1);
  CHECK(copy);
  if (n)
    memcpy(copy, p, n);

  oauth2_http_resp whole;
  int rw = parse_whole(copy, n, true, &whole);
  CHECK(rw == 0 || rw == 1 || rw == STP_ESYNTAX || rw == STP_ETOOLONG);

  /* Growing prefixes, as successive reads show them; stop at the first
   * complete or failed verdict, which must then match the whole input's
   * (a prefix may complete earlier only if the whole input also did). */
  for (size_t len = step < n ? step : n; len < n; len += step) {
    oauth2_http_resp part;
    int rp = parse_whole(copy, len, false, &part);
    if (rp == 1) {
      CHECK(rw == 1);
      CHECK(part.body_len == whole.body_len);
      CHECK(memcmp(part.body, whole.body, part.body_len) == 0);
      oauth2_http_resp_free(&part);
      break;
    }
    CHECK(rp == 0 || rp == STP_ESYNTAX || rp == STP_ETOOLONG);
    if (rp < 0)
      break;
  }

  if (rw == 1) {
    CHECK(whole.body != NULL);
    CHECK(whole.body[whole.body_len] == '\0');
    oauth2_token_resp t;
    memset(&t, 0, sizeof t);
    char err[256];
    int re = oauth2_evaluate(whole.status, whole.body, whole.body_len, &t, err, sizeof err);
    if (re == 0) {
      CHECK(t.access_token && oauth2_token_ok(t.access_token, strlen(t.access_token)));
    } else {
      CHECK(memchr(err, '\0', sizeof err) != NULL);
    }
    oauth2_token_resp_free(&t);
    oauth2_http_resp_free(&whole);
  }

  /* The JSON reader on the raw input too (bodies are arbitrary bytes). */
  oauth2_token_resp j;
  memset(&j, 0, sizeof j);
  int rj = oauth2_json_parse(copy, n, &j);
  CHECK(rj == 0 || rj == STP_ESYNTAX || rj == STP_ETOOLONG);
  oauth2_token_resp_free(&j);
  free(copy);
  return 0;
}
