/* config_admin.c - the `admin:` section: the admin page's address, its
 * users (HTTP Basic against crypt(3) hashes, as listeners' users), the
 * delivery history's length and the page's TLS.
 *
 * Guarantees: the page is off unless the section is given; a listen address
 * outside loopback (127.0.0.0/8, ::1) without certificate and private_key
 * is an error at the address, so passwords never cross a network in clear;
 * at least one user; history 1..HISTORY_MAX.
 */
#include "config_admin.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "config_file.h"
#include "config_listener.h"
#include "smtp-tls-proxy/history.h"
#include "smtp-tls-proxy/util.h"

/* clang-format off */
enum { A_LISTEN, A_USERS, A_HISTORY, A_CERT, A_KEY, A_N };
static const char *const admin_keys[A_N] = {
  [A_LISTEN] = "listen", [A_USERS] = "users", [A_HISTORY] = "history",
  [A_CERT] = "certificate", [A_KEY] = "private_key"};
/* clang-format on */

/* 127.0.0.0/8 or ::1 (an empty host means every address: not loopback). */
static bool loopback(const char *listen) {
  char *host = NULL;
  uint16_t port;
  unsigned char a[16];
  bool lo = false;
  if (stp_parse_hostport(listen, &host, &port) != STP_OK)
    return false;
  if (inet_pton(AF_INET, host, a) == 1)
    lo = a[0] == 127;
  else if (inet_pton(AF_INET6, host, a) == 1)
    lo = !memcmp(a, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1", 16);
  free(host);
  return lo;
}

static void parse_listen(cfg_ctx *c, yaml_node_t *n, stp_admin_cfg *a) {
  const char *s = cfg_str_of(c, n, "listen");
  if (s && cfg_parse_bind_addr(c, n, "admin", s))
    a->listen = stp_xstrdup(s);
}

void cfg_parse_admin(cfg_ctx *c, yaml_node_t *n) {
  yaml_node_t *k[A_N], *v[A_N];
  if (!cfg_expect_map(c, n, "admin"))
    return;
  stp_admin_cfg *a = stp_xcalloc(1, sizeof *a);
  c->cfg->admin = a;
  a->history = HISTORY_DEFAULT;
  a->pos = (stp_pos){cfg_nline(n), cfg_ncol(n)};
  WALK(c, n, "in admin", admin_keys, k, v);
  if (!v[A_LISTEN])
    cfg_err(c, k[A_LISTEN] ? k[A_LISTEN] : n, "admin needs 'listen' (e.g. \"127.0.0.1:8025\")");
  else
    parse_listen(c, v[A_LISTEN], a);
  if (v[A_USERS])
    cfg_parse_users(c, v[A_USERS], &a->users, &a->n_users);
  if (!a->n_users)
    cfg_err(c,
            v[A_USERS]   ? v[A_USERS]
            : k[A_USERS] ? k[A_USERS]
                         : n,
            "admin needs 'users' (name: crypt(3) hash, e.g. from mkpasswd -m sha-512)");
  else
    a->unknown_user_hash = cfg_unknown_user_hash(a->users, a->n_users);
  if (v[A_HISTORY]) {
    uint64_t u = a->history;
    cfg_parse_count(c, v[A_HISTORY], "history", HISTORY_MAX, &u);
    a->history = (uint32_t)u;
  }
  if (v[A_CERT])
    cfg_parse_file(c, v[A_CERT], "certificate", &a->certificate);
  if (v[A_KEY])
    cfg_parse_file(c, v[A_KEY], "private_key", &a->private_key);
  if (v[A_CERT] && !v[A_KEY])
    cfg_err(c, k[A_CERT], "certificate needs private_key");
  if (v[A_KEY] && !v[A_CERT])
    cfg_err(c, k[A_KEY], "private_key needs certificate");
  if (a->listen && !loopback(a->listen) && !(v[A_CERT] && v[A_KEY]))
    cfg_err(c, v[A_LISTEN],
            "admin listen '%s' is not a loopback address: it needs certificate and private_key "
            "(HTTP Basic passwords must not cross a network in clear)",
            a->listen);
}

void cfg_free_admin(stp_admin_cfg *a) {
  if (!a)
    return;
  free(a->listen);
  for (size_t i = 0; i < a->n_users; i++) {
    free(a->users[i].name);
    stp_free_secret(a->users[i].hash);
  }
  free(a->users);
  free(a->certificate);
  free(a->private_key);
  free(a);
}
