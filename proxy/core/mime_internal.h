/* mime_internal.h - what mime.c (the stream) takes from mime_hdr.c (the
 * header fields). Private to those two files. */
#ifndef STP_MIME_INTERNAL_H
#define STP_MIME_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "smtp-tls-proxy/mime.h"

/* A complete field of the entity p: Content-Type, -Transfer-Encoding,
 * -Disposition and -ID fill p (the first of each counts); *disp_name is
 * set once the filename came from Content-Disposition, which then wins
 * over Content-Type's name. */
void mime_header_apply(mime_part *p, const char *name, size_t nlen, const char *v, size_t vlen,
                       bool *disp_name);

#endif
