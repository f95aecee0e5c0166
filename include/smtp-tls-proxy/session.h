/* session.h - the LAN-side SMTP server for one device, as a pure state
 * machine.
 *
 * Owns: the device's dialogue (greeting, EHLO/HELO, MAIL, RCPT, DATA, RSET,
 * ...), the transaction and its route, DATA framing via data.h, and the
 * mapping of upstream outcomes to replies. It never touches a socket: device
 * bytes come in through session_feed(), replies leave through ops->write(),
 * and the upstream is driven through ops->up_*(), whose outcomes come back
 * through session_up_*(). Guarantees:
 *  - commands are answered strictly in order; while an upstream answer is
 *    awaited, further input is held (bounded) and reading is paused;
 *  - bytes after DATA before our 354 are a synchronisation error (554 5.5.0,
 *    close, upstream dropped without a final dot);
 *  - the device gets 250 for a message only as the relay of the upstream's
 *    2xx to the final dot; our own or the network's trouble is always 4xx;
 *  - a device that disconnects mid-DATA never causes a final dot upstream;
 *  - re-entry is harmless: an upstream outcome delivered from inside an ops
 *    call (an owner that answers at once) is queued and applied after that
 *    call has returned, so input is never processed twice and the stack
 *    depth stays bounded (the owner in proxy/net answers from the loop
 *    anyway; the queue is the second line of defence, and what lets test
 *    fakes answer at once).
 */
#ifndef STP_SESSION_H
#define STP_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "smtp-tls-proxy/config.h"
#include "smtp-tls-proxy/data.h"
#include "smtp-tls-proxy/lanauth.h"
#include "smtp-tls-proxy/limits.h"
#include "smtp-tls-proxy/rewrite.h"
#include "smtp-tls-proxy/smtp.h"
#include "smtp-tls-proxy/spool.h"
#include "smtp-tls-proxy/upstream.h"
#include "smtp-tls-proxy/util.h"

#define SESSION_PENDING_MAX (64 * 1024) /* >= one transport read */
#define SESSION_MAX_RCPT 1000
#define SESSION_MAX_ERRORS 20
#define SESSION_EARLY_MAX 4 /* outcomes queued while busy (one per request) */

typedef struct session_ops {
  void (*write)(void *ctx, const char *p, size_t n);
  /* Flush what was written, then close the device connection. The session
   * makes no further calls after this. */
  void (*close)(void *ctx);
  /* Stop (true) or resume (false) reading from the device. */
  void (*pause)(void *ctx, bool paused);
  /* LAN STARTTLS: the 220 has been written; flush it, then start the TLS
   * handshake and report with session_tls_ready(). */
  void (*start_tls)(void *ctx);
  /* Upstream: connect for route index `route` and report with
   * session_up_ready() or session_up_failed(). */
  void (*up_open)(void *ctx, size_t route);
  void (*up_mail)(void *ctx, const char *from, const smtp_mail_args *a);
  /* dsn: the RCPT's DSN parameters (RFC 3461), never NULL. */
  void (*up_rcpt)(void *ctx, const char *to, const smtp_rcpt_dsn *dsn);
  void (*up_data)(void *ctx);
  void (*up_body)(void *ctx, const char *p, size_t n);
  void (*up_end)(void *ctx);
  void (*up_rset)(void *ctx);
  /* Drop the upstream: graceful sends QUIT; otherwise the connection is cut
   * at once (and a message in flight is never terminated). No callbacks
   * for this connection may follow. */
  void (*up_close)(void *ctx, bool graceful);
  /* Optional: check `pass` against the crypt(3) `hash` off the event loop
   * (a yescrypt check takes ~15 ms) and report with
   * session_password_checked(). NULL: checked inline. */
  void (*check_password)(void *ctx, const char *hash, const char *pass);
  /* Optional: a message's DATA began (our 354 is out); call
   * session_on_data_deadline() after `ms` unless it has ended by then. */
  void (*data_started)(void *ctx, uint64_t ms);
  /* Routes with on_upstream_failure: spool (session_spool.c); all NULL:
   * nothing is ever spooled. Whether the spool can take a message now
   * (below max_size and max_messages). */
  bool (*spool_room)(void *ctx);
  /* Keep a copy of the message: its envelope at our 354 (id and created
   * are the owner's), then every framed byte as it would go upstream,
   * also while the upstream is gone. The owner bounds the memory (on disk,
   * reading from the device paused while its writes lag). */
  void (*copy_begin)(void *ctx, const spool_env *env);
  void (*copy_body)(void *ctx, const char *p, size_t n);
  /* Make the copy durable in the spool (`reason`: why, for the log and
   * `queue show`) and report with session_spooled(). */
  void (*copy_commit)(void *ctx, const char *reason);
  /* Drop the copy: the upstream took the message, or nobody will. */
  void (*copy_discard)(void *ctx);
} session_ops;

