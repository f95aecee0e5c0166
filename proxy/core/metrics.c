/* metrics.c - the metrics registry, its Prometheus text, and what a
 * request to the /metrics endpoint asks for.
 *
 * Owns: the family table, a bounded series table with an open-addressing
 * index, and the renderer. Guarantees: see metrics.h. Updates are a hash
 * over the label values plus a short probe; the first update of a series
 * allocates its label strings (and buckets, for a histogram), later ones
 * touch only numbers. Nothing here does I/O.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp-tls-proxy/metrics.h"
#include "smtp-tls-proxy/util.h"

#define MAX_LABELS 3
#define INDEX_SLOTS 8192 /* power of two, twice METRICS_MAX_SERIES */

typedef enum { T_COUNTER, T_GAUGE, T_HISTOGRAM } ftype;

typedef struct family {
  const char *name;
  const char *help;
  ftype type;
  unsigned nlabels;
  const char *labels[MAX_LABELS];
} family;

/* Sorted by name: the render walks this table in order. */
enum {
  F_FAILOVERS,
  F_MESSAGE_BYTES,
  F_MESSAGES,
  F_DROPPED,
  F_OAUTH2_FAILURES,
  F_OAUTH2_EXPIRY,
  F_RATE_LIMITED,
  F_REFUSED,
  F_SESSIONS_ACTIVE,
  F_SESSIONS_TOTAL,
  F_SPOOL_BYTES,
  F_SPOOL_DELIVERIES,
  F_SPOOL_MESSAGES,
  F_SPOOL_OLDEST,
  F_UP_FAILURES,
  F_UP_LAST_SUCCESS,
  F_UP_LATENCY,
  F_POOL,
  F_UP_UP,
  F_COUNT
};

static const family families[F_COUNT] = {
    [F_FAILOVERS] = {"smtp_proxy_failovers_total",
                     "Times a route moved on from a failed upstream to the next one.",
                     T_COUNTER,
                     3,
                     {"route", "from", "to"}},
    [F_MESSAGE_BYTES] = {"smtp_proxy_message_bytes_total",
                         "Message bytes received from clients, whatever the result.",
                         T_COUNTER,
                         2,
                         {"route", "upstream"}},
    [F_MESSAGES] = {"smtp_proxy_messages_total",
                    "Messages by route, upstream and result "
                    "(delivered, rejected = 5xx, deferred = 4xx, aborted).",
                    T_COUNTER,
                    3,
                    {"route", "upstream", "result"}},
    [F_DROPPED] = {"smtp_proxy_metrics_dropped_series_total",
                   "Metric updates lost because the series table was full.",
                   T_COUNTER,
                   0,
                   {NULL}},
    [F_OAUTH2_FAILURES] = {"smtp_proxy_oauth2_refresh_failures_total",
                           "Failed OAuth2 token fetches by reason (the endpoint's OAuth error "
                           "code, or network, http_status, bad_response, signing, command).",
                           T_COUNTER,
                           2,
                           {"upstream", "reason"}},
    [F_OAUTH2_EXPIRY] = {"smtp_proxy_oauth2_token_expiry_timestamp_seconds",
                         "When the cached OAuth2 access token expires (unix time; 0: none yet).",
                         T_GAUGE,
                         1,
                         {"upstream"}},
    [F_RATE_LIMITED] = {"smtp_proxy_rate_limited_total",
                        "Commands or connections refused by a rate limit.",
                        T_COUNTER,
                        2,
                        {"scope", "name"}},
    [F_REFUSED] = {"smtp_proxy_refused_connections_total",
                   "Client connections refused before SMTP (allow list, connection limits).",
                   T_COUNTER,
                   2,
                   {"listener", "reason"}},
    [F_SESSIONS_ACTIVE] =
        {"smtp_proxy_sessions_active", "Client sessions open now.", T_GAUGE, 1, {"listener"}},
    [F_SESSIONS_TOTAL] =
        {"smtp_proxy_sessions_total", "Client sessions started.", T_COUNTER, 1, {"listener"}},
    [F_SPOOL_BYTES] =
        {"smtp_proxy_spool_bytes", "Bytes of the messages in the local spool.", T_GAUGE, 0, {NULL}},
    [F_SPOOL_DELIVERIES] = {"smtp_proxy_spool_deliveries_total",
                            "Delivery attempts from the local spool by result "
                            "(delivered, deferred, failed = 5xx, expired = max_age).",
                            T_COUNTER,
                            1,
                            {"result"}},
    [F_SPOOL_MESSAGES] =
        {"smtp_proxy_spool_messages", "Messages in the local spool.", T_GAUGE, 0, {NULL}},
    [F_SPOOL_OLDEST] = {"smtp_proxy_spool_oldest_seconds",
                        "Age of the oldest message in the local spool (0 when empty).",
                        T_GAUGE,
                        0,
                        {NULL}},
    [F_UP_FAILURES] = {"smtp_proxy_upstream_failures_total",
                       "Upstream failures and provider refusals by reason "
                       "(dns, connect, tls, starttls, greeting, auth, timeout, closed, protocol, "
                       "or the provider table word).",
                       T_COUNTER,
                       2,
                       {"upstream", "reason"}},
    [F_UP_LAST_SUCCESS] = {"smtp_proxy_upstream_last_success_timestamp_seconds",
                           "Unix time of the upstream's last delivery or successful probe.",
                           T_GAUGE,
                           1,
                           {"upstream"}},
    [F_UP_LATENCY] = {"smtp_proxy_upstream_latency_seconds",
                      "Upstream latency: TCP connect, ready to send mail, reply to the final dot.",
                      T_HISTOGRAM,
                      2,
                      {"upstream", "phase"}},
    [F_POOL] = {"smtp_proxy_upstream_pool_connections",
                "Idle upstream connections kept for reuse.",
                T_GAUGE,
                1,
                {"upstream"}},
    [F_UP_UP] = {"smtp_proxy_upstream_up",
                 "1 when the upstream's last probe or delivery attempt worked, else 0.",
                 T_GAUGE,
                 1,
                 {"upstream"}},
};

