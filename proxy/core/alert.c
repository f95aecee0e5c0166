/* alert.c - alert decisions, texts and JSON (see alert.h).
 *
 * The health-driven alerts read uphealth.h after each event (the log
 * observers run in registration order, uphealth's first), so an upstream's
 * state has one source; the spool's failure notices come from the
 * spool-failed and spool-expired events themselves.
 */
#include "smtp-tls-proxy/alert.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "smtp-tls-proxy/json.h"
#include "smtp-tls-proxy/uphealth.h"
#include "smtp-tls-proxy/util.h"

typedef struct up_track {
  char name[128];
  uint64_t serial_seen; /* uphealth failure_serial already looked at */
  int64_t down_alerted; /* down_since of the run a down alert went for; 0: none */
  int64_t rt_alerted;   /* refresh_token_expiry already warned about */
  bool used;
} up_track;

typedef struct dedupe {
  alert_event event;
  char upstream[128];
  int64_t last; /* when one last went; 0: never */
} dedupe;

struct alerter {
  uint64_t min_interval_s, alert_after_s;
  char host[256];
  alert q[ALERT_QUEUE];
  size_t head, len;
  uint64_t dropped;
  dedupe keys[ALERT_KEYS];
  size_t n_keys;
  up_track ups[ALERT_KEYS];
  bool spool_full; /* above ALERT_FILL_PCT, not yet back below the re-arm mark */
};

const char *alert_event_name(alert_event e) {
  static const char *const n[] = {"credentials_refused", "upstream_down",
                                  "upstream_recovered",  "spool_filling",
                                  "message_failed",      "refresh_token_expiring"};
  return (unsigned)e < ALERT_NEVENTS ? n[e] : "?";
}

void alerter_set_cfg(alerter *a, const stp_alerts_cfg *cfg, const char *host) {
  a->min_interval_s = cfg ? cfg->min_interval_ms / 1000 : 3600;
  a->alert_after_s = cfg ? cfg->alert_after_ms / 1000 : 300;
  snprintf(a->host, sizeof a->host, "%s", host ? host : "smtp-tls-proxy");
}

alerter *alerter_new(const stp_alerts_cfg *cfg, const char *host) {
  alerter *a = stp_xcalloc(1, sizeof *a);
  alerter_set_cfg(a, cfg, host);
  return a;
}

void alerter_free(alerter *a) {
  free(a);
}

uint64_t alerter_dropped(const alerter *a) {
  return a->dropped;
}

bool alerter_next(alerter *a, alert *out) {
  if (!a->len)
    return false;
  *out = a->q[a->head];
  a->head = (a->head + 1) % ALERT_QUEUE;
  a->len--;
  return true;
}

/* ---- deciding ---------------------------------------------------------------- */

static dedupe *key_for(alerter *a, alert_event e, const char *up) {
  size_t oldest = 0;
  for (size_t i = 0; i < a->n_keys; i++) {
    if (a->keys[i].event == e && !strcmp(a->keys[i].upstream, up))
      return &a->keys[i];
    if (a->keys[i].last < a->keys[oldest].last)
      oldest = i;
  }
  dedupe *d = a->n_keys < ALERT_KEYS ? &a->keys[a->n_keys++] : &a->keys[oldest];
  memset(d, 0, sizeof *d);
  d->event = e;
  snprintf(d->upstream, sizeof d->upstream, "%s", up);
  return d;
}

/* Queue one alert, marked suppressed when the same event for the same
 * upstream went less than min_interval ago. Returns whether it will go. */
static bool decide(alerter *a, int64_t now, alert_event e, const char *up, const char *reason,
                   const char *hint, const char *text) {
  dedupe *d = key_for(a, e, up ? up : "");
  alert *al;
  if (a->len == ALERT_QUEUE) {
    a->head = (a->head + 1) % ALERT_QUEUE; /* the oldest goes */
    a->len--;
    a->dropped++;
  }
  al = &a->q[(a->head + a->len++) % ALERT_QUEUE];
  memset(al, 0, sizeof *al);
  al->event = e;
  al->time = now;
  al->suppressed = d->last && now - d->last < (int64_t)a->min_interval_s;
  al->last_sent = d->last;
  if (!al->suppressed)
    d->last = now;
  snprintf(al->upstream, sizeof al->upstream, "%s", up ? up : "");
  snprintf(al->reason, sizeof al->reason, "%s", reason ? reason : "");
  snprintf(al->hint, sizeof al->hint, "%s", hint ? hint : "");
  snprintf(al->text, sizeof al->text, "%s: %s", a->host, text);
  return !al->suppressed;
}

