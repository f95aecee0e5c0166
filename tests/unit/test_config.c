/* test_config.c - YAML schema, defaults, diagnostics (byte-exact, with
 * line:column), secrets, path resolution and the value parsers. */
#include <criterion/criterion.h>
#include <crypt.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "smtp-tls-proxy/config.h"
#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/util.h"

/* ---- helpers ------------------------------------------------------------ */

static stp_diag D;
static char *joined;

/* All diagnostics of the last load, one per line. */
static const char *diags(void) {
  size_t len = 1;
  for (size_t i = 0; i < D.n; i++)
    len += strlen(D.lines[i]) + 1;
  free(joined);
  joined = calloc(1, len);
  for (size_t i = 0; i < D.n; i++) {
    if (i)
      strcat(joined, "\n");
    strcat(joined, D.lines[i]);
  }
  return joined;
}

static void reset(void) {
  stp_diag_free(&D);
  free(joined);
  joined = NULL;
}

static stp_config *load(const char *yaml) {
  stp_config *cfg = (stp_config *)1;
  reset();
  int rc = stp_config_load_string("t.yaml", yaml, strlen(yaml), &cfg, &D);
  if (rc == STP_OK) {
    cr_assert_not_null(cfg);
    cr_assert_eq(D.n_errors, 0);
  } else {
    cr_assert_null(cfg, "a failed load must not return a config");
    cr_assert_gt(D.n_errors, 0, "a failed load must say why");
  }
  cr_assert_eq(D.n, D.n_errors + D.n_warnings);
  return cfg;
}

/* Loads a config that must fail with exactly `expected` as diagnostics. */
static void fails_with(const char *yaml, const char *expected) {
  stp_config *cfg = load(yaml);
  cr_assert_null(cfg);
  cr_assert_str_eq(diags(), expected);
  reset();
}

/* Loads a config that must succeed with exactly `expected` diagnostics. */
static stp_config *loads_with(const char *yaml, const char *expected) {
  stp_config *cfg = load(yaml);
  cr_assert_not_null(cfg, "load failed: %s", diags());
  cr_assert_str_eq(diags(), expected);
  return cfg;
}

static void done(stp_config *cfg) {
  stp_config_free(cfg);
  reset();
}

#define LST "listeners:\n  - name: lan\n    listen: \":0\"\n"
#define UPS "upstreams:\n  - name: up\n    host: smtp.example.com\n"
#define RTS "routes:\n  - name: all\n    upstream: up\n"
#define MIN LST UPS RTS

static char tmpdir[64]; /* small, so every path built from it is bounded */

static void make_tmpdir(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/stp-config-XXXXXX");
  cr_assert_not_null(mkdtemp(tmpdir));
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(p);
}

static void remove_tmpdir(void) {
  if (tmpdir[0])
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  tmpdir[0] = '\0';
}

/* Writes tmpdir/rel; returns the absolute path in a static rotating buffer. */
static const char *put_file(const char *rel, const char *content, mode_t mode) {
  static char paths[4][256];
  static int next;
  char *p = paths[next++ % 4];
  snprintf(p, sizeof paths[0], "%s/%s", tmpdir, rel);
  int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
  cr_assert_geq(fd, 0, "cannot write %s", p);
  cr_assert_eq(write(fd, content, strlen(content)), (ssize_t)strlen(content));
  close(fd);
  chmod(p, mode);
  return p;
}

static void put_dir(const char *rel) {
  char p[256];
  snprintf(p, sizeof p, "%s/%s", tmpdir, rel);
  cr_assert_eq(mkdir(p, 0700), 0);
}

/* ---- defaults and values ------------------------------------------------ */

Test(config, defaults_filled_in) {
  stp_config *cfg = loads_with("hostname: relay.test\n" MIN, "");
  cr_assert_str_eq(cfg->path, "t.yaml");
  cr_assert_str_eq(cfg->hostname, "relay.test");
  cr_assert_eq(cfg->log_level, STP_LOG_INFO);
  cr_assert_eq(cfg->log_format, STP_LOG_TEXT);
  cr_assert_null(cfg->metrics_listen);
  cr_assert_eq(cfg->shutdown_grace_ms, 30000);

  cr_assert_eq(cfg->n_listeners, 1);
  const stp_listener_cfg *l = &cfg->listeners[0];
  cr_assert_str_eq(l->name, "lan");
  cr_assert_eq(l->listen.n, 1);
  cr_assert_str_eq(l->listen.v[0], ":0");
  cr_assert_eq(l->tls, STP_TLS_NONE);
  cr_assert_null(l->certificate);
  cr_assert_null(l->private_key);
  cr_assert_eq(l->tls_min_version, STP_TLS1_2);
  cr_assert_eq(l->n_allow, 2);
  cr_assert_eq(l->allow[0].family, 4);
  cr_assert_eq(l->allow[0].prefix, 8);
  cr_assert_eq(l->allow[0].addr[0], 127);
  cr_assert_eq(l->allow[1].family, 6);
  cr_assert_eq(l->allow[1].prefix, 128);
  cr_assert_eq(l->allow[1].addr[15], 1);
  cr_assert_eq(l->auth, STP_LAUTH_NONE);
  cr_assert_eq(l->n_users, 0);
  cr_assert_eq(l->max_message_size, 50ull * 1024 * 1024);
  cr_assert_eq(l->max_connections, 200);
  cr_assert_eq(l->max_connections_per_client, 20);
  cr_assert_eq(l->bare_lf, STP_BARELF_FIX);
  cr_assert_eq(l->idle_timeout_ms, 300000);
  cr_assert_null(l->rate_limit);
  cr_assert_eq(l->pos.line, 3);
  cr_assert_eq(l->pos.col, 5);

  cr_assert_eq(cfg->n_upstreams, 1);
  const stp_upstream_cfg *u = &cfg->upstreams[0];
  cr_assert_str_eq(u->name, "up");
  cr_assert_str_eq(u->host, "smtp.example.com");
  cr_assert_eq(u->port, 587);
  cr_assert_eq(u->tls, STP_TLS_STARTTLS);
  cr_assert_str_eq(u->server_name, "smtp.example.com");
  cr_assert_str_eq(u->ca_file, "/etc/ssl/certs/ca-certificates.crt");
  cr_assert_eq(u->tls_min_version, STP_TLS1_2);
  cr_assert(u->verify);
  cr_assert_not(u->insecure);
  cr_assert_str_eq(u->helo, "relay.test");
  cr_assert_not(u->has_auth);
  cr_assert_null(u->username);
  cr_assert_null(u->secret);
  cr_assert_eq(u->connect_timeout_ms, 30000);
  cr_assert_eq(u->command_timeout_ms, 300000);
  cr_assert_eq(u->data_timeout_ms, 600000);

  cr_assert_eq(cfg->n_routes, 1);
  const stp_route_cfg *r = &cfg->routes[0];
  cr_assert_str_eq(r->name, "all");
  cr_assert_eq(r->match_listener.n, 0);
  cr_assert_eq(r->n_match_client, 0);
  cr_assert_eq(r->match_auth_user.n, 0);
  cr_assert_eq(r->match_mail_from.n, 0);
  cr_assert_eq(r->match_rcpt_to.n, 0);
  cr_assert_eq(r->n_upstreams, 1);
  cr_assert_eq(r->upstreams[0], 0);
  cr_assert_null(r->rewrite_mail_from);
  cr_assert_null(r->rewrite_header_from);

  cr_assert_eq(stp_config_listener(cfg, "lan"), l);
  cr_assert_null(stp_config_listener(cfg, "wan"));
  cr_assert_eq(stp_config_upstream(cfg, "up"), u);
  cr_assert_null(stp_config_upstream(cfg, "down"));
  done(cfg);
}

Test(config, hostname_defaults_to_gethostname) {
  char host[256] = "";
  cr_assert_eq(gethostname(host, sizeof host), 0);
  stp_config *cfg = loads_with(MIN, "");
  cr_assert_str_eq(cfg->hostname, host[0] ? host : "localhost");
  cr_assert_str_eq(cfg->upstreams[0].helo, cfg->hostname);
  done(cfg);
}

