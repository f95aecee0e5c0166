/* config.h - the YAML configuration as validated C structs.
 *
 * Owns: parsing the file with libyaml, applying defaults, validating every
 * key (unknown keys, wrong types, bad values, missing files and unset
 * environment variables are errors reported as FILE:LINE:COL: message),
 * loading secrets (password_env / password_file / token_file / password).
 * Guarantees: a stp_config returned by stp_config_load is complete and
 * consistent (every route names existing upstreams, every listener has at
 * least one address); secrets are cleansed by stp_config_free. No sockets.
 */
#ifndef STP_CONFIG_H
#define STP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtp-tls-proxy/cidr.h"

typedef enum { STP_TLS_NONE = 0, STP_TLS_STARTTLS, STP_TLS_IMPLICIT } stp_tls_mode;
typedef enum {
  STP_LAUTH_NONE = 0,
  STP_LAUTH_ANY,
  STP_LAUTH_USERS,
  STP_LAUTH_PASSTHROUGH
} stp_lan_auth;
/* lenient: LF "." LF also ends DATA (trusted LF-only devices; see data.h). */
typedef enum { STP_BARELF_FIX = 0, STP_BARELF_REJECT, STP_BARELF_LENIENT } stp_bare_lf;
typedef enum { STP_MECH_AUTO = 0, STP_MECH_PLAIN, STP_MECH_LOGIN, STP_MECH_XOAUTH2 } stp_auth_mech;
typedef enum { STP_LOG_TEXT = 0, STP_LOG_JSON } stp_log_format;

/* Version numbers are TLS wire values: 0x0301 = 1.0 ... 0x0304 = 1.3. */
#define STP_TLS1_0 0x0301
#define STP_TLS1_1 0x0302
#define STP_TLS1_2 0x0303
#define STP_TLS1_3 0x0304

/* Where a value was written, for messages that point back at the file. */
typedef struct stp_pos {
  unsigned line, col; /* 1-based; 0 when not from the file */
} stp_pos;

typedef struct stp_strlist {
  char **v;
  size_t n;
} stp_strlist;

typedef struct stp_user {
  char *name;
  char *hash; /* crypt(3) string, e.g. $6$salt$hash */
} stp_user;

typedef struct stp_listener_cfg {
  char *name;
  stp_strlist listen;       /* "host:port", "[v6]:port"; validated */
  stp_tls_mode tls;         /* default none */
  char *certificate;        /* NULL if not given */
  char *private_key;        /* NULL if not given */
  uint16_t tls_min_version; /* default STP_TLS1_2 */
  stp_cidr *allow;          /* default: 127.0.0.0/8 and ::1/128 */
  size_t n_allow;
  stp_lan_auth auth; /* default none */
  stp_user *users;   /* for auth: users */
  size_t n_users;
  /* auth: users: the costliest of users[].hash (lanauth_costliest_hash),
   * checked for unknown user names with the result ignored, so that they
   * take as long as a known name. Points into users; not owned. */
  const char *unknown_user_hash;
  uint64_t max_message_size;           /* bytes; default 50 MiB */
  uint32_t max_connections;            /* default 200 */
  uint32_t max_connections_per_client; /* default 20 */
  stp_bare_lf bare_lf;                 /* default fix */
  uint64_t idle_timeout_ms;            /* default 5 min */
  uint64_t data_deadline_ms;           /* all of one message's DATA; default 30 min */
  stp_pos pos;
  char *rate_limit; /* "N/period" as written (validated); NULL if not given */
  /* Balancers that must send a PROXY v1/v2 header, whose address then is
   * the client; none by default. */
  stp_cidr *proxy_protocol;
  size_t n_proxy_protocol;
} stp_listener_cfg;

/* Where an XOAUTH2 upstream's access token comes from when it is not a
 * static token_file: an OAuth2 token endpoint (auth.oauth2) or a helper
 * program (auth.token_command). Fetched and cached by oauth2_net.c. */
typedef enum { STP_TOKSRC_OAUTH2 = 0, STP_TOKSRC_COMMAND } stp_toksrc_kind;
typedef enum {
  STP_GRANT_REFRESH_TOKEN = 0,
  STP_GRANT_CLIENT_CREDENTIALS,
  STP_GRANT_SERVICE_ACCOUNT /* Google, RFC 7523 2.1 (config_jwt.c) */
} stp_oauth2_grant;

