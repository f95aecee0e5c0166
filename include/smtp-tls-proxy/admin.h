/* admin.h - the admin page and API's request router, pure.
 *
 * Owns: what a request to admin.listen means and what it gets back: the
 * request's framing over the HTTP/1 codec (bounded head and body), HTTP
 * Basic credentials, the failure rate limit, the per-session CSRF token
 * and same-origin rule, the routing of GET / (the page), the static
 * assets, GET /api/status|deliveries|queue, POST /api/queue/{id}/{op} and
 * POST /api/test-route, and every response head (security headers
 * included). The server (proxy/net/admin_http.c) only moves bytes, runs
 * the password check off the loop and performs the queue actions and test
 * messages through admin_ops.
 *
 * Guarantees: no sockets, no clock (time comes in), no randomness of its
 * own (ops->random); a request is refused before anything else when its
 * head exceeds ADMIN_MAX_HEAD (431) or its body ADMIN_MAX_BODY (413);
 * nothing but 400/413/431/429/401 is answered before the credentials were
 * checked; a state-changing request needs the session's CSRF token (form
 * field "csrf" or header X-CSRF-Token) and an Origin equal to the request's
 * own scheme://Host, else 403; no password, hash, cookie or token is ever
 * written into a body (the CSRF token only into the page that posts it).
 * Every response has Content-Security-Policy (no inline script,
 * frame-ancestors 'none'), X-Content-Type-Options: nosniff, Cache-Control:
 * no-store and Connection: close.
 */
#ifndef STP_ADMIN_H
#define STP_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtp-tls-proxy/config.h"
#include "smtp-tls-proxy/history.h"
#include "smtp-tls-proxy/http1.h"
#include "smtp-tls-proxy/lanauth.h"
#include "smtp-tls-proxy/queuectl.h"
#include "smtp-tls-proxy/ratelimit.h"
#include "smtp-tls-proxy/util.h"

#define ADMIN_MAX_HEAD 8192
#define ADMIN_MAX_BODY 4096
#define ADMIN_MAX_REQUEST (ADMIN_MAX_HEAD + ADMIN_MAX_BODY)
#define ADMIN_MAX_RESPONSE (4u << 20) /* the page with a full history */
#define ADMIN_SESSIONS 32             /* browser sessions kept (oldest evicted) */
#define ADMIN_SESSION_IDLE_MS (8ull * 3600 * 1000)
#define ADMIN_FAIL_COUNT 5         /* failed logins per client ... */
#define ADMIN_FAIL_PERIOD_MS 60000 /* ... per minute, then 429 */
#define ADMIN_FAIL_GLOBAL_COUNT 30 /* from all clients together */
#define ADMIN_QUEUE_ROWS 500       /* queue entries shown */
#define ADMIN_PAGE_HISTORY 100     /* history rows on the page */
#define ADMIN_FIELD_MAX 320        /* route, from, to of the test form */

typedef struct admin_asset {
  const char *path; /* "/admin.js" */
  const char *ctype;
  const unsigned char *data;
  size_t len;
} admin_asset;

typedef struct admin_spool_figs {
  uint64_t messages, bytes, max_messages, max_bytes, oldest_s;
  bool recovered;
} admin_spool_figs;

typedef struct admin_qrow {
  char id[SPOOL_ID_LEN + 1];
  char route[65], from[257], last[257];
  uint64_t created_ms, next_ms, size;
  unsigned attempts, n_rcpts;
  int held; /* 0 no, 1 admin, 2 route missing */
  bool busy;
} admin_qrow;

typedef struct admin_ops {
  /* false when there is no spool */
  bool (*spool)(void *ctx, admin_spool_figs *out);
  /* up to cap rows, oldest first; returns how many there are in all */
  size_t (*queue)(void *ctx, admin_qrow *rows, size_t cap);
  /* retry/hold/release/delete one message; 0, or -1 with msg */
  int (*queue_act)(void *ctx, queuectl_op op, const char *id, const char *by, char *msg,
                   size_t cap);
  void (*random)(void *ctx, unsigned char *p, size_t n);
} admin_ops;

typedef struct admin_session {
  char id[33];   /* the cookie, 128 random bits in hex */
  char csrf[33]; /* the form token, 128 other random bits */
  char user[LANAUTH_USER_MAX + 1];
  uint64_t last_ms;
} admin_session;

