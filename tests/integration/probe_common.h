/* probe_common.h - what the probe and alert tests share (test_probe.c,
 * test_alerts.c): a proxy with two upstreams on one aiosmtpd server, "up"
 * with the right password and "bad" with one the server refuses
 * (password_env: STP_WRONG_PW, set to "not-the-password"), "bad" probed
 * every second. */
#ifndef STP_TEST_PROBE_COMMON_H
#define STP_TEST_PROBE_COMMON_H

#include "harness.h"

/* up_probe: "up"'s probe_interval; top_extra: top-level YAML (alerts:,
 * metrics:); route: the line that replaces route "default"'s
 * "    upstream: up\n". */
void probe_start_two(h_proxy *px, const h_upstream *u, const char *up_probe, const char *top_extra,
                     const char *route);

#endif
