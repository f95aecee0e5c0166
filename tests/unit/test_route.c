/* test_route.c - first-match routing: every condition, IPv4 and IPv6
 * clients (and IPv4-mapped ones), globs, the null sender, auth users, and
 * the address-less match used by passthrough AUTH. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <string.h>

#include "smtp-tls-proxy/cidr.h"
#include "smtp-tls-proxy/route.h"

static stp_config C;
static stp_route_cfg R[4];
static struct sockaddr_in6 V6;
static struct sockaddr_in V4;

static char *L_LAN[] = {"lan"};
static char *U_HR[] = {"hr-scanner"};
static char *F_SCAN[] = {"*@scanner.local", "<>"};
static char *T_FIN[] = {"*@finance.example.com"};
static stp_cidr NET4, NET6;

static void setup(void) {
  memset(&C, 0, sizeof C);
  memset(R, 0, sizeof R);
  cr_assert_eq(stp_cidr_parse("192.168.1.0/24", &NET4), 0);
  cr_assert_eq(stp_cidr_parse("fd00:1::/64", &NET6), 0);
  R[0].name = "hr";
  R[0].match_auth_user = (stp_strlist){U_HR, 1};
  R[1].name = "floor";
  R[1].match_listener = (stp_strlist){L_LAN, 1};
  R[1].match_client = &NET4;
  R[1].n_match_client = 1;
  R[1].match_mail_from = (stp_strlist){F_SCAN, 2};
  R[2].name = "finance-v6";
  R[2].match_client = &NET6;
  R[2].n_match_client = 1;
  R[2].match_rcpt_to = (stp_strlist){T_FIN, 1};
  R[3].name = "default";
  C.routes = R;
  C.n_routes = 4;
  memset(&V4, 0, sizeof V4);
  V4.sin_family = AF_INET;
  inet_pton(AF_INET, "192.168.1.20", &V4.sin_addr);
  memset(&V6, 0, sizeof V6);
  V6.sin6_family = AF_INET6;
  inet_pton(AF_INET6, "fd00:1::7", &V6.sin6_addr);
}

TestSuite(route, .init = setup);

static long match(const char *listener, const void *client, const char *user, const char *from,
                  const char *to) {
  route_input in = {listener, client, user, from, to, 0};
  return route_match(&C, &in);
}

Test(route, first_match_wins_and_all_conditions_must_hold) {
  cr_assert_eq(match("lan", &V4, NULL, "a@scanner.local", "x@y.test"), 1);
  cr_assert_eq(match("wan", &V4, NULL, "a@scanner.local", "x@y.test"), 3, "listener differs");
  cr_assert_eq(match("lan", &V4, NULL, "a@printer.local", "x@y.test"), 3, "sender differs");
  cr_assert_eq(match("lan", &V4, "hr-scanner", "a@scanner.local", "x@y.test"), 0,
               "an earlier route wins");
}

Test(route, null_sender_and_case_insensitive_globs) {
  cr_assert_eq(match("lan", &V4, NULL, "", "x@y.test"), 1, "<> matches the null sender");
  cr_assert_eq(match("lan", &V4, NULL, "A@SCANNER.LOCAL", "x@y.test"), 1);
  cr_assert_eq(match("lan", &V4, NULL, "a@scanner.local.evil", "x@y.test"), 3,
               "a glob is anchored at the end");
}

Test(route, ipv6_client_and_recipient) {
  cr_assert_eq(match("lan", &V6, NULL, "a@b.test", "pay@finance.example.com"), 2);
  cr_assert_eq(match("lan", &V6, NULL, "a@b.test", "pay@example.com"), 3);
  cr_assert_eq(match("lan", &V4, NULL, "a@b.test", "pay@finance.example.com"), 3,
               "an IPv4 client is not in an IPv6 prefix");
}

Test(route, ipv4_mapped_client_matches_ipv4_prefix) {
  struct sockaddr_in6 m;
  memset(&m, 0, sizeof m);
  m.sin6_family = AF_INET6;
  inet_pton(AF_INET6, "::ffff:192.168.1.20", &m.sin6_addr);
  cr_assert_eq(match("lan", &m, NULL, "a@scanner.local", "x@y.test"), 1);
}

Test(route, auth_user_condition_needs_an_authenticated_user) {
  cr_assert_eq(match("lan", &V4, NULL, "a@b.test", "x@y.test"), 3);
  cr_assert_eq(match("lan", &V4, "lobby", "a@b.test", "x@y.test"), 3);
  cr_assert_eq(match("lan", &V4, "hr-scanner", "a@b.test", "x@y.test"), 0);
}

Test(route, no_route_at_all) {
  C.n_routes = 3; /* without the catch-all */
  cr_assert_eq(match("lan", &V4, NULL, "a@b.test", "x@y.test"), -1);
}

Test(route, ignoring_addresses_for_passthrough_auth) {
  C.n_routes = 3;
  route_input in = {"lan", (const struct sockaddr *)&V4, "someone", NULL, NULL, 1};
  cr_assert_eq(route_match(&C, &in), 1, "sender/recipient conditions are not known yet");
}
