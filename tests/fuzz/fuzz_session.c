/* fuzz_session.c - the pure LAN-side session (session.c, session_auth.c)
 * driven as a whole: a device byte stream split at chosen points, and a
 * fake upstream that answers every request AT ONCE (inside the ops call,
 * as relay.c does when the route's upstreams are in back-off or a request
 * is refused locally) or LATER (between two reads of the device).
 *
 * Input: byte 0 = listener variant (bits 0-1 auth none/any/users/
 * passthrough, 2 bare_lf reject, 3 small max_message_size from byte 1,
 * 4 STARTTLS offered, 5 rate limits, 6 rewrite header_from, 7 rewrite
 * mail_from), byte 1 = bits 0-5 size parameter, bit 6 debug logging, bit 7
 * no catch-all route (unmatched recipients get 550), bytes 2-3 = length L of the item
 * list (big-endian), then L bytes of items (the device's commands, cuts and
 * events; see gen_item()), then the tape: one decision byte per request to
 * the fake upstream, in the order the session makes them (bit 0: at once;
 * bits 1-2: LATER by that many extra reads; bits 3-7: the outcome, see
 * deliver() and reply_code()). A tape that runs out answers LATER with
 * success. FUZZ_SESSION_TRACE=1 prints a run in readable form.
 *
 * The target knows the byte stream the device sent, so it follows it as the
 * session must read it, one unit per final reply (a command line, an AUTH
 * continuation line, or a message body up to its end marker), and checks:
 *  (a) one final reply per unit, in order, never before the unit is
 *      complete; 354 and 334 are intermediate; a closing 421, 221 or 554
 *      synchronisation error is followed by close and nothing else; once
 *      every LATER answer is in, every complete unit has its reply;
 *  (b) a 2xx to a message only as the exact relay of the upstream's 2xx to
 *      its final dot; the body relayed is what the device sent (framed);
 *      the upstream's envelope is the device's current transaction;
 *  (c) never up_end for a message refused (size, bare LF, upstream lost) or
 *      not complete, never a request on a connection that is not ready or
 *      while another is outstanding;
 *  (d) session entry points nest at most DEPTH_MAX deep; held input stays
 *      under SESSION_PENDING_MAX and reading is paused while input is held;
 *  (e) no ops call and no byte written after ops->close.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <unistd.h>

#include "fuzz_common.h"

#include "smtp-tls-proxy/limits.h"
#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/session.h"

#define STREAM_MAX (256 * 1024)
#define MARKS_MAX 1024
#define DEPTH_MAX 8
#define SETTLE_MAX 100000
#define SEEN_MAX 65536

/* ---- configuration ---------------------------------------------------- */

static stp_config C;
static stp_listener_cfg L;
static stp_upstream_cfg U;
static stp_route_cfg R[2];
static stp_user USERS[1];
static stp_limits LIM;
static bool with_limits;
static size_t R_UP[1] = {0};
static char *R0_RCPT[1] = {"*@other.example"};
static char *R1_RCPT[1] = {"*@example.com"};
static char RATE_L[] = "3/1m", RATE_R[] = "2/1h";
static char HASH_USER[] = "$fake$scanner1";
static uint64_t now_ms;
static int log_fd = 2;

static void build_config(uint8_t h0, uint8_t h1) {
  memset(&C, 0, sizeof C);
  memset(&L, 0, sizeof L);
  memset(&U, 0, sizeof U);
  memset(R, 0, sizeof R);
  C.hostname = "relay.test";
  L.name = "lan";
  L.auth = (stp_lan_auth)(h0 & 3);
  L.bare_lf = (h0 & 4) ? STP_BARELF_REJECT : STP_BARELF_FIX;
  unsigned size = h1 & 63;
  L.max_message_size = (h0 & 8) ? (size ? 16u + size * 32u : 0) : 10u * 1024 * 1024;
  L.tls = (h0 & 16) ? STP_TLS_STARTTLS : STP_TLS_NONE;
  USERS[0].name = "scanner1";
  USERS[0].hash = HASH_USER;
  L.users = USERS;
  L.n_users = 1;
  U.name = "up";
  R[0].name = "other";
  R[0].match_rcpt_to.v = R0_RCPT;
  R[0].match_rcpt_to.n = 1;
  R[0].upstreams = R_UP;
  R[0].n_upstreams = 1;
  R[1].name = "default";
  if (h1 & 128) {
    R[1].match_rcpt_to.v = R1_RCPT;
    R[1].match_rcpt_to.n = 1;
  }
  R[1].upstreams = R_UP;
  R[1].n_upstreams = 1;
  if (h0 & 64)
    R[1].rewrite_header_from = "Scanner <scanner@example.com>";
  if (h0 & 128)
    R[1].rewrite_mail_from = "relay@example.com";
  with_limits = h0 & 32;
  stp_log_setup((h1 & 64) ? STP_LOG_DEBUG : STP_LOG_INFO, 0, log_fd);
  if (with_limits) {
    L.rate_limit = RATE_L;
    R[1].rate_limit = RATE_R;
  }
  C.routes = R;
  C.n_routes = 2;
  C.listeners = &L;
  C.n_listeners = 1;
  C.upstreams = &U;
  C.n_upstreams = 1;
}

/* ---- the device's byte stream ----------------------------------------- */

typedef struct mark {
  size_t at, seq;
  int event; /* -1: a read boundary only */
  uint8_t arg;
} mark;

static char *S;    /* everything the device sends */
static char *BODY; /* what reached the upstream through up_body */
static size_t SN;  /* its length */
static size_t fed;
static mark marks[MARKS_MAX];
static size_t n_marks;

typedef struct reader {
  const uint8_t *p;
  size_t n, i;
} reader;

static uint8_t rd(reader *r) {
  return r->i < r->n ? r->p[r->i++] : 0;
}

static void put(const void *p, size_t n) {
  if (n > STREAM_MAX - SN)
    n = STREAM_MAX - SN;
  memcpy(S + SN, p, n);
  SN += n;
}
static void puts_(const char *s) {
  put(s, strlen(s));
}

static void add_mark(size_t at, int event, uint8_t arg) {
  if (n_marks == MARKS_MAX)
    return;
  marks[n_marks] = (mark){at, n_marks, event, arg};
  n_marks++;
}

