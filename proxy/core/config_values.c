/* config_values.c - the value parsers and diagnostics of the config loader.
 *
 * Owns: the text-to-value parsers of config.h (durations, sizes, TLS
 * versions, host:port, rates), the diagnostics machinery (collecting
 * "FILE:LINE:COL: error|warning: text" lines and sorting them by position),
 * and the typed YAML node helpers that config.c builds the schema walk from
 * (scalars, lists, enums, booleans, counts, names, CIDR lists, bind
 * addresses). Guarantees: the public parsers take any NUL-terminated text
 * and answer STP_OK, STP_ESYNTAX or (overflow) STP_EPARAM without reading
 * past it; a diagnostic is always one line (control characters become '?');
 * the node helpers report their own errors and leave their output alone on
 * one. Pure: no files, no sockets (the other config_*.c files build on it).
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <yaml.h>

#include "config_values.h"
#include "smtp-tls-proxy/config.h"
#include "smtp-tls-proxy/ratelimit.h"
#include "smtp-tls-proxy/util.h"

/* ------------------------------------------------------------------------ */
/* Value parsers                                                             */

static int parse_digits(const char **pp, uint64_t *out) {
  const char *p = *pp;
  uint64_t v = 0;
  if (*p < '0' || *p > '9')
    return STP_ESYNTAX;
  for (; *p >= '0' && *p <= '9'; p++) {
    unsigned d = (unsigned)(*p - '0');
    if (v > (UINT64_MAX - d) / 10)
      return STP_EPARAM;
    v = v * 10 + d;
  }
  *pp = p;
  *out = v;
  return STP_OK;
}

static bool mul_add(uint64_t *acc, uint64_t n, uint64_t mult) {
  if (mult && n > UINT64_MAX / mult)
    return false;
  if (*acc > UINT64_MAX - n * mult)
    return false;
  *acc += n * mult;
  return true;
}

static uint64_t duration_unit(const char *u, size_t n) {
  static const struct {
    const char *name;
    uint64_t ms;
  } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
    if (strlen(units[i].name) == n && stp_ascii_ncasecmp(units[i].name, u, n) == 0)
      return units[i].ms;
  return 0;
}

/* "30s", "5m", "1h", "250ms", "2d", compounds like "1h30m"; a bare integer
 * is seconds. STP_ESYNTAX for bad text, STP_EPARAM on overflow. */
int stp_parse_duration_ms(const char *s, uint64_t *out) {
  const char *p = s;
  uint64_t total = 0, n;
  int rc;
  if (!s || (rc = parse_digits(&p, &n)) != STP_OK)
    return s ? rc : STP_ESYNTAX;
  if (*p == '\0') {
    if (!mul_add(&total, n, 1000))
      return STP_EPARAM;
    *out = total;
    return STP_OK;
  }
  for (;;) {
    size_t ul = 0;
    while (cfg_is_alpha(p[ul]))
      ul++;
    uint64_t mult = duration_unit(p, ul);
    if (!mult)
      return STP_ESYNTAX;
    if (!mul_add(&total, n, mult))
      return STP_EPARAM;
    p += ul;
    if (*p == '\0')
      break;
    if ((rc = parse_digits(&p, &n)) != STP_OK)
      return rc;
  }
  *out = total;
  return STP_OK;
}

/* Bytes, or KB/MB/GB/TB (powers of 1000), KiB/MiB/GiB/TiB (powers of 1024),
 * case-insensitive, optionally one space before the unit. A bare "K"/"M" is
 * refused: whether it means 1000 or 1024 is exactly what people disagree on. */
