/* test_session_spool.c - the LAN session on a route with
 * on_upstream_failure: spool, with a recording fake for its ops. Each
 * decision is checked with an owner that answers later (from its loop) and
 * with one that answers at once, from inside the ops call (the session
 * queues that answer and applies it after the call returned). */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/session.h"

typedef struct fake {
  char out[16384]; /* what the device received */
  size_t out_len;
  char calls[4096]; /* calls to the owner, one per line */
  size_t calls_len;
  char body[8192], copy[8192]; /* bytes upstream, bytes to the copy */
  size_t body_len, copy_len;
  bool room;          /* spool_room() */
  bool at_once;       /* answer commits from inside copy_commit */
  bool commit_ok;     /* the answer to copy_commit */
  bool fail_at_open;  /* up_open fails at once (every upstream backing off) */
  char env_line[512]; /* copy_begin's envelope, flattened */
  char dsn_line[512]; /* and its DSN requests */
  int closed;
} fake;

static fake F;
static session S;
static stp_config C;
static stp_listener_cfg L;
static stp_upstream_cfg U;
static stp_route_cfg R[2];
static size_t R_UP[1] = {0};
static char *R0_RCPT[1] = {"*@nospool.example"};

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
  (void)c, (void)p;
}
static void f_start_tls(void *c) {
  (void)c;
}
static void f_open(void *c, size_t route) {
  (void)c, (void)route;
  call("%sopen\n", "");
  if (F.fail_at_open)
    session_up_failed(&S, UP_FAIL_CONNECT); /* at once: queued by the session */
}
static void f_mail(void *c, const char *from, const smtp_mail_args *a) {
  (void)c, (void)a;
  call("mail <%s>\n", from);
}
static void f_rcpt(void *c, const char *to, const smtp_rcpt_dsn *dsn) {
  (void)dsn;
  (void)c, call("rcpt <%s>\n", to);
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
  (void)c, call("close %s\n", graceful ? "graceful" : "abort");
}
static bool f_room(void *c) {
  (void)c;
  return F.room;
}
static void f_copy_begin(void *c, const spool_env *e) {
  (void)c;
  size_t n =
      (size_t)snprintf(F.env_line, sizeof F.env_line,
                       "route=%s listener=%s client=%s from=<%s> up_from=<%s> rcpts=", e->route,
                       e->listener, e->client, e->from, e->up_from);
  for (size_t i = 0; i < e->n_rcpts; i++)
    n += (size_t)snprintf(F.env_line + n, sizeof F.env_line - n, "%s%s", i ? "," : "", e->rcpts[i]);
  n = (size_t)snprintf(F.dsn_line, sizeof F.dsn_line, "ret=%d envid=%s", (int)e->ret,
                       e->envid ? e->envid : "-");
  for (size_t i = 0; i < e->n_rcpts; i++)
    n += (size_t)snprintf(F.dsn_line + n, sizeof F.dsn_line - n, " [%u %s]",
                          e->notify ? e->notify[i] : 0u,
                          e->orcpt && e->orcpt[i] && *e->orcpt[i] ? e->orcpt[i] : "-");
  call("%scopy_begin\n", "");
}
static void f_copy_body(void *c, const char *p, size_t n) {
  (void)c;
  memcpy(F.copy + F.copy_len, p, n);
  F.copy_len += n;
}
static void f_copy_commit(void *c, const char *reason) {
  (void)c;
  call("copy_commit %s\n", reason);
  if (F.at_once)
    session_spooled(&S, F.commit_ok, F.commit_ok ? "0189c2f3a4b5c6d7" : "spool full (max_size)");
}
static void f_copy_discard(void *c) {
  (void)c, call("%scopy_discard\n", "");
}

