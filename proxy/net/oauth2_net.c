/* oauth2_net.c - token cache, HTTPS token fetch and token_command on libuv
 * (see oauth2_net.h).
 *
 * A source is found by what identifies it (upstream name, kind, endpoint,
 * client, scope, files, argv); it lives for the whole process, so a reload
 * keeps a valid token instead of fetching again. Secrets that may change
 * with a reload (client secret, refresh token) are adopted from a newer
 * load only. A fetch object owns its DNS request, stream and timer and
 * frees itself once all of them are closed, like upconn.
 */
#include "oauth2_net.h"

#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/oauth2.h"
#include "smtp-tls-proxy/util.h"
#include "stream.h"
#include "tls.h"

#define CMD_OUTPUT_MAX (16 * 1024)
#define FORM_MAX (3 * OAUTH2_TOKEN_MAX + 4096)

typedef struct tok_src {
  struct tok_src *next;
  stp_buf key;
  char *name; /* upstream, for logs */
  stp_toksrc_kind kind;
  stp_oauth2_grant grant;
  char *token_url, *client_id, *client_secret, *scope, *ca_file;
  char *rt_file, *rt; /* refresh token file and the current refresh token */
  char **argv;
  uint64_t ttl_ms, timeout_ms;
  unsigned long seq;
  tls_ctx *tls;
  char *token;
  uint64_t refresh_at;
  bool fetching;
  tok_waiter head; /* sentinel of the waiters' ring */
} tok_src;

static tok_src *g_srcs;

/* ---- waiters ---------------------------------------------------------------- */

static void ring_init(tok_waiter *h) {
  h->prev = h->next = h;
}

void tok_cancel(tok_waiter *w) {
  if (!w || !w->queued)
    return;
  w->prev->next = w->next;
  w->next->prev = w->prev;
  w->prev = w->next = NULL;
  w->queued = false;
}

/* Every waiter queued now gets the outcome. The ring is moved aside first:
 * a callback may cancel other waiters or queue new ones (a new fetch). */
static void wake_all(tok_src *s, const char *token, const char *err) {
  tok_waiter local;
  ring_init(&local);
  if (s->head.next != &s->head) {
    local.next = s->head.next;
    local.prev = s->head.prev;
    local.next->prev = &local;
    local.prev->next = &local;
    ring_init(&s->head);
  }
  while (local.next != &local) {
    tok_waiter *w = local.next;
    tok_cancel(w);
    w->cb(w->arg, token, err);
  }
}

/* ---- sources -------------------------------------------------------------- */

static void key_add(stp_buf *k, const char *s) {
  size_t n = s ? strlen(s) : 0;
  char len[24];
  int m = snprintf(len, sizeof len, "%zu:", s ? n : (size_t)-1);
  if (k->cap - k->len < (size_t)m + n) { /* keys are short; grow by hand */
    size_t cap = (k->cap + (size_t)m + n) * 2;
    k->data = stp_xrealloc(k->data, cap);
    k->cap = cap;
  }
  stp_buf_append(k, len, (size_t)m);
  stp_buf_append(k, s ? s : "", n);
}

static void make_key(stp_buf *k, const stp_upstream_cfg *c) {
  const stp_oauth2_cfg *o = c->token_src;
  char num[64];
  stp_buf_init(k, 256);
  key_add(k, c->name);
  snprintf(num, sizeof num, "%d/%d/%llu", (int)o->kind, (int)o->grant,
           (unsigned long long)o->token_ttl_ms);
  key_add(k, num);
  key_add(k, o->token_url);
  key_add(k, o->client_id);
  key_add(k, o->scope);
  key_add(k, o->ca_file);
  key_add(k, o->refresh_token_file);
  for (size_t i = 0; i < o->command.n; i++)
    key_add(k, o->command.v[i]);
}

static char *dup_or_null(const char *s) {
  return s ? stp_xstrdup(s) : NULL;
}

static void set_secret(char **dst, const char *val) {
  stp_free_secret(*dst);
  *dst = dup_or_null(val);
}

