/* testroute.h - `--test-route`: send one test message through a route.
 * testroute_run takes ownership of cfg and returns the process exit status
 * (0 delivered). */
#ifndef STP_TESTROUTE_H
#define STP_TESTROUTE_H

#include <stdbool.h>
#include <uv.h>

#include "gen.h"
#include "smtp-tls-proxy/config.h"

#define TESTROUTE_TRANSCRIPT_MAX (16 * 1024)
#define TESTROUTE_FIELD_MAX 320

int testroute_run(stp_config *cfg, const char *route, const char *from, const char *to);

/* The same test from a running proxy (the admin page) with its current
 * generation: done(ctx, ok, transcript) is called once, from the loop,
 * with the dialogue (AUTH redacted, bounded). NULL for an unknown route. */
typedef struct testroute testroute;
typedef void (*testroute_done_fn)(void *ctx, bool ok, const char *transcript);
testroute *testroute_start(uv_loop_t *loop, srv_gen *gen, const char *route, const char *from,
                           const char *to, testroute_done_fn done, void *ctx);
/* The asker went away: done will not be called. */
void testroute_cancel(testroute *t);

#endif
