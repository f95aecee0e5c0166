/* test_session.c - the LAN-side state machine, driven byte by byte with a
 * recording fake for its ops (no sockets). Each test checks the exact
 * replies the device gets and the exact calls made towards the upstream. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/session.h"

typedef struct fake {
  char out[65536]; /* what the device received */
  size_t out_len;
  char calls[8192]; /* upstream calls, one per line */
  size_t calls_len;
  char body[65536];
  size_t body_len;
  int closed, paused, starttls;
} fake;

static fake F;
static session S;
static stp_config C;
static stp_listener_cfg L;
static stp_upstream_cfg U;
static stp_route_cfg R[2];
static size_t R0_UP[1] = {0};
static char *R1_RCPT[1] = {"*@other.example"};

static void call(const char *fmt, const char *a) {
  F.calls_len += (size_t)snprintf(F.calls + F.calls_len, sizeof F.calls - F.calls_len, fmt, a);
}

static void f_write(void *c, const char *p, size_t n) {
  (void)c;
  cr_assert_lt(F.out_len + n, sizeof F.out);
  memcpy(F.out + F.out_len, p, n);
  F.out_len += n;
  F.out[F.out_len] = 0;
}
static void f_close(void *c) {
  (void)c, F.closed++;
}
static void f_pause(void *c, bool p) {
  (void)c, F.paused = p;
}
static void f_start_tls(void *c) {
  (void)c, F.starttls++;
}
static void f_open(void *c, size_t route) {
  (void)c;
  char r[8];
  snprintf(r, sizeof r, "%zu", route);
  call("open %s\n", r);
}
static void f_mail(void *c, const char *from, const smtp_mail_args *a) {
  (void)c, (void)a;
  call("mail <%s>\n", from);
}
static void f_rcpt(void *c, const char *to, const smtp_rcpt_dsn *dsn) {
  (void)c;
  call("rcpt <%s>", to);
  char n[64];
  if (dsn->notify)
    call(" NOTIFY=%s", smtp_notify_text(dsn->notify, n, sizeof n));
  if (dsn->orcpt[0])
    call(" ORCPT=%s", dsn->orcpt);
  call("%s\n", "");
}
static void f_data(void *c) {
  (void)c, call("%sdata\n", "");
}
static void f_body(void *c, const char *p, size_t n) {
  (void)c;
  memcpy(F.body + F.body_len, p, n);
  F.body_len += n;
}
static void f_end(void *c) {
  (void)c, call("%send\n", "");
}
static void f_rset(void *c) {
  (void)c, call("%srset\n", "");
}
static void f_close_up(void *c, bool graceful) {
  (void)c;
  call("close %s\n", graceful ? "graceful" : "abort");
}

static const session_ops OPS = {f_write, f_close, f_pause, f_start_tls, f_open,     f_mail, f_rcpt,
                                f_data,  f_body,  f_end,   f_rset,      f_close_up, NULL,   NULL};

static int log_pipe[2] = {-1, -1};

static void setup(void) {
  /* Log lines go to a pipe the tests can read (and not to the terminal). */
  cr_assert_eq(pipe(log_pipe), 0);
  fcntl(log_pipe[0], F_SETFL, O_NONBLOCK);
  fcntl(log_pipe[1], F_SETFL, O_NONBLOCK);
  stp_log_setup(STP_LOG_INFO, 0, log_pipe[1]);
  memset(&F, 0, sizeof F);
  memset(&C, 0, sizeof C);
  memset(&L, 0, sizeof L);
  memset(&U, 0, sizeof U);
  memset(R, 0, sizeof R);
  C.hostname = "relay.test";
  L.name = "lan";
  L.max_message_size = 1000;
  L.bare_lf = STP_BARELF_FIX;
  U.name = "up";
  R[0].name = "other";
  R[0].match_rcpt_to.v = R1_RCPT;
  R[0].match_rcpt_to.n = 1;
  R[0].upstreams = R0_UP;
  R[0].n_upstreams = 1;
  R[1].name = "default";
  R[1].upstreams = R0_UP;
  R[1].n_upstreams = 1;
  C.routes = R;
  C.n_routes = 2;
  C.listeners = &L;
  C.n_listeners = 1;
  C.upstreams = &U;
  C.n_upstreams = 1;
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(1234)};
  inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
  session_init(&S, &C, &L, (struct sockaddr *)&sin, "test", &OPS, NULL);
  session_start(&S);
}

static void teardown(void) {
  session_free(&S);
  close(log_pipe[0]);
  close(log_pipe[1]);
  stp_log_setup(STP_LOG_INFO, 0, 2);
}

static const char *read_log(void) {
  static char buf[16384];
  ssize_t n = read(log_pipe[0], buf, sizeof buf - 1);
  buf[n > 0 ? n : 0] = 0;
  return buf;
}

static void feed(const char *s) {
  session_feed(&S, s, strlen(s));
}

static void clear_out(void) {
  F.out_len = 0;
  F.out[0] = 0;
  F.calls_len = 0;
  F.calls[0] = 0;
}

static smtp_reply mkreply(int code, const char *text) {
  smtp_reply r;
  memset(&r, 0, sizeof r);
  r.code = code;
  snprintf(r.text, sizeof r.text, "%s", text);
  r.text_len = strlen(r.text);
  r.lines = 1;
  return r;
}

static void up_reply(int code, const char *text) {
  smtp_reply r = mkreply(code, text);
  session_up_reply(&S, &r);
}

/* Through MAIL and one accepted RCPT for the default route. */
static void to_rcpt_accepted(void) {
  feed("EHLO dev\r\nMAIL FROM:<scan@dev.lan>\r\nRCPT TO:<a@example.com>\r\n");
  cr_assert_str_eq(F.calls, "open 1\n");
  session_up_ready(&S, "up", "TLSv1.3");
  up_reply(250, "2.1.0 ok");
  up_reply(250, "2.1.5 rcpt ok");
  clear_out();
}

TestSuite(session, .init = setup, .fini = teardown);

Test(session, greeting) {
  cr_assert_str_eq(F.out, "220 relay.test ESMTP smtp-tls-proxy\r\n");
}

Test(session, ehlo_advertises_exactly_the_spec_set) {
  clear_out();
  feed("EHLO printer.lan\r\n");
  cr_assert_str_eq(F.out, "250-relay.test\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
                          "250-DSN\r\n250 ENHANCEDSTATUSCODES\r\n");
  cr_assert_null(strstr(F.out, "PIPELINING"));
  cr_assert_null(strstr(F.out, "AUTH"));
}

Test(session, ehlo_offers_starttls_only_on_starttls_listeners) {
  L.tls = STP_TLS_STARTTLS;
  clear_out();
  feed("EHLO printer.lan\r\n");
  cr_assert_not_null(strstr(F.out, "250-STARTTLS\r\n"));
}

