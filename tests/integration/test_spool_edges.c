/* test_spool_edges.c - the spool's edges (issue 18) through the real
 * binary: DSN requests kept and honoured, held and corrupt messages
 * expiring, state changes as durable as the message, the start-up scan
 * against new commits, SIGTERM during a failure notice's read, failure
 * notices for UTF-8 addresses, `queue list`/`show` without control
 * characters, and the route's rate limit pacing spool deliveries. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"
#include "spool_common.h"

/* One message with SMTPUTF8 and the given MAIL/RCPT parameters; returns
 * the dot's code (or the first failing one). */
static int send_params(int port, const char *from, const char *mail_params,
                       const char *const rcpts[], const char *rcpt_params, const char *body,
                       char *text, size_t cap) {
  h_smtp c;
  h_smtp_open(&c, port, true);
  char line[1024];
  snprintf(line, sizeof line, "MAIL FROM:<%s>%s", from, mail_params ? mail_params : "");
  int code = h_smtp_cmd(&c, line, text, cap);
  for (size_t i = 0; code == 250 && rcpts[i]; i++) {
    snprintf(line, sizeof line, "RCPT TO:<%s>%s", rcpts[i], rcpt_params ? rcpt_params : "");
    code = h_smtp_cmd(&c, line, text, cap);
  }
  if (code == 250 && (code = h_smtp_cmd(&c, "DATA", text, cap)) == 354) {
    h_smtp_sendstr(&c, body);
    h_smtp_sendstr(&c, ".\r\n");
    code = h_smtp_reply(&c, 15000, text, cap);
  }
  h_smtp_sendstr(&c, "QUIT\r\n");
  h_smtp_close(&c);
  return code;
}

/* No byte of text is a C0 control (but LF), DEL, a C1 control as UTF-8
 * (C2 80..C2 9F) or a raw byte 0x80..0x9F outside a UTF-8 sequence. */
static void assert_printable(const char *what, const char *text) {
  const unsigned char *p = (const unsigned char *)text;
  for (size_t i = 0; p[i]; i++) {
    cr_assert(!(p[i] < 0x20 && p[i] != '\n') && p[i] != 0x7f, "%s: control 0x%02x at %zu: %s", what,
              p[i], i, text);
    cr_assert(!(p[i] == 0xc2 && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f),
              "%s: C1 control U+00%02X at %zu", what, p[i + 1], i);
    if (p[i] >= 0x80 && p[i] <= 0xbf)
      cr_assert(i > 0 && p[i - 1] >= 0x80, "%s: raw byte 0x%02x at %zu", what, p[i], i);
  }
}

ITest(integ, spool_queue_list_and_show_print_no_control_characters) {
  int port = h_free_port();
  h_proxy px;
  sp_start(&px, port, "starttls", "  retry: [1h]\n");
  /* U+009B is CSI: "\xc2\x9b" "2J" clears a terminal that obeys C1. */
  const char *const to[] = {"a\xc2\x9b"
                            "2Jb@example.com",
                            "c\xc2\x85"
                            "d@example.com",
                            NULL};
  char text[1024], id[32];
  int code = send_params(px.port, "scan\xc2\x9b@printer.test", " SMTPUTF8", to, NULL,
                         "Subject: c1\r\n\r\nx\r\n", text, sizeof text);
  cr_assert_eq(code, 250, "%s", text);
  cr_assert(sp_queued_id(text, id), "%s", text);
  char out[8192], args[64];
  cr_assert_eq(sp_queue(&px, "list", out, sizeof out), 0, "%s", out);
  cr_assert(strstr(out, id), "%s", out);
  cr_assert(strstr(out, "a?2Jb@example.com"), "the C1 control is shown as '?': %s", out);
  assert_printable("queue list", out);
  snprintf(args, sizeof args, "show %s", id);
  cr_assert_eq(sp_queue(&px, args, out, sizeof out), 0, "%s", out);
  cr_assert(strstr(out, "rcpt: <c?d@example.com>"), "%s", out);
  assert_printable("queue show", out);
}

