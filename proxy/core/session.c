/* session.c - LAN-side SMTP server state machine (pure; see session.h).
 *
 * Input is processed by process_some(), which stops as soon as the session
 * must wait for the upstream; whatever the device sent meanwhile is held in
 * `pending` (bounded) with reading paused, and processed in order once the
 * answer is in. Commands are dispatched through one table. AUTH from
 * devices lives in session_auth.c (shared helpers: session_internal.h).
 */
#include "smtp-tls-proxy/session.h"

#include <assert.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session_internal.h"
#include "smtp-tls-proxy/cidr.h"
#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/metrics.h"
#include "smtp-tls-proxy/route.h"

static const char *const state_names[] = {"cmd", "wait", "data", "data-discard", "tls", "closed"};

const char *session_state_name(session_state st) {
  return (unsigned)st < sizeof state_names / sizeof *state_names ? state_names[st] : "?";
}

size_t session_listener_index(const session *s) {
  return (size_t)(s->lcfg - s->cfg->listeners);
}

/* ---- output ------------------------------------------------------------ */

void session_reply(session *s, const char *line) {
  s->ops->write(s->ctx, line, strlen(line));
}

void session_replyf(session *s, const char *fmt, ...) {
  char buf[SMTP_CMD_MAX + SMTP_ADDR_MAX];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  if ((size_t)n >= sizeof buf) {
    n = (int)sizeof buf - 1;
    buf[n - 2] = '\r';
    buf[n - 1] = '\n';
  }
  s->ops->write(s->ctx, buf, (size_t)n);
}

/* Relay an upstream reply to the device, line by line, code preserved. */
static void relay_reply(session *s, const smtp_reply *r) {
  const char *t = r->text;
  size_t left = r->text_len;
  do {
    size_t n = 0;
    while (n < left && t[n] != '\n')
      n++;
    bool last = n >= left;
    session_replyf(s, "%03d%c%.*s\r\n", r->code, last ? ' ' : '-', (int)n, t);
    t += n + (last ? 0 : 1);
    left -= n + (last ? 0 : 1);
    if (last)
      break;
  } while (1);
}

static void set_state(session *s, session_state st) {
  if (stp_log_level() >= STP_LOG_DEBUG && s->state != st) {
    stp_kv kv[] = {{"from", session_state_name(s->state)}, {"to", session_state_name(st)}};
    stp_log_kv(STP_LOG_DEBUG, s->sid, "session-state", kv, 2);
  }
  s->state = st;
}

void session_close_now(session *s) {
  if (s->state == SS_CLOSED)
    return;
  set_state(s, SS_CLOSED);
  s->ops->close(s->ctx);
}

void session_up_drop(session *s, bool graceful) {
  if (!s->up_connected && s->wait != W_OPEN)
    return;
  s->ops->up_close(s->ctx, graceful);
  s->up_connected = false;
  s->up_in_txn = false;
  s->up_route = -1;
}

/* ---- per-message log line ------------------------------------------------ */

static void log_message(session *s, const char *result, const char *reply_line) {
  char rcpts[16], size[24], dur[24], rep[256];
  const stp_route_cfg *rt = s->route >= 0 ? &s->cfg->routes[s->route] : NULL;
  snprintf(rcpts, sizeof rcpts, "%u", s->n_rcpt);
  snprintf(size, sizeof size, "%llu", (unsigned long long)s->framer.size);
  snprintf(dur, sizeof dur, "%llu", (unsigned long long)(stp_now_ms() - s->txn_start_ms));
  snprintf(rep, sizeof rep, "%.*s", (int)strcspn(reply_line, "\r\n"), reply_line);
  stp_kv kv[] = {
      {"client", s->client_ip},
      {"from", s->mail.from.null_path ? "<>" : s->mail.from.addr},
      {"from_rewritten", rt ? rt->rewrite_mail_from : NULL},
      {"rcpts", rcpts},
      {"route", rt ? rt->name : "-"},
      {"upstream", s->up_name[0] ? s->up_name : "-"},
      {"skipped", s->up_skipped[0] ? s->up_skipped : NULL},
      {"tls", s->up_tls[0] ? s->up_tls : "-"},
      {"size", size},
      {"result", result},
      {"reply", rep},
      {"duration_ms", dur},
  };
  stp_log_kv(STP_LOG_INFO, s->sid, "message", kv, sizeof kv / sizeof *kv);
  metrics_message(rt ? rt->name : "", s->up_name, result, s->framer.size);
}

