/* api_common.h - what the API upstream tests share (test_api.c,
 * test_api_graph.c): the stand-in (tests/tools/api_fake.py) started per
 * test, the upstream block and proxy configs for it, messages as a
 * scanner writes them, and checks of what the stand-in recorded. */
#ifndef STP_TEST_API_COMMON_H
#define STP_TEST_API_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "harness.h"

#define MAILBOX "scanner@contoso.example"
#define TO "anna@contoso.example"
#define SCAN_TEXT "Scan Data from MP C3004\r\n\r\nPages: 1"

typedef struct fake {
  h_proc *proc;
  int port;
  char record[512];
  char store[512];
  const char *kind;
} fake;

/* api_fake.py presenting <cert>.crt (from h_certs()), extra arguments. */
void api_fake_start(fake *f, const char *kind, const char *cert, const char *const extra[]);
/* A token endpoint other than the API's (0: the API's). */
extern int api_token_port;
/* The upstream block for the fake (lines indented 2, the list item). */
char *api_upstream(const fake *f, const char *name, const char *extra, char *out, size_t cap);
/* A proxy whose route "default" goes to `route` (e.g. "api" or "dead, api"). */
void api_proxy_start(h_proxy *px, const char *upstreams, const char *route);
/* A proxy with one upstream "api" for f (extra: its lines, indented 4). */
void api_proxy_for(h_proxy *px, const fake *f, const char *extra);
/* The same with a spool in h_dir()/spool (its path into spool[cap]) and
 * route "default" spooling what its API upstream fails (4xx). */
void api_proxy_spooling(h_proxy *px, const fake *f, char *spool, size_t cap);

typedef struct scan {
  char *msg;
  size_t len;
  unsigned char *pdf;
  size_t pdf_len;
} scan;

/* About `total` bytes: a text part and a PDF in base64 (76-column lines). */
void api_make_scan(scan *s, size_t total, const char *to, const char *cc);
void api_make_small(scan *s, const char *to);
void api_scan_free(scan *s);
/* One message over a fresh session; returns the final code. */
int api_send_msg(const h_proxy *px, const scan *s, const char *const rcpts[], char *text,
                 size_t cap, int64_t *ms);
/* The file a record names has exactly these bytes. */
void api_assert_file_is(const char *line, const char *key, const void *want, size_t len);
/* How many records of `event` the stand-in wrote. */
size_t api_count_records(const fake *f, const char *event);

#endif
