/* api_common.c - see api_common.h. */
#include "api_common.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* api_fake.py presenting <cert>.crt (from h_certs()). */
void api_fake_start(fake *f, const char *kind, const char *cert, const char *const extra[]) {
  static unsigned seq;
  const char *certs = h_certs();
  char script[512], crt[512], key[512], name[32], line[128];
  char *argv[40];
  size_t n = 0;
  snprintf(name, sizeof name, "api%u", seq++);
  snprintf(script, sizeof script, "%s/api_fake.py", STP_TOOLS_DIR);
  snprintf(crt, sizeof crt, "%s/%s.crt", certs, cert ? cert : "server");
  snprintf(key, sizeof key, "%s/%s.key", certs, cert ? cert : "server");
  snprintf(f->record, sizeof f->record, "%s/%s.jsonl", h_dir(), name);
  snprintf(f->store, sizeof f->store, "%s/%s-store", h_dir(), name);
  f->kind = kind;
  const char *fixed[] = {H_PYTHON,          script,    "--cert",    crt,      "--key",      key,
                         "--record",        f->record, "--store",   f->store, "--kind",     kind,
                         "--client-secret", "cs-test", "--mailbox", MAILBOX,  "--lifetime", "100"};
  for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
    argv[n++] = (char *)fixed[i];
  for (size_t i = 0; extra && extra[i] && n < 38; i++)
    argv[n++] = (char *)extra[i];
  argv[n] = NULL;
  f->proc = h_spawn(name, argv, NULL);
  cr_assert_eq(h_proc_wait_line(f->proc, "READY ", 15000, line, sizeof line), 0,
               "api_fake.py did not start");
  cr_assert_eq(sscanf(line, "READY %d", &f->port), 1);
}

int api_token_port; /* a token endpoint other than the API's (0: the API's) */

/* The upstream block for the fake (lines indented 2, the list item). */
char *api_upstream(const fake *f, const char *name, const char *extra, char *out, size_t cap) {
  char secret[512], rt[512];
  h_path(secret, sizeof secret, "client-secret");
  h_write_file(secret, "cs-test\n", 8);
  chmod(secret, 0600);
  h_path(rt, sizeof rt, "refresh-token");
  h_write_file(rt, "rt-initial\n", 11);
  chmod(rt, 0600);
  bool graph = !strcmp(f->kind, "graph");
  snprintf(out, cap,
           "  - name: %s\n"
           "    kind: %s\n"
           "    mailbox: %s\n"
           "    api_url: https://localhost:%d\n"
           "    ca_file: %s/ca.crt\n"
           "    connect_timeout: 5s\n"
           "    command_timeout: 20s\n"
           "    data_timeout: 20s\n"
           "%s"
           "    auth:\n"
           "      oauth2:\n"
           "        preset: %s\n"
           "%s"
           "        client_id: client-1\n"
           "        client_secret_file: %s\n"
           "%s"
           "        token_url: https://localhost:%d/token\n"
           "        ca_file: %s/ca.crt\n",
           name, f->kind, graph ? MAILBOX : "me", f->port, h_certs(), extra ? extra : "",
           graph ? "microsoft365-graph" : "google-gmail-api",
           graph ? "        tenant: contoso.example\n" : "", secret,
           graph ? "" : "        refresh_token_file: refresh-token\n",
           api_token_port ? api_token_port : f->port, h_certs());
  return out;
}

/* A proxy whose route "default" goes to `route` (e.g. "api" or "dead, api"). */
void api_proxy_start(h_proxy *px, const char *upstreams, const char *route) {
  char yaml[16384];
  int n = snprintf(yaml, sizeof yaml,
                   "hostname: proxy.test\n"
                   "log: { level: info, format: text }\n"
                   "shutdown_grace: 2s\n"
                   "listeners:\n"
                   "  - name: lan\n"
                   "    listen: \"127.0.0.1:0\"\n"
                   "    max_message_size: 60MiB\n"
                   "upstreams:\n"
                   "%s"
                   "routes:\n"
                   "  - name: default\n"
                   "    upstream: [%s]\n",
                   upstreams, route);
  cr_assert(n > 0 && (size_t)n < sizeof yaml);
  h_proxy_start_yaml(px, yaml);
}

void api_proxy_for(h_proxy *px, const fake *f, const char *extra) {
  char up[4096];
  api_proxy_start(px, api_upstream(f, "api", extra, up, sizeof up), "api");
}

void api_proxy_spooling(h_proxy *px, const fake *f, char *spool, size_t cap) {
  char up[4096], yaml[16384];
  h_path(spool, cap, "spool");
  snprintf(yaml, sizeof yaml,
           "hostname: proxy.test\n"
           "log: { level: info, format: text }\n"
           "shutdown_grace: 2s\n"
           "spool: { dir: %s }\n"
           "listeners:\n"
           "  - name: lan\n"
           "    listen: \"127.0.0.1:0\"\n"
           "    max_message_size: 60MiB\n"
           "upstreams:\n%s"
           "routes:\n"
           "  - name: default\n"
           "    upstream: [api]\n"
           "    on_upstream_failure: spool\n",
           spool, api_upstream(f, "api", NULL, up, sizeof up));
  h_proxy_start_yaml(px, yaml);
}