static void log_relayed(session *s, const smtp_reply *r) {
  char line[256];
  snprintf(line, sizeof line, "%d %.*s", r->code, (int)strcspn(r->text, "\n"), r->text);
  log_message(s,
              r->code / 100 == 2   ? "delivered"
              : r->code / 100 == 4 ? "deferred"
                                   : "rejected",
              line);
}

/* ---- transaction --------------------------------------------------------- */

static void txn_clear(session *s) {
  s->have_mail = false;
  s->txn_failed = false;
  s->data_lost = false;
  s->route = -1;
  s->n_rcpt = 0;
  memset(&s->mail, 0, sizeof s->mail);
  memset(&s->framer, 0, sizeof s->framer);
}

void session_wait_for(session *s, session_wait w) {
  s->wait = w;
  set_state(s, SS_WAIT);
}

static void done_waiting(session *s, session_state next) {
  s->wait = W_NONE;
  set_state(s, next);
}

/* Reset the transaction; when the upstream holds one, RSET it first and
 * answer `ok_reply` once it has answered. */
static void txn_reset_then_reply(session *s, const char *ok_reply) {
  bool upstream_txn = s->up_connected && s->up_in_txn;
  txn_clear(s);
  if (upstream_txn) {
    session_wait_for(s, W_RSET);
    s->ops->up_rset(s->ctx);
    return;
  }
  if (ok_reply)
    session_reply(s, ok_reply);
}

const char *session_fail_reply(upstream_fail why) {
  switch (why) {
  case UP_FAIL_DNS:
  case UP_FAIL_CONNECT:
    return "451 4.4.1 Upstream not reachable, try again later\r\n";
  case UP_FAIL_TLS:
  case UP_FAIL_STARTTLS:
    return "451 4.7.0 Upstream TLS could not be established, try again later\r\n";
  case UP_FAIL_GREETING:
    return "451 4.4.0 Upstream refused the connection, try again later\r\n";
  case UP_FAIL_AUTH:
    return "454 4.7.0 Upstream authentication failed, try again later\r\n";
  case UP_FAIL_TIMEOUT:
    return "451 4.4.2 Upstream timed out, try again later\r\n";
  case UP_FAIL_CLOSED:
    return "451 4.4.2 Upstream connection lost, try again later\r\n";
  default:
    return "451 4.5.0 Upstream protocol error, try again later\r\n";
  }
}

/* ---- commands ------------------------------------------------------------ */

static void cmd_ehlo(session *s, const smtp_cmd *c, bool esmtp) {
  if (c->arg_len == 0) {
    session_replyf(s, "501 5.5.4 Syntax: %s hostname\r\n", esmtp ? "EHLO" : "HELO");
    return;
  }
  snprintf(s->helo, sizeof s->helo, "%.*s", (int)c->arg_len, c->arg);
  s->greeted = true;
  s->esmtp = esmtp;
  if (!esmtp) {
    txn_clear(s);
    session_replyf(s, "250 %s\r\n", s->cfg->hostname);
    return;
  }
  char buf[512];
  int n = snprintf(buf, sizeof buf, "250-%s\r\n250-SIZE %llu\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n",
                   s->cfg->hostname, (unsigned long long)s->lcfg->max_message_size);
  if (s->lcfg->auth != STP_LAUTH_NONE)
    n += snprintf(buf + n, sizeof buf - (size_t)n, "250-AUTH PLAIN LOGIN\r\n");
  if (s->lcfg->tls == STP_TLS_STARTTLS && !s->tls)
    n += snprintf(buf + n, sizeof buf - (size_t)n, "250-STARTTLS\r\n");
  snprintf(buf + n, sizeof buf - (size_t)n, "250 ENHANCEDSTATUSCODES\r\n");
  txn_clear(s);
  session_reply(s, buf);
}

static void cmd_helo(session *s, const smtp_cmd *c) {
  cmd_ehlo(s, c, false);
}
static void cmd_ehlo_esmtp(session *s, const smtp_cmd *c) {
  cmd_ehlo(s, c, true);
}

