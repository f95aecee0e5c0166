/* config_auth.c - the `auth:` mapping of an upstream, and the secrets it reads.
 *
 * Owns: the schema of an upstream's auth block (mechanism, username, the one
 * secret source: password_env, password_file, password, token_file,
 * token_command or oauth2, and token_ttl), the oauth2 presets (google,
 * microsoft365 for SMTP; microsoft365-graph and google-gmail-api for the
 * API kinds) with their token URLs and scopes, and the reading of secret
 * files and environment variables. Guarantees:
 * - exactly one secret source is read; a second one is an error naming both,
 *   and then none is read (no cascade of unrelated errors);
 * - secret values never appear in a diagnostic, and a secret file's buffer
 *   is cleansed on every path; a secret file readable by group or others
 *   draws a warning;
 * - a token source (oauth2, token_command) carries the load sequence number
 *   of the load that made it (cfg_ctx.load_seq);
 * - relative paths (password_file, token_file, client_secret_file,
 *   refresh_token_file, ca_file, a token_command program with a '/') are
 *   resolved as config.c resolves them.
 * Diagnostics go through config_values.c like every other part of the walk;
 * config.c calls cfg_parse_upstream_auth from its upstream parser.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "config_auth.h"
#include "config_file.h"
#include "smtp-tls-proxy/config.h"
#include "smtp-tls-proxy/oauth2.h"
#include "smtp-tls-proxy/url.h"
#include "smtp-tls-proxy/util.h"

/* clang-format off */
enum { A_MECH, A_USER, A_PENV, A_PFILE, A_PASS, A_TFILE, A_TCMD, A_OAUTH, A_TTL, A_N };
/* A_PENV..A_OAUTH are the secret sources, exactly one of which is given. */
#define A_SRC_END A_TTL
static const char *const auth_keys[A_N] = {
  [A_MECH] = "mechanism", [A_USER] = "username", [A_PENV] = "password_env",
  [A_PFILE] = "password_file", [A_PASS] = "password", [A_TFILE] = "token_file",
  [A_TCMD] = "token_command", [A_OAUTH] = "oauth2", [A_TTL] = "token_ttl"};
enum {
  O_URL, O_ID, O_SENV, O_SFILE, O_RTFILE, O_GRANT, O_SCOPE, O_CA, O_TENANT, O_PRESET,
  O_SAFILE, O_SUBJECT, O_CERT, O_KEY, /* signed JWTs: config_jwt.c */
  O_AUTHZ, O_DEVURL, O_N
};
static const char *const oauth2_keys[O_N] = {
  [O_URL] = "token_url", [O_ID] = "client_id", [O_SENV] = "client_secret_env",
  [O_SFILE] = "client_secret_file", [O_RTFILE] = "refresh_token_file", [O_GRANT] = "grant",
  [O_SCOPE] = "scope", [O_CA] = "ca_file", [O_TENANT] = "tenant", [O_PRESET] = "preset",
  [O_SAFILE] = "service_account_file", [O_SUBJECT] = "subject",
  [O_CERT] = "client_certificate_file", [O_KEY] = "client_key_file",
  [O_AUTHZ] = "authorization_url", [O_DEVURL] = "device_authorization_url"};
/* clang-format on */

/* ------------------------------------------------------------------------ */
/* Secrets                                                                   */

static char *read_secret_file(cfg_ctx *c, const yaml_node_t *n, const char *key) {
  return cfg_read_file_value(c, n, key, true);
}

static bool valid_env_name(const char *s) {
  if (!*s || (*s >= '0' && *s <= '9'))
    return false;
  for (; *s; s++)
    if (!cfg_is_alpha(*s) && !(*s >= '0' && *s <= '9') && *s != '_')
      return false;
  return true;
}

static char *read_secret_env(cfg_ctx *c, const yaml_node_t *n, const char *key) {
  const char *s = cfg_str_of(c, n, key);
  if (!s)
    return NULL;
  if (!valid_env_name(s)) {
    cfg_err(c, n, "bad %s '%s' (expected an environment variable name)", key, s);
    return NULL;
  }
  if (c->no_secrets)
    return stp_xstrdup(CFG_SECRET_NOT_READ);
  const char *v = getenv(s);
  if (!v)
    cfg_err(c, n, "environment variable %s is not set", s);
  else if (!*v)
    cfg_err(c, n, "environment variable %s is empty", s);
  else
    return stp_xstrdup(v);
  return NULL;
}

