/* pool.h - idle, authenticated upstream connections kept for reuse.
 *
 * Owns: connections that a device session has finished with (after a RSET
 * that the upstream answered 250), per upstream of one configuration
 * generation, up to pool_max_idle each, for pool_idle_timeout. Guarantees:
 * only connections authenticated with the configured credentials are ever
 * pooled (a passthrough connection carries a device's own password and is
 * never shared); a pooled connection that the upstream closes or that
 * expires is dropped; after pool_close() nothing is pooled any more and the
 * pool frees itself once its timer is closed.
 */
#ifndef STP_POOL_H
#define STP_POOL_H

#include <stddef.h>
#include <uv.h>

#include "upconn.h"

typedef struct up_pool up_pool;

up_pool *pool_new(uv_loop_t *loop, const stp_config *cfg);
/* Close every idle connection and stop pooling (reload, shutdown). */
void pool_close(up_pool *p);
/* An idle connection to upstream `index`, now owned by `owner`, or NULL. */
upconn *pool_take(up_pool *p, size_t index, const upconn_owner_ops *ops, void *owner);
/* The owner is done with `u`: pool it (after RSET) or close it with QUIT. */
void pool_give(up_pool *p, upconn *u, size_t index);
size_t pool_idle_count(const up_pool *p, size_t index);

#endif
