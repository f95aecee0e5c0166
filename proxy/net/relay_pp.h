/* relay_pp.h - the PROXY header in front of a relay's session: private to
 * relay.c (see relay_pp.c for what it owns and guarantees).
 *
 * The relay embeds one relay_pp and asks it about the first bytes of a
 * connection; the answers say what to do (wait, refuse with a reply, go
 * on), so this module never calls back into the relay.
 */
#ifndef STP_RELAY_PP_H
#define STP_RELAY_PP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "smtp-tls-proxy/proxyproto.h"

#define RELAY_PP_TIMEOUT_MS 5000 /* whole PROXY header; capped by idle_timeout */

typedef struct relay_pp {
  const char *listener; /* for logs and metrics; the relay's config outlives us */
  pp_reader *reader;    /* a balancer's PROXY header is being read */
  bool sniff;           /* no header allowed: refuse one if it comes */
  uint8_t sniffed[PP_SNIFF_MAX];
  size_t n_sniffed;
  char via[64]; /* the balancer's address, "" when direct */
  struct sockaddr_storage via_addr;
  struct sockaddr_storage client; /* the client a PROXIED header named */
} relay_pp;

typedef enum {
  RELAY_PP_MORE,  /* every byte was taken; wait for more */
  RELAY_PP_DONE,  /* decided: go on with the session */
  RELAY_PP_REFUSE /* refused, logged and counted: send *reply (NULL: just close) */
} relay_pp_step;

/* A listed balancer at `balancer` connected: read its header. */
void relay_pp_await(relay_pp *g, const char *listener, const struct sockaddr *balancer);
static inline bool relay_pp_reading(const relay_pp *g) {
  return g->reader != NULL;
}
/* Header bytes. DONE: *client is who the header names (the balancer's
 * address for LOCAL and UNKNOWN), p[*used..n) are the device's own bytes. */
relay_pp_step relay_pp_read(relay_pp *g, const char *p, size_t n, size_t *used,
                            const struct sockaddr **client, const char **reply);
/* The peer went away (`why`) or the header timeout fired while reading:
 * log and count the refusal, and return the reply to send (or NULL). */
const char *relay_pp_lost(relay_pp *g, const char *why);
const char *relay_pp_timeout(relay_pp *g);
/* A direct client on a listener with proxy_protocol: hold its first bytes
 * until they show they are no header. DONE: feed g->sniffed[0..n_sniffed)
 * first, then the rest of p[0..*n). REFUSE: a header came (logged). */
void relay_pp_sniff_start(relay_pp *g, const char *listener);
relay_pp_step relay_pp_sniff(relay_pp *g, const char **p, size_t *n, const char *sid,
                             const char *client_ip, const char **reply);
/* Stop reading a header (shutdown, teardown). */
void relay_pp_free(relay_pp *g);

#endif
