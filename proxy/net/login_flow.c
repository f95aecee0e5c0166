/* login_flow.c - the two ways `oauth2 login` gets a refresh token:
 *
 * - device code (RFC 8628): ask the device endpoint for a user code, show
 *   it, poll the token endpoint every `interval` seconds (5 more after each
 *   slow_down) until a token, a refusal or the code's expiry;
 * - authorization code with PKCE (RFC 7636, S256) and a loopback redirect
 *   (RFC 8252 7.3): show the authorization URL, then take the first answer
 *   whose state matches, from the loopback listener or pasted on standard
 *   input, and redeem its code once.
 *
 * Everything the providers send is read by oauth_login.c and oauthq.c;
 * here are only timers, sockets and the terminal.
 */
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "login_int.h"
#include "smtp-tls-proxy/log.h"

/* ---- device code --------------------------------------------------------- */

static void poll_done(void *arg, const http1_response *r, http_fail why, const char *err);

static void poll_now(uv_timer_t *t) {
  login *l = t->data;
  if (stp_now_ms() >= l->deadline_ms) {
    login_fail(l, "the code expired",
               "nobody signed in before the code expired; run the login "
               "again");
    return;
  }
  stp_buf form;
  login_form_init(l, &form);
  oauth2_form_add(&form, "grant_type", "urn:ietf:params:oauth:grant-type:device_code");
  oauth2_form_add(&form, "device_code", l->dev.device_code);
  login_post(l, l->o->token_url, &form, poll_done);
}

static void poll_later(login *l) {
  uv_timer_start(&l->timer, poll_now, (uint64_t)l->interval_s * 1000, 0);
}

static void poll_done(void *arg, const http1_response *r, http_fail why, const char *err) {
  login *l = arg;
  (void)why;
  l->call = NULL;
  if (!r) { /* a network failure: the code may still be good */
    fprintf(stderr, "smtp-tls-proxy: oauth2 login %s: polling: %s (trying again)\n", l->up->name,
            err);
    poll_later(l);
    return;
  }
  char reason[600];
  oauth2_token_resp t;
  oauth_extra x;
  switch (oauth_token_verdict(r->status, r->body, r->body_len, &t, &x, reason, sizeof reason)) {
  case OL_TOKEN:
    printf("signed in.\n");
    login_got_tokens(l, &t, &x);
    oauth2_token_resp_free(&t);
    return;
  case OL_SLOW_DOWN:
    l->interval_s += OAUTH_LOGIN_SLOW_DOWN_S;
    /* fall through */
  case OL_PENDING:
    poll_later(l);
    return;
  case OL_EXPIRED:
    login_fail(l, "the code expired before anyone signed in", reason);
    return;
  case OL_DENIED:
    login_fail(l, "the sign-in was refused", reason);
    return;
  default:
    login_fail(l, "the token endpoint refused the device code", reason);
    return;
  }
}

static void device_answer(void *arg, const http1_response *r, http_fail why, const char *err) {
  login *l = arg;
  (void)why;
  l->call = NULL;
  char reason[600];
  if (!r) {
    login_fail(l, "the device authorization request failed", err);
    return;
  }
  if (oauth_device_parse(r->status, r->body, r->body_len, &l->dev, reason, sizeof reason) < 0) {
    login_fail(l, "the device authorization request was refused", reason);
    return;
  }
  l->interval_s = l->dev.interval;
  l->deadline_ms = stp_now_ms() + (uint64_t)l->dev.expires_in * 1000;
  const char *who = l->up->username ? l->up->username : l->up->mailbox;
  printf("Sign in as %s: open the verification address in any browser and enter the user "
         "code.\n",
         who ? who : "the mailbox's account");
  printf("verification address: %s\n", l->dev.verification_uri);
  if (l->dev.verification_uri_complete[0])
    printf("address with the code: %s\n", l->dev.verification_uri_complete);
  printf("user code: %s\n", l->dev.user_code);
  if (l->dev.message[0])
    printf("the provider says: %s\n", l->dev.message);
  printf("waiting (the code is valid for %lld minutes)...\n",
         (long long)(l->dev.expires_in + 59) / 60);
  poll_later(l);
}

