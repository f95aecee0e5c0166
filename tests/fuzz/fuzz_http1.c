/* fuzz_http1.c - the HTTP/1.1 response parser on untrusted bytes, as the
 * HTTP client feeds it: arbitrary splits, chunked framing, interim
 * responses, bounds.
 *
 * Input: byte 0 picks the bound (bits 0-1: 64 KiB, 4 KiB, 300 bytes, 40
 * bytes) and HEAD (bit 2); byte 1 seeds the split points; the rest is the
 * response. Invariants: every verdict is 0/1/ESYNTAX/ETOOLONG; the verdict,
 * status, body, keep-alive decision and the bytes taken are the same
 * whether the input comes whole, byte by byte, or cut at pseudo-random
 * points; a complete response took at most max bytes and its body is
 * NUL-terminated and within the bound; a keep-alive response never needed
 * the close to end; every stored header reads back without control bytes.
 */
#include "fuzz_common.h"

#include "smtp-tls-proxy/http1.h"

typedef struct outcome {
  int rc;
  size_t taken;
  bool by_eof;
} outcome;

static const size_t maxes[4] = {HTTP1_RESPONSE_MAX, 4096, 300, 40};

/* Cut p into pieces: 0 whole, 1 byte by byte, else lengths from a tiny
 * linear congruential generator seeded by `seed`. */
static outcome run(const char *p, size_t n, int mode, unsigned seed, size_t max, bool head,
                   http1_response *r) {
  outcome o = {0, 0, false};
  http1_response_init(r, max, head);
  size_t off = 0;
  while (off < n && o.rc == 0) {
    size_t len = n - off;
    if (mode == 1)
      len = 1;
    else if (mode == 2) {
      seed = seed * 1103515245u + 12345u;
      size_t want = (seed >> 16) % 23 + 1;
      len = want < len ? want : len;
    }
    size_t used;
    o.rc = http1_response_feed(r, p + off, len, &used);
    CHECK(used <= len);
    if (o.rc == 0)
      CHECK(used == len); /* it takes everything until the response ends */
    o.taken += used;
    off += len;
  }
  if (o.rc == 0) {
    o.rc = http1_response_eof(r);
    o.by_eof = true;
  }
  CHECK(o.rc == 1 || o.rc == STP_ESYNTAX || o.rc == STP_ETOOLONG);
  return o;
}

static void check_complete(const http1_response *r, const outcome *o, size_t max) {
  CHECK(o->taken <= max);
  CHECK(r->status >= 200 && r->status <= 999 && r->status != 101);
  CHECK(r->body && r->body[r->body_len] == '\0' && r->body_len <= max);
  if (r->keep_alive)
    CHECK(!o->by_eof); /* a close-delimited body cannot keep the connection */
  static const char *const names[] = {"content-type", "location", "content-length", "x-a"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    size_t len;
    const char *v = http1_response_header(r, names[i], &len);
    for (size_t k = 0; v && k < len; k++)
      CHECK((unsigned char)v[k] >= 0x20 || v[k] == '\t');
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  size_t max = maxes[data[0] & 3];
  bool head = data[0] & 4;
  unsigned seed = data[1];
  const char *p = (const char *)data + 2;
  size_t n = size - 2;

  http1_response a, b, c;
  outcome oa = run(p, n, 0, seed, max, head, &a);
  outcome ob = run(p, n, 1, seed, max, head, &b);
  outcome oc = run(p, n, 2, seed, max, head, &c);
  CHECK(oa.rc == ob.rc && oa.rc == oc.rc);
  if (oa.rc == 1) {
    CHECK(oa.taken == ob.taken && oa.taken == oc.taken);
    CHECK(oa.by_eof == ob.by_eof && oa.by_eof == oc.by_eof);
    const http1_response *o[2] = {&b, &c};
    for (int i = 0; i < 2; i++) {
      CHECK(o[i]->status == a.status && o[i]->keep_alive == a.keep_alive);
      CHECK(o[i]->body_len == a.body_len && !memcmp(o[i]->body, a.body, a.body_len));
    }
    check_complete(&a, &oa, max);
  }
  http1_response_free(&a);
  http1_response_free(&b);
  http1_response_free(&c);
  return 0;
}