static const double bucket_le[] = METRICS_LATENCY_BUCKETS;
/* Written out rather than printed with %g: fixed text, no locale. */
static const char *const bucket_le_text[] = {"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
                                             "1",     "2.5",  "5",     "10",   "30",  "60"};
#define NBUCKETS (sizeof bucket_le / sizeof bucket_le[0])
_Static_assert(sizeof bucket_le_text / sizeof bucket_le_text[0] == NBUCKETS,
               "bucket bounds and their text must match");

typedef struct series {
  uint32_t hash;
  unsigned fam;
  char *labels[MAX_LABELS]; /* into one allocation owned by labels[0] */
  uint64_t count;           /* counter value; histogram observations */
  int64_t gauge;
  double sum;        /* histogram */
  uint64_t *buckets; /* histogram, per bucket (not cumulative) */
} series;

static series table[METRICS_MAX_SERIES];
static size_t n_series;
static uint16_t slots[INDEX_SLOTS]; /* index + 1; 0 = empty */
static uint64_t dropped;

_Static_assert(METRICS_MAX_SERIES < UINT16_MAX, "slot indices are 16-bit");
_Static_assert(INDEX_SLOTS >= 2 * METRICS_MAX_SERIES, "index load factor <= 1/2");

void metrics_reset(void) {
  for (size_t i = 0; i < n_series; i++) {
    free(table[i].labels[0]);
    free(table[i].buckets);
  }
  memset(table, 0, sizeof table);
  memset(slots, 0, sizeof slots);
  n_series = 0;
  dropped = 0;
}

/* Stored length of a label value: at most METRICS_MAX_LABEL bytes, cut
 * before a UTF-8 sequence that would not fit whole. */
static size_t label_len(const char *s) {
  size_t n = strnlen(s, METRICS_MAX_LABEL);
  if (n == METRICS_MAX_LABEL && s[n] != '\0')
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
      n--;
  return n;
}

static uint32_t fnv1a(uint32_t h, const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)p[i];
    h *= 16777619u;
  }
  return h;
}

static bool same_labels(const series *s, unsigned nl, const char *const *v, const size_t *len) {
  for (unsigned i = 0; i < nl; i++)
    if (strlen(s->labels[i]) != len[i] || memcmp(s->labels[i], v[i], len[i]) != 0)
      return false;
  return true;
}

