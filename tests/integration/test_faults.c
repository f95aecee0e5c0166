/* test_faults.c - nothing lost, and upstream TLS is never optional.
 *
 * Every failure not caused by the message itself must be a 4xx to the
 * device (never 2xx, never 5xx), and fault_upstream.py's record proves that
 * no AUTH and no MAIL ever went upstream in plaintext (and, for certificate
 * failures, that no AUTH was sent at all). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

typedef struct fault_case {
  const char *mode;
  const char *tls;  /* upstream tls: starttls | implicit */
  const char *cert; /* certificate the fault upstream presents */
  bool no_auth;     /* no AUTH may arrive at all */
  bool no_mail;     /* no MAIL may arrive at all */
} fault_case;

static void run_fault(const fault_case *fc) {
  h_upstream u;
  h_proxy px;
  h_fault_start(&u, fc->mode, fc->tls, fc->cert);
  h_proxy_opts o = {.up_port = u.port,
                    .up_tls = fc->tls,
                    .connect_timeout = "2s",
                    .command_timeout = "2s",
                    .data_timeout = "2s"};
  h_proxy_start(&px, &o);

  h_smtp c;
  h_smtp_open(&c, px.port, true);
  char text[2048];
  const char *stage;
  static const char body[] = "Subject: fault test\r\n\r\nmust not be lost\r\n";
  int64_t t0 = h_now_ms();
  int code = h_smtp_message(&c, "scan@printer.test", (const char *const[]){"a@example.com", NULL},
                            body, sizeof body - 1, text, sizeof text, &stage);
  cr_assert(code >= 400 && code < 500, "mode %s cert %s: device got %d at %s (want 4xx): %s",
            fc->mode, fc->cert, code, stage, text);
  cr_assert(h_now_ms() - t0 < 15000, "4xx took %lld ms", (long long)(h_now_ms() - t0));

  /* Let the proxy finish whatever it still does upstream. */
  h_sleep_ms(300);
  size_t plain_auth = h_fault_commands(&u, "AUTH", 0);
  size_t plain_mail = h_fault_commands(&u, "MAIL", 0);
  size_t plain_rcpt = h_fault_commands(&u, "RCPT", 0);
  char *rec = h_read_file(u.record, NULL);
  cr_assert_eq(plain_auth, 0, "AUTH sent in plaintext (%s):\n%s", fc->mode, rec);
  cr_assert_eq(plain_mail, 0, "MAIL sent in plaintext (%s):\n%s", fc->mode, rec);
  cr_assert_eq(plain_rcpt, 0, "RCPT sent in plaintext (%s):\n%s", fc->mode, rec);
  if (fc->no_auth)
    cr_assert_eq(h_fault_commands(&u, "AUTH", -1), 0, "AUTH sent despite %s/%s:\n%s", fc->mode,
                 fc->cert, rec);
  if (fc->no_mail)
    cr_assert_eq(h_fault_commands(&u, "MAIL", -1), 0, "MAIL sent despite %s/%s:\n%s", fc->mode,
                 fc->cert, rec);
  /* Bytes pipelined in plaintext after STARTTLS would be a proxy bug too. */
  h_lines l;
  cr_assert_eq(h_records(u.record, "plaintext_after_starttls", &l), 0,
               "plaintext pipelined after STARTTLS:\n%s", rec);
  h_lines_free(&l);
  free(rec);
}

ITest(integ, fault_no_starttls) {
  run_fault(&(fault_case){"no-starttls", "starttls", "server", true, true});
}

ITest(integ, fault_starttls_454) {
  run_fault(&(fault_case){"starttls-454", "starttls", "server", true, true});
}

ITest(integ, fault_starttls_extra_bytes) {
  run_fault(&(fault_case){"starttls-extra", "starttls", "server", true, true});
}

ITest(integ, fault_cert_wrong_name) {
  run_fault(&(fault_case){"ok", "starttls", "wrongname", true, true});
}

ITest(integ, fault_cert_expired) {
  run_fault(&(fault_case){"ok", "starttls", "expired", true, true});
}

ITest(integ, fault_cert_self_signed) {
  run_fault(&(fault_case){"ok", "starttls", "selfsigned", true, true});
}

ITest(integ, fault_cert_wrong_name_implicit) {
  run_fault(&(fault_case){"ok", "implicit", "wrongname", true, true});
}

ITest(integ, fault_cert_expired_implicit) {
  run_fault(&(fault_case){"ok", "implicit", "expired", true, true});
}

ITest(integ, fault_no_greeting) {
  run_fault(&(fault_case){"no-greeting", "starttls", "server", true, true});
}

ITest(integ, fault_greeting_421) {
  run_fault(&(fault_case){"greeting-421", "starttls", "server", true, true});
}

/* A greeting trickling at 1 byte/s must hit the command timeout (2 s), not
 * hold the device for the 36 s it would take. */
ITest(integ, fault_tarpit_greeting) {
  run_fault(&(fault_case){"tarpit", "starttls", "server", true, true});
}

ITest(integ, fault_auth_fail) {
  run_fault(&(fault_case){"auth-fail", "starttls", "server", false, true});
}

ITest(integ, fault_no_reply_after_dot) {
  run_fault(&(fault_case){"no-reply-after-dot", "starttls", "server", false, false});
}

ITest(integ, fault_reset_after_354) {
  run_fault(&(fault_case){"reset-after-354", "starttls", "server", false, false});
}

/* Sanity: the same harness path with a well-behaved fault upstream
 * delivers, over TLS, with AUTH inside TLS only. */