Test(config, every_value_set) {
  const char *yaml = "hostname: relay.example.lan\n"
                     "log: { level: debug, format: json }\n"
                     "metrics: { listen: \"127.0.0.1:9587\" }\n"
                     "shutdown_grace: 0\n"
                     "listeners:\n"
                     "  - name: lan\n"
                     "    listen: [\"0.0.0.0:25\", \"[::]:2525\"]\n"
                     "    tls: none\n"
                     "    tls_min_version: 1.0\n"
                     "    allow: [\"192.168.0.0/16\", 10.0.0.0/8, \"fd00::/8\"]\n"
                     "    auth: any\n"
                     "    max_message_size: 25MB\n"
                     "    max_connections: 1000\n"
                     "    max_connections_per_client: 3\n"
                     "    bare_lf: reject\n"
                     "    idle_timeout: 90s\n"
                     "    rate_limit: 100/1m\n"
                     "upstreams:\n"
                     "  - name: relay\n"
                     "    host: 192.0.2.25\n"
                     "    port: 2525\n"
                     "    tls: implicit\n"
                     "    server_name: mx.example.com\n"
                     "    tls_min_version: \"1.3\"\n"
                     "    verify: true\n"
                     "    insecure: false\n"
                     "    helo: relay.example.com\n"
                     "    connect_timeout: 250ms\n"
                     "    command_timeout: 1m\n"
                     "    data_timeout: 1h\n"
                     "routes:\n"
                     "  - name: scanners\n"
                     "    match:\n"
                     "      listener: lan\n"
                     "      client: 192.168.1.0/24\n"
                     "      auth_user: [scanner1, scanner2]\n"
                     "      mail_from: [\"*@scanner.local\", \"<>\"]\n"
                     "      rcpt_to: \"*@example.com\"\n"
                     "    upstream: [relay]\n"
                     "    rewrite:\n"
                     "      mail_from: scanner@example.com\n"
                     "      header_from: \"Office Scanner <scanner@example.com>\"\n"
                     "    rate_limit: 10/s\n";
  stp_config *cfg = loads_with(yaml, "");
  cr_assert_eq(cfg->log_level, STP_LOG_DEBUG);
  cr_assert_eq(cfg->log_format, STP_LOG_JSON);
  cr_assert_str_eq(cfg->metrics_listen, "127.0.0.1:9587");
  cr_assert_eq(cfg->shutdown_grace_ms, 0);
  const stp_listener_cfg *l = &cfg->listeners[0];
  cr_assert_eq(l->listen.n, 2);
  cr_assert_str_eq(l->listen.v[0], "0.0.0.0:25");
  cr_assert_str_eq(l->listen.v[1], "[::]:2525");
  cr_assert_eq(l->tls_min_version, STP_TLS1_0);
  cr_assert_eq(l->n_allow, 3);
  cr_assert_eq(l->allow[2].family, 6);
  cr_assert_eq(l->auth, STP_LAUTH_ANY);
  cr_assert_eq(l->max_message_size, 25000000);
  cr_assert_eq(l->max_connections, 1000);
  cr_assert_eq(l->max_connections_per_client, 3);
  cr_assert_eq(l->bare_lf, STP_BARELF_REJECT);
  cr_assert_eq(l->idle_timeout_ms, 90000);
  cr_assert_str_eq(l->rate_limit, "100/1m");
  const stp_upstream_cfg *u = &cfg->upstreams[0];
  cr_assert_str_eq(u->host, "192.0.2.25");
  cr_assert_eq(u->port, 2525);
  cr_assert_eq(u->tls, STP_TLS_IMPLICIT);
  cr_assert_str_eq(u->server_name, "mx.example.com");
  cr_assert_eq(u->tls_min_version, STP_TLS1_3);
  cr_assert_str_eq(u->helo, "relay.example.com");
  cr_assert_eq(u->connect_timeout_ms, 250);
  cr_assert_eq(u->command_timeout_ms, 60000);
  cr_assert_eq(u->data_timeout_ms, 3600000);
  const stp_route_cfg *r = &cfg->routes[0];
  cr_assert_eq(r->match_listener.n, 1);
  cr_assert_str_eq(r->match_listener.v[0], "lan");
  cr_assert_eq(r->n_match_client, 1);
  cr_assert_eq(r->match_client[0].prefix, 24);
  cr_assert_eq(r->match_auth_user.n, 2);
  cr_assert_str_eq(r->match_auth_user.v[1], "scanner2");
  cr_assert_eq(r->match_mail_from.n, 2);
  cr_assert_str_eq(r->match_mail_from.v[1], "<>");
  cr_assert_eq(r->match_rcpt_to.n, 1);
  cr_assert_str_eq(r->match_rcpt_to.v[0], "*@example.com");
  cr_assert_str_eq(r->rewrite_mail_from, "scanner@example.com");
  cr_assert_str_eq(r->rewrite_header_from, "Office Scanner <scanner@example.com>");
  cr_assert_str_eq(r->rate_limit, "10/s");
  done(cfg);
}

Test(config, enums) {
  static const struct {
    const char *yaml;
    int want;
  } lan_tls[] = {{"none", STP_TLS_NONE},
                 {"starttls", STP_TLS_STARTTLS},
                 {"implicit", STP_TLS_IMPLICIT},
                 {"StartTLS", STP_TLS_STARTTLS}};
  char buf[1024];
  for (size_t i = 0; i < sizeof lan_tls / sizeof lan_tls[0]; i++) {
    snprintf(buf, sizeof buf, LST "    tls: %s\n" UPS RTS, lan_tls[i].yaml);
    stp_config *cfg = load(buf);
    cr_assert_not_null(cfg, "%s", diags());
    cr_assert_eq(cfg->listeners[0].tls, (stp_tls_mode)lan_tls[i].want);
    done(cfg);
  }
  static const struct {
    const char *yaml;
    int want;
  } lan_auth[] = {
      {"none", STP_LAUTH_NONE}, {"any", STP_LAUTH_ANY}, {"passthrough", STP_LAUTH_PASSTHROUGH}};
  for (size_t i = 0; i < sizeof lan_auth / sizeof lan_auth[0]; i++) {
    snprintf(buf, sizeof buf, LST "    tls: starttls\n    auth: %s\n" UPS RTS, lan_auth[i].yaml);
    stp_config *cfg = load(buf);
    cr_assert_not_null(cfg, "%s", diags());
    cr_assert_eq(cfg->listeners[0].auth, (stp_lan_auth)lan_auth[i].want);
    done(cfg);
  }
  static const struct {
    const char *yaml;
    int want;
  } levels[] = {{"error", STP_LOG_ERROR},
                {"warn", STP_LOG_WARN},
                {"warning", STP_LOG_WARN},
                {"info", STP_LOG_INFO},
                {"debug", STP_LOG_DEBUG}};
  for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
    snprintf(buf, sizeof buf, "log: { level: %s }\n" MIN, levels[i].yaml);
    stp_config *cfg = load(buf);
    cr_assert_not_null(cfg, "%s", diags());
    cr_assert_eq(cfg->log_level, levels[i].want);
    done(cfg);
  }
  static const struct {
    const char *yaml;
    int tls, port;
  } up_tls[] = {{"starttls", STP_TLS_STARTTLS, 587}, {"implicit", STP_TLS_IMPLICIT, 465}};
  for (size_t i = 0; i < sizeof up_tls / sizeof up_tls[0]; i++) {
    snprintf(buf, sizeof buf, LST UPS "    tls: %s\n" RTS, up_tls[i].yaml);
    stp_config *cfg = load(buf);
    cr_assert_not_null(cfg, "%s", diags());
    cr_assert_eq(cfg->upstreams[0].tls, (stp_tls_mode)up_tls[i].tls);
    cr_assert_eq(cfg->upstreams[0].port, up_tls[i].port);
    done(cfg);
  }
  fails_with(LST "    tls: tsl\n" UPS RTS,
             "t.yaml:4:10: error: bad tls 'tsl' (expected none, starttls or implicit)");
  {
    stp_config *cfg = load(LST "    bare_lf: lenient\n" UPS RTS);
    cr_assert_not_null(cfg, "%s", diags());
    cr_assert_eq(cfg->listeners[0].bare_lf, STP_BARELF_LENIENT);
    done(cfg);
  }
  fails_with(LST "    bare_lf: keep\n" UPS RTS,
             "t.yaml:4:14: error: bad bare_lf 'keep' (expected fix, lenient or reject)");
  fails_with(LST "    auth: maybe\n" UPS RTS,
             "t.yaml:4:11: error: bad auth 'maybe' (expected none, any, users or passthrough)");
  fails_with("log: { format: xml }\n" MIN,
             "t.yaml:1:16: error: bad format 'xml' (expected text or json)");
  fails_with("log: { level: loud }\n" MIN,
             "t.yaml:1:15: error: bad level 'loud' (expected error, warn, info or debug)");
}

Test(config, mechanisms) {
  static const struct {
    const char *yaml;
    int want;
  } mechs[] = {{"auto", STP_MECH_AUTO}, {"plain", STP_MECH_PLAIN}, {"login", STP_MECH_LOGIN}};
  char buf[1024];
  setenv("STP_TEST_PW", "pw", 1);
  for (size_t i = 0; i < sizeof mechs / sizeof mechs[0]; i++) {
    snprintf(buf, sizeof buf,
             LST UPS "    auth:\n      mechanism: %s\n      username: u\n"
                     "      password_env: STP_TEST_PW\n" RTS,
             mechs[i].yaml);
    stp_config *cfg = load(buf);
    cr_assert_not_null(cfg, "%s", diags());
    cr_assert_eq(cfg->upstreams[0].mechanism, (stp_auth_mech)mechs[i].want);
    cr_assert_not(cfg->upstreams[0].secret_is_token);
    done(cfg);
  }
  fails_with(LST UPS "    auth:\n      mechanism: cram-md5\n      username: u\n"
                     "      password_env: STP_TEST_PW\n" RTS,
             "t.yaml:8:18: error: bad mechanism 'cram-md5' (expected auto, plain, login or "
             "xoauth2)");
}

/* ---- listen ------------------------------------------------------------- */

Test(config, listen_single_string_or_list) {
  stp_config *cfg = loads_with("listeners:\n"
                               "  - name: a\n"
                               "    listen: 127.0.0.1:0\n"
                               "  - name: b\n"
                               "    listen: [\"127.0.0.1:0\", \"[::1]:0\", \":2525\"]\n" UPS RTS,
                               "");
  cr_assert_eq(cfg->listeners[0].listen.n, 1);
  cr_assert_str_eq(cfg->listeners[0].listen.v[0], "127.0.0.1:0");
  cr_assert_eq(cfg->listeners[1].listen.n, 3);
  cr_assert_str_eq(cfg->listeners[1].listen.v[1], "[::1]:0");
  cr_assert_str_eq(cfg->listeners[1].listen.v[2], ":2525");
  done(cfg);
}

