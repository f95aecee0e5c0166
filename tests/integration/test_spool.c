/* test_spool.c - on_upstream_failure: spool through the real binary, with
 * aiosmtpd (upstream.py) and fault_upstream.py as upstreams: the upstream
 * down then up, a 4xx at the final dot then success, a 5xx never
 * spooled, a full spool, the failure notice (parsed by Python's email
 * package), expiry, every queue command, reload and restart. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"
#include "spool_common.h"

ITest(integ, spool_upstream_down_then_up_delivers_exactly_once) {
  int port = h_free_port();
  h_proxy px;
  sp_start(&px, port, "starttls", "  retry: [1s]\n");
  static const char body[] = "Subject: scan 1\r\n\r\n..a dotted line\r\npage 1\r\n";
  char text[1024], id[32];
  int code = sp_send(px.port, (const char *const[]){"a@example.com", "b@example.com", NULL}, body,
                     text, sizeof text);
  cr_assert_eq(code, 250, "%s", text);
  cr_assert(sp_queued_id(text, id), "not queued locally: %s", text);
  char out[8192];
  cr_assert_eq(sp_queue(&px, "list", out, sizeof out), 0, "%s", out);
  cr_assert(strstr(out, id) && strstr(out, "to=<a@example.com>,<b@example.com>"), "%s", out);
  cr_assert(strstr(out, "1 message,"), "%s", out);

  h_upstream u;
  const char *extra[] = {"--port", NULL, NULL};
  char p[16];
  snprintf(p, sizeof p, "%d", port);
  extra[1] = p;
  h_upstream_start(&u, "starttls", extra);
  /* The failed connect put the upstream in back-off (30 s): an
   * administrator's retry goes past it. */
  cr_assert_eq(sp_queue(&px, "retry", out, sizeof out), 0, "%s", out);
  cr_assert_eq(h_wait_records(u.record, "message", 1, 15000), 1, "not delivered");
  cr_assert(sp_wait_empty(&px, 10000), "the queue did not empty");
  h_sleep_ms(1500); /* a second delivery would have happened by now */
  h_lines l;
  cr_assert_eq(h_records(u.record, "message", &l), 1, "delivered more than once");
  char from[128], sha[80], want[65];
  cr_assert_eq(h_json_str(l.v[0], "mail_from", from, sizeof from), 1);
  cr_assert_str_eq(from, "scan@printer.test", "the original envelope sender");
  bool found = false;
  cr_assert_eq(h_json_strlist(l.v[0], "rcpt_tos", "a@example.com", &found), 2);
  cr_assert(found);
  h_json_strlist(l.v[0], "rcpt_tos", "b@example.com", &found);
  cr_assert(found);
  /* What the upstream received, unstuffed, is what the device sent. */
  static const char unstuffed[] = "Subject: scan 1\r\n\r\n.a dotted line\r\npage 1\r\n";
  h_sha256 s;
  h_sha256_init(&s);
  h_sha256_update(&s, unstuffed, sizeof unstuffed - 1);
  h_sha256_hex(&s, want);
  cr_assert_eq(h_json_str(l.v[0], "data_sha256", sha, sizeof sha), 1);
  cr_assert_str_eq(sha, want);
  h_lines_free(&l);
  char line[1024];
  cr_assert(h_file_wait_line(px.log, (const char *const[]){"spool-delivered", id, NULL}, 2000, line,
                             sizeof line));
  cr_assert(sp_queue_dir_empty(&px), "files left in the spool");
}