/* ---- the fault shim (tests/tools/fault_shim.c) ------------------------------ */

typedef struct shim {
  char ctl[512], count[600], trace[600];
  char preload[600], fault_env[600], delay[64], asan[1024];
  char *env[5];
} shim;

static void shim_init(shim *s, int delay_ms) {
  h_path(s->ctl, sizeof s->ctl, "faults");
  snprintf(s->count, sizeof s->count, "%s.count", s->ctl);
  snprintf(s->trace, sizeof s->trace, "%s.trace", s->ctl);
  h_write_file(s->ctl, "", 0);
  snprintf(s->preload, sizeof s->preload, "LD_PRELOAD=%s", STP_FAULT_SHIM);
  snprintf(s->fault_env, sizeof s->fault_env, "STP_FAULT_FILE=%s", s->ctl);
  snprintf(s->delay, sizeof s->delay, "STP_FAULT_DELAY_MS=%d", delay_ms);
  const char *ao = getenv("ASAN_OPTIONS");
  snprintf(s->asan, sizeof s->asan, "ASAN_OPTIONS=%s%sverify_asan_link_order=0", ao ? ao : "",
           ao && *ao ? ":" : "");
  s->env[0] = s->preload;
  s->env[1] = s->fault_env;
  s->env[2] = s->delay;
  s->env[3] = s->asan;
  s->env[4] = NULL;
}

static void shim_set(const shim *s, const char *words) {
  h_write_file(s->ctl, words, strlen(words));
}

static bool shim_hit(const shim *s, const char *word, int timeout_ms) {
  int64_t deadline = h_now_ms() + timeout_ms;
  while (!h_file_contains(s->count, word, strlen(word))) {
    if (h_now_ms() > deadline)
      return false;
    h_sleep_ms(20);
  }
  return true;
}

/* SIGTERM, then exit 0 within 10 s and no sanitizer report anywhere in
 * the proxy's stderr (checked here, in the test's body). */
static void stop_clean(h_proxy *px) {
  h_proc_signal(px->proc, SIGTERM);
  int st = h_proc_wait_exit(px->proc, 10000);
  size_t n = 0;
  char *log = h_read_file(px->log, &n);
  cr_assert(log, "no log");
  const char *san = strstr(log, "Sanitizer");
  cr_assert_null(san, "sanitizer report at shutdown: %.3000s", san ? san : "");
  free(log);
  cr_assert_eq(st, 0, "the proxy exited %d after SIGTERM", st);
}

ITest(integ, spool_sigterm_while_a_notice_is_read) {
  int port = h_free_port();
  char yaml[8192];
  sp_yaml(port, "starttls", "  retry: [1h]\n", yaml, sizeof yaml);
  shim s;
  shim_init(&s, 1500);
  h_proxy px;
  h_proxy_start_yaml_env(&px, yaml, s.env);
  const char *const to[] = {"nobody@example.com", NULL};
  char text[1024], out[4096], p[16], id[32];
  cr_assert_eq(sp_send(px.port, to, "Subject: refused\r\n\r\nx\r\n", text, sizeof text), 250, "%s",
               text);
  cr_assert(sp_queued_id(text, id), "%s", text);
  h_upstream u;
  snprintf(p, sizeof p, "%d", port);
  const char *extra[] = {"--port", p, "--reject-rcpt", "nobody@*", NULL};
  h_upstream_start(&u, "starttls", extra);
  /* Every recipient refused: no body is read, the next read of the
   * message is the failure notice's, and it is slow. */
  shim_set(&s, "slow-read");
  cr_assert_eq(sp_queue(&px, "retry", out, sizeof out), 0, "%s", out);
  cr_assert(shim_hit(&s, "slow-read", 10000), "the notice never read the message");
  stop_clean(&px);
  /* Nothing lost: the notice could not be spooled any more, so the
   * message is still there, to meet its 5xx and notice again. */
  shim_set(&s, "");
  h_proc_kill(u.proc); /* or the new proxy would deliver it at once */
  h_proxy px2;
  h_proxy_start_yaml(&px2, yaml);
  cr_assert_eq(sp_queue(&px2, "list", out, sizeof out), 0, "%s", out);
  for (int i = 0; i < 50 && strstr(out, "still being read back"); i++) {
    h_sleep_ms(100);
    sp_queue(&px2, "list", out, sizeof out);
  }
  cr_assert(strstr(out, id), "the message is gone: %s", out);
}