typedef struct stp_oauth2_cfg {
  stp_toksrc_kind kind;
  /* oauth2 */
  stp_oauth2_grant grant; /* default refresh_token */
  char *token_url;        /* https:// (http:// only with the upstream's insecure) */
  char *client_id;
  char *client_secret;      /* NULL for public clients; cleansed on free */
  char *refresh_token_file; /* absolute path; rotated tokens are written back */
  char *refresh_token;      /* as read at load; cleansed on free */
  char *scope;              /* NULL: none sent */
  char *ca_file;            /* trust anchors for token_url; default system bundle */
  /* `oauth2 login` only: the RFC 6749 authorization endpoint and the RFC
   * 8628 device endpoint (written, or the preset's; NULL: none) */
  char *authorization_url;
  char *device_authorization_url;
  bool login_google; /* a Google preset: access_type=offline, prompt=consent */
  /* token_command */
  stp_strlist command;    /* argv, run without a shell */
  uint64_t token_ttl_ms;  /* token_command: default 5 min */
  uint64_t timeout_ms;    /* one fetch or command run: the upstream's connect_timeout */
  unsigned long load_seq; /* which load this came from (newer wins in the cache) */
  /* Signed JWTs instead of a client secret or refresh token (config_jwt.c):
   * grant: service_account, or client_certificate_file + client_key_file. */
  char *subject;     /* service_account: the mailbox to act as (sub) */
  char *sa_email;    /* service_account: the key's client_email (iss) */
  char *sa_key_id;   /* service_account: the key's private_key_id (kid) */
  char *key_file;    /* service_account_file or client_key_file, resolved */
  char *private_key; /* PEM; cleansed on free */
  char *certificate; /* PEM of client_certificate_file; NULL otherwise */
} stp_oauth2_cfg;

/* What an upstream speaks: SMTP, or an HTTP mail API (apiconn.c). */
typedef enum { STP_UP_SMTP = 0, STP_UP_GRAPH, STP_UP_GMAIL } stp_up_kind;

typedef struct stp_upstream_cfg {
  char *name;
  char *host;
  uint16_t port;            /* default: 465 for implicit, else 587 */
  stp_tls_mode tls;         /* default starttls */
  char *server_name;        /* default: copy of host */
  char *ca_file;            /* default: /etc/ssl/certs/ca-certificates.crt */
  uint16_t tls_min_version; /* default STP_TLS1_2; values below 1.2 rejected */
  bool verify;              /* default true; false requires insecure */
  bool insecure;            /* default false */
  char *helo;               /* default: copy of stp_config.hostname */
  bool has_auth;            /* auth: block present */
  stp_auth_mech mechanism;  /* default auto */
  char *username;
  char *secret;                /* password or bearer token; cleansed on free */
  bool secret_is_token;        /* came from token_file (xoauth2) */
  uint64_t connect_timeout_ms; /* default 30 s */
  uint64_t command_timeout_ms; /* default 5 min */
  uint64_t data_timeout_ms;    /* default 10 min */
  stp_pos pos;
  /* Connection reuse (configured credentials only; never passthrough). */
  bool pool;                     /* default true */
  uint32_t pool_max_idle;        /* idle connections kept; default 16 */
  uint64_t pool_idle_timeout_ms; /* default 60 s */
  stp_oauth2_cfg *token_src;     /* auth.oauth2 or auth.token_command; NULL otherwise */
  /* kind: graph | gmail (config_upstream.c). host, port, tls (implicit for
   * https) and server_name are then derived from api_url, so the TLS
   * context, logs and --test-route treat both kinds alike. */
  stp_up_kind kind;           /* default smtp */
  char *mailbox;              /* graph: the user (UPN or id); gmail: default "me" */
  char *api_url;              /* default per kind; no trailing '/' */
  bool save_to_sent_items;    /* graph; default true */
  uint64_t probe_interval_ms; /* probes (probe.c); default 15 min; 0 = off */
} stp_upstream_cfg;

typedef struct stp_route_cfg {
  char *name;
  /* match: an empty list means "any" */
  stp_strlist match_listener;
  stp_cidr *match_client;
  size_t n_match_client;
  stp_strlist match_auth_user;
  stp_strlist match_mail_from; /* globs; "<>" is the null sender */
  stp_strlist match_rcpt_to;   /* globs */
  size_t *upstreams;           /* indices into stp_config.upstreams, >= 1 */
  size_t n_upstreams;
  char *rewrite_mail_from;   /* NULL: keep */
  char *rewrite_header_from; /* NULL: keep */
  stp_pos pos;
  char *rate_limit; /* "N/period" as written (validated); NULL if not given */
  /* on_upstream_failure: spool (default defer): what every upstream of the
   * route could not take right now goes to the spool (stp_config.spool). */
  bool spool;
  stp_pos spool_pos; /* where on_upstream_failure was written */
} stp_route_cfg;

/* The optional `spool:` section (config_spool.c). */
typedef struct stp_spool_cfg {
  char *dir;             /* absolute; created 0700 at start */
  uint64_t max_size;     /* bytes of committed messages; default 2 GiB */
  uint64_t max_messages; /* default 10000 */
  uint64_t *retry_ms;    /* intervals between attempts, then the last again */
  size_t n_retry;        /* >= 1; default 1m, 5m, 15m, 1h */
  uint64_t max_age_ms;   /* then a failure notice; default 5 days */
  char *notify;          /* receives every failure notice; NULL: none */
  bool notify_sender;    /* also the envelope sender (never <>) */
  bool shared;           /* several processes share dir (per-message locks) */
  stp_pos pos;
} stp_spool_cfg;

