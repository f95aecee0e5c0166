/* apisend.c - sending a message that is on disk through its API (see
 * apiconn.h): the choice of the way, the requests and their answers.
 *
 * Gmail: one media upload, the copy with a Bcc field in front.
 * Graph, raw MIME under the 4 MB request limit: sendMail with the same
 * bytes in base64. Graph with save_to_sent_items: false: sendMail with a
 * JSON message (Graph honours saveToSentItems only there) if it fits.
 * Graph otherwise: a draft, each attachment posted whole (under the limit)
 * or through an upload session in 3.75 MiB chunks, then send.
 * Every request body is streamed from the copy (apibody.h); an answer goes
 * through apimap.h, read as it streams (a bounded prefix kept, the one
 * member a step needs picked from the rest: Graph echoes megabytes); a 401
 * gets one fresh token and the same request again; a temporary answer
 * (eventual consistency, an expired upload URL, 409/412/423) one more try
 * after a pause; a draft left by any failure is deleted (apidraft.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "apiconn_int.h"
#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/util.h"

#define BCC_MAX ((SMTP_ADDR_MAX + 4) * 1000)  /* a Bcc field for every recipient taken */
#define STREAM_TIMEOUT_MS (24u * 3600 * 1000) /* bodies: bounded by the stall time instead */
/* sendMail's JSON ends so; Graph's default is to keep a copy. */
static const char *json_tail(const apiconn *a) {
  return a->cfg->save_to_sent_items ? "]},\"saveToSentItems\":true}"
                                    : "]},\"saveToSentItems\":false}";
}

static void run_step(apiconn *a);

/* "Bearer <token>", malloc'd: a token may be up to 8 KiB. Wiped by the
 * caller (bearer_free). */
static char *bearer(const apiconn *a) {
  size_t n = strlen(a->token ? a->token : "") + 8;
  char *s = stp_xmalloc(n);
  snprintf(s, n, "Bearer %s", a->token ? a->token : "");
  return s;
}

static void bearer_free(char *s) {
  stp_free_secret(s);
}

/* ---- URLs ------------------------------------------------------------------- */

static bool url_for(apiconn *a, char *out, size_t cap, const char *fmt_after_mailbox,
                    const char *id) {
  char mb[1024], eid[1024];
  if (!apimsg_path_escape(a->cfg->mailbox, mb, sizeof mb) ||
      !apimsg_path_escape(id ? id : "", eid, sizeof eid))
    return false;
  bool gmail = a->cfg->kind == STP_UP_GMAIL;
  const char *seg[] = {a->cfg->api_url, gmail ? "/upload/gmail/v1/users/" : "/v1.0/users/", mb,
                       gmail ? "/messages/send?uploadType=media" : fmt_after_mailbox,
                       gmail ? "" : eid};
  size_t o = 0;
  for (size_t i = 0; i < sizeof seg / sizeof *seg; i++) {
    size_t len = strlen(seg[i]);
    if (o + len >= cap)
      return false;
    memcpy(out + o, seg[i], len);
    o += len;
  }
  out[o] = '\0';
  return true;
}

/* ---- recording what happened --------------------------------------------------- */

/* 429 and 5xx: the upstream is skipped for what Retry-After asked, or the
 * usual back-off without one (failover.h then passes it over). */
static void hold_upstream(apiconn *a, uint64_t retry_ms) {
  backoff_state *b = &a->gen->limits.upstream[a->index];
  uint64_t now = stp_now_ms();
  if (retry_ms) {
    if (!backoff_active(b, now))
      b->failures++;
    if (b->until_ms < now + retry_ms)
      b->until_ms = now + retry_ms;
  } else {
    backoff_failed(b, now);
  }
  char ms[24];
  snprintf(ms, sizeof ms, "%llu", (unsigned long long)backoff_remaining(b, now));
  stp_kv kv[] = {{"upstream", a->cfg->name}, {"reason", "api-deferred"}, {"skip_ms", ms}};
  stp_log_kv(STP_LOG_WARN, a->sid, "upstream-backoff", kv, 3);
}

