/* config_upstream.c - one `upstreams:` entry: address, TLS and
 * verification, timeouts, the pool, and its `auth:` mapping
 * (config_auth.c), with the defaults of SPEC.md; for `kind: graph | gmail`
 * the API's mailbox and api_url, from which host, port, TLS and the
 * certificate name are derived (an SMTP-only key there is an error, as is
 * an API key on an SMTP upstream).
 */
#include "config_upstream.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "config_auth.h"
#include "config_file.h"
#include "smtp-tls-proxy/url.h"
#include "smtp-tls-proxy/util.h"

/* clang-format off */
enum {
  U_NAME, U_HOST, U_PORT, U_TLS, U_SNI, U_CA, U_TLSMIN, U_VERIFY, U_INSECURE, U_HELO, U_AUTH,
  U_CTO, U_CMDTO, U_DATATO, U_POOL, U_POOLMAX, U_POOLIDLE, U_KIND, U_MAILBOX, U_APIURL,
  U_SAVESENT, U_PROBE, U_N
};
static const char *const upstream_keys[U_N] = {
  [U_NAME] = "name", [U_HOST] = "host", [U_PORT] = "port", [U_TLS] = "tls",
  [U_SNI] = "server_name", [U_CA] = "ca_file", [U_TLSMIN] = "tls_min_version",
  [U_VERIFY] = "verify", [U_INSECURE] = "insecure", [U_HELO] = "helo", [U_AUTH] = "auth",
  [U_CTO] = "connect_timeout", [U_CMDTO] = "command_timeout", [U_DATATO] = "data_timeout",
  [U_POOL] = "pool", [U_POOLMAX] = "pool_max_idle", [U_POOLIDLE] = "pool_idle_timeout",
  [U_KIND] = "kind", [U_MAILBOX] = "mailbox", [U_APIURL] = "api_url",
  [U_SAVESENT] = "save_to_sent_items", [U_PROBE] = "probe_interval"};
/* Keys that only an SMTP upstream has, and only an API upstream has. */
static const int smtp_only[] = {U_HOST, U_PORT, U_TLS, U_SNI, U_HELO};
static const int api_only[] = {U_MAILBOX, U_APIURL, U_SAVESENT};
static const char *const kind_names[] = {"smtp", "graph", "gmail", NULL};
static const char *const default_api_url[] = {
  [STP_UP_GRAPH] = "https://graph.microsoft.com", [STP_UP_GMAIL] = "https://gmail.googleapis.com"};
/* clang-format on */

#define MAILBOX_MAX 320 /* an address, a user principal name or an object id */

static bool valid_host(const char *s) {
  unsigned char tmp[16];
  if (strchr(s, ':'))
    return inet_pton(AF_INET6, s, tmp) == 1;
  if (s[0] == '-' || s[0] == '.')
    return false;
  for (; *s; s++)
    if (!cfg_host_char(*s))
      return false;
  return true;
}

/* host, port, tls and server_name of an SMTP upstream. */
static void parse_smtp_address(cfg_ctx *c, yaml_node_t *n, yaml_node_t **k, yaml_node_t **v,
                               stp_upstream_cfg *u) {
  int e;
  if (!v[U_HOST]) {
    cfg_err(c, k[U_HOST] ? k[U_HOST] : n, "upstream needs a host");
  } else {
    const char *s = cfg_nonempty(c, v[U_HOST], "host");
    if (s && !valid_host(s))
      cfg_err(c, v[U_HOST], "bad host '%s'", s);
    else if (s)
      u->host = stp_xstrdup(s);
  }
  if (v[U_TLS] &&
      cfg_parse_enum(c, v[U_TLS], "tls", cfg_tls_names, "starttls, implicit or none", &e))
    u->tls = (stp_tls_mode)e;
  u->port = u->tls == STP_TLS_IMPLICIT ? 465 : 587;
  if (v[U_PORT]) {
    uint64_t p = u->port;
    cfg_parse_count(c, v[U_PORT], "port", 65535, &p);
    u->port = (uint16_t)p;
  }
  if (v[U_SNI]) {
    const char *s = cfg_nonempty(c, v[U_SNI], "server_name");
    if (s && !valid_host(s))
      cfg_err(c, v[U_SNI], "bad server_name '%s'", s);
    else if (s)
      u->server_name = stp_xstrdup(s);
  }
}

/* A mailbox goes into a URL path (percent-encoded there): any printable
 * ASCII but '/', which no UPN, address or object id contains. */
