/* config_listener.c - one `listeners:` entry: addresses, LAN TLS, the
 * allow list, device AUTH and users, limits and DATA framing, with the
 * defaults of SPEC.md.
 */
#include "config_listener.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_file.h"
#include "smtp-tls-proxy/lanauth.h"
#include "smtp-tls-proxy/util.h"

/* clang-format off */
enum {
  L_NAME, L_LISTEN, L_TLS, L_CERT, L_KEY, L_TLSMIN, L_ALLOW, L_AUTH, L_USERS, L_MAXSIZE,
  L_MAXCONN, L_MAXPER, L_BARELF, L_IDLE, L_RATE, L_DATADL, L_PROXYPROTO, L_N
};
static const char *const listener_keys[L_N] = {
  [L_NAME] = "name", [L_LISTEN] = "listen", [L_TLS] = "tls", [L_CERT] = "certificate",
  [L_KEY] = "private_key", [L_TLSMIN] = "tls_min_version", [L_ALLOW] = "allow",
  [L_AUTH] = "auth", [L_USERS] = "users", [L_MAXSIZE] = "max_message_size",
  [L_MAXCONN] = "max_connections", [L_MAXPER] = "max_connections_per_client",
  [L_BARELF] = "bare_lf", [L_IDLE] = "idle_timeout", [L_RATE] = "rate_limit",
  [L_DATADL] = "data_deadline", [L_PROXYPROTO] = "proxy_protocol"};
/* clang-format on */

void cfg_parse_users(cfg_ctx *c, yaml_node_t *n, stp_user **users, size_t *n_users) {
  if (!cfg_expect_map(c, n, "users"))
    return;
  size_t cnt = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
  stp_user *v;
  size_t got = 0;
  v = stp_xcalloc(cnt ? cnt : 1, sizeof *v);
  for (size_t i = 0; i < cnt; i++) {
    yaml_node_pair_t *p = &n->data.mapping.pairs.start[i];
    yaml_node_t *kn = cfg_node_at(c, p->key), *vn = cfg_node_at(c, p->value);
    const char *name = cfg_scalar_text(c, kn, "users", true, false);
    if (!name)
      continue;
    if (!*name || strchr(name, ' ')) {
      cfg_err(c, kn, "bad user name '%s'", name);
      continue;
    }
    /* Against every earlier key, valid or not: one typo must not hide
     * a second entry for the same user. */
    bool dup = false;
    for (size_t j = 0; j < i && !dup; j++) {
      yaml_node_t *pk = cfg_node_at(c, n->data.mapping.pairs.start[j].key);
      dup = pk->type == YAML_SCALAR_NODE && strcmp((const char *)pk->data.scalar.value, name) == 0;
    }
    if (dup) {
      cfg_err(c, kn, "duplicate user '%s'", name);
      continue;
    }
    /* The hash is not echoed: it is what an attacker would brute-force. */
    if (vn->type != YAML_SCALAR_NODE || cfg_has_nul(vn)) {
      cfg_err(c, vn, "expected a crypt(3) hash for user '%s'", name);
      continue;
    }
    const char *hash = (const char *)vn->data.scalar.value;
    if (hash[0] != '$' || cfg_has_ctl(hash)) {
      cfg_err(c, vn, "hash of user '%s' is not a crypt(3) string (it must start with '$')", name);
      continue;
    }
    v[got].name = stp_xstrdup(name);
    v[got].hash = stp_xstrdup(hash);
    got++;
  }
  *users = v;
  *n_users = got;
}

/* Unknown user names are checked against the costliest configured hash,
 * so a reply's delay does not tell which names exist. */
const char *cfg_unknown_user_hash(const stp_user *users, size_t n) {
  const char **hs = stp_xcalloc(n, sizeof *hs);
  for (size_t i = 0; i < n; i++)
    hs[i] = users[i].hash;
  const char *h = users[lanauth_costliest_hash(hs, n)].hash;
  free(hs);
  return h;
}