Test(config, listen_ipv6) {
  stp_config *cfg = loads_with("listeners:\n  - name: lan\n    listen: \"[::1]:0\"\n" UPS RTS, "");
  cr_assert_str_eq(cfg->listeners[0].listen.v[0], "[::1]:0");
  char *host = NULL;
  uint16_t port = 1;
  cr_assert_eq(stp_parse_hostport(cfg->listeners[0].listen.v[0], &host, &port), STP_OK);
  cr_assert_str_eq(host, "::1");
  cr_assert_eq(port, 0);
  free(host);
  done(cfg);
}

Test(config, listen_errors) {
  fails_with(
      "listeners:\n"
      "  - name: lan\n"
      "    listen: [\"::1:25\", \"localhost:25\", \"0.0.0.0:65536\", \"0.0.0.0:25\"]\n" UPS RTS,
      "t.yaml:3:14: error: bad listen address '::1:25' (expected host:port, [v6]:port or "
      ":port)\n"
      "t.yaml:3:24: error: listen address 'localhost:25' must be an IP address (e.g. "
      "0.0.0.0:25, [::1]:25, :25)\n"
      "t.yaml:3:40: error: bad listen address '0.0.0.0:65536' (expected host:port, "
      "[v6]:port or :port)");
  fails_with("listeners:\n  - name: lan\n" UPS RTS,
             "t.yaml:2:5: error: listener needs 'listen' (e.g. \"0.0.0.0:25\")");
  fails_with("listeners:\n  - name: lan\n    listen: []\n" UPS RTS,
             "t.yaml:3:13: error: 'listen' is empty");
}

/* ---- structure: unknown keys, types, duplicates, syntax ------------------ */

Test(config, unknown_key_top_level) {
  fails_with("hostname: relay.test\n"
             "colour: blue\n" MIN,
             "t.yaml:2:1: error: unknown key 'colour' at top level");
}

Test(config, unknown_key_in_listener) {
  fails_with("hostname: relay.test\n"
             "listeners:\n"
             "  - name: lan\n"
             "    listen: \":0\"\n"
             "    max_msg_size: 10MB\n" UPS RTS,
             "t.yaml:5:5: error: unknown key 'max_msg_size' in listener");
}

Test(config, unknown_key_in_upstream_and_auth) {
  setenv("STP_TEST_PW", "pw", 1);
  fails_with(LST "upstreams:\n"
                 "  - name: up\n"
                 "    host: smtp.example.com\n"
                 "    sni: smtp.example.com\n"
                 "    auth:\n"
                 "      username: u\n"
                 "      password_env: STP_TEST_PW\n"
                 "      passwd: x\n" RTS,
             "t.yaml:7:5: error: unknown key 'sni' in upstream\n"
             "t.yaml:11:7: error: unknown key 'passwd' in upstream auth");
}

Test(config, unknown_key_in_route_match_and_rewrite) {
  fails_with(LST UPS "routes:\n"
                     "  - name: r\n"
                     "    match:\n"
                     "      listener: lan\n"
                     "      sender: \"*@x\"\n"
                     "    upstream: up\n"
                     "    rewrite: { envelope_from: a@b }\n",
             "t.yaml:11:7: error: unknown key 'sender' in route match\n"
             "t.yaml:13:16: error: unknown key 'envelope_from' in route rewrite");
}

Test(config, unknown_keys_everywhere_reported_together) {
  fails_with("log: { level: info, colour: red }\n"
             "metrics: { listen: \"127.0.0.1:0\", path: /m }\n" MIN "    extra: 1\n",
             "t.yaml:1:21: error: unknown key 'colour' in log\n"
             "t.yaml:2:35: error: unknown key 'path' in metrics\n"
             "t.yaml:12:5: error: unknown key 'extra' in route");
}

Test(config, wrong_types) {
  fails_with("hostname: { a: 1 }\n" MIN,
             "t.yaml:1:11: error: expected a single value for 'hostname', not a mapping");
  fails_with("listeners: lan\n" UPS RTS,
             "t.yaml:1:12: error: expected a list for 'listeners', not a single value");
  fails_with("listeners:\n  - lan\n" UPS RTS,
             "t.yaml:2:5: error: expected a mapping in 'listeners', not a single value");
  fails_with("log: [info]\n" MIN, "t.yaml:1:6: error: expected a mapping for 'log', not a list");
  fails_with("listeners:\n  - name: lan\n    listen: { a: 1 }\n" UPS RTS,
             "t.yaml:3:13: error: expected a value or a list for 'listen', not a mapping");
  fails_with(LST "    max_connections: [1]\n" UPS RTS,
             "t.yaml:4:22: error: expected a single value for 'max_connections', not a list");
  fails_with(LST "    allow: [[10.0.0.0/8]]\n" UPS RTS,
             "t.yaml:4:13: error: expected a single value in 'allow', not a list");
  fails_with(LST UPS "    auth: plain\n" RTS,
             "t.yaml:7:11: error: expected a mapping for 'auth', not a single value");
  fails_with("- a\n- b\n", "t.yaml:1:1: error: expected a mapping at top level, not a list");
  fails_with(LST UPS "    verify: maybe\n" RTS,
             "t.yaml:7:13: error: bad verify 'maybe' (expected true or false)");
}

Test(config, duplicate_keys) {
  fails_with("hostname: a\nhostname: b\n" MIN,
             "t.yaml:2:1: error: duplicate key 'hostname' at top level");
  fails_with("listeners:\n"
             "  - name: lan\n"
             "    listen: \":0\"\n"
             "    listen: \":1\"\n" UPS RTS,
             "t.yaml:4:5: error: duplicate key 'listen' in listener");
}

Test(config, yaml_syntax_error_position) {
  fails_with("listeners:\n"
             "  - name: lan\n"
             "   listen: \":0\"\n",
             "t.yaml:3:4: error: YAML: did not find expected '-' indicator (while parsing a "
             "block collection at 2:3)");
  fails_with("hostname: \"relay\n", "t.yaml:2:1: error: YAML: found unexpected end of stream "
                                    "(while scanning a quoted scalar at 1:11)");
  fails_with("hostname: relay\n\tlog: x\n",
             "t.yaml:2:1: error: YAML: found a tab character that violates indentation (while "
             "scanning a plain scalar at 1:11)");
}

Test(config, empty_and_missing_sections) {
  fails_with("", "t.yaml:1:1: error: the configuration is empty");
  fails_with("# nothing\n", "t.yaml:1:1: error: the configuration is empty");
  fails_with("hostname: relay.test\n",
             "t.yaml:1:1: error: at least one listener is required in 'listeners'\n"
             "t.yaml:1:1: error: at least one upstream is required in 'upstreams'\n"
             "t.yaml:1:1: error: at least one route is required in 'routes'");
  fails_with(LST UPS "routes: []\n",
             "t.yaml:7:9: error: at least one route is required in 'routes'");
  fails_with(LST UPS "routes:\n", "t.yaml:7:1: error: at least one route is required in 'routes'");
}

Test(config, null_values_mean_not_given) {
  stp_config *cfg = loads_with("hostname: relay.test\nmetrics:\nlog: ~\n" LST
                               "    tls_min_version:\n" UPS "    port: null\n" RTS,
                               "");
  cr_assert_null(cfg->metrics_listen);
  cr_assert_eq(cfg->listeners[0].tls_min_version, STP_TLS1_2);
  cr_assert_eq(cfg->upstreams[0].port, 587);
  done(cfg);
}

Test(config, only_one_document) {
  fails_with(MIN "---\nhostname: other\n", "t.yaml:10:1: error: only one YAML document is allowed");
}

/* ---- names and references ----------------------------------------------- */

Test(config, names_required_and_unique) {
  fails_with("listeners:\n"
             "  - listen: \":0\"\n"
             "  - name: a\n"
             "    listen: \":1\"\n"
             "  - name: a\n"
             "    listen: \":2\"\n" UPS RTS,
             "t.yaml:2:5: error: listener needs a name\n"
             "t.yaml:5:5: error: duplicate listener name 'a' (first at line 3)");
  fails_with(LST UPS "  - name: up\n    host: b\n" RTS,
             "t.yaml:7:5: error: duplicate upstream name 'up' (first at line 5)");
  fails_with(LST UPS RTS "  - name: all\n    upstream: up\n",
             "t.yaml:10:5: error: duplicate route name 'all' (first at line 8)\n"
             "t.yaml:10:5: warning: route 'all' is never used: route 'all' matches everything");
  fails_with(LST UPS "routes:\n  - name: \"has space\"\n    upstream: up\n",
             "t.yaml:8:11: error: bad route name 'has space' (letters, digits, '.', '_' and "
             "'-', at most 64)");
}

Test(config, unknown_upstream_in_route) {
  fails_with(LST UPS "routes:\n"
                     "  - name: r\n"
                     "    upstream: [up, gmail, up2]\n",
             "t.yaml:9:20: error: unknown upstream 'gmail'\n"
             "t.yaml:9:27: error: unknown upstream 'up2'");
  fails_with(LST UPS "routes:\n  - name: r\n    upstream: nope\n",
             "t.yaml:9:15: error: unknown upstream 'nope'");
}

Test(config, unknown_listener_in_route) {
  fails_with(LST UPS "routes:\n"
                     "  - name: r\n"
                     "    match: { listener: [lan, wan] }\n"
                     "    upstream: up\n",
             "t.yaml:9:30: error: unknown listener 'wan'");
}

Test(config, route_without_upstream) {
  fails_with(LST UPS "routes:\n  - name: r\n    match: { listener: lan }\n",
             "t.yaml:8:5: error: route needs an upstream");
  fails_with(LST UPS "routes:\n  - name: r\n    upstream: []\n",
             "t.yaml:9:15: error: route needs an upstream");
}

