/* test_harness.c - the harness's own clean-exit check can fail a test.
 *
 * Criterion ignores assertions in .fini, so the check that every proxy
 * stops with exit 0 and no sanitizer report runs inside each test (ITest).
 * These tests start stand-ins for a proxy that stop badly and show that
 * h_procs_unclean notices, including a report behind a long log.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "harness.h"

static h_proc *fake_proxy(const char *script) {
  char *const argv[] = {"sh", "-c", (char *)script, NULL};
  h_proc *p = h_spawn("fakeproxy", argv, NULL);
  p->checked_exit = true;
  /* Let the shell install its trap before the SIGTERM comes. */
  char line[64];
  cr_assert_eq(h_proc_wait_line(p, "ready", 5000, line, sizeof line), 0);
  return p;
}

ITest(integ, harness_fails_a_test_whose_proxy_exits_non_zero) {
  fake_proxy("trap 'exit 3' TERM; echo ready; while :; do sleep 0.05; done");
  static char failure[16384];
  cr_assert(h_procs_unclean(failure, sizeof failure), "exit 3 went unnoticed");
  cr_expect_not_null(strstr(failure, "status 3"), "%s", failure);
}

ITest(integ, harness_finds_a_sanitizer_report_behind_a_long_log) {
  /* 20 000 bytes of log first, as a busy proxy writes, then LSan's report
   * and exit 0 (as with exitcode=0): the report alone must fail it. */
  fake_proxy("trap 'printf \"==42==ERROR: LeakSanitizer: detected memory leaks\\n"
             "Direct leak of 64 byte(s)\\n\" >&2; exit 0' TERM; "
             "i=0; while [ $i -lt 200 ]; do printf '%0100d\\n' $i >&2; i=$((i+1)); done; "
             "echo ready; while :; do sleep 0.05; done");
  static char failure[16384];
  cr_assert(h_procs_unclean(failure, sizeof failure), "the report went unnoticed");
  cr_expect_not_null(strstr(failure, "LeakSanitizer"), "%s", failure);
  cr_expect_not_null(strstr(failure, "Direct leak of 64 byte(s)"),
                     "the report itself is shown, not the log's head: %.300s", failure);
}

ITest(integ, harness_passes_a_clean_stop) {
  fake_proxy("trap 'echo bye >&2; exit 0' TERM; echo ready; while :; do sleep 0.05; done");
  static char failure[16384];
  cr_assert_not(h_procs_unclean(failure, sizeof failure), "%s", failure);
}
