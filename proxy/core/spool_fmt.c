/* spool_fmt.c - the spool's file formats, ids, retry schedule and list
 * line (see spool.h). Pure: the files themselves are proxy/net/spool.c's.
 *
 * Both parsers are strict: fields in the order the formatter writes them,
 * each exactly once (rcpt: one or more), numbers without signs or
 * overflow, the fixed-width size and hash complete. What a crash can leave
 * behind (a torn file, a placeholder never filled in) is refused, so the
 * store never delivers a message that was not committed whole.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp-tls-proxy/spool.h"
#include "smtp-tls-proxy/util.h"

#define MAGIC "smtp-tls-proxy-spool 1"
#define STATE_MAGIC "smtp-tls-proxy-state 1"

/* ---- a growing text buffer with a hard bound ----------------------------- */

typedef struct sbuf {
  char *p;
  size_t len, cap, max;
  bool bad;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) {
  if (b->bad)
    return;
  if (b->len + n + 1 > b->max) {
    b->bad = true;
    return;
  }
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 512;
    while (cap < b->len + n + 1)
      cap *= 2;
    b->p = stp_xrealloc(b->p, cap);
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static bool line_safe(const char *s) {
  return s && !strpbrk(s, "\r\n");
}

/* "key: value\n"; a value that would break the line marks the buffer bad. */
static void sb_field(sbuf *b, const char *key, const char *val) {
  if (!line_safe(val)) {
    b->bad = true;
    return;
  }
  sb_add(b, key, strlen(key));
  sb_add(b, ": ", 2);
  sb_add(b, val, strlen(val));
  sb_add(b, "\n", 1);
}

/* Free text (a reply) on one line: controls become spaces, bounded. */
static void one_line(const char *in, char *out, size_t cap) {
  size_t n = 0;
  for (; in && *in && n + 1 < cap; in++)
    out[n++] = (unsigned char)*in < 0x20 || *in == 0x7f ? ' ' : *in;
  while (n > 0 && out[n - 1] == ' ')
    n--;
  out[n] = '\0';
}

/* ---- envelope ------------------------------------------------------------- */

static const char *const body_names[] = {"none", "7bit", "8bitmime"};

void spool_env_size_text(uint64_t size, char out[SPOOL_SIZE_DIGITS]) {
  char tmp[SPOOL_SIZE_DIGITS + 1];
  snprintf(tmp, sizeof tmp, "%020" PRIu64, size);
  memcpy(out, tmp, SPOOL_SIZE_DIGITS);
}

void spool_env_reason_text(const char *reason, char out[SPOOL_REASON_MAX]) {
  char flat[SPOOL_REASON_MAX + 1];
  one_line(reason, flat, sizeof flat);
  size_t n = strlen(flat);
  memcpy(out, flat, n);
  memset(out + n, ' ', SPOOL_REASON_MAX - n);
}

void spool_env_hash_text(const uint8_t sha256[32], char out[SPOOL_HASH_HEX]) {
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < 32; i++) {
    out[2 * i] = hex[sha256[i] >> 4];
    out[2 * i + 1] = hex[sha256[i] & 15];
  }
}

/* "type;xtext" (RFC 3461 4.2), nothing a line could break on. */
static bool orcpt_valid(const char *s) {
  const char *semi = strchr(s, ';');
  if (!semi || semi == s || semi - s > 64)
    return false;
  for (const char *p = s; *p; p++)
    if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
      return false;
  return smtp_xtext_valid(semi + 1, strlen(semi + 1), SMTP_ORCPT_MAX);
}

/* The notify and orcpt lines of recipient i, when it has them. */
static void put_rcpt_dsn(sbuf *b, const spool_env *e, size_t i) {
  unsigned notify = e->notify ? e->notify[i] : 0;
  const char *orcpt = e->orcpt ? e->orcpt[i] : NULL;
  if (notify) {
    char text[64];
    sb_field(b, "notify", smtp_notify_text(notify, text, sizeof text));
  }
  if (orcpt && *orcpt) {
    b->bad |= !orcpt_valid(orcpt);
    sb_field(b, "orcpt", orcpt);
  }
}

