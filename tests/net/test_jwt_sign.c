/* test_jwt_sign.c - the BoringSSL half of signed JWTs (jwt_sign.c): the
 * RS256 signature of RFC 7515 Appendix A.2 reproduced byte for byte with
 * its key; PS256 and RS256 JWTs verified by the openssl command (another
 * implementation) with a fresh RSA key and certificate, whose x5t and
 * x5t#S256 match openssl's fingerprints; keys that are not RSA, too short,
 * not PEM, or not the certificate's refused with a reason; random jtis.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../proxy/net/jwt_sign.h"
#include "net_test.h"

/* The RFC 7515 A.2 RSA key (its JWK converted to PKCS#8 PEM). */
static const char a2_pem[] = "-----BEGIN PRIVATE KEY-----\n"
                             "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCh+BYK4uPJtGXO\n"
                             "jS1lYmM2K5J9vinh8CR3/BYlzJChNuOL2TSXxbbqY913EeZ8dCn5VrD7io8ImtxL\n"
                             "aYk8wTM/U+3QGbh3hCUv7JFP5IV3aVlL6kKA0ywPVb9ilE8TA5a8bpvfbr3SvaNn\n"
                             "juygxmj3AbONv/s4yDQs4v5tJ/reSlpIdJed1LnPmt7Ex1sFhSwsD174pcF1A5L5\n"
                             "ROjtZMEQxrZHYJqkeDrrnGya11UxMFBji4NmXG9veoKjlnAqH2QbgtPr8jkiGUkf\n"
                             "toaHLFcW9Qr4NY2ai50Xw0Byj3+H2JoY2PyrZ62EWQwuz3WTOTY8BwNNb2BvniHg\n"
                             "VFbK5emhAgMBAAECggEAEq5xpGnNCivDflJsRQBXHx1hdR1k6Ulwe2JZD50LpXyW\n"
                             "PEAeP88vLNO97IjlA7/GQ5sLKMgvfTeXZx9SE+7YwVol2NXOoAJe46sui395IW/G\n"
                             "O+pWJ1O0BkTGoVEn2bKVRUCgu+GjBVaYLU6f3l9kJfFNS3E0QbVdxzubSu3Mkqzj\n"
                             "kn439X0M/V51gfpRLI9JYanrC4D4qAdGcopV/0ZHHzQlBjudU2QvXt4ehNYTCBr6\n"
                             "XCLQUShb1juUO1ZdiYoFaFQT5Tw8bGUl/x/jTj3ccPDVZFD9pIuhLhBOneufuBiB\n"
                             "4cS98l2SR/RQyGWSeWjnczT0QU91p1DhOVRuOopznQKBgQDgHMQQ60imZV1URk0K\n"
                             "pLttoLhyt3SmqdEf/kgHePDdtzEafpAu+cS191R2JiuoF2yzWXnwFDcqGigp5BNr\n"
                             "0AHQfD8/Lk8l1Mk09jxxCfui5nYooNyac8YFjm3vItzVCVDnEd3BbVWG8qf6deqE\n"
                             "lMGAg+C2V0L4oNXnP7LZcPAZRwKBgQC5A8R+CZW2MvRTLLHzwZkUXV866cff7tx6\n"
                             "kqa0finGG0KgeqlaZPxgCZnFp7AeAcCMtiynVlJ7vMVgePsLq6XtON4tB5kP9jAP\n"
                             "rq3rbAOal78eUH5OcED6eNuCV8ixEu1eWcPNCS/l1OW1EnXUEoEHKl54Xrrz2uNw\n"
                             "kgMTP1FZ1wKBgAcCn1dwJKufzBWQxWQp1vsM5fggqPN1qGb5y0MAk3g7/Ls5bkUp\n"
                             "5u9SN0Ai3Ya6hNnvWJMb7sXQX6U/zyO2M/hTip7tUeh7CXgwo59dkpN75gJLVds2\n"
                             "9+DAncu3KXU4f2Fa+7bLNrur53k8KwPOq2bbuTG69QtV7Jr5MR0AHWKNAoGBAIf/\n"
                             "evpitUf+4JYbLpvNXWcY052Mpz22aR84mY3nh3F2LF2mjMJDpTg7FmuyPcVw6EcG\n"
                             "yoAe9fa65iNqCq+jdw6PVNGo2hxfjSiZ8IIzHdsPXI89//pMjZcQK9r+CCoRjaZj\n"
                             "OYiIDktVWZzmevJuv6WywUqd57LE3Zar3dLSIkx1AoGAIYd7DHOhrWvxkwPQsRM2\n"
                             "tOgrjbcrfvtQJipd+DlcxyVuuM9sQLdgjVk2oy26F0EmpScGLq2MowX7fhd/QJQ3\n"
                             "ydy5cY7YIBi87w93IKLEdfnbJtoOPLUW0ITrJReOgo1cq9SbsxYawBgfp/gh6A56\n"
                             "03k2+ZQwVK0JKSHuLFkuQ3U=\n"
                             "-----END PRIVATE KEY-----\n";