ITest(integ, spool_dot_4xx_then_success) {
  h_upstream u;
  h_fault_start(&u, "dot-451-then-ok", "starttls", "server");
  h_proxy px;
  int mport = h_free_port();
  char top[128], yaml[8192];
  snprintf(top, sizeof top, "metrics: { listen: \"127.0.0.1:%d\" }\n", mport);
  sp_yaml_top(u.port, "starttls", "  retry: [1s]\n", top, yaml, sizeof yaml);
  h_proxy_start_yaml(&px, yaml);
  static const char body[] = "Subject: greylisted\r\n\r\nbody\r\n";
  char text[1024], id[32];
  int code =
      sp_send(px.port, (const char *const[]){"a@example.com", NULL}, body, text, sizeof text);
  cr_assert_eq(code, 250, "%s", text);
  cr_assert(sp_queued_id(text, id), "the 451 at the dot must be spooled: %s", text);
  /* The runner tries again after retry[0] by itself (no back-off: the
   * upstream was reachable). */
  cr_assert_eq(h_wait_records(u.record, "message", 2, 15000), 2);
  cr_assert(sp_wait_empty(&px, 10000));
  h_lines l;
  cr_assert_eq(h_records(u.record, "message", &l), 2);
  char o1[32], o2[32];
  h_json_str(l.v[0], "outcome", o1, sizeof o1);
  h_json_str(l.v[1], "outcome", o2, sizeof o2);
  cr_assert_str_eq(o1, "deferred");
  cr_assert_str_eq(o2, "accepted");
  size_t n1, n2;
  unsigned char *d1 = h_json_b64(l.v[0], "data_b64", &n1);
  unsigned char *d2 = h_json_b64(l.v[1], "data_b64", &n2);
  cr_assert(n1 == n2 && !memcmp(d1, d2, n1), "the spooled copy differs from what was streamed");
  cr_assert(n1 == sizeof body - 1 && !memcmp(d1, body, n1));
  free(d1);
  free(d2);
  h_lines_free(&l);
  char cmd[128], out[16384];
  snprintf(cmd, sizeof cmd, "curl -s http://127.0.0.1:%d/metrics", mport);
  cr_assert_eq(h_run(cmd, NULL, 10000, out, sizeof out), 0);
  cr_assert(strstr(out, "smtp_proxy_spool_deliveries_total{result=\"delivered\"} 1\n"), "%s", out);
  cr_assert(strstr(out, "smtp_proxy_messages_total{route=\"default\",upstream=\"up\",result="
                        "\"spooled\"} 1\n"),
            "%s", out);
}

ITest(integ, spool_5xx_is_never_spooled) {
  h_upstream u;
  const char *extra[] = {"--reply-data", "554 5.7.1 no thanks (test)", NULL};
  h_upstream_start(&u, "starttls", extra);
  h_proxy px;
  sp_start(&px, u.port, "starttls", "");
  char text[1024];
  int code = sp_send(px.port, (const char *const[]){"a@example.com", NULL},
                     "Subject: x\r\n\r\ny\r\n", text, sizeof text);
  cr_assert_eq(code, 554, "%s", text);
  cr_assert(strstr(text, "no thanks (test)"), "the provider's own words: %s", text);
  char out[2048];
  cr_assert_eq(sp_queue(&px, "list", out, sizeof out), 0);
  cr_assert(strstr(out, "0 messages"), "%s", out);
  cr_assert(sp_queue_dir_empty(&px));
}

ITest(integ, spool_full) {
  int port = h_free_port();
  h_proxy px;
  sp_start(&px, port, "starttls", "  max_size: 3000\n  max_messages: 2\n");
  char text[1024], id[32];
  const char *const to[] = {"a@example.com", NULL};
  cr_assert_eq(sp_send(px.port, to, "Subject: 1\r\n\r\nsmall\r\n", text, sizeof text), 250);
  cr_assert(sp_queued_id(text, id), "%s", text);
  /* Room before DATA, but this one does not fit: 452, never a 250. */
  char big[6000];
  size_t n = (size_t)snprintf(big, sizeof big, "Subject: 2\r\n\r\n");
  while (n + 52 < sizeof big) {
    memcpy(big + n, "0123456789012345678901234567890123456789012345678\r\n", 51);
    n += 51;
  }
  big[n] = '\0';
  cr_assert_eq(sp_send(px.port, to, big, text, sizeof text), 452, "%s", text);
  cr_assert(strstr(text, "4.3.1") && strstr(text, "max_size"), "%s", text);
  cr_assert_eq(sp_send(px.port, to, "Subject: 3\r\n\r\nsmall\r\n", text, sizeof text), 250);
  /* Full (max_messages) before DATA: the plain pass-through 4xx. */
  const char *stage = NULL;
  int code = h_send_one(px.port, "a@example.com", "Subject: 4\r\n\r\nx\r\n", 17, text, sizeof text,
                        &stage);
  cr_assert_eq(code, 451, "%s at %s", text, stage);
  cr_assert_str_eq(stage, "RCPT");
  cr_assert(strstr(text, "4.4.1 Upstream not reachable"), "%s", text);
  char out[4096];
  sp_queue(&px, "list", out, sizeof out);
  cr_assert(strstr(out, "2 messages"), "%s", out);
  cr_assert(sp_wait_tmp_empty(&px, 2000), "a refused message left its file");
}

