/* upstream.h - the SMTP client towards one upstream, as a pure state machine.
 *
 * Owns: the dialogue greeting -> EHLO -> STARTTLS -> EHLO -> AUTH -> ready,
 * then MAIL/RCPT/DATA/body/dot/RSET/QUIT on request. It never touches a
 * socket: bytes come in through upstream_feed() and leave through
 * ops->write(); the transport reports connect, TLS and errors as events.
 * Guarantees: upstream TLS is never optional (a starttls upstream that does
 * not offer STARTTLS, answers it with anything but 220, or sends bytes after
 * that 220 is a failure before any credential or mail is sent); after TLS
 * all EHLO knowledge is discarded and EHLO is sent again; every failure is
 * reported once through ops->failed() and the machine is then dead.
 */
#ifndef STP_UPSTREAM_H
#define STP_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtp-tls-proxy/config.h"
#include "smtp-tls-proxy/provider.h"
#include "smtp-tls-proxy/smtp.h"

typedef enum {
  UP_CONNECTING = 0,
  UP_TLS_IMPLICIT, /* implicit TLS handshake in progress */
  UP_GREETING,
  UP_EHLO,
  UP_HELO,
  UP_STARTTLS,
  UP_TLS_HANDSHAKE, /* after 220 to STARTTLS */
  UP_EHLO2,
  UP_AUTH,
  UP_READY,
  UP_MAIL,
  UP_RCPT,
  UP_DATA,
  UP_BODY,
  UP_DOT,
  UP_RSET,
  UP_QUIT,
  UP_DEAD,
} upstream_state;

/* Why the connection failed; decides the 4xx the device gets and whether a
 * route may fail over to its next upstream. */
typedef enum {
  UP_FAIL_NONE = 0,
  UP_FAIL_DNS,
  UP_FAIL_CONNECT,
  UP_FAIL_TLS,      /* handshake or certificate */
  UP_FAIL_STARTTLS, /* not offered, refused, or injection */
  UP_FAIL_GREETING, /* non-220 greeting, e.g. 421 */
  UP_FAIL_AUTH,
  UP_FAIL_TIMEOUT,
  UP_FAIL_CLOSED,   /* connection lost */
  UP_FAIL_PROTOCOL, /* garbage or an unexpected reply */
} upstream_fail;

typedef struct upstream_ops {
  /* Bytes for the peer (plaintext; the transport encrypts once in TLS). */
  void (*write)(void *ctx, const char *p, size_t n);
  /* Start the TLS handshake now; report with upstream_on_tls_ready(). */
  void (*start_tls)(void *ctx);
  /* Arm the one timer of this machine (0 disarms). */
  void (*set_timer)(void *ctx, uint64_t ms);
  /* Established (TLS and AUTH done): ready for MAIL. */
  void (*ready)(void *ctx);
  /* The reply to a command sent with upstream_mail/rcpt/data/end/rset. */
  void (*reply)(void *ctx, const smtp_reply *r);
  /* The connection is unusable; the transport should be closed. `detail`
   * is for the log (never contains secrets); upstream_verdict() tells what
   * the provider table makes of it. */
  void (*failed)(void *ctx, upstream_fail why, const char *detail);
  /* A request found its answer at once: call upstream_run_deferred() from
   * the loop, after the requester has returned. */
  void (*defer)(void *ctx);
} upstream_ops;

typedef enum { UP_DEFER_NONE = 0, UP_DEFER_REPLY, UP_DEFER_FAIL } up_deferred;

