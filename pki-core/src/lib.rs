//! kpki core: a Kubernetes PKI as a typed certificate graph.
//!
//! ```text
//! kpki.toml ─▶ ClusterSpec ─┐
//!                           ├─ expand ─▶ CertGraph ─ validate ─▶ Report        (kpki plan)
//! profile.toml ─▶ Profile ──┘               │
//!                                           └─ issue ─▶ keys, certs, kubeconfigs, flags
//! existing dir ─ observe ─▶ CertGraph ─ validate ─▶ Report                      (kpki check)
//! ```
//!
//! Every stage is a value; only the store and the CLI touch the disk.

mod adopt;
mod crypto;
mod error;
mod graph;
mod issue;
mod k8s;
mod observe;
mod outputs;
mod profile;
mod spec;
mod store;
mod validate;
mod x509;

pub use adopt::{AdoptOptions, Adoption, ExistingCa, adopt, adopt_with};
pub use crypto::{
    CertParams, CryptoBackend, CryptoError, CsrParams, DistinguishedName, ParsedCert, PinSource,
    PrivateKey, PublicKey, RustCrypto, SignatureAlgorithm, Signer, Token, TokenConfig, TokenError,
    build_certificate, build_csr, cert_to_pem, certs_from_pem, csr_public_key, parse_certificate,
    random_serial, try_random_serial,
};
pub use error::{Error, InputError, Location, ProfileError, SpecError};
pub use graph::{
    Binding, CertGraph, CertNode, ClusterFacts, Connection, IssuerRef, KeyPairNode, KubeconfigNode,
    Node, NodeId, Observed, Validity, expand, issuance_order,
};
pub use issue::{
    Action, Artefact, FileChange, IssueError, IssueOptions, IssueReport, Manifest, ManifestEntry,
    Progress, RenewPolicy, Renewal, Restart, RotateRequest, Rotation, RotationPhase,
    RotationStatus, issue, rotate, rotation_status,
};
pub use issue::{
    CsrReport, ImportError, ImportReport, Refusal, csr, csr_path, import, imported_path, waiting,
};
pub use k8s::{
    CertSource, Component, Flag, FlagKind, KubeconfigUser, Link, LinkEnds, Placement, TrustSource,
};
/// Reads `path` if it is a regular file of at most `cap` bytes, opened
/// without blocking (a FIFO or a device is refused, never waited on) and
/// judged by `fstat` of the open descriptor; otherwise a message that
/// follows the file's name ("is larger than the 1048576-byte cap: not read").
pub fn read_file_capped(path: &std::path::Path, cap: u64) -> Result<Vec<u8>, String> {
    observe::walk::read_regular_capped(path, cap)
}

pub use observe::{
    AppliedFlag, AuditedFile, CheckReport, DirKind, EmbeddedDrift, FileKind, FileProblem,
    HintContext, KubeconfigUse, MissingFile, Observation, TrustOrigin, Unrecognised, World, check,
    check_with, detect, foreign_hint, read_dir,
};
pub use outputs::{
    BOOTSTRAP_GROUP, BootstrapToken, CertView, ComponentFlags, Document, KeyPairView,
    KubeconfigView, component_flags, document, flags_of, manifests,
};
pub use outputs::{
    CAPI_DIR, CLUSTER_LABEL, DROP_IN, ENV_VAR, INIT_CONFIG, JOIN_CONFIG, KUBERNETES_DIR,
    SECRET_TYPE, SYSTEMD_README, ca_cert_hash, drop_in, kubeadm_gaps, unit_of,
};
pub use outputs::{
    EtcdMember, MembershipChange, component_flags_with, etcd_membership, member_names,
    membership_markdown,
};
pub use profile::{
    CaTemplate, FanOut, KeyPairTemplate, KubeconfigTemplate, LeafTemplate, LiteralSan, PRESETS,
    Profile, SanRule, ServerRule, SubjectTemplate, TargetKind, TrustBinding,
};
pub use spec::{
    BootstrapSpec, CaKeyStore, ClusterInfo, ClusterSpec, ControllerManagerSpec, CryptoSpec,
    Endpoint, EtcdTopology, ExistingCaSpec, KubeadmApi, KubeadmSpec, NodeSpec, OutputSpec,
    Pkcs11Spec, ProfileRef,
};
pub use store::{
    DirStore, FileEntry, Layout, MemStore, Mode, Part, PkiStore, StoreError, StoreErrorKind,
    TEMP_PREFIX, signing_path, stale_bundles,
};
/// The `time` crate, re-exported: `IssueOptions::now`, `document` and the
/// renew window take its types, so an embedder needs no extra dependency.
pub use time;
pub use validate::{
    Code, Finding, Options, Report, Severity, When, rules_markdown, validate, validate_with,
};
pub use x509::{
    Cidr, DnsName, ExtUsage, Host, KeyAlgorithm, KeySpec, KeyUsages, Lifetime, NodeName,
    ParseValueError, Role, San, SanSet, Subject, Usage, parse_san,
};