int stp_parse_size(const char *s, uint64_t *out) {
  static const struct {
    const char *name;
    uint64_t mult;
  } units[] = {{"b", 1},
               {"kb", 1000ull},
               {"mb", 1000000ull},
               {"gb", 1000000000ull},
               {"tb", 1000000000000ull},
               {"kib", 1ull << 10},
               {"mib", 1ull << 20},
               {"gib", 1ull << 30},
               {"tib", 1ull << 40}};
  const char *p = s;
  uint64_t n, total = 0;
  int rc;
  if (!s)
    return STP_ESYNTAX;
  if ((rc = parse_digits(&p, &n)) != STP_OK)
    return rc;
  if (*p == '\0') {
    *out = n;
    return STP_OK;
  }
  if (*p == ' ')
    p++;
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
    if (stp_ascii_casecmp(units[i].name, p) == 0) {
      if (!mul_add(&total, n, units[i].mult))
        return STP_EPARAM;
      *out = total;
      return STP_OK;
    }
  }
  return STP_ESYNTAX;
}

int stp_parse_tls_version(const char *s, uint16_t *out) {
  static const char *const names[] = {"1.0", "1.1", "1.2", "1.3"};
  for (unsigned i = 0; s && i < 4; i++) {
    if (strcmp(s, names[i]) == 0) {
      *out = (uint16_t)(STP_TLS1_0 + i);
      return STP_OK;
    }
  }
  return STP_ESYNTAX;
}

int stp_parse_hostport(const char *s, char **host, uint16_t *port) {
  const char *colon, *h;
  size_t hlen;
  if (!s)
    return STP_ESYNTAX;
  if (s[0] == '[') {
    const char *close = strchr(s, ']');
    char buf[INET6_ADDRSTRLEN + 1];
    unsigned char tmp[16];
    if (!close || close[1] != ':')
      return STP_ESYNTAX;
    h = s + 1;
    hlen = (size_t)(close - h);
    if (hlen == 0 || hlen >= sizeof buf)
      return STP_ESYNTAX;
    memcpy(buf, h, hlen);
    buf[hlen] = '\0';
    if (inet_pton(AF_INET6, buf, tmp) != 1)
      return STP_ESYNTAX;
    colon = close + 1;
  } else {
    colon = strrchr(s, ':');
    if (!colon)
      return STP_ESYNTAX;
    h = s;
    hlen = (size_t)(colon - s);
    for (size_t i = 0; i < hlen; i++)
      if (!cfg_host_char(h[i]) && !(hlen == 1 && h[i] == '*'))
        return STP_ESYNTAX; /* an unbracketed IPv6 address lands here too */
    if (hlen == 1 && h[0] == '*')
      hlen = 0; /* "*:25" is "any", as in many daemons */
  }
  const char *p = colon + 1;
  uint64_t v;
  if (strlen(p) > 5 || parse_digits(&p, &v) != STP_OK || *p != '\0' || v > 65535)
    return STP_ESYNTAX;
  *host = stp_xstrndup(h, hlen);
  *port = (uint16_t)v;
  return STP_OK;
}

int stp_parse_rate(const char *s, uint32_t *count, uint64_t *period_ms) {
  const char *p = s, *slash;
  uint64_t n, ms;
  if (!s || !(slash = strchr(s, '/')))
    return STP_ESYNTAX;
  if (parse_digits(&p, &n) != STP_OK || p != slash || n == 0 || n > UINT32_MAX)
    return STP_ESYNTAX;
  p = slash + 1;
  if (cfg_is_alpha(*p)) {
    size_t ul = strlen(p);
    if ((ms = duration_unit(p, ul)) == 0)
      return STP_ESYNTAX;
  } else if (stp_parse_duration_ms(p, &ms) != STP_OK || ms == 0) {
    return STP_ESYNTAX;
  }
  if (ms > RATELIMIT_MAX_CREDIT / n) /* the token bucket's integer arithmetic */
    return STP_ESYNTAX;
  *count = (uint32_t)n;
  *period_ms = ms;
  return STP_OK;
}

/* ------------------------------------------------------------------------ */
/* Diagnostics                                                               */

static void vreport(cfg_ctx *c, bool error, unsigned line, unsigned col, const char *fmt,
                    va_list ap) __attribute__((format(printf, 5, 0)));
