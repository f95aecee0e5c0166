/* probe.c - upstream probes (see probe.h).
 *
 * Callbacks rule: every outcome comes from the loop already (the timer,
 * upconn's owner callbacks, the token cache's waiter, the HTTP client's
 * done), so nothing here is called back from inside a call of ours. A
 * probe that is cancelled (reload, stop) hears nothing more: upconn is
 * detached, the token waiter withdrawn, the HTTP call cancelled.
 */
#include "probe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http_client.h"
#include "oauth2_net.h"
#include "smtp-tls-proxy/apimap.h"
#include "smtp-tls-proxy/apimsg.h"
#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/util.h"
#include "upconn.h"

#define PROBE_FIRST_MAX_MS UINT64_C(60000)

typedef struct probe_one {
  struct probe_one *next;
  srv_gen *gen;
  size_t index;
  uv_loop_t *loop;
  uv_timer_t timer;
  uint64_t t0;
  upconn *up;      /* SMTP probe in flight */
  tok_waiter tw;   /* API probe: waiting for the token */
  http_call *call; /* API probe: the GET */
  char *token;
  bool refreshed; /* a refused token was replaced once */
} probe_one;

struct probes {
  uv_loop_t *loop;
  probe_one *list;
};

static const stp_upstream_cfg *cfg_of(const probe_one *o) {
  return &o->gen->cfg->upstreams[o->index];
}

/* ---- the outcome ------------------------------------------------------------ */

static void timer_cb(uv_timer_t *t);

/* One "probe" line; the back-off is the live traffic's. */
static void finish(probe_one *o, bool ok, const char *reason, const char *reply, const char *hint) {
  const char *name = cfg_of(o)->name;
  backoff_state *b = &o->gen->limits.upstream[o->index];
  uint64_t now = stp_now_ms();
  char ms[24];
  snprintf(ms, sizeof ms, "%llu", (unsigned long long)(now - o->t0));
  if (ok)
    backoff_report_ready(b, name, "probe");
  stp_kv kv[] = {{"upstream", name},
                 {"result", ok ? "ok" : "failed"},
                 {"reason", ok ? NULL : reason},
                 {"reply", ok ? NULL : reply},
                 {"hint", ok ? NULL : hint},
                 {"duration_ms", ms}};
  stp_log_kv(ok ? STP_LOG_INFO : STP_LOG_WARN, "probe", "probe", kv, sizeof kv / sizeof *kv);
  /* As a live session's failure: a back-off that began is logged. */
  if (!ok && backoff_failed(b, now))
    backoff_report_started(name, reason, backoff_remaining(b, now), "probe");
  uv_timer_start(&o->timer, timer_cb, cfg_of(o)->probe_interval_ms, 0);
}

/* ---- SMTP: log in, QUIT ------------------------------------------------------ */

static void smtp_ready(void *owner, upconn *u) {
  probe_one *o = owner;
  o->up = NULL;
  upconn_detach(u, true); /* QUIT */
  finish(o, true, NULL, NULL, NULL);
}

static void smtp_reply_cb(void *owner, const smtp_reply *r) {
  (void)owner; /* no command is sent after ready */
  (void)r;
}

static void smtp_failed(void *owner, upstream_fail why, const char *detail,
                        const provider_verdict *v) {
  probe_one *o = owner;
  o->up = NULL;
  const provider_rule *row = v ? v->rule : NULL;
  finish(o, false, row ? row->reason : upstream_fail_name(why), row ? v->reply : detail,
         row ? row->hint : NULL);
}

static const upconn_owner_ops probe_ops = {smtp_ready, smtp_reply_cb, smtp_failed, NULL, NULL};

/* ---- API: the token, one authenticated GET ----------------------------------- */

static void api_get(probe_one *o);

static bool api_url(const probe_one *o, char *out, size_t cap) {
  const stp_upstream_cfg *c = cfg_of(o);
  char mb[1024];
  if (!apimsg_path_escape(c->mailbox ? c->mailbox : "me", mb, sizeof mb))
    return false;
  int n = c->kind == STP_UP_GMAIL
              ? snprintf(out, cap, "%s/gmail/v1/users/%s/profile", c->api_url, mb)
              : snprintf(out, cap, "%s/v1.0/users/%s?$select=id", c->api_url, mb);
  return n > 0 && (size_t)n < cap;
}