/* The upstream's records of failure notices about spool id `id`. */
static size_t notices_about(const char *record, const char *id) {
  h_lines l;
  size_t found = 0;
  h_records(record, "message", &l);
  for (size_t i = 0; i < l.n; i++) {
    size_t n;
    unsigned char *d = h_json_b64(l.v[i], "data_b64", &n);
    char want[64];
    snprintf(want, sizeof want, "X-Spool-Id: %s", id);
    if (d && strstr((char *)d, want))
      found++;
    free(d);
  }
  h_lines_free(&l);
  return found;
}

ITest(integ, spool_held_and_corrupt_messages_expire_with_a_notice) {
  int port = h_free_port();
  h_proxy px;
  sp_start(&px, port, "starttls", "  retry: [500ms]\n  max_age: 5s\n  max_messages: 2\n");
  char text[1024], held[32], bad[32], out[4096], path[512], line[1024], args[64];
  const char *const to[] = {"a@example.com", NULL};
  cr_assert_eq(sp_send(px.port, to, "Subject: held\r\n\r\nx\r\n", text, sizeof text), 250);
  cr_assert(sp_queued_id(text, held));
  snprintf(args, sizeof args, "hold %s", held);
  cr_assert_eq(sp_queue(&px, args, out, sizeof out), 0, "%s", out);
  cr_assert_eq(
      sp_send(px.port, to, "Subject: intact\r\n\r\nthe original text\r\n", text, sizeof text), 250);
  cr_assert(sp_queued_id(text, bad));
  snprintf(path, sizeof path, "%s/spool/queue/%s", h_dir(), bad);
  size_t n;
  char *file = h_read_file(path, &n);
  char *at = memmem(file, n, "original", 8);
  cr_assert_not_null(at);
  memcpy(at, "ORIGINAL", 8);
  h_write_file(path, file, n);
  free(file);
  h_upstream u;
  char p[16];
  snprintf(p, sizeof p, "%d", port);
  const char *extra[] = {"--port", p, NULL};
  h_upstream_start(&u, "starttls", extra);
  snprintf(args, sizeof args, "retry %s", bad);
  cr_assert_eq(sp_queue(&px, args, out, sizeof out), 0, "%s", out);
  cr_assert(h_file_wait_line(px.log, (const char *const[]){"spool-held", bad, "hash", NULL}, 10000,
                             line, sizeof line));
  /* Both held; at max_age each ends in a notice and leaves the queue. */
  cr_assert(h_file_wait_line(px.log, (const char *const[]){"spool-expired", held, NULL}, 15000,
                             line, sizeof line),
            "the held message never expired");
  cr_assert(h_file_wait_line(px.log, (const char *const[]){"spool-expired", bad, NULL}, 15000, line,
                             sizeof line),
            "the corrupt message never expired");
  int64_t deadline = h_now_ms() + 15000;
  while ((notices_about(u.record, held) < 1 || notices_about(u.record, bad) < 1) &&
         h_now_ms() < deadline)
    h_sleep_ms(100);
  cr_assert_eq(notices_about(u.record, held), 1, "no notice about the held message");
  cr_assert_eq(notices_about(u.record, bad), 1, "no notice about the corrupt message");
  cr_assert(sp_wait_empty(&px, 10000), "the queue did not empty");
  /* They no longer count against max_messages: two new ones fit. */
  cr_assert_eq(sp_send(px.port, (const char *const[]){"x@example.com", NULL},
                       "Subject: after\r\n\r\nx\r\n", text, sizeof text),
               250, "%s", text);
}