Test(session, helo_only_client_is_served) {
  clear_out();
  feed("HELO old-printer\r\nMAIL FROM:<a@b.lan>\r\n");
  cr_assert_str_eq(F.out, "250 relay.test\r\n250 2.1.0 Ok\r\n");
}

Test(session, mail_before_helo_is_refused) {
  clear_out();
  feed("MAIL FROM:<a@b.lan>\r\n");
  cr_assert_str_eq(F.out, "503 5.5.1 Error: send HELO/EHLO first\r\n");
}

Test(session, rcpt_opens_the_upstream_then_relays_its_reply) {
  feed("EHLO dev\r\nMAIL FROM:<scan@dev.lan>\r\n");
  clear_out();
  feed("RCPT TO:<a@example.com>\r\n");
  cr_assert_str_eq(F.calls, "open 1\n");
  cr_assert_str_eq(F.out, "");
  session_up_ready(&S, "up", "TLSv1.3");
  cr_assert_str_eq(F.calls, "open 1\nmail <scan@dev.lan>\n");
  up_reply(250, "2.1.0 ok");
  cr_assert_str_eq(F.calls, "open 1\nmail <scan@dev.lan>\nrcpt <a@example.com>\n");
  up_reply(250, "2.1.5 upstream says fine");
  cr_assert_str_eq(F.out, "250 2.1.5 upstream says fine\r\n");
}

Test(session, upstream_sender_refusal_answers_the_rcpt) {
  feed("EHLO dev\r\nMAIL FROM:<scan@dev.lan>\r\nRCPT TO:<a@example.com>\r\n");
  session_up_ready(&S, "up", "TLSv1.3");
  clear_out();
  up_reply(553, "5.7.1 sender not owned by user");
  cr_assert_str_eq(F.out, "553 5.7.1 sender not owned by user\r\n");
  cr_assert_str_eq(F.calls, "");
}

Test(session, rewrite_mail_from_goes_upstream) {
  R[1].rewrite_mail_from = "scanner@example.com";
  feed("EHLO dev\r\nMAIL FROM:<scan@dev.lan>\r\nRCPT TO:<a@example.com>\r\n");
  session_up_ready(&S, "up", NULL);
  cr_assert_str_eq(F.calls, "open 1\nmail <scanner@example.com>\n");
}

Test(session, no_route_is_550) {
  R[1].match_rcpt_to = R[0].match_rcpt_to; /* both routes need other.example */
  feed("EHLO dev\r\nMAIL FROM:<scan@dev.lan>\r\n");
  clear_out();
  feed("RCPT TO:<a@example.com>\r\n");
  cr_assert_str_eq(F.out, "550 5.7.1 No route for <a@example.com>\r\n");
  cr_assert_str_eq(F.calls, "");
}

Test(session, second_route_recipient_gets_452) {
  to_rcpt_accepted();
  feed("RCPT TO:<b@other.example>\r\n");
  cr_assert_str_eq(F.out, "452 4.5.3 <b@other.example> takes another route; send it in a new "
                          "transaction\r\n");
  cr_assert_str_eq(F.calls, "");
}

Test(session, same_route_recipient_reuses_the_connection) {
  to_rcpt_accepted();
  feed("RCPT TO:<c@example.com>\r\n");
  cr_assert_str_eq(F.calls, "rcpt <c@example.com>\n");
  up_reply(250, "2.1.5 ok");
  cr_assert_str_eq(F.out, "250 2.1.5 ok\r\n");
}

Test(session, data_without_recipients_is_554) {
  feed("EHLO dev\r\nMAIL FROM:<scan@dev.lan>\r\n");
  clear_out();
  feed("DATA\r\n");
  cr_assert_str_eq(F.out, "554 5.5.1 Error: no valid recipients\r\n");
}

Test(session, full_message_is_relayed_and_250_only_after_upstream) {
  to_rcpt_accepted();
  feed("DATA\r\n");
  cr_assert_str_eq(F.calls, "data\n");
  cr_assert_str_eq(F.out, "");
  up_reply(354, "go ahead");
  cr_assert_str_eq(F.out, "354 End data with <CR><LF>.<CR><LF>\r\n");
  clear_out();
  feed("Subject: hi\r\n\r\n..dot\r\nbody\r\n.\r\n");
  cr_assert_str_eq(F.calls, "end\n");
  cr_assert_eq(F.body_len, strlen("Subject: hi\r\n\r\n..dot\r\nbody\r\n"));
  cr_assert_eq(memcmp(F.body, "Subject: hi\r\n\r\n..dot\r\nbody\r\n", F.body_len), 0);
  cr_assert_str_eq(F.out, "", "no reply before the upstream answered the dot");
  up_reply(250, "2.0.0 queued as X1");
  cr_assert_str_eq(F.out, "250 2.0.0 queued as X1\r\n");
}

Test(session, upstream_5xx_to_dot_is_relayed) {
  to_rcpt_accepted();
  feed("DATA\r\n");
  up_reply(354, "go");
  clear_out();
  feed("x\r\n.\r\n");
  up_reply(550, "5.7.1 spam");
  cr_assert_str_eq(F.out, "550 5.7.1 spam\r\n");
}

Test(session, multiline_upstream_reply_keeps_code_on_each_line) {
  to_rcpt_accepted();
  feed("DATA\r\n");
  up_reply(354, "go");
  feed("x\r\n.\r\n");
  clear_out();
  up_reply(451, "4.3.0 first\nsecond");
  cr_assert_str_eq(F.out, "451-4.3.0 first\r\n451 second\r\n");
}

Test(session, body_pipelined_with_data_is_a_sync_error) {
  to_rcpt_accepted();
  feed("DATA\r\nSubject: smuggled\r\n");
  cr_assert_str_eq(F.out, "554 5.5.0 Error: data sent before the 354 reply (synchronization "
                          "error)\r\n");
  cr_assert_eq(F.closed, 1);
  cr_assert_str_eq(F.calls, "data\nclose abort\n");
}

Test(session, body_sent_later_but_before_354_is_a_sync_error) {
  to_rcpt_accepted();
  feed("DATA\r\n");
  feed("S");
  cr_assert_eq(F.closed, 1);
  cr_assert_not_null(strstr(F.calls, "close abort"));
  cr_assert_null(strstr(F.calls, "end"));
}

Test(session, disconnect_mid_data_never_sends_the_dot) {
  to_rcpt_accepted();
  feed("DATA\r\n");
  up_reply(354, "go");
  feed("partial body\r\n");
  session_on_eof(&S);
  cr_assert_str_eq(F.calls, "data\nclose abort\n");
  cr_assert_eq(F.closed, 1);
}