static int mark_cmp(const void *a, const void *b) {
  const mark *x = a, *y = b;
  if (x->at != y->at)
    return x->at < y->at ? -1 : 1;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static const char *const SENDERS[] = {
    "<a@b.test>",        "<>",   "<scan@dev.lan>", "<\"q u\"@b.test>",
    "<\xc3\xbc@b.test>", "<bad", "a@b.test",       "<x@[127.0.0.1]>",
};
static const char *const RCPTS[] = {
    "<x@example.com>",
    "<y@example.com>",
    "<z@other.example>",
    "<bad@>",
    "<Postmaster>",
    "<\xc3\xbc@example.com>",
    "<x@example.com> NOTIFY=NEVER",
    "<x@Example.COM>",
};
/* base64 of "\0scanner1\0scan-pw", "\0scanner1\0wrong", "\0nobody\0scan-pw" */
#define PLAIN_OK "AHNjYW5uZXIxAHNjYW4tcHc="
#define PLAIN_BAD "AHNjYW5uZXIxAHdyb25n"
#define PLAIN_NOUSER "AG5vYm9keQBzY2FuLXB3"
static const char *const AUTHS[] = {
    "AUTH PLAIN " PLAIN_OK, "AUTH PLAIN " PLAIN_BAD,   "AUTH PLAIN " PLAIN_NOUSER, "AUTH PLAIN",
    "AUTH LOGIN",           "AUTH LOGIN c2Nhbm5lcjE=", "AUTH PLAIN !!!",           "AUTH CRAM-MD5",
    "AUTH PLAIN =",         "auth plain " PLAIN_OK,
};
static const char *const CONTS[] = {
    PLAIN_OK, "c2Nhbm5lcjE=", "c2Nhbi1wdw==", "*", "!!", "", PLAIN_BAD, "=",
};
static const char *const MISC[] = {
    "VRFY x",
    "EXPN list",
    "HELP",
    "BDAT 10 LAST",
    "NOOP x",
    "RSET x",
    "QUIT x",
    "DATA x",
    "MAIL FROM:<a@b.test>",
    "RCPT TO:<x@example.com>",
    "STARTTLS x",
    "HELO",
    "EHLO",
    "",
};
/* Body bytes >= 0xF0 stand for the sequences that matter to DATA framing. */
static const char *const BODY_TOK[16] = {
    "\r\n",     "\r\n.",          "\n",      "\r",    ".",  "\r\n.\r\n",
    "\n.\n",    "\r\n.\n",        "\n.\r\n", "\0",    "..", "From: x <x@y.test>\r\n",
    "\r\n\r\n", "Subject: s\r\n", "\r\r\n",  ".\r\n",
};

static void gen_mail(reader *r, bool lower) {
  uint8_t sel = rd(r);
  char buf[128];
  puts_(lower ? "mail from:" : "MAIL FROM:");
  puts_(SENDERS[sel & 7]);
  if (sel & 8) {
    unsigned sz = (unsigned)rd(r) << 8 | rd(r);
    snprintf(buf, sizeof buf, " SIZE=%u", sz * 8u);
    puts_(buf);
  }
  if (sel & 16)
    puts_(" BODY=8BITMIME");
  if (sel & 32)
    puts_(" SMTPUTF8");
  if (sel & 64)
    puts_(" X-JUNK=1");
  puts_((sel & 128) ? "\n" : "\r\n");
}

static void gen_rcpt(reader *r, bool lower) {
  uint8_t sel = rd(r);
  puts_(lower ? "rcpt to:" : "RCPT TO:");
  if ((sel & 0x78) == 0x78) { /* an address at the length bound */
    char local[400];
    memset(local, 'l', sizeof local);
    puts_("<");
    put(local, 60u + (sel & 7) * 40u);
    puts_("@example.com>");
  } else if ((sel & 0x78) == 0x70) {
    puts_("<nobody@elsewhere.test>"); /* no route without the catch-all */
  } else {
    puts_(RCPTS[sel & 7]);
  }
  puts_((sel & 128) ? "\n" : "\r\n");
}

static void gen_bytes(reader *r, bool tokens) {
  size_t n = rd(r);
  for (size_t i = 0; i < n; i++) {
    uint8_t b = rd(r);
    if (tokens && b >= 0xF0) {
      const char *t = BODY_TOK[b - 0xF0];
      put(t, b == 0xF9 ? 1 : strlen(t));
    } else {
      char c = (char)b;
      put(&c, 1);
    }
  }
}

static void gen_long(reader *r, bool auth) {
  uint8_t b = rd(r);
  size_t len = b < 32 ? 505u + b : 512u + (b - 32u) * 64u; /* around 512 and 12288 */
  size_t start = SN;
  puts_(auth ? "AUTH PLAIN " : "NOOP ");
  while (SN - start < len && SN < STREAM_MAX)
    put("A", 1);
  puts_("\r\n");
}

static void gen_fill(reader *r, bool one_line) {
  static const char line[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n";
  size_t n = ((size_t)rd(r) + 1) * 256;
  for (size_t i = 0; i < n && SN < STREAM_MAX; i += 64)
    put(line, one_line ? 62 : 64);
}

enum {
  K_EHLO,
  K_MAIL,
  K_RCPT,
  K_DATA,
  K_BODY,
  K_RSET,
  K_NOOP,
  K_QUIT,
  K_AUTH,
  K_CONT,
  K_STARTTLS,
  K_GARBAGE,
  K_LONG,
  K_MISC,
  K_CUT,
  K_FILL,
  K_RAW,
  K_EVENT,
  K_DOT,
  K_REPEAT,
  K_KINDS
};

/* One item: op byte (bits 0-5 kind, bit 6 variant, bit 7 a read boundary
 * after the item), then the kind's argument bytes. Kinds: commands (EHLO
 * name, MAIL and RCPT from tables with parameters, DATA, RSET, NOOP, QUIT,
 * AUTH and its continuation lines, STARTTLS, VRFY & co.), message bytes
 * (BODY: bytes >= 0xF0 are CR/LF/dot sequences, variant adds the end
 * marker; FILL: bulk lines; RAW: no terminator), hostile lines (GARBAGE,
 * LONG: around 512 and 12288 octets), REPEAT (the previous item, many
 * times), CUT (a read boundary some bytes back) and EVENT (between two reads: the upstream drops,
 * idle timeout, shutdown, device EOF, clock moves, the pending answer arrives now). */
static size_t last_item_start, last_item_end;

/* Kinds that are one fixed line: plain, variant. */
static const char *const FIXED[K_KINDS][2] = {
    [K_DATA] = {"DATA\r\n", "data\r\n"}, [K_RSET] = {"RSET\r\n", "RSET\r\n"},
    [K_NOOP] = {"NOOP\r\n", "NOOP\r\n"}, [K_QUIT] = {"QUIT\r\n", "quit\r\n"},
    [K_DOT] = {".\r\n", ".\n"},          [K_STARTTLS] = {"STARTTLS\r\n", "STARTTLS now\r\n"},
};

static void gen_pick(reader *r, const char *const *table, size_t n) {
  puts_(table[rd(r) % n]);
  puts_("\r\n");
}

static void gen_text(reader *r, unsigned kind, bool v) {
  switch (kind) {
  case K_EHLO: {
    puts_(v ? "HELO " : "EHLO ");
    size_t n = rd(r) % 32;
    for (size_t i = 0; i < n; i++) {
      char c = (char)rd(r);
      put(&c, 1);
    }
    puts_("\r\n");
    break;
  }
  case K_MAIL:
    gen_mail(r, v);
    break;
  case K_RCPT:
    gen_rcpt(r, v);
    break;
  case K_BODY:
    gen_bytes(r, true);
    if (v)
      puts_("\r\n.\r\n");
    break;
  case K_AUTH:
    gen_pick(r, AUTHS, sizeof AUTHS / sizeof *AUTHS);
    break;
  case K_CONT:
    gen_pick(r, CONTS, sizeof CONTS / sizeof *CONTS);
    break;
  case K_MISC:
    gen_pick(r, MISC, sizeof MISC / sizeof *MISC);
    break;
  case K_GARBAGE:
    gen_bytes(r, false);
    puts_(v ? "\n" : "\r\n");
    break;
  case K_LONG:
    gen_long(r, v);
    break;
  case K_FILL:
    gen_fill(r, v);
    break;
  case K_RAW:
    gen_bytes(r, v);
    break;
  }
}

static void gen_item(reader *r) {
  uint8_t op = rd(r);
  size_t start = SN;
  bool v = op & 0x40;
  unsigned kind = (op & 0x3fu) % K_KINDS;
  if (FIXED[kind][0]) {
    puts_(FIXED[kind][v]);
  } else if (kind == K_CUT) {
    size_t back = rd(r);
    add_mark(SN > back ? SN - back : 0, -1, 0);
  } else if (kind == K_EVENT) {
    uint8_t e = rd(r);
    add_mark(SN, e % 6, rd(r));
  } else if (kind == K_REPEAT) { /* the previous item again, up to 2048 times */
    size_t times = ((size_t)rd(r) + 1) * (v ? 8 : 1), len = last_item_end - last_item_start;
    for (size_t i = 0; i < times && len && SN + len <= STREAM_MAX; i++)
      put(S + last_item_start, len);
    start = last_item_start;
  } else {
    gen_text(r, kind, v);
  }
  last_item_start = start;
  last_item_end = SN;
  if (op & 0x80)
    add_mark(SN, -1, 0);
}

/* ---- DATA framing reference (the rules of SPEC.md, as in fuzz_data.c) -- */

typedef struct frame_ref {
  bool done, bare;
  size_t consumed; /* up to and including the end marker */
  uint64_t size;   /* unstuffed content */
  char *out;       /* framed output (stuffed, CRLF), when asked for */
  size_t out_len;
} frame_ref;

static void ref_emit(frame_ref *f, const char *p, size_t n) {
  if (f->out) {
    memcpy(f->out + f->out_len, p, n);
  }
  f->out_len += n;
}

/* Lines end in CRLF, bare LF or bare CR (a CR at the very end of the input
 * is undecided); "." ended by CRLF after a CRLF line ends the message. */
static void ref_frame(const char *in, size_t len, frame_ref *f) {
  bool prev_crlf = true;
  size_t i = 0;
  f->done = f->bare = false;
  f->size = 0;
  f->out_len = 0;
  while (i < len) {
    size_t s = i, e, term;
    for (;;) {
      if (i >= len)
        return;
      if (in[i] == '\n') {
        e = i;
        term = 1;
        break;
      }
      if (in[i] == '\r') {
        if (i + 1 >= len)
          return;
        e = i;
        term = in[i + 1] == '\n' ? 2 : 1;
        break;
      }
      i++;
    }
    bool crlf = term == 2;
    i = e + term;
    if (e - s == 1 && in[s] == '.' && crlf && prev_crlf) {
      f->done = true;
      f->consumed = i;
      return;
    }
    if (!crlf)
      f->bare = true;
    const char *c = in + s;
    size_t cl = e - s;
    if (cl > 1 && c[0] == '.') { /* RFC 5321 4.5.2: a lone "." stays "." */
      c++;
      cl--;
    }
    if (cl && c[0] == '.')
      ref_emit(f, ".", 1);
    if (cl)
      ref_emit(f, c, cl);
    ref_emit(f, "\r\n", 2);
    f->size += cl + 2;
    prev_crlf = crlf;
  }
}

/* ---- the fake upstream -------------------------------------------------- */

typedef enum { RQ_NONE = 0, RQ_OPEN, RQ_MAIL, RQ_RCPT, RQ_DATA, RQ_END, RQ_RSET, RQ_PASS } rq_kind;
static const char *const RQ_NAME[] = {"none", "open", "mail", "rcpt",
                                      "data", "end",  "rset", "pass"};
typedef enum { CONN_NONE = 0, CONN_OPENING, CONN_READY } conn_state;

typedef struct fake {
  /* tape */
  const uint8_t *tape;
  size_t tape_n, tape_i;
  /* the one outstanding request */
  bool out_valid;
  rq_kind out_kind;
  uint8_t out_outcome;
  unsigned out_delay;
  bool out_for_auth;
  /* upstream connection as the fake sees it */
  conn_state conn;
  bool in_txn, in_data;
  unsigned rcpts_ok;
  uint64_t mail_txn; /* the device transaction its MAIL was sent for */
  char *body;
  size_t body_len;
  /* the last reply delivered, for relay checks */
  rq_kind last_kind;
  int last_code;
  unsigned last_seq;
  smtp_reply last;
  unsigned seq;
  unsigned char relayed[SEEN_MAX / 8];
  /* device side */
  bool closed, eof, paused, tls_req;
  bool auth_grant, pass_known;
  int expect_fail; /* next reply: 4 = 4xx, 2 = 250 (RSET), 5 = AUTH 535 */
  bool fail_in_data;
  int depth;
  /* Answers given at once (from inside an ops call) are owed to the device
   * by the time the outermost session call returns, not before: the
   * session applies them one level up. */
  unsigned char owed[SEEN_MAX / 8];
  unsigned owed_from, n_owed;
  bool owe_fail;
  /* output parsing */
  char line[SMTP_AUTH_LINE_MAX];
  size_t line_len;
  char reply[16384];
  size_t reply_len;
  int reply_code;
} fake;

typedef enum { WM_GREETING = 0, WM_CMD, WM_AUTH, WM_DATA, WM_TLS } walk_mode;
typedef struct walk {
  walk_mode mode;
  size_t pos; /* start of the next unit in S */
  bool expect_close;
  bool authed, have_mail;
  uint64_t txn; /* counts MAIL commands accepted */
  unsigned rcpts_ok;
} walk;

static fake F;
static walk W;
static session SESS;
static bool trace; /* FUZZ_SESSION_TRACE=1: the run in readable form on stderr */

static void trace_bytes(const char *tag, const char *p, size_t n) {
  if (!trace)
    return;
  fprintf(stderr, "%*s%s \"", F.depth * 2, "", tag);
  for (size_t i = 0; i < n && i < 400; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c == '\r')
      fputs("\\r", stderr);
    else if (c == '\n')
      fputs("\\n", stderr);
    else if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
      fprintf(stderr, "\\x%02x", c);
    else
      fputc(c, stderr);
  }
  fprintf(stderr, "\"%s\n", n > 400 ? " ..." : "");
}
#define TRACE(...)                                                                                 \
  do {                                                                                             \
    if (trace) {                                                                                   \
      fprintf(stderr, "%*s", F.depth * 2, "");                                                     \
      fprintf(stderr, __VA_ARGS__);                                                                \
    }                                                                                              \
  } while (0)

static void check_owed(void);
#define ENTER() CHECK(++F.depth <= DEPTH_MAX)
#define LEAVE()                                                                                    \
  do {                                                                                             \
    if (--F.depth == 0)                                                                            \
      check_owed();                                                                                \
  } while (0)

static uint8_t tape_next(void) {
  return F.tape_i < F.tape_n ? F.tape[F.tape_i++] : 0;
}

static void render(const smtp_reply *r, char *buf, size_t cap, size_t *len) {
  const char *t = r->text;
  size_t left = r->text_len, n = 0;
  for (;;) {
    size_t k = 0;
    while (k < left && t[k] != '\n')
      k++;
    bool last = k >= left;
    n += (size_t)snprintf(buf + n, cap - n, "%03d%c%.*s\r\n", r->code, last ? ' ' : '-', (int)k, t);
    if (last)
      break;
    t += k + 1;
    left -= k + 1;
  }
  *len = n;
}

static bool is_relay_of_last(const char *p, size_t n) {
  char buf[sizeof F.reply];
  size_t len;
  if (F.last_kind == RQ_NONE || F.last_seq >= SEEN_MAX)
    return false;
  render(&F.last, buf, sizeof buf, &len);
  return len == n && memcmp(buf, p, n) == 0;
}

static void mark_relayed(void) {
  CHECK(!(F.relayed[F.last_seq / 8] & (1u << (F.last_seq % 8)))); /* relayed once */
  F.relayed[F.last_seq / 8] |= (unsigned char)(1u << (F.last_seq % 8));
}
static bool was_relayed(unsigned seq) {
  return seq >= SEEN_MAX || (F.relayed[seq / 8] & (1u << (seq % 8)));
}

static void check_owed(void) {
  for (unsigned q = F.owed_from; F.n_owed && q < F.seq && q < SEEN_MAX; q++) {
    if (!(F.owed[q / 8] & (1u << (q % 8))))
      continue;
    F.owed[q / 8] &= (unsigned char)~(1u << (q % 8));
    if (!F.closed)
      CHECK(was_relayed(q));
  }
  F.n_owed = 0;
  if (F.owe_fail)
    CHECK(F.expect_fail == 0 || F.closed);
  F.owe_fail = false;
}

/* ---- following the device's stream, one unit per final reply ---------- */

static bool unit_line(size_t *start, size_t *len) {
  const char *lf = W.pos < fed ? memchr(S + W.pos, '\n', fed - W.pos) : NULL;
  if (!lf)
    return false;
  *start = W.pos;
  *len = (size_t)(lf - (S + W.pos));
  if (*len && S[W.pos + *len - 1] == '\r')
    (*len)--;
  W.pos = (size_t)(lf - S) + 1;
  return true;
}

/* A command line as RFC 5321 reads it: the verb up to the first space, the
 * argument after it (spaces trimmed). Lines the session must refuse before
 * looking at the verb (a NUL; over 512 octets but for AUTH) are no verb. */
typedef struct cmdline {
  char verb[9];
  bool has_arg;
} cmdline;

static cmdline parse_line(size_t at, size_t len) {
  cmdline c = {{0}, false};
  const char *l = S + at;
  size_t v = 0;
  while (v < len && l[v] != ' ')
    v++;
  if (v >= sizeof c.verb || memchr(l, '\0', len))
    return c;
  for (size_t i = 0; i < v; i++)
    c.verb[i] = (l[i] >= 'a' && l[i] <= 'z') ? (char)(l[i] - 32) : l[i];
  if (len + 2 > SMTP_CMD_MAX && strcmp(c.verb, "AUTH") != 0)
    c.verb[0] = '\0';
  for (size_t i = v; i < len; i++)
    c.has_arg |= l[i] != ' ';
  return c;
}
static bool is_verb(const cmdline *c, const char *verb) {
  return strcmp(c->verb, verb) == 0;
}

static void txn_over(void) {
  W.have_mail = false;
  W.rcpts_ok = 0;
}

/* A final reply (or 334/354) to the unit at W.pos. */
/* What the command line's verb says of its final reply. */
static void check_by_verb(const cmdline *c, int code, bool relay) {
  if (relay)
    CHECK(((F.last_kind == RQ_RCPT || F.last_kind == RQ_MAIL) && is_verb(c, "RCPT")) ||
          (F.last_kind == RQ_DATA && is_verb(c, "DATA")));
  if (is_verb(c, "QUIT"))
    CHECK(code == 221);
  if (is_verb(c, "NOOP"))
    CHECK(code == 250);
  if (is_verb(c, "RSET")) {
    CHECK(code == 250);
    txn_over();
  }
  if (code == 250 && (is_verb(c, "EHLO") || is_verb(c, "HELO")))
    txn_over();
  if (is_verb(c, "MAIL") && code == 250) {
    /* users / passthrough: no MAIL before AUTH succeeded */
    CHECK(W.authed || L.auth == STP_LAUTH_NONE || L.auth == STP_LAUTH_ANY);
    CHECK(!W.have_mail);
    W.have_mail = true;
    W.txn++;
    W.rcpts_ok = 0;
  }
  if (is_verb(c, "RCPT") && code / 100 == 2) {
    CHECK(relay && F.last_kind == RQ_RCPT); /* only the upstream accepts recipients */
    W.rcpts_ok++;
  }
}

/* What the reply's code says of the line it answers, and what comes next. */
static void check_by_code(const cmdline *c, bool in_auth, int code, const char *text, size_t n) {
  bool is_auth = in_auth || is_verb(c, "AUTH");
  bool is_data = is_verb(c, "DATA") && !c->has_arg;
  W.mode = WM_CMD;
  switch (code) {
  case 354:
    CHECK(is_data && F.last_kind == RQ_DATA && F.last_code == 354 && !was_relayed(F.last_seq));
    mark_relayed();
    W.mode = WM_DATA;
    break;
  case 334:
    CHECK(is_auth);
    W.mode = WM_AUTH;
    break;
  case 220:
    CHECK(is_verb(c, "STARTTLS") && !c->has_arg);
    W.mode = WM_TLS;
    W.authed = false;
    txn_over();
    break;
  case 221:
    CHECK(is_verb(c, "QUIT"));
    W.expect_close = true;
    break;
  case 235:
    CHECK(is_auth);
    CHECK(L.auth == STP_LAUTH_ANY || F.auth_grant);
    F.auth_grant = false;
    W.authed = true;
    break;
  default:
    if (code == 554 && memmem(text, n, "synchronization error", 21)) {
      CHECK(is_data);
      W.expect_close = true;
    }
    break;
  }
}

/* A final reply (or 334/354) to the command or AUTH line at W.pos. */
static void on_command_reply(int code, const char *text, size_t n) {
  size_t at, len;
  bool in_auth = W.mode == WM_AUTH;
  if (!unit_line(&at, &len)) {
    fprintf(stderr, "reply %.*s to a line the device has not finished (pos %zu, fed %zu)\n", (int)n,
            text, W.pos, fed);
    CHECK(!"reply before its command line is complete");
  }
  cmdline c = in_auth ? (cmdline){{0}, false} : parse_line(at, len);
  bool relay = is_relay_of_last(text, n);
  if (relay)
    mark_relayed();
  check_by_verb(&c, code, relay);
  check_by_code(&c, in_auth, code, text, n);
}

static void on_body_reply(int code, const char *text, size_t n) {
  frame_ref f = {0};
  ref_frame(S + W.pos, fed - W.pos, &f);
  CHECK(f.done); /* the message's end marker has arrived */
  W.pos += f.consumed;
  W.mode = WM_CMD;
  CHECK(code != 354 && code != 334 && code != 220 && code != 221 && code != 235);
  bool relay = is_relay_of_last(text, n);
  if (relay) {
    mark_relayed();
    CHECK(F.last_kind == RQ_END);
  }
  if (code / 100 == 2)
    CHECK(relay && F.last_kind == RQ_END); /* 250 only as the upstream's own */
  if (F.fail_in_data)
    CHECK(code / 100 == 4 || code == 552 || code == 550);
  F.fail_in_data = false;
  txn_over();
}

static void on_reply(int code, const char *text, size_t n) {
  CHECK(!F.closed);
  CHECK(!W.expect_close);
  if (W.mode == WM_GREETING) {
    CHECK(code == 220);
    W.mode = WM_CMD;
    return;
  }
  if (code == 421 && memmem(text, n, "closing connection", 18)) {
    W.expect_close = true;
    return;
  }
  /* A failure answered at once is applied after the ops call returns; a
   * body the device wrote behind DATA is the synchronisation error first,
   * whatever the upstream said (as when the answer comes later). */
  if (F.expect_fail && code == 554 && memmem(text, n, "synchronization error", 21))
    F.expect_fail = 0;
  if (F.expect_fail) {
    int want = F.expect_fail;
    F.expect_fail = 0;
    if (want == 2)
      CHECK(code == 250);
    else if (want == 5)
      CHECK(code == 535);
    else
      CHECK(code / 100 == 4);
  }
  switch (W.mode) {
  case WM_CMD:
  case WM_AUTH:
    on_command_reply(code, text, n);
    return;
  case WM_DATA:
    on_body_reply(code, text, n);
    return;
  default:
    CHECK(!"a reply during the TLS handshake");
  }
}

/* Hot and not worth coverage feedback: any byte below 0x20, or DEL. */
__attribute__((no_sanitize("coverage"))) static bool has_control(const char *p, size_t n) {
  unsigned bad = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    bad |= (c < 0x20) | (c == 0x7f);
  }
  return bad != 0;
}

