/* history.c - the delivery history ring (see history.h). */
#include "smtp-tls-proxy/history.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "smtp-tls-proxy/esc.h"

static const char *const result_names[HR_N] = {"delivered", "rejected", "deferred", "spooled",
                                               "aborted"};

const char *history_result_name(int r) {
  return r >= 0 && r < HR_N ? result_names[r] : "unknown";
}

int history_result_parse(const char *s, size_t len) {
  for (int i = 0; i < HR_N; i++)
    if (strlen(result_names[i]) == len && !memcmp(result_names[i], s, len))
      return i;
  return -1;
}

void history_time_text(int64_t ms, char out[32]) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  if (ms < 0 || !gmtime_r(&t, &tm)) {
    snprintf(out, 32, "-");
    return;
  }
  size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + n, 32 - n, ".%03dZ", (int)(ms % 1000));
}

void history_init(history *h, size_t cap, int64_t (*clock_ms)(void)) {
  memset(h, 0, sizeof *h);
  h->cap = cap ? cap : HISTORY_DEFAULT;
  h->ring = stp_xcalloc(h->cap, sizeof *h->ring);
  h->clock_ms = clock_ms;
}

void history_free(history *h) {
  if (!h->ring)
    return;
  for (size_t i = 0; i < h->cap; i++)
    free(h->ring[i]);
  free(h->ring);
  memset(h, 0, sizeof *h);
}

static uint64_t num(const char *s) {
  if (!s)
    return 0;
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  return end != s && *end == '\0' ? (uint64_t)v : 0;
}

/* The message event's keys, in history field order (the '_' ones are
 * observer-only keys that session_out.c adds for this module). */
static const char *const field_key[HF_N] = {[HF_SID] = NULL,
                                            [HF_CLIENT] = "client",
                                            [HF_LISTENER] = "_listener",
                                            [HF_ROUTE] = "route",
                                            [HF_UPSTREAM] = "upstream",
                                            [HF_FROM] = "from",
                                            [HF_FROM_REWRITTEN] = "from_rewritten",
                                            [HF_RCPTS] = "_rcpt_list",
                                            [HF_REPLY] = "reply",
                                            [HF_SPOOL_ID] = "_spool_id"};

static size_t field_cap(int f) {
  switch (f) {
  case HF_FROM:
  case HF_FROM_REWRITTEN:
    return HISTORY_ADDR_MAX;
  case HF_RCPTS:
    return HISTORY_RCPTS_MAX;
  case HF_REPLY:
    return HISTORY_REPLY_MAX;
  default:
    return HISTORY_NAME_MAX;
  }
}

void history_observe(void *ctx, int level, const char *sid, const char *event, const stp_kv *kv,
                     size_t n) {
  history *h = ctx;
  (void)level;
  if (!h->ring || strcmp(event, "message") != 0)
    return;
  const char *res = stp_kv_get(kv, n, "result");
  int r = res ? history_result_parse(res, strlen(res)) : -1;
  if (r < 0)
    return;
  const char *val[HF_N];
  size_t len[HF_N], total = 0;
  for (int f = 0; f < HF_N; f++) {
    val[f] = f == HF_SID ? sid : stp_kv_get(kv, n, field_key[f]);
    if (!val[f] || (val[f][0] == '-' && !val[f][1]))
      val[f] = ""; /* the log's "-" for none */
    len[f] = esc_utf8_cut(val[f], field_cap(f));
    total += len[f] + 1;
  }
  history_entry *e = stp_xmalloc(sizeof *e + total);
  e->time_ms = h->clock_ms ? h->clock_ms() : 0;
  e->size = num(stp_kv_get(kv, n, "size"));
  e->duration_ms = num(stp_kv_get(kv, n, "duration_ms"));
  e->n_rcpts = (uint32_t)num(stp_kv_get(kv, n, "rcpts"));
  e->result = (uint8_t)r;
  e->bytes = (uint32_t)(sizeof *e + total);
  size_t at = 0;
  for (int f = 0; f < HF_N; f++) {
    e->off[f] = (uint16_t)at;
    memcpy(e->text + at, val[f], len[f]);
    e->text[at + len[f]] = '\0';
    at += len[f] + 1;
  }
  history_entry *old = h->ring[h->head];
  if (old) {
    h->bytes -= old->bytes;
    free(old);
  }
  h->ring[h->head] = e;
  h->bytes += sizeof *e + total;
  h->head = (h->head + 1) % h->cap;
  if (h->n < h->cap)
    h->n++;
  h->total++;
}

const history_entry *history_get(const history *h, size_t i) {
  if (i >= h->n)
    return NULL;
  return h->ring[(h->head + h->cap - 1 - i) % h->cap];
}

static int entry_json(const history_entry *e, stp_buf *b) {
  static const char *const json_key[HF_N] = {[HF_SID] = "sid",
                                             [HF_CLIENT] = "client",
                                             [HF_LISTENER] = "listener",
                                             [HF_ROUTE] = "route",
                                             [HF_UPSTREAM] = "upstream",
                                             [HF_FROM] = "from",
                                             [HF_FROM_REWRITTEN] = "from_rewritten",
                                             [HF_RCPTS] = NULL,
                                             [HF_REPLY] = "reply",
                                             [HF_SPOOL_ID] = "spool_id"};
  char when[32];
  history_time_text(e->time_ms, when);
  int rc = stp_buf_appendf(b, "{\"time\":\"%s\"", when);
  for (int f = 0; f < HF_N && rc == 0; f++) {
    const char *v = history_field(e, f);
    if (json_key[f])
      rc = esc_json_kv(b, json_key[f], *v || f == HF_SID ? v : NULL, 0);
  }
  /* rcpts: the list as a JSON array (the session joined it with ", ") */
  if (rc == 0)
    rc = stp_buf_append(b, ",\"rcpts\":[", 10);
  const char *p = history_field(e, HF_RCPTS);
  for (bool first = true; *p && rc == 0; first = false) {
    size_t l = strcspn(p, ",");
    char one[HISTORY_RCPTS_MAX + 1];
    memcpy(one, p, l);
    one[l] = '\0';
    rc = stp_buf_appendf(b, "%s\"", first ? "" : ",");
    if (rc == 0)
      rc = esc_json(b, one);
    if (rc == 0)
      rc = stp_buf_append(b, "\"", 1);
    p += l;
    while (*p == ',' || *p == ' ')
      p++;
  }
  if (rc == 0)
    rc = stp_buf_appendf(b,
                         "],\"n_rcpts\":%" PRIu32 ",\"size\":%" PRIu64
                         ",\"result\":\"%s\",\"duration_ms\":%" PRIu64 "}",
                         e->n_rcpts, e->size, history_result_name(e->result), e->duration_ms);
  return rc;
}

int history_json(const history *h, size_t limit, int result, stp_buf *out) {
  if (stp_buf_append(out, "[", 1) < 0 || out->cap - out->len < 1)
    return STP_EFULL;
  out->cap--; /* room for the closing bracket, whatever happens */
  size_t shown = 0;
  for (size_t i = 0; i < h->n && (!limit || shown < limit); i++) {
    const history_entry *e = history_get(h, i);
    if (result >= 0 && e->result != result)
      continue;
    size_t mark = out->len;
    if ((shown && stp_buf_append(out, ",", 1) < 0) || entry_json(e, out) < 0) {
      out->len = mark; /* past the bound: the newest ones that fit, still a list */
      break;
    }
    shown++;
  }
  out->cap++;
  return stp_buf_append(out, "]", 1);
}