Test(session, oversized_message_is_552_and_never_terminated_upstream) {
  L.max_message_size = 10;
  to_rcpt_accepted();
  feed("DATA\r\n");
  up_reply(354, "go");
  clear_out();
  feed("0123456789abcdef\r\nmore\r\n.\r\n");
  cr_assert_str_eq(F.out, "552 5.3.4 Message size exceeds fixed limit\r\n");
  cr_assert_str_eq(F.calls, "close abort\n");
  cr_assert_eq(F.closed, 0, "the session goes on");
}

Test(session, mail_size_over_limit_is_refused_at_mail) {
  feed("EHLO dev\r\n");
  clear_out();
  feed("MAIL FROM:<a@b.lan> SIZE=1001\r\n");
  cr_assert_str_eq(F.out, "552 5.3.4 Message size exceeds fixed limit\r\n");
  clear_out();
  feed("MAIL FROM:<a@b.lan> SIZE=1000\r\n");
  cr_assert_str_eq(F.out, "250 2.1.0 Ok\r\n");
}

Test(session, bare_lf_reject_policy) {
  L.bare_lf = STP_BARELF_REJECT;
  to_rcpt_accepted();
  feed("DATA\r\n");
  up_reply(354, "go");
  clear_out();
  feed("line one\nline two\r\n.\r\n");
  cr_assert_str_eq(F.out, "550 5.5.2 Bare LF or CR in message; lines must end in CRLF\r\n");
  cr_assert_str_eq(F.calls, "close abort\n");
}

Test(session, bare_lf_fix_policy_normalises) {
  to_rcpt_accepted();
  feed("DATA\r\n");
  up_reply(354, "go");
  feed("line one\nline two\r\n.\r\n");
  cr_assert_eq(F.body_len, strlen("line one\r\nline two\r\n"));
  cr_assert_eq(memcmp(F.body, "line one\r\nline two\r\n", F.body_len), 0);
  cr_assert_str_eq(F.calls, "data\nend\n");
}

Test(session, lf_dot_lf_does_not_end_the_message) {
  to_rcpt_accepted();
  feed("DATA\r\n");
  up_reply(354, "go");
  feed("a\n.\nMAIL FROM:<evil@x>\r\n");
  cr_assert_str_eq(F.calls, "data\n", "a look-alike must not end the data");
  feed(".\r\n");
  cr_assert_str_eq(F.calls, "data\nend\n");
}

Test(session, upstream_failure_at_connect_is_4xx) {
  feed("EHLO dev\r\nMAIL FROM:<scan@dev.lan>\r\n");
  clear_out();
  feed("RCPT TO:<a@example.com>\r\n");
  session_up_failed(&S, UP_FAIL_CONNECT);
  cr_assert_str_eq(F.out, "451 4.4.1 Upstream not reachable, try again later\r\n");
}

Test(session, upstream_failures_map_to_4xx_never_5xx) {
  for (int w = UP_FAIL_DNS; w <= UP_FAIL_PROTOCOL; w++) {
    const char *r = session_fail_reply((upstream_fail)w);
    cr_assert_eq(r[0], '4', "failure %d gives %s", w, r);
    cr_assert_not_null(strstr(r, "\r\n"));
  }
}

Test(session, upstream_auth_failure_is_454) {
  feed("EHLO dev\r\nMAIL FROM:<scan@dev.lan>\r\nRCPT TO:<a@example.com>\r\n");
  clear_out();
  session_up_failed(&S, UP_FAIL_AUTH);
  cr_assert_str_eq(F.out, "454 4.7.0 Upstream authentication failed, try again later\r\n");
}

Test(session, upstream_lost_during_data_answers_4xx_at_the_end) {
  to_rcpt_accepted();
  feed("DATA\r\n");
  up_reply(354, "go");
  feed("first part\r\n");
  session_up_failed(&S, UP_FAIL_CLOSED);
  clear_out();
  feed("second part\r\n.\r\n");
  cr_assert_str_eq(F.out, "451 4.4.2 Upstream connection lost, try again later\r\n");
  cr_assert_null(strstr(F.calls, "end"));
}

Test(session, upstream_lost_after_dot_is_4xx) {
  to_rcpt_accepted();
  feed("DATA\r\n");
  up_reply(354, "go");
  feed("x\r\n.\r\n");
  clear_out();
  session_up_failed(&S, UP_FAIL_TIMEOUT);
  cr_assert_str_eq(F.out, "451 4.4.2 Upstream timed out, try again later\r\n");
}

Test(session, pipelined_commands_are_answered_in_order) {
  feed("EHLO dev\r\n");
  clear_out();
  feed("MAIL FROM:<a@b.lan>\r\nRCPT TO:<x@example.com>\r\nNOOP\r\n");
  cr_assert_str_eq(F.out, "250 2.1.0 Ok\r\n");
  cr_assert_eq(F.paused, 1, "input held while waiting: reading paused");
  session_up_ready(&S, "up", NULL);
  up_reply(250, "ok");
  up_reply(250, "2.1.5 rcpt");
  cr_assert_str_eq(F.out, "250 2.1.0 Ok\r\n250 2.1.5 rcpt\r\n250 2.0.0 Ok\r\n");
  cr_assert_eq(F.paused, 0, "reading resumed once the held input is done");
}

Test(session, rset_resets_upstream_transaction_first) {
  to_rcpt_accepted();
  feed("RSET\r\n");
  cr_assert_str_eq(F.calls, "rset\n");
  cr_assert_str_eq(F.out, "");
  up_reply(250, "flushed");
  cr_assert_str_eq(F.out, "250 2.0.0 Ok\r\n");
  clear_out();
  feed("RCPT TO:<a@example.com>\r\n");
  cr_assert_str_eq(F.out, "503 5.5.1 Error: need MAIL command\r\n");
}

Test(session, quit_closes_both_sides) {
  to_rcpt_accepted();
  feed("QUIT\r\n");
  cr_assert_str_eq(F.out, "221 2.0.0 Bye\r\n");
  cr_assert_str_eq(F.calls, "close graceful\n");
  cr_assert_eq(F.closed, 1);
}

Test(session, small_commands) {
  feed("EHLO dev\r\n");
  clear_out();
  feed("NOOP\r\nVRFY bob\r\nHELP\r\nEXPN list\r\nBDAT 10\r\nAUTH PLAIN\r\nSTARTTLS\r\nFOO\r\n");
  cr_assert_str_eq(F.out, "250 2.0.0 Ok\r\n"
                          "252 2.5.0 Cannot VRFY user, but will accept message and attempt "
                          "delivery\r\n"
                          "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY "
                          "HELP\r\n"
                          "502 5.5.1 EXPN not available\r\n"
                          "502 5.5.1 BDAT not supported\r\n"
                          "503 5.5.1 Error: authentication not enabled\r\n"
                          "502 5.5.1 STARTTLS not available\r\n"
                          "500 5.5.2 Error: command not recognized\r\n");
}

