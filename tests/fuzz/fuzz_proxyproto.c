/* fuzz_proxyproto.c - the PROXY protocol v1/v2 header parser.
 *
 * Input: byte 0 picks the chunk size (1..16) in which the reader is fed the
 * rest, as a socket might split it.
 * Invariants: a parsed header is at most 107 bytes (v1) or PP_HEADER_MAX
 * (v2) and never longer than the input; a proxied one carries an IPv4 or
 * IPv6 source; every proper prefix of a header is "more", never "done" or
 * "bad"; the header alone parses to the same result; the chunked reader
 * agrees with the one-shot parse and takes exactly the header's bytes; a
 * header is always recognised by pp_sniff.
 */
#include "fuzz_common.h"

#include "smtp-tls-proxy/proxyproto.h"

static bool same(const pp_header *a, const pp_header *b) {
  return a->version == b->version && a->kind == b->kind && a->len == b->len &&
         !memcmp(&a->src, &b->src, sizeof a->src) && !memcmp(&a->dst, &b->dst, sizeof a->dst);
}

static void check_reader(const uint8_t *p, size_t n, size_t chunk, pp_status want,
                         const pp_header *h) {
  pp_reader *r = malloc(sizeof *r);
  CHECK(r);
  pp_reader_init(r);
  pp_header got;
  pp_status st = PP_MORE;
  size_t off = 0, used = 0;
  while (off < n && st == PP_MORE) {
    size_t k = n - off < chunk ? n - off : chunk;
    st = pp_reader_feed(r, p + off, k, &used, &got);
    CHECK(used <= k);
    if (st == PP_MORE)
      CHECK(used == k);
    off += used;
  }
  CHECK(st == want);
  if (st == PP_DONE) {
    CHECK(same(&got, h));
    CHECK(off == h->len); /* not one byte of the device's taken */
  }
  if (st == PP_BAD)
    CHECK(*pp_reader_error(r));
  free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  size_t chunk = (size_t)(data[0] % 16) + 1;
  size_t n = size - 1;
  uint8_t *p = malloc(n ? n : 1); /* exact size: overreads are reported */
  CHECK(p);
  memcpy(p, data + 1, n);
  pp_header h;
  const char *why = NULL;
  pp_status st = pp_parse(p, n, &h, &why);
  CHECK(st == PP_MORE || st == PP_DONE || st == PP_BAD);
  if (st == PP_BAD)
    CHECK(why && *why);
  if (st == PP_DONE) {
    CHECK(h.len <= n && h.len <= PP_HEADER_MAX);
    CHECK(h.version == 1 || h.version == 2);
    if (h.version == 1)
      CHECK(h.len <= PP_V1_MAX && p[h.len - 2] == '\r' && p[h.len - 1] == '\n');
    if (h.kind == PP_PROXIED)
      CHECK(h.src.ss_family == AF_INET || h.src.ss_family == AF_INET6);
    CHECK(pp_sniff(p, n) == PP_SNIFF_YES);
    pp_header again;
    CHECK(pp_parse(p, h.len, &again, &why) == PP_DONE && same(&again, &h));
    for (size_t k = 0; k < h.len; k++)
      CHECK(pp_parse(p, k, &again, &why) == PP_MORE);
  }
  if (n <= PP_HEADER_MAX + 64)
    check_reader(p, n, chunk, st, &h);
  free(p);
  return 0;
}
