/* config.c - libyaml -> stp_config, every value validated where it is written.
 *
 * Owns: the YAML schema of SPEC.md, its defaults, and the diagnostics that
 * point back at the file ("FILE:LINE:COL: error: text", 1-based). Guarantees:
 * - a config is returned only when no error was found; then every route
 *   names existing upstreams/listeners and every listener has addresses;
 * - unknown keys, duplicate keys and wrong types are errors, never ignored;
 *   after one the walk goes on, so one --check shows most problems at once;
 *   the diagnostics of one load are sorted by position;
 * - secret values (passwords, tokens, user hashes) never appear in a
 *   diagnostic; they are cleansed from memory by stp_config_free, and the
 *   file text and libyaml's copies of it that a load can reach are
 *   cleansed when the load ends (config.h says which);
 * - relative paths (certificate, private_key, ca_file, password_file,
 *   token_file) are resolved against the directory of the config FILE for
 *   stp_config_load, and made absolute, so that the proxy may be started
 *   from anywhere and SIGHUP reloads find the same files. For
 *   stp_config_load_string there is no file, so they are kept as written
 *   and thus resolve against the current directory.
 * No sockets; files are only opened to check them and to read secrets.
 * The value parsers and the diagnostics machinery live in config_values.c;
 * an upstream's `auth:` mapping (secret sources, oauth2, token_command) and
 * the reading of secrets live in config_auth.c; this file owns the rest of
 * the schema walk, path resolution and file checks, and loading.
 */
#include "smtp-tls-proxy/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "config_admin.h"
#include "config_alerts.h"
#include "config_file.h"
#include "config_listener.h"
#include "config_spool.h"
#include "config_upstream.h"
#include "config_values.h"
#include "smtp-tls-proxy/lanauth.h"
#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/util.h"

#define CONFIG_MAX_BYTES (4u * 1024 * 1024) /* a config file, not a mailbox */

/* Which load a token source came from: the token cache adopts secrets
 * (a client secret, a refresh token put back by hand) only from a load
 * newer than the one it last saw, so an old generation still serving
 * sessions after SIGHUP never undoes a reload. Each load takes the next
 * number into cfg_ctx.load_seq. */
static unsigned long g_load_seq;

/* ------------------------------------------------------------------------ */
/* Routes                                                                    */

/* clang-format off */
enum { R_NAME, R_MATCH, R_UPSTREAM, R_REWRITE, R_RATE, R_ONFAIL, R_N };
static const char *const route_keys[R_N] = {
  [R_NAME] = "name", [R_MATCH] = "match", [R_UPSTREAM] = "upstream", [R_REWRITE] = "rewrite",
  [R_RATE] = "rate_limit", [R_ONFAIL] = "on_upstream_failure"};
enum { M_LISTENER, M_CLIENT, M_AUTHUSER, M_FROM, M_RCPT, M_N };
static const char *const match_keys[M_N] = {
  [M_LISTENER] = "listener", [M_CLIENT] = "client", [M_AUTHUSER] = "auth_user",
  [M_FROM] = "mail_from", [M_RCPT] = "rcpt_to"};
enum { W_FROM, W_HEADER, W_N };
static const char *const rewrite_keys[W_N] = {[W_FROM] = "mail_from", [W_HEADER] = "header_from"};
/* clang-format on */

static ssize_t find_listener(const stp_config *cfg, const char *name) {
  for (size_t i = 0; i < cfg->n_listeners; i++)
    if (cfg->listeners[i].name && strcmp(cfg->listeners[i].name, name) == 0)
      return (ssize_t)i;
  return -1;
}

static ssize_t find_upstream(const stp_config *cfg, const char *name) {
  for (size_t i = 0; i < cfg->n_upstreams; i++)
    if (cfg->upstreams[i].name && strcmp(cfg->upstreams[i].name, name) == 0)
      return (ssize_t)i;
  return -1;
}

