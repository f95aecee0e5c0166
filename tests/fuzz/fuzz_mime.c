/* fuzz_mime.c - the streaming MIME reader (mime.h) on hostile messages.
 *
 * Input: byte 0 seeds the split points, the rest is the message.
 * Invariants:
 *  - the events are the same whether the message comes whole, byte by byte
 *    or cut at pseudo-random points: every HEADER, BEGIN and END with all
 *    their fields, and each part's decoded bytes (DATA may come in other
 *    pieces, the same bytes in the same order);
 *  - every entity that begins ends exactly once, in nesting order; depth
 *    never exceeds MIME_DEPTH_MAX; a header value never exceeds
 *    MIME_FIELD_MAX; DATA only for leaves; decoded_size is what DATA gave;
 *  - a leaf's byte range [body_start, body_end) lies inside the input and,
 *    decoded alone with mime_decoder, gives exactly its DATA bytes (the
 *    API upstreams read attachments again this way);
 *  - the header helpers (encoded-words, parameters, address lists) on each
 *    header value stay inside their buffers and write valid UTF-8.
 */
#include "fuzz_common.h"

#include "smtp-tls-proxy/mime.h"

#define MAXP 256

typedef struct run_state {
  uint64_t h;          /* hash of the event stream, DATA excluded */
  uint64_t dh[MAXP];   /* hash of each part's decoded bytes */
  uint64_t dlen[MAXP]; /* and their count */
  mime_part end[MAXP]; /* each part as it ended */
  bool begun[MAXP], ended[MAXP];
  unsigned open[MIME_DEPTH_MAX + 2]; /* the stack of begun, not ended entities */
  unsigned nopen;
  unsigned nparts;
  bool helpers; /* exercise the header helpers (first run only) */
} run_state;

static void hash_part(uint64_t *h, const mime_part *p) {
  fnv_int(h, (long)p->index);
  fnv_int(h, (long)p->parent);
  fnv_int(h, (long)p->depth);
  fnv_int(h, p->multipart);
  fnv_int(h, p->in_alternative);
  fnv(h, p->type, strlen(p->type));
  fnv(h, p->charset, strlen(p->charset));
  fnv(h, p->boundary, strlen(p->boundary));
  fnv_int(h, (long)p->cte);
  fnv_int(h, (long)p->disp);
  fnv(h, p->filename, strlen(p->filename));
  fnv(h, p->content_id, strlen(p->content_id));
  fnv_int(h, (long)p->body_start);
}

static void helpers(const mime_event *ev) {
  char out[300];
  size_t n = mime_decode_words(ev->data, ev->len, out, sizeof out);
  CHECK(n < sizeof out && out[n] == '\0' && mime_is_utf8(out, n));
  if (mime_param(ev->data, ev->len, "filename", out, sizeof out))
    CHECK(strlen(out) < sizeof out && mime_is_utf8(out, strlen(out)));
  mime_addr a[4];
  size_t k = mime_addr_list(ev->data, ev->len, a, 4);
  for (size_t i = 0; i < k && i < 4; i++) {
    CHECK(strchr(a[i].addr, '@'));
    CHECK(mime_is_utf8(a[i].name, strlen(a[i].name)));
  }
}

