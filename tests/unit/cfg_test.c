/* cfg_test.c - the config unit tests' shared helpers (see cfg_test.h). */
#include "cfg_test.h"

#include <criterion/criterion.h>
#include <string.h>

#include "smtp-tls-proxy/util.h"

stp_diag cfg_diag;

const char *cfg_diags(void) {
  static char joined[8192];
  joined[0] = '\0';
  for (size_t i = 0; i < cfg_diag.n; i++) {
    if (i)
      strncat(joined, "\n", sizeof joined - strlen(joined) - 1);
    strncat(joined, cfg_diag.lines[i], sizeof joined - strlen(joined) - 1);
  }
  return joined;
}

void cfg_diag_reset(void) {
  stp_diag_free(&cfg_diag);
  memset(&cfg_diag, 0, sizeof cfg_diag);
}

stp_config *cfg_load(const char *yaml) {
  stp_config *cfg = NULL;
  cfg_diag_reset();
  int rc = stp_config_load_string("t.yaml", yaml, strlen(yaml), &cfg, &cfg_diag);
  cr_assert_eq(rc == STP_OK, cfg != NULL);
  return cfg;
}

void cfg_fails_with(const char *yaml, const char *expected) {
  stp_config *cfg = cfg_load(yaml);
  cr_assert_null(cfg, "loaded, but should have failed with: %s", expected);
  cr_assert_str_eq(cfg_diags(), expected);
}

bool cfg_diag_has(const stp_diag *d, const char *s) {
  for (size_t i = 0; i < d->n; i++)
    if (strstr(d->lines[i], s))
      return true;
  return false;
}
