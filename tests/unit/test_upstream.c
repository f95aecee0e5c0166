/* test_upstream.c - the upstream client state machine against scripted
 * server bytes: what it writes, when it asks for TLS, and how it fails.
 * The STARTTLS tests prove that no credential or mail is written unless
 * TLS came up after a clean 220. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/upstream.h"
#include "smtp-tls-proxy/util.h"

typedef struct fake {
  char out[8192];
  size_t out_len;
  int tls_started, ready, failed, replies, defers;
  upstream_fail why;
  char detail[512];
  char reason[64];          /* the provider table's word, "" when none */
  char provider_reply[512]; /* the verdict's one-line provider words */
  int last_code;
  uint64_t timer;
} fake;

static fake F;
static stp_upstream_cfg CFG;

static void f_write(void *c, const char *p, size_t n) {
  (void)c;
  memcpy(F.out + F.out_len, p, n);
  F.out_len += n;
  F.out[F.out_len] = 0;
}
static void f_tls(void *c) {
  (void)c, F.tls_started++;
}
static void f_timer(void *c, uint64_t ms) {
  (void)c, F.timer = ms;
}
static void f_ready(void *c) {
  (void)c, F.ready++;
}
static void f_reply(void *c, const smtp_reply *r) {
  (void)c;
  F.replies++;
  F.last_code = r->code;
}
static upstream UP;

static void f_failed(void *c, upstream_fail why, const char *d) {
  (void)c;
  F.failed++;
  F.why = why;
  snprintf(F.detail, sizeof F.detail, "%s", d);
  const provider_verdict *v = upstream_verdict(&UP);
  snprintf(F.reason, sizeof F.reason, "%s", v->rule ? v->rule->reason : "");
  snprintf(F.provider_reply, sizeof F.provider_reply, "%s", v->reply);
}

/* The transport's side of ops->defer: counted here, and the test calls
 * upstream_run_deferred() as the loop would, after the request returned. */
static void f_defer(void *c) {
  (void)c, F.defers++;
}

static const upstream_ops OPS = {f_write, f_tls, f_timer, f_ready, f_reply, f_failed, f_defer};

static void setup(void) {
  stp_log_setup(STP_LOG_ERROR, 0, 2);
  memset(&F, 0, sizeof F);
  memset(&CFG, 0, sizeof CFG);
  CFG.name = "up";
  CFG.host = "127.0.0.1";
  CFG.tls = STP_TLS_STARTTLS;
  CFG.has_auth = true;
  CFG.mechanism = STP_MECH_AUTO;
  CFG.username = "u";
  CFG.secret = "pw";
  CFG.connect_timeout_ms = 30000;
  CFG.command_timeout_ms = 300000;
  CFG.data_timeout_ms = 600000;
  upstream_init(&UP, &CFG, "relay.test", &OPS, NULL);
}

static void teardown(void) {
  upstream_free(&UP);
}

static void srv(const char *s) {
  upstream_feed(&UP, s, strlen(s));
}
static void clear(void) {
  F.out_len = 0;
  F.out[0] = 0;
}

/* Greeting, EHLO with STARTTLS, 220, TLS up, second EHLO. */
static void to_ehlo2(const char *caps) {
  upstream_on_connected(&UP);
  srv("220 mx.test ESMTP\r\n");
  srv("250-mx.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n");
  srv("220 2.0.0 go ahead\r\n");
  cr_assert_eq(F.tls_started, 1);
  upstream_on_tls_ready(&UP);
  clear();
  srv(caps);
}

TestSuite(upstream, .init = setup, .fini = teardown);

Test(upstream, starttls_dialogue_then_auth_plain) {
  upstream_on_connected(&UP);
  cr_assert_eq(F.timer, 300000, "greeting timeout armed");
  srv("220 mx.test ESMTP\r\n");
  cr_assert_str_eq(F.out, "EHLO relay.test\r\n");
  clear();
  srv("250-mx.test\r\n250-AUTH PLAIN\r\n250 STARTTLS\r\n");
  cr_assert_str_eq(F.out, "STARTTLS\r\n");
  clear();
  srv("220 2.0.0 go ahead\r\n");
  cr_assert_eq(F.tls_started, 1);
  cr_assert_str_eq(F.out, "");
  upstream_on_tls_ready(&UP);
  cr_assert_str_eq(F.out, "EHLO relay.test\r\n", "EHLO again after TLS");
  clear();
  srv("250-mx.test\r\n250 AUTH PLAIN LOGIN\r\n");
  cr_assert_str_eq(F.out, "AUTH PLAIN AHUAcHc=\r\n");
  srv("235 2.7.0 ok\r\n");
  cr_assert_eq(F.ready, 1);
  cr_assert_eq(F.failed, 0);
  cr_assert_eq(F.timer, 0);
}

