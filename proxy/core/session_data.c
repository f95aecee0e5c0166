/* session_data.c - the device's message between our 354 and its end:
 * framing (data.h), the route's header rewrite, and the final decision
 * (refuse it, or send the final dot upstream).
 *
 * Guarantees: a message refused here (too big, NUL, bare LF under reject,
 * header block too large, upstream lost) never gets a final dot upstream.
 */
#include "session_data.h"

#include "session_out.h"
#include "smtp-tls-proxy/log.h"

static void emit_upstream(void *ctx, const char *p, size_t n) {
  session *s = ctx;
  if (s->state == SS_DATA)
    s->ops->up_body(s->ctx, p, n);
}

/* Framed bytes: through the header rewrite_ctx when the route wants one. */
static void emit_body(void *ctx, const char *p, size_t n) {
  session *s = ctx;
  if (!s->rw_active) {
    emit_upstream(s, p, n);
    return;
  }
  if (!s->rw_overflow && rewrite_feed(&s->rw, p, n, emit_upstream, s) < 0)
    s->rw_overflow = true;
}

void session_data_stop(session *s) {
  if (s->rw_active)
    rewrite_free(&s->rw);
  s->rw_active = false;
  s->rw_overflow = false;
}

static void session_data_rewrite_start(session *s) {
  const stp_route_cfg *rt = s->route >= 0 ? &s->cfg->routes[s->route] : NULL;
  if (rt && rt->rewrite_header_from &&
      rewrite_init(&s->rw, rt->rewrite_header_from, REWRITE_DEFAULT_MAX) == 0)
    s->rw_active = true;
}

static void finish_data(session *s) {
  const char *r = NULL;
  /* After a NUL nothing more goes up, not even held header lines. */
  if (s->rw_active && !s->rw_overflow && !s->framer.too_big && !s->framer.nul_seen &&
      s->state == SS_DATA && rewrite_finish(&s->rw, emit_upstream, s) < 0)
    s->rw_overflow = true;
  bool header_overflow = s->rw_overflow;
  session_data_stop(s);
  if (s->framer.nul_seen)
    r = "550 5.6.0 Message contains NUL bytes (not allowed in SMTP)\r\n";
  else if (s->framer.too_big)
    r = "552 5.3.4 Message size exceeds fixed limit\r\n";
  else if (header_overflow)
    r = "552 5.3.4 Message header block too large to rewrite\r\n";
  else if (s->framer.bare_seen && s->lcfg->bare_lf == STP_BARELF_REJECT)
    r = "550 5.5.2 Bare LF or CR in message; lines must end in CRLF\r\n";
  else if (s->data_lost)
    r = session_fail_reply(UP_FAIL_CLOSED);
  if (r) {
    /* Never a final dot for a message we refuse: cut the upstream. */
    session_out_up_drop(s, false);
    session_out_reply(s, r);
    session_out_log_message(s, r[0] == '4' ? "deferred" : "rejected", r);
    session_out_txn_clear(s);
    session_out_state(s, SS_CMD);
    return;
  }
  session_out_wait_for(s, W_DOT);
  s->ops->up_end(s->ctx);
}

/* Our 354 is out: frame the device's message from here on. */
void session_data_begin(session *s) {
  data_framer_init(&s->framer, s->lcfg->bare_lf == STP_BARELF_REJECT, s->lcfg->max_message_size);
  if (s->lcfg->bare_lf == STP_BARELF_LENIENT)
    data_framer_allow_lf_end(&s->framer);
  session_data_rewrite_start(s);
}

/* A device whose every line ends in LF ends its message with LF "." LF,
 * which only bare_lf: lenient takes as the end: it then waits for an
 * answer that never comes (it works against Postfix 3.7, Exim and
 * OpenSMTPD, which is what admins compare with). Say so, once a message. */
static void warn_lf_end(session *s) {
  stp_kv kv[] = {{"listener", s->lcfg->name},
                 {"client", s->client_ip},
                 {"bare_lf", s->lcfg->bare_lf == STP_BARELF_REJECT ? "reject" : "fix"},
                 {"hint",
                  "the device ended its message with LF . LF, which is not the end of data here "
                  "(CRLF . CRLF is): it will wait until idle_timeout. If every line it sends ends "
                  "in LF and the device is trusted, set bare_lf: lenient on this listener"}};
  stp_log_kv(STP_LOG_WARN, s->sid, "bare-lf-end-ignored", kv, sizeof kv / sizeof *kv);
}

/* Message bytes: framed towards the upstream; at the end of data the
 * final answer is decided. Returns the bytes consumed. */
size_t session_data_feed(session *s, const char *p, size_t n) {
  bool lflf = s->framer.lflf_seen;
  size_t used = data_framer_feed(&s->framer, p, n, emit_body, s);
  if (!lflf && s->framer.lflf_seen)
    warn_lf_end(s);
  if (s->framer.done)
    finish_data(s);
  return used;
}
