/* test_api.c - upstreams of kind graph and gmail against local HTTPS
 * stand-ins for Microsoft Graph and the Gmail API (tests/tools/api_fake.py,
 * strict about the documented request formats, with token_server.py's
 * token endpoint): a 1 KiB, a 3.5 MiB and a 30 MiB message through each,
 * what the stand-in received checked byte for byte against what the device
 * sent (raw MIME for sendMail and Gmail; the decoded attachment and the
 * body for Graph's draft path), the upload session's chunks, the proxy's
 * peak memory on the 30 MiB upload, 429 with Retry-After and the back-off,
 * a token expiring mid-run, failover SMTP -> Graph, --test-route, a 250
 * only after the API accepted, Graph's refusals with their hints, and a
 * TLS failure before ready. These stand-ins replace services that cannot
 * run here; the README says what they could not show.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "api_common.h"

/* As test_sec_resources.c: under AddressSanitizer freed memory sits in a
 * quarantine, so a bound on RSS needs it off (no effect without ASan). */
static void asan_no_quarantine(void) {
  const char *old = getenv("ASAN_OPTIONS");
  char v[1024];
  snprintf(v, sizeof v, "%s%squarantine_size_mb=0:thread_local_quarantine_size_kb=0",
           old ? old : "", old && *old ? ":" : "");
  setenv("ASAN_OPTIONS", v, 1);
}

static long vm_rss_kib(const h_proxy *px) {
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/%d/status", (int)px->proc->pid);
  FILE *f = fopen(path, "r");
  cr_assert_not_null(f);
  long kib = -1;
  while (fgets(buf, sizeof buf, f))
    if (!strncmp(buf, "VmRSS:", 6))
      kib = atol(buf + 6);
  fclose(f);
  return kib;
}

static long vm_hwm_kib(const h_proxy *px) {
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/%d/status", (int)px->proc->pid);
  FILE *f = fopen(path, "r");
  cr_assert_not_null(f);
  long kib = -1;
  while (fgets(buf, sizeof buf, f))
    if (!strncmp(buf, "VmHWM:", 6))
      kib = atol(buf + 6);
  fclose(f);
  return kib;
}

/* ---- Graph --------------------------------------------------------------------- */

ITest(integ, api_graph_1k_sendmail_raw_mime_exact) {
  fake f;
  h_proxy px;
  scan s;
  api_fake_start(&f, "graph", NULL, NULL);
  api_proxy_for(&px, &f, NULL);
  api_make_small(&s, TO);
  char text[512];
  cr_assert_eq(api_send_msg(&px, &s, (const char *const[]){TO, NULL}, text, sizeof text, NULL), 250,
               "%s", text);
  cr_assert(strstr(text, "2.0.0 Ok: accepted by Microsoft Graph, request-id req-"), "%s", text);
  h_lines l;
  cr_assert_eq(h_records(f.record, "graph_sendmail", &l), 1);
  char fmt[16];
  h_json_str(l.v[0], "format", fmt, sizeof fmt);
  cr_assert_str_eq(fmt, "mime");
  api_assert_file_is(l.v[0], "file", s.msg, s.len); /* one recipient, in To: no Bcc field */
  h_lines_free(&l);
  /* An envelope recipient not in To or Cc goes in as Bcc, in front. */
  cr_assert_eq(api_send_msg(&px, &s, (const char *const[]){TO, "audit@contoso.example", NULL}, text,
                            sizeof text, NULL),
               250, "%s", text);
  cr_assert_eq(h_records(f.record, "graph_sendmail", &l), 2);
  char *want = malloc(s.len + 64);
  int n = sprintf(want, "Bcc: audit@contoso.example\r\n");
  memcpy(want + n, s.msg, s.len);
  api_assert_file_is(l.v[1], "file", want, (size_t)n + s.len);
  free(want);
  h_lines_free(&l);
  api_scan_free(&s);
}

