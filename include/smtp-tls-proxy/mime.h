/* mime.h - a bounded, streaming MIME reader (RFC 2045-2047, 2183, 2231,
 * 5322), pure.
 *
 * Owns: turning a message fed in arbitrary chunks into events: each header
 * field (unfolded), the start of each entity with what its headers say
 * (type, charset, boundary, transfer encoding, filename, Content-ID,
 * disposition), the decoded bytes of each leaf part (base64 and
 * quoted-printable decoded as they stream; 7bit, 8bit, binary and unknown
 * encodings as they are) and the end of each entity, with the byte range
 * of its body in the input, so a consumer can read one part again from a
 * copy on disk (mime_decoder does the decoding alone). Also the header
 * helpers the API upstreams need: RFC 2047 encoded-words to UTF-8 (glibc
 * iconv for the charsets), parameters with RFC 2231 continuations and
 * charsets, and RFC 5322 address lists.
 * Guarantees: memory is the reader struct itself, whatever the input: a
 * header field is kept up to MIME_FIELD_MAX bytes (the rest is dropped and
 * the field flagged), multiparts nest up to MIME_DEPTH_MAX (deeper ones
 * are leaves); the events do not depend on how the input was split (DATA
 * may come in different pieces, the same bytes in the same order: checked
 * by fuzz_mime); a missing final boundary ends the open parts at the end
 * of input, flagged `truncated`; nothing is ever an error: a malformed
 * message still yields its parts, as mail readers show them.
 */
#ifndef STP_MIME_H
#define STP_MIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MIME_FIELD_MAX (16 * 1024) /* one unfolded header field */
#define MIME_DEPTH_MAX 12          /* nested multiparts */
#define MIME_BOUNDARY_MAX 70       /* RFC 2046 5.1.1 */
#define MIME_TYPE_MAX 128
#define MIME_NAME_MAX 512 /* a filename, UTF-8 */
#define MIME_CID_MAX 256

typedef enum {
  MIME_CTE_7BIT = 0, /* also the default, 8bit, binary and unknown: as is */
  MIME_CTE_BASE64,
  MIME_CTE_QP,
} mime_cte;

typedef enum { MIME_DISP_NONE = 0, MIME_DISP_INLINE, MIME_DISP_ATTACHMENT } mime_disp;

typedef struct mime_part {
  unsigned index;           /* entities in input order; 0 is the message */
  unsigned parent;          /* index of the enclosing multipart (0 for the message) */
  unsigned depth;           /* 0 for the message */
  bool multipart;           /* has children (a multipart type with a boundary, not too deep) */
  bool in_alternative;      /* the parent is multipart/alternative */
  char type[MIME_TYPE_MAX]; /* lower case "type/subtype"; default text/plain */
  char charset[64];         /* lower case; "" when not given */
  char boundary[MIME_BOUNDARY_MAX + 1];
  mime_cte cte;
  mime_disp disp;
  char filename[MIME_NAME_MAX];  /* UTF-8; disposition filename, else type's name */
  char content_id[MIME_CID_MAX]; /* without the angle brackets */
  uint64_t body_start;           /* input offset of the body's first byte */
  /* Final at MIME_EV_END: */
  uint64_t body_end;     /* input offset just past the body (before the CRLF of
                            the boundary line that ends it) */
  uint64_t decoded_size; /* leaf parts: bytes delivered as DATA */
  bool truncated;        /* ended by the end of input, not by its boundary */
  unsigned seen;         /* private: which MIME fields were applied */
} mime_part;

typedef enum {
  MIME_EV_HEADER, /* name/value: a field of the entity being read */
  MIME_EV_BEGIN,  /* its headers are complete: part describes it */
  MIME_EV_DATA,   /* decoded body bytes of a leaf part */
  MIME_EV_END,    /* the entity ended */
} mime_ev_kind;

typedef struct mime_event {
  mime_ev_kind kind;
  const mime_part *part; /* the entity (HEADER: as far as known) */
  const char *name;      /* HEADER: field name as written */
  size_t name_len;
  const char *data; /* HEADER: the unfolded value, leading blanks dropped;
                       DATA: decoded bytes */
  size_t len;
  bool cut; /* HEADER: longer than MIME_FIELD_MAX, the rest dropped */
} mime_event;

typedef void (*mime_cb)(void *arg, const mime_event *ev);

/* The streaming decoder of one body: what the reader uses for DATA, and
 * what reads a part again from a byte range of the message. */
typedef struct mime_decoder {
  mime_cte cte;
  unsigned acc, nacc; /* base64: bits and sextets; qp: the escape state */
  bool b64_done;      /* base64 padding seen */
  char qp_hold[80];   /* qp: blanks that may be trailing (dropped at line end) */
  size_t qp_nhold;
  char qp_hex;
} mime_decoder;