static void out_line(const char *p, size_t n) {
  CHECK(n >= 3);
  for (size_t i = 0; i < 3; i++)
    CHECK(p[i] >= '0' && p[i] <= '9');
  int code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
  CHECK(code >= 200 && code <= 599);
  CHECK(n == 3 || p[3] == ' ' || p[3] == '-');
  CHECK(!has_control(p, n)); /* device input never forges a line */
  trace_bytes("<-", p, n);
  if (F.reply_len == 0)
    F.reply_code = code;
  CHECK(code == F.reply_code);
  CHECK(F.reply_len + n + 2 <= sizeof F.reply);
  memcpy(F.reply + F.reply_len, p, n);
  memcpy(F.reply + F.reply_len + n, "\r\n", 2);
  F.reply_len += n + 2;
  if (n == 3 || p[3] == ' ') {
    size_t len = F.reply_len;
    F.reply_len = 0;
    on_reply(code, F.reply, len);
  }
}

/* ---- ops ----------------------------------------------------------------- */

static void f_write(void *c, const char *p, size_t n) {
  (void)c;
  CHECK(!F.closed);
  CHECK(n > 0);
  while (n > 0) {
    const char *lf = memchr(p, '\n', n);
    size_t k = lf ? (size_t)(lf - p) + 1 : n;
    CHECK(k <= sizeof F.line - F.line_len);
    memcpy(F.line + F.line_len, p, k);
    F.line_len += k;
    p += k;
    n -= k;
    if (lf) { /* every LF we send ends a line, after its CR */
      CHECK(F.line_len >= 2 && F.line[F.line_len - 2] == '\r');
      size_t len = F.line_len - 2;
      F.line_len = 0;
      out_line(F.line, len);
    }
  }
}

