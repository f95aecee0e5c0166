/* oauth_common.c - starting the OAuth stand-ins (see oauth_common.h). */
#include "oauth_common.h"

#include <criterion/criterion.h>
#include <stdio.h>

#define ARGV_MAX 40

void oauth_srv_start(oauth_srv *s, const char *tool, const char *const args[],
                     const char *const extra[]) {
  static unsigned seq;
  char script[512], cert[512], key[512], name[48];
  char *argv[ARGV_MAX];
  size_t n = 0;
  snprintf(name, sizeof name, "%s%u", tool, seq++);
  snprintf(script, sizeof script, "%s/%s.py", STP_TOOLS_DIR, tool);
  snprintf(cert, sizeof cert, "%s/server.crt", h_certs());
  snprintf(key, sizeof key, "%s/server.key", h_certs());
  snprintf(s->record, sizeof s->record, "%s/%s.jsonl", h_dir(), name);
  const char *fixed[] = {H_PYTHON, script, "--cert", cert, "--key", key, "--record", s->record};
  for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
    argv[n++] = (char *)fixed[i];
  for (size_t i = 0; args && args[i] && n < ARGV_MAX - 1; i++)
    argv[n++] = (char *)args[i];
  for (size_t i = 0; extra && extra[i] && n < ARGV_MAX - 1; i++)
    argv[n++] = (char *)extra[i];
  argv[n] = NULL;
  s->proc = h_spawn(name, argv, NULL);
  char line[128];
  cr_assert_eq(h_proc_wait_line(s->proc, "READY ", 15000, line, sizeof line), 0,
               "%s.py did not start", tool);
  cr_assert_eq(sscanf(line, "READY %d %d", &s->http_port, &s->smtp_port), 2);
}

int oauth_send_one(const h_proxy *px, const char *from, const char *subject, char *text,
                   size_t cap) {
  h_smtp c;
  char body[256];
  int n = snprintf(body, sizeof body, "Subject: %s\r\n\r\nscan\r\n", subject);
  h_smtp_open(&c, px->port, true);
  int code = h_smtp_message(&c, from, (const char *const[]){"to@example.com", NULL}, body,
                            (size_t)n, text, cap, NULL);
  h_smtp_cmd(&c, "QUIT", NULL, 0);
  h_smtp_close(&c);
  return code;
}