static const session_ops OPS = {.write = f_write,
                                .close = f_close,
                                .pause = f_pause,
                                .start_tls = f_start_tls,
                                .up_open = f_open,
                                .up_mail = f_mail,
                                .up_rcpt = f_rcpt,
                                .up_data = f_data,
                                .up_body = f_body,
                                .up_end = f_end,
                                .up_rset = f_rset,
                                .up_close = f_close_up,
                                .spool_room = f_room,
                                .copy_begin = f_copy_begin,
                                .copy_body = f_copy_body,
                                .copy_commit = f_copy_commit,
                                .copy_discard = f_copy_discard};

static int log_pipe[2] = {-1, -1};

static void setup(void) {
  cr_assert_eq(pipe(log_pipe), 0);
  fcntl(log_pipe[0], F_SETFL, O_NONBLOCK);
  fcntl(log_pipe[1], F_SETFL, O_NONBLOCK);
  stp_log_setup(STP_LOG_INFO, 0, log_pipe[1]);
  memset(&F, 0, sizeof F);
  F.room = true;
  F.commit_ok = true;
  memset(&C, 0, sizeof C);
  memset(&L, 0, sizeof L);
  memset(&U, 0, sizeof U);
  memset(R, 0, sizeof R);
  C.hostname = "relay.test";
  L.name = "lan";
  L.max_message_size = 100000;
  L.bare_lf = STP_BARELF_FIX;
  U.name = "up";
  R[0].name = "nospool"; /* on_upstream_failure: defer */
  R[0].match_rcpt_to.v = R0_RCPT;
  R[0].match_rcpt_to.n = 1;
  R[0].upstreams = R_UP;
  R[0].n_upstreams = 1;
  R[1].name = "scanners";
  R[1].upstreams = R_UP;
  R[1].n_upstreams = 1;
  R[1].spool = true;
  C.routes = R;
  C.n_routes = 2;
  C.listeners = &L;
  C.n_listeners = 1;
  C.upstreams = &U;
  C.n_upstreams = 1;
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(1234)};
  inet_pton(AF_INET, "192.168.1.5", &sin.sin_addr);
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

static void clear(void) {
  F.out_len = 0;
  F.out[0] = 0;
  F.calls_len = 0;
  F.calls[0] = 0;
}

static void up_reply(int code, const char *text) {
  smtp_reply r;
  memset(&r, 0, sizeof r);
  r.code = code;
  snprintf(r.text, sizeof r.text, "%s", text);
  r.text_len = strlen(r.text);
  r.lines = 1;
  session_up_reply(&S, &r);
}

/* The owner's answer to copy_commit, later (from its loop). */
static void commit_answer(void) {
  if (!F.at_once)
    session_spooled(&S, F.commit_ok, F.commit_ok ? "0189c2f3a4b5c6d7" : "spool full (max_size)");
}

#define QUEUED "250 2.0.0 Ok: queued locally as 0189c2f3a4b5c6d7 (upstream unavailable)\r\n"
#define MSG "Subject: scan\r\n\r\n..dotted\r\npage 1\r\n"
#define MSG_STORED "Subject: scan\r\n\r\n..dotted\r\npage 1\r\n"

TestSuite(session_spool, .init = setup, .fini = teardown);