static void on_event(void *arg, const mime_event *ev) {
  run_state *s = arg;
  const mime_part *p = ev->part;
  CHECK(p->depth <= MIME_DEPTH_MAX);
  fnv_int(&s->h, (long)ev->kind);
  switch (ev->kind) {
  case MIME_EV_HEADER:
    CHECK(ev->len <= MIME_FIELD_MAX && ev->name_len > 0);
    fnv(&s->h, ev->name, ev->name_len);
    fnv(&s->h, ev->data, ev->len);
    fnv_int(&s->h, ev->cut);
    if (s->helpers)
      helpers(ev);
    return;
  case MIME_EV_BEGIN:
    if (p->index < MAXP) {
      CHECK(!s->begun[p->index]);
      s->begun[p->index] = true;
    }
    CHECK(s->nopen < MIME_DEPTH_MAX + 2);
    s->open[s->nopen++] = p->index;
    if (p->index + 1 > s->nparts)
      s->nparts = p->index + 1;
    hash_part(&s->h, p);
    return;
  case MIME_EV_DATA:
    CHECK(!p->multipart && ev->len > 0);
    CHECK(s->nopen && s->open[s->nopen - 1] == p->index);
    if (p->index < MAXP) {
      fnv(&s->dh[p->index], ev->data, ev->len);
      s->dlen[p->index] += ev->len;
    }
    return;
  case MIME_EV_END:
    CHECK(s->nopen && s->open[s->nopen - 1] == p->index); /* nesting order */
    s->nopen--;
    hash_part(&s->h, p);
    fnv_int(&s->h, (long)p->body_end);
    fnv_int(&s->h, (long)p->decoded_size);
    fnv_int(&s->h, p->truncated);
    if (p->index < MAXP) {
      CHECK(!s->ended[p->index]);
      s->ended[p->index] = true;
      s->end[p->index] = *p;
      if (!p->multipart)
        CHECK(p->decoded_size == s->dlen[p->index]);
    }
    return;
  }
}

static mime_reader reader;

/* mode 0 whole, 1 byte by byte, 2 pseudo-random pieces. */
static void run(const char *msg, size_t n, int mode, unsigned seed, run_state *s) {
  memset(s, 0, sizeof *s);
  for (unsigned i = 0; i < MAXP; i++)
    s->dh[i] = 1469598103934665603ull;
  s->h = 1469598103934665603ull;
  s->helpers = mode == 0;
  mime_reader_init(&reader, on_event, s);
  size_t off = 0;
  while (off < n) {
    size_t len = n - off;
    if (mode == 1)
      len = 1;
    else if (mode == 2) {
      seed = seed * 1103515245u + 12345u;
      size_t want = (seed >> 16) % 97 + 1;
      len = want < len ? want : len;
    }
    char *piece = malloc(len);
    CHECK(piece);
    memcpy(piece, msg + off, len);
    mime_feed(&reader, piece, len);
    free(piece);
    off += len;
  }
  mime_finish(&reader);
  CHECK(s->nopen == 0);
  for (unsigned i = 0; i < s->nparts && i < MAXP; i++)
    CHECK(s->begun[i] && s->ended[i]);
}

static void same(const run_state *a, const run_state *b) {
  CHECK(a->h == b->h);
  CHECK(a->nparts == b->nparts);
  for (unsigned i = 0; i < MAXP; i++)
    CHECK(a->dh[i] == b->dh[i] && a->dlen[i] == b->dlen[i]);
}

/* Each leaf's range, decoded alone, gives its DATA bytes. */
static void ranges(const char *msg, size_t n, const run_state *s) {
  for (unsigned i = 0; i < s->nparts && i < MAXP; i++) {
    const mime_part *p = &s->end[i];
    CHECK(p->body_start <= p->body_end && p->body_end <= n);
    if (p->multipart)
      continue;
    size_t rl = (size_t)(p->body_end - p->body_start);
    char *out = malloc(rl + 128);
    CHECK(out);
    mime_decoder d;
    mime_decoder_init(&d, p->cte);
    size_t o = mime_decode(&d, msg + p->body_start, rl, out);
    o += mime_decoder_finish(&d, out + o, 128);
    uint64_t h = 1469598103934665603ull;
    fnv(&h, out, o);
    CHECK(o == s->dlen[i] && h == s->dh[i]);
    free(out);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static run_state a, b;
  if (size < 1 || size > 256 * 1024)
    return 0;
  const char *msg = (const char *)data + 1;
  size_t n = size - 1;
  run(msg, n, 0, 0, &a);
  ranges(msg, n, &a);
  run(msg, n, 2, data[0], &b);
  same(&a, &b);
  if (n <= 4096) {
    run(msg, n, 1, 0, &b);
    same(&a, &b);
  }
  return 0;
}