Test(session, command_of_512_octets_ok_513_refused) {
  char line[600];
  feed("EHLO dev\r\n");
  clear_out();
  /* "NOOP " + padding + CRLF == 512 octets */
  memset(line, 'x', sizeof line);
  memcpy(line, "NOOP ", 5);
  memcpy(line + 510, "\r\n", 3);
  feed(line);
  cr_assert_str_eq(F.out, "250 2.0.0 Ok\r\n");
  clear_out();
  memset(line, 'x', sizeof line);
  memcpy(line, "NOOP ", 5);
  memcpy(line + 511, "\r\n", 3);
  feed(line);
  cr_assert_str_eq(F.out, "500 5.5.2 Error: line too long\r\n");
}

Test(session, endless_line_costs_no_memory_and_is_refused_once) {
  char chunk[4096];
  memset(chunk, 'A', sizeof chunk);
  feed("EHLO dev\r\n");
  clear_out();
  for (int i = 0; i < 1024; i++) /* 4 MiB without a line end */
    session_feed(&S, chunk, sizeof chunk);
  cr_assert_str_eq(F.out, "");
  cr_assert_eq(S.pending.cap, 0, "nothing held");
  feed("\r\nNOOP\r\n");
  cr_assert_str_eq(F.out, "500 5.5.2 Error: line too long\r\n250 2.0.0 Ok\r\n");
}

Test(session, too_many_errors_closes) {
  clear_out();
  for (int i = 0; i < SESSION_MAX_ERRORS; i++)
    feed("BOGUS\r\n");
  cr_assert_not_null(strstr(F.out, "421 4.7.0 Too many errors, closing connection\r\n"));
  cr_assert_eq(F.closed, 1);
}

Test(session, idle_timeout_is_421_but_not_while_upstream_works) {
  feed("EHLO dev\r\nMAIL FROM:<scan@dev.lan>\r\nRCPT TO:<a@example.com>\r\n");
  clear_out();
  session_on_idle_timeout(&S);
  cr_assert_str_eq(F.out, "", "waiting on the upstream is not idleness");
  session_up_failed(&S, UP_FAIL_CONNECT);
  clear_out();
  session_on_idle_timeout(&S);
  cr_assert_str_eq(F.out, "421 4.4.2 Idle timeout, closing connection\r\n");
  cr_assert_eq(F.closed, 1);
}

Test(session, starttls_discards_pipelined_plaintext) {
  L.tls = STP_TLS_STARTTLS;
  feed("EHLO dev\r\n");
  clear_out();
  feed("STARTTLS\r\nRSET\r\nMAIL FROM:<x@y.lan>\r\n");
  cr_assert_str_eq(F.out, "220 2.0.0 Ready to start TLS\r\n", "nothing after STARTTLS answered");
  cr_assert_eq(F.starttls, 1);
  session_tls_ready(&S, "TLSv1.3");
  clear_out();
  feed("MAIL FROM:<x@y.lan>\r\n");
  cr_assert_str_eq(F.out, "503 5.5.1 Error: send HELO/EHLO first\r\n", "EHLO again after TLS");
  clear_out();
  feed("EHLO dev\r\n");
  cr_assert_null(strstr(F.out, "STARTTLS"), "not offered again inside TLS");
}

Test(session, null_sender_is_accepted) {
  feed("EHLO dev\r\n");
  clear_out();
  feed("MAIL FROM:<>\r\nRCPT TO:<a@example.com>\r\n");
  session_up_ready(&S, "up", NULL);
  cr_assert_str_eq(F.calls, "open 1\nmail <>\n");
}

Test(session, shutdown_answers_421) {
  feed("EHLO dev\r\n");
  clear_out();
  session_shutdown(&S, NULL);
  cr_assert_str_eq(F.out, "421 4.3.2 Service shutting down, closing connection\r\n");
  cr_assert_eq(F.closed, 1);
}

Test(session, one_log_line_per_message_with_the_spec_fields) {
  R[1].rewrite_mail_from = "scanner@example.com";
  to_rcpt_accepted();
  read_log();
  feed("DATA\r\n");
  up_reply(354, "go");
  feed("Subject: x\r\n\r\nbody\r\n.\r\n");
  up_reply(250, "2.0.0 queued as Q1");
  const char *log = read_log();
  cr_assert_not_null(strstr(log, " info message sid=test client=127.0.0.1 from=scan@dev.lan "
                                 "from_rewritten=scanner@example.com rcpts=1 route=default "
                                 "upstream=up tls=TLSv1.3 size=20 result=delivered "
                                 "reply=\"250 2.0.0 queued as Q1\" duration_ms="),
                     "log was: %s", log);
  cr_assert_eq(strchr(log, '\n'), log + strlen(log) - 1, "exactly one line");
}

Test(session, hostile_bytes_cannot_forge_log_lines) {
  feed("EHLO dev\r\n");
  read_log();
  feed("MAIL FROM:<a@b.lan>\r\nRCPT TO:<x@example.com>\r\n");
  session_up_ready(&S, "up", NULL);
  up_reply(250, "ok");
  up_reply(250, "ok");
  feed("DATA\r\n");
  up_reply(354, "go");
  feed("x\r\n.\r\n");
  up_reply(250, "2.0.0 ok\ninfo message sid=forged");
  const char *log = read_log();
  cr_assert_eq(strchr(log, '\n'), log + strlen(log) - 1, "one line only: %s", log);
}

/* An upstream that answers at once (a synchronous failure or a local
 * refusal) must find the session already waiting for that answer. */
static void f_open_fails_at_once(void *c, size_t route) {
  (void)c, (void)route;
  session_up_failed(&S, UP_FAIL_DNS);
}

Test(session, synchronous_upstream_failure_is_answered) {
  session_ops ops = OPS;
  ops.up_open = f_open_fails_at_once;
  S.ops = &ops;
  feed("EHLO dev\r\nMAIL FROM:<a@b.lan>\r\n");
  clear_out();
  feed("RCPT TO:<a@example.com>\r\nNOOP\r\n");
  cr_assert_str_eq(F.out, "451 4.4.1 Upstream not reachable, try again later\r\n"
                          "250 2.0.0 Ok\r\n");
  S.ops = &OPS;
}

/* ---- LAN AUTH ---------------------------------------------------------- */
#include <crypt.h>

static stp_user USERS[1];

