/* config_spool.h - the `spool:` section and the spool rules for routes
 * (config_spool.c). */
#ifndef STP_CONFIG_SPOOL_H
#define STP_CONFIG_SPOOL_H

#include "config_values.h"

/* Fills c->cfg->spool from the mapping n (defaults first). */
void cfg_parse_spool(cfg_ctx *c, yaml_node_t *n);
/* After every section: each spool route needs the spool section and must
 * not be reachable from an auth: passthrough listener. */
void cfg_check_spool_routes(cfg_ctx *c);
void cfg_free_spool(stp_spool_cfg *sp);
/* user@domain, no spaces, brackets or quotes (notify:, alerts.email). */
bool cfg_plain_address(const char *s);

#endif
