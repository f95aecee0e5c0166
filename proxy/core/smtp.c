/* smtp.c - pure SMTP syntax: line reader, command lines, paths, parameters,
 * replies and EHLO capabilities.
 *
 * Owns: what bytes mean in command/reply mode. Nothing here does I/O; the
 * only allocation is the line reader's buffer, made once at init.
 * Guarantees: every input is bounded, every rejection is one of the STP_*
 * codes documented in smtp.h, and an address that passes is safe to put
 * back on the wire between angle brackets (no spaces outside quotes, no
 * control characters, no relay-hack syntax).
 */
#include "smtp-tls-proxy/smtp.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp-tls-proxy/util.h"

/* ---- bounded line reader -------------------------------------------------- */

void smtp_lr_init(smtp_linereader *lr, size_t cap) {
  if (cap < 2)
    cap = 2;
  lr->buf = stp_xmalloc(cap);
  lr->len = 0;
  lr->max = cap;
  lr->cap = cap;
  lr->overflow = false;
}

void smtp_lr_free(smtp_linereader *lr) {
  if (lr->buf) {
    /* AUTH continuation lines pass through here: do not leave them behind. */
    stp_cleanse(lr->buf, lr->cap);
    free(lr->buf);
  }
  lr->buf = NULL;
  lr->len = lr->cap = lr->max = 0;
  lr->overflow = false;
}

void smtp_lr_reset(smtp_linereader *lr) {
  lr->len = 0;
  lr->overflow = false;
}

/* The buffer keeps at most max-1 bytes (the line without its LF, CR
 * included), which leaves room for the NUL. A max above cap is clamped: the
 * buffer never grows. */
int smtp_lr_feed(smtp_linereader *lr, const char *data, size_t len, size_t *used, const char **line,
                 size_t *line_len, bool *crlf) {
  size_t max = lr->max < lr->cap ? lr->max : lr->cap;
  if (max < 2)
    max = 2;
  const char *lf = len ? memchr(data, '\n', len) : NULL;
  size_t chunk = lf ? (size_t)(lf - data) : len;

  if (!lr->overflow) {
    /* The line will be at least len + chunk + 1 (its LF) long. */
    if (lr->len + chunk + 1 > max) {
      lr->overflow = true;
      lr->len = 0;
    } else {
      memcpy(lr->buf + lr->len, data, chunk);
      lr->len += chunk;
    }
  }
  if (!lf) {
    *used = len;
    return 0;
  }
  *used = chunk + 1;
  if (lr->overflow) {
    lr->overflow = false;
    lr->len = 0;
    return STP_ETOOLONG;
  }
  size_t n = lr->len;
  bool cr = n > 0 && lr->buf[n - 1] == '\r';
  if (cr)
    n--;
  lr->buf[n] = '\0';
  *line = lr->buf;
  *line_len = n;
  *crlf = cr;
  lr->len = 0; /* the bytes stay readable until the next feed overwrites them */
  return 1;
}

/* ---- commands --------------------------------------------------------------- */

static const struct {
  const char *name;
  smtp_verb verb;
} verbs[] = {
    {"HELO", SMTP_HELO}, {"EHLO", SMTP_EHLO}, {"MAIL", SMTP_MAIL}, {"RCPT", SMTP_RCPT},
    {"DATA", SMTP_DATA}, {"RSET", SMTP_RSET}, {"NOOP", SMTP_NOOP}, {"QUIT", SMTP_QUIT},
    {"VRFY", SMTP_VRFY}, {"EXPN", SMTP_EXPN}, {"HELP", SMTP_HELP}, {"STARTTLS", SMTP_STARTTLS},
    {"AUTH", SMTP_AUTH}, {"BDAT", SMTP_BDAT},
};

const char *smtp_verb_name(smtp_verb v) {
  for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
    if (verbs[i].verb == v)
      return verbs[i].name;
  return "UNKNOWN";
}

/* Skip spaces (SP only: SMTP separates with SP, and tabs are not worth a
 * second meaning). */
static size_t skip_sp(const char *s, size_t i, size_t len) {
  while (i < len && s[i] == ' ')
    i++;
  return i;
}