/* ---- DSN requests (RFC 3461) and international notices (RFC 6533) ---------- */

ITest(integ, spool_keeps_the_devices_dsn_requests_for_the_delivery) {
  int port = h_free_port();
  h_proxy px;
  sp_start(&px, port, "starttls", "  retry: [1h]\n");
  const char *const to[] = {"a@example.com", "b@example.com", NULL};
  char text[1024], out[4096], p[16];
  int code = send_params(px.port, "scan@printer.test", " RET=HDRS ENVID=scan+2B42", to,
                         " NOTIFY=FAILURE,DELAY ORCPT=rfc822;a@example.com",
                         "Subject: dsn\r\n\r\nx\r\n", text, sizeof text);
  cr_assert_eq(code, 250, "%s", text);
  h_upstream u;
  snprintf(p, sizeof p, "%d", port);
  const char *extra[] = {"--port", p, "--dsn", NULL};
  h_upstream_start(&u, "starttls", extra);
  cr_assert_eq(sp_queue(&px, "retry", out, sizeof out), 0, "%s", out);
  cr_assert_eq(h_wait_records(u.record, "message", 1, 15000), 1, "not delivered");
  h_lines l;
  h_records(u.record, "message", &l);
  bool found = false;
  h_json_strlist(l.v[0], "mail_options", "RET=HDRS", &found);
  cr_assert(found, "RET lost: %s", l.v[0]);
  h_json_strlist(l.v[0], "mail_options", "ENVID=scan+2B42", &found);
  cr_assert(found, "ENVID lost: %s", l.v[0]);
  h_json_strlist(l.v[0], "rcpt_options", "NOTIFY=FAILURE,DELAY", &found);
  cr_assert(found, "NOTIFY lost: %s", l.v[0]);
  h_json_strlist(l.v[0], "rcpt_options", "ORCPT=rfc822;a@example.com", &found);
  cr_assert(found, "ORCPT lost: %s", l.v[0]);
  h_lines_free(&l);
}

/* The notices waiting in the queue, as `queue list` shows them. */
static int notices_to(const h_proxy *px, const char *addr, char *out, size_t cap) {
  char want[256];
  snprintf(want, sizeof want, "from=<> to=<%s>", addr);
  sp_queue(px, "list", out, cap);
  return sp_count_lines(out, want);
}

ITest(integ, spool_failure_notice_honours_notify_never) {
  int port = h_free_port();
  h_proxy px;
  sp_start(&px, port, "starttls", "  retry: [1h]\n  notify_sender: true\n");
  char text[1024], out[8192], p[16], line[1024], never[32], plain[32];
  const char *const to[] = {"gone@example.com", NULL};
  cr_assert_eq(send_params(px.port, "scan@printer.test", " RET=HDRS", to, " NOTIFY=NEVER",
                           "Subject: quiet\r\n\r\nx\r\n", text, sizeof text),
               250, "%s", text);
  cr_assert(sp_queued_id(text, never));
  cr_assert_eq(send_params(px.port, "scan@printer.test", NULL, to, NULL,
                           "Subject: loud\r\n\r\nx\r\n", text, sizeof text),
               250, "%s", text);
  cr_assert(sp_queued_id(text, plain));
  h_upstream u;
  snprintf(p, sizeof p, "%d", port);
  const char *extra[] = {"--port", p, "--dsn", "--reject-rcpt", "gone@*", NULL};
  h_upstream_start(&u, "starttls", extra);
  cr_assert_eq(sp_queue(&px, "retry", out, sizeof out), 0, "%s", out);
  cr_assert(h_file_wait_line(px.log, (const char *const[]){"spool-failed", never, NULL}, 15000,
                             line, sizeof line));
  cr_assert(h_file_wait_line(px.log, (const char *const[]){"spool-failed", plain, NULL}, 15000,
                             line, sizeof line));
  int64_t deadline = h_now_ms() + 5000;
  while (notices_to(&px, "postmaster@example.com", out, sizeof out) < 2 && h_now_ms() < deadline)
    h_sleep_ms(100);
  /* The administrator hears of both; the sender only of the one whose
   * recipient did not say NOTIFY=NEVER. */
  cr_assert_eq(notices_to(&px, "postmaster@example.com", out, sizeof out), 2, "%s", out);
  cr_assert_eq(notices_to(&px, "scan@printer.test", out, sizeof out), 1, "%s", out);
}

