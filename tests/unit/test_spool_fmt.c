/* test_spool_fmt.c - the spool's envelope and state formats, ids, the
 * retry schedule, an attempt's bookkeeping and the list line. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp-tls-proxy/spool.h"
#include "smtp-tls-proxy/util.h"

static const char *const RCPTS[] = {"a@example.com", "b@example.com", "\"x y\"@example.com"};

static spool_env sample(void) {
  spool_env e;
  memset(&e, 0, sizeof e);
  snprintf(e.id, sizeof e.id, "0189c2f3a4b5c6d7");
  e.created_ms = 1764547200123ull;
  e.route = "scanners";
  e.listener = "lan";
  e.client = "192.168.1.5";
  e.from = "scan@printer.lan";
  e.up_from = "scanner@example.com";
  e.body = SMTP_BODY_8BITMIME;
  e.smtputf8 = true;
  e.reason = "451 4.4.1 Upstream not reachable";
  e.rcpts = RCPTS;
  e.n_rcpts = 3;
  return e;
}

static stp_spool_cfg cfg_with(const uint64_t *retry, size_t n) {
  stp_spool_cfg c;
  memset(&c, 0, sizeof c);
  c.retry_ms = (uint64_t *)retry;
  c.n_retry = n;
  c.max_age_ms = 86400000;
  return c;
}

Test(spool_fmt, envelope_round_trip_with_patched_size_and_hash) {
  spool_env e = sample();
  size_t len, hl;
  spool_env_offsets off;
  char *h = spool_env_format(&e, &len, &off);
  cr_assert_not_null(h);
  char want[4096];
  snprintf(want, sizeof want,
           "smtp-tls-proxy-spool 1\n"
           "id: 0189c2f3a4b5c6d7\nkind: message\ncreated: 1764547200123\n"
           "route: scanners\nlistener: lan\nclient: 192.168.1.5\n"
           "from: scan@printer.lan\nupstream-from: scanner@example.com\n"
           "body: 8bitmime\nsmtputf8: 1\nreason: 451 4.4.1 Upstream not reachable"
           "%*s\n"
           "rcpt: a@example.com\nrcpt: b@example.com\nrcpt: \"x y\"@example.com\n"
           "size: 00000000000000000000\n"
           "sha256: 0000000000000000000000000000000000000000000000000000000000000000\n"
           "\n",
           SPOOL_REASON_MAX - 32, "");
  cr_assert_str_eq(h, want);
  /* What the spool does once the body is complete. */
  uint8_t hash[32];
  for (int i = 0; i < 32; i++)
    hash[i] = (uint8_t)(i * 7);
  spool_env_size_text(123456, h + off.size);
  spool_env_hash_text(hash, h + off.hash);
  spool_env_reason_text("452 4.2.2 mailbox full\r\nsecond line", h + off.reason);
  char file[4096];
  memcpy(file, h, len);
  memcpy(file + len, "Subject: x\r\n\r\nbody\r\n", 20);
  spool_env p;
  cr_assert_eq(spool_env_parse(file, len + 20, &p, &hl), STP_OK);
  cr_assert_eq(hl, len);
  cr_assert_str_eq(p.id, e.id);
  cr_assert_eq(p.kind, SPOOL_KIND_MESSAGE);
  cr_assert_eq(p.created_ms, e.created_ms);
  cr_assert_str_eq(p.route, "scanners");
  cr_assert_str_eq(p.listener, "lan");
  cr_assert_str_eq(p.client, "192.168.1.5");
  cr_assert_str_eq(p.from, "scan@printer.lan");
  cr_assert_str_eq(p.up_from, "scanner@example.com");
  cr_assert_eq(p.body, SMTP_BODY_8BITMIME);
  cr_assert(p.smtputf8);
  cr_assert_str_eq(p.reason, "452 4.2.2 mailbox full  second line", "patched, flat");
  cr_assert_eq(p.n_rcpts, 3);
  cr_assert_str_eq(p.rcpts[2], "\"x y\"@example.com");
  cr_assert_eq(p.size, 123456);
  cr_assert_arr_eq(p.sha256, hash, 32);
  spool_env_free(&p);
  free(h);
}