/* The optional `alerts:` section (config_alerts.c). */
typedef struct stp_alerts_cfg {
  char *webhook;            /* https:// URL; NULL: none */
  char *ca_file;            /* trust anchors for the webhook; default system bundle */
  char *email;              /* user@domain, sent through the routes; NULL: none */
  uint64_t min_interval_ms; /* same event, same upstream at most this often; default 1 h */
  uint64_t alert_after_ms;  /* upstream_down after failing this long; default 5 min */
  stp_pos pos;
} stp_alerts_cfg;
/* The optional `admin:` section (config_admin.c): the admin page and API. */
typedef struct stp_admin_cfg {
  char *listen;    /* "host:port"; outside loopback only with TLS */
  stp_user *users; /* HTTP Basic; at least one */
  size_t n_users;
  const char *unknown_user_hash; /* points into users (see the listener's) */
  uint32_t history;              /* messages kept; default 1000 */
  char *certificate;             /* both or neither; TLS 1.2+ when given */
  char *private_key;
  stp_pos pos;
} stp_admin_cfg;

typedef struct stp_config {
  char *path;
  char *hostname;             /* default gethostname() */
  int log_level;              /* STP_LOG_* from log.h; default info */
  stp_log_format log_format;  /* default text */
  char *metrics_listen;       /* NULL if not configured */
  uint64_t shutdown_grace_ms; /* default 30 s */
  stp_listener_cfg *listeners;
  size_t n_listeners;
  stp_upstream_cfg *upstreams;
  size_t n_upstreams;
  stp_route_cfg *routes;
  size_t n_routes;
  stp_spool_cfg *spool;   /* NULL: no spool, every route is pass-through */
  stp_alerts_cfg *alerts; /* NULL: no alerts */
  stp_admin_cfg *admin;   /* NULL: no admin page */
} stp_config;

/* Diagnostics: each one is a finished line "FILE:LINE:COL: error: text"
 * or "FILE:LINE:COL: warning: text" (without a newline). */
typedef struct stp_diag {
  char **lines;
  size_t n;
  size_t n_errors;
  size_t n_warnings;
} stp_diag;

void stp_diag_free(stp_diag *d);

/* Load and validate. Returns 0 and sets *out, or a negative code with at
 * least one error in diag. Warnings (e.g. inline password) may be added
 * on success. */
int stp_config_load(const char *path, stp_config **out, stp_diag *diag);
/* Same, without reading any secret (password_env, password_file, ...:
 * each becomes a placeholder): for commands that only need the layout,
 * such as `queue`, run from a shell without the service's environment.
 * Such a config must never be used to connect anywhere. */
int stp_config_load_layout(const char *path, stp_config **out, stp_diag *diag);
/* Same, from a string in memory; `name` is used as FILE in messages.
 * Relative paths inside it resolve against the current directory. */
int stp_config_load_string(const char *name, const char *yaml, size_t len, stp_config **out,
                           stp_diag *diag);
void stp_config_free(stp_config *cfg);

/* The configuration text can hold inline passwords and user hashes, so
 * every buffer of it that the load can reach is cleansed before it is
 * freed: the file as read (and each smaller copy left behind while it
 * grew), libyaml's input buffers, queued tokens and every scalar of the
 * parsed documents. Copies libyaml makes and frees inside one call (a
 * scalar growing while it is scanned, the nodes of a document that failed
 * to parse) are out of reach. For tests: `fn` (NULL: none) is called with
 * each such buffer right after it was cleansed, before it is freed;
 * `what` is "file", "yaml-buffer", "yaml-raw", "yaml-token" or
 * "yaml-scalar". */
typedef void (*stp_config_wipe_fn)(const char *what, const void *p, size_t n);
void stp_config_set_wipe_observer(stp_config_wipe_fn fn);

/* Value parsers, exposed for tests and for other modules. */
int stp_parse_duration_ms(const char *s, uint64_t *out); /* "30s" "5m" "1h" "250ms" "10" (s) */
int stp_parse_size(const char *s, uint64_t *out);        /* "25MB" "50MiB" "1024" "10KiB" "1GB" */
int stp_parse_tls_version(const char *s, uint16_t *out); /* "1.0".."1.3" */
/* "host:port" / "[v6]:port" / ":port" -> host (malloc'd, "" for any) and port */
int stp_parse_hostport(const char *s, char **host, uint16_t *port);
/* "100/1m", "10/s", "5/30s" -> count >= 1 and period > 0 */
int stp_parse_rate(const char *s, uint32_t *count, uint64_t *period_ms);

const stp_listener_cfg *stp_config_listener(const stp_config *c, const char *name);
const stp_upstream_cfg *stp_config_upstream(const stp_config *c, const char *name);

#endif