static void vreport(cfg_ctx *c, bool error, unsigned line, unsigned col, const char *fmt,
                    va_list ap) {
  char msg[1024], *text;
  vsnprintf(msg, sizeof msg, fmt, ap);
  /* A diagnostic is one line whatever a value contained. */
  for (char *q = msg; *q; q++)
    if ((unsigned char)*q < 0x20 || *q == 0x7f)
      *q = '?';
  const char *kind = error ? "error" : "warning";
  size_t need = strlen(c->file) + strlen(msg) + 48;
  text = stp_xmalloc(need);
  if (line)
    snprintf(text, need, "%s:%u:%u: %s: %s", c->file, line, col, kind, msg);
  else
    snprintf(text, need, "%s: %s: %s", c->file, kind, msg);
  if (c->np == c->cap) {
    c->cap = c->cap ? c->cap * 2 : 8;
    c->p = stp_xrealloc(c->p, c->cap * sizeof *c->p);
  }
  c->p[c->np] = (cfg_pending_diag){line, col, c->np, error, text};
  c->np++;
  if (error)
    c->n_errors++;
}

void cfg_err(cfg_ctx *c, const yaml_node_t *n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vreport(c, true, n ? cfg_nline(n) : 0, n ? cfg_ncol(n) : 0, fmt, ap);
  va_end(ap);
}

void cfg_warn(cfg_ctx *c, const yaml_node_t *n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vreport(c, false, n ? cfg_nline(n) : 0, n ? cfg_ncol(n) : 0, fmt, ap);
  va_end(ap);
}

void cfg_err_at(cfg_ctx *c, unsigned line, unsigned col, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vreport(c, true, line, col, fmt, ap);
  va_end(ap);
}

static int pending_cmp(const void *a, const void *b) {
  const cfg_pending_diag *x = a, *y = b;
  if (x->line != y->line)
    return x->line < y->line ? -1 : 1;
  if (x->col != y->col)
    return x->col < y->col ? -1 : 1;
  return x->seq < y->seq ? -1 : (x->seq > y->seq);
}

void cfg_flush_diags(cfg_ctx *c, stp_diag *d) {
  if (c->np)
    qsort(c->p, c->np, sizeof *c->p, pending_cmp);
  if (d && c->np)
    d->lines = stp_xrealloc(d->lines, (d->n + c->np) * sizeof *d->lines);
  for (size_t i = 0; i < c->np; i++) {
    if (!d) {
      free(c->p[i].text);
      continue;
    }
    d->lines[d->n++] = c->p[i].text;
    if (c->p[i].error)
      d->n_errors++;
    else
      d->n_warnings++;
  }
  free(c->p);
  c->p = NULL;
  c->np = c->cap = 0;
}

void stp_diag_free(stp_diag *d) {
  if (!d)
    return;
  for (size_t i = 0; i < d->n; i++)
    free(d->lines[i]);
  free(d->lines);
  d->lines = NULL;
  d->n = d->n_errors = d->n_warnings = 0;
}

/* ------------------------------------------------------------------------ */
/* Node helpers                                                              */

yaml_node_t *cfg_node_at(cfg_ctx *c, int idx) {
  return yaml_document_get_node(c->doc, idx);
}

/* A plain empty/~/null scalar: the key is treated as not given. */
static bool is_null(const yaml_node_t *n) {
  if (!n)
    return true;
  if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
    return false;
  const char *v = (const char *)n->data.scalar.value;
  return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL");
}

bool cfg_has_nul(const yaml_node_t *n) {
  return strlen((const char *)n->data.scalar.value) != n->data.scalar.length;
}

const char *cfg_kind_of(const yaml_node_t *n) {
  switch (n->type) {
  case YAML_MAPPING_NODE:
    return "a mapping";
  case YAML_SEQUENCE_NODE:
    return "a list";
  default:
    return "a single value";
  }
}

bool cfg_has_ctl(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f)
      return true;
  return false;
}

/* Text of a scalar value or NULL with an error. `in_list` picks the wording
 * for list items. Control characters are refused except for secrets, which
 * are opaque (and never echoed). */
