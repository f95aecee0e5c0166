/* test_session_sync.c - the session with upstream outcomes delivered AT
 * ONCE, from inside the ops call that asked for them (relay.c does this when
 * every upstream of the route is in back-off, or when it refuses a MAIL
 * locally). A pipelined burst must still get exactly one reply per command,
 * in order, and end with 221, and a message must be relayed as sent: the
 * bursts below are the crash_* seeds of tests/fuzz/fuzz_session.c. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/session.h"

/* What the fake upstream does with a request. */
typedef enum { ANSWER_LATER = 0, ANSWER_FAIL_NOW, ANSWER_552_NOW, ANSWER_354_NOW } answer;

static struct {
  char out[16384];
  size_t out_len;
  char body[1024];
  size_t body_len;
  int closed, opens, mails, ends, depth;
  answer open_answer[4], mail_answer[4], data_answer;
} F;
static session S;
static stp_config C;
static stp_listener_cfg L;
static stp_upstream_cfg U;
static stp_route_cfg R[1];
static size_t R_UP[1] = {0};

/* The session re-entering itself without bound is the bug these tests are
 * about: fail cleanly instead of overflowing the stack. */
#define ENTER() cr_assert_leq(++F.depth, 8, "session entry points nest too deep")
#define LEAVE() (F.depth--)

static smtp_reply mkreply(int code, const char *text) {
  smtp_reply r;
  memset(&r, 0, sizeof r);
  r.code = code;
  r.text_len = (size_t)snprintf(r.text, sizeof r.text, "%s", text);
  r.lines = 1;
  return r;
}
static void up_reply(int code, const char *text) {
  smtp_reply r = mkreply(code, text);
  ENTER();
  session_up_reply(&S, &r);
  LEAVE();
}
static void f_write(void *c, const char *p, size_t n) {
  (void)c;
  cr_assert_eq(F.closed, 0, "a reply after close");
  cr_assert_lt(F.out_len + n, sizeof F.out, "endless replies");
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
  answer a = F.open_answer[F.opens < 4 ? F.opens : 3];
  F.opens++;
  if (a == ANSWER_FAIL_NOW) {
    ENTER();
    session_up_failed(&S, UP_FAIL_CONNECT);
    LEAVE();
  }
}
static void f_mail(void *c, const char *from, const smtp_mail_args *a) {
  (void)c, (void)from, (void)a;
  answer ans = F.mail_answer[F.mails < 4 ? F.mails : 3];
  F.mails++;
  if (ans == ANSWER_552_NOW)
    up_reply(552, "5.3.4 Message too big for upstream");
}
static void f_rcpt(void *c, const char *to, const smtp_rcpt_dsn *dsn) {
  (void)dsn;
  (void)c, (void)to;
}
static void f_data(void *c) {
  (void)c;
  if (F.data_answer == ANSWER_354_NOW)
    up_reply(354, "go ahead");
}
static void f_body(void *c, const char *p, size_t n) {
  (void)c;
  cr_assert_lt(F.body_len + n, sizeof F.body);
  memcpy(F.body + F.body_len, p, n);
  F.body_len += n;
  F.body[F.body_len] = 0;
}
static void f_end(void *c) {
  (void)c, F.ends++;
}
static void f_rset(void *c) {
  (void)c;
}
static void f_up_close(void *c, bool graceful) {
  (void)c, (void)graceful;
}

static const session_ops OPS = {f_write, f_close, f_pause, f_start_tls, f_open,     f_mail, f_rcpt,
                                f_data,  f_body,  f_end,   f_rset,      f_up_close, NULL,   NULL};

static int null_fd = -1;

static void setup(void) {
  null_fd = open("/dev/null", O_WRONLY);
  stp_log_setup(STP_LOG_INFO, 0, null_fd);
  memset(&F, 0, sizeof F);
  memset(&C, 0, sizeof C);
  memset(&L, 0, sizeof L);
  memset(&U, 0, sizeof U);
  memset(R, 0, sizeof R);
  C.hostname = "relay.test";
  L.name = "lan";
  L.max_message_size = 10000;
  U.name = "up";
  R[0].name = "default";
  R[0].upstreams = R_UP;
  R[0].n_upstreams = 1;
  C.routes = R;
  C.n_routes = 1;
  C.listeners = &L;
  C.n_listeners = 1;
  C.upstreams = &U;
  C.n_upstreams = 1;
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(1234)};
  inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
  session_init(&S, &C, &L, (struct sockaddr *)&sin, "sync", &OPS, NULL);
  session_start(&S);
  F.out_len = 0; /* the greeting */
}

static void teardown(void) {
  session_free(&S);
  stp_log_setup(STP_LOG_INFO, 0, 2);
  close(null_fd);
}

TestSuite(session_sync, .init = setup, .fini = teardown);

