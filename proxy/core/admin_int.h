/* admin_int.h - shared between admin.c (framing, security, routing) and
 * admin_render.c (the answers). Private to proxy/core/admin*.c. */
#ifndef STP_ADMIN_INT_H
#define STP_ADMIN_INT_H

#include "smtp-tls-proxy/admin.h"

#define ADMIN_COOKIE "stp_admin"

/* Fill r's action from its method, target and body (admin_parse). */
void admin_route(admin_req *r, const char *body, size_t blen);
/* The answer of every action but ADM_TEST, for an authorised request. */
void admin_render(admin *a, const admin_req *r, int64_t wall_ms, admin_resp *resp);

/* The page (admin_page.c): the template filled in; notice (NULL: none)
 * says what a form's action did, transcript is a test message's dialogue. */
void admin_page(admin *a, const admin_req *r, int64_t wall_ms, const char *notice, bool notice_ok,
                const char *transcript, stp_buf *b);

#endif
