/* spool_notice.c - failure notices for spooled messages (see
 * spool_notice.h). The original headers are read back in the thread pool
 * (msgcopy reader); building the notice is the core's dsn_build; each
 * copy is spooled like any message and delivered by the queue runner.
 */
#include "spool_notice.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "msgcopy.h"
#include "smtp-tls-proxy/data.h"
#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/rewrite.h"
#include "smtp-tls-proxy/route.h"
#include "smtp-tls-proxy/util.h"

#define NOTICE_READ_MAX (DSN_HEADERS_MAX + 4096)

typedef struct notice_job {
  uv_loop_t *loop;
  spool *sp;
  const stp_config *cfg; /* the caller's generation, alive until done */
  char hostname[256];
  const spool_entry *e;
  dsn_rcpt *rcpts;
  size_t n_rcpts;
  bool expired;
  spool_notice_done_fn done;
  void *arg;
  msgcopy_reader *rd;
  char *buf; /* the start of the original body */
  size_t len;
  unsigned pending; /* commits under way */
  bool all_ok;
} notice_job;

typedef struct grow {
  char *p;
  size_t len, cap;
} grow;

static void grow_put(void *ctx, const char *p, size_t n) {
  grow *g = ctx;
  if (g->len + n > g->cap) {
    g->cap = (g->len + n) * 2;
    g->p = stp_xrealloc(g->p, g->cap);
  }
  memcpy(g->p + g->len, p, n);
  g->len += n;
}

static void job_end(notice_job *j) {
  if (j->pending)
    return;
  spool_notice_done_fn done = j->done;
  void *arg = j->arg;
  bool ok = j->all_ok;
  spool *sp = j->sp;
  for (size_t i = 0; i < j->n_rcpts; i++) {
    free((char *)j->rcpts[i].addr);
    free((char *)j->rcpts[i].reply);
    free((char *)j->rcpts[i].orcpt);
  }
  free(j->rcpts);
  free(j->buf);
  free(j);
  done(arg, ok);
  spool_unhold(sp); /* after done: the caller still uses the spool */
}

static void committed_cb(void *owner, bool ok, const char *id_or_error) {
  notice_job *j = owner;
  (void)id_or_error;
  if (!ok)
    j->all_ok = false;
  j->pending--;
  job_end(j);
}

/* The route a device's message from the original client to `to` with
 * sender <> would take. */
static long notice_route(const notice_job *j, const char *to) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, j->e->env.client, &v4->sin_addr) == 1)
    v4->sin_family = AF_INET;
  else if (inet_pton(AF_INET6, j->e->env.client, &v6->sin6_addr) == 1)
    v6->sin6_family = AF_INET6;
  route_input in = {
      j->e->env.listener, ss.ss_family ? (struct sockaddr *)&ss : NULL, NULL, "", to, 0};
  return route_match(j->cfg, &in);
}

/* The notice as it goes upstream: dot-stuffed, the route's header
 * rewrite applied as to a device's message. */
static void frame(const stp_route_cfg *rt, const char *text, size_t len, grow *out) {
  rewrite_ctx rw;
  if (rt->rewrite_header_from &&
      rewrite_init(&rw, rt->rewrite_header_from, REWRITE_DEFAULT_MAX) == 0) {
    grow stuffed = {0};
    data_stuff_block(text, len, grow_put, &stuffed);
    if (rewrite_feed(&rw, stuffed.p, stuffed.len, grow_put, out) < 0 ||
        rewrite_finish(&rw, grow_put, out) < 0) {
      out->len = 0; /* too large to rewrite: unchanged, as sent below */
      data_stuff_block(text, len, grow_put, out);
    }
    rewrite_free(&rw);
    free(stuffed.p);
    return;
  }
  data_stuff_block(text, len, grow_put, out);
}

/* One notice to `to` about rcpts[0..n). */
static void spool_one(notice_job *j, const char *to, const dsn_rcpt *rcpts, size_t n,
                      const char *headers, size_t hlen) {
  long r = notice_route(j, to);
  if (r < 0) {
    stp_kv kv[] = {{"id", j->e->env.id}, {"to", to}};
    stp_log_kv(STP_LOG_ERROR, NULL, "spool-notice-unroutable", kv, 2);
    return;
  }
  const stp_route_cfg *rt = &j->cfg->routes[r];
  dsn_input in = {.reporting_mta = j->hostname,
                  .to = to,
                  .orig_from = j->e->env.from,
                  .spool_id = j->e->env.id,
                  .arrival_ms = j->e->env.created_ms,
                  .now_ms = spool_wall_ms(),
                  .expired = j->expired,
                  .rcpts = rcpts,
                  .n_rcpts = n,
                  .headers = headers,
                  .headers_len = hlen,
                  .envid = j->e->env.envid};
  char age[16];
  spool_fmt_age(spool_cfg(j->sp)->max_age_ms, age, sizeof age);
  in.max_age = age;
  size_t len;
  char *text = dsn_build(&in, &len);
  grow body = {0};
  frame(rt, text, len, &body);
  free(text);
  char reason[64];
  snprintf(reason, sizeof reason, "failure notice for %s", j->e->env.id);
  const char *env_rcpts[1] = {to};
  spool_env env = {.kind = SPOOL_KIND_NOTICE,
                   .route = rt->name,
                   .listener = j->e->env.listener,
                   .client = j->e->env.client,
                   .from = "",
                   .up_from = rt->rewrite_mail_from ? rt->rewrite_mail_from : "",
                   .body = SMTP_BODY_8BITMIME,
                   .smtputf8 = dsn_is_global(&in), /* RFC 6533 / 6531 */
                   .reason = reason,
                   .rcpts = env_rcpts,
                   .n_rcpts = 1};
  spool_in *si = spool_in_begin(j->sp, &env, NULL, NULL);
  if (!si) {
    j->all_ok = false;
    free(body.p);
    return;
  }
  spool_in_body(si, body.p, body.len);
  free(body.p);
  j->pending++;
  spool_in_commit(si, reason, committed_cb, j);
}

