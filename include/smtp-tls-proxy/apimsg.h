/* apimsg.h - the pure half of the HTTP API upstreams (apiconn.c): what a
 * message is for Microsoft Graph and the Gmail API.
 *
 * Owns: undoing the dot-stuffing of what the session sends upstream;
 * gathering, from the MIME reader's events while the message streams, the
 * headers the APIs need (From, To, Cc, Reply-To, Subject, Message-ID) and
 * a table of its leaf parts with their byte ranges; the recipients rule
 * (the envelope recipients are exactly the recipients: the ones not in To
 * or Cc become Bcc); Graph's choice of body and attachments and its JSON
 * (draft message, fileAttachment, createUploadSession, sendMail with
 * saveToSentItems), built with jansson; base64 as a stream; the request
 * paths, escaped. Guarantees: every table and string has a bound
 * (APIMSG_*); JSON strings are valid UTF-8 (8-bit header text is read as
 * Windows-1252); nothing here does I/O.
 */
#ifndef STP_APIMSG_H
#define STP_APIMSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtp-tls-proxy/mime.h"
#include "smtp-tls-proxy/util.h"

#define APIMSG_ADDR_BYTES (64 * 1024) /* addresses and names of one header */
#define APIMSG_PARTS_MAX 500          /* leaf parts kept per message */
#define APIMSG_BODY_MAX (512 * 1024)  /* Graph: a text body larger than this is attached */
/* Gmail's media upload limit (the discovery document's maxSize). */
#define APIMSG_GMAIL_MAX (35u * 1024 * 1024)
/* Graph: raw MIME whose base64 stays under the 4 MB request limit goes by
 * sendMail; anything larger goes as a draft. */
#define APIMSG_GRAPH_REQUEST_MAX 4000000u
/* Graph: an attachment whose JSON request stays under the 4 MB limit is
 * posted whole; a larger one goes through an upload session. */
#define APIMSG_UPLOAD_CHUNK (12u * 320 * 1024) /* 3.75 MiB: 320 KiB multiples, <= 4 MiB */

/* ---- dot-unstuffing ------------------------------------------------------- */
typedef struct apimsg_unstuff {
  bool mid_line; /* the last byte was not a line's end */
} apimsg_unstuff;
/* in: CRLF-framed, dot-stuffed lines (what upconn_body gets); out gets the
 * message (room for n bytes suffices). */
size_t apimsg_unstuff_feed(apimsg_unstuff *u, const char *in, size_t n, char *out);

/* ---- addresses ----------------------------------------------------------------- */
typedef struct apimsg_addrs {
  char *buf; /* "addr\0name\0" pairs */
  size_t len, cap;
  unsigned n;
  unsigned dropped; /* did not fit */
} apimsg_addrs;
void apimsg_addrs_add(apimsg_addrs *a, const char *addr, const char *name);
bool apimsg_addrs_has(const apimsg_addrs *a, const char *addr); /* any case */
/* Walk: *pos starts at 0; NULL at the end. */
const char *apimsg_addrs_next(const apimsg_addrs *a, size_t *pos, const char **name);
void apimsg_addrs_free(apimsg_addrs *a);

/* ---- the message ---------------------------------------------------------------- */
typedef struct apimsg_part {
  unsigned index;
  char type[MIME_TYPE_MAX];
  char charset[64];
  mime_cte cte;
  mime_disp disp;
  char filename[MIME_NAME_MAX];
  char content_id[MIME_CID_MAX];
  bool in_alternative;
  uint64_t start, end; /* the body's byte range in the message */
  uint64_t size;       /* decoded */
} apimsg_part;

typedef struct apimsg_info {
  apimsg_addrs from, to, cc, reply_to;
  bool has_bcc;
  char subject[2048]; /* decoded, UTF-8 */
  bool has_subject;
  char message_id[512];
  apimsg_part *parts; /* leaves, in order */
  size_t nparts, cap;
  bool parts_dropped; /* more than APIMSG_PARTS_MAX */
} apimsg_info;

void apimsg_info_init(apimsg_info *m);
void apimsg_info_free(apimsg_info *m);
/* The mime_cb that fills m (arg: the apimsg_info). */
void apimsg_on_mime(void *arg, const mime_event *ev);