ITest(integ, spool_failure_notice_for_a_utf8_address_is_global) {
  int port = h_free_port();
  h_proxy px;
  sp_start(&px, port, "starttls", "  retry: [1s]\n");
  char text[1024], out[4096], p[16], line[1024], id[32];
  const char *const to[] = {"j\xc3\xb6rg@example.com", NULL};
  cr_assert_eq(send_params(px.port, "scan@printer.test", " SMTPUTF8", to, NULL,
                           "Subject: umlaut\r\n\r\nx\r\n", text, sizeof text),
               250, "%s", text);
  cr_assert(sp_queued_id(text, id));
  h_upstream u;
  snprintf(p, sizeof p, "%d", port);
  const char *extra[] = {"--port", p, "--reject-rcpt", "j*", NULL};
  h_upstream_start(&u, "starttls", extra);
  cr_assert_eq(sp_queue(&px, "retry", out, sizeof out), 0, "%s", out);
  cr_assert(h_file_wait_line(px.log, (const char *const[]){"spool-failed", id, NULL}, 15000, line,
                             sizeof line));
  /* The notice to postmaster goes out at its first retry. */
  cr_assert_eq(h_wait_records(u.record, "message", 1, 15000), 1, "no notice delivered");
  h_lines l;
  h_records(u.record, "message", &l);
  bool found = false;
  h_json_strlist(l.v[0], "rcpt_tos", "postmaster@example.com", &found);
  cr_assert(found, "%s", l.v[0]);
  h_json_strlist(l.v[0], "mail_options", "SMTPUTF8", &found);
  cr_assert(found, "the notice went without SMTPUTF8: %s", l.v[0]);
  size_t n;
  unsigned char *dsn = h_json_b64(l.v[0], "data_b64", &n);
  char path[512], cmd[1024];
  h_path(path, sizeof path, "notice.eml");
  h_write_file(path, dsn, n);
  static const char fr[] = "Final-Recipient: utf-8; j\xc3\xb6rg@example.com\r\n";
  cr_assert(memmem(dsn, n, fr, sizeof fr - 1), "%s", dsn);
  free(dsn);
  h_lines_free(&l);
  /* Python's email package and RFC 6533's structure. */
  snprintf(cmd, sizeof cmd,
           "%s %s/check_dsn.py '%s' --global --rcpt 'j\xc3\xb6rg@example.com' --status 5.1.1 "
           "--diag '5.1.1' --subject umlaut",
           H_PYTHON, STP_TOOLS_DIR, path);
  int rc = h_run(cmd, NULL, 20000, out, sizeof out);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "DSN OK status=5.1.1"), "%s", out);
}

/* ---- durability of state changes ----------------------------------------- */

/* Whether the shim's trace holds the texts of seq in that order. */
static bool trace_has_sequence(const shim *s, const char *const seq[], size_t n) {
  size_t len = 0;
  char *t = h_read_file(s->trace, &len);
  if (!t)
    return false;
  const char *at = t;
  size_t i = 0;
  for (; i < n; i++) {
    const char *hit = strstr(at, seq[i]);
    if (!hit)
      break;
    at = hit + strlen(seq[i]);
  }
  free(t);
  return i == n;
}

