/* session_out.c - what every part of the LAN session shares: replies to
 * the device, state changes (logged "a -> b" at debug level), dropping the
 * upstream, the transaction record and the per-message log line.
 *
 * Owns nothing of its own; the other session_*.c files build on it and it
 * calls none of them (no import circle).
 */
#include "session_out.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/metrics.h"

static const char *const state_names[] = {"cmd", "wait", "data", "data-discard", "tls", "closed"};

const char *session_state_name(session_state st) {
  return (unsigned)st < sizeof state_names / sizeof *state_names ? state_names[st] : "?";
}

size_t session_out_listener_index(const session *s) {
  return (size_t)(s->lcfg - s->cfg->listeners);
}

void session_out_reply(session *s, const char *line) {
  s->ops->write(s->ctx, line, strlen(line));
}

void session_out_replyf(session *s, const char *fmt, ...) {
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
void session_out_relay(session *s, const smtp_reply *r) {
  const char *t = r->text;
  size_t left = r->text_len;
  do {
    size_t n = 0;
    while (n < left && t[n] != '\n')
      n++;
    bool last = n >= left;
    session_out_replyf(s, "%03d%c%.*s\r\n", r->code, last ? ' ' : '-', (int)n, t);
    t += n + (last ? 0 : 1);
    left -= n + (last ? 0 : 1);
    if (last)
      break;
  } while (1);
}

const char *session_wait_name(session_wait w) {
  static const char *const names[] = {"none", "open", "mail", "rcpt", "data",
                                      "dot",  "rset", "auth", "hash", "spool"};
  return (unsigned)w < sizeof names / sizeof *names ? names[w] : "?";
}

void session_out_state(session *s, session_state st) {
  if (stp_log_level() >= STP_LOG_DEBUG && s->state != st) {
    stp_kv kv[] = {{"from", session_state_name(s->state)},
                   {"to", session_state_name(st)},
                   {"wait", st == SS_WAIT ? session_wait_name(s->wait) : NULL}};
    stp_log_kv(STP_LOG_DEBUG, s->sid, "session-state", kv, 3);
  }
  s->state = st;
}

void session_out_close(session *s) {
  if (s->state == SS_CLOSED)
    return;
  session_out_state(s, SS_CLOSED);
  s->ops->close(s->ctx);
}

void session_out_up_drop(session *s, bool graceful) {
  if (!s->up_connected && s->wait != W_OPEN)
    return;
  s->ops->up_close(s->ctx, graceful);
  s->up_connected = false;
  s->up_in_txn = false;
  s->up_route = -1;
}

/* The message event: its line, and (through the '_' keys, which only log
 * observers see) what the delivery history keeps of it. */
static void log_message(session *s, const char *result, const char *reply_line,
                        const char *spool_id) {
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
      {"_listener", s->lcfg ? s->lcfg->name : NULL},
      {"_rcpt_list", s->rcpt_list},
      {"_spool_id", spool_id},
  };
  stp_log_kv(STP_LOG_INFO, s->sid, "message", kv, sizeof kv / sizeof *kv);
  metrics_message(rt ? rt->name : "", s->up_name, result, s->framer.size);
}

void session_out_log_message(session *s, const char *result, const char *reply_line) {
  log_message(s, result, reply_line, NULL);
}

void session_out_log_spooled(session *s, const char *reply_line, const char *spool_id) {
  log_message(s, "spooled", reply_line, spool_id);
}

void session_out_note_rcpt(session *s, const char *addr) {
  size_t have = s->rcpt_list ? strlen(s->rcpt_list) : 0, add = strlen(addr);
  if (have + (have ? 1 : 0) + add + 1 > SESSION_RCPT_LIST_MAX)
    return; /* n_rcpt still counts it; the list is a bounded sample */
  if (!s->rcpt_list)
    s->rcpt_list = stp_xcalloc(1, SESSION_RCPT_LIST_MAX);
  if (have)
    s->rcpt_list[have++] = ',';
  memcpy(s->rcpt_list + have, addr, add + 1);
}

void session_out_log_relayed(session *s, const smtp_reply *r) {
  char line[256];
  snprintf(line, sizeof line, "%d %.*s", r->code, (int)strcspn(r->text, "\n"), r->text);
  session_out_log_message(s,
                          r->code / 100 == 2   ? "delivered"
                          : r->code / 100 == 4 ? "deferred"
                                               : "rejected",
                          line);
}

/* The transaction's copy for the spool and its recipients go with it. */
static void spool_txn_clear(session *s) {
  if (s->copying) {
    s->copying = false;
    if (s->ops->copy_discard)
      s->ops->copy_discard(s->ctx);
  }
  for (unsigned i = 0; i < s->n_kept; i++)
    free(s->kept_rcpts[i]);
  free(s->kept_rcpts);
  free(s->kept_dsn);
  s->kept_rcpts = NULL;
  s->kept_dsn = NULL;
  s->n_kept = 0;
  s->spool_mode = false;
  s->spool_fail[0] = '\0';
}

void session_out_txn_clear(session *s) {
  spool_txn_clear(s);
  free(s->rcpt_list);
  s->rcpt_list = NULL;
  s->have_mail = false;
  s->txn_failed = false;
  s->data_lost = false;
  s->route = -1;
  s->n_rcpt = 0;
  memset(&s->mail, 0, sizeof s->mail);
  memset(&s->framer, 0, sizeof s->framer);
}

/* EHLO, HELO and STARTTLS reset the transaction (RFC 5321 4.1.4, RFC 3207
 * 4.2). One the upstream holds already (MAIL, perhaps RCPTs accepted)
 * must not carry the next one: the connection is given back (the pool
 * sends RSET before it is reused). */
void session_out_txn_abandon(session *s) {
  session_out_txn_clear(s);
  if (s->up_connected && s->up_in_txn)
    session_out_up_drop(s, true);
}

void session_out_wait_for(session *s, session_wait w) {
  s->wait = w;
  session_out_state(s, SS_WAIT);
}

void session_out_done_waiting(session *s, session_state next) {
  s->wait = W_NONE;
  session_out_state(s, next);
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

const char *session_out_sender(const session *s) {
  const stp_route_cfg *rt = &s->cfg->routes[s->route];
  if (rt->rewrite_mail_from)
    return rt->rewrite_mail_from;
  return s->mail.from.null_path ? "" : s->mail.from.addr;
}