ITest(integ, api_graph_3_5mib_draft_attachment_posted_whole) {
  fake f;
  h_proxy px;
  scan s;
  api_fake_start(&f, "graph", NULL, NULL);
  api_proxy_for(&px, &f, NULL);
  api_make_scan(&s, 3584 * 1024, TO, NULL);
  char text[512];
  cr_assert_eq(api_send_msg(&px, &s, (const char *const[]){TO, NULL}, text, sizeof text, NULL), 250,
               "%s", text);
  h_lines l;
  cr_assert_eq(h_records(f.record, "graph_sendmail", &l), 0, "over 4 MB as base64: no sendMail");
  h_lines_free(&l);
  cr_assert_eq(h_records(f.record, "graph_attachment", &l), 1, "under 3 MB: posted whole");
  h_lines_free(&l);
  cr_assert_eq(h_records(f.record, "graph_send", &l), 1);
  char v[256];
  h_json_str(l.v[0], "subject", v, sizeof v);
  cr_assert_str_eq(v, "Scan Data from MP C3004");
  h_json_str(l.v[0], "body", v, sizeof v);
  cr_assert_str_eq(v, SCAN_TEXT, "the body: the text part, decoded");
  h_json_str(l.v[0], "internetMessageId", v, sizeof v);
  cr_assert_str_eq(v, "<scan.3670016@mpc3004.contoso.example>");
  bool found;
  cr_assert_eq(h_json_strlist(l.v[0], "to", TO, &found), 1);
  cr_assert(found);
  h_lines_free(&l);
  cr_assert_eq(h_records(f.record, "attachment", &l), 1);
  h_json_str(l.v[0], "name", v, sizeof v);
  cr_assert_str_eq(v, "scan0001.pdf");
  h_json_str(l.v[0], "contentType", v, sizeof v);
  cr_assert_str_eq(v, "application/pdf");
  h_json_str(l.v[0], "via", v, sizeof v);
  cr_assert_str_eq(v, "inline");
  api_assert_file_is(l.v[0], "file", s.pdf, s.pdf_len);
  h_lines_free(&l);
  api_scan_free(&s);
}

ITest(integ, api_graph_30mib_upload_session_chunks_and_memory, .timeout = 120) {
  fake f;
  h_proxy px;
  scan s;
  api_fake_start(&f, "graph", NULL, NULL);
  asan_no_quarantine();
  api_proxy_for(&px, &f, NULL);
  api_make_scan(&s, 30 * 1024 * 1024, TO, "desk@contoso.example");
  char text[512];
  int64_t ms;
  long rss0 = vm_rss_kib(&px);
  cr_assert_eq(api_send_msg(&px, &s, (const char *const[]){TO, "desk@contoso.example", NULL}, text,
                            sizeof text, &ms),
               250, "%s", text);
  long hwm = vm_hwm_kib(&px);
  fprintf(stderr,
          "api_graph_30mib: %zu-byte message, %zu-byte PDF: %lld ms, proxy VmRSS %ld KiB before, "
          "VmHWM %ld KiB\n",
          s.len, s.pdf_len, (long long)ms, rss0, hwm);
#ifdef __SANITIZE_ADDRESS__
  /* ASan's shadow and runtime weigh on their own: bound the growth. */
  cr_assert_lt(hwm - rss0, 24 * 1024, "peak RSS grew by %ld KiB", hwm - rss0);
#else
  cr_assert_lt(hwm, 32 * 1024, "peak RSS %ld KiB over 32 MiB", hwm);
#endif
  h_lines l;
  size_t nchunks = h_records(f.record, "graph_chunk", &l);
  cr_assert_gt(nchunks, 5);
  long long sum = 0;
  for (size_t i = 0; i < nchunks; i++) {
    long long size = h_json_int(l.v[i], "size", -1);
    cr_assert_leq(size, 4 * 1024 * 1024);
    if (i + 1 < nchunks)
      cr_assert_eq(size % (320 * 1024), 0, "chunk %zu: %lld bytes", i, size);
    sum += size;
  }
  cr_assert_eq(sum, (long long)s.pdf_len);
  h_lines_free(&l);
  cr_assert_eq(h_records(f.record, "graph_send", &l), 1);
  bool found;
  h_json_strlist(l.v[0], "cc", "desk@contoso.example", &found);
  cr_assert(found, "%s", l.v[0]);
  h_lines_free(&l);
  cr_assert_eq(h_records(f.record, "attachment", &l), 1);
  char v[64];
  h_json_str(l.v[0], "via", v, sizeof v);
  cr_assert_str_eq(v, "session");
  api_assert_file_is(l.v[0], "file", s.pdf, s.pdf_len);
  h_lines_free(&l);
  api_scan_free(&s);
}

