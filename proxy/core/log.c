/* log.c - one line per event, text or JSON, written with a single write(2).
 *
 * Owns: the process-wide log level, format and descriptor. Guarantees:
 * values are escaped (no CR/LF/control bytes reach the log raw, so a device
 * cannot forge lines); lines are capped at STP_LOG_LINE_MAX bytes. Callers
 * never pass secrets: the modules that handle them log only their names.
 */
#include "smtp-tls-proxy/log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "smtp-tls-proxy/util.h"

#define STP_LOG_LINE_MAX 4096

static int g_level = STP_LOG_INFO;
static int g_json;
static int g_fd = 2;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void stp_log_setup(int level, int json, int fd) {
  g_level = level;
  g_json = json;
  g_fd = fd;
}

int stp_log_level(void) {
  return g_level;
}

const char *stp_log_level_name(int level) {
  if (level < 0 || level > STP_LOG_DEBUG)
    return "?";
  return level_names[level];
}

int stp_log_parse_level(const char *s) {
  if (!stp_ascii_casecmp(s, "warning"))
    return STP_LOG_WARN;
  for (int i = 0; i <= STP_LOG_DEBUG; i++)
    if (!stp_ascii_casecmp(s, level_names[i]))
      return i;
  return -1;
}

/* A tiny bounded writer: appends until full, then silently truncates. */
typedef struct lw {
  char *p;
  size_t len, cap;
} lw;

static void lw_putc(lw *w, char c) {
  if (w->len + 1 < w->cap)
    w->p[w->len++] = c;
}

static void lw_puts(lw *w, const char *s) {
  while (*s)
    lw_putc(w, *s++);
}

static bool needs_quotes(const char *s) {
  if (!*s)
    return true;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f)
      return true;
  }
  return false;
}

/* Escape for both formats: JSON string rules are a superset of what the
 * text format needs inside quotes. */
static void lw_escaped(lw *w, const char *s) {
  static const char hex[] = "0123456789abcdef";
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    switch (c) {
    case '"':
      lw_puts(w, "\\\"");
      break;
    case '\\':
      lw_puts(w, "\\\\");
      break;
    case '\n':
      lw_puts(w, "\\n");
      break;
    case '\r':
      lw_puts(w, "\\r");
      break;
    case '\t':
      lw_puts(w, "\\t");
      break;
    default:
      if (c < 0x20 || c == 0x7f) {
        lw_puts(w, "\\u00");
        lw_putc(w, hex[c >> 4]);
        lw_putc(w, hex[c & 15]);
      } else {
        lw_putc(w, (char)c);
      }
    }
  }
}

static void lw_timestamp(lw *w) {
  struct timeval tv;
  struct tm tm;
  char ts[40];
  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(ts + n, sizeof ts - n, ".%03dZ", (int)(tv.tv_usec / 1000));
  lw_puts(w, ts);
}

static void text_pair(lw *w, const char *k, const char *v) {
  lw_putc(w, ' ');
  lw_puts(w, k);
  lw_putc(w, '=');
  if (needs_quotes(v)) {
    lw_putc(w, '"');
    lw_escaped(w, v);
    lw_putc(w, '"');
  } else {
    lw_puts(w, v);
  }
}

/* Keys whose values are counts or durations: JSON gets them as numbers,
 * so that log pipelines can sum and compare them without a cast. */
static bool numeric_key(const char *k) {
  static const char *const keys[] = {"rcpts",   "size",     "duration_ms",
                                     "skip_ms", "grace_ms", "expires_in"};
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
    if (!strcmp(k, keys[i]))
      return true;
  return false;
}

/* A JSON integer: -?(0|[1-9][0-9]*), at most 20 digits (never invalid
 * JSON, whatever a caller passes under a numeric key). */
static bool json_integer(const char *v) {
  const char *p = v + (*v == '-');
  size_t n = strspn(p, "0123456789");
  return n > 0 && n <= 20 && !p[n] && (p[0] != '0' || n == 1);
}

static void json_pair(lw *w, const char *k, const char *v) {
  lw_puts(w, ",\"");
  lw_escaped(w, k);
  if (numeric_key(k) && json_integer(v)) {
    lw_puts(w, "\":");
    lw_puts(w, v);
    return;
  }
  lw_puts(w, "\":\"");
  lw_escaped(w, v);
  lw_putc(w, '"');
}

size_t stp_log_format_line(char *buf, size_t cap, int json, int level, const char *sid,
                           const char *event, const stp_kv *kv, size_t n) {
  lw w = {buf, 0, cap};
  if (cap == 0)
    return 0;
  if (json) {
    lw_puts(&w, "{\"ts\":\"");
    lw_timestamp(&w);
    lw_puts(&w, "\"");
    json_pair(&w, "level", stp_log_level_name(level));
    json_pair(&w, "event", event);
    if (sid)
      json_pair(&w, "sid", sid);
    for (size_t i = 0; i < n; i++)
      if (kv[i].val && kv[i].key[0] != '_')
        json_pair(&w, kv[i].key, kv[i].val);
    /* Keep room for the closing brace even when truncated. */
    if (w.len + 3 > cap)
      w.len = cap > 3 ? cap - 3 : 0;
    lw_puts(&w, "}");
  } else {
    lw_timestamp(&w);
    lw_putc(&w, ' ');
    lw_puts(&w, stp_log_level_name(level));
    lw_putc(&w, ' ');
    lw_puts(&w, event);
    if (sid)
      text_pair(&w, "sid", sid);
    for (size_t i = 0; i < n; i++)
      if (kv[i].val && kv[i].key[0] != '_')
        text_pair(&w, kv[i].key, kv[i].val);
  }
  w.p[w.len] = '\0';
  return w.len;
}

static struct {
  stp_log_observer_fn fn;
  void *ctx;
} g_obs[STP_LOG_OBSERVERS];

int stp_log_observe(stp_log_observer_fn fn, void *ctx) {
  for (size_t i = 0; i < STP_LOG_OBSERVERS; i++)
    if (!g_obs[i].fn) {
      g_obs[i].fn = fn;
      g_obs[i].ctx = ctx;
      return 0;
    }
  return -1;
}

void stp_log_unobserve(stp_log_observer_fn fn, void *ctx) {
  for (size_t i = 0; i < STP_LOG_OBSERVERS; i++)
    if (g_obs[i].fn == fn && g_obs[i].ctx == ctx)
      g_obs[i].fn = NULL;
}

const char *stp_kv_get(const stp_kv *kv, size_t n, const char *key) {
  for (size_t i = 0; i < n; i++)
    if (!strcmp(kv[i].key, key))
      return kv[i].val;
  return NULL;
}

void stp_log_kv(int level, const char *sid, const char *event, const stp_kv *kv, size_t n) {
  for (size_t i = 0; i < STP_LOG_OBSERVERS; i++)
    if (g_obs[i].fn)
      g_obs[i].fn(g_obs[i].ctx, level, sid, event, kv, n);
  if (level > g_level)
    return;
  char line[STP_LOG_LINE_MAX];
  size_t len = stp_log_format_line(line, sizeof line - 1, g_json, level, sid, event, kv, n);
  line[len++] = '\n';
  /* One write so lines from different sessions never interleave. */
  ssize_t r = write(g_fd, line, len);
  (void)r;
}

void stp_logf(int level, const char *sid, const char *fmt, ...) {
  if (level > g_level)
    return;
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  stp_kv kv[] = {{"msg", msg}};
  stp_log_kv(level, sid, "log", kv, 1);
}
