/* test_pool.c - upstream connection reuse: a second device session rides
 * the first one's authenticated TLS connection; a pooled connection that
 * went silent is replaced without the device noticing; connections are
 * never shared across credentials (passthrough is never pooled); the pool
 * can be switched off. The upstream's record names the peer address of
 * each message, so "same connection" means "same source port". */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"

static int send_one(int port, const char *auth_user, const char *auth_pw) {
  char cmd[1024], out[16384];
  char auth[256] = "";
  if (auth_user)
    snprintf(auth, sizeof auth, "-a PLAIN -au '%s' -ap '%s'", auth_user, auth_pw);
  snprintf(cmd, sizeof cmd,
           "swaks --server 127.0.0.1:%d %s --from d@printer.test --to x@example.com "
           "--timeout 20 2>&1",
           port, auth);
  int rc = h_run(cmd, NULL, 30000, out, sizeof out);
  cr_assert_eq(rc, 0, "%s", out);
  return rc;
}

/* Peers ("127.0.0.1:PORT") of the first n recorded messages. */
static void peers(const h_upstream *u, size_t n, char out[][64]) {
  cr_assert_eq(h_wait_records(u->record, "message", n, 5000), n);
  h_lines l;
  h_records(u->record, "message", &l);
  for (size_t i = 0; i < n; i++)
    cr_assert_eq(h_json_str(l.v[i], "peer", out[i], 64), 1);
  h_lines_free(&l);
}

ITest(integ, pool_second_session_reuses_the_connection) {
  h_upstream u;
  h_proxy px;
  h_proxy_with_upstream(&px, &u, "starttls");
  send_one(px.port, NULL, NULL);
  send_one(px.port, NULL, NULL);
  send_one(px.port, NULL, NULL);
  char p[3][64];
  peers(&u, 3, p);
  cr_assert_str_eq(p[0], p[1], "second session on a new connection");
  cr_assert_str_eq(p[1], p[2]);
}

ITest(integ, pool_off_means_a_connection_per_session) {
  h_upstream u;
  h_proxy px;
  h_upstream_start(&u, "starttls", NULL);
  h_proxy_start(&px, &(h_proxy_opts){.up_port = u.port, .upstream_extra = "    pool: false\n"});
  send_one(px.port, NULL, NULL);
  send_one(px.port, NULL, NULL);
  char p[2][64];
  peers(&u, 2, p);
  cr_assert_str_neq(p[0], p[1]);
}

ITest(integ, pool_dead_connection_is_replaced_transparently) {
  h_upstream u;
  h_proxy px;
  h_upstream_start(&u, "starttls", (const char *const[]){"--hang-on-reuse", NULL});
  h_proxy_start(&px, &(h_proxy_opts){.up_port = u.port, .command_timeout = "2s"});
  send_one(px.port, NULL, NULL);
  send_one(px.port, NULL, NULL); /* the pooled connection never answers MAIL */
  char p[2][64];
  peers(&u, 2, p);
  cr_assert_str_neq(p[0], p[1], "the second message went over a fresh connection");
  cr_assert(h_file_contains(px.log, "pooled-connection-dead", 22));
}

ITest(integ, pool_never_shares_passthrough_credentials) {
  h_upstream u;
  h_proxy px;
  h_upstream_start(&u, "starttls", NULL);
  h_proxy_start(&px, &(h_proxy_opts){.up_port = u.port,
                                     .no_upstream_auth = true,
                                     .listener_extra = "    auth: passthrough\n"});
  send_one(px.port, H_USER, H_PW);
  send_one(px.port, H_USER, H_PW);
  char p[2][64];
  peers(&u, 2, p);
  cr_assert_str_neq(p[0], p[1], "a device's own credentials are never pooled");
}
