/* login_int.h - what the login command (login.c), its two flows
 * (login_flow.c) and their common part (login_tokens.c) share. Private to
 * those three files.
 */
#ifndef STP_LOGIN_INT_H
#define STP_LOGIN_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "http_client.h"
#include "login.h"
#include "loopback.h"
#include "smtp-tls-proxy/oauth_login.h"
#include "smtp-tls-proxy/oauthq.h"
#include "tls.h"

#define LOGIN_FORM_MAX (4 * OAUTH2_TOKEN_MAX + 4096)

typedef struct login {
  uv_loop_t *loop;
  const stp_upstream_cfg *up;
  const stp_oauth2_cfg *o;
  tls_ctx *tls;
  bool reload;
  bool ended;
  int rc;
  http_call *call;
  uv_timer_t timer;
  /* device code */
  oauth_device dev;
  int64_t interval_s;
  uint64_t deadline_ms;
  /* authorization code */
  loopback *lb;
  union {
    uv_tty_t tty;
    uv_pipe_t pipe;
  } in;
  bool in_open;
  bool redeeming;
  char verifier[64], state[64], redirect[64];
  char line[OAUTHQ_INPUT_MAX + 2];
  size_t line_len;
  bool line_long;
} login;

/* POST form (cleansed and freed here) to url; cb gets the answer. */
void login_post(login *l, const char *url, stp_buf *form, http_done_fn cb);
/* A form with the client's identity: client_id, and client_secret when the
 * upstream has one. */
void login_form_init(login *l, stp_buf *form);
/* Print "oauth2 login: what: err" and the advice for the provider's error,
 * then end with exit code 1. */
void login_fail(login *l, const char *what, const char *err);
/* The token endpoint gave a refresh token: save it, prove it, reload. */
void login_got_tokens(login *l, oauth2_token_resp *t, const oauth_extra *x);
/* Stop every handle; uv_run returns once they are closed. */
void login_end(login *l, int rc);

void login_device_start(login *l);
void login_code_start(login *l);

#endif