typedef enum { SS_CMD = 0, SS_WAIT, SS_DATA, SS_DATA_DISCARD, SS_TLS, SS_CLOSED } session_state;
typedef enum {
  W_NONE = 0,
  W_OPEN,
  W_MAIL,
  W_RCPT,
  W_DATA,
  W_DOT,
  W_RSET,
  W_AUTH,  /* passthrough: the upstream checks the device's credentials */
  W_HASH,  /* auth: users: the password hash is checked off the loop */
  W_SPOOL, /* the copy of the message is being made durable */
} session_wait;

#define SESSION_MAX_AUTH_FAILURES 3
#define SESSION_RCPT_LIST_MAX 512

/* An upstream outcome that arrived while the session was busy. */
typedef enum { SO_READY, SO_REPLY, SO_FAILED, SO_PASSWORD, SO_SPOOLED } session_outcome_kind;
typedef struct session_outcome {
  session_outcome_kind kind;
  upstream_fail why;         /* SO_FAILED */
  const provider_rule *rule; /* SO_FAILED: the provider table's row, or NULL */
  provider_phase phase;      /* SO_FAILED: where it failed (with rule) */
  bool ok;                   /* SO_PASSWORD, SO_SPOOLED */
  bool has_tls;              /* SO_READY */
  char name[64], tls[16];    /* SO_READY; SO_SPOOLED: name is the id or the error */
  smtp_reply reply;          /* SO_REPLY */
} session_outcome;

typedef struct session {
  const stp_config *cfg;
  const stp_listener_cfg *lcfg;
  const session_ops *ops;
  void *ctx;
  struct sockaddr_storage peer;
  char client_ip[64];
  char sid[16];
  session_state state;
  session_wait wait;
  smtp_linereader lr;
  stp_buf pending; /* input held while waiting; cap 0 when not allocated */
  unsigned errors;
  bool greeted, esmtp, tls;
  char helo[256];
  char tls_version[16];
  /* transaction */
  bool have_mail;
  bool txn_failed; /* upstream lost with recipients accepted */
  smtp_mail_args mail;
  long route; /* -1: not fixed yet */
  unsigned n_rcpt;
  smtp_path rcpt;         /* the RCPT being processed */
  smtp_rcpt_dsn rcpt_dsn; /* and its DSN parameters */
  uint64_t txn_start_ms;
  data_framer framer;
  bool data_lost; /* upstream failed while streaming */
  rewrite_ctx rw; /* route with rewrite.header_from */
  bool rw_active;
  bool rw_overflow; /* header block over its bound: 552 */
  /* upstream connection */
  bool up_connected;
  bool up_in_txn; /* MAIL accepted upstream */
  long up_route;
  char up_name[64];
  char up_tls[16];
  char up_skipped[256]; /* "name:reason,..." upstreams passed over */
  /* LAN AUTH (listener auth: any | users | passthrough) */
  lanauth auth;
  bool in_auth; /* an AUTH exchange is reading continuation lines */
  bool authenticated;
  char auth_user[LANAUTH_USER_MAX + 1];
  char *pt_secret; /* passthrough: the device's password; cleansed on free */
  unsigned auth_failures;
  stp_limits *limits;   /* rate limits of this generation; NULL: none */
  uint64_t progress;    /* complete commands handled + DATA bytes taken */
  bool auth_user_known; /* the user of the hash check in flight exists */
  /* spool routes (session_spool.c) */
  bool spool_mode;         /* this transaction goes to the spool, not upstream */
  bool copying;            /* ops->copy_begin was called for this message */
  char **kept_rcpts;       /* accepted recipients, kept for the spool */
  smtp_rcpt_dsn *kept_dsn; /* and their DSN parameters */
  unsigned n_kept;
  char spool_fail[256]; /* the 4xx line pass-through would have given */
  /* The accepted recipients joined by ",", for the message event's
   * observer-only _rcpt_list (the delivery history); NULL until the first
   * one, at most SESSION_RCPT_LIST_MAX bytes: later ones are left out. */
  char *rcpt_list;
  /* Re-entry guard: set while the session processes input or an outcome. */
  bool pumping;
  session_outcome *early; /* ring of SESSION_EARLY_MAX; NULL until needed */
  unsigned early_head, n_early;
} session;