/* ------------------------------------------------------------------------ */
/* oauth2, token_command and the auth mapping                                */

#define GOOGLE_TOKEN_URL "https://oauth2.googleapis.com/token"
#define GOOGLE_SCOPE "https://mail.google.com/"
#define M365_TOKEN_URL "https://login.microsoftonline.com/%s/oauth2/v2.0/token"
#define M365_SCOPE_APP "https://outlook.office365.com/.default"
#define M365_SCOPE_USER "https://outlook.office365.com/SMTP.Send offline_access"
#define GRAPH_SCOPE_APP "https://graph.microsoft.com/.default"
#define GRAPH_SCOPE_USER "https://graph.microsoft.com/Mail.Send offline_access"
#define GMAIL_API_SCOPE "https://www.googleapis.com/auth/gmail.send"
/* `oauth2 login` (login.c): where the admin consents. Google's device flow
 * refuses the mail scopes, so its preset has no device endpoint. */
#define GOOGLE_AUTHZ_URL "https://accounts.google.com/o/oauth2/v2/auth"
#define M365_LOGIN_BASE "https://login.microsoftonline.com/" /* TENANT/oauth2/v2.0/... */

/* The presets, in the order of preset_names. */
enum { P_GOOGLE, P_M365, P_M365_GRAPH, P_GMAIL_API };
static bool preset_is_m365(int p) {
  return p == P_M365 || p == P_M365_GRAPH;
}
static bool preset_is_google(int p) {
  return p == P_GOOGLE || p == P_GMAIL_API;
}
/* The preset an upstream kind needs (-1: any SMTP one). */
static int preset_for_kind(stp_up_kind k) {
  return k == STP_UP_GRAPH ? P_M365_GRAPH : k == STP_UP_GMAIL ? P_GMAIL_API : -1;
}

/* The preset must fit the upstream's kind: an SMTP scope cannot call the
 * Graph API, nor an API scope authenticate SMTP. */
static void check_preset_kind(cfg_ctx *c, const yaml_node_t *vn, int preset,
                              const stp_upstream_cfg *u) {
  static const char *const names[] = {"google", "microsoft365", "microsoft365-graph",
                                      "google-gmail-api"};
  int want = preset_for_kind(u->kind);
  if (want >= 0 && preset != want)
    cfg_err(c, vn, "preset: %s is for SMTP upstreams; kind: %s needs preset: %s", names[preset],
            u->kind == STP_UP_GRAPH ? "graph" : "gmail", names[want]);
  else if (want < 0 && (preset == P_M365_GRAPH || preset == P_GMAIL_API))
    cfg_err(c, vn, "preset: %s is for kind: %s upstreams", names[preset],
            preset == P_M365_GRAPH ? "graph" : "gmail");
}

static bool valid_tenant(const char *s) {
  if (!*s || strlen(s) > 128)
    return false;
  for (; *s; s++)
    if (!cfg_is_alpha(*s) && !(*s >= '0' && *s <= '9') && *s != '.' && *s != '-')
      return false;
  return true;
}

/* https://login.microsoftonline.com/TENANT/oauth2/v2.0/<what>, malloc'd. */
static char *tenant_url(const char *tenant, const char *what) {
  size_t need = sizeof M365_LOGIN_BASE "/oauth2/v2.0/" + strlen(tenant) + strlen(what);
  char *url = stp_xmalloc(need);
  snprintf(url, need, M365_LOGIN_BASE "%s/oauth2/v2.0/%s", tenant, what);
  return url;
}

/* An https:// URL (http:// only with insecure) written for key, or NULL. */
static void login_url(cfg_ctx *c, yaml_node_t *vn, const char *key, const stp_upstream_cfg *u,
                      char **out) {
  stp_url url;
  cfg_set_str(c, vn, key, out);
  if (*out && stp_url_parse(*out, &url) != STP_OK)
    cfg_err(c, vn, "bad %s '%s' (expected https://host[:port]/path)", key, *out);
  else if (*out && !url.https && !u->insecure)
    cfg_err(c, vn, "%s over http:// needs insecure: true", key);
}

/* authorization_url and device_authorization_url: written, or the
 * preset's (`oauth2 login` uses them; the proxy itself never does). */