static const char a2_input[] =
    "eyJhbGciOiJSUzI1NiJ9."
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxl"
    "LmNvbS9pc19yb290Ijp0cnVlfQ";
static const char a2_sig[] = "cC4hiUPoj9Eetdgtv3hF80EGrhuB__"
                             "dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujG"
                             "bds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_"
                             "nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0G"
                             "arZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-"
                             "eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgG"
                             "Y9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  ASSERT(f);
  static char buf[8][16384];
  static int i;
  i = (i + 1) % 8;
  size_t n = fread(buf[i], 1, sizeof buf[i] - 1, f);
  fclose(f);
  buf[i][n] = '\0';
  return buf[i];
}

static void sh(const char *cmd) {
  ASSERT_EQ(system(cmd), 0);
}

void test_jwt_rfc7515_a2_rs256_vector(void) {
  char err[200];
  jwt_key *k = jwt_key_load(a2_pem, NULL, err, sizeof err);
  ASSERT(k);
  unsigned char sig[JWT_SIG_MAX];
  size_t n = 0;
  ASSERT_EQ(jwt_key_sign(k, JWT_RS256, (const unsigned char *)a2_input, strlen(a2_input), sig,
                         sizeof sig, &n),
            0);
  ASSERT_EQ(n, 256);
  char out[400];
  stp_buf b = {.data = out, .len = 0, .cap = sizeof out - 1};
  ASSERT_EQ(jwt_b64url(&b, sig, n), 0);
  out[b.len] = '\0';
  ASSERT(!strcmp(out, a2_sig));
  /* a buffer too small for the signature is refused, not overrun */
  ASSERT_EQ(jwt_key_sign(k, JWT_RS256, (const unsigned char *)a2_input, 3, sig, 100, &n),
            STP_EFULL);
  jwt_key_free(k);
}

/* A fresh RSA key and self-signed certificate in the runner's directory. */
static void make_rsa(const char *name, int bits) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "cd '%s' && [ -s %s.crt ] || openssl req -x509 -newkey rsa:%d -nodes -keyout %s.key "
           "-out %s.crt -days 2 -sha256 -subj /CN=jwt-test 2>/dev/null",
           net_certs(), name, bits, name, name);
  sh(cmd);
}

/* openssl's fingerprint of the certificate as base64url. */
static void fingerprint(const char *crt, const char *dgst, char *out, size_t cap) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "openssl x509 -in '%s' -outform DER | openssl dgst -%s -binary | basenc --base64url "
           "| tr -d '=\\n' > '%s/fp.txt'",
           crt, dgst, net_certs());
  sh(cmd);
  snprintf(out, cap, "%s", slurp(net_cert_path("fp.txt")));
}

static void write_file(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  ASSERT(f && fwrite(p, 1, n, f) == n);
  fclose(f);
}