Test(upstream, missing_starttls_fails_before_any_secret) {
  upstream_on_connected(&UP);
  srv("220 mx.test ESMTP\r\n");
  srv("250-mx.test\r\n250 AUTH PLAIN LOGIN\r\n");
  cr_assert_eq(F.failed, 1);
  cr_assert_eq(F.why, UP_FAIL_STARTTLS);
  cr_assert_str_eq(F.out, "EHLO relay.test\r\n", "nothing but EHLO was written");
}

Test(upstream, starttls_refused_fails) {
  upstream_on_connected(&UP);
  srv("220 mx.test ESMTP\r\n250-mx.test\r\n250 STARTTLS\r\n");
  srv("454 4.7.0 TLS not available\r\n");
  cr_assert_eq(F.failed, 1);
  cr_assert_eq(F.why, UP_FAIL_STARTTLS);
  cr_assert_eq(F.tls_started, 0);
  cr_assert_str_eq(F.detail, "STARTTLS refused: 454 4.7.0 TLS not available");
}

Test(upstream, bytes_after_220_in_same_read_are_injection) {
  upstream_on_connected(&UP);
  srv("220 mx.test ESMTP\r\n250-mx.test\r\n250 STARTTLS\r\n");
  srv("220 go ahead\r\n250 injected\r\n");
  cr_assert_eq(F.failed, 1);
  cr_assert_eq(F.why, UP_FAIL_STARTTLS);
  cr_assert_eq(F.tls_started, 0);
  cr_assert_null(strstr(F.out, "AUTH"));
}

Test(upstream, partial_line_after_220_is_injection) {
  upstream_on_connected(&UP);
  srv("220 mx.test ESMTP\r\n250-mx.test\r\n250 STARTTLS\r\n");
  srv("220 go ahead\r\n2");
  cr_assert_eq(F.failed, 1);
  cr_assert_eq(F.tls_started, 0);
}

Test(upstream, ehlo_knowledge_is_discarded_after_tls) {
  /* Before TLS the server claimed AUTH PLAIN; after TLS it offers only
   * LOGIN: only the second list counts. */
  upstream_on_connected(&UP);
  srv("220 mx.test ESMTP\r\n250-mx.test\r\n250-AUTH PLAIN\r\n250 STARTTLS\r\n");
  srv("220 go\r\n");
  upstream_on_tls_ready(&UP);
  clear();
  srv("250-mx.test\r\n250 AUTH LOGIN\r\n");
  cr_assert_str_eq(F.out, "AUTH LOGIN\r\n");
}

Test(upstream, auth_login_dialogue) {
  CFG.mechanism = STP_MECH_LOGIN;
  to_ehlo2("250-mx.test\r\n250 AUTH LOGIN PLAIN\r\n");
  cr_assert_str_eq(F.out, "AUTH LOGIN\r\n");
  clear();
  srv("334 VXNlcm5hbWU6\r\n");
  cr_assert_str_eq(F.out, "dQ==\r\n");
  clear();
  srv("334 UGFzc3dvcmQ6\r\n");
  cr_assert_str_eq(F.out, "cHc=\r\n");
  srv("235 ok\r\n");
  cr_assert_eq(F.ready, 1);
}

Test(upstream, auth_xoauth2_with_token) {
  CFG.mechanism = STP_MECH_XOAUTH2;
  CFG.secret_is_token = true;
  CFG.secret = "tok";
  to_ehlo2("250-mx.test\r\n250 AUTH XOAUTH2 PLAIN\r\n");
  /* base64("user=u\1auth=Bearer tok\1\1") */
  cr_assert_str_eq(F.out, "AUTH XOAUTH2 dXNlcj11AWF1dGg9QmVhcmVyIHRvawEB\r\n");
  clear();
  srv("334 eyJzdGF0dXMiOiI0MDEifQ==\r\n");
  cr_assert_str_eq(F.out, "\r\n", "empty answer to the JSON error challenge");
  srv("535 5.7.8 bad token\r\n");
  cr_assert_eq(F.failed, 1);
  cr_assert_eq(F.why, UP_FAIL_AUTH);
  /* {"status":"401"}: the challenge, not the final 535, names the cause. */
  cr_assert_str_eq(F.reason, "oauth2_token_invalid");
  cr_assert_str_eq(F.provider_reply, "334 {\"status\":\"401\"}; 535 5.7.8 bad token");
}

