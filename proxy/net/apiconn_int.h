/* apiconn_int.h - what apiconn.c (the connection and the transaction),
 * apisend.c (the requests that send a message) and apievent.c (the layer
 * under both) share. Private to them. Calls go one way: apiconn.c ->
 * apisend.c -> apievent.c. */
#ifndef STP_APICONN_INT_H
#define STP_APICONN_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "apibody.h"
#include "apiconn.h"
#include "defer.h"
#include "http_client.h"
#include "msgcopy.h"
#include "oauth2_net.h"
#include "smtp-tls-proxy/apimap.h"
#include "smtp-tls-proxy/apimsg.h"
#include "smtp-tls-proxy/mime.h"

typedef enum { AC_TOKEN, AC_PROBE, AC_READY, AC_BODY, AC_SENDING, AC_DEAD } ac_state;
/* What is owed to the upconn (apiconn.pending). */
enum { P_NONE, P_READY, P_REPLY, P_FAILED };

/* The requests of one message, in the order they may come. */
typedef enum {
  SEND_NONE = 0,
  SEND_GMAIL,      /* media upload */
  SEND_MIME,       /* Graph sendMail, base64 MIME */
  SEND_JSON,       /* Graph sendMail, JSON with attachments, saveToSentItems false */
  SEND_DRAFT,      /* Graph: create the draft */
  SEND_ATTACH,     /* Graph: a small attachment */
  SEND_SESSION,    /* Graph: createUploadSession */
  SEND_UPLOAD,     /* Graph: one chunk */
  SEND_SEND_DRAFT, /* Graph: send the draft */
} send_step;

struct apiconn {
  const apiconn_events *ev; /* NULL once closed */
  void *up;
  uv_loop_t *loop;
  srv_gen *gen;
  size_t index;
  const stp_upstream_cfg *cfg;
  char sid[16];
  ac_state state;
  unsigned depth; /* callbacks of ours on the stack */
  bool closed;    /* apiconn_close came: freed when depth is 0 */
  http_client *http;
  http_call *call; /* the request in flight */
  tok_waiter tw;
  char *token;                  /* cleansed */
  void (*tok_then)(apiconn *a); /* what waits for the token */
  /* an answer owed to the upconn, delivered from the loop */
  defer_item ev_item;
  int pending; /* 0, 1 ready, 2 reply, 3 failed */
  smtp_reply reply;
  upstream_fail why;
  char detail[700];
  bool busy; /* a request's answer is owed */
  /* the transaction */
  bool in_txn;
  char from[SMTP_ADDR_MAX + 1];
  char **rcpt;
  size_t nrcpt;
  msgcopy *copy;
  char path[600];
  apimsg_unstuff unstuff;
  mime_reader *mime;
  apimsg_info info;
  uint64_t size;
  bool too_big; /* over what this API takes: refused at the dot */
  /* sending */
  send_step step;
  const char *how; /* for the log: gmail, graph-sendmail, graph-json, graph-draft */
  bool refreshed;  /* a 401 was answered with a new token, for this message */
  api_body *body;
  api_partstream *ps; /* the attachment being uploaded */
  stp_buf bcc;
  char *json; /* the draft, or sendMail's JSON head */
  char *text; /* Graph: the body text, UTF-8 */
  void (*text_then)(apiconn *a);
  size_t text_len;
  bool html;
  long body_part;
  char draft_id[512]; /* a draft in the mailbox: deleted at the reset unless sent */
  apimsg_scan scan;   /* the answer's "id" or "uploadUrl", read as it streams */
  uv_timer_t *retry;  /* the pause before a temporary failure's one more try */
  bool retried;       /* this message had its one more try */
  size_t att;         /* the part being attached */
  uint64_t up_off;    /* the next byte of the upload */
  char upload_url[2048];
  unsigned n_attached, n_uploaded;
  uint64_t t0;
  bool refuse_creds;
};

/* ---- apievent.c: the layer both files below build on ---- */
/* Around a callback of ours: the object is freed at the outermost leave
 * after apiconn_close (which returns false then). */
void api_enter(apiconn *a);
bool api_leave(apiconn *a);
void api_destroy(apiconn *a);
/* The transaction ends: copy, MIME view, recipients and what a send holds
 * (bodies, streams, the draft id) are dropped. */
void api_txn_reset(apiconn *a);
void api_send_reset(apiconn *a);
/* An answer to a request of the upconn's, known at once: from the loop. */
void api_post_reply(apiconn *a, int code, const char *text);
/* Deliver what is pending now (from a loop callback). */
void api_deliver(apiconn *a);
/* The answer to the final dot; the transaction ends. */
void api_final_reply(apiconn *a, int code, const char *text);
/* A transport or token failure: the upstream failed (the upconn detaches). */
void api_fail(apiconn *a, upstream_fail why, const char *detail);
void api_trace(apiconn *a, bool out, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A token for the request to come (cached, or fetched), then `then`. */
void api_need_token(apiconn *a, void (*then)(apiconn *a));

/* ---- apidraft.c: under apievent.c ---- */
/* A Graph draft a send left (a->draft_id, then cleared) is deleted by a
 * detached object that outlives the apiconn (see apidraft.c). */
void api_draft_delete(apiconn *a);

/* ---- apisend.c ---- */
/* The copy is on disk: choose the way and send. */
void api_send_start(apiconn *a);

#endif