/* ---- recipients -------------------------------------------------------------- */
/* The envelope recipients not in To or Cc, as a "Bcc:" field folded below
 * 78 columns ("" when there are none). Returns 0 or STP_EFULL. */
int apimsg_bcc_field(const apimsg_info *m, const char *const *rcpts, size_t n, stp_buf *out);
/* How many To/Cc addresses are not envelope recipients (for the log: the
 * raw-MIME APIs send to them too). */
size_t apimsg_header_only(const apimsg_info *m, const char *const *rcpts, size_t n);

/* ---- Graph -------------------------------------------------------------------- */
/* The part that becomes the body (first text/html, else first text/plain,
 * not an attachment, at most APIMSG_BODY_MAX decoded), or -1. */
long apimsg_body_part(const apimsg_info *m, bool *html);
/* Whether part i goes as an attachment (not the body, nor an alternative
 * rendering of it). */
bool apimsg_is_attachment(const apimsg_info *m, size_t i, long body);
/* The name Graph shows: the filename, else "attachment-N.<ext>". */
void apimsg_part_name(const apimsg_info *m, size_t i, char *out, size_t cap);

/* The message resource for POST /messages, or, with `open_attachments`,
 * everything up to and including "\"attachments\":[" for sendMail with
 * attachments streamed after it. Recipients: To and Cc as far as they
 * are envelope recipients, every other envelope recipient in Bcc. body:
 * UTF-8. malloc'd, NUL-terminated; NULL when over `max` bytes. */
char *apimsg_graph_message(const apimsg_info *m, const char *const *rcpts, size_t n,
                           const char *body, size_t body_len, bool html, bool open_attachments,
                           size_t max);
/* A fileAttachment up to its "contentBytes":" (the base64 follows, then
 * APIMSG_ATTACH_TAIL). malloc'd. */
char *apimsg_graph_attachment_head(const apimsg_info *m, size_t i);
#define APIMSG_ATTACH_TAIL "\"}"
/* {"AttachmentItem": {...}} for createUploadSession. malloc'd. */
char *apimsg_graph_upload_session(const apimsg_info *m, size_t i);

/* A string member of a JSON object body (e.g. "id", "uploadUrl"); false
 * when missing. */
bool apimsg_json_str(const char *body, size_t len, const char *key, char *out, size_t cap);
/* A string member of the top-level JSON object, found as the body streams
 * past (Graph echoes a whole message, megabytes, to read one "id" from):
 * constant memory, any split of the input; the first occurrence wins;
 * escapes are undone for ASCII (\uXXXX beyond ASCII, or a value that does
 * not fit, is no value). Nothing is validated beyond that: a caller that
 * holds a prefix of the body also checks what it can of it. */
#define APIMSG_SCAN_VALUE_MAX 2048
typedef struct apimsg_scan {
  char key[32];
  char value[APIMSG_SCAN_VALUE_MAX];
  bool found;
  /* private */
  int depth;
  bool in_str, esc, is_key, expect_key, key_match, value_next, capturing, over;
  int uhex;
  unsigned u;
  char kbuf[32];
  size_t klen, vlen;
} apimsg_scan;
void apimsg_scan_init(apimsg_scan *s, const char *key);
void apimsg_scan_feed(apimsg_scan *s, const char *p, size_t n);

/* Graph upload: nextExpectedRanges[0]'s start ("2097152" or "2097152-"). */
bool apimsg_next_range(const char *body, size_t len, uint64_t *start);

/* ---- base64 as a stream --------------------------------------------------------- */
typedef struct apimsg_b64 {
  unsigned char rem[3];
  size_t nrem;
} apimsg_b64;
static inline uint64_t apimsg_b64_len(uint64_t n) {
  return (n + 2) / 3 * 4;
}
/* out needs room for (n + 2) / 3 * 4 bytes. */
size_t apimsg_b64_update(apimsg_b64 *b, const void *in, size_t n, char *out);
size_t apimsg_b64_final(apimsg_b64 *b, char *out); /* at most 4 */

/* A path segment: unreserved, sub-delims, ':' and '@' kept, the rest
 * percent-encoded. Returns false when it does not fit. */
bool apimsg_path_escape(const char *in, char *out, size_t cap);

#endif