/* Provider fidelity: the reply that ends the connection is read through
 * the provider table before the failure is reported, with its phase. */
Test(upstream, auth_refusal_carries_the_provider_verdict) {
  to_ehlo2("250-mx.test\r\n250 AUTH PLAIN\r\n");
  srv("535 5.7.139 Authentication unsuccessful, basic authentication is disabled. [X.OUTLOOK]\r\n");
  cr_assert_eq(F.failed, 1);
  cr_assert_eq(F.why, UP_FAIL_AUTH);
  cr_assert_str_eq(F.reason, "basic_auth_disabled");
  cr_assert_eq(upstream_verdict(&UP)->phase, PROV_AUTH);
  cr_assert_str_eq(F.provider_reply, "535 5.7.139 Authentication unsuccessful, basic "
                                     "authentication is disabled. [X.OUTLOOK]");
}

Test(upstream, unknown_refusal_has_no_verdict_row) {
  to_ehlo2("250-mx.test\r\n250 AUTH PLAIN\r\n");
  srv("535 5.7.3 Authentication unsuccessful\r\n");
  cr_assert_eq(F.failed, 1);
  cr_assert_str_eq(F.reason, "");
}

Test(upstream, greeting_and_ehlo_refusals_are_classified) {
  upstream_on_connected(&UP);
  srv("421 4.7.0 Try again later, closing connection. (EHLO) x - gsmtp\r\n");
  cr_assert_eq(F.why, UP_FAIL_GREETING);
  cr_assert_str_eq(F.reason, "rate_limited");
  cr_assert_eq(upstream_verdict(&UP)->phase, PROV_GREETING);
}

Test(upstream, tls_failure_reason_is_classified) {
  CFG.tls = STP_TLS_IMPLICIT;
  upstream_on_connected(&UP);
  upstream_on_closed(&UP, UP_FAIL_TLS, "TLS handshake: peer sent TLS alert internal_error");
  cr_assert_eq(F.why, UP_FAIL_TLS);
  cr_assert_str_eq(F.reason, "tls_peer_alert");
  cr_assert_eq(upstream_verdict(&UP)->phase, PROV_TLS);
}

Test(upstream, network_failure_after_a_classified_reply_has_no_stale_verdict) {
  upstream_on_connected(&UP);
  upstream_on_closed(&UP, UP_FAIL_CONNECT, "connect: refused");
  cr_assert_eq(F.failed, 1);
  cr_assert_str_eq(F.reason, "");
}

Test(upstream, auth_rejected_is_auth_failure) {
  to_ehlo2("250-mx.test\r\n250 AUTH PLAIN\r\n");
  srv("535 5.7.8 Authentication credentials invalid\r\n");
  cr_assert_eq(F.failed, 1);
  cr_assert_eq(F.why, UP_FAIL_AUTH);
  cr_assert_null(strstr(F.detail, "pw"), "no secret in the detail");
}

Test(upstream, no_usable_mechanism) {
  to_ehlo2("250-mx.test\r\n250 AUTH CRAM-MD5\r\n");
  cr_assert_eq(F.failed, 1);
  cr_assert_eq(F.why, UP_FAIL_AUTH);
  cr_assert_str_eq(F.out, "");
}

Test(upstream, greeting_421_fails) {
  upstream_on_connected(&UP);
  srv("421 4.3.2 too busy\r\n");
  cr_assert_eq(F.failed, 1);
  cr_assert_eq(F.why, UP_FAIL_GREETING);
  cr_assert_str_eq(F.detail, "greeting: 421 4.3.2 too busy");
}

