/* config_auth.h - an upstream's `auth:` mapping (config_auth.c). */
#ifndef STP_CONFIG_AUTH_H
#define STP_CONFIG_AUTH_H

#include <sys/stat.h>

#include "config_values.h"

/* Fills u's mechanism, username and secret or token source from the `auth:`
 * mapping n (already checked to be a mapping); sets u->has_auth. */
void cfg_parse_upstream_auth(cfg_ctx *c, yaml_node_t *n, stp_upstream_cfg *u);

/* The oauth2 keys of the signed-JWT credentials (config_jwt.c): each key
 * node (k_) and value node (v_, NULL for a null value) as walked. */
typedef struct cfg_jwt_nodes {
  yaml_node_t *k_sa, *v_sa, *k_sub, *v_sub, *k_cert, *v_cert, *k_key, *v_key;
  yaml_node_t *k_url;    /* token_url written */
  yaml_node_t *k_rt;     /* refresh_token_file */
  yaml_node_t *k_secret; /* client_secret_env or client_secret_file */
  yaml_node_t *v_grant;
  bool m365; /* a microsoft365 preset */
} cfg_jwt_nodes;

/* After the rest of oauth2: grant: service_account (key file, subject,
 * token_uri, scope) and certificate credentials, with their conflicts. */
void cfg_parse_oauth2_jwt(cfg_ctx *c, yaml_node_t *n, const cfg_jwt_nodes *j, stp_upstream_cfg *u,
                          stp_oauth2_cfg *o);

#endif