const char *cfg_scalar_text(cfg_ctx *c, const yaml_node_t *n, const char *key, bool in_list,
                            bool secret) {
  if (n->type != YAML_SCALAR_NODE) {
    cfg_err(c, n, "expected a single value %s '%s', not %s", in_list ? "in" : "for", key,
            cfg_kind_of(n));
    return NULL;
  }
  const char *s = (const char *)n->data.scalar.value;
  if (cfg_has_nul(n) || (!secret && cfg_has_ctl(s))) {
    cfg_err(c, n, "'%s' contains a control character", key);
    return NULL;
  }
  return s;
}

const char *cfg_str_of(cfg_ctx *c, const yaml_node_t *n, const char *key) {
  return cfg_scalar_text(c, n, key, false, false);
}

/* Non-empty string. */
const char *cfg_nonempty(cfg_ctx *c, const yaml_node_t *n, const char *key) {
  const char *s = cfg_str_of(c, n, key);
  if (s && !*s) {
    cfg_err(c, n, "'%s' is empty", key);
    return NULL;
  }
  return s;
}

void cfg_set_str(cfg_ctx *c, const yaml_node_t *n, const char *key, char **dst) {
  const char *s = cfg_nonempty(c, n, key);
  if (s) {
    free(*dst);
    *dst = stp_xstrdup(s);
  }
}

bool cfg_expect_map(cfg_ctx *c, const yaml_node_t *n, const char *key) {
  if (n->type == YAML_MAPPING_NODE)
    return true;
  cfg_err(c, n, "expected a mapping for '%s', not %s", key, cfg_kind_of(n));
  return false;
}

/* A list, or (single_ok) one scalar standing for a list of one. */
bool cfg_expect_list(cfg_ctx *c, const yaml_node_t *n, const char *key, bool single_ok) {
  if (n->type == YAML_SEQUENCE_NODE || (single_ok && n->type == YAML_SCALAR_NODE))
    return true;
  cfg_err(c, n, "expected %s for '%s', not %s", single_ok ? "a value or a list" : "a list", key,
          cfg_kind_of(n));
  return false;
}

size_t cfg_list_len(const yaml_node_t *n) {
  if (n->type == YAML_SCALAR_NODE)
    return 1;
  return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

yaml_node_t *cfg_list_item(cfg_ctx *c, yaml_node_t *n, size_t i) {
  if (n->type == YAML_SCALAR_NODE)
    return n;
  return cfg_node_at(c, n->data.sequence.items.start[i]);
}

/* Fills k[i]/v[i] for each known key (v is NULL for a null value, so a
 * "key:" with nothing after it means "not given"). Unknown, duplicate and
 * non-string keys are reported and skipped. */
void cfg_walk_map(cfg_ctx *c, yaml_node_t *map, const char *where, const char *const *keys,
                  size_t nkeys, yaml_node_t **k, yaml_node_t **v) {
  for (size_t i = 0; i < nkeys; i++)
    k[i] = v[i] = NULL;
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
    yaml_node_t *kn = cfg_node_at(c, p->key), *vn = cfg_node_at(c, p->value);
    if (!kn || kn->type != YAML_SCALAR_NODE) {
      cfg_err(c, kn ? kn : map, "keys must be strings %s", where);
      continue;
    }
    const char *name = (const char *)kn->data.scalar.value;
    size_t i = 0;
    while (i < nkeys && !(strlen(keys[i]) == kn->data.scalar.length &&
                          memcmp(keys[i], name, kn->data.scalar.length) == 0))
      i++;
    if (i == nkeys)
      cfg_err(c, kn, "unknown key '%s' %s", name, where);
    else if (k[i])
      cfg_err(c, kn, "duplicate key '%s' %s", name, where);
    else {
      k[i] = kn;
      v[i] = is_null(vn) ? NULL : vn;
    }
  }
}

bool cfg_parse_enum(cfg_ctx *c, const yaml_node_t *n, const char *key, const char *const *names,
                    const char *expected, int *out) {
  const char *s = cfg_str_of(c, n, key);
  if (!s)
    return false;
  for (int i = 0; names[i]; i++) {
    if (stp_ascii_casecmp(names[i], s) == 0) {
      *out = i;
      return true;
    }
  }
  cfg_err(c, n, "bad %s '%s' (expected %s)", key, s, expected);
  return false;
}

