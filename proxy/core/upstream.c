/* upstream.c - SMTP client state machine towards one upstream (pure).
 *
 * Owns the upstream dialogue; see upstream.h for the guarantees. Every
 * state change is logged at debug level as "a -> b". AUTH lines are built
 * in a stack buffer that is cleansed right after ops->write() returns, and
 * nothing of them is ever logged.
 *
 * Callbacks rule: a request (upstream_mail, _rcpt, ...) never calls
 * ops->reply or ops->failed before it returns. An answer known at once (a
 * local refusal, a command that cannot be sent) is kept in `deferred` and
 * the transport is asked, through ops->defer, to call upstream_run_deferred()
 * from its loop.
 */
#include "smtp-tls-proxy/upstream.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/sasl.h"
#include "smtp-tls-proxy/util.h"

#define UP_LINE_CAP 1024 /* reply lines are 512 octets; be lenient */

static const char *const state_names[] = {
    "connecting",    "tls-implicit", "greeting", "ehlo",  "helo", "starttls",
    "tls-handshake", "ehlo2",        "auth",     "ready", "mail", "rcpt",
    "data",          "body",         "dot",      "rset",  "quit", "dead"};

const char *upstream_state_name(upstream_state s) {
  return (unsigned)s < sizeof state_names / sizeof *state_names ? state_names[s] : "?";
}

const char *upstream_fail_name(upstream_fail f) {
  static const char *const n[] = {"none",     "dns",  "connect", "tls",    "starttls",
                                  "greeting", "auth", "timeout", "closed", "protocol"};
  return (unsigned)f < sizeof n / sizeof *n ? n[f] : "?";
}

static void set_state(upstream *u, upstream_state s) {
  if (stp_log_level() >= STP_LOG_DEBUG) {
    stp_kv kv[] = {{"upstream", u->cfg->name},
                   {"from", upstream_state_name(u->state)},
                   {"to", upstream_state_name(s)}};
    stp_log_kv(STP_LOG_DEBUG, NULL, "upstream-state", kv, 3);
  }
  u->state = s;
}

static void fail_detail(upstream *u, upstream_fail why, const char *detail) {
  if (u->state == UP_DEAD)
    return;
  set_state(u, UP_DEAD);
  u->ops->set_timer(u->ctx, 0);
  if (u->in_request) { /* the owner is on the stack: report from the loop */
    u->deferred = UP_DEFER_FAIL;
    u->deferred_fail = why;
    memcpy(u->deferred_text, detail, sizeof u->deferred_text - 1);
    u->deferred_text[sizeof u->deferred_text - 1] = '\0';
    u->ops->defer(u->ctx);
    return;
  }
  u->ops->failed(u->ctx, why, detail);
}

