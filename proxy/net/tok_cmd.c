/* tok_cmd.c - token_command: run the configured program (no shell), read
 * one token from its stdout (bounded), kill it at the timeout.
 *
 * Owns: the child process, its stdout pipe and a timer; the run frees
 * itself once all three handles are closed. The outcome goes to
 * tok_src_done from the loop (an exit, a read, the timer), never from
 * inside tok_cmd_start.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

#define CMD_OUTPUT_MAX (16 * 1024)

typedef struct cmdrun {
  tok_src *src;
  uv_process_t proc;
  uv_pipe_t out;
  uv_timer_t timer;
  int open; /* handles not yet closed */
  bool exited, eof, done;
  int64_t status;
  int term_signal;
  char buf[CMD_OUTPUT_MAX + 1];
  size_t len;
  const char *problem;
} cmdrun;

static void cmd_closed(uv_handle_t *h) {
  cmdrun *c = h->data;
  if (--c->open > 0)
    return;
  stp_cleanse(c->buf, sizeof c->buf);
  free(c);
}

static void cmd_close_all(cmdrun *c) {
  if (!uv_is_closing((uv_handle_t *)&c->timer))
    uv_close((uv_handle_t *)&c->timer, cmd_closed);
  if (!uv_is_closing((uv_handle_t *)&c->out))
    uv_close((uv_handle_t *)&c->out, cmd_closed);
  if (c->exited && !uv_is_closing((uv_handle_t *)&c->proc))
    uv_close((uv_handle_t *)&c->proc, cmd_closed);
}

static void cmd_finish(cmdrun *c) {
  if (c->done || !(c->exited && (c->eof || c->problem)))
    return;
  c->done = true;
  char why[200];
  char *token = NULL;
  if (c->problem) {
    snprintf(why, sizeof why, "token_command %s", c->problem);
  } else if (c->term_signal) {
    snprintf(why, sizeof why, "token_command killed by signal %d", c->term_signal);
  } else if (c->status != 0) {
    snprintf(why, sizeof why, "token_command exited with status %lld", (long long)c->status);
  } else if (oauth2_token_from_output(c->buf, c->len, &token) < 0) {
    snprintf(why, sizeof why,
             "token_command printed no usable token (one line of printable "
             "ASCII expected)");
  }
  cmd_close_all(c);
  c->src->done(c->src, NULL, token, why);
}

static void cmd_exit_cb(uv_process_t *p, int64_t status, int sig) {
  cmdrun *c = p->data;
  c->exited = true;
  c->status = status;
  c->term_signal = sig;
  if (c->done) {
    uv_close((uv_handle_t *)&c->proc, cmd_closed);
    return;
  }
  cmd_finish(c);
}

static void cmd_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b) {
  cmdrun *c = h->data;
  (void)sz;
  *b = uv_buf_init(c->buf + c->len, (unsigned)(sizeof c->buf - c->len));
}

static void cmd_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  cmdrun *c = s->data;
  (void)b;
  if (n > 0) {
    c->len += (size_t)n;
    if (c->len > CMD_OUTPUT_MAX && !c->problem) {
      c->problem = "printed more than 16 KiB";
      uv_process_kill(&c->proc, SIGKILL);
    }
  } else if (n < 0) {
    c->eof = true;
    uv_read_stop(s);
  }
  cmd_finish(c);
}

static void cmd_timer_cb(uv_timer_t *t) {
  cmdrun *c = t->data;
  if (!c->problem)
    c->problem = "did not finish in time (killed)";
  if (!c->exited)
    uv_process_kill(&c->proc, SIGKILL);
  cmd_finish(c);
}

void tok_cmd_start(uv_loop_t *loop, tok_src *s) {
  cmdrun *c = stp_xcalloc(1, sizeof *c);
  c->src = s;
  s->fetching = true;
  uv_pipe_init(loop, &c->out, 0);
  uv_timer_init(loop, &c->timer);
  c->out.data = c->timer.data = c->proc.data = c;
  c->open = 3;
  uv_stdio_container_t stdio[3] = {
      {.flags = UV_IGNORE},
      {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&c->out},
      {.flags = UV_INHERIT_FD, .data.fd = 2}};
  uv_process_options_t opt = {.exit_cb = cmd_exit_cb,
                              .file = s->argv[0],
                              .args = s->argv,
                              .stdio_count = 3,
                              .stdio = stdio};
  int rc = uv_spawn(loop, &c->proc, &opt);
  if (rc < 0) {
    /* The handle is initialised anyway and must be closed; report from the
     * loop, as the caller is still inside tok_get. */
    static char spawn_err[200];
    snprintf(spawn_err, sizeof spawn_err, "could not be started: %s", uv_strerror(rc));
    c->problem = spawn_err;
    c->exited = true;
    c->eof = true;
    uv_timer_start(&c->timer, cmd_timer_cb, 0, 0);
    return;
  }
  uv_read_start((uv_stream_t *)&c->out, cmd_alloc, cmd_read);
  uv_timer_start(&c->timer, cmd_timer_cb, s->timeout_ms, 0);
}