static tok_src *src_for(const stp_upstream_cfg *c) {
  const stp_oauth2_cfg *o = c->token_src;
  stp_buf k;
  make_key(&k, c);
  tok_src *s = g_srcs;
  for (; s; s = s->next)
    if (s->key.len == k.len && !memcmp(s->key.data, k.data, k.len))
      break;
  if (s) {
    stp_buf_free(&k);
    if (o->load_seq > s->seq) { /* a newer configuration: take its secrets */
      s->seq = o->load_seq;
      set_secret(&s->client_secret, o->client_secret);
      if (o->refresh_token && (!s->rt || strcmp(s->rt, o->refresh_token)))
        set_secret(&s->rt, o->refresh_token);
    }
    return s;
  }
  s = stp_xcalloc(1, sizeof *s);
  s->key = k;
  s->name = stp_xstrdup(c->name);
  s->kind = o->kind;
  s->grant = o->grant;
  s->token_url = dup_or_null(o->token_url);
  s->client_id = dup_or_null(o->client_id);
  s->client_secret = dup_or_null(o->client_secret);
  s->scope = dup_or_null(o->scope);
  s->ca_file = dup_or_null(o->ca_file);
  s->rt_file = dup_or_null(o->refresh_token_file);
  s->rt = dup_or_null(o->refresh_token);
  s->argv = stp_xcalloc(o->command.n + 1, sizeof *s->argv);
  for (size_t i = 0; i < o->command.n; i++)
    s->argv[i] = stp_xstrdup(o->command.v[i]);
  s->ttl_ms = o->token_ttl_ms;
  s->timeout_ms = o->timeout_ms ? o->timeout_ms : 30000;
  s->seq = o->load_seq;
  ring_init(&s->head);
  s->next = g_srcs;
  g_srcs = s;
  return s;
}

static void log_failure(tok_src *s, const char *err) {
  stp_kv kv[] = {{"upstream", s->name},
                 {"source", s->kind == STP_TOKSRC_COMMAND ? "token_command" : "oauth2"},
                 {"endpoint", s->kind == STP_TOKSRC_COMMAND ? s->argv[0] : s->token_url},
                 {"reason", err}};
  stp_log_kv(STP_LOG_ERROR, NULL, "oauth2-failed", kv, 4);
}

/* A fetch ended: keep the token, save a rotated refresh token, wake. */
static void src_done(tok_src *s, oauth2_token_resp *t, char *token, const char *err) {
  s->fetching = false;
  if (!token) {
    log_failure(s, err);
    wake_all(s, NULL, err);
    return;
  }
  uint64_t now = stp_now_ms();
  char exp[24] = "";
  const char *rotated = "no";
  stp_free_secret(s->token);
  s->token = token;
  if (t) {
    s->refresh_at = oauth2_refresh_at(now, t->has_expires_in, t->expires_in);
    if (t->has_expires_in)
      snprintf(exp, sizeof exp, "%lld", (long long)t->expires_in);
    if (t->refresh_token && s->rt && strcmp(t->refresh_token, s->rt)) {
      char why[512];
      rotated = "yes";
      set_secret(&s->rt, t->refresh_token);
      if (s->rt_file && oauth2_save_secret_file(s->rt_file, s->rt, why, sizeof why) < 0) {
        rotated = "not-saved";
        stp_kv kv[] = {{"upstream", s->name}, {"file", s->rt_file}, {"reason", why}};
        stp_log_kv(STP_LOG_ERROR, NULL, "oauth2-refresh-token-not-saved", kv, 3);
      }
    }
  } else {
    s->refresh_at = now + s->ttl_ms;
  }
  stp_kv kv[] = {{"upstream", s->name},
                 {"source", s->kind == STP_TOKSRC_COMMAND ? "token_command" : "oauth2"},
                 {"expires_in", exp[0] ? exp : NULL},
                 {"refresh_token_rotated", s->kind == STP_TOKSRC_OAUTH2 ? rotated : NULL}};
  stp_log_kv(STP_LOG_INFO, NULL, "oauth2-token", kv, 4);
  wake_all(s, s->token, NULL);
}

/* ---- the HTTPS fetch ---------------------------------------------------------- */

typedef struct fetch {
  tok_src *src;
  uv_loop_t *loop;
  oauth2_url url;
  uv_getaddrinfo_t gai;
  bool gai_pending;
  struct addrinfo *ai, *ai_next;
  stream *st;
  int n_streams;
  uv_timer_t timer;
  bool timer_open;
  stp_buf req, resp;
  bool done;
  char early[400]; /* a failure found before anything started */
} fetch;

static void fetch_maybe_free(fetch *f) {
  if (!f->done || f->gai_pending || f->n_streams > 0 || f->timer_open)
    return;
  if (f->ai)
    uv_freeaddrinfo(f->ai);
  stp_cleanse(f->req.data, f->req.cap);
  stp_cleanse(f->resp.data, f->resp.cap);
  stp_buf_free(&f->req);
  stp_buf_free(&f->resp);
  free(f);
}

