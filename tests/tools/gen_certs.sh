#!/bin/sh
# gen_certs.sh DIR - test PKI for the integration tests, made with the
# openssl CLI only.
#
#   ca.crt/ca.key                  test CA
#   server.crt/server.key          signed by the CA, DNS:localhost + IP:127.0.0.1
#   wrongname.crt/wrongname.key    signed by the CA, CN/SAN other.example only
#   expired.crt/expired.key        signed by the CA for localhost, expired in 2021
#   selfsigned.crt/selfsigned.key  self-signed for localhost (not from the CA)
#
# EC P-256 keys keep it fast. Idempotent: when every file is already there
# nothing is done; otherwise everything is made in a private temporary
# directory and moved into DIR, so a half-written set is never visible.
set -eu

dir=${1:?usage: gen_certs.sh DIR}
mkdir -p "$dir"

all="ca.crt ca.key server.crt server.key wrongname.crt wrongname.key
     expired.crt expired.key selfsigned.crt selfsigned.key"
missing=0
for f in $all; do
  [ -s "$dir/$f" ] || missing=1
done
[ "$missing" -eq 0 ] && exit 0

tmp=$(mktemp -d "$dir/.gen.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
cd "$tmp"

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# --- CA ---------------------------------------------------------------------
newkey ca.key
openssl req -new -x509 -key ca.key -out ca.crt -days 3650 -sha256 \
  -subj "/CN=smtp-tls-proxy test CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -addext "subjectKeyIdentifier=hash" 2>/dev/null

cat > leaf.ext <<'X'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=${ENV::SAN}
X

# sign NAME CN SAN: a CA-signed leaf valid from now for ~10 years
sign() {
  newkey "$1.key"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$2" 2>/dev/null
  SAN=$3 openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key \
    -CAcreateserial -out "$1.crt" -days 3650 -sha256 \
    -extfile leaf.ext 2>/dev/null
}

sign server localhost "DNS:localhost,IP:127.0.0.1"
sign wrongname other.example "DNS:other.example"

# --- expired: `openssl ca` is the 3.0 way to choose both dates --------------
mkdir -p db
: > db/index.txt
echo 1000 > db/serial
cat > ca.cnf <<X
[ ca ]
default_ca = test_ca
[ test_ca ]
dir = $tmp
database = \$dir/db/index.txt
serial = \$dir/db/serial
new_certs_dir = \$dir/db
certificate = \$dir/ca.crt
private_key = \$dir/ca.key
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
x509_extensions = leaf
[ any ]
commonName = supplied
[ leaf ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
X
newkey expired.key
openssl req -new -key expired.key -out expired.csr -subj "/CN=localhost" 2>/dev/null
openssl ca -config ca.cnf -batch -notext -in expired.csr -out expired.crt \
  -startdate 20200101000000Z -enddate 20210101000000Z 2>/dev/null

# --- self-signed for the right name -----------------------------------------
newkey selfsigned.key
openssl req -new -x509 -key selfsigned.key -out selfsigned.crt -days 3650 \
  -sha256 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -addext "basicConstraints=critical,CA:FALSE" \
  -addext "extendedKeyUsage=serverAuth" 2>/dev/null

chmod 600 ./*.key
for f in $all; do
  mv -f "$f" "$dir/$f"
done