static void cmd_mail(session *s, const smtp_cmd *c) {
  if (!s->authenticated &&
      (s->lcfg->auth == STP_LAUTH_USERS || s->lcfg->auth == STP_LAUTH_PASSTHROUGH)) {
    session_reply(s, "530 5.7.0 Authentication required\r\n");
    return;
  }
  if (s->have_mail) {
    session_reply(s, "503 5.5.1 Error: nested MAIL command\r\n");
    return;
  }
  smtp_mail_args a;
  int r = smtp_parse_mail(c->arg, c->arg_len, &a);
  if (r == STP_EADDR) {
    session_reply(s, "553 5.1.7 Bad sender address syntax\r\n");
    return;
  }
  if (r == STP_EPARAM) {
    session_reply(s, "555 5.5.4 Unsupported or malformed MAIL parameter\r\n");
    return;
  }
  if (r < 0) {
    session_reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>\r\n");
    return;
  }
  if (a.has_size && s->lcfg->max_message_size && a.size > s->lcfg->max_message_size) {
    session_reply(s, "552 5.3.4 Message size exceeds fixed limit\r\n");
    return;
  }
  uint64_t wait_ms =
      s->limits ? limits_client(s->limits, session_listener_index(s), s->client_ip, stp_now_ms())
                : 0;
  if (wait_ms) {
    session_replyf(s, "451 4.7.0 Rate limit exceeded for %s, try again in %llu s\r\n", s->client_ip,
                   (unsigned long long)((wait_ms + 999) / 1000));
    stp_kv kv[] = {{"scope", "listener"}, {"name", s->lcfg->name}, {"client", s->client_ip}};
    stp_log_kv(STP_LOG_WARN, s->sid, "rate-limited", kv, 3);
    metrics_rate_limited("listener", s->lcfg->name);
    return;
  }
  txn_clear(s);
  s->mail = a;
  s->have_mail = true;
  s->txn_start_ms = stp_now_ms();
  session_reply(s, "250 2.1.0 Ok\r\n");
}

static const char *sender_for_upstream(const session *s) {
  const stp_route_cfg *rt = &s->cfg->routes[s->route];
  if (rt->rewrite_mail_from)
    return rt->rewrite_mail_from;
  return s->mail.from.null_path ? "" : s->mail.from.addr;
}

/* Move the current RCPT towards the upstream: connect, MAIL, then RCPT. */
static void rcpt_advance(session *s) {
  if (!s->up_connected || s->up_route != s->route) {
    session_up_drop(s, true);
    session_wait_for(s, W_OPEN);
    s->ops->up_open(s->ctx, (size_t)s->route);
    return;
  }
  if (!s->up_in_txn) {
    session_wait_for(s, W_MAIL);
    s->ops->up_mail(s->ctx, sender_for_upstream(s), &s->mail);
    return;
  }
  session_wait_for(s, W_RCPT);
  s->ops->up_rcpt(s->ctx, s->rcpt.addr);
}

static void cmd_rcpt(session *s, const smtp_cmd *c) {
  if (!s->have_mail) {
    session_reply(s, "503 5.5.1 Error: need MAIL command\r\n");
    return;
  }
  int r = smtp_parse_rcpt(c->arg, c->arg_len, s->mail.smtputf8, &s->rcpt);
  if (r == STP_EADDR) {
    session_reply(s, "553 5.1.3 Bad recipient address syntax\r\n");
    return;
  }
  if (r == STP_EPARAM) {
    session_reply(s, "555 5.5.4 Unsupported RCPT parameter\r\n");
    return;
  }
  if (r < 0) {
    session_reply(s, "501 5.5.4 Syntax: RCPT TO:<address>\r\n");
    return;
  }
  if (s->txn_failed) {
    session_reply(s, "451 4.4.2 Upstream connection lost, start a new transaction\r\n");
    return;
  }
  if (s->n_rcpt >= SESSION_MAX_RCPT) {
    session_reply(s, "452 4.5.3 Too many recipients\r\n");
    return;
  }
  route_input in = {s->lcfg->name,
                    (const struct sockaddr *)&s->peer,
                    s->authenticated ? s->auth_user : NULL,
                    s->mail.from.addr,
                    s->rcpt.addr,
                    0};
  long rt = route_match(s->cfg, &in);
  if (rt < 0) {
    session_replyf(s, "550 5.7.1 No route for <%s>\r\n", s->rcpt.addr);
    return;
  }
  if (s->route >= 0 && rt != s->route) {
    if (s->n_rcpt > 0) {
      session_replyf(s, "452 4.5.3 <%s> takes another route; send it in a new transaction\r\n",
                     s->rcpt.addr);
      return;
    }
    /* Nothing accepted yet: the transaction may still change route. */
    if (s->up_in_txn)
      session_up_drop(s, false);
  }
  if (s->route != rt && s->limits) {
    /* One token per transaction that takes the route. */
    uint64_t wait_ms = limits_route(s->limits, (size_t)rt, stp_now_ms());
    if (wait_ms) {
      session_replyf(s, "451 4.7.0 Rate limit of route %s exceeded, try again in %llu s\r\n",
                     s->cfg->routes[rt].name, (unsigned long long)((wait_ms + 999) / 1000));
      stp_kv kv[] = {{"scope", "route"}, {"name", s->cfg->routes[rt].name}};
      stp_log_kv(STP_LOG_WARN, s->sid, "rate-limited", kv, 2);
      metrics_rate_limited("route", s->cfg->routes[rt].name);
      return;
    }
  }
  s->route = rt;
  rcpt_advance(s);
}

