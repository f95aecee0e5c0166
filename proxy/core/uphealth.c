/* uphealth.c - each upstream's health, read off the log events (see
 * uphealth.h).
 *
 * Owns: the record table and the mapping from log events to successes and
 * failures. Guarantees: pure (the clock is a function pointer); bounded
 * (one fixed-size record per configured upstream; every string truncated
 * to its buffer); an event naming an unknown upstream changes nothing.
 * Only the loop thread logs the events observed here, so no lock.
 */
#include "smtp-tls-proxy/uphealth.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "smtp-tls-proxy/util.h"

typedef struct uph_rec {
  char *name;
  bool own_credentials; /* false: a device's passthrough credentials, its own fault */
  uph_status st;
} uph_rec;

static uph_rec *g_recs;
static size_t g_n;

static int64_t wall_now(void) {
  return (int64_t)time(NULL);
}
static int64_t (*g_now)(void) = wall_now;

void uphealth_set_clock(int64_t (*now)(void)) {
  g_now = now ? now : wall_now;
}

int64_t uphealth_now(void) {
  return g_now();
}

const char *uph_state_name(uph_state s) {
  static const char *const n[] = {"unknown", "up", "down"};
  return (unsigned)s < sizeof n / sizeof *n ? n[s] : "?";
}

static uph_rec *find(const char *name) {
  for (size_t i = 0; name && i < g_n; i++)
    if (!strcmp(g_recs[i].name, name))
      return &g_recs[i];
  return NULL;
}

int uphealth_get(const char *upstream, uph_status *out) {
  const uph_rec *r = find(upstream);
  if (!r)
    return -1;
  *out = r->st;
  return 0;
}

size_t uphealth_count(void) {
  return g_n;
}

const char *uphealth_name(size_t i) {
  return i < g_n ? g_recs[i].name : NULL;
}

void uphealth_reset(const stp_config *cfg) {
  size_t n = cfg ? cfg->n_upstreams : 0;
  uph_rec *recs = n ? stp_xcalloc(n, sizeof *recs) : NULL;
  for (size_t i = 0; i < n; i++) {
    const stp_upstream_cfg *c = &cfg->upstreams[i];
    const uph_rec *old = find(c->name);
    recs[i].name = stp_xstrdup(c->name);
    recs[i].own_credentials = c->has_auth || c->kind != STP_UP_SMTP;
    if (old)
      recs[i].st = old->st;
  }
  for (size_t i = 0; i < g_n; i++)
    free(g_recs[i].name);
  free(g_recs);
  g_recs = recs;
  g_n = n;
}

/* ---- reading the events ------------------------------------------------ */

static void success(uph_rec *r) {
  r->st.state = UPH_UP;
  r->st.last_success = g_now();
  r->st.down_since = 0;
  r->st.failures = 0;
  r->st.credentials_refused = 0;
}

static void mark_down(uph_rec *r) {
  int64_t now = g_now();
  if (r->st.state != UPH_DOWN || !r->st.down_since)
    r->st.down_since = now;
  r->st.state = UPH_DOWN;
  r->st.last_failure = now;
  r->st.failures++;
}

/* The reason word, then the provider's own words when there are some. */
static void set_error(uph_rec *r, const char *reason, const char *words, const char *hint) {
  snprintf(r->st.last_reason, sizeof r->st.last_reason, "%s", reason ? reason : "failed");
  if (words && words[0])
    snprintf(r->st.last_error, sizeof r->st.last_error, "%s: %s", r->st.last_reason, words);
  else
    snprintf(r->st.last_error, sizeof r->st.last_error, "%s", r->st.last_reason);
  snprintf(r->st.hint, sizeof r->st.hint, "%s", hint ? hint : "");
}

static bool is(const char *a, const char *b) {
  return a && !strcmp(a, b);
}

/* OAuth error codes that mean the grant or the client is no longer good
 * (RFC 6749 5.2): a person must act; retrying will not help. */
static bool oauth_refusal(const char *code) {
  return is(code, "invalid_grant") || is(code, "invalid_client") ||
         is(code, "unauthorized_client") || is(code, "access_denied");
}

/* A failure of the AUTH step (by the provider table's phase or the
 * failure word) or a freshly fetched token refused by an API. */