int smtp_parse_command(const char *line, size_t len, smtp_cmd *out) {
  out->verb = SMTP_UNKNOWN;
  out->arg = line + len;
  out->arg_len = 0;
  if (memchr(line, '\0', len))
    return STP_ESYNTAX;

  size_t vlen = 0;
  while (vlen < len && line[vlen] != ' ')
    vlen++;
  for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
    if (strlen(verbs[i].name) == vlen && stp_ascii_ncasecmp(line, verbs[i].name, vlen) == 0) {
      out->verb = verbs[i].verb;
      break;
    }
  }

  size_t end = len;
  while (end > vlen && line[end - 1] == ' ')
    end--;
  size_t a = skip_sp(line, vlen, end);

  if (out->verb == SMTP_MAIL || out->verb == SMTP_RCPT) {
    const char *kw = out->verb == SMTP_MAIL ? "FROM" : "TO";
    size_t kwlen = strlen(kw);
    if (a == vlen || end - a < kwlen || stp_ascii_ncasecmp(line + a, kw, kwlen) != 0)
      return STP_ESYNTAX;
    a = skip_sp(line, a + kwlen, end);
    if (a >= end || line[a] != ':')
      return STP_ESYNTAX;
    a = skip_sp(line, a + 1, end);
  }
  out->arg = line + a;
  out->arg_len = end - a;
  return 0;
}

/* ---- addresses ---------------------------------------------------------------- */

/* RFC 5321 atext without '%' and '!' (relay hacks, RFC 5321 3.6.1/3.9). */
static bool local_char_ok(unsigned char c, bool utf8) {
  if (c >= 0x80)
    return utf8;
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
    return true;
  return c != '\0' && strchr("#$&'*+-/=?^_`{|}~.", (int)c) != NULL;
}

static bool label_char_ok(unsigned char c, bool utf8) {
  if (c >= 0x80)
    return utf8;
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

/* Quoted local part starting at s[i] == '"'. Returns index after the
 * closing quote, or 0 when malformed. '@', '%' and '!' are refused inside
 * the quotes too, escaped or not: Postfix routes on what is inside
 * (resolve_dequoted_address, on by default), so "v@evil.test"@example.com
 * would pass a rule for example.com and leave for evil.test. */
static size_t scan_quoted(const char *s, size_t i, size_t len, bool utf8) {
  i++;
  while (i < len) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"')
      return i + 1;
    if (c == '\\') {
      if (i + 1 >= len)
        return 0;
      c = (unsigned char)s[++i];
    }
    if (c >= 0x80 ? !utf8 : (c < 0x20 || c == 0x7f))
      return 0;
    if (c == '@' || c == '%' || c == '!')
      return 0;
    i++;
  }
  return 0;
}

/* Domain (dot-separated LDH labels) or address literal. Returns the index
 * after it or 0 on error. Stops at the first byte that cannot continue it. */
static size_t scan_domain(const char *s, size_t i, size_t len, bool utf8) {
  if (i < len && s[i] == '[') {
    const char *close = memchr(s + i, ']', len - i);
    if (!close)
      return 0;
    size_t n = (size_t)(close - (s + i)) - 1;
    const char *lit = s + i + 1;
    char tmp[64];
    unsigned char addr[16];
    /* inet_pton stops at a NUL: the literal must hold none, or what is
     * checked would differ from what is kept (found by fuzz_address). */
    if (memchr(lit, '\0', n))
      return 0;
    if (n >= 5 && stp_ascii_ncasecmp(lit, "IPv6:", 5) == 0) {
      if (n - 5 >= sizeof tmp)
        return 0;
      memcpy(tmp, lit + 5, n - 5);
      tmp[n - 5] = '\0';
      if (inet_pton(AF_INET6, tmp, addr) != 1)
        return 0;
    } else {
      if (n >= sizeof tmp)
        return 0;
      memcpy(tmp, lit, n);
      tmp[n] = '\0';
      if (inet_pton(AF_INET, tmp, addr) != 1)
        return 0;
    }
    return (size_t)(close - s) + 1;
  }
  size_t label = 0;
  size_t start = i;
  while (i < len) {
    unsigned char c = (unsigned char)s[i];
    if (c == '.') {
      if (label == 0)
        return 0;
      label = 0;
    } else if (label_char_ok(c, utf8)) {
      if (++label > 63)
        return 0;
    } else {
      break;
    }
    i++;
  }
  if (i == start || label == 0)
    return 0; /* empty domain, or a trailing dot */
  return i;
}

/* "@a,@b:" at s[i] == '@'. Returns index after ':' or 0. */
static size_t scan_source_route(const char *s, size_t i, size_t len, bool utf8) {
  for (;;) {
    if (i >= len || s[i] != '@')
      return 0;
    i = scan_domain(s, i + 1, len, utf8);
    if (!i || i >= len)
      return 0;
    if (s[i] == ':')
      return i + 1;
    if (s[i] != ',')
      return 0;
    i++;
  }
}