static void fetch_timer_closed(uv_handle_t *h) {
  fetch *f = h->data;
  f->timer_open = false;
  fetch_maybe_free(f);
}

/* Close everything and report once. */
static void fetch_finish(fetch *f, oauth2_http_resp *r, const char *err) {
  if (f->done)
    return;
  f->done = true;
  uv_close((uv_handle_t *)&f->timer, fetch_timer_closed);
  if (f->gai_pending)
    uv_cancel((uv_req_t *)&f->gai);
  if (f->st)
    stream_close(f->st);
  f->st = NULL;
  char why[512];
  oauth2_token_resp t;
  memset(&t, 0, sizeof t);
  if (!r) {
    snprintf(why, sizeof why, "%s", err);
    src_done(f->src, NULL, NULL, why);
  } else if (oauth2_evaluate(r->status, r->body, r->body_len, &t, why, sizeof why) < 0) {
    src_done(f->src, NULL, NULL, why);
  } else {
    char *token = t.access_token;
    t.access_token = NULL;
    src_done(f->src, &t, token, NULL);
  }
  oauth2_token_resp_free(&t);
  fetch_maybe_free(f);
}

/* Judge what arrived so far; eof when the peer closed. */
static void fetch_check(fetch *f, bool eof) {
  oauth2_http_resp r;
  int rc = oauth2_http_parse(f->resp.data, f->resp.len, eof, &r);
  if (rc == 0)
    return;
  if (rc < 0) {
    char why[160];
    snprintf(why, sizeof why, "bad HTTP response from the token endpoint: %s",
             rc == STP_ETOOLONG ? "larger than 64 KiB" : "malformed or cut short");
    fetch_finish(f, NULL, why);
    return;
  }
  fetch_finish(f, &r, NULL);
  oauth2_http_resp_free(&r);
}

static void fetch_send(fetch *f) {
  stream_write(f->st, f->req.data, f->req.len);
}

static void connect_next(fetch *f);

static void st_connect(void *ctx, const char *error) {
  fetch *f = ctx;
  if (f->done)
    return;
  if (error) {
    if (f->ai_next) {
      stream_close(f->st);
      f->st = NULL;
      connect_next(f);
      return;
    }
    char why[400];
    snprintf(why, sizeof why, "connect %s:%u: %s", f->url.host, f->url.port, error);
    fetch_finish(f, NULL, why);
    return;
  }
  stream_start(f->st);
  if (!f->url.https) {
    fetch_send(f);
    return;
  }
  stream_start_tls(f->st, f->src->tls, f->url.host, false); /* failure: st_error */
}

static void st_read(void *ctx, const char *p, size_t n) {
  fetch *f = ctx;
  if (f->done)
    return;
  if (stp_buf_append(&f->resp, p, n) < 0) {
    fetch_finish(f, NULL, "bad HTTP response from the token endpoint: larger than 64 KiB");
    return;
  }
  fetch_check(f, false);
}

static void st_error(void *ctx, const char *reason, bool tls, bool verify) {
  fetch *f = ctx;
  if (f->done)
    return;
  if (tls && !f->resp.len) {
    char why[600];
    snprintf(why, sizeof why, "TLS with %s: %s%s", f->url.host, reason,
             verify ? " (certificate not trusted or wrong name)" : "");
    fetch_finish(f, NULL, why);
    return;
  }
  if (!f->resp.len) {
    char why[300];
    snprintf(why, sizeof why, "token endpoint closed without an answer: %s", reason);
    fetch_finish(f, NULL, why);
    return;
  }
  fetch_check(f, true); /* a close-delimited body, or a truncated one */
}

static void st_tls(void *ctx) {
  fetch *f = ctx;
  if (!f->done)
    fetch_send(f);
}

static void st_drain(void *ctx) {
  (void)ctx;
}

static void st_closed(void *ctx) {
  fetch *f = ctx;
  f->n_streams--;
  fetch_maybe_free(f);
}

static const stream_cbs fetch_cbs = {st_connect, st_read, st_error, st_tls, st_drain, st_closed};

static void connect_next(fetch *f) {
  struct addrinfo *ai = f->ai_next;
  f->ai_next = ai->ai_next;
  f->st = stream_new(f->loop, &fetch_cbs, f);
  f->n_streams++;
  stream_connect(f->st, ai->ai_addr);
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  fetch *f = req->data;
  f->gai_pending = false;
  f->ai = res;
  if (f->done) {
    fetch_maybe_free(f);
    return;
  }
  if (status < 0 || !res) {
    char why[400];
    snprintf(why, sizeof why, "resolve %s: %s", f->url.host,
             status < 0 ? uv_strerror(status) : "no address");
    fetch_finish(f, NULL, why);
    return;
  }
  f->ai_next = res;
  connect_next(f);
}

