/* netbind.c - "host:port" to a listening socket (see netbind.h). */
#include "netbind.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp-tls-proxy/cidr.h"
#include "smtp-tls-proxy/config.h"
#include "smtp-tls-proxy/util.h"

static int resolve_spec(const char *spec, struct sockaddr_storage *ss, char *err, size_t cap) {
  char *host = NULL;
  uint16_t port = 0;
  if (stp_parse_hostport(spec, &host, &port) != STP_OK) {
    snprintf(err, cap, "bad address '%s' (want host:port)", spec);
    return STP_EINVAL;
  }
  if (!*host || !strcmp(host, "*")) {
    free(host);
    host = stp_xstrdup("::");
  }
  int rc = strchr(host, ':') ? uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss)
                             : uv_ip4_addr(host, port, (struct sockaddr_in *)ss);
  free(host);
  if (rc < 0) {
    snprintf(err, cap, "bad address '%s': %s", spec, uv_strerror(rc));
    return STP_EINVAL;
  }
  return 0;
}

int netbind_listen(uv_tcp_t *h, const char *spec, int backlog, uv_connection_cb cb, char *bound,
                   size_t bound_cap, char *err, size_t err_cap) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  int rc = resolve_spec(spec, &ss, err, err_cap);
  if (rc < 0)
    return rc;
  rc = uv_tcp_bind(h, (const struct sockaddr *)&ss, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)h, backlog, cb);
  if (rc < 0) {
    snprintf(err, err_cap, "%s: %s", spec, uv_strerror(rc));
    return STP_ENET;
  }
  struct sockaddr_storage b;
  int blen = sizeof b;
  memset(&b, 0, sizeof b);
  uv_tcp_getsockname(h, (struct sockaddr *)&b, &blen);
  char ip[64];
  stp_sockaddr_ip((struct sockaddr *)&b, ip, sizeof ip);
  unsigned p = ntohs(b.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&b)->sin6_port
                                             : ((struct sockaddr_in *)&b)->sin_port);
  snprintf(bound, bound_cap, b.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, p);
  return 0;
}
