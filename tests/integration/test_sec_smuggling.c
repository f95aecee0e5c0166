/* test_sec_smuggling.c - SMTP smuggling and relay spellings past the proxy
 * (issues #5 and #10).
 *
 * SEC Consult (2023) smuggled a second transaction inside a message body by
 * ending it with something a lenient server takes for CRLF "." CRLF while
 * the next hop does not. Each look-alike below (all of hannob's smtpsmug
 * tests, SEC Consult's SMTP-Smuggling-Tools inbound and outbound lists and
 * the extra ones of smtp_smuggling_checker) is followed by a complete
 * smuggled transaction and then the one real end of data:
 *
 *   ...<LOOK-ALIKE>MAIL FROM:<evil@x>\r\nRCPT TO:<b@example.com>\r\n
 *   DATA\r\nsmuggled\r\n.\r\n
 *
 * Inbound (a device sends it): the proxy must not end DATA early nor run
 * the rest as a second transaction; the upstream is aiosmtpd, which
 * executes what it is sent. Outbound (what the proxy sends upstream): the
 * upstream is tests/tools/lenient_upstream.py, which ends DATA on any CR/LF/
 * NUL look-alike, so it records a second transaction if the proxy passed
 * anything of the kind on. Exactly one message (or a refusal) may arrive,
 * always with the proxy's envelope, and the device sees one reply for it.
 * A NUL anywhere in the message is refused (550 5.6.0) with no final dot.
 *
 * Relay: quoted local parts holding '@', '%' or '!' are refused (Postfix
 * resolves inside quotes), so "v@evil.test"@example.com cannot pass a
 * route for example.com. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "lookalikes.h"

static const char smuggled[] = "MAIL FROM:<evil@x>\r\n"
                               "RCPT TO:<b@example.com>\r\n"
                               "DATA\r\n"
                               "smuggled\r\n";

/* Where the look-alike sits: right after text ("before<LA>MAIL FROM...",
 * as smtpsmug sends it), or between whole lines ("line\r\n<LA>\r\nMAIL
 * FROM...", as SEC Consult's scanner sends it). */
typedef enum { CTX_TEXT, CTX_LINES } la_ctx;

/* Between whole lines "\r\n." is the real end (CRLF "." CRLF): no test. */
static bool skip(size_t i, la_ctx ctx) {
  return ctx == CTX_LINES && strcmp(lookalikes[i].name, "CRLF.") == 0;
}

/* Offsets of the look-alike in a body: [start, end). */
typedef struct la_span {
  size_t start, end;
} la_span;

/* The body for case i (without the final ".\r\n" h_smtp_message adds). */
static size_t make_body(size_t i, la_ctx ctx, char *out, size_t cap, la_span *span) {
  int n = snprintf(out, cap, "Subject: smuggle %zu\r\nX-Variant: v%zu\r\n\r\n%s", i, i,
                   ctx == CTX_LINES ? "line\r\n" : "before");
  const char *post = ctx == CTX_LINES ? "\r\n" : "";
  cr_assert(n > 0 && (size_t)n + lookalikes[i].len + 2 + sizeof smuggled < cap);
  size_t len = (size_t)n;
  span->start = len;
  memcpy(out + len, lookalikes[i].bytes, lookalikes[i].len);
  len += lookalikes[i].len;
  span->end = len;
  memcpy(out + len, post, strlen(post));
  len += strlen(post);
  memcpy(out + len, smuggled, sizeof smuggled - 1);
  return len + sizeof smuggled - 1;
}

static size_t count_records(const h_upstream *u, const char *event) {
  h_lines l;
  size_t n = h_records(u->record, event, &l);
  h_lines_free(&l);
  return n;
}

/* Every upstream message: one recipient (a@example.com), our sender, and
 * never the smuggled envelope. Returns how many carry variant i. With the
 * lenient upstream, data_b64 is the raw bytes we sent and end_b64 the
 * sequence it ended DATA on, which must be our real CRLF "." CRLF. */