ITest(integ, spool_commit_and_state_changes_fsync_in_order) {
  int port = h_free_port();
  char yaml[8192], text[1024], id[32], out[4096], args[64];
  sp_yaml(port, "starttls", "  retry: [1h]\n", yaml, sizeof yaml);
  shim s;
  shim_init(&s, 0);
  h_proxy px;
  h_proxy_start_yaml_env(&px, yaml, s.env);
  shim_set(&s, "trace");
  const char *const to[] = {"a@example.com", NULL};
  cr_assert_eq(sp_send(px.port, to, "Subject: traced\r\n\r\nx\r\n", text, sizeof text), 250);
  cr_assert(sp_queued_id(text, id));
  /* Before the 250: the file's fsync, its rename into queue/, queue/'s. */
  char f1[600], f2[600], f3[600];
  snprintf(f1, sizeof f1, "fsync-file %s/spool/tmp/%s\n", h_dir(), id);
  snprintf(f2, sizeof f2, " %s/spool/queue/%s\n", h_dir(), id);
  snprintf(f3, sizeof f3, "fsync-dir %s/spool/queue\n", h_dir());
  cr_assert(trace_has_sequence(&s, (const char *const[]){f1, "rename ", f2, f3}, 4),
            "commit: fsync(file), rename, fsync(queue/) not in order before the 250");
  /* `queue hold` answers once the state is as durable as the message. */
  h_write_file(s.trace, "", 0);
  snprintf(args, sizeof args, "hold %s", id);
  cr_assert_eq(sp_queue(&px, args, out, sizeof out), 0, "%s", out);
  snprintf(f1, sizeof f1, "fsync-file %s/spool/tmp/", h_dir());
  snprintf(f2, sizeof f2, "%s.state %s/spool/queue/%s.state\n", id, h_dir(), id);
  cr_assert(trace_has_sequence(&s, (const char *const[]){f1, "rename ", f2, f3}, 4),
            "hold answered before fsync(state), rename, fsync(queue/)");
  shim_set(&s, "");
}

ITest(integ, spool_hold_is_answered_only_once_on_disk_and_retried) {
  int port = h_free_port();
  char yaml[8192], text[1024], id[32], out[4096], args[64], path[512];
  sp_yaml(port, "starttls", "  retry: [1h]\n", yaml, sizeof yaml);
  shim s;
  shim_init(&s, 0);
  h_proxy px;
  h_proxy_start_yaml_env(&px, yaml, s.env);
  const char *const to[] = {"a@example.com", NULL};
  cr_assert_eq(sp_send(px.port, to, "Subject: hold me\r\n\r\nx\r\n", text, sizeof text), 250);
  cr_assert(sp_queued_id(text, id));
  /* queue/ cannot be made durable: the hold is not confirmed. */
  shim_set(&s, "fsync-dir");
  snprintf(args, sizeof args, "hold %s", id);
  int rc = sp_queue(&px, args, out, sizeof out);
  cr_assert(shim_hit(&s, "fsync-dir", 2000), "no directory fsync after the state's rename");
  cr_assert_eq(rc, 1, "hold confirmed although its state is not durable: %s", out);
  cr_assert(strstr(out, "not yet on disk"), "%s", out);
  /* The disk recovers: the write is tried again without being asked
   * (the failed one left the file renamed, but not durable). */
  char line[1024], f1[600], f2[600], f3[600];
  cr_assert(h_file_wait_line(px.log, (const char *const[]){"spool-io-error", id, NULL}, 2000, line,
                             sizeof line));
  shim_set(&s, "trace");
  snprintf(f1, sizeof f1, "fsync-file %s/spool/tmp/", h_dir());
  snprintf(f2, sizeof f2, "%s.state %s/spool/queue/%s.state\n", id, h_dir(), id);
  snprintf(f3, sizeof f3, "fsync-dir %s/spool/queue\n", h_dir());
  int64_t deadline = h_now_ms() + 5000;
  while (!trace_has_sequence(&s, (const char *const[]){f1, "rename ", f2, f3}, 4) &&
         h_now_ms() < deadline)
    h_sleep_ms(50);
  cr_assert(trace_has_sequence(&s, (const char *const[]){f1, "rename ", f2, f3}, 4),
            "the failed state write was never tried again");
  snprintf(path, sizeof path, "%s/spool/queue/%s.state", h_dir(), id);
  cr_assert(h_file_contains(path, "held: admin", 11), "the held state is not on disk");
  h_proc_kill(px.proc);
  h_proxy px2;
  h_proxy_start_yaml(&px2, yaml);
  deadline = h_now_ms() + 5000;
  do {
    sp_queue(&px2, "list", out, sizeof out);
  } while (!strstr(out, "next=held") && h_now_ms() < deadline && (h_sleep_ms(100), 1));
  cr_assert(strstr(out, id) && strstr(out, "next=held"), "%s", out);
  /* release is confirmed the same way. */
  snprintf(args, sizeof args, "release %s", id);
  cr_assert_eq(sp_queue(&px2, args, out, sizeof out), 0, "%s", out);
  cr_assert(strstr(out, "released"), "%s", out);
}