/* A failure that no provider reply explains (network, timeout, ...). */
static void fail(upstream *u, upstream_fail why, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(upstream *u, upstream_fail why, const char *fmt, ...) {
  if (u->state == UP_DEAD)
    return;
  char detail[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  memset(&u->verdict, 0, sizeof u->verdict);
  fail_detail(u, why, detail);
}

/* First line of the reply, for log details: "421 4.3.2 busy". */
static const char *reply_summary(const upstream *u, char *buf, size_t cap) {
  size_t n = strcspn(u->reply.text, "\n");
  if (n > 200)
    n = 200;
  snprintf(buf, cap, "%d %.*s", u->reply.code, (int)n, u->reply.text);
  return buf;
}

/* The reply just received ends the connection: the provider table reads
 * it (an XOAUTH2 exchange by its 334 challenge) before the failure goes
 * out, so the owner can give the device the right class and the admin a
 * hint. detail: "<what>: <first line of the reply>". */
static void fail_reply(upstream *u, upstream_fail why, provider_phase phase, const char *what) {
  if (u->state == UP_DEAD)
    return;
  if (phase == PROV_AUTH && u->xoauth2_challenge[0])
    provider_classify_xoauth2(&u->verdict, u->xoauth2_challenge, &u->reply);
  else
    provider_classify(&u->verdict, phase, &u->reply);
  char s[256], detail[512];
  snprintf(detail, sizeof detail, "%s: %s", what, reply_summary(u, s, sizeof s));
  fail_detail(u, why, detail);
}

const provider_verdict *upstream_verdict(const upstream *u) {
  return &u->verdict;
}

static void send_cmd(upstream *u, upstream_state next, uint64_t timeout_ms, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void send_cmd(upstream *u, upstream_state next, uint64_t timeout_ms, const char *fmt, ...) {
  /* A device's command is at most 512 octets; ours may hold a rewritten
   * sender and parameters the device did not send (SIZE, BODY). */
  char line[2 * SMTP_CMD_MAX + SMTP_ADDR_MAX];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof line) {
    fail(u, UP_FAIL_PROTOCOL, "command too long");
    return;
  }
  set_state(u, next);
  memset(&u->reply, 0, sizeof u->reply);
  u->ops->set_timer(u->ctx, timeout_ms);
  u->ops->write(u->ctx, line, (size_t)n);
}

void upstream_init(upstream *u, const stp_upstream_cfg *cfg, const char *helo,
                   const upstream_ops *ops, void *ctx) {
  memset(u, 0, sizeof *u);
  u->cfg = cfg;
  u->helo = helo;
  u->ops = ops;
  u->ctx = ctx;
  u->state = UP_CONNECTING;
  smtp_lr_init(&u->lr, UP_LINE_CAP);
  u->lr.max = UP_LINE_CAP;
}

void upstream_set_log_id(upstream *u, const char *sid) {
  snprintf(u->log_id, sizeof u->log_id, "%s", sid ? sid : "");
}

void upstream_free(upstream *u) {
  smtp_lr_free(&u->lr);
}

void upstream_set_credentials(upstream *u, const char *user, const char *secret) {
  u->pt_user = user;
  u->pt_secret = secret;
}

void upstream_set_token(upstream *u, const char *token) {
  u->tok_secret = token;
}

static bool has_auth(const upstream *u) {
  return u->pt_secret || u->cfg->has_auth;
}
static const char *auth_user(const upstream *u) {
  return u->pt_secret ? u->pt_user : u->cfg->username;
}
static const char *auth_secret(const upstream *u) {
  return u->pt_secret ? u->pt_secret : u->tok_secret ? u->tok_secret : u->cfg->secret;
}

void upstream_on_connected(upstream *u) {
  if (u->state != UP_CONNECTING)
    return;
  if (u->cfg->tls == STP_TLS_IMPLICIT) {
    set_state(u, UP_TLS_IMPLICIT);
    u->ops->set_timer(u->ctx, u->cfg->connect_timeout_ms);
    u->ops->start_tls(u->ctx);
  } else {
    set_state(u, UP_GREETING);
    u->ops->set_timer(u->ctx, u->cfg->command_timeout_ms);
  }
}

void upstream_on_tls_ready(upstream *u) {
  if (u->state == UP_TLS_IMPLICIT) {
    u->tls = true;
    set_state(u, UP_GREETING);
    u->ops->set_timer(u->ctx, u->cfg->command_timeout_ms);
  } else if (u->state == UP_TLS_HANDSHAKE) {
    /* RFC 3207 4.2: forget everything learnt before TLS. */
    u->tls = true;
    memset(&u->caps, 0, sizeof u->caps);
    send_cmd(u, UP_EHLO2, u->cfg->command_timeout_ms, "EHLO %s\r\n", u->helo);
  }
}

static void become_ready(upstream *u) {
  set_state(u, UP_READY);
  u->ops->set_timer(u->ctx, 0);
  u->ops->ready(u->ctx);
}

static void auth_write(upstream *u, long n, char *buf, size_t cap) {
  if (n < 0) {
    stp_cleanse(buf, cap);
    fail(u, UP_FAIL_AUTH, "credentials too long");
    return;
  }
  u->ops->set_timer(u->ctx, u->cfg->command_timeout_ms);
  u->ops->write(u->ctx, buf, (size_t)n);
  stp_cleanse(buf, cap);
}

static void start_auth(upstream *u) {
  /* A device's own (passthrough) password: the best password mechanism
   * offered; the configured mechanism applies to the configured secret. */
  int mech = u->pt_secret ? sasl_choose(STP_MECH_AUTO, false, u->caps.auth)
                          : sasl_choose(u->cfg->mechanism, u->cfg->secret_is_token, u->caps.auth);
  if (mech < 0) {
    fail(u, UP_FAIL_AUTH, "no usable AUTH mechanism offered (offered mask 0x%x)", u->caps.auth);
    return;
  }
  if (!auth_secret(u)) { /* a token source that delivered nothing */
    fail(u, UP_FAIL_AUTH, "no credentials to authenticate with");
    return;
  }
  u->mech = mech;
  u->login_step = 0;
  set_state(u, UP_AUTH);
  memset(&u->reply, 0, sizeof u->reply);
  /* Room for an RFC 4954 AUTH line (12288 octets): Microsoft access tokens
   * are JWTs of several KiB, too long for a smaller buffer once in base64. */
  char buf[12288];
  long n = sasl_initial(mech, auth_user(u), auth_secret(u), buf, sizeof buf);
  auth_write(u, n, buf, sizeof buf);
}

static void after_ehlo(upstream *u) {
  if (has_auth(u))
    start_auth(u);
  else
    become_ready(u);
}

static void on_ehlo(upstream *u) {
  if (u->reply.code != 250) {
    /* Only a plain, unauthenticated upstream may fall back to HELO: every
     * other configuration needs EHLO's extensions. */
    if (u->state == UP_EHLO && u->cfg->tls == STP_TLS_NONE && !has_auth(u)) {
      send_cmd(u, UP_HELO, u->cfg->command_timeout_ms, "HELO %s\r\n", u->helo);
      return;
    }
    /* 501 is about the argument (Gmail: "501 5.5.4 HELO/EHLO argument ...
     * invalid, closing connection"): the transport may try once more with
     * another name. */
    u->helo_refused = u->state == UP_EHLO && u->reply.code == 501;
    fail_reply(u, UP_FAIL_PROTOCOL, PROV_EHLO, "EHLO refused");
    return;
  }
  smtp_caps_parse(&u->reply, &u->caps);
  if (u->cfg->tls == STP_TLS_STARTTLS && !u->tls) {
    if (!u->caps.starttls) {
      fail(u, UP_FAIL_STARTTLS, "upstream does not offer STARTTLS");
      return;
    }
    send_cmd(u, UP_STARTTLS, u->cfg->command_timeout_ms, "STARTTLS\r\n");
    return;
  }
  after_ehlo(u);
}

static void on_auth(upstream *u) {
  if (u->reply.code == 235) {
    become_ready(u);
    return;
  }
  if (u->reply.code == 334 && u->mech == STP_MECH_LOGIN && u->login_step < 2) {
    char buf[2048];
    long n = sasl_login_step(u->login_step++, auth_user(u), auth_secret(u), buf, sizeof buf);
    memset(&u->reply, 0, sizeof u->reply);
    auth_write(u, n, buf, sizeof buf);
    return;
  }
  if (u->reply.code == 334 && u->mech == STP_MECH_XOAUTH2 && u->login_step == 0) {
    /* RFC-less but documented by Google/Microsoft: a 334 carries a JSON
     * error; answer with an empty line to get the final 5xx. The JSON is
     * kept: its "status" is what tells the causes apart. */
    snprintf(u->xoauth2_challenge, sizeof u->xoauth2_challenge, "%.*s",
             (int)strcspn(u->reply.text, "\n"), u->reply.text);
    u->login_step = 1;
    memset(&u->reply, 0, sizeof u->reply);
    u->ops->set_timer(u->ctx, u->cfg->command_timeout_ms);
    u->ops->write(u->ctx, "\r\n", 2);
    return;
  }
  fail_reply(u, UP_FAIL_AUTH, PROV_AUTH, "AUTH rejected");
}

/* A complete reply arrived: advance the dialogue. */
static void on_reply(upstream *u) {
  char s[256];
  switch (u->state) {
  case UP_GREETING:
    if (u->reply.code != 220) {
      fail_reply(u, UP_FAIL_GREETING, PROV_GREETING, "greeting");
      return;
    }
    send_cmd(u, UP_EHLO, u->cfg->command_timeout_ms, "EHLO %s\r\n", u->helo);
    return;
  case UP_EHLO:
  case UP_EHLO2:
    on_ehlo(u);
    return;
  case UP_HELO:
    if (u->reply.code != 250) {
      fail_reply(u, UP_FAIL_PROTOCOL, PROV_EHLO, "HELO refused");
      return;
    }
    become_ready(u);
    return;
  case UP_STARTTLS:
    if (u->reply.code != 220) {
      fail_reply(u, UP_FAIL_STARTTLS, PROV_STARTTLS, "STARTTLS refused");
      return;
    }
    /* The caller checks for bytes after this reply before starting TLS. */
    set_state(u, UP_TLS_HANDSHAKE);
    return;
  case UP_AUTH:
    on_auth(u);
    return;
  case UP_MAIL:
  case UP_RCPT:
  case UP_RSET:
  case UP_DOT:
    if (u->state == UP_MAIL)
      u->in_txn = u->reply.code / 100 == 2;
    else if (u->state != UP_RCPT)
      u->in_txn = false; /* the dot's reply or RSET's ends the transaction */
    set_state(u, UP_READY);
    u->ops->set_timer(u->ctx, 0);
    u->ops->reply(u->ctx, &u->reply);
    return;
  case UP_DATA:
    set_state(u, u->reply.code == 354 ? UP_BODY : UP_READY);
    u->ops->set_timer(u->ctx, u->reply.code == 354 ? u->cfg->data_timeout_ms : 0);
    u->ops->reply(u->ctx, &u->reply);
    return;
  case UP_QUIT:
    return;
  case UP_READY:
  case UP_BODY:
    /* Unsolicited: typically "421 shutting down". */
    fail(u, UP_FAIL_CLOSED, "unsolicited reply: %s", reply_summary(u, s, sizeof s));
    return;
  default:
    fail(u, UP_FAIL_PROTOCOL, "reply in state %s", upstream_state_name(u->state));
    return;
  }
}

void upstream_feed(upstream *u, const char *p, size_t n) {
  while (n > 0 && u->state != UP_DEAD) {
    size_t used = 0;
    const char *line;
    size_t len;
    bool crlf;
    int r = smtp_lr_feed(&u->lr, p, n, &used, &line, &len, &crlf);
    p += used;
    n -= used;
    if (r == 0)
      break;
    if (r < 0) {
      fail(u, UP_FAIL_PROTOCOL, "reply line too long");
      return;
    }
    if (u->state == UP_CONNECTING || u->state == UP_TLS_IMPLICIT || u->state == UP_TLS_HANDSHAKE) {
      fail(u, UP_FAIL_PROTOCOL, "data before greeting or during TLS setup");
      return;
    }
    r = smtp_reply_feed(&u->reply, line, len);
    if (r < 0) {
      fail(u, UP_FAIL_PROTOCOL, "malformed reply line");
      return;
    }
    if (r == 1) {
      on_reply(u);
      memset(&u->reply, 0, sizeof u->reply); /* consumed; the next line starts anew */
      if (u->state == UP_TLS_HANDSHAKE) {
        /* RFC 3207 / SPEC: bytes after the 220 are an injection attempt. */
        if (n > 0 || smtp_lr_pending(&u->lr) > 0) {
          fail(u, UP_FAIL_STARTTLS, "bytes after 220 to STARTTLS (possible injection)");
          return;
        }
        u->ops->set_timer(u->ctx, u->cfg->connect_timeout_ms);
        u->ops->start_tls(u->ctx);
        return;
      }
    }
  }
}

void upstream_on_timeout(upstream *u) {
  if (u->state == UP_DEAD || u->state == UP_READY)
    return;
  fail(u, UP_FAIL_TIMEOUT, "timeout in state %s", upstream_state_name(u->state));
}

void upstream_on_closed(upstream *u, upstream_fail why, const char *detail) {
  if (u->state == UP_QUIT) {
    set_state(u, UP_DEAD);
    return;
  }
  if (why == UP_FAIL_TLS && u->state != UP_DEAD) {
    char d[512];
    snprintf(d, sizeof d, "%s (in state %s)", detail, upstream_state_name(u->state));
    provider_classify_text(&u->verdict, PROV_TLS, detail);
    fail_detail(u, why, d);
    return;
  }
  fail(u, why, "%s (in state %s)", detail, upstream_state_name(u->state));
}

/* Answer a request locally, without sending it, as if the upstream had;
 * the answer is delivered by upstream_run_deferred(), from the loop. */
static void local_reply(upstream *u, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void local_reply(upstream *u, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(u->deferred_text, sizeof u->deferred_text, fmt, ap);
  va_end(ap);
  u->deferred = UP_DEFER_REPLY;
  u->deferred_code = code;
  u->ops->defer(u->ctx);
}

void upstream_run_deferred(upstream *u) {
  up_deferred what = u->deferred;
  u->deferred = UP_DEFER_NONE;
  if (what == UP_DEFER_FAIL) {
    u->ops->failed(u->ctx, u->deferred_fail, u->deferred_text);
    return;
  }
  if (what != UP_DEFER_REPLY || u->state == UP_DEAD)
    return; /* a failure since then was reported instead */
  smtp_reply r;
  memset(&r, 0, sizeof r);
  r.code = u->deferred_code;
  r.lines = 1;
  snprintf(r.text, sizeof r.text, "%s", u->deferred_text);
  r.text_len = strlen(r.text);
  u->ops->reply(u->ctx, &r);
}

/* An upstream without DSN gets none of its parameters; the admin learns
 * it once per transaction. */
static void dsn_dropped(upstream *u, const char *params) {
  if (u->dsn_logged)
    return;
  u->dsn_logged = true;
  stp_kv kv[] = {{"upstream", u->cfg->name},
                 {"params", params},
                 {"reason", "the upstream does not offer DSN (RFC 3461 4 lets a relay drop them)"}};
  stp_log_kv(STP_LOG_INFO, u->log_id[0] ? u->log_id : NULL, "dsn-dropped", kv, 3);
}

/* " RET=HDRS ENVID=..." for MAIL, when the message asks for them. */
static size_t mail_dsn_params(upstream *u, const smtp_mail_args *a, char *p, size_t cap) {
  if (!a || (a->ret == SMTP_RET_NONE && !a->envid[0]))
    return 0;
  if (!u->caps.dsn) {
    dsn_dropped(u, a->ret && a->envid[0] ? "RET,ENVID" : a->ret ? "RET" : "ENVID");
    return 0;
  }
  int n = snprintf(p, cap, "%s%s%s",
                   a->ret == SMTP_RET_FULL   ? " RET=FULL"
                   : a->ret == SMTP_RET_HDRS ? " RET=HDRS"
                                             : "",
                   a->envid[0] ? " ENVID=" : "", a->envid);
  return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static void mail_request(upstream *u, const char *from, const smtp_mail_args *a) {
  u->dsn_logged = false; /* a new transaction */
  /* A message that needs an extension the upstream lacks is refused here,
   * before DATA, with the reason, rather than mangled or bounced later. */
  if (a && a->smtputf8 && !u->caps.smtputf8) {
    local_reply(u, 555, "5.6.7 Upstream %s does not support SMTPUTF8", u->cfg->name);
    return;
  }
  if (a && a->has_size && u->caps.has_size && u->caps.size && a->size > u->caps.size) {
    local_reply(u, 552, "5.3.4 Message size exceeds the upstream's limit of %llu bytes",
                (unsigned long long)u->caps.size);
    return;
  }
  char params[SMTP_CMD_MAX] = "";
  size_t n = 0;
  if (a && a->has_size && u->caps.has_size)
    n += (size_t)snprintf(params + n, sizeof params - n, " SIZE=%llu", (unsigned long long)a->size);
  /* Old devices send 8-bit text without BODY=8BITMIME. Declaring it when
   * the device said nothing is harmless for 7-bit content (RFC 6152) and
   * keeps an upstream from refusing or mangling undeclared 8-bit bytes. */
  if (a && a->body != SMTP_BODY_7BIT && u->caps.eightbitmime)
    n += (size_t)snprintf(params + n, sizeof params - n, " BODY=8BITMIME");
  if (a && a->smtputf8 && u->caps.smtputf8)
    n += (size_t)snprintf(params + n, sizeof params - n, " SMTPUTF8");
  mail_dsn_params(u, a, params + n, sizeof params - n);
  send_cmd(u, UP_MAIL, u->cfg->command_timeout_ms, "MAIL FROM:<%s>%s\r\n", from, params);
}

/* Every request runs between these two: whatever it finds out at once is
 * deferred (see fail() and local_reply()). */
static int request_begin(upstream *u, upstream_state need) {
  if (u->state != need || u->deferred != UP_DEFER_NONE)
    return STP_ESTATE;
  u->in_request = true;
  return 0;
}

static int request_end(upstream *u) {
  u->in_request = false;
  return 0;
}

int upstream_mail(upstream *u, const char *from, const smtp_mail_args *a) {
  if (request_begin(u, UP_READY) < 0)
    return STP_ESTATE;
  mail_request(u, from, a);
  return request_end(u);
}

int upstream_rcpt(upstream *u, const char *to, const smtp_rcpt_dsn *dsn) {
  if (request_begin(u, UP_READY) < 0)
    return STP_ESTATE;
  char params[sizeof dsn->orcpt + 64] = "";
  if (dsn && (dsn->notify || dsn->orcpt[0])) {
    if (u->caps.dsn) {
      char notify[64];
      snprintf(params, sizeof params, "%s%s%s%s", dsn->notify ? " NOTIFY=" : "",
               dsn->notify ? smtp_notify_text(dsn->notify, notify, sizeof notify) : "",
               dsn->orcpt[0] ? " ORCPT=" : "", dsn->orcpt);
    } else {
      dsn_dropped(u, dsn->notify && dsn->orcpt[0] ? "NOTIFY,ORCPT"
                     : dsn->notify                ? "NOTIFY"
                                                  : "ORCPT");
    }
  }
  send_cmd(u, UP_RCPT, u->cfg->command_timeout_ms, "RCPT TO:<%s>%s\r\n", to, params);
  return request_end(u);
}

int upstream_data(upstream *u) {
  if (request_begin(u, UP_READY) < 0)
    return STP_ESTATE;
  send_cmd(u, UP_DATA, u->cfg->command_timeout_ms, "DATA\r\n");
  return request_end(u);
}

int upstream_body(upstream *u, const char *p, size_t n) {
  if (request_begin(u, UP_BODY) < 0)
    return STP_ESTATE;
  /* The timeout measures a stall, not the whole transfer: a 1 GB scan
   * may take longer than data_timeout and still be healthy. */
  u->ops->set_timer(u->ctx, u->cfg->data_timeout_ms);
  u->ops->write(u->ctx, p, n);
  return request_end(u);
}

int upstream_end(upstream *u) {
  if (request_begin(u, UP_BODY) < 0)
    return STP_ESTATE;
  /* RFC 5321 4.5.3.2.6: 10 minutes for the reply to the final dot. */
  send_cmd(u, UP_DOT, u->cfg->data_timeout_ms, ".\r\n");
  return request_end(u);
}

int upstream_rset(upstream *u) {
  if (request_begin(u, UP_READY) < 0)
    return STP_ESTATE;
  send_cmd(u, UP_RSET, u->cfg->command_timeout_ms, "RSET\r\n");
  return request_end(u);
}

void upstream_quit(upstream *u) {
  if (request_begin(u, UP_READY) < 0)
    return;
  send_cmd(u, UP_QUIT, u->cfg->command_timeout_ms, "QUIT\r\n");
  request_end(u);
}

bool upstream_idle(const upstream *u) {
  return u->state == UP_READY;
}

bool upstream_in_txn(const upstream *u) {
  return u->in_txn;
}

bool upstream_has_device_credentials(const upstream *u) {
  return u->pt_secret != NULL;
}
