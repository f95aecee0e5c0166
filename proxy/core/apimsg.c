/* apimsg.c - messages for the HTTP mail APIs (see apimsg.h). */
#include "smtp-tls-proxy/apimsg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp-tls-proxy/json.h"

/* ---- dot-unstuffing ------------------------------------------------------- */

size_t apimsg_unstuff_feed(apimsg_unstuff *u, const char *in, size_t n, char *out) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    char c = in[i];
    if (!u->mid_line && c == '.') {
      u->mid_line = true; /* the stuffed dot (RFC 5321 4.5.2) */
      continue;
    }
    out[o++] = c;
    u->mid_line = c != '\n';
  }
  return o;
}

/* ---- addresses -------------------------------------------------------------- */

void apimsg_addrs_add(apimsg_addrs *a, const char *addr, const char *name) {
  size_t al = strlen(addr) + 1, nl = strlen(name) + 1;
  if (a->len + al + nl > APIMSG_ADDR_BYTES) {
    a->dropped++;
    return;
  }
  if (a->len + al + nl > a->cap) {
    size_t cap = a->cap ? a->cap * 2 : 1024;
    while (cap < a->len + al + nl)
      cap *= 2;
    a->buf = stp_xrealloc(a->buf, cap);
    a->cap = cap;
  }
  memcpy(a->buf + a->len, addr, al);
  memcpy(a->buf + a->len + al, name, nl);
  a->len += al + nl;
  a->n++;
}

const char *apimsg_addrs_next(const apimsg_addrs *a, size_t *pos, const char **name) {
  if (*pos >= a->len)
    return NULL;
  const char *addr = a->buf + *pos;
  const char *nm = addr + strlen(addr) + 1;
  *pos = (size_t)(nm + strlen(nm) + 1 - a->buf);
  if (name)
    *name = nm;
  return addr;
}

bool apimsg_addrs_has(const apimsg_addrs *a, const char *addr) {
  size_t pos = 0;
  for (const char *s; (s = apimsg_addrs_next(a, &pos, NULL));)
    if (!stp_ascii_casecmp(s, addr))
      return true;
  return false;
}

void apimsg_addrs_free(apimsg_addrs *a) {
  free(a->buf);
  memset(a, 0, sizeof *a);
}

/* ---- gathering the message ------------------------------------------------- */

void apimsg_info_init(apimsg_info *m) {
  memset(m, 0, sizeof *m);
}

void apimsg_info_free(apimsg_info *m) {
  apimsg_addrs_free(&m->from);
  apimsg_addrs_free(&m->to);
  apimsg_addrs_free(&m->cc);
  apimsg_addrs_free(&m->reply_to);
  free(m->parts);
  memset(m, 0, sizeof *m);
}

static bool is_field(const mime_event *ev, const char *name) {
  return ev->name_len == strlen(name) && !stp_ascii_ncasecmp(ev->name, name, ev->name_len);
}

static void add_list(apimsg_addrs *a, const mime_event *ev) {
  mime_addr buf[64];
  /* Up to 64 on the stack; a longer list is parsed again into the heap. */
  size_t n = mime_addr_list(ev->data, ev->len, buf, 64);
  if (n <= 64) {
    for (size_t i = 0; i < n; i++)
      apimsg_addrs_add(a, buf[i].addr, buf[i].name);
    return;
  }
  mime_addr *all = stp_xcalloc(n, sizeof *all);
  mime_addr_list(ev->data, ev->len, all, n);
  for (size_t i = 0; i < n; i++)
    apimsg_addrs_add(a, all[i].addr, all[i].name);
  free(all);
}

