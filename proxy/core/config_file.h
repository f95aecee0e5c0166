/* config_file.h - paths and files named by the configuration (config_file.c). */
#ifndef STP_CONFIG_FILE_H
#define STP_CONFIG_FILE_H

#include <sys/stat.h>

#include "config_values.h"

/* s resolved against c->base (malloc'd); absolute or base-less: a copy. */
char *cfg_resolve_path(cfg_ctx *c, const char *s);
/* Opens a regular file for reading; -1 with an error reported otherwise. */
int cfg_open_regular(cfg_ctx *c, const yaml_node_t *n, const char *key, const char *path,
                     struct stat *st);
/* A path value: resolved, and checked to be a readable file. */
void cfg_parse_file(cfg_ctx *c, const yaml_node_t *n, const char *key, char **dst);
/* The file named by key, bounded (64 KiB), trailing CR/LF stripped,
 * NUL-free, non-empty; NULL with an error. owner_only: warn when group or
 * others may read it. The read buffer is cleansed. With c->no_secrets the
 * file is not read: CFG_SECRET_NOT_READ instead. */
char *cfg_read_file_value(cfg_ctx *c, const yaml_node_t *n, const char *key, bool owner_only);

#endif
