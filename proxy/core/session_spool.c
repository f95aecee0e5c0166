/* session_spool.c - spool mode of the LAN session, for routes with
 * on_upstream_failure: spool (SPEC "Spool semantics").
 *
 * Pass-through stays first: the transaction goes upstream as on any
 * route, while the recipients the upstream accepted are kept and, from our
 * 354 on, a copy of the message is written through ops->copy_*. When the
 * upstream fails temporarily (session_spool_temporary: the one decision)
 * the transaction switches to spool mode: recipients are accepted
 * locally, DATA gets our own 354, the message goes only to the copy, and
 * the device gets 250 only once ops->copy_commit reported the message
 * durable (session_spooled). Guarantees: never a 250 for a message that
 * is not committed (a failed commit is 452 4.3.1); a 5xx stays the
 * device's answer and its copy is discarded; when the spool has no room
 * before DATA, the device gets the plain pass-through 4xx instead.
 */
#include "session_spool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session_out.h"
#include "smtp-tls-proxy/log.h"

/* The one place that decides whether an upstream outcome may be held in
 * the spool for this route: every connection-level failure (DNS, connect,
 * TLS, greeting, AUTH, timeout, lost connection) and every 4xx reply. A
 * 5xx is the provider's verdict on the message and stays the device's
 * answer. Issue 12's classification of provider refusals (a 5xx an admin
 * can fix becomes a 4xx "so the spool can hold it") plugs in here. */
bool session_spool_temporary(const session *s, const smtp_reply *r, upstream_fail why) {
  (void)s; /* the route is where a per-provider classification would look */
  if (!r)
    return why != UP_FAIL_NONE;
  return r->code >= 400 && r->code < 500;
}

bool session_spool_route(const session *s) {
  return s->route >= 0 && s->cfg->routes[s->route].spool && s->ops->spool_room &&
         s->ops->copy_begin && s->ops->copy_body && s->ops->copy_commit && s->ops->copy_discard;
}

/* The device-facing line of an upstream failure, first line only. */
static void fail_line(session *s, const smtp_reply *r, upstream_fail why) {
  if (!r) {
    snprintf(s->spool_fail, sizeof s->spool_fail, "%s", session_fail_reply(why));
    return;
  }
  int n = (int)strcspn(r->text, "\n");
  snprintf(s->spool_fail, sizeof s->spool_fail, "%03d %.*s\r\n", r->code, n, r->text);
}

static void enter(session *s, const smtp_reply *r, upstream_fail why) {
  fail_line(s, r, why);
  s->spool_mode = true;
  if (s->up_connected)
    session_out_up_drop(s, true); /* RSET or QUIT: nothing more goes there */
  char line[256];
  snprintf(line, sizeof line, "%.*s", (int)strcspn(s->spool_fail, "\r\n"), s->spool_fail);
  stp_kv kv[] = {{"route", s->cfg->routes[s->route].name}, {"reason", line}};
  stp_log_kv(STP_LOG_INFO, s->sid, "spool-mode", kv, 2);
}

bool session_spool_switch(session *s, const smtp_reply *r, upstream_fail why) {
  if (s->spool_mode)
    return true;
  if (!session_spool_route(s) || !session_spool_temporary(s, r, why) || !s->ops->spool_room(s->ctx))
    return false;
  enter(s, r, why);
  return true;
}

void session_spool_lost_in_data(session *s, upstream_fail why) {
  if (!s->spool_mode)
    enter(s, NULL, why);
}

void session_spool_keep_rcpt(session *s, const char *addr) {
  if (!session_spool_route(s) || s->n_kept >= SESSION_MAX_RCPT)
    return;
  s->kept_rcpts = stp_xrealloc(s->kept_rcpts, (s->n_kept + 1) * sizeof *s->kept_rcpts);
  s->kept_dsn = stp_xrealloc(s->kept_dsn, (s->n_kept + 1) * sizeof *s->kept_dsn);
  s->kept_dsn[s->n_kept] = s->rcpt_dsn; /* the RCPT being answered: addr's */
  s->kept_rcpts[s->n_kept++] = stp_xstrdup(addr);
}

void session_spool_accept_rcpt(session *s) {
  session_spool_keep_rcpt(s, s->rcpt.addr);
  session_out_note_rcpt(s, s->rcpt.addr);
  s->n_rcpt++;
  session_out_reply(s, "250 2.1.5 Ok\r\n");
}

void session_spool_copy_begin(session *s) {
  if (!session_spool_route(s) || s->n_kept == 0 || !s->ops->spool_room(s->ctx))
    return; /* no room before DATA: the plain pass-through answer stays */
  const stp_route_cfg *rt = &s->cfg->routes[s->route];
  spool_env env;
  memset(&env, 0, sizeof env);
  env.route = rt->name;
  env.listener = s->lcfg->name;
  env.client = s->client_ip;
  env.from = s->mail.from.null_path ? "" : s->mail.from.addr;
  env.up_from = session_out_sender(s);
  env.body = s->mail.body;
  env.smtputf8 = s->mail.smtputf8;
  env.rcpts = (const char *const *)s->kept_rcpts;
  env.n_rcpts = s->n_kept;
  /* The device's DSN requests go with the message (RFC 3461 5.2.1: a
   * relay passes them on), for the delivery and for our own notice. */
  env.ret = s->mail.ret;
  env.envid = s->mail.envid;
  unsigned *notify = stp_xcalloc(s->n_kept, sizeof *notify);
  const char **orcpt = stp_xcalloc(s->n_kept, sizeof *orcpt);
  for (unsigned i = 0; i < s->n_kept; i++) {
    notify[i] = s->kept_dsn[i].notify;
    orcpt[i] = s->kept_dsn[i].orcpt;
  }
  env.notify = notify;
  env.orcpt = orcpt;
  s->copying = true;
  s->ops->copy_begin(s->ctx, &env); /* env is borrowed for the call only */
  free(notify);
  free(orcpt);
}

void session_spool_commit(session *s, const smtp_reply *r, upstream_fail why) {
  if (r || why)
    fail_line(s, r, why);
  s->copying = false; /* the owner's now, until it reports */
  char reason[256];
  snprintf(reason, sizeof reason, "%.*s", (int)strcspn(s->spool_fail, "\r\n"), s->spool_fail);
  session_out_wait_for(s, W_SPOOL);
  s->ops->copy_commit(s->ctx, reason);
}

void session_spool_apply(session *s, bool ok, const char *text) {
  if (s->state != SS_WAIT || s->wait != W_SPOOL)
    return;
  char line[256];
  if (ok) {
    snprintf(line, sizeof line, "250 2.0.0 Ok: queued locally as %s (upstream unavailable)\r\n",
             text);
    session_out_reply(s, line);
    session_out_log_spooled(s, line, text);
  } else {
    /* Never a 250 for what is not durable; 452 so the device retries. */
    snprintf(line, sizeof line,
             "452 4.3.1 Insufficient system storage: message not queued (%.150s)\r\n",
             text && *text ? text : "spool error");
    session_out_reply(s, line);
    session_out_log_message(s, "deferred", line);
  }
  session_out_txn_clear(s);
  session_out_done_waiting(s, SS_CMD);
}