static size_t check_records(const h_upstream *u, size_t i, bool lenient) {
  h_lines l;
  size_t n = h_records(u->record, "message", &l);
  size_t hits = 0;
  char tag[32];
  snprintf(tag, sizeof tag, "X-Variant: v%zu\r\n", i);
  for (size_t k = 0; k < n; k++) {
    char from[256];
    bool found;
    cr_assert_eq(h_json_str(l.v[k], "mail_from", from, sizeof from), 1, "%s", l.v[k]);
    cr_assert_str_eq(from, "scan@printer.test", "a smuggled sender reached the upstream: %s",
                     l.v[k]);
    cr_assert_eq(h_json_strlist(l.v[k], "rcpt_tos", "a@example.com", &found), 1,
                 "a smuggled recipient reached the upstream: %s", l.v[k]);
    cr_assert(found, "%s", l.v[k]);
    if (lenient) {
      size_t elen;
      unsigned char *e = h_json_b64(l.v[k], "end_b64", &elen);
      cr_assert(e && elen == 5 && memcmp(e, "\r\n.\r\n", 5) == 0,
                "the lenient upstream ended DATA on a look-alike: %s", l.v[k]);
      free(e);
    }
    size_t blen;
    unsigned char *b = h_json_b64(l.v[k], "data_b64", &blen);
    cr_assert_not_null(b);
    if (memmem(b, blen, tag, strlen(tag))) {
      hits++;
      /* The smuggled transaction is content of this one message. */
      cr_assert(memmem(b, blen, "\r\nMAIL FROM:<evil@x>\r\n", 22) != NULL,
                "[%s] smuggled MAIL line missing from the content", lookalikes[i].name);
      cr_assert(memmem(b, blen, "\r\nsmuggled", 10) != NULL,
                "[%s] body cut short before 'smuggled'", lookalikes[i].name);
      /* Re-framed: no bare CR or LF and no NUL goes upstream. */
      for (size_t j = 0; j < blen; j++) {
        cr_assert(b[j] != '\0', "[%s] NUL upstream at %zu", lookalikes[i].name, j);
        if (b[j] == '\n')
          cr_assert(j > 0 && b[j - 1] == '\r', "[%s] bare LF upstream at %zu", lookalikes[i].name,
                    j);
        if (b[j] == '\r')
          cr_assert(j + 1 < blen && b[j + 1] == '\n', "[%s] bare CR upstream at %zu",
                    lookalikes[i].name, j);
      }
    }
    free(b);
  }
  h_lines_free(&l);
  return hits;
}

typedef enum {
  SEND_WHOLE, /* the body in one write */
  SEND_SPLIT, /* from the look-alike on, one byte per segment */
  SEND_PAUSE, /* up to the end of the look-alike, then silence (smtpsmug) */
} send_mode;

/* MAIL, RCPT, DATA, then the body as mode says and ".\r\n". SEND_SPLIT
 * sends every byte from the look-alike on in a segment of its own
 * (TCP_NODELAY, 2 ms apart), so every split of the look-alike and of the
 * real terminator crosses a read boundary. SEND_PAUSE waits after the
 * look-alike, as smtpsmug does: a reply then means the proxy took it for
 * the end of data. */
static int send_message(h_smtp *c, const char *b, size_t blen, la_span la, send_mode mode,
                        char *text, size_t cap, const char **stage) {
  if (mode == SEND_WHOLE)
    return h_smtp_message(c, "scan@printer.test", (const char *const[]){"a@example.com", NULL}, b,
                          blen, text, cap, stage);
  *stage = "MAIL";
  int code = h_smtp_cmd(c, "MAIL FROM:<scan@printer.test>", text, cap);
  if (code != 250)
    return code;
  *stage = "RCPT";
  if ((code = h_smtp_cmd(c, "RCPT TO:<a@example.com>", text, cap)) != 250)
    return code;
  *stage = "DATA";
  if ((code = h_smtp_cmd(c, "DATA", text, cap)) != 354)
    return code;
  *stage = "DOT";
  if (mode == SEND_PAUSE) {
    h_smtp_send(c, b, la.end);
    *stage = "LOOK-ALIKE";
    if (!h_smtp_quiet(c, 250))
      return h_smtp_reply(c, H_REPLY_MS, text, cap);
    *stage = "DOT";
    h_smtp_send(c, b + la.end, blen - la.end);
    h_smtp_sendstr(c, ".\r\n");
    return h_smtp_reply(c, H_REPLY_MS, text, cap);
  }
  h_smtp_send(c, b, la.start);
  for (size_t i = la.start; i < blen; i++) {
    h_smtp_send(c, b + i, 1);
    h_sleep_ms(2);
  }
  for (const char *t = ".\r\n"; *t; t++) {
    h_smtp_send(c, t, 1);
    h_sleep_ms(2);
  }
  return h_smtp_reply(c, H_REPLY_MS * 3, text, cap);
}

typedef struct run_opts {
  bool reject;  /* bare_lf: reject */
  bool lenient; /* lenient_upstream.py instead of aiosmtpd */
  la_ctx ctx;
  send_mode mode;
} run_opts;