static void parse_login_urls(cfg_ctx *c, yaml_node_t **v, stp_oauth2_cfg *o, int preset,
                             const stp_upstream_cfg *u) {
  const char *t = v[O_TENANT] ? cfg_str_of(c, v[O_TENANT], "tenant") : NULL;
  bool tenant_ok = t && valid_tenant(t);
  o->login_google = preset_is_google(preset);
  if (v[O_AUTHZ])
    login_url(c, v[O_AUTHZ], "authorization_url", u, &o->authorization_url);
  else if (o->login_google)
    o->authorization_url = stp_xstrdup(GOOGLE_AUTHZ_URL);
  else if (preset_is_m365(preset) && tenant_ok)
    o->authorization_url = tenant_url(t, "authorize");
  if (v[O_DEVURL])
    login_url(c, v[O_DEVURL], "device_authorization_url", u, &o->device_authorization_url);
  else if (preset_is_m365(preset) && tenant_ok)
    o->device_authorization_url = tenant_url(t, "devicecode");
}

/* The directory of path exists (where `oauth2 login` will write). */
static bool dir_exists(const char *path) {
  char *dir = stp_xstrdup(path), *slash = strrchr(dir, '/');
  struct stat st;
  if (slash)
    *(slash == dir ? slash + 1 : slash) = '\0';
  bool ok = stat(slash ? dir : ".", &st) == 0 && S_ISDIR(st.st_mode);
  free(dir);
  return ok;
}

/* refresh_token_file: read it, or, when it does not exist yet (in a
 * directory that does), warn and
 * name the login command (the upstream has no token until then). */
static void parse_rt_file(cfg_ctx *c, yaml_node_t *vn, stp_oauth2_cfg *o,
                          const stp_upstream_cfg *u) {
  const char *s = cfg_str_of(c, vn, "refresh_token_file");
  struct stat st;
  if (s)
    o->refresh_token_file = cfg_resolve_path(c, s);
  if (o->refresh_token_file && !c->no_secrets && stat(o->refresh_token_file, &st) != 0 &&
      errno == ENOENT && dir_exists(o->refresh_token_file)) {
    cfg_warn(c, vn,
             "refresh_token_file '%s' does not exist yet: run `smtp-tls-proxy -c %s oauth2 "
             "login %s`; upstream %s has no access token until then",
             o->refresh_token_file, c->file, u->name ? u->name : "?", u->name ? u->name : "?");
    return;
  }
  o->refresh_token = read_secret_file(c, vn, "refresh_token_file");
}

