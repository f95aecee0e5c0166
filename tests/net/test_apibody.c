/* test_apibody.c - request bodies made from a message copy (apibody.c) on
 * the real loop and thread pool: literal, file and decoded-part segments
 * with base64 runs across segment borders, the announced size equal to the
 * bytes produced, upload chunks cut from one pass over a part, a file
 * shorter than its segments failing the source, and free with a read in
 * flight calling nothing. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../proxy/net/apibody.h"
#include "net_test.h"

typedef struct pull {
  api_body *b;
  char *out;
  size_t len, cap;
  bool done, failed;
} pull;

/* Take what is ready; wait for the notify otherwise. */
static void pull_more(void *arg) {
  NET_CB_ENTER();
  pull *p = arg;
  for (;;) {
    long n;
    CALL(n = api_body_read(p->b, p->out + p->len,
                           p->cap - p->len > 65536 ? 65536 : p->cap - p->len));
    if (n < 0) {
      p->failed = p->done = true;
      return;
    }
    if (n == 0) {
      if (p->len == p->cap)
        p->done = true;
      return;
    }
    p->len += (size_t)n;
  }
}

static void drain(pull *p, api_body *b) {
  memset(p, 0, sizeof *p);
  p->b = b;
  p->cap = (size_t)api_body_size(b);
  p->out = malloc(p->cap + 1);
  CALL(api_body_set_notify(b, pull_more, p));
  pull_more(p); /* what is ready at once; the rest comes through notify */
  if (!p->done)
    ASSERT(net_run_until(&p->done, 10000));
}

static char g_path[128];

static void write_file(const void *data, size_t n) {
  snprintf(g_path, sizeof g_path, "/tmp/stp-apibody-%d", (int)getpid());
  int fd = open(g_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ASSERT(fd >= 0);
  ASSERT(write(fd, data, n) == (ssize_t)n);
  close(fd);
}

static size_t b64(const void *in, size_t n, char *out) {
  apimsg_b64 e = {{0}, 0};
  size_t o = apimsg_b64_update(&e, in, n, out);
  return o + apimsg_b64_final(&e, out + o);
}

void test_apibody_segments_and_base64_runs(void) {
  /* The file: a "message" of 300 000 bytes. */
  size_t n = 300000;
  unsigned char *msg = malloc(n);
  for (size_t i = 0; i < n; i++)
    msg[i] = (unsigned char)(i * 7 + i / 251);
  write_file(msg, n);
  /* Bcc field + the whole file, base64 as one run (Graph's sendMail), then
   * a literal tail. */
  api_body *b;
  pull p;
  CALL(b = api_body_new(net_loop(), g_path));
  CALL(api_body_lit(b, "Bcc: x@y\r\n", 10, 1));
  CALL(api_body_raw(b, 0, n, 1));
  CALL(api_body_lit(b, "--end", 5, 0));
  uint64_t size = api_body_size(b);
  drain(&p, b);
  ASSERT(!p.failed);
  char *plain = malloc(n + 10);
  memcpy(plain, "Bcc: x@y\r\n", 10);
  memcpy(plain + 10, msg, n);
  char *want = malloc(n * 2);
  size_t wl = b64(plain, n + 10, want);
  memcpy(want + wl, "--end", 5);
  wl += 5;
  ASSERT_EQ(size, wl);
  ASSERT_EQ(p.len, wl);
  ASSERT(!memcmp(p.out, want, wl));
  CALL(api_body_free(b));
  free(p.out);
  free(plain);
  free(want);
  free(msg);
  unlink(g_path);
}

void test_apibody_upload_chunks_from_one_pass(void) {
  /* A part: 1 MiB of bytes, base64 in 76-column lines, after a header. */
  size_t n = 1 << 20;
  unsigned char *data = malloc(n);
  for (size_t i = 0; i < n; i++)
    data[i] = (unsigned char)((i * 2654435761u) >> 13);
  char *file = malloc(n * 2);
  size_t o = (size_t)sprintf(file, "Content-Transfer-Encoding: base64\r\n\r\n");
  size_t start = o;
  for (size_t i = 0; i < n; i += 57) {
    o += b64(data + i, n - i < 57 ? n - i : 57, file + o);
    memcpy(file + o, "\r\n", 2);
    o += 2;
  }
  write_file(file, o);
  apimsg_part part = {.cte = MIME_CTE_BASE64, .start = start, .end = o, .size = n};
  api_partstream *ps;
  CALL(ps = api_partstream_new(net_loop(), g_path, &part));
  /* Chunks of 320 KiB and the rest, each its own body, as the upload
   * session's PUTs are. */
  size_t got = 0;
  while (got < n) {
    size_t len = n - got < 320 * 1024 ? n - got : 320 * 1024;
    api_body *b;
    CALL(b = api_body_new(net_loop(), g_path));
    CALL(api_body_part(b, ps, len, 0));
    pull p;
    drain(&p, b);
    ASSERT(!p.failed);
    ASSERT_EQ(p.len, len);
    ASSERT(!memcmp(p.out, data + got, len));
    got += len;
    free(p.out);
    CALL(api_body_free(b));
  }
  /* The whole part, base64 again, framed as a fileAttachment's JSON. */
  api_body *b;
  CALL(b = api_body_new(net_loop(), g_path));
  CALL(api_body_lit(b, "{\"contentBytes\":\"", 17, 0));
  CALL(api_body_whole_part(b, &part, 1));
  CALL(api_body_lit(b, "\"}", 2, 0));
  pull p;
  drain(&p, b);
  ASSERT(!p.failed);
  ASSERT_EQ(p.len, 17 + apimsg_b64_len(n) + 2);
  char *want = malloc(n * 2);
  size_t wl = b64(data, n, want);
  ASSERT(!memcmp(p.out + 17, want, wl));
  ASSERT(!memcmp(p.out + p.len - 2, "\"}", 2));
  free(p.out);
  free(want);
  CALL(api_body_free(b));
  CALL(api_partstream_free(ps));
  free(file);
  free(data);
  unlink(g_path);
}

static void never_called(void *arg) {
  (void)arg;
  ASSERT(!"a callback after api_body_free");
}

void test_apibody_short_file_fails_and_free_is_quiet(void) {
  write_file("0123456789", 10);
  api_body *b;
  CALL(b = api_body_new(net_loop(), g_path));
  CALL(api_body_raw(b, 0, 100, 0)); /* more than the file holds */
  pull p;
  drain(&p, b);
  ASSERT(p.failed);
  ASSERT(api_body_error(b) != 0);
  free(p.out);
  CALL(api_body_free(b));
  /* Freed with a read in flight: no callback comes after. */
  CALL(b = api_body_new(net_loop(), g_path));
  CALL(api_body_raw(b, 0, 10, 0));
  CALL(api_body_set_notify(b, never_called, NULL));
  char buf[16];
  long n;
  CALL(n = api_body_read(b, buf, sizeof buf)); /* starts the read */
  ASSERT_EQ(n, 0);
  CALL(api_body_free(b));
  net_run_for(100); /* the read's job ends, and calls nobody */
  unlink(g_path);
}
