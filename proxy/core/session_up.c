/* session_up.c - applying the upstream's answers (ready, reply, failure)
 * and the password check's result to the session waiting for them.
 *
 * Called only from the session's pump (session.c), never nested: an
 * answer that arrives early is queued there first.
 */
#include "session_up.h"

#include <stdio.h>
#include <string.h>

#include "session_auth.h"
#include "session_data.h"
#include "session_out.h"
#include "session_provider.h"
#include "session_spool.h"

static void apply_password(session *s, bool ok) {
  if (s->state != SS_WAIT || s->wait != W_HASH)
    return;
  session_out_done_waiting(s, SS_CMD);
  session_auth_hash_result(s, ok);
}

static void apply_ready(session *s, const char *upstream_name, const char *tls_version) {
  if (s->state != SS_WAIT || (s->wait != W_OPEN && s->wait != W_AUTH))
    return;
  s->up_connected = true;
  s->up_in_txn = false;
  s->up_route = s->route;
  snprintf(s->up_name, sizeof s->up_name, "%s", upstream_name);
  snprintf(s->up_tls, sizeof s->up_tls, "%s", tls_version ? tls_version : "none");
  if (s->wait == W_AUTH) {
    /* The upstream took the device's credentials. */
    s->route = -1;
    session_auth_accept(s);
    session_out_done_waiting(s, SS_CMD);
    return;
  }
  s->wait = W_MAIL;
  s->ops->up_mail(s->ctx, session_out_sender(s), &s->mail);
}

static void apply_reply_data(session *s, const smtp_reply *r) {
  /* A temporary refusal of DATA on a spool route: our own 354. */
  if (r->code == 354 || session_spool_switch(s, r, UP_FAIL_NONE)) {
    session_data_start(s);
    return;
  }
  session_out_relay(s, r);
  session_out_done_waiting(s, SS_CMD);
}

/* The reply to the final dot. A temporary one on a route that kept a copy
 * sends the copy to the spool; any other ends the copy's use. */
static void apply_reply_dot(session *s, const smtp_reply *r) {
  if (s->copying && session_spool_temporary(s, r, UP_FAIL_NONE)) {
    s->up_in_txn = false;
    session_spool_commit(s, r, UP_FAIL_NONE);
    return;
  }
  session_out_relay(s, r);
  session_out_log_relayed(s, r);
  session_out_txn_clear(s);
  s->up_in_txn = false;
  session_out_done_waiting(s, SS_CMD);
}

void session_up_apply_reply(session *s, const smtp_reply *r) {
  if (s->state != SS_WAIT)
    return;
  smtp_reply mapped;
  r = session_provider_reply(s, r, &mapped);
  switch (s->wait) {
  case W_MAIL:
    if (r->code / 100 == 2) {
      s->up_in_txn = true;
      s->wait = W_RCPT;
      s->ops->up_rcpt(s->ctx, s->rcpt.addr, &s->rcpt_dsn);
      return;
    }
    if (session_spool_switch(s, r, UP_FAIL_NONE)) {
      session_spool_accept_rcpt(s);
      break;
    }
    /* The upstream refused the sender: that is this RCPT's answer. */
    session_out_relay(s, r);
    if (s->n_rcpt == 0)
      s->route = -1;
    break;
  case W_RCPT:
    if (r->code / 100 == 2) {
      session_out_relay(s, r);
      session_spool_keep_rcpt(s, s->rcpt.addr);
      session_out_note_rcpt(s, s->rcpt.addr);
      s->n_rcpt++;
    } else if (session_spool_switch(s, r, UP_FAIL_NONE)) {
      session_spool_accept_rcpt(s);
    } else {
      session_out_relay(s, r);
    }
    break;
  case W_DATA:
    apply_reply_data(s, r);
    return;
  case W_DOT:
    apply_reply_dot(s, r);
    return;
  case W_RSET:
    s->up_in_txn = false;
    session_out_reply(s, "250 2.0.0 Ok\r\n");
    break;
  default:
    return;
  }
  session_out_done_waiting(s, SS_CMD);
}