ITest(integ, spool_failure_notice_is_rfc3464) {
  int port = h_free_port();
  h_proxy px;
  sp_start(&px, port, "starttls", "  retry: [1s]\n  notify_sender: true\n");
  static const char body[] = "Subject: Scan 42\r\nFrom: Scanner <scan@printer.test>\r\n\r\nx\r\n";
  char text[1024], id[32];
  cr_assert_eq(sp_send(px.port, (const char *const[]){"good@example.com", "bad@example.com", NULL},
                       body, text, sizeof text),
               250, "%s", text);
  cr_assert(sp_queued_id(text, id));
  h_upstream u;
  char p[16];
  snprintf(p, sizeof p, "%d", port);
  const char *extra[] = {"--port", p, "--reject-rcpt", "bad@*", NULL};
  h_upstream_start(&u, "starttls", extra);
  char out[4096];
  cr_assert_eq(sp_queue(&px, "retry", out, sizeof out), 0, "%s", out);
  /* The message to good@, then the notice, with sender <>, to postmaster@
   * and (notify_sender) to the original sender, each its own message. */
  cr_assert_eq(h_wait_records(u.record, "message", 3, 20000), 3);
  cr_assert(sp_wait_empty(&px, 10000));
  h_lines l;
  h_records(u.record, "message", &l);
  int notice = -1, to_sender = -1, to_good = -1;
  for (size_t i = 0; i < l.n; i++) {
    char from[64];
    bool pm = false, snd = false, good = false;
    h_json_str(l.v[i], "mail_from", from, sizeof from);
    bool null_sender = !strcmp(from, "") || !strcmp(from, "<>");
    h_json_strlist(l.v[i], "rcpt_tos", "postmaster@example.com", &pm);
    h_json_strlist(l.v[i], "rcpt_tos", "scan@printer.test", &snd);
    h_json_strlist(l.v[i], "rcpt_tos", "good@example.com", &good);
    if (pm && null_sender)
      notice = (int)i;
    else if (snd && null_sender)
      to_sender = (int)i;
    else if (good && !strcmp(from, "scan@printer.test"))
      to_good = (int)i;
  }
  cr_assert_geq(to_good, 0, "the message to good@ did not arrive");
  cr_assert_geq(to_sender, 0, "no notice with sender <> to the original sender");
  cr_assert_geq(notice, 0, "no notice with sender <> to postmaster");
  size_t n;
  unsigned char *dsn = h_json_b64(l.v[notice], "data_b64", &n);
  char path[512];
  h_path(path, sizeof path, "notice.eml");
  h_write_file(path, dsn, n);
  free(dsn);
  h_lines_free(&l);
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "%s %s/check_dsn.py '%s' --rcpt bad@example.com --status 5.1.1 "
           "--diag 'Recipient address rejected' --subject 'Scan 42'",
           H_PYTHON, STP_TOOLS_DIR, path);
  int rc = h_run(cmd, NULL, 20000, out, sizeof out);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "DSN OK status=5.1.1 reporting=dns; proxy.test recipients=1"), "%s", out);
  char line[1024];
  cr_assert(h_file_wait_line(px.log, (const char *const[]){"spool-failed", id, NULL}, 1000, line,
                             sizeof line));
}

ITest(integ, spool_max_age_expires_into_a_notice) {
  int port = h_free_port();
  h_proxy px;
  sp_start(&px, port, "starttls", "  retry: [300ms]\n  max_age: 1s\n");
  char text[1024], id[32];
  cr_assert_eq(sp_send(px.port, (const char *const[]){"a@example.com", NULL},
                       "Subject: old\r\n\r\nx\r\n", text, sizeof text),
               250);
  cr_assert(sp_queued_id(text, id));
  char line[1024];
  cr_assert(h_file_wait_line(px.log, (const char *const[]){"spool-expired", id, NULL}, 10000, line,
                             sizeof line));
  /* The notice waits in the spool for the upstream, like any message. */
  char out[4096];
  int64_t deadline = h_now_ms() + 5000;
  do {
    sp_queue(&px, "list", out, sizeof out);
  } while (!strstr(out, "from=<> to=<postmaster@example.com>") && h_now_ms() < deadline &&
           (h_sleep_ms(100), 1));
  cr_assert(strstr(out, "from=<> to=<postmaster@example.com>"), "%s", out);
  char gone[64];
  snprintf(gone, sizeof gone, "%s age=", id);
  cr_assert_null(strstr(out, gone), "the expired message is gone: %s", out);
}