Test(config, upstream_failover_order_and_warnings) {
  stp_config *cfg = loads_with(LST "upstreams:\n"
                                   "  - name: a\n    host: a.example\n"
                                   "  - name: b\n    host: b.example\n"
                                   "routes:\n"
                                   "  - name: catchall\n"
                                   "    upstream: [b, a, b]\n"
                                   "  - name: late\n"
                                   "    upstream: a\n",
                               "t.yaml:11:22: warning: upstream 'b' is listed twice\n"
                               "t.yaml:12:5: warning: route 'late' is never used: route "
                               "'catchall' matches everything");
  cr_assert_eq(cfg->routes[0].n_upstreams, 3);
  cr_assert_eq(cfg->routes[0].upstreams[0], 1);
  cr_assert_eq(cfg->routes[0].upstreams[1], 0);
  done(cfg);
}

/* ---- CIDRs, auth, warnings ---------------------------------------------- */

Test(config, bad_cidr) {
  fails_with(LST "    allow: [\"192.168.0.0/16\", \"10.0.0.300/8\", fe80::1%eth0]\n" UPS RTS,
             "t.yaml:4:31: error: bad CIDR '10.0.0.300/8' in allow\n"
             "t.yaml:4:47: error: bad CIDR 'fe80::1%eth0' in allow");
  fails_with(LST "    allow: 10.0.0.0/33\n" UPS RTS,
             "t.yaml:4:12: error: bad CIDR '10.0.0.0/33' in allow");
  fails_with(LST "    allow: []\n" UPS RTS, "t.yaml:4:12: error: 'allow' is empty");
}

Test(config, cidr_host_bits_set) {
  fails_with(LST "    allow: 10.0.0.1/8\n" UPS RTS,
             "t.yaml:4:12: error: host bits set in '10.0.0.1/8' in allow (did you mean "
             "10.0.0.0/8?)");
  fails_with(LST UPS "routes:\n"
                     "  - name: r\n"
                     "    match: { client: [\"2001:db8::1/64\"] }\n"
                     "    upstream: up\n",
             "t.yaml:9:23: error: host bits set in '2001:db8::1/64' in client (did you mean "
             "2001:db8::/64?)");
}

Test(config, allow_single_string_and_open_warning) {
  stp_config *cfg = loads_with(LST "    allow: [\"0.0.0.0/0\", \"::/0\"]\n" UPS RTS,
                               "t.yaml:4:12: warning: allow 0.0.0.0/0 is open to the whole "
                               "internet\n"
                               "t.yaml:4:12: warning: allow ::/0 is open to the whole internet");
  cr_assert_eq(cfg->listeners[0].n_allow, 2);
  done(cfg);
  cfg = loads_with(LST "    allow: 192.168.1.0/24\n" UPS RTS, "");
  cr_assert_eq(cfg->listeners[0].n_allow, 1);
  cr_assert_eq(cfg->listeners[0].allow[0].prefix, 24);
  done(cfg);
}

Test(config, lan_auth_users) {
  stp_config *cfg =
      loads_with(LST "    tls: starttls\n"
                     "    auth: users\n"
                     "    users: { scanner1: \"$6$salt$hash\", scanner2: $y$j9T$x }\n" UPS RTS,
                 "t.yaml:4:10: warning: no certificate: a self-signed one will be "
                 "generated at start");
  cr_assert_eq(cfg->listeners[0].auth, STP_LAUTH_USERS);
  cr_assert_eq(cfg->listeners[0].n_users, 2);
  cr_assert_str_eq(cfg->listeners[0].users[0].name, "scanner1");
  cr_assert_str_eq(cfg->listeners[0].users[0].hash, "$6$salt$hash");
  cr_assert_str_eq(cfg->listeners[0].users[1].hash, "$y$j9T$x");
  done(cfg);
  fails_with(LST "    tls: starttls\n    auth: users\n" UPS RTS,
             "t.yaml:4:10: warning: no certificate: a self-signed one will be generated at "
             "start\n"
             "t.yaml:5:11: error: auth: users needs a non-empty 'users' mapping");
  fails_with(LST "    tls: implicit\n    auth: users\n    users: {}\n" UPS RTS,
             "t.yaml:4:10: warning: no certificate: a self-signed one will be generated at "
             "start\n"
             "t.yaml:5:11: error: auth: users needs a non-empty 'users' mapping");
  fails_with(LST "    tls: starttls\n"
                 "    auth: users\n"
                 "    users: { a: plaintext-pw, a: \"$1$x\" }\n" UPS RTS,
             "t.yaml:4:10: warning: no certificate: a self-signed one will be generated at "
             "start\n"
             "t.yaml:6:17: error: hash of user 'a' is not a crypt(3) string (it must start "
             "with '$')\n"
             "t.yaml:6:31: error: duplicate user 'a'");
}

/* Unknown user names are checked against a configured hash of the same
 * method and cost as the costliest one (the timing itself is measured by
 * tests/tools/auth_timing.sh, not here). */
static char *real_hash(const char *prefix, unsigned long count) {
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  cr_assert_not_null(crypt_gensalt_rn(prefix, count, NULL, 0, setting, sizeof setting));
  struct crypt_data *cd = calloc(1, sizeof *cd);
  char *h = strdup(crypt_r("pw", setting, cd));
  free(cd);
  cr_assert(h[0] == '$', "%s", h);
  return h;
}

static stp_config *users_config(const char *h1, const char *h2) {
  char yaml[2048];
  if (h2)
    snprintf(yaml, sizeof yaml,
             LST
             "    tls: starttls\n    auth: users\n    users: { a: \"%s\", b: \"%s\" }\n" UPS RTS,
             h1, h2);
  else
    snprintf(yaml, sizeof yaml,
             LST "    tls: starttls\n    auth: users\n    users: { a: \"%s\" }\n" UPS RTS, h1);
  stp_config *cfg = load(yaml);
  cr_assert_not_null(cfg, "%s", diags());
  return cfg;
}

static void unknown_user_hash_params(const char *prefix, unsigned long count, const char *want) {
  char *h = real_hash(prefix, count);
  stp_config *cfg = users_config(h, NULL);
  const char *u = cfg->listeners[0].unknown_user_hash;
  cr_assert_not_null(u);
  cr_assert(strncmp(u, want, strlen(want)) == 0, "%s: want the parameters %s", u, want);
  cr_assert_eq(u, cfg->listeners[0].users[0].hash, "the configured hash itself");
  done(cfg);
  free(h);
}

Test(config, unknown_user_hash_has_the_users_method_and_cost) {
  unknown_user_hash_params("$y$", 0, "$y$j9T$");
  unknown_user_hash_params("$y$", 7, "$y$jBT$");
  unknown_user_hash_params("$6$", 20000, "$6$rounds=20000$");
  unknown_user_hash_params("$2b$", 8, "$2b$08$");
}

Test(config, unknown_user_hash_is_the_costliest_of_mixed_users) {
  char *cheap = real_hash("$6$", 1000), *costly = real_hash("$y$", 0);
  stp_config *cfg = users_config(cheap, costly);
  cr_assert_eq(cfg->listeners[0].unknown_user_hash, cfg->listeners[0].users[1].hash);
  done(cfg);
  cfg = users_config(costly, cheap);
  cr_assert_eq(cfg->listeners[0].unknown_user_hash, cfg->listeners[0].users[0].hash);
  done(cfg);
  free(cheap);
  free(costly);
  /* no auth: users, no pick */
  cfg = loads_with(LST "    users: { u: \"$6$a$b\" }\n" UPS RTS,
                   "t.yaml:4:5: warning: users are not used unless auth: users");
  cr_assert_null(cfg->listeners[0].unknown_user_hash);
  done(cfg);
}

Test(config, lan_warnings) {
  stp_config *cfg = loads_with(LST "    auth: users\n    users: { u: \"$6$a$b\" }\n" UPS RTS,
                               "t.yaml:4:11: warning: auth: users with tls: none: passwords "
                               "cross the LAN in clear");
  done(cfg);
  cfg = loads_with(LST "    auth: passthrough\n" UPS RTS,
                   "t.yaml:4:11: warning: auth: passthrough with tls: none: passwords cross "
                   "the LAN in clear");
  done(cfg);
  cfg = loads_with(LST "    users: { u: \"$6$a$b\" }\n" UPS RTS,
                   "t.yaml:4:5: warning: users are not used unless auth: users");
  done(cfg);
}

Test(config, listener_numbers) {
  fails_with(LST "    max_connections: 0\n"
                 "    max_connections_per_client: many\n"
                 "    max_message_size: 0\n" UPS RTS,
             "t.yaml:4:22: error: bad max_connections '0' (expected an integer from 1 to "
             "4294967295)\n"
             "t.yaml:5:33: error: bad max_connections_per_client 'many' (expected an integer "
             "from 1 to 4294967295)\n"
             "t.yaml:6:23: error: max_message_size must be greater than 0");
  fails_with(LST "    max_connections: 4294967296\n" UPS RTS,
             "t.yaml:4:22: error: bad max_connections '4294967296' (expected an integer from 1 "
             "to 4294967295)");
  fails_with(LST UPS "    port: 0\n" RTS,
             "t.yaml:7:11: error: bad port '0' (expected an integer from 1 to 65535)");
}

Test(config, rate_limit) {
  fails_with(LST "    rate_limit: 100 per minute\n" UPS RTS,
             "t.yaml:4:17: error: bad rate_limit '100 per minute' (expected N/period, e.g. "
             "100/1m or 10/s)");
  fails_with(LST UPS RTS "    rate_limit: 0/s\n",
             "t.yaml:10:17: error: bad rate_limit '0/s' (expected N/period, e.g. 100/1m or "
             "10/s)");
}