Test(spool_fmt, null_sender_and_notice_kind) {
  spool_env e = sample();
  e.from = "";
  e.up_from = "";
  e.kind = SPOOL_KIND_NOTICE;
  e.body = SMTP_BODY_NONE;
  e.reason = NULL;
  size_t len, hl;
  spool_env_offsets off;
  char *h = spool_env_format(&e, &len, &off);
  cr_assert_not_null(h);
  spool_env p;
  cr_assert_eq(spool_env_parse(h, len, &p, &hl), STP_OK);
  cr_assert_str_eq(p.from, "");
  cr_assert_str_eq(p.up_from, "");
  cr_assert_eq(p.kind, SPOOL_KIND_NOTICE);
  cr_assert_eq(p.body, SMTP_BODY_NONE);
  cr_assert_str_eq(p.reason, "");
  spool_env_free(&p);
  free(h);
}

Test(spool_fmt, formatter_refuses_what_would_break_a_line) {
  size_t len;
  spool_env_offsets off;
  spool_env e = sample();
  e.route = "a\nrcpt: evil@x";
  cr_assert_null(spool_env_format(&e, &len, &off));
  e = sample();
  const char *bad[] = {"ok@x", "b\r@x"};
  e.rcpts = bad;
  e.n_rcpts = 2;
  cr_assert_null(spool_env_format(&e, &len, &off));
  e = sample();
  e.n_rcpts = 0;
  cr_assert_null(spool_env_format(&e, &len, &off), "no recipients, no message");
  e = sample();
  snprintf(e.id, sizeof e.id, "../../etc/passw");
  cr_assert_null(spool_env_format(&e, &len, &off));
  /* Free text is flattened instead. */
  e = sample();
  e.reason = "451-first\r\n451 second";
  char *h = spool_env_format(&e, &len, &off);
  cr_assert_not_null(h);
  cr_assert(strstr(h, "reason: 451-first  451 second   "));
  free(h);
}

Test(spool_fmt, parser_refuses_torn_and_foreign_files) {
  spool_env e = sample();
  size_t len, hl;
  spool_env_offsets off;
  char *h = spool_env_format(&e, &len, &off);
  spool_env p;
  /* Every prefix of the header is incomplete, never half-read. */
  for (size_t n = 0; n < len - 1; n++) {
    int rc = spool_env_parse(h, n, &p, &hl);
    cr_assert(rc == STP_EAGAIN || rc == STP_ESYNTAX, "prefix %zu parsed", n);
  }
  /* A field missing or out of order, a wrong version, a short size. */
  const char *breaks[][2] = {
      {"smtp-tls-proxy-spool 1", "smtp-tls-proxy-spool 2"},
      {"listener: lan\n", ""},
      {"route: scanners\nlistener: lan\n", "listener: lan\nroute: scanners\n"},
      {"size: 00000000000000000000", "size: 0000000000000000000"},
      {"sha256: 00000000", "sha256: 0000000g"},
      {"created: 1764547200123", "created: -1764547200123"},
      {"kind: message", "kind: bounce"},
      {"body: 8bitmime", "body: binarymime"},
      {"rcpt: a@example.com\nrcpt: b@example.com\nrcpt: \"x y\"@example.com\n", ""},
  };
  for (size_t i = 0; i < sizeof breaks / sizeof *breaks; i++) {
    char buf[4096];
    const char *at = strstr(h, breaks[i][0]);
    cr_assert_not_null(at, "%s", breaks[i][0]);
    size_t pre = (size_t)(at - h), cut = strlen(breaks[i][0]);
    int n = snprintf(buf, sizeof buf, "%.*s%s%s", (int)pre, h, breaks[i][1], at + cut);
    cr_assert_eq(spool_env_parse(buf, (size_t)n, &p, &hl), STP_ESYNTAX, "case %zu", i);
  }
  cr_assert_eq(spool_env_parse("hello\n\nworld", 12, &p, &hl), STP_ESYNTAX);
  free(h);
}