/* ---- start-up ------------------------------------------------------------ */

ITest(integ, spool_limits_hold_while_the_queue_is_read_back) {
  int port = h_free_port();
  char yaml[8192], text[1024], out[4096], line[1024];
  sp_yaml(port, "starttls", "  retry: [1h]\n  max_messages: 3\n", yaml, sizeof yaml);
  h_proxy px;
  h_proxy_start_yaml(&px, yaml);
  const char *const to[] = {"a@example.com", NULL};
  for (int i = 0; i < 3; i++)
    cr_assert_eq(sp_send(px.port, to, "Subject: before\r\n\r\nx\r\n", text, sizeof text), 250, "%s",
                 text);
  stop_clean(&px);
  /* Restarted on a slow disk: reading queue/ back takes seconds, and the
   * listeners are open meanwhile. */
  shim s;
  shim_init(&s, 700);
  shim_set(&s, "slow-read");
  h_proxy px2;
  h_proxy_start_yaml_env(&px2, yaml, s.env);
  int code = sp_send(px2.port, to, "Subject: during\r\n\r\nx\r\n", text, sizeof text);
  cr_assert(h_file_wait_line(px2.log, (const char *const[]){"spool-recovered", NULL}, 15000, line,
                             sizeof line));
  cr_assert_neq(code, 250, "a fourth message was taken into a spool of max_messages 3: %s", text);
  cr_assert(code >= 400 && code < 500, "%d %s", code, text);
  shim_set(&s, "");
  cr_assert_eq(sp_queue(&px2, "list", out, sizeof out), 0, "%s", out);
  cr_assert(strstr(out, "3 messages"), "%s", out);
  cr_assert_eq(sp_count_lines(out, "route=default"), 3, "%s", out);
}

/* ---- the route's rate limit paces the spool's deliveries ------------------- */

/* Milliseconds of the day of a log line ("2026-12-06T21:40:07.919Z ..."). */
static long long log_ms(const char *line) {
  int h, m, s, ms;
  const char *t = strchr(line, 'T');
  cr_assert(t && sscanf(t + 1, "%d:%d:%d.%d", &h, &m, &s, &ms) == 4, "%s", line);
  return ((h * 60LL + m) * 60 + s) * 1000 + ms;
}