static void f_close(void *c) {
  (void)c;
  CHECK(!F.closed);
  TRACE("close\n");
  CHECK(W.expect_close || F.eof);
  CHECK(F.reply_len == 0 && F.line_len == 0);
  F.closed = true;
  F.out_valid = false; /* the relay drops the upstream with the device */
}

static void f_pause(void *c, bool p) {
  (void)c;
  CHECK(!F.closed);
  F.paused = p;
}

static void f_start_tls(void *c) {
  (void)c;
  CHECK(!F.closed && !F.tls_req);
  CHECK(W.mode == WM_TLS);
  TRACE("start_tls\n");
  F.tls_req = true;
}

static void deliver(void);

/* A request to the fake upstream: its decision byte comes off the tape. */
static void request(rq_kind k) {
  CHECK(!F.closed);
  CHECK(!F.out_valid); /* one request at a time */
  uint8_t b = tape_next();
  F.out_valid = true;
  F.out_kind = k;
  F.out_outcome = b >> 3;
  F.out_delay = (b >> 1) & 3;
  F.out_for_auth = SESS.wait == W_AUTH;
  TRACE("up_%s: answer %s%u, outcome %u\n", RQ_NAME[k], b & 1 ? "at once" : "later +",
        b & 1 ? 0 : F.out_delay, F.out_outcome);
  if (b & 1)
    deliver();
}

