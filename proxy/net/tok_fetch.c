/* tok_fetch.c - the HTTPS POST to a token endpoint, on the HTTP client.
 *
 * Owns: the token request (the form holds the client secret or the refresh
 * token; every copy is wiped) and the source's TLS context, made once and
 * verified against its ca_file with the URL's host as the name. The HTTP
 * client bounds the answer (OAUTH2_RESPONSE_MAX) and the time (the
 * source's timeout); oauth2.c judges the answer. A failure found before
 * the request starts reaches tok_src_done from the loop (defer.h).
 */
#include <stdio.h>
#include <string.h>

#include "http_client.h"
#include "smtp-tls-proxy/url.h"
#include "tok_internal.h"

#define FORM_MAX (3 * OAUTH2_TOKEN_MAX + 4096)

/* The endpoint's OAuth error code, kept apart for metrics and the log:
 * printable characters of an error code only (RFC 6749 5.2), bounded. */
static void note_error(tok_src *s, const http1_response *r) {
  oauth2_token_resp e;
  size_t n = 0;
  if (oauth2_json_parse(r->body, r->body_len, &e) == 0 && e.error) {
    for (const char *p = e.error; *p && n + 1 < sizeof s->error; p++)
      if (*p >= 0x20 && *p <= 0x7e && *p != '"' && *p != '\\')
        s->error[n++] = *p;
  }
  s->error[n] = '\0';
  s->fail_reason = n                  ? oauth2_error_reason(s->error)
                   : r->status != 200 ? "http_status"
                                      : "bad_response";
  oauth2_token_resp_free(&e);
}

static void fetch_done(void *arg, const http1_response *r, http_fail why, const char *err) {
  tok_src *s = arg;
  (void)why;
  if (!r) {
    s->fail_reason = "network";
    s->done(s, NULL, NULL, err);
    return;
  }
  char reason[512];
  oauth2_token_resp t;
  if (oauth2_evaluate(r->status, r->body, r->body_len, &t, reason, sizeof reason) < 0) {
    note_error(s, r);
    s->done(s, NULL, NULL, reason);
    return;
  }
  char *token = t.access_token;
  t.access_token = NULL;
  s->done(s, &t, token, NULL);
  oauth2_token_resp_free(&t);
}

/* The form for the source's grant; secrets inside, cleansed by the caller.
 * A signing failure leaves its reason in why. */
static int build_form(tok_src *s, stp_buf *form, char *why, size_t cap) {
  int rc = 0;
  if (s->grant == STP_GRANT_SERVICE_ACCOUNT) /* the JWT is the whole request */
    return tok_jwt_form(s, form, why, cap);
  if (s->grant == STP_GRANT_CLIENT_CREDENTIALS) {
    rc |= oauth2_form_add(form, "grant_type", "client_credentials");
  } else {
    rc |= oauth2_form_add(form, "grant_type", "refresh_token");
    rc |= oauth2_form_add(form, "refresh_token", s->rt ? s->rt : "");
  }
  rc |= oauth2_form_add(form, "client_id", s->client_id);
  if (s->client_secret)
    rc |= oauth2_form_add(form, "client_secret", s->client_secret);
  if (s->scope)
    rc |= oauth2_form_add(form, "scope", s->scope);
  if (rc)
    return STP_EFULL;
  return tok_jwt_form(s, form, why, cap); /* a certificate instead of a secret */
}

static void early_cb(void *arg) {
  tok_src *s = arg;
  s->done(s, NULL, NULL, s->early);
}

/* "": ready to send; else why not. */
static const char *prepare(tok_src *s, stp_buf *form, char *why, size_t cap) {
  stp_url u;
  if (stp_url_parse(s->token_url, &u) < 0)
    return "bad token_url";
  if (s->grant == STP_GRANT_REFRESH_TOKEN && !s->rt) {
    /* refresh_token_file did not exist at load (config_auth.c warned) */
    snprintf(why, cap,
             "no refresh token: %s does not exist yet (run `smtp-tls-proxy -c FILE oauth2 "
             "login %s`, then reload)",
             s->rt_file ? s->rt_file : "refresh_token_file", s->name);
    return why;
  }
  why[0] = '\0';
  if (build_form(s, form, why, cap) < 0) {
    s->fail_reason = "signing";
    return why[0] ? why : "token request too large";
  }
  if (u.https && !s->tls) {
    s->tls = tls_ctx_client(s->ca_file, STP_TLS1_2, true, why, cap);
    if (!s->tls)
      return why;
  }
  return "";
}

void tok_fetch_start(uv_loop_t *loop, tok_src *s) {
  s->fetching = true;
  s->error[0] = '\0';
  s->fail_reason = NULL;
  char why[400];
  stp_buf form;
  stp_buf_init(&form, FORM_MAX);
  const char *bad = prepare(s, &form, why, sizeof why);
  if (bad[0]) {
    /* Report from the loop: the caller is still inside tok_get. */
    snprintf(s->early, sizeof s->early, "%s", bad);
    defer_post(loop, &s->early_ev, early_cb, s);
  } else {
    static const http1_header hdrs[] = {{"Accept", "application/json"},
                                        {"Content-Type", "application/x-www-form-urlencoded"}};
    http_req req = {.method = "POST",
                    .url = s->token_url,
                    .headers = hdrs,
                    .n_headers = 2,
                    .body = form.data,
                    .body_len = form.len,
                    .tls = s->tls,
                    .response_max = OAUTH2_RESPONSE_MAX,
                    .timeout_ms = s->timeout_ms};
    http_request(loop, NULL, &req, fetch_done, s); /* the body is copied */
  }
  stp_cleanse(form.data, form.cap);
  stp_buf_free(&form);
}