static bool valid_mailbox(const char *s) {
  size_t len = strlen(s);
  if (!len || len > MAILBOX_MAX)
    return false;
  for (; *s; s++)
    if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f || *s == '/')
      return false;
  return true;
}

/* kind: graph | gmail: mailbox, api_url, save_to_sent_items, and the
 * address fields derived from api_url. */
static void parse_api(cfg_ctx *c, yaml_node_t *n, yaml_node_t **k, yaml_node_t **v,
                      stp_upstream_cfg *u) {
  const char *kind = kind_names[u->kind];
  for (size_t i = 0; i < sizeof smtp_only / sizeof *smtp_only; i++)
    if (k[smtp_only[i]])
      cfg_err(c, k[smtp_only[i]], "'%s' is not used with kind: %s (the API's address is api_url)",
              upstream_keys[smtp_only[i]], kind);
  if (v[U_MAILBOX]) {
    const char *s = cfg_nonempty(c, v[U_MAILBOX], "mailbox");
    if (s && !valid_mailbox(s))
      cfg_err(c, v[U_MAILBOX],
              "bad mailbox '%s' (expected an address, a user principal name or "
              "an object id)",
              s);
    else if (s)
      u->mailbox = stp_xstrdup(s);
  } else if (u->kind == STP_UP_GRAPH) {
    cfg_err(c, k[U_MAILBOX] ? k[U_MAILBOX] : n,
            "kind: graph needs mailbox (the user whose mailbox sends: /users/{mailbox}/sendMail)");
  } else {
    u->mailbox = stp_xstrdup("me"); /* the account the refresh token belongs to */
  }
  if (v[U_SAVESENT] && u->kind != STP_UP_GRAPH)
    cfg_err(c, k[U_SAVESENT], "save_to_sent_items is only used with kind: graph");
  else if (v[U_SAVESENT])
    cfg_parse_bool(c, v[U_SAVESENT], "save_to_sent_items", &u->save_to_sent_items);
  const char *url = default_api_url[u->kind];
  if (v[U_APIURL])
    url = cfg_nonempty(c, v[U_APIURL], "api_url");
  stp_url p;
  if (!url)
    return;
  if (stp_url_parse(url, &p) != STP_OK || strchr(p.path, '?')) {
    cfg_err(c, v[U_APIURL], "bad api_url '%s' (expected https://host[:port][/path])", url);
    return;
  }
  if (!p.https && !u->insecure)
    cfg_err(c, v[U_APIURL],
            "api_url over http:// needs insecure: true (mail and tokens would "
            "cross the network in clear)");
  size_t len = strlen(url);
  while (len && url[len - 1] == '/')
    len--;
  u->api_url = stp_xstrndup(url, len);
  u->host = stp_xstrdup(p.host);
  u->server_name = stp_xstrdup(p.host);
  u->port = p.port;
  u->tls = p.https ? STP_TLS_IMPLICIT : STP_TLS_NONE;
}

