/* oauth2_net.h - access tokens for XOAUTH2 upstreams, fetched on the loop.
 *
 * Owns: one token cache per token source (an upstream's auth.oauth2 or
 * auth.token_command), process-wide so that it outlives SIGHUP reloads
 * (tok_cache.c); the HTTPS POST to the token endpoint over the HTTP client
 * (tok_fetch.c: TLS verified against the source's ca_file and the URL's
 * host, bounded response, timeout); the token_command child (tok_cmd.c: no
 * shell, bounded stdout, killed at the timeout); writing a rotated refresh
 * token back to its file (secret_file.h).
 * Guarantees: one fetch at a time per source, shared by every connection
 * waiting for it; a waiter's callback always runs from the loop, never from
 * inside tok_get(), and never after tok_cancel(); tokens and secrets are
 * never logged (a failure is logged once per fetch with the endpoint's
 * error and error_description) and are cleansed when replaced.
 */
#ifndef STP_OAUTH2_NET_H
#define STP_OAUTH2_NET_H

#include <stdbool.h>
#include <uv.h>

#include "smtp-tls-proxy/config.h"

/* token: the access token (valid only during the call; copy it), or NULL
 * and err: why there is none (for the log and the failure detail). */
typedef void (*tok_cb)(void *arg, const char *token, const char *err);

typedef struct tok_waiter {
  struct tok_waiter *prev, *next;
  tok_cb cb;
  void *arg;
  bool queued;
} tok_waiter;

/* For an upstream whose cfg->token_src is set. Returns 1 with *token a
 * malloc'd copy of a cached token that is still fresh (release it with
 * stp_free_secret), or 0 with w queued: cb runs later, from the loop. */
int tok_get(uv_loop_t *loop, const stp_upstream_cfg *c, tok_waiter *w, tok_cb cb, void *arg,
            char **token);
/* Withdraw a queued waiter; harmless when it is not queued. */
void tok_cancel(tok_waiter *w);
/* For a configuration about to go live (start, reload): each token
 * source's signing key loads (else an error naming the upstream, in err),
 * and each token upstream's expiry gauge shows (0 until its first token). */
int tok_prepare(const stp_config *cfg, char *err, size_t errlen);
/* The upstream refused `token` (535, or a 334 error for XOAUTH2): forget it
 * unless the cache already holds a newer one, so the next tok_get fetches. */
void tok_invalidate(const stp_upstream_cfg *c, const char *token);

#endif