void cfg_parse_bool(cfg_ctx *c, const yaml_node_t *n, const char *key, bool *out) {
  /* libyaml is YAML 1.1, where yes/no/on/off are booleans too. */
  static const char *const names[] = {"false", "true", "no", "yes", "off", "on", NULL};
  int i;
  if (cfg_parse_enum(c, n, key, names, "true or false", &i))
    *out = (i % 2) == 1;
}

void cfg_parse_duration(cfg_ctx *c, const yaml_node_t *n, const char *key, bool zero_ok,
                        uint64_t *out) {
  const char *s = cfg_str_of(c, n, key);
  uint64_t v;
  if (!s)
    return;
  int rc = stp_parse_duration_ms(s, &v);
  if (rc == STP_EPARAM)
    cfg_err(c, n, "duration '%s' for %s is too large", s, key);
  else if (rc != STP_OK)
    cfg_err(c, n, "bad duration '%s' for %s (use e.g. 30s, 5m, 1h, 250ms)", s, key);
  else if (v == 0 && !zero_ok)
    cfg_err(c, n, "%s must be greater than 0", key);
  else
    *out = v;
}

void cfg_parse_sizev(cfg_ctx *c, const yaml_node_t *n, const char *key, uint64_t *out) {
  const char *s = cfg_str_of(c, n, key);
  uint64_t v;
  if (!s)
    return;
  int rc = stp_parse_size(s, &v);
  if (rc == STP_EPARAM)
    cfg_err(c, n, "size '%s' for %s is too large", s, key);
  else if (rc != STP_OK)
    cfg_err(c, n, "bad size '%s' for %s (use bytes, or e.g. 25MB, 50MiB)", s, key);
  else if (v == 0)
    cfg_err(c, n, "%s must be greater than 0", key);
  else
    *out = v;
}

void cfg_parse_count(cfg_ctx *c, const yaml_node_t *n, const char *key, uint64_t max,
                     uint64_t *out) {
  const char *s = cfg_str_of(c, n, key), *p = s;
  uint64_t v;
  if (!s)
    return;
  if (parse_digits(&p, &v) != STP_OK || *p || v == 0 || v > max)
    cfg_err(c, n, "bad %s '%s' (expected an integer from 1 to %llu)", key, s,
            (unsigned long long)max);
  else
    *out = v;
}

static bool valid_name(const char *s) {
  if (!*s || strlen(s) > 64)
    return false;
  for (; *s; s++)
    if (!cfg_host_char(*s))
      return false;
  return true;
}

/* name: required, [A-Za-z0-9._-]{1,64} (names end up in logs and metrics). */
char *cfg_parse_name(cfg_ctx *c, yaml_node_t *map, yaml_node_t *kn, yaml_node_t *vn,
                     const char *kind) {
  if (!vn) {
    cfg_err(c, kn ? kn : map, "%s needs a name", kind);
    return NULL;
  }
  const char *s = cfg_str_of(c, vn, "name");
  if (!s)
    return NULL;
  if (!valid_name(s)) {
    cfg_err(c, vn, "bad %s name '%s' (letters, digits, '.', '_' and '-', at most 64)", kind, s);
    return NULL;
  }
  return stp_xstrdup(s);
}

/* ------------------------------------------------------------------------ */
/* Lists                                                                     */

/* A string or a list of non-empty strings into l; items validated by the
 * caller afterwards when they need more than that. */
void cfg_parse_strlist(cfg_ctx *c, yaml_node_t *n, const char *key, stp_strlist *l) {
  if (!cfg_expect_list(c, n, key, true))
    return;
  size_t cnt = cfg_list_len(n);
  if (cnt == 0) {
    cfg_err(c, n, "'%s' is empty; leave it out to match anything", key);
    return;
  }
  l->v = stp_xcalloc(cnt, sizeof *l->v);
  for (size_t i = 0; i < cnt; i++) {
    yaml_node_t *it = cfg_list_item(c, n, i);
    const char *s = cfg_scalar_text(c, it, key, n->type == YAML_SEQUENCE_NODE, false);
    if (s && !*s)
      cfg_err(c, it, "empty string in '%s'", key);
    else if (s)
      l->v[l->n++] = stp_xstrdup(s);
  }
}

