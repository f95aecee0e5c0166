/* apievent.c - the lower layer of an API upstream (see apiconn.h): its
 * lifetime guard, the end of a transaction, the events owed to the upconn,
 * the transcript, and the access token. apiconn.c (the upconn's calls) and
 * apisend.c (the requests) both build on it; it calls neither.
 *
 * Callbacks rule: an answer found inside a request of the upconn's is
 * posted (api_post_reply) and delivered on the next turn; api_fail and
 * api_final_reply deliver at once and are only called from loop
 * callbacks. An event is the last thing a callback does, and apiconn_close
 * from inside one only marks the object: it goes at the outermost
 * api_leave.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apiconn_int.h"
#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/util.h"

/* ---- lifetime ----------------------------------------------------------------- */

static void retry_closed(uv_handle_t *h) {
  free(h);
}

void api_destroy(apiconn *a) {
  if (a->retry)
    uv_close((uv_handle_t *)a->retry, retry_closed);
  free(a->rcpt);
  srv_gen_unref(a->gen);
  free(a);
}

void api_enter(apiconn *a) {
  a->depth++;
}

/* False when the object is gone. */
bool api_leave(apiconn *a) {
  if (--a->depth == 0 && a->closed) {
    api_destroy(a);
    return false;
  }
  return true;
}

void api_txn_reset(apiconn *a) {
  for (size_t i = 0; i < a->nrcpt; i++)
    free(a->rcpt[i]);
  a->nrcpt = 0;
  a->from[0] = '\0';
  a->in_txn = false;
  a->too_big = false;
  a->size = 0;
  if (a->copy)
    msgcopy_free(a->copy, true); /* no callback follows; the file goes */
  a->copy = NULL;
  free(a->mime);
  a->mime = NULL;
  apimsg_info_free(&a->info);
  api_send_reset(a);
}

void api_send_reset(apiconn *a) {
  api_draft_delete(a); /* every way a send ends but the one that sent it */
  if (a->retry)
    uv_timer_stop(a->retry);
  a->retried = false;
  api_body_free(a->body);
  a->body = NULL;
  api_partstream_free(a->ps);
  a->ps = NULL;
  stp_buf_free(&a->bcc);
  free(a->json);
  a->json = NULL;
  if (a->text)
    stp_cleanse(a->text, a->text_len);
  free(a->text);
  a->text = NULL;
  a->text_len = 0;
  a->draft_id[0] = a->upload_url[0] = '\0';
  a->att = 0;
  a->up_off = 0;
  a->step = SEND_NONE;
  a->refreshed = false;
  a->n_attached = a->n_uploaded = 0;
}

/* ---- events ------------------------------------------------------------------- */

void api_deliver(apiconn *a) {
  int what = a->pending;
  a->pending = P_NONE;
  if (!a->ev)
    return;
  if (what == P_REPLY) {
    a->busy = false;
    a->ev->reply(a->up, &a->reply);
  } else if (what == P_FAILED) {
    a->state = AC_DEAD;
    a->ev->failed(a->up, a->why, a->detail);
  } else if (what == P_READY) {
    a->ev->ready(a->up);
  }
}

static void ev_cb(void *arg) {
  apiconn *a = arg;
  api_enter(a);
  api_deliver(a);
  api_leave(a);
}

static void set_reply(apiconn *a, int code, const char *text) {
  memset(&a->reply, 0, sizeof a->reply);
  a->reply.code = code;
  snprintf(a->reply.text, sizeof a->reply.text, "%s", text);
  a->reply.text_len = strlen(a->reply.text);
  a->reply.lines = 1;
}

/* A request's answer, known at once: from the loop. */
void api_post_reply(apiconn *a, int code, const char *text) {
  set_reply(a, code, text);
  a->pending = P_REPLY;
  a->busy = true;
  defer_post(a->loop, &a->ev_item, ev_cb, a);
}

static void set_failure(apiconn *a, upstream_fail why, const char *detail) {
  a->why = why;
  snprintf(a->detail, sizeof a->detail, "%s", detail);
  a->pending = P_FAILED;
}

void api_fail(apiconn *a, upstream_fail why, const char *detail) {
  set_failure(a, why, detail);
  api_deliver(a); /* from a loop callback: at once */
}

void api_final_reply(apiconn *a, int code, const char *text) {
  api_txn_reset(a);
  a->state = AC_READY;
  set_reply(a, code, text);
  a->pending = P_REPLY;
  api_deliver(a);
}

void api_trace(apiconn *a, bool out, const char *fmt, ...) {
  if (!a->ev || !a->ev->trace)
    return;
  char line[2200];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line - 2, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  size_t len = (size_t)n < sizeof line - 2 ? (size_t)n : sizeof line - 3;
  memcpy(line + len, "\r\n", 2);
  a->ev->trace(a->up, out, line, len + 2);
}

/* ---- the token and the first connection ------------------------------------------ */

static void token_cb(void *arg, const char *token, const char *err) {
  apiconn *a = arg;
  api_enter(a);
  if (!token) {
    char d[600];
    snprintf(d, sizeof d, "no OAuth2 access token: %s", err);
    api_fail(a, UP_FAIL_AUTH, d);
  } else {
    stp_free_secret(a->token);
    a->token = stp_xstrdup(token);
    a->tok_then(a);
  }
  api_leave(a);
}

void api_need_token(apiconn *a, void (*then)(apiconn *a)) {
  char *token;
  a->tok_then = then;
  if (tok_get(a->loop, a->cfg, &a->tw, token_cb, a, &token) == 1) {
    stp_free_secret(a->token);
    a->token = token;
    then(a); /* cached: we are in a loop callback already */
  }
}