static void build_all(notice_job *j) {
  char *headers = stp_xmalloc(DSN_HEADERS_MAX);
  size_t hlen = dsn_header_block(j->buf ? j->buf : "", j->len, headers, DSN_HEADERS_MAX);
  const stp_spool_cfg *sc = spool_cfg(j->sp);
  /* The sender hears only about the recipients whose NOTIFY asks for
   * failures (RFC 3461 4.1: none at all for NOTIFY=NEVER); the
   * administrator's copy lists them all. */
  dsn_rcpt *wanted = stp_xcalloc(j->n_rcpts ? j->n_rcpts : 1, sizeof *wanted);
  size_t n_wanted = 0;
  for (size_t i = 0; i < j->n_rcpts; i++)
    if (dsn_wants_failure(j->rcpts[i].notify))
      wanted[n_wanted++] = j->rcpts[i];
  const char *to[2] = {sc->notify, NULL};
  if (sc->notify_sender && j->e->env.from[0] && n_wanted &&
      (!sc->notify || stp_ascii_casecmp(sc->notify, j->e->env.from)))
    to[1] = j->e->env.from;
  bool about_notice = j->e->env.kind == SPOOL_KIND_NOTICE;
  j->pending++; /* hold job_end until every copy is under way */
  if (!about_notice && to[0])
    spool_one(j, to[0], j->rcpts, j->n_rcpts, headers, hlen);
  if (!about_notice && to[1])
    spool_one(j, to[1], wanted, n_wanted, headers, hlen);
  free(wanted);
  if (about_notice || (!to[0] && !to[1])) {
    /* Never a notice about a notice; nobody to tell: the log only. */
    stp_kv kv[] = {{"id", j->e->env.id}, {"why", about_notice ? "a notice failed" : "nobody"}};
    stp_log_kv(STP_LOG_WARN, NULL, "spool-notice-none", kv, 2);
  }
  free(headers);
  j->pending--;
  job_end(j);
}

static void read_cb(void *arg, const char *p, size_t n, int err) {
  notice_job *j = arg;
  if (n > 0) {
    memcpy(j->buf + j->len, p, n);
    j->len += n;
  }
  bool end = err || n == 0 || j->len >= NOTICE_READ_MAX ||
             (j->len >= 4 && memmem(j->buf, j->len, "\r\n\r\n", 4));
  if (!end) {
    msgcopy_read(j->rd, read_cb, j);
    return;
  }
  msgcopy_reader_free(j->rd);
  j->rd = NULL;
  build_all(j);
}

void spool_notice_send(uv_loop_t *loop, spool *sp, const stp_config *cfg, const char *hostname,
                       const spool_entry *e, const dsn_rcpt *rcpts, size_t n, bool expired,
                       spool_notice_done_fn done, void *arg) {
  notice_job *j = stp_xcalloc(1, sizeof *j);
  j->loop = loop;
  j->sp = sp;
  spool_hold(sp);
  j->cfg = cfg;
  snprintf(j->hostname, sizeof j->hostname, "%s", hostname);
  j->e = e;
  j->expired = expired;
  j->done = done;
  j->arg = arg;
  j->all_ok = true;
  j->n_rcpts = n;
  j->rcpts = stp_xcalloc(n ? n : 1, sizeof *j->rcpts);
  for (size_t i = 0; i < n; i++) {
    j->rcpts[i].addr = stp_xstrdup(rcpts[i].addr);
    j->rcpts[i].reply = stp_xstrdup(rcpts[i].reply ? rcpts[i].reply : "");
    j->rcpts[i].notify = rcpts[i].notify;
    j->rcpts[i].orcpt = rcpts[i].orcpt ? stp_xstrdup(rcpts[i].orcpt) : NULL;
  }
  j->buf = stp_xmalloc(NOTICE_READ_MAX + MSGCOPY_CHUNK);
  uint64_t want = e->env.size < NOTICE_READ_MAX ? e->env.size : NOTICE_READ_MAX;
  char path[512];
  spool_msg_path(sp, e, path, sizeof path);
  /* Also for a notice, which gets none: the answer comes from the loop. */
  j->rd = msgcopy_reader_open(loop, path, e->hdr_len, want);
  msgcopy_read(j->rd, read_cb, j);
}