static void parse_match(cfg_ctx *c, yaml_node_t *n, stp_route_cfg *r) {
  yaml_node_t *k[M_N], *v[M_N];
  WALK(c, n, "in route match", match_keys, k, v);
  if (v[M_LISTENER] && cfg_expect_list(c, v[M_LISTENER], "listener", true)) {
    size_t cnt = cfg_list_len(v[M_LISTENER]);
    if (cnt == 0)
      cfg_err(c, v[M_LISTENER], "'listener' is empty; leave it out to match anything");
    r->match_listener.v = stp_xcalloc(cnt ? cnt : 1, sizeof(char *));
    for (size_t i = 0; i < cnt; i++) {
      yaml_node_t *it = cfg_list_item(c, v[M_LISTENER], i);
      const char *s =
          cfg_scalar_text(c, it, "listener", v[M_LISTENER]->type == YAML_SEQUENCE_NODE, false);
      if (s && find_listener(c->cfg, s) < 0)
        cfg_err(c, it, "unknown listener '%s'", s);
      else if (s)
        r->match_listener.v[r->match_listener.n++] = stp_xstrdup(s);
    }
  }
  if (v[M_CLIENT])
    cfg_parse_cidrs(c, v[M_CLIENT], "client", &r->match_client, &r->n_match_client);
  if (v[M_AUTHUSER])
    cfg_parse_strlist(c, v[M_AUTHUSER], "auth_user", &r->match_auth_user);
  if (v[M_FROM])
    cfg_parse_strlist(c, v[M_FROM], "mail_from", &r->match_mail_from);
  if (v[M_RCPT])
    cfg_parse_strlist(c, v[M_RCPT], "rcpt_to", &r->match_rcpt_to);
}

static bool valid_address(const char *s) {
  const char *at = strrchr(s, '@');
  if (!at || at == s || !at[1])
    return false;
  for (; *s; s++)
    if (*s == ' ' || *s == '<' || *s == '>')
      return false;
  return true;
}

/* defer | spool; the spool rules are checked once every section is read
 * (cfg_check_spool_routes). */
static void parse_on_failure(cfg_ctx *c, yaml_node_t *n, stp_route_cfg *r) {
  static const char *const names[] = {"defer", "spool", NULL};
  int e;
  if (cfg_parse_enum(c, n, "on_upstream_failure", names, "defer or spool", &e)) {
    r->spool = e == 1;
    r->spool_pos = (stp_pos){cfg_nline(n), cfg_ncol(n)};
  }
}