/* Mailbox "local@domain" at s[i]. On success writes the canonical form into
 * out and returns the index after it; 0 on error. */
static size_t scan_mailbox(const char *s, size_t i, size_t len, bool utf8, smtp_path *out) {
  size_t lstart = i;
  if (i < len && s[i] == '"') {
    i = scan_quoted(s, i, len, utf8);
    if (!i)
      return 0;
  } else {
    while (i < len && local_char_ok((unsigned char)s[i], utf8))
      i++;
  }
  size_t llen = i - lstart;
  if (llen == 0 || i >= len || s[i] != '@')
    return 0;
  size_t dstart = i + 1;
  size_t dend = scan_domain(s, dstart, len, utf8);
  if (!dend)
    return 0;
  size_t dlen = dend - dstart;
  if (llen + 1 + dlen > SMTP_ADDR_MAX)
    return 0;
  memcpy(out->addr, s + lstart, llen);
  out->addr[llen] = '@';
  char *d = out->addr + llen + 1;
  bool v6 = dlen > 6 && stp_ascii_ncasecmp(s + dstart, "[IPv6:", 6) == 0;
  for (size_t k = 0; k < dlen; k++)
    d[k] = stp_ascii_lower(s[dstart + k]);
  if (v6)
    memcpy(d + 1, "IPv6", 4); /* the tag's conventional spelling */
  d[dlen] = '\0';
  return dend;
}

int smtp_parse_path(const char *s, size_t len, bool utf8, smtp_path *out, size_t *end) {
  out->addr[0] = '\0';
  out->null_path = false;
  size_t i = skip_sp(s, 0, len);
  if (i >= len)
    return STP_ESYNTAX;

  if (s[i] != '<') {
    /* Legacy: no brackets. The address runs to the next space. */
    size_t e = scan_mailbox(s, i, len, utf8, out);
    if (!e || (e < len && s[e] != ' ')) {
      out->addr[0] = '\0';
      return STP_EADDR;
    }
    *end = e;
    return 0;
  }
  i++;
  if (i < len && s[i] == '>') {
    out->null_path = true;
    *end = i + 1;
    return 0;
  }
  if (i < len && s[i] == '@') {
    i = scan_source_route(s, i, len, utf8);
    if (!i)
      return STP_EADDR;
  }
  size_t e = scan_mailbox(s, i, len, utf8, out);
  if (!e || e >= len || s[e] != '>') {
    out->addr[0] = '\0';
    return STP_EADDR;
  }
  *end = e + 1;
  return 0;
}

const char *smtp_path_domain(const smtp_path *p) {
  const char *at = strrchr(p->addr, '@');
  return at ? at + 1 : "";
}

/* ---- MAIL / RCPT parameters ------------------------------------------------------ */

enum { P_SIZE = 1u, P_BODY = 2u, P_SMTPUTF8 = 4u, P_AUTH = 8u, P_RET = 16u, P_ENVID = 32u };

static bool is_upper_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

bool smtp_xtext_valid(const char *s, size_t n, size_t max) {
  size_t decoded = 0;
  for (size_t i = 0; i < n; i++, decoded++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '+') {
      if (n - i < 3 || !is_upper_hex(s[i + 1]) || !is_upper_hex(s[i + 2]))
        return false;
      i += 2;
    } else if (c < 33 || c > 126 || c == '=') {
      return false;
    }
  }
  return n > 0 && decoded <= max;
}

static bool kw_is(const char *kw, size_t n, const char *want) {
  return strlen(want) == n && stp_ascii_ncasecmp(kw, want, n) == 0;
}

