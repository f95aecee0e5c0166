/* dsn.c - the RFC 3464 failure notice, RFC 6533 when international
 * (see dsn.h). Pure. */
#include "smtp-tls-proxy/dsn.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "smtp-tls-proxy/smtp.h"
#include "smtp-tls-proxy/util.h"

#define DSN_LINE_MAX 900 /* well below RFC 5322's 998 */

typedef struct out {
  char *p;
  size_t len, cap;
} out;

static void put(out *o, const char *s, size_t n) {
  if (o->len + n + 1 > o->cap) {
    size_t cap = o->cap ? o->cap : 4096;
    while (cap < o->len + n + 1)
      cap *= 2;
    o->p = stp_xrealloc(o->p, cap);
    o->cap = cap;
  }
  memcpy(o->p + o->len, s, n);
  o->len += n;
  o->p[o->len] = '\0';
}

static void puts_(out *o, const char *s) {
  put(o, s, strlen(s));
}

static void putf(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(out *o, const char *fmt, ...) {
  char buf[2048];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n > 0)
    put(o, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

/* A reply or address as one safe line: controls become spaces, bounded. */
static void flat(const char *in, char *buf, size_t cap) {
  size_t n = 0;
  if (cap > DSN_LINE_MAX)
    cap = DSN_LINE_MAX;
  for (; in && *in && n + 1 < cap; in++)
    buf[n++] = (unsigned char)*in < 0x20 || *in == 0x7f ? ' ' : *in;
  buf[n] = '\0';
}

static bool ascii(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] >= 0x80)
      return false;
  return true;
}

static bool ascii_s(const char *s) {
  return !s || ascii(s, strlen(s));
}

bool dsn_wants_failure(unsigned notify) {
  return notify == 0 || (notify & SMTP_NOTIFY_FAILURE);
}

bool dsn_is_global(const dsn_input *in) {
  if (!ascii_s(in->to) || !ascii_s(in->orig_from) ||
      (in->headers && !ascii(in->headers, in->headers_len)))
    return true;
  for (size_t i = 0; i < in->n_rcpts && i < DSN_MAX_RCPTS; i++)
    if (!ascii_s(in->rcpts[i].addr) || !ascii_s(in->rcpts[i].reply) || !ascii_s(in->rcpts[i].orcpt))
      return true;
  return false;
}

/* xtext (RFC 3461 4) decoded, for Original-Envelope-Id and
 * Original-Recipient: "+XX" is the octet; controls become spaces. */
