/* harness.h - helpers for the integration tests (suite `integ`).
 *
 * Owns: one temporary directory per test, every process a test starts
 * (the proxy binary, tests/tools/upstream.py, tests/tools/fault_upstream.py,
 * swaks/curl/python clients), every socket the tiny SMTP client opens.
 * Guarantees: all of it is released in the suite's .fini, also when an
 * assertion failed; every proxy a passing test started has stopped on
 * SIGTERM with exit 0 and no sanitizer report, checked inside the test
 * (ITest), because Criterion ignores a failed assertion in .fini; each child runs in its own
 * process group, dies with the test process (PR_SET_PDEATHSIG) and the tools exit by themselves
 * after a lifetime; every wait is bounded. Tests use 127.0.0.1 and port 0 only.
 *
 * The suite-wide fixture is declared once in harness.c:
 *   TestSuite(integ, .init = h_setup, .fini = h_teardown, .timeout = 60);
 */
#ifndef STP_INTEG_HARNESS_H
#define STP_INTEG_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define H_PYTHON "/usr/bin/python3"
#define H_USER "u"
#define H_PW "s3cr3t-Pa55word"
#define H_PW_ENV "STP_TEST_PW"
/* Default bound for one SMTP reply through the proxy. */
#define H_REPLY_MS 10000

void h_setup(void);
void h_teardown(void);

/* Every integration test is an ITest: its body runs, then, still inside
 * the test where an assertion counts, every proxy it started and did not
 * reap itself gets SIGTERM and must exit 0 within 15 s with no sanitizer
 * report anywhere in its stderr. A plain Test in tests/integration is
 * refused by tests/tools/check_layout.py. */
#define ITest(suite, name, ...)                                                                    \
  static void name##_body(void);                                                                   \
  Test(suite, name, ##__VA_ARGS__) {                                                               \
    name##_body();                                                                                 \
    h_check_procs();                                                                               \
  }                                                                                                \
  static void name##_body(void)
/* Stop the checked processes (SIGTERM, bounded wait) and say why one
 * stopped uncleanly: false, or true with the reason and the sanitizer
 * report (or the end of its stderr) in failure. */
bool h_procs_unclean(char *failure, size_t cap);
/* h_procs_unclean, failing the test with its reason. */
void h_check_procs(void);

/* --- paths -------------------------------------------------------------- */
const char *h_dir(void); /* this test's temporary directory */
/* dir/name into out (cap bytes); returns out. */
char *h_path(char *out, size_t cap, const char *name);
/* Test PKI from tests/tools/gen_certs.sh, made once per test; returns the
 * directory holding ca.crt, server.crt, wrongname.crt, expired.crt, ... */
const char *h_certs(void);

/* --- processes ---------------------------------------------------------- */
typedef struct h_proc {
  pid_t pid;
  int out_fd; /* read end of the child's stdout, -1 once closed */
  char out_buf[8192];
  size_t out_len;
  char err_path[512]; /* the child's stderr goes to this file */
  char name[32];
  bool reaped;
  int status;        /* waitpid status once reaped */
  bool checked_exit; /* teardown: SIGTERM, then require exit 0 and no
                        sanitizer report in its stderr (the proxy) */
} h_proc;

/* fork/exec argv (argv[0] looked up in PATH) in its own process group with
 * stdout on a pipe and stderr into a file named "<name>.err" in the test
 * dir. env_add: NULL or a NULL-terminated list of "KEY=VALUE". Aborts the
 * test on failure. */
h_proc *h_spawn(const char *name, char *const argv[], char *const env_add[]);
/* Wait up to timeout_ms for a stdout line starting with prefix; copy it
 * (without newline) to line. Returns 0, or -1 on timeout/EOF. */
int h_proc_wait_line(h_proc *p, const char *prefix, int timeout_ms, char *line, size_t cap);
void h_proc_signal(h_proc *p, int sig);
/* Wait up to timeout_ms for exit. Returns the exit code, 128+signal when
 * killed by a signal, or -1 on timeout. */
int h_proc_wait_exit(h_proc *p, int timeout_ms);
/* SIGKILL the process group and reap. Safe to call twice. */
void h_proc_kill(h_proc *p);
bool h_proc_alive(h_proc *p);
/* SIGKILL, reap and free p, giving its slot back (a test that restarts a
 * process many times). */
void h_proc_forget(h_proc *p);

/* Run `sh -c cmd` (own process group, killed at the deadline) with the
 * extra environment, stdout+stderr captured into out (NUL-terminated,
 * truncated to cap). Returns the exit code, or -1 on timeout. */
