/* test_spool_kill.c - SIGKILL of the proxy at random points while 200
 * messages flow through a spool route with a flapping upstream
 * (fault_upstream.py --mode chaos: 451 to RCPT, RST after 354, RST after
 * the final dot without a reply, 451 to the dot, delays), then restart.
 *
 * The device side is a printer: it sends each message once and never
 * retries. Afterwards, with the queue drained:
 *  - every message the device got 250 for arrived at least once;
 *  - none arrived whose transfer the device never finished (killed
 *    before its final dot) or that got an explicit refusal;
 *  - a message whose dot went out but whose answer was lost to the kill
 *    may or may not have arrived;
 * and duplicates (one message arriving twice: the upstream vanished or the
 * proxy died after our final dot) are counted and printed. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "spool_common.h"

#define N_MSGS 200
#define KILL_ONE_IN 7
#define SEND_BUDGET_MS 60000

typedef enum { R_250, R_NOREPLY, R_LOST, R_OTHER } result;

typedef struct kill_run {
  h_proxy px;
  char yaml[8192];
  unsigned seed;
  unsigned kills, spooled;
} kill_run;

/* The killed proxy's log is kept as proxy-N.err (STP_INTEG_KEEP=1). */
static void start_again(kill_run *k) {
  char old[512];
  snprintf(old, sizeof old, "%s/proxy-%u.err", h_dir(), k->kills);
  rename(k->px.log, old);
  k->kills++;
  h_proxy_start_yaml(&k->px, k->yaml);
}

static void restart(kill_run *k) {
  h_proc_forget(k->px.proc);
  start_again(k);
}

/* The message of number i: its id in a header, a size that varies. */
static size_t make_body(int i, unsigned *seed, char *buf, size_t cap) {
  size_t n = (size_t)snprintf(buf, cap, "Subject: kill test %d\r\nX-Test-Id: %d\r\n\r\n", i, i);
  size_t lines = 2 + (size_t)(rand_r(seed) % 120);
  for (size_t l = 0; l < lines && n + 80 < cap; l++)
    n += (size_t)snprintf(buf + n, cap - n, "%s%03zu line of message %d, some text to fill it\r\n",
                          l % 17 == 0 ? "." : "", l, i);
  return n;
}

/* Stage: 0 none, 1 after RCPT, 2 mid-DATA, 3 right after the final dot. */
static result one(kill_run *k, int i, int stage) {
  static char body[16384];
  size_t len = make_body(i, &k->seed, body, sizeof body);
  h_smtp c;
  char text[1024], line[128];
  if (h_smtp_connect(&c, k->px.port) < 0)
    return R_LOST;
  if (h_smtp_reply(&c, H_REPLY_MS, text, sizeof text) != 220 ||
      h_smtp_cmd(&c, "EHLO printer.test", text, sizeof text) != 250 ||
      h_smtp_cmd(&c, "MAIL FROM:<scan@printer.test>", text, sizeof text) != 250) {
    h_smtp_close(&c);
    return R_LOST;
  }
  snprintf(line, sizeof line, "RCPT TO:<kill%d@example.com>", i);
  int code = h_smtp_cmd(&c, line, text, sizeof text);
  if (code != 250) {
    h_smtp_close(&c);
    return code > 0 ? R_OTHER : R_LOST;
  }
  if (stage == 1) {
    restart(k);
    h_smtp_close(&c);
    return R_LOST;
  }
  code = h_smtp_cmd(&c, "DATA", text, sizeof text);
  if (code != 354) {
    h_smtp_close(&c);
    return code > 0 ? R_OTHER : R_LOST;
  }
  h_smtp_send(&c, body, len / 2);
  if (stage == 2) {
    h_sleep_ms(rand_r(&k->seed) % 10);
    restart(k);
    h_smtp_close(&c);
    return R_LOST;
  }
  h_smtp_send(&c, body + len / 2, len - len / 2);
  h_smtp_sendstr(&c, ".\r\n");
  if (stage == 3) {
    h_sleep_ms(rand_r(&k->seed) % 25);
    h_proc_forget(k->px.proc); /* what was in flight to us is still readable */
    code = h_smtp_reply(&c, 3000, text, sizeof text);
    start_again(k);
  } else {
    code = h_smtp_reply(&c, 30000, text, sizeof text);
    h_smtp_sendstr(&c, "QUIT\r\n");
  }
  h_smtp_close(&c);
  if (code == 250 && strstr(text, "queued locally"))
    k->spooled++;
  return code == 250 ? R_250 : code <= 0 ? R_NOREPLY : R_OTHER;
}