/* The codes of the final reply lines ("ddd ", 354 being intermediate). */
static size_t final_codes(int *codes, size_t max) {
  size_t n = 0;
  for (const char *l = F.out; *l;) {
    const char *e = strstr(l, "\r\n");
    cr_assert_not_null(e, "unterminated reply line: %s", l);
    if (e - l >= 4 && l[3] == ' ' && atoi(l) != 354 && n < max)
      codes[n++] = atoi(l);
    l = e + 2;
  }
  return n;
}

static void feed(const char *s) {
  ENTER();
  session_feed(&S, s, strlen(s));
  LEAVE();
}

#define BURST_HEAD "EHLO x\r\nMAIL FROM:<a@b.test>"
#define BURST_TAIL "\r\nRCPT TO:<x@example.com>\r\nRCPT TO:<x@example.com>\r\nQUIT\r\n"

/* Route in back-off: the first up_open fails later, the second at once. */
Test(session_sync, second_open_failing_at_once_answers_each_rcpt_once) {
  F.open_answer[0] = ANSWER_LATER;
  F.open_answer[1] = ANSWER_FAIL_NOW;
  F.open_answer[2] = ANSWER_FAIL_NOW;
  F.open_answer[3] = ANSWER_FAIL_NOW;
  feed(BURST_HEAD BURST_TAIL);
  cr_assert_eq(F.opens, 1);
  ENTER();
  session_up_failed(&S, UP_FAIL_CONNECT);
  LEAVE();
  int codes[16];
  size_t n = final_codes(codes, 16);
  cr_assert_eq(n, 5, "one reply per command, got %zu:\n%s", n, F.out);
  cr_assert_eq(codes[0], 250);
  cr_assert_eq(codes[1], 250);
  cr_assert_eq(codes[2], 451);
  cr_assert_eq(codes[3], 451);
  cr_assert_eq(codes[4], 221, "221 last:\n%s", F.out);
  cr_assert_eq(F.opens, 2, "one connection attempt per RCPT");
  cr_assert_eq(F.closed, 1);
}

/* MAIL ... SIZE=5000 above the upstream's SIZE: refused locally, at once. */
Test(session_sync, mail_refused_at_once_answers_each_rcpt_once) {
  F.open_answer[0] = ANSWER_LATER;
  for (int i = 0; i < 4; i++)
    F.mail_answer[i] = ANSWER_552_NOW;
  feed(BURST_HEAD " SIZE=5000" BURST_TAIL);
  cr_assert_eq(F.opens, 1);
  ENTER();
  session_up_ready(&S, "up", "TLSv1.3");
  LEAVE();
  int codes[16];
  size_t n = final_codes(codes, 16);
  cr_assert_eq(n, 5, "one reply per command, got %zu:\n%s", n, F.out);
  cr_assert_eq(codes[0], 250);
  cr_assert_eq(codes[1], 250);
  cr_assert_eq(codes[2], 552);
  cr_assert_eq(codes[3], 552);
  cr_assert_eq(codes[4], 221, "221 last:\n%s", F.out);
  cr_assert_eq(F.mails, 2, "one MAIL upstream per RCPT");
  cr_assert_eq(F.closed, 1);
}

/* DATA held while the RCPT was answered, then 354 at once: the message is
 * what follows DATA, and only that (the re-entrant drain framed the held
 * "DATA" line itself as message text, then read the freed buffer). */
/* The device wrote its message before it could have seen our 354 (the
 * DATA and the body were held behind an unanswered RCPT): whatever the
 * upstream answers, and however fast, that is the synchronisation error
 * (554 5.5.0), never a message. The old code, with 354 answered at once,
 * sent "DATA\r\nhello" upstream as the message and then read freed
 * memory. */
Test(session_sync, data_answered_at_once_is_still_a_sync_error) {
  F.data_answer = ANSWER_354_NOW;
  feed("EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@example.com>\r\n");
  feed("DATA\r\nhello\r\n.\r\nQUIT\r\n"); /* held: the RCPT is not answered yet */
  ENTER();
  session_up_ready(&S, "up", "TLSv1.3");
  LEAVE();
  up_reply(250, "2.1.0 sender ok");
  up_reply(250, "2.1.5 rcpt ok");
  cr_assert_eq(F.body[0], '\0', "nothing relayed upstream as a message: %s", F.body);
  cr_assert_eq(F.ends, 0, "no final dot");
  int codes[16];
  size_t n = final_codes(codes, 16);
  cr_assert_eq(n, 4, "EHLO, MAIL, RCPT, then the sync error, got %zu:\n%s", n, F.out);
  cr_assert_eq(codes[2], 250, "RCPT:\n%s", F.out);
  cr_assert_eq(codes[3], 554, "the sync error:\n%s", F.out);
  cr_assert_not_null(strstr(F.out, "5.5.0"));
  cr_assert_eq(F.closed, 1);
}