int h_run(const char *cmd, char *const env_add[], int timeout_ms, char *out, size_t cap);

/* --- upstreams ---------------------------------------------------------- */
typedef struct h_upstream {
  h_proc *proc;
  int port;
  char record[512]; /* JSON lines file */
} h_upstream;

/* upstream.py (aiosmtpd) with tls "starttls"|"implicit"|"none", the server
 * certificate, --auth-require --user u:H_PW, plus extra args (NULL or a
 * NULL-terminated list). Asserts it became ready. */
void h_upstream_start(h_upstream *u, const char *tls, const char *const extra[]);
/* fault_upstream.py --mode mode --tls tls, presenting <cert>.crt/.key from
 * h_certs() (e.g. "server", "wrongname", "expired", "selfsigned"). */
void h_fault_start(h_upstream *u, const char *mode, const char *tls, const char *cert);

/* replay_upstream.py --dialogue name: a recorded provider dialogue (the
 * names are the provider table's row ids, see tests/tools/replay_upstream.py). */
void h_replay_start(h_upstream *u, const char *dialogue);

/* --- the proxy ---------------------------------------------------------- */
typedef struct h_proxy_opts {
  int up_port;                 /* required */
  const char *up_tls;          /* default "starttls" */
  const char *log_level;       /* default "info" */
  const char *shutdown_grace;  /* default "2s" */
  const char *connect_timeout; /* default "5s" */
  const char *command_timeout; /* default "10s" */
  const char *data_timeout;    /* default "20s" */
  bool no_upstream_auth;       /* omit the upstream auth block */
  const char *top_extra;       /* raw YAML lines at top level */
  const char *listener_extra;  /* raw lines, indented 4 spaces */
  const char *upstream_extra;  /* raw lines, indented 4 spaces */
  const char *route_extra;     /* raw lines under route "default", indented 4 */
} h_proxy_opts;

typedef struct h_proxy {
  h_proc *proc;
  int port; /* LAN port of listener "lan" */
  char config[512];
  char log[512]; /* the proxy's stderr */
} h_proxy;

/* The YAML for opts (listener "lan" on 127.0.0.1:0, upstream "up" at
 * 127.0.0.1:up_port with server_name localhost and the test CA, route
 * "default"). Returns yaml. */
char *h_proxy_yaml(const h_proxy_opts *o, char *yaml, size_t cap);
/* Write yaml to proxy.yaml, start STP_BINARY -c it with STP_TEST_PW set,
 * wait for "listening listener=lan addr=127.0.0.1:<port>". Asserts. */
void h_proxy_start_yaml(h_proxy *px, const char *yaml);
/* Same, with more "KEY=VALUE" in the proxy's environment (NULL-ended). */
void h_proxy_start_yaml_env(h_proxy *px, const char *yaml, char *const env_add[]);
/* Same, as process `name` (config <name>.yaml, stderr <name>.err): several
 * proxies in one test. */
void h_proxy_start_as(h_proxy *px, const char *name, const char *yaml, char *const env_add[]);
void h_proxy_start(h_proxy *px, const h_proxy_opts *o);
/* A proxy in front of a fresh upstream.py: the common case. */
void h_proxy_with_upstream(h_proxy *px, h_upstream *u, const char *tls);

/* --- a tiny blocking SMTP client (poll()-bounded) ----------------------- */
typedef struct h_smtp {
  int fd;
  char buf[65536];
  size_t len;
  bool eof;
} h_smtp;

/* Connect to 127.0.0.1:port. Returns 0 or -1. Registered for teardown. */
int h_smtp_connect(h_smtp *c, int port);
/* The same from a given loopback source address (e.g. "127.0.0.5"). */
int h_smtp_connect_from(h_smtp *c, int port, const char *src_ip);
void h_smtp_close(h_smtp *c);
/* Send all bytes (MSG_NOSIGNAL). Returns 0, or -1 if the peer went away or
 * the send stalled for H_REPLY_MS. */
int h_smtp_send(h_smtp *c, const void *data, size_t n);
int h_smtp_sendstr(h_smtp *c, const char *s);
/* Read one complete (possibly multi-line) reply. Returns the code, 0 on
 * EOF/reset before a complete reply, -1 on timeout, -2 on a malformed
 * reply. text gets all lines joined with '\n' (may be NULL). */