static void finish(apiconn *a, const apimap_out *o) {
  char size[24], ms[24], st[8];
  snprintf(size, sizeof size, "%llu", (unsigned long long)a->size);
  snprintf(ms, sizeof ms, "%llu", (unsigned long long)(stp_now_ms() - a->t0));
  snprintf(st, sizeof st, "%d", o->code);
  if (o->action == APIMAP_SENT) {
    char att[16];
    snprintf(att, sizeof att, "%u", a->n_attached + a->n_uploaded);
    stp_kv kv[] = {{"upstream", a->cfg->name},
                   {"api", a->how},
                   {"size", size},
                   {"attachments", att},
                   {"id", o->id},
                   {"ms", ms},
                   {"conn", a->sid}};
    /* A pooled connection serves other sessions than the one that opened
     * it (conn=): the session's own "message" line has the reply. */
    stp_log_kv(STP_LOG_INFO, NULL, "api-sent", kv, 7);
    a->draft_id[0] = '\0'; /* sent: it is the message now, never deleted */
  } else {
    stp_kv kv[] = {
        {"upstream", a->cfg->name}, {"api", a->how},   {"reply", st},  {"reason", o->reason},
        {"code", o->api_code},      {"hint", o->hint}, {"size", size}, {"conn", a->sid}};
    stp_log_kv(STP_LOG_WARN, NULL, o->action == APIMAP_FAIL ? "api-refused" : "api-deferred", kv,
               8);
  } /* a draft left is deleted at the reset (apidraft.c) */
  api_final_reply(a, o->code, o->text);
}

/* Our own trouble with an answer (no id, a bad upload URL): 451. */
static void unexpected(apiconn *a, const char *what) {
  apimap_out o = {.action = APIMAP_DEFER, .code = 451, .reason = "api-unexpected"};
  snprintf(o.text, sizeof o.text, "4.3.0 Unexpected answer from the mail API (%s), try again later",
           what);
  finish(a, &o);
}

/* ---- requests ---------------------------------------------------------------------- */

static api_step api_step_of(send_step s) {
  switch (s) {
  case SEND_DRAFT:
    return API_STEP_DRAFT;
  case SEND_ATTACH:
  case SEND_SESSION:
    return API_STEP_ATTACH;
  case SEND_UPLOAD:
    return API_STEP_UPLOAD;
  case SEND_SEND_DRAFT:
    return API_STEP_SEND_DRAFT;
  default:
    return API_STEP_SEND;
  }
}

static void done_cb(void *arg, const http1_response *r, http_fail why, const char *err);

/* Answers: Graph's 201 for a draft echoes the whole message, for an
 * attachment its contentBytes (megabytes). The first ANSWER_KEEP bytes
 * are kept (an error's JSON, an upload's nextExpectedRanges); past them
 * the body is read and dropped, up to ANSWER_SKIP_MAX bytes (bounded in
 * time by the call's timeouts), while apimsg_scan picks the one member a
 * step needs ("id", "uploadUrl") from the whole stream. */
#define ANSWER_KEEP (32 * 1024)
#define ANSWER_SKIP_MAX (256u * 1024 * 1024)

static void scan_tap(void *arg, const char *p, size_t n) {
  apiconn *a = arg;
  if (a->scan.key[0])
    apimsg_scan_feed(&a->scan, p, n);
}

/* One request; the body (may be NULL) is streamed. */
static void issue(apiconn *a, const char *method, const char *url, const char *ctype,
                  const char *range, bool streamed) {
  http1_header h[3];
  size_t nh = 0;
  char *auth = NULL;
  if (a->step != SEND_UPLOAD) { /* the upload URL carries its own authorisation */
    auth = bearer(a);
    h[nh++] = (http1_header){"Authorization", auth};
  }
  if (ctype)
    h[nh++] = (http1_header){"Content-Type", ctype};
  if (range)
    h[nh++] = (http1_header){"Content-Range", range};
  http_req req = {.method = method,
                  .url = url,
                  .headers = h,
                  .n_headers = nh,
                  .tls = a->gen->up_tls[a->index],
                  .body_keep = ANSWER_KEEP,
                  .skip_max = ANSWER_SKIP_MAX,
                  .tap = scan_tap,
                  .tap_arg = a,
                  .keep_alive = true};
  apimsg_scan_init(&a->scan, a->step == SEND_DRAFT     ? "id"
                             : a->step == SEND_SESSION ? "uploadUrl"
                                                       : "");
  req.timeout_ms = streamed ? STREAM_TIMEOUT_MS : a->cfg->command_timeout_ms;
  req.stall_ms = a->cfg->data_timeout_ms;
  uint64_t size = 0;
  if (a->body) {
    size = api_body_size(a->body);
    req.body_fn = api_body_read;
    req.body_arg = a->body;
    req.body_size = size;
  }
  api_trace(a, true, "%s %s (%s%s%s%llu bytes%s)", method, url, ctype ? "Content-Type: " : "",
            ctype ? ctype : "", ctype ? ", " : "", (unsigned long long)size,
            nh && h[0].name[0] == 'A' ? ", Authorization: Bearer <redacted>" : "");
  a->call = http_request(a->loop, a->http, &req, done_cb, a);
  if (a->body)
    api_body_set_call(a->body, a->call);
  bearer_free(auth);
}

