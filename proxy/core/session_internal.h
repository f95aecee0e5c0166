/* session_internal.h - what session.c and session_auth.c share; not an API
 * for anything else. */
#ifndef STP_SESSION_INTERNAL_H
#define STP_SESSION_INTERNAL_H

#include "smtp-tls-proxy/session.h"

/* session.c */
void session_reply(session *s, const char *line);
void session_replyf(session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void session_up_drop(session *s, bool graceful);
void session_close_now(session *s);
void session_wait_for(session *s, session_wait w);
size_t session_listener_index(const session *s);

/* session_auth.c */
void session_cmd_auth(session *s, const smtp_cmd *c);
void session_auth_line(session *s, const char *line, size_t len);
void session_auth_accept(session *s);
void session_auth_refuse(session *s, const char *line, const char *reason);
void session_auth_forget(session *s);
void session_auth_upstream_failed(session *s, upstream_fail why);
void session_auth_hash_result(session *s, bool ok);

#endif
