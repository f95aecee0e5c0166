/* config_alerts.h - the `alerts:` section (config_alerts.c). */
#ifndef STP_CONFIG_ALERTS_H
#define STP_CONFIG_ALERTS_H

#include "config_values.h"

/* Fills c->cfg->alerts from the mapping n (defaults first). Runs after the
 * routes are read: alerts.email must reach a route. */
void cfg_parse_alerts(cfg_ctx *c, yaml_node_t *n);
void cfg_free_alerts(stp_alerts_cfg *a);

#endif
