/* dialer.c - resolve, connect to each address in turn, time out (see
 * dialer.h).
 *
 * The addresses are copied out of getaddrinfo's list at once, so the list
 * never outlives the DNS callback. One timer serves both limits: it is
 * armed for whichever comes first, the end of the whole dial or the end of
 * the current attempt (only while another address is left to try).
 */
#include "dialer.h"

#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "defer.h"
#include "smtp-tls-proxy/util.h"

struct dialer {
  uv_loop_t *loop;
  const stream_cbs *cbs; /* the caller's, for the stream handed over */
  void *ctx;
  dial_done_fn done;
  void *arg;
  dial_opts o;
  uint64_t deadline; /* uv_now() of the end of the whole dial; 0: none */
  uv_getaddrinfo_t gai;
  bool gai_pending;
  struct sockaddr_storage addrs[DIAL_MAX_ADDRS];
  size_t n_addrs, next;
  stream *st; /* the attempt in flight */
  int n_streams;
  uv_timer_t timer;
  bool timer_open;
  bool finished; /* done called, or cancelled */
  defer_item ev; /* an outcome known inside dialer_start */
  dial_result why;
  char reason[160];
};

static void maybe_free(dialer *d) {
  if (d->finished && !d->gai_pending && d->n_streams == 0 && !d->timer_open)
    free(d);
}

static void timer_closed_cb(uv_handle_t *h) {
  dialer *d = h->data;
  d->timer_open = false;
  maybe_free(d);
}

/* Release everything but the stream handed over; no callback. */
static void stop(dialer *d) {
  d->finished = true;
  defer_cancel(&d->ev);
  uv_close((uv_handle_t *)&d->timer, timer_closed_cb);
  if (d->gai_pending)
    uv_cancel((uv_req_t *)&d->gai);
  if (d->st)
    stream_close(d->st);
  d->st = NULL;
}

static void finish(dialer *d, stream *st, dial_result why, const char *reason) {
  stop(d);
  d->done(d->arg, st, why, reason);
  maybe_free(d);
}

void dialer_cancel(dialer *d) {
  if (!d || d->finished)
    return;
  stop(d);
  maybe_free(d);
}

static void timer_cb(uv_timer_t *t);

/* Arm the timer for the nearer of the two limits. */
static void arm(dialer *d) {
  uint64_t now = uv_now(d->loop), at = d->deadline;
  if (d->o.attempt_ms && d->next < d->n_addrs) {
    uint64_t a = now + d->o.attempt_ms;
    if (!at || a < at)
      at = a;
  }
  if (at)
    uv_timer_start(&d->timer, timer_cb, at > now ? at - now : 0, 0);
  else
    uv_timer_stop(&d->timer);
}

/* ---- attempts ---------------------------------------------------------- */

static void try_next(dialer *d);

static void st_connect(void *ctx, const char *error) {
  dialer *d = ctx;
  if (error) {
    snprintf(d->reason, sizeof d->reason, "%s", error);
    stream_close(d->st); /* the next address gets a fresh socket */
    d->st = NULL;
    try_next(d);
    return;
  }
  stream *st = d->st;
  d->st = NULL;
  d->n_streams--; /* not ours any more: its on_closed goes to the caller */
  stream_set_owner(st, d->cbs, d->ctx);
  finish(d, st, DIAL_OK, NULL);
}

static void st_read(void *ctx, const char *p, size_t n) {
  (void)ctx, (void)p, (void)n; /* reading starts only after the hand-over */
}
static void st_error(void *ctx, const char *reason, bool tls, bool verify) {
  (void)ctx, (void)reason, (void)tls, (void)verify;
}
static void st_event(void *ctx) {
  (void)ctx;
}
static void st_closed(void *ctx) {
  dialer *d = ctx;
  d->n_streams--;
  maybe_free(d);
}

static const stream_cbs attempt_cbs = {st_connect, st_read,  st_error,
                                       st_event,   st_event, st_closed};

static void try_next(dialer *d) {
  if (d->next >= d->n_addrs) {
    finish(d, NULL, DIAL_CONNECT, d->reason[0] ? d->reason : "no address");
    return;
  }
  d->st = stream_new(d->loop, &attempt_cbs, d);
  d->n_streams++;
  stream_connect(d->st, (const struct sockaddr *)&d->addrs[d->next++]);
  arm(d);
}