static void new_body(apiconn *a) {
  api_body_free(a->body);
  a->body = api_body_new(a->loop, a->path);
}

static void req_gmail(apiconn *a) {
  char url[2048];
  url_for(a, url, sizeof url, "", NULL);
  new_body(a);
  api_body_lit(a->body, a->bcc.data, a->bcc.len, 0);
  api_body_raw(a->body, 0, a->size, 0);
  issue(a, "POST", url, "message/rfc822", NULL, true);
}

static void req_mime(apiconn *a) {
  char url[2048];
  url_for(a, url, sizeof url, "/sendMail", NULL);
  new_body(a);
  api_body_lit(a->body, a->bcc.data, a->bcc.len, 1); /* one base64 run: the field and the copy */
  api_body_raw(a->body, 0, a->size, 1);
  issue(a, "POST", url, "text/plain", NULL, true);
}

static const char *const *rcpts(const apiconn *a) {
  return (const char *const *)a->rcpt;
}

static void req_json(apiconn *a) {
  char url[2048];
  a->n_attached = 0; /* counted again when the request is tried once more */
  url_for(a, url, sizeof url, "/sendMail", NULL);
  new_body(a);
  api_body_lit(a->body, a->json, strlen(a->json), 0);
  int group = 0;
  for (size_t i = 0; i < a->info.nparts; i++) {
    if (!apimsg_is_attachment(&a->info, i, a->body_part))
      continue;
    char *head = apimsg_graph_attachment_head(&a->info, i);
    if (group)
      api_body_lit(a->body, ",", 1, 0);
    api_body_lit(a->body, head, strlen(head), 0);
    api_body_whole_part(a->body, &a->info.parts[i], ++group);
    api_body_lit(a->body, APIMSG_ATTACH_TAIL, strlen(APIMSG_ATTACH_TAIL), 0);
    free(head);
    a->n_attached++;
  }
  api_body_lit(a->body, json_tail(a), strlen(json_tail(a)), 0);
  issue(a, "POST", url, "application/json", NULL, true);
}

static void req_draft(apiconn *a) {
  char url[2048];
  url_for(a, url, sizeof url, "/messages", NULL);
  new_body(a);
  api_body_lit(a->body, a->json, strlen(a->json), 0);
  issue(a, "POST", url, "application/json", NULL, false);
}

static void req_attach(apiconn *a) {
  char url[2048];
  url_for(a, url, sizeof url, "/messages/", a->draft_id);
  strncat(url, "/attachments", sizeof url - strlen(url) - 1);
  new_body(a);
  char *head = apimsg_graph_attachment_head(&a->info, a->att);
  api_body_lit(a->body, head, strlen(head), 0);
  api_body_whole_part(a->body, &a->info.parts[a->att], 1);
  api_body_lit(a->body, APIMSG_ATTACH_TAIL, strlen(APIMSG_ATTACH_TAIL), 0);
  free(head);
  issue(a, "POST", url, "application/json", NULL, true);
}

static void req_session(apiconn *a) {
  char url[2048];
  url_for(a, url, sizeof url, "/messages/", a->draft_id);
  strncat(url, "/attachments/createUploadSession", sizeof url - strlen(url) - 1);
  new_body(a);
  char *item = apimsg_graph_upload_session(&a->info, a->att);
  api_body_lit(a->body, item, strlen(item), 0);
  free(item);
  issue(a, "POST", url, "application/json", NULL, false);
}

