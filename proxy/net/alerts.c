/* alerts.c - alerts on the loop (see alerts.h).
 *
 * Callbacks rule: the observer only feeds the alerter and posts a drain
 * (defer.h): it never logs from inside a log call, never sends. The drain,
 * the timer and the HTTP client's done callback run from the loop.
 */
#include "alerts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alert_mail.h"
#include "defer.h"
#include "http_client.h"
#include "smtp-tls-proxy/alert.h"
#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/util.h"
#include "spool.h"

typedef struct hook_item {
  char *body;
  alert_event event;
  char upstream[128];
  unsigned tries;
} hook_item;

struct alerts {
  uv_loop_t *loop;
  srv_gen *gen;
  alerter *al;
  tls_ctx *hook_tls;
  uv_timer_t tick;
  uv_timer_t retry;
  defer_item drain_ev;
  hook_item q[ALERTS_WEBHOOK_QUEUE];
  size_t head, len;
  http_call *call; /* the POST of q[head] in flight */
  bool waiting;    /* q[head] waits for the retry timer */
  alert_mail *mail;
  bool stopping;
  unsigned handles_open; /* timers still to close before the free */
};

static const stp_alerts_cfg *acfg(const alerts *a) {
  return a->gen->cfg->alerts;
}

/* ---- the webhook ------------------------------------------------------------ */

static void hook_kick(alerts *a);

static void hook_pop(alerts *a) {
  free(a->q[a->head].body);
  a->head = (a->head + 1) % ALERTS_WEBHOOK_QUEUE;
  a->len--;
}

static void hook_log(const hook_item *it, int level, const char *event, const char *detail,
                     const char *retry) {
  char tries[16];
  snprintf(tries, sizeof tries, "%u", it->tries);
  stp_kv kv[] = {{"alert", alert_event_name(it->event)},
                 {"upstream", it->upstream[0] ? it->upstream : NULL},
                 {"tries", tries},
                 {"detail", detail},
                 {"retry_in", retry}};
  stp_log_kv(level, "alert", event, kv, 5);
}

static void retry_cb(uv_timer_t *t) {
  alerts *a = t->data;
  a->waiting = false;
  hook_kick(a);
}

static void hook_done_cb(void *arg, const http1_response *r, http_fail why, const char *err) {
  alerts *a = arg;
  a->call = NULL;
  hook_item *it = &a->q[a->head];
  char detail[160];
  if (r && r->status >= 200 && r->status <= 299) {
    snprintf(detail, sizeof detail, "HTTP %d", r->status);
    hook_log(it, STP_LOG_INFO, "alert-webhook-sent", detail, NULL);
    hook_pop(a);
    hook_kick(a);
    return;
  }
  if (r)
    snprintf(detail, sizeof detail, "HTTP %d", r->status);
  else
    snprintf(detail, sizeof detail, "%s", err ? err : "failed");
  (void)why;
  if (it->tries >= ALERTS_WEBHOOK_TRIES) {
    hook_log(it, STP_LOG_ERROR, "alert-webhook-failed", detail, NULL);
    hook_pop(a);
    hook_kick(a);
    return;
  }
  uint64_t wait = (uint64_t)ALERTS_RETRY_BASE_MS << (it->tries - 1);
  char retry[24];
  snprintf(retry, sizeof retry, "%llus", (unsigned long long)(wait / 1000));
  hook_log(it, STP_LOG_WARN, "alert-webhook-failed", detail, retry);
  a->waiting = true;
  uv_timer_start(&a->retry, retry_cb, wait, 0);
}

static void hook_kick(alerts *a) {
  if (a->call || a->waiting || !a->len || a->stopping)
    return;
  const stp_alerts_cfg *c = acfg(a);
  hook_item *it = &a->q[a->head];
  if (!c || !c->webhook || !a->hook_tls) {
    hook_log(it, STP_LOG_WARN, "alert-webhook-failed", "no webhook configured any more", NULL);
    hook_pop(a);
    hook_kick(a);
    return;
  }
  it->tries++;
  http1_header h[] = {{"Content-Type", "application/json"}, {"User-Agent", "smtp-tls-proxy"}};
  http_req req = {.method = "POST",
                  .url = c->webhook,
                  .headers = h,
                  .n_headers = 2,
                  .body = it->body,
                  .body_len = strlen(it->body),
                  .tls = a->hook_tls,
                  .timeout_ms = 15000};
  a->call = http_request(a->loop, NULL, &req, hook_done_cb, a);
}

static void hook_queue(alerts *a, const alert *al) {
  if (a->len == ALERTS_WEBHOOK_QUEUE) {
    hook_item lost = {.event = al->event};
    snprintf(lost.upstream, sizeof lost.upstream, "%s", al->upstream);
    hook_log(&lost, STP_LOG_WARN, "alert-webhook-failed", "queue full: dropped", NULL);
    return;
  }
  hook_item *it = &a->q[(a->head + a->len++) % ALERTS_WEBHOOK_QUEUE];
  memset(it, 0, sizeof *it);
  it->body = alert_json(al, a->gen->cfg->hostname);
  it->event = al->event;
  snprintf(it->upstream, sizeof it->upstream, "%s", al->upstream);
  hook_kick(a);
}