char *spool_env_format(const spool_env *e, size_t *len, spool_env_offsets *off) {
  if (!spool_id_valid(e->id) || e->n_rcpts == 0)
    return NULL;
  sbuf b = {.max = SPOOL_HEADER_MAX};
  char num[32], reason[SPOOL_REASON_MAX + 1] = {0};
  sb_add(&b, MAGIC "\n", sizeof MAGIC);
  sb_field(&b, "id", e->id);
  sb_field(&b, "kind", e->kind == SPOOL_KIND_NOTICE ? "notice" : "message");
  snprintf(num, sizeof num, "%" PRIu64, e->created_ms);
  sb_field(&b, "created", num);
  sb_field(&b, "route", e->route);
  sb_field(&b, "listener", e->listener);
  sb_field(&b, "client", e->client);
  sb_field(&b, "from", e->from);
  sb_field(&b, "upstream-from", e->up_from);
  sb_field(&b, "body", body_names[(unsigned)e->body < 3 ? e->body : 0]);
  sb_field(&b, "smtputf8", e->smtputf8 ? "1" : "0");
  if (e->ret == SMTP_RET_FULL || e->ret == SMTP_RET_HDRS)
    sb_field(&b, "ret", e->ret == SMTP_RET_FULL ? "full" : "hdrs");
  if (e->envid && e->envid[0]) {
    b.bad |= !smtp_xtext_valid(e->envid, strlen(e->envid), SMTP_ENVID_MAX);
    sb_field(&b, "envid", e->envid);
  }
  spool_env_reason_text(e->reason, reason);
  off->reason = b.len + strlen("reason: ");
  sb_field(&b, "reason", reason);
  for (size_t i = 0; i < e->n_rcpts; i++) {
    if (!e->rcpts[i] || !e->rcpts[i][0])
      b.bad = true;
    sb_field(&b, "rcpt", e->rcpts[i]);
    put_rcpt_dsn(&b, e, i);
  }
  char size[SPOOL_SIZE_DIGITS + 1] = {0}, hash[SPOOL_HASH_HEX + 1] = {0};
  spool_env_size_text(e->size, size);
  spool_env_hash_text(e->sha256, hash);
  off->size = b.len + strlen("size: ");
  sb_field(&b, "size", size);
  off->hash = b.len + strlen("sha256: ");
  sb_field(&b, "sha256", hash);
  sb_add(&b, "\n", 1);
  if (b.bad) {
    free(b.p);
    return NULL;
  }
  *len = b.len;
  return b.p;
}

/* ---- strict line-by-line parsing ---------------------------------------- */

typedef struct lines {
  char *p, *end;
} lines;

/* The next line (NUL-terminated in place), or NULL at the end. */
static char *next_line(lines *l) {
  if (l->p >= l->end)
    return NULL;
  char *s = l->p, *nl = memchr(s, '\n', (size_t)(l->end - s));
  if (!nl)
    return NULL;
  *nl = '\0';
  l->p = nl + 1;
  return s;
}

/* The value of "key: value", or NULL when the line is another key. */
static char *value_of(char *line, const char *key) {
  size_t k = strlen(key);
  if (!line || strncmp(line, key, k) || line[k] != ':' || line[k + 1] != ' ')
    return NULL;
  return line + k + 2;
}