void login_device_start(login *l) {
  stp_buf form;
  l->timer.data = l;
  stp_buf_init(&form, LOGIN_FORM_MAX);
  oauth2_form_add(&form, "client_id", l->o->client_id);
  if (l->o->scope)
    oauth2_form_add(&form, "scope", l->o->scope);
  login_post(l, l->o->device_authorization_url, &form, device_answer);
}

/* ---- authorization code -------------------------------------------------- */

static void code_answer(void *arg, const http1_response *r, http_fail why, const char *err) {
  login *l = arg;
  (void)why;
  l->call = NULL;
  if (!r) {
    login_fail(l, "redeeming the authorization code failed", err);
    return;
  }
  char reason[600];
  oauth2_token_resp t;
  oauth_extra x;
  if (oauth_token_verdict(r->status, r->body, r->body_len, &t, &x, reason, sizeof reason) !=
      OL_TOKEN) {
    login_fail(l, "the token endpoint refused the authorization code", reason);
    return;
  }
  login_got_tokens(l, &t, &x);
  oauth2_token_resp_free(&t);
}

static void redeem(login *l, const char *code) {
  l->redeeming = true;
  loopback_stop(l->lb);
  l->lb = NULL;
  if (l->in_open) {
    l->in_open = false;
    uv_close((uv_handle_t *)&l->in, NULL);
  }
  uv_timer_stop(&l->timer);
  stp_buf form;
  login_form_init(l, &form);
  oauth2_form_add(&form, "grant_type", "authorization_code");
  oauth2_form_add(&form, "code", code);
  oauth2_form_add(&form, "redirect_uri", l->redirect);
  oauth2_form_add(&form, "code_verifier", l->verifier);
  login_post(l, l->o->token_url, &form, code_answer);
}

/* One authorization response, from the listener or the terminal. Returns
 * the page for the browser; a wrong or malformed answer is reported and
 * the wait goes on (anyone on this host can reach the listener). */
static const char *take_answer(login *l, const char *p, size_t n, int *status) {
  static const char ok[] = "smtp-tls-proxy: signed in. You may close this window.\n";
  static const char failed[] = "smtp-tls-proxy: the sign-in failed; the terminal says why. You "
                               "may close this window.\n";
  static const char stale[] = "smtp-tls-proxy: this answer does not belong to the login in "
                              "progress.\n";
  oauthq q;
  int rc = oauthq_parse(p, n, &q);
  *status = 200;
  if (rc == STP_ENOTFOUND) {
    *status = 404;
    return "Nothing here.\n";
  }
  if (l->redeeming || l->ended) {
    oauthq_wipe(&q);
    *status = 400;
    return stale;
  }
  const char *page = ok;
  if (rc < 0) {
    fprintf(stderr,
            "smtp-tls-proxy: oauth2 login: that is not a redirect address with a code "
            "(%s); still waiting\n",
            stp_strerror(rc));
    *status = 400;
    page = stale;
  } else if (!q.has_state || strcmp(q.state, l->state) != 0) {
    fprintf(stderr, "smtp-tls-proxy: oauth2 login: an answer with the wrong state was ignored "
                    "(not from this login); still waiting\n");
    *status = 400;
    page = stale;
  } else if (q.has_error) {
    char line[700];
    snprintf(line, sizeof line, "HTTP 302 redirect: %.100s%s%.400s", q.error,
             q.has_error_description ? ": " : "", q.error_description);
    login_fail(l, "the authorization server refused", line);
    page = failed;
  } else {
    redeem(l, q.code);
  }
  oauthq_wipe(&q);
  return page;
}

static void lb_request(void *arg, const char *target, size_t len, int *status, const char **page) {
  *page = take_answer(arg, target, len, status);
}

static void in_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b) {
  login *l = h->data;
  (void)sz;
  *b = uv_buf_init(l->line + l->line_len, (unsigned)(sizeof l->line - 1 - l->line_len));
}