static bool credentials_fault(const stp_kv *kv, size_t n) {
  return is(stp_kv_get(kv, n, "phase"), "auth") || is(stp_kv_get(kv, n, "reason"), "auth") ||
         is(stp_kv_get(kv, n, "failure"), "auth") ||
         is(stp_kv_get(kv, n, "reason"), "token-refused-twice");
}

static const char *first_of(const stp_kv *kv, size_t n, const char *a, const char *b) {
  const char *v = stp_kv_get(kv, n, a);
  return v && v[0] ? v : stp_kv_get(kv, n, b);
}

static void failure(uph_rec *r, const stp_kv *kv, size_t n, const char *words) {
  bool creds = credentials_fault(kv, n);
  if (creds && !r->own_credentials)
    return; /* a device's own password: nothing wrong with the upstream */
  mark_down(r);
  set_error(r, stp_kv_get(kv, n, "reason"), words, stp_kv_get(kv, n, "hint"));
  r->st.credentials_refused = creds;
}

static int64_t parse_secs(const char *s) {
  if (!s || !*s)
    return 0;
  char *end;
  long long v = strtoll(s, &end, 10);
  return *end || v < 0 ? 0 : (int64_t)v;
}

static void token_event(uph_rec *r, const stp_kv *kv, size_t n) {
  int64_t at = parse_secs(stp_kv_get(kv, n, "expires_at"));
  int64_t in = parse_secs(stp_kv_get(kv, n, "expires_in"));
  r->st.token_expiry = at ? at : in ? g_now() + in : 0;
  int64_t rt = parse_secs(stp_kv_get(kv, n, "refresh_token_expires_at"));
  if (rt)
    r->st.refresh_token_expiry = rt;
}

/* oauth2-failed: reason= is the endpoint's words, error= its code. */
static void oauth_failed(uph_rec *r, const stp_kv *kv, size_t n) {
  const char *code = stp_kv_get(kv, n, "error");
  mark_down(r);
  set_error(r, code && code[0] ? code : "oauth2-failed", stp_kv_get(kv, n, "reason"),
            oauth_refusal(code) ? "the token endpoint refused the grant: sign in again "
                                  "(smtp-tls-proxy oauth2 login UPSTREAM) or fix the client "
                                  "credentials"
                                : NULL);
  r->st.credentials_refused = oauth_refusal(code);
  r->st.token_expiry = 0;
}

static bool delivered(const char *event, const stp_kv *kv, size_t n) {
  if (is(event, "message"))
    return is(stp_kv_get(kv, n, "result"), "delivered");
  if (is(event, "probe"))
    return is(stp_kv_get(kv, n, "result"), "ok");
  return is(event, "api-sent") || is(event, "spool-delivered") || is(event, "upstream-recovered");
}

void uphealth_observe(void *ctx, int level, const char *sid, const char *event, const stp_kv *kv,
                      size_t n) {
  (void)ctx;
  (void)level;
  (void)sid;
  uph_rec *r = find(stp_kv_get(kv, n, "upstream"));
  if (!r || !event)
    return;
  if (delivered(event, kv, n))
    success(r);
  else if (is(event, "upstream-failed"))
    failure(r, kv, n, first_of(kv, n, "provider_reply", "detail"));
  else if (is(event, "upstream-refused"))
    failure(r, kv, n, stp_kv_get(kv, n, "provider_reply"));
  else if (is(event, "api-refused") || is(event, "api-deferred"))
    failure(r, kv, n, first_of(kv, n, "code", "reply"));
  else if (is(event, "probe"))
    failure(r, kv, n, stp_kv_get(kv, n, "reply"));
  else if (is(event, "oauth2-failed"))
    oauth_failed(r, kv, n);
  else if (is(event, "oauth2-token"))
    token_event(r, kv, n);
  else if (is(event, "upstream-backoff") && r->st.state != UPH_DOWN)
    mark_down(r); /* the failure line before it said why */
}

int uphealth_install(void) {
  static bool done;
  if (done)
    return 0;
  if (stp_log_observe(uphealth_observe, NULL) < 0)
    return -1;
  done = true;
  return 0;
}