/* save_to_sent_items: false: sendMail with JSON (the only request where
 * Graph honours it), the attachment's bytes intact. */
ITest(integ, api_graph_save_to_sent_items_false_goes_as_json) {
  fake f;
  h_proxy px;
  scan s;
  api_fake_start(&f, "graph", NULL, NULL);
  api_proxy_for(&px, &f, "    save_to_sent_items: false\n");
  api_make_scan(&s, 64 * 1024, TO, NULL);
  char text[512];
  cr_assert_eq(api_send_msg(&px, &s, (const char *const[]){TO, "hidden@contoso.example", NULL},
                            text, sizeof text, NULL),
               250, "%s", text);
  h_lines l;
  cr_assert_eq(h_records(f.record, "graph_sendmail", &l), 1);
  char v[64];
  h_json_str(l.v[0], "format", v, sizeof v);
  cr_assert_str_eq(v, "json");
  cr_assert_eq(h_json_bool(l.v[0], "saveToSentItems"), 0);
  bool found;
  h_json_strlist(l.v[0], "bcc", "hidden@contoso.example", &found);
  cr_assert(found, "the envelope recipient not in To is Bcc: %s", l.v[0]);
  h_lines_free(&l);
  cr_assert_eq(h_records(f.record, "attachment", &l), 1);
  api_assert_file_is(l.v[0], "file", s.pdf, s.pdf_len);
  h_lines_free(&l);
  api_scan_free(&s);
}

/* ---- Gmail --------------------------------------------------------------------- */

static void gmail_exact(size_t size, bool small) {
  fake f;
  h_proxy px;
  scan s;
  api_fake_start(&f, "gmail", NULL, NULL);
  api_proxy_for(&px, &f, NULL);
  if (small)
    api_make_small(&s, TO);
  else
    api_make_scan(&s, size, TO, NULL);
  char text[512];
  int64_t ms;
  cr_assert_eq(api_send_msg(&px, &s, (const char *const[]){TO, NULL}, text, sizeof text, &ms), 250,
               "%s", text);
  cr_assert(strstr(text, "2.0.0 Ok: accepted by the Gmail API as id "), "%s", text);
  fprintf(stderr, "api_gmail: %zu bytes in %lld ms, proxy VmHWM %ld KiB\n", s.len, (long long)ms,
          vm_hwm_kib(&px));
  h_lines l;
  cr_assert_eq(h_records(f.record, "gmail_send", &l), 1);
  char v[64];
  h_json_str(l.v[0], "user", v, sizeof v);
  cr_assert_str_eq(v, "me");
  api_assert_file_is(l.v[0], "file", s.msg, s.len);
  h_lines_free(&l);
  api_scan_free(&s);
}

ITest(integ, api_gmail_1k_exact) {
  gmail_exact(1024, true);
}

ITest(integ, api_gmail_3_5mib_exact) {
  gmail_exact(3584 * 1024, false);
}

ITest(integ, api_gmail_30mib_exact, .timeout = 120) {
  gmail_exact(30 * 1024 * 1024, false);
}

/* Over Gmail's 35 MiB: 552 before anything is sent, at MAIL when the
 * device announces the size. */