ITest(integ, spool_queue_commands) {
  int port = h_free_port();
  h_proxy px;
  sp_start(&px, port, "starttls", "  retry: [1h]\n");
  char text[1024], id1[32], id2[32], out[8192], cmd[128];
  const char *const to[] = {"a@example.com", NULL};
  cr_assert_eq(sp_send(px.port, to, "Subject: one\r\n\r\n1\r\n", text, sizeof text), 250);
  cr_assert(sp_queued_id(text, id1));
  cr_assert_eq(sp_send(px.port, to, "Subject: two\r\n\r\n2\r\n", text, sizeof text), 250);
  cr_assert(sp_queued_id(text, id2));

  struct stat st;
  char sock[512];
  snprintf(sock, sizeof sock, "%s/spool/control.sock", h_dir());
  cr_assert_eq(stat(sock, &st), 0);
  cr_assert_eq(st.st_mode & 0777, 0600, "control socket mode %o", st.st_mode & 0777);

  cr_assert_eq(sp_queue(&px, "list", out, sizeof out), 0);
  cr_assert(strstr(out, "2 messages"), "%s", out);
  cr_assert_eq(sp_count_lines(out, " age="), 2, "one line per message:\n%s", out);
  cr_assert(strstr(out, "from=<scan@printer.test> to=<a@example.com> route=default attempts=0"),
            "%s", out);

  snprintf(cmd, sizeof cmd, "show %s", id1);
  cr_assert_eq(sp_queue(&px, cmd, out, sizeof out), 0, "%s", out);
  cr_assert(strstr(out, "rcpt: <a@example.com> pending") && strstr(out, "route: default") &&
                strstr(out, "sha256: ") && strstr(out, "client: 127.0.0.1"),
            "%s", out);

  snprintf(cmd, sizeof cmd, "hold %s", id1);
  cr_assert_eq(sp_queue(&px, cmd, out, sizeof out), 0, "%s", out);
  sp_queue(&px, "list", out, sizeof out);
  cr_assert(strstr(out, "next=held"), "%s", out);
  snprintf(cmd, sizeof cmd, "retry %s", id1);
  cr_assert_eq(sp_queue(&px, cmd, out, sizeof out), 1, "retrying a held message: %s", out);
  cr_assert(strstr(out, "is held"), "%s", out);
  snprintf(cmd, sizeof cmd, "release %s", id1);
  cr_assert_eq(sp_queue(&px, cmd, out, sizeof out), 0, "%s", out);
  cr_assert_eq(sp_queue(&px, cmd, out, sizeof out), 1, "released twice: %s", out);

  snprintf(cmd, sizeof cmd, "delete %s", id2);
  cr_assert_eq(sp_queue(&px, cmd, out, sizeof out), 0, "%s", out);
  snprintf(cmd, sizeof cmd, "show %s", id2);
  cr_assert_eq(sp_queue(&px, cmd, out, sizeof out), 1);
  cr_assert(strstr(out, "no message"), "%s", out);
  cr_assert_eq(sp_queue(&px, "show 0000000000000000", out, sizeof out), 1);
  cr_assert_eq(sp_queue(&px, "show ../../etc/passwd", out, sizeof out), 1);
  cr_assert(strstr(out, "not a spool id"), "%s", out);
  cr_assert_eq(sp_queue(&px, "frobnicate", out, sizeof out), 1);

  /* Up again: `retry` (all) sends what is left; the deleted one never. */
  h_upstream u;
  char p[16];
  snprintf(p, sizeof p, "%d", port);
  const char *extra[] = {"--port", p, NULL};
  h_upstream_start(&u, "starttls", extra);
  cr_assert_eq(sp_queue(&px, "retry", out, sizeof out), 0, "%s", out);
  cr_assert(strstr(out, "1 message scheduled now"), "%s", out);
  cr_assert_eq(h_wait_records(u.record, "message", 1, 15000), 1);
  cr_assert(sp_wait_empty(&px, 10000));
  h_sleep_ms(500);
  h_lines l;
  cr_assert_eq(h_records(u.record, "message", &l), 1);
  size_t n;
  unsigned char *d = h_json_b64(l.v[0], "data_b64", &n);
  cr_assert(d && strstr((char *)d, "Subject: one"), "the deleted message went out");
  free(d);
  h_lines_free(&l);
  char line[512];
  cr_assert(h_file_wait_line(px.log, (const char *const[]){"spool-deleted", id2, NULL}, 100, line,
                             sizeof line));

  /* Without a running proxy: a clear error, exit 1. */
  h_proc_signal(px.proc, SIGTERM);
  cr_assert_eq(h_proc_wait_exit(px.proc, 10000), 0);
  cr_assert_eq(sp_queue(&px, "list", out, sizeof out), 1);
  cr_assert(strstr(out, "cannot reach the running proxy"), "%s", out);
}

