/* session_cmd.h - the device's commands (session_cmd.c). Private to
 * proxy/core/session*.c. */
#ifndef STP_SESSION_CMD_H
#define STP_SESSION_CMD_H

#include "smtp-tls-proxy/session.h"

/* One complete command line (without its line end). */
void session_cmd_line(session *s, const char *line, size_t len);
/* Count a protocol error; too many close the session. */
void session_cmd_error(session *s);

#endif