/// `docs/embedding.md`, included so that `cargo test --doc` compiles and
/// runs every Rust block of the embedding guide: the guide fails the build
/// when its code stops working.
#[doc = include_str!("../../docs/embedding.md")]
#[doc(hidden)]
pub mod embedding_guide {}

/// Every id `[ca_keys] cas` names must be a CA of the plan, not adopted.
fn ca_keys_fit(
    spec: &ClusterSpec,
    graph: &CertGraph,
    existing: &[ExistingCa],
) -> Result<(), SpecError> {
    let CaKeyStore::Pkcs11(p) = &spec.ca_keys else {
        return Ok(());
    };
    for (id, location) in p.cas.iter().flatten() {
        let node = graph.find(id);
        let err = |message: String| InputError {
            location: location.clone(),
            field: "ca_keys.cas".into(),
            message,
        };
        match node.and_then(|n| graph.cert(n).map(|c| (n, c))) {
            Some((n, c)) if c.is_ca => {
                if existing.iter().any(|e| e.node == n) {
                    return Err(err(format!(
                        "`{id}` is an [[existing_ca]]: its key is the file it came from, not a token key"
                    )));
                }
            }
            _ => {
                let cas: Vec<String> = graph
                    .certs()
                    .filter(|(_, c)| c.is_ca)
                    .map(|(_, c)| c.id.clone())
                    .collect();
                return Err(err(format!(
                    "`{id}` is not a CA of this plan (its CAs: {})",
                    cas.join(", ")
                )));
            }
        }
    }
    Ok(())
}

/// X001: a token-held CA whose key a component must read from a file.
fn token_findings(graph: &CertGraph, token: &[NodeId]) -> Vec<Finding> {
    graph
        .bound(k8s::Flag::ControllerManagerClusterSigningCertFile)
        .into_iter()
        .filter(|(_, id)| token.contains(id))
        .map(|(_, id)| {
            let ca = graph.id_of(id);
            Finding {
                code: Code::X001,
                severity: Code::X001.severity(),
                nodes: vec![ca.clone()],
                message: format!(
                    "{ca} is held in the PKCS#11 token, but kube-controller-manager signs CSRs with it and reads its key from a file (--cluster-signing-key-file)"
                ),
                hint: format!(
                    "keep {ca} on disk (leave it out of [ca_keys] cas), or turn in-cluster CSR signing off ([controller_manager] csr_signing = false)"
                ),
                files: Vec::new(),
            }
        })
        .collect()
}

/// A spec, its profile, the graph and its findings: what `kpki plan` shows.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The spec.
    pub spec: ClusterSpec,
    /// The profile.
    pub profile: Profile,
    /// The graph.
    pub graph: CertGraph,
    /// The findings.
    pub report: Report,
    /// Where every file goes.
    pub layout: Layout,
    /// The etcd membership the component flags are written for: a new
    /// cluster's, until [`Plan::with_previous_members`] gives the members an
    /// earlier issuance recorded.
    pub membership: outputs::MembershipChange,
    /// The CAs adopted from `[[existing_ca]]` entries (used as they are,
    /// never generated).
    pub existing: Vec<ExistingCa>,
}

impl Plan {
    /// Whether the private key of graph node `id` lives in a PKCS#11 token
    /// (`[ca_keys]`): a CA the spec's `cas` names (every CA when it names
    /// none), not adopted from `[[existing_ca]]`.
    pub fn token_held(&self, id: NodeId) -> bool {
        self.graph.cert(id).is_some_and(|c| {
            c.is_ca && self.existing_ca(id).is_none() && self.spec.ca_keys.holds(&c.id)
        })
    }

    /// The adopted CA a graph node stands for, if any.
    pub fn existing_ca(&self, id: NodeId) -> Option<&ExistingCa> {
        self.existing.iter().find(|e| e.node == id)
    }

    /// Sets the etcd members an earlier issuance recorded (the manifest's
    /// `etcd_members`): members added since join the running cluster, and a
    /// change etcd cannot make in one step becomes an M001 error finding.
    pub fn with_previous_members(
        &mut self,
        previous: &[outputs::EtcdMember],
        last_change: Option<&outputs::MembershipChange>,
    ) {
        self.membership = outputs::etcd_membership(self, Some(previous));
        if self.membership.refusals.is_empty() {
            self.membership.carry(last_change);
        }
        for why in &self.membership.refusals {
            self.report.findings.push(Finding {
                code: Code::M001,
                severity: Code::M001.severity(),
                nodes: Vec::new(),
                message: why.clone(),
                hint: "change one etcd member per `kpki issue`, and follow the steps it prints"
                    .into(),
                files: vec!["kpki-manifest.json".into()],
            });
        }
    }