Test(upstream, implicit_tls_starts_before_reading) {
  CFG.tls = STP_TLS_IMPLICIT;
  upstream_on_connected(&UP);
  cr_assert_eq(F.tls_started, 1);
  cr_assert_eq(F.timer, 30000, "connect timeout covers the handshake");
  upstream_on_tls_ready(&UP);
  srv("220 mx.test\r\n");
  cr_assert_str_eq(F.out, "EHLO relay.test\r\n");
  clear();
  srv("250-mx.test\r\n250 AUTH PLAIN\r\n");
  cr_assert_str_eq(F.out, "AUTH PLAIN AHUAcHc=\r\n", "no STARTTLS inside implicit TLS");
}

Test(upstream, plain_upstream_without_auth_falls_back_to_helo) {
  CFG.tls = STP_TLS_NONE;
  CFG.has_auth = false;
  upstream_on_connected(&UP);
  srv("220 old.mx\r\n");
  clear();
  srv("502 5.5.1 what\r\n");
  cr_assert_str_eq(F.out, "HELO relay.test\r\n");
  srv("250 old.mx\r\n");
  cr_assert_eq(F.ready, 1);
}

Test(upstream, timeout_reports_state) {
  upstream_on_connected(&UP);
  upstream_on_timeout(&UP);
  cr_assert_eq(F.failed, 1);
  cr_assert_eq(F.why, UP_FAIL_TIMEOUT);
  cr_assert_str_eq(F.detail, "timeout in state greeting");
}

static void to_ready(void) {
  to_ehlo2("250-mx.test\r\n250-SIZE 1000000\r\n250-8BITMIME\r\n250 AUTH PLAIN\r\n");
  srv("235 ok\r\n");
  cr_assert_eq(F.ready, 1);
  clear();
}

Test(upstream, transaction_and_data_timeouts) {
  to_ready();
  smtp_mail_args a;
  memset(&a, 0, sizeof a);
  a.has_size = true;
  a.size = 1234;
  a.body = SMTP_BODY_8BITMIME;
  cr_assert_eq(upstream_mail(&UP, "a@b", &a), 0);
  cr_assert_str_eq(F.out, "MAIL FROM:<a@b> SIZE=1234 BODY=8BITMIME\r\n");
  srv("250 ok\r\n");
  cr_assert_eq(F.last_code, 250);
  clear();
  cr_assert_eq(upstream_rcpt(&UP, "c@d", NULL), 0);
  cr_assert_str_eq(F.out, "RCPT TO:<c@d>\r\n");
  srv("250 ok\r\n");
  cr_assert_eq(upstream_data(&UP), 0);
  srv("354 go\r\n");
  cr_assert_eq(F.last_code, 354);
  cr_assert_eq(F.timer, 600000);
  clear();
  cr_assert_eq(upstream_body(&UP, "hello\r\n", 7), 0);
  cr_assert_eq(upstream_end(&UP), 0);
  cr_assert_str_eq(F.out, "hello\r\n.\r\n");
  cr_assert_eq(F.timer, 600000, "RFC 5321 10 minutes for the final reply");
  srv("250 2.0.0 queued\r\n");
  cr_assert_eq(F.replies, 4);
  cr_assert_eq(F.timer, 0);
  cr_assert(upstream_idle(&UP));
}

Test(upstream, requests_in_wrong_state_are_refused) {
  upstream_on_connected(&UP);
  cr_assert_eq(upstream_mail(&UP, "a@b", NULL), STP_ESTATE);
  cr_assert_eq(upstream_body(&UP, "x", 1), STP_ESTATE);
  cr_assert_eq(upstream_end(&UP), STP_ESTATE);
}

Test(upstream, unsolicited_421_while_idle_fails) {
  to_ready();
  srv("421 4.4.2 idle too long\r\n");
  cr_assert_eq(F.failed, 1);
  cr_assert_eq(F.why, UP_FAIL_CLOSED);
}

Test(upstream, garbage_reply_is_protocol_failure) {
  upstream_on_connected(&UP);
  srv("HTTP/1.1 400 Bad Request\r\n");
  cr_assert_eq(F.failed, 1);
  cr_assert_eq(F.why, UP_FAIL_PROTOCOL);
}

Test(upstream, connection_lost_reports_closed_once) {
  to_ready();
  upstream_on_closed(&UP, UP_FAIL_CLOSED, "connection reset");
  upstream_on_closed(&UP, UP_FAIL_CLOSED, "again");
  cr_assert_eq(F.failed, 1);
  cr_assert_str_eq(F.detail, "connection reset (in state ready)");
}