static void req_upload(apiconn *a) {
  const apimsg_part *p = &a->info.parts[a->att];
  uint64_t len = p->size - a->up_off;
  if (len > APIMSG_UPLOAD_CHUNK)
    len = APIMSG_UPLOAD_CHUNK;
  char range[96];
  snprintf(range, sizeof range, "bytes %llu-%llu/%llu", (unsigned long long)a->up_off,
           (unsigned long long)(a->up_off + len - 1), (unsigned long long)p->size);
  new_body(a);
  api_body_part(a->body, a->ps, len, 0);
  issue(a, "PUT", a->upload_url, "application/octet-stream", range, true);
}

static void req_send_draft(apiconn *a) {
  char url[2048];
  url_for(a, url, sizeof url, "/messages/", a->draft_id);
  strncat(url, "/send", sizeof url - strlen(url) - 1);
  api_body_free(a->body);
  a->body = NULL;
  issue(a, "POST", url, NULL, NULL, false);
}

static void run_step(apiconn *a) {
  switch (a->step) {
  case SEND_GMAIL:
    req_gmail(a);
    break;
  case SEND_MIME:
    req_mime(a);
    break;
  case SEND_JSON:
    req_json(a);
    break;
  case SEND_DRAFT:
    req_draft(a);
    break;
  case SEND_ATTACH:
    req_attach(a);
    break;
  case SEND_SESSION:
    req_session(a);
    break;
  case SEND_UPLOAD:
    req_upload(a);
    break;
  case SEND_SEND_DRAFT:
    req_send_draft(a);
    break;
  default:
    break;
  }
}

/* ---- the draft's attachments --------------------------------------------------------- */

/* The request an attachment posted whole would make. */
static uint64_t attach_request_size(apiconn *a, size_t i) {
  char *head = apimsg_graph_attachment_head(&a->info, i);
  uint64_t n = strlen(head) + apimsg_b64_len(a->info.parts[i].size) + 2;
  free(head);
  return n;
}

static void next_attachment(apiconn *a) {
  while (a->att < a->info.nparts && !apimsg_is_attachment(&a->info, a->att, a->body_part))
    a->att++;
  if (a->att == a->info.nparts) {
    a->step = SEND_SEND_DRAFT;
  } else if (attach_request_size(a, a->att) <= APIMSG_GRAPH_REQUEST_MAX) {
    a->step = SEND_ATTACH;
  } else {
    a->step = SEND_SESSION;
  }
  run_step(a);
}

/* An answer of an intermediate step: on to the next. */
static void advance(apiconn *a, const http1_response *r) {
  switch (a->step) {
  case SEND_DRAFT:
    if (!a->scan.found || strlen(a->scan.value) >= sizeof a->draft_id) {
      unexpected(a, "a draft without an id");
      return;
    }
    memcpy(a->draft_id, a->scan.value, strlen(a->scan.value) + 1); /* length checked above */
    a->att = 0;
    next_attachment(a);
    return;
  case SEND_ATTACH:
    a->n_attached++;
    a->att++;
    next_attachment(a);
    return;
  case SEND_SESSION: {
    stp_url u;
    if (a->scan.found && strlen(a->scan.value) < sizeof a->upload_url)
      memcpy(a->upload_url, a->scan.value, strlen(a->scan.value) + 1);
    else
      a->upload_url[0] = '\0';
    if (!a->upload_url[0] || stp_url_parse(a->upload_url, &u) != STP_OK ||
        (!u.https && a->cfg->tls != STP_TLS_NONE)) {
      unexpected(a, "no usable uploadUrl");
      return;
    }
    api_partstream_free(a->ps);
    a->ps = api_partstream_new(a->loop, a->path, &a->info.parts[a->att]);
    a->up_off = 0;
    a->step = SEND_UPLOAD;
    run_step(a);
    return;
  }
  case SEND_UPLOAD: {
    const apimsg_part *p = &a->info.parts[a->att];
    uint64_t len =
        p->size - a->up_off < APIMSG_UPLOAD_CHUNK ? p->size - a->up_off : APIMSG_UPLOAD_CHUNK;
    a->up_off += len;
    if (a->up_off >= p->size) {
      a->n_uploaded++;
      api_partstream_free(a->ps);
      a->ps = NULL;
      a->att++;
      next_attachment(a);
      return;
    }
    uint64_t next;
    if (!apimsg_next_range(r->body, r->body_len, &next) || next != a->up_off) {
      unexpected(a, "the upload is out of step");
      return;
    }
    run_step(a);
    return;
  }
  default:
    unexpected(a, "a 2xx that sends nothing");
    return;
  }
}