static void f_open(void *c, size_t route) {
  (void)c;
  CHECK(!F.closed);
  CHECK(route < C.n_routes);
  CHECK(F.conn == CONN_NONE);
  F.conn = CONN_OPENING;
  request(RQ_OPEN);
}

static void f_mail(void *c, const char *from, const smtp_mail_args *a) {
  (void)c;
  CHECK(!F.closed && F.conn == CONN_READY && !F.in_txn && a);
  CHECK(W.have_mail);
  CHECK(SESS.route >= 0 && (size_t)SESS.route < C.n_routes);
  const char *rw = R[SESS.route].rewrite_mail_from;
  if (rw)
    CHECK(strcmp(from, rw) == 0);
  F.mail_txn = W.txn;
  request(RQ_MAIL);
}

static void f_rcpt(void *c, const char *to, const smtp_rcpt_dsn *dsn) {
  (void)dsn;
  (void)c;
  CHECK(!F.closed && F.conn == CONN_READY && F.in_txn && to && to[0]);
  /* The upstream's transaction is the device's current one. */
  CHECK(W.have_mail && F.mail_txn == W.txn);
  request(RQ_RCPT);
}

static void f_data(void *c) {
  (void)c;
  CHECK(!F.closed && F.conn == CONN_READY && F.in_txn && F.rcpts_ok > 0 && !F.in_data);
  CHECK(W.have_mail && F.mail_txn == W.txn && F.rcpts_ok == W.rcpts_ok);
  request(RQ_DATA);
}

