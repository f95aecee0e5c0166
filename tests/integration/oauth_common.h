/* oauth_common.h - what the OAuth stand-in tests share (test_oauth2.c,
 * test_oauth2_jwt.c, test_oauth_login.c): starting one of the Python
 * stand-ins (token_server.py, jwt_server.py, authz_server.py), which all
 * serve HTTPS with the test CA's server certificate, record what they saw
 * as JSON lines, and answer "READY <https port> <smtp port>". */
#ifndef STP_TEST_OAUTH_COMMON_H
#define STP_TEST_OAUTH_COMMON_H

#include "harness.h"

typedef struct oauth_srv {
  h_proc *proc;
  int http_port, smtp_port;
  char record[512]; /* the stand-in's JSON lines */
} oauth_srv;

/* Start tests/tools/<tool>.py with --cert, --key and --record, then the
 * arguments of `args` and of `extra` (each NULL-terminated, may be NULL);
 * fails the test when the stand-in does not say READY within 15 s. */
void oauth_srv_start(oauth_srv *s, const char *tool, const char *const args[],
                     const char *const extra[]);
/* One message from `from` to to@example.com with `subject`, then QUIT; the
 * reply code to the data (its text in text[cap] when text is not NULL). */
int oauth_send_one(const h_proxy *px, const char *from, const char *subject, char *text,
                   size_t cap);

#endif
