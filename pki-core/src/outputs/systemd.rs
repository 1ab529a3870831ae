//! systemd drop-ins: per node and component,
//! `etc/systemd/system/<unit>.service.d/10-kpki.conf` sets `KPKI_ARGS` to
//! the component's PKI flags (exactly `kpki flags <c> --format args`), for
//! the unit's `ExecStart` to expand; a README in the bundle shows the line.

use super::ComponentFlags;
use crate::k8s::Component;

/// The drop-in's file name.
pub const DROP_IN: &str = "10-kpki.conf";

/// The environment variable the drop-ins set.
pub const ENV_VAR: &str = "KPKI_ARGS";

/// The README's path in a node bundle (below the node's root).
pub const README: &str = "/etc/systemd/system/README.kpki";

/// The systemd unit a component runs as (etcdctl is a client, not a service).
pub fn unit_of(c: Component) -> Option<&'static str> {
    match c {
        Component::Etcdctl => None,
        Component::Etcd => Some("etcd.service"),
        Component::KubeApiserver => Some("kube-apiserver.service"),
        Component::KubeControllerManager => Some("kube-controller-manager.service"),
        Component::KubeScheduler => Some("kube-scheduler.service"),
        Component::Kubelet => Some("kubelet.service"),
        Component::KubeProxy => Some("kube-proxy.service"),
    }
}

/// One argument inside a double-quoted `Environment=` assignment: `%` is a
/// specifier, `\` and `"` escapes. Whitespace would split the argument
/// when `$KPKI_ARGS` is expanded, so it is refused.
fn quote(arg: &str) -> Result<String, String> {
    if arg.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "`{arg}` holds whitespace: it cannot be carried in {ENV_VAR} (systemd splits it into words)"
        ));
    }
    Ok(arg
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('%', "%%"))
}

/// The drop-in for one component on one node, if it runs as a service
/// and has flags.
pub fn drop_in(f: &ComponentFlags) -> Result<Option<(String, String)>, String> {
    let Some(unit) = unit_of(f.component) else {
        return Ok(None);
    };
    let args = f.args();
    if args.is_empty() {
        return Ok(None);
    }
    let quoted = args
        .iter()
        .map(|a| quote(a))
        .collect::<Result<Vec<_>, _>>()?;
    let text = format!(
        "# Written by kpki: the PKI flags of {c} on node {n}.\n\
         # The unit's ExecStart must expand ${ENV_VAR}: see ../README.kpki.\n\
         [Service]\n\
         Environment=\"{ENV_VAR}={}\"\n",
        quoted.join(" "),
        c = f.component,
        n = f.node,
    );
    Ok(Some((
        format!("/etc/systemd/system/{unit}.d/{DROP_IN}"),
        text,
    )))
}

/// Every drop-in and README of a plan: (output path, text).
pub(crate) fn systemd_files(flags: &[ComponentFlags]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut readmes: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for f in flags {
        let Some((path, text)) = drop_in(f)? else {
            continue;
        };
        out.push((format!("nodes/{}{path}", f.node), text));
        if let Some(unit) = unit_of(f.component) {
            readmes.entry(f.node.to_string()).or_default().push(format!(
                "  {unit}:\n    ExecStart=/usr/local/bin/{c} ${ENV_VAR} <the unit's other flags>\n",
                c = f.component
            ));
        }
    }
    for (node, lines) in readmes {
        out.push((
            format!("nodes/{node}{README}"),
            format!(
                "kpki: systemd drop-ins for node {node}\n\n\
                 Each <unit>.service.d/{DROP_IN} here sets {ENV_VAR} to the component's PKI\n\
                 flags (the same as `kpki flags <component> --node {node} --format args`).\n\
                 In each unit, add ${ENV_VAR} (unquoted, so systemd splits it into arguments)\n\
                 to the ExecStart line and drop the PKI flags it had, then\n\
                 `systemctl daemon-reload` and restart the unit:\n\n{}\n\
                 The kubelet's KubeletConfiguration fields (clientCAFile, tlsCertFile, ...)\n\
                 are in components.json under `config`.\n",
                lines.concat()
            ),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn specifiers_and_quotes_are_escaped_whitespace_refused() {
        assert_eq!(quote("--a=50%").as_deref(), Ok("--a=50%%"));
        assert_eq!(quote("--a=\"x\"").as_deref(), Ok("--a=\\\"x\\\""));
        assert!(quote("--a=/my dir/ca.crt").is_err());
    }
}
