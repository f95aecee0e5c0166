/* spool_common.c - see spool_common.h. */
#include "spool_common.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <string.h>

void sp_yaml_top(int up_port, const char *up_tls, const char *spool_extra, const char *top_extra,
                 char *yaml, size_t cap) {
  char top[2048];
  snprintf(top, sizeof top, "%sspool:\n  dir: %s/spool\n  notify: postmaster@example.com\n%s",
           top_extra ? top_extra : "", h_dir(), spool_extra ? spool_extra : "");
  h_proxy_opts o = {.up_port = up_port,
                    .up_tls = up_tls,
                    .connect_timeout = "2s",
                    .command_timeout = "5s",
                    .data_timeout = "5s",
                    .top_extra = top,
                    .route_extra = "    on_upstream_failure: spool\n"};
  h_proxy_yaml(&o, yaml, cap);
}

void sp_yaml(int up_port, const char *up_tls, const char *spool_extra, char *yaml, size_t cap) {
  sp_yaml_top(up_port, up_tls, spool_extra, NULL, yaml, cap);
}

void sp_start(h_proxy *px, int up_port, const char *up_tls, const char *spool_extra) {
  char yaml[8192];
  sp_yaml(up_port, up_tls, spool_extra, yaml, sizeof yaml);
  h_proxy_start_yaml(px, yaml);
}

int sp_send(int port, const char *const rcpts[], const char *body, char *text, size_t cap) {
  h_smtp c;
  h_smtp_open(&c, port, true);
  int code = h_smtp_message(&c, "scan@printer.test", rcpts, body, strlen(body), text, cap, NULL);
  h_smtp_sendstr(&c, "QUIT\r\n");
  h_smtp_close(&c);
  return code;
}

bool sp_queued_id(const char *reply, char id[32]) {
  const char *p = strstr(reply, "queued locally as ");
  if (!p)
    return false;
  p += strlen("queued locally as ");
  size_t n = strspn(p, "0123456789abcdef");
  if (n != 16)
    return false;
  memcpy(id, p, n);
  id[n] = '\0';
  return true;
}

int sp_queue(const h_proxy *px, const char *args, char *out, size_t cap) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "env -u " H_PW_ENV " '%s' -c '%s' queue %s", STP_BINARY, px->config,
           args);
  return h_run(cmd, NULL, 15000, out, cap);
}

bool sp_wait_empty(const h_proxy *px, int timeout_ms) {
  char out[65536];
  int64_t deadline = h_now_ms() + timeout_ms;
  for (;;) {
    if (sp_queue(px, "list", out, sizeof out) == 0 && strstr(out, "0 messages"))
      return true;
    if (h_now_ms() > deadline)
      return false;
    h_sleep_ms(100);
  }
}

static bool dir_empty(const char *sub) {
  char p[512];
  snprintf(p, sizeof p, "%s/spool/%s", h_dir(), sub);
  DIR *d = opendir(p);
  cr_assert_not_null(d, "%s", p);
  struct dirent *de;
  bool empty = true;
  while ((de = readdir(d)) != NULL)
    if (de->d_name[0] != '.')
      empty = false;
  closedir(d);
  return empty;
}

bool sp_queue_dir_empty(const h_proxy *px) {
  (void)px;
  return dir_empty("queue");
}

bool sp_tmp_dir_empty(const h_proxy *px) {
  (void)px;
  return dir_empty("tmp");
}

int sp_count_lines(const char *text, const char *needle) {
  int n = 0;
  for (const char *line = text; line && *line;) {
    const char *nl = strchr(line, '\n');
    size_t len = nl ? (size_t)(nl - line) : strlen(line);
    if (memmem(line, len, needle, strlen(needle)))
      n++;
    line = nl ? nl + 1 : NULL;
  }
  return n;
}

void sp_replace(const char *in, const char *from, const char *to, char *out, size_t cap) {
  const char *at = strstr(in, from);
  cr_assert_not_null(at, "'%s' not in the text", from);
  snprintf(out, cap, "%.*s%s%s", (int)(at - in), in, to, at + strlen(from));
}

bool sp_wait_tmp_empty(const h_proxy *px, int timeout_ms) {
  int64_t deadline = h_now_ms() + timeout_ms;
  while (!sp_tmp_dir_empty(px) && h_now_ms() < deadline)
    h_sleep_ms(20);
  return sp_tmp_dir_empty(px);
}
