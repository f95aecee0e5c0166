/* queuectl.c - the control socket's line protocol (see queuectl.h). */
#include "smtp-tls-proxy/queuectl.h"

#include <stdio.h>
#include <string.h>

#include "smtp-tls-proxy/util.h"

static const struct {
  const char *word; /* command line */
  const char *verb; /* protocol */
  bool needs_id, id_optional;
} ops[] = {
    [QC_LIST] = {"list", "LIST", false, false},
    [QC_SHOW] = {"show", "SHOW", true, false},
    [QC_RETRY] = {"retry", "RETRY", true, true},
    [QC_HOLD] = {"hold", "HOLD", true, false},
    [QC_RELEASE] = {"release", "RELEASE", true, false},
    [QC_DELETE] = {"delete", "DELETE", true, false},
};
#define N_OPS (sizeof ops / sizeof *ops)

const char *queuectl_op_name(queuectl_op op) {
  return (unsigned)op < N_OPS ? ops[op].word : "?";
}

int queuectl_from_args(int argc, char *const argv[], char *line, size_t cap, char *err,
                       size_t errcap) {
  if (argc < 1) {
    snprintf(err, errcap,
             "queue needs a command: list, show ID, retry [ID], hold ID, "
             "release ID or delete ID");
    return STP_ESYNTAX;
  }
  for (size_t i = 0; i < N_OPS; i++) {
    if (strcmp(argv[0], ops[i].word))
      continue;
    int want = ops[i].needs_id ? 2 : 1;
    if (argc > want || (argc < want && !ops[i].id_optional)) {
      snprintf(err, errcap, "usage: queue %s%s", ops[i].word,
               !ops[i].needs_id     ? ""
               : ops[i].id_optional ? " [ID]"
                                    : " ID");
      return STP_ESYNTAX;
    }
    if (argc == 2 && !spool_id_valid(argv[1])) {
      snprintf(err, errcap, "'%s' is not a spool id (16 hex digits, as `queue list` shows)",
               argv[1]);
      return STP_ESYNTAX;
    }
    snprintf(line, cap, "%s%s%s\n", ops[i].verb, argc == 2 ? " " : "", argc == 2 ? argv[1] : "");
    return STP_OK;
  }
  snprintf(err, errcap, "unknown queue command '%s' (list, show, retry, hold, release, delete)",
           argv[0]);
  return STP_ESYNTAX;
}

int queuectl_parse(const char *line, size_t len, queuectl_req *out) {
  memset(out, 0, sizeof *out);
  if (len >= QUEUECTL_LINE_MAX || memchr(line, '\0', len))
    return STP_ESYNTAX;
  char buf[QUEUECTL_LINE_MAX];
  memcpy(buf, line, len);
  buf[len] = '\0';
  if (len && buf[len - 1] == '\r')
    buf[--len] = '\0';
  char *sp = strchr(buf, ' ');
  const char *arg = sp ? sp + 1 : NULL;
  if (sp)
    *sp = '\0';
  for (size_t i = 0; i < N_OPS; i++) {
    if (strcmp(buf, ops[i].verb))
      continue;
    out->op = (queuectl_op)i;
    if (!arg) {
      out->all = ops[i].id_optional;
      return !ops[i].needs_id || ops[i].id_optional ? STP_OK : STP_ESYNTAX;
    }
    if (!ops[i].needs_id || !spool_id_valid(arg))
      return STP_ESYNTAX;
    memcpy(out->id, arg, SPOOL_ID_LEN + 1);
    return STP_OK;
  }
  return STP_ESYNTAX;
}

queuectl_reply_kind queuectl_reply(const char *line, const char **text) {
  if (!strncmp(line, ". ", 2) || !strcmp(line, ".")) {
    *text = line[1] ? line + 2 : line + 1;
    return QC_REPLY_DATA;
  }
  if (!strncmp(line, "OK", 2) && (line[2] == ' ' || !line[2])) {
    *text = line[2] ? line + 3 : line + 2;
    return QC_REPLY_OK;
  }
  if (!strncmp(line, "ERR", 3) && (line[3] == ' ' || !line[3])) {
    *text = line[3] ? line + 4 : line + 3;
    return QC_REPLY_ERR;
  }
  *text = line;
  return QC_REPLY_BAD;
}

size_t queuectl_printable(char *s, size_t n) {
  const unsigned char *in = (const unsigned char *)s;
  size_t i = 0, o = 0;
  while (i < n) {
    unsigned c = in[i];
    uint32_t cp = 0;
    if (c < 0x80) {
      s[o++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
      i++;
      continue;
    }
    size_t len = stp_utf8_seq(in + i, n - i, &cp);
    if (!len || (cp >= 0x80 && cp <= 0x9f)) { /* a raw byte, or a C1 control */
      s[o++] = '?';
      i += len ? len : 1;
      continue;
    }
    memmove(s + o, s + i, len);
    o += len;
    i += len;
  }
  if (o < n)
    s[o] = '\0';
  return o;
}