Test(spool_fmt, state_round_trip) {
  stp_spool_cfg c = cfg_with((const uint64_t[]){1000, 5000}, 2);
  spool_state st;
  spool_state_init(&st, 3, &c, 100000, "451 4.4.1 down\r\n");
  cr_assert_eq(st.next_ms, 101000, "the first retry after retry[0]");
  cr_assert_eq(st.attempts, 0);
  cr_assert_str_eq(st.last, "451 4.4.1 down");
  st.done[2] = true;
  st.held = SPOOL_HELD_ROUTE;
  size_t len;
  char *t = spool_state_format(&st, &len);
  cr_assert_str_eq(t, "smtp-tls-proxy-state 1\nattempts: 0\nnext: 101000\nheld: route\n"
                      "last: 451 4.4.1 down\ndone: 2\n");
  spool_state p;
  cr_assert_eq(spool_state_parse(t, len, 3, &p), STP_OK);
  cr_assert_eq(p.next_ms, 101000);
  cr_assert_eq(p.held, SPOOL_HELD_ROUTE);
  cr_assert(!p.done[0] && !p.done[1] && p.done[2]);
  cr_assert_eq(spool_state_pending(&p), 2);
  /* A done index past the message's recipients, or a torn file: refused. */
  cr_assert_eq(spool_state_parse(t, len, 2, &p), STP_ESYNTAX);
  cr_assert_eq(spool_state_parse(t, len - 1, 3, &p), STP_ESYNTAX);
  cr_assert_eq(spool_state_parse(t, 20, 3, &p), STP_ESYNTAX);
  /* A CR in a value (found by fuzz_spool): refused, not carried along. */
  static const char cr[] = "smtp-tls-proxy-state 1\nattempts: 0\nnext: 1\nheld: no\n"
                           "last: 451\r x\ndone:\n";
  cr_assert_eq(spool_state_parse(cr, sizeof cr - 1, 3, &p), STP_ESYNTAX);
  spool_state_free(&st);
  free(t);
}

Test(spool_fmt, retry_schedule_repeats_the_last_interval) {
  stp_spool_cfg c = cfg_with((const uint64_t[]){60000, 300000, 900000, 3600000}, 4);
  uint64_t want[] = {60000, 300000, 900000, 3600000, 3600000, 3600000};
  for (unsigned i = 0; i < 6; i++)
    cr_assert_eq(spool_retry_delay(&c, i), want[i], "attempts %u", i);
  cr_assert_not(spool_expired(&c, 1000, 1000 + 86399999));
  cr_assert(spool_expired(&c, 1000, 1000 + 86400000));
  cr_assert_not(spool_expired(&c, 5000, 1000), "a clock set back is not expiry");
}

Test(spool_fmt, attempt_bookkeeping) {
  stp_spool_cfg c = cfg_with((const uint64_t[]){1000, 2000}, 2);
  spool_state st;
  spool_state_init(&st, 3, &c, 0, "");
  /* a@ delivered, b@ 4xx, c@ 5xx: only b@ stays. */
  spool_rcpt_result r1[] = {SPOOL_RCPT_OK, SPOOL_RCPT_TEMP, SPOOL_RCPT_PERM};
  cr_assert_not(spool_state_after_attempt(&st, r1, &c, 50000, "451 4.2.0 later"));
  cr_assert_eq(st.attempts, 1);
  cr_assert_eq(st.next_ms, 52000);
  cr_assert_str_eq(st.last, "451 4.2.0 later");
  cr_assert_eq(spool_state_pending(&st), 1);
  spool_rcpt_result r2[] = {SPOOL_RCPT_SKIP, SPOOL_RCPT_OK, SPOOL_RCPT_SKIP};
  cr_assert(spool_state_after_attempt(&st, r2, &c, 60000, "250 ok"));
  cr_assert_eq(st.attempts, 2);
  spool_state_free(&st);
}

Test(spool_fmt, ids) {
  char id[SPOOL_ID_LEN + 1];
  spool_id_make(id, 0x19ac2f3a4b5ull, 0xabcdef12u);
  cr_assert_str_eq(id, "19ac2f3a4b5def12");
  cr_assert(spool_id_valid(id));
  char later[SPOOL_ID_LEN + 1];
  spool_id_make(later, 0x19ac2f3a4b6ull, 0);
  cr_assert_lt(strcmp(id, later), 0, "ids sort by time");
  cr_assert_not(spool_id_valid("19ac2f3a4b5DEF12"));
  cr_assert_not(spool_id_valid("19ac2f3a4b5def1"));
  cr_assert_not(spool_id_valid("19ac2f3a4b5def123"));
  cr_assert_not(spool_id_valid("../19ac2f3a4b5de"));
  cr_assert_not(spool_id_valid(NULL));
}

