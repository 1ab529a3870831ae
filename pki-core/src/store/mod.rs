//! Where artefacts go and how they are written.

mod layout;

pub use layout::{FileEntry, Layout, Part};