/* ---- messages as a scanner writes them ------------------------------------------ */

/* About `total` bytes: a text part and a PDF in base64 (76-column lines). */
void api_make_scan(scan *s, size_t total, const char *to, const char *cc) {
  size_t overhead = 900;
  s->pdf_len = total > overhead ? (total - overhead) / 78 * 57 : 100;
  s->pdf = malloc(s->pdf_len);
  memcpy(s->pdf, "%PDF-1.4\n", 9);
  unsigned x = (unsigned)total;
  for (size_t i = 9; i < s->pdf_len; i++) {
    x = x * 1103515245u + 12345u;
    s->pdf[i] = (unsigned char)(x >> 16);
  }
  s->msg = malloc(s->pdf_len / 57 * 78 + 4096);
  size_t o = (size_t)sprintf(s->msg,
                             "From: \"RICOH MP C3004\" <" MAILBOX ">\r\n"
                             "To: %s\r\n"
                             "%s%s%s"
                             "Subject: Scan Data from MP C3004\r\n"
                             "Date: Mon, 30 Nov 2026 10:30:00 +0100\r\n"
                             "Message-ID: <scan.%zu@mpc3004.contoso.example>\r\n"
                             "MIME-Version: 1.0\r\n"
                             "Content-Type: multipart/mixed; boundary=\"=_scan_boundary\"\r\n"
                             "\r\n"
                             "--=_scan_boundary\r\n"
                             "Content-Type: text/plain; charset=us-ascii\r\n"
                             "\r\n" SCAN_TEXT "\r\n"
                             "--=_scan_boundary\r\n"
                             "Content-Type: application/pdf; name=\"scan0001.pdf\"\r\n"
                             "Content-Disposition: attachment; filename=\"scan0001.pdf\"\r\n"
                             "Content-Transfer-Encoding: base64\r\n"
                             "\r\n",
                             to, cc ? "Cc: " : "", cc ? cc : "", cc ? "\r\n" : "", total);
  for (size_t i = 0; i < s->pdf_len; i += 57) {
    size_t n = s->pdf_len - i < 57 ? s->pdf_len - i : 57;
    h_base64(s->pdf + i, n, s->msg + o, 80);
    o += strlen(s->msg + o);
    memcpy(s->msg + o, "\r\n", 2);
    o += 2;
  }
  o += (size_t)sprintf(s->msg + o, "--=_scan_boundary--\r\n");
  s->len = o;
}

void api_make_small(scan *s, const char *to) {
  memset(s, 0, sizeof *s);
  s->msg = malloc(2048);
  int n = sprintf(s->msg,
                  "From: " MAILBOX "\r\nTo: %s\r\nSubject: 1 KiB scan notice\r\n"
                  "Message-ID: <small@mpc3004.contoso.example>\r\n\r\n",
                  to);
  while (n < 1024)
    n += sprintf(s->msg + n, "Line %04d of a small notice from the device.\r\n", n);
  s->len = (size_t)n;
}

void api_scan_free(scan *s) {
  free(s->msg);
  free(s->pdf);
}

/* One message over a fresh session; returns the final code. */
int api_send_msg(const h_proxy *px, const scan *s, const char *const rcpts[], char *text,
                 size_t cap, int64_t *ms) {
  h_smtp c;
  h_smtp_open(&c, px->port, true);
  int64_t t0 = h_now_ms();
  int code = h_smtp_message(&c, MAILBOX, rcpts, s->msg, s->len, text, cap, NULL);
  if (ms)
    *ms = h_now_ms() - t0;
  h_smtp_cmd(&c, "QUIT", NULL, 0);
  h_smtp_close(&c);
  return code;
}

/* The file a record names has exactly these bytes. */
void api_assert_file_is(const char *line, const char *key, const void *want, size_t len) {
  char path[1024];
  cr_assert_eq(h_json_str(line, key, path, sizeof path), 1, "no %s in %s", key, line);
  size_t got_len;
  char *got = h_read_file(path, &got_len);
  cr_assert_not_null(got, "cannot read %s", path);
  cr_assert_eq(got_len, len, "%s: %zu bytes, the device sent %zu", path, got_len, len);
  cr_assert(!memcmp(got, want, len), "%s differs from what the device sent", path);
  free(got);
}

/* How many records of `event` the stand-in wrote. */
size_t api_count_records(const fake *f, const char *event) {
  h_lines l;
  size_t n = h_records(f->record, event, &l);
  h_lines_free(&l);
  return n;
}
