/* test_sec_relay.c - open-relay spellings (issue #5).
 *
 * The classic relay checkers try recipient spellings that some MTA down
 * the line might route to a domain other than the one a rule looked at:
 * the percent hack, source routes, bang paths, several '@', trailing dots.
 * With routes allowing only rcpt_to "*@example.com", none of them may put
 * evil.test into what reaches the upstream. The quoted local part
 * "victim@evil.test"@example.com is refused too: Postfix resolves inside
 * the quotes. An upper-case domain is allowed (domains are
 * case-insensitive). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "harness.h"

/* A proxy whose only route takes rcpt_to "*@example.com", in front of the
 * fault upstream in mode ok (it records any recipient spelling verbatim,
 * where aiosmtpd would refuse some itself and hide a proxy bug). */
static void start_example_only(h_proxy *px, h_upstream *u) {
  h_fault_start(u, "ok", "starttls", "server");
  char yaml[4096];
  int n = snprintf(yaml, sizeof yaml,
                   "hostname: proxy.test\n"
                   "log: { level: info, format: text }\n"
                   "shutdown_grace: 2s\n"
                   "listeners:\n"
                   "  - name: lan\n"
                   "    listen: \"127.0.0.1:0\"\n"
                   "upstreams:\n"
                   "  - name: up\n"
                   "    host: 127.0.0.1\n"
                   "    port: %d\n"
                   "    tls: starttls\n"
                   "    server_name: localhost\n"
                   "    ca_file: %s/ca.crt\n"
                   "    connect_timeout: 3s\n"
                   "    command_timeout: 3s\n"
                   "    auth: { mechanism: auto, username: %s, password_env: %s }\n"
                   "routes:\n"
                   "  - name: only-example\n"
                   "    match: { rcpt_to: [\"*@example.com\"] }\n"
                   "    upstream: up\n",
                   u->port, h_certs(), H_USER, H_PW_ENV);
  cr_assert(n > 0 && (size_t)n < sizeof yaml);
  h_proxy_start_yaml(px, yaml);
}

typedef struct relay_case {
  const char *name;
  const char *rcpt;     /* the whole RCPT argument after "TO:" */
  bool allowed;         /* must be accepted (250) */
  const char *upstream; /* allowed: the exact recipient the upstream gets */
} relay_case;

static const relay_case cases[] = {
    {"percent hack", "<victim%evil.test@example.com>", false, NULL},
    {"percent hack, no brackets", "victim%evil.test@example.com", false, NULL},
    {"double percent", "<victim%evil.test%example.com@example.com>", false, NULL},
    {"source route to evil", "<@example.com:victim@evil.test>", false, NULL},
    {"source route list to evil", "<@example.com,@example.com:victim@evil.test>", false, NULL},
    {"bang path", "<evil.test!victim@example.com>", false, NULL},
    {"bang path, no domain", "<evil.test!victim>", false, NULL},
    {"multiple @", "<victim@evil.test@example.com>", false, NULL},
    {"trailing dot", "<victim@evil.test.>", false, NULL},
    {"trailing dot on the allowed domain", "<victim@example.com.>", false, NULL},
    {"allowed domain as a subdomain", "<victim@example.com.evil.test>", false, NULL},
    {"address literal", "<victim@[127.0.0.1]>", false, NULL},
    {"plain evil (control)", "<victim@evil.test>", false, NULL},
    {"quoted local part at evil", "<\"victim\"@evil.test>", false, NULL},
    {"quoted '@' local part", "<\"victim@evil.test\"@example.com>", false, NULL},
    /* RFC 5321 4.1.1.3 / C: a source route is to be ignored; what counts
     * is the final mailbox, which here is at example.com. */
    {"source route via evil to allowed", "<@evil.test:victim@example.com>", true,
     "victim@example.com"},
    {"upper-case domain", "<a@EXAMPLE.COM>", true, "a@example.com"},
    {"mixed-case domain", "<b@Example.Com>", true, "b@example.com"},
};
#define N_CASES (sizeof cases / sizeof *cases)

/* A recipient as recorded upstream reaches evil.test if its domain (after
 * the last '@', ignoring a trailing dot and case) is evil.test or under it,
 * or if any relay-hack character survives, quoted or not (Postfix resolves
 * inside quotes). */