/* Every test runs twice: commits answered later and at once. */
static bool modes[] = {false, true};
ParameterizedTestParameters(session_spool, upstream_down_spools_the_whole_transaction) {
  return cr_make_param_array(bool, modes, 2);
}
ParameterizedTest(bool *at_once, session_spool, upstream_down_spools_the_whole_transaction) {
  F.at_once = *at_once;
  feed("EHLO dev\r\nMAIL FROM:<scan@printer.lan>\r\n");
  clear();
  feed("RCPT TO:<a@example.com>\r\n");
  cr_assert_str_eq(F.calls, "open\n");
  session_up_failed(&S, UP_FAIL_CONNECT);
  cr_assert_str_eq(F.out, "250 2.1.5 Ok\r\n", "accepted locally, not the 451");
  clear();
  feed("RCPT TO:<b@example.com>\r\nDATA\r\n");
  cr_assert_str_eq(F.out, "250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n");
  cr_assert_str_eq(F.calls, "copy_begin\n", "no upstream call, the copy begins");
  cr_assert_str_eq(F.env_line, "route=scanners listener=lan client=192.168.1.5 "
                               "from=<scan@printer.lan> up_from=<scan@printer.lan> "
                               "rcpts=a@example.com,b@example.com");
  clear();
  feed(MSG ".\r\n");
  cr_assert_str_eq(F.calls, "copy_commit 451 4.4.1 Upstream not reachable, try again later\n");
  cr_assert_eq(F.body_len, 0, "nothing upstream");
  cr_assert_eq(F.copy_len, strlen(MSG_STORED));
  cr_assert(!memcmp(F.copy, MSG_STORED, F.copy_len), "framed and dot-stuffed as for upstream");
  if (!F.at_once) {
    cr_assert_str_eq(F.out, "", "no 250 before the commit");
    cr_assert(session_waiting(&S));
  }
  commit_answer();
  cr_assert_str_eq(F.out, QUEUED);
  cr_assert(strstr(read_log(), "result=spooled"));
  /* The next transaction tries the upstream first again. */
  clear();
  feed("MAIL FROM:<scan@printer.lan>\r\nRCPT TO:<a@example.com>\r\n");
  cr_assert_str_eq(F.calls, "open\n");
}

Test(session_spool, owner_failing_at_once_in_up_open_spools_too) {
  F.fail_at_open = true;
  feed("EHLO dev\r\nMAIL FROM:<scan@printer.lan>\r\n");
  clear();
  feed("RCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n");
  cr_assert_str_eq(F.calls, "open\n", "the failure was queued, then the second RCPT is local");
  cr_assert_str_eq(F.out, "250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n");
}

Test(session_spool, route_without_spool_keeps_the_4xx) {
  feed("EHLO dev\r\nMAIL FROM:<scan@printer.lan>\r\n");
  clear();
  feed("RCPT TO:<a@nospool.example>\r\n");
  session_up_failed(&S, UP_FAIL_CONNECT);
  cr_assert_str_eq(F.out, "451 4.4.1 Upstream not reachable, try again later\r\n");
}

Test(session_spool, owner_without_spool_ops_keeps_the_4xx) {
  session_ops ops = OPS;
  ops.copy_begin = NULL;
  S.ops = &ops;
  feed("EHLO dev\r\nMAIL FROM:<scan@printer.lan>\r\n");
  clear();
  feed("RCPT TO:<a@example.com>\r\n");
  session_up_failed(&S, UP_FAIL_CONNECT);
  cr_assert_str_eq(F.out, "451 4.4.1 Upstream not reachable, try again later\r\n");
  S.ops = &OPS;
}

Test(session_spool, spool_full_before_data_keeps_the_plain_4xx) {
  F.room = false;
  feed("EHLO dev\r\nMAIL FROM:<scan@printer.lan>\r\n");
  clear();
  feed("RCPT TO:<a@example.com>\r\n");
  session_up_failed(&S, UP_FAIL_CONNECT);
  cr_assert_str_eq(F.out, "451 4.4.1 Upstream not reachable, try again later\r\n");
  cr_assert_null(strstr(F.calls, "copy"));
}

Test(session_spool, spool_filling_up_before_data_gives_the_plain_4xx_at_data) {
  feed("EHLO dev\r\nMAIL FROM:<scan@printer.lan>\r\nRCPT TO:<a@example.com>\r\n");
  session_up_failed(&S, UP_FAIL_TIMEOUT);
  F.room = false;
  clear();
  feed("DATA\r\n");
  cr_assert_str_eq(F.out, "451 4.4.2 Upstream timed out, try again later\r\n");
  cr_assert_str_eq(F.calls, "");
}