/* Lines pasted on standard input; an over-long line is dropped whole. */
static void in_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  login *l = s->data;
  (void)b;
  if (n < 0) { /* EOF: the listener may still get the answer */
    l->in_open = false;
    uv_close((uv_handle_t *)s, NULL);
    return;
  }
  l->line_len += (size_t)n;
  char *nl;
  while (l->in_open && (nl = memchr(l->line, '\n', l->line_len)) != NULL) {
    size_t used = (size_t)(nl - l->line) + 1;
    int status;
    if (!l->line_long && used > 1)
      take_answer(l, l->line, used - 1, &status);
    l->line_long = false;
    memmove(l->line, l->line + used, l->line_len - used);
    l->line_len -= used;
  }
  if (l->line_len == sizeof l->line - 1) { /* full, no newline */
    l->line_long = true;
    l->line_len = 0;
    fprintf(stderr, "smtp-tls-proxy: oauth2 login: that line is too long; still waiting\n");
  }
}

static void open_stdin(login *l) {
  uv_handle_type t = uv_guess_handle(0);
  int rc = -1;
  if (t == UV_TTY)
    rc = uv_tty_init(l->loop, &l->in.tty, 0, 1);
  else if (t == UV_NAMED_PIPE && (rc = uv_pipe_init(l->loop, &l->in.pipe, 0)) == 0 &&
           (rc = uv_pipe_open(&l->in.pipe, 0)) != 0)
    uv_close((uv_handle_t *)&l->in.pipe, NULL);
  if (rc != 0)
    return; /* no terminal: the listener alone */
  l->in.pipe.data = l;
  l->in_open = true;
  uv_read_start((uv_stream_t *)&l->in, in_alloc, in_read);
}

static void wait_expired(uv_timer_t *t) {
  login_fail(t->data, "nobody signed in", "no answer came back in 15 minutes; run it again");
}

/* verifier: 32 random bytes, base64url (43 characters, RFC 7636 4.1);
 * challenge: base64url(SHA-256(verifier)); state: 16 random bytes. */
static bool make_pkce(login *l, char *challenge, size_t cap) {
  unsigned char rnd[32], st[16], dg[SHA256_DIGEST_LENGTH];
  if (RAND_bytes(rnd, sizeof rnd) != 1 || RAND_bytes(st, sizeof st) != 1)
    return false;
  oauth_b64url(rnd, sizeof rnd, l->verifier, sizeof l->verifier);
  oauth_b64url(st, sizeof st, l->state, sizeof l->state);
  SHA256((const unsigned char *)l->verifier, strlen(l->verifier), dg);
  oauth_b64url(dg, sizeof dg, challenge, cap);
  stp_cleanse(rnd, sizeof rnd);
  return true;
}

void login_code_start(login *l) {
  char err[200], challenge[64];
  int port;
  l->timer.data = l;
  if (!make_pkce(l, challenge, sizeof challenge)) {
    login_fail(l, "setting up", "no random bytes");
    return;
  }
  l->lb = loopback_start(l->loop, lb_request, l, &port, err, sizeof err);
  if (!l->lb) {
    login_fail(l, "setting up", err);
    return;
  }
  /* No path: Google documents http://127.0.0.1:port, and Entra matches a
   * registered http://127.0.0.1 whatever the port (RFC 8252 7.3). */
  snprintf(l->redirect, sizeof l->redirect, "http://127.0.0.1:%d", port);
  stp_buf url;
  stp_buf_init(&url, 8192);
  oauth_authz_req req = {.base = l->o->authorization_url,
                         .client_id = l->o->client_id,
                         .redirect_uri = l->redirect,
                         .scope = l->o->scope,
                         .state = l->state,
                         .challenge = challenge,
                         .google = l->o->login_google};
  if (oauth_authz_url(&url, &req) < 0) {
    stp_buf_free(&url);
    login_fail(l, "setting up", "the authorization URL is too long");
    return;
  }
  const char *who = l->up->username ? l->up->username : l->up->mailbox;
  printf("Open this address in a browser and sign in as %s:\n", who ? who : "the account");
  printf("%.*s\n", (int)url.len, url.data);
  printf("The browser is then sent to %s. If it runs on another machine, that page does not "
         "load: copy the whole address from its address bar and paste it here.\n",
         l->redirect);
  stp_buf_free(&url);
  open_stdin(l);
  uv_timer_start(&l->timer, wait_expired, LOGIN_CODE_WAIT_MS, 0);
}