static void cmd_data(session *s, const smtp_cmd *c) {
  if (c->arg_len) {
    session_reply(s, "501 5.5.4 Syntax: DATA\r\n");
    return;
  }
  if (!s->have_mail) {
    session_reply(s, "503 5.5.1 Error: need MAIL command\r\n");
    return;
  }
  if (s->txn_failed) {
    session_reply(s, "451 4.4.2 Upstream connection lost, start a new transaction\r\n");
    return;
  }
  if (s->n_rcpt == 0) {
    session_reply(s, "554 5.5.1 Error: no valid recipients\r\n");
    return;
  }
  session_wait_for(s, W_DATA);
  s->ops->up_data(s->ctx);
}

static void cmd_rset(session *s, const smtp_cmd *c) {
  (void)c;
  txn_reset_then_reply(s, "250 2.0.0 Ok\r\n");
}

static void cmd_noop(session *s, const smtp_cmd *c) {
  (void)c;
  session_reply(s, "250 2.0.0 Ok\r\n");
}

static void cmd_vrfy(session *s, const smtp_cmd *c) {
  (void)c;
  session_reply(s, "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery\r\n");
}

static void cmd_expn(session *s, const smtp_cmd *c) {
  (void)c;
  session_reply(s, "502 5.5.1 EXPN not available\r\n");
}

static void cmd_help(session *s, const smtp_cmd *c) {
  (void)c;
  session_reply(s, "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP\r\n");
}

static void cmd_quit(session *s, const smtp_cmd *c) {
  (void)c;
  session_reply(s, "221 2.0.0 Bye\r\n");
  session_up_drop(s, true);
  session_close_now(s);
}

static void cmd_starttls(session *s, const smtp_cmd *c) {
  if (s->lcfg->tls != STP_TLS_STARTTLS || s->tls) {
    session_reply(s, "502 5.5.1 STARTTLS not available\r\n");
    return;
  }
  if (c->arg_len) {
    session_reply(s, "501 5.5.4 Syntax: STARTTLS\r\n");
    return;
  }
  session_reply(s, "220 2.0.0 Ready to start TLS\r\n");
  /* RFC 3207 4.2 / Postfix: forget everything, including any plaintext the
   * device pipelined after STARTTLS; it is never executed. */
  smtp_lr_reset(&s->lr);
  s->pending.len = 0;
  s->greeted = false;
  s->authenticated = false; /* RFC 3207 4.2: AUTH again inside TLS */
  session_auth_forget(s);
  txn_clear(s);
  set_state(s, SS_TLS);
  s->ops->start_tls(s->ctx);
}

static void cmd_bdat(session *s, const smtp_cmd *c) {
  (void)c;
  session_reply(s, "502 5.5.1 BDAT not supported\r\n");
}

typedef struct cmd_entry {
  smtp_verb verb;
  bool needs_helo;
  void (*proceed)(session *s, const smtp_cmd *c);
} cmd_entry;

