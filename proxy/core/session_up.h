/* session_up.h - upstream answers applied to the session (session_up.c).
 * Private to proxy/core/session*.c. */
#ifndef STP_SESSION_UP_H
#define STP_SESSION_UP_H

#include "smtp-tls-proxy/session.h"

void session_up_apply(session *s, const session_outcome *o);
void session_up_apply_reply(session *s, const smtp_reply *r);

#endif
