/* secret_file.c - atomic, private secret files (see secret_file.h). */
#include "smtp-tls-proxy/secret_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "smtp-tls-proxy/util.h"

static int write_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* The rename itself must survive a power cut, or the old (now revoked)
 * refresh token comes back. */
static void sync_dir(char *tmp) {
  char *slash = strrchr(tmp, '/');
  if (!slash)
    return;
  *slash = '\0';
  int dfd = open(slash == tmp ? "/" : tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
}

/* Write, sync and close fd: NULL, or the step that failed (errno set). */
static const char *fill(int fd, const char *secret) {
  if (fchmod(fd, 0600) != 0 || write_all(fd, secret, strlen(secret)) != 0 ||
      write_all(fd, "\n", 1) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return "write";
  }
  if (fsync(fd) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return "fsync";
  }
  return close(fd) != 0 ? "close" : NULL;
}

int stp_secret_file_save(const char *path, const char *secret, char *err, size_t errlen) {
  size_t plen = strlen(path);
  char *tmp = stp_xmalloc(plen + 5);
  memcpy(tmp, path, plen);
  memcpy(tmp + plen, ".tmp", 5);
  const char *step = NULL;
  int fd = -1;
  if (unlink(tmp) != 0 && errno != ENOENT) {
    step = "remove stale";
  } else if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0) {
    step = "create";
  } else if ((step = fill(fd, secret)) == NULL && rename(tmp, path) != 0) {
    step = "rename";
  }
  if (!step) {
    sync_dir(tmp);
    free(tmp);
    return STP_OK;
  }
  int saved = errno ? errno : EIO;
  snprintf(err, errlen, "%s %s.tmp: %s", step, path, strerror(saved));
  if (fd >= 0) /* created by us: do not leave it behind */
    unlink(tmp);
  free(tmp);
  return STP_EIO;
}