    /// With `[root] external = true`: adds an X002 error finding for every
    /// top CA whose certificate from the external root is not yet imported
    /// into `store` (the output directory); nothing otherwise.
    pub fn with_external_root(&mut self, store: &impl PkiStore) -> Result<(), StoreError> {
        let waiting = issue::waiting(self, store)?;
        self.report.add(waiting);
        Ok(())
    }

    /// Loads a spec file and its profile, expands and validates.
    /// The spec's `[[existing_ca]]` files are read and checked.
    pub fn load(spec_path: &std::path::Path) -> Result<Self, Error> {
        let (spec, existing) = ClusterSpec::load_with_existing(spec_path).map_err(Error::Spec)?;
        let profile =
            Profile::load(&spec.profile, &spec.profile_location).map_err(Error::Profile)?;
        Self::with_existing(spec, profile, &existing)
    }

    /// [`Plan::load`] for `kpki check DIR --spec`: an `[[existing_ca]]`
    /// whose key file is absent is planned from its certificate alone (a
    /// check compares files and signs nothing); such a plan cannot issue.
    pub fn load_for_check(spec_path: &std::path::Path) -> Result<Self, Error> {
        let (spec, existing) = ClusterSpec::load_with_existing(spec_path).map_err(Error::Spec)?;
        let profile =
            Profile::load(&spec.profile, &spec.profile_location).map_err(Error::Profile)?;
        Self::build(spec, profile, &existing, false)
    }

    /// Plans a spec built in code (or loaded), with no `[[existing_ca]]`
    /// (see [`Plan::with_existing`]).
    pub fn from_spec(spec: ClusterSpec) -> Result<Self, Error> {
        let profile =
            Profile::load(&spec.profile, &spec.profile_location).map_err(Error::Profile)?;
        Self::with_profile(spec, profile)
    }

    /// Plans a spec with an explicit profile, with no `[[existing_ca]]`.
    pub fn with_profile(spec: ClusterSpec, profile: Profile) -> Result<Self, Error> {
        Self::with_existing(spec, profile, &[])
    }

    /// Plans a spec with an explicit profile and the spec's
    /// `[[existing_ca]]` entries ([`ClusterSpec::parse_with_existing`]):
    /// their files are read and checked (an id that is no CA of the
    /// profile, an unreadable file, a certificate that is not a CA or a key
    /// that is not its own is a [`Error::Spec`] naming the field and the
    /// file), and each adopted CA is judged by the rules with its real
    /// subject, usages, key and dates.
    pub fn with_existing(
        spec: ClusterSpec,
        profile: Profile,
        existing: &[ExistingCaSpec],
    ) -> Result<Self, Error> {
        Self::build(spec, profile, existing, true)
    }

    /// [`Plan::with_existing`]; without `need_key` an adopted CA's absent
    /// key file is no error ([`Plan::load_for_check`]).
    pub(crate) fn build(
        spec: ClusterSpec,
        profile: Profile,
        existing: &[ExistingCaSpec],
        need_key: bool,
    ) -> Result<Self, Error> {
        let mut graph = expand(&spec, &profile).map_err(Error::Profile)?;
        // In-cluster CSR signing off: no --cluster-signing-* flags (and so no signing/ copies).
        if !spec.controller_manager.csr_signing {
            graph
                .bindings
                .retain(|b| b.flag != k8s::Flag::ControllerManagerClusterSigningCertFile);
        }
        let existing =
            adopt::load_existing(existing, &mut graph, &profile, need_key).map_err(Error::Spec)?;
        ca_keys_fit(&spec, &graph, &existing).map_err(Error::Spec)?;
        let mut spec = spec;
        let unused = spec::unused_fields(&spec, &graph, &profile.name);
        spec.warnings.extend(unused);
        // The rules and the layout, side by side (each reads the graph).
        let (mut report, mut layout) = rayon::join(
            || validate(&graph),
            || Layout::compute(&graph, &spec, &profile),
        );
        report.add(adopt::findings(
            &graph,
            &existing,
            time::OffsetDateTime::now_utc(),
        ));
        let mut plan_token = Vec::new();
        for (id, c) in graph.certs() {
            if c.is_ca && !existing.iter().any(|e| e.node == id) && spec.ca_keys.holds(&c.id) {
                plan_token.push(id);
            }
        }
        // A token-held CA key is never a file: no path for it anywhere.
        layout.drop_files(|f| {
            plan_token.contains(&f.node) && matches!(f.part, Part::Key | Part::SigningKey)
        });
        report.add(token_findings(&graph, &plan_token));
        let mut plan = Self {
            spec,
            profile,
            graph,
            report,
            layout,
            membership: outputs::MembershipChange::default(),
            existing,
        };
        plan.membership = outputs::etcd_membership(&plan, None);
        let deployers = outputs::deployer_findings(&plan);
        plan.report.add(deployers);
        Ok(plan)
    }
}