ITest(integ, api_gmail_over_35mib_refused_before_sending) {
  fake f;
  h_proxy px;
  api_fake_start(&f, "gmail", NULL, NULL);
  api_proxy_for(&px, &f, NULL);
  h_smtp c;
  char text[512];
  h_smtp_open(&c, px.port, true);
  int code = h_smtp_cmd(&c, "MAIL FROM:<" MAILBOX "> SIZE=37000000", text, sizeof text);
  cr_assert_eq(code, 250, "%s", text); /* the session takes MAIL; the upstream's answer is RCPT's */
  code = h_smtp_cmd(&c, "RCPT TO:<" TO ">", text, sizeof text);
  cr_assert_eq(code, 552, "%s", text);
  cr_assert(strstr(text, "35 MiB"), "%s", text);
  h_smtp_close(&c);
  h_lines l;
  cr_assert_eq(h_records(f.record, "gmail_send", &l), 0);
  h_lines_free(&l);
}

/* ---- answers, tokens, failover ------------------------------------------------------- */

/* 429 with Retry-After: the device gets 451, the upstream is skipped for
 * that long (a message meanwhile is 4xx without a request), then used. */
ITest(integ, api_429_retry_after_defers_and_backs_off) {
  fake f;
  h_proxy px;
  scan s;
  api_fake_start(&f, "graph", NULL,
                 (const char *const[]){"--mode", "throttle-first", "--retry-after", "3", NULL});
  api_proxy_for(&px, &f, NULL);
  api_make_small(&s, TO);
  char text[512];
  cr_assert_eq(api_send_msg(&px, &s, (const char *const[]){TO, NULL}, text, sizeof text, NULL), 451,
               "%s", text);
  cr_assert(strstr(text, "4.7.0 Throttled") && strstr(text, "ApplicationThrottled"), "%s", text);
  char line[1024];
  cr_assert(h_file_wait_line(px.log,
                             (const char *const[]){"upstream-backoff", "upstream=api", NULL}, 2000,
                             line, sizeof line));
  long long skip = atoll(strstr(line, "skip_ms=") + 8);
  cr_assert(skip > 2000 && skip <= 3000, "%s", line);
  h_lines l;
  size_t before = h_records(f.record, NULL, &l);
  h_lines_free(&l);
  int code = api_send_msg(&px, &s, (const char *const[]){TO, NULL}, text, sizeof text, NULL);
  cr_assert(code >= 400 && code < 500, "during the back-off: %d %s", code, text);
  cr_assert_eq(h_records(f.record, NULL, &l), before, "no request while backing off");
  h_lines_free(&l);
  h_sleep_ms(3300);
  cr_assert_eq(api_send_msg(&px, &s, (const char *const[]){TO, NULL}, text, sizeof text, NULL), 250,
               "%s", text);
  api_scan_free(&s);
}

/* The API refuses a token the proxy still holds (it expired early): one
 * refresh, the same request again, 250. */
ITest(integ, api_token_expiry_mid_run_refreshes_once) {
  fake f;
  h_proxy px;
  scan s;
  api_fake_start(&f, "gmail", NULL, (const char *const[]){"--token-ttl", "2", NULL});
  api_proxy_for(&px, &f, "    pool: false\n");
  api_make_small(&s, TO);
  char text[512];
  cr_assert_eq(api_send_msg(&px, &s, (const char *const[]){TO, NULL}, text, sizeof text, NULL), 250,
               "%s", text);
  h_sleep_ms(2600);
  cr_assert_eq(api_send_msg(&px, &s, (const char *const[]){TO, NULL}, text, sizeof text, NULL), 250,
               "%s", text);
  h_lines l;
  cr_assert_eq(h_records(f.record, "unauthorized", &l), 1, "the old token was refused once");
  char why[32];
  h_json_str(l.v[0], "why", why, sizeof why);
  cr_assert_str_eq(why, "expired");
  h_lines_free(&l);
  cr_assert_eq(h_records(f.record, "token_request", &l), 2, "one refresh");
  h_lines_free(&l);
  cr_assert_eq(h_records(f.record, "gmail_send", &l), 2);
  h_lines_free(&l);
  char line[512];
  cr_assert(h_file_wait_line(px.log, (const char *const[]){"oauth2-token-refused", NULL}, 1000,
                             line, sizeof line));
  api_scan_free(&s);
}