static void parse_route(cfg_ctx *c, yaml_node_t *n, stp_route_cfg *r) {
  yaml_node_t *k[R_N], *v[R_N];
  r->pos = (stp_pos){cfg_nline(n), cfg_ncol(n)};
  WALK(c, n, "in route", route_keys, k, v);
  r->name = cfg_parse_name(c, n, k[R_NAME], v[R_NAME], "route");
  if (v[R_MATCH] && cfg_expect_map(c, v[R_MATCH], "match"))
    parse_match(c, v[R_MATCH], r);
  if (!v[R_UPSTREAM]) {
    cfg_err(c, k[R_UPSTREAM] ? k[R_UPSTREAM] : n, "route needs an upstream");
  } else if (cfg_expect_list(c, v[R_UPSTREAM], "upstream", true)) {
    size_t cnt = cfg_list_len(v[R_UPSTREAM]);
    if (cnt == 0)
      cfg_err(c, v[R_UPSTREAM], "route needs an upstream");
    r->upstreams = stp_xcalloc(cnt ? cnt : 1, sizeof *r->upstreams);
    for (size_t i = 0; i < cnt; i++) {
      yaml_node_t *it = cfg_list_item(c, v[R_UPSTREAM], i);
      const char *s =
          cfg_scalar_text(c, it, "upstream", v[R_UPSTREAM]->type == YAML_SEQUENCE_NODE, false);
      ssize_t idx = s ? find_upstream(c->cfg, s) : -1;
      if (s && idx < 0) {
        cfg_err(c, it, "unknown upstream '%s'", s);
        continue;
      }
      if (!s)
        continue;
      for (size_t j = 0; j < r->n_upstreams; j++)
        if (r->upstreams[j] == (size_t)idx)
          cfg_warn(c, it, "upstream '%s' is listed twice", s);
      r->upstreams[r->n_upstreams++] = (size_t)idx;
    }
  }
  if (v[R_REWRITE] && cfg_expect_map(c, v[R_REWRITE], "rewrite")) {
    yaml_node_t *wk[W_N], *wv[W_N];
    WALK(c, v[R_REWRITE], "in route rewrite", rewrite_keys, wk, wv);
    const char *s;
    if (wv[W_FROM] && (s = cfg_nonempty(c, wv[W_FROM], "mail_from")) != NULL) {
      if (!valid_address(s))
        cfg_err(c, wv[W_FROM], "bad address '%s' for rewrite mail_from (expected user@domain)", s);
      else
        r->rewrite_mail_from = stp_xstrdup(s);
    }
    if (wv[W_HEADER] && (s = cfg_nonempty(c, wv[W_HEADER], "header_from")) != NULL) {
      if (!strchr(s, '@'))
        cfg_err(c, wv[W_HEADER], "bad header_from '%s' (expected an address)", s);
      else
        r->rewrite_header_from = stp_xstrdup(s);
    }
  }
  if (v[R_RATE])
    cfg_parse_rate_limit(c, v[R_RATE], &r->rate_limit);
  if (v[R_ONFAIL])
    parse_on_failure(c, v[R_ONFAIL], r);
}

static bool route_matches_all(const stp_route_cfg *r) {
  return !r->match_listener.n && !r->n_match_client && !r->match_auth_user.n &&
         !r->match_mail_from.n && !r->match_rcpt_to.n;
}

/* ------------------------------------------------------------------------ */
/* Top level                                                                 */

/* clang-format off */
enum { T_HOSTNAME, T_LOG, T_METRICS, T_GRACE, T_LISTENERS, T_UPSTREAMS, T_ROUTES, T_SPOOL,
       T_ALERTS, T_ADMIN, T_N };
static const char *const top_keys[T_N] = {
  [T_HOSTNAME] = "hostname", [T_LOG] = "log", [T_METRICS] = "metrics",
  [T_GRACE] = "shutdown_grace", [T_LISTENERS] = "listeners", [T_UPSTREAMS] = "upstreams",
  [T_ROUTES] = "routes", [T_SPOOL] = "spool", [T_ALERTS] = "alerts", [T_ADMIN] = "admin"};
/* clang-format on */

static int log_level_of(const char *s) {
  if (!stp_ascii_casecmp(s, "error"))
    return STP_LOG_ERROR;
  if (!stp_ascii_casecmp(s, "warn") || !stp_ascii_casecmp(s, "warning"))
    return STP_LOG_WARN;
  if (!stp_ascii_casecmp(s, "info"))
    return STP_LOG_INFO;
  if (!stp_ascii_casecmp(s, "debug"))
    return STP_LOG_DEBUG;
  return -1;
}

static void parse_log(cfg_ctx *c, yaml_node_t *n) {
  static const char *const log_keys[] = {"level", "format"};
  static const char *const fmt_names[] = {"text", "json", NULL};
  yaml_node_t *k[2], *v[2];
  int e;
  if (!cfg_expect_map(c, n, "log"))
    return;
  WALK(c, n, "in log", log_keys, k, v);
  const char *s;
  if (v[0] && (s = cfg_str_of(c, v[0], "level")) != NULL) {
    if ((e = log_level_of(s)) < 0)
      cfg_err(c, v[0], "bad level '%s' (expected error, warn, info or debug)", s);
    else
      c->cfg->log_level = e;
  }
  if (v[1] && cfg_parse_enum(c, v[1], "format", fmt_names, "text or json", &e))
    c->cfg->log_format = (stp_log_format)e;
}

