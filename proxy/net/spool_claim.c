/* spool_claim.c - the shared spool's replica start and message claims
 * (see spool_claim.h for the lock and why it is an OFD lock).
 *
 * Layout added under spool.dir when shared: ctl/<tag> (the replica's
 * control socket), ctl/<tag>.lock (held locked while the replica lives),
 * tmp/<tag>.* (its files being written) and tmp/<tag>.api/ (its API
 * upstream copies).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* F_OFD_SETLK */
#endif
#include "spool_claim.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "smtp-tls-proxy/util.h"
#include "spool_files.h"

#define PATH_CAP 512

static char g_tag[SPOOL_TAG_LEN + 1];
static char g_prefix[SPOOL_TAG_LEN + 2];

const char *spool_replica_tag(void) {
  return g_tag;
}

/* A write lock on the whole file through this open file description. */
static int ofd_lock(int fd) {
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
  if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
    return 0;
  return errno == EACCES ? -EAGAIN : -errno;
}

static bool tag_valid(const char *s, size_t n) {
  if (n != SPOOL_TAG_LEN)
    return false;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return false;
  return true;
}

void spool_claim_ctl_path(const char *dir, bool shared, char *out, size_t cap) {
  if (shared)
    snprintf(out, cap, "%s/ctl/%s", dir, g_tag);
  else
    snprintf(out, cap, "%s/control.sock", dir);
}

/* Two descriptions of one probe file: the first must get the lock and
 * the second must be refused, or the filesystem's locks are not real. */
static int probe_locks(const char *dir, char *err, size_t errlen) {
  char p[PATH_CAP];
  snprintf(p, sizeof p, "%s/ctl/%s.probe", dir, g_tag);
  int a = open(p, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  int b = a < 0 ? -1 : open(p, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  int rc = a < 0 || b < 0 ? -errno : 0;
  if (rc)
    snprintf(err, errlen, "spool dir %s: lock probe %s: %s", dir, p, strerror(-rc));
  if (!rc && (rc = ofd_lock(a)) < 0)
    snprintf(err, errlen,
             "spool.shared: %s gives no file locks (fcntl F_OFD_SETLK: %s); a shared spool needs "
             "a filesystem with working locks (NFSv4, or NFSv3 with lockd; not nolock/nobrl)",
             dir, strerror(-rc));
  if (!rc && ofd_lock(b) != -EAGAIN) {
    rc = -ENOLCK;
    snprintf(err, errlen,
             "spool.shared: locks on %s do not exclude each other (a second lock on the probe "
             "file was granted); a shared spool needs a filesystem with working locks",
             dir);
  }
  if (a >= 0)
    close(a);
  if (b >= 0)
    close(b);
  unlink(p);
  return rc;
}

/* Whether the replica `tag` is alive: its liveness file exists and is
 * locked. A dead one's lock is taken and kept in *fd for the clean-up. */
static bool replica_alive(const char *dir, const char *tag, int *fd) {
  char p[PATH_CAP];
  snprintf(p, sizeof p, "%s/ctl/%s.lock", dir, tag);
  *fd = open(p, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (*fd < 0)
    return false;
  if (ofd_lock(*fd) == -EAGAIN) {
    close(*fd);
    *fd = -1;
    return true;
  }
  return false;
}

static void remove_tree1(const char *p) {
  DIR *d = opendir(p);
  if (!d) {
    unlink(p);
    return;
  }
  struct dirent *de;
  char f[2 * PATH_CAP + 512];
  while ((de = readdir(d)) != NULL)
    if (de->d_name[0] != '.') {
      snprintf(f, sizeof f, "%s/%s", p, de->d_name);
      unlink(f);
    }
  closedir(d);
  rmdir(p);
}

/* tmp/ entries of dead replicas (and any without a replica's name: left
 * by the directory's unshared days). */
static void clean_tmp(const char *dir) {
  char p[PATH_CAP], f[PATH_CAP + 256];
  snprintf(p, sizeof p, "%s/tmp", dir);
  DIR *d = opendir(p);
  if (!d)
    return;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    const char *n = de->d_name, *dot = strchr(n, '.');
    if (n[0] == '.')
      continue;
    int fd = -1;
    if (dot && tag_valid(n, (size_t)(dot - n))) {
      char tag[SPOOL_TAG_LEN + 1];
      memcpy(tag, n, SPOOL_TAG_LEN);
      tag[SPOOL_TAG_LEN] = '\0';
      if (!strcmp(tag, g_tag) || replica_alive(dir, tag, &fd))
        continue;
    }
    if (fd >= 0)
      close(fd);
    snprintf(f, sizeof f, "%s/%s", p, n);
    remove_tree1(f);
  }
  closedir(d);
}

/* ctl/: the socket and lock of every dead replica. */
static void clean_ctl(const char *dir) {
  char p[PATH_CAP], f[PATH_CAP + 256];
  snprintf(p, sizeof p, "%s/ctl", dir);
  DIR *d = opendir(p);
  if (!d)
    return;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    const char *n = de->d_name;
    size_t len = strlen(n);
    if (len != SPOOL_TAG_LEN + 5 || strcmp(n + SPOOL_TAG_LEN, ".lock") ||
        !tag_valid(n, SPOOL_TAG_LEN) || !strncmp(n, g_tag, SPOOL_TAG_LEN))
      continue;
    char tag[SPOOL_TAG_LEN + 1];
    memcpy(tag, n, SPOOL_TAG_LEN);
    tag[SPOOL_TAG_LEN] = '\0';
    int fd;
    if (replica_alive(dir, tag, &fd))
      continue;
    snprintf(f, sizeof f, "%s/%s", p, tag);
    unlink(f);
    snprintf(f, sizeof f, "%s/%s", p, n);
    unlink(f); /* under its lock: a replica starting now cannot have it */
    if (fd >= 0)
      close(fd);
  }
  closedir(d);
}

/* ctl/<tag>.lock, created and locked: while it is held, this replica's
 * files are left alone. A clash of random tags is refused by O_EXCL. */
static void new_tag(void) {
  uint32_t r;
  if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
    r = (uint32_t)getpid() * 2654435761u + (uint32_t)clock();
  snprintf(g_tag, sizeof g_tag, "%08x", (unsigned)r);
}

static int take_liveness(const char *dir, int *live_fd, char *err, size_t errlen) {
  char p[PATH_CAP];
  for (int tries = 0; tries < 8; tries++) {
    if (tries)
      new_tag();
    snprintf(p, sizeof p, "%s/ctl/%s.lock", dir, g_tag);
    int fd = open(p, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 && errno == EEXIST)
      continue;
    int rc = fd < 0 ? -errno : ofd_lock(fd);
    struct stat st;
    if (!rc && (fstat(fd, &st) != 0 || st.st_nlink == 0))
      rc = -EAGAIN; /* a clean-up took it between create and lock */
    if (rc == -EAGAIN) {
      close(fd);
      continue;
    }
    if (rc) {
      snprintf(err, errlen, "spool dir %s: %s: %s", dir, p, strerror(-rc));
      if (fd >= 0)
        close(fd);
      return rc;
    }
    *live_fd = fd;
    snprintf(g_prefix, sizeof g_prefix, "%s.", g_tag);
    spool_files_set_tmp_prefix(g_prefix);
    return 0;
  }
  snprintf(err, errlen, "spool dir %s: no free replica name in ctl/", dir);
  return -EEXIST;
}

void spool_claim_sweep(const char *dir) {
  clean_ctl(dir);
  clean_tmp(dir);
}

static int open_dir_shared(const char *dir, int *dir_fd, char *err, size_t errlen) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    int rc = -errno;
    snprintf(err, errlen, "spool dir %s: %s", dir, strerror(-rc));
    return rc;
  }
  /* An unshared proxy holds LOCK_EX: refused here, and it is refused
   * while we hold LOCK_SH. Where flock on a directory is not supported
   * (some network filesystems) only the message claims protect. */
  if (flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
    snprintf(err, errlen,
             "spool dir %s: in use by an smtp-tls-proxy without spool.shared (every process on "
             "a shared directory needs shared: true)",
             dir);
    close(fd);
    return -EWOULDBLOCK;
  }
  *dir_fd = fd;
  return 0;
}

