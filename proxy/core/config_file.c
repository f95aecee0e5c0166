/* config_file.c - paths in the configuration: resolved against the
 * directory of the config file and checked to be readable regular files
 * (certificate, private_key, ca_file, password_file, token_file, ...).
 */
#include "config_file.h"
#include "smtp-tls-proxy/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *cfg_resolve_path(cfg_ctx *c, const char *s) {
  if (s[0] == '/' || !c->base)
    return stp_xstrdup(s);
  while (s[0] == '.' && s[1] == '/')
    s += 2;
  size_t bl = strlen(c->base), need = bl + strlen(s) + 2;
  char *r = stp_xmalloc(need);
  snprintf(r, need, "%s%s%s", c->base, (bl && c->base[bl - 1] == '/') ? "" : "/", s);
  return r;
}

int cfg_open_regular(cfg_ctx *c, const yaml_node_t *n, const char *key, const char *path,
                     struct stat *st) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    cfg_err(c, n, "cannot read %s '%s': %s", key, path, strerror(errno));
    return -1;
  }
  if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
    cfg_err(c, n, "cannot read %s '%s': not a regular file", key, path);
    close(fd);
    return -1;
  }
  return fd;
}

void cfg_parse_file(cfg_ctx *c, const yaml_node_t *n, const char *key, char **dst) {
  const char *s = cfg_nonempty(c, n, key);
  struct stat st;
  if (!s)
    return;
  char *path = cfg_resolve_path(c, s);
  int fd = cfg_open_regular(c, n, key, path, &st);
  if (fd < 0) {
    free(path);
    return;
  }
  close(fd);
  free(*dst);
  *dst = path;
}