Test(session_spool, mail_4xx_switches_to_spool_mode) {
  feed("EHLO dev\r\nMAIL FROM:<scan@printer.lan>\r\nRCPT TO:<a@example.com>\r\n");
  session_up_ready(&S, "up", "TLSv1.3");
  clear();
  up_reply(421, "4.7.0 try later");
  cr_assert_str_eq(F.out, "250 2.1.5 Ok\r\n");
  cr_assert_str_eq(F.calls, "close graceful\n", "the upstream is let go");
  clear();
  feed("DATA\r\n");
  cr_assert_str_eq(F.out, "354 End data with <CR><LF>.<CR><LF>\r\n");
  feed("x\r\n.\r\n");
  cr_assert(strstr(F.calls, "copy_commit 421 4.7.0 try later\n"), "%s", F.calls);
}

Test(session_spool, rcpt_4xx_spools_every_recipient) {
  feed("EHLO dev\r\nMAIL FROM:<scan@printer.lan>\r\nRCPT TO:<a@example.com>\r\n");
  session_up_ready(&S, "up", "TLSv1.3");
  up_reply(250, "2.1.0 ok");
  up_reply(250, "2.1.5 ok");
  clear();
  feed("RCPT TO:<b@example.com>\r\n");
  cr_assert_str_eq(F.calls, "rcpt <b@example.com>\n");
  up_reply(452, "4.5.3 too many recipients this hour");
  cr_assert_str_eq(F.out, "250 2.1.5 Ok\r\n");
  cr_assert_str_eq(F.calls, "rcpt <b@example.com>\nclose graceful\n");
  clear();
  feed("DATA\r\n");
  cr_assert_str_eq(F.calls, "copy_begin\n");
  cr_assert(strstr(F.env_line, "rcpts=a@example.com,b@example.com"), "%s", F.env_line);
}

Test(session_spool, rcpt_5xx_stays_the_devices_answer) {
  feed("EHLO dev\r\nMAIL FROM:<scan@printer.lan>\r\nRCPT TO:<a@example.com>\r\n");
  session_up_ready(&S, "up", "TLSv1.3");
  up_reply(250, "2.1.0 ok");
  clear();
  up_reply(550, "5.1.1 no such user");
  cr_assert_str_eq(F.out, "550 5.1.1 no such user\r\n");
  cr_assert_str_eq(F.calls, "");
}

Test(session_spool, data_4xx_gets_our_own_354) {
  feed("EHLO dev\r\nMAIL FROM:<scan@printer.lan>\r\nRCPT TO:<a@example.com>\r\n");
  session_up_ready(&S, "up", "TLSv1.3");
  up_reply(250, "2.1.0 ok");
  up_reply(250, "2.1.5 ok");
  feed("DATA\r\n");
  clear();
  up_reply(451, "4.3.0 busy");
  cr_assert_str_eq(F.out, "354 End data with <CR><LF>.<CR><LF>\r\n");
  cr_assert_str_eq(F.calls, "close graceful\ncopy_begin\n");
  feed(MSG ".\r\n");
  cr_assert_eq(F.body_len, 0);
  cr_assert(strstr(F.calls, "copy_commit 451 4.3.0 busy\n"));
}

/* The pass-through path of a spool route: the copy is kept while the
 * message streams upstream, and the upstream's answer decides its fate. */
static void streamed_message(void) {
  feed("EHLO dev\r\nMAIL FROM:<scan@printer.lan>\r\nRCPT TO:<a@example.com>\r\n");
  session_up_ready(&S, "up", "TLSv1.3");
  up_reply(250, "2.1.0 ok");
  up_reply(250, "2.1.5 ok");
  feed("DATA\r\n");
  up_reply(354, "go");
  cr_assert(strstr(F.calls, "data\ncopy_begin\n"), "%s", F.calls);
  feed(MSG ".\r\n");
  cr_assert_eq(F.body_len, strlen(MSG_STORED));
  cr_assert_eq(F.copy_len, F.body_len);
  cr_assert(!memcmp(F.copy, F.body, F.body_len), "the copy is what went upstream");
  clear();
}