/* A route's SMTP upstream is down: the message goes by Graph. */
ITest(integ, api_failover_smtp_to_graph) {
  fake f;
  h_proxy px;
  scan s;
  api_fake_start(&f, "graph", NULL, NULL);
  char ups[8192], api[4096];
  snprintf(ups, sizeof ups,
           "  - name: m365-smtp\n"
           "    host: 127.0.0.1\n"
           "    port: 9\n"
           "    tls: starttls\n"
           "    connect_timeout: 2s\n"
           "    auth: { username: u, password_env: " H_PW_ENV " }\n"
           "%s",
           api_upstream(&f, "api", NULL, api, sizeof api));
  api_proxy_start(&px, ups, "m365-smtp, api");
  api_make_small(&s, TO);
  char text[512];
  cr_assert_eq(api_send_msg(&px, &s, (const char *const[]){TO, NULL}, text, sizeof text, NULL), 250,
               "%s", text);
  char line[1024];
  cr_assert(h_file_wait_line(px.log, (const char *const[]){"failover", "to=api", NULL}, 2000, line,
                             sizeof line));
  h_lines l;
  cr_assert_eq(h_records(f.record, "graph_sendmail", &l), 1);
  api_assert_file_is(l.v[0], "file", s.msg, s.len);
  h_lines_free(&l);
  api_scan_free(&s);
}

/* The device's 250 comes after the API's 202, not before. */
ITest(integ, api_250_only_after_the_api_accepted) {
  fake f;
  h_proxy px;
  scan s;
  api_fake_start(&f, "graph", NULL,
                 (const char *const[]){"--mode", "delay", "--delay", "1.5", NULL});
  api_proxy_for(&px, &f, NULL);
  api_make_small(&s, TO);
  char text[512];
  int64_t ms;
  cr_assert_eq(api_send_msg(&px, &s, (const char *const[]){TO, NULL}, text, sizeof text, &ms), 250,
               "%s", text);
  cr_assert_geq(ms, 1400, "250 after %lld ms: before the API answered", (long long)ms);
  api_scan_free(&s);
}

/* An API that cannot take it now: 4xx, never 250. */
ITest(integ, api_503_is_4xx_never_250) {
  fake f;
  h_proxy px;
  scan s;
  api_fake_start(&f, "graph", NULL, (const char *const[]){"--mode", "error500", NULL});
  api_proxy_for(&px, &f, NULL);
  api_make_small(&s, TO);
  char text[512];
  cr_assert_eq(api_send_msg(&px, &s, (const char *const[]){TO, NULL}, text, sizeof text, NULL), 451,
               "%s", text);
  cr_assert(strstr(text, "ServiceNotAvailable"), "%s", text);
  api_scan_free(&s);
}

ITest(integ, api_graph_send_as_denied_is_5xx_with_a_hint) {
  fake f;
  h_proxy px;
  scan s;
  api_fake_start(&f, "graph", NULL, (const char *const[]){"--mode", "sendas-denied", NULL});
  api_proxy_for(&px, &f, NULL);
  api_make_small(&s, TO);
  char text[512];
  cr_assert_eq(api_send_msg(&px, &s, (const char *const[]){TO, NULL}, text, sizeof text, NULL), 550,
               "%s", text);
  cr_assert(strstr(text, "5.7.60") && strstr(text, "ErrorSendAsDenied"), "%s", text);
  char line[1024];
  cr_assert(h_file_wait_line(px.log, (const char *const[]){"api-refused", "Send As", NULL}, 2000,
                             line, sizeof line));
  api_scan_free(&s);
}

/* Without Mail.ReadWrite a large message cannot become a draft: 5xx naming
 * the permission, and no draft left behind. */
ITest(integ, api_graph_large_without_mail_readwrite) {
  fake f;
  h_proxy px;
  scan s;
  api_fake_start(&f, "graph", NULL, (const char *const[]){"--mode", "no-readwrite", NULL});
  api_proxy_for(&px, &f, NULL);
  api_make_scan(&s, 4608 * 1024, TO, NULL);
  char text[512];
  cr_assert_eq(api_send_msg(&px, &s, (const char *const[]){TO, NULL}, text, sizeof text, NULL), 550,
               "%s", text);
  cr_assert(strstr(text, "Mail.ReadWrite") && strstr(text, "ErrorAccessDenied"), "%s", text);
  api_scan_free(&s);
}

