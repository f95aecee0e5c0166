/* session_auth.h - AUTH from LAN devices (session_auth.c). Private to
 * proxy/core/session*.c. */
#ifndef STP_SESSION_AUTH_H
#define STP_SESSION_AUTH_H

#include "smtp-tls-proxy/session.h"

void session_auth_cmd(session *s, const smtp_cmd *c);
void session_auth_line(session *s, const char *line, size_t len);
void session_auth_accept(session *s);
void session_auth_refuse(session *s, const char *line, const char *reason);
void session_auth_forget(session *s);
void session_auth_upstream_failed(session *s, upstream_fail why);
void session_auth_hash_result(session *s, bool ok);

#endif
