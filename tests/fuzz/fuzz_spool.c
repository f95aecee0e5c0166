/* fuzz_spool.c - the spool's file parsers on hostile bytes: what a torn,
 * foreign or tampered file in queue/ can hold. The first byte picks the
 * envelope or the state parser (and, for a state, the recipient count).
 *
 * Invariants: only documented return codes; an accepted envelope has a
 * valid id, at least one recipient and no CR, LF or NUL in any value, its
 * header length within the input; format(parse(x)) parses again to the
 * same text (the formatter and the parser agree); an accepted state has
 * only in-range done marks and formats and parses back to itself.
 */
#include "fuzz_common.h"
#include "smtp-tls-proxy/spool.h"

static bool clean(const char *s) {
  return s && !strpbrk(s, "\r\n");
}

static void envelope(const char *in, size_t n) {
  spool_env e, again;
  size_t hl, len, hl2, len2;
  spool_env_offsets off, off2;
  int rc = spool_env_parse(in, n, &e, &hl);
  CHECK(rc == STP_OK || rc == STP_EAGAIN || rc == STP_ESYNTAX);
  if (rc != STP_OK)
    return;
  CHECK(hl <= n && spool_id_valid(e.id) && e.n_rcpts >= 1);
  CHECK(clean(e.route) && clean(e.listener) && clean(e.client) && clean(e.from) &&
        clean(e.up_from) && clean(e.reason));
  for (size_t i = 0; i < e.n_rcpts; i++)
    CHECK(clean(e.rcpts[i]) && e.rcpts[i][0]);
  char *t = spool_env_format(&e, &len, &off);
  CHECK(t != NULL);
  CHECK(spool_env_parse(t, len, &again, &hl2) == STP_OK && hl2 == len);
  CHECK(again.size == e.size && !memcmp(again.sha256, e.sha256, 32));
  CHECK(again.n_rcpts == e.n_rcpts && !strcmp(again.id, e.id));
  char *t2 = spool_env_format(&again, &len2, &off2);
  CHECK(t2 && len2 == len && !memcmp(t, t2, len) && off2.size == off.size &&
        off2.hash == off.hash && off2.reason == off.reason);
  free(t);
  free(t2);
  spool_env_free(&again);
  spool_env_free(&e);
}

static void state(const char *in, size_t n, size_t n_rcpts) {
  spool_state st, again;
  int rc = spool_state_parse(in, n, n_rcpts, &st);
  CHECK(rc == STP_OK || rc == STP_ESYNTAX);
  if (rc != STP_OK)
    return;
  CHECK(st.n_rcpts == n_rcpts && st.held <= SPOOL_HELD_ROUTE && clean(st.last));
  size_t len;
  char *t = spool_state_format(&st, &len);
  CHECK(t && spool_state_parse(t, len, n_rcpts, &again) == STP_OK);
  CHECK(again.attempts == st.attempts && again.next_ms == st.next_ms && again.held == st.held);
  CHECK(!memcmp(again.done, st.done, n_rcpts * sizeof *st.done));
  free(t);
  spool_state_free(&again);
  spool_state_free(&st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  const char *in = (const char *)data + 1;
  if (data[0] & 1)
    state(in, size - 1, 1 + (data[0] >> 1) % 16);
  else
    envelope(in, size - 1);
  return 0;
}