/* How often each message arrived: "message" records the chaos upstream
 * accepted or that vanished after our dot (it had the message then). */
static unsigned count_arrivals(const h_upstream *u, unsigned *arrived) {
  h_lines l;
  unsigned vanished = 0;
  h_records(u->record, "message", &l);
  for (size_t i = 0; i < l.n; i++) {
    char outcome[32];
    h_json_str(l.v[i], "outcome", outcome, sizeof outcome);
    if (strcmp(outcome, "accepted") && strcmp(outcome, "vanished"))
      continue;
    vanished += !strcmp(outcome, "vanished");
    size_t n;
    unsigned char *d = h_json_b64(l.v[i], "data_b64", &n);
    const char *id = d ? strstr((char *)d, "X-Test-Id: ") : NULL;
    if (id) {
      int m = atoi(id + strlen("X-Test-Id: "));
      if (m >= 0 && m < N_MSGS)
        arrived[m]++;
    }
    free(d);
  }
  h_lines_free(&l);
  return vanished;
}

ITest(integ, spool_sigkill_at_random_points, .timeout = 180) {
  kill_run k = {.seed = 20261201};
  h_upstream u;
  h_fault_start(&u, "chaos", "starttls", "server");
  sp_yaml(u.port, "starttls", "  retry: [200ms]\n", k.yaml, sizeof k.yaml);
  h_proxy_start_yaml(&k.px, k.yaml);
  static result res[N_MSGS];
  int64_t t0 = h_now_ms();
  for (int i = 0; i < N_MSGS; i++) {
    /* Most kills right after the dot: a commit or a relay in flight. */
    static const int stages[] = {1, 2, 3, 3, 3, 4};
    int stage = rand_r(&k.seed) % KILL_ONE_IN == 0 ? stages[rand_r(&k.seed) % 6] : 0;
    if (stage == 4) { /* between messages: whatever the runner is doing */
      restart(&k);
      stage = 0;
    }
    res[i] = one(&k, i, stage);
    cr_assert_lt(h_now_ms() - t0, SEND_BUDGET_MS, "sending took too long (at message %d)", i);
  }
  int64_t t_sent = h_now_ms();
  cr_assert(sp_wait_empty(&k.px, 60000), "the queue did not drain");
  h_sleep_ms(1000); /* a delivery whose record is still being written */
  static unsigned arrived[N_MSGS];
  unsigned vanished = count_arrivals(&u, arrived);
  unsigned got250 = 0, noreply = 0, noreply_arrived = 0, lost = 0, other = 0, dups = 0;
  unsigned total = 0;
  for (int i = 0; i < N_MSGS; i++) {
    total += arrived[i];
    dups += arrived[i] > 1 ? arrived[i] - 1 : 0;
    switch (res[i]) {
    case R_250:
      got250++;
      cr_assert_geq(arrived[i], 1, "message %d got 250 and never arrived", i);
      break;
    case R_NOREPLY:
      noreply++;
      noreply_arrived += arrived[i] > 0;
      break;
    case R_LOST:
      lost++;
      cr_assert_eq(arrived[i], 0, "message %d arrived, but its device never sent the dot", i);
      break;
    case R_OTHER:
      other++;
      cr_assert_eq(arrived[i], 0, "message %d arrived after an explicit refusal", i);
      break;
    }
  }
  fprintf(stderr,
          "spool kill test: %d messages, %u kills; device got 250 for %u (%u queued locally), "
          "no answer after the dot for %u (%u of those arrived), killed before the dot %u, "
          "refused %u; %u arrivals, %u duplicates (the upstream vanished after the dot %u "
          "times); sending %.1f s, draining %.1f s\n",
          N_MSGS, k.kills, got250, k.spooled, noreply, noreply_arrived, lost, other, total, dups,
          vanished, (double)(t_sent - t0) / 1000.0, (double)(h_now_ms() - t_sent) / 1000.0);
  /* Each duplicate needs a lost answer to a final dot: the upstream
   * vanishing after it, or a kill (a session's and two deliveries' dots
   * at most). */
  cr_assert_leq(dups, vanished + 3 * k.kills, "duplicates without a cause");
  cr_assert_gt(k.kills, 10, "too few kills to mean anything");
  cr_assert_gt(k.spooled, 10, "too few messages went through the spool");
}