/* ---- answers ------------------------------------------------------------------------ */

static const char *header(const http1_response *r, const char *name, char *buf, size_t cap) {
  size_t len;
  const char *v = http1_response_header(r, name, &len);
  if (!v)
    return NULL;
  apimap_clean(v, len, buf, cap);
  return buf;
}

/* ---- temporary failures: one more try after a pause ----------------------------------- */

#define RETRY_PAUSE_MS 1500 /* Graph's replicas catch up within about a second */

static void retry_fire(uv_timer_t *t) {
  apiconn *a = t->data;
  api_enter(a);
  if (a->step == SEND_UPLOAD) { /* an expired upload URL: a new session, from byte 0 */
    api_partstream_free(a->ps);
    a->ps = NULL;
    a->up_off = 0;
    a->step = SEND_SESSION;
  }
  api_need_token(a, run_step);
  api_leave(a);
}

/* A temporary answer (apimap's `retry`): the step once more, once per
 * message. False when that try was had already. */
static bool retry_later(apiconn *a, const apimap_out *o) {
  if (!o->retry || a->retried)
    return false;
  a->retried = true;
  if (!a->retry) {
    a->retry = stp_xmalloc(sizeof *a->retry);
    uv_timer_init(a->loop, a->retry);
  }
  a->retry->data = a;
  uv_timer_start(a->retry, retry_fire, RETRY_PAUSE_MS, 0);
  char st[8];
  snprintf(st, sizeof st, "%d", o->code);
  stp_kv kv[] = {{"upstream", a->cfg->name}, {"api", a->how}, {"reason", o->reason},
                 {"code", o->api_code},      {"reply", st},   {"conn", a->sid}};
  stp_log_kv(STP_LOG_INFO, NULL, "api-retry", kv, 6);
  return true;
}

static void answer(apiconn *a, const http1_response *r) {
  char rid[160], ra[64];
  apimap_in in = {.kind = a->cfg->kind,
                  .step = api_step_of(a->step),
                  .status = r->status,
                  .body = r->body,
                  .body_len = r->body_len,
                  .request_id = header(r, "request-id", rid, sizeof rid),
                  .retry_after = header(r, "Retry-After", ra, sizeof ra),
                  .token_refreshed = a->refreshed || a->step == SEND_UPLOAD,
                  .now_s = (int64_t)time(NULL)};
  apimap_out o;
  apimap_answer(&in, &o);
  api_trace(a, false, "HTTP %d%s%s%s%s", r->status, in.request_id ? " request-id: " : "",
            in.request_id ? in.request_id : "", o.api_code[0] ? " error: " : "", o.api_code);
  switch (o.action) {
  case APIMAP_REFRESH: {
    /* The token expired early or was revoked: once, a new one. */
    stp_kv kv[] = {{"upstream", a->cfg->name}, {"code", o.api_code}};
    stp_log_kv(STP_LOG_WARN, a->sid, "oauth2-token-refused", kv, 2);
    a->refreshed = true;
    tok_invalidate(a->cfg, a->token);
    api_need_token(a, run_step);
    return;
  }
  case APIMAP_NEXT:
    advance(a, r);
    return;
  case APIMAP_DEFER:
    if (retry_later(a, &o))
      return;
    /* The API is overloaded or rate-limits us (Gmail says so with 403):
     * new messages go elsewhere, or get 4xx at once, until it may help. */
    if (r->status == 429 || r->status >= 500 || o.retry_ms || !strcmp(o.reason, "throttled") ||
        !strcmp(o.reason, "quota"))
      hold_upstream(a, o.retry_ms);
    finish(a, &o);
    return;
  default:
    finish(a, &o);
    return;
  }
}