static void f_body(void *c, const char *p, size_t n) {
  (void)c;
  CHECK(!F.closed && F.conn == CONN_READY && F.in_data && n > 0);
  CHECK(F.body_len + n <= 3 * STREAM_MAX);
  memcpy(F.body + F.body_len, p, n);
  F.body_len += n;
  trace_bytes("up_body", p, n);
}

/* The final dot: only for a complete message the session accepted. */
static void f_end(void *c) {
  (void)c;
  CHECK(!F.closed && F.conn == CONN_READY && F.in_data);
  CHECK(W.mode == WM_DATA);
  CHECK(W.have_mail && F.mail_txn == W.txn && F.rcpts_ok == W.rcpts_ok && W.rcpts_ok > 0);
  frame_ref f = {0};
  f.out = malloc(3 * (fed - W.pos) + 1);
  CHECK(f.out);
  ref_frame(S + W.pos, fed - W.pos, &f);
  CHECK(f.done);
  CHECK(!L.max_message_size || f.size <= L.max_message_size);
  CHECK(L.bare_lf != STP_BARELF_REJECT || !f.bare);
  if (!R[SESS.route >= 0 ? SESS.route : 0].rewrite_header_from) {
    if (f.out_len != F.body_len || memcmp(f.out, F.body, f.out_len) != 0) {
      fprintf(stderr, "body relayed (%zu) differs from the device's (%zu)\n", F.body_len,
              f.out_len);
      CHECK(!"relayed body is the framed message");
    }
  }
  free(f.out);
  request(RQ_END);
}

static void f_rset(void *c) {
  (void)c;
  CHECK(!F.closed && F.conn == CONN_READY);
  request(RQ_RSET);
}