static void fetch_timer_cb(uv_timer_t *t) {
  fetch *f = t->data;
  char why[400];
  if (f->early[0])
    snprintf(why, sizeof why, "%s", f->early);
  else
    snprintf(why, sizeof why, "token endpoint %s did not answer in time", f->url.host);
  fetch_finish(f, NULL, why);
}

/* The form for the source's grant; secrets inside, cleansed by the caller. */
static int build_form(tok_src *s, stp_buf *form) {
  int rc = 0;
  if (s->grant == STP_GRANT_CLIENT_CREDENTIALS) {
    rc |= oauth2_form_add(form, "grant_type", "client_credentials");
  } else {
    rc |= oauth2_form_add(form, "grant_type", "refresh_token");
    rc |= oauth2_form_add(form, "refresh_token", s->rt ? s->rt : "");
  }
  rc |= oauth2_form_add(form, "client_id", s->client_id);
  if (s->client_secret)
    rc |= oauth2_form_add(form, "client_secret", s->client_secret);
  if (s->scope)
    rc |= oauth2_form_add(form, "scope", s->scope);
  return rc ? STP_EFULL : STP_OK;
}

/* Queue-side start; any early failure is reported from the loop. */
static void fetch_start(uv_loop_t *loop, tok_src *s) {
  fetch *f = stp_xcalloc(1, sizeof *f);
  f->src = s;
  f->loop = loop;
  s->fetching = true;
  stp_buf_init(&f->resp, OAUTH2_RESPONSE_MAX + 1);
  stp_buf_init(&f->req, FORM_MAX + 2048);
  uv_timer_init(loop, &f->timer);
  f->timer.data = f;
  f->timer_open = true;
  uv_timer_start(&f->timer, fetch_timer_cb, s->timeout_ms, 0);
  const char *early = NULL;
  char why[400];
  stp_buf form;
  stp_buf_init(&form, FORM_MAX);
  if (oauth2_url_parse(s->token_url, &f->url) < 0)
    early = "bad token_url";
  else if (build_form(s, &form) < 0 ||
           oauth2_build_request(&f->req, &f->url, form.data, form.len) < 0)
    early = "token request too large";
  stp_cleanse(form.data, form.cap);
  stp_buf_free(&form);
  if (!early && f->url.https && !s->tls) {
    s->tls = tls_ctx_client(s->ca_file, STP_TLS1_2, true, why, sizeof why);
    if (!s->tls)
      early = why;
  }
  if (!early) {
    char port[8];
    snprintf(port, sizeof port, "%u", f->url.port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    f->gai.data = f;
    int rc = uv_getaddrinfo(loop, &f->gai, gai_cb, f->url.host, port, &hints);
    if (rc == 0) {
      f->gai_pending = true;
      return;
    }
    snprintf(why, sizeof why, "resolve %s: %s", f->url.host, uv_strerror(rc));
    early = why;
  }
  /* Report from the loop: the caller is still inside tok_get. */
  snprintf(f->early, sizeof f->early, "%s", early);
  uv_timer_start(&f->timer, fetch_timer_cb, 0, 0);
}

/* ---- token_command ------------------------------------------------------------- */

typedef struct cmdrun {
  tok_src *src;
  uv_process_t proc;
  uv_pipe_t out;
  uv_timer_t timer;
  int open; /* handles not yet closed */
  bool exited, eof, done;
  int64_t status;
  int term_signal;
  char buf[CMD_OUTPUT_MAX + 1];
  size_t len;
  const char *problem;
} cmdrun;

static void cmd_closed(uv_handle_t *h) {
  cmdrun *c = h->data;
  if (--c->open > 0)
    return;
  stp_cleanse(c->buf, sizeof c->buf);
  free(c);
}

static void cmd_close_all(cmdrun *c) {
  if (!uv_is_closing((uv_handle_t *)&c->timer))
    uv_close((uv_handle_t *)&c->timer, cmd_closed);
  if (!uv_is_closing((uv_handle_t *)&c->out))
    uv_close((uv_handle_t *)&c->out, cmd_closed);
  if (c->exited && !uv_is_closing((uv_handle_t *)&c->proc))
    uv_close((uv_handle_t *)&c->proc, cmd_closed);
}

static void cmd_finish(cmdrun *c) {
  if (c->done || !(c->exited && (c->eof || c->problem)))
    return;
  c->done = true;
  char why[200];
  char *token = NULL;
  if (c->problem) {
    snprintf(why, sizeof why, "token_command %s", c->problem);
  } else if (c->term_signal) {
    snprintf(why, sizeof why, "token_command killed by signal %d", c->term_signal);
  } else if (c->status != 0) {
    snprintf(why, sizeof why, "token_command exited with status %lld", (long long)c->status);
  } else if (oauth2_token_from_output(c->buf, c->len, &token) < 0) {
    snprintf(why, sizeof why,
             "token_command printed no usable token (one line of printable "
             "ASCII expected)");
  }
  cmd_close_all(c);
  src_done(c->src, NULL, token, why);
}

static void cmd_exit_cb(uv_process_t *p, int64_t status, int sig) {
  cmdrun *c = p->data;
  c->exited = true;
  c->status = status;
  c->term_signal = sig;
  if (c->done) {
    uv_close((uv_handle_t *)&c->proc, cmd_closed);
    return;
  }
  cmd_finish(c);
}

static void cmd_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b) {
  cmdrun *c = h->data;
  (void)sz;
  *b = uv_buf_init(c->buf + c->len, (unsigned)(sizeof c->buf - c->len));
}