static up_track *track(alerter *a, const char *name) {
  up_track *free_slot = NULL;
  for (size_t i = 0; i < ALERT_KEYS; i++) {
    if (a->ups[i].used && !strcmp(a->ups[i].name, name))
      return &a->ups[i];
    if (!a->ups[i].used && !free_slot)
      free_slot = &a->ups[i];
  }
  if (!free_slot)
    free_slot = &a->ups[0]; /* more upstreams than slots: reuse (bounded) */
  memset(free_slot, 0, sizeof *free_slot);
  free_slot->used = true;
  snprintf(free_slot->name, sizeof free_slot->name, "%s", name);
  return free_slot;
}

static void duration_text(int64_t s, char *buf, size_t cap) {
  if (s < 0)
    s = 0;
  if (s >= 86400)
    snprintf(buf, cap, "%lldd %lldh", (long long)(s / 86400), (long long)(s % 86400 / 3600));
  else if (s >= 3600)
    snprintf(buf, cap, "%lldh %lldm", (long long)(s / 3600), (long long)(s % 3600 / 60));
  else if (s >= 60)
    snprintf(buf, cap, "%lldm", (long long)(s / 60));
  else
    snprintf(buf, cap, "%llds", (long long)s);
}

static void with_hint(char *buf, size_t cap, const char *hint) {
  size_t n = strlen(buf);
  if (hint && hint[0] && n < cap)
    snprintf(buf + n, cap - n, ". Fix: %s", hint);
}

/* A new failure that refused our credentials: at once. */
static void check_credentials(alerter *a, int64_t now, const char *name, const uph_status *st,
                              up_track *t) {
  bool fresh = st->failure_serial != t->serial_seen;
  t->serial_seen = st->failure_serial;
  if (!fresh || !st->credentials_refused || st->state != UPH_DOWN)
    return;
  char text[768];
  snprintf(text, sizeof text, "upstream %s refused the proxy's credentials (%s)", name,
           st->last_error);
  with_hint(text, sizeof text, st->hint);
  decide(a, now, ALERT_CREDENTIALS_REFUSED, name, st->last_error, st->hint, text);
}

static void check_down_up(alerter *a, int64_t now, const char *name, const uph_status *st,
                          up_track *t) {
  char text[768], dur[32];
  if (st->state == UPH_DOWN && st->down_since && t->down_alerted != st->down_since &&
      now - st->down_since >= (int64_t)a->alert_after_s) {
    t->down_alerted = st->down_since;
    duration_text(now - st->down_since, dur, sizeof dur);
    snprintf(text, sizeof text, "upstream %s has been failing for %s (%s)", name, dur,
             st->last_error);
    with_hint(text, sizeof text, st->hint);
    if (!decide(a, now, ALERT_UPSTREAM_DOWN, name, st->last_error, st->hint, text))
      t->down_alerted = -st->down_since; /* suppressed: no recovery alert for it */
  } else if (st->state == UPH_UP && t->down_alerted) {
    bool sent = t->down_alerted > 0;
    int64_t since = sent ? t->down_alerted : -t->down_alerted;
    t->down_alerted = 0;
    if (!sent)
      return;
    duration_text(st->last_success - since, dur, sizeof dur);
    snprintf(text, sizeof text, "upstream %s works again (it was failing for %s)", name, dur);
    decide(a, now, ALERT_UPSTREAM_RECOVERED, name, "recovered", NULL, text);
  }
}

static void check_refresh_token(alerter *a, int64_t now, const char *name, const uph_status *st,
                                up_track *t) {
  int64_t exp = st->refresh_token_expiry;
  if (!exp || exp == t->rt_alerted || exp - now >= ALERT_RT_WARN_S)
    return;
  t->rt_alerted = exp;
  char text[768], dur[32], when[32], hint[256];
  duration_text(exp - now, dur, sizeof dur);
  alert_time_text(exp, when, sizeof when);
  snprintf(hint, sizeof hint, "sign in again: smtp-tls-proxy -c CONFIG oauth2 login %s", name);
  snprintf(text, sizeof text, "the refresh token of upstream %s expires %s %s (%s)", name,
           exp > now ? "in" : "already, since", dur, when);
  with_hint(text, sizeof text, hint);
  decide(a, now, ALERT_REFRESH_TOKEN_EXPIRING, name, "refresh-token-expiring", hint, text);
}