Test(upstream, reply_split_at_every_byte) {
  const char *script = "220 mx.test ESMTP\r\n";
  upstream_on_connected(&UP);
  for (const char *p = script; *p; p++)
    upstream_feed(&UP, p, 1);
  cr_assert_str_eq(F.out, "EHLO relay.test\r\n");
  clear();
  const char *caps = "250-mx.test\r\n250-SIZE 10\r\n250 STARTTLS\r\n";
  for (const char *p = caps; *p; p++)
    upstream_feed(&UP, p, 1);
  cr_assert_str_eq(F.out, "STARTTLS\r\n");
}

Test(upstream, smtputf8_needed_but_not_offered_is_refused_before_sending) {
  to_ready();
  smtp_mail_args a;
  memset(&a, 0, sizeof a);
  a.smtputf8 = true;
  cr_assert_eq(upstream_mail(&UP, "a@b", &a), 0);
  cr_assert_str_eq(F.out, "", "nothing sent");
  cr_assert_eq(F.replies, 0, "never answered from inside the request");
  cr_assert_eq(F.defers, 1);
  cr_assert_eq(upstream_mail(&UP, "a@b", &a), STP_ESTATE, "one answer outstanding");
  upstream_run_deferred(&UP);
  cr_assert_eq(F.replies, 1);
  cr_assert_eq(F.last_code, 555);
  cr_assert(upstream_idle(&UP));
}

Test(upstream, size_over_upstream_limit_is_552_before_data) {
  to_ready(); /* SIZE 1000000 */
  smtp_mail_args a;
  memset(&a, 0, sizeof a);
  a.has_size = true;
  a.size = 1000001;
  cr_assert_eq(upstream_mail(&UP, "a@b", &a), 0);
  cr_assert_str_eq(F.out, "");
  cr_assert_eq(F.replies, 0, "never answered from inside the request");
  upstream_run_deferred(&UP);
  cr_assert_eq(F.last_code, 552);
  a.size = 1000000;
  cr_assert_eq(upstream_mail(&UP, "a@b", &a), 0);
  cr_assert_str_eq(F.out, "MAIL FROM:<a@b> SIZE=1000000 BODY=8BITMIME\r\n");
}

Test(upstream, undeclared_body_is_declared_8bitmime_when_offered) {
  to_ready(); /* offers 8BITMIME */
  smtp_mail_args a;
  memset(&a, 0, sizeof a);
  cr_assert_eq(upstream_mail(&UP, "a@b", &a), 0);
  cr_assert_str_eq(F.out, "MAIL FROM:<a@b> BODY=8BITMIME\r\n");
  srv("250 ok\r\n");
  clear();
  a.body = SMTP_BODY_7BIT;
  cr_assert_eq(upstream_mail(&UP, "a@b", &a), 0);
  cr_assert_str_eq(F.out, "MAIL FROM:<a@b>\r\n", "an explicit 7BIT stays 7BIT");
}

Test(upstream, no_body_parameter_when_8bitmime_not_offered) {
  to_ehlo2("250-mx.test\r\n250 AUTH PLAIN\r\n");
  srv("235 ok\r\n");
  clear();
  smtp_mail_args a;
  memset(&a, 0, sizeof a);
  a.body = SMTP_BODY_8BITMIME;
  cr_assert_eq(upstream_mail(&UP, "a@b", &a), 0);
  cr_assert_str_eq(F.out, "MAIL FROM:<a@b>\r\n");
}

Test(upstream, transaction_state_for_reuse) {
  to_ready();
  cr_assert_not(UP.in_txn);
  upstream_mail(&UP, "a@b", NULL);
  srv("250 ok\r\n");
  cr_assert(UP.in_txn, "MAIL accepted: a transaction is open");
  upstream_rcpt(&UP, "c@d", NULL);
  srv("550 no\r\n");
  cr_assert(UP.in_txn, "a refused RCPT does not end it");
  upstream_rset(&UP);
  srv("250 flushed\r\n");
  cr_assert_not(UP.in_txn);
  upstream_mail(&UP, "a@b", NULL);
  srv("452 busy\r\n");
  cr_assert_not(UP.in_txn, "a refused MAIL opens nothing");
}

/* A reply deferred by a request is dropped when the connection died before
 * the loop delivered it: the failure is the answer, reported once. */