static void start_lenient(h_upstream *u) {
  static unsigned seq;
  char script[512], name[32];
  memset(u, 0, sizeof *u);
  snprintf(name, sizeof name, "lenient%u", seq++);
  snprintf(script, sizeof script, "%s/lenient_upstream.py", STP_TOOLS_DIR);
  char rec[64];
  snprintf(rec, sizeof rec, "%s.jsonl", name);
  h_path(u->record, sizeof u->record, rec);
  char *argv[] = {H_PYTHON,   script,    "--host",     "127.0.0.1", "--port", "0",
                  "--record", u->record, "--lifetime", "120",       NULL};
  u->proc = h_spawn(name, argv, NULL);
  char line[128];
  cr_assert_eq(h_proc_wait_line(u->proc, "READY ", 15000, line, sizeof line), 0,
               "lenient upstream did not start");
  u->port = atoi(line + 6);
  cr_assert(u->port > 0 && u->port < 65536, "bad READY line: %s", line);
}

/* A proxy in front of the lenient upstream (plain TCP, no AUTH). */
static void start_lenient_proxy(h_proxy *px, h_upstream *u, const char *listener_extra,
                                const char *route_extra) {
  start_lenient(u);
  h_proxy_opts o = {.up_port = u->port,
                    .up_tls = "none",
                    .no_upstream_auth = true,
                    .upstream_extra = "    insecure: true\n",
                    .listener_extra = listener_extra};
  char yaml[8192];
  h_proxy_yaml(&o, yaml, sizeof yaml);
  if (route_extra) /* the default route is the last mapping of the file */
    cr_assert_lt(strlen(yaml) + strlen(route_extra), sizeof yaml);
  strcat(yaml, route_extra ? route_extra : "");
  h_proxy_start_yaml(px, yaml);
}

static void run_lookalikes(const run_opts *ro) {
  h_upstream u;
  h_proxy px;
  const char *extra = ro->reject ? "    bare_lf: reject\n" : NULL;
  if (ro->lenient) {
    start_lenient_proxy(&px, &u, extra, NULL);
  } else {
    h_upstream_start(&u, "starttls", NULL);
    h_proxy_opts o = {.up_port = u.port, .listener_extra = extra};
    h_proxy_start(&px, &o);
  }
  size_t delivered = 0, refused_nul = 0;
  for (size_t i = 0; i < N_LA; i++) {
    if (skip(i, ro->ctx))
      continue;
    const lookalike *la = &lookalikes[i];
    size_t aborted = ro->lenient ? count_records(&u, "aborted") : 0;
    h_smtp c;
    h_smtp_open(&c, px.port, true);
    char body[1024], text[2048];
    la_span span;
    size_t blen = make_body(i, ro->ctx, body, sizeof body, &span);
    const char *stage;
    int code = send_message(&c, body, blen, span, ro->mode, text, sizeof text, &stage);
    cr_log_info("smuggling %s%s ctx=%d mode=%d [%s]: %s %d %s", ro->lenient ? "outbound " : "",
                ro->reject ? "reject" : "fix", ro->ctx, ro->mode, la->name, stage, code, text);
    cr_assert_str_eq(stage, "DOT", "[%s] %s: %d %s", la->name, stage, code, text);
    if (la->nul) {
      cr_assert_eq(code, 550, "[%s] NUL: %d %s", la->name, code, text);
      cr_assert(strstr(text, "5.6.0") != NULL, "[%s] %s", la->name, text);
      refused_nul++;
    } else if (ro->reject && la->bare) {
      cr_assert_eq(code, 550, "[%s] bare_lf: reject: %d %s", la->name, code, text);
      cr_assert(strstr(text, "5.5.2") != NULL, "[%s] %s", la->name, text);
    } else {
      /* The look-alike is content: one message, delivered. */
      cr_assert_eq(code, 250, "[%s] %d %s", la->name, code, text);
    }
    int dot = code;
    /* Exactly one reply: none for the smuggled MAIL/RCPT/DATA/dot. */
    cr_assert(h_smtp_quiet(&c, 200), "[%s] extra replies (smuggled commands executed?)", la->name);
    code = h_smtp_cmd(&c, "NOOP", text, sizeof text);
    cr_assert_eq(code, 250, "[%s] NOOP after the message: %d %s", la->name, code, text);
    h_smtp_cmd(&c, "QUIT", text, sizeof text);
    h_smtp_close(&c);

    /* 250: exactly one new message; a refusal: none. Wait a little longer
     * than needed for a second one to show up. */
    if (dot == 250)
      h_wait_records(u.record, "message", delivered + 1, 5000);
    h_sleep_ms(100);
    size_t hits = check_records(&u, i, ro->lenient);
    size_t total = count_records(&u, "message");
    cr_assert_eq(hits, dot == 250 ? 1u : 0u, "[%s] dot reply %d but %zu messages upstream",
                 la->name, dot, hits);
    cr_assert_eq(total, delivered + hits,
                 "[%s] the upstream got %zu messages, want %zu (smuggled second message?)",
                 la->name, total, delivered + hits);
    delivered = total;
    if (ro->lenient && dot != 250) {
      /* Cut without a final dot: the upstream saw DATA end by a close. */
      cr_assert_eq(h_wait_records(u.record, "aborted", aborted + 1, 3000), aborted + 1,
                   "[%s] the upstream was not cut inside DATA", la->name);
    }
  }
  /* Late arrivals (a smuggled message the upstream got after all). */
  h_sleep_ms(300);
  for (size_t i = 0; i < N_LA; i++)
    (void)check_records(&u, i, ro->lenient);
  cr_assert_eq(count_records(&u, "message"), delivered, "late extra messages upstream");
  if (ro->lenient) {
    /* Nothing of a smuggled transaction ever reached the wire as commands. */
    char *rec = h_read_file(u.record, NULL);
    cr_assert(rec == NULL || strstr(rec, "\"line\":\"MAIL FROM:<evil@x>") == NULL,
              "a smuggled MAIL reached the lenient upstream as a command:\n%s", rec);
    free(rec);
  }
  /* The refusals are logged as such. */
  if (refused_nul) {
    char line[2048];
    const char *want[] = {"result=rejected", "5.6.0", NULL};
    cr_assert(h_file_wait_line(px.log, want, 3000, line, sizeof line),
              "no rejected log line for the NUL message");
  }
}

