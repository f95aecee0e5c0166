/* fuzz_command.c - the LAN side's command path on hostile bytes: the bounded
 * line reader, smtp_parse_command, and smtp_parse_mail / smtp_parse_rcpt on
 * every MAIL / RCPT line.
 *
 * Input: byte 0 picks the read size of a second pass (1..256 bytes); the
 * rest is the client's byte stream. Invariants: line bounds and
 * termination, argument pointers inside the line, only documented return
 * codes, accepted paths canonical (check_path), and the event stream does
 * not depend on how the stream was split into reads.
 */
#include "fuzz_common.h"

static uint64_t run(const char *in, size_t len, size_t chunk) {
  smtp_linereader lr;
  uint64_t h = 14695981039346656037ull;
  bool utf8 = false, auth_next = false;
  smtp_lr_init(&lr, SMTP_AUTH_LINE_MAX);
  lr.max = SMTP_CMD_MAX;
  size_t off = 0;
  while (off < len) {
    size_t n = len - off < chunk ? len - off : chunk, used = 0;
    const char *line = NULL;
    size_t llen = 0;
    bool crlf = false;
    size_t max = lr.max;
    int rc = smtp_lr_feed(&lr, in + off, n, &used, &line, &llen, &crlf);
    CHECK(used > 0 && used <= n);
    CHECK(rc == 0 || rc == 1 || rc == STP_ETOOLONG);
    CHECK(rc != 0 || used == n);
    off += used;
    if (rc != 0) /* "need more" depends on the read size; nothing else may */
      fnv_int(&h, rc);
    if (rc == STP_ETOOLONG) {
      lr.max = SMTP_CMD_MAX;
      auth_next = false;
    }
    if (rc != 1)
      continue;
    CHECK(llen + (crlf ? 1u : 0u) + 1 <= max);
    CHECK(line[llen] == '\0' && !memchr(line, '\n', llen));
    fnv(&h, line, llen);
    fnv_int(&h, crlf);
    if (auth_next) { /* an AUTH continuation line, as session.c reads it */
      auth_next = false;
      lr.max = SMTP_CMD_MAX;
      continue;
    }

    smtp_cmd cmd;
    rc = smtp_parse_command(line, llen, &cmd);
    CHECK(rc == 0 || rc == STP_ESYNTAX);
    CHECK(cmd.arg >= line && cmd.arg + cmd.arg_len <= line + llen);
    CHECK(cmd.verb >= SMTP_UNKNOWN && cmd.verb <= SMTP_BDAT && smtp_verb_name(cmd.verb));
    fnv_int(&h, rc);
    fnv_int(&h, (long)cmd.verb);
    if (rc != 0)
      continue;
    fnv(&h, cmd.arg, cmd.arg_len);
    if (cmd.verb == SMTP_MAIL) {
      smtp_mail_args m;
      rc = smtp_parse_mail(cmd.arg, cmd.arg_len, &m);
      CHECK(rc == 0 || rc == STP_EADDR || rc == STP_EPARAM || rc == STP_ESYNTAX);
      fnv_int(&h, rc);
      if (rc == 0) {
        check_path(&m.from, m.smtputf8);
        CHECK(m.body <= SMTP_BODY_8BITMIME);
        CHECK(m.has_size || m.size == 0);
        /* DSN: what is kept is what may go upstream as sent. */
        CHECK(m.ret <= SMTP_RET_HDRS);
        CHECK(memchr(m.envid, '\0', sizeof m.envid) != NULL);
        CHECK(!m.envid[0] || smtp_xtext_valid(m.envid, strlen(m.envid), SMTP_ENVID_MAX));
        utf8 = m.smtputf8;
        fnv(&h, m.from.addr, strlen(m.from.addr));
      }
    } else if (cmd.verb == SMTP_RCPT) {
      smtp_path p;
      smtp_rcpt_dsn d;
      rc = smtp_parse_rcpt_dsn(cmd.arg, cmd.arg_len, utf8, &p, &d);
      CHECK(rc == 0 || rc == STP_EADDR || rc == STP_EPARAM || rc == STP_ESYNTAX);
      fnv_int(&h, rc);
      if (rc == 0) {
        CHECK(!p.null_path);
        check_path(&p, utf8);
        fnv(&h, p.addr, strlen(p.addr));
        CHECK(d.notify <= 0xf &&
              (!(d.notify & SMTP_NOTIFY_NEVER) || d.notify == SMTP_NOTIFY_NEVER));
        CHECK(memchr(d.orcpt, '\0', sizeof d.orcpt) != NULL);
        const char *semi = strchr(d.orcpt, ';');
        CHECK(!d.orcpt[0] ||
              (semi && smtp_xtext_valid(semi + 1, strlen(semi + 1), SMTP_ORCPT_MAX)));
      } else {
        CHECK(d.notify == 0 && !d.orcpt[0]);
      }
    } else if (cmd.verb == SMTP_AUTH) {
      auth_next = true;
      lr.max = SMTP_AUTH_LINE_MAX;
    } else if (cmd.verb == SMTP_RSET) {
      utf8 = false;
    }
  }
  smtp_lr_free(&lr);
  return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  size_t chunk = (size_t)data[0] + 1;
  const char *in = (const char *)data + 1;
  size_t len = size - 1;
  uint64_t whole = run(in, len, len ? len : 1);
  CHECK(run(in, len, chunk) == whole);
  return 0;
}