static void with_users(void) {
  struct crypt_data cd;
  memset(&cd, 0, sizeof cd);
  static char hash[256];
  snprintf(hash, sizeof hash, "%s", crypt_r("scan-pw", "$6$testsalt$", &cd));
  USERS[0].name = "scanner1";
  USERS[0].hash = hash;
  L.auth = STP_LAUTH_USERS;
  L.users = USERS;
  L.n_users = 1;
}

/* base64("\0scanner1\0scan-pw") and ("\0scanner1\0wrong") */
#define PLAIN_OK "AHNjYW5uZXIxAHNjYW4tcHc="
#define PLAIN_BAD "AHNjYW5uZXIxAHdyb25n"

Test(session, auth_none_refuses_auth_and_does_not_advertise_it) {
  feed("EHLO dev\r\n");
  cr_assert_null(strstr(F.out, "AUTH"));
  clear_out();
  feed("AUTH PLAIN " PLAIN_OK "\r\n");
  cr_assert_str_eq(F.out, "503 5.5.1 Error: authentication not enabled\r\n");
}

Test(session, auth_any_accepts_whatever_the_device_sends) {
  L.auth = STP_LAUTH_ANY;
  feed("EHLO dev\r\n");
  cr_assert_not_null(strstr(F.out, "250-AUTH PLAIN LOGIN\r\n"));
  read_log();
  clear_out();
  feed("AUTH PLAIN " PLAIN_BAD "\r\n");
  cr_assert_str_eq(F.out, "235 2.7.0 Authentication successful\r\n");
  const char *log = read_log();
  cr_assert_not_null(strstr(log, "user=scanner1 mode=any result=ok"), "%s", log);
  cr_assert_null(strstr(log, "wrong"), "no password in the log");
  clear_out();
  feed("MAIL FROM:<a@b.lan>\r\n");
  cr_assert_str_eq(F.out, "250 2.1.0 Ok\r\n");
}

Test(session, auth_users_checks_the_hash) {
  with_users();
  feed("EHLO dev\r\n");
  clear_out();
  feed("MAIL FROM:<a@b.lan>\r\n");
  cr_assert_str_eq(F.out, "530 5.7.0 Authentication required\r\n");
  clear_out();
  feed("AUTH PLAIN " PLAIN_BAD "\r\n");
  cr_assert_str_eq(F.out, "535 5.7.8 Authentication credentials invalid\r\n");
  clear_out();
  feed("AUTH PLAIN " PLAIN_OK "\r\n");
  cr_assert_str_eq(F.out, "235 2.7.0 Authentication successful\r\n");
  clear_out();
  feed("AUTH PLAIN " PLAIN_OK "\r\nMAIL FROM:<a@b.lan>\r\n");
  cr_assert_str_eq(F.out, "503 5.5.1 Error: already authenticated\r\n250 2.1.0 Ok\r\n");
}

Test(session, auth_login_dialogue_and_cancel) {
  with_users();
  feed("EHLO dev\r\n");
  clear_out();
  feed("AUTH LOGIN\r\n");
  cr_assert_str_eq(F.out, "334 VXNlcm5hbWU6\r\n");
  feed("c2Nhbm5lcjE=\r\n"); /* scanner1 */
  cr_assert_str_eq(F.out, "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n");
  clear_out();
  feed("*\r\n");
  cr_assert_str_eq(F.out, "501 5.7.0 Authentication cancelled\r\n");
  clear_out();
  feed("AUTH LOGIN c2Nhbm5lcjE=\r\n"); /* user as initial response */
  cr_assert_str_eq(F.out, "334 UGFzc3dvcmQ6\r\n");
  clear_out();
  feed("c2Nhbi1wdw==\r\n"); /* scan-pw */
  cr_assert_str_eq(F.out, "235 2.7.0 Authentication successful\r\n");
}

Test(session, auth_failures_close_the_connection) {
  with_users();
  feed("EHLO dev\r\n");
  clear_out();
  for (int i = 0; i < SESSION_MAX_AUTH_FAILURES; i++)
    feed("AUTH PLAIN " PLAIN_BAD "\r\n");
  cr_assert_not_null(strstr(F.out, "421 4.7.0 Too many authentication failures"));
  cr_assert_eq(F.closed, 1);
}

Test(session, auth_not_inside_a_transaction) {
  L.auth = STP_LAUTH_ANY;
  feed("EHLO dev\r\nMAIL FROM:<a@b.lan>\r\n");
  clear_out();
  feed("AUTH PLAIN " PLAIN_OK "\r\n");
  cr_assert_str_eq(F.out, "503 5.5.1 Error: AUTH not allowed during a mail transaction\r\n");
}

Test(session, auth_user_selects_the_route) {
  static char *who[] = {"scanner1"};
  with_users();
  R[0].match_rcpt_to.n = 0;
  R[0].match_auth_user.v = who;
  R[0].match_auth_user.n = 1;
  feed("EHLO dev\r\nAUTH PLAIN " PLAIN_OK "\r\nMAIL FROM:<a@b.lan>\r\n");
  clear_out();
  feed("RCPT TO:<a@example.com>\r\n");
  cr_assert_str_eq(F.calls, "open 0\n", "route 0 is scanner1's");
}

Test(session, auth_passthrough_is_checked_by_the_upstream) {
  L.auth = STP_LAUTH_PASSTHROUGH;
  feed("EHLO dev\r\n");
  clear_out();
  feed("AUTH PLAIN " PLAIN_OK "\r\n");
  cr_assert_str_eq(F.calls, "open 0\n", "first route without address conditions");
  cr_assert_str_eq(F.out, "", "no answer before the upstream");
  cr_assert_str_eq(S.pt_secret, "scan-pw");
  session_up_ready(&S, "up", "TLSv1.3");
  cr_assert_str_eq(F.out, "235 2.7.0 Authentication successful\r\n");
  clear_out();
  feed("MAIL FROM:<a@b.lan>\r\nRCPT TO:<x@other.example>\r\n");
  cr_assert_str_eq(F.calls, "mail <a@b.lan>\n", "the verified connection is reused");
}

Test(session, auth_passthrough_wrong_password_is_535) {
  L.auth = STP_LAUTH_PASSTHROUGH;
  feed("EHLO dev\r\n");
  clear_out();
  feed("AUTH PLAIN " PLAIN_BAD "\r\n");
  session_up_failed(&S, UP_FAIL_AUTH);
  cr_assert_str_eq(F.out,
                   "535 5.7.8 Authentication credentials invalid (refused by the upstream)\r\n");
  cr_assert_null(S.pt_secret, "the password is forgotten");
  clear_out();
  feed("MAIL FROM:<a@b.lan>\r\n");
  cr_assert_str_eq(F.out, "530 5.7.0 Authentication required\r\n");
}