/* ---- inbound: a device sends the look-alikes (aiosmtpd upstream) ---------- */

ITest(integ, sec_smuggling_lookalikes_bare_lf_fix) {
  run_lookalikes(&(run_opts){.ctx = CTX_TEXT});
}

ITest(integ, sec_smuggling_lookalikes_between_lines) {
  run_lookalikes(&(run_opts){.ctx = CTX_LINES});
}

/* The same, with each byte of the look-alike, the smuggled commands and
 * the real terminator in a segment of its own. */
ITest(integ, sec_smuggling_lookalikes_split_segments) {
  run_lookalikes(&(run_opts){.ctx = CTX_TEXT, .mode = SEND_SPLIT});
}

/* smtpsmug's check: after the look-alike the proxy stays silent. */
ITest(integ, sec_smuggling_lookalikes_pause_after) {
  run_lookalikes(&(run_opts){.ctx = CTX_LINES, .mode = SEND_PAUSE});
}

ITest(integ, sec_smuggling_lookalikes_bare_lf_reject) {
  run_lookalikes(&(run_opts){.reject = true, .ctx = CTX_TEXT});
}

ITest(integ, sec_smuggling_lookalikes_bare_lf_reject_between_lines) {
  run_lookalikes(&(run_opts){.reject = true, .ctx = CTX_LINES});
}

/* ---- outbound: what goes upstream, seen by a lenient receiver ------------- */

ITest(integ, sec_smuggling_outbound_lenient_upstream) {
  run_lookalikes(&(run_opts){.lenient = true, .ctx = CTX_TEXT});
}

ITest(integ, sec_smuggling_outbound_lenient_upstream_between_lines) {
  run_lookalikes(&(run_opts){.lenient = true, .ctx = CTX_LINES});
}

ITest(integ, sec_smuggling_outbound_lenient_upstream_split) {
  run_lookalikes(&(run_opts){.lenient = true, .ctx = CTX_LINES, .mode = SEND_SPLIT});
}

ITest(integ, sec_smuggling_outbound_lenient_upstream_reject) {
  run_lookalikes(&(run_opts){.reject = true, .lenient = true, .ctx = CTX_LINES});
}

/* A lone "." content line (ended by a bare LF or CR) reaches a lenient
 * receiver as ".." CRLF: the dot is kept, and nothing ends DATA early. */