static void f_up_close(void *c, bool graceful) {
  (void)c;
  CHECK(!F.closed);
  TRACE("up_close %s\n", graceful ? "graceful" : "abort");
  CHECK(!(graceful && F.in_data)); /* never a QUIT inside a message */
  F.conn = CONN_NONE;
  F.in_txn = F.in_data = false;
  F.rcpts_ok = 0;
  if (F.out_kind != RQ_PASS)
    F.out_valid = false; /* no callbacks for a closed connection */
}

static void f_check_password(void *c, const char *hash, const char *pass) {
  (void)c;
  CHECK(!F.closed && L.auth == STP_LAUTH_USERS && hash && pass);
  F.pass_known = strcmp(hash, HASH_USER) == 0;
  request(RQ_PASS);
}

static const session_ops OPS = {f_write, f_close,    f_pause,          f_start_tls, f_open,
                                f_mail,  f_rcpt,     f_data,           f_body,      f_end,
                                f_rset,  f_up_close, f_check_password, NULL};

/* ---- delivering the fake's answers ------------------------------------- */

static int reply_code(rq_kind k, unsigned o) {
  if (k == RQ_DATA)
    return o < 19 ? 354 : o < 21 ? 451 : o < 22 ? 452 : 554;
  if (k == RQ_END && o == 18)
    return 250;
  return o < 18 ? 250 : o < 19 ? 251 : o < 21 ? 451 : o < 22 ? 452 : 550;
}

/* What the session owes the device when its upstream fails now. */
static void expect_failure_reply(upstream_fail why) {
  if (SESS.state == SS_DATA) {
    F.fail_in_data = true;
    return;
  }
  if (SESS.state != SS_WAIT)
    return;
  switch (SESS.wait) {
  case W_OPEN:
  case W_MAIL:
  case W_RCPT:
  case W_DATA:
  case W_DOT:
    F.expect_fail = 4;
    break;
  case W_RSET:
    F.expect_fail = 2;
    break;
  case W_AUTH:
    F.expect_fail = why == UP_FAIL_AUTH ? 5 : 4;
    break;
  default:
    break;
  }
}

static void fail_upstream(upstream_fail why) {
  expect_failure_reply(why);
  bool was_waiting = F.expect_fail != 0;
  F.conn = CONN_NONE;
  F.in_txn = F.in_data = false;
  F.rcpts_ok = 0;
  TRACE("-> session_up_failed(%s)\n", upstream_fail_name(why));
  ENTER();
  session_up_failed(&SESS, why);
  LEAVE();
  if (was_waiting && F.depth > 0)
    F.owe_fail = true; /* answered when the outermost call returns */
  else if (was_waiting)
    CHECK(F.expect_fail == 0 || F.closed); /* answered at once */
}

static void deliver_reply(rq_kind k, unsigned o) {
  smtp_reply r;
  memset(&r, 0, sizeof r);
  r.code = reply_code(k, o);
  unsigned seq = F.seq++;
  int n = snprintf(r.text, sizeof r.text, "%d.0.0 fake %s %u", r.code / 100, RQ_NAME[k], seq);
  r.lines = 1;
  if (o == 16 || o == 17) { /* a multi-line reply */
    n += snprintf(r.text + n, sizeof r.text - (size_t)n, "\nfake %s %u more", RQ_NAME[k], seq);
    r.lines++;
    if (o == 17) {
      n += snprintf(r.text + n, sizeof r.text - (size_t)n, "\nfake %s %u end", RQ_NAME[k], seq);
      r.lines++;
    }
  }
  r.text_len = (size_t)n;
  F.last = r;
  F.last_kind = k;
  F.last_code = r.code;
  F.last_seq = seq;
  bool ok = r.code / 100 == 2;
  switch (k) {
  case RQ_MAIL:
    F.in_txn = ok;
    break;
  case RQ_RCPT:
    F.rcpts_ok += ok;
    break;
  case RQ_DATA:
    F.in_data = r.code == 354;
    F.body_len = 0;
    break;
  case RQ_END:
  case RQ_RSET:
    F.in_txn = F.in_data = false;
    F.rcpts_ok = 0;
    break;
  default:
    break;
  }
  trace_bytes("-> session_up_reply", r.text, r.text_len);
  ENTER();
  session_up_reply(&SESS, &r);
  LEAVE();
  /* These are the device's answer: relayed (or, 354, acknowledged) at once. */
  bool owed = k == RQ_RCPT || k == RQ_DATA || k == RQ_END || (k == RQ_MAIL && !ok);
  if (owed && !F.closed && F.depth > 0 && seq < SEEN_MAX) {
    if (!F.n_owed++)
      F.owed_from = seq;
    F.owed[seq / 8] |= (unsigned char)(1u << (seq % 8));
  } else if (owed && !F.closed) {
    CHECK(was_relayed(seq));
  }
}

static void deliver(void) {
  CHECK(F.out_valid);
  F.out_valid = false;
  rq_kind k = F.out_kind;
  unsigned o = F.out_outcome;
  upstream_fail why = (upstream_fail)(o >= 23 ? o - 22 : 0);
  switch (k) {
  case RQ_OPEN:
    if (why) {
      fail_upstream(why);
      return;
    }
    F.conn = CONN_READY;
    F.in_txn = F.in_data = false;
    F.rcpts_ok = 0;
    F.auth_grant = F.out_for_auth;
    TRACE("-> session_up_ready\n");
    ENTER();
    if (o >= 20)
      session_up_skipped(&SESS, "down:backoff");
    session_up_ready(&SESS, "up", o & 1 ? "TLSv1.3" : NULL);
    LEAVE();
    return;
  case RQ_PASS:
    F.auth_grant = o < 16 && F.pass_known;
    TRACE("-> session_password_checked(%s)\n", o < 16 ? "ok" : "bad");
    ENTER();
    session_password_checked(&SESS, o < 16);
    LEAVE();
    return;
  default:
    if (why)
      fail_upstream(why);
    else
      deliver_reply(k, o);
    return;
  }
}

/* ---- the driver ------------------------------------------------------------ */

/* Between two calls from the event loop: nothing half-done. */
static void check_quiet(void) {
  CHECK(F.depth == 0);
  CHECK(F.line_len == 0 && F.reply_len == 0);
  CHECK(!W.expect_close || F.closed);
  CHECK(SESS.pending.len <= SESSION_PENDING_MAX);
  if (F.closed || SESS.state == SS_TLS)
    return;
  CHECK(SESS.pending.len == 0 || F.paused);
  CHECK((SESS.state == SS_WAIT) == F.out_valid);
}

