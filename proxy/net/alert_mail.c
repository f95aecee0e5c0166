/* alert_mail.c - alert emails through the routes (see alert_mail.h).
 *
 * Callbacks rule: the next message starts from the loop (defer.h), never
 * from inside alert_mail_send or an upconn callback's caller chain.
 */
#include "alert_mail.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "defer.h"
#include "smtp-tls-proxy/data.h"
#include "smtp-tls-proxy/failover.h"
#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/rewrite.h"
#include "smtp-tls-proxy/route.h"
#include "smtp-tls-proxy/util.h"
#include "upconn.h"

typedef enum { AM_OPEN, AM_MAIL, AM_RCPT, AM_DATA, AM_DOT } am_step;

typedef struct am_item {
  srv_gen *gen;
  alert al;
} am_item;

struct alert_mail {
  uv_loop_t *loop;
  am_item q[ALERT_MAIL_QUEUE];
  size_t head, len;
  bool busy; /* q[head] is in flight */
  failover fo;
  long route;
  upconn *up;
  am_step step;
  defer_item next_ev;
};

static void start_next(void *arg);

static void log_result(const am_item *it, const char *event, const char *detail) {
  stp_kv kv[] = {{"alert", alert_event_name(it->al.event)},
                 {"upstream", it->al.upstream[0] ? it->al.upstream : NULL},
                 {"to", it->gen->cfg->alerts ? it->gen->cfg->alerts->email : NULL},
                 {"detail", detail}};
  stp_log_kv(strcmp(event, "alert-email-sent") ? STP_LOG_WARN : STP_LOG_INFO, "alert", event, kv,
             4);
}

static void done(alert_mail *m, bool ok, const char *detail) {
  am_item *it = &m->q[m->head];
  log_result(it, ok ? "alert-email-sent" : "alert-email-failed", detail);
  if (m->up)
    upconn_detach(m->up, true);
  m->up = NULL;
  srv_gen_unref(it->gen);
  m->head = (m->head + 1) % ALERT_MAIL_QUEUE;
  m->len--;
  m->busy = false;
  if (m->len)
    defer_post(m->loop, &m->next_ev, start_next, m);
}

static void emit(void *ctx, const char *p, size_t n) {
  alert_mail *m = ctx;
  upconn_body(m->up, p, n);
}

/* Control characters (a provider's CR or LF) become spaces: each value
 * stays on its line of the message. */
static void clean(char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f)
      *s = ' ';
}

static void send_body(alert_mail *m) {
  am_item *it = &m->q[m->head];
  clean(it->al.text);
  clean(it->al.reason);
  clean(it->al.hint);
  clean(it->al.upstream);
  const stp_config *cfg = it->gen->cfg;
  const stp_route_cfg *rt = &cfg->routes[m->route];
  char msg[4096], date[64];
  time_t now = time(NULL);
  struct tm tm;
  strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", gmtime_r(&now, &tm));
  char when[32];
  alert_time_text(it->al.time, when, sizeof when);
  int n = snprintf(msg, sizeof msg,
                   "From: smtp-tls-proxy <postmaster@%s>\r\nTo: <%s>\r\n"
                   "Subject: [smtp-tls-proxy] %s%s%s\r\nDate: %s\r\n"
                   "Message-ID: <%lld.%d.alert@%s>\r\nAuto-Submitted: auto-generated\r\n"
                   "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
                   "%s\r\n\r\nevent: %s\r\nupstream: %s\r\nreason: %s\r\nhint: %s\r\n"
                   "time: %s\r\nhost: %s\r\n",
                   cfg->hostname, cfg->alerts->email, alert_event_name(it->al.event),
                   it->al.upstream[0] ? " " : "", it->al.upstream, date, (long long)now,
                   (int)getpid(), cfg->hostname, it->al.text, alert_event_name(it->al.event),
                   it->al.upstream[0] ? it->al.upstream : "-", it->al.reason,
                   it->al.hint[0] ? it->al.hint : "-", when, cfg->hostname);
  if (n < 0 || (size_t)n >= sizeof msg)
    n = (int)strlen(msg);
  /* Provider words may hold a bare CR or LF: the text goes through the
   * same framing as a device's message, dot-stuffed, header rewrite too. */
  rewrite_ctx rw;
  if (rt->rewrite_header_from &&
      rewrite_init(&rw, rt->rewrite_header_from, REWRITE_DEFAULT_MAX) == 0) {
    rewrite_feed(&rw, msg, (size_t)n, emit, m);
    rewrite_finish(&rw, emit, m);
    rewrite_free(&rw);
  } else {
    data_stuff_block(msg, (size_t)n, emit, m);
  }
  m->step = AM_DOT;
  upconn_end(m->up);
}

