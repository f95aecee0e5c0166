/* login_tokens.c - what both flows of `oauth2 login` share: the POST to
 * an authorization server, the end of the run with its exit code and the
 * provider's advice, and what happens once a refresh token arrived: save
 * it (secret_file.h), print the account, warn about a token that expires
 * (Google, app in Testing), and prove it with one refresh (keeping a
 * rotated one). See login.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "login_int.h"
#include "smtp-tls-proxy/secret_file.h"

void login_form_init(login *l, stp_buf *form) {
  stp_buf_init(form, LOGIN_FORM_MAX);
  oauth2_form_add(form, "client_id", l->o->client_id);
  if (l->o->client_secret)
    oauth2_form_add(form, "client_secret", l->o->client_secret);
}

void login_post(login *l, const char *url, stp_buf *form, http_done_fn cb) {
  static const http1_header hdrs[] = {{"Accept", "application/json"},
                                      {"Content-Type", "application/x-www-form-urlencoded"}};
  http_req req = {.method = "POST",
                  .url = url,
                  .headers = hdrs,
                  .n_headers = 2,
                  .body = form->data,
                  .body_len = form->len,
                  .tls = l->tls,
                  .response_max = OAUTH2_RESPONSE_MAX,
                  .timeout_ms = l->o->timeout_ms ? l->o->timeout_ms : 30000};
  l->call = http_request(l->loop, NULL, &req, cb, l); /* the body is copied */
  stp_cleanse(form->data, form->cap);
  stp_buf_free(form);
}

void login_fail(login *l, const char *what, const char *err) {
  fprintf(stderr, "smtp-tls-proxy: oauth2 login %s: %s: %s\n", l->up->name, what, err);
  const oauth_login_rule *r = oauth_login_explain_line(err);
  if (r)
    fprintf(stderr, "  what to do: %s\n  (%s: %s)\n", r->advice, r->provider, r->source);
  login_end(l, 1);
}

static void timer_closed(uv_handle_t *h) {
  (void)h;
}

static void in_closed(uv_handle_t *h) {
  (void)h;
}

void login_end(login *l, int rc) {
  if (l->ended)
    return;
  l->ended = true;
  l->rc = rc;
  if (l->call)
    http_call_cancel(l->call);
  l->call = NULL;
  loopback_stop(l->lb);
  l->lb = NULL;
  if (!uv_is_closing((uv_handle_t *)&l->timer))
    uv_close((uv_handle_t *)&l->timer, timer_closed);
  if (l->in_open) {
    l->in_open = false;
    uv_close((uv_handle_t *)&l->in, in_closed);
  }
}

/* ---- after the tokens --------------------------------------------------- */

static void save_or_fail(login *l, const char *rt) {
  char err[300];
  if (stp_secret_file_save(l->o->refresh_token_file, rt, err, sizeof err) < 0)
    login_fail(l, "cannot save the refresh token", err);
}

static void verify_done(void *arg, const http1_response *r, http_fail why, const char *err) {
  login *l = arg;
  (void)why;
  l->call = NULL;
  if (!r) {
    login_fail(l, "the first refresh failed", err);
    return;
  }
  char reason[600];
  oauth2_token_resp t;
  if (oauth2_evaluate(r->status, r->body, r->body_len, &t, reason, sizeof reason) < 0) {
    login_fail(l, "the saved refresh token does not work", reason);
    return;
  }
  if (t.refresh_token) /* rotated at once (Entra does): keep the newest */
    save_or_fail(l, t.refresh_token);
  if (!l->ended) {
    printf("verified: the token endpoint issued an access token (expires in %llds)\n",
           t.has_expires_in ? (long long)t.expires_in : (long long)OAUTH2_DEFAULT_EXPIRES_S);
    printf("scopes: %s\n", t.scope ? t.scope : l->o->scope ? l->o->scope : "(none reported)");
    login_end(l, 0);
  }
  oauth2_token_resp_free(&t);
}

static void warn_expiry(const oauth_extra *x) {
  if (!x->has_rt_expires_in)
    return;
  long long days = (long long)(x->rt_expires_in / 86400);
  printf("warning: this refresh token stops working in %lld day%s (%lld seconds). Google "
         "does that for apps whose OAuth consent screen is in \"Testing\" status. Publish the "
         "app (Google Cloud console > Google Auth Platform > Audience > Publish app; a "
         "Workspace-only app can be made \"Internal\" instead), then run this login again.\n",
         days, days == 1 ? "" : "s", (long long)x->rt_expires_in);
}

void login_got_tokens(login *l, oauth2_token_resp *t, const oauth_extra *x) {
  save_or_fail(l, t->refresh_token);
  if (l->ended)
    return;
  printf("saved: the refresh token is in %s (mode 0600)\n", l->o->refresh_token_file);
  const char *user = l->up->username ? l->up->username : l->up->mailbox;
  if (x->account[0])
    printf("account: %s%s\n", x->account,
           user && stp_ascii_casecmp(user, x->account) ? " (not the configured account!)" : "");
  else
    printf("account: %s (as configured; the answer did not name it)\n", user ? user : "?");
  warn_expiry(x);
  stp_buf form;
  login_form_init(l, &form);
  oauth2_form_add(&form, "grant_type", "refresh_token");
  oauth2_form_add(&form, "refresh_token", t->refresh_token);
  if (l->o->scope)
    oauth2_form_add(&form, "scope", l->o->scope);
  login_post(l, l->o->token_url, &form, verify_done);
}