void session_init(session *s, const stp_config *cfg, const stp_listener_cfg *lcfg,
                  const struct sockaddr *peer, const char *sid, const session_ops *ops, void *ctx);
void session_free(session *s);
/* Rate limits shared by all sessions of a configuration generation. */
void session_set_limits(session *s, stp_limits *limits);
/* Send the greeting. */
void session_start(session *s);
/* Device events. */
void session_feed(session *s, const char *p, size_t n);
void session_on_eof(session *s);
void session_on_idle_timeout(session *s);
/* The listener's data_deadline passed since ops->data_started: a device
 * still sending gets 421 4.4.2, nothing of the message is delivered. */
void session_on_data_deadline(session *s);
void session_tls_ready(session *s, const char *version);
/* Answer 421 and close (shutdown grace over, or too many connections). */
void session_shutdown(session *s, const char *reply);
/* Whether the session waits on the upstream (its idle timer must not run). */
bool session_waiting(const session *s);
/* Complete commands handled plus DATA bytes taken: what counts as
 * progress for the idle timer (a dripped command does not). */
uint64_t session_progress(const session *s);
/* auth: passthrough: the device's own user and password once it has sent
 * them (for the upstream's AUTH); false otherwise. Never logged. */
bool session_passthrough(const session *s, const char **user, const char **secret);
/* Implicit TLS listener: hold input until session_tls_ready(). Call before
 * session_start(). */
void session_expect_tls(session *s);
/* Whether the session is inside one of its own calls: an owner that keeps
 * the callbacks rule never sees this true when it delivers an outcome. */
bool session_busy(const session *s);

/* Upstream outcomes. session_up_skipped() names the upstreams that were
 * passed over (failover, back-off) for the per-message log line; call it
 * before session_up_ready() or session_up_failed(). */
void session_up_skipped(session *s, const char *skipped);
void session_up_ready(session *s, const char *upstream_name, const char *tls_version);
void session_up_reply(session *s, const smtp_reply *r);
void session_up_failed(session *s, upstream_fail why);
/* The same with the provider table's verdict on the failure: a matched row
 * decides the device's reply (v NULL or v->rule NULL: as session_up_failed). */
void session_up_failed_verdict(session *s, upstream_fail why, const provider_verdict *v);
/* The answer to ops->check_password. */
void session_password_checked(session *s, bool ok);
/* The answer to ops->copy_commit: ok with the spool id, or the reason it
 * could not be made durable. */
void session_spooled(session *s, bool ok, const char *id_or_error);

const char *session_state_name(session_state st);
const char *session_wait_name(session_wait w);
/* The 4xx line (with CRLF) the device gets for an upstream failure. */
const char *session_fail_reply(upstream_fail why);

#endif