static void feed(size_t from, size_t to) {
  /* A fresh copy of each read, so a read past it is an ASan report. */
  char *piece = malloc(to - from);
  CHECK(piece);
  memcpy(piece, S + from, to - from);
  fed = to;
  trace_bytes("feed", piece, to - from);
  ENTER();
  session_feed(&SESS, piece, to - from);
  LEAVE();
  free(piece);
  check_quiet();
}

/* One turn of the event loop: the LAN handshake finishes, a LATER answer
 * whose time has come arrives. */
static void step(bool force) {
  if (F.tls_req && !F.closed) {
    F.tls_req = false;
    CHECK(W.mode == WM_TLS);
    W.mode = WM_CMD;
    W.pos = fed; /* everything sent before the handshake is gone */
    TRACE("-> session_tls_ready\n");
    ENTER();
    session_tls_ready(&SESS, "TLSv1.3");
    LEAVE();
  }
  if (F.out_valid && !F.closed) {
    if (force || F.out_delay == 0)
      deliver();
    else
      F.out_delay--;
  }
  check_quiet();
}

static void event(int e, uint8_t arg) {
  if (F.closed)
    return;
  static const char *const names[] = {"upstream drops", "idle timeout", "shutdown",
                                      "device EOF",     "clock +arg s", "deliver now"};
  TRACE("event: %s (arg %u)\n", names[e], arg);
  switch (e) {
  case 0: /* the upstream connection drops on its own */
    if (F.conn != CONN_NONE) {
      if (F.out_kind != RQ_PASS)
        F.out_valid = false; /* its answer will never come */
      fail_upstream((upstream_fail)(arg % 9 + 1));
    }
    break;
  case 1:
    if (SESS.state != SS_WAIT) {
      ENTER();
      session_on_idle_timeout(&SESS);
      LEAVE();
    }
    break;
  case 2:
    ENTER();
    session_shutdown(&SESS, NULL);
    LEAVE();
    break;
  case 3:
    F.eof = true;
    ENTER();
    session_on_eof(&SESS);
    LEAVE();
    break;
  case 4:
    now_ms += (uint64_t)arg * 1000u;
    break;
  default:
    if (F.out_valid)
      deliver();
    break;
  }
  check_quiet();
}

/* Everything fed and answered: every complete unit has had its reply. */
static void check_end(void) {
  if (F.closed)
    return;
  CHECK(!W.expect_close && W.mode != WM_TLS && W.mode != WM_GREETING);
  CHECK(SESS.state != SS_WAIT);
  if (W.mode == WM_DATA) {
    frame_ref f = {0};
    ref_frame(S + W.pos, SN - W.pos, &f);
    CHECK(!f.done);
  } else if (memchr(S + W.pos, '\n', SN - W.pos)) {
    const char *lf = memchr(S + W.pos, '\n', SN - W.pos);
    int n = (int)(lf - (S + W.pos));
    fprintf(stderr, "unanswered line at %zu: %.*s\n", W.pos, n < 80 ? n : 80, S + W.pos);
    CHECK(!"every complete command has its reply");
  }
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  int fd = open("/dev/null", O_WRONLY);
  log_fd = fd >= 0 ? fd : 2;
  stp_set_fake_clock(&now_ms);
  const char *e = getenv("FUZZ_SESSION_TRACE");
  trace = e && *e == '1';
  S = malloc(STREAM_MAX);
  BODY = malloc(3 * STREAM_MAX);
  return S && BODY ? 0 : -1;
}

/* The device's byte stream and its read boundaries, from the item list. */
static void generate(const uint8_t *items, size_t n) {
  SN = fed = 0;
  n_marks = 0;
  last_item_start = last_item_end = 0;
  reader r = {items, n, 0};
  while (r.i < r.n && SN < STREAM_MAX)
    gen_item(&r);
  qsort(marks, n_marks, sizeof *marks, mark_cmp);
}

static void start_session(void) {
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(2525)};
  inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
  session_init(&SESS, &C, &L, (struct sockaddr *)&sin, "fuzz", &OPS, NULL);
  if (with_limits) {
    limits_init(&LIM, &C, now_ms);
    session_set_limits(&SESS, &LIM);
  }
  session_start(&SESS);
  check_quiet();
}

/* Feed the stream read by read, one loop turn between reads, then let
 * every LATER answer arrive. */
static void run(void) {
  size_t prev = 0;
  for (size_t k = 0; k < n_marks; k++) {
    if (marks[k].at > prev) {
      feed(prev, marks[k].at);
      prev = marks[k].at;
    }
    step(false);
    if (marks[k].event >= 0)
      event(marks[k].event, marks[k].arg);
  }
  if (prev < SN)
    feed(prev, SN);
  step(false);
  TRACE("settle\n");
  for (size_t i = 0; i < SETTLE_MAX && (F.out_valid || F.tls_req) && !F.closed; i++)
    step(true);
  CHECK(!F.out_valid || F.closed); /* the session settles */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 4)
    return 0;
  size_t items = (size_t)data[2] << 8 | data[3];
  if (items > size - 4)
    items = size - 4;
  build_config(data[0], data[1]);
  now_ms = 1000000000;
  generate(data + 4, items);
  memset(&F, 0, sizeof F);
  memset(&W, 0, sizeof W);
  F.body = BODY;
  F.tape = data + 4 + items;
  F.tape_n = size - 4 - items;
  TRACE("config: auth=%d bare_lf=%s max_size=%llu starttls=%d limits=%d rewrite_header=%d "
        "rewrite_from=%d; stream %zu bytes, %zu marks, tape %zu bytes\n",
        (int)L.auth, L.bare_lf ? "reject" : "fix", (unsigned long long)L.max_message_size,
        L.tls == STP_TLS_STARTTLS, with_limits, R[1].rewrite_header_from != NULL,
        R[1].rewrite_mail_from != NULL, SN, n_marks, F.tape_n);

  start_session();
  run();
  check_end();
  session_free(&SESS);
  if (with_limits)
    limits_free(&LIM);
  return 0;
}
