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
  if (r->code == 354) {
    session_out_reply(s, "354 End data with <CR><LF>.<CR><LF>\r\n");
    session_data_begin(s);
    session_out_done_waiting(s, SS_DATA);
    if (s->ops->data_started)
      s->ops->data_started(s->ctx, s->lcfg->data_deadline_ms);
    return;
  }
  session_out_relay(s, r);
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
    /* The upstream refused the sender: that is this RCPT's answer. */
    session_out_relay(s, r);
    if (s->n_rcpt == 0)
      s->route = -1;
    break;
  case W_RCPT:
    session_out_relay(s, r);
    if (r->code / 100 == 2)
      s->n_rcpt++;
    break;
  case W_DATA:
    apply_reply_data(s, r);
    return;
  case W_DOT:
    session_out_relay(s, r);
    session_out_log_relayed(s, r);
    session_out_txn_clear(s);
    s->up_in_txn = false;
    break;
  case W_RSET:
    s->up_in_txn = false;
    session_out_reply(s, "250 2.0.0 Ok\r\n");
    break;
  default:
    return;
  }
  session_out_done_waiting(s, SS_CMD);
}

static void apply_failed_wait(session *s, const char *r, bool had_rcpts) {
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
    /* Keep reading the device's data to its end, then answer 4xx. */
    s->data_lost = true;
    session_out_state(s, SS_DATA_DISCARD);
    return;
  }
  if (s->state != SS_WAIT) {
    if (had_rcpts)
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
  apply_failed_wait(s, reply ? reply : session_fail_reply(why), had_rcpts);
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
  }
}