static const cmd_entry commands[] = {
    {SMTP_HELO, false, cmd_helo},        {SMTP_EHLO, false, cmd_ehlo_esmtp},
    {SMTP_MAIL, true, cmd_mail},         {SMTP_RCPT, true, cmd_rcpt},
    {SMTP_DATA, true, cmd_data},         {SMTP_RSET, false, cmd_rset},
    {SMTP_NOOP, false, cmd_noop},        {SMTP_QUIT, false, cmd_quit},
    {SMTP_VRFY, false, cmd_vrfy},        {SMTP_EXPN, false, cmd_expn},
    {SMTP_HELP, false, cmd_help},        {SMTP_STARTTLS, false, cmd_starttls},
    {SMTP_AUTH, true, session_cmd_auth}, {SMTP_BDAT, true, cmd_bdat},
};

static void count_error(session *s) {
  if (++s->errors >= SESSION_MAX_ERRORS) {
    session_reply(s, "421 4.7.0 Too many errors, closing connection\r\n");
    session_up_drop(s, true);
    session_close_now(s);
  }
}

static void handle_line(session *s, const char *line, size_t len) {
  smtp_cmd c;
  bool too_long = len + 2 > SMTP_CMD_MAX; /* RFC 5321 4.5.3.1.4, CRLF included */
  if (too_long && (len < 5 || stp_ascii_ncasecmp(line, "AUTH ", 5))) {
    session_reply(s, "500 5.5.2 Error: line too long\r\n");
    count_error(s);
    return;
  }
  if (smtp_parse_command(line, len, &c) < 0) {
    session_reply(s, "501 5.5.2 Syntax error in command\r\n");
    count_error(s);
    return;
  }
  for (size_t i = 0; i < sizeof commands / sizeof *commands; i++) {
    if (commands[i].verb != c.verb)
      continue;
    if (commands[i].needs_helo && !s->greeted) {
      session_reply(s, "503 5.5.1 Error: send HELO/EHLO first\r\n");
      count_error(s);
      return;
    }
    commands[i].proceed(s, &c);
    return;
  }
  session_reply(s, "500 5.5.2 Error: command not recognized\r\n");
  count_error(s);
}

/* ---- DATA ----------------------------------------------------------------- */

static void emit_upstream(void *ctx, const char *p, size_t n) {
  session *s = ctx;
  if (s->state == SS_DATA)
    s->ops->up_body(s->ctx, p, n);
}

/* Framed bytes: through the header rewriter when the route wants one. */
static void emit_body(void *ctx, const char *p, size_t n) {
  session *s = ctx;
  if (!s->rw_active) {
    emit_upstream(s, p, n);
    return;
  }
  if (!s->rw_overflow && hdr_rewriter_feed(&s->rw, p, n, emit_upstream, s) < 0)
    s->rw_overflow = true;
}

static void rewrite_stop(session *s) {
  if (s->rw_active)
    hdr_rewriter_free(&s->rw);
  s->rw_active = false;
  s->rw_overflow = false;
}

static void rewrite_start(session *s) {
  const stp_route_cfg *rt = s->route >= 0 ? &s->cfg->routes[s->route] : NULL;
  if (rt && rt->rewrite_header_from &&
      hdr_rewriter_init(&s->rw, rt->rewrite_header_from, HDR_REWRITE_DEFAULT_MAX) == 0)
    s->rw_active = true;
}

static void finish_data(session *s) {
  const char *r = NULL;
  /* After a NUL nothing more goes up, not even held header lines. */
  if (s->rw_active && !s->rw_overflow && !s->framer.too_big && !s->framer.nul_seen &&
      s->state == SS_DATA && hdr_rewriter_finish(&s->rw, emit_upstream, s) < 0)
    s->rw_overflow = true;
  bool header_overflow = s->rw_overflow;
  rewrite_stop(s);
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
    session_up_drop(s, false);
    session_reply(s, r);
    log_message(s, r[0] == '4' ? "deferred" : "rejected", r);
    txn_clear(s);
    set_state(s, SS_CMD);
    return;
  }
  session_wait_for(s, W_DOT);
  s->ops->up_end(s->ctx);
}

/* ---- input ------------------------------------------------------------------ */