/* ---- upstream TLS ------------------------------------------------------- */

Test(config, upstream_tls_none_needs_insecure) {
  fails_with(LST UPS "    tls: none\n" RTS,
             "t.yaml:7:10: error: tls: none needs insecure: true (mail and credentials would "
             "cross the network in clear)");
  stp_config *cfg = loads_with(LST UPS "    tls: none\n    insecure: true\n    port: 25\n" RTS,
                               "t.yaml:7:10: warning: tls: none: mail and credentials to "
                               "upstream 'up' cross the network in clear");
  cr_assert_eq(cfg->upstreams[0].tls, STP_TLS_NONE);
  cr_assert(cfg->upstreams[0].insecure);
  cr_assert_eq(cfg->upstreams[0].port, 25);
  done(cfg);
}

Test(config, upstream_verify_false_needs_insecure) {
  fails_with(LST UPS "    verify: false\n" RTS,
             "t.yaml:7:13: error: verify: false needs insecure: true");
  stp_config *cfg = loads_with(LST UPS "    verify: no\n    insecure: yes\n" RTS,
                               "t.yaml:7:13: warning: verify: false: the certificate of upstream "
                               "'up' is not checked");
  cr_assert_not(cfg->upstreams[0].verify);
  cr_assert(cfg->upstreams[0].insecure);
  done(cfg);
}

Test(config, tls_min_version_lan_vs_upstream) {
  /* 1.0 unquoted looks like a float to YAML; it is read as text. */
  stp_config *cfg = loads_with(LST "    tls_min_version: 1.0\n" UPS RTS, "");
  cr_assert_eq(cfg->listeners[0].tls_min_version, STP_TLS1_0);
  done(cfg);
  cfg = loads_with(LST "    tls_min_version: \"1.1\"\n" UPS "    tls_min_version: 1.3\n" RTS, "");
  cr_assert_eq(cfg->listeners[0].tls_min_version, STP_TLS1_1);
  cr_assert_eq(cfg->upstreams[0].tls_min_version, STP_TLS1_3);
  done(cfg);
  fails_with(LST UPS "    tls_min_version: 1.0\n" RTS,
             "t.yaml:7:22: error: tls_min_version '1.0' refused: the upstream side stays TLS "
             "1.2+");
  fails_with(LST UPS "    tls_min_version: \"1.1\"\n" RTS,
             "t.yaml:7:22: error: tls_min_version '1.1' refused: the upstream side stays TLS "
             "1.2+");
  fails_with(LST "    tls_min_version: 1\n" UPS RTS,
             "t.yaml:4:22: error: bad tls_min_version '1' (expected \"1.0\" to \"1.3\")");
  fails_with(LST UPS "    tls_min_version: 1.4\n" RTS,
             "t.yaml:7:22: error: bad tls_min_version '1.4' (expected \"1.2\" or \"1.3\")");
}

Test(config, upstream_host_and_files) {
  fails_with(LST "upstreams:\n  - name: up\n" RTS, "t.yaml:5:5: error: upstream needs a host");
  fails_with(LST "upstreams:\n  - name: up\n    host: \"smtp example\"\n" RTS,
             "t.yaml:6:11: error: bad host 'smtp example'");
  fails_with(LST UPS "    ca_file: /nonexistent/ca.pem\n" RTS,
             "t.yaml:7:14: error: cannot read ca_file '/nonexistent/ca.pem': No such file or "
             "directory");
  fails_with(LST UPS "    ca_file: /tmp\n" RTS,
             "t.yaml:7:14: error: cannot read ca_file '/tmp': not a regular file");
  fails_with(LST UPS "    helo: \"a b\"\n" RTS, "t.yaml:7:11: error: bad helo 'a b'");
}

/* ---- upstream secrets --------------------------------------------------- */

#define AUTH_UP(lines) LST UPS "    auth:\n      username: scanner@example.com\n" lines RTS

Test(config, password_env) {
  setenv("STP_TEST_PW", "env-secret-1", 1);
  stp_config *cfg = loads_with(AUTH_UP("      password_env: STP_TEST_PW\n"), "");
  const stp_upstream_cfg *u = &cfg->upstreams[0];
  cr_assert(u->has_auth);
  cr_assert_eq(u->mechanism, STP_MECH_AUTO);
  cr_assert_str_eq(u->username, "scanner@example.com");
  cr_assert_str_eq(u->secret, "env-secret-1");
  cr_assert_not(u->secret_is_token);
  done(cfg);

  unsetenv("STP_TEST_PW");
  fails_with(AUTH_UP("      password_env: STP_TEST_PW\n"),
             "t.yaml:9:21: error: environment variable STP_TEST_PW is not set");
  setenv("STP_TEST_PW", "", 1);
  fails_with(AUTH_UP("      password_env: STP_TEST_PW\n"),
             "t.yaml:9:21: error: environment variable STP_TEST_PW is empty");
  fails_with(AUTH_UP("      password_env: \"$HOME\"\n"),
             "t.yaml:9:21: error: bad password_env '$HOME' (expected an environment variable "
             "name)");
}

Test(config, password_file_read_and_newline_stripped, .init = make_tmpdir, .fini = remove_tmpdir) {
  const char *pw = put_file("pw", "file-secret-2\r\n\n", 0600);
  char yaml[2048];
  snprintf(yaml, sizeof yaml, AUTH_UP("      password_file: %s\n"), pw);
  stp_config *cfg = loads_with(yaml, "");
  cr_assert_str_eq(cfg->upstreams[0].secret, "file-secret-2");
  done(cfg);

  /* Readable by others: works, with a warning (path shown, never content). */
  chmod(pw, 0644);
  char want[2048];
  snprintf(want, sizeof want,
           "t.yaml:9:22: warning: password_file '%s' is readable by group or others (chmod "
           "600 it)",
           pw);
  cfg = loads_with(yaml, want);
  cr_assert_str_eq(cfg->upstreams[0].secret, "file-secret-2");
  done(cfg);

  put_file("empty", "\n", 0600);
  snprintf(yaml, sizeof yaml, AUTH_UP("      password_file: %s/empty\n"), tmpdir);
  snprintf(want, sizeof want,
           "t.yaml:9:22: error: cannot use password_file '%s/empty': it is "
           "empty",
           tmpdir);
  fails_with(yaml, want);

  snprintf(yaml, sizeof yaml, AUTH_UP("      password_file: %s/missing\n"), tmpdir);
  snprintf(want, sizeof want,
           "t.yaml:9:22: error: cannot read password_file '%s/missing': No such file or "
           "directory",
           tmpdir);
  fails_with(yaml, want);
}

Test(config, inline_password_warns) {
  stp_config *cfg = loads_with(AUTH_UP("      password: \"inline-secret-3\"\n"),
                               "t.yaml:9:7: warning: inline password in the config file; "
                               "prefer password_env or password_file");
  cr_assert_str_eq(cfg->upstreams[0].secret, "inline-secret-3");
  done(cfg);
}

Test(config, secret_sources_exactly_one) {
  setenv("STP_TEST_PW", "pw", 1);
  fails_with(AUTH_UP(""), "t.yaml:8:7: error: auth needs one of password_env, password_file, "
                          "password, token_file, token_command or oauth2");
  fails_with(AUTH_UP("      password_env: STP_TEST_PW\n      password: x\n"),
             "t.yaml:10:7: error: 'password' conflicts with 'password_env': give only one "
             "secret source");
  unsetenv("STP_TEST_PW");
  fails_with(AUTH_UP("      password: x\n      token_file: /nonexistent\n"
                     "      password_env: STP_TEST_PW\n"),
             "t.yaml:10:7: error: 'token_file' conflicts with 'password': give only one "
             "secret source\n"
             "t.yaml:11:7: error: 'password_env' conflicts with 'password': give only one "
             "secret source");
  setenv("STP_TEST_PW", "pw", 1);
  fails_with(LST UPS "    auth:\n      password_env: STP_TEST_PW\n" RTS,
             "t.yaml:8:7: error: auth needs a username");
}

Test(config, xoauth2, .init = make_tmpdir, .fini = remove_tmpdir) {
  const char *tok = put_file("token", "ya29.token-secret-4\n", 0600);
  char yaml[2048];
  snprintf(yaml, sizeof yaml, AUTH_UP("      token_file: %s\n"), tok);
  stp_config *cfg = loads_with(yaml, "");
  cr_assert_str_eq(cfg->upstreams[0].secret, "ya29.token-secret-4");
  cr_assert(cfg->upstreams[0].secret_is_token);
  cr_assert_eq(cfg->upstreams[0].mechanism, STP_MECH_XOAUTH2);
  done(cfg);

  setenv("STP_TEST_TOKEN", "env-token-5", 1);
  cfg = loads_with(AUTH_UP("      mechanism: xoauth2\n      password_env: STP_TEST_TOKEN\n"), "");
  cr_assert_str_eq(cfg->upstreams[0].secret, "env-token-5");
  cr_assert(cfg->upstreams[0].secret_is_token);
  done(cfg);

  fails_with(AUTH_UP("      mechanism: xoauth2\n      password: x\n"),
             "t.yaml:9:18: error: mechanism xoauth2 needs token_file, token_command, oauth2 or "
             "password_env holding the token\n"
             "t.yaml:10:7: warning: inline password in the config file; prefer password_env "
             "or password_file");
  snprintf(yaml, sizeof yaml, AUTH_UP("      mechanism: plain\n      token_file: %s\n"), tok);
  fails_with(yaml, "t.yaml:10:7: error: token_file needs mechanism xoauth2 (or auto)");
}

/* The token sources themselves are covered in test_oauth2.c; here, their
 * shape errors and the token_command argv. */
