//! The preset profiles, embedded from `profiles/`.

/// Preset name and TOML text.
pub static PRESETS: &[(&str, &str)] = &[
    ("kubeadm", include_str!("../../../profiles/kubeadm.toml")),
    ("isolated", include_str!("../../../profiles/isolated.toml")),
    (
        "single-ca",
        include_str!("../../../profiles/single-ca.toml"),
    ),
];
