/* config_auth.h - an upstream's `auth:` mapping (config_auth.c). */
#ifndef STP_CONFIG_AUTH_H
#define STP_CONFIG_AUTH_H

#include <sys/stat.h>

#include "config_values.h"

/* Fills u's mechanism, username and secret or token source from the `auth:`
 * mapping n (already checked to be a mapping); sets u->has_auth. */
void cfg_parse_upstream_auth(cfg_ctx *c, yaml_node_t *n, stp_upstream_cfg *u);

#endif