static void api_done_cb(void *arg, const http1_response *r, http_fail why, const char *err) {
  probe_one *o = arg;
  o->call = NULL;
  if (!r) {
    finish(o, false,
           why == HTTP_FAIL_TLS       ? "tls"
           : why == HTTP_FAIL_TIMEOUT ? "timeout"
                                      : "connect",
           err, NULL);
    return;
  }
  if (r->status == 200) {
    finish(o, true, NULL, NULL, NULL);
    return;
  }
  apimap_in in = {.kind = cfg_of(o)->kind,
                  .step = API_STEP_SEND,
                  .status = r->status,
                  .body = r->body,
                  .body_len = r->body_len,
                  .token_refreshed = o->refreshed,
                  .now_s = (int64_t)time(NULL)};
  apimap_out out;
  apimap_answer(&in, &out);
  if (out.action == APIMAP_REFRESH) {
    stp_kv kv[] = {{"upstream", cfg_of(o)->name}, {"code", out.api_code}};
    stp_log_kv(STP_LOG_WARN, "probe", "oauth2-token-refused", kv, 2);
    o->refreshed = true;
    tok_invalidate(cfg_of(o), o->token);
    stp_free_secret(o->token);
    o->token = NULL;
    api_get(o);
    return;
  }
  char reply[320];
  snprintf(reply, sizeof reply, "%d%s%s", r->status, out.api_code[0] ? " " : "", out.api_code);
  finish(o, false, out.reason, reply, out.hint);
}

static void api_send(probe_one *o) {
  char url[2048];
  if (!api_url(o, url, sizeof url)) {
    finish(o, false, "protocol", "the mailbox does not fit a URL", NULL);
    return;
  }
  size_t n = strlen(o->token) + 8;
  char *auth = stp_xmalloc(n);
  snprintf(auth, n, "Bearer %s", o->token);
  http1_header h[] = {{"Authorization", auth}, {"Accept", "application/json"}};
  http_req req = {.method = "GET",
                  .url = url,
                  .headers = h,
                  .n_headers = 2,
                  .tls = o->gen->up_tls[o->index],
                  .timeout_ms = cfg_of(o)->connect_timeout_ms + cfg_of(o)->command_timeout_ms};
  o->call = http_request(o->loop, NULL, &req, api_done_cb, o);
  stp_free_secret(auth);
}

static void token_cb(void *arg, const char *token, const char *err) {
  probe_one *o = arg;
  if (!token) {
    finish(o, false, "auth", err, NULL); /* oauth2-failed said why */
    return;
  }
  o->token = stp_xstrdup(token);
  api_send(o);
}

static void api_get(probe_one *o) {
  char *tok = NULL;
  if (tok_get(o->loop, cfg_of(o), &o->tw, token_cb, o, &tok) == 1) {
    o->token = tok;
    api_send(o);
  }
}

/* ---- scheduling ------------------------------------------------------------- */

static void timer_cb(uv_timer_t *t) {
  probe_one *o = t->data;
  const stp_upstream_cfg *c = cfg_of(o);
  o->t0 = stp_now_ms();
  o->refreshed = false;
  stp_free_secret(o->token);
  o->token = NULL;
  if (c->kind != STP_UP_SMTP)
    api_get(o);
  else
    o->up = upconn_open(o->loop, o->gen, o->index, &probe_ops, o, "probe");
}

static void closed_cb(uv_handle_t *h) {
  probe_one *o = h->data;
  srv_gen_unref(o->gen);
  free(o);
}

static void cancel(probe_one *o) {
  if (o->up)
    upconn_detach(o->up, false);
  o->up = NULL;
  tok_cancel(&o->tw);
  if (o->call)
    http_call_cancel(o->call);
  o->call = NULL;
  stp_free_secret(o->token);
  o->token = NULL;
  uv_close((uv_handle_t *)&o->timer, closed_cb);
}

static void cancel_all(probes *p) {
  while (p->list) {
    probe_one *o = p->list;
    p->list = o->next;
    cancel(o);
  }
}

/* The first probe: at a random moment between one and two times the
 * shorter of the interval and a minute. Not at once: a restart must not
 * log in to every provider in the same second, and the first minute
 * belongs to the devices (a proxy that just started has traffic to judge
 * its upstreams by). */
static uint64_t first_delay(uint64_t interval, size_t index) {
  uint64_t span = interval < PROBE_FIRST_MAX_MS ? interval : PROBE_FIRST_MAX_MS;
  uint64_t x = uv_hrtime() ^ ((uint64_t)index * UINT64_C(0x9E3779B97F4A7C15));
  x ^= x >> 33;
  x *= UINT64_C(0xff51afd7ed558ccd);
  x ^= x >> 33;
  return span + (span ? x % span : 0);
}

void probes_set_gen(probes *p, srv_gen *gen) {
  cancel_all(p);
  for (size_t i = 0; i < gen->cfg->n_upstreams; i++) {
    uint64_t every = gen->cfg->upstreams[i].probe_interval_ms;
    if (!every)
      continue;
    probe_one *o = stp_xcalloc(1, sizeof *o);
    o->gen = srv_gen_ref(gen);
    o->index = i;
    o->loop = p->loop;
    uv_timer_init(p->loop, &o->timer);
    o->timer.data = o;
    uv_timer_start(&o->timer, timer_cb, first_delay(every, i), 0);
    o->next = p->list;
    p->list = o;
  }
}

probes *probes_start(uv_loop_t *loop, srv_gen *gen) {
  probes *p = stp_xcalloc(1, sizeof *p);
  p->loop = loop;
  probes_set_gen(p, gen);
  return p;
}

void probes_stop(probes *p) {
  if (!p)
    return;
  cancel_all(p);
  free(p);
}