/* ---- deciding and handing out --------------------------------------------------- */

static void drain(void *arg) {
  alerts *a = arg;
  alert al;
  while (alerter_next(a->al, &al)) {
    const stp_alerts_cfg *c = acfg(a);
    if (al.suppressed) {
      char last[32];
      alert_time_text(al.last_sent, last, sizeof last);
      stp_kv kv[] = {{"alert", alert_event_name(al.event)},
                     {"upstream", al.upstream[0] ? al.upstream : NULL},
                     {"reason", al.reason},
                     {"last_sent", last}};
      stp_log_kv(STP_LOG_INFO, "alert", "alert-suppressed", kv, 4);
      continue;
    }
    stp_kv kv[] = {{"alert", alert_event_name(al.event)},
                   {"upstream", al.upstream[0] ? al.upstream : NULL},
                   {"reason", al.reason},
                   {"hint", al.hint[0] ? al.hint : NULL},
                   {"text", al.text}};
    stp_log_kv(STP_LOG_WARN, "alert", "alert", kv, 5);
    if (!c)
      continue;
    if (c->webhook)
      hook_queue(a, &al);
    if (c->email)
      alert_mail_send(a->mail, a->gen, &al);
  }
}

static bool own_event(const char *event) {
  return !strncmp(event, "alert", 5);
}

static void observe(void *ctx, int level, const char *sid, const char *event, const stp_kv *kv,
                    size_t n) {
  alerts *a = ctx;
  (void)level;
  (void)sid;
  if (!event || own_event(event) || !acfg(a) || a->stopping)
    return;
  alerter_observe(a->al, (int64_t)time(NULL), event, kv, n);
  defer_post(a->loop, &a->drain_ev, drain, a);
}

static void tick_cb(uv_timer_t *t) {
  alerts *a = t->data;
  if (!acfg(a))
    return;
  const stp_spool_cfg *sc = a->gen->cfg->spool;
  alert_spool sp = {0};
  if (a->gen->spool && sc)
    sp = (alert_spool){spool_count(a->gen->spool), spool_bytes(a->gen->spool), sc->max_messages,
                       sc->max_size};
  alerter_tick(a->al, (int64_t)time(NULL), &sp);
  drain(a);
}

/* ---- lifetime ------------------------------------------------------------------ */

int alerts_set_gen(alerts *a, srv_gen *gen, char *err, size_t errlen) {
  const stp_alerts_cfg *c = gen->cfg->alerts;
  tls_ctx *tls = NULL;
  if (c && c->webhook) {
    tls = tls_ctx_client(c->ca_file, STP_TLS1_2, true, err, errlen);
    if (!tls)
      return -1;
  }
  if (a->call) { /* the old context goes: the POST in flight is tried again */
    http_call_cancel(a->call);
    a->call = NULL;
    a->q[a->head].tries--;
  }
  tls_ctx_free(a->hook_tls);
  a->hook_tls = tls;
  srv_gen *old = a->gen;
  a->gen = srv_gen_ref(gen);
  srv_gen_unref(old);
  alerter_set_cfg(a->al, c, gen->cfg->hostname);
  hook_kick(a);
  return 0;
}

alerts *alerts_start(uv_loop_t *loop, srv_gen *gen, char *err, size_t errlen) {
  alerts *a = stp_xcalloc(1, sizeof *a);
  a->loop = loop;
  a->al = alerter_new(gen->cfg->alerts, gen->cfg->hostname);
  a->gen = srv_gen_ref(gen);
  if (alerts_set_gen(a, gen, err, errlen) < 0) {
    srv_gen_unref(a->gen);
    alerter_free(a->al);
    free(a);
    return NULL;
  }
  a->mail = alert_mail_new(loop);
  uv_timer_init(loop, &a->tick);
  uv_timer_init(loop, &a->retry);
  a->tick.data = a->retry.data = a;
  uv_timer_start(&a->tick, tick_cb, 1000, 1000);
  stp_log_observe(observe, a);
  return a;
}

static void closed_cb(uv_handle_t *h) {
  alerts *a = h->data;
  if (--a->handles_open > 0)
    return;
  while (a->len)
    hook_pop(a);
  tls_ctx_free(a->hook_tls);
  srv_gen_unref(a->gen);
  alerter_free(a->al);
  free(a);
}

void alerts_stop(alerts *a) {
  if (!a)
    return;
  stp_log_unobserve(observe, a);
  defer_cancel(&a->drain_ev);
  a->stopping = true;
  a->handles_open = 2;
  if (a->call)
    http_call_cancel(a->call);
  a->call = NULL;
  alert_mail_free(a->mail);
  a->mail = NULL;
  uv_close((uv_handle_t *)&a->tick, closed_cb);
  uv_close((uv_handle_t *)&a->retry, closed_cb);
}
