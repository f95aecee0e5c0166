/* session.c - LAN-side SMTP server state machine (pure; see session.h):
 * its entry points, the input pump and the lifecycle.
 *
 * Input is processed by process_some(), which stops as soon as the session
 * must wait for the upstream; whatever the device sent meanwhile is held in
 * `pending` (bounded) with reading paused, and processed in order once the
 * answer is in. The parts: session_cmd.c (the command table), session_data.c
 * (the message), session_up.c (upstream answers), session_auth.c (device
 * AUTH), all on session_out.c (replies, state, log line); none of them
 * calls back into this file.
 */
#include "smtp-tls-proxy/session.h"

#include <assert.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session_auth.h"
#include "session_cmd.h"
#include "session_data.h"
#include "session_out.h"
#include "session_up.h"
#include "smtp-tls-proxy/cidr.h"
#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/metrics.h"
#include "smtp-tls-proxy/route.h"

/* ---- output ------------------------------------------------------------ */

/* ---- per-message log line ------------------------------------------------ */

/* ---- transaction --------------------------------------------------------- */

/* ---- commands ------------------------------------------------------------ */

/* ---- DATA ----------------------------------------------------------------- */

/* ---- input ------------------------------------------------------------------ */

static void sync_error(session *s) {
  session_out_reply(s,
                    "554 5.5.0 Error: data sent before the 354 reply (synchronization error)\r\n");
  stp_logf(STP_LOG_WARN, s->sid, "synchronization error: bytes after DATA before 354");
  session_out_up_drop(s, false);
  session_out_close(s);
}

/* Process input until it is used up or the session must wait. Returns the
 * number of bytes consumed. */
static size_t process_some(session *s, const char *p, size_t n) {
  size_t used_total = 0;
  while (n > 0) {
    if (s->state == SS_WAIT) {
      if (s->wait == W_DATA)
        sync_error(s);
      break;
    }
    if (s->state == SS_CLOSED || s->state == SS_TLS)
      break;
    if (s->state == SS_DATA || s->state == SS_DATA_DISCARD) {
      size_t used = session_data_feed(s, p, n);
      s->progress += used;
      p += used;
      n -= used;
      used_total += used;
      continue;
    }
    size_t used = 0;
    const char *line;
    size_t len;
    bool crlf;
    int r = smtp_lr_feed(&s->lr, p, n, &used, &line, &len, &crlf);
    p += used;
    n -= used;
    used_total += used;
    if (r == 0)
      break;
    s->progress++; /* a whole line, command or AUTH continuation */
    if (r == STP_ETOOLONG) {
      if (s->in_auth) {
        s->in_auth = false;
        session_auth_refuse(s, "500 5.5.6 Authentication exchange line is too long\r\n",
                            "too-long");
        continue;
      }
      session_out_reply(s, "500 5.5.2 Error: line too long\r\n");
      session_cmd_error(s);
      continue;
    }
    if (s->in_auth)
      session_auth_line(s, line, len);
    else
      session_cmd_line(s, line, len);
  }
  return used_total;
}

/* Held input may contain an AUTH exchange (a password in base64): wipe it
 * before the memory goes back to the allocator. */
static void session_pending_free(session *s) {
  stp_cleanse(s->pending.data, s->pending.cap);
  stp_buf_free(&s->pending);
}

static void too_much_input(session *s) {
  session_out_reply(s, "421 4.7.0 Too much pipelined input, closing connection\r\n");
  session_out_up_drop(s, false);
  session_out_close(s);
}

/* Hold input the session cannot take yet; reading stays paused meanwhile. */
static void hold_input(session *s, const char *p, size_t n) {
  bool was_empty = s->pending.len == 0;
  if (!s->pending.cap)
    stp_buf_init(&s->pending, SESSION_PENDING_MAX);
  if (stp_buf_append(&s->pending, p, n) < 0) {
    too_much_input(s);
    return;
  }
  if (was_empty)
    s->ops->pause(s->ctx, true);
}

/* One step over held input; false when nothing could be done. Bytes held
 * while DATA waits for its 354 are taken too: they are the synchronisation
 * error that process_some() reports. */
static bool drain_step(session *s) {
  bool can = s->state == SS_CMD || s->state == SS_DATA || s->state == SS_DATA_DISCARD ||
             (s->state == SS_WAIT && s->wait == W_DATA);
  if (s->pending.len == 0 || !can)
    return false;
  size_t used = process_some(s, s->pending.data, s->pending.len);
  if (s->state == SS_CLOSED)
    return false;
  stp_buf_consume(&s->pending, used);
  return used > 0;
}