Test(session, auth_passthrough_upstream_down_is_temporary) {
  L.auth = STP_LAUTH_PASSTHROUGH;
  feed("EHLO dev\r\n");
  clear_out();
  feed("AUTH PLAIN " PLAIN_OK "\r\n");
  session_up_failed(&S, UP_FAIL_CONNECT);
  cr_assert_str_eq(F.out, "451 4.4.1 Upstream not reachable, try again later\r\n");
}

Test(session, starttls_forgets_authentication) {
  L.auth = STP_LAUTH_ANY;
  L.tls = STP_TLS_STARTTLS;
  feed("EHLO dev\r\nAUTH PLAIN " PLAIN_OK "\r\nSTARTTLS\r\n");
  cr_assert(!S.authenticated);
}

Test(session, header_from_rewrite_streams_through_the_session) {
  R[1].rewrite_header_from = "Office Scanner <scanner@example.com>";
  to_rcpt_accepted();
  feed("DATA\r\n");
  up_reply(354, "go");
  /* header block split across reads */
  feed("From: Jane <jane@dev.lan>\r\nSubj");
  feed("ect: scan\r\n\r\nbody\r\n.\r\n");
  const char *want = "From: Office Scanner <scanner@example.com>\r\n"
                     "Reply-To: Jane <jane@dev.lan>\r\n"
                     "Subject: scan\r\n\r\nbody\r\n";
  cr_assert_eq(F.body_len, strlen(want), "got %.*s", (int)F.body_len, F.body);
  cr_assert_eq(memcmp(F.body, want, F.body_len), 0, "got %.*s", (int)F.body_len, F.body);
  cr_assert_str_eq(F.calls, "data\nend\n");
}

Test(session, header_block_over_the_rewrite_bound_is_552) {
  static char big[REWRITE_DEFAULT_MAX + 100];
  R[1].rewrite_header_from = "Scanner <scanner@example.com>";
  L.max_message_size = sizeof big * 2;
  to_rcpt_accepted();
  feed("DATA\r\n");
  up_reply(354, "go");
  clear_out();
  memset(big, 'a', sizeof big - 1);
  memcpy(big, "X-Long: ", 8);
  feed(big);
  feed("\r\n\r\nbody\r\n.\r\n");
  cr_assert_str_eq(F.out, "552 5.3.4 Message header block too large to rewrite\r\n");
  cr_assert_str_eq(F.calls, "close abort\n", "never a final dot");
}

Test(session, auth_initial_response_may_exceed_512_octets) {
  L.auth = STP_LAUTH_ANY;
  feed("EHLO dev\r\n");
  clear_out();
  /* "\0" + 255 x 'u' + "\0" + 255 x 'p' in base64 is 688 characters */
  char raw[512], b64[1024], line[1100];
  size_t n = 0;
  raw[n++] = 0;
  memset(raw + n, 'u', 255), n += 255;
  raw[n++] = 0;
  memset(raw + n, 'p', 255), n += 255;
  static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    unsigned v = (unsigned)(unsigned char)raw[i] << 16;
    if (i + 1 < n)
      v |= (unsigned)(unsigned char)raw[i + 1] << 8;
    if (i + 2 < n)
      v |= (unsigned char)raw[i + 2];
    b64[o++] = tbl[(v >> 18) & 63];
    b64[o++] = tbl[(v >> 12) & 63];
    b64[o++] = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
    b64[o++] = i + 2 < n ? tbl[v & 63] : '=';
  }
  b64[o] = 0;
  snprintf(line, sizeof line, "AUTH PLAIN %s\r\n", b64);
  cr_assert_gt(strlen(line), 512);
  feed(line);
  cr_assert_str_eq(F.out, "235 2.7.0 Authentication successful\r\n");
}

Test(session, listener_rate_limit_per_client_then_recovery) {
  static char rate[] = "2/1m";
  uint64_t now = 1000000;
  stp_set_fake_clock(&now);
  L.rate_limit = rate;
  stp_limits lim;
  limits_init(&lim, &C, now);
  session_set_limits(&S, &lim);
  feed("EHLO dev\r\n");
  clear_out();
  feed("MAIL FROM:<a@b.lan>\r\nRSET\r\nMAIL FROM:<a@b.lan>\r\nRSET\r\nMAIL FROM:<a@b.lan>\r\n");
  cr_assert_str_eq(F.out, "250 2.1.0 Ok\r\n250 2.0.0 Ok\r\n250 2.1.0 Ok\r\n250 2.0.0 Ok\r\n"
                          "451 4.7.0 Rate limit exceeded for 127.0.0.1, try again in 30 s\r\n");
  clear_out();
  now += 30000;
  feed("MAIL FROM:<a@b.lan>\r\n");
  cr_assert_str_eq(F.out, "250 2.1.0 Ok\r\n", "a token is back after period/count");
  limits_free(&lim);
  stp_set_fake_clock(NULL);
}

Test(session, route_rate_limit_per_transaction) {
  static char rate[] = "1/1h";
  uint64_t now = 5000;
  stp_set_fake_clock(&now);
  R[1].rate_limit = rate;
  stp_limits lim;
  limits_init(&lim, &C, now);
  session_set_limits(&S, &lim);
  to_rcpt_accepted();
  feed("RCPT TO:<b@example.com>\r\n");
  cr_assert_str_eq(F.calls, "rcpt <b@example.com>\n", "same transaction: no new token");
  up_reply(250, "ok");
  feed("RSET\r\n");
  up_reply(250, "ok");
  clear_out();
  feed("MAIL FROM:<a@b.lan>\r\nRCPT TO:<a@example.com>\r\n");
  cr_assert_str_eq(F.out,
                   "250 2.1.0 Ok\r\n"
                   "451 4.7.0 Rate limit of route default exceeded, try again in 3600 s\r\n");
  limits_free(&lim);
  stp_set_fake_clock(NULL);
}

Test(session, auth_failures_are_limited_per_client_across_sessions) {
  uint64_t now = 77000;
  stp_set_fake_clock(&now);
  with_users();
  stp_limits lim;
  limits_init(&lim, &C, now);
  session_set_limits(&S, &lim);
  feed("EHLO dev\r\n");
  for (int i = 0; i < SESSION_MAX_AUTH_FAILURES; i++)
    feed("AUTH PLAIN " PLAIN_BAD "\r\n");
  cr_assert_eq(F.closed, 1, "first session closed after its failures");
  /* The same client reconnects. */
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(4321)};
  inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
  session_free(&S);
  session_init(&S, &C, &L, (struct sockaddr *)&sin, "test2", &OPS, NULL);
  session_set_limits(&S, &lim);
  feed("EHLO dev\r\n");
  feed("AUTH PLAIN " PLAIN_BAD "\r\nAUTH PLAIN " PLAIN_BAD "\r\n");
  clear_out();
  feed("AUTH PLAIN " PLAIN_OK "\r\n");
  cr_assert_str_eq(F.out,
                   "454 4.7.0 Too many authentication failures from 127.0.0.1, try again in "
                   "120 s\r\n",
                   "even the right password waits: the allowance of 5 is used up");
  now += 120000;
  clear_out();
  feed("AUTH PLAIN " PLAIN_OK "\r\n");
  cr_assert_str_eq(F.out, "235 2.7.0 Authentication successful\r\n");
  limits_free(&lim);
  stp_set_fake_clock(NULL);
}

