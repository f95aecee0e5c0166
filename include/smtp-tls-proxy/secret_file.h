/* secret_file.h - writing a secret to a file, atomically and privately.
 *
 * Owns: the one way the proxy writes a secret (a rotated OAuth2 refresh
 * token) back to disk. Guarantees: the file is replaced whole or not at
 * all, is never readable by others at any moment, survives a power cut once
 * the call returned 0, and an error text never contains the secret.
 */
#ifndef STP_SECRET_FILE_H
#define STP_SECRET_FILE_H

#include <stddef.h>

/* Replace the file at path with secret + "\n": path.tmp is created with
 * O_EXCL and mode 0600 (a stale one is removed first), written, fsync'd and
 * renamed over path; the directory is fsync'd. On failure path is unchanged
 * and err says why. */
int stp_secret_file_save(const char *path, const char *secret, char *err, size_t errlen);

#endif
