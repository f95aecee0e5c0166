/* config_upstream.h - one `upstreams:` entry (config_upstream.c). */
#ifndef STP_CONFIG_UPSTREAM_H
#define STP_CONFIG_UPSTREAM_H

#include <sys/stat.h>

#include "config_values.h"

/* Fills u from the mapping n (defaults first). */
void cfg_parse_upstream(cfg_ctx *c, yaml_node_t *n, stp_upstream_cfg *u);

#endif
