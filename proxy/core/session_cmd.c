/* session_cmd.c - the device's commands, one table of {verb, needs HELO,
 * handler}. A handler answers at once or asks the upstream through ops and
 * leaves the session waiting (session_up.c applies the answer).
 */
#include "session_cmd.h"

#include <stdio.h>
#include <string.h>

#include "session_auth.h"
#include "session_out.h"
#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/metrics.h"
#include "smtp-tls-proxy/route.h"

/* Reset the transaction; when the upstream holds one, RSET it first and
 * answer `ok_reply` once it has answered. */
static void txn_reset_then_reply(session *s, const char *ok_reply) {
  bool upstream_txn = s->up_connected && s->up_in_txn;
  session_out_txn_clear(s);
  if (upstream_txn) {
    session_out_wait_for(s, W_RSET);
    s->ops->up_rset(s->ctx);
    return;
  }
  if (ok_reply)
    session_out_reply(s, ok_reply);
}

static void cmd_ehlo(session *s, const smtp_cmd *c, bool esmtp) {
  if (c->arg_len == 0) {
    session_out_replyf(s, "501 5.5.4 Syntax: %s hostname\r\n", esmtp ? "EHLO" : "HELO");
    return;
  }
  snprintf(s->helo, sizeof s->helo, "%.*s", (int)c->arg_len, c->arg);
  s->greeted = true;
  s->esmtp = esmtp;
  if (!esmtp) {
    session_out_txn_abandon(s);
    session_out_replyf(s, "250 %s\r\n", s->cfg->hostname);
    return;
  }
  char buf[512];
  /* DSN (RFC 3461): its parameters go upstream when the upstream offers
   * DSN, and are dropped (4, as a relay may) when it does not. */
  int n = snprintf(buf, sizeof buf,
                   "250-%s\r\n250-SIZE %llu\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-DSN\r\n",
                   s->cfg->hostname, (unsigned long long)s->lcfg->max_message_size);
  if (s->lcfg->auth != STP_LAUTH_NONE)
    n += snprintf(buf + n, sizeof buf - (size_t)n, "250-AUTH PLAIN LOGIN\r\n");
  if (s->lcfg->tls == STP_TLS_STARTTLS && !s->tls)
    n += snprintf(buf + n, sizeof buf - (size_t)n, "250-STARTTLS\r\n");
  snprintf(buf + n, sizeof buf - (size_t)n, "250 ENHANCEDSTATUSCODES\r\n");
  session_out_txn_abandon(s);
  session_out_reply(s, buf);
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
    session_out_reply(s, "530 5.7.0 Authentication required\r\n");
    return;
  }
  if (s->have_mail) {
    session_out_reply(s, "503 5.5.1 Error: nested MAIL command\r\n");
    return;
  }
  smtp_mail_args a;
  int r = smtp_parse_mail(c->arg, c->arg_len, &a);
  if (r == STP_EADDR) {
    session_out_reply(s, "553 5.1.7 Bad sender address syntax\r\n");
    return;
  }
  if (r == STP_EPARAM) {
    session_out_reply(s, "555 5.5.4 Unsupported or malformed MAIL parameter\r\n");
    return;
  }
  if (r < 0) {
    session_out_reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>\r\n");
    return;
  }
  if (a.has_size && s->lcfg->max_message_size && a.size > s->lcfg->max_message_size) {
    session_out_reply(s, "552 5.3.4 Message size exceeds fixed limit\r\n");
    return;
  }
  uint64_t wait_ms = s->limits ? limits_client(s->limits, session_out_listener_index(s),
                                               s->client_ip, stp_now_ms())
                               : 0;
  if (wait_ms) {
    session_out_replyf(s, "451 4.7.0 Rate limit exceeded for %s, try again in %llu s\r\n",
                       s->client_ip, (unsigned long long)((wait_ms + 999) / 1000));
    stp_kv kv[] = {{"scope", "listener"}, {"name", s->lcfg->name}, {"client", s->client_ip}};
    stp_log_kv(STP_LOG_WARN, s->sid, "rate-limited", kv, 3);
    metrics_rate_limited("listener", s->lcfg->name);
    return;
  }
  session_out_txn_clear(s);
  s->mail = a;
  s->have_mail = true;
  s->txn_start_ms = stp_now_ms();
  session_out_reply(s, "250 2.1.0 Ok\r\n");
}

/* Move the current RCPT towards the upstream: connect, MAIL, then RCPT. */
static void rcpt_advance(session *s) {
  if (!s->up_connected || s->up_route != s->route) {
    session_out_up_drop(s, true);
    session_out_wait_for(s, W_OPEN);
    s->ops->up_open(s->ctx, (size_t)s->route);
    return;
  }
  if (!s->up_in_txn) {
    session_out_wait_for(s, W_MAIL);
    s->ops->up_mail(s->ctx, session_out_sender(s), &s->mail);
    return;
  }
  session_out_wait_for(s, W_RCPT);
  s->ops->up_rcpt(s->ctx, s->rcpt.addr, &s->rcpt_dsn);
}