/* An API presenting a certificate for another name: the upstream fails
 * before ready (tls), the device gets 4xx at once. */
ITest(integ, api_tls_failure_before_ready) {
  fake f, tokens;
  h_proxy px;
  scan s;
  api_fake_start(&tokens, "graph", NULL, NULL); /* its token endpoint presents a good certificate */
  api_fake_start(&f, "graph", "wrongname", NULL);
  api_token_port = tokens.port;
  api_proxy_for(&px, &f, NULL);
  api_token_port = 0;
  api_make_small(&s, TO);
  char text[512];
  const char *stage = NULL;
  h_smtp c;
  h_smtp_open(&c, px.port, true);
  int code = h_smtp_message(&c, MAILBOX, (const char *const[]){TO, NULL}, s.msg, s.len, text,
                            sizeof text, &stage);
  h_smtp_close(&c);
  cr_assert(code >= 400 && code < 500, "%d %s", code, text);
  cr_assert_str_eq(stage, "RCPT");
  char line[1024];
  cr_assert(h_file_wait_line(px.log, (const char *const[]){"upstream-failed", "reason=tls", NULL},
                             2000, line, sizeof line));
  api_scan_free(&s);
}

/* --test-route through an API upstream: the requests and answers, the
 * token redacted, exit 0. */
ITest(integ, api_test_route_graph_and_gmail) {
  const char *kinds[] = {"graph", "gmail"};
  for (int k = 0; k < 2; k++) {
    fake f;
    api_fake_start(&f, kinds[k], NULL, NULL);
    char up[4096], yaml[8192], path[512], outpath[512], cmd[2048];
    snprintf(yaml, sizeof yaml,
             "listeners:\n  - name: lan\n    listen: \"127.0.0.1:0\"\nupstreams:\n%s"
             "routes:\n  - name: default\n    upstream: api\n",
             api_upstream(&f, "api", NULL, up, sizeof up));
    h_path(path, sizeof path, "route.yaml");
    h_write_file(path, yaml, strlen(yaml));
    h_path(outpath, sizeof outpath, "test-route.out");
    snprintf(cmd, sizeof cmd,
             "cd '%s' && '%s' -c '%s' --test-route default --from " MAILBOX " --to " TO
             " > '%s' 2>&1",
             h_dir(), STP_BINARY, path, outpath);
    int rc = h_run(cmd, NULL, 20000, NULL, 0);
    char *out = h_read_file(outpath, NULL);
    cr_assert_eq(rc, 0, "--test-route exit %d:\n%s", rc, out);
    cr_assert(strstr(out, "Authorization: Bearer <redacted>"), "%s", out);
    cr_assert(strstr(out, k == 0 ? "/sendMail" : "/messages/send?uploadType=media"), "%s", out);
    cr_assert(strstr(out, k == 0 ? "S: HTTP 202" : "S: HTTP 200"), "%s", out);
    cr_assert(strstr(out, "== OK"), "%s", out);
    cr_assert(!strstr(out, "at-1-"), "a token in the transcript:\n%s", out);
    free(out);
    h_lines l;
    cr_assert_eq(h_records(f.record, k == 0 ? "graph_sendmail" : "gmail_send", &l), 1);
    h_lines_free(&l);
  }
}

/* The stand-ins are strict: what a lax client might send is refused as the
 * providers document it (wrong Content-Type, no or a forged bearer token,
 * base64 with line breaks, chunks that are not multiples of 320 KiB, a
 * range that does not continue, an upload past the declared size, an
 * Authorization header to the upload URL, send before the upload ends). */
