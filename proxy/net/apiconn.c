/* apiconn.c - an HTTP mail API upstream: the calls upconn makes of it,
 * reaching the API before ready, the SMTP transaction and the copy of the
 * message (see apiconn.h). The requests that send a message are in
 * apisend.c, the events, the lifetime guard and the token in apievent.c.
 *
 * Callbacks rule: what a request of the upconn's finds at once (MAIL, RCPT,
 * DATA and RSET answers, a refused passthrough) is posted and delivered on
 * the next turn; everything else comes from the loop already (the token
 * cache, the HTTP client, the copy's thread-pool jobs), each callback
 * wrapped in api_enter/api_leave so that apiconn_close from inside one
 * never frees the object under our feet.
 */
#include "apiconn_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/session.h"
#include "smtp-tls-proxy/util.h"

#define SESSION_RCPT_CAP SESSION_MAX_RCPT /* the session never sends more */

/* ---- where copies live ------------------------------------------------------ */

static char g_tmpdir[512];
static bool g_tmp_private;
static unsigned long g_seq;

void apiconn_set_tmpdir(const char *dir) {
  snprintf(g_tmpdir, sizeof g_tmpdir, "%s", dir ? dir : "");
  g_tmp_private = false;
}

static void remove_private_dir(void) {
  if (g_tmp_private)
    rmdir(g_tmpdir); /* empty by then: every copy is unlinked when done */
}

/* The first message makes the private directory (a mkdtemp on the loop,
 * once per process). */
static const char *tmpdir(void) {
  if (g_tmpdir[0])
    return g_tmpdir;
  const char *base = getenv("TMPDIR");
  snprintf(g_tmpdir, sizeof g_tmpdir, "%s/smtp-tls-proxy-api.XXXXXX",
           base && *base ? base : "/tmp");
  if (!mkdtemp(g_tmpdir)) { /* 0700 */
    g_tmpdir[0] = '\0';
    return NULL;
  }
  g_tmp_private = true;
  atexit(remove_private_dir);
  return g_tmpdir;
}

void apiconn_close(apiconn *a) {
  if (!a || a->closed)
    return;
  a->closed = true;
  a->ev = NULL;
  defer_cancel(&a->ev_item);
  tok_cancel(&a->tw);
  http_call_cancel(a->call);
  a->call = NULL;
  api_txn_reset(a);
  http_client_free(a->http);
  stp_free_secret(a->token);
  a->token = NULL;
  if (a->depth == 0)
    api_destroy(a);
}

static void probe_cb(void *arg, const http1_response *r, http_fail why, const char *err) {
  apiconn *a = arg;
  (void)r;
  a->call = NULL;
  api_enter(a);
  if (why != HTTP_OK) {
    static const upstream_fail map[] = {
        [HTTP_FAIL_REQUEST] = UP_FAIL_PROTOCOL, [HTTP_FAIL_DNS] = UP_FAIL_DNS,
        [HTTP_FAIL_CONNECT] = UP_FAIL_CONNECT,  [HTTP_FAIL_TLS] = UP_FAIL_TLS,
        [HTTP_FAIL_CLOSED] = UP_FAIL_CLOSED,    [HTTP_FAIL_PROTOCOL] = UP_FAIL_PROTOCOL,
        [HTTP_FAIL_TOO_BIG] = UP_FAIL_PROTOCOL, [HTTP_FAIL_TIMEOUT] = UP_FAIL_TIMEOUT,
        [HTTP_FAIL_BODY] = UP_FAIL_PROTOCOL};
    api_fail(a, map[why], err);
  } else {
    a->state = AC_READY;
    stp_kv kv[] = {{"upstream", a->cfg->name}, {"api", a->cfg->api_url}};
    stp_log_kv(STP_LOG_DEBUG, a->sid, "upstream-ready", kv, 2);
    a->pending = P_READY;
    api_deliver(a);
  }
  api_leave(a);
}

/* Reach the API's origin (TLS verified) before saying ready. */
static void probe(apiconn *a) {
  a->state = AC_PROBE;
  api_trace(a, true, "CONNECT %s (TLS verified, token at hand)", a->cfg->api_url);
  a->call = http_preconnect(a->loop, a->http, a->cfg->api_url, a->gen->up_tls[a->index],
                            a->cfg->connect_timeout_ms, probe_cb, a);
}

static void refuse_ev_cb(void *arg) {
  apiconn *a = arg;
  api_enter(a);
  api_fail(a, UP_FAIL_AUTH,
           "auth: passthrough cannot authenticate to an HTTP API upstream (it takes the "
           "configured OAuth2 token only)");
  api_leave(a);
}

void apiconn_refuse_credentials(apiconn *a) {
  a->refuse_creds = true;
  tok_cancel(&a->tw);
  http_call_cancel(a->call);
  a->call = NULL;
  defer_post(a->loop, &a->ev_item, refuse_ev_cb, a);
}

apiconn *apiconn_open(uv_loop_t *loop, srv_gen *gen, size_t index, const apiconn_events *ev,
                      void *up, const char *sid) {
  apiconn *a = stp_xcalloc(1, sizeof *a);
  a->ev = ev;
  a->up = up;
  a->loop = loop;
  a->gen = srv_gen_ref(gen);
  a->index = index;
  a->cfg = &gen->cfg->upstreams[index];
  snprintf(a->sid, sizeof a->sid, "%s", sid ? sid : "");
  a->http = http_client_new(loop);
  a->rcpt = stp_xcalloc(SESSION_RCPT_CAP, sizeof *a->rcpt);
  apimsg_info_init(&a->info);
  a->state = AC_TOKEN;
  /* A token first (cached, or a fetch shared with other connections);
   * nothing here calls the upconn back but the trace observer. */
  api_need_token(a, probe);
  return a;
}