static void on_ready(void *owner, upconn *u) {
  alert_mail *m = owner;
  (void)u;
  const stp_route_cfg *rt = &m->q[m->head].gen->cfg->routes[m->route];
  backoff_report_ready(&m->q[m->head].gen->limits.upstream[failover_current(&m->fo)],
                       upconn_cfg(u)->name, "alert");
  m->step = AM_MAIL;
  upconn_mail(m->up, rt->rewrite_mail_from ? rt->rewrite_mail_from : "", NULL);
}

static void on_reply(void *owner, const smtp_reply *r) {
  alert_mail *m = owner;
  char detail[320];
  snprintf(detail, sizeof detail, "%d %.300s", r->code, r->text);
  detail[strcspn(detail, "\r\n")] = '\0';
  bool ok = r->code / 100 == 2;
  switch (m->step) {
  case AM_MAIL:
    if (ok) {
      m->step = AM_RCPT;
      upconn_rcpt(m->up, m->q[m->head].gen->cfg->alerts->email, NULL);
      return;
    }
    break;
  case AM_RCPT:
    if (ok) {
      m->step = AM_DATA;
      upconn_data(m->up);
      return;
    }
    break;
  case AM_DATA:
    if (r->code == 354) {
      send_body(m);
      return;
    }
    break;
  case AM_DOT:
    done(m, ok, detail);
    return;
  default:
    return;
  }
  done(m, false, detail);
}

static void try_upstream(alert_mail *m);

static void on_failed(void *owner, upstream_fail why, const char *detail,
                      const provider_verdict *v) {
  alert_mail *m = owner;
  srv_gen *gen = m->q[m->head].gen;
  const stp_upstream_cfg *c = &gen->cfg->upstreams[failover_current(&m->fo)];
  m->up = NULL;
  upconn_log_failed("alert", NULL, c, why, detail, v);
  uint64_t skip_ms;
  bool more = failover_failed(&m->fo, gen->limits.upstream, upstream_fail_name(why),
                              m->step == AM_OPEN, true, stp_now_ms(), &skip_ms);
  backoff_report_started(c->name, upstream_fail_name(why), skip_ms, "alert");
  if (more) {
    try_upstream(m);
    return;
  }
  done(m, false, detail);
}

static const upconn_owner_ops am_ops = {on_ready, on_reply, on_failed, NULL, NULL};

static void try_upstream(alert_mail *m) {
  srv_gen *gen = m->q[m->head].gen;
  long pick = failover_pick(&m->fo, gen->limits.upstream, stp_now_ms());
  if (pick < 0) {
    char why[320];
    snprintf(why, sizeof why, "every upstream of the route backs off (%s)", m->fo.skipped);
    done(m, false, why);
    return;
  }
  m->step = AM_OPEN;
  m->up = upconn_open(m->loop, gen, (size_t)pick, &am_ops, m, "alert");
}

static void start_next(void *arg) {
  alert_mail *m = arg;
  if (m->busy || !m->len)
    return;
  m->busy = true;
  srv_gen *gen = m->q[m->head].gen;
  const char *to = gen->cfg->alerts ? gen->cfg->alerts->email : NULL;
  route_input in = {NULL, NULL, NULL, "", to ? to : "", 0};
  m->route = to ? route_match(gen->cfg, &in) : -1;
  if (m->route < 0) {
    done(m, false, "no route takes mail to the alert address");
    return;
  }
  failover_begin(&m->fo, gen->cfg, (size_t)m->route);
  try_upstream(m);
}

alert_mail *alert_mail_new(uv_loop_t *loop) {
  alert_mail *m = stp_xcalloc(1, sizeof *m);
  m->loop = loop;
  return m;
}

void alert_mail_send(alert_mail *m, srv_gen *gen, const alert *al) {
  if (m->len == ALERT_MAIL_QUEUE) {
    am_item lost = {gen, *al};
    log_result(&lost, "alert-email-failed", "the alert mail queue is full");
    return;
  }
  am_item *it = &m->q[(m->head + m->len++) % ALERT_MAIL_QUEUE];
  it->gen = srv_gen_ref(gen);
  it->al = *al;
  if (!m->busy)
    defer_post(m->loop, &m->next_ev, start_next, m);
}

void alert_mail_free(alert_mail *m) {
  if (!m)
    return;
  defer_cancel(&m->next_ev);
  if (m->up)
    upconn_detach(m->up, false);
  for (size_t i = 0; i < m->len; i++)
    srv_gen_unref(m->q[(m->head + i) % ALERT_MAIL_QUEUE].gen);
  free(m);
}
