#!/usr/bin/env bash
# Make a throwaway CA and a server certificate for localhost and 127.0.0.1
# (ECDSA P-256, valid 7 days) in DIR, for the wss:// test runs:
#
#   autobahn/tls-certs.sh DIR
#       DIR/ca.pem    the CA certificate, for clients to trust
#       DIR/cert.pem  the server certificate (leaf only, signed by the CA)
#       DIR/key.pem   its private key (PKCS#8)
#
# The leaf is signed by the root directly: wstest's server side loads only
# the first certificate of a file, so a chain could not be served there.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
DIR=$1
mkdir -p "$DIR"
command -v openssl >/dev/null || { apt-get update && apt-get install -y openssl; }
cd "$DIR"
curve=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
openssl req -x509 "${curve[@]}" -keyout ca.key -out ca.pem -days 7 \
    -subj "/CN=wsreactor test CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req "${curve[@]}" -keyout key.pem -out leaf.csr -subj "/CN=localhost" 2>/dev/null
printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=CA:FALSE" \
    "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >leaf.ext
openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
    -out cert.pem -days 7 -extfile leaf.ext 2>/dev/null
rm -f leaf.csr leaf.ext ca.srl