Test(upstream, deferred_local_reply_dropped_after_failure) {
  to_ready();
  smtp_mail_args a;
  memset(&a, 0, sizeof a);
  a.smtputf8 = true;
  cr_assert_eq(upstream_mail(&UP, "a@b", &a), 0);
  upstream_on_closed(&UP, UP_FAIL_CLOSED, "gone");
  cr_assert_eq(F.failed, 1);
  upstream_run_deferred(&UP);
  cr_assert_eq(F.replies, 0);
  cr_assert_eq(F.failed, 1);
}

/* DSN (RFC 3461): passed on when the upstream offers DSN ... */
Test(upstream, dsn_parameters_pass_when_offered) {
  to_ehlo2("250-mx.test\r\n250-DSN\r\n250 AUTH PLAIN\r\n");
  srv("235 ok\r\n");
  clear();
  smtp_mail_args a;
  memset(&a, 0, sizeof a);
  a.body = SMTP_BODY_7BIT;
  a.ret = SMTP_RET_HDRS;
  snprintf(a.envid, sizeof a.envid, "Q+2B1");
  cr_assert_eq(upstream_mail(&UP, "a@b", &a), 0);
  cr_assert_str_eq(F.out, "MAIL FROM:<a@b> RET=HDRS ENVID=Q+2B1\r\n");
  srv("250 ok\r\n");
  clear();
  smtp_rcpt_dsn d = {.notify = SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE};
  snprintf(d.orcpt, sizeof d.orcpt, "rfc822;c+2Bx@d");
  cr_assert_eq(upstream_rcpt(&UP, "c@d", &d), 0);
  cr_assert_str_eq(F.out, "RCPT TO:<c@d> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;c+2Bx@d\r\n");
}

/* ... and dropped, with one log line per transaction, when it does not. */
Test(upstream, dsn_parameters_dropped_and_logged_without_dsn) {
  int fds[2];
  cr_assert_eq(pipe(fds), 0);
  stp_log_setup(STP_LOG_INFO, 0, fds[1]);
  upstream_set_log_id(&UP, "sid1");
  to_ready();
  smtp_mail_args a;
  memset(&a, 0, sizeof a);
  a.body = SMTP_BODY_7BIT;
  a.ret = SMTP_RET_FULL;
  snprintf(a.envid, sizeof a.envid, "E1");
  cr_assert_eq(upstream_mail(&UP, "a@b", &a), 0);
  cr_assert_str_eq(F.out, "MAIL FROM:<a@b>\r\n");
  srv("250 ok\r\n");
  clear();
  smtp_rcpt_dsn d = {.notify = SMTP_NOTIFY_NEVER};
  cr_assert_eq(upstream_rcpt(&UP, "c@d", &d), 0);
  cr_assert_str_eq(F.out, "RCPT TO:<c@d>\r\n");
  stp_log_setup(STP_LOG_ERROR, 0, 2);
  close(fds[1]);
  char buf[4096];
  ssize_t n = read(fds[0], buf, sizeof buf - 1);
  close(fds[0]);
  buf[n > 0 ? n : 0] = '\0';
  cr_assert_not_null(strstr(buf, "info dsn-dropped sid=sid1 upstream=up params=RET,ENVID "), "%s",
                     buf);
  cr_assert_null(strstr(strstr(buf, "dsn-dropped") + 5, "dsn-dropped"), "once: %s", buf);
}

/* 501 to the first EHLO is about our name: flagged for the transport's one
 * retry with an address literal; other refusals are not. */
Test(upstream, ehlo_501_flags_the_name_as_refused) {
  upstream_on_connected(&UP);
  srv("220 mx.test ESMTP\r\n");
  srv("501-5.5.4 HELO/EHLO argument \"relay.test\" invalid, closing connection.\r\n"
      "501 5.5.4  https://support.google.com/mail/?p=helo x - gsmtp\r\n");
  cr_assert_eq(F.failed, 1);
  cr_assert(UP.helo_refused);
  cr_assert_str_eq(F.reason, "helo_refused");
}

Test(upstream, ehlo_other_refusal_is_not_about_the_name) {
  upstream_on_connected(&UP);
  srv("220 mx.test ESMTP\r\n");
  srv("554 5.7.1 go away\r\n");
  cr_assert_eq(F.failed, 1);
  cr_assert_not(UP.helo_refused);
}