ParameterizedTestParameters(session_spool, dot_4xx_commits_the_copy) {
  return cr_make_param_array(bool, modes, 2);
}
ParameterizedTest(bool *at_once, session_spool, dot_4xx_commits_the_copy) {
  F.at_once = *at_once;
  streamed_message();
  up_reply(451, "4.7.1 greylisted");
  cr_assert_str_eq(F.calls, "copy_commit 451 4.7.1 greylisted\n");
  commit_answer();
  cr_assert_str_eq(F.out, QUEUED);
}

Test(session_spool, dot_250_discards_the_copy) {
  streamed_message();
  up_reply(250, "2.0.0 queued as X1");
  cr_assert_str_eq(F.out, "250 2.0.0 queued as X1\r\n");
  cr_assert_str_eq(F.calls, "copy_discard\n");
}

Test(session_spool, dot_5xx_is_never_spooled) {
  streamed_message();
  up_reply(554, "5.7.1 policy");
  cr_assert_str_eq(F.out, "554 5.7.1 policy\r\n");
  cr_assert_str_eq(F.calls, "copy_discard\n");
}

ParameterizedTestParameters(session_spool, upstream_lost_after_the_dot_commits) {
  return cr_make_param_array(bool, modes, 2);
}
ParameterizedTest(bool *at_once, session_spool, upstream_lost_after_the_dot_commits) {
  F.at_once = *at_once;
  streamed_message();
  session_up_failed(&S, UP_FAIL_CLOSED);
  cr_assert_str_eq(F.calls, "copy_commit 451 4.4.2 Upstream connection lost, try again later\n");
  commit_answer();
  cr_assert_str_eq(F.out, QUEUED);
}

Test(session_spool, upstream_lost_mid_data_keeps_reading_then_commits) {
  feed("EHLO dev\r\nMAIL FROM:<scan@printer.lan>\r\nRCPT TO:<a@example.com>\r\n");
  session_up_ready(&S, "up", "TLSv1.3");
  up_reply(250, "2.1.0 ok");
  up_reply(250, "2.1.5 ok");
  feed("DATA\r\n");
  up_reply(354, "go");
  feed("Subject: scan\r\n\r\n");
  session_up_failed(&S, UP_FAIL_CLOSED);
  clear();
  feed("page 1\r\npage 2\r\n.\r\n");
  cr_assert_eq(F.body_len, strlen("Subject: scan\r\n\r\n"), "nothing more upstream");
  cr_assert_eq(F.copy_len, strlen("Subject: scan\r\n\r\npage 1\r\npage 2\r\n"));
  cr_assert_str_eq(F.calls, "copy_commit 451 4.4.2 Upstream connection lost, try again later\n");
  session_spooled(&S, true, "0189c2f3a4b5c6d7");
  cr_assert_str_eq(F.out, QUEUED);
}

ParameterizedTestParameters(session_spool, failed_commit_is_452_never_250) {
  return cr_make_param_array(bool, modes, 2);
}
ParameterizedTest(bool *at_once, session_spool, failed_commit_is_452_never_250) {
  F.at_once = *at_once;
  F.commit_ok = false;
  streamed_message();
  up_reply(451, "4.3.0 later");
  commit_answer();
  cr_assert_str_eq(F.out, "452 4.3.1 Insufficient system storage: message not queued (spool "
                          "full (max_size))\r\n");
  cr_assert(strstr(read_log(), "result=deferred"));
}

Test(session_spool, no_room_at_354_means_no_copy_and_the_plain_4xx) {
  F.room = false;
  feed("EHLO dev\r\nMAIL FROM:<scan@printer.lan>\r\nRCPT TO:<a@example.com>\r\n");
  session_up_ready(&S, "up", "TLSv1.3");
  up_reply(250, "2.1.0 ok");
  up_reply(250, "2.1.5 ok");
  feed("DATA\r\n");
  up_reply(354, "go");
  feed("x\r\n.\r\n");
  clear();
  up_reply(451, "4.3.0 later");
  cr_assert_str_eq(F.out, "451 4.3.0 later\r\n");
  cr_assert_str_eq(F.calls, "");
}