static bool reaches_evil(const char *rcpt) {
  const char *at = strrchr(rcpt, '@');
  const char *dom = at ? at + 1 : rcpt;
  char d[256];
  snprintf(d, sizeof d, "%s", dom);
  size_t n = strlen(d);
  while (n > 0 && d[n - 1] == '.')
    d[--n] = '\0';
  if (strcasecmp(d, "evil.test") == 0)
    return true;
  if (n > 10 && strcasecmp(d + n - 10, ".evil.test") == 0)
    return true;
  return strchr(rcpt, '%') || strchr(rcpt, '!') || strchr(rcpt, ':') ||
         strcasestr(rcpt, "evil.test");
}

ITest(integ, sec_relay_hacks_never_reach_other_domains) {
  h_upstream u;
  h_proxy px;
  start_example_only(&px, &u);
  h_smtp c;
  h_smtp_open(&c, px.port, true);
  char text[2048], line[1024];
  int accepted = 0;
  for (size_t i = 0; i < N_CASES; i++) {
    const relay_case *rc = &cases[i];
    int code = h_smtp_cmd(&c, "MAIL FROM:<scan@printer.test>", text, sizeof text);
    cr_assert_eq(code, 250, "[%s] MAIL: %d %s", rc->name, code, text);
    snprintf(line, sizeof line, "RCPT TO:%s", rc->rcpt);
    code = h_smtp_cmd(&c, line, text, sizeof text);
    if (rc->allowed) {
      cr_assert_eq(code, 250, "[%s] %s: %d %s (want 250)", rc->name, line, code, text);
      accepted++;
    } else {
      bool syntax = code == 553 && strstr(text, "5.1.3");
      bool noroute = code == 550 && strstr(text, "5.7.1");
      cr_assert(syntax || noroute, "[%s] %s: got %d %s (want 553 5.1.3 or 550 5.7.1)", rc->name,
                line, code, text);
      cr_log_info("relay hack [%s] %s -> %s", rc->name, rc->rcpt, text);
    }
    /* A legitimate recipient in the same transaction, so that every case
     * produces a message whose envelope we can inspect upstream. */
    snprintf(line, sizeof line, "RCPT TO:<control%zu@example.com>", i);
    code = h_smtp_cmd(&c, line, text, sizeof text);
    cr_assert_eq(code, 250, "[%s] control RCPT: %d %s", rc->name, code, text);
    cr_assert_eq(h_smtp_cmd(&c, "DATA", text, sizeof text), 354, "[%s] DATA: %s", rc->name, text);
    snprintf(line, sizeof line, "Subject: relay case %zu\r\nX-Case: %zu\r\n\r\nbody\r\n.\r\n", i,
             i);
    h_smtp_sendstr(&c, line);
    code = h_smtp_reply(&c, H_REPLY_MS, text, sizeof text);
    cr_assert_eq(code, 250, "[%s] dot: %d %s", rc->name, code, text);
  }
  h_smtp_cmd(&c, "QUIT", text, sizeof text);

  cr_assert_eq(h_wait_records(u.record, "message", N_CASES, 5000), N_CASES);
  h_sleep_ms(200);
  h_lines l;
  size_t n = h_records(u.record, "message", &l);
  char *rec = h_read_file(u.record, NULL);
  cr_assert_eq(n, N_CASES, "want %zu messages upstream, got %zu:\n%s", N_CASES, n, rec);
  int seen_allowed = 0;
  for (size_t m = 0; m < n; m++) {
    size_t blen;
    unsigned char *body = h_json_b64(l.v[m], "data_b64", &blen);
    cr_assert_not_null(body);
    const char *xc = strstr((char *)body, "X-Case: ");
    cr_assert_not_null(xc, "message without X-Case: %s", l.v[m]);
    size_t i = (size_t)atoi(xc + 8);
    cr_assert(i < N_CASES);
    free(body);
    const relay_case *rc = &cases[i];
    /* Walk the recipient list by hand: each string of "rcpt_tos". */
    const char *p = strstr(l.v[m], "\"rcpt_tos\":[");
    cr_assert_not_null(p, "%s", l.v[m]);
    int nr = h_json_strlist(l.v[m], "rcpt_tos", NULL, NULL);
    cr_assert_eq(nr, rc->allowed ? 2 : 1, "[%s] upstream rcpt_tos: %s", rc->name, l.v[m]);
    char want_ctl[64];
    snprintf(want_ctl, sizeof want_ctl, "control%zu@example.com", i);
    bool found;
    h_json_strlist(l.v[m], "rcpt_tos", want_ctl, &found);
    cr_assert(found, "[%s] control recipient missing: %s", rc->name, l.v[m]);
    if (rc->allowed) {
      h_json_strlist(l.v[m], "rcpt_tos", rc->upstream, &found);
      cr_assert(found, "[%s] upstream did not get exactly %s: %s", rc->name, rc->upstream, l.v[m]);
      seen_allowed++;
    }
    /* No recipient string that routes to evil.test. */
    p += strlen("\"rcpt_tos\":[");
    char one[1024];
    while (*p == '"') {
      size_t k = 0;
      const char *q = p + 1;
      while (*q && *q != '"' && k + 1 < sizeof one) {
        if (*q == '\\' && q[1])
          q++;
        one[k++] = *q++;
      }
      one[k] = '\0';
      cr_assert(!reaches_evil(one), "[%s] recipient '%s' reached the upstream:\n%s", rc->name, one,
                l.v[m]);
      p = *q ? q + 1 : q;
      if (*p == ',')
        p++;
    }
  }
  cr_assert_eq(seen_allowed, accepted);
  /* Not even as a plain RCPT command line on the wire. */
  h_lines cmds;
  h_records(u.record, "command", &cmds);
  for (size_t k = 0; k < cmds.n; k++) {
    char verb[16], arg[512];
    if (h_json_str(cmds.v[k], "verb", verb, sizeof verb) != 1 || strcmp(verb, "RCPT"))
      continue;
    cr_assert_eq(h_json_str(cmds.v[k], "arg", arg, sizeof arg), 1);
    const char *lt = strchr(arg, '<'), *gt = strrchr(arg, '>');
    char addr[512] = "";
    if (lt && gt && gt > lt)
      snprintf(addr, sizeof addr, "%.*s", (int)(gt - lt - 1), lt + 1);
    cr_assert(!reaches_evil(addr), "upstream RCPT line %s", arg);
  }
  h_lines_free(&cmds);
  h_lines_free(&l);
  free(rec);
}