static bool parse_u64(const char *s, uint64_t *out) {
  uint64_t v = 0;
  if (!s || !*s)
    return false;
  for (; *s; s++) {
    if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
      return false;
    v = v * 10 + (uint64_t)(*s - '0');
  }
  *out = v;
  return true;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

static bool parse_hash(const char *s, uint8_t out[32]) {
  if (!s || strlen(s) != SPOOL_HASH_HEX)
    return false;
  for (size_t i = 0; i < 32; i++) {
    int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return false;
    out[i] = (uint8_t)(hi << 4 | lo);
  }
  return true;
}

static bool parse_fields(lines *l, spool_env *e) {
  const char *v;
  uint64_t num;
  if ((v = value_of(next_line(l), "id")) == NULL || !spool_id_valid(v))
    return false;
  memcpy(e->id, v, SPOOL_ID_LEN + 1);
  if ((v = value_of(next_line(l), "kind")) == NULL)
    return false;
  if (!strcmp(v, "notice"))
    e->kind = SPOOL_KIND_NOTICE;
  else if (strcmp(v, "message"))
    return false;
  if (!parse_u64(value_of(next_line(l), "created"), &e->created_ms))
    return false;
  if (!(e->route = value_of(next_line(l), "route")) ||
      !(e->listener = value_of(next_line(l), "listener")) ||
      !(e->client = value_of(next_line(l), "client")) ||
      !(e->from = value_of(next_line(l), "from")) ||
      !(e->up_from = value_of(next_line(l), "upstream-from")))
    return false;
  if ((v = value_of(next_line(l), "body")) == NULL)
    return false;
  for (num = 0; num < 3 && strcmp(v, body_names[num]); num++)
    ;
  if (num == 3)
    return false;
  e->body = (smtp_body)num;
  if ((v = value_of(next_line(l), "smtputf8")) == NULL || (strcmp(v, "0") && strcmp(v, "1")))
    return false;
  e->smtputf8 = v[0] == '1';
  char *line = next_line(l);
  if ((v = value_of(line, "ret")) != NULL) {
    if (strcmp(v, "full") && strcmp(v, "hdrs"))
      return false;
    e->ret = v[0] == 'f' ? SMTP_RET_FULL : SMTP_RET_HDRS;
    line = next_line(l);
  }
  if ((v = value_of(line, "envid")) != NULL) {
    if (!*v || !smtp_xtext_valid(v, strlen(v), SMTP_ENVID_MAX))
      return false;
    e->envid = v;
    line = next_line(l);
  }
  char *r = value_of(line, "reason");
  if (!r || strlen(r) != SPOOL_REASON_MAX)
    return false;
  for (size_t n = SPOOL_REASON_MAX; n > 0 && r[n - 1] == ' '; n--)
    r[n - 1] = '\0'; /* the padding */
  e->reason = r;
  return true;
}

/* "NEVER", or SUCCESS, FAILURE and DELAY in that order, as
 * smtp_notify_text writes them. */
static bool parse_notify(const char *v, unsigned *out) {
  char text[64];
  static const unsigned all[] = {SMTP_NOTIFY_NEVER,
                                 SMTP_NOTIFY_SUCCESS,
                                 SMTP_NOTIFY_FAILURE,
                                 SMTP_NOTIFY_DELAY,
                                 SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE,
                                 SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_DELAY,
                                 SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY,
                                 SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++)
    if (!strcmp(v, smtp_notify_text(all[i], text, sizeof text))) {
      *out = all[i];
      return true;
    }
  return false;
}

/* The optional notify and orcpt lines after recipient i's; returns the
 * first line that is neither. */
static char *parse_rcpt_dsn(lines *l, spool_env *e, size_t i, size_t cap, bool *ok) {
  char *line = next_line(l), *v;
  if ((v = value_of(line, "notify")) != NULL) {
    if (!e->notify)
      e->notify = stp_xcalloc(cap, sizeof *e->notify);
    *ok &= parse_notify(v, (unsigned *)&e->notify[i]);
    line = next_line(l);
  }
  if ((v = value_of(line, "orcpt")) != NULL) {
    if (!e->orcpt)
      e->orcpt = stp_xcalloc(cap, sizeof *e->orcpt);
    *ok &= orcpt_valid(v);
    ((const char **)e->orcpt)[i] = v;
    line = next_line(l);
  }
  return line;
}

/* Grows the per-recipient arrays of a parsed envelope to cap. */
static void grow_rcpts(spool_env *e, size_t old, size_t cap) {
  e->rcpts = stp_xrealloc((void *)e->rcpts, cap * sizeof *e->rcpts);
  if (e->notify) {
    e->notify = stp_xrealloc((void *)e->notify, cap * sizeof *e->notify);
    memset((unsigned *)e->notify + old, 0, (cap - old) * sizeof *e->notify);
  }
  if (e->orcpt) {
    e->orcpt = stp_xrealloc((void *)e->orcpt, cap * sizeof *e->orcpt);
    memset((const char **)e->orcpt + old, 0, (cap - old) * sizeof *e->orcpt);
  }
}

/* rcpt lines (each with its DSN lines), then size, sha256 and the empty
 * line. */
static bool parse_tail(lines *l, spool_env *e) {
  size_t cap = 8;
  char *line, *v;
  bool ok = true;
  e->rcpts = stp_xcalloc(cap, sizeof *e->rcpts);
  line = next_line(l);
  while ((v = value_of(line, "rcpt")) != NULL) {
    if (!*v)
      return false;
    if (e->n_rcpts == cap) {
      grow_rcpts(e, cap, 2 * cap);
      cap *= 2;
    }
    ((const char **)e->rcpts)[e->n_rcpts++] = v;
    line = parse_rcpt_dsn(l, e, e->n_rcpts - 1, cap, &ok);
    if (!ok)
      return false;
  }
  v = value_of(line, "size");
  if (e->n_rcpts == 0 || !v || strlen(v) != SPOOL_SIZE_DIGITS || !parse_u64(v, &e->size))
    return false;
  if (!parse_hash(value_of(next_line(l), "sha256"), e->sha256))
    return false;
  line = next_line(l);
  return line && !*line;
}

int spool_env_parse(const char *p, size_t n, spool_env *out, size_t *hdr_len) {
  memset(out, 0, sizeof *out);
  size_t scan = n < SPOOL_HEADER_MAX ? n : SPOOL_HEADER_MAX;
  const char *end = NULL;
  for (size_t i = 0; i + 1 < scan && !end; i++)
    if (p[i] == '\n' && p[i + 1] == '\n')
      end = p + i + 2;
  if (!end)
    return n < SPOOL_HEADER_MAX ? STP_EAGAIN : STP_ESYNTAX;
  size_t len = (size_t)(end - p);
  if (memchr(p, '\0', len) || memchr(p, '\r', len))
    return STP_ESYNTAX;
  out->mem_ = stp_xmalloc(len);
  memcpy(out->mem_, p, len);
  lines l = {out->mem_, out->mem_ + len};
  const char *magic = next_line(&l);
  if (!magic || strcmp(magic, MAGIC) || !parse_fields(&l, out) || !parse_tail(&l, out)) {
    spool_env_free(out);
    return STP_ESYNTAX;
  }
  *hdr_len = len;
  return STP_OK;
}

void spool_env_free(spool_env *e) {
  free(e->mem_);
  free((void *)e->rcpts);
  free((void *)e->notify);
  free((void *)e->orcpt);
  memset(e, 0, sizeof *e);
}

/* ---- state ------------------------------------------------------------------ */

static const char *const held_names[] = {"no", "admin", "route"};

void spool_state_init(spool_state *st, size_t n_rcpts, const stp_spool_cfg *cfg,
                      uint64_t created_ms, const char *reason) {
  memset(st, 0, sizeof *st);
  st->n_rcpts = n_rcpts;
  st->done = stp_xcalloc(n_rcpts ? n_rcpts : 1, sizeof *st->done);
  st->next_ms = created_ms + spool_retry_delay(cfg, 0);
  one_line(reason, st->last, sizeof st->last);
}

void spool_state_free(spool_state *st) {
  free(st->done);
  st->done = NULL;
}

size_t spool_state_pending(const spool_state *st) {
  size_t n = 0;
  for (size_t i = 0; i < st->n_rcpts; i++)
    n += !st->done[i];
  return n;
}

char *spool_state_format(const spool_state *st, size_t *len) {
  sbuf b = {.max = SPOOL_STATE_MAX};
  char num[32], last[SPOOL_REASON_MAX + 1];
  sb_add(&b, STATE_MAGIC "\n", sizeof STATE_MAGIC);
  snprintf(num, sizeof num, "%u", st->attempts);
  sb_field(&b, "attempts", num);
  snprintf(num, sizeof num, "%" PRIu64, st->next_ms);
  sb_field(&b, "next", num);
  sb_field(&b, "held", held_names[(unsigned)st->held < 3 ? st->held : 0]);
  one_line(st->last, last, sizeof last);
  sb_field(&b, "last", last);
  sb_add(&b, "done:", 5);
  for (size_t i = 0; i < st->n_rcpts; i++)
    if (st->done[i]) {
      snprintf(num, sizeof num, " %zu", i);
      sb_add(&b, num, strlen(num));
    }
  sb_add(&b, "\n", 1);
  if (b.bad) { /* more recipients done than SPOOL_STATE_MAX can list */
    free(b.p);
    return NULL;
  }
  *len = b.len;
  return b.p;
}

static bool parse_done(const char *s, spool_state *st) {
  while (*s == ' ') {
    s++;
    uint64_t i = 0;
    const char *d = s;
    while (*s >= '0' && *s <= '9' && i < st->n_rcpts)
      i = i * 10 + (uint64_t)(*s++ - '0');
    if (s == d || i >= st->n_rcpts || (*s && *s != ' '))
      return false;
    st->done[i] = true;
  }
  return *s == '\0';
}

int spool_state_parse(const char *p, size_t n, size_t n_rcpts, spool_state *out) {
  memset(out, 0, sizeof *out);
  if (n == 0 || n > SPOOL_STATE_MAX || p[n - 1] != '\n' || memchr(p, '\0', n) || memchr(p, '\r', n))
    return STP_ESYNTAX;
  char *mem = stp_xmalloc(n);
  memcpy(mem, p, n);
  lines l = {mem, mem + n};
  out->n_rcpts = n_rcpts;
  out->done = stp_xcalloc(n_rcpts ? n_rcpts : 1, sizeof *out->done);
  uint64_t att = 0;
  const char *v, *magic = next_line(&l);
  bool ok = magic && !strcmp(magic, STATE_MAGIC) &&
            parse_u64(value_of(next_line(&l), "attempts"), &att) && att <= 1000000 &&
            parse_u64(value_of(next_line(&l), "next"), &out->next_ms) &&
            (v = value_of(next_line(&l), "held")) != NULL;
  if (ok) {
    out->attempts = (unsigned)att;
    size_t h = 0;
    while (h < 3 && strcmp(v, held_names[h]))
      h++;
    out->held = (spool_held)h;
    ok = h < 3 && (v = value_of(next_line(&l), "last")) != NULL;
  }
  if (ok) {
    snprintf(out->last, sizeof out->last, "%s", v);
    const char *d = next_line(&l);
    ok = d && !strncmp(d, "done:", 5) && parse_done(d + 5, out) && l.p == l.end;
  }
  free(mem);
  if (!ok) {
    spool_state_free(out);
    return STP_ESYNTAX;
  }
  return STP_OK;
}

/* ---- ids and policy ---------------------------------------------------------- */

void spool_id_make(char out[SPOOL_ID_LEN + 1], uint64_t now_ms, uint32_t rnd) {
  snprintf(out, SPOOL_ID_LEN + 1, "%011" PRIx64 "%05" PRIx32, now_ms & UINT64_C(0xfffffffffff),
           rnd & 0xfffffu);
}

bool spool_id_valid(const char *s) {
  if (!s)
    return false;
  for (size_t i = 0; i < SPOOL_ID_LEN; i++)
    if (hexval(s[i]) < 0)
      return false;
  return s[SPOOL_ID_LEN] == '\0';
}

uint64_t spool_retry_delay(const stp_spool_cfg *cfg, unsigned attempts) {
  if (!cfg->n_retry)
    return 60000;
  size_t i = attempts < cfg->n_retry ? attempts : cfg->n_retry - 1;
  return cfg->retry_ms[i];
}

bool spool_expired(const stp_spool_cfg *cfg, uint64_t created_ms, uint64_t now_ms) {
  return now_ms >= created_ms && now_ms - created_ms >= cfg->max_age_ms;
}

bool spool_state_after_attempt(spool_state *st, const spool_rcpt_result *res,
                               const stp_spool_cfg *cfg, uint64_t now_ms, const char *last) {
  for (size_t i = 0; i < st->n_rcpts; i++)
    if (res[i] == SPOOL_RCPT_OK || res[i] == SPOOL_RCPT_PERM)
      st->done[i] = true;
  if (st->attempts < 1000000)
    st->attempts++;
  st->next_ms = now_ms + spool_retry_delay(cfg, st->attempts);
  one_line(last, st->last, sizeof st->last);
  return spool_state_pending(st) == 0;
}

void spool_fmt_age(uint64_t ms, char *out, size_t cap) {
  uint64_t s = ms / 1000;
  if (s < 120)
    snprintf(out, cap, "%" PRIu64 "s", s);
  else if (s < 7200)
    snprintf(out, cap, "%" PRIu64 "m", s / 60);
  else if (s < 172800)
    snprintf(out, cap, "%" PRIu64 "h", s / 3600);
  else
    snprintf(out, cap, "%" PRIu64 "d", s / 86400);
}

void spool_list_line(const spool_env *e, const spool_state *st, uint64_t now_ms, char *out,
                     size_t cap) {
  char age[16], next[16], to[1024] = "";
  spool_fmt_age(now_ms > e->created_ms ? now_ms - e->created_ms : 0, age, sizeof age);
  if (st->held)
    snprintf(next, sizeof next, "held");
  else if (st->next_ms <= now_ms)
    snprintf(next, sizeof next, "now");
  else
    spool_fmt_age(st->next_ms - now_ms, next, sizeof next);
  size_t used = 0, shown = 0, pending = spool_state_pending(st);
  for (size_t i = 0; i < e->n_rcpts && i < st->n_rcpts; i++) {
    if (st->done[i])
      continue;
    int w = snprintf(to + used, sizeof to - used, "%s<%s>", shown ? "," : "", e->rcpts[i]);
    if (w < 0 || (size_t)w >= sizeof to - used - 16) {
      to[used] = '\0';
      snprintf(to + used, sizeof to - used, ",+%zu", pending - shown);
      break;
    }
    used += (size_t)w;
    shown++;
  }
  snprintf(out, cap,
           "%s age=%s size=%" PRIu64 " from=<%s> to=%s route=%s attempts=%u next=%s%s last=%s",
           e->id, age, e->size, e->from, to, e->route, st->attempts, next,
           st->held == SPOOL_HELD_ROUTE ? " held=route-missing" : "", st->last);
}
