/* test_relay.c - pass-through: real clients (swaks, curl, Python smtplib,
 * a raw socket) through the proxy to a real upstream (aiosmtpd, upstream.py)
 * that requires TLS and AUTH; each test asserts what the upstream actually
 * recorded, byte for byte, and what the device was told. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* The single message record of the upstream (asserts there is exactly one). */
static char *only_message(const h_upstream *u) {
  size_t n = h_wait_records(u->record, "message", 1, 5000);
  cr_assert_eq(n, 1, "upstream recorded %zu messages, want 1", n);
  h_lines l;
  h_records(u->record, "message", &l);
  char *line = strdup(l.v[0]);
  h_lines_free(&l);
  return line;
}

static void assert_body(const char *rec, const void *want, size_t want_len) {
  size_t len = 0;
  unsigned char *got = h_json_b64(rec, "data_b64", &len);
  cr_assert_not_null(got, "no data_b64 in %s", rec);
  cr_assert_eq(len, want_len, "body length %zu, want %zu; got:\n%s", len, want_len, (char *)got);
  cr_assert(memcmp(got, want, len) == 0, "body differs; got:\n%s", (char *)got);
  free(got);
}

static void assert_str(const char *rec, const char *key, const char *want) {
  char v[512];
  int r = h_json_str(rec, key, v, sizeof v);
  cr_assert_eq(r, 1, "%s missing or null in %s", key, rec);
  cr_assert_str_eq(v, want, "%s", key);
}

static void assert_tls12plus(const char *rec) {
  char v[64];
  cr_assert_eq(h_json_str(rec, "tls_version", v, sizeof v), 1, "message not received over TLS: %s",
               rec);
  cr_assert(strcmp(v, "TLSv1.2") == 0 || strcmp(v, "TLSv1.3") == 0, "tls_version %s", v);
}

static void assert_rcpts(const char *rec, const char *const want[]) {
  size_t n = 0;
  while (want[n])
    n++;
  cr_assert_eq(h_json_strlist(rec, "rcpt_tos", NULL, NULL), (int)n, "rcpt count in %s", rec);
  for (size_t i = 0; i < n; i++) {
    bool found;
    h_json_strlist(rec, "rcpt_tos", want[i], &found);
    cr_assert(found, "%s not among rcpt_tos of %s", want[i], rec);
  }
}

/* 1, 2: swaks as the device; the upstream requires TLS + AUTH. */
static void swaks_case(const char *up_tls) {
  h_upstream u;
  h_proxy px;
  h_proxy_with_upstream(&px, &u, up_tls);
  /* swaks sends the file as is and adds CRLF "." CRLF after it. */
  static const char msg[] = "From: <scan@printer.test>\r\n"
                            "To: <alice@example.com>\r\n"
                            "Subject: swaks through the proxy\r\n"
                            "\r\n"
                            "line one\r\n"
                            ".leading dot survives\r\n"
                            "last line";
  char path[512], cmd[2048], out[16384];
  h_path(path, sizeof path, "msg.eml");
  h_write_file(path, msg, sizeof msg - 1);
  snprintf(cmd, sizeof cmd,
           "swaks --server 127.0.0.1:%d --helo device.test "
           "--from scan@printer.test --to alice@example.com "
           "--data @%s --timeout 15",
           px.port, path);
  int rc = h_run(cmd, NULL, 30000, out, sizeof out);
  cr_assert_eq(rc, 0, "swaks exit %d:\n%s", rc, out);

  char *rec = only_message(&u);
  assert_str(rec, "mail_from", "scan@printer.test");
  assert_rcpts(rec, (const char *const[]){"alice@example.com", NULL});
  assert_str(rec, "auth_user", H_USER);
  assert_tls12plus(rec);
  assert_str(rec, "helo", "proxy.test");
  char want[sizeof msg + 2];
  snprintf(want, sizeof want, "%s\r\n", msg);
  assert_body(rec, want, strlen(want));
  /* The upstream's own reply text reached the device. */
  char qid[64];
  cr_assert_eq(h_json_str(rec, "queue_id", qid, sizeof qid), 1);
  cr_assert(strstr(out, qid) != NULL, "device did not see the upstream's reply (%s):\n%s", qid,
            out);
  free(rec);
}

ITest(integ, swaks_starttls_auth) {
  swaks_case("starttls");
}

ITest(integ, swaks_implicit_tls_auth) {
  swaks_case("implicit");
}

