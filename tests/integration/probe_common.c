/* probe_common.c - the probe and alert tests' two-upstream proxy (see
 * probe_common.h). */
#include "probe_common.h"

#include <stdio.h>

#include "spool_common.h"

void probe_start_two(h_proxy *px, const h_upstream *u, const char *up_probe, const char *top_extra,
                     const char *route) {
  char yaml[8192], extra[1024];
  snprintf(extra, sizeof extra,
           "    probe_interval: %s\n"
           "  - name: bad\n"
           "    host: 127.0.0.1\n"
           "    port: %d\n"
           "    server_name: localhost\n"
           "    ca_file: %s/ca.crt\n"
           "    auth: { username: u, password_env: STP_WRONG_PW }\n"
           "    probe_interval: 1s\n",
           up_probe, u->port, h_certs());
  h_proxy_yaml(&(h_proxy_opts){.up_port = u->port, .top_extra = top_extra, .upstream_extra = extra},
               yaml, sizeof yaml);
  char routed[8192];
  sp_replace(yaml, "    upstream: up\n", route, routed, sizeof routed);
  h_proxy_start_yaml_env(px, routed, (char *const[]){"STP_WRONG_PW=not-the-password", NULL});
}
