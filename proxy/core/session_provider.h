/* session_provider.h - provider refusals to MAIL, RCPT, DATA and the final
 * dot, read through the provider table (session_provider.c). Private to
 * proxy/core/session*.c. */
#ifndef STP_SESSION_PROVIDER_H
#define STP_SESSION_PROVIDER_H

#include "smtp-tls-proxy/session.h"

/* The reply the device should get for the upstream's reply r to what the
 * session waits for: r itself, or, when a row of the provider table
 * matches, `mapped` filled with the row's class and words (and one log
 * line and a metric written). */
const smtp_reply *session_provider_reply(session *s, const smtp_reply *r, smtp_reply *mapped);

#endif