static void parse_listen(cfg_ctx *c, yaml_node_t *n, stp_listener_cfg *l) {
  if (!cfg_expect_list(c, n, "listen", true))
    return;
  size_t cnt = cfg_list_len(n);
  if (cnt == 0)
    cfg_err(c, n, "'listen' is empty");
  l->listen.v = stp_xcalloc(cnt ? cnt : 1, sizeof(char *));
  for (size_t i = 0; i < cnt; i++) {
    yaml_node_t *it = cfg_list_item(c, n, i);
    const char *s = cfg_scalar_text(c, it, "listen", n->type == YAML_SEQUENCE_NODE, false);
    if (s && cfg_parse_bind_addr(c, it, "listen", s))
      l->listen.v[l->listen.n++] = stp_xstrdup(s);
  }
}

/* The balancers that put a PROXY header before each connection. Whoever
 * is listed here names the client of every connection it makes, so a
 * prefix as wide as the internet is refused outright. */
static void parse_proxy_protocol(cfg_ctx *c, yaml_node_t *n, stp_listener_cfg *l) {
  cfg_parse_cidrs(c, n, "proxy_protocol", &l->proxy_protocol, &l->n_proxy_protocol);
  for (size_t i = 0; i < l->n_proxy_protocol; i++)
    if (l->proxy_protocol[i].prefix == 0)
      cfg_err(c, n,
              "proxy_protocol %s would let anyone claim any client address: list the "
              "balancers' own addresses",
              l->proxy_protocol[i].family == 4 ? "0.0.0.0/0" : "::/0");
}

