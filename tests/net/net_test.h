/* net_test.h - a small test runner for stp_net, in the style of libuv's
 * test/: one file per behaviour, each test a function run in a forked
 * child (a crash or a hang fails that test only), callbacks counted, the
 * loop closed cleanly at the end. No Criterion: it brings OpenSSL 3 into
 * the process, and stp_net links BoringSSL.
 *
 * A test uses the loop net_loop(), bounded runs (net_run_until), ASSERT*
 * (abort with file:line), and CALL(expr) around every call it makes into a
 * module: a callback that runs while a CALL is on the stack breaks the
 * project's callbacks rule, and NET_CB_ENTER fails the test when it sees
 * one. After the test returns, the runner closes the loop and fails the
 * test if a handle is left open.
 */
#ifndef STP_NET_TEST_H
#define STP_NET_TEST_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#define ASSERT(x)                                                                                  \
  do {                                                                                             \
    if (!(x)) {                                                                                    \
      fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #x);                    \
      abort();                                                                                     \
    }                                                                                              \
  } while (0)

#define ASSERT_EQ(a, b)                                                                            \
  do {                                                                                             \
    long long a_ = (long long)(a), b_ = (long long)(b);                                            \
    if (a_ != b_) {                                                                                \
      fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, #b, a_,    \
              b_);                                                                                 \
      abort();                                                                                     \
    }                                                                                              \
  } while (0)

#define ASSERT_CONTAINS(hay, needle)                                                               \
  do {                                                                                             \
    const char *h_ = (hay);                                                                        \
    if (!h_ || !strstr(h_, (needle))) {                                                            \
      fprintf(stderr, "%s:%d: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__,               \
              h_ ? h_ : "(null)", (needle));                                                       \
      abort();                                                                                     \
    }                                                                                              \
  } while (0)

extern int net_inside; /* CALLs on the stack */
#define CALL(expr)                                                                                 \
  do {                                                                                             \
    net_inside++;                                                                                  \
    expr;                                                                                          \
    net_inside--;                                                                                  \
  } while (0)
/* First line of every callback a test gives a module. */
#define NET_CB_ENTER() ASSERT(net_inside == 0 && "callback from inside a call")

uv_loop_t *net_loop(void);
/* Run the loop until *flag is true or ms pass; returns *flag. */
bool net_run_until(const bool *flag, uint64_t ms);
/* Run the loop for ms (timers, I/O), whatever happens. */
void net_run_for(uint64_t ms);
/* uv_close and run the loop until the close callback ran: for handles
 * that live on a test's stack. */
void net_close(uv_handle_t *h);
/* Directory of the test PKI (tests/tools/gen_certs.sh): ca.crt,
 * server.crt/.key (localhost, 127.0.0.1), wrongname.*, selfsigned.*. */
const char *net_certs(void);
char *net_cert_path(const char *file); /* static buffer */

/* Bind a TCP listener to 127.0.0.1:0; returns the port. */
int net_listen(uv_tcp_t *srv, uv_connection_cb cb, void *data);
/* A port nobody listens on (bound, then closed), and a listener that
 * never accepts and whose backlog is full: connections to it hang. */
int net_free_port(void);
int net_blackhole(int *fd_out, int *fds, size_t nfds);
void net_blackhole_close(int fd, int *fds, size_t nfds);

#endif
