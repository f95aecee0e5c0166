/* spool_files.c - the spool's files: layout, lock, commit, state, removal
 * and reading queue/ back (see spool_files.h). Blocking; thread pool only.
 *
 * Layout under spool.dir: tmp/<id> (being written), tmp/<id>.state (a
 * state being replaced), queue/<id> (committed, immutable),
 * queue/<id>.state (its delivery state), control.sock.
 */
#include "spool_files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "smtp-tls-proxy/util.h"

#define PATH_CAP 512

static void path_of(char *out, const char *dir, const char *sub, const char *id, const char *ext) {
  snprintf(out, PATH_CAP, "%s/%s%s%s%s", dir, sub, id ? "/" : "", id ? id : "", ext ? ext : "");
}

static int mkdir_0700(const char *p) {
  if (mkdir(p, 0700) != 0 && errno != EEXIST)
    return -errno;
  struct stat st;
  if (lstat(p, &st) != 0)
    return -errno;
  if (!S_ISDIR(st.st_mode))
    return -ENOTDIR;
  if ((st.st_mode & 07777) != 0700 && chmod(p, 0700) != 0)
    return -errno;
  return 0;
}

int spool_files_mkdir(const char *p) {
  return mkdir_0700(p);
}

static char g_tmp_prefix[32];

void spool_files_set_tmp_prefix(const char *prefix) {
  snprintf(g_tmp_prefix, sizeof g_tmp_prefix, "%s", prefix);
}

const char *spool_files_tmp_prefix(void) {
  return g_tmp_prefix;
}

static int fsync_dir(const char *p) {
  int fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  int rc = fsync(fd) == 0 ? 0 : -errno;
  close(fd);
  return rc;
}

/* Every entry of tmp/: never committed, so never to be delivered. */
static int empty_tmp(const char *dir) {
  char p[PATH_CAP], f[PATH_CAP + 256];
  path_of(p, dir, "tmp", NULL, NULL);
  DIR *d = opendir(p);
  if (!d)
    return -errno;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.')
      continue;
    snprintf(f, sizeof f, "%s/%s", p, de->d_name);
    unlink(f);
  }
  closedir(d);
  return 0;
}

int spool_files_prepare(const char *dir, int *lock_fd, char *err, size_t errlen) {
  char p[PATH_CAP];
  int rc = mkdir_0700(dir);
  if (rc < 0) {
    snprintf(err, errlen, "spool dir %s: %s", dir, strerror(-rc));
    return rc;
  }
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) != 0) {
    rc = -errno;
    snprintf(err, errlen, "spool dir %s: %s", dir,
             rc == -EWOULDBLOCK ? "in use by another smtp-tls-proxy" : strerror(-rc));
    if (fd >= 0)
      close(fd);
    return rc;
  }
  const char *subs[] = {"tmp", "queue"};
  for (size_t i = 0; i < 2; i++) {
    path_of(p, dir, subs[i], NULL, NULL);
    if ((rc = mkdir_0700(p)) < 0) {
      snprintf(err, errlen, "spool dir %s: %s", p, strerror(-rc));
      close(fd);
      return rc;
    }
  }
  path_of(p, dir, "control.sock", NULL, NULL);
  unlink(p); /* the lock says no live process owns it */
  if ((rc = empty_tmp(dir)) < 0) {
    snprintf(err, errlen, "spool dir %s/tmp: %s", dir, strerror(-rc));
    close(fd);
    return rc;
  }
  *lock_fd = fd;
  return 0;
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return w < 0 ? -errno : -EIO;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

int spool_files_write_state(const char *dir, const char *id, const char *text, size_t len,
                            bool sync) {
  char tmp[PATH_CAP], dst[PATH_CAP];
  snprintf(tmp, PATH_CAP, "%s/tmp/%s%s.state", dir, g_tmp_prefix, id);
  path_of(dst, dir, "queue", id, ".state");
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    return -errno;
  int rc = write_all(fd, text, len);
  if (!rc && sync && fsync(fd) != 0)
    rc = -errno;
  if (close(fd) != 0 && !rc)
    rc = -errno;
  if (!rc && rename(tmp, dst) != 0)
    rc = -errno;
  if (rc)
    unlink(tmp);
  /* The rename is durable only once queue/ is: a `hold` answered OK must
   * survive a power cut like the message it holds. */
  if (!rc && sync)
    rc = spool_files_sync_queue(dir);
  return rc;
}

int spool_files_sync_queue(const char *dir) {
  char q[PATH_CAP];
  path_of(q, dir, "queue", NULL, NULL);
  return fsync_dir(q);
}

void spool_files_unqueue(const char *dir, const char *id) {
  char p[PATH_CAP];
  path_of(p, dir, "queue", id, NULL);
  unlink(p);
  path_of(p, dir, "queue", id, ".state");
  unlink(p);
}