static void check_upstream(alerter *a, int64_t now, const char *name) {
  uph_status st;
  if (!name || uphealth_get(name, &st) < 0)
    return;
  up_track *t = track(a, name);
  check_credentials(a, now, name, &st, t);
  check_down_up(a, now, name, &st, t);
  check_refresh_token(a, now, name, &st, t);
}

static void message_failed(alerter *a, int64_t now, const char *event, const stp_kv *kv, size_t n) {
  const char *id = stp_kv_get(kv, n, "id"), *up = stp_kv_get(kv, n, "upstream");
  const char *reply = stp_kv_get(kv, n, "reply");
  bool expired = !strcmp(event, "spool-expired");
  char text[768], reason[256];
  snprintf(reason, sizeof reason, "%s%s%s", expired ? "expired" : "refused",
           reply && reply[0] ? ": " : "", reply ? reply : "");
  snprintf(text, sizeof text, "spooled message %s %s%s%s: %s; a failure notice was sent",
           id ? id : "?", expired ? "expired undelivered" : "was refused",
           up && up[0] ? " by upstream " : "", up ? up : "", reply && reply[0] ? reply : "-");
  decide(a, now, ALERT_MESSAGE_FAILED, up, reason,
         expired ? "the upstream stayed unreachable for the spool's max_age: see the upstream's "
                   "alerts and last error"
                 : "the upstream refused the message for good (5xx): see the reply",
         text);
}

void alerter_observe(alerter *a, int64_t now, const char *event, const stp_kv *kv, size_t n) {
  if (!event)
    return;
  if (!strcmp(event, "spool-failed") || !strcmp(event, "spool-expired")) {
    message_failed(a, now, event, kv, n);
    return;
  }
  check_upstream(a, now, stp_kv_get(kv, n, "upstream"));
}

static void check_spool(alerter *a, int64_t now, const alert_spool *sp) {
  if (!sp || (!sp->max_messages && !sp->max_size))
    return;
  uint64_t pm = sp->max_messages ? sp->messages * 100 / sp->max_messages : 0;
  uint64_t pb = sp->max_size ? sp->bytes / (sp->max_size / 100 ? sp->max_size / 100 : 1) : 0;
  uint64_t pct = pm > pb ? pm : pb;
  if (a->spool_full) {
    if (pct < ALERT_FILL_REARM_PCT)
      a->spool_full = false;
    return;
  }
  if (pct < ALERT_FILL_PCT)
    return;
  a->spool_full = true;
  char text[768], reason[64];
  snprintf(reason, sizeof reason, "spool %llu%% full", (unsigned long long)pct);
  snprintf(text, sizeof text,
           "the spool is %llu%% full (%llu of %llu messages, %llu of %llu bytes); at 100%% "
           "devices get 452",
           (unsigned long long)pct, (unsigned long long)sp->messages,
           (unsigned long long)sp->max_messages, (unsigned long long)sp->bytes,
           (unsigned long long)sp->max_size);
  decide(a, now, ALERT_SPOOL_FILLING, NULL, reason,
         "see why the upstreams fail (the upstream alerts, `queue list`); raise max_size or "
         "max_messages only with the disk to match",
         text);
}

void alerter_tick(alerter *a, int64_t now, const alert_spool *sp) {
  for (size_t i = 0; i < uphealth_count(); i++)
    check_upstream(a, now, uphealth_name(i));
  check_spool(a, now, sp);
}

/* ---- text and JSON ----------------------------------------------------------- */

void alert_time_text(int64_t t, char *buf, size_t cap) {
  time_t tt = (time_t)t;
  struct tm tm;
  if (!gmtime_r(&tt, &tm) || !strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm))
    snprintf(buf, cap, "%lld", (long long)t);
}

static json_t *str_or_null(const char *s) {
  return s && s[0] ? json_string(s) : json_null();
}

char *alert_json(const alert *al, const char *host) {
  stp_json_init();
  char when[32];
  alert_time_text(al->time, when, sizeof when);
  json_t *o = json_object();
  json_object_set_new(o, "text", json_string(al->text));
  json_object_set_new(o, "event", json_string(alert_event_name(al->event)));
  json_object_set_new(o, "upstream", str_or_null(al->upstream));
  json_object_set_new(o, "reason", json_string(al->reason));
  json_object_set_new(o, "hint", str_or_null(al->hint));
  json_object_set_new(o, "time", json_string(when));
  json_object_set_new(o, "host", json_string(host ? host : ""));
  size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII;
  size_t need = json_dumpb(o, NULL, 0, flags);
  char *out = stp_xmalloc(need + 1);
  json_dumpb(o, out, need, flags);
  out[need] = '\0';
  json_decref(o);
  return out;
}
