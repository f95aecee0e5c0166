/* defer.h - calls made from the loop instead of from inside the caller.
 *
 * The project's one rule for callbacks: a module never calls its owner back
 * from inside a call the owner made. An outcome that is known at once (a
 * back-off, a pooled connection, a local refusal, a failed write) is posted
 * here and delivered on the next turn of the loop, when no caller is on the
 * stack (OpenSMTPD's io_frame_leave, Redis's beforeSleep).
 *
 * Owns: one idle handle per process and an intrusive queue of items that
 * live inside their owners (no allocation). Guarantees: an item is called at
 * most once per post, in posting order, never from inside defer_post(); an
 * item posted while the queue runs waits for the next turn, so a chain of
 * posts cannot starve I/O; defer_cancel() makes a queued item inert, so an
 * owner cancels its items before it is freed.
 */
#ifndef STP_DEFER_H
#define STP_DEFER_H

#include <stdbool.h>
#include <uv.h>

typedef struct defer_item {
  struct defer_item *prev, *next;
  void (*fn)(void *arg);
  void *arg;
  unsigned long turn; /* the queue's run count when posted */
  bool queued;
} defer_item;

/* Queue fn(arg) for the next turn of `loop`. Posting an item that is
 * already queued changes nothing (one call follows). */
void defer_post(uv_loop_t *loop, defer_item *it, void (*fn)(void *arg), void *arg);
/* Unqueue; safe on an item that is not queued. */
void defer_cancel(defer_item *it);
bool defer_queued(const defer_item *it);
/* Close the handle once the loop has run dry (before uv_loop_close). */
void defer_shutdown(void);

#endif
