//! The rule codes: stable, each with a severity, a title and a long form
//! (`kpki explain CODE`, `docs/rules.md`).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Will break the cluster.
    Error,
    /// Works, but is risky or wrong by the book.
    Warning,
    /// Something to do or know.
    Info,
}

impl Severity {
    /// Lower-case name.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warning => "warning",
            Self::Info => "info",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! codes {
    ($( $v:ident => ($sev:ident, $when:ident, $title:literal, $long:literal) ),* $(,)?) => {
        /// A rule code (PKI-RULES.md section 5).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code { $( #[doc = $title] $v ),* }
        impl Code {
            /// Every code, in order.
            pub const ALL: &'static [Code] = &[$(Code::$v),*];
            /// The code as written (`N001`).
            pub const fn as_str(&self) -> &'static str { match self { $(Code::$v => stringify!($v)),* } }
            /// Default severity.
            pub const fn severity(&self) -> Severity { match self { $(Code::$v => Severity::$sev),* } }
            /// One-line title.
            pub const fn title(&self) -> &'static str { match self { $(Code::$v => $title),* } }
            /// The long form: what it checks, why, the run-time symptom, the fix.
            pub const fn explain(&self) -> &'static str { match self { $(Code::$v => $long),* } }
            /// When the rule can be decided.
            pub const fn when(&self) -> When { match self { $(Code::$v => When::$when),* } }
        }
    };
}

/// When a rule can be decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// From the plan (and from files).
    Plan,
    /// Only from real files (`kpki check`).
    Check,
}