void cfg_parse_upstream(cfg_ctx *c, yaml_node_t *n, stp_upstream_cfg *u) {
  yaml_node_t *k[U_N], *v[U_N];
  int e;
  u->tls = STP_TLS_STARTTLS;
  u->tls_min_version = STP_TLS1_2;
  u->verify = true;
  u->connect_timeout_ms = 30 * 1000;
  u->command_timeout_ms = 5 * 60 * 1000;
  u->data_timeout_ms = 10 * 60 * 1000;
  u->pool = true;
  u->pool_max_idle = 16;
  u->pool_idle_timeout_ms = 60 * 1000;
  u->save_to_sent_items = true;
  u->probe_interval_ms = 15 * 60 * 1000;
  u->pos = (stp_pos){cfg_nline(n), cfg_ncol(n)};
  WALK(c, n, "in upstream", upstream_keys, k, v);

  u->name = cfg_parse_name(c, n, k[U_NAME], v[U_NAME], "upstream");
  if (v[U_KIND] && cfg_parse_enum(c, v[U_KIND], "kind", kind_names, "smtp, graph or gmail", &e))
    u->kind = (stp_up_kind)e;
  /* insecure first: api_url over http:// depends on it */
  if (v[U_INSECURE])
    cfg_parse_bool(c, v[U_INSECURE], "insecure", &u->insecure);
  if (u->kind == STP_UP_SMTP) {
    for (size_t i = 0; i < sizeof api_only / sizeof *api_only; i++)
      if (k[api_only[i]])
        cfg_err(c, k[api_only[i]], "'%s' is only used with kind: graph or gmail",
                upstream_keys[api_only[i]]);
    parse_smtp_address(c, n, k, v, u);
  } else {
    parse_api(c, n, k, v, u);
  }
  if (!u->server_name && u->host)
    u->server_name = stp_xstrdup(u->host);
  if (v[U_CA])
    cfg_parse_file(c, v[U_CA], "ca_file", &u->ca_file);
  if (!u->ca_file)
    u->ca_file = stp_xstrdup(CFG_DEFAULT_CA_FILE);
  if (v[U_TLSMIN]) {
    const char *s = cfg_str_of(c, v[U_TLSMIN], "tls_min_version");
    uint16_t ver;
    if (s && stp_parse_tls_version(s, &ver) != STP_OK)
      cfg_err(c, v[U_TLSMIN], "bad tls_min_version '%s' (expected \"1.2\" or \"1.3\")", s);
    else if (s && ver < STP_TLS1_2)
      cfg_err(c, v[U_TLSMIN], "tls_min_version '%s' refused: the upstream side stays TLS 1.2+", s);
    else if (s)
      u->tls_min_version = ver;
  }
  if (v[U_VERIFY])
    cfg_parse_bool(c, v[U_VERIFY], "verify", &u->verify);
  if (u->tls == STP_TLS_NONE && !u->insecure && u->kind == STP_UP_SMTP)
    cfg_err(c, v[U_TLS],
            "tls: none needs insecure: true (mail and credentials would cross the "
            "network in clear)");
  else if (u->tls == STP_TLS_NONE && u->insecure)
    cfg_warn(c, v[U_TLS] ? v[U_TLS] : v[U_APIURL],
             "%s: mail and credentials to upstream '%s' cross the network in clear",
             u->kind == STP_UP_SMTP ? "tls: none" : "api_url over http://",
             u->name ? u->name : "?");
  if (!u->verify && !u->insecure)
    cfg_err(c, v[U_VERIFY], "verify: false needs insecure: true");
  else if (!u->verify && u->tls != STP_TLS_NONE)
    cfg_warn(c, v[U_VERIFY], "verify: false: the certificate of upstream '%s' is not checked",
             u->name ? u->name : "?");
  if (v[U_HELO]) {
    const char *s = cfg_nonempty(c, v[U_HELO], "helo");
    if (s && strchr(s, ' '))
      cfg_err(c, v[U_HELO], "bad helo '%s'", s);
    else if (s)
      u->helo = stp_xstrdup(s);
  }
  if (!u->helo)
    u->helo = stp_xstrdup(c->cfg->hostname);
  if (v[U_AUTH] && cfg_expect_map(c, v[U_AUTH], "auth"))
    cfg_parse_upstream_auth(c, v[U_AUTH], u);
  if (u->kind != STP_UP_SMTP && !k[U_AUTH])
    cfg_err(c, n, "kind: %s needs auth: { oauth2: { preset: %s, ... } } (or token_command)",
            kind_names[u->kind],
            u->kind == STP_UP_GRAPH ? "microsoft365-graph" : "google-gmail-api");
  if (v[U_CTO])
    cfg_parse_duration(c, v[U_CTO], "connect_timeout", false, &u->connect_timeout_ms);
  if (v[U_CMDTO])
    cfg_parse_duration(c, v[U_CMDTO], "command_timeout", false, &u->command_timeout_ms);
  if (v[U_DATATO])
    cfg_parse_duration(c, v[U_DATATO], "data_timeout", false, &u->data_timeout_ms);
  if (v[U_POOL])
    cfg_parse_bool(c, v[U_POOL], "pool", &u->pool);
  if (v[U_POOLMAX]) {
    uint64_t max_idle = 0;
    cfg_parse_count(c, v[U_POOLMAX], "pool_max_idle", 1000, &max_idle);
    u->pool_max_idle = (uint32_t)max_idle;
  }
  if (v[U_POOLIDLE])
    cfg_parse_duration(c, v[U_POOLIDLE], "pool_idle_timeout", false, &u->pool_idle_timeout_ms);
  if (v[U_PROBE])
    cfg_parse_duration(c, v[U_PROBE], "probe_interval", true, &u->probe_interval_ms);
  if (u->token_src) /* a token fetch is bounded like the connection it precedes */
    u->token_src->timeout_ms = u->connect_timeout_ms;
}