Test(config, token_command_and_oauth2_shapes) {
  stp_config *cfg = loads_with(
      AUTH_UP("      mechanism: xoauth2\n      token_command: [/usr/bin/get-token, -q]\n"), "");
  cr_assert_not_null(cfg->upstreams[0].token_src);
  cr_assert_eq(cfg->upstreams[0].token_src->command.n, 2);
  done(cfg);
  fails_with(AUTH_UP("      oauth2: { secret: x, grant: client_credentials }\n"),
             "t.yaml:9:15: error: oauth2 needs token_url or preset\n"
             "t.yaml:9:15: error: oauth2 needs client_id\n"
             "t.yaml:9:15: error: grant: client_credentials needs client_secret_env or "
             "client_secret_file (or client_certificate_file with client_key_file)\n"
             "t.yaml:9:17: error: unknown key 'secret' in oauth2");
  fails_with(AUTH_UP("      token_command: /usr/bin/get-token\n"),
             "t.yaml:9:22: error: expected a list for 'token_command', not a single value");
}

Test(config, secrets_never_in_diagnostics, .init = make_tmpdir, .fini = remove_tmpdir) {
  static const char *const secrets[] = {"SeCrEt-inline", "SeCrEt-file", "SeCrEt-env", "SeCrEt-hash",
                                        "SeCrEt-list"};
  put_file("pw", "SeCrEt-file\n", 0644);
  setenv("STP_TEST_SECRET", "SeCrEt-env", 1);
  char yaml[4096];
  snprintf(yaml, sizeof yaml,
           "listeners:\n"
           "  - name: lan\n"
           "    listen: \":0\"\n"
           "    auth: users\n"
           "    users: { a: SeCrEt-hash, b: [SeCrEt-list] }\n"
           "upstreams:\n"
           "  - name: a\n    host: a.example\n"
           "    auth: { username: u, password: SeCrEt-inline, password_env: STP_TEST_SECRET }\n"
           "  - name: b\n    host: b.example\n"
           "    auth: { username: u, password_file: %s/pw, mechanism: xoauth2 }\n"
           "  - name: c\n    host: c.example\n"
           "    auth: { username: u, password: [SeCrEt-list] }\n"
           "  - name: d\n    host: d.example\n"
           "    auth: { username: u, password: SeCrEt-inline, mechanism: bogus }\n"
           "routes:\n  - name: r\n    upstream: nope\n",
           tmpdir);
  stp_config *cfg = load(yaml);
  cr_assert_null(cfg);
  cr_assert_geq(D.n, 8, "%s", diags());
  for (size_t i = 0; i < D.n; i++)
    for (size_t j = 0; j < sizeof secrets / sizeof secrets[0]; j++)
      cr_assert_null(strstr(D.lines[i], secrets[j]), "secret in: %s", D.lines[i]);
  reset();
}

/* ---- files and paths ---------------------------------------------------- */

Test(config, certificate_and_key, .init = make_tmpdir, .fini = remove_tmpdir) {
  const char *crt = put_file("lan.crt", "x", 0644);
  char yaml[2048], want[2048];
  snprintf(yaml, sizeof yaml, LST "    tls: starttls\n    certificate: %s\n" UPS RTS, crt);
  fails_with(yaml, "t.yaml:5:5: error: certificate needs private_key");
  snprintf(yaml, sizeof yaml,
           LST "    tls: starttls\n    certificate: %s\n    private_key: %s/lan.key\n" UPS RTS, crt,
           tmpdir);
  snprintf(want, sizeof want,
           "t.yaml:6:18: error: cannot read private_key '%s/lan.key': No such file or directory",
           tmpdir);
  fails_with(yaml, want);
  put_file("lan.key", "k", 0600);
  stp_config *cfg = loads_with(yaml, "");
  cr_assert_str_eq(cfg->listeners[0].certificate, crt);
  done(cfg);
}

Test(config, relative_paths_resolve_against_config_dir, .init = make_tmpdir,
     .fini = remove_tmpdir) {
  put_dir("etc");
  put_dir("etc/secrets");
  put_file("etc/lan.crt", "c", 0644);
  put_file("etc/lan.key", "k", 0600);
  put_file("etc/ca.pem", "ca", 0644);
  put_file("etc/secrets/pw", "relative-pw\n", 0600);
  const char *yaml = "listeners:\n"
                     "  - name: lan\n"
                     "    listen: \":0\"\n"
                     "    tls: implicit\n"
                     "    certificate: lan.crt\n"
                     "    private_key: ./lan.key\n"
                     "upstreams:\n"
                     "  - name: up\n"
                     "    host: smtp.example.com\n"
                     "    ca_file: ca.pem\n"
                     "    auth: { username: u, password_file: secrets/pw }\n" RTS;
  const char *path = put_file("etc/proxy.yaml", yaml, 0644);
  char want[PATH_MAX + 32];

  /* From an unrelated working directory, by absolute path. */
  cr_assert_eq(chdir("/"), 0);
  stp_config *cfg = NULL;
  reset();
  cr_assert_eq(stp_config_load(path, &cfg, &D), STP_OK, "%s", diags());
  cr_assert_eq(D.n, 0, "%s", diags());
  cr_assert_str_eq(cfg->path, path);
  snprintf(want, sizeof want, "%s/etc/lan.crt", tmpdir);
  cr_assert_str_eq(cfg->listeners[0].certificate, want);
  snprintf(want, sizeof want, "%s/etc/lan.key", tmpdir);
  cr_assert_str_eq(cfg->listeners[0].private_key, want);
  snprintf(want, sizeof want, "%s/etc/ca.pem", tmpdir);
  cr_assert_str_eq(cfg->upstreams[0].ca_file, want);
  cr_assert_str_eq(cfg->upstreams[0].secret, "relative-pw");
  done(cfg);

  /* By a relative path: the paths still come out absolute. */
  cr_assert_eq(chdir(tmpdir), 0);
  cfg = NULL;
  cr_assert_eq(stp_config_load("etc/proxy.yaml", &cfg, &D), STP_OK, "%s", diags());
  snprintf(want, sizeof want, "%s/etc/lan.crt", tmpdir);
  cr_assert_str_eq(cfg->listeners[0].certificate, want);
  done(cfg);

  /* From a string, relative paths stay relative to the working directory. */
  cr_assert_eq(chdir("etc"), 0);
  cfg = load(yaml);
  cr_assert_not_null(cfg, "%s", diags());
  cr_assert_str_eq(cfg->listeners[0].certificate, "lan.crt");
  cr_assert_str_eq(cfg->upstreams[0].secret, "relative-pw");
  done(cfg);
  cr_assert_eq(chdir("/"), 0);
  cfg = load(yaml);
  cr_assert_null(cfg);
  cr_assert_str_eq(diags(),
                   "t.yaml:5:18: error: cannot read certificate 'lan.crt': No such file or "
                   "directory\n"
                   "t.yaml:6:18: error: cannot read private_key './lan.key': No such file or "
                   "directory\n"
                   "t.yaml:10:14: error: cannot read ca_file 'ca.pem': No such file or "
                   "directory\n"
                   "t.yaml:11:41: error: cannot read password_file 'secrets/pw': No such file "
                   "or directory");
  reset();
}

Test(config, load_missing_file) {
  stp_config *cfg = (stp_config *)1;
  cr_assert_eq(stp_config_load("/nonexistent/proxy.yaml", &cfg, &D), STP_EIO);
  cr_assert_null(cfg);
  cr_assert_str_eq(diags(),
                   "/nonexistent/proxy.yaml: error: cannot read: No such file or directory");
  cr_assert_eq(D.n_errors, 1);
  reset();
  cr_assert_eq(stp_config_load("/tmp", &cfg, &D), STP_EIO);
  cr_assert_str_eq(diags(), "/tmp: error: cannot read: not a regular file");
  reset();
}

Test(config, diagnostics_accumulate_in_order) {
  /* Several errors in one pass, sorted by position whatever the order in
   * which sections are checked (routes before listeners here). */
  fails_with("routes:\n"
             "  - name: r\n"
             "    upstream: nowhere\n"
             "listeners:\n"
             "  - name: lan\n"
             "    listen: \":0\"\n"
             "    idle_timeout: soon\n"
             "upstreams:\n"
             "  - name: up\n"
             "    host: h\n"
             "    connect_timeout: 0\n",
             "t.yaml:3:15: error: unknown upstream 'nowhere'\n"
             "t.yaml:7:19: error: bad duration 'soon' for idle_timeout (use e.g. 30s, 5m, 1h, "
             "250ms)\n"
             "t.yaml:11:22: error: connect_timeout must be greater than 0");
  /* Diagnostics are appended: a caller's earlier lines are kept. */
  stp_diag d = {0};
  stp_config *cfg = NULL;
  cr_assert_neq(stp_config_load_string("a.yaml", "x: 1\n", 5, &cfg, &d), STP_OK);
  cr_assert_neq(stp_config_load_string("b.yaml", "y: 1\n", 5, &cfg, &d), STP_OK);
  cr_assert_eq(d.n_errors, d.n);
  cr_assert_str_eq(d.lines[0], "a.yaml:1:1: error: unknown key 'x' at top level");
  cr_assert_str_eq(d.lines[4], "b.yaml:1:1: error: unknown key 'y' at top level");
  stp_diag_free(&d);
  cr_assert_eq(d.n, 0);
}