/* 3: curl as the device, two recipients. */
ITest(integ, curl_device) {
  h_upstream u;
  h_proxy px;
  h_proxy_with_upstream(&px, &u, "starttls");
  static const char msg[] = "From: scan@printer.test\r\n"
                            "Subject: from curl\r\n"
                            "\r\n"
                            "curl body\r\n"
                            "..two dots in the file\r\n";
  char path[512], cmd[2048], out[8192];
  h_path(path, sizeof path, "curl.eml");
  h_write_file(path, msg, sizeof msg - 1);
  snprintf(cmd, sizeof cmd,
           "curl -sS --max-time 20 smtp://127.0.0.1:%d/device.test "
           "--mail-from scan@printer.test --mail-rcpt a@example.com "
           "--mail-rcpt b@example.com --upload-file %s",
           px.port, path);
  int rc = h_run(cmd, NULL, 30000, out, sizeof out);
  cr_assert_eq(rc, 0, "curl exit %d:\n%s", rc, out);
  char *rec = only_message(&u);
  assert_str(rec, "mail_from", "scan@printer.test");
  assert_rcpts(rec, (const char *const[]){"a@example.com", "b@example.com", NULL});
  assert_str(rec, "auth_user", H_USER);
  assert_tls12plus(rec);
  assert_body(rec, msg, sizeof msg - 1);
  free(rec);
}

/* 4: Python smtplib, HELO only (no ESMTP at all). */
ITest(integ, python_smtplib_helo_only) {
  h_upstream u;
  h_proxy px;
  h_proxy_with_upstream(&px, &u, "starttls");
  char cmd[2048], out[8192];
  snprintf(cmd, sizeof cmd,
           H_PYTHON " -c \""
                    "import smtplib\n"
                    "s = smtplib.SMTP('127.0.0.1', %d, timeout=15)\n"
                    "code, _ = s.helo('printer.test')\n"
                    "assert code == 250, code\n"
                    "s.sendmail('scan@printer.test', ['bob@example.com'], "
                    "b'Subject: helo only\\r\\n\\r\\nhello from an old device\\r\\n')\n"
                    "s.quit()\n\"",
           px.port);
  int rc = h_run(cmd, NULL, 30000, out, sizeof out);
  cr_assert_eq(rc, 0, "python exit %d:\n%s", rc, out);
  char *rec = only_message(&u);
  assert_str(rec, "mail_from", "scan@printer.test");
  assert_rcpts(rec, (const char *const[]){"bob@example.com", NULL});
  assert_str(rec, "auth_user", H_USER);
  static const char want[] = "Subject: helo only\r\n\r\nhello from an old device\r\n";
  assert_body(rec, want, sizeof want - 1);
  free(rec);
}

/* 5: the upstream's real DATA reply is relayed, code and text. */
ITest(integ, upstream_data_reply_relayed) {
  h_upstream u;
  h_proxy px;
  h_upstream_start(&u, "starttls",
                   (const char *const[]){"--reply-data", "550 5.7.1 policy says no (test)", NULL});
  h_proxy_opts o = {.up_port = u.port};
  h_proxy_start(&px, &o);
  char text[2048];
  const char *stage;
  static const char body[] = "Subject: rejected\r\n\r\nno\r\n";
  int code = h_send_one(px.port, "a@example.com", body, sizeof body - 1, text, sizeof text, &stage);
  cr_assert_eq(code, 550, "%s: %d %s", stage, code, text);
  cr_assert_str_eq(stage, "DOT");
  cr_assert(strstr(text, "5.7.1") && strstr(text, "policy says no (test)"),
            "reply text not relayed: %s", text);
}

/* 6: the upstream's RCPT rejection reaches the device; the other recipient
 * still gets its message. */
ITest(integ, upstream_rcpt_reject_relayed) {
  h_upstream u;
  h_proxy px;
  h_upstream_start(&u, "starttls", (const char *const[]){"--reject-rcpt", "*@blocked.test", NULL});
  h_proxy_opts o = {.up_port = u.port};
  h_proxy_start(&px, &o);
  h_smtp c;
  h_smtp_open(&c, px.port, true);
  char text[2048];
  int code = h_smtp_cmd(&c, "MAIL FROM:<scan@printer.test>", text, sizeof text);
  cr_assert_eq(code, 250, "MAIL: %d %s", code, text);
  code = h_smtp_cmd(&c, "RCPT TO:<nobody@blocked.test>", text, sizeof text);
  cr_assert_eq(code, 550, "RCPT: %d %s", code, text);
  cr_assert(strstr(text, "5.1.1") != NULL, "upstream text not relayed: %s", text);
  code = h_smtp_cmd(&c, "RCPT TO:<ok@example.com>", text, sizeof text);
  cr_assert_eq(code, 250, "RCPT ok: %d %s", code, text);
  code = h_smtp_cmd(&c, "DATA", text, sizeof text);
  cr_assert_eq(code, 354, "DATA: %d %s", code, text);
  h_smtp_sendstr(&c, "Subject: partly\r\n\r\nbody\r\n.\r\n");
  code = h_smtp_reply(&c, H_REPLY_MS, text, sizeof text);
  cr_assert_eq(code, 250, "dot: %d %s", code, text);
  char *rec = only_message(&u);
  assert_rcpts(rec, (const char *const[]){"ok@example.com", NULL});
  free(rec);
}

/* 19: two messages in one session, both delivered, each with its own
 * envelope and body. */