int spool_claim_prepare(const char *dir, int *dir_fd, int *live_fd, char *err, size_t errlen) {
  char p[PATH_CAP];
  const char *subs[] = {"", "/tmp", "/queue", "/ctl"};
  for (size_t i = 0; i < 4; i++) {
    snprintf(p, sizeof p, "%s%s", dir, subs[i]);
    int rc = spool_files_mkdir(p);
    if (rc < 0) {
      snprintf(err, errlen, "spool dir %s: %s", p, strerror(-rc));
      return rc;
    }
  }
  int rc = open_dir_shared(dir, dir_fd, err, errlen);
  if (rc < 0)
    return rc;
  new_tag();
  if ((rc = probe_locks(dir, err, errlen)) == 0 &&
      (rc = take_liveness(dir, live_fd, err, errlen)) == 0) {
    clean_ctl(dir);
    clean_tmp(dir);
    snprintf(p, sizeof p, "%s/tmp/%sapi", dir, g_prefix);
    if ((rc = spool_files_mkdir(p)) < 0)
      snprintf(err, errlen, "spool dir %s: %s", p, strerror(-rc));
  }
  if (rc < 0) {
    if (*live_fd >= 0) {
      snprintf(p, sizeof p, "%s/ctl/%s.lock", dir, g_tag);
      unlink(p);
      close(*live_fd);
      *live_fd = -1;
    }
    close(*dir_fd);
    *dir_fd = -1;
  }
  return rc;
}

int spool_claim_take(const char *dir, const char *id, int *fd) {
  char p[PATH_CAP];
  snprintf(p, sizeof p, "%s/queue/%s", dir, id);
  int f = open(p, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (f < 0)
    return -errno;
  int rc = ofd_lock(f);
  /* Locked, but is it still the queued file? Another replica may have
   * delivered and unlinked it between our open and our lock. */
  struct stat a, b;
  if (!rc && (fstat(f, &a) != 0 || stat(p, &b) != 0 || a.st_ino != b.st_ino ||
              a.st_dev != b.st_dev || a.st_nlink == 0))
    rc = -ENOENT;
  if (rc) {
    close(f);
    return rc;
  }
  *fd = f;
  return 0;
}

int spool_claim_read_state(const char *dir, const char *id, size_t n_rcpts, spool_state *st) {
  char p[PATH_CAP], buf[SPOOL_STATE_MAX];
  snprintf(p, sizeof p, "%s/queue/%s.state", dir, id);
  int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return -errno;
  ssize_t n = read(fd, buf, sizeof buf);
  close(fd);
  if (n <= 0 || spool_state_parse(buf, (size_t)n, n_rcpts, st) != STP_OK)
    return -EINVAL;
  return 0;
}