int spool_files_remove(const char *dir, const char *id) {
  char p[PATH_CAP];
  path_of(p, dir, "queue", id, NULL);
  int rc = unlink(p) == 0 || errno == ENOENT ? 0 : -errno;
  path_of(p, dir, "queue", id, ".state");
  unlink(p);
  path_of(p, dir, "queue", NULL, NULL);
  int s = fsync_dir(p);
  return rc ? rc : s;
}

/* ---- reading queue/ back ------------------------------------------------- */

void spool_entry_free(spool_entry *e) {
  if (!e)
    return;
  spool_env_free(&e->env);
  spool_state_free(&e->st);
  free(e);
}

static void note_bad(spool_scan *s, const char *name, const char *why) {
  char line[PATH_CAP];
  snprintf(line, sizeof line, "%s: %s", name, why);
  s->bad = stp_xrealloc(s->bad, (s->n_bad + 1) * sizeof *s->bad);
  s->bad[s->n_bad++] = stp_xstrdup(line);
}

/* The header of an open message file, read as far as needed. */
static const char *read_env(int fd, uint64_t size, spool_env *env, size_t *hdr_len) {
  size_t cap = size < 65536 ? (size_t)size : 65536, len = 0;
  char *buf = stp_xmalloc(cap ? cap : 1);
  const char *why = NULL;
  for (;;) {
    ssize_t r = pread(fd, buf + len, cap - len, (off_t)len);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0) {
      why = r < 0 ? strerror(errno) : "truncated header";
      break;
    }
    len += (size_t)r;
    int rc = spool_env_parse(buf, len, env, hdr_len);
    if (rc == STP_OK)
      break;
    if (rc != STP_EAGAIN || len == size) {
      why = "not a spool file, or torn";
      break;
    }
    if (len == cap) {
      cap = cap * 2 > SPOOL_HEADER_MAX ? SPOOL_HEADER_MAX : cap * 2;
      if ((uint64_t)cap > size)
        cap = (size_t)size;
      buf = stp_xrealloc(buf, cap);
    }
  }
  free(buf);
  return why;
}

static void load_state(const char *dir, spool_entry *e, const stp_spool_cfg *cfg, spool_scan *s) {
  char p[PATH_CAP], buf[SPOOL_STATE_MAX];
  path_of(p, dir, "queue", e->env.id, ".state");
  int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf);
  if (fd >= 0)
    close(fd);
  if (n > 0 && spool_state_parse(buf, (size_t)n, e->env.n_rcpts, &e->st) == STP_OK)
    return;
  if (fd >= 0)
    s->bad_states++; /* torn by a crash: the schedule starts over */
  spool_state_init(&e->st, e->env.n_rcpts, cfg, e->env.created_ms, e->env.reason);
}

static void load_message(const char *dir, const char *name, const stp_spool_cfg *cfg,
                         spool_scan *s) {
  char p[PATH_CAP];
  path_of(p, dir, "queue", name, NULL);
  int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    note_bad(s, name, fd < 0 ? strerror(errno) : "not a regular file");
    if (fd >= 0)
      close(fd);
    return;
  }
  spool_entry *e = stp_xcalloc(1, sizeof *e);
  size_t hdr_len = 0;
  const char *why = read_env(fd, (uint64_t)st.st_size, &e->env, &hdr_len);
  close(fd);
  if (!why && strcmp(e->env.id, name))
    why = "its id is not its name";
  if (!why && (uint64_t)st.st_size != hdr_len + e->env.size)
    why = "size differs from its envelope";
  if (why) {
    note_bad(s, name, why);
    spool_entry_free(e);
    return;
  }
  e->hdr_len = hdr_len;
  e->file_size = (uint64_t)st.st_size;
  load_state(dir, e, cfg, s);
  s->v = stp_xrealloc(s->v, (s->n + 1) * sizeof *s->v);
  s->v[s->n++] = e;
}

/* "<id>.state" whose message is gone (a removal cut short). */
static void drop_orphan(const char *dir, const char *name, spool_scan *s) {
  char id[SPOOL_ID_LEN + 1], p[PATH_CAP];
  memcpy(id, name, SPOOL_ID_LEN);
  id[SPOOL_ID_LEN] = '\0';
  path_of(p, dir, "queue", id, NULL);
  struct stat st;
  if (stat(p, &st) == 0)
    return;
  path_of(p, dir, "queue", id, ".state");
  if (unlink(p) == 0)
    s->orphan_states++;
}

void spool_files_scan(const char *dir, const stp_spool_cfg *cfg, spool_scan *out) {
  char p[PATH_CAP];
  memset(out, 0, sizeof *out);
  path_of(p, dir, "queue", NULL, NULL);
  DIR *d = opendir(p);
  if (!d) {
    note_bad(out, "queue/", strerror(errno));
    return;
  }
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    const char *n = de->d_name;
    if (n[0] == '.')
      continue;
    if (spool_id_valid(n))
      load_message(dir, n, cfg, out);
    else if (strlen(n) == SPOOL_ID_LEN + 6 && !strcmp(n + SPOOL_ID_LEN, ".state"))
      drop_orphan(dir, n, out);
    else
      note_bad(out, n, "not a spool file name");
  }
  closedir(d);
}