static void root_header(apimsg_info *m, const mime_event *ev) {
  if (is_field(ev, "From") && !m->from.n)
    add_list(&m->from, ev);
  else if (is_field(ev, "To"))
    add_list(&m->to, ev);
  else if (is_field(ev, "Cc"))
    add_list(&m->cc, ev);
  else if (is_field(ev, "Reply-To") && !m->reply_to.n)
    add_list(&m->reply_to, ev);
  else if (is_field(ev, "Bcc"))
    m->has_bcc = true;
  else if (is_field(ev, "Subject") && !m->has_subject) {
    m->has_subject = true;
    mime_decode_words(ev->data, ev->len, m->subject, sizeof m->subject);
  } else if (is_field(ev, "Message-ID") && !m->message_id[0]) {
    const char *lt = memchr(ev->data, '<', ev->len);
    const char *gt = lt ? memchr(lt, '>', ev->len - (size_t)(lt - ev->data)) : NULL;
    size_t len = gt ? (size_t)(gt - lt) + 1 : 0;
    bool ok = len > 4 && len < sizeof m->message_id && memchr(lt, '@', len);
    for (size_t i = 0; ok && i < len; i++)
      ok = (unsigned char)lt[i] > ' ' && (unsigned char)lt[i] < 0x7f;
    if (ok) {
      memcpy(m->message_id, lt, len);
      m->message_id[len] = '\0';
    }
  }
}

void apimsg_on_mime(void *arg, const mime_event *ev) {
  apimsg_info *m = arg;
  const mime_part *p = ev->part;
  if (ev->kind == MIME_EV_HEADER && p->index == 0) {
    root_header(m, ev);
    return;
  }
  if (ev->kind != MIME_EV_END)
    return;
  /* A multipart that never wrote a boundary holds no part, only text: it
   * is kept as one leaf of its own type (as Python's email reads it),
   * never dropped with its text. */
  bool lone = p->multipart && p->body_end > p->body_start &&
              (!m->nparts || m->parts[m->nparts - 1].index < p->index);
  if (p->multipart && !lone)
    return;
  if (m->nparts == APIMSG_PARTS_MAX) {
    m->parts_dropped = true;
    return;
  }
  if (m->nparts == m->cap) {
    m->cap = m->cap ? m->cap * 2 : 8;
    m->parts = stp_xrealloc(m->parts, m->cap * sizeof *m->parts);
  }
  apimsg_part *q = &m->parts[m->nparts++];
  memset(q, 0, sizeof *q);
  q->index = p->index;
  memcpy(q->type, p->type, sizeof q->type);
  memcpy(q->charset, p->charset, sizeof q->charset);
  q->cte = p->cte;
  q->disp = p->disp;
  memcpy(q->filename, p->filename, sizeof q->filename);
  memcpy(q->content_id, p->content_id, sizeof q->content_id);
  q->in_alternative = p->in_alternative;
  q->start = p->body_start;
  q->end = p->body_end;
  q->size = p->decoded_size;
  if (lone) { /* as written: nothing was decoded */
    q->cte = MIME_CTE_7BIT;
    q->size = p->body_end - p->body_start;
  }
}

/* ---- recipients --------------------------------------------------------------- */

static bool in_headers(const apimsg_info *m, const char *addr) {
  return apimsg_addrs_has(&m->to, addr) || apimsg_addrs_has(&m->cc, addr);
}

int apimsg_bcc_field(const apimsg_info *m, const char *const *rcpts, size_t n, stp_buf *out) {
  size_t col = 0;
  bool any = false;
  for (size_t i = 0; i < n; i++) {
    if (in_headers(m, rcpts[i]))
      continue;
    bool dup = false;
    for (size_t k = 0; k < i && !dup; k++)
      dup = !stp_ascii_casecmp(rcpts[k], rcpts[i]);
    if (dup)
      continue;
    size_t len = strlen(rcpts[i]);
    int rc;
    if (!any) {
      rc = stp_buf_appendf(out, "Bcc: %s", rcpts[i]);
      col = 5 + len;
    } else if (col + 2 + len > 76) {
      rc = stp_buf_appendf(out, ",\r\n %s", rcpts[i]); /* folded */
      col = 1 + len;
    } else {
      rc = stp_buf_appendf(out, ", %s", rcpts[i]);
      col += 2 + len;
    }
    if (rc < 0)
      return rc;
    any = true;
  }
  return any ? stp_buf_append(out, "\r\n", 2) : 0;
}