ITest(integ, spool_reload_keeps_the_queue_and_holds_a_vanished_route) {
  int port = h_free_port();
  h_proxy px;
  char yaml[8192];
  sp_yaml(port, "starttls", "  retry: [1h]\n", yaml, sizeof yaml);
  h_proxy_start_yaml(&px, yaml);
  char text[1024], id[32], out[4096], line[1024];
  cr_assert_eq(sp_send(px.port, (const char *const[]){"a@example.com", NULL},
                       "Subject: r\r\n\r\nx\r\n", text, sizeof text),
               250);
  cr_assert(sp_queued_id(text, id));
  /* The route is renamed: the message's route is gone. */
  char renamed[8192];
  sp_replace(yaml, "  - name: default\n", "  - name: other\n", renamed, sizeof renamed);
  h_write_file(px.config, renamed, strlen(renamed));
  h_proc_signal(px.proc, SIGHUP);
  cr_assert(
      h_file_wait_line(px.log, (const char *const[]){"reloaded", NULL}, 5000, line, sizeof line));
  cr_assert_eq(sp_queue(&px, "retry", out, sizeof out), 0, "%s", out);
  cr_assert(h_file_wait_line(px.log,
                             (const char *const[]){"spool-held", id, "reason=route-missing", NULL},
                             5000, line, sizeof line));
  sp_queue(&px, "list", out, sizeof out);
  cr_assert(strstr(out, id) && strstr(out, "next=held held=route-missing"), "%s", out);
  /* Back again, with the upstream up: released and delivered. */
  h_upstream u;
  char p[16];
  snprintf(p, sizeof p, "%d", port);
  const char *extra[] = {"--port", p, NULL};
  h_upstream_start(&u, "starttls", extra);
  h_write_file(px.config, yaml, strlen(yaml));
  h_proc_signal(px.proc, SIGHUP);
  cr_assert(h_file_wait_line(px.log, (const char *const[]){"spool-released", id, NULL}, 5000, line,
                             sizeof line));
  /* Released messages go at once, but the failed connect's back-off may
   * still run: an administrator's retry goes past it. */
  cr_assert_eq(sp_queue(&px, "retry", out, sizeof out), 0, "%s", out);
  cr_assert_eq(h_wait_records(u.record, "message", 1, 15000), 1);
  cr_assert(sp_wait_empty(&px, 10000));
}

