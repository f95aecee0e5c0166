/* gen.h - one configuration generation: the parsed configuration with what
 * is built from it (TLS contexts, rate limits and back-off, the upstream
 * connection pool).
 *
 * Owns: all of the above, reference counted. Guarantees: whatever was
 * started under a generation (a device session, an upstream connection)
 * holds a reference and keeps its configuration until it ends, however
 * many reloads happen meanwhile; the last unref frees everything.
 */
#ifndef STP_GEN_H
#define STP_GEN_H

#include <stddef.h>

#include "smtp-tls-proxy/config.h"
#include "smtp-tls-proxy/limits.h"
#include "tls.h"

typedef struct srv_gen {
  unsigned refs;
  stp_config *cfg;
  tls_ctx **up_tls;     /* per upstream */
  tls_ctx **lan_tls;    /* per listener; NULL for tls: none */
  stp_limits limits;    /* rate limits and upstream back-off */
  struct up_pool *pool; /* idle upstream connections; NULL once closed */
  struct spool *spool;  /* the server's spool (outlives generations); NULL: none */
} srv_gen;

/* Build the TLS contexts for cfg (the generation owns cfg from now on,
 * also on failure). NULL with the reason in err. */
srv_gen *srv_gen_new(stp_config *cfg, char *err, size_t errlen);
srv_gen *srv_gen_ref(srv_gen *g);
void srv_gen_unref(srv_gen *g);

#endif