Test(spool_fmt, list_line) {
  spool_env e = sample();
  e.size = 2048;
  stp_spool_cfg c = cfg_with((const uint64_t[]){60000}, 1);
  spool_state st;
  spool_state_init(&st, 3, &c, e.created_ms, "451 4.4.1 Upstream not reachable");
  st.done[0] = true;
  st.attempts = 2;
  char line[1024];
  spool_list_line(&e, &st, e.created_ms + 185000, line, sizeof line);
  cr_assert_str_eq(line, "0189c2f3a4b5c6d7 age=3m size=2048 from=<scan@printer.lan> "
                         "to=<b@example.com>,<\"x y\"@example.com> route=scanners attempts=2 "
                         "next=now last=451 4.4.1 Upstream not reachable");
  st.held = SPOOL_HELD_ROUTE;
  spool_list_line(&e, &st, e.created_ms + 1000, line, sizeof line);
  cr_assert(strstr(line, " next=held held=route-missing last="), "%s", line);
  st.held = SPOOL_HELD_NO;
  spool_list_line(&e, &st, e.created_ms + 1000, line, sizeof line);
  cr_assert(strstr(line, " age=1s ") && strstr(line, " next=59s "), "%s", line);
  spool_state_free(&st);
}

Test(spool_fmt, ages) {
  char b[16];
  uint64_t ms[] = {0, 119999, 120000, 7199999, 7200000, 172799999, 172800000};
  const char *want[] = {"0s", "119s", "2m", "119m", "2h", "47h", "2d"};
  for (size_t i = 0; i < sizeof ms / sizeof *ms; i++) {
    spool_fmt_age(ms[i], b, sizeof b);
    cr_assert_str_eq(b, want[i]);
  }
}

/* The device's DSN requests (RFC 3461) are kept with the message. */
Test(spool_fmt, dsn_requests_round_trip) {
  spool_env e = sample();
  const unsigned notify[] = {SMTP_NOTIFY_NEVER, 0, SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE};
  const char *const orcpt[] = {"rfc822;a+2Bx@example.com", NULL, ""};
  e.ret = SMTP_RET_HDRS;
  e.envid = "QQ+2B42";
  e.notify = notify;
  e.orcpt = orcpt;
  size_t len, hl;
  spool_env_offsets off;
  char *h = spool_env_format(&e, &len, &off);
  cr_assert_not_null(h);
  cr_assert(strstr(h, "smtputf8: 1\nret: hdrs\nenvid: QQ+2B42\nreason: "), "%s", h);
  cr_assert(strstr(h, "rcpt: a@example.com\nnotify: NEVER\norcpt: rfc822;a+2Bx@example.com\n"
                      "rcpt: b@example.com\nrcpt: \"x y\"@example.com\nnotify: SUCCESS,FAILURE\n"
                      "size: "),
            "%s", h);
  spool_env p;
  cr_assert_eq(spool_env_parse(h, len, &p, &hl), STP_OK);
  cr_assert_eq(p.ret, SMTP_RET_HDRS);
  cr_assert_str_eq(p.envid, "QQ+2B42");
  cr_assert_eq(p.n_rcpts, 3);
  cr_assert_eq(p.notify[0], SMTP_NOTIFY_NEVER);
  cr_assert_eq(p.notify[1], 0);
  cr_assert_eq(p.notify[2], SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE);
  cr_assert_str_eq(p.orcpt[0], "rfc822;a+2Bx@example.com");
  cr_assert_null(p.orcpt[1]);
  cr_assert_null(p.orcpt[2]);
  spool_env_free(&p);
  free(h);
  /* Many recipients: the arrays grow with them. */
  const char *many[40];
  unsigned nn[40];
  for (size_t i = 0; i < 40; i++) {
    many[i] = "m@example.com";
    nn[i] = i == 39 ? SMTP_NOTIFY_DELAY : 0;
  }
  e = sample();
  e.rcpts = many;
  e.n_rcpts = 40;
  e.notify = nn;
  h = spool_env_format(&e, &len, &off);
  cr_assert_eq(spool_env_parse(h, len, &p, &hl), STP_OK);
  cr_assert_eq(p.notify[39], SMTP_NOTIFY_DELAY);
  cr_assert_eq(p.notify[0], 0);
  cr_assert_null(p.orcpt);
  spool_env_free(&p);
  free(h);
  /* What the formatter never writes is refused. */
  e = sample();
  e.envid = "bad value";
  cr_assert_null(spool_env_format(&e, &len, &off));
  e = sample();
  e.orcpt = (const char *const[]){"no-semicolon", NULL, NULL};
  cr_assert_null(spool_env_format(&e, &len, &off));
  static const char torn[] = "smtp-tls-proxy-spool 1\nid: 0189c2f3a4b5c6d7\nkind: message\n"
                             "created: 1\nroute: r\nlistener: l\nclient: c\nfrom: \n"
                             "upstream-from: \nbody: 7bit\nsmtputf8: 0\nret: most\n\n";
  cr_assert_eq(spool_env_parse(torn, sizeof torn - 1, &p, &hl), STP_ESYNTAX);
}