ITest(integ, spool_restart_recovers_and_refuses_what_was_not_committed) {
  int port = h_free_port();
  h_proxy px;
  char yaml[8192];
  sp_yaml(port, "starttls", "  retry: [1h]\n", yaml, sizeof yaml);
  h_proxy_start_yaml(&px, yaml);
  char text[1024], id[32], out[4096], path[512], line[1024];
  cr_assert_eq(sp_send(px.port, (const char *const[]){"a@example.com", NULL},
                       "Subject: kept\r\n\r\nx\r\n", text, sizeof text),
               250);
  cr_assert(sp_queued_id(text, id));
  h_proc_signal(px.proc, SIGTERM);
  cr_assert_eq(h_proc_wait_exit(px.proc, 10000), 0);
  h_proc_forget(px.proc);
  /* What a crash can leave: a half-written message in tmp/, a torn file
   * and a stray state in queue/. */
  snprintf(path, sizeof path, "%s/spool/tmp/0189c2f3a4b5c6d7", h_dir());
  h_write_file(path, "smtp-tls-proxy-spool 1\nid: 0189", 31);
  snprintf(path, sizeof path, "%s/spool/queue/0189c2f3a4b5c6d8", h_dir());
  h_write_file(path, "smtp-tls-proxy-spool 1\nid: 0189c2f3a4b5c6d8\nkind: message\n", 57);
  snprintf(path, sizeof path, "%s/spool/queue/0189c2f3a4b5c6d9.state", h_dir());
  h_write_file(path, "junk", 4);
  h_proxy_start_yaml(&px, yaml);
  cr_assert(h_file_wait_line(px.log,
                             (const char *const[]){"spool-recovered", "messages=1", "corrupt=1",
                                                   "orphan_states=1", NULL},
                             5000, line, sizeof line),
            "%s", line);
  cr_assert(h_file_wait_line(px.log,
                             (const char *const[]){"spool-corrupt", "0189c2f3a4b5c6d8", NULL}, 100,
                             line, sizeof line));
  cr_assert(sp_tmp_dir_empty(&px), "tmp/ was not emptied");
  cr_assert_eq(sp_queue(&px, "list", out, sizeof out), 0);
  cr_assert(strstr(out, id) && strstr(out, "1 message,"), "%s", out);
  h_upstream u;
  char p[16];
  snprintf(p, sizeof p, "%d", port);
  const char *extra[] = {"--port", p, NULL};
  h_upstream_start(&u, "starttls", extra);
  cr_assert_eq(sp_queue(&px, "retry", out, sizeof out), 0);
  cr_assert_eq(h_wait_records(u.record, "message", 1, 15000), 1);
  h_sleep_ms(1000);
  h_lines l;
  cr_assert_eq(h_records(u.record, "message", &l), 1, "only the committed message");
  h_lines_free(&l);
}

ITest(integ, spool_healthz_degraded_and_metrics) {
  int port = h_free_port(), mport = h_free_port();
  h_proxy px;
  char top[256];
  snprintf(top, sizeof top, "metrics: { listen: \"127.0.0.1:%d\" }\n", mport);
  char yaml[8192];
  sp_yaml_top(port, "starttls", "  retry: [1h]\n", top, yaml, sizeof yaml);
  h_proxy_start_yaml(&px, yaml);
  char text[1024], out[8192], cmd[256], line[512];
  snprintf(cmd, sizeof cmd, "curl -s -i http://127.0.0.1:%d/healthz", mport);
  cr_assert_eq(h_run(cmd, NULL, 10000, out, sizeof out), 0);
  cr_assert(strstr(out, "200 OK") && strstr(out, "\r\n\r\nok\n"), "%s", out);
  cr_assert_eq(sp_send(px.port, (const char *const[]){"a@example.com", NULL},
                       "Subject: fill\r\n\r\nx\r\n", text, sizeof text),
               250, "%s", text);
  /* A reload makes that message 95% of max_size. */
  cr_assert_eq(sp_queue(&px, "list", out, sizeof out), 0);
  const char *b = strstr(out, "1 message, ");
  cr_assert_not_null(b, "%s", out);
  unsigned long bytes = strtoul(b + strlen("1 message, "), NULL, 10);
  char extra[128], yaml2[8192];
  snprintf(extra, sizeof extra, "  retry: [1h]\n  max_size: %lu\n", bytes * 100 / 95);
  sp_yaml_top(port, "starttls", extra, top, yaml2, sizeof yaml2);
  h_write_file(px.config, yaml2, strlen(yaml2));
  h_proc_signal(px.proc, SIGHUP);
  cr_assert(
      h_file_wait_line(px.log, (const char *const[]){"reloaded", NULL}, 5000, line, sizeof line));
  /* Still 200 (a liveness probe must not restart the proxy over it),
   * with the reason. */
  cr_assert_eq(h_run(cmd, NULL, 10000, out, sizeof out), 0);
  cr_assert(strstr(out, "200 OK") && strstr(out, "degraded: spool at 95% of max_size"), "%s", out);
  snprintf(cmd, sizeof cmd, "curl -s http://127.0.0.1:%d/metrics", mport);
  int64_t deadline = h_now_ms() + 3000;
  do {
    h_run(cmd, NULL, 10000, out, sizeof out);
  } while (!strstr(out, "smtp_proxy_spool_messages 1\n") && h_now_ms() < deadline &&
           (h_sleep_ms(100), 1));
  cr_assert(strstr(out, "smtp_proxy_spool_messages 1\n"), "%s", out);
  char want[64];
  snprintf(want, sizeof want, "smtp_proxy_spool_bytes %lu\n", bytes);
  cr_assert(strstr(out, want), "%s", out);
  cr_assert(strstr(out, "smtp_proxy_spool_oldest_seconds "), "%s", out);
  cr_assert(strstr(out, "smtp_proxy_messages_total{route=\"default\",upstream=\"\",result="
                        "\"spooled\"} 1"),
            "%s", out);
}

