/* fault_shim.c - an LD_PRELOAD library that makes the spool's durability
 * calls fail on demand, for the integration tests (test_spool_faults.c).
 *
 * STP_FAULT_FILE names a control file; on every fsync, fdatasync, rename
 * and renameat2 the shim reads it, and fails the call with EIO when it
 * holds the matching word:
 *   fsync-file   fsync/fdatasync of a regular file
 *   fsync-dir    fsync of a directory (the commit's directory fsync)
 *   rename       rename/renameat2
 *   lock-fail    fcntl F_OFD_SETLK fails with ENOLCK (NFSv3 without lockd)
 *   lock-fake    fcntl F_OFD_SETLK always succeeds (locks that do not
 *                exclude each other: a mount with nolock/nobrl semantics)
 * An empty or missing file lets everything through. Every failure it
 * injects is counted in STP_FAULT_FILE.count (one line per failure), so a
 * test can tell that its fault was actually hit. Built by CMake under
 * tests/; never part of the proxy.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int wanted(const char *word) {
  const char *path = getenv("STP_FAULT_FILE");
  if (!path)
    return 0;
  char buf[256];
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0)
    return 0;
  buf[n] = '\0';
  if (!strstr(buf, word))
    return 0;
  char cpath[512];
  snprintf(cpath, sizeof cpath, "%s.count", path);
  int c = open(cpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (c >= 0) {
    char line[64];
    int len = snprintf(line, sizeof line, "%s\n", word);
    if (write(c, line, (size_t)len) < 0) {
      /* only a count */
    }
    close(c);
  }
  return 1;
}

static int fails_sync(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0)
    return 0;
  return wanted(S_ISDIR(st.st_mode) ? "fsync-dir" : "fsync-file");
}

int fsync(int fd) {
  static int (*real)(int);
  if (!real)
    real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
  if (fails_sync(fd)) {
    errno = EIO;
    return -1;
  }
  return real(fd);
}

int fdatasync(int fd) {
  static int (*real)(int);
  if (!real)
    real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
  if (fails_sync(fd)) {
    errno = EIO;
    return -1;
  }
  return real(fd);
}

int rename(const char *a, const char *b) {
  static int (*real)(const char *, const char *);
  if (!real)
    real = (int (*)(const char *, const char *))dlsym(RTLD_NEXT, "rename");
  if (wanted("rename")) {
    errno = EIO;
    return -1;
  }
  return real(a, b);
}

int renameat2(int da, const char *a, int db, const char *b, unsigned flags) {
  static int (*real)(int, const char *, int, const char *, unsigned);
  if (!real)
    real = (int (*)(int, const char *, int, const char *, unsigned))dlsym(RTLD_NEXT, "renameat2");
  if (wanted("rename")) {
    errno = EIO;
    return -1;
  }
  return real(da, a, db, b, flags);
}

static int shim_fcntl(int (*real)(int, int, ...), int fd, int cmd, void *arg) {
  if (cmd == F_OFD_SETLK && wanted("lock-fail")) {
    errno = ENOLCK;
    return -1;
  }
  if (cmd == F_OFD_SETLK && wanted("lock-fake"))
    return 0;
  return real(fd, cmd, arg);
}

int fcntl(int fd, int cmd, ...) {
  static int (*real)(int, int, ...);
  if (!real)
    real = (int (*)(int, int, ...))dlsym(RTLD_NEXT, "fcntl");
  va_list ap;
  va_start(ap, cmd);
  void *arg = va_arg(ap, void *);
  va_end(ap);
  return shim_fcntl(real, fd, cmd, arg);
}

int fcntl64(int fd, int cmd, ...) {
  static int (*real)(int, int, ...);
  if (!real)
    real = (int (*)(int, int, ...))dlsym(RTLD_NEXT, "fcntl64");
  va_list ap;
  va_start(ap, cmd);
  void *arg = va_arg(ap, void *);
  va_end(ap);
  return shim_fcntl(real, fd, cmd, arg);
}