static series *create(unsigned fam, uint32_t h, const char *const *v, const size_t *len) {
  const family *f = &families[fam];
  series *s = &table[n_series];
  size_t total = 1;
  for (unsigned i = 0; i < f->nlabels; i++)
    total += len[i] + 1;
  char *p = stp_xmalloc(total);
  s->labels[0] = p; /* also for nlabels == 0, so one free() fits all */
  for (unsigned i = 0; i < f->nlabels; i++) {
    s->labels[i] = p;
    memcpy(p, v[i], len[i]);
    p[len[i]] = '\0';
    p += len[i] + 1;
  }
  s->hash = h;
  s->fam = fam;
  if (f->type == T_HISTOGRAM)
    s->buckets = stp_xcalloc(NBUCKETS, sizeof *s->buckets);
  n_series++;
  return s;
}

/* The series of family fam with these label values (NULL reads as ""),
 * created on first use; NULL when the table is full. */
static series *lookup(unsigned fam, const char *a, const char *b, const char *c) {
  const family *f = &families[fam];
  const char *v[MAX_LABELS] = {a ? a : "", b ? b : "", c ? c : ""};
  size_t len[MAX_LABELS];
  uint32_t h = (2166136261u ^ fam) * 16777619u;
  for (unsigned i = 0; i < f->nlabels; i++) {
    len[i] = label_len(v[i]);
    h = fnv1a(h, v[i], len[i]);
    h = fnv1a(h, "\xff", 1); /* never inside UTF-8, so "a"+"bc" != "ab"+"c" */
  }
  for (uint32_t k = h & (INDEX_SLOTS - 1);; k = (k + 1) & (INDEX_SLOTS - 1)) {
    if (slots[k] == 0) {
      if (n_series == METRICS_MAX_SERIES) {
        dropped++;
        return NULL;
      }
      slots[k] = (uint16_t)(n_series + 1);
      return create(fam, h, v, len);
    }
    series *s = &table[slots[k] - 1];
    if (s->hash == h && s->fam == fam && same_labels(s, f->nlabels, v, len))
      return s;
  }
}

static void counter_add(unsigned fam, const char *a, const char *b, const char *c, uint64_t n) {
  series *s = lookup(fam, a, b, c);
  if (s)
    s->count += n;
}

void metrics_session_open(const char *listener) {
  series *s = lookup(F_SESSIONS_ACTIVE, listener, NULL, NULL);
  if (s)
    s->gauge++;
  counter_add(F_SESSIONS_TOTAL, listener, NULL, NULL, 1);
}

void metrics_session_close(const char *listener) {
  series *s = lookup(F_SESSIONS_ACTIVE, listener, NULL, NULL);
  if (s && s->gauge > 0) /* an unmatched close must not show -1 sessions */
    s->gauge--;
}

void metrics_refused_connection(const char *listener, const char *reason) {
  counter_add(F_REFUSED, listener, reason, NULL, 1);
}

void metrics_message(const char *route, const char *upstream, const char *result, uint64_t bytes) {
  counter_add(F_MESSAGES, route, upstream, result, 1);
  counter_add(F_MESSAGE_BYTES, route, upstream, NULL, bytes);
}

void metrics_upstream_failure(const char *upstream, const char *reason) {
  counter_add(F_UP_FAILURES, upstream, reason, NULL, 1);
}

void metrics_failover(const char *route, const char *from, const char *to) {
  counter_add(F_FAILOVERS, route, from, to, 1);
}

void metrics_rate_limited(const char *scope, const char *name) {
  counter_add(F_RATE_LIMITED, scope, name, NULL, 1);
}

void metrics_upstream_latency(const char *upstream, const char *phase, double seconds) {
  if (!isfinite(seconds))
    return;
  if (seconds < 0)
    seconds = 0;
  series *s = lookup(F_UP_LATENCY, upstream, phase, NULL);
  if (!s)
    return;
  for (size_t i = 0; i < NBUCKETS; i++) {
    if (seconds <= bucket_le[i]) {
      s->buckets[i]++;
      break;
    }
  }
  s->count++; /* the +Inf bucket */
  s->sum += seconds;
}