/* A spooled body that changed on disk (bit rot, a hand edit) is streamed
 * but never gets the final dot: the hash is checked first. */
ITest(integ, spool_corrupt_body_never_gets_the_final_dot) {
  int port = h_free_port();
  h_proxy px;
  sp_start(&px, port, "starttls", "  retry: [1h]\n");
  char text[1024], id[32], out[4096], path[512], line[1024];
  cr_assert_eq(sp_send(px.port, (const char *const[]){"a@example.com", NULL},
                       "Subject: intact\r\n\r\nthe original text\r\n", text, sizeof text),
               250);
  cr_assert(sp_queued_id(text, id));
  snprintf(path, sizeof path, "%s/spool/queue/%s", h_dir(), id);
  size_t n;
  char *file = h_read_file(path, &n);
  char *at = memmem(file, n, "original", 8);
  cr_assert_not_null(at);
  memcpy(at, "ORIGINAL", 8); /* same size: only the hash can tell */
  h_write_file(path, file, n);
  free(file);
  h_upstream u;
  char p[16];
  snprintf(p, sizeof p, "%d", port);
  const char *extra[] = {"--port", p, NULL};
  h_upstream_start(&u, "starttls", extra);
  cr_assert_eq(sp_queue(&px, "retry", out, sizeof out), 0, "%s", out);
  cr_assert(h_file_wait_line(px.log, (const char *const[]){"spool-held", id, "hash", NULL}, 10000,
                             line, sizeof line));
  h_sleep_ms(500);
  h_lines l;
  cr_assert_eq(h_records(u.record, "message", &l), 0, "a corrupt body was delivered");
  h_lines_free(&l);
  sp_queue(&px, "list", out, sizeof out);
  cr_assert(strstr(out, id) && strstr(out, "next=held"), "%s", out);
}

static long vm_rss_kib(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  char *s = h_read_file(path, NULL);
  const char *p = s ? strstr(s, "VmRSS:") : NULL;
  long v = p ? strtol(p + 6, NULL, 10) : -1;
  free(s);
  return v;
}

/* ASan keeps freed memory in quarantine; for an RSS bound the proxy runs
 * without it (still sanitized). No effect without ASan. */
static void no_quarantine(void) {
  const char *old = getenv("ASAN_OPTIONS");
  char v[1024];
  snprintf(v, sizeof v, "%s%squarantine_size_mb=0:thread_local_quarantine_size_kb=0",
           old ? old : "", old && *old ? ":" : "");
  setenv("ASAN_OPTIONS", v, 1);
}

/* Sends a message of `mib` MiB in 64 KiB writes, sampling the proxy's
 * VmRSS; returns the final reply's code and the largest growth seen. */
