/* config_spool.c - the `spool:` section and the rules that tie routes to
 * it (on_upstream_failure: spool), with the defaults of SPEC.md.
 *
 * Guarantees: a config with a spool route has a spool section; no spool
 * route can be reached from a listener with auth: passthrough (spooling
 * would mean keeping a device's own password on disk for the retries);
 * the spool directory is absolute and short enough for its control
 * socket's address. No files are touched here: the directory is created
 * by the spool at start.
 */
#include "config_spool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "config_file.h"
#include "smtp-tls-proxy/util.h"

/* clang-format off */
enum { S_DIR, S_MAXSIZE, S_MAXMSG, S_RETRY, S_MAXAGE, S_NOTIFY, S_NOTIFYSND, S_SHARED, S_N };
static const char *const spool_keys[S_N] = {
  [S_DIR] = "dir", [S_MAXSIZE] = "max_size", [S_MAXMSG] = "max_messages",
  [S_RETRY] = "retry", [S_MAXAGE] = "max_age", [S_NOTIFY] = "notify",
  [S_NOTIFYSND] = "notify_sender", [S_SHARED] = "shared"};
/* clang-format on */

#define SPOOL_SOCK_NAME "/control.sock"
#define SPOOL_MAX_RETRY 32

static const uint64_t default_retry[] = {60000, 300000, 900000, 3600000};

bool cfg_plain_address(const char *s) {
  const char *at = strrchr(s, '@');
  if (!at || at == s || !at[1] || strlen(s) > 320)
    return false;
  for (; *s; s++)
    if ((unsigned char)*s <= ' ' || *s == '<' || *s == '>' || *s == '"')
      return false;
  return true;
}

static void parse_retry(cfg_ctx *c, yaml_node_t *n, stp_spool_cfg *sp) {
  if (!cfg_expect_list(c, n, "retry", true))
    return;
  size_t cnt = cfg_list_len(n);
  if (cnt == 0 || cnt > SPOOL_MAX_RETRY) {
    cfg_err(c, n, "'retry' needs 1 to %d intervals", SPOOL_MAX_RETRY);
    return;
  }
  uint64_t *v = stp_xcalloc(cnt, sizeof *v);
  size_t got = 0;
  for (size_t i = 0; i < cnt; i++) {
    yaml_node_t *it = cfg_list_item(c, n, i);
    uint64_t ms = 0;
    cfg_parse_duration(c, it, "retry", false, &ms);
    if (ms)
      v[got++] = ms;
  }
  if (got != cnt) {
    free(v);
    return;
  }
  free(sp->retry_ms);
  sp->retry_ms = v;
  sp->n_retry = cnt;
}

static void parse_dir(cfg_ctx *c, yaml_node_t *n, stp_spool_cfg *sp) {
  const char *s = cfg_nonempty(c, n, "dir");
  if (!s)
    return;
  if (cfg_has_ctl(s)) {
    cfg_err(c, n, "bad spool dir (control characters)");
    return;
  }
  char *path = cfg_resolve_path(c, s);
  size_t len = strlen(path);
  while (len > 1 && path[len - 1] == '/')
    path[--len] = '\0';
  /* The control socket's address must fit a sockaddr_un. */
  if (len + sizeof SPOOL_SOCK_NAME > sizeof(((struct sockaddr_un *)0)->sun_path)) {
    cfg_err(c, n, "spool dir '%s' is too long (at most %zu characters)", path,
            sizeof(((struct sockaddr_un *)0)->sun_path) - sizeof SPOOL_SOCK_NAME);
    free(path);
    return;
  }
  sp->dir = path;
}