static void parse_oauth2(cfg_ctx *c, yaml_node_t *n, stp_upstream_cfg *u) {
  static const char *const preset_names[] = {"google", "microsoft365", "microsoft365-graph",
                                             "google-gmail-api", NULL};
  static const char *const grant_names[] = {"refresh_token", "client_credentials",
                                            "service_account", NULL};
  yaml_node_t *k[O_N], *v[O_N];
  int e, preset = -1;
  WALK(c, n, "in oauth2", oauth2_keys, k, v);
  stp_oauth2_cfg *o = stp_xcalloc(1, sizeof *o);
  u->token_src = o;
  o->kind = STP_TOKSRC_OAUTH2;
  o->load_seq = c->load_seq;
  if (v[O_PRESET] && cfg_parse_enum(c, v[O_PRESET], "preset", preset_names,
                                    "google, microsoft365, microsoft365-graph or "
                                    "google-gmail-api",
                                    &e)) {
    preset = e;
    check_preset_kind(c, v[O_PRESET], preset, u);
  }
  if (v[O_GRANT] && cfg_parse_enum(c, v[O_GRANT], "grant", grant_names,
                                   "refresh_token, client_credentials or service_account", &e))
    o->grant = (stp_oauth2_grant)e;
  else if (!v[O_GRANT] && preset == P_M365_GRAPH && !k[O_RTFILE])
    o->grant = STP_GRANT_CLIENT_CREDENTIALS; /* an app registration, no user */
  else if (!v[O_GRANT] && !k[O_RTFILE])
    cfg_err(c, n,
            "oauth2 needs refresh_token_file (grant: refresh_token) or "
            "grant: client_credentials");
  if (preset == P_GMAIL_API && o->grant == STP_GRANT_CLIENT_CREDENTIALS)
    cfg_err(c, v[O_GRANT],
            "preset: google-gmail-api needs grant: refresh_token (Google has no client "
            "credentials grant for Gmail)");

  /* token_url: written, or from the preset */
  if (v[O_TENANT] && !preset_is_m365(preset))
    cfg_err(c, k[O_TENANT], "tenant is only used with preset: microsoft365 or microsoft365-graph");
  if (v[O_URL]) {
    cfg_set_str(c, v[O_URL], "token_url", &o->token_url);
  } else if (preset_is_google(preset)) {
    o->token_url = stp_xstrdup(GOOGLE_TOKEN_URL);
  } else if (preset_is_m365(preset)) {
    const char *t = v[O_TENANT] ? cfg_str_of(c, v[O_TENANT], "tenant") : NULL;
    if (!v[O_TENANT]) {
      cfg_err(c, k[O_PRESET], "preset: %s needs tenant (a tenant id or domain)",
              preset_names[preset]);
    } else if (t && !valid_tenant(t)) {
      cfg_err(c, v[O_TENANT], "bad tenant '%s' (expected a tenant id or domain)", t);
    } else if (t) {
      size_t need = sizeof M365_TOKEN_URL + strlen(t);
      o->token_url = stp_xmalloc(need);
      snprintf(o->token_url, need, M365_TOKEN_URL, t);
    }
  } else if (!k[O_PRESET] && o->grant != STP_GRANT_SERVICE_ACCOUNT) { /* the key's token_uri */
    cfg_err(c, n, "oauth2 needs token_url or preset");
  }
  if (o->token_url) {
    stp_url url;
    if (stp_url_parse(o->token_url, &url) != STP_OK)
      cfg_err(c, v[O_URL], "bad token_url '%s' (expected https://host[:port]/path)", o->token_url);
    else if (!url.https && !u->insecure)
      cfg_err(c, v[O_URL],
              "token_url over http:// needs insecure: true (the client secret "
              "and tokens would cross the network in clear)");
  }

  if (v[O_ID])
    cfg_set_str(c, v[O_ID], "client_id", &o->client_id);
  else if (o->grant != STP_GRANT_SERVICE_ACCOUNT) /* the key file names the client */
    cfg_err(c, k[O_ID] ? k[O_ID] : n, "oauth2 needs client_id");
  if (v[O_SENV] && v[O_SFILE])
    cfg_err(c, k[O_SFILE], "'client_secret_file' conflicts with 'client_secret_env'");
  else if (v[O_SENV])
    o->client_secret = read_secret_env(c, v[O_SENV], "client_secret_env");
  else if (v[O_SFILE])
    o->client_secret = read_secret_file(c, v[O_SFILE], "client_secret_file");
  if (o->grant == STP_GRANT_CLIENT_CREDENTIALS && !k[O_SENV] && !k[O_SFILE] && !k[O_CERT])
    cfg_err(c, n,
            "grant: client_credentials needs client_secret_env or client_secret_file (or "
            "client_certificate_file with client_key_file)");

  if (o->grant == STP_GRANT_REFRESH_TOKEN && v[O_RTFILE]) {
    parse_rt_file(c, v[O_RTFILE], o, u);
    if (o->refresh_token && !oauth2_token_ok(o->refresh_token, strlen(o->refresh_token)))
      cfg_err(c, v[O_RTFILE],
              "refresh_token_file '%s' does not hold a token (one line of "
              "printable ASCII)",
              o->refresh_token_file);
    if (o->refresh_token_file) {
      char *dir = stp_xstrdup(o->refresh_token_file), *slash = strrchr(dir, '/');
      if (slash)
        *(slash == dir ? slash + 1 : slash) = '\0';
      if (access(slash ? dir : ".", W_OK) != 0)
        cfg_warn(c, v[O_RTFILE],
                 "the directory of refresh_token_file is not writable: a "
                 "rotated refresh token could not be saved");
      free(dir);
    }
  } else if (o->grant == STP_GRANT_REFRESH_TOKEN && k[O_RTFILE]) {
    cfg_err(c, k[O_RTFILE], "'refresh_token_file' is empty");
  } else if (o->grant == STP_GRANT_REFRESH_TOKEN && v[O_GRANT]) {
    cfg_err(c, v[O_GRANT], "grant: refresh_token needs refresh_token_file");
  } else if (o->grant == STP_GRANT_CLIENT_CREDENTIALS && k[O_RTFILE]) {
    cfg_err(c, k[O_RTFILE], "refresh_token_file is not used with grant: client_credentials");
  }

  bool app = o->grant == STP_GRANT_CLIENT_CREDENTIALS;
  if (v[O_SCOPE])
    cfg_set_str(c, v[O_SCOPE], "scope", &o->scope);
  else if (preset == P_GOOGLE)
    o->scope = stp_xstrdup(GOOGLE_SCOPE);
  else if (preset == P_GMAIL_API)
    o->scope = stp_xstrdup(GMAIL_API_SCOPE);
  else if (preset == P_M365)
    o->scope = stp_xstrdup(app ? M365_SCOPE_APP : M365_SCOPE_USER);
  else if (preset == P_M365_GRAPH)
    o->scope = stp_xstrdup(app ? GRAPH_SCOPE_APP : GRAPH_SCOPE_USER);
  if (v[O_CA])
    cfg_parse_file(c, v[O_CA], "ca_file", &o->ca_file);
  if (!o->ca_file)
    o->ca_file = stp_xstrdup(CFG_DEFAULT_CA_FILE);
  cfg_jwt_nodes j = {.k_sa = k[O_SAFILE],
                     .v_sa = v[O_SAFILE],
                     .k_sub = k[O_SUBJECT],
                     .v_sub = v[O_SUBJECT],
                     .k_cert = k[O_CERT],
                     .v_cert = v[O_CERT],
                     .k_key = k[O_KEY],
                     .v_key = v[O_KEY],
                     .k_url = k[O_URL],
                     .k_rt = k[O_RTFILE],
                     .k_secret = k[O_SENV] ? k[O_SENV] : k[O_SFILE],
                     .v_grant = v[O_GRANT],
                     .m365 = preset_is_m365(preset)};
  cfg_parse_oauth2_jwt(c, n, &j, u, o);
  parse_login_urls(c, v, o, preset, u);
}