/* One "KEY[=VALUE]" parameter. */
static int mail_param(const char *p, size_t n, smtp_mail_args *out, unsigned *seen) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c < 0x21 || c > 0x7e)
      return STP_EPARAM;
  }
  const char *eq = memchr(p, '=', n);
  size_t klen = eq ? (size_t)(eq - p) : n;
  const char *v = eq ? eq + 1 : NULL;
  size_t vlen = eq ? n - klen - 1 : 0;
  unsigned bit;

  if (kw_is(p, klen, "SIZE")) {
    bit = P_SIZE;
    if (!v || vlen == 0 || vlen > 20)
      return STP_EPARAM;
    uint64_t x = 0;
    for (size_t i = 0; i < vlen; i++) {
      if (v[i] < '0' || v[i] > '9')
        return STP_EPARAM;
      unsigned d = (unsigned)(v[i] - '0');
      if (x > (UINT64_MAX - d) / 10)
        return STP_EPARAM;
      x = x * 10 + d;
    }
    out->has_size = true;
    out->size = x;
  } else if (kw_is(p, klen, "BODY")) {
    bit = P_BODY;
    if (v && kw_is(v, vlen, "7BIT"))
      out->body = SMTP_BODY_7BIT;
    else if (v && kw_is(v, vlen, "8BITMIME"))
      out->body = SMTP_BODY_8BITMIME;
    else
      return STP_EPARAM;
  } else if (kw_is(p, klen, "SMTPUTF8")) {
    bit = P_SMTPUTF8;
    if (v)
      return STP_EPARAM;
    out->smtputf8 = true;
  } else if (kw_is(p, klen, "AUTH")) {
    /* RFC 4954 5: the submitter's identity; we relay under our own, so the
     * value is checked for presence only and dropped. */
    bit = P_AUTH;
    if (!v || vlen == 0)
      return STP_EPARAM;
  } else if (kw_is(p, klen, "RET")) {
    bit = P_RET;
    if (v && kw_is(v, vlen, "FULL"))
      out->ret = SMTP_RET_FULL;
    else if (v && kw_is(v, vlen, "HDRS"))
      out->ret = SMTP_RET_HDRS;
    else
      return STP_EPARAM;
  } else if (kw_is(p, klen, "ENVID")) {
    bit = P_ENVID;
    if (!v || vlen >= sizeof out->envid || !smtp_xtext_valid(v, vlen, SMTP_ENVID_MAX))
      return STP_EPARAM;
    memcpy(out->envid, v, vlen);
    out->envid[vlen] = '\0';
  } else {
    return STP_EPARAM;
  }
  if (*seen & bit)
    return STP_EPARAM;
  *seen |= bit;
  return 0;
}

int smtp_parse_mail(const char *arg, size_t len, smtp_mail_args *out) {
  memset(out, 0, sizeof *out);
  if (memchr(arg, '\0', len))
    return STP_ESYNTAX;
  size_t end;
  /* Parse permissively first: whether 8-bit is allowed depends on a
   * SMTPUTF8 parameter that comes after the path. */
  int rc = smtp_parse_path(arg, len, true, &out->from, &end);
  if (rc)
    return rc;
  if (end < len && arg[end] != ' ')
    return STP_ESYNTAX;
  unsigned seen = 0;
  size_t i = skip_sp(arg, end, len);
  while (i < len) {
    size_t j = i;
    while (j < len && arg[j] != ' ')
      j++;
    rc = mail_param(arg + i, j - i, out, &seen);
    if (rc)
      return rc;
    i = skip_sp(arg, j, len);
  }
  if (!out->smtputf8) {
    rc = smtp_parse_path(arg, len, false, &out->from, &end);
    if (rc)
      return rc;
  }
  return 0;
}

/* NOTIFY=NEVER, or a list of SUCCESS, FAILURE, DELAY, each once. */
static int notify_value(const char *v, size_t n, unsigned *out) {
  unsigned bits = 0;
  size_t i = 0;
  while (i <= n) {
    size_t j = i;
    while (j < n && v[j] != ',')
      j++;
    unsigned b = kw_is(v + i, j - i, "NEVER")     ? SMTP_NOTIFY_NEVER
                 : kw_is(v + i, j - i, "SUCCESS") ? SMTP_NOTIFY_SUCCESS
                 : kw_is(v + i, j - i, "FAILURE") ? SMTP_NOTIFY_FAILURE
                 : kw_is(v + i, j - i, "DELAY")   ? SMTP_NOTIFY_DELAY
                                                  : 0;
    if (!b || (bits & b))
      return STP_EPARAM;
    bits |= b;
    i = j + 1;
  }
  if ((bits & SMTP_NOTIFY_NEVER) && bits != SMTP_NOTIFY_NEVER)
    return STP_EPARAM; /* RFC 3461 4.1: NEVER stands alone */
  *out = bits;
  return 0;
}

