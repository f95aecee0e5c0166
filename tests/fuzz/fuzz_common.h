/* fuzz_common.h - what the libFuzzer targets share: a CHECK that aborts
 * (so libFuzzer keeps the input as a crash), a small FNV hash to compare
 * two runs' event streams, and the invariants of a parsed SMTP path.
 * Header-only and static: each target is one translation unit.
 */
#ifndef STP_FUZZ_COMMON_H
#define STP_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp-tls-proxy/smtp.h"
#include "smtp-tls-proxy/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                                   \
  do {                                                                                             \
    if (!(x)) {                                                                                    \
      fprintf(stderr, "invariant failed: %s (%s:%d)\n", #x, __FILE__, __LINE__);                   \
      abort();                                                                                     \
    }                                                                                              \
  } while (0)

static inline void fnv(uint64_t *h, const void *p, size_t n) {
  const unsigned char *s = p;
  for (size_t i = 0; i < n; i++) {
    *h ^= s[i];
    *h *= 1099511628211ull;
  }
}
static inline void fnv_int(uint64_t *h, long v) {
  fnv(h, &v, sizeof v);
}

/* What smtp.h promises of an accepted path: canonical, bounded, safe to put
 * back between angle brackets, and parsed again to itself. */
static inline void check_path(const smtp_path *p, bool utf8) {
  size_t n = strnlen(p->addr, sizeof p->addr);
  CHECK(n <= SMTP_ADDR_MAX);
  if (p->null_path) {
    CHECK(n == 0);
    return;
  }
  const char *at = strrchr(p->addr, '@');
  CHECK(at && at > p->addr && at[1] != '\0');
  CHECK(strcmp(smtp_path_domain(p), at + 1) == 0);
  bool quoted = p->addr[0] == '"';
  if (quoted)
    CHECK(at[-1] == '"');
  for (const char *q = p->addr; *q; q++) {
    unsigned char c = (unsigned char)*q;
    CHECK(c >= 0x20 && c != 0x7f); /* no control characters */
    CHECK(utf8 || c < 0x80);       /* 8-bit only with SMTPUTF8 */
    /* Relay hacks, also inside quotes (Postfix resolves there). */
    if (q < at)
      CHECK(c != '%' && c != '!' && c != '@');
    if (!quoted || q > at)
      CHECK(c != ' ' && c != '<' && c != '>');
  }
  /* The domain is lower-cased (but for the "IPv6:" tag of a literal). */
  const char *d = at + 1;
  size_t skip = strncmp(d, "[IPv6:", 6) == 0 ? 6 : 0;
  for (const char *q = d + skip; *q; q++)
    CHECK(!(*q >= 'A' && *q <= 'Z'));

  /* Canonical form re-parses to itself, bracketed and bare. */
  char buf[SMTP_ADDR_MAX + 3];
  smtp_path again;
  size_t end = 0;
  int len = snprintf(buf, sizeof buf, "<%s>", p->addr);
  CHECK(len == (int)n + 2);
  CHECK(smtp_parse_path(buf, (size_t)len, utf8, &again, &end) == 0);
  CHECK(end == (size_t)len && !again.null_path && strcmp(again.addr, p->addr) == 0);
  CHECK(smtp_parse_path(buf + 1, n, utf8, &again, &end) == 0);
  CHECK(end == n && !again.null_path && strcmp(again.addr, p->addr) == 0);
}

#endif