static void done_cb(void *arg, const http1_response *r, http_fail why, const char *err) {
  apiconn *a = arg;
  a->call = NULL;
  api_enter(a);
  int body_err = a->body ? api_body_error(a->body) : 0;
  api_body_free(a->body);
  a->body = NULL;
  if (r) {
    answer(a, r);
  } else if (why == HTTP_FAIL_BODY || body_err) {
    stp_kv kv[] = {{"upstream", a->cfg->name}, {"path", a->path}};
    stp_log_kv(STP_LOG_ERROR, a->sid, "api-copy-unreadable", kv, 2);
    api_final_reply(a, 451, "4.3.0 Local error reading the message copy, try again later");
  } else {
    static const upstream_fail map[] = {
        [HTTP_FAIL_REQUEST] = UP_FAIL_PROTOCOL, [HTTP_FAIL_DNS] = UP_FAIL_DNS,
        [HTTP_FAIL_CONNECT] = UP_FAIL_CONNECT,  [HTTP_FAIL_TLS] = UP_FAIL_TLS,
        [HTTP_FAIL_CLOSED] = UP_FAIL_CLOSED,    [HTTP_FAIL_PROTOCOL] = UP_FAIL_PROTOCOL,
        [HTTP_FAIL_TOO_BIG] = UP_FAIL_PROTOCOL, [HTTP_FAIL_TIMEOUT] = UP_FAIL_TIMEOUT,
        [HTTP_FAIL_BODY] = UP_FAIL_PROTOCOL};
    api_draft_delete(a);
    api_fail(a, map[why], err);
  }
  api_leave(a);
}

/* ---- the way: chosen once the copy is on disk ---------------------------------------- */

static void text_pull(void *arg);

/* Graph: the body text (decoded, UTF-8) of the part chosen as the body. */
static void read_text(apiconn *a, void (*then)(apiconn *a)) {
  bool html;
  a->body_part = apimsg_body_part(&a->info, &html);
  a->html = html;
  a->text_then = then;
  if (a->body_part < 0) {
    a->text = stp_xstrdup("");
    then(a);
    return;
  }
  const apimsg_part *p = &a->info.parts[a->body_part];
  a->text = stp_xmalloc(p->size + 1);
  a->text_len = 0;
  new_body(a);
  api_body_whole_part(a->body, p, 0);
  api_body_set_notify(a->body, text_pull, a);
  text_pull(a);
}

static void text_done(apiconn *a) {
  const apimsg_part *p = &a->info.parts[a->body_part];
  api_body_free(a->body);
  a->body = NULL;
  size_t cap = a->text_len * 3 + 1; /* Windows-1252 grows at most threefold */
  char *u = stp_xmalloc(cap);
  long n = mime_to_utf8(p->charset, a->text, a->text_len, u, cap);
  if (n < 0)
    n = (long)mime_utf8_or_1252(a->text, a->text_len, u, cap);
  stp_cleanse(a->text, a->text_len);
  free(a->text);
  a->text = u;
  a->text_len = (size_t)n;
  a->text_then(a);
}

static void text_pull(void *arg) {
  apiconn *a = arg;
  const apimsg_part *p = &a->info.parts[a->body_part];
  api_enter(a);
  while (a->text_len < p->size) {
    long n = api_body_read(a->body, a->text + a->text_len, (size_t)(p->size - a->text_len));
    if (n < 0) {
      api_final_reply(a, 451, "4.3.0 Local error reading the message copy, try again later");
      break;
    }
    if (n == 0)
      break; /* text_pull again when the read is done */
    a->text_len += (size_t)n;
  }
  if (a->body && a->text_len == p->size)
    text_done(a);
  api_leave(a);
}

static void draft_plan(apiconn *a) {
  a->how = "graph-draft";
  a->json = apimsg_graph_message(&a->info, rcpts(a), a->nrcpt, a->text, a->text_len, a->html, false,
                                 APIMSG_GRAPH_REQUEST_MAX);
  if (!a->json) {
    apimap_out o = {.action = APIMAP_FAIL, .code = 552, .reason = "too-big"};
    snprintf(o.text, sizeof o.text, "5.3.4 The message's text is too large for Microsoft Graph");
    finish(a, &o);
    return;
  }
  a->step = SEND_DRAFT;
  api_need_token(a, run_step);
}