static void cmd_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  cmdrun *c = s->data;
  (void)b;
  if (n > 0) {
    c->len += (size_t)n;
    if (c->len > CMD_OUTPUT_MAX && !c->problem) {
      c->problem = "printed more than 16 KiB";
      uv_process_kill(&c->proc, SIGKILL);
    }
  } else if (n < 0) {
    c->eof = true;
    uv_read_stop(s);
  }
  cmd_finish(c);
}

static void cmd_timer_cb(uv_timer_t *t) {
  cmdrun *c = t->data;
  if (!c->problem)
    c->problem = "did not finish in time (killed)";
  if (!c->exited)
    uv_process_kill(&c->proc, SIGKILL);
  cmd_finish(c);
}

static void cmd_start(uv_loop_t *loop, tok_src *s) {
  cmdrun *c = stp_xcalloc(1, sizeof *c);
  c->src = s;
  s->fetching = true;
  uv_pipe_init(loop, &c->out, 0);
  uv_timer_init(loop, &c->timer);
  c->out.data = c->timer.data = c->proc.data = c;
  c->open = 3;
  uv_stdio_container_t stdio[3] = {
      {.flags = UV_IGNORE},
      {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&c->out},
      {.flags = UV_INHERIT_FD, .data.fd = 2}};
  uv_process_options_t opt = {.exit_cb = cmd_exit_cb,
                              .file = s->argv[0],
                              .args = s->argv,
                              .stdio_count = 3,
                              .stdio = stdio};
  int rc = uv_spawn(loop, &c->proc, &opt);
  if (rc < 0) {
    /* The handle is initialised anyway and must be closed; report from the
     * loop, as the caller is still inside tok_get. */
    static char spawn_err[200];
    snprintf(spawn_err, sizeof spawn_err, "could not be started: %s", uv_strerror(rc));
    c->problem = spawn_err;
    c->exited = true;
    c->eof = true;
    uv_timer_start(&c->timer, cmd_timer_cb, 0, 0);
    return;
  }
  uv_read_start((uv_stream_t *)&c->out, cmd_alloc, cmd_read);
  uv_timer_start(&c->timer, cmd_timer_cb, s->timeout_ms, 0);
}

/* ---- public -------------------------------------------------------------------- */

int tok_get(uv_loop_t *loop, const stp_upstream_cfg *c, tok_waiter *w, tok_cb cb, void *arg,
            char **token) {
  tok_src *s = src_for(c);
  *token = NULL;
  if (s->token && stp_now_ms() < s->refresh_at) {
    *token = stp_xstrdup(s->token);
    return 1;
  }
  w->cb = cb;
  w->arg = arg;
  w->next = &s->head;
  w->prev = s->head.prev;
  s->head.prev->next = w;
  s->head.prev = w;
  w->queued = true;
  if (!s->fetching) {
    if (s->kind == STP_TOKSRC_COMMAND)
      cmd_start(loop, s);
    else
      fetch_start(loop, s);
  }
  return 0;
}

void tok_invalidate(const stp_upstream_cfg *c, const char *token) {
  tok_src *s = src_for(c);
  if (s->token && token && !strcmp(s->token, token)) {
    stp_free_secret(s->token);
    s->token = NULL;
    s->refresh_at = 0;
  }
}
