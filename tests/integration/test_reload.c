/* test_reload.c - SIGHUP: a good file takes effect for new sessions, a bad
 * one is refused with its reason and the old configuration keeps serving,
 * and a session that started before the reload finishes on its old config. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"

/* The port in the n-th (1-based) "listening listener=lan" line, or -1. */
static int nth_lan_port(const char *log_path, int n, int timeout_ms) {
  for (int waited = 0; waited <= timeout_ms; waited += 50) {
    char *log = h_read_file(log_path, NULL);
    const char *p = log;
    int seen = 0, port = -1;
    while (p && (p = strstr(p, "listening listener=lan addr=127.0.0.1:")) != NULL) {
      p += strlen("listening listener=lan addr=127.0.0.1:");
      if (++seen == n) {
        port = atoi(p);
        break;
      }
    }
    free(log);
    if (port > 0)
      return port;
    struct timespec d = {0, 50 * 1000000};
    nanosleep(&d, NULL);
  }
  return -1;
}

static bool log_has(const char *log_path, const char *needle, int timeout_ms) {
  for (int waited = 0; waited <= timeout_ms; waited += 50) {
    if (h_file_contains(log_path, needle, strlen(needle)))
      return true;
    struct timespec d = {0, 50 * 1000000};
    nanosleep(&d, NULL);
  }
  return false;
}

ITest(integ, reload_good_file_changes_routing_for_new_sessions) {
  h_upstream u;
  h_proxy px;
  h_upstream_start(&u, "starttls", NULL);
  char yaml[8192];
  h_proxy_yaml(&(h_proxy_opts){.up_port = u.port}, yaml, sizeof yaml);
  h_proxy_start_yaml(&px, yaml);

  /* A session opened before the reload, mid-transaction. */
  h_smtp old;
  h_smtp_open(&old, px.port, true);
  cr_assert_eq(h_smtp_cmd(&old, "MAIL FROM:<a@printer.test>", NULL, 0), 250);

  /* New file: only recipients at example.com have a route. */
  char *route = strstr(yaml, "routes:");
  cr_assert_not_null(route);
  char newyaml[8192];
  snprintf(newyaml, sizeof newyaml,
           "%.*sroutes:\n  - name: example-only\n    match: { rcpt_to: [\"*@example.com\"] }\n"
           "    upstream: up\n",
           (int)(route - yaml), yaml);
  h_write_file(px.config, newyaml, strlen(newyaml));
  h_proc_signal(px.proc, SIGHUP);
  cr_assert(log_has(px.log, " reloaded", 5000), "no 'reloaded' in the log");
  /* The listener's addresses did not change: it keeps its socket (and so
   * its port, and any connection waiting in its accept queue). */
  cr_assert(log_has(px.log, "listener-kept listener=lan", 1000));
  cr_assert_eq(nth_lan_port(px.log, 2, 300), -1, "the listener was bound again");
  int port2 = px.port;

  /* The old session finishes on the config it started with. */
  cr_assert_eq(h_smtp_cmd(&old, "RCPT TO:<x@elsewhere.test>", NULL, 0), 250);
  cr_assert_eq(h_smtp_cmd(&old, "QUIT", NULL, 0), 221);

  h_smtp c;
  h_smtp_open(&c, port2, true);
  cr_assert_eq(h_smtp_cmd(&c, "MAIL FROM:<a@printer.test>", NULL, 0), 250);
  char text[512];
  cr_assert_eq(h_smtp_cmd(&c, "RCPT TO:<x@elsewhere.test>", text, sizeof text), 550, "%s", text);
  cr_assert_eq(h_smtp_cmd(&c, "RCPT TO:<x@example.com>", NULL, 0), 250);
}

ITest(integ, reload_bad_file_is_refused_and_old_config_serves) {
  h_upstream u;
  h_proxy px;
  h_proxy_with_upstream(&px, &u, "starttls");
  const char *bad = "listeners:\n  - name: lan\n    listen: \"127.0.0.1:0\"\n    bogus_key: 1\n";
  h_write_file(px.config, bad, strlen(bad));
  h_proc_signal(px.proc, SIGHUP);
  cr_assert(log_has(px.log, "reload refused", 5000), "no refusal in the log");
  cr_assert(log_has(px.log, "unknown key", 1000), "the reason is not in the log");
  cr_assert(h_proc_alive(px.proc));
  /* Still listening on the same port with the old routes. */
  h_smtp c;
  h_smtp_open(&c, px.port, true);
  const char *rcpts[] = {"someone@example.com", NULL};
  const char body[] = "Subject: after a bad reload\r\n\r\nstill here\r\n";
  int code = h_smtp_message(&c, "a@printer.test", rcpts, body, sizeof body - 1, NULL, 0, NULL);
  cr_assert_eq(code, 250);
  cr_assert_eq(h_wait_records(u.record, "message", 1, 5000), 1);
}

/* A listener whose address changed is bound anew; the old socket closes. */
ITest(integ, reload_changed_listen_address_rebinds) {
  h_upstream u;
  h_proxy px;
  h_upstream_start(&u, "starttls", NULL);
  char yaml[8192];
  h_proxy_yaml(&(h_proxy_opts){.up_port = u.port}, yaml, sizeof yaml);
  h_proxy_start_yaml(&px, yaml);
  char *at = strstr(yaml, "listen: \"127.0.0.1:0\"");
  cr_assert_not_null(at, "%s", yaml);
  char newyaml[8192];
  snprintf(newyaml, sizeof newyaml, "%.*slisten: [\"127.0.0.1:0\"]%s", (int)(at - yaml), yaml,
           at + strlen("listen: \"127.0.0.1:0\""));
  /* ["127.0.0.1:0"] is the same address written as a list: still kept. */
  h_write_file(px.config, newyaml, strlen(newyaml));
  h_proc_signal(px.proc, SIGHUP);
  cr_assert(log_has(px.log, "listener-kept listener=lan", 5000));
  snprintf(newyaml, sizeof newyaml, "%.*slisten: [\"127.0.0.1:0\", \"[::1]:0\"]%s",
           (int)(at - yaml), yaml, at + strlen("listen: \"127.0.0.1:0\""));
  h_write_file(px.config, newyaml, strlen(newyaml));
  h_proc_signal(px.proc, SIGHUP);
  int port2 = nth_lan_port(px.log, 2, 5000);
  cr_assert_gt(port2, 0, "no new listening line after the address changed");
  cr_assert_neq(port2, px.port);
  h_smtp c;
  h_smtp_open(&c, port2, true);
  h_smtp old;
  cr_assert_neq(h_smtp_connect(&old, px.port) == 0 && h_smtp_reply(&old, 2000, NULL, 0) == 220, 1,
                "the old socket still answers");
}