typedef struct admin {
  const stp_config *cfg; /* the current generation's (upstreams, routes, admin) */
  const history *hist;
  const admin_ops *ops;
  void *ctx;
  const admin_asset *assets;
  size_t n_assets;
  int64_t started_s; /* wall clock */
  ratelimit_table fails;
  ratelimit_bucket fails_all;
  admin_session sess[ADMIN_SESSIONS];
} admin;

typedef enum {
  ADM_NONE = 0, /* answered already (resp holds it) */
  ADM_PAGE,
  ADM_ASSET,
  ADM_STATUS,
  ADM_DELIVERIES,
  ADM_QUEUE,
  ADM_QUEUE_ACTION,
  ADM_TEST, /* POST /api/test-route: the server sends it (admin_test_done) */
} admin_action;

typedef struct admin_req {
  http1_request h;
  size_t total; /* head + body bytes */
  bool post, head_only, tls;
  admin_action act;
  int not_found; /* routed to nothing: 404 or 405 after the credentials */
  const admin_asset *asset;
  char path[128]; /* ADM_ASSET */
  queuectl_op op;
  char id[SPOOL_ID_LEN + 1];
  size_t limit;
  int result;
  bool wants_json; /* the CSRF token came as a header: an API client */
  char route[ADMIN_FIELD_MAX + 1], from[ADMIN_FIELD_MAX + 1], to[ADMIN_FIELD_MAX + 1];
  /* HTTP Basic, decoded; the password is a secret (admin_req_wipe) */
  bool has_creds;
  char user[LANAUTH_USER_MAX + 1], pass[LANAUTH_USER_MAX + 1];
  char cookie[33], csrf[65];
  char origin[256], host[256], fetch_site[32];
  const admin_session *session; /* set by admin_handle */
} admin_req;

typedef struct admin_resp {
  int status;
  const char *ctype;
  char extra[512]; /* more header lines, each ending in CRLF */
  stp_buf body;
  bool head_only;
} admin_resp;

void admin_init(admin *a, const stp_config *cfg, const history *hist, const admin_ops *ops,
                void *ctx, const admin_asset *assets, size_t n_assets, int64_t started_s);
void admin_free(admin *a);
/* A reload: the new generation's config (users, upstreams, routes). */
void admin_set_config(admin *a, const stp_config *cfg);

/* Frame and route buf[0..len). STP_EAGAIN: more bytes needed (len below
 * ADMIN_MAX_REQUEST). 0: r is ready for the credential check. Otherwise
 * an HTTP status (400, 411, 413, 431, 501) to answer with admin_error at
 * once. */
int admin_parse(const char *buf, size_t len, bool tls, admin_req *r);
/* Clears the password and the other request secrets. */
void admin_req_wipe(admin_req *r);

/* The failure rate limit, before the (slow) password check: 0 to go on,
 * else the seconds to wait (answer 429 with admin_error). */
uint64_t admin_gate(admin *a, const char *client, uint64_t now_ms);
/* The password check (slow: crypt(3); run it off the loop). Reads only
 * the config; safe on another thread while the config lives. An unknown
 * user costs the costliest hash, its result ignored. */
bool admin_check_credentials(const stp_config *cfg, const admin_req *r);
/* A failed check: counts against the client and all clients. */
void admin_failed(admin *a, const char *client, uint64_t now_ms);

/* After a successful check: the CSRF and origin rules, the session, and
 * the answer of every action but ADM_TEST (which returns ADM_TEST with
 * route/from/to set and an empty resp: send it, then admin_test_done).
 * Returns the action taken. */
admin_action admin_handle(admin *a, admin_req *r, int64_t wall_ms, uint64_t now_ms,
                          admin_resp *resp);
/* The answer to POST /api/test-route once the test finished. */
void admin_test_done(admin *a, const admin_req *r, bool ok, const char *transcript, int64_t wall_ms,
                     admin_resp *resp);

/* An error answer (plain text body) for status; 401 gets WWW-Authenticate,
 * 429 Retry-After (retry_s), 405 Allow. */
void admin_error(admin_resp *resp, int status, uint64_t retry_s);
/* The response head into out (the body follows it). */
int admin_resp_head(const admin_resp *resp, bool tls, stp_buf *out);
void admin_resp_free(admin_resp *resp);

#endif