static void xtext_decode(const char *in, char *buf, size_t cap) {
  static const char hex[] = "0123456789ABCDEF";
  size_t n = 0;
  if (cap > DSN_LINE_MAX)
    cap = DSN_LINE_MAX;
  for (; in && *in && n + 1 < cap; in++) {
    unsigned char c = (unsigned char)*in;
    const char *h1, *h2;
    if (c == '+' && in[1] && in[2] && (h1 = strchr(hex, in[1])) && (h2 = strchr(hex, in[2]))) {
      c = (unsigned char)((h1 - hex) << 4 | (h2 - hex));
      in += 2;
    }
    buf[n++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
  }
  buf[n] = '\0';
}

/* An address as RFC 6533's utf-8-addr-unitext: UTF-8 stays, and the
 * ASCII characters it does not allow (controls, space, '+', '=', '\\')
 * become \x{HH}. */
static void unitext(const char *in, char *buf, size_t cap) {
  size_t n = 0;
  if (cap > DSN_LINE_MAX)
    cap = DSN_LINE_MAX;
  for (; in && *in; in++) {
    unsigned char c = (unsigned char)*in;
    if (c >= 0x80 || (c > 0x20 && c < 0x7f && c != '+' && c != '=' && c != '\\')) {
      if (n + 2 > cap)
        break;
      buf[n++] = (char)c;
      continue;
    }
    if (n + 8 > cap)
      break;
    n += (size_t)snprintf(buf + n, cap - n, "\\x{%02X}", c);
  }
  buf[n] = '\0';
}

void dsn_date(uint64_t ms, char *buf, size_t cap) {
  static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char *const mons[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  snprintf(buf, cap, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday % 7], tm.tm_mday,
           mons[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* "5.1.1" when the reply's text starts with an enhanced code of class c. */
static bool enhanced(const char *reply, char c, char out_[16]) {
  if (!reply || strlen(reply) < 4)
    return false;
  const char *p = reply + 3;
  while (*p == ' ' || *p == '-')
    p++;
  if (p[0] != c || p[1] != '.')
    return false;
  size_t n = 2, dots = 1;
  while ((p[n] >= '0' && p[n] <= '9') || (p[n] == '.' && dots++ < 2))
    n++;
  if (dots != 2 || n > 11 || p[n - 1] == '.' || (p[n] && p[n] != ' '))
    return false;
  memcpy(out_, p, n);
  out_[n] = '\0';
  return true;
}

void dsn_status(const char *reply, bool expired, char out_[16]) {
  if (enhanced(reply, expired ? '4' : '5', out_))
    return;
  if (!expired && enhanced(reply, '4', out_)) /* a 4xx turned final by the caller */
    return;
  snprintf(out_, 16, "%s", expired ? "4.4.7" : "5.0.0");
}

size_t dsn_header_block(const char *body, size_t n, char *dst, size_t cap) {
  size_t used = 0, i = 0;
  if (cap > DSN_HEADERS_MAX)
    cap = DSN_HEADERS_MAX;
  while (i < n) {
    const char *nl = memchr(body + i, '\n', n - i);
    if (!nl)
      break; /* a partial line at the end of what was read */
    size_t len = (size_t)(nl - (body + i)) + 1;
    const char *line = body + i;
    i += len;
    bool empty = len <= 2;
    if (line[0] == '.' && len > 1) { /* stored dot-stuffed */
      line++;
      len--;
    }
    if (used + len > cap)
      break;
    memcpy(dst + used, line, len);
    used += len;
    if (empty)
      break;
  }
  return used;
}

/* The original headers as CRLF lines of bounded length. */
static void put_headers(out *o, const char *h, size_t n) {
  size_t i = 0;
  while (i < n) {
    const char *nl = memchr(h + i, '\n', n - i);
    size_t len = nl ? (size_t)(nl - (h + i)) : n - i;
    size_t keep = len;
    if (keep && h[i + keep - 1] == '\r')
      keep--;
    if (keep == 0)
      break; /* the empty line ends the block */
    if (keep > DSN_LINE_MAX)
      keep = DSN_LINE_MAX;
    for (size_t k = 0; k < keep; k++)
      put(o, h[i + k] == '\r' || h[i + k] == '\0' ? " " : h + i + k, 1);
    puts_(o, "\r\n");
    i += len + (nl ? 1 : 0);
  }
}

static void put_explanation(out *o, const dsn_input *in) {
  char date[64], buf[DSN_LINE_MAX];
  dsn_date(in->arrival_ms, date, sizeof date);
  putf(o, "This is smtp-tls-proxy at %s.\r\n\r\n", in->reporting_mta);
  putf(o, "A message that a device handed over on %s was kept in the local\r\n", date);
  putf(o, "spool (id %s) because the upstream could not take it at the time.\r\n", in->spool_id);
  if (in->expired)
    putf(o, "It could not be delivered within %s (spool max_age) to:\r\n\r\n",
         in->max_age ? in->max_age : "max_age");
  else
    puts_(o, "The upstream refused it permanently for:\r\n\r\n");
  for (size_t i = 0; i < in->n_rcpts && i < DSN_MAX_RCPTS; i++) {
    flat(in->rcpts[i].addr, buf, sizeof buf);
    putf(o, "  <%s>\r\n", buf);
    flat(in->rcpts[i].reply, buf, sizeof buf);
    putf(o, "    %s\r\n", buf[0] ? buf : "(no reply)");
  }
  flat(in->orig_from, buf, sizeof buf);
  putf(o, "\r\nThe original sender was <%s>. Its headers are attached.\r\n", buf);
}

static void put_status(out *o, const dsn_input *in) {
  char date[64], buf[DSN_LINE_MAX], st[16];
  dsn_date(in->arrival_ms, date, sizeof date);
  if (in->envid && *in->envid) {
    xtext_decode(in->envid, buf, sizeof buf);
    putf(o, "Original-Envelope-Id: %s\r\n", buf);
  }
  putf(o, "Reporting-MTA: dns; %s\r\n", in->reporting_mta);
  putf(o, "X-Spool-Id: %s\r\n", in->spool_id);
  putf(o, "Arrival-Date: %s\r\n", date);
  for (size_t i = 0; i < in->n_rcpts && i < DSN_MAX_RCPTS; i++) {
    const char *orcpt = in->rcpts[i].orcpt;
    if (orcpt && *orcpt) {
      xtext_decode(orcpt, buf, sizeof buf);
      putf(o, "\r\nOriginal-Recipient: %s\r\n", buf);
    } else {
      puts_(o, "\r\n");
    }
    flat(in->rcpts[i].addr, buf, sizeof buf);
    if (ascii(buf, strlen(buf))) {
      putf(o, "Final-Recipient: rfc822; %s\r\n", buf);
    } else { /* RFC 6533 3: only in message/global-delivery-status */
      char u[DSN_LINE_MAX];
      unitext(buf, u, sizeof u);
      putf(o, "Final-Recipient: utf-8; %s\r\n", u);
    }
    puts_(o, "Action: failed\r\n");
    dsn_status(in->rcpts[i].reply, in->expired, st);
    putf(o, "Status: %s\r\n", st);
    flat(in->rcpts[i].reply, buf, sizeof buf);
    if (buf[0])
      putf(o, "Diagnostic-Code: smtp; %s\r\n", buf);
    if (in->expired) {
      char now[64];
      dsn_date(in->now_ms, now, sizeof now);
      putf(o, "Last-Attempt-Date: %s\r\n", now);
    }
  }
}

/* A boundary that none of the parts contains. */
static void pick_boundary(const dsn_input *in, const out *parts, char *b, size_t cap) {
  for (unsigned n = 0;; n++) {
    snprintf(b, cap, "=_stp-dsn-%s-%u", in->spool_id ? in->spool_id : "x", n);
    if (!parts->p || !strstr(parts->p, b))
      return;
  }
}

char *dsn_build(const dsn_input *in, size_t *len) {
  out expl = {0}, status = {0}, hdrs = {0}, all = {0};
  put_explanation(&expl, in);
  put_status(&status, in);
  put_headers(&hdrs, in->headers ? in->headers : "", in->headers_len);
  out joined = {0};
  put(&joined, "", 0);
  if (expl.p)
    puts_(&joined, expl.p);
  puts_(&joined, status.p);
  if (hdrs.p)
    puts_(&joined, hdrs.p);
  char b[96], date[64], to[DSN_LINE_MAX];
  pick_boundary(in, &joined, b, sizeof b);
  free(joined.p);
  dsn_date(in->now_ms, date, sizeof date);
  flat(in->to, to, sizeof to);
  putf(&all, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", in->reporting_mta);
  putf(&all, "To: <%s>\r\n", to);
  puts_(&all, "Subject: Undelivered Mail Returned to Sender\r\n");
  putf(&all, "Date: %s\r\n", date);
  putf(&all, "Message-ID: <%s.%" PRIu64 ".dsn@%s>\r\n", in->spool_id, in->now_ms,
       in->reporting_mta);
  puts_(&all, "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n");
  putf(&all,
       "Content-Type: multipart/report; report-type=delivery-status;\r\n boundary=\"%s\"\r\n\r\n",
       b);
  puts_(&all, "This is a MIME-encapsulated message.\r\n\r\n");
  /* RFC 6533: international notices use the global types, and every
   * part with 8-bit text says so (RFC 2045 6.2; 6533 6.1 and 6.3). */
  bool global = dsn_is_global(in);
  bool expl8 = !ascii(expl.p, expl.len), status8 = !ascii(status.p, status.len);
  bool hdrs8 = hdrs.p && !ascii(hdrs.p, hdrs.len);
  putf(&all, "--%s\r\nContent-Type: text/plain; charset=%s\r\n%s\r\n", b,
       expl8 ? "utf-8" : "us-ascii", expl8 ? "Content-Transfer-Encoding: 8bit\r\n" : "");
  put(&all, expl.p, expl.len);
  putf(&all, "\r\n--%s\r\nContent-Type: message/%sdelivery-status\r\n%s\r\n", b,
       global ? "global-" : "", status8 ? "Content-Transfer-Encoding: 8bit\r\n" : "");
  put(&all, status.p, status.len);
  putf(&all, "\r\n--%s\r\nContent-Type: %s\r\n", b,
       global ? "message/global-headers" : "text/rfc822-headers");
  if (hdrs8)
    puts_(&all, "Content-Transfer-Encoding: 8bit\r\n");
  puts_(&all, "\r\n");
  if (hdrs.p)
    put(&all, hdrs.p, hdrs.len);
  putf(&all, "\r\n--%s--\r\n", b);
  free(expl.p);
  free(status.p);
  free(hdrs.p);
  *len = all.len;
  return all.p;
}
