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
 *   slow-read    pread/preadv of a regular file sleeps STP_FAULT_DELAY_MS
 *                (default 1000) first: a slow disk or thread pool
 *   trace        nothing fails: every fsync (file or dir, with its path),
 *                rename and renameat2 is appended to STP_FAULT_FILE.trace,
 *                one line each ("fsync-dir /x/queue", "rename a b"), so a
 *                test can check the order of the durability calls
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
#include <sys/uio.h>
#include <time.h>
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

/* One line in STP_FAULT_FILE.trace when the control file says "trace". */
static void trace(const char *what, const char *a, const char *b) {
  const char *path = getenv("STP_FAULT_FILE");
  char buf[256];
  int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
  ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
  if (fd >= 0)
    close(fd);
  if (n <= 0)
    return;
  buf[n] = '\0';
  if (!strstr(buf, "trace"))
    return;
  char tpath[512], line[2200];
  snprintf(tpath, sizeof tpath, "%s.trace", path);
  int len = snprintf(line, sizeof line, "%s %s%s%s\n", what, a, b ? " " : "", b ? b : "");
  int t = open(tpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (t >= 0) {
    if (write(t, line, (size_t)len) < 0) {
      /* only a trace */
    }
    close(t);
  }
}

static int fails_sync(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0)
    return 0;
  char proc[64], target[1024];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(proc, target, sizeof target - 1);
  target[n > 0 ? n : 0] = '\0';
  trace(S_ISDIR(st.st_mode) ? "fsync-dir" : "fsync-file", target, NULL);
  return wanted(S_ISDIR(st.st_mode) ? "fsync-dir" : "fsync-file");
}

/* slow-read: a regular file's positioned read waits first. */
static void maybe_slow(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || !wanted("slow-read"))
    return;
  const char *d = getenv("STP_FAULT_DELAY_MS");
  long ms = d ? atol(d) : 1000;
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

typedef ssize_t (*pread_fn)(int, void *, size_t, off_t);
typedef ssize_t (*pread64_fn)(int, void *, size_t, off64_t);
typedef ssize_t (*preadv_fn)(int, const struct iovec *, int, off_t);
typedef ssize_t (*preadv64_fn)(int, const struct iovec *, int, off64_t);
#define REAL(name, type)                                                                           \
  static type real;                                                                                \
  if (!real)                                                                                       \
  real = (type)dlsym(RTLD_NEXT, name)

ssize_t pread(int fd, void *buf, size_t n, off_t off) {
  REAL("pread", pread_fn);
  maybe_slow(fd);
  return real(fd, buf, n, off);
}

ssize_t pread64(int fd, void *buf, size_t n, off64_t off) {
  REAL("pread64", pread64_fn);
  maybe_slow(fd);
  return real(fd, buf, n, off);
}

ssize_t preadv(int fd, const struct iovec *iov, int cnt, off_t off) {
  REAL("preadv", preadv_fn);
  maybe_slow(fd);
  return real(fd, iov, cnt, off);
}

ssize_t preadv64(int fd, const struct iovec *iov, int cnt, off64_t off) {
  REAL("preadv64", preadv64_fn);
  maybe_slow(fd);
  return real(fd, iov, cnt, off);
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
  trace("rename", a, b);
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
  trace("rename", a, b);
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