static void sync_error(session *s) {
  session_reply(s, "554 5.5.0 Error: data sent before the 354 reply (synchronization error)\r\n");
  stp_logf(STP_LOG_WARN, s->sid, "synchronization error: bytes after DATA before 354");
  session_up_drop(s, false);
  session_close_now(s);
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
      size_t used = data_framer_feed(&s->framer, p, n, emit_body, s);
      s->progress += used;
      p += used;
      n -= used;
      used_total += used;
      if (s->framer.done)
        finish_data(s);
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
      session_reply(s, "500 5.5.2 Error: line too long\r\n");
      count_error(s);
      continue;
    }
    if (s->in_auth)
      session_auth_line(s, line, len);
    else
      handle_line(s, line, len);
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
  session_reply(s, "421 4.7.0 Too much pipelined input, closing connection\r\n");
  session_up_drop(s, false);
  session_close_now(s);
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

static void apply_outcome(session *s, const session_outcome *o);

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
      apply_outcome(s, &o);
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
  apply_outcome(s, o);
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
  set_state(s, SS_TLS);
}

/* ---- upstream outcomes -------------------------------------------------- */

static void apply_password(session *s, bool ok) {
  if (s->state != SS_WAIT || s->wait != W_HASH)
    return;
  done_waiting(s, SS_CMD);
  session_auth_hash_result(s, ok);
}

void session_password_checked(session *s, bool ok) {
  session_outcome o = {.kind = SO_PASSWORD, .ok = ok};
  deliver(s, &o);
}

void session_up_skipped(session *s, const char *skipped) {
  snprintf(s->up_skipped, sizeof s->up_skipped, "%s", skipped ? skipped : "");
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
    done_waiting(s, SS_CMD);
    return;
  }
  s->wait = W_MAIL;
  s->ops->up_mail(s->ctx, sender_for_upstream(s), &s->mail);
}

void session_up_ready(session *s, const char *upstream_name, const char *tls_version) {
  session_outcome o = {.kind = SO_READY, .has_tls = tls_version != NULL};
  snprintf(o.name, sizeof o.name, "%s", upstream_name ? upstream_name : "");
  snprintf(o.tls, sizeof o.tls, "%s", tls_version ? tls_version : "");
  deliver(s, &o);
}

static void apply_reply_data(session *s, const smtp_reply *r) {
  if (r->code == 354) {
    session_reply(s, "354 End data with <CR><LF>.<CR><LF>\r\n");
    data_framer_init(&s->framer, s->lcfg->bare_lf == STP_BARELF_REJECT, s->lcfg->max_message_size);
    rewrite_start(s);
    done_waiting(s, SS_DATA);
    if (s->ops->data_started)
      s->ops->data_started(s->ctx, s->lcfg->data_deadline_ms);
    return;
  }
  relay_reply(s, r);
  done_waiting(s, SS_CMD);
}

static void apply_reply(session *s, const smtp_reply *r) {
  if (s->state != SS_WAIT)
    return;
  switch (s->wait) {
  case W_MAIL:
    if (r->code / 100 == 2) {
      s->up_in_txn = true;
      s->wait = W_RCPT;
      s->ops->up_rcpt(s->ctx, s->rcpt.addr);
      return;
    }
    /* The upstream refused the sender: that is this RCPT's answer. */
    relay_reply(s, r);
    if (s->n_rcpt == 0)
      s->route = -1;
    break;
  case W_RCPT:
    relay_reply(s, r);
    if (r->code / 100 == 2)
      s->n_rcpt++;
    break;
  case W_DATA:
    apply_reply_data(s, r);
    return;
  case W_DOT:
    relay_reply(s, r);
    log_relayed(s, r);
    txn_clear(s);
    s->up_in_txn = false;
    break;
  case W_RSET:
    s->up_in_txn = false;
    session_reply(s, "250 2.0.0 Ok\r\n");
    break;
  default:
    return;
  }
  done_waiting(s, SS_CMD);
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
  apply_reply(s, r);
  pump_and_leave(s);
}

static void apply_failed_wait(session *s, upstream_fail why, bool had_rcpts) {
  const char *r = session_fail_reply(why);
  switch (s->wait) {
  case W_OPEN:
  case W_MAIL:
  case W_RCPT:
    session_reply(s, r);
    if (had_rcpts)
      s->txn_failed = true;
    else
      s->route = -1;
    break;
  case W_DATA:
    session_reply(s, r);
    s->txn_failed = true;
    break;
  case W_DOT:
    /* The upstream may or may not have taken it; 4xx so the device retries
     * (at most one extra copy, never a lost scan). */
    session_reply(s, r);
    log_message(s, "deferred", r);
    txn_clear(s);
    break;
  case W_RSET:
    session_reply(s, "250 2.0.0 Ok\r\n");
    break;
  default:
    break;
  }
  done_waiting(s, SS_CMD);
}

