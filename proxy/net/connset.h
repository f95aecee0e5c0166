/* connset.h - the live connections of a small server (metrics, admin, the
 * OAuth redirect listener) and the rule for the server's own end.
 *
 * A connection embeds a connset_link as its FIRST member, so a link is the
 * connection. The server may be freed once it is stopping, its listening
 * socket went through its close callback and its last connection is gone
 * (connset_finished); each server checks that after each of those events.
 */
#ifndef STP_CONNSET_H
#define STP_CONNSET_H

#include <stdbool.h>

typedef struct connset_link {
  struct connset_link *prev, *next;
} connset_link;

typedef struct connset {
  connset_link *head;
  unsigned n;
  bool stopping;
  bool srv_open; /* the listening socket is not through its close callback */
} connset;

/* Link c in; the count it returns includes c (the caller bounds it). */
unsigned connset_add(connset *s, connset_link *c);
void connset_remove(connset *s, connset_link *c);
bool connset_finished(const connset *s);

#endif