/* ops->check_password present: the hash check leaves the session waiting,
 * later commands are held, and the answer resumes it in order. */
static char g_hash_seen[256], g_pass_seen[64];
static void f_check_password(void *c, const char *hash, const char *pass) {
  (void)c;
  snprintf(g_hash_seen, sizeof g_hash_seen, "%s", hash);
  snprintf(g_pass_seen, sizeof g_pass_seen, "%s", pass);
}

Test(session, password_check_off_the_loop) {
  with_users();
  session_ops ops = OPS;
  ops.check_password = f_check_password;
  S.ops = &ops;
  feed("EHLO dev\r\n");
  clear_out();
  feed("AUTH PLAIN " PLAIN_OK "\r\nMAIL FROM:<a@b.lan>\r\n");
  cr_assert_str_eq(F.out, "", "nothing answered while the hash is checked");
  cr_assert_str_eq(g_hash_seen, USERS[0].hash);
  cr_assert_str_eq(g_pass_seen, "scan-pw");
  session_password_checked(&S, true);
  cr_assert_str_eq(F.out, "235 2.7.0 Authentication successful\r\n250 2.1.0 Ok\r\n");
  S.ops = &OPS;
}

Test(session, password_check_for_unknown_user_still_fails_when_the_hash_matches) {
  with_users();
  session_ops ops = OPS;
  ops.check_password = f_check_password;
  S.ops = &ops;
  feed("EHLO dev\r\n");
  clear_out();
  feed("AUTH PLAIN AG5vYm9keQBzY2FuLXB3\r\n"); /* \0nobody\0scan-pw */
  /* no pick from stp_config_load: a configured hash, so the same cost */
  cr_assert_str_eq(g_hash_seen, USERS[0].hash, "an unknown user is hashed all the same");
  session_password_checked(&S, true);
  cr_assert_str_eq(F.out, "535 5.7.8 Authentication credentials invalid\r\n");
  S.ops = &OPS;
}

/* The listener's pick (the costliest configured hash) is what an unknown
 * name is checked against, and a match still fails. */
Test(session, unknown_user_is_checked_against_the_listeners_pick) {
  with_users();
  static char costly[] = "$y$j9T$costliest$configuredhash";
  L.unknown_user_hash = costly;
  session_ops ops = OPS;
  ops.check_password = f_check_password;
  S.ops = &ops;
  feed("EHLO dev\r\n");
  clear_out();
  feed("AUTH PLAIN AG5vYm9keQBzY2FuLXB3\r\n"); /* \0nobody\0scan-pw */
  cr_assert_str_eq(g_hash_seen, costly);
  session_password_checked(&S, true);
  cr_assert_str_eq(F.out, "535 5.7.8 Authentication credentials invalid\r\n");
  clear_out();
  feed("AUTH PLAIN " PLAIN_OK "\r\n");
  cr_assert_str_eq(g_hash_seen, USERS[0].hash, "a known user keeps its own hash");
  L.unknown_user_hash = NULL;
  S.ops = &OPS;
}

/* Found by fuzz_session: EHLO in the middle of a transaction reset ours but
 * left the upstream's open, so the next transaction's RCPT went into the
 * old one (old sender, old recipients). The connection is let go instead
 * (the pool sends RSET before reuse) and the next RCPT opens anew. */
Test(session, ehlo_mid_transaction_lets_the_upstream_transaction_go) {
  to_rcpt_accepted();
  feed("EHLO dev\r\nMAIL FROM:<>\r\nRCPT TO:<b@example.com>\r\n");
  cr_assert_str_eq(F.calls, "close graceful\nopen 1\n", "calls: %s", F.calls);
  session_up_ready(&S, "up", "TLSv1.3");
  cr_assert_not_null(strstr(F.calls, "mail <>\n"), "a new MAIL: %s", F.calls);
}

Test(session, starttls_mid_transaction_lets_the_upstream_transaction_go) {
  L.tls = STP_TLS_STARTTLS;
  to_rcpt_accepted();
  feed("STARTTLS\r\n");
  cr_assert_eq(F.starttls, 1);
  cr_assert_str_eq(F.calls, "close graceful\n", "calls: %s", F.calls);
}

/* Found by fuzz_session: an idle upstream connection that dropped while a
 * device's password was being checked ended the wait for the check, so
 * AUTH never got its answer and every later reply was off by one. */
Test(session, upstream_drop_during_password_check_keeps_the_wait) {
  with_users();
  session_ops ops = OPS;
  ops.check_password = f_check_password;
  S.ops = &ops;
  feed("EHLO dev\r\n");
  clear_out();
  feed("AUTH PLAIN " PLAIN_OK "\r\nNOOP\r\n");
  session_up_failed(&S, UP_FAIL_CLOSED);
  cr_assert_str_eq(F.out, "", "still waiting for the check: %s", F.out);
  session_password_checked(&S, true);
  cr_assert_str_eq(F.out, "235 2.7.0 Authentication successful\r\n250 2.0.0 Ok\r\n");
  S.ops = &OPS;
}

/* ---- provider fidelity ----------------------------------------------------- */

/* A provider's admin-fixable 5xx to the final dot reaches the device as a
 * 4xx in the table's words, with one log line naming reason, the
 * provider's words and the hint; the message is logged deferred. */
Test(session, provider_refusal_at_dot_becomes_4xx_with_hint) {
  to_rcpt_accepted();
  feed("DATA\r\n");
  up_reply(354, "go ahead");
  feed("Subject: x\r\n\r\nhi\r\n.\r\n");
  read_log();
  clear_out();
  up_reply(554, "5.2.252 SendAsDenied; a@x not allowed to send as b@y; STOREDRV.Submission");
  cr_assert_str_eq(F.out, "451 4.7.0 Upstream refused the sender (Microsoft 365: not allowed to "
                          "send as this address), try again later\r\n");
  const char *log = read_log();
  cr_assert_not_null(strstr(log, "upstream-refused sid=test upstream=up client=127.0.0.1 "
                                 "phase=dot reason=send_as_denied provider=\"Microsoft 365\" "
                                 "provider_reply=\"554 5.2.252 SendAsDenied; a@x not allowed to "
                                 "send as b@y; STOREDRV.Submission\" hint=\"set the route's "
                                 "rewrite.mail_from"),
                     "%s", log);
  cr_assert_not_null(strstr(log, "result=deferred reply=\"451 4.7.0 Upstream refused"), "%s", log);
}