size_t apimsg_header_only(const apimsg_info *m, const char *const *rcpts, size_t n) {
  size_t count = 0;
  const apimsg_addrs *lists[2] = {&m->to, &m->cc};
  for (int l = 0; l < 2; l++) {
    size_t pos = 0;
    for (const char *a; (a = apimsg_addrs_next(lists[l], &pos, NULL));) {
      bool found = false;
      for (size_t i = 0; i < n && !found; i++)
        found = !stp_ascii_casecmp(a, rcpts[i]);
      count += !found;
    }
  }
  return count;
}

/* ---- Graph: body and attachments ----------------------------------------------- */

/* RFC 2183: a part is an attachment when its disposition says so; an
 * inline text part is a body candidate even when it carries a file name
 * (scanners name their text, "Content-Disposition: inline; filename=", or
 * only name= on the type), as in Python's email.message.get_body. */
static bool text_leaf(const apimsg_part *p, const char *type) {
  return !strcmp(p->type, type) && p->disp != MIME_DISP_ATTACHMENT;
}

long apimsg_body_part(const apimsg_info *m, bool *html) {
  const char *pref[2] = {"text/html", "text/plain"};
  for (int t = 0; t < 2; t++) {
    for (size_t i = 0; i < m->nparts; i++) {
      if (text_leaf(&m->parts[i], pref[t]) && m->parts[i].size <= APIMSG_BODY_MAX) {
        *html = t == 0;
        return (long)i;
      }
    }
  }
  *html = false;
  return -1;
}

bool apimsg_is_attachment(const apimsg_info *m, size_t i, long body) {
  const apimsg_part *p = &m->parts[i];
  if ((long)i == body)
    return false;
  /* The other renderings of the body: text leaves of an alternative. */
  if (p->in_alternative && (text_leaf(p, "text/plain") || text_leaf(p, "text/html")))
    return false;
  /* An empty text part (a device's empty body) is nothing to attach. */
  if (p->size == 0 && !strncmp(p->type, "text/", 5) && !p->filename[0])
    return false;
  return true;
}

void apimsg_part_name(const apimsg_info *m, size_t i, char *out, size_t cap) {
  const apimsg_part *p = &m->parts[i];
  if (p->filename[0]) {
    snprintf(out, cap, "%s", p->filename);
    return;
  }
  static const char *const ext[][2] = {
      {"application/pdf", "pdf"}, {"image/jpeg", "jpg"}, {"image/png", "png"},
      {"image/tiff", "tif"},      {"image/gif", "gif"},  {"text/plain", "txt"},
      {"text/html", "html"},      {"text/csv", "csv"},   {"message/rfc822", "eml"},
      {"application/xml", "xml"}, {"text/xml", "xml"},   {"application/zip", "zip"}};
  const char *e = "bin";
  for (size_t k = 0; k < sizeof ext / sizeof *ext; k++)
    if (!strcmp(p->type, ext[k][0]))
      e = ext[k][1];
  snprintf(out, cap, "attachment-%zu.%s", i + 1, e);
}

/* ---- Graph: JSON ------------------------------------------------------------------ */

/* A JSON string from text that should be UTF-8 (Windows-1252 otherwise). */
static json_t *jstr(const char *s) {
  size_t n = strlen(s);
  if (mime_is_utf8(s, n))
    return json_stringn(s, n);
  char *u = stp_xmalloc(n * 3 + 1);
  size_t un = mime_utf8_or_1252(s, n, u, n * 3 + 1);
  json_t *v = json_stringn(u, un);
  free(u);
  return v;
}

static json_t *recipient(const char *addr, const char *name) {
  json_t *ea = json_object();
  json_object_set_new(ea, "address", jstr(addr));
  if (name && name[0])
    json_object_set_new(ea, "name", jstr(name));
  json_t *r = json_object();
  json_object_set_new(r, "emailAddress", ea);
  return r;
}

