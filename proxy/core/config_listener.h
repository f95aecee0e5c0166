/* config_listener.h - one `listeners:` entry (config_listener.c). */
#ifndef STP_CONFIG_LISTENER_H
#define STP_CONFIG_LISTENER_H

#include <sys/stat.h>

#include "config_values.h"

/* Fills l from the mapping n (defaults first). */
void cfg_parse_listener(cfg_ctx *c, yaml_node_t *n, stp_listener_cfg *l);

#endif