void metrics_pool_size(const char *upstream, long n) {
  series *s = lookup(F_POOL, upstream, NULL, NULL);
  if (s)
    s->gauge = n;
}

void metrics_oauth2_expiry(const char *upstream, int64_t unix_seconds) {
  series *s = lookup(F_OAUTH2_EXPIRY, upstream, NULL, NULL);
  if (s)
    s->gauge = unix_seconds;
}

void metrics_oauth2_refresh_failure(const char *upstream, const char *reason) {
  counter_add(F_OAUTH2_FAILURES, upstream, reason, NULL, 1);
}

void metrics_upstream_health(const char *upstream, bool up, int64_t last_success) {
  series *s = lookup(F_UP_UP, upstream, NULL, NULL);
  if (s)
    s->gauge = up;
  if (last_success && (s = lookup(F_UP_LAST_SUCCESS, upstream, NULL, NULL)) != NULL)
    s->gauge = last_success;
}

void metrics_spool(uint64_t messages, uint64_t bytes, uint64_t oldest_seconds) {
  const unsigned fam[3] = {F_SPOOL_MESSAGES, F_SPOOL_BYTES, F_SPOOL_OLDEST};
  const uint64_t val[3] = {messages, bytes, oldest_seconds};
  for (size_t i = 0; i < 3; i++) {
    series *s = lookup(fam[i], NULL, NULL, NULL);
    if (s)
      s->gauge = val[i] > INT64_MAX ? INT64_MAX : (int64_t)val[i];
  }
}

void metrics_spool_delivery(const char *result) {
  counter_add(F_SPOOL_DELIVERIES, result, NULL, NULL, 1);
}

/* --- rendering ------------------------------------------------------------ */

/* Writes whole lines into buf while they fit and counts every byte, so one
 * walk serves both metrics_render and metrics_render_size. */
typedef struct writer {
  char *buf;
  size_t cap;
  size_t len;   /* bytes kept in buf */
  size_t line;  /* len at the start of the current line */
  size_t total; /* bytes of the whole text */
  bool full;
} writer;

static void put(writer *w, const char *p, size_t n) {
  w->total += n;
  if (w->full)
    return;
  if (n > w->cap - w->len) {
    w->full = true;
    w->len = w->line; /* drop the partial line */
    return;
  }
  memcpy(w->buf + w->len, p, n);
  w->len += n;
}

static void puts_(writer *w, const char *s) {
  put(w, s, strlen(s));
}

static void endline(writer *w) {
  put(w, "\n", 1);
  if (!w->full)
    w->line = w->len;
}

static void put_escaped(writer *w, const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  size_t n = strlen(s), run = 0;
  for (size_t i = 0; i < n;) {
    const char *esc = NULL;
    size_t adv = 1;
    if (p[i] == '\\')
      esc = "\\\\";
    else if (p[i] == '"')
      esc = "\\\"";
    else if (p[i] == '\n')
      esc = "\\n";
    else if (p[i] >= 0x80 && (adv = stp_utf8_seq(p + i, n - i, NULL)) == 0) {
      esc = "\xEF\xBF\xBD"; /* U+FFFD for a byte that is not UTF-8 */
      adv = 1;
    }
    if (esc) {
      put(w, s + run, i - run);
      puts_(w, esc);
      run = i + adv;
    }
    i += adv;
  }
  put(w, s + run, n - run);
}

/* name{l1="v1",...[,le="x"]} — the braces are left out with no labels. */
static void put_name(writer *w, const family *f, const char *suffix, const series *s,
                     const char *le) {
  puts_(w, f->name);
  puts_(w, suffix);
  if (f->nlabels == 0 && !le)
    return;
  put(w, "{", 1);
  for (unsigned i = 0; i < f->nlabels; i++) {
    if (i)
      put(w, ",", 1);
    puts_(w, f->labels[i]);
    put(w, "=\"", 2);
    put_escaped(w, s->labels[i]);
    put(w, "\"", 1);
  }
  if (le) {
    if (f->nlabels)
      put(w, ",", 1);
    put(w, "le=\"", 4);
    puts_(w, le);
    put(w, "\"", 1);
  }
  put(w, "}", 1);
}