static void parse_token_command(cfg_ctx *c, yaml_node_t *n, stp_upstream_cfg *u) {
  if (!cfg_expect_list(c, n, "token_command", false))
    return;
  size_t cnt = cfg_list_len(n);
  if (cnt == 0) {
    cfg_err(c, n, "'token_command' is empty");
    return;
  }
  stp_oauth2_cfg *o = stp_xcalloc(1, sizeof *o);
  u->token_src = o;
  o->kind = STP_TOKSRC_COMMAND;
  o->load_seq = c->load_seq;
  o->token_ttl_ms = 5 * 60 * 1000;
  o->command.v = stp_xcalloc(cnt + 1, sizeof *o->command.v); /* NULL-terminated for exec */
  for (size_t i = 0; i < cnt; i++) {
    yaml_node_t *it = cfg_list_item(c, n, i);
    const char *s = cfg_scalar_text(c, it, "token_command", true, false);
    if (s && i == 0 && !*s)
      cfg_err(c, it, "token_command needs a program as its first item");
    else if (s && i == 0 && strchr(s, '/'))
      o->command.v[o->command.n++] = cfg_resolve_path(c, s);
    else if (s)
      o->command.v[o->command.n++] = stp_xstrdup(s);
  }
}

/* An API upstream authenticates with a bearer token only: from oauth2 or
 * token_command. The SMTP keys (username, mechanism, passwords) are errors,
 * each naming the key. Returns false when no token source is usable. */
static bool api_auth_ok(cfg_ctx *c, yaml_node_t *n, yaml_node_t **k, const stp_upstream_cfg *u) {
  const char *kind = u->kind == STP_UP_GRAPH ? "graph" : "gmail";
  bool ok = true;
  if (k[A_USER])
    cfg_err(c, k[A_USER], "'username' is not used with kind: %s (the account is mailbox)", kind);
  if (k[A_MECH])
    cfg_err(c, k[A_MECH], "'mechanism' is not used with kind: %s (the API takes a bearer token)",
            kind);
  for (int i = A_PENV; i < A_SRC_END; i++) {
    if (k[i] && i != A_TCMD && i != A_OAUTH) {
      cfg_err(c, k[i], "kind: %s authenticates with oauth2 or token_command, not %s", kind,
              auth_keys[i]);
      ok = false;
    }
  }
  if (ok && !k[A_TCMD] && !k[A_OAUTH]) {
    cfg_err(c, n, "kind: %s needs oauth2 (preset: %s) or token_command", kind,
            u->kind == STP_UP_GRAPH ? "microsoft365-graph" : "google-gmail-api");
    ok = false;
  }
  return ok;
}