int h_smtp_reply(h_smtp *c, int timeout_ms, char *text, size_t cap);
/* Send line + CRLF and read the reply (H_REPLY_MS). */
int h_smtp_cmd(h_smtp *c, const char *line, char *text, size_t cap);
/* Connect, read the greeting, EHLO (or HELO). Asserts 220 and 250. */
void h_smtp_open(h_smtp *c, int port, bool ehlo);
/* True if the peer closes (EOF or reset) within timeout_ms; buffered and
 * incoming bytes are discarded. */
bool h_smtp_wait_eof(h_smtp *c, int timeout_ms);
/* True if nothing at all arrives within timeout_ms. */
bool h_smtp_quiet(h_smtp *c, int timeout_ms);

/* MAIL FROM:<from>, RCPT TO:<rcpt> for each, DATA, the raw body bytes
 * (the caller frames them: CRLF lines, dot-stuffed) and ".\r\n". Stops at
 * the first unexpected reply. Returns that reply's code, or the final-dot
 * reply's code; *stage (may be NULL) names the command ("MAIL", "RCPT",
 * "DATA", "DOT"). */
int h_smtp_message(h_smtp *c, const char *from, const char *const rcpts[], const void *body,
                   size_t body_len, char *text, size_t cap, const char **stage);

/* A fresh session to port: EHLO, one message from scan@printer.test to
 * rcpt with body (framed by the caller), then QUIT. Returns the code as
 * h_smtp_message does; text and *stage likewise. */
int h_send_one(int port, const char *rcpt, const void *body, size_t body_len, char *text,
               size_t cap, const char **stage);

/* --- records written by the upstream tools ------------------------------ */
typedef struct h_lines {
  char **v;
  size_t n;
} h_lines;

/* Lines of path whose "event" is event (all lines when NULL). A missing
 * file is zero lines. */
size_t h_records(const char *path, const char *event, h_lines *out);
void h_lines_free(h_lines *l);
/* Count of records with that event, waiting up to timeout_ms for at least
 * n of them (returns as soon as there are n). */
size_t h_wait_records(const char *path, const char *event, size_t n, int timeout_ms);
/* fault_upstream: number of "command" events with that verb (NULL: any)
 * and, unless tls is -1, that tls flag (0 plaintext, 1 TLS). */
size_t h_fault_commands(const h_upstream *u, const char *verb, int tls);

/* Minimal accessors for the flat, compact JSON the tools write.
 * h_json_str: 1 and the decoded string in out; 0 for null; -1 missing. */
int h_json_str(const char *line, const char *key, char *out, size_t cap);
/* 1 true, 0 false, -1 missing */
int h_json_bool(const char *line, const char *key);
long long h_json_int(const char *line, const char *key, long long dflt);
/* Number of strings in the array, -1 if missing; when val is given,
 * *found tells whether one of them equals val. */
int h_json_strlist(const char *line, const char *key, const char *val, bool *found);
/* Decode a base64 string field. Returns a malloc'd buffer (NUL-terminated
 * for convenience) and its length in *len, or NULL if missing/null. */
unsigned char *h_json_b64(const char *line, const char *key, size_t *len);

/* --- files and logs ----------------------------------------------------- */
char *h_read_file(const char *path, size_t *len); /* malloc'd, NUL-ended */
void h_write_file(const char *path, const void *data, size_t len);
/* memmem over the whole file; false if missing. */
bool h_file_contains(const char *path, const void *needle, size_t n);
/* Wait for a line of the file containing all given substrings (NULL-ended
 * list); copy it to line. Returns true when found within timeout_ms. */
bool h_file_wait_line(const char *path, const char *const all[], int timeout_ms, char *line,
                      size_t cap);
/* The port in the proxy's "<event> addr=127.0.0.1:PORT" log line (event:
 * "metrics-listening", "admin-listening"), waited for up to 5 s; fails the
 * test when there is none. */
int h_proxy_listen_port(const h_proxy *px, const char *event);

/* --- misc --------------------------------------------------------------- */
/* A TCP port on 127.0.0.1 that was free a moment ago (for a peer that is
 * started later on a port the proxy's configuration already names). */
int h_free_port(void);
void h_sleep_ms(int ms);
int64_t h_now_ms(void);
void h_base64(const void *in, size_t n, char *out, size_t cap);

typedef struct h_sha256 {
  uint32_t h[8];
  uint64_t bytes;
  unsigned char blk[64];
  size_t used;
} h_sha256;
void h_sha256_init(h_sha256 *s);
void h_sha256_update(h_sha256 *s, const void *data, size_t n);
void h_sha256_hex(h_sha256 *s, char out[65]);

#endif
