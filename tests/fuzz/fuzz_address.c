/* fuzz_address.c - smtp_parse_path (and the MAIL/RCPT wrappers around it)
 * on hostile addresses.
 *
 * Input: the text after "MAIL FROM:" / "RCPT TO:".
 * Invariants: only documented codes; `end` inside the input; an accepted
 * path satisfies check_path (canonical, bounded, no relay hacks, no control
 * characters, 8-bit only with utf8, and it re-parses to itself); utf8 only
 * widens what is accepted: what passes without it passes with it, giving
 * the same path and end; MAIL and RCPT agree with the path they wrap.
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* Exact-size copy: the parsers take (pointer, length), never a NUL. */
  char *s = malloc(size ? size : 1);
  CHECK(s);
  if (size)
    memcpy(s, data, size);

  smtp_path p[2];
  size_t end[2] = {0, 0};
  int rc[2];
  for (int u = 0; u < 2; u++) {
    rc[u] = smtp_parse_path(s, size, u == 1, &p[u], &end[u]);
    CHECK(rc[u] == 0 || rc[u] == STP_ESYNTAX || rc[u] == STP_EADDR);
    if (rc[u] == 0) {
      CHECK(end[u] > 0 && end[u] <= size);
      check_path(&p[u], u == 1);
    } else {
      CHECK(p[u].addr[0] == '\0');
    }
  }
  if (rc[0] == 0) {
    CHECK(rc[1] == 0 && end[0] == end[1] && p[0].null_path == p[1].null_path);
    CHECK(strcmp(p[0].addr, p[1].addr) == 0);
  }

  smtp_mail_args m;
  int mrc = smtp_parse_mail(s, size, &m);
  CHECK(mrc == 0 || mrc == STP_EADDR || mrc == STP_EPARAM || mrc == STP_ESYNTAX);
  if (mrc == 0) {
    CHECK((rc[1] == 0 && strcmp(m.from.addr, p[1].addr) == 0));
    check_path(&m.from, m.smtputf8);
  }
  for (int u = 0; u < 2; u++) {
    smtp_path r;
    int rrc = smtp_parse_rcpt(s, size, u == 1, &r);
    CHECK(rrc == 0 || rrc == STP_EADDR || rrc == STP_EPARAM || rrc == STP_ESYNTAX);
    if (rrc == 0) {
      CHECK(!r.null_path);
      CHECK((rc[u] == 0 && strcmp(r.addr, p[u].addr) == 0));
      check_path(&r, u == 1);
    }
  }
  free(s);
  return 0;
}