void cfg_parse_upstream_auth(cfg_ctx *c, yaml_node_t *n, stp_upstream_cfg *u) {
  static const char *const mech_names[] = {"auto", "plain", "login", "xoauth2", NULL};
  yaml_node_t *k[A_N], *v[A_N];
  int e;
  u->has_auth = true;
  WALK(c, n, "in upstream auth", auth_keys, k, v);
  if (u->kind != STP_UP_SMTP) {
    if (!api_auth_ok(c, n, k, u))
      return;
  } else {
    if (v[A_MECH] &&
        cfg_parse_enum(c, v[A_MECH], "mechanism", mech_names, "auto, plain, login or xoauth2", &e))
      u->mechanism = (stp_auth_mech)e;
    if (v[A_USER])
      cfg_set_str(c, v[A_USER], "username", &u->username);
    else
      cfg_err(c, k[A_USER] ? k[A_USER] : n, "auth needs a username");
  }

  /* Exactly one secret source; any later in the file conflicts with the
   * first, and then none is read (no cascade of unrelated errors). */
  int first = -1, conflicts = 0;
  for (int i = A_PENV; i < A_SRC_END; i++)
    if (k[i] && (first < 0 || k[i]->start_mark.index < k[first]->start_mark.index))
      first = i;
  for (int i = A_PENV; i < A_SRC_END; i++) {
    if (k[i] && i != first) {
      cfg_err(c, k[i], "'%s' conflicts with '%s': give only one secret source", auth_keys[i],
              auth_keys[first]);
      conflicts++;
    }
  }
  if (first < 0) {
    cfg_err(c, n,
            "auth needs one of password_env, password_file, password, token_file, "
            "token_command or oauth2");
    return;
  }
  if (conflicts)
    return;
  if (v[A_TTL] && first != A_TCMD)
    cfg_err(c, k[A_TTL], "token_ttl is only used with token_command");
  if (!v[first]) {
    cfg_err(c, k[first], "'%s' is empty", auth_keys[first]);
    return;
  }
  switch (first) {
  case A_PENV:
    u->secret = read_secret_env(c, v[A_PENV], "password_env");
    u->secret_is_token = u->mechanism == STP_MECH_XOAUTH2;
    break;
  case A_PFILE:
    u->secret = read_secret_file(c, v[A_PFILE], "password_file");
    break;
  case A_PASS: {
    /* Never echoed, whatever is wrong with it. */
    if (v[A_PASS]->type != YAML_SCALAR_NODE || cfg_has_nul(v[A_PASS]))
      cfg_err(c, v[A_PASS], "expected a single value for 'password', not %s",
              cfg_kind_of(v[A_PASS]));
    else if (!v[A_PASS]->data.scalar.length)
      cfg_err(c, v[A_PASS], "'password' is empty");
    else
      u->secret = stp_xstrdup((const char *)v[A_PASS]->data.scalar.value);
    cfg_warn(c, k[A_PASS],
             "inline password in the config file; prefer password_env or "
             "password_file");
    break;
  }
  case A_TFILE:
    u->secret = read_secret_file(c, v[A_TFILE], "token_file");
    u->secret_is_token = true;
    if (u->mechanism == STP_MECH_PLAIN || u->mechanism == STP_MECH_LOGIN)
      cfg_err(c, k[A_TFILE], "token_file needs mechanism xoauth2 (or auto)");
    else
      u->mechanism = STP_MECH_XOAUTH2; /* a bearer token only makes sense there */
    break;
  case A_TCMD:
  case A_OAUTH:
    if (first == A_TCMD)
      parse_token_command(c, v[A_TCMD], u);
    else if (cfg_expect_map(c, v[A_OAUTH], "oauth2"))
      parse_oauth2(c, v[A_OAUTH], u);
    if (u->token_src && first == A_TCMD && v[A_TTL])
      cfg_parse_duration(c, v[A_TTL], "token_ttl", false, &u->token_src->token_ttl_ms);
    u->secret_is_token = true;
    if (u->mechanism == STP_MECH_PLAIN || u->mechanism == STP_MECH_LOGIN)
      cfg_err(c, v[A_MECH], "%s needs mechanism xoauth2 (or auto)", auth_keys[first]);
    else
      u->mechanism = STP_MECH_XOAUTH2;
    break;
  default:
    break;
  }
  if (u->mechanism == STP_MECH_XOAUTH2 && (first == A_PFILE || first == A_PASS))
    cfg_err(c, v[A_MECH],
            "mechanism xoauth2 needs token_file, token_command, oauth2 or "
            "password_env holding the token");
}