void mime_decoder_init(mime_decoder *d, mime_cte cte);
/* Decode in[0..n) into out (room for n bytes always suffices); returns the
 * count. mime_decoder_finish() flushes what a last line held back. */
size_t mime_decode(mime_decoder *d, const char *in, size_t n, char *out);
size_t mime_decoder_finish(mime_decoder *d, char *out, size_t cap);

/* The reader: a large struct, meant to live inside its owner. */
typedef struct mime_frame {
  char boundary[MIME_BOUNDARY_MAX + 1];
  size_t blen;
  unsigned index; /* the multipart's entity index */
  bool alternative;
  bool closed;      /* its close delimiter was seen: epilogue */
  bool child_open;  /* a child entity is being read */
  mime_part parent; /* the multipart itself, ended when the frame goes */
} mime_frame;

typedef struct mime_reader {
  mime_cb cb;
  void *arg;
  uint64_t off;        /* input bytes consumed */
  int mode;            /* private: headers, body, preamble, epilogue */
  mime_part cur;       /* the entity being read */
  unsigned next_index; /* for the next entity */
  mime_frame stack[MIME_DEPTH_MAX];
  unsigned depth; /* frames in use */
  /* the line being read */
  char line[MIME_BOUNDARY_MAX + 48]; /* the start of a line, to spot boundaries */
  size_t line_len;
  bool line_content; /* settled: not a boundary, its bytes passed on */
  bool line_any;     /* the settled line had bytes */
  bool line_cr;      /* a CR was the last byte seen: the line end may follow */
  uint64_t line_off; /* input offset of the line's first byte */
  char eol[2];       /* the previous line's end, held until the next line */
  size_t eol_len;    /* says it is not a boundary's */
  /* header fields */
  char field[MIME_FIELD_MAX];
  size_t field_len;
  bool field_cut, field_open;
  bool field_new;  /* the field began on this line: its name is checked at its end */
  bool disp_name;  /* the filename came from Content-Disposition */
  unsigned fields; /* of this entity; past MIME_FIELDS_MAX they are dropped */
  mime_decoder dec;
  char out[4096]; /* decoded bytes awaiting a DATA event */
  size_t out_len;
  bool finished;
} mime_reader;

#define MIME_FIELDS_MAX 1000 /* header fields per entity that produce events */

void mime_reader_init(mime_reader *r, mime_cb cb, void *arg);
void mime_feed(mime_reader *r, const char *p, size_t n);
/* End of input: every open entity ends (truncated unless closed). */
void mime_finish(mime_reader *r);

/* ---- header helpers ----------------------------------------------------- */

/* Charset text to UTF-8 (iconv; "" or us-ascii: as is). Returns the bytes
 * written (out is NUL-terminated, cap >= 1) or -1 when the charset is
 * unknown or the text is not valid in it. */
long mime_to_utf8(const char *charset, const char *in, size_t n, char *out, size_t cap);
/* Valid UTF-8 as it is; anything else read as Windows-1252 (what 8-bit
 * headers of old devices are, in practice). Always NUL-terminated; output
 * cut at a character boundary when cap is short. Returns the length. */
size_t mime_utf8_or_1252(const char *in, size_t n, char *out, size_t cap);
bool mime_is_utf8(const char *p, size_t n);

/* An unstructured header value (Subject, a display name) with RFC 2047
 * encoded-words decoded, blanks between adjacent words dropped, and raw
 * 8-bit text handled by mime_utf8_or_1252. Returns the length written. */
size_t mime_decode_words(const char *in, size_t n, char *out, size_t cap);

/* A parameter of a structured field (Content-Type, Content-Disposition),
 * name matched without case: RFC 2231 name*=charset'lang'..., name*0=,
 * name*1*=..., quoted strings; a plain value holding encoded-words (as
 * many mailers write filenames) is decoded too. Returns true when found;
 * out is UTF-8, NUL-terminated. */
bool mime_param(const char *value, size_t n, const char *name, char *out, size_t cap);
/* The first token (e.g. "text/plain", "attachment"), lower case. */
void mime_value_token(const char *value, size_t n, char *out, size_t cap);

/* ---- addresses ----------------------------------------------------------- */
typedef struct mime_addr {
  char addr[321]; /* local@domain, as written (no angle brackets) */
  char name[256]; /* display name, UTF-8, "" when none */
} mime_addr;

/* RFC 5322 address-list (To, Cc, Bcc, From, Reply-To): name-addr,
 * addr-spec, groups, comments, quoted strings, obsolete forms tolerated.
 * Fills up to max entries; returns the number found (which may exceed max:
 * the caller knows some were dropped). */
size_t mime_addr_list(const char *value, size_t n, mime_addr *out, size_t max);

#endif