codes! {
    S001 => (Error, Plan, "unknown issuer: a certificate's issuer does not exist or is not a CA",
        "Checks that every certificate's issuer is a CA of the graph.\nWhy: a certificate is only as good as the chain to a CA its peer trusts.\nSymptom: `x509: certificate signed by unknown authority`.\nFix: name an existing [[ca]] id in the leaf's `issuer`, or add the CA."),
    S002 => (Error, Plan, "cycle in the signing graph",
        "Checks that following issuers from any CA ends at a self-signed root.\nWhy: a CA that (indirectly) signs itself has no root; nothing can be issued.\nSymptom: issuance is impossible; verifiers report an unknown authority.\nFix: make one CA of the cycle a root (drop its `issuer`)."),
    S003 => (Error, Plan, "a certificate outlives its issuer",
        "Checks that no certificate's notAfter (or planned lifetime) exceeds its CA's.\nWhy: once the CA expires, every certificate it signed stops verifying, whatever its own dates.\nSymptom: `x509: certificate has expired or is not yet valid` on the CA, long before the leaf's date.\nFix: shorten the leaf's validity or lengthen the CA's (crypto.ca_validity)."),
    S004 => (Error, Plan, "chain deeper than a CA's path length constraint",
        "Checks basicConstraints pathLenConstraint along every chain.\nWhy: verifiers reject a chain with more intermediate CAs below a CA than its path length allows.\nSymptom: `x509: too many intermediates for path length constraint`.\nFix: raise `path_len` on the upper CA or flatten the hierarchy."),
    S005 => (Error, Plan, "two artefacts would be written to the same path",
        "Checks that no two certificates, keys or kubeconfigs share a file path on a node or in cluster/.\nWhy: the second write silently replaces the first; a component then loads the wrong certificate.\nSymptom: mismatched keys (`tls: private key does not match public key`) or wrong identities at run time.\nFix: give each artefact its own `cert`/`key`/`file` path in the profile."),
    U001 => (Error, Plan, "a certificate used as a TLS server lacks serverAuth",
        "Checks every server end of the connection matrix for the serverAuth extended key usage.\nWhy: Go's TLS client verifies the extended key usage of the server certificate.\nSymptom: `x509: certificate specifies an incompatible key usage`.\nFix: give the certificate role `server` (or `peer`/`etcd-server`)."),
    U002 => (Error, Plan, "a certificate used as a TLS client lacks clientAuth",
        "Checks every client end of the connection matrix for the clientAuth extended key usage.\nWhy: Go's TLS server verifies client certificates for clientAuth.\nSymptom: `tls: failed to verify certificate: x509: certificate specifies an incompatible key usage` (seed 002's \"client\" profile with server auth only).\nFix: give the certificate role `client` (or `peer`)."),
    U003 => (Error, Plan, "the etcd server cert lacks clientAuth",
        "Checks that etcd's serving certificate also carries clientAuth (connection row 4).\nWhy: etcd's grpc-gateway dials etcd itself on loopback presenting the server certificate as a client certificate.\nSymptom: etcd logs `rejected connection ... remote error: tls: bad certificate` / `x509: certificate specifies an incompatible key usage`.\nFix: role `etcd-server` (serverAuth + clientAuth)."),
    U004 => (Error, Plan, "CA flags wrong",
        "Checks that CAs carry CA:TRUE and keyCertSign, and that leaves carry neither.\nWhy: verifiers refuse a chain through a CA without CA:TRUE/keyCertSign; a leaf with CA:TRUE can mint certificates.\nSymptom: `x509: certificate signed by unknown authority (possibly because of \"x509: invalid signature: parent certificate cannot sign this kind of certificate\")`.\nFix: use the default usages; remove key_usage overrides."),
    U005 => (Error, Plan, "key usage wrong for the key type",
        "Checks that every certificate has digitalSignature (error), and that EC keys do not claim keyEncipherment (warning: kubeadm itself does this; Go's TLS ignores it, RFC 5480 forbids it).\nWhy: TLS 1.3 and ECDHE suites sign with the certificate key.\nSymptom: `x509: certificate specifies an incompatible key usage` on strict clients.\nFix: keep the default key usage."),
    U006 => (Warning, Plan, "a leaf carries an extended usage its role does not need",
        "Checks that client-only certificates do not carry serverAuth and server-only ones not clientAuth.\nWhy: least privilege: a client certificate that can also serve TLS can impersonate a server signed by the same CA.\nSymptom: none at first; a stolen client key can serve as a server (seed 002's \"client\" profile).\nFix: drop the extra extended usage."),
    T001 => (Error, Plan, "a client cert is not signed by the CA its server trusts",
        "For each connection (rows 1-8), checks that the client certificate chains to the CA the server verifies clients with.\nWhy: the server rejects client certificates from any other CA.\nSymptom: `tls: failed to verify certificate: x509: certificate signed by unknown authority`, or `Unauthorized` from the apiserver.\nFix: sign the client with the server's trusted CA, or bind the server's trust flag to the client's CA."),
    T002 => (Error, Plan, "a server cert is not signed by the CA its client trusts",
        "For each connection, checks that the server certificate chains to the CA the client verifies the server with (a flag, or the kubeconfig's certificate-authority).\nWhy: clients reject servers from any other CA.\nSymptom: `x509: certificate signed by unknown authority`.\nFix: point the client's CA at the server's issuer."),
    T003 => (Error, Plan, "controller-manager --cluster-signing-cert-file differs from apiserver --client-ca-file",
        "Checks row 9: kubelet client certificates signed by the controller-manager must verify against the apiserver's client CA.\nWhy: TLS bootstrap issues kubelet client certs with the cluster-signing CA.\nSymptom: bootstrapped kubelets get `Unauthorized` and nodes never register.\nFix: bind both flags to the same CA."),
    T004 => (Warning, Plan, "--requestheader-client-ca-file equals --client-ca-file",
        "Checks that the front-proxy CA is not the apiserver's client CA.\nWhy: any client certificate from the client CA could then assert user and group headers to aggregated API servers.\nSymptom: none visible; a privilege escalation path.\nFix: give the front proxy its own CA."),
    T005 => (Error, Plan, "the front-proxy client CN is not in --requestheader-allowed-names",
        "Checks that the CN of the apiserver's proxy client certificate is listed in --requestheader-allowed-names.\nWhy: aggregated API servers reject header-authenticated requests from other CNs.\nSymptom: `kubectl top` fails; metrics-server logs `x509: subject with cn=... is not in the allowed list`.\nFix: add the CN to the allowed names, or leave the names to kpki."),
    T006 => (Error, Check, "the service-account public key does not match the private key",
        "Checks that --service-account-key-file verifies what --service-account-signing-key-file / --service-account-private-key-file sign.\nWhy: tokens signed by one key fail verification with another.\nSymptom: pods get `Unauthorized`; apiserver logs `invalid bearer token`.\nFix: regenerate sa.pub from sa.key, or bind both flags to one keypair."),
    T007 => (Error, Check, "a certificate does not match its private key file",
        "Checks that each certificate's public key matches the key file next to it.\nWhy: TLS needs the matching private key.\nSymptom: `tls: private key does not match public key`; the component exits at start.\nFix: restore the key that belongs to the certificate, or delete the certificate and run `kpki issue`, which issues a new one for the key on disk."),
    T008 => (Error, Plan, "the etcd server cert and the etcd client certs chain to different CAs",
        "Checks row 4: etcd verifies every client, its own grpc-gateway included, with one --trusted-ca-file.\nWhy: the gateway presents the server certificate as a client certificate.\nSymptom: etcd logs `x509: certificate signed by unknown authority` for 127.0.0.1 connections.\nFix: sign the etcd server cert and the etcd client certs with the CA in --trusted-ca-file."),
    N001 => (Error, Plan, "the apiserver cert lacks the control-plane endpoint host",
        "Checks that every apiserver serving certificate covers the endpoint host (VIP / load balancer).\nWhy: clients dial the endpoint and verify the certificate against it.\nSymptom: `x509: certificate is valid for ..., not 192.168.123.242`.\nFix: add the SAN rule `endpoint`."),
    N002 => (Error, Plan, "the apiserver cert lacks the first IP of a service CIDR",
        "Checks that apiserver certificates cover the ClusterIP of the `kubernetes` Service (the first IP of each service CIDR, e.g. 10.96.0.1).\nWhy: in-cluster clients and CNI plugins dial that IP.\nSymptom: pods log `x509: certificate is valid for ..., not 10.96.0.1`.\nFix: add the SAN rule `service-ip`."),
    N003 => (Error, Plan, "the apiserver cert lacks an in-cluster name",
        "Checks for kubernetes, kubernetes.default, kubernetes.default.svc and kubernetes.default.svc.<domain>.\nWhy: in-cluster clients dial these names.\nSymptom: `x509: certificate is valid for ..., not kubernetes.default.svc`.\nFix: add the SAN rule `in-cluster-names`."),
    N004 => (Error, Plan, "a server cert lacks an address of its node",
        "Checks that apiserver, etcd server/peer and kubelet serving certificates cover their node's advertise address.\nWhy: peers dial the node's IP.\nSymptom: `x509: cannot validate certificate for 10.0.0.5 because it doesn't contain any IP SANs`.\nFix: add the SAN rule `node-ips`."),
    N005 => (Warning, Plan, "a server cert that local clients reach on loopback lacks 127.0.0.1 / localhost",
        "Checks that etcd serving certificates cover 127.0.0.1 and localhost (stacked apiservers, etcdctl and probes dial loopback).\nWhy: local clients verify the loopback address.\nSymptom: `x509: certificate is valid for ..., not 127.0.0.1`.\nFix: add the SAN rule `loopback`."),
    N006 => (Error, Plan, "an IP written as a DNS SAN, an invalid DNS name, or a misplaced wildcard",
        "Checks every DNS SAN: not an IP address, a valid name, a wildcard only as the whole leftmost label.\nWhy: Go matches IPs only against IP SANs; invalid names never match.\nSymptom: `x509: cannot validate certificate for 10.0.0.1 because it doesn't contain any IP SANs`.\nFix: write IPs as `ip:` SANs (kpki classifies spec SANs automatically)."),
    I001 => (Error, Plan, "a component client cert's subject is not the identity RBAC expects",
        "Checks the CN of controller-manager (system:kube-controller-manager), scheduler (system:kube-scheduler) and kube-proxy (system:kube-proxy) client certificates.\nWhy: the default RBAC bindings name these users.\nSymptom: `forbidden: User \"...\" cannot list resource ...`.\nFix: use the expected CN."),
    I002 => (Error, Plan, "a kubelet client cert's CN is not `system:node:<node>` or its O is not `system:nodes`",
        "Checks kubelet client identities.\nWhy: the Node authorizer and NodeRestriction admission key on them; <node> must be the registered node name.\nSymptom: `nodes \"x\" is forbidden: node \"y\" is not allowed to modify node \"x\"`, or the node never registers.\nFix: CN system:node:{node}, O system:nodes."),
    I003 => (Warning, Plan, "a kubeconfig user is in system:masters",
        "Checks that no kubeconfig but a break-glass one is in group system:masters.\nWhy: system:masters bypasses RBAC and cannot be revoked short of rotating the CA.\nSymptom: none until the credential leaks.\nFix: use a group bound to cluster-admin (kubeadm:cluster-admins) and keep one break-glass super-admin."),
    I004 => (Info, Plan, "the apiserver's kubelet client identity needs an RBAC binding",
        "Notes that the apiserver's kubelet client certificate is not in an admin group, so it needs RBAC access to nodes/proxy, nodes/log, nodes/stats and nodes/metrics (kpki writes the ClusterRoleBinding).\nWhy: the kubelet authorizes the apiserver through SubjectAccessReview.\nSymptom: `Forbidden (user=kube-apiserver-kubelet-client, verb=get, resource=nodes, subresource=proxy)` on kubectl logs/exec (seed 000).\nFix: apply the emitted binding."),
    C001 => (Error, Plan, "RSA key shorter than 2048 bits, or an unsupported curve",
        "Checks key strength.\nWhy: RSA-1024 is breakable; Go and Kubernetes refuse short keys in several paths.\nSymptom: `tls: failed to parse private key` or weak-key rejections.\nFix: use ecdsa-p256, ecdsa-p384 or rsa-2048+."),
    C002 => (Warning, Plan, "leaf validity longer than the spec allows or than 5 years",
        "Checks leaf lifetimes against crypto.leaf_validity and 5 years.\nWhy: long-lived leaves are never rotated and outlive the people who know how.\nSymptom: none until compromise.\nFix: shorten crypto.leaf_validity; `kpki renew --all` re-issues every leaf with it."),
    C003 => (Error, Check, "expired or not yet valid",
        "Checks notBefore/notAfter against the current time.\nWhy: TLS rejects certificates outside their validity.\nSymptom: `x509: certificate has expired or is not yet valid`.\nFix: `kpki renew`."),
    C004 => (Warning, Check, "expires within the window",
        "Checks notAfter against now + --within (default 30 days).\nWhy: renew before the outage.\nSymptom: soon, `x509: certificate has expired or is not yet valid`.\nFix: `kpki renew --within WINDOW` with the same window as the check (e.g. `--within 30d`)."),
    F001 => (Error, Check, "a file cannot be read or parsed",
        "Checks that every certificate, key and kubeconfig file in the directory can be read and parsed.\nWhy: a component that loads it fails at start.\nSymptom: `tls: failed to find any PEM data in certificate input`, `failed to load kubeconfig`.\nFix: restore the file from a backup, or remove it and re-issue with kpki."),
    F002 => (Error, Check, "a component flag names a file that does not exist",
        "Checks every file a component's flags name (static pod manifests, systemd units and their environment files, the KubeletConfiguration): certificates, keys, CA bundles, kubeconfigs. An absolute path is looked up under the checked directory (also by its longest suffix: /etc/kubernetes/pki/ca.crt is pki/ca.crt when the directory checked is an /etc/kubernetes).\nWhy: the component opens the file at start and exits when it is not there.\nSymptom: `open /etc/kubernetes/pki/...: no such file or directory`; the static pod or unit restarts in a loop.\nFix: restore the file, or point the flag at the file that holds the certificate (the finding names the configuration file and line)."),
    D001 => (Error, Check, "a planned artefact is missing from the directory",
        "With --spec: checks that every certificate, keypair and kubeconfig of the plan exists.\nWhy: the component that needs it will not start.\nSymptom: `open /etc/kubernetes/pki/...: no such file or directory`.\nFix: `kpki issue` fills in what is missing."),
    D002 => (Warning, Check, "a file is not part of the plan",
        "With --spec: lists certificate, key and kubeconfig files the plan does not produce.\nWhy: stale credentials linger and may still be trusted.\nSymptom: none; an unrevoked credential.\nFix: remove the file if nothing uses it."),
    D003 => (Error, Check, "a certificate differs from the plan",
        "With --spec: compares each certificate's subject, SANs and extended key usage with the plan; in a kpki output, also that every copy of a file is identical and that a kubeconfig embeds the client certificate (and a matching key) its certificate file holds.\nWhy: the spec changed (a new SAN, a renamed node) and the files were not re-issued.\nSymptom: `x509: certificate is valid for ..., not ...` for the new names.\nFix: `kpki issue` re-issues what drifted under the same CA."),
    C005 => (Error, Check, "SHA-1 or weaker signature",
        "Checks the signature algorithm.\nWhy: Go rejects SHA-1 signatures since 1.18.\nSymptom: `x509: cannot verify signature: insecure algorithm SHA1-RSA`.\nFix: re-issue with SHA-256."),
    K001 => (Info, Plan, "kubeadm cannot use the plan's files as they are",
        "Compares the plan with what `kubeadm init` and `kubeadm join` do with existing files: the PKI flags of kubeadm's static pods and kubelet configuration (file names under certificatesDir, kubeconfigs in /etc/kubernetes), the CA each certificate must chain to, the SANs kubeadm verifies on an existing certificate, the files it generates when missing, and the CA in each kubeconfig. The finding names what kubeadm would do differently.\nWhy: kubeadm keeps an existing file only if it matches its own layout and CA split; otherwise it stops or generates its own, and the cluster no longer runs on the planned PKI.\nSymptom: `kubeadm init` stops with `certificate apiserver is not signed by corresponding CA`, `certificate ... is invalid`, or `a kubeconfig file ... has got the wrong CA cert`, or prints `Generating ...` for a file kpki meant to provide.\nFix: none needed unless you deploy with kubeadm; kpki writes no kubeadm configuration for this plan. To deploy with kubeadm, use the kubeadm preset (or a profile with its file names and CA split)."),
    K002 => (Info, Plan, "Cluster API cannot take the plan's CAs",
        "Checks that the plan's CA split is the one Cluster API's kubeadm control-plane provider reads from `<cluster>-ca`, `<cluster>-etcd`, `<cluster>-proxy` and `<cluster>-sa` Secrets (one cluster CA for the apiserver, its kubelet client and every kubeconfig; an etcd CA; a front-proxy CA; the service-account keypair), and that the cluster name is a Kubernetes object name.\nWhy: Cluster API regenerates every leaf with kubeadm from those CAs; a separate serving CA or etcd peer CA has no Secret to go in.\nSymptom: the provider generates its own CAs, or machines join with certificates from a CA the rest of the PKI does not trust.\nFix: none needed unless you deploy with Cluster API; kpki writes no Secrets for this plan. Use the kubeadm preset and a lowercase cluster name for Cluster API."),
    D004 => (Info, Check, "a certificate fits no role of the profile",
        "Without --spec: a certificate found in the directory that kpki cannot match to any role of the fitted profile (by its subject, usages, SANs and issuer). It is listed with its subject and file, never dropped.\nWhy: a certificate for something kpki does not model (a webhook, an ingress, an extra CA's leaf), or a copy left behind.\nSymptom: none by itself; but nothing checks it either.\nFix: remove it if nothing uses it; otherwise leave it (or model it in a profile, `kpki init --from`)."),
    M001 => (Error, Check, "an etcd membership change etcd cannot make in one step",
        "Compares the spec's etcd members with those the output directory's manifest recorded at the last issuance.\nWhy: etcd changes membership one member at a time (`etcdctl member add`/`member remove`), each with quorum; two changes at once, or going from 2 members to 1, can lose quorum or leave a member that cannot join.\nSymptom: a new member fails to join (`member count is unequal`, `cluster ID mismatch`) or forms a cluster of its own; a removal loses quorum.\nFix: change one member, run `kpki issue`, run the steps it prints (`etcdctl member add` before starting a new member), then the next change."),
    X001 => (Error, Plan, "a CA key a component reads from a file is held in a PKCS#11 token",
        "With `[ca_keys] store = \"pkcs11\"`: checks that no token-held CA is the one kube-controller-manager signs CSRs with (`--cluster-signing-cert-file` / `--cluster-signing-key-file`).\nWhy: the controller-manager reads that CA's private key from a file; a key generated inside the token never leaves it, so there is no file to give it.\nSymptom: kpki could not write `--cluster-signing-key-file`; kubelet TLS bootstrap and every CertificateSigningRequest would stay pending.\nFix: one of two ways. Keep that CA on disk: leave its id out of `[ca_keys] cas` (list the CAs the token holds, e.g. `cas = [\"etcd-ca\", \"front-proxy-ca\"]`). Or turn in-cluster CSR signing off: `[controller_manager] csr_signing = false` (no --cluster-signing-* flags, no signing/ copies; CSRs are then signed outside the cluster)."),
    X002 => (Error, Plan, "a CA waits for its certificate from the external root",
        "With `[root] external = true`: checks that every top CA of the profile has a certificate signed by the external root, imported with `kpki import`.\nWhy: kpki never holds the external root's key; until the signed intermediate is imported, nothing under that CA can be signed, and what kpki wrote would not chain to the root verifiers trust.\nSymptom: `kpki issue` stops before writing anything; without the import no leaf, trust file or kubeconfig of that CA exists.\nFix: `kpki csr` writes `csr/<id>.csr`; have the root sign it as a CA (CA:TRUE, keyCertSign, valid longer than the leaves), then `kpki import` the certificate (and the root certificate), then `kpki issue`."),
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl FromStr for Code {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let up = s.trim().to_ascii_uppercase();
        Self::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == up)
            .ok_or_else(|| format!("`{s}` is not a rule code (S001-S005, U001-U006, T001-T008, N001-N006, I001-I004, C001-C005, F001-F002, D001-D003, K001-K002, M001, X001-X002)"))
    }
}

/// The rule reference as Markdown (docs/rules.md is this text).
pub fn rules_markdown() -> String {
    let mut out = String::from(
        "# Rule reference\n\n<!-- generated by `kpki explain --all`; CI checks it is current -->\n\n",
    );
    for c in Code::ALL {
        let when = match c.when() {
            When::Plan => "plan and check",
            When::Check => "check only",
        };
        out.push_str(&format!(
            "## {c} — {}\n\nSeverity: {} · decided at: {when}\n\n{}\n\n",
            c.title(),
            c.severity(),
            c.explain().replace('\n', "\n\n")
        ));
    }
    out
}
