/* config_values.h - what every config source builds on (config_values.c);
 * not public.
 *
 * Owns: the load context (cfg_ctx) that carries the file name, the parsed
 * YAML document, the config being filled, the load's sequence number and
 * the pending diagnostics; reporting ("FILE:LINE:COL: error: text"), node
 * access and typed scalar parsers that report their own errors. The other
 * config_*.c files each have their own header; every declaration other
 * modules may use stays in smtp-tls-proxy/config.h.
 */
#ifndef STP_CONFIG_VALUES_H
#define STP_CONFIG_VALUES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <yaml.h>

#include "smtp-tls-proxy/cidr.h"
#include "smtp-tls-proxy/config.h"

#define CFG_DEFAULT_CA_FILE "/etc/ssl/certs/ca-certificates.crt"
#define CFG_SECRET_NOT_READ "(not read)"

/* A diagnostic waiting to be sorted by position (seq keeps ties stable). */
typedef struct cfg_pending_diag {
  unsigned line, col;
  size_t seq;
  bool error;
  char *text;
} cfg_pending_diag;

typedef struct cfg_ctx {
  const char *file; /* FILE in messages */
  const char *base; /* directory for relative paths; NULL: keep as written */
  const char *src;
  size_t srclen;
  yaml_document_t *doc;
  stp_config *cfg;
  unsigned long load_seq; /* this load's number, given to its token sources */
  bool no_secrets;        /* stp_config_load_layout: secrets are not read */
  cfg_pending_diag *p;
  size_t np, cap, n_errors;
} cfg_ctx;

static inline bool cfg_is_alpha(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

/* Characters of host names and of config object names. */
static inline bool cfg_host_char(char ch) {
  return cfg_is_alpha(ch) || (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == '_';
}

static inline unsigned cfg_nline(const yaml_node_t *n) {
  return (unsigned)n->start_mark.line + 1;
}
static inline unsigned cfg_ncol(const yaml_node_t *n) {
  return (unsigned)n->start_mark.column + 1;
}

/* --- diagnostics (n may be NULL: no position) ----------------------------- */
void cfg_err(cfg_ctx *c, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void cfg_warn(cfg_ctx *c, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void cfg_err_at(cfg_ctx *c, unsigned line, unsigned col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Sorts the pending diagnostics by position and hands them to d (freed when
 * d is NULL); c->n_errors is left as it was. */
void cfg_flush_diags(cfg_ctx *c, stp_diag *d);

/* --- node helpers ---------------------------------------------------------- */
yaml_node_t *cfg_node_at(cfg_ctx *c, int idx);
bool cfg_has_nul(const yaml_node_t *n);
bool cfg_has_ctl(const char *s);
const char *cfg_kind_of(const yaml_node_t *n);
/* Text of a scalar value or NULL with an error. `in_list` picks the wording
 * for list items; `secret` values may hold control characters. */
const char *cfg_scalar_text(cfg_ctx *c, const yaml_node_t *n, const char *key, bool in_list,
                            bool secret);
const char *cfg_str_of(cfg_ctx *c, const yaml_node_t *n, const char *key);
const char *cfg_nonempty(cfg_ctx *c, const yaml_node_t *n, const char *key);
void cfg_set_str(cfg_ctx *c, const yaml_node_t *n, const char *key, char **dst);
bool cfg_expect_map(cfg_ctx *c, const yaml_node_t *n, const char *key);
bool cfg_expect_list(cfg_ctx *c, const yaml_node_t *n, const char *key, bool single_ok);
size_t cfg_list_len(const yaml_node_t *n);
yaml_node_t *cfg_list_item(cfg_ctx *c, yaml_node_t *n, size_t i);
/* Fills k[i]/v[i] for each known key; v[i] is NULL for a null value.
 * Unknown, duplicate and non-string keys are reported and skipped. */
void cfg_walk_map(cfg_ctx *c, yaml_node_t *map, const char *where, const char *const *keys,
                  size_t nkeys, yaml_node_t **k, yaml_node_t **v);
#define WALK(c, map, where, keys, k, v)                                                            \
  cfg_walk_map(c, map, where, keys, sizeof(keys) / sizeof(keys[0]), k, v)

/* --- typed values: each reports its own error and leaves *out alone on one - */
bool cfg_parse_enum(cfg_ctx *c, const yaml_node_t *n, const char *key, const char *const *names,
                    const char *expected, int *out);
void cfg_parse_bool(cfg_ctx *c, const yaml_node_t *n, const char *key, bool *out);
void cfg_parse_duration(cfg_ctx *c, const yaml_node_t *n, const char *key, bool zero_ok,
                        uint64_t *out);
void cfg_parse_sizev(cfg_ctx *c, const yaml_node_t *n, const char *key, uint64_t *out);
void cfg_parse_count(cfg_ctx *c, const yaml_node_t *n, const char *key, uint64_t max,
                     uint64_t *out);
/* name: required, [A-Za-z0-9._-]{1,64}; malloc'd or NULL with an error. */
char *cfg_parse_name(cfg_ctx *c, yaml_node_t *map, yaml_node_t *kn, yaml_node_t *vn,
                     const char *kind);
void cfg_parse_strlist(cfg_ctx *c, yaml_node_t *n, const char *key, stp_strlist *l);
void cfg_parse_cidrs(cfg_ctx *c, yaml_node_t *n, const char *key, stp_cidr **out, size_t *nout);
bool cfg_parse_bind_addr(cfg_ctx *c, const yaml_node_t *it, const char *key, const char *s);
void cfg_parse_rate_limit(cfg_ctx *c, const yaml_node_t *n, char **dst);

/* The names of stp_tls_mode, for cfg_parse_enum. */
extern const char *const cfg_tls_names[];

#endif