ITest(integ, two_messages_one_session) {
  h_upstream u;
  h_proxy px;
  h_proxy_with_upstream(&px, &u, "starttls");
  h_smtp c;
  h_smtp_open(&c, px.port, true);
  char text[2048];
  const char *stage;
  static const char b1[] = "Subject: one\r\n\r\nfirst\r\n";
  static const char b2[] = "Subject: two\r\n\r\nsecond\r\n";
  int code = h_smtp_message(&c, "one@printer.test", (const char *const[]){"x@example.com", NULL},
                            b1, sizeof b1 - 1, text, sizeof text, &stage);
  cr_assert_eq(code, 250, "first %s: %d %s", stage, code, text);
  code = h_smtp_message(&c, "two@printer.test", (const char *const[]){"y@example.com", NULL}, b2,
                        sizeof b2 - 1, text, sizeof text, &stage);
  cr_assert_eq(code, 250, "second %s: %d %s", stage, code, text);
  code = h_smtp_cmd(&c, "QUIT", text, sizeof text);
  cr_assert_eq(code, 221, "QUIT: %d %s", code, text);

  cr_assert_eq(h_wait_records(u.record, "message", 2, 5000), 2);
  h_lines l;
  h_records(u.record, "message", &l);
  cr_assert_eq(l.n, 2);
  assert_str(l.v[0], "mail_from", "one@printer.test");
  assert_rcpts(l.v[0], (const char *const[]){"x@example.com", NULL});
  assert_body(l.v[0], b1, sizeof b1 - 1);
  assert_str(l.v[1], "mail_from", "two@printer.test");
  assert_rcpts(l.v[1], (const char *const[]){"y@example.com", NULL});
  assert_body(l.v[1], b2, sizeof b2 - 1);
  h_lines_free(&l);
}

/* 20: a 20 MB message, generated on the fly, arrives byte-exact. */
#define BIG_BYTES (20u * 1000u * 1000u)

/* Deterministic printable lines of 76 characters + CRLF; every 997th line
 * starts with a dot (sent stuffed, expected unstuffed). */
static size_t big_line(unsigned long i, char *line, char *wire, size_t *wire_len) {
  static const char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/ ";
  unsigned long x = i * 2654435761u + 12345u;
  size_t n = 0;
  if (i % 997 == 0)
    line[n++] = '.';
  while (n < 76) {
    x = x * 1103515245u + 12345u;
    line[n++] = alphabet[(x >> 16) % 64];
  }
  line[n++] = '\r';
  line[n++] = '\n';
  size_t w = 0;
  if (line[0] == '.')
    wire[w++] = '.';
  memcpy(wire + w, line, n);
  *wire_len = w + n;
  return n;
}

ITest(integ, big_message_streams_byte_exact, .timeout = 180) {
  h_upstream u;
  h_proxy px;
  h_proxy_with_upstream(&px, &u, "starttls");
  h_smtp c;
  h_smtp_open(&c, px.port, true);
  char text[2048];
  int code = h_smtp_cmd(&c, "MAIL FROM:<big@printer.test>", text, sizeof text);
  cr_assert_eq(code, 250, "MAIL: %d %s", code, text);
  code = h_smtp_cmd(&c, "RCPT TO:<big@example.com>", text, sizeof text);
  cr_assert_eq(code, 250, "RCPT: %d %s", code, text);
  code = h_smtp_cmd(&c, "DATA", text, sizeof text);
  cr_assert_eq(code, 354, "DATA: %d %s", code, text);

  h_sha256 sha;
  h_sha256_init(&sha);
  static char chunk[1 << 16];
  size_t fill = 0, total = 0;
  char line[128], wire[128];
  for (unsigned long i = 0; total < BIG_BYTES; i++) {
    size_t wl;
    size_t ll = big_line(i, line, wire, &wl);
    h_sha256_update(&sha, line, ll);
    total += ll;
    if (fill + wl > sizeof chunk) {
      cr_assert_eq(h_smtp_send(&c, chunk, fill), 0, "send stalled at %zu", total);
      fill = 0;
    }
    memcpy(chunk + fill, wire, wl);
    fill += wl;
  }
  cr_assert_eq(h_smtp_send(&c, chunk, fill), 0);
  cr_assert_eq(h_smtp_sendstr(&c, ".\r\n"), 0);
  code = h_smtp_reply(&c, 120000, text, sizeof text);
  cr_assert_eq(code, 250, "dot: %d %s", code, text);

  char want[65], got[80];
  h_sha256_hex(&sha, want);
  cr_assert_eq(h_wait_records(u.record, "message", 1, 10000), 1);
  h_lines l;
  h_records(u.record, "message", &l);
  cr_assert_eq(h_json_int(l.v[0], "data_len", -1), (long long)total);
  cr_assert_eq(h_json_str(l.v[0], "data_sha256", got, sizeof got), 1);
  cr_assert_str_eq(got, want, "20 MB body differs");
  h_lines_free(&l);
}
