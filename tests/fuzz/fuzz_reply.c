/* fuzz_reply.c - the upstream side's reply path on hostile bytes: lines of
 * a (multi-line) reply into smtp_reply_feed, then smtp_reply_enhanced and
 * smtp_caps_parse on every complete reply.
 *
 * Invariants: only documented return codes, the kept text bounded,
 * NUL-terminated and free of control characters other than TAB and the
 * '\n' that joins lines, codes 200..599, and an enhanced code 0 or 5..9
 * bytes long within the text and of the reply's class.
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *in = (const char *)data;
  smtp_reply *r = calloc(1, sizeof *r);
  size_t i = 0;
  while (i < size) {
    const char *lf = memchr(in + i, '\n', size - i);
    size_t e = lf ? (size_t)(lf - in) : size, n = e - i;
    if (n > 0 && in[i + n - 1] == '\r')
      n--;
    unsigned before = r->lines;
    int rc = smtp_reply_feed(r, in + i, n);
    i = e + 1;
    CHECK(rc == 0 || rc == 1 || rc == STP_ESYNTAX);
    CHECK(r->text_len <= SMTP_REPLY_MAX && r->text[r->text_len] == '\0');
    CHECK(strlen(r->text) == r->text_len);
    for (size_t k = 0; k < r->text_len; k++) {
      unsigned char c = (unsigned char)r->text[k];
      CHECK(c >= 0x20 || c == '\t' || c == '\n');
      CHECK(c != 0x7f);
    }
    if (rc == STP_ESYNTAX) {
      CHECK(r->lines == before);
      memset(r, 0, sizeof *r);
      continue;
    }
    CHECK(r->code >= 200 && r->code <= 599 && r->lines == before + 1);
    if (rc == 0)
      continue;
    size_t enh = smtp_reply_enhanced(r);
    CHECK(enh == 0 || (enh >= 5 && enh <= 9 && enh <= r->text_len));
    if (enh)
      CHECK(r->text[0] - '0' == r->code / 100 && r->text[1] == '.');
    smtp_caps caps;
    smtp_caps_parse(r, &caps);
    CHECK((caps.auth & ~0xfu) == 0);
    CHECK(caps.has_size || caps.size == 0);
    if (r->code != 250 || !memchr(r->text, '\n', r->text_len))
      CHECK(!caps.starttls && !caps.has_size && caps.auth == 0);
    memset(r, 0, sizeof *r);
  }
  free(r);
  return 0;
}