Test(session, provider_refusal_at_mail_answers_the_rcpt_with_4xx) {
  feed("EHLO dev\r\nMAIL FROM:<scan@dev.lan>\r\nRCPT TO:<a@example.com>\r\n");
  session_up_ready(&S, "up", "TLSv1.3");
  clear_out();
  up_reply(530, "5.7.57 Client not authenticated to send mail. [X.OUTLOOK.COM]");
  cr_assert_str_eq(F.out, "451 4.7.0 Upstream refused the message: the proxy did not sign in to "
                          "Microsoft 365, try again later\r\n");
  cr_assert_str_eq(F.calls, "", "no RCPT after the refused MAIL");
}

Test(session, unknown_upstream_refusal_is_relayed_unchanged) {
  to_rcpt_accepted();
  read_log();
  feed("RCPT TO:<nobody@example.com>\r\n");
  up_reply(550, "5.1.1 <nobody@example.com>: Recipient address rejected");
  cr_assert_str_eq(F.out, "550 5.1.1 <nobody@example.com>: Recipient address rejected\r\n");
  cr_assert_null(strstr(read_log(), "upstream-refused"));
}

/* A connection that failed before it was ready on a refusal the table
 * knows: the device's 4xx says which, instead of the generic line. */
Test(session, failure_verdict_words_the_device_reply) {
  feed("EHLO dev\r\nMAIL FROM:<scan@dev.lan>\r\nRCPT TO:<a@example.com>\r\n");
  clear_out();
  smtp_reply r = mkreply(534, "5.7.9 Application-specific password required. Learn more");
  provider_verdict v;
  provider_classify(&v, PROV_AUTH, &r);
  cr_assert_not_null(v.rule);
  session_up_failed_verdict(&S, UP_FAIL_AUTH, &v);
  cr_assert_str_eq(F.out, "454 4.7.0 Upstream authentication failed: Gmail wants an app "
                          "password, try again later\r\n");
  clear_out();
  /* Without a row: today's generic reply. */
  feed("RCPT TO:<a@example.com>\r\n");
  provider_verdict none = {0};
  session_up_failed_verdict(&S, UP_FAIL_AUTH, &none);
  cr_assert_str_eq(F.out, "454 4.7.0 Upstream authentication failed, try again later\r\n");
}

/* ---- bare_lf: lenient ---------------------------------------------------------- */

/* A device whose every line ends in LF, DATA and the final "." included. */
Test(session, bare_lf_lenient_takes_lf_dot_lf_as_the_end) {
  L.bare_lf = STP_BARELF_LENIENT;
  feed("EHLO dev\nMAIL FROM:<scan@dev.lan>\nRCPT TO:<a@example.com>\n");
  session_up_ready(&S, "up", "TLSv1.3");
  up_reply(250, "2.1.0 ok");
  up_reply(250, "2.1.5 ok");
  feed("DATA\n");
  up_reply(354, "go");
  clear_out();
  feed("Subject: lf\n\nline\n.\nQUIT\n");
  cr_assert_str_eq(F.calls, "end\n", "the final dot went upstream");
  cr_assert_eq(memcmp(F.body, "Subject: lf\r\n\r\nline\r\n", F.body_len), 0);
  up_reply(250, "2.0.0 queued");
  cr_assert_str_eq(F.out, "250 2.0.0 queued\r\n221 2.0.0 Bye\r\n");
}

/* Under fix the same device waits forever: the log says why, once. */
Test(session, bare_lf_fix_warns_on_lf_dot_lf_naming_lenient) {
  to_rcpt_accepted();
  feed("DATA\r\n");
  up_reply(354, "go");
  read_log();
  clear_out();
  feed("Subject: lf\n\nline\n.\n");
  feed("more\n.\n");
  cr_assert_str_eq(F.calls, "", "no final dot");
  cr_assert_str_eq(F.out, "", "no answer: the device waits");
  const char *log = read_log();
  const char *w = strstr(log, "warn bare-lf-end-ignored sid=test listener=lan client=127.0.0.1 "
                              "bare_lf=fix hint=");
  cr_assert_not_null(w, "%s", log);
  cr_assert_not_null(strstr(w, "set bare_lf: lenient on this listener"), "%s", log);
  cr_assert_null(strstr(w + 10, "bare-lf-end-ignored"), "one warning per message: %s", log);
}

/* ---- DSN ------------------------------------------------------------------------ */

Test(session, dsn_parameters_accepted_and_handed_to_the_upstream) {
  feed("EHLO dev\r\n");
  cr_assert_not_null(strstr(F.out, "250-DSN\r\n"));
  clear_out();
  feed("MAIL FROM:<scan@dev.lan> RET=HDRS ENVID=scan42\r\n");
  cr_assert_str_eq(F.out, "250 2.1.0 Ok\r\n");
  cr_assert_eq(S.mail.ret, SMTP_RET_HDRS);
  cr_assert_str_eq(S.mail.envid, "scan42");
  feed("RCPT TO:<a@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@example.com\r\n");
  session_up_ready(&S, "up", NULL);
  up_reply(250, "2.1.0 ok");
  cr_assert_str_eq(F.calls,
                   "open 1\nmail <scan@dev.lan>\n"
                   "rcpt <a@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@example.com\n");
  up_reply(250, "2.1.5 ok");
  clear_out();
  feed("RCPT TO:<b@example.com> NOTIFY=NEVER,DELAY\r\n");
  cr_assert_str_eq(F.out, "555 5.5.4 Unsupported or malformed RCPT parameter\r\n");
}

/* HELO has no extension list, so AUTH is offered only to EHLO devices. A
 * HELO device that sends AUTH anyway is served; one that waits to be
 * offered AUTH meets 530 at MAIL on a listener that requires it (README:
 * give such devices a listener without AUTH, kept tight with allow). */
Test(session, helo_device_is_not_offered_auth_but_may_use_it) {
  with_users();
  clear_out();
  feed("HELO old-printer\r\n");
  cr_assert_str_eq(F.out, "250 relay.test\r\n");
  clear_out();
  feed("MAIL FROM:<a@b.lan>\r\n");
  cr_assert_str_eq(F.out, "530 5.7.0 Authentication required\r\n");
  clear_out();
  feed("AUTH PLAIN " PLAIN_OK "\r\n");
  cr_assert_str_eq(F.calls, "");
  /* checked inline (no check_password op): the answer is at once */
  cr_assert_str_eq(F.out, "235 2.7.0 Authentication successful\r\n");
}