static void cmd_rcpt(session *s, const smtp_cmd *c) {
  if (!s->have_mail) {
    session_out_reply(s, "503 5.5.1 Error: need MAIL command\r\n");
    return;
  }
  int r = smtp_parse_rcpt_dsn(c->arg, c->arg_len, s->mail.smtputf8, &s->rcpt, &s->rcpt_dsn);
  if (r == STP_EADDR) {
    session_out_reply(s, "553 5.1.3 Bad recipient address syntax\r\n");
    return;
  }
  if (r == STP_EPARAM) {
    session_out_reply(s, "555 5.5.4 Unsupported or malformed RCPT parameter\r\n");
    return;
  }
  if (r < 0) {
    session_out_reply(s, "501 5.5.4 Syntax: RCPT TO:<address>\r\n");
    return;
  }
  if (s->txn_failed) {
    session_out_reply(s, "451 4.4.2 Upstream connection lost, start a new transaction\r\n");
    return;
  }
  if (s->n_rcpt >= SESSION_MAX_RCPT) {
    session_out_reply(s, "452 4.5.3 Too many recipients\r\n");
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
    session_out_replyf(s, "550 5.7.1 No route for <%s>\r\n", s->rcpt.addr);
    return;
  }
  if (s->route >= 0 && rt != s->route) {
    if (s->n_rcpt > 0) {
      session_out_replyf(s, "452 4.5.3 <%s> takes another route; send it in a new transaction\r\n",
                         s->rcpt.addr);
      return;
    }
    /* Nothing accepted yet: the transaction may still change route. */
    if (s->up_in_txn)
      session_out_up_drop(s, false);
  }
  if (s->route != rt && s->limits) {
    /* One token per transaction that takes the route. */
    uint64_t wait_ms = limits_route(s->limits, (size_t)rt, stp_now_ms());
    if (wait_ms) {
      session_out_replyf(s, "451 4.7.0 Rate limit of route %s exceeded, try again in %llu s\r\n",
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
    session_out_reply(s, "501 5.5.4 Syntax: DATA\r\n");
    return;
  }
  if (!s->have_mail) {
    session_out_reply(s, "503 5.5.1 Error: need MAIL command\r\n");
    return;
  }
  if (s->txn_failed) {
    session_out_reply(s, "451 4.4.2 Upstream connection lost, start a new transaction\r\n");
    return;
  }
  if (s->n_rcpt == 0) {
    session_out_reply(s, "554 5.5.1 Error: no valid recipients\r\n");
    return;
  }
  session_out_wait_for(s, W_DATA);
  s->ops->up_data(s->ctx);
}

static void cmd_rset(session *s, const smtp_cmd *c) {
  (void)c;
  txn_reset_then_reply(s, "250 2.0.0 Ok\r\n");
}

static void cmd_noop(session *s, const smtp_cmd *c) {
  (void)c;
  session_out_reply(s, "250 2.0.0 Ok\r\n");
}

static void cmd_vrfy(session *s, const smtp_cmd *c) {
  (void)c;
  session_out_reply(s,
                    "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery\r\n");
}

static void cmd_expn(session *s, const smtp_cmd *c) {
  (void)c;
  session_out_reply(s, "502 5.5.1 EXPN not available\r\n");
}

static void cmd_help(session *s, const smtp_cmd *c) {
  (void)c;
  session_out_reply(s, "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP\r\n");
}

static void cmd_quit(session *s, const smtp_cmd *c) {
  (void)c;
  session_out_reply(s, "221 2.0.0 Bye\r\n");
  session_out_up_drop(s, true);
  session_out_close(s);
}

static void cmd_starttls(session *s, const smtp_cmd *c) {
  if (s->lcfg->tls != STP_TLS_STARTTLS || s->tls) {
    session_out_reply(s, "502 5.5.1 STARTTLS not available\r\n");
    return;
  }
  if (c->arg_len) {
    session_out_reply(s, "501 5.5.4 Syntax: STARTTLS\r\n");
    return;
  }
  session_out_reply(s, "220 2.0.0 Ready to start TLS\r\n");
  /* RFC 3207 4.2 / Postfix: forget everything, including any plaintext the
   * device pipelined after STARTTLS; it is never executed. */
  smtp_lr_reset(&s->lr);
  s->pending.len = 0;
  s->greeted = false;
  s->authenticated = false; /* RFC 3207 4.2: AUTH again inside TLS */
  session_auth_forget(s);
  session_out_txn_abandon(s);
  session_out_state(s, SS_TLS);
  s->ops->start_tls(s->ctx);
}

static void cmd_bdat(session *s, const smtp_cmd *c) {
  (void)c;
  session_out_reply(s, "502 5.5.1 BDAT not supported\r\n");
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
    {SMTP_AUTH, true, session_auth_cmd}, {SMTP_BDAT, true, cmd_bdat},
};

void session_cmd_error(session *s) {
  if (++s->errors >= SESSION_MAX_ERRORS) {
    session_out_reply(s, "421 4.7.0 Too many errors, closing connection\r\n");
    session_out_up_drop(s, true);
    session_out_close(s);
  }
}

void session_cmd_line(session *s, const char *line, size_t len) {
  smtp_cmd c;
  bool too_long = len + 2 > SMTP_CMD_MAX; /* RFC 5321 4.5.3.1.4, CRLF included */
  if (too_long && (len < 5 || stp_ascii_ncasecmp(line, "AUTH ", 5))) {
    session_out_reply(s, "500 5.5.2 Error: line too long\r\n");
    session_cmd_error(s);
    return;
  }
  if (smtp_parse_command(line, len, &c) < 0) {
    session_out_reply(s, "501 5.5.2 Syntax error in command\r\n");
    session_cmd_error(s);
    return;
  }
  for (size_t i = 0; i < sizeof commands / sizeof *commands; i++) {
    if (commands[i].verb != c.verb)
      continue;
    if (commands[i].needs_helo && !s->greeted) {
      session_out_reply(s, "503 5.5.1 Error: send HELO/EHLO first\r\n");
      session_cmd_error(s);
      return;
    }
    commands[i].proceed(s, &c);
    return;
  }
  session_out_reply(s, "500 5.5.2 Error: command not recognized\r\n");
  session_cmd_error(s);
}
