/* config_listener.h - one `listeners:` entry (config_listener.c). */
#ifndef STP_CONFIG_LISTENER_H
#define STP_CONFIG_LISTENER_H

#include <sys/stat.h>

#include "config_values.h"

/* Fills l from the mapping n (defaults first). */
void cfg_parse_listener(cfg_ctx *c, yaml_node_t *n, stp_listener_cfg *l);
/* A `users:` mapping of name -> crypt(3) hash (listeners, admin). */
void cfg_parse_users(cfg_ctx *c, yaml_node_t *n, stp_user **users, size_t *n_users);
/* The hash unknown user names are checked against (n >= 1; see lanauth.h). */
const char *cfg_unknown_user_hash(const stp_user *users, size_t n);

#endif