static void parse_metrics(cfg_ctx *c, yaml_node_t *n) {
  static const char *const metrics_keys[] = {"listen"};
  yaml_node_t *k[1], *v[1];
  if (!cfg_expect_map(c, n, "metrics"))
    return;
  WALK(c, n, "in metrics", metrics_keys, k, v);
  const char *s;
  if (!v[0])
    cfg_err(c, k[0] ? k[0] : n, "metrics needs 'listen' (e.g. \"127.0.0.1:9587\")");
  else if ((s = cfg_str_of(c, v[0], "listen")) != NULL &&
           cfg_parse_bind_addr(c, v[0], "metrics", s))
    c->cfg->metrics_listen = stp_xstrdup(s);
}

/* A list of mappings; returns its length (0 and an error when missing). */
static size_t section_len(cfg_ctx *c, yaml_node_t *root, yaml_node_t *kn, yaml_node_t *vn,
                          const char *key, const char *what) {
  if (vn && !cfg_expect_list(c, vn, key, false))
    return 0;
  size_t cnt = vn ? cfg_list_len(vn) : 0;
  if (cnt == 0)
    cfg_err(c, vn ? vn : kn ? kn : root, "at least one %s is required in '%s'", what, key);
  return cnt;
}

static void check_unique(cfg_ctx *c, const char *kind, size_t n,
                         const char *(*name_of)(const stp_config *, size_t),
                         const stp_pos *(*pos_of)(const stp_config *, size_t)) {
  for (size_t i = 0; i < n; i++) {
    const char *a = name_of(c->cfg, i);
    for (size_t j = 0; a && j < i; j++) {
      const char *b = name_of(c->cfg, j);
      if (b && strcmp(a, b) == 0) {
        const stp_pos *pi = pos_of(c->cfg, i), *pj = pos_of(c->cfg, j);
        cfg_err_at(c, pi->line, pi->col, "duplicate %s name '%s' (first at line %u)", kind, a,
                   pj->line);
        break;
      }
    }
  }
}

static const char *lname(const stp_config *cfg, size_t i) {
  return cfg->listeners[i].name;
}
static const char *uname(const stp_config *cfg, size_t i) {
  return cfg->upstreams[i].name;
}
static const char *rname(const stp_config *cfg, size_t i) {
  return cfg->routes[i].name;
}
static const stp_pos *lpos(const stp_config *cfg, size_t i) {
  return &cfg->listeners[i].pos;
}
static const stp_pos *upos(const stp_config *cfg, size_t i) {
  return &cfg->upstreams[i].pos;
}
static const stp_pos *rpos(const stp_config *cfg, size_t i) {
  return &cfg->routes[i].pos;
}

