/* config_file.c - paths in the configuration: resolved against the
 * directory of the config file and checked to be readable regular files
 * (certificate, private_key, ca_file, password_file, token_file, ...), and
 * the bounded reading of a value kept in a file (secrets, keys).
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

#define FILE_VALUE_MAX (64u * 1024) /* a password, an OAuth token, a key */

/* A value read from a file (a secret, a key, a certificate): trailing CR/LF
 * stripped. The buffer is cleansed on every path that does not hand it
 * over. */
char *cfg_read_file_value(cfg_ctx *c, const yaml_node_t *n, const char *key, bool owner_only) {
  const char *s = cfg_nonempty(c, n, key);
  struct stat st;
  if (!s)
    return NULL;
  if (c->no_secrets)
    return stp_xstrdup(CFG_SECRET_NOT_READ);
  char *path = cfg_resolve_path(c, s);
  int fd = cfg_open_regular(c, n, key, path, &st);
  if (fd < 0) {
    free(path);
    return NULL;
  }
  char *buf = stp_xmalloc(FILE_VALUE_MAX + 1);
  size_t len = 0;
  const char *problem = NULL;
  for (;;) {
    ssize_t r = read(fd, buf + len, FILE_VALUE_MAX + 1 - len);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      problem = strerror(errno);
      break;
    }
    if (r == 0)
      break;
    len += (size_t)r;
    if (len > FILE_VALUE_MAX) {
      problem = "larger than 64 KiB";
      break;
    }
  }
  close(fd);
  while (!problem && len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
    len--;
  if (!problem && len == 0)
    problem = "it is empty";
  if (!problem && memchr(buf, '\0', len))
    problem = "it contains a NUL byte";
  if (problem) {
    cfg_err(c, n, "cannot use %s '%s': %s", key, path, problem);
    stp_cleanse(buf, FILE_VALUE_MAX + 1);
    free(buf);
    free(path);
    return NULL;
  }
  if (owner_only && (st.st_mode & 077))
    cfg_warn(c, n, "%s '%s' is readable by group or others (chmod 600 it)", key, path);
  buf[len] = '\0';
  char *secret = stp_xstrndup(buf, len);
  stp_cleanse(buf, FILE_VALUE_MAX + 1);
  free(buf);
  free(path);
  return secret;
}