/* On a spool route a failure before the final dot switches the
 * transaction to spool mode, and one after it commits the copy: true when
 * that took over the answer. */
static bool spool_failed_wait(session *s, upstream_fail why) {
  switch (s->wait) {
  case W_OPEN:
  case W_MAIL:
  case W_RCPT:
    if (!session_spool_switch(s, NULL, why))
      return false;
    session_spool_accept_rcpt(s);
    session_out_done_waiting(s, SS_CMD);
    return true;
  case W_DATA:
    if (!session_spool_switch(s, NULL, why))
      return false;
    session_data_start(s);
    return true;
  case W_DOT:
    /* The upstream may or may not have taken it: the spool sends it again
     * (the one duplicate SPEC allows), never a lost scan. */
    if (!s->copying)
      return false;
    session_spool_commit(s, NULL, why);
    return true;
  default:
    return false;
  }
}

/* r: the device's reply (the provider table's, or the generic one). */
static void apply_failed_wait(session *s, upstream_fail why, const char *r, bool had_rcpts) {
  if (spool_failed_wait(s, why))
    return;
  switch (s->wait) {
  case W_OPEN:
  case W_MAIL:
  case W_RCPT:
    session_out_reply(s, r);
    if (had_rcpts)
      s->txn_failed = true;
    else
      s->route = -1;
    break;
  case W_DATA:
    session_out_reply(s, r);
    s->txn_failed = true;
    break;
  case W_DOT:
    /* The upstream may or may not have taken it; 4xx so the device retries
     * (at most one extra copy, never a lost scan). */
    session_out_reply(s, r);
    session_out_log_message(s, "deferred", r);
    session_out_txn_clear(s);
    break;
  case W_RSET:
    session_out_reply(s, "250 2.0.0 Ok\r\n");
    break;
  default:
    break;
  }
  session_out_done_waiting(s, SS_CMD);
}

static void apply_failed(session *s, upstream_fail why, const char *reply) {
  bool had_rcpts = s->n_rcpt > 0;
  s->up_connected = false;
  s->up_in_txn = false;
  s->up_route = -1;
  if (s->state == SS_DATA) {
    if (s->copying) {
      /* The copy takes the rest of the message; the spool delivers it. */
      session_spool_lost_in_data(s, why);
      return;
    }
    /* Keep reading the device's data to its end, then answer 4xx. */
    s->data_lost = true;
    session_out_state(s, SS_DATA_DISCARD);
    return;
  }
  if (s->state != SS_WAIT) {
    if (had_rcpts && !session_spool_switch(s, NULL, why))
      s->txn_failed = true;
    return;
  }
  if (s->wait == W_HASH) {
    /* An idle upstream connection went away while a password is being
     * checked: that wait is not the upstream's to end. */
    if (had_rcpts)
      s->txn_failed = true;
    return;
  }
  if (s->wait == W_AUTH) {
    s->route = -1;
    session_out_done_waiting(s, SS_CMD);
    session_auth_upstream_failed(s, why);
    return;
  }
  apply_failed_wait(s, why, reply ? reply : session_fail_reply(why), had_rcpts);
}

void session_up_apply(session *s, const session_outcome *o) {
  switch (o->kind) {
  case SO_READY:
    apply_ready(s, o->name, o->has_tls ? o->tls : NULL);
    return;
  case SO_REPLY:
    session_up_apply_reply(s, &o->reply);
    return;
  case SO_FAILED: {
    /* A row of the provider table words the device's 4xx. */
    char line[256];
    apply_failed(s, o->why,
                 o->rule ? provider_rule_device_reply(o->rule, o->phase, line, sizeof line) : NULL);
    return;
  }
  case SO_PASSWORD:
    apply_password(s, o->ok);
    return;
  case SO_SPOOLED:
    session_spool_apply(s, o->ok, o->name);
    return;
  }
}