static void apply_failed(session *s, upstream_fail why) {
  bool had_rcpts = s->n_rcpt > 0;
  s->up_connected = false;
  s->up_in_txn = false;
  s->up_route = -1;
  if (s->state == SS_DATA) {
    /* Keep reading the device's data to its end, then answer 4xx. */
    s->data_lost = true;
    set_state(s, SS_DATA_DISCARD);
    return;
  }
  if (s->state != SS_WAIT) {
    if (had_rcpts)
      s->txn_failed = true;
    return;
  }
  if (s->wait == W_AUTH) {
    s->route = -1;
    done_waiting(s, SS_CMD);
    session_auth_upstream_failed(s, why);
    return;
  }
  apply_failed_wait(s, why, had_rcpts);
}

void session_up_failed(session *s, upstream_fail why) {
  session_outcome o = {.kind = SO_FAILED, .why = why};
  deliver(s, &o);
}

static void apply_outcome(session *s, const session_outcome *o) {
  switch (o->kind) {
  case SO_READY:
    apply_ready(s, o->name, o->has_tls ? o->tls : NULL);
    return;
  case SO_REPLY:
    apply_reply(s, &o->reply);
    return;
  case SO_FAILED:
    apply_failed(s, o->why);
    return;
  case SO_PASSWORD:
    apply_password(s, o->ok);
    return;
  }
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
   * verb is known, in handle_line(). */
  smtp_lr_init(&s->lr, SMTP_AUTH_LINE_MAX);
  s->lr.max = SMTP_AUTH_LINE_MAX;
  s->route = -1;
  s->up_route = -1;
  lanauth_init(&s->auth);
}

void session_free(session *s) {
  session_auth_forget(s);
  rewrite_stop(s);
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
  session_replyf(s, "220 %s ESMTP smtp-tls-proxy\r\n", s->cfg->hostname);
}

void session_on_eof(session *s) {
  if (s->state == SS_CLOSED)
    return;
  if (s->state == SS_DATA || s->state == SS_DATA_DISCARD ||
      (s->state == SS_WAIT && (s->wait == W_DATA || s->wait == W_DOT))) {
    /* The device vanished: no final dot is ever sent for it. A message
     * whose dot already went out is in the upstream's hands. */
    if (!(s->state == SS_WAIT && s->wait == W_DOT))
      log_message(s, "aborted", "device disconnected during DATA");
    session_up_drop(s, false);
  } else {
    session_up_drop(s, true);
  }
  set_state(s, SS_CLOSED);
  s->ops->close(s->ctx);
}

void session_on_idle_timeout(session *s) {
  if (s->state == SS_CLOSED || session_waiting(s))
    return;
  session_reply(s, "421 4.4.2 Idle timeout, closing connection\r\n");
  session_up_drop(s, s->state != SS_DATA && s->state != SS_DATA_DISCARD);
  session_close_now(s);
}

void session_on_data_deadline(session *s) {
  if (s->state != SS_DATA && s->state != SS_DATA_DISCARD)
    return; /* that message ended in time */
  /* A device dripping its message keeps a connection and an upstream
   * transaction open for as long as it likes; idle_timeout cannot see it
   * because every byte is progress. Never a final dot for it. */
  session_reply(s, "421 4.4.2 Message data took too long (data_deadline), closing connection\r\n");
  log_message(s, "aborted", "data_deadline reached while the device was still sending");
  session_up_drop(s, false);
  session_close_now(s);
}

void session_shutdown(session *s, const char *line) {
  if (s->state == SS_CLOSED)
    return;
  session_reply(s, line ? line : "421 4.3.2 Service shutting down, closing connection\r\n");
  session_up_drop(s, s->state == SS_CMD);
  session_close_now(s);
}

void session_tls_ready(session *s, const char *version) {
  if (s->state != SS_TLS)
    return;
  s->tls = true;
  snprintf(s->tls_version, sizeof s->tls_version, "%s", version ? version : "");
  set_state(s, SS_CMD);
}

bool session_waiting(const session *s) {
  return s->state == SS_WAIT;
}
