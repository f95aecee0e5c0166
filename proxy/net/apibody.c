/* apibody.c - request bodies from a message copy (see apibody.h).
 *
 * produce() tops up the output buffer from the segments: literal bytes at
 * once, file bytes by one asynchronous read at a time (a read is started
 * only when the buffer has room for what it can yield, base64 included),
 * so the HTTP client's pull never waits on a full buffer. When the client
 * found nothing ready (the read was in flight), the read's callback
 * resumes the call.
 */
#include "apibody.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "msgcopy.h"
#include "smtp-tls-proxy/util.h"

/* A read yields at most MSGCOPY_CHUNK bytes, base64 makes 4 of 3. */
#define READ_ROOM (MSGCOPY_CHUNK / 3 * 4 + 64)

struct api_partstream {
  msgcopy_reader *rd;
  mime_decoder dec;
  char carry[MSGCOPY_CHUNK + 256]; /* decoded, not yet taken */
  size_t cpos, clen;
  bool eof;
  bool broken; /* a body went away while it read: its place is lost */
};

typedef enum { SEG_LIT, SEG_RAW, SEG_PART } seg_kind;

typedef struct api_seg {
  seg_kind kind;
  int group;
  char *lit;
  uint64_t off, len; /* RAW: range of the copy; PART and LIT: len */
  api_partstream *ps;
  apimsg_part *whole; /* a whole part: its stream is made when reached */
} api_seg;

struct api_body {
  uv_loop_t *loop;
  char *path;
  api_seg *seg;
  size_t nseg, cap;
  size_t cur;        /* the segment being produced */
  uint64_t cur_done; /* of its bytes */
  apimsg_b64 enc;
  int enc_group;      /* the run being encoded, 0: none */
  msgcopy_reader *rd; /* SEG_RAW */
  bool reading;       /* a read (RAW or PART) is in flight */
  char *out;
  size_t out_pos, out_len;
  int err;
  http_call *call;
  void (*notify)(void *arg);
  void *notify_arg;
  bool waiting; /* the reader found nothing ready */
};

/* ---- part streams --------------------------------------------------------- */

api_partstream *api_partstream_new(uv_loop_t *loop, const char *path, const apimsg_part *p) {
  api_partstream *ps = stp_xcalloc(1, sizeof *ps);
  ps->rd = msgcopy_reader_open(loop, path, p->start, p->end - p->start);
  mime_decoder_init(&ps->dec, p->cte);
  return ps;
}

void api_partstream_free(api_partstream *ps) {
  if (!ps)
    return;
  msgcopy_reader_free(ps->rd);
  free(ps);
}

/* ---- building --------------------------------------------------------------- */

api_body *api_body_new(uv_loop_t *loop, const char *path) {
  api_body *b = stp_xcalloc(1, sizeof *b);
  b->loop = loop;
  b->path = stp_xstrdup(path);
  b->out = stp_xmalloc(APIBODY_BUF);
  return b;
}

static api_seg *add(api_body *b, seg_kind kind, int group) {
  if (b->nseg == b->cap) {
    b->cap = b->cap ? b->cap * 2 : 4;
    b->seg = stp_xrealloc(b->seg, b->cap * sizeof *b->seg);
  }
  api_seg *s = &b->seg[b->nseg++];
  memset(s, 0, sizeof *s);
  s->kind = kind;
  s->group = group;
  return s;
}

void api_body_lit(api_body *b, const char *p, size_t n, int group) {
  api_seg *s = add(b, SEG_LIT, group);
  s->lit = stp_xmalloc(n ? n : 1);
  memcpy(s->lit, p, n);
  s->len = n;
}

void api_body_raw(api_body *b, uint64_t off, uint64_t len, int group) {
  api_seg *s = add(b, SEG_RAW, group);
  s->off = off;
  s->len = len;
}

void api_body_part(api_body *b, api_partstream *ps, uint64_t len, int group) {
  api_seg *s = add(b, SEG_PART, group);
  s->ps = ps;
  s->len = len;
}

void api_body_whole_part(api_body *b, const apimsg_part *p, int group) {
  api_seg *s = add(b, SEG_PART, group);
  s->whole = stp_xmalloc(sizeof *s->whole);
  *s->whole = *p;
  s->len = p->size;
}

uint64_t api_body_size(const api_body *b) {
  uint64_t total = 0, run = 0;
  for (size_t i = 0; i < b->nseg; i++) {
    const api_seg *s = &b->seg[i];
    if (!s->group) {
      total += s->len;
      continue;
    }
    run += s->len;
    if (i + 1 == b->nseg || b->seg[i + 1].group != s->group) {
      total += apimsg_b64_len(run);
      run = 0;
    }
  }
  return total;
}

void api_body_set_call(api_body *b, http_call *call) {
  b->call = call;
}

void api_body_set_notify(api_body *b, void (*fn)(void *arg), void *arg) {
  b->notify = fn;
  b->notify_arg = arg;
}

int api_body_error(const api_body *b) {
  return b->err;
}