Test(config, spec_example_loads, .init = make_tmpdir, .fini = remove_tmpdir) {
  put_file("lan.crt", "c", 0644);
  put_file("lan.key", "k", 0600);
  setenv("GMAIL_APP_PASSWORD", "spec-secret", 1);
  setenv("SENDGRID_API_KEY", "sg-secret", 1);
  const char *yaml =
      "hostname: relay.example.lan        # banner and EHLO name; default: gethostname()\n"
      "log: { level: info, format: text } # text | json\n"
      "metrics: { listen: \"127.0.0.1:9587\" }   # optional: /metrics (Prometheus), /healthz\n"
      "shutdown_grace: 30s\n"
      "\n"
      "listeners:\n"
      "  - name: lan\n"
      "    listen: [\"0.0.0.0:25\", \"[::]:2525\"]  # one string or a list\n"
      "    tls: none                 # none | starttls | implicit   (LAN side)\n"
      "    certificate: lan.crt      # needed for starttls / implicit\n"
      "    private_key: lan.key\n"
      "    tls_min_version: \"1.0\"    # LAN side may allow old devices; default \"1.2\"\n"
      "    allow: [\"192.168.0.0/16\", \"10.0.0.0/8\"]   # default: loopback only\n"
      "    auth: none                # none | any | users | passthrough\n"
      "    users: { scanner1: \"$6$salt$hash\" }       # crypt(3) hashes, for auth: users\n"
      "    max_message_size: 50MiB   # advertised as SIZE, enforced while streaming\n"
      "    max_connections: 200\n"
      "    max_connections_per_client: 20\n"
      "    bare_lf: fix              # fix | reject\n"
      "    idle_timeout: 5m\n"
      "\n"
      "upstreams:\n"
      "  - name: gmail\n"
      "    host: smtp.gmail.com\n"
      "    port: 587\n"
      "    tls: starttls             # starttls | implicit | none (none needs insecure: true)\n"
      "    server_name: smtp.gmail.com   # SNI and certificate name; default: host\n"
      "    ca_file: /etc/ssl/certs/ca-certificates.crt  # default: the system bundle\n"
      "    tls_min_version: \"1.2\"\n"
      "    verify: true              # false only with insecure: true; logged loudly\n"
      "    helo: relay.example.com   # default: hostname\n"
      "    auth:\n"
      "      mechanism: auto         # auto | plain | login | xoauth2\n"
      "      username: scanner@example.com\n"
      "      password_env: GMAIL_APP_PASSWORD    # or password_file:, or password: (warns)\n"
      "      # xoauth2: token_file: / token_command: [argv...] / oauth2: {...}\n"
      "    connect_timeout: 30s\n"
      "    command_timeout: 5m\n"
      "    data_timeout: 10m\n"
      "  - name: gmail-465\n"
      "    host: smtp.gmail.com\n"
      "    tls: implicit\n"
      "    auth: { username: scanner@example.com, password_env: GMAIL_APP_PASSWORD }\n"
      "  - name: sendgrid\n"
      "    host: smtp.sendgrid.net\n"
      "    port: 2525\n"
      "    auth: { username: apikey, password_env: SENDGRID_API_KEY }\n"
      "\n"
      "routes:                       # first match wins\n"
      "  - name: scanners\n"
      "    match:                    # all given conditions must hold; absent = any\n"
      "      listener: lan\n"
      "      client: [\"192.168.1.0/24\"]\n"
      "      auth_user: [scanner1]\n"
      "      mail_from: [\"*@scanner.local\", \"<>\"]\n"
      "      rcpt_to: [\"*@example.com\"]\n"
      "    upstream: [gmail, gmail-465]   # ordered failover\n"
      "    rewrite:\n"
      "      mail_from: scanner@example.com\n"
      "      header_from: \"Office Scanner <scanner@example.com>\"  # old From kept in "
      "Reply-To\n"
      "  - name: default\n"
      "    upstream: sendgrid\n";
  const char *path = put_file("proxy.yaml", yaml, 0644);
  stp_config *cfg = NULL;
  reset();
  cr_assert_eq(stp_config_load(path, &cfg, &D), STP_OK, "%s", diags());
  char want[4096];
  snprintf(want, sizeof want,
           "%s:10:5: warning: certificate is not used with tls: none\n"
           "%s:15:5: warning: users are not used unless auth: users",
           path, path);
  cr_assert_str_eq(diags(), want);
  cr_assert_eq(cfg->n_listeners, 1);
  cr_assert_eq(cfg->n_upstreams, 3);
  cr_assert_eq(cfg->n_routes, 2);
  cr_assert_eq(cfg->listeners[0].max_message_size, 50ull << 20);
  cr_assert_eq(cfg->listeners[0].tls_min_version, STP_TLS1_0);
  cr_assert_eq(cfg->upstreams[1].port, 465);
  cr_assert_eq(cfg->upstreams[2].port, 2525);
  cr_assert_str_eq(cfg->upstreams[0].secret, "spec-secret");
  cr_assert_str_eq(cfg->upstreams[2].secret, "sg-secret");
  cr_assert_str_eq(cfg->upstreams[1].helo, "relay.example.lan");
  cr_assert_eq(cfg->routes[0].n_upstreams, 2);
  cr_assert_eq(cfg->routes[0].upstreams[1], 1);
  cr_assert_eq(cfg->routes[1].upstreams[0], 2);
  cr_assert_eq(cfg->shutdown_grace_ms, 30000);
  done(cfg);
}

Test(config, control_characters_refused) {
  fails_with("hostname: \"relay\\r\\nX-Injected: 1\"\n" MIN,
             "t.yaml:1:11: error: 'hostname' contains a control character");
  fails_with(LST UPS "routes:\n  - name: r\n    upstream: up\n"
                     "    rewrite: { header_from: \"A <a@b>\\r\\nBcc: x@y\" }\n",
             "t.yaml:10:29: error: 'header_from' contains a control character");
}

/* ---- value parsers ------------------------------------------------------ */