/* The one place that drives the session forward: outcomes that arrived
 * while it was busy, in order, then held input, until both are used up or
 * it must wait. Entered only with s->pumping set by the caller, which makes
 * the drain non-reentrant: an outcome delivered from inside an ops call is
 * queued (queue_outcome) and applied here, one level up, instead of
 * re-entering process_some() on input it has not consumed yet. */
static void pump_and_leave(session *s) {
  assert(s->pumping);
  for (;;) {
    if (s->state == SS_CLOSED)
      break;
    if (s->n_early > 0) {
      session_outcome o = s->early[s->early_head];
      s->early_head = (s->early_head + 1) % SESSION_EARLY_MAX;
      s->n_early--;
      session_up_apply(s, &o);
      continue;
    }
    if (!drain_step(s))
      break;
  }
  if (s->state == SS_CLOSED)
    s->n_early = 0;
  if (s->pending.len == 0 && s->pending.cap && s->state != SS_CLOSED) {
    session_pending_free(s);
    s->ops->pause(s->ctx, false);
  }
  s->pumping = false;
}

/* An outcome that arrives while the session is busy (its owner answered
 * from inside an ops call) waits for pump_and_leave(). */
static void queue_outcome(session *s, const session_outcome *o) {
  if (s->n_early >= SESSION_EARLY_MAX) {
    /* More answers than requests: the owner broke the protocol. */
    assert(!"session outcome queue overflow");
    return;
  }
  if (!s->early)
    s->early = stp_xcalloc(SESSION_EARLY_MAX, sizeof *s->early);
  s->early[(s->early_head + s->n_early) % SESSION_EARLY_MAX] = *o;
  s->n_early++;
}

static void deliver(session *s, const session_outcome *o) {
  if (s->state == SS_CLOSED)
    return;
  if (s->pumping) {
    queue_outcome(s, o);
    return;
  }
  s->pumping = true;
  session_up_apply(s, o);
  pump_and_leave(s);
}

void session_feed(session *s, const char *p, size_t n) {
  if (s->state == SS_CLOSED)
    return;
  if (s->pumping || s->pending.len > 0) {
    /* Input is held (reading is paused, but a read already under way may
     * still deliver), or the session is busy: keep the order. */
    hold_input(s, p, n);
    if (!s->pumping && s->state != SS_CLOSED) {
      s->pumping = true;
      pump_and_leave(s);
    }
    return;
  }
  s->pumping = true;
  size_t used = process_some(s, p, n);
  if (used < n && s->state != SS_CLOSED && s->state != SS_TLS)
    hold_input(s, p + used, n - used);
  pump_and_leave(s);
}

bool session_busy(const session *s) {
  return s->pumping;
}

uint64_t session_progress(const session *s) {
  return s->progress;
}

bool session_passthrough(const session *s, const char **user, const char **secret) {
  *user = s->auth_user;
  *secret = s->pt_secret;
  return s->pt_secret != NULL;
}

void session_expect_tls(session *s) {
  session_out_state(s, SS_TLS);
}

/* ---- upstream outcomes -------------------------------------------------- */

void session_password_checked(session *s, bool ok) {
  session_outcome o = {.kind = SO_PASSWORD, .ok = ok};
  deliver(s, &o);
}

void session_up_skipped(session *s, const char *skipped) {
  snprintf(s->up_skipped, sizeof s->up_skipped, "%s", skipped ? skipped : "");
}

void session_up_ready(session *s, const char *upstream_name, const char *tls_version) {
  session_outcome o = {.kind = SO_READY, .has_tls = tls_version != NULL};
  snprintf(o.name, sizeof o.name, "%s", upstream_name ? upstream_name : "");
  snprintf(o.tls, sizeof o.tls, "%s", tls_version ? tls_version : "");
  deliver(s, &o);
}

/* Replies are big (4 KiB of text): only one that arrives while the session
 * is busy is copied. */
void session_up_reply(session *s, const smtp_reply *r) {
  if (s->state == SS_CLOSED)
    return;
  if (s->pumping) {
    session_outcome o = {.kind = SO_REPLY, .reply = *r};
    queue_outcome(s, &o);
    return;
  }
  s->pumping = true;
  session_up_apply_reply(s, r);
  pump_and_leave(s);
}