void cfg_parse_listener(cfg_ctx *c, yaml_node_t *n, stp_listener_cfg *l) {
  static const char *const auth_names[] = {"none", "any", "users", "passthrough", NULL};
  static const char *const barelf_names[] = {"fix", "reject", "lenient", NULL};
  yaml_node_t *k[L_N], *v[L_N];
  int e;

  l->tls = STP_TLS_NONE;
  l->tls_min_version = STP_TLS1_2;
  l->auth = STP_LAUTH_NONE;
  l->max_message_size = 50ull << 20;
  l->max_connections = 200;
  l->max_connections_per_client = 20;
  l->bare_lf = STP_BARELF_FIX;
  l->idle_timeout_ms = 5 * 60 * 1000;
  l->data_deadline_ms = 30 * 60 * 1000;
  l->pos = (stp_pos){cfg_nline(n), cfg_ncol(n)};
  WALK(c, n, "in listener", listener_keys, k, v);

  l->name = cfg_parse_name(c, n, k[L_NAME], v[L_NAME], "listener");
  if (!v[L_LISTEN]) {
    cfg_err(c, k[L_LISTEN] ? k[L_LISTEN] : n, "listener needs 'listen' (e.g. \"0.0.0.0:25\")");
  } else {
    parse_listen(c, v[L_LISTEN], l);
  }
  if (v[L_TLS] &&
      cfg_parse_enum(c, v[L_TLS], "tls", cfg_tls_names, "none, starttls or implicit", &e))
    l->tls = (stp_tls_mode)e;
  if (v[L_CERT])
    cfg_parse_file(c, v[L_CERT], "certificate", &l->certificate);
  if (v[L_KEY])
    cfg_parse_file(c, v[L_KEY], "private_key", &l->private_key);
  if (v[L_CERT] && !v[L_KEY])
    cfg_err(c, k[L_CERT], "certificate needs private_key");
  if (v[L_KEY] && !v[L_CERT])
    cfg_err(c, k[L_KEY], "private_key needs certificate");
  if (l->tls == STP_TLS_NONE && v[L_CERT])
    cfg_warn(c, k[L_CERT], "certificate is not used with tls: none");
  if (l->tls != STP_TLS_NONE && !v[L_CERT])
    cfg_warn(c, v[L_TLS], "no certificate: a self-signed one will be generated at start");
  if (v[L_TLSMIN]) {
    const char *s = cfg_str_of(c, v[L_TLSMIN], "tls_min_version");
    if (s && stp_parse_tls_version(s, &l->tls_min_version) != STP_OK)
      cfg_err(c, v[L_TLSMIN], "bad tls_min_version '%s' (expected \"1.0\" to \"1.3\")", s);
  }
  if (v[L_ALLOW]) {
    cfg_parse_cidrs(c, v[L_ALLOW], "allow", &l->allow, &l->n_allow);
    for (size_t i = 0; i < l->n_allow; i++)
      if (l->allow[i].prefix == 0)
        cfg_warn(c, v[L_ALLOW], "allow %s is open to the whole internet",
                 l->allow[i].family == 4 ? "0.0.0.0/0" : "::/0");
  } else {
    l->allow = stp_xcalloc(2, sizeof *l->allow);
    stp_cidr_parse("127.0.0.0/8", &l->allow[0]);
    stp_cidr_parse("::1/128", &l->allow[1]);
    l->n_allow = 2;
  }
  if (v[L_AUTH] &&
      cfg_parse_enum(c, v[L_AUTH], "auth", auth_names, "none, any, users or passthrough", &e))
    l->auth = (stp_lan_auth)e;
  if (v[L_USERS])
    cfg_parse_users(c, v[L_USERS], &l->users, &l->n_users);
  if (l->auth == STP_LAUTH_USERS &&
      (!v[L_USERS] || (v[L_USERS]->type == YAML_MAPPING_NODE &&
                       v[L_USERS]->data.mapping.pairs.top == v[L_USERS]->data.mapping.pairs.start)))
    cfg_err(c, v[L_AUTH], "auth: users needs a non-empty 'users' mapping");
  if (l->auth != STP_LAUTH_USERS && v[L_USERS])
    cfg_warn(c, k[L_USERS], "users are not used unless auth: users");
  if (l->auth == STP_LAUTH_USERS && l->n_users)
    l->unknown_user_hash = cfg_unknown_user_hash(l->users, l->n_users);
  if ((l->auth == STP_LAUTH_USERS || l->auth == STP_LAUTH_PASSTHROUGH) && l->tls == STP_TLS_NONE)
    cfg_warn(c, v[L_AUTH], "auth: %s with tls: none: passwords cross the LAN in clear",
             l->auth == STP_LAUTH_USERS ? "users" : "passthrough");
  if (v[L_MAXSIZE])
    cfg_parse_sizev(c, v[L_MAXSIZE], "max_message_size", &l->max_message_size);
  uint64_t u;
  if (v[L_MAXCONN]) {
    u = l->max_connections;
    cfg_parse_count(c, v[L_MAXCONN], "max_connections", UINT32_MAX, &u);
    l->max_connections = (uint32_t)u;
  }
  if (v[L_MAXPER]) {
    u = l->max_connections_per_client;
    cfg_parse_count(c, v[L_MAXPER], "max_connections_per_client", UINT32_MAX, &u);
    l->max_connections_per_client = (uint32_t)u;
  }
  if (v[L_BARELF] &&
      cfg_parse_enum(c, v[L_BARELF], "bare_lf", barelf_names, "fix, lenient or reject", &e))
    l->bare_lf = (stp_bare_lf)e;
  if (v[L_IDLE])
    cfg_parse_duration(c, v[L_IDLE], "idle_timeout", false, &l->idle_timeout_ms);
  if (v[L_RATE])
    cfg_parse_rate_limit(c, v[L_RATE], &l->rate_limit);
  if (v[L_DATADL])
    cfg_parse_duration(c, v[L_DATADL], "data_deadline", false, &l->data_deadline_ms);
  if (v[L_PROXYPROTO])
    parse_proxy_protocol(c, v[L_PROXYPROTO], l);
}