/* sendMail with a JSON message, if it fits one request: for
 * save_to_sent_items: false (Graph honours saveToSentItems only there),
 * and for exact recipients when To/Cc name addresses that are not
 * envelope recipients (raw MIME would send to them too). Larger: a draft. */
static void json_plan(apiconn *a) {
  a->json = apimsg_graph_message(&a->info, rcpts(a), a->nrcpt, a->text, a->text_len, a->html, true,
                                 APIMSG_GRAPH_REQUEST_MAX);
  uint64_t total = a->json ? strlen(a->json) + strlen(json_tail(a)) : UINT64_MAX;
  for (size_t i = 0; a->json && i < a->info.nparts && total <= APIMSG_GRAPH_REQUEST_MAX; i++)
    if (apimsg_is_attachment(&a->info, i, a->body_part))
      total += 1 + attach_request_size(a, i);
  if (total > APIMSG_GRAPH_REQUEST_MAX) {
    stp_kv kv[] = {{"upstream", a->cfg->name}};
    if (!a->cfg->save_to_sent_items) /* a sent draft always lands in Sent Items */
      stp_log_kv(STP_LOG_INFO, a->sid, "api-sent-items-kept", kv, 1);
    free(a->json);
    a->json = NULL;
    draft_plan(a); /* Graph keeps a sent draft in Sent Items: said in the README */
    return;
  }
  a->how = "graph-json";
  a->step = SEND_JSON;
  api_need_token(a, run_step);
}

void api_send_start(apiconn *a) {
  stp_buf_init(&a->bcc, BCC_MAX);
  if (apimsg_bcc_field(&a->info, rcpts(a), a->nrcpt, &a->bcc) < 0)
    a->bcc.len = 0; /* cannot happen: sized for every recipient */
  size_t extra = apimsg_header_only(&a->info, rcpts(a), a->nrcpt);
  if (extra && a->cfg->kind == STP_UP_GMAIL) { /* Gmail sends to every header recipient */
    char n[24];
    snprintf(n, sizeof n, "%zu", extra);
    stp_kv kv[] = {{"upstream", a->cfg->name}, {"count", n}};
    stp_log_kv(STP_LOG_WARN, a->sid, "api-header-recipients-not-in-envelope", kv, 2);
  }
  uint64_t mime = a->size + a->bcc.len;
  if (a->cfg->kind == STP_UP_GMAIL) {
    if (mime > APIMSG_GMAIL_MAX) {
      apimap_out o = {.action = APIMAP_FAIL, .code = 552, .reason = "too-big"};
      snprintf(o.text, sizeof o.text, "5.3.4 Message too big for the Gmail API (at most 35 MiB)");
      a->how = "gmail";
      finish(a, &o);
      return;
    }
    a->how = "gmail";
    a->step = SEND_GMAIL;
    api_need_token(a, run_step);
  } else if (a->cfg->save_to_sent_items && !extra &&
             apimsg_b64_len(mime) <= APIMSG_GRAPH_REQUEST_MAX) {
    a->how = "graph-sendmail";
    a->step = SEND_MIME;
    api_need_token(a, run_step);
  } else if (a->info.parts_dropped) {
    /* Graph's JSON carries each part as an attachment, and the MIME view
     * keeps APIMSG_PARTS_MAX of them: refused, never sent without some. */
    apimap_out o = {.action = APIMAP_FAIL, .code = 554, .reason = "too-many-parts"};
    snprintf(o.text, sizeof o.text,
             "5.6.0 The message has more than %u MIME parts; the proxy sends at most %u through "
             "Microsoft Graph's JSON requests",
             APIMSG_PARTS_MAX, APIMSG_PARTS_MAX);
    a->how = "graph-json";
    finish(a, &o);
  } else if (apimsg_b64_len(mime) <= APIMSG_GRAPH_REQUEST_MAX) {
    read_text(a, json_plan);
  } else {
    read_text(a, draft_plan);
  }
}
