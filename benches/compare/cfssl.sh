#!/usr/bin/env bash
# kubeadm's certificate set made "the seeds' way" with cfssl + cfssljson
# (CSR JSON files, a ca-config.json with server/client/peer profiles,
# `cfssl gencert | cfssljson -bare`, then renamed to kubeadm's file names),
# RSA-2048, for one control-plane node.
#
#   benches/compare/cfssl.sh OUT_DIR
#
# Writes the same files as benches/compare/openssl.sh: OUT_DIR/pki/... with
# kubeadm's names, OUT_DIR/pki/sa.{key,pub} (key by `cfssl genkey`, public
# half by `openssl rsa -pubout`: cfssl cannot print a bare public key) and
# OUT_DIR/{admin,super-admin,controller-manager,scheduler,kubelet}.conf
# (kubeconfig YAML written by hand with `base64 -w0`, not `kubectl config`).
#
# Same cluster as openssl.sh: NODE_NAME (cp1) at NODE_IP (10.0.0.11),
# https://NODE_IP:6443, service IP 10.96.0.1, DNS domain cluster.local.
set -euo pipefail

out=${1:?usage: cfssl.sh OUT_DIR}
node=${NODE_NAME:-cp1}
ip=${NODE_IP:-10.0.0.11}
server="https://${ip}:6443"

umask 077
mkdir -p "$out/pki/etcd"
pki="$out/pki"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat >"$work/ca-config.json" <<'EOF'
{
  "signing": {
    "default": { "expiry": "8760h" },
    "profiles": {
      "server": { "expiry": "8760h", "usages": ["signing", "key encipherment", "server auth"] },
      "client": { "expiry": "8760h", "usages": ["signing", "key encipherment", "client auth"] },
      "peer":   { "expiry": "8760h", "usages": ["signing", "key encipherment", "server auth", "client auth"] }
    }
  }
}
EOF

# csr CN [O] [HOSTS-JSON-ARRAY]: a CSR JSON on stdout.
csr() {
    local names=""
    if [ -n "${2:-}" ]; then names=", \"names\": [{\"O\": \"$2\"}]"; fi
    printf '{"CN": "%s", "key": {"algo": "rsa", "size": 2048}, "hosts": %s%s}\n' \
        "$1" "${3:-[]}" "$names"
}

# ca NAME CN
ca() {
    csr "$2" >"$work/csr.json"
    cfssl gencert -initca "$work/csr.json" 2>/dev/null | cfssljson -bare "$work/out"
    mv "$work/out.pem" "$pki/$1.crt"
    mv "$work/out-key.pem" "$pki/$1.key"
}

# leaf CA NAME PROFILE CN [O] [HOSTS]
leaf() {
    csr "$4" "${5:-}" "${6:-[]}" >"$work/csr.json"
    cfssl gencert -ca "$pki/$1.crt" -ca-key "$pki/$1.key" -config "$work/ca-config.json" \
        -profile "$3" "$work/csr.json" 2>/dev/null | cfssljson -bare "$work/out"
    mv "$work/out.pem" "$pki/$2.crt"
    mv "$work/out-key.pem" "$pki/$2.key"
}

# kubeconfig FILE USER CN [O]: a client cert signed by the Kubernetes CA, embedded.
kubeconfig() {
    csr "$3" "${4:-}" >"$work/csr.json"
    cfssl gencert -ca "$pki/ca.crt" -ca-key "$pki/ca.key" -config "$work/ca-config.json" \
        -profile client "$work/csr.json" 2>/dev/null | cfssljson -bare "$work/kc"
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
    client-certificate-data: $(base64 -w0 "$work/kc.pem")
    client-key-data: $(base64 -w0 "$work/kc-key.pem")
EOF
}

apiserver_hosts="[\"${node}\", \"kubernetes\", \"kubernetes.default\", \"kubernetes.default.svc\", \"kubernetes.default.svc.cluster.local\", \"10.96.0.1\", \"${ip}\"]"
etcd_hosts="[\"${node}\", \"localhost\", \"${ip}\", \"127.0.0.1\", \"::1\"]"

ca ca kubernetes
ca front-proxy-ca front-proxy-ca
ca etcd/ca etcd-ca

leaf ca apiserver server kube-apiserver "" "$apiserver_hosts"
leaf ca apiserver-kubelet-client client kube-apiserver-kubelet-client kubeadm:cluster-admins
leaf front-proxy-ca front-proxy-client client front-proxy-client
leaf etcd/ca etcd/server peer "$node" "" "$etcd_hosts"
leaf etcd/ca etcd/peer peer "$node" "" "$etcd_hosts"
leaf etcd/ca etcd/healthcheck-client client kube-etcd-healthcheck-client
leaf etcd/ca apiserver-etcd-client client kube-apiserver-etcd-client

csr sa >"$work/csr.json"
cfssl genkey "$work/csr.json" 2>/dev/null | cfssljson -bare "$work/sa"
mv "$work/sa-key.pem" "$pki/sa.key"
openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null

kubeconfig admin kubernetes-admin kubernetes-admin kubeadm:cluster-admins
kubeconfig super-admin kubernetes-super-admin kubernetes-super-admin system:masters
kubeconfig controller-manager system:kube-controller-manager system:kube-controller-manager
kubeconfig scheduler system:kube-scheduler system:kube-scheduler
kubeconfig kubelet "system:node:${node}" "system:node:${node}" system:nodes

chmod 644 "$pki"/*.crt "$pki"/etcd/*.crt "$pki/sa.pub"