void api_body_free(api_body *b) {
  if (!b)
    return;
  if (b->reading && b->cur < b->nseg && b->seg[b->cur].kind == SEG_PART && !b->seg[b->cur].whole) {
    /* The read in flight reports to this body: stop it, no callback. */
    api_partstream *ps = b->seg[b->cur].ps;
    msgcopy_reader_free(ps->rd);
    ps->rd = NULL;
    ps->broken = true;
  }
  msgcopy_reader_free(b->rd);
  for (size_t i = 0; i < b->nseg; i++) {
    free(b->seg[i].lit);
    if (b->seg[i].whole) {
      api_partstream_free(b->seg[i].ps); /* a read in flight: no callback */
      free(b->seg[i].whole);
    }
  }
  free(b->seg);
  stp_cleanse(b->out, APIBODY_BUF); /* message bytes */
  free(b->out);
  free(b->path);
  free(b);
}

/* ---- producing ------------------------------------------------------------------ */

static void encoder_end(api_body *b) {
  if (b->enc_group)
    b->out_len += apimsg_b64_final(&b->enc, b->out + b->out_len);
  b->enc_group = 0;
}

/* Bytes of the current segment into the buffer (the caller made room). */
static void put(api_body *b, const char *p, size_t n) {
  int group = b->seg[b->cur].group;
  if (b->enc_group != group)
    encoder_end(b);
  if (group) {
    b->enc_group = group;
    b->out_len += apimsg_b64_update(&b->enc, p, n, b->out + b->out_len);
  } else {
    memcpy(b->out + b->out_len, p, n);
    b->out_len += n;
  }
  b->cur_done += n;
}

static void next_segment(api_body *b) {
  api_seg *s = &b->seg[b->cur];
  if (s->whole) { /* its stream is done with */
    api_partstream_free(s->ps);
    s->ps = NULL;
  }
  b->cur++;
  b->cur_done = 0;
  if (b->cur == b->nseg || b->seg[b->cur].group != b->enc_group)
    encoder_end(b);
}

static void produce(api_body *b);

static void resume(api_body *b) {
  if (!b->waiting)
    return;
  b->waiting = false;
  if (b->call)
    http_call_resume(b->call);
  else if (b->notify)
    b->notify(b->notify_arg);
}

static void raw_cb(void *arg, const char *p, size_t n, int err) {
  api_body *b = arg;
  b->reading = false;
  if (err) {
    b->err = err;
  } else if (n == 0) {
    msgcopy_reader_free(b->rd);
    b->rd = NULL;
    if (b->cur_done != b->seg[b->cur].len)
      b->err = -EIO;
    else
      next_segment(b);
  } else {
    put(b, p, n);
  }
  produce(b);
  resume(b);
}

static void part_cb(void *arg, const char *p, size_t n, int err) {
  api_body *b = arg;
  api_partstream *ps = b->seg[b->cur].ps;
  b->reading = false;
  ps->cpos = ps->clen = 0;
  if (err) {
    b->err = err;
  } else if (n == 0) {
    ps->clen = mime_decoder_finish(&ps->dec, ps->carry, sizeof ps->carry);
    ps->eof = true;
  } else {
    ps->clen = mime_decode(&ps->dec, p, n, ps->carry);
  }
  produce(b);
  resume(b);
}

/* One step of the current segment; false when it must wait (a read, or
 * no room). */
static bool step(api_body *b, size_t room) {
  api_seg *s = &b->seg[b->cur];
  uint64_t left = s->len - b->cur_done;
  if (left == 0) {
    if (s->kind == SEG_RAW && b->rd) {
      msgcopy_reader_free(b->rd);
      b->rd = NULL;
    }
    next_segment(b);
    return true;
  }
  if (s->kind == SEG_LIT) {
    size_t n = room / 4 * 3 - 8;
    if (n > left)
      n = (size_t)left;
    put(b, s->lit + b->cur_done, n);
    return true;
  }
  if (room < READ_ROOM)
    return false;
  if (s->kind == SEG_RAW) {
    if (!b->rd)
      b->rd = msgcopy_reader_open(b->loop, b->path, s->off, s->len);
    b->reading = true;
    msgcopy_read(b->rd, raw_cb, b);
    return false;
  }
  if (s->whole && !s->ps)
    s->ps = api_partstream_new(b->loop, b->path, s->whole);
  api_partstream *ps = s->ps;
  if (ps->cpos < ps->clen) {
    size_t n = ps->clen - ps->cpos;
    if (n > left)
      n = (size_t)left;
    put(b, ps->carry + ps->cpos, n);
    ps->cpos += n;
    return true;
  }
  if (ps->eof || ps->broken) {
    b->err = -EIO; /* the part is shorter than the segment says */
    return false;
  }
  b->reading = true;
  msgcopy_read(ps->rd, part_cb, b);
  return false;
}

static void produce(api_body *b) {
  while (!b->err && !b->reading && b->cur < b->nseg) {
    if (b->out_pos > 0 && b->out_pos == b->out_len)
      b->out_pos = b->out_len = 0;
    if (b->out_pos > APIBODY_BUF / 2) {
      memmove(b->out, b->out + b->out_pos, b->out_len - b->out_pos);
      b->out_len -= b->out_pos;
      b->out_pos = 0;
    }
    size_t room = APIBODY_BUF - b->out_len;
    if (room < 64 || !step(b, room))
      break;
  }
}

long api_body_read(void *arg, char *buf, size_t cap) {
  api_body *b = arg;
  produce(b);
  size_t avail = b->out_len - b->out_pos;
  if (avail == 0) {
    if (b->err)
      return -1;
    b->waiting = true;
    return 0;
  }
  size_t n = avail < cap ? avail : cap;
  memcpy(buf, b->out + b->out_pos, n);
  b->out_pos += n;
  return (long)n;
}