typedef struct upstream {
  const stp_upstream_cfg *cfg;
  const char *helo;
  const upstream_ops *ops;
  void *ctx;
  upstream_state state;
  smtp_linereader lr;
  smtp_reply reply;
  smtp_caps caps;
  bool tls; /* TLS is up */
  int mech; /* chosen SASL mechanism */
  unsigned login_step;
  bool ehlo_fallback_helo;
  /* A LAN device's own credentials (auth: passthrough) replacing the
   * configured ones when set. Borrowed pointers; never logged. */
  const char *pt_user;
  const char *pt_secret;
  /* An access token fetched for the configured user (auth.oauth2 or
   * token_command), used instead of cfg->secret. Borrowed; never logged. */
  const char *tok_secret;
  bool in_txn; /* a MAIL was accepted and no final reply or RSET since */
  /* An answer found inside a request, delivered by upstream_run_deferred. */
  bool in_request;
  up_deferred deferred;
  int deferred_code;
  upstream_fail deferred_fail;
  char deferred_text[256];
  /* The provider table's reading of the reply (or TLS reason) that made
   * the connection fail; rule NULL for failures it does not know. */
  provider_verdict verdict;
  /* XOAUTH2: the 334 error challenge (base64 JSON) before the final reply. */
  char xoauth2_challenge[512];
  char log_id[16];   /* the session id for log lines, "" when none */
  bool dsn_logged;   /* DSN parameters dropped in this transaction: logged */
  bool helo_refused; /* the first EHLO got 501: our name was refused */
} upstream;

void upstream_init(upstream *u, const stp_upstream_cfg *cfg, const char *helo,
                   const upstream_ops *ops, void *ctx);
void upstream_free(upstream *u);
/* Use these credentials instead of the configured ones (passthrough).
 * Call before the connection reaches AUTH; the strings must outlive it. */
void upstream_set_credentials(upstream *u, const char *user, const char *secret);
/* Use this bearer token as the configured user's secret (the mechanism
 * stays the configured one). Same lifetime rule as above. */
void upstream_set_token(upstream *u, const char *token);

/* The session id this connection's own log lines carry. */
void upstream_set_log_id(upstream *u, const char *sid);

/* Transport events. */
void upstream_on_connected(upstream *u);
void upstream_on_tls_ready(upstream *u);
void upstream_feed(upstream *u, const char *p, size_t n);
void upstream_on_timeout(upstream *u);
void upstream_on_closed(upstream *u, upstream_fail why, const char *detail);
/* Deliver what a request found at once (after ops->defer). */
void upstream_run_deferred(upstream *u);

/* Requests, valid in UP_READY (mail, rcpt, data, rset) and UP_BODY (body,
 * end). Each returns 0 or STP_ESTATE. The reply comes through ops->reply,
 * never before the request has returned (see ops->defer).
 * MAIL carries SIZE, BODY and SMTPUTF8 from `a` only where the upstream
 * announced the extension (a may be NULL). DSN parameters (RET, ENVID on
 * MAIL; NOTIFY, ORCPT on RCPT, dsn may be NULL) go up when the upstream
 * offers DSN and are dropped otherwise, as RFC 3461 4 lets a relay do,
 * with one log line per transaction. */
int upstream_mail(upstream *u, const char *from, const smtp_mail_args *a);
int upstream_rcpt(upstream *u, const char *to, const smtp_rcpt_dsn *dsn);
int upstream_data(upstream *u);
int upstream_body(upstream *u, const char *p, size_t n);
int upstream_end(upstream *u);
int upstream_rset(upstream *u);
/* Send QUIT if possible; no reply is reported. */
void upstream_quit(upstream *u);

bool upstream_idle(const upstream *u); /* ready and no command outstanding */
/* A MAIL was accepted and neither the final dot's reply nor RSET's came. */
bool upstream_in_txn(const upstream *u);
/* It authenticates with a device's own credentials (never to be shared). */
bool upstream_has_device_credentials(const upstream *u);
/* What the provider table made of the failure reported last (valid after
 * ops->failed; rule NULL when no row matched or no reply was involved). */
const provider_verdict *upstream_verdict(const upstream *u);
const char *upstream_state_name(upstream_state s);
const char *upstream_fail_name(upstream_fail f);

#endif
