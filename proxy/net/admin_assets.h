/* admin_assets.h - the admin page's files (proxy/net/admin_assets/), made
 * into byte arrays at build time by cmake/embed_assets.cmake. */
#ifndef STP_ADMIN_ASSETS_H
#define STP_ADMIN_ASSETS_H

#include <stddef.h>

#include "smtp-tls-proxy/admin.h"

extern const admin_asset admin_assets[];
extern const size_t admin_assets_n;

#endif