void cfg_parse_spool(cfg_ctx *c, yaml_node_t *n) {
  yaml_node_t *k[S_N], *v[S_N];
  if (!cfg_expect_map(c, n, "spool"))
    return;
  stp_spool_cfg *sp = stp_xcalloc(1, sizeof *sp);
  c->cfg->spool = sp;
  sp->pos = (stp_pos){cfg_nline(n), cfg_ncol(n)};
  sp->max_size = 2ull << 30;
  sp->max_messages = 10000;
  sp->max_age_ms = 5ull * 86400 * 1000;
  sp->n_retry = sizeof default_retry / sizeof *default_retry;
  sp->retry_ms = stp_xcalloc(sp->n_retry, sizeof *sp->retry_ms);
  memcpy(sp->retry_ms, default_retry, sizeof default_retry);
  WALK(c, n, "in spool", spool_keys, k, v);
  if (!v[S_DIR])
    cfg_err(c, k[S_DIR] ? k[S_DIR] : n, "spool needs 'dir' (e.g. /var/spool/smtp-tls-proxy)");
  else
    parse_dir(c, v[S_DIR], sp);
  if (v[S_MAXSIZE])
    cfg_parse_sizev(c, v[S_MAXSIZE], "max_size", &sp->max_size);
  if (v[S_MAXMSG])
    cfg_parse_count(c, v[S_MAXMSG], "max_messages", 10000000, &sp->max_messages);
  if (v[S_RETRY])
    parse_retry(c, v[S_RETRY], sp);
  if (v[S_MAXAGE])
    cfg_parse_duration(c, v[S_MAXAGE], "max_age", false, &sp->max_age_ms);
  const char *s;
  if (v[S_NOTIFY] && (s = cfg_nonempty(c, v[S_NOTIFY], "notify")) != NULL) {
    if (!cfg_plain_address(s))
      cfg_err(c, v[S_NOTIFY], "bad address '%s' for notify (expected user@domain)", s);
    else
      sp->notify = stp_xstrdup(s);
  }
  if (v[S_NOTIFYSND])
    cfg_parse_bool(c, v[S_NOTIFYSND], "notify_sender", &sp->notify_sender);
  if (v[S_SHARED])
    cfg_parse_bool(c, v[S_SHARED], "shared", &sp->shared);
  if (!v[S_NOTIFY] && !sp->notify_sender)
    cfg_warn(c, n,
             "spool has neither 'notify' nor 'notify_sender': a message that finally fails "
             "is only logged");
}

/* Whether listener l can reach route r (its match.listener, or any). */
static bool route_serves(const stp_route_cfg *r, const stp_listener_cfg *l) {
  if (!r->match_listener.n)
    return true;
  for (size_t i = 0; i < r->match_listener.n; i++)
    if (l->name && !strcmp(r->match_listener.v[i], l->name))
      return true;
  return false;
}

void cfg_check_spool_routes(cfg_ctx *c) {
  const stp_config *cfg = c->cfg;
  for (size_t i = 0; i < cfg->n_routes; i++) {
    const stp_route_cfg *r = &cfg->routes[i];
    if (!r->spool)
      continue;
    if (!cfg->spool) {
      cfg_err_at(c, r->spool_pos.line, r->spool_pos.col,
                 "on_upstream_failure: spool needs a top-level 'spool:' section (dir, max_size, "
                 "...)");
      continue;
    }
    for (size_t j = 0; j < cfg->n_listeners; j++) {
      const stp_listener_cfg *l = &cfg->listeners[j];
      if (l->auth != STP_LAUTH_PASSTHROUGH || !route_serves(r, l))
        continue;
      cfg_err_at(c, r->spool_pos.line, r->spool_pos.col,
                 "route '%s' cannot spool: listener '%s' uses auth: passthrough (the device's "
                 "own password would have to be kept for the retries); set match.listener to "
                 "other listeners or use on_upstream_failure: defer",
                 r->name ? r->name : "?", l->name ? l->name : "?");
      break;
    }
  }
}

void cfg_free_spool(stp_spool_cfg *sp) {
  if (!sp)
    return;
  free(sp->dir);
  free(sp->retry_ms);
  free(sp->notify);
  free(sp);
}
