/* queuectl.h - the line protocol of the spool's control socket, pure.
 *
 * Owns: the request grammar shared by `smtp-tls-proxy -c FILE queue ...`
 * (the client) and the running proxy (the server in proxy/net), and the
 * shape of the answer. One request per connection, one line:
 *   LIST | SHOW <id> | RETRY [<id>] | HOLD <id> | RELEASE <id> | DELETE <id>
 * The answer is lines: ". text" for output, ending in "OK text" or
 * "ERR text". Guarantees: ids are validated (16 hex digits), so no request
 * can name a file outside the spool; lines are bounded.
 */
#ifndef STP_QUEUECTL_H
#define STP_QUEUECTL_H

#include <stdbool.h>
#include <stddef.h>

#include "smtp-tls-proxy/spool.h"

#define QUEUECTL_LINE_MAX 128    /* a request */
#define QUEUECTL_REPLY_MAX 65536 /* one answer line */

typedef enum { QC_LIST = 0, QC_SHOW, QC_RETRY, QC_HOLD, QC_RELEASE, QC_DELETE } queuectl_op;

typedef struct queuectl_req {
  queuectl_op op;
  bool all; /* RETRY without an id */
  char id[SPOOL_ID_LEN + 1];
} queuectl_req;

/* The words after "queue" on the command line -> the request line with
 * its LF. 0, or STP_ESYNTAX with a message for the user in err. */
int queuectl_from_args(int argc, char *const argv[], char *line, size_t cap, char *err,
                       size_t errcap);
/* One request line (without LF). 0 or STP_ESYNTAX. */
int queuectl_parse(const char *line, size_t len, queuectl_req *out);
const char *queuectl_op_name(queuectl_op op);

typedef enum { QC_REPLY_DATA, QC_REPLY_OK, QC_REPLY_ERR, QC_REPLY_BAD } queuectl_reply_kind;
/* Classifies an answer line; *text points at what to show. */
queuectl_reply_kind queuectl_reply(const char *line, const char **text);

/* Makes s[0..n) safe for a terminal, in place: C0 controls and DEL become
 * spaces; C1 controls (U+0080..U+009F) and bytes that are not valid UTF-8
 * (raw 0x80..0xFF among them) become '?'; valid UTF-8 stays. Returns the
 * new length (never more than n; NUL-terminated when shorter). Both the
 * server (every answer line) and the client (before printing) apply it:
 * addresses and upstream replies reach `queue list` and `queue show`. */
size_t queuectl_printable(char *s, size_t n);

#endif
