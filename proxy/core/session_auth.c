/* session_auth.c - AUTH from LAN devices (listener auth: any | users |
 * passthrough), on top of the SASL exchange in lanauth.c.
 *
 * Owns: the decision on a device's credentials and everything logged about
 * it. Guarantees: passwords are never logged and are wiped as soon as the
 * decision is made (a passthrough password lives in pt_secret until the
 * session ends or AUTH fails); users' hashes are compared in constant time,
 * and an unknown user name costs the same check as the costliest
 * configured hash (its result ignored), so timing does not tell which
 * names exist; failures close the session after three and are
 * limited per client address across sessions (limits.c).
 */
#include <stdio.h>
#include <string.h>

#include "session_auth.h"

#include "session_out.h"
#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/metrics.h"
#include "smtp-tls-proxy/route.h"

static void log_auth(session *s, const char *result, const char *reason) {
  const char *mode = s->lcfg->auth == STP_LAUTH_ANY     ? "any"
                     : s->lcfg->auth == STP_LAUTH_USERS ? "users"
                                                        : "passthrough";
  stp_kv kv[] = {{"client", s->client_ip},
                 {"user", s->auth.user_len ? s->auth.user : "-"},
                 {"mode", mode},
                 {"result", result},
                 {"reason", reason}};
  stp_log_kv(STP_LOG_INFO, s->sid, "auth", kv, 5);
}

void session_auth_forget(session *s) {
  lanauth_reset(&s->auth);
  stp_free_secret(s->pt_secret);
  s->pt_secret = NULL;
}

void session_auth_accept(session *s) {
  s->authenticated = true;
  snprintf(s->auth_user, sizeof s->auth_user, "%s", s->auth.user);
  log_auth(s, "ok", NULL);
  lanauth_reset(&s->auth);
  session_out_reply(s, "235 2.7.0 Authentication successful\r\n");
}

void session_auth_refuse(session *s, const char *line, const char *reason) {
  log_auth(s, "failed", reason);
  session_auth_forget(s);
  session_out_reply(s, line);
  if (s->limits)
    limits_auth_failed(s->limits, session_out_listener_index(s), s->client_ip, stp_now_ms());
  /* Guessing passwords costs a connection every few tries. */
  if (++s->auth_failures >= SESSION_MAX_AUTH_FAILURES) {
    session_out_reply(s, "421 4.7.0 Too many authentication failures, closing connection\r\n");
    session_out_up_drop(s, false);
    session_out_close(s);
  }
}

static const stp_user *find_user(const stp_listener_cfg *l, const char *name) {
  for (size_t i = 0; i < l->n_users; i++)
    if (!strcmp(l->users[i].name, name))
      return &l->users[i];
  return NULL;
}

/* An unknown name is checked like a known one, against the costliest
 * configured hash, and refused whatever the result (auth_user_known). A
 * listener built without stp_config_load may lack the precomputed pick. */
static const char *unknown_user_hash(const stp_listener_cfg *l) {
  if (l->unknown_user_hash)
    return l->unknown_user_hash;
  return l->n_users ? l->users[0].hash : "$6$nouser$";
}

/* passthrough: the device's credentials are checked by the upstream that
 * its mail will use, before any MAIL, so a wrong password is a 535 here. */
static void auth_passthrough(session *s) {
  route_input in = {s->lcfg->name, (const struct sockaddr *)&s->peer, s->auth.user, NULL, NULL, 1};
  long rt = route_match(s->cfg, &in);
  if (rt < 0) {
    session_auth_refuse(s, "535 5.7.8 No route for this user\r\n", "no-route");
    return;
  }
  s->pt_secret = stp_xstrndup(s->auth.pass, s->auth.pass_len);
  snprintf(s->auth_user, sizeof s->auth_user, "%s", s->auth.user);
  session_out_up_drop(s, true);
  s->route = rt;
  session_out_wait_for(s, W_AUTH);
  s->ops->up_open(s->ctx, (size_t)rt);
}

static void auth_done(session *s) {
  switch (s->lcfg->auth) {
  case STP_LAUTH_ANY:
    session_auth_accept(s);
    return;
  case STP_LAUTH_USERS: {
    const stp_user *u = find_user(s->lcfg, s->auth.user);
    const char *hash = u ? u->hash : unknown_user_hash(s->lcfg);
    s->auth_user_known = u != NULL;
    if (s->ops->check_password) {
      session_out_wait_for(s, W_HASH);
      s->ops->check_password(s->ctx, hash, s->auth.pass);
      return;
    }
    session_auth_hash_result(s, lanauth_check_hash(hash, s->auth.pass));
    return;
  }
  case STP_LAUTH_PASSTHROUGH:
    auth_passthrough(s);
    return;
  default:
    session_auth_refuse(s, "503 5.5.1 Error: authentication not enabled\r\n", "disabled");
    return;
  }
}

static void auth_result(session *s, la_result r) {
  if (r == LA_REPLY) {
    s->in_auth = true;
    session_out_reply(s, s->auth.reply);
    return;
  }
  s->in_auth = false;
  if (r == LA_DONE) {
    auth_done(s);
    return;
  }
  session_auth_refuse(s, s->auth.reply, s->auth.reason);
}

void session_auth_cmd(session *s, const smtp_cmd *c) {
  if (s->lcfg->auth == STP_LAUTH_NONE) {
    session_out_reply(s, "503 5.5.1 Error: authentication not enabled\r\n");
    return;
  }
  if (s->authenticated) {
    session_out_reply(s, "503 5.5.1 Error: already authenticated\r\n");
    return;
  }
  if (s->have_mail) {
    session_out_reply(s, "503 5.5.1 Error: AUTH not allowed during a mail transaction\r\n");
    return;
  }
  uint64_t wait_ms = s->limits ? limits_auth_blocked(s->limits, session_out_listener_index(s),
                                                     s->client_ip, stp_now_ms())
                               : 0;
  if (wait_ms) {
    session_out_replyf(
        s, "454 4.7.0 Too many authentication failures from %s, try again in %llu s\r\n",
        s->client_ip, (unsigned long long)((wait_ms + 999) / 1000));
    stp_kv kv[] = {{"scope", "auth"}, {"name", s->lcfg->name}, {"client", s->client_ip}};
    stp_log_kv(STP_LOG_WARN, s->sid, "rate-limited", kv, 3);
    metrics_rate_limited("auth", s->lcfg->name);
    return;
  }
  auth_result(s, lanauth_start(&s->auth, c->arg, c->arg_len));
}

void session_auth_hash_result(session *s, bool ok) {
  if (ok && s->auth_user_known)
    session_auth_accept(s);
  else
    session_auth_refuse(s, "535 5.7.8 Authentication credentials invalid\r\n", "credentials");
}

void session_auth_line(session *s, const char *line, size_t len) {
  auth_result(s, lanauth_step(&s->auth, line, len));
}

/* The upstream that was to check passthrough credentials failed: its 535
 * is the device's, anything else is a temporary failure. */
void session_auth_upstream_failed(session *s, upstream_fail why) {
  if (why == UP_FAIL_AUTH) {
    session_auth_refuse(
        s, "535 5.7.8 Authentication credentials invalid (refused by the upstream)\r\n",
        "upstream");
    return;
  }
  log_auth(s, "deferred", upstream_fail_name(why));
  session_auth_forget(s);
  session_out_reply(s, session_fail_reply(why));
}