ITest(integ, fault_upstream_ok_delivers) {
  h_upstream u;
  h_proxy px;
  h_fault_start(&u, "ok", "starttls", "server");
  h_proxy_opts o = {.up_port = u.port};
  h_proxy_start(&px, &o);
  char text[2048];
  const char *stage;
  static const char body[] = "Subject: ok\r\n\r\nfine\r\n";
  int code = h_send_one(px.port, "a@example.com", body, sizeof body - 1, text, sizeof text, &stage);
  cr_assert_eq(code, 250, "%s: %d %s", stage, code, text);
  cr_assert_eq(h_wait_records(u.record, "message", 1, 5000), 1);
  h_lines l;
  h_records(u.record, "message", &l);
  char v[64];
  cr_assert_eq(h_json_str(l.v[0], "auth_user", v, sizeof v), 1);
  cr_assert_str_eq(v, H_USER);
  cr_assert_eq(h_json_str(l.v[0], "tls_version", v, sizeof v), 1);
  h_lines_free(&l);
  cr_assert_eq(h_fault_commands(&u, "AUTH", 0), 0);
  cr_assert_eq(h_fault_commands(&u, "MAIL", 0), 0);
  /* After STARTTLS the proxy must EHLO again (earlier knowledge discarded). */
  cr_assert_geq(h_fault_commands(&u, "EHLO", 1), 1, "no EHLO after STARTTLS");
}

/* 7: a client that disconnects mid-DATA never causes a final dot upstream. */
static void disconnect_mid_data(const char *tail) {
  h_upstream u;
  h_proxy px;
  h_fault_start(&u, "ok", "starttls", "server");
  h_proxy_opts o = {.up_port = u.port};
  h_proxy_start(&px, &o);
  h_smtp c;
  h_smtp_open(&c, px.port, true);
  char text[2048];
  int code = h_smtp_cmd(&c, "MAIL FROM:<scan@printer.test>", text, sizeof text);
  cr_assert_eq(code, 250, "MAIL: %d %s", code, text);
  code = h_smtp_cmd(&c, "RCPT TO:<a@example.com>", text, sizeof text);
  cr_assert_eq(code, 250, "RCPT: %d %s", code, text);
  code = h_smtp_cmd(&c, "DATA", text, sizeof text);
  cr_assert_eq(code, 354, "DATA: %d %s", code, text);
  h_smtp_sendstr(&c, "Subject: cut short\r\n\r\nline 1\r\nline 2\r\n");
  h_smtp_sendstr(&c, tail);
  h_sleep_ms(200);
  h_smtp_close(&c);

  h_sleep_ms(1500);
  char *rec = h_read_file(u.record, NULL);
  cr_assert_eq(h_wait_records(u.record, "message", 1, 500), 0,
               "a final dot reached the upstream after the client left:\n%s", rec);
  free(rec);
}

ITest(integ, no_loss_disconnect_mid_data) {
  disconnect_mid_data("line 3 is not fini");
}

/* The client leaves right after "\r\n." - half of a terminator. */
ITest(integ, no_loss_disconnect_after_partial_dot) {
  disconnect_mid_data("last\r\n.");
}

ITest(integ, no_loss_disconnect_after_dot_cr) {
  disconnect_mid_data("last\r\n.\r");
}

/* The same against the real server, which records only complete messages. */
ITest(integ, no_loss_disconnect_mid_data_aiosmtpd) {
  h_upstream u;
  h_proxy px;
  h_proxy_with_upstream(&px, &u, "starttls");
  h_smtp c;
  h_smtp_open(&c, px.port, true);
  char text[2048];
  cr_assert_eq(h_smtp_cmd(&c, "MAIL FROM:<scan@printer.test>", text, sizeof text), 250);
  cr_assert_eq(h_smtp_cmd(&c, "RCPT TO:<a@example.com>", text, sizeof text), 250);
  cr_assert_eq(h_smtp_cmd(&c, "DATA", text, sizeof text), 354);
  h_smtp_sendstr(&c, "Subject: cut\r\n\r\npartial body\r\nmore\r\n");
  h_sleep_ms(200);
  h_smtp_close(&c);
  h_sleep_ms(1500);
  cr_assert_eq(h_wait_records(u.record, "message", 1, 500), 0,
               "upstream recorded a message the client never finished");
}

/* Control for the fault harness itself: with `verify: false` (which needs
 * `insecure: true`) the wrong-name certificate is accepted, so AUTH and
 * MAIL do reach the fault upstream inside TLS - proving that the record
 * checks above would catch a proxy that skipped verification. */
ITest(integ, fault_harness_control_insecure_accepts_bad_cert) {
  h_upstream u;
  h_proxy px;
  h_fault_start(&u, "ok", "starttls", "wrongname");
  h_proxy_opts o = {.up_port = u.port, .upstream_extra = "    verify: false\n    insecure: true\n"};
  h_proxy_start(&px, &o);
  char text[2048];
  const char *stage;
  static const char body[] = "Subject: insecure\r\n\r\nstill delivered\r\n";
  int code = h_send_one(px.port, "a@example.com", body, sizeof body - 1, text, sizeof text, &stage);
  cr_assert_eq(code, 250, "%s: %d %s", stage, code, text);
  cr_assert_geq(h_fault_commands(&u, "AUTH", 1), 1);
  cr_assert_geq(h_fault_commands(&u, "MAIL", 1), 1);
  cr_assert_eq(h_fault_commands(&u, "AUTH", 0), 0);
  cr_assert_eq(h_wait_records(u.record, "message", 1, 5000), 1);
}
