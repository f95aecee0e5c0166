/* login.h - `smtp-tls-proxy -c FILE oauth2 login UPSTREAM [--flow device|code]
 * [--reload]`: get a refresh token for an upstream whose oauth2 uses the
 * refresh_token grant, save it to refresh_token_file, prove it works.
 *
 * Owns: the command's event loop run, its terminal output and exit code.
 * Guarantees: no token, code or verifier is ever printed; the file is
 * written like a rotated token (secret_file.h: O_EXCL temporary, 0600,
 * fsync, rename, directory fsync); every wait is bounded (the device
 * code's lifetime, LOGIN_CODE_WAIT_MS for the browser, the HTTP
 * timeouts).
 */
#ifndef STP_LOGIN_H
#define STP_LOGIN_H

#include <stdbool.h>

#include "smtp-tls-proxy/config.h"

#define LOGIN_CODE_WAIT_MS (15 * 60 * 1000) /* the admin has this long to sign in */

typedef enum { LOGIN_FLOW_AUTO = 0, LOGIN_FLOW_DEVICE, LOGIN_FLOW_CODE } login_flow;

/* Returns the exit code: 0 when the token was saved and worked, 1 when it
 * was not, 2 when it was saved but --reload could not reach the proxy. */
int login_run(const stp_config *cfg, const char *upstream, login_flow flow, bool reload);

#endif
