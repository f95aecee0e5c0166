/* tok_internal.h - what the token cache (tok_cache.c) shares with the two
 * ways of getting a token: the HTTPS fetch (tok_fetch.c) and token_command
 * (tok_cmd.c). Private to those three files.
 */
#ifndef STP_TOK_INTERNAL_H
#define STP_TOK_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "defer.h"
#include "oauth2_net.h"
#include "smtp-tls-proxy/oauth2.h"
#include "smtp-tls-proxy/util.h"
#include "tls.h"

typedef struct tok_src tok_src;
/* A fetch ended: t (may be NULL) and token (malloc'd, taken over) on
 * success, or err. Set by the cache; called from the loop only. */
typedef void (*tok_done_fn)(tok_src *s, oauth2_token_resp *t, char *token, const char *err);

struct tok_src {
  struct tok_src *next;
  tok_done_fn done; /* the cache's: the fetchers report through it */
  stp_buf key;
  char *name; /* upstream, for logs */
  stp_toksrc_kind kind;
  stp_oauth2_grant grant;
  char *token_url, *client_id, *client_secret, *scope, *ca_file;
  char *rt_file, *rt; /* refresh token file and the current refresh token */
  char **argv;
  uint64_t ttl_ms, timeout_ms;
  unsigned long seq;
  tls_ctx *tls;
  char *token;
  uint64_t refresh_at;
  bool fetching;
  tok_waiter head;     /* sentinel of the waiters' ring */
  defer_item early_ev; /* a fetch that failed before it started */
  char early[400];
  /* Signed JWTs (tok_jwt.c): grant service_account or a certificate. */
  char *subject, *sa_email, *sa_key_id, *private_key, *certificate;
  struct jwt_key *jkey; /* parsed at first use; dropped when the key is replaced */
  int64_t expires_unix; /* wall-clock expiry of token; 0: none yet */
  /* Why the last fetch failed, for metrics and the log: the endpoint's OAuth
   * error code ("" when it sent none) and a reason word (oauth2.h). */
  char error[64];
  const char *fail_reason;
};

/* Adds the JWT part of the token request to form: grant_type and assertion
 * for service_account, client_assertion_type and client_assertion for a
 * certificate; nothing for other sources. 0, or a negative code with the
 * reason in why (never key material). The JWT is wiped with the form. */
int tok_jwt_form(tok_src *s, stp_buf *form, char *why, size_t cap);
/* Loads o's key (and certificate) as a fetch would: for starting or
 * reloading a configuration with a clear error. 0 when o has no key. */
int tok_jwt_check(const stp_oauth2_cfg *o, char *why, size_t cap);

/* Start getting a token for s (s->fetching is set); the outcome reaches
 * s->done from the loop, never from inside these calls. */
void tok_fetch_start(uv_loop_t *loop, tok_src *s);
void tok_cmd_start(uv_loop_t *loop, tok_src *s);

#endif
