/* mime_addr.c - RFC 5322 address lists (To, Cc, Bcc, From), tolerant as
 * mail readers are (see mime.h).
 *
 * One pass over the value: quoted strings and comments are read whole, an
 * angle-addr ends the display name before it, ':' opens a group (its name
 * is not an address), ',' and ';' end an entry. An entry without angle
 * brackets is an addr-spec; its comment, if any, serves as the name
 * ("a@b (Jane)", the old style). Entries without '@' are dropped.
 */
#include <string.h>

#include "smtp-tls-proxy/mime.h"
#include "smtp-tls-proxy/util.h"

typedef struct entry {
  char phrase[512]; /* display name words, quotes removed, blanks collapsed */
  size_t plen;
  char spec[321]; /* the addr-spec or the angle-addr's content, no blanks */
  size_t slen;
  bool angle, spec_cut;
  char comment[256];
} entry;

static void put(char *buf, size_t cap, size_t *len, char c) {
  if (*len + 1 < cap)
    buf[(*len)++] = c;
  buf[*len] = '\0';
}

static void phrase_word_sep(entry *e) {
  if (e->plen && e->phrase[e->plen - 1] != ' ')
    put(e->phrase, sizeof e->phrase, &e->plen, ' ');
}

/* A finished entry goes out when it holds an address. */
static size_t finish(entry *e, mime_addr *out, size_t max, size_t count) {
  while (e->plen && e->phrase[e->plen - 1] == ' ')
    e->phrase[--e->plen] = '\0';
  if (!e->angle) {
    /* addr-spec: the words were the address */
    e->slen = 0;
    for (size_t i = 0; i < e->plen; i++)
      if (e->phrase[i] != ' ')
        put(e->spec, sizeof e->spec, &e->slen, e->phrase[i]);
  }
  bool ok = e->slen && memchr(e->spec, '@', e->slen) && !e->spec_cut;
  for (size_t i = 0; ok && i < e->slen; i++)
    ok = ((unsigned char)e->spec[i] > ' ' && e->spec[i] != 0x7f) ||
         e->spec[i] == '\x01'; /* no controls, nor NUL; \x01 stands for a quoted blank */
  if (ok) {
    if (count < max) {
      mime_addr *a = &out[count];
      memcpy(a->addr, e->spec, e->slen + 1);
      const char *name = e->angle ? e->phrase : e->comment;
      mime_decode_words(name, strlen(name), a->name, sizeof a->name);
    }
    count++;
  }
  memset(e, 0, sizeof *e);
  return count;
}

/* A comment at v[i] == '(': its text (nested ones flattened) into e. */
static size_t comment(const char *v, size_t n, size_t i, entry *e) {
  int depth = 0;
  size_t cl = 0;
  e->comment[0] = '\0';
  for (; i < n; i++) {
    if (v[i] == '\\' && i + 1 < n) {
      put(e->comment, sizeof e->comment, &cl, v[++i]);
    } else if (v[i] == '(') {
      if (depth++)
        put(e->comment, sizeof e->comment, &cl, '(');
    } else if (v[i] == ')') {
      if (--depth == 0)
        return i + 1;
      put(e->comment, sizeof e->comment, &cl, ')');
    } else {
      put(e->comment, sizeof e->comment, &cl, v[i]);
    }
  }
  return n;
}

/* A quoted string at v[i] == '"'; into the phrase (kept quoted when it is
 * the local part of an addr-spec, which the caller cannot know yet: the
 * quotes go into the phrase only when '@' follows). */
static size_t quoted(const char *v, size_t n, size_t i, entry *e) {
  size_t j = i + 1, end;
  while (j < n && v[j] != '"')
    j += v[j] == '\\' && j + 1 < n ? 2 : 1;
  end = j < n ? j + 1 : n;
  size_t k = end;
  while (k < n && (v[k] == ' ' || v[k] == '\t'))
    k++;
  bool local = k < n && v[k] == '@';
  phrase_word_sep(e);
  if (local)
    put(e->phrase, sizeof e->phrase, &e->plen, '"');
  for (size_t p = i + 1; p < j; p++) {
    if (v[p] == '\\' && p + 1 < j) {
      if (local)
        put(e->phrase, sizeof e->phrase, &e->plen, '\\');
      p++;
    }
    if (local && ((unsigned char)v[p] < ' ' || v[p] == 0x7f))
      e->spec_cut = true; /* a control character in an address: unusable */
    put(e->phrase, sizeof e->phrase, &e->plen, v[p] == ' ' && local ? '\x01' : v[p]);
  }
  if (local)
    put(e->phrase, sizeof e->phrase, &e->plen, '"');
  return end;
}

/* An angle-addr at v[i] == '<': its content without blanks and without an
 * obsolete route ("@a,@b:"). */
static size_t angle(const char *v, size_t n, size_t i, entry *e) {
  size_t j = i + 1;
  e->slen = 0;
  e->angle = true;
  for (; j < n && v[j] != '>'; j++) {
    if (v[j] == ':' && e->slen && e->spec[0] == '@') {
      e->slen = 0; /* the route before ':' */
      e->spec[0] = '\0';
      continue;
    }
    if (v[j] == ' ' || v[j] == '\t' || v[j] == '\r' || v[j] == '\n')
      continue;
    if (e->slen + 1 >= sizeof e->spec)
      e->spec_cut = true;
    put(e->spec, sizeof e->spec, &e->slen, v[j]);
  }
  return j < n ? j + 1 : n;
}

size_t mime_addr_list(const char *v, size_t n, mime_addr *out, size_t max) {
  entry e;
  size_t count = 0, i = 0;
  memset(&e, 0, sizeof e);
  while (i < n) {
    char c = v[i];
    if (c == '(') {
      i = comment(v, n, i, &e);
    } else if (c == '"') {
      i = quoted(v, n, i, &e);
    } else if (c == '<') {
      i = angle(v, n, i, &e);
    } else if (c == ',' || c == ';') {
      count = finish(&e, out, max, count);
      i++;
    } else if (c == ':' && !e.angle) {
      memset(&e, 0, sizeof e); /* a group's name */
      i++;
    } else if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      phrase_word_sep(&e);
      i++;
    } else {
      if (!e.angle) /* text after an angle-addr is junk */
        put(e.phrase, sizeof e.phrase, &e.plen, c);
      i++;
    }
  }
  count = finish(&e, out, max, count);
  /* A blank inside a quoted local part was kept as \x01 while blanks were
   * being dropped: put it back. */
  for (size_t k = 0; k < count && k < max; k++)
    for (char *p = out[k].addr; *p; p++)
      if (*p == '\x01')
        *p = ' ';
  return count;
}