/* Header addresses that are envelope recipients, in header order. */
static json_t *header_rcpts(const apimsg_addrs *a, const char *const *rcpts, size_t n) {
  json_t *arr = json_array();
  size_t pos = 0;
  const char *name;
  for (const char *s; (s = apimsg_addrs_next(a, &pos, &name));)
    for (size_t i = 0; i < n; i++)
      if (!stp_ascii_casecmp(s, rcpts[i])) {
        json_array_append_new(arr, recipient(s, name));
        break;
      }
  return arr;
}

static json_t *bcc_rcpts(const apimsg_info *m, const char *const *rcpts, size_t n) {
  json_t *arr = json_array();
  for (size_t i = 0; i < n; i++) {
    bool dup = in_headers(m, rcpts[i]);
    for (size_t k = 0; k < i && !dup; k++)
      dup = !stp_ascii_casecmp(rcpts[k], rcpts[i]);
    if (!dup)
      json_array_append_new(arr, recipient(rcpts[i], NULL));
  }
  return arr;
}

/* Serialise v (consumed) into a malloc'd string; NULL past max. */
static char *dump(json_t *v, size_t max) {
  size_t need = json_dumpb(v, NULL, 0, JSON_COMPACT);
  char *s = NULL;
  if (need && need < max) {
    s = stp_xmalloc(need + 1);
    json_dumpb(v, s, need, JSON_COMPACT);
    s[need] = '\0';
  }
  json_decref(v);
  return s;
}

char *apimsg_graph_message(const apimsg_info *m, const char *const *rcpts, size_t n,
                           const char *body, size_t body_len, bool html, bool open_attachments,
                           size_t max) {
  stp_json_init();
  json_t *msg = json_object();
  json_object_set_new(msg, "subject", jstr(m->subject));
  json_t *b = json_object();
  json_object_set_new(b, "contentType", json_string(html ? "html" : "text"));
  json_object_set_new(b, "content", json_stringn(body ? body : "", body ? body_len : 0));
  json_object_set_new(msg, "body", b);
  size_t pos = 0;
  const char *name, *from = apimsg_addrs_next(&m->from, &pos, &name);
  if (from)
    json_object_set_new(msg, "from", recipient(from, name));
  json_object_set_new(msg, "toRecipients", header_rcpts(&m->to, rcpts, n));
  json_object_set_new(msg, "ccRecipients", header_rcpts(&m->cc, rcpts, n));
  json_object_set_new(msg, "bccRecipients", bcc_rcpts(m, rcpts, n));
  if (m->reply_to.n) {
    json_t *rt = json_array();
    pos = 0;
    for (const char *s; (s = apimsg_addrs_next(&m->reply_to, &pos, &name));)
      json_array_append_new(rt, recipient(s, name));
    json_object_set_new(msg, "replyTo", rt);
  }
  if (m->message_id[0])
    json_object_set_new(msg, "internetMessageId", json_string(m->message_id));
  if (!open_attachments)
    return dump(msg, max);
  /* {"message":{...,"attachments":[  -- the attachments and the rest follow */
  json_t *outer = json_object();
  json_object_set_new(outer, "message", msg);
  char *s = dump(outer, max);
  if (!s)
    return NULL;
  size_t len = strlen(s); /* ends in "}}" */
  static const char open[] = ",\"attachments\":[";
  if (len + sizeof open > max) {
    free(s);
    return NULL;
  }
  s = stp_xrealloc(s, len + sizeof open);
  memcpy(s + len - 2, open, sizeof open); /* drop "}}", keep the NUL */
  return s;
}