static void put_u64(writer *w, uint64_t v) {
  char num[24];
  int n = snprintf(num, sizeof num, " %" PRIu64, v);
  put(w, num, (size_t)n);
  endline(w);
}

static void put_i64(writer *w, int64_t v) {
  char num[24];
  int n = snprintf(num, sizeof num, " %" PRId64, v);
  put(w, num, (size_t)n);
  endline(w);
}

static void put_double(writer *w, double v) {
  char num[40];
  int n = snprintf(num, sizeof num, " %.15g", v);
  put(w, num, (size_t)n);
  endline(w);
}

static void render_series(writer *w, const family *f, const series *s) {
  switch (f->type) {
  case T_COUNTER:
    put_name(w, f, "", s, NULL);
    put_u64(w, s->count);
    break;
  case T_GAUGE:
    put_name(w, f, "", s, NULL);
    put_i64(w, s->gauge);
    break;
  case T_HISTOGRAM: {
    uint64_t cum = 0;
    for (size_t i = 0; i < NBUCKETS; i++) {
      cum += s->buckets[i];
      put_name(w, f, "_bucket", s, bucket_le_text[i]);
      put_u64(w, cum);
    }
    put_name(w, f, "_bucket", s, "+Inf");
    put_u64(w, s->count);
    put_name(w, f, "_sum", s, NULL);
    put_double(w, s->sum);
    put_name(w, f, "_count", s, NULL);
    put_u64(w, s->count);
    break;
  }
  }
}

static int cmp_series(const void *x, const void *y) {
  const series *a = &table[*(const uint16_t *)x], *b = &table[*(const uint16_t *)y];
  if (a->fam != b->fam)
    return a->fam < b->fam ? -1 : 1;
  for (unsigned i = 0; i < families[a->fam].nlabels; i++) {
    int c = strcmp(a->labels[i], b->labels[i]);
    if (c)
      return c;
  }
  return 0;
}

static void render(writer *w) {
  static uint16_t order[METRICS_MAX_SERIES];
  for (size_t i = 0; i < n_series; i++)
    order[i] = (uint16_t)i;
  qsort(order, n_series, sizeof order[0], cmp_series);
  size_t k = 0;
  for (unsigned fam = 0; fam < F_COUNT; fam++) {
    const family *f = &families[fam];
    static const char *const type_name[] = {"counter", "gauge", "histogram"};
    puts_(w, "# HELP ");
    puts_(w, f->name);
    put(w, " ", 1);
    puts_(w, f->help);
    endline(w);
    puts_(w, "# TYPE ");
    puts_(w, f->name);
    put(w, " ", 1);
    puts_(w, type_name[f->type]);
    endline(w);
    if (fam == F_DROPPED) {
      puts_(w, f->name);
      put_u64(w, dropped);
    }
    for (; k < n_series && table[order[k]].fam == fam; k++)
      render_series(w, f, &table[order[k]]);
  }
}

size_t metrics_render_size(void) {
  writer w = {.buf = NULL, .cap = 0};
  render(&w);
  return w.total;
}

size_t metrics_render(char *buf, size_t cap) {
  writer w = {.buf = buf, .cap = buf ? cap : 0};
  render(&w);
  return w.len;
}

/* --- what a request asks for ----------------------------------------------- */

static bool span_is(const char *p, size_t n, const char *s) {
  return strlen(s) == n && memcmp(p, s, n) == 0;
}

metrics_http_target metrics_http_classify(const http1_request *r, bool *head) {
  *head = span_is(r->method, r->method_len, "HEAD");
  if (!*head && !span_is(r->method, r->method_len, "GET"))
    return METRICS_HTTP_BAD_METHOD;
  size_t n = 0;
  while (n < r->target_len && r->target[n] != '?')
    n++;
  if (span_is(r->target, n, "/metrics"))
    return METRICS_HTTP_METRICS;
  if (span_is(r->target, n, "/healthz"))
    return METRICS_HTTP_HEALTHZ;
  return METRICS_HTTP_NOT_FOUND;
}
