/* apidraft.c - a Graph draft that a failed send left in the mailbox is
 * deleted, whatever ended the send (an answer, a token that could not be
 * refreshed after a 401, a connection closed mid-send, the upconn closing
 * the upstream).
 *
 * Owns: one small object per draft to delete, detached from the apiconn
 * (which may be freed the moment after): a reference to the generation
 * (its config and TLS context), the DELETE URL, a token waiter and one
 * HTTP call without a client (Connection: close). Guarantees: the DELETE
 * is tried once, with a token from the cache or a fresh fetch (a 401 just
 * invalidated the old one); its outcome goes to the log ("api-draft-
 * deleted", or "api-draft-left" with the id when it could not be done);
 * the object frees itself when the call ends, bounded by the upstream's
 * command_timeout, so the loop (and shutdown) waits at most that long.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apiconn_int.h"
#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/util.h"

typedef struct draft_del {
  uv_loop_t *loop;
  srv_gen *gen;
  size_t index;
  const stp_upstream_cfg *cfg;
  tok_waiter tw;
  char url[2048];
  char id[512];
  char sid[16];
} draft_del;

static void dd_free(draft_del *d) {
  srv_gen_unref(d->gen);
  free(d);
}

static void dd_left(draft_del *d, const char *why) {
  stp_kv kv[] = {{"upstream", d->cfg->name}, {"id", d->id}, {"detail", why}};
  stp_log_kv(STP_LOG_WARN, d->sid, "api-draft-left", kv, 3);
  dd_free(d);
}

static void dd_done(void *arg, const http1_response *r, http_fail why, const char *err) {
  draft_del *d = arg;
  if (!r || (r->status != 204 && r->status != 200 && r->status != 404)) {
    char st[48];
    snprintf(st, sizeof st, "HTTP %d", r ? r->status : 0);
    dd_left(d, r ? st : (why ? err : "no answer"));
    return;
  }
  char st[16];
  snprintf(st, sizeof st, "%d", r->status);
  stp_kv kv[] = {{"upstream", d->cfg->name}, {"id", d->id}, {"status", st}};
  stp_log_kv(STP_LOG_INFO, d->sid, "api-draft-deleted", kv, 3);
  dd_free(d);
}

static void dd_send(draft_del *d, const char *token) {
  size_t n = strlen(token) + 8;
  char *auth = stp_xmalloc(n);
  snprintf(auth, n, "Bearer %s", token);
  http1_header h[] = {{"Authorization", auth}};
  http_req req = {.method = "DELETE",
                  .url = d->url,
                  .headers = h,
                  .n_headers = 1,
                  .tls = d->gen->up_tls[d->index],
                  .timeout_ms = d->cfg->command_timeout_ms};
  http_request(d->loop, NULL, &req, dd_done, d); /* done always follows, from the loop */
  stp_free_secret(auth);
}

static void dd_token(void *arg, const char *token, const char *err) {
  draft_del *d = arg;
  if (!token)
    dd_left(d, err ? err : "no OAuth2 access token");
  else
    dd_send(d, token);
}

void api_draft_delete(apiconn *a) {
  if (!a->draft_id[0])
    return;
  char mb[1024], eid[1024];
  draft_del *d = stp_xcalloc(1, sizeof *d);
  d->loop = a->loop;
  d->gen = srv_gen_ref(a->gen);
  d->index = a->index;
  d->cfg = a->cfg;
  snprintf(d->id, sizeof d->id, "%s", a->draft_id);
  snprintf(d->sid, sizeof d->sid, "%s", a->sid);
  a->draft_id[0] = '\0';
  if (!apimsg_path_escape(d->cfg->mailbox, mb, sizeof mb) ||
      !apimsg_path_escape(d->id, eid, sizeof eid) ||
      (size_t)snprintf(d->url, sizeof d->url, "%s/v1.0/users/%s/messages/%s", d->cfg->api_url, mb,
                       eid) >= sizeof d->url) {
    dd_left(d, "the URL does not fit");
    return;
  }
  char *token;
  if (tok_get(d->loop, d->cfg, &d->tw, dd_token, d, &token) == 1) {
    dd_send(d, token);
    stp_free_secret(token);
  }
}