static void parse_sections(cfg_ctx *c, yaml_node_t *root, yaml_node_t **k, yaml_node_t **v) {
  stp_config *cfg = c->cfg;
  yaml_node_t *seq;
  size_t cnt;

  cnt = section_len(c, root, k[T_LISTENERS], v[T_LISTENERS], "listeners", "listener");
  seq = v[T_LISTENERS];
  cfg->listeners = stp_xcalloc(cnt ? cnt : 1, sizeof *cfg->listeners);
  cfg->n_listeners = cnt;
  for (size_t i = 0; i < cnt; i++) {
    yaml_node_t *it = cfg_list_item(c, seq, i);
    cfg->listeners[i].pos = (stp_pos){cfg_nline(it), cfg_ncol(it)};
    if (it->type != YAML_MAPPING_NODE)
      cfg_err(c, it, "expected a mapping in 'listeners', not %s", cfg_kind_of(it));
    else
      cfg_parse_listener(c, it, &cfg->listeners[i]);
  }
  check_unique(c, "listener", cnt, lname, lpos);

  cnt = section_len(c, root, k[T_UPSTREAMS], v[T_UPSTREAMS], "upstreams", "upstream");
  seq = v[T_UPSTREAMS];
  cfg->upstreams = stp_xcalloc(cnt ? cnt : 1, sizeof *cfg->upstreams);
  cfg->n_upstreams = cnt;
  for (size_t i = 0; i < cnt; i++) {
    yaml_node_t *it = cfg_list_item(c, seq, i);
    cfg->upstreams[i].pos = (stp_pos){cfg_nline(it), cfg_ncol(it)};
    if (it->type != YAML_MAPPING_NODE)
      cfg_err(c, it, "expected a mapping in 'upstreams', not %s", cfg_kind_of(it));
    else
      cfg_parse_upstream(c, it, &cfg->upstreams[i]);
  }
  check_unique(c, "upstream", cnt, uname, upos);

  cnt = section_len(c, root, k[T_ROUTES], v[T_ROUTES], "routes", "route");
  seq = v[T_ROUTES];
  cfg->routes = stp_xcalloc(cnt ? cnt : 1, sizeof *cfg->routes);
  cfg->n_routes = cnt;
  for (size_t i = 0; i < cnt; i++) {
    yaml_node_t *it = cfg_list_item(c, seq, i);
    cfg->routes[i].pos = (stp_pos){cfg_nline(it), cfg_ncol(it)};
    if (it->type != YAML_MAPPING_NODE)
      cfg_err(c, it, "expected a mapping in 'routes', not %s", cfg_kind_of(it));
    else
      parse_route(c, it, &cfg->routes[i]);
  }
  check_unique(c, "route", cnt, rname, rpos);
  for (size_t i = 0; i + 1 < cnt; i++) {
    if (!route_matches_all(&cfg->routes[i]) || !cfg->routes[i].name)
      continue;
    for (size_t j = i + 1; j < cnt; j++)
      cfg_warn(c, cfg_list_item(c, seq, j),
               "route '%s' is never used: route '%s' matches everything",
               cfg->routes[j].name ? cfg->routes[j].name : "?", cfg->routes[i].name);
    break;
  }
}