ITest(integ, sec_smuggling_lone_dot_line_kept_as_content) {
  h_upstream u;
  h_proxy px;
  start_lenient_proxy(&px, &u, NULL, NULL);
  static const char body[] = "Subject: dots\r\n\r\na\r\n.\nb\r\n.\rc\r\nd\n.\r\ne\r\n";
  static const char want[] = "Subject: dots\r\n\r\na\r\n..\r\nb\r\n..\r\nc\r\nd\r\n..\r\ne";
  char text[2048];
  const char *stage;
  int code = h_send_one(px.port, "a@example.com", body, sizeof body - 1, text, sizeof text, &stage);
  cr_assert_eq(code, 250, "%s: %d %s", stage, code, text);
  cr_assert_eq(h_wait_records(u.record, "message", 1, 5000), 1);
  h_sleep_ms(200);
  h_lines l;
  cr_assert_eq(h_records(u.record, "message", &l), 1, "one message, not a split one");
  size_t blen;
  unsigned char *b = h_json_b64(l.v[0], "data_b64", &blen);
  cr_assert_not_null(b);
  cr_assert(blen == sizeof want - 1 && memcmp(b, want, blen) == 0, "upstream got:\n%s", b);
  free(b);
  h_lines_free(&l);
}

/* ---- relay: routing characters inside a quoted local part ----------------- */

static const char *const quoted_routing[] = {
    "<\"v@evil.test\"@example.com>", "<\"v%evil.test\"@example.com>",
    "<\"v!evil.test\"@example.com>", "<\"v\\@evil.test\"@example.com>",
    "\"v@evil.test\"@example.com",
};
#define N_QR (sizeof quoted_routing / sizeof *quoted_routing)

/* A route that takes only *@example.com, in front of the lenient upstream
 * (it records every command verbatim and refuses nothing itself). */
ITest(integ, sec_relay_quoted_local_part_routing_chars_refused) {
  h_upstream u;
  h_proxy px;
  start_lenient_proxy(&px, &u, NULL, "    match: { rcpt_to: [\"*@example.com\"] }\n");
  h_smtp c;
  h_smtp_open(&c, px.port, true);
  char line[256], text[2048];
  for (size_t i = 0; i < N_QR; i++) {
    snprintf(line, sizeof line, "MAIL FROM:%s", quoted_routing[i]);
    int code = h_smtp_cmd(&c, line, text, sizeof text);
    cr_assert_eq(code, 553, "%s: %d %s (want 553 5.1.7)", line, code, text);
    cr_assert(strstr(text, "5.1.7") != NULL, "%s: %s", line, text);
  }
  cr_assert_eq(h_smtp_cmd(&c, "MAIL FROM:<scan@printer.test>", text, sizeof text), 250, "%s", text);
  for (size_t i = 0; i < N_QR; i++) {
    snprintf(line, sizeof line, "RCPT TO:%s", quoted_routing[i]);
    int code = h_smtp_cmd(&c, line, text, sizeof text);
    cr_assert_eq(code, 553, "%s: %d %s (want 553 5.1.3)", line, code, text);
    cr_assert(strstr(text, "5.1.3") != NULL, "%s: %s", line, text);
  }
  /* A quoted local part without them still passes, verbatim. */
  int code = h_smtp_cmd(&c, "RCPT TO:<\"john doe\"@example.com>", text, sizeof text);
  cr_assert_eq(code, 250, "quoted control: %d %s", code, text);
  cr_assert_eq(h_smtp_cmd(&c, "DATA", text, sizeof text), 354, "%s", text);
  h_smtp_sendstr(&c, "Subject: q\r\n\r\nbody\r\n.\r\n");
  code = h_smtp_reply(&c, H_REPLY_MS, text, sizeof text);
  cr_assert_eq(code, 250, "dot: %d %s", code, text);
  h_smtp_cmd(&c, "QUIT", text, sizeof text);
  h_smtp_close(&c);

  cr_assert_eq(h_wait_records(u.record, "message", 1, 5000), 1);
  h_sleep_ms(200);
  h_lines l;
  cr_assert_eq(h_records(u.record, "message", &l), 1);
  bool found;
  cr_assert_eq(h_json_strlist(l.v[0], "rcpt_tos", "\"john doe\"@example.com", &found), 1, "%s",
               l.v[0]);
  cr_assert(found, "%s", l.v[0]);
  h_lines_free(&l);
  /* Not even as a command line on the wire. */
  char *rec = h_read_file(u.record, NULL);
  cr_assert_not_null(rec);
  cr_assert(strstr(rec, "evil.test") == NULL, "evil.test reached the upstream:\n%s", rec);
  free(rec);
}
