/* config_admin.h - the `admin:` section (config_admin.c). */
#ifndef STP_CONFIG_ADMIN_H
#define STP_CONFIG_ADMIN_H

#include "config_values.h"

/* Fills c->cfg->admin from the mapping n (defaults first). */
void cfg_parse_admin(cfg_ctx *c, yaml_node_t *n);
void cfg_free_admin(stp_admin_cfg *a);

#endif