Test(config, durations) {
  static const struct {
    const char *s;
    int rc;
    uint64_t ms;
  } cases[] = {
      {"30s", STP_OK, 30000},
      {"5m", STP_OK, 300000},
      {"1h", STP_OK, 3600000},
      {"250ms", STP_OK, 250},
      {"10", STP_OK, 10000},
      {"0", STP_OK, 0},
      {"0s", STP_OK, 0},
      {"2d", STP_OK, 172800000},
      {"1h30m", STP_OK, 5400000},
      {"1m30s500ms", STP_OK, 90500},
      {"5M", STP_OK, 300000},
      {"18446744073709551615ms", STP_OK, UINT64_MAX},
      {"", STP_ESYNTAX, 0},
      {"s", STP_ESYNTAX, 0},
      {"5x", STP_ESYNTAX, 0},
      {"5 m", STP_ESYNTAX, 0},
      {" 5m", STP_ESYNTAX, 0},
      {"-5s", STP_ESYNTAX, 0},
      {"1.5h", STP_ESYNTAX, 0},
      {"5m3", STP_ESYNTAX, 0},
      {"5mins", STP_ESYNTAX, 0},
      {"18446744073709551616", STP_EPARAM, 0},
      {"18446744073709551615", STP_EPARAM, 0},
      {"18446744073709552s", STP_EPARAM, 0},
      {"213503982335d", STP_EPARAM, 0},
      {"18446744073709551615ms1ms", STP_EPARAM, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint64_t v = 12345;
    cr_assert_eq(stp_parse_duration_ms(cases[i].s, &v), cases[i].rc, "'%s'", cases[i].s);
    cr_assert_eq(v, cases[i].rc == STP_OK ? cases[i].ms : 12345, "'%s'", cases[i].s);
  }
  fails_with(LST "    idle_timeout: 99999999999999999999s\n" UPS RTS,
             "t.yaml:4:19: error: duration '99999999999999999999s' for idle_timeout is too "
             "large");
}

Test(config, sizes) {
  static const struct {
    const char *s;
    int rc;
    uint64_t v;
  } cases[] = {
      {"1024", STP_OK, 1024},
      {"0", STP_OK, 0},
      {"5B", STP_OK, 5},
      {"25MB", STP_OK, 25000000},
      {"50MiB", STP_OK, 52428800},
      {"10KiB", STP_OK, 10240},
      {"2kb", STP_OK, 2000},
      {"1GB", STP_OK, 1000000000},
      {"1gib", STP_OK, 1073741824},
      {"3 MiB", STP_OK, 3145728},
      {"1TiB", STP_OK, 1ull << 40},
      {"17179869183GiB", STP_OK, 17179869183ull << 30},
      {"", STP_ESYNTAX, 0},
      {"MB", STP_ESYNTAX, 0},
      {"10M", STP_ESYNTAX, 0},
      {"10K", STP_ESYNTAX, 0},
      {"1.5MB", STP_ESYNTAX, 0},
      {"-1", STP_ESYNTAX, 0},
      {"10MBs", STP_ESYNTAX, 0},
      {"10  MB", STP_ESYNTAX, 0},
      {"17179869184GiB", STP_EPARAM, 0},
      {"99999999999999999999", STP_EPARAM, 0},
      {"18446744073709551615", STP_OK, UINT64_MAX},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint64_t v = 12345;
    cr_assert_eq(stp_parse_size(cases[i].s, &v), cases[i].rc, "'%s'", cases[i].s);
    cr_assert_eq(v, cases[i].rc == STP_OK ? cases[i].v : 12345, "'%s'", cases[i].s);
  }
  fails_with(LST "    max_message_size: 50M\n" UPS RTS,
             "t.yaml:4:23: error: bad size '50M' for max_message_size (use bytes, or e.g. "
             "25MB, 50MiB)");
  fails_with(LST "    max_message_size: 20000000000000GB\n" UPS RTS,
             "t.yaml:4:23: error: size '20000000000000GB' for max_message_size is too large");
}

Test(config, tls_versions) {
  static const struct {
    const char *s;
    int rc;
    uint16_t v;
  } cases[] = {
      {"1.0", STP_OK, STP_TLS1_0}, {"1.1", STP_OK, STP_TLS1_1}, {"1.2", STP_OK, STP_TLS1_2},
      {"1.3", STP_OK, STP_TLS1_3}, {"1.4", STP_ESYNTAX, 0},     {"1", STP_ESYNTAX, 0},
      {"TLSv1.2", STP_ESYNTAX, 0}, {"", STP_ESYNTAX, 0},        {"1.20", STP_ESYNTAX, 0}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint16_t v = 7;
    cr_assert_eq(stp_parse_tls_version(cases[i].s, &v), cases[i].rc, "'%s'", cases[i].s);
    cr_assert_eq(v, cases[i].rc == STP_OK ? cases[i].v : 7, "'%s'", cases[i].s);
  }
}

Test(config, hostports) {
  static const struct {
    const char *s;
    const char *host; /* NULL: must fail */
    uint16_t port;
  } cases[] = {
      {"0.0.0.0:25", "0.0.0.0", 25},
      {"[::]:2525", "::", 2525},
      {"[::1]:0", "::1", 0},
      {":2525", "", 2525},
      {"*:25", "", 25},
      {"127.0.0.1:65535", "127.0.0.1", 65535},
      {"smtp.example.com:587", "smtp.example.com", 587},
      {"[::ffff:10.0.0.1]:25", "::ffff:10.0.0.1", 25},
      {"::1:25", NULL, 0},
      {"0.0.0.0", NULL, 0},
      {"0.0.0.0:", NULL, 0},
      {"0.0.0.0:65536", NULL, 0},
      {"0.0.0.0:000025", NULL, 0},
      {"0.0.0.0:+25", NULL, 0},
      {"0.0.0.0:25 ", NULL, 0},
      {"[::1]25", NULL, 0},
      {"[::1", NULL, 0},
      {"[]:25", NULL, 0},
      {"[zz]:25", NULL, 0},
      {"[10.0.0.1]:25", NULL, 0},
      {"host:abc", NULL, 0},
      {"a b:25", NULL, 0},
      {"", NULL, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *host = NULL;
    uint16_t port = 7;
    int rc = stp_parse_hostport(cases[i].s, &host, &port);
    if (!cases[i].host) {
      cr_assert_eq(rc, STP_ESYNTAX, "'%s' should be refused", cases[i].s);
      cr_assert_null(host);
      continue;
    }
    cr_assert_eq(rc, STP_OK, "'%s'", cases[i].s);
    cr_assert_str_eq(host, cases[i].host, "'%s'", cases[i].s);
    cr_assert_eq(port, cases[i].port, "'%s'", cases[i].s);
    free(host);
  }
}

Test(config, rates) {
  static const struct {
    const char *s;
    int rc;
    uint32_t n;
    uint64_t ms;
  } cases[] = {{"100/1m", STP_OK, 100, 60000},      {"10/s", STP_OK, 10, 1000},
               {"5/30s", STP_OK, 5, 30000},         {"1/h", STP_OK, 1, 3600000},
               {"2/d", STP_OK, 2, 86400000},        {"0/s", STP_ESYNTAX, 0, 0},
               {"10", STP_ESYNTAX, 0, 0},           {"/s", STP_ESYNTAX, 0, 0},
               {"10/", STP_ESYNTAX, 0, 0},          {"10/0s", STP_ESYNTAX, 0, 0},
               {"10/x", STP_ESYNTAX, 0, 0},         {"a/s", STP_ESYNTAX, 0, 0},
               {"4294967296/s", STP_ESYNTAX, 0, 0}, {"10 /s", STP_ESYNTAX, 0, 0}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint32_t n = 7;
    uint64_t ms = 7;
    cr_assert_eq(stp_parse_rate(cases[i].s, &n, &ms), cases[i].rc, "'%s'", cases[i].s);
    if (cases[i].rc == STP_OK) {
      cr_assert_eq(n, cases[i].n, "'%s'", cases[i].s);
      cr_assert_eq(ms, cases[i].ms, "'%s'", cases[i].s);
    }
  }
}

/* ---- the configuration text is cleansed --------------------------------
 * The observer sees each buffer the load cleansed, right before it is
 * freed. What this proves: every buffer of these kinds (the file as read,
 * libyaml's input buffers, each scalar of the document) is all zeros when
 * freed, on success and on a syntax error, and the secrets survive in the
 * config itself. What it cannot prove: that no other copy was left
 * (libyaml frees some of its own inside one call; see config.h). */

#define WIPE_SECRET "Inline-Pw-0123456789-abcdefghij"

static struct {
  size_t calls[5], bytes[5];
  size_t nonzero; /* buffers handed over not cleansed */
} W;

static void wipe_seen(const char *what, const void *p, size_t n) {
  static const char *const kinds[] = {"file", "yaml-buffer", "yaml-raw", "yaml-token",
                                      "yaml-scalar"};
  size_t k = 0;
  while (k < 5 && strcmp(kinds[k], what) != 0)
    k++;
  cr_assert_lt(k, 5, "unknown kind %s", what);
  W.calls[k]++;
  W.bytes[k] += n;
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++)
    if (b[i]) {
      W.nonzero++;
      break;
    }
}

static stp_config *load_file_observed(const char *yaml) {
  memset(&W, 0, sizeof W);
  make_tmpdir();
  const char *path = put_file("proxy.yaml", yaml, 0600);
  stp_config *cfg = NULL;
  reset();
  stp_config_set_wipe_observer(wipe_seen);
  stp_config_load(path, &cfg, &D);
  stp_config_set_wipe_observer(NULL);
  remove_tmpdir();
  return cfg;
}

Test(config, file_text_and_yaml_copies_are_cleansed) {
  const char *yaml = AUTH_UP("      password: \"" WIPE_SECRET "\"\n");
  stp_config *cfg = load_file_observed(yaml);
  cr_assert_not_null(cfg, "%s", diags());
  cr_assert_str_eq(cfg->upstreams[0].secret, WIPE_SECRET, "the config keeps its own copy");
  cr_assert_eq(W.nonzero, 0, "a buffer was freed holding configuration text");
  cr_assert_eq(W.calls[0], 1);
  cr_assert_gt(W.bytes[0], strlen(yaml), "the whole file buffer");
  cr_assert_eq(W.calls[1], 1, "libyaml's decoded input");
  cr_assert_eq(W.calls[2], 1, "libyaml's raw input");
  /* every scalar node, keys included: 20 in this document */
  cr_assert_eq(W.calls[4], 20, "%zu scalars", W.calls[4]);
  cr_assert_geq(W.bytes[4], strlen(WIPE_SECRET) + strlen("scanner@example.com"));
  done(cfg);
}

Test(config, file_text_is_cleansed_after_a_syntax_error) {
  const char *yaml = AUTH_UP("      password: \"" WIPE_SECRET "\"\n") "  - [unclosed\n";
  stp_config *cfg = load_file_observed(yaml);
  cr_assert_null(cfg);
  cr_assert_gt(D.n_errors, 0);
  cr_assert_eq(W.nonzero, 0);
  cr_assert_eq(W.calls[0], 1);
  cr_assert_gt(W.bytes[0], strlen(yaml));
  cr_assert_eq(W.calls[1], 1);
  cr_assert_eq(W.calls[2], 1);
  reset();
}

Test(config, users_hashes_in_a_string_load_are_cleansed_from_libyaml) {
  memset(&W, 0, sizeof W);
  stp_config_set_wipe_observer(wipe_seen);
  stp_config *cfg =
      load(LST "    tls: starttls\n    auth: users\n    users: { a: \"$6$s$h\" }\n" UPS RTS);
  stp_config_set_wipe_observer(NULL);
  cr_assert_not_null(cfg);
  cr_assert_eq(W.nonzero, 0);
  cr_assert_eq(W.calls[0], 0, "a string load has no file buffer of its own");
  cr_assert_eq(W.calls[4], 22, "%zu scalars", W.calls[4]);
  cr_assert_str_eq(cfg->listeners[0].users[0].hash, "$6$s$h");
  done(cfg);
}

/* ---- proxy_protocol (issue 21) ------------------------------------------ */

Test(config, proxy_protocol_cidrs) {
  stp_config *cfg =
      loads_with(LST "    proxy_protocol: [\"10.0.0.5/32\", \"fd00::/64\"]\n" UPS RTS, "");
  cr_assert_eq(cfg->listeners[0].n_proxy_protocol, 2);
  cr_assert_eq(cfg->listeners[0].proxy_protocol[1].family, 6);
  done(cfg);
  cfg = loads_with(MIN, "");
  cr_assert_eq(cfg->listeners[0].n_proxy_protocol, 0, "off unless given");
  done(cfg);
}

Test(config, proxy_protocol_errors) {
  fails_with(LST "    proxy_protocol: [\"10.0.0.0/33\"]\n" UPS RTS,
             "t.yaml:4:22: error: bad CIDR '10.0.0.0/33' in proxy_protocol");
  fails_with(LST "    proxy_protocol: []\n" UPS RTS,
             "t.yaml:4:21: error: 'proxy_protocol' is empty");
  fails_with(LST "    proxy_protocol: [\"0.0.0.0/0\"]\n" UPS RTS,
             "t.yaml:4:21: error: proxy_protocol 0.0.0.0/0 would let anyone claim any client "
             "address: list the balancers' own addresses");
  fails_with(LST "    proxy-protocol: [\"10.0.0.5\"]\n" UPS RTS,
             "t.yaml:4:5: error: unknown key 'proxy-protocol' in listener");
}