static json_t *attachment_fields(const apimsg_info *m, size_t i, bool item) {
  const apimsg_part *p = &m->parts[i];
  char name[MIME_NAME_MAX];
  apimsg_part_name(m, i, name, sizeof name);
  json_t *a = json_object();
  if (item)
    json_object_set_new(a, "attachmentType", json_string("file"));
  else
    json_object_set_new(a, "@odata.type", json_string("#microsoft.graph.fileAttachment"));
  json_object_set_new(a, "name", jstr(name));
  if (item)
    json_object_set_new(a, "size", json_integer((json_int_t)p->size));
  if (!strncmp(p->type, "text/", 5) && p->charset[0]) { /* the text's bytes are as sent */
    char ct[MIME_TYPE_MAX + 80];
    snprintf(ct, sizeof ct, "%s; charset=%s", p->type, p->charset);
    json_object_set_new(a, "contentType", jstr(ct));
  } else {
    json_object_set_new(a, "contentType", jstr(p->type));
  }
  bool inline_ = p->content_id[0] && p->disp != MIME_DISP_ATTACHMENT;
  json_object_set_new(a, "isInline", json_boolean(inline_));
  if (p->content_id[0])
    json_object_set_new(a, "contentId", jstr(p->content_id));
  return a;
}

char *apimsg_graph_attachment_head(const apimsg_info *m, size_t i) {
  stp_json_init();
  char *s = dump(attachment_fields(m, i, false), 64 * 1024);
  if (!s)
    return NULL;
  size_t len = strlen(s); /* ends in '}' */
  static const char tail[] = ",\"contentBytes\":\"";
  s = stp_xrealloc(s, len + sizeof tail);
  memcpy(s + len - 1, tail, sizeof tail);
  return s;
}

char *apimsg_graph_upload_session(const apimsg_info *m, size_t i) {
  stp_json_init();
  json_t *o = json_object();
  json_object_set_new(o, "AttachmentItem", attachment_fields(m, i, true));
  return dump(o, 64 * 1024);
}

bool apimsg_json_str(const char *body, size_t len, const char *key, char *out, size_t cap) {
  int err;
  json_t *doc = body && len ? stp_json_load(body, len, 8, &err) : NULL;
  json_t *v = doc ? json_object_get(doc, key) : NULL;
  bool ok = json_is_string(v) && json_string_length(v) < cap && json_string_length(v) > 0;
  if (ok)
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
  json_decref(doc);
  return ok;
}

/* ---- a top-level member as the body streams ------------------------------------ */

void apimsg_scan_init(apimsg_scan *s, const char *key) {
  memset(s, 0, sizeof *s);
  snprintf(s->key, sizeof s->key, "%s", key);
}

static void scan_put(apimsg_scan *s, char c) {
  if (s->is_key) {
    if (s->klen + 1 < sizeof s->kbuf)
      s->kbuf[s->klen++] = c;
    else
      s->over = true;
  } else if (s->capturing) {
    if (s->vlen + 1 < sizeof s->value && !s->found)
      s->value[s->vlen++] = c;
    else
      s->over = true;
  }
}

/* A string ends: a key is compared, a captured value kept. */
static void scan_str_end(apimsg_scan *s) {
  s->in_str = false;
  if (s->is_key) {
    s->key_match = !s->over && s->klen == strlen(s->key) && !memcmp(s->kbuf, s->key, s->klen);
  } else if (s->capturing && !s->found && !s->over && s->vlen) {
    s->value[s->vlen] = '\0';
    s->found = true;
  }
  s->is_key = s->capturing = s->over = false;
}

static void scan_in_str(apimsg_scan *s, char c) {
  if (s->uhex) {
    int d = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : -1;
    s->u = s->u * 16 + (unsigned)(d < 0 ? 0 : d);
    s->over = s->over || d < 0;
    if (--s->uhex == 0) {
      if (s->u == 0 || s->u >= 0x80)
        s->over = true; /* no NUL, and only ASCII is undone */
      else
        scan_put(s, (char)s->u);
    }
  } else if (s->esc) {
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *k = strchr(from, c);
    s->esc = false;
    if (c == 'u') {
      s->uhex = 4;
      s->u = 0;
    } else if (c && k) {
      scan_put(s, to[k - from]);
    } else {
      s->over = true;
    }
  } else if (c == '\\') {
    s->esc = true;
  } else if (c == '"') {
    scan_str_end(s);
  } else {
    scan_put(s, c);
  }
}

