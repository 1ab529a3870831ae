#!/usr/bin/env bash
# kubeadm's certificate set made "the seeds' way" with the openssl CLI
# (the recipe of the Kubernetes "Certificates" docs: genrsa, req -new,
# x509 -req -extfile), RSA-2048, for one control-plane node.
#
#   benches/compare/openssl.sh OUT_DIR
#
# Writes OUT_DIR/pki/{ca,apiserver,apiserver-kubelet-client,front-proxy-ca,
# front-proxy-client,apiserver-etcd-client}.{crt,key}, OUT_DIR/pki/etcd/{ca,
# server,peer,healthcheck-client}.{crt,key}, OUT_DIR/pki/sa.{key,pub} and
# OUT_DIR/{admin,super-admin,controller-manager,scheduler,kubelet}.conf
# (kubeconfig YAML written by hand with `base64 -w0`, not `kubectl config`).
#
# The node is NODE_NAME (cp1) at NODE_IP (10.0.0.11), the API endpoint
# https://NODE_IP:6443, the service CIDR 10.96.0.0/16 (so 10.96.0.1), the DNS
# domain cluster.local: the same cluster as the spec scripts/bench-compare
# gives `kpki issue`.
set -euo pipefail

out=${1:?usage: openssl.sh OUT_DIR}
node=${NODE_NAME:-cp1}
ip=${NODE_IP:-10.0.0.11}
server="https://${ip}:6443"
days=365
ca_days=3650

umask 077
mkdir -p "$out/pki/etcd"
pki="$out/pki"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat >"$work/ext.cnf" <<EOF
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,digitalSignature,keyEncipherment,keyCertSign
subjectKeyIdentifier = hash

[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid

[apiserver]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
authorityKeyIdentifier = keyid
subjectAltName = DNS:${node},DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:10.96.0.1,IP:${ip}

[etcd]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
authorityKeyIdentifier = keyid
subjectAltName = DNS:${node},DNS:localhost,IP:${ip},IP:127.0.0.1,IP:0:0:0:0:0:0:0:1
EOF

# ca NAME CN
ca() {
    openssl genrsa -traditional -out "$pki/$1.key" 2048 2>/dev/null
    openssl req -x509 -new -sha256 -key "$pki/$1.key" -subj "/CN=$2" -days "$ca_days" \
        -config "$work/ext.cnf" -extensions ca -out "$pki/$1.crt"
}

# leaf CA NAME SUBJECT EXT-SECTION
leaf() {
    openssl genrsa -traditional -out "$pki/$2.key" 2048 2>/dev/null
    openssl req -new -sha256 -key "$pki/$2.key" -subj "$3" -out "$work/leaf.csr"
    openssl x509 -req -sha256 -in "$work/leaf.csr" -CA "$pki/$1.crt" -CAkey "$pki/$1.key" \
        -days "$days" -extfile "$work/ext.cnf" -extensions "$4" -out "$pki/$2.crt" 2>/dev/null
}

# kubeconfig FILE USER SUBJECT: a client cert signed by the Kubernetes CA, embedded.
kubeconfig() {
    local key="$work/$1.key" crt="$work/$1.crt"
    openssl genrsa -traditional -out "$key" 2048 2>/dev/null
    openssl req -new -sha256 -key "$key" -subj "$3" -out "$work/kc.csr"
    openssl x509 -req -sha256 -in "$work/kc.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
        -days "$days" -extfile "$work/ext.cnf" -extensions client -out "$crt" 2>/dev/null
    cat >"$out/$1.conf" <<EOF
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
    server: ${server}
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: $2
  name: $2@kubernetes
current-context: $2@kubernetes
kind: Config
preferences: {}
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 "$crt")
    client-key-data: $(base64 -w0 "$key")
EOF
}

ca ca kubernetes
ca front-proxy-ca front-proxy-ca
ca etcd/ca etcd-ca

leaf ca apiserver "/CN=kube-apiserver" apiserver
leaf ca apiserver-kubelet-client "/O=kubeadm:cluster-admins/CN=kube-apiserver-kubelet-client" client
leaf front-proxy-ca front-proxy-client "/CN=front-proxy-client" client
leaf etcd/ca etcd/server "/CN=${node}" etcd
leaf etcd/ca etcd/peer "/CN=${node}" etcd
leaf etcd/ca etcd/healthcheck-client "/CN=kube-etcd-healthcheck-client" client
leaf etcd/ca apiserver-etcd-client "/CN=kube-apiserver-etcd-client" client

openssl genrsa -traditional -out "$pki/sa.key" 2048 2>/dev/null
openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null

kubeconfig admin kubernetes-admin "/O=kubeadm:cluster-admins/CN=kubernetes-admin"
kubeconfig super-admin kubernetes-super-admin "/O=system:masters/CN=kubernetes-super-admin"
kubeconfig controller-manager system:kube-controller-manager "/CN=system:kube-controller-manager"
kubeconfig scheduler system:kube-scheduler "/CN=system:kube-scheduler"
kubeconfig kubelet "system:node:${node}" "/O=system:nodes/CN=system:node:${node}"

chmod 644 "$pki"/*.crt "$pki"/etcd/*.crt "$pki/sa.pub"