static void timer_cb(uv_timer_t *t) {
  dialer *d = t->data;
  if (d->deadline && uv_now(d->loop) >= d->deadline) {
    finish(d, NULL, DIAL_TIMEOUT, "timed out");
    return;
  }
  /* This attempt took too long: leave it and try the next address. */
  stream_close(d->st);
  d->st = NULL;
  snprintf(d->reason, sizeof d->reason, "%s", "timed out");
  try_next(d);
}

/* ---- starting ---------------------------------------------------------- */

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  dialer *d = req->data;
  d->gai_pending = false;
  for (struct addrinfo *a = res; a && d->n_addrs < DIAL_MAX_ADDRS; a = a->ai_next)
    if (a->ai_addrlen <= sizeof d->addrs[0])
      memcpy(&d->addrs[d->n_addrs++], a->ai_addr, a->ai_addrlen);
  uv_freeaddrinfo(res);
  if (d->finished) {
    maybe_free(d);
    return;
  }
  if (status < 0 || d->n_addrs == 0) {
    finish(d, NULL, DIAL_DNS, status < 0 ? uv_strerror(status) : "no address");
    return;
  }
  try_next(d);
}

static void ev_cb(void *arg) {
  dialer *d = arg;
  if (d->why == DIAL_OK)
    try_next(d);
  else
    finish(d, NULL, d->why, d->reason);
}

static dialer *dialer_new(uv_loop_t *loop, const dial_opts *o, const stream_cbs *cbs, void *ctx,
                          dial_done_fn done, void *arg) {
  dialer *d = stp_xcalloc(1, sizeof *d);
  d->loop = loop;
  d->cbs = cbs;
  d->ctx = ctx;
  d->done = done;
  d->arg = arg;
  if (o)
    d->o = *o;
  uv_timer_init(loop, &d->timer);
  d->timer.data = d;
  d->timer_open = true;
  if (d->o.timeout_ms) {
    d->deadline = uv_now(loop) + d->o.timeout_ms;
    arm(d);
  }
  return d;
}

/* An outcome known now is delivered from the loop (defer.h). */
static void later(dialer *d, dial_result why, const char *reason) {
  d->why = why;
  snprintf(d->reason, sizeof d->reason, "%s", reason ? reason : "");
  defer_post(d->loop, &d->ev, ev_cb, d);
}

static bool is_invalid_tld(const char *host) {
  size_t n = strlen(host);
  if (n && host[n - 1] == '.')
    n--;
  return (n == 7 && !stp_ascii_ncasecmp(host, "invalid", 7)) ||
         (n > 7 && !stp_ascii_ncasecmp(host + n - 8, ".invalid", 8));
}

dialer *dialer_start(uv_loop_t *loop, const char *host, uint16_t port, const dial_opts *o,
                     const stream_cbs *cbs, void *ctx, dial_done_fn done, void *arg) {
  dialer *d = dialer_new(loop, o, cbs, ctx, done, arg);
  if (is_invalid_tld(host)) {
    later(d, DIAL_DNS, uv_strerror(UV_EAI_NONAME));
    return d;
  }
  char service[8];
  snprintf(service, sizeof service, "%u", port);
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  d->gai.data = d;
  int rc = uv_getaddrinfo(loop, &d->gai, gai_cb, host, service, &hints);
  if (rc < 0)
    later(d, DIAL_DNS, uv_strerror(rc));
  else
    d->gai_pending = true;
  return d;
}

dialer *dialer_start_addrs(uv_loop_t *loop, const struct sockaddr *const *addrs, size_t n,
                           const dial_opts *o, const stream_cbs *cbs, void *ctx, dial_done_fn done,
                           void *arg) {
  dialer *d = dialer_new(loop, o, cbs, ctx, done, arg);
  for (size_t i = 0; i < n && d->n_addrs < DIAL_MAX_ADDRS; i++) {
    size_t len =
        addrs[i]->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    memcpy(&d->addrs[d->n_addrs++], addrs[i], len);
  }
  later(d, d->n_addrs ? DIAL_OK : DIAL_CONNECT, "no address");
  return d;
}