void apimsg_scan_feed(apimsg_scan *s, const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char c = p[i];
    if (s->in_str) {
      scan_in_str(s, c);
      continue;
    }
    switch (c) {
    case '"':
      s->in_str = true;
      s->klen = s->vlen = 0;
      s->is_key = s->depth == 1 && s->expect_key;
      s->capturing = s->depth == 1 && s->value_next;
      s->expect_key = s->value_next = false;
      break;
    case '{':
      s->expect_key = ++s->depth == 1;
      s->value_next = false;
      break;
    case '[':
      s->depth++;
      s->value_next = false;
      break;
    case '}':
    case ']':
      s->depth--;
      break;
    case ':':
      s->value_next = s->depth == 1 && s->key_match;
      s->key_match = false;
      break;
    case ',':
      s->expect_key = s->depth == 1;
      s->value_next = false;
      break;
    case ' ':
    case '\t':
    case '\r':
    case '\n':
      break;
    default: /* a number or a literal */
      s->value_next = false;
      break;
    }
  }
}

bool apimsg_next_range(const char *body, size_t len, uint64_t *start) {
  int err;
  json_t *doc = body && len ? stp_json_load(body, len, 8, &err) : NULL;
  json_t *r = doc ? json_object_get(doc, "nextExpectedRanges") : NULL;
  json_t *first = json_is_array(r) ? json_array_get(r, 0) : NULL;
  const char *s = json_is_string(first) ? json_string_value(first) : NULL;
  bool ok = s && *s >= '0' && *s <= '9';
  uint64_t v = 0;
  for (; ok && *s >= '0' && *s <= '9'; s++)
    v = v < UINT64_C(1) << 50 ? v * 10 + (uint64_t)(*s - '0') : v;
  ok = ok && (*s == '\0' || *s == '-');
  if (ok)
    *start = v;
  json_decref(doc);
  return ok;
}

/* ---- base64 ------------------------------------------------------------------------ */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static size_t quad(const unsigned char *p, size_t n, char *out) {
  unsigned v = (unsigned)p[0] << 16 | (n > 1 ? (unsigned)p[1] << 8 : 0) | (n > 2 ? p[2] : 0);
  out[0] = b64[v >> 18 & 63];
  out[1] = b64[v >> 12 & 63];
  out[2] = n > 1 ? b64[v >> 6 & 63] : '=';
  out[3] = n > 2 ? b64[v & 63] : '=';
  return 4;
}

size_t apimsg_b64_update(apimsg_b64 *b, const void *in, size_t n, char *out) {
  const unsigned char *p = in;
  size_t o = 0;
  while (b->nrem && b->nrem < 3 && n) {
    b->rem[b->nrem++] = *p++;
    n--;
    if (b->nrem == 3) {
      o += quad(b->rem, 3, out + o);
      b->nrem = 0;
    }
  }
  if (b->nrem == 3) {
    o += quad(b->rem, 3, out + o);
    b->nrem = 0;
  }
  for (; n >= 3; p += 3, n -= 3)
    o += quad(p, 3, out + o);
  for (size_t k = 0; k < n; k++)
    b->rem[b->nrem++] = p[k];
  return o;
}

size_t apimsg_b64_final(apimsg_b64 *b, char *out) {
  size_t o = b->nrem ? quad(b->rem, b->nrem, out) : 0;
  b->nrem = 0;
  return o;
}

bool apimsg_path_escape(const char *in, char *out, size_t cap) {
  static const char keep[] = "-._~!$&'()*+,;=:@";
  size_t o = 0;
  for (; *in; in++) {
    unsigned char c = (unsigned char)*in;
    bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 (c && strchr(keep, c));
    if (o + (plain ? 1 : 3) >= cap)
      return false;
    if (plain) {
      out[o++] = (char)c;
    } else {
      snprintf(out + o, 4, "%%%02X", c);
      o += 3;
    }
  }
  out[o] = '\0';
  return true;
}
