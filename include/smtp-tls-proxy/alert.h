/* alert.h - which alerts to send, when, and what they say.
 *
 * Owns: the decision logic of `alerts:`: which log events and which health
 * changes (uphealth.h) are alerts, the one-line text and the JSON body of
 * each, the per (event, upstream) dedupe over min_interval, the
 * alert_after wait of upstream_down, and a bounded queue of decided
 * alerts. Guarantees: pure (time comes in as unix seconds on every call;
 * no I/O, no logging: a suppressed alert is handed out marked so, and the
 * caller logs it); bounded (ALERT_QUEUE decided alerts, ALERT_KEYS dedupe
 * keys; past them the oldest go); never a secret in a text (only upstream
 * names, reason words, the provider's words and hints, which the log shows
 * anyway).
 *
 * Events: credentials_refused (AUTH refused, invalid_grant, a token
 * refused after a fresh fetch: at once), upstream_down (failing for
 * alert_after) and upstream_recovered (after a down alert), spool_filling
 * (80% of max_messages or max_size; again only after dropping below 70%),
 * message_failed (a spooled message's failure notice: spool-failed,
 * spool-expired), refresh_token_expiring (a known refresh-token lifetime
 * with under two days left; once per token).
 */
#ifndef STP_ALERT_H
#define STP_ALERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtp-tls-proxy/config.h"
#include "smtp-tls-proxy/log.h"

typedef enum {
  ALERT_CREDENTIALS_REFUSED = 0,
  ALERT_UPSTREAM_DOWN,
  ALERT_UPSTREAM_RECOVERED,
  ALERT_SPOOL_FILLING,
  ALERT_MESSAGE_FAILED,
  ALERT_REFRESH_TOKEN_EXPIRING,
  ALERT_NEVENTS
} alert_event;

#define ALERT_QUEUE 16
#define ALERT_KEYS 256
#define ALERT_FILL_PCT 80
#define ALERT_FILL_REARM_PCT 70
#define ALERT_RT_WARN_S (2 * 86400)

typedef struct alert {
  alert_event event;
  bool suppressed;    /* within min_interval of the last one: log, do not send */
  int64_t time;       /* unix seconds */
  int64_t last_sent;  /* suppressed: when the one that counts went */
  char upstream[128]; /* "" when none (spool_filling) */
  char reason[256];   /* reason word and the provider's words */
  char hint[256];     /* what to do; "" when none */
  char text[768];     /* one human line */
} alert;

typedef struct alerter alerter;

/* host: the name the texts and the JSON give (the config's hostname). */
alerter *alerter_new(const stp_alerts_cfg *cfg, const char *host);
void alerter_free(alerter *a);
/* A reload: new intervals, state kept. */
void alerter_set_cfg(alerter *a, const stp_alerts_cfg *cfg, const char *host);

/* One log event (call after uphealth_observe saw it). */
void alerter_observe(alerter *a, int64_t now, const char *event, const stp_kv *kv, size_t n);

/* The spool's figures and limits (0 limits: no spool). */
typedef struct alert_spool {
  uint64_t messages, bytes, max_messages, max_size;
} alert_spool;
/* Time-driven checks: upstream_down after alert_after, recovered,
 * refresh_token_expiring, spool_filling. sp may be NULL. */
void alerter_tick(alerter *a, int64_t now, const alert_spool *sp);

/* The next decided alert, oldest first; false when none. */
bool alerter_next(alerter *a, alert *out);
/* Alerts lost because the queue was full. */
uint64_t alerter_dropped(const alerter *a);

const char *alert_event_name(alert_event e);
/* The webhook body: {"text","event","upstream","reason","hint","time",
 * "host"} (upstream and hint null when empty; time RFC 3339 UTC).
 * malloc'd, NUL-terminated. */
char *alert_json(const alert *al, const char *host);
/* "2026-12-06T21:40:00Z" into buf (21 bytes at least). */
void alert_time_text(int64_t t, char *buf, size_t cap);

#endif
