/* session_provider.c - a provider's refusal inside a transaction (MAIL,
 * RCPT, DATA, the final dot) turned into what the device and the admin
 * need: the class from the provider table (4xx when an admin can fix it,
 * so the device retries), and one log line "upstream-refused" with
 * reason=, the provider's own words and hint=.
 *
 * Owns nothing; builds on session_out.c for nothing but the session's
 * fields, and calls no other session file (no import circle).
 */
#include "session_provider.h"

#include <stdio.h>
#include <string.h>

#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/metrics.h"
#include "smtp-tls-proxy/provider.h"

static bool wait_phase(session_wait w, provider_phase *ph) {
  switch (w) {
  case W_MAIL:
    *ph = PROV_MAIL;
    return true;
  case W_RCPT:
    *ph = PROV_RCPT;
    return true;
  case W_DATA:
    *ph = PROV_DATA;
    return true;
  case W_DOT:
    *ph = PROV_DOT;
    return true;
  default:
    return false;
  }
}

static void log_refusal(session *s, const provider_verdict *v) {
  const provider_rule *row = v->rule;
  stp_kv kv[] = {{"upstream", s->up_name[0] ? s->up_name : "-"},
                 {"client", s->client_ip},
                 {"phase", provider_phase_name(v->phase)},
                 {"reason", row->reason},
                 {"provider", row->provider},
                 {"provider_reply", v->reply},
                 {"hint", row->hint}};
  stp_log_kv(STP_LOG_WARN, s->sid, "upstream-refused", kv, sizeof kv / sizeof *kv);
  metrics_upstream_failure(s->up_name, row->reason);
}

const smtp_reply *session_provider_reply(session *s, const smtp_reply *r, smtp_reply *mapped) {
  provider_phase ph;
  if (r->code < 400 || !wait_phase(s->wait, &ph))
    return r;
  provider_verdict v;
  provider_classify(&v, ph, r);
  if (!v.rule)
    return r; /* unknown: relayed as it is, as before */
  log_refusal(s, &v);
  char line[256];
  provider_device_reply(&v, line, sizeof line);
  memset(mapped, 0, sizeof *mapped);
  mapped->code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
  mapped->lines = 1;
  snprintf(mapped->text, sizeof mapped->text, "%.*s", (int)strcspn(line + 4, "\r\n"), line + 4);
  mapped->text_len = strlen(mapped->text);
  return mapped;
}