static void parse_root(cfg_ctx *c, yaml_node_t *root) {
  stp_config *cfg = c->cfg;
  yaml_node_t *k[T_N], *v[T_N];
  char host[256];

  cfg->log_level = STP_LOG_INFO;
  cfg->log_format = STP_LOG_TEXT;
  cfg->shutdown_grace_ms = 30 * 1000;
  if (root->type != YAML_MAPPING_NODE) {
    cfg_err(c, root, "expected a mapping at top level, not %s", cfg_kind_of(root));
    return;
  }
  WALK(c, root, "at top level", top_keys, k, v);
  if (v[T_HOSTNAME]) {
    const char *s = cfg_nonempty(c, v[T_HOSTNAME], "hostname");
    if (s && (strchr(s, ' ') || strlen(s) > 255))
      cfg_err(c, v[T_HOSTNAME], "bad hostname '%s'", s);
    else if (s)
      cfg->hostname = stp_xstrdup(s);
  }
  if (!cfg->hostname) {
    if (gethostname(host, sizeof host) != 0 || !host[0])
      snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    cfg->hostname = stp_xstrdup(host);
  }
  if (v[T_LOG])
    parse_log(c, v[T_LOG]);
  if (v[T_METRICS])
    parse_metrics(c, v[T_METRICS]);
  if (v[T_GRACE])
    cfg_parse_duration(c, v[T_GRACE], "shutdown_grace", true, &cfg->shutdown_grace_ms);
  if (v[T_SPOOL])
    cfg_parse_spool(c, v[T_SPOOL]);
  if (v[T_ADMIN])
    cfg_parse_admin(c, v[T_ADMIN]);
  parse_sections(c, root, k, v);
  cfg_check_spool_routes(c);
  if (v[T_ALERTS])
    cfg_parse_alerts(c, v[T_ALERTS]);
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                   */

static stp_config_wipe_fn g_wipe_observer;

void stp_config_set_wipe_observer(stp_config_wipe_fn fn) {
  g_wipe_observer = fn;
}

/* n bytes at p held configuration text: cleanse them (see config.h). */
static void wipe(const char *what, void *p, size_t n) {
  if (!p || !n)
    return;
  stp_cleanse(p, n);
  if (g_wipe_observer)
    g_wipe_observer(what, p, n);
}

/* Every scalar, keys included: inline password:, users: hashes, ... */
static void wipe_document(yaml_document_t *doc) {
  for (yaml_node_t *n = doc->nodes.start; n && n < doc->nodes.top; n++)
    if (n->type == YAML_SCALAR_NODE)
      wipe("yaml-scalar", n->data.scalar.value, n->data.scalar.length);
}

/* libyaml's copies of the input (raw bytes and decoded characters; the
 * allocation runs from start to end) and tokens not yet consumed, as they
 * stand when a load ended or failed. */
static void wipe_parser(yaml_parser_t *p) {
  wipe("yaml-buffer", p->buffer.start, (size_t)(p->buffer.end - p->buffer.start));
  wipe("yaml-raw", p->raw_buffer.start, (size_t)(p->raw_buffer.end - p->raw_buffer.start));
  for (yaml_token_t *t = p->tokens.head; t && t < p->tokens.tail; t++)
    if (t->type == YAML_SCALAR_TOKEN)
      wipe("yaml-token", t->data.scalar.value, t->data.scalar.length);
}

static void yaml_error(cfg_ctx *c, const yaml_parser_t *p) {
  unsigned line = (unsigned)p->problem_mark.line + 1, col = (unsigned)p->problem_mark.column + 1;
  const char *problem = p->problem ? p->problem : "cannot parse";
  if (p->error == YAML_READER_ERROR) {
    /* The reader reports a byte offset, not a mark. */
    line = col = 1;
    for (size_t i = 0; i < p->problem_offset && i < c->srclen; i++) {
      if (c->src[i] == '\n') {
        line++;
        col = 1;
      } else {
        col++;
      }
    }
  }
  if (p->error == YAML_MEMORY_ERROR)
    cfg_err_at(c, 0, 0, "out of memory while parsing YAML");
  else if (p->context)
    cfg_err_at(c, line, col, "YAML: %s (%s at %u:%u)", problem, p->context,
               (unsigned)p->context_mark.line + 1, (unsigned)p->context_mark.column + 1);
  else
    cfg_err_at(c, line, col, "YAML: %s", problem);
}

static void free_strlist(stp_strlist *l) {
  for (size_t i = 0; i < l->n; i++)
    free(l->v[i]);
  free(l->v);
}

void stp_config_free(stp_config *cfg) {
  if (!cfg)
    return;
  for (size_t i = 0; i < cfg->n_listeners; i++) {
    stp_listener_cfg *l = &cfg->listeners[i];
    free(l->name);
    free_strlist(&l->listen);
    free(l->certificate);
    free(l->private_key);
    free(l->allow);
    free(l->proxy_protocol);
    for (size_t j = 0; j < l->n_users; j++) {
      free(l->users[j].name);
      stp_free_secret(l->users[j].hash);
    }
    free(l->users);
    free(l->rate_limit);
  }
  free(cfg->listeners);
  for (size_t i = 0; i < cfg->n_upstreams; i++) {
    stp_upstream_cfg *u = &cfg->upstreams[i];
    free(u->name);
    free(u->host);
    free(u->server_name);
    free(u->ca_file);
    free(u->helo);
    free(u->username);
    free(u->mailbox);
    free(u->api_url);
    stp_free_secret(u->secret);
    stp_oauth2_cfg *o = u->token_src;
    if (o) {
      free(o->token_url);
      free(o->client_id);
      stp_free_secret(o->client_secret);
      free(o->refresh_token_file);
      stp_free_secret(o->refresh_token);
      free(o->scope);
      free(o->ca_file);
      free(o->authorization_url);
      free(o->device_authorization_url);
      free_strlist(&o->command);
      free(o->subject);
      free(o->sa_email);
      free(o->sa_key_id);
      free(o->key_file);
      stp_free_secret(o->private_key);
      free(o->certificate);
      free(o);
    }
  }
  free(cfg->upstreams);
  for (size_t i = 0; i < cfg->n_routes; i++) {
    stp_route_cfg *r = &cfg->routes[i];
    free(r->name);
    free_strlist(&r->match_listener);
    free(r->match_client);
    free_strlist(&r->match_auth_user);
    free_strlist(&r->match_mail_from);
    free_strlist(&r->match_rcpt_to);
    free(r->upstreams);
    free(r->rewrite_mail_from);
    free(r->rewrite_header_from);
    free(r->rate_limit);
  }
  free(cfg->routes);
  cfg_free_spool(cfg->spool);
  cfg_free_alerts(cfg->alerts);
  cfg_free_admin(cfg->admin);
  free(cfg->path);
  free(cfg->hostname);
  free(cfg->metrics_listen);
  free(cfg);
}

static int load_buffer(const char *name, const char *base, const char *yaml, size_t len,
                       stp_config **out, stp_diag *diag, bool no_secrets) {
  cfg_ctx c;
  yaml_parser_t parser;
  yaml_document_t doc;
  memset(&c, 0, sizeof c);
  c.no_secrets = no_secrets;
  c.file = name;
  c.base = base;
  c.src = yaml;
  c.srclen = len;
  c.doc = &doc;
  c.load_seq = ++g_load_seq;
  *out = NULL;

  if (!yaml_parser_initialize(&parser)) {
    cfg_err_at(&c, 0, 0, "out of memory while parsing YAML");
    cfg_flush_diags(&c, diag);
    return STP_ENOMEM;
  }
  yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
  if (!yaml_parser_load(&parser, &doc)) {
    yaml_error(&c, &parser);
    wipe_parser(&parser);
    yaml_parser_delete(&parser);
    cfg_flush_diags(&c, diag);
    return STP_ESYNTAX;
  }
  c.cfg = stp_xcalloc(1, sizeof *c.cfg);
  c.cfg->path = stp_xstrdup(name);
  yaml_node_t *root = yaml_document_get_root_node(&doc);
  if (!root) {
    cfg_err_at(&c, 1, 1, "the configuration is empty");
  } else {
    parse_root(&c, root);
    /* A second document would be silently ignored by yaml_parser_load. */
    yaml_document_t next;
    if (!yaml_parser_load(&parser, &next)) {
      yaml_error(&c, &parser);
    } else {
      yaml_node_t *r2 = yaml_document_get_root_node(&next);
      if (r2)
        cfg_err_at(&c, (unsigned)next.start_mark.line + 1, (unsigned)next.start_mark.column + 1,
                   "only one YAML document is allowed");
      wipe_document(&next);
      yaml_document_delete(&next);
    }
  }
  wipe_document(&doc);
  yaml_document_delete(&doc);
  wipe_parser(&parser);
  yaml_parser_delete(&parser);

  bool failed = c.n_errors > 0;
  cfg_flush_diags(&c, diag);
  if (failed) {
    stp_config_free(c.cfg);
    return STP_ESYNTAX;
  }
  *out = c.cfg;
  return STP_OK;
}

int stp_config_load_string(const char *name, const char *yaml, size_t len, stp_config **out,
                           stp_diag *diag) {
  return load_buffer(name, NULL, yaml, len, out, diag, false);
}

/* The absolute directory holding `path` (symlinks are not resolved: the
 * files sit next to the name the administrator gave). */
static char *config_dir(const char *path) {
  const char *slash = strrchr(path, '/');
  char cwd[PATH_MAX];
  if (slash == path)
    return stp_xstrdup("/");
  char *dir = slash ? stp_xstrndup(path, (size_t)(slash - path)) : stp_xstrdup(".");
  if (dir[0] == '/' || !getcwd(cwd, sizeof cwd))
    return dir;
  const char *rel = dir;
  while (rel[0] == '.' && rel[1] == '/')
    rel += 2;
  size_t need = strlen(cwd) + strlen(rel) + 2;
  char *abs = stp_xmalloc(need);
  if (strcmp(rel, ".") == 0)
    snprintf(abs, need, "%s", cwd);
  else
    snprintf(abs, need, "%s%s%s", cwd, strcmp(cwd, "/") ? "/" : "", rel);
  free(dir);
  return abs;
}

static void file_diag(stp_diag *diag, const char *path, const char *problem) {
  size_t need = strlen(path) + strlen(problem) + 32;
  char *line = stp_xmalloc(need);
  snprintf(line, need, "%s: error: cannot read: %s", path, problem);
  if (!diag) {
    free(line);
    return;
  }
  diag->lines = stp_xrealloc(diag->lines, (diag->n + 1) * sizeof *diag->lines);
  diag->lines[diag->n++] = line;
  diag->n_errors++;
}

/* Reads fd to its end into *buf (*cap bytes, grown when the file grew
 * while it was read) and sets *len. Returns NULL, or what went wrong. A
 * buffer outgrown is cleansed before it is freed: realloc would leave the
 * text behind in the old block. */
static const char *read_text(int fd, char **buf, size_t *cap, size_t *len) {
  *len = 0;
  for (;;) {
    ssize_t r = read(fd, *buf + *len, *cap - *len);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return strerror(errno);
    if (r == 0)
      return NULL;
    *len += (size_t)r;
    if (*len == *cap) {
      if (*cap > CONFIG_MAX_BYTES)
        return "larger than 4 MiB";
      char *bigger = stp_xmalloc(*cap * 2);
      memcpy(bigger, *buf, *len);
      wipe("file", *buf, *cap);
      free(*buf);
      *buf = bigger;
      *cap *= 2;
    }
  }
}

static int load_file(const char *path, stp_config **out, stp_diag *diag, bool no_secrets) {
  struct stat st;
  memset(&st, 0, sizeof st);
  *out = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    file_diag(diag, path, strerror(errno));
    return STP_EIO;
  }
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (off_t)CONFIG_MAX_BYTES) {
    bool big = S_ISREG(st.st_mode) && st.st_size > (off_t)CONFIG_MAX_BYTES;
    file_diag(diag, path, big ? "larger than 4 MiB" : "not a regular file");
    close(fd);
    return STP_EIO;
  }
  size_t cap = (size_t)st.st_size + 1, len;
  char *buf = stp_xmalloc(cap);
  const char *problem = read_text(fd, &buf, &cap, &len);
  close(fd);
  if (problem) {
    file_diag(diag, path, problem);
    wipe("file", buf, cap);
    free(buf);
    return STP_EIO;
  }
  char *base = config_dir(path);
  int rc = load_buffer(path, base, buf, len, out, diag, no_secrets);
  free(base);
  wipe("file", buf, cap);
  free(buf);
  return rc;
}

int stp_config_load(const char *path, stp_config **out, stp_diag *diag) {
  return load_file(path, out, diag, false);
}

int stp_config_load_layout(const char *path, stp_config **out, stp_diag *diag) {
  return load_file(path, out, diag, true);
}

const stp_listener_cfg *stp_config_listener(const stp_config *c, const char *name) {
  ssize_t i = c && name ? find_listener(c, name) : -1;
  return i < 0 ? NULL : &c->listeners[i];
}

const stp_upstream_cfg *stp_config_upstream(const stp_config *c, const char *name) {
  ssize_t i = c && name ? find_upstream(c, name) : -1;
  return i < 0 ? NULL : &c->upstreams[i];
}
