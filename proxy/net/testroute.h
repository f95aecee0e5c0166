/* testroute.h - `--test-route`: send one test message through a route.
 * Takes ownership of cfg. Returns the process exit status (0 delivered). */
#ifndef STP_TESTROUTE_H
#define STP_TESTROUTE_H

#include "smtp-tls-proxy/config.h"

int testroute_run(stp_config *cfg, const char *route, const char *from, const char *to);

#endif