ITest(integ, api_stand_ins_refuse_what_the_docs_refuse) {
  const char *kinds[] = {"graph", "gmail"};
  for (int k = 0; k < 2; k++) {
    char cmd[2048], out[4096];
    snprintf(cmd, sizeof cmd,
             "%s '%s/api_fake.py' --cert '%s/server.crt' --key '%s/server.key' --record "
             "'%s/selftest.jsonl' --store '%s/selftest' --kind %s --client-secret cs-test "
             "--mailbox " MAILBOX " --self-test '%s/ca.crt'",
             H_PYTHON, STP_TOOLS_DIR, h_certs(), h_certs(), h_dir(), h_dir(), kinds[k], h_certs());
    int rc = h_run(cmd, NULL, 30000, out, sizeof out);
    cr_assert_eq(rc, 0, "%s stand-in self-test exit %d:\n%s", kinds[k], rc, out);
    cr_assert(strstr(out, "SELFTEST OK"), "%s", out);
  }
}

/* Files in the private copy directory under dir (TMPDIR). */
static int copies_in(const char *dir, char *which, size_t cap) {
  char cmd[1024], out[4096];
  snprintf(cmd, sizeof cmd,
           "ls -A '%s'/smtp-tls-proxy-api.*/ 2>/dev/null | wc -l; ls -d '%s'/smtp-tls-proxy-api.* "
           "2>/dev/null",
           dir, dir);
  h_run(cmd, NULL, 5000, out, sizeof out);
  if (which)
    snprintf(which, cap, "%s", out);
  return atoi(out);
}

/* The copy of a message lives in a private 0700 directory under TMPDIR
 * while it is sent, and is gone once the API answered, or the device went
 * away mid-DATA (then nothing is sent at all); the directory goes at exit. */
ITest(integ, api_copies_are_removed) {
  fake f;
  h_proxy px;
  scan s;
  api_fake_start(&f, "gmail", NULL, NULL);
  setenv("TMPDIR", h_dir(), 1);
  api_proxy_for(&px, &f, NULL);
  unsetenv("TMPDIR");
  api_make_scan(&s, 2 * 1024 * 1024, TO, NULL);
  char text[512], dirs[4096];
  cr_assert_eq(api_send_msg(&px, &s, (const char *const[]){TO, NULL}, text, sizeof text, NULL), 250,
               "%s", text);
  cr_assert_eq(copies_in(h_dir(), dirs, sizeof dirs), 0, "a copy is left: %s", dirs);
  cr_assert(strstr(dirs, "smtp-tls-proxy-api."), "no private directory: %s", dirs);
  char path[512];
  snprintf(path, sizeof path, "%s", strchr(dirs, '\n') + 1);
  path[strcspn(path, "\n")] = '\0';
  struct stat st;
  cr_assert_eq(stat(path, &st), 0, "%s", path);
  cr_assert_eq(st.st_mode & 0777, 0700);
  /* Half a message, then the device hangs up. */
  h_smtp c;
  h_smtp_open(&c, px.port, true);
  cr_assert_eq(h_smtp_cmd(&c, "MAIL FROM:<" MAILBOX ">", text, sizeof text), 250);
  cr_assert_eq(h_smtp_cmd(&c, "RCPT TO:<" TO ">", text, sizeof text), 250);
  cr_assert_eq(h_smtp_cmd(&c, "DATA", text, sizeof text), 354);
  h_smtp_send(&c, s.msg, s.len / 2);
  h_sleep_ms(300);
  cr_assert_eq(copies_in(h_dir(), NULL, 0), 1, "the copy while the message comes");
  h_smtp_close(&c);
  h_sleep_ms(500);
  cr_assert_eq(copies_in(h_dir(), dirs, sizeof dirs), 0, "a copy is left: %s", dirs);
  h_lines l;
  cr_assert_eq(h_records(f.record, "gmail_send", &l), 1, "nothing sent for the aborted message");
  h_lines_free(&l);
  h_proc_signal(px.proc, SIGTERM);
  cr_assert_eq(h_proc_wait_exit(px.proc, 5000), 0);
  cr_assert_neq(stat(path, &st), 0, "the private directory outlived the proxy");
  api_scan_free(&s);
}

/* With a spool configured, the copies live in the spool's own tmp/ (the
 * disk the admin sized for mail, 0700), not in TMPDIR; a spool route with
 * an API upstream keeps pass-through first. */