Test(session_spool, refused_message_discards_the_copy) {
  L.max_message_size = 10;
  feed("EHLO dev\r\nMAIL FROM:<scan@printer.lan>\r\nRCPT TO:<a@example.com>\r\n");
  session_up_failed(&S, UP_FAIL_CONNECT);
  feed("DATA\r\n");
  clear();
  feed("this line is longer than ten bytes\r\n.\r\n");
  cr_assert_str_eq(F.out, "552 5.3.4 Message size exceeds fixed limit\r\n");
  cr_assert_str_eq(F.calls, "copy_discard\n");
}

Test(session_spool, rewrite_applies_to_the_copy_and_the_envelope) {
  R[1].rewrite_mail_from = "scanner@example.com";
  R[1].rewrite_header_from = "Office Scanner <scanner@example.com>";
  feed("EHLO dev\r\nMAIL FROM:<scan@printer.lan>\r\nRCPT TO:<a@example.com>\r\n");
  session_up_failed(&S, UP_FAIL_DNS);
  feed("DATA\r\nFrom: <scan@printer.lan>\r\nSubject: s\r\n\r\nbody\r\n.\r\n");
  cr_assert(strstr(F.env_line, "from=<scan@printer.lan> up_from=<scanner@example.com>"), "%s",
            F.env_line);
  F.copy[F.copy_len] = 0;
  cr_assert(strstr(F.copy, "From: Office Scanner <scanner@example.com>\r\n"), "%s", F.copy);
  cr_assert(strstr(F.copy, "Reply-To: <scan@printer.lan>\r\n"), "%s", F.copy);
}

Test(session_spool, device_gone_during_the_commit_gets_nothing) {
  streamed_message();
  up_reply(451, "4.3.0 later");
  session_on_eof(&S);
  session_spooled(&S, true, "0189c2f3a4b5c6d7");
  cr_assert_str_eq(F.out, "");
  cr_assert_eq(F.closed, 1);
}

Test(session_spool, rset_in_spool_mode_starts_over) {
  feed("EHLO dev\r\nMAIL FROM:<scan@printer.lan>\r\nRCPT TO:<a@example.com>\r\n");
  session_up_failed(&S, UP_FAIL_CONNECT);
  clear();
  feed("RSET\r\nMAIL FROM:<scan@printer.lan>\r\nRCPT TO:<a@example.com>\r\n");
  cr_assert_str_eq(F.out, "250 2.0.0 Ok\r\n250 2.1.0 Ok\r\n");
  cr_assert_str_eq(F.calls, "open\n", "pass-through first again");
}

Test(session_spool, null_sender_is_kept_as_such) {
  feed("EHLO dev\r\nMAIL FROM:<>\r\nRCPT TO:<a@example.com>\r\n");
  session_up_failed(&S, UP_FAIL_CONNECT);
  feed("DATA\r\n");
  cr_assert(strstr(F.env_line, "from=<> up_from=<>"), "%s", F.env_line);
}

/* The device's DSN requests go to the spool with the message. */
Test(session_spool, dsn_requests_go_with_the_copy) {
  feed("EHLO dev\r\nMAIL FROM:<scan@printer.lan> RET=HDRS ENVID=job+2B1\r\n");
  feed("RCPT TO:<a@example.com> NOTIFY=NEVER ORCPT=rfc822;a@example.com\r\n");
  session_up_failed(&S, UP_FAIL_CONNECT);
  feed("RCPT TO:<b@example.com> NOTIFY=SUCCESS,FAILURE\r\nRCPT TO:<c@example.com>\r\n");
  clear();
  feed("DATA\r\n");
  cr_assert_str_eq(F.calls, "copy_begin\n", "%s", F.out);
  cr_assert_str_eq(F.dsn_line, "ret=2 envid=job+2B1 [1 rfc822;a@example.com] [6 -] [0 -]");
}
