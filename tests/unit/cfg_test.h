/* cfg_test.h - what the config unit tests (test_config_*.c) share: the
 * diagnostics of the last load, loading a YAML string as "t.yaml", and
 * the byte-exact check of a load that must fail. */
#ifndef STP_TEST_CFG_TEST_H
#define STP_TEST_CFG_TEST_H

#include <stdbool.h>

#include "smtp-tls-proxy/config.h"

/* The diagnostics of the last cfg_load (each test runs in its own process). */
extern stp_diag cfg_diag;

/* cfg_diag's lines joined by '\n', bounded at 8 KiB. */
const char *cfg_diags(void);
/* Drops the last diagnostics, loads yaml; asserts that a config comes
 * back exactly when the load says STP_OK. */
stp_config *cfg_load(const char *yaml);
/* Loads yaml, which must fail with exactly `expected` as its diagnostics. */
void cfg_fails_with(const char *yaml, const char *expected);
/* Frees and clears cfg_diag (a suite's .fini). */
void cfg_diag_reset(void);
/* Whether a line of d contains s. */
bool cfg_diag_has(const stp_diag *d, const char *s);

/* The start of a config whose upstream "up" has an auth: block (username
 * me@example.com) that the test goes on with. */
#define CFG_AUTH_HEAD                                                                              \
  "listeners: [{name: lan, listen: \"127.0.0.1:0\"}]\n"                                            \
  "routes: [{name: r, upstream: up}]\n"                                                            \
  "upstreams:\n"                                                                                   \
  "  - name: up\n"                                                                                 \
  "    host: smtp.example.com\n"                                                                   \
  "    auth:\n"                                                                                    \
  "      username: me@example.com\n"

#endif