/* A transaction whose only recipient is a refused hack has nothing to
 * send: DATA is refused, no RCPT and no message ever reach the upstream. */
ITest(integ, sec_relay_hack_alone_sends_nothing) {
  h_upstream u;
  h_proxy px;
  start_example_only(&px, &u);
  h_smtp c;
  h_smtp_open(&c, px.port, true);
  char text[2048], line[1024];
  for (size_t i = 0; i < N_CASES; i++) {
    if (cases[i].allowed)
      continue;
    cr_assert_eq(h_smtp_cmd(&c, "MAIL FROM:<scan@printer.test>", text, sizeof text), 250);
    snprintf(line, sizeof line, "RCPT TO:%s", cases[i].rcpt);
    int code = h_smtp_cmd(&c, line, text, sizeof text);
    cr_assert(code == 553 || code == 550, "[%s] %d %s", cases[i].name, code, text);
    code = h_smtp_cmd(&c, "DATA", text, sizeof text);
    cr_assert(code >= 500 && code < 600, "[%s] DATA without recipients: %d %s", cases[i].name, code,
              text);
    cr_assert_eq(h_smtp_cmd(&c, "RSET", text, sizeof text), 250);
  }
  h_smtp_cmd(&c, "QUIT", text, sizeof text);
  h_sleep_ms(500);
  char *rec = h_read_file(u.record, NULL);
  cr_assert_eq(h_wait_records(u.record, "message", 1, 200), 0, "%s", rec);
  cr_assert_eq(h_fault_commands(&u, "RCPT", -1), 0,
               "a refused recipient produced an upstream RCPT:\n%s", rec);
  free(rec);
}