/* Explains a prefix that stp_cidr_parse refused because of host bits. */
static void cidr_error(cfg_ctx *c, const yaml_node_t *n, const char *key, const char *s) {
  const char *slash = strrchr(s, '/');
  char addr[INET6_ADDRSTRLEN + 1], shown[INET6_ADDRSTRLEN + 1];
  stp_cidr whole, tmp;
  if (slash && (size_t)(slash - s) < sizeof addr) {
    memcpy(addr, s, (size_t)(slash - s));
    addr[slash - s] = '\0';
    const char *p = slash + 1;
    uint64_t bits;
    if (stp_cidr_parse(addr, &whole) == STP_OK && parse_digits(&p, &bits) == STP_OK && !*p &&
        strlen(slash + 1) <= 3 && bits <= (whole.family == 4 ? 32u : 128u)) {
      for (unsigned i = (unsigned)bits; i < (whole.family == 4 ? 32u : 128u); i++)
        whole.addr[i / 8] = (uint8_t)(whole.addr[i / 8] & ~(0x80u >> (i % 8)));
      if (inet_ntop(whole.family == 4 ? AF_INET : AF_INET6, whole.addr, shown, sizeof shown) &&
          snprintf(addr, sizeof addr, "%s/%u", shown, (unsigned)bits) > 0 &&
          stp_cidr_parse(addr, &tmp) == STP_OK) {
        cfg_err(c, n, "host bits set in '%s' in %s (did you mean %s?)", s, key, addr);
        return;
      }
    }
  }
  cfg_err(c, n, "bad CIDR '%s' in %s", s, key);
}

void cfg_parse_cidrs(cfg_ctx *c, yaml_node_t *n, const char *key, stp_cidr **out, size_t *nout) {
  if (!cfg_expect_list(c, n, key, true))
    return;
  size_t cnt = cfg_list_len(n);
  if (cnt == 0) {
    cfg_err(c, n, "'%s' is empty", key);
    return;
  }
  *out = stp_xcalloc(cnt, sizeof **out);
  for (size_t i = 0; i < cnt; i++) {
    yaml_node_t *it = cfg_list_item(c, n, i);
    const char *s = cfg_scalar_text(c, it, key, n->type == YAML_SEQUENCE_NODE, false);
    if (!s)
      continue;
    if (stp_cidr_parse(s, &(*out)[*nout]) != STP_OK) {
      cidr_error(c, it, key, s);
      continue;
    }
    (*nout)++;
  }
}

/* listen / metrics addresses: an IP literal or empty ("any"); names would
 * need DNS at bind time, which is the wrong moment to find out. */
bool cfg_parse_bind_addr(cfg_ctx *c, const yaml_node_t *it, const char *key, const char *s) {
  char *host = NULL;
  uint16_t port;
  unsigned char tmp[16];
  if (stp_parse_hostport(s, &host, &port) != STP_OK) {
    cfg_err(c, it, "bad %s address '%s' (expected host:port, [v6]:port or :port)", key, s);
    return false;
  }
  bool ok = !*host || inet_pton(AF_INET, host, tmp) == 1 || inet_pton(AF_INET6, host, tmp) == 1;
  if (!ok)
    cfg_err(c, it, "%s address '%s' must be an IP address (e.g. 0.0.0.0:25, [::1]:25, :25)", key,
            s);
  free(host);
  return ok;
}

void cfg_parse_rate_limit(cfg_ctx *c, const yaml_node_t *n, char **dst) {
  const char *s = cfg_str_of(c, n, "rate_limit");
  uint32_t cnt;
  uint64_t ms;
  if (!s)
    return;
  if (stp_parse_rate(s, &cnt, &ms) != STP_OK) {
    cfg_err(c, n, "bad rate_limit '%s' (expected N/period, e.g. 100/1m or 10/s)", s);
    return;
  }
  free(*dst);
  *dst = stp_xstrdup(s);
}
const char *const cfg_tls_names[] = {"none", "starttls", "implicit", NULL};
