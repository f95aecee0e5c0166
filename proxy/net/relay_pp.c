/* relay_pp.c - the PROXY header (listeners with proxy_protocol) in front of
 * a relay's session.
 *
 * Owns: the header reader for a listed balancer's connection (bounded by
 * PP_HEADER_MAX; the relay bounds the time), the first bytes held from a
 * direct client until they show they are not a header, and the log line and
 * counter of every refusal it decides. It never writes to the socket nor
 * calls the relay: it answers with a relay_pp_step.
 *
 * From a listed balancer nothing is spoken before its header has been read
 * whole (the spec: SMTP servers speak first, so the greeting waits); the
 * header's client then goes to the listener's checks, and the bytes read
 * behind the header are given back to the stream, so TLS or the session
 * gets them as the device sent them. From any other address the first
 * bytes are held until they show they are not a header.
 */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay_pp.h"
#include "smtp-tls-proxy/cidr.h"
#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/metrics.h"
#include "smtp-tls-proxy/util.h"

void relay_pp_await(relay_pp *g, const char *listener, const struct sockaddr *balancer) {
  size_t len =
      balancer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  g->listener = listener;
  memcpy(&g->via_addr, balancer, len);
  stp_sockaddr_ip(balancer, g->via, sizeof g->via);
  g->reader = stp_xmalloc(sizeof *g->reader);
  pp_reader_init(g->reader);
}

void relay_pp_free(relay_pp *g) {
  free(g->reader);
  g->reader = NULL;
}

static const char *header_fail(relay_pp *g, int level, const char *why, const char *metric,
                               const char *reply) {
  char reason[160];
  snprintf(reason, sizeof reason, "PROXY header: %s", why);
  stp_kv kv[] = {{"listener", g->listener}, {"client", g->via}, {"reason", reason}};
  stp_log_kv(level, NULL, "refused", kv, 3);
  if (metric)
    metrics_refused_connection(g->listener, metric);
  relay_pp_free(g);
  return reply;
}

const char *relay_pp_lost(relay_pp *g, const char *why) {
  /* Connected and gone without a byte: a balancer's TCP health check. */
  bool silent = g->reader->n == 0;
  return header_fail(g, silent ? STP_LOG_DEBUG : STP_LOG_WARN, why,
                     silent ? NULL : "proxy_header_invalid", NULL);
}

const char *relay_pp_timeout(relay_pp *g) {
  return header_fail(g, STP_LOG_WARN, "none within the header timeout", "proxy_header_timeout",
                     "421 4.4.2 PROXY protocol header timeout\r\n");
}

relay_pp_step relay_pp_read(relay_pp *g, const char *p, size_t n, size_t *used,
                            const struct sockaddr **client, const char **reply) {
  pp_header h;
  pp_status st = pp_reader_feed(g->reader, (const uint8_t *)p, n, used, &h);
  if (st == PP_MORE)
    return RELAY_PP_MORE;
  if (st == PP_BAD) {
    *reply = header_fail(g, STP_LOG_WARN, pp_reader_error(g->reader), "proxy_header_invalid",
                         "554 5.7.1 Invalid PROXY protocol header\r\n");
    return RELAY_PP_REFUSE;
  }
  relay_pp_free(g);
  /* LOCAL (the balancer's own check) and UNKNOWN: the socket's endpoints. */
  if (h.kind == PP_PROXIED) {
    g->client = h.src;
    *client = (const struct sockaddr *)&g->client;
  } else {
    *client = (const struct sockaddr *)&g->via_addr;
  }
  return RELAY_PP_DONE;
}

void relay_pp_sniff_start(relay_pp *g, const char *listener) {
  g->listener = listener;
  g->sniff = true;
}

relay_pp_step relay_pp_sniff(relay_pp *g, const char **p, size_t *n, const char *sid,
                             const char *client_ip, const char **reply) {
  size_t room = PP_SNIFF_MAX - g->n_sniffed, take = *n < room ? *n : room;
  memcpy(g->sniffed + g->n_sniffed, *p, take);
  g->n_sniffed += take;
  *p += take;
  *n -= take;
  pp_sniff_result v = pp_sniff(g->sniffed, g->n_sniffed);
  if (v == PP_SNIFF_MAYBE)
    return RELAY_PP_MORE; /* every byte is held (a decision needs at most 12) */
  g->sniff = false;
  if (v == PP_SNIFF_YES) {
    stp_kv kv[] = {{"listener", g->listener},
                   {"client", client_ip},
                   {"reason", "PROXY header from an address not in proxy_protocol"}};
    stp_log_kv(STP_LOG_WARN, sid, "refused", kv, 3);
    metrics_refused_connection(g->listener, "proxy_header_not_allowed");
    *reply = "554 5.7.1 PROXY protocol header not allowed from your address\r\n";
    return RELAY_PP_REFUSE;
  }
  return RELAY_PP_DONE;
}