static int big_message(h_proxy *px, int mib, long *grew, char *sha_hex, char *text, size_t cap) {
  static char chunk[64 * 1024];
  for (size_t i = 0; i < sizeof chunk; i += 64)
    memcpy(chunk + i, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n", 64);
  h_sha256 s;
  h_sha256_init(&s);
  h_smtp c;
  h_smtp_open(&c, px->port, true);
  long rss0 = vm_rss_kib(px->proc->pid), max = rss0;
  cr_assert_eq(h_smtp_cmd(&c, "MAIL FROM:<scan@printer.test>", text, cap), 250);
  cr_assert_eq(h_smtp_cmd(&c, "RCPT TO:<big@example.com>", text, cap), 250, "%s", text);
  cr_assert_eq(h_smtp_cmd(&c, "DATA", text, cap), 354, "%s", text);
  for (int i = 0; i < mib * 16; i++) {
    cr_assert_eq(h_smtp_send(&c, chunk, sizeof chunk), 0, "the proxy stopped reading");
    h_sha256_update(&s, chunk, sizeof chunk);
    long r = vm_rss_kib(px->proc->pid);
    max = r > max ? r : max;
  }
  h_smtp_sendstr(&c, ".\r\n");
  int code = h_smtp_reply(&c, 60000, text, cap);
  long r = vm_rss_kib(px->proc->pid);
  *grew = (r > max ? r : max) - rss0;
  h_sha256_hex(&s, sha_hex);
  h_smtp_close(&c);
  return code;
}

/* 32 MiB into the spool and out again, in bounded memory, while a device
 * still gets its message through promptly. */
ITest(integ, spool_large_message_bounded_memory_and_devices_first, .timeout = 120) {
  int port = h_free_port();
  h_proxy px;
  no_quarantine();
  sp_start(&px, port, "starttls", "  retry: [1h]\n");
  char text[1024], id[32], sha[65], out[4096];
  long grew;
  int code = big_message(&px, 32, &grew, sha, text, sizeof text);
  cr_assert_eq(code, 250, "%s", text);
  cr_assert(sp_queued_id(text, id), "%s", text);
  cr_log_info("32 MiB into the spool: VmRSS grew %ld KiB", grew);
  cr_assert_lt(grew, 16 * 1024, "VmRSS grew by %ld KiB for a 32 MiB spooled message", grew);
  h_upstream u;
  char p[16];
  snprintf(p, sizeof p, "%d", port);
  const char *extra[] = {"--port", p, NULL};
  h_upstream_start(&u, "starttls", extra);
  cr_assert_eq(sp_queue(&px, "retry", out, sizeof out), 0, "%s", out);
  /* While the runner streams it, a device's own message goes straight. */
  h_sleep_ms(50);
  int64_t t0 = h_now_ms();
  cr_assert_eq(sp_send(px.port, (const char *const[]){"live@example.com", NULL},
                       "Subject: live\r\n\r\nx\r\n", text, sizeof text),
               250, "%s", text);
  int64_t took = h_now_ms() - t0;
  cr_assert_null(strstr(text, "queued locally"), "the live message was spooled: %s", text);
  cr_assert_lt(took, 3000, "a device waited %lld ms behind a spool delivery", (long long)took);
  cr_assert_eq(h_wait_records(u.record, "message", 2, 60000), 2);
  cr_assert(sp_wait_empty(&px, 10000));
  h_lines l;
  h_records(u.record, "message", &l);
  bool found = false;
  for (size_t i = 0; i < l.n; i++) {
    char got[80];
    if (h_json_str(l.v[i], "data_sha256", got, sizeof got) == 1 && !strcmp(got, sha))
      found = true;
  }
  h_lines_free(&l);
  cr_assert(found, "the 32 MiB message arrived changed");
}

/* With the upstream up the copy streams to tmp/ beside the upstream, in
 * bounded memory, and is dropped after the upstream's 250. */
ITest(integ, spool_copy_of_a_large_message_is_bounded_and_dropped, .timeout = 120) {
  h_upstream u;
  h_upstream_start(&u, "starttls", NULL);
  h_proxy px;
  no_quarantine();
  sp_start(&px, u.port, "starttls", "");
  char text[1024], sha[65];
  long grew;
  int code = big_message(&px, 32, &grew, sha, text, sizeof text);
  cr_assert_eq(code, 250, "%s", text);
  cr_assert_null(strstr(text, "queued locally"), "%s", text);
  cr_log_info("32 MiB with its copy: VmRSS grew %ld KiB", grew);
  cr_assert_lt(grew, 16 * 1024, "VmRSS grew by %ld KiB for a 32 MiB message", grew);
  cr_assert(sp_wait_tmp_empty(&px, 3000), "the copy was not dropped");
  cr_assert(sp_queue_dir_empty(&px));
  h_lines l;
  cr_assert_eq(h_records(u.record, "message", &l), 1);
  char got[80];
  h_json_str(l.v[0], "data_sha256", got, sizeof got);
  cr_assert_str_eq(got, sha);
  h_lines_free(&l);
}