/* Sign with alg, let openssl verify with the certificate's public key. */
static void openssl_verifies(jwt_key *k, jwt_alg alg) {
  static const char input[] = "eyJhbGciOiJQUzI1NiJ9.eyJpc3MiOiJhcHAifQ";
  unsigned char sig[JWT_SIG_MAX];
  size_t n = 0;
  ASSERT_EQ(jwt_key_sign(k, alg, (const unsigned char *)input, strlen(input), sig, sizeof sig, &n),
            0);
  write_file(net_cert_path("in.txt"), input, strlen(input));
  write_file(net_cert_path("sig.bin"), sig, n);
  char cmd[1400];
  snprintf(cmd, sizeof cmd,
           "cd '%s' && openssl x509 -in app.crt -pubkey -noout > app.pub && openssl dgst -sha256 "
           "%s -verify app.pub -signature sig.bin in.txt >/dev/null 2>&1",
           net_certs(),
           alg == JWT_PS256 ? "-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32" : "");
  sh(cmd);
  /* and a changed input no longer verifies */
  write_file(net_cert_path("in.txt"), "x", 1);
  ASSERT(system(cmd) != 0);
}

void test_jwt_ps256_rs256_and_thumbprints_checked_by_openssl(void) {
  make_rsa("app", 2048);
  char err[200], want[80];
  jwt_key *k = jwt_key_load(slurp(net_cert_path("app.key")), slurp(net_cert_path("app.crt")), err,
                            sizeof err);
  if (!k)
    fprintf(stderr, "%s\n", err);
  ASSERT(k);
  fingerprint(net_cert_path("app.crt"), "sha256", want, sizeof want);
  ASSERT_EQ(strlen(jwt_key_x5t_s256(k)), 43);
  ASSERT(!strcmp(jwt_key_x5t_s256(k), want));
  fingerprint(net_cert_path("app.crt"), "sha1", want, sizeof want);
  ASSERT_EQ(strlen(jwt_key_x5t(k)), 27);
  ASSERT(!strcmp(jwt_key_x5t(k), want));
  openssl_verifies(k, JWT_PS256);
  openssl_verifies(k, JWT_RS256);
  jwt_key_free(k);
}

static void refused(const char *key, const char *crt, const char *why) {
  char err[200] = "";
  jwt_key *k = jwt_key_load(key, crt, err, sizeof err);
  ASSERT(!k);
  ASSERT_CONTAINS(err, why);
}

void test_jwt_key_refusals(void) {
  make_rsa("app", 2048);
  make_rsa("short", 1024);
  refused("no pem here", NULL, "not a PEM private key");
  /* an encrypted PKCS#1 key: refused at once, no password prompt */
  char cmd[512];
  snprintf(cmd, sizeof cmd,
           "cd '%s' && [ -s enc.key ] || openssl genrsa -aes128 -passout pass:x -traditional "
           "-out enc.key 2048 2>/dev/null",
           net_certs());
  sh(cmd);
  ASSERT(strstr(slurp(net_cert_path("enc.key")), "ENCRYPTED"));
  refused(slurp(net_cert_path("enc.key")), NULL, "not a PEM private key");
  refused(slurp(net_cert_path("server.key")), NULL, "not an RSA key"); /* EC P-256 */
  refused(slurp(net_cert_path("short.key")), NULL, "has 1024 bits; at least 2048");
  refused(a2_pem, slurp(net_cert_path("app.crt")), "does not belong to the private key");
  refused(a2_pem, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
          "not a PEM X.509 certificate");
  /* the reasons never carry key material */
  char err[200] = "";
  ASSERT(!jwt_key_load(a2_pem + 28, NULL, err, sizeof err));
  ASSERT(!strstr(err, "MII"));
}

void test_jwt_random_ids(void) {
  char a[37], b[37];
  jwt_random_id(a);
  jwt_random_id(b);
  ASSERT_EQ(strlen(a), 36);
  ASSERT(strcmp(a, b));
  ASSERT(a[8] == '-' && a[13] == '-' && a[18] == '-' && a[23] == '-');
  ASSERT(a[14] == '4');
  ASSERT(strchr("89ab", a[19]));
}
