/* route.h - which route a recipient takes.
 *
 * Owns: rule matching (first match wins; all given conditions must hold;
 * an absent condition matches anything). Pure: no I/O, no allocation.
 */
#ifndef STP_ROUTE_H
#define STP_ROUTE_H

#include <stddef.h>

#include "smtp-tls-proxy/config.h"

struct sockaddr;

typedef struct route_input {
  const char *listener;          /* listener name */
  const struct sockaddr *client; /* peer address */
  const char *auth_user;         /* NULL when the device did not AUTH */
  const char *mail_from;         /* canonical address, "" for <> */
  const char *rcpt_to;           /* canonical address */
  /* Match on listener, client and auth_user only (passthrough AUTH picks
   * the upstream that checks the device's credentials before any MAIL). */
  int ignore_addresses;
} route_input;

/* Index of the first matching route, or -1. */
long route_match(const stp_config *cfg, const route_input *in);
/* Whether one route matches (exposed for tests and --check). */
int route_matches(const stp_route_cfg *r, const route_input *in);

#endif