ITest(integ, api_copies_use_the_spool_directory) {
  fake f;
  h_proxy px;
  scan s;
  api_fake_start(&f, "gmail", NULL, NULL);
  char spool[512];
  setenv("TMPDIR", h_dir(), 1);
  api_proxy_spooling(&px, &f, spool, sizeof spool);
  unsetenv("TMPDIR");
  api_make_scan(&s, 1024 * 1024, TO, NULL);
  h_smtp c;
  char text[512], cmd[1024], out[2048];
  h_smtp_open(&c, px.port, true);
  cr_assert_eq(h_smtp_cmd(&c, "MAIL FROM:<" MAILBOX ">", text, sizeof text), 250);
  cr_assert_eq(h_smtp_cmd(&c, "RCPT TO:<" TO ">", text, sizeof text), 250);
  cr_assert_eq(h_smtp_cmd(&c, "DATA", text, sizeof text), 354);
  h_smtp_send(&c, s.msg, s.len / 2);
  h_sleep_ms(300);
  snprintf(cmd, sizeof cmd, "ls -A '%s/tmp' | wc -l; ls -d '%s'/smtp-tls-proxy-api.* 2>&1", spool,
           h_dir());
  h_run(cmd, NULL, 5000, out, sizeof out);
  cr_assert_geq(atoi(out), 1, "no copy in the spool's tmp/: %s", out);
  cr_assert(strstr(out, "No such file"), "a private directory under TMPDIR: %s", out);
  h_smtp_send(&c, s.msg + s.len / 2, s.len - s.len / 2);
  h_smtp_sendstr(&c, ".\r\n");
  cr_assert_eq(h_smtp_reply(&c, 30000, text, sizeof text), 250, "%s", text);
  h_smtp_close(&c);
  h_lines l;
  cr_assert_eq(h_records(f.record, "gmail_send", &l), 1);
  h_lines_free(&l);
  api_scan_free(&s);
}

/* Probes of API upstreams: the token, then one authenticated GET; a
 * mailbox the API does not know is a failed probe with the table's hint. */
ITest(integ, api_probe_graph_and_gmail_get_and_a_wrong_mailbox) {
  fake g, m, wrong;
  api_fake_start(&g, "graph", NULL, NULL);
  api_fake_start(&m, "gmail", NULL, NULL);
  api_fake_start(&wrong, "graph", NULL,
                 (const char *const[]){"--mailbox", "other@contoso.example", NULL});
  char a[4096], b[4096], c[4096], all[12288];
  api_upstream(&g, "graph", "    probe_interval: 1s\n", a, sizeof a);
  api_upstream(&m, "gmail", "    probe_interval: 1s\n", b, sizeof b);
  api_upstream(&wrong, "wrong", "    probe_interval: 1s\n", c, sizeof c);
  snprintf(all, sizeof all, "%s%s%s", a, b, c);
  h_proxy px;
  api_proxy_start(&px, all, "graph");
  char line[2048];
  const char *ok1[] = {" probe ", "upstream=graph ", "result=ok", NULL};
  const char *ok2[] = {" probe ", "upstream=gmail ", "result=ok", NULL};
  const char *bad[] = {" probe ", "upstream=wrong ", "result=failed", "reason=mailbox-not-found",
                       NULL};
  cr_assert(h_file_wait_line(px.log, ok1, 8000, line, sizeof line), "graph probe");
  cr_assert(h_file_wait_line(px.log, ok2, 8000, line, sizeof line), "gmail probe");
  cr_assert(h_file_wait_line(px.log, bad, 8000, line, sizeof line), "wrong mailbox probe");
  cr_assert_not_null(strstr(line, "reply=\"404 Request_ResourceNotFound\""), "%s", line);
  cr_assert_not_null(strstr(line, "hint="), "%s", line);
  cr_assert_geq(h_wait_records(g.record, "probe_get", 1, 5000), 1);
  cr_assert_geq(h_wait_records(m.record, "probe_get", 1, 5000), 1);
  h_lines sent;
  cr_assert_eq(h_records(g.record, "graph_sendmail", &sent), 0, "a probe sends no mail");
  h_lines_free(&sent);
}
