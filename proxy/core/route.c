/* route.c - first-match routing over the configured rules. Pure. */
#include "smtp-tls-proxy/route.h"

#include <stdbool.h>
#include <string.h>

#include "smtp-tls-proxy/cidr.h"
#include "smtp-tls-proxy/util.h"

static bool any_name(const stp_strlist *l, const char *v) {
  if (l->n == 0)
    return true;
  if (!v)
    return false;
  for (size_t i = 0; i < l->n; i++)
    if (!strcmp(l->v[i], v))
      return true;
  return false;
}

/* Address globs: "<>" names the null sender; everything else is a
 * case-insensitive glob against the canonical address. */
static bool any_addr(const stp_strlist *l, const char *addr) {
  if (l->n == 0)
    return true;
  if (!addr)
    return false;
  for (size_t i = 0; i < l->n; i++) {
    const char *p = l->v[i];
    if (!strcmp(p, "<>")) {
      if (!*addr)
        return true;
    } else if (*addr && stp_glob_match(p, addr)) {
      return true;
    }
  }
  return false;
}

int route_matches(const stp_route_cfg *r, const route_input *in) {
  if (!any_name(&r->match_listener, in->listener))
    return 0;
  if (r->n_match_client &&
      (!in->client || !stp_cidr_match_any(r->match_client, r->n_match_client, in->client)))
    return 0;
  if (!any_name(&r->match_auth_user, in->auth_user))
    return 0;
  if (in->ignore_addresses)
    return 1;
  if (!any_addr(&r->match_mail_from, in->mail_from))
    return 0;
  if (!any_addr(&r->match_rcpt_to, in->rcpt_to))
    return 0;
  return 1;
}

long route_match(const stp_config *cfg, const route_input *in) {
  for (size_t i = 0; i < cfg->n_routes; i++)
    if (route_matches(&cfg->routes[i], in))
      return (long)i;
  return -1;
}