void session_up_failed(session *s, upstream_fail why) {
  session_up_failed_verdict(s, why, NULL);
}

void session_up_failed_verdict(session *s, upstream_fail why, const provider_verdict *v) {
  session_outcome o = {.kind = SO_FAILED, .why = why};
  if (v && v->rule) {
    o.rule = v->rule; /* rows are static: the pointer outlives the queue */
    o.phase = v->phase;
  }
  deliver(s, &o);
}

/* ---- lifecycle ------------------------------------------------------------ */

void session_init(session *s, const stp_config *cfg, const stp_listener_cfg *lcfg,
                  const struct sockaddr *peer, const char *sid, const session_ops *ops, void *ctx) {
  memset(s, 0, sizeof *s);
  s->cfg = cfg;
  s->lcfg = lcfg;
  s->ops = ops;
  s->ctx = ctx;
  if (peer) {
    size_t len =
        peer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    memcpy(&s->peer, peer, len);
    stp_sockaddr_ip(peer, s->client_ip, sizeof s->client_ip);
  } else {
    snprintf(s->client_ip, sizeof s->client_ip, "-");
  }
  snprintf(s->sid, sizeof s->sid, "%s", sid);
  /* Lines may reach the AUTH limit (RFC 4954: an initial response or a
   * continuation line); every other command is held to 512 octets once its
   * verb is known, in session_cmd_line(). */
  smtp_lr_init(&s->lr, SMTP_AUTH_LINE_MAX);
  s->lr.max = SMTP_AUTH_LINE_MAX;
  s->route = -1;
  s->up_route = -1;
  lanauth_init(&s->auth);
}

void session_free(session *s) {
  session_auth_forget(s);
  session_data_stop(s);
  smtp_lr_free(&s->lr);
  if (s->pending.cap)
    session_pending_free(s);
  free(s->early);
  s->early = NULL;
}

void session_set_limits(session *s, stp_limits *limits) {
  s->limits = limits;
}

void session_start(session *s) {
  session_out_replyf(s, "220 %s ESMTP smtp-tls-proxy\r\n", s->cfg->hostname);
}

void session_on_eof(session *s) {
  if (s->state == SS_CLOSED)
    return;
  if (s->state == SS_DATA || s->state == SS_DATA_DISCARD ||
      (s->state == SS_WAIT && (s->wait == W_DATA || s->wait == W_DOT))) {
    /* The device vanished: no final dot is ever sent for it. A message
     * whose dot already went out is in the upstream's hands. */
    if (!(s->state == SS_WAIT && s->wait == W_DOT))
      session_out_log_message(s, "aborted", "device disconnected during DATA");
    session_out_up_drop(s, false);
  } else {
    session_out_up_drop(s, true);
  }
  session_out_state(s, SS_CLOSED);
  s->ops->close(s->ctx);
}

void session_on_idle_timeout(session *s) {
  if (s->state == SS_CLOSED || session_waiting(s))
    return;
  session_out_reply(s, "421 4.4.2 Idle timeout, closing connection\r\n");
  session_out_up_drop(s, s->state != SS_DATA && s->state != SS_DATA_DISCARD);
  session_out_close(s);
}

void session_on_data_deadline(session *s) {
  if (s->state != SS_DATA && s->state != SS_DATA_DISCARD)
    return; /* that message ended in time */
  /* A device dripping its message keeps a connection and an upstream
   * transaction open for as long as it likes; idle_timeout cannot see it
   * because every byte is progress. Never a final dot for it. */
  session_out_reply(s,
                    "421 4.4.2 Message data took too long (data_deadline), closing connection\r\n");
  session_out_log_message(s, "aborted", "data_deadline reached while the device was still sending");
  session_out_up_drop(s, false);
  session_out_close(s);
}

void session_shutdown(session *s, const char *line) {
  if (s->state == SS_CLOSED)
    return;
  session_out_reply(s, line ? line : "421 4.3.2 Service shutting down, closing connection\r\n");
  session_out_up_drop(s, s->state == SS_CMD);
  session_out_close(s);
}

void session_tls_ready(session *s, const char *version) {
  if (s->state != SS_TLS)
    return;
  s->tls = true;
  snprintf(s->tls_version, sizeof s->tls_version, "%s", version ? version : "");
  session_out_state(s, SS_CMD);
}

bool session_waiting(const session *s) {
  return s->state == SS_WAIT;
}