/* ORCPT=addr-type;xtext (RFC 3461 4.2); addr-type is an atom, e.g. rfc822. */
static int orcpt_value(const char *v, size_t n, smtp_rcpt_dsn *d) {
  const char *semi = memchr(v, ';', n);
  size_t tl = semi ? (size_t)(semi - v) : 0;
  if (!semi || tl == 0 || tl > 64 || n >= sizeof d->orcpt)
    return STP_EPARAM;
  for (size_t i = 0; i < tl; i++) {
    char c = v[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'))
      return STP_EPARAM;
  }
  if (!smtp_xtext_valid(semi + 1, n - tl - 1, SMTP_ORCPT_MAX))
    return STP_EPARAM;
  memcpy(d->orcpt, v, n);
  d->orcpt[n] = '\0';
  return 0;
}

static int rcpt_param(const char *p, size_t n, smtp_rcpt_dsn *d, unsigned *seen) {
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)p[i] < 0x21 || (unsigned char)p[i] > 0x7e)
      return STP_EPARAM;
  const char *eq = memchr(p, '=', n);
  if (!eq || eq + 1 == p + n)
    return STP_EPARAM;
  size_t klen = (size_t)(eq - p), vlen = n - klen - 1;
  unsigned bit;
  int rc;
  if (kw_is(p, klen, "NOTIFY")) {
    bit = 1;
    rc = notify_value(eq + 1, vlen, &d->notify);
  } else if (kw_is(p, klen, "ORCPT")) {
    bit = 2;
    rc = orcpt_value(eq + 1, vlen, d);
  } else {
    return STP_EPARAM;
  }
  if (rc || (*seen & bit))
    return STP_EPARAM;
  *seen |= bit;
  return 0;
}

int smtp_parse_rcpt_dsn(const char *arg, size_t len, bool utf8, smtp_path *out,
                        smtp_rcpt_dsn *dsn) {
  smtp_rcpt_dsn scratch;
  smtp_rcpt_dsn *d = dsn ? dsn : &scratch;
  memset(d, 0, sizeof *d);
  if (memchr(arg, '\0', len))
    return STP_ESYNTAX;
  size_t end;
  int rc = smtp_parse_path(arg, len, utf8, out, &end);
  if (rc)
    return rc;
  if (out->null_path)
    return STP_EADDR;
  if (end < len && arg[end] != ' ')
    return STP_ESYNTAX;
  unsigned seen = 0;
  size_t i = skip_sp(arg, end, len);
  while (i < len) {
    size_t j = i;
    while (j < len && arg[j] != ' ')
      j++;
    rc = rcpt_param(arg + i, j - i, d, &seen);
    if (rc) {
      memset(d, 0, sizeof *d);
      return rc;
    }
    i = skip_sp(arg, j, len);
  }
  return 0;
}

int smtp_parse_rcpt(const char *arg, size_t len, bool utf8, smtp_path *out) {
  return smtp_parse_rcpt_dsn(arg, len, utf8, out, NULL);
}

const char *smtp_notify_text(unsigned notify, char *buf, size_t cap) {
  static const struct {
    unsigned bit;
    const char *name;
  } names[] = {{SMTP_NOTIFY_NEVER, "NEVER"},
               {SMTP_NOTIFY_SUCCESS, "SUCCESS"},
               {SMTP_NOTIFY_FAILURE, "FAILURE"},
               {SMTP_NOTIFY_DELAY, "DELAY"}};
  size_t o = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    if (!(notify & names[i].bit))
      continue;
    int n = snprintf(buf + o, cap - o, "%s%s", o ? "," : "", names[i].name);
    if (n < 0 || (size_t)n >= cap - o)
      break;
    o += (size_t)n;
  }
  return buf;
}

/* ---- replies ---------------------------------------------------------------------- */

static bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

int smtp_reply_feed(smtp_reply *r, const char *line, size_t len) {
  if (len < 3 || !is_digit(line[0]) || !is_digit(line[1]) || !is_digit(line[2]))
    return STP_ESYNTAX;
  if (line[0] < '2' || line[0] > '5')
    return STP_ESYNTAX;
  bool last;
  if (len == 3)
    last = true;
  else if (line[3] == ' ')
    last = true;
  else if (line[3] == '-')
    last = false;
  else
    return STP_ESYNTAX;
  int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
  if (r->lines > 0 && code != r->code)
    return STP_ESYNTAX;
  if (r->lines >= 100)
    return STP_ESYNTAX;
  r->code = code;

  const char *t = len > 4 ? line + 4 : line + len;
  size_t tlen = len > 4 ? len - 4 : 0;
  if (r->lines > 0 && r->text_len < SMTP_REPLY_MAX)
    r->text[r->text_len++] = '\n';
  for (size_t i = 0; i < tlen && r->text_len < SMTP_REPLY_MAX; i++) {
    unsigned char c = (unsigned char)t[i];
    /* The text is relayed to LAN clients and logged: a stray CR or NUL from
     * upstream must not become a line break or a truncation there. */
    char o = (char)c;
    if ((c < 0x20 && c != '\t') || c == 0x7f)
      o = '?';
    r->text[r->text_len++] = o;
  }
  r->text[r->text_len] = '\0';
  r->lines++;
  return last ? 1 : 0;
}