/* ---- the transaction ---------------------------------------------------------------- */

static bool can_request(const apiconn *a) {
  return a->ev && a->state == AC_READY && !a->busy;
}

int apiconn_mail(apiconn *a, const char *from, const smtp_mail_args *args) {
  if (!can_request(a) || a->in_txn)
    return STP_ESTATE;
  snprintf(a->from, sizeof a->from, "%s", from);
  a->in_txn = true;
  if (a->cfg->kind == STP_UP_GMAIL && args && args->has_size && args->size > APIMSG_GMAIL_MAX) {
    a->in_txn = false;
    api_post_reply(a, 552, "5.3.4 Message too big for the Gmail API (at most 35 MiB)");
    return 0;
  }
  api_post_reply(a, 250, "2.1.0 Ok");
  return 0;
}

int apiconn_rcpt(apiconn *a, const char *to) {
  if (!can_request(a) || !a->in_txn)
    return STP_ESTATE;
  if (a->nrcpt == SESSION_RCPT_CAP) {
    api_post_reply(a, 452, "4.5.3 Too many recipients");
    return 0;
  }
  a->rcpt[a->nrcpt++] = stp_xstrdup(to);
  api_post_reply(a, 250, "2.1.5 Ok");
  return 0;
}

static void copy_drain_cb(void *owner) {
  apiconn *a = owner;
  api_enter(a);
  if (a->ev && a->ev->drain)
    a->ev->drain(a->up);
  api_leave(a);
}

int apiconn_data(apiconn *a) {
  if (!can_request(a) || !a->in_txn || !a->nrcpt)
    return STP_ESTATE;
  const char *dir = tmpdir();
  if (!dir) {
    stp_logf(STP_LOG_ERROR, a->sid, "cannot make a directory for message copies: %s",
             strerror(errno));
    api_post_reply(a, 451, "4.3.0 Local error: no room for the message copy, try again later");
    return 0;
  }
  snprintf(a->path, sizeof a->path, "%s/api-%ld-%lu.msg", dir, (long)getpid(), ++g_seq);
  a->copy = msgcopy_create(a->loop, a->path, copy_drain_cb, a);
  a->mime = stp_xmalloc(sizeof *a->mime);
  mime_reader_init(a->mime, apimsg_on_mime, &a->info);
  a->unstuff = (apimsg_unstuff){0};
  a->size = 0;
  a->state = AC_BODY;
  api_post_reply(a, 354, "Go ahead");
  return 0;
}

int apiconn_body(apiconn *a, const char *p, size_t n) {
  if (!a->ev || a->state != AC_BODY)
    return STP_ESTATE;
  char buf[16384];
  while (n) {
    size_t take = n < sizeof buf ? n : sizeof buf;
    size_t m = apimsg_unstuff_feed(&a->unstuff, p, take, buf);
    msgcopy_append(a->copy, buf, m);
    mime_feed(a->mime, buf, m);
    a->size += m;
    p += take;
    n -= take;
  }
  stp_cleanse(buf, sizeof buf);
  return 0;
}

static void flushed_cb(void *arg, int err) {
  apiconn *a = arg;
  api_enter(a);
  if (err) {
    char d[800];
    snprintf(d, sizeof d, "%s: %s", a->path, strerror(-err));
    stp_kv kv[] = {{"upstream", a->cfg->name}, {"detail", d}};
    stp_log_kv(STP_LOG_ERROR, a->sid, "api-copy-failed", kv, 2);
    api_final_reply(a, 451, "4.3.0 Local error keeping the message, try again later");
  } else {
    api_send_start(a);
  }
  api_leave(a);
}

int apiconn_end(apiconn *a) {
  if (!a->ev || a->state != AC_BODY)
    return STP_ESTATE;
  mime_finish(a->mime);
  free(a->mime); /* what the APIs need is in a->info now */
  a->mime = NULL;
  a->state = AC_SENDING;
  a->busy = true;
  a->t0 = stp_now_ms();
  msgcopy_flush(a->copy, flushed_cb, a); /* from the loop */
  return 0;
}

int apiconn_rset(apiconn *a) {
  if (!can_request(a))
    return STP_ESTATE;
  api_txn_reset(a);
  api_post_reply(a, 250, "2.0.0 Ok");
  return 0;
}

bool apiconn_idle(const apiconn *a) {
  return can_request(a) && !a->pending;
}

bool apiconn_in_txn(const apiconn *a) {
  return a->in_txn;
}

size_t apiconn_queued(const apiconn *a) {
  size_t q = a->copy ? msgcopy_queued(a->copy) : 0;
  /* The relay stops at STREAM_HIGH_WATER and waits for drain; the copy
   * drains only after it went over its own (higher) mark. */
  return q > MSGCOPY_HIGH_WATER ? q : 0;
}

const char *apiconn_state_name(const apiconn *a) {
  static const char *const names[] = {"token", "connecting", "ready", "body", "sending", "dead"};
  return names[a->state];
}
