/* spool_ctl_client.c - the `queue` command's side of the control socket:
 * one request, the answer printed, blocking and bounded (no loop: it runs
 * in its own short-lived process). See spool_ctl.h.
 */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "smtp-tls-proxy/queuectl.h"
#include "spool_ctl.h"

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Prints one answer line; returns 0 (OK), 1 (ERR) or -1 (more to come). */
static int show_line(char *line) {
  const char *text;
  queuectl_printable(line, strlen(line)); /* whatever the proxy sent */
  switch (queuectl_reply(line, &text)) {
  case QC_REPLY_DATA:
    printf("%s\n", text);
    return -1;
  case QC_REPLY_OK:
    if (*text)
      printf("%s\n", text);
    return 0;
  case QC_REPLY_ERR:
    fprintf(stderr, "smtp-tls-proxy: %s\n", text);
    return 1;
  default:
    fprintf(stderr, "smtp-tls-proxy: unexpected answer from the proxy: %.200s\n", text);
    return 1;
  }
}

static int connect_path(const char *path, bool quiet) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  int n = snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  if (n < 0 || (size_t)n >= sizeof sa.sun_path) {
    fprintf(stderr, "smtp-tls-proxy: %s is too long for a socket address\n", path);
    return -1;
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    if (!quiet)
      fprintf(stderr, "smtp-tls-proxy: cannot reach the running proxy at %s: %s\n", sa.sun_path,
              strerror(errno));
    if (fd >= 0)
      close(fd);
    return -1;
  }
  return fd;
}

/* A shared spool: ctl/ holds one socket per replica, and only those of
 * this host's live replicas answer; any of them knows the whole queue. */
static int connect_shared(const char *dir) {
  char p[512];
  snprintf(p, sizeof p, "%s/ctl", dir);
  DIR *d = opendir(p);
  if (!d) {
    fprintf(stderr, "smtp-tls-proxy: %s: %s\n", p, strerror(errno));
    return -1;
  }
  int fd = -1;
  struct dirent *de;
  while (fd < 0 && (de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.' || strchr(de->d_name, '.'))
      continue; /* <tag>.lock, <tag>.probe */
    snprintf(p, sizeof p, "%s/ctl/%s", dir, de->d_name);
    fd = connect_path(p, true);
  }
  closedir(d);
  if (fd < 0)
    fprintf(stderr, "smtp-tls-proxy: no running proxy on this host answers in %s/ctl\n", dir);
  return fd;
}

int spool_ctl_client(const char *dir, bool shared, const char *line) {
  char path[512];
  snprintf(path, sizeof path, "%s/control.sock", dir);
  int fd = shared ? connect_shared(dir) : connect_path(path, false);
  if (fd < 0)
    return 1;
  size_t len = strlen(line);
  if (send(fd, line, len, MSG_NOSIGNAL) != (ssize_t)len) {
    fprintf(stderr, "smtp-tls-proxy: cannot send to the proxy: %s\n", strerror(errno));
    close(fd);
    return 1;
  }
  static char buf[QUEUECTL_REPLY_MAX + 2];
  size_t have = 0;
  int rc = -1;
  long long deadline = now_ms() + SPOOL_CTL_TIMEOUT_MS;
  while (rc < 0) {
    char *nl;
    while (rc < 0 && (nl = memchr(buf, '\n', have)) != NULL) {
      *nl = '\0';
      rc = show_line(buf);
      size_t used = (size_t)(nl - buf) + 1;
      memmove(buf, buf + used, have - used);
      have -= used;
    }
    if (rc >= 0)
      break;
    long long left = deadline - now_ms();
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (left <= 0 || poll(&p, 1, (int)left) != 1 || have == sizeof buf - 1) {
      fprintf(stderr, "smtp-tls-proxy: no complete answer from the proxy\n");
      rc = 1;
      break;
    }
    ssize_t r = recv(fd, buf + have, sizeof buf - 1 - have, 0);
    if (r <= 0) {
      fprintf(stderr, "smtp-tls-proxy: the proxy closed the control connection early\n");
      rc = 1;
      break;
    }
    have += (size_t)r;
  }
  close(fd);
  return rc;
}