/* RFC 3463: class "." subject "." detail, 1-3 digits each, class matching
 * the reply code's first digit. */
size_t smtp_reply_enhanced(const smtp_reply *r) {
  const char *t = r->text;
  size_t n = r->text_len;
  if (n < 5 || (t[0] != '2' && t[0] != '4' && t[0] != '5') || t[0] - '0' != r->code / 100 ||
      t[1] != '.')
    return 0;
  size_t i = 2;
  for (int part = 0; part < 2; part++) {
    size_t d = 0;
    while (i < n && is_digit(t[i]) && d < 4) {
      i++;
      d++;
    }
    if (d == 0 || d > 3)
      return 0;
    if (part == 0) {
      if (i >= n || t[i] != '.')
        return 0;
      i++;
    }
  }
  if (i < n && t[i] != ' ' && t[i] != '\n')
    return 0;
  return i;
}

/* ---- EHLO capabilities -------------------------------------------------------------- */

static unsigned auth_mechs(const char *s, size_t n) {
  unsigned bits = 0;
  size_t i = 0;
  while (i < n) {
    while (i < n && s[i] == ' ')
      i++;
    size_t j = i;
    while (j < n && s[j] != ' ')
      j++;
    if (kw_is(s + i, j - i, "PLAIN"))
      bits |= SMTP_AUTH_PLAIN;
    else if (kw_is(s + i, j - i, "LOGIN"))
      bits |= SMTP_AUTH_LOGIN;
    else if (kw_is(s + i, j - i, "XOAUTH2"))
      bits |= SMTP_AUTH_XOAUTH2;
    else if (kw_is(s + i, j - i, "CRAM-MD5"))
      bits |= SMTP_AUTH_CRAM_MD5;
    i = j;
  }
  return bits;
}

static void caps_line(const char *s, size_t n, smtp_caps *out) {
  size_t k = 0;
  while (k < n && s[k] != ' ' && s[k] != '=')
    k++;
  const char *rest = k < n ? s + k + 1 : s + n;
  size_t rlen = k < n ? n - k - 1 : 0;

  if (kw_is(s, k, "STARTTLS")) {
    out->starttls = true;
  } else if (kw_is(s, k, "PIPELINING")) {
    out->pipelining = true;
  } else if (kw_is(s, k, "8BITMIME")) {
    out->eightbitmime = true;
  } else if (kw_is(s, k, "SMTPUTF8")) {
    out->smtputf8 = true;
  } else if (kw_is(s, k, "ENHANCEDSTATUSCODES")) {
    out->enhancedstatuscodes = true;
  } else if (kw_is(s, k, "DSN")) {
    out->dsn = true;
  } else if (kw_is(s, k, "SIZE")) {
    out->has_size = true;
    uint64_t x = 0;
    size_t i = 0;
    while (i < rlen && rest[i] == ' ')
      i++;
    for (; i < rlen && is_digit(rest[i]); i++) {
      unsigned d = (unsigned)(rest[i] - '0');
      if (x > (UINT64_MAX - d) / 10) {
        x = 0; /* absurd: treat as no announced limit */
        break;
      }
      x = x * 10 + d;
    }
    out->size = x;
  } else if (kw_is(s, k, "AUTH")) {
    out->auth |= auth_mechs(rest, rlen);
  }
}

void smtp_caps_parse(const smtp_reply *r, smtp_caps *out) {
  memset(out, 0, sizeof *out);
  if (r->code != 250)
    return;
  const char *t = r->text;
  size_t n = r->text_len;
  const char *nl = memchr(t, '\n', n);
  if (!nl)
    return; /* greeting line only */
  size_t i = (size_t)(nl - t) + 1;
  while (i < n) {
    const char *e = memchr(t + i, '\n', n - i);
    size_t j = e ? (size_t)(e - t) : n;
    caps_line(t + i, j - i, out);
    i = j + 1;
  }
}
