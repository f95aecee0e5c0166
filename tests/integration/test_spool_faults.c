/* test_spool_faults.c - the spool's durability calls failing: with the
 * LD_PRELOAD shim tests/tools/fault_shim.c the proxy's fsync of the
 * message file, fsync of the queue directory, or rename into the queue
 * fails on demand. Each failure must reach the device as 452 4.3.1 (never
 * a 250), leave nothing half-written, and lose nothing committed before
 * or after it. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "spool_common.h"

static void set_fault(const char *path, const char *word) {
  h_write_file(path, word, strlen(word));
}

ITest(integ, spool_fsync_and_rename_failures_are_452_and_lose_nothing) {
  int port = h_free_port();
  char yaml[8192], ctl[512], count[600], preload[600], fault_env[600], asan[1024];
  sp_yaml(port, "starttls", "  retry: [1h]\n", yaml, sizeof yaml);
  h_path(ctl, sizeof ctl, "faults");
  snprintf(count, sizeof count, "%s.count", ctl);
  set_fault(ctl, "");
  snprintf(preload, sizeof preload, "LD_PRELOAD=%s", STP_FAULT_SHIM);
  snprintf(fault_env, sizeof fault_env, "STP_FAULT_FILE=%s", ctl);
  /* An ASan build wants its runtime first; the shim comes first here. */
  const char *ao = getenv("ASAN_OPTIONS");
  snprintf(asan, sizeof asan, "ASAN_OPTIONS=%s%sverify_asan_link_order=0", ao ? ao : "",
           ao && *ao ? ":" : "");
  char *env[] = {preload, fault_env, asan, NULL};
  h_proxy px;
  h_proxy_start_yaml_env(&px, yaml, env);

  const char *const to[] = {"a@example.com", NULL};
  char text[1024], id1[32], id5[32], line[1024];
  cr_assert_eq(sp_send(px.port, to, "Subject: m1\r\n\r\nx\r\n", text, sizeof text), 250, "%s",
               text);
  cr_assert(sp_queued_id(text, id1));
  const char *faults[] = {"fsync-file", "fsync-dir", "rename"};
  for (size_t i = 0; i < 3; i++) {
    set_fault(ctl, faults[i]);
    char body[64];
    snprintf(body, sizeof body, "Subject: m%zu\r\n\r\nx\r\n", i + 2);
    int code = sp_send(px.port, to, body, text, sizeof text);
    cr_assert_eq(code, 452, "%s failing: %s", faults[i], text);
    cr_assert(strstr(text, "452 4.3.1 "), "%s", text);
    cr_assert(h_file_contains(count, faults[i], strlen(faults[i])), "the %s fault was never hit",
              faults[i]);
    cr_assert(h_file_wait_line(
        px.log, (const char *const[]){"spool-commit-failed", "Input/output error", NULL}, 2000,
        line, sizeof line));
    cr_assert(sp_wait_tmp_empty(&px, 2000), "a failed commit left a file in tmp/ (%s)", faults[i]);
  }
  set_fault(ctl, "");
  cr_assert_eq(sp_send(px.port, to, "Subject: m5\r\n\r\nx\r\n", text, sizeof text), 250, "%s",
               text);
  cr_assert(sp_queued_id(text, id5));
  char out[4096];
  cr_assert_eq(sp_queue(&px, "list", out, sizeof out), 0);
  cr_assert(strstr(out, "2 messages") && strstr(out, id1) && strstr(out, id5), "%s", out);

  /* Up again: exactly the two messages that got 250. */
  h_upstream u;
  char p[16];
  snprintf(p, sizeof p, "%d", port);
  const char *extra[] = {"--port", p, NULL};
  h_upstream_start(&u, "starttls", extra);
  cr_assert_eq(sp_queue(&px, "retry", out, sizeof out), 0, "%s", out);
  cr_assert_eq(h_wait_records(u.record, "message", 2, 15000), 2);
  cr_assert(sp_wait_empty(&px, 10000));
  h_sleep_ms(500);
  h_lines l;
  cr_assert_eq(h_records(u.record, "message", &l), 2);
  for (size_t i = 0; i < l.n; i++) {
    size_t n;
    unsigned char *d = h_json_b64(l.v[i], "data_b64", &n);
    cr_assert(d && (strstr((char *)d, "Subject: m1\r\n") || strstr((char *)d, "Subject: m5\r\n")),
              "a message that got 452 was delivered: %s", d ? (char *)d : "?");
    free(d);
  }
  h_lines_free(&l);
}