ITest(integ, spool_deliveries_keep_the_route_rate_limit) {
  int port = h_free_port();
  h_proxy px;
  char top[4096], yaml[8192], text[1024], id1[32], id2[32], out[4096], p[16];
  snprintf(top, sizeof top,
           "spool:\n  dir: %s/spool\n  notify: postmaster@example.com\n"
           "  retry: [1h]\n",
           h_dir());
  h_proxy_opts o = {.up_port = port,
                    .connect_timeout = "2s",
                    .command_timeout = "5s",
                    .data_timeout = "5s",
                    .top_extra = top,
                    .route_extra = "    on_upstream_failure: spool\n    rate_limit: \"1/3s\"\n"};
  h_proxy_yaml(&o, yaml, sizeof yaml);
  h_proxy_start_yaml(&px, yaml);
  const char *const to[] = {"a@example.com", NULL};
  cr_assert_eq(sp_send(px.port, to, "Subject: r1\r\n\r\nx\r\n", text, sizeof text), 250, "%s",
               text);
  cr_assert(sp_queued_id(text, id1));
  h_sleep_ms(3100); /* the devices keep the limit too */
  cr_assert_eq(sp_send(px.port, to, "Subject: r2\r\n\r\nx\r\n", text, sizeof text), 250, "%s",
               text);
  cr_assert(sp_queued_id(text, id2));
  h_upstream u;
  snprintf(p, sizeof p, "%d", port);
  const char *extra[] = {"--port", p, NULL};
  h_upstream_start(&u, "starttls", extra);
  cr_assert_eq(sp_queue(&px, "retry", out, sizeof out), 0, "%s", out);
  cr_assert_eq(h_wait_records(u.record, "message", 2, 20000), 2, "not both delivered");
  char l1[1024], l2[1024];
  cr_assert(h_file_wait_line(px.log, (const char *const[]){"spool-delivered", id1, NULL}, 2000, l1,
                             sizeof l1));
  cr_assert(h_file_wait_line(px.log, (const char *const[]){"spool-delivered", id2, NULL}, 2000, l2,
                             sizeof l2));
  long long gap = llabs(log_ms(l2) - log_ms(l1));
  /* One message per 3 s: the two deliveries cannot be closer (a lower
   * bound only, so a slow machine cannot fail it). */
  cr_assert_geq(gap, 2500, "two deliveries %lld ms apart on a route limited to 1/3s", gap);
}

/* ---- max_size counts tmp/ ---------------------------------------------------- */

static long long tmp_bytes(void) {
  char p[512], f[1024];
  snprintf(p, sizeof p, "%s/spool/tmp", h_dir());
  DIR *d = opendir(p);
  long long sum = 0;
  struct dirent *de;
  while (d && (de = readdir(d)) != NULL) {
    struct stat st;
    snprintf(f, sizeof f, "%s/%s", p, de->d_name);
    if (de->d_name[0] != '.' && stat(f, &st) == 0)
      sum += (long long)st.st_size;
  }
  if (d)
    closedir(d);
  return sum;
}

ITest(integ, spool_max_size_counts_the_copies_in_tmp) {
  h_upstream u;
  h_fault_start(&u, "no-reply-after-dot", "starttls", "server");
  char yaml[8192], text[1024];
  sp_yaml(u.port, "starttls", "  retry: [1h]\n  max_size: 1MiB\n", yaml, sizeof yaml);
  h_proxy px;
  h_proxy_start_yaml(&px, yaml);
  /* 3 MiB through pass-through: its copy for the spool grows in tmp/
   * while the upstream says nothing after the dot. */
  size_t n = 3u << 20;
  char *body = malloc(n + 64);
  size_t len = (size_t)snprintf(body, 64, "Subject: big\r\n\r\n");
  while (len + 80 < n) {
    memset(body + len, 'x', 78);
    memcpy(body + len + 78, "\r\n", 2);
    len += 80;
  }
  h_smtp c;
  h_smtp_open(&c, px.port, true);
  cr_assert_eq(h_smtp_cmd(&c, "MAIL FROM:<scan@printer.test>", text, sizeof text), 250, "%s", text);
  cr_assert_eq(h_smtp_cmd(&c, "RCPT TO:<a@example.com>", text, sizeof text), 250, "%s", text);
  cr_assert_eq(h_smtp_cmd(&c, "DATA", text, sizeof text), 354, "%s", text);
  cr_assert_eq(h_smtp_send(&c, body, len), 0);
  h_smtp_sendstr(&c, ".\r\n");
  free(body);
  long long most = 0;
  for (int i = 0; i < 60; i++) { /* the upstream is silent for data_timeout (5 s) */
    long long b = tmp_bytes();
    most = b > most ? b : most;
    h_sleep_ms(25);
  }
  int code = h_smtp_reply(&c, 15000, text, sizeof text);
  h_smtp_close(&c);
  cr_assert_leq(most, 1 << 20, "tmp/ held %lld bytes with max_size 1MiB", most);
  cr_assert_eq(code, 452, "%s", text);
  cr_assert(strstr(text, "max_size"), "%s", text);
}
