//! Errors, one enum per layer, wrapped by [`Error`].

use std::fmt;
use std::path::PathBuf;

/// Where in an input file something went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub file: PathBuf,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
}

impl Location {
    /// The location of byte `offset` in `text`.
    pub fn at(file: impl Into<PathBuf>, text: &str, offset: usize) -> Self {
        let offset = offset.min(text.len());
        let before = text.get(..offset).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Self {
            file: file.into(),
            line,
            column,
        }
    }

    /// A location that only names the file.
    pub fn file(file: impl Into<PathBuf>) -> Self {
        Self {
            file: file.into(),
            line: 0,
            column: 0,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
            if self.column > 0 {
                write!(f, ":{}", self.column)?;
            }
        }
        Ok(())
    }
}

/// A problem in an input file (spec or profile): file, line, column, field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {field}: {message}")]
pub struct InputError {
    /// Where.
    pub location: Location,
    /// The field, as a dotted path (`cluster.service_cidr`, `control_plane[1].name`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// The spec could not be read or is invalid.
pub type SpecError = InputError;
/// The profile could not be read or is invalid.
pub type ProfileError = InputError;

/// Any error kpki's library returns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad spec input.
    #[error("spec: {0}")]
    Spec(InputError),
    /// Bad profile input.
    #[error("profile: {0}")]
    Profile(InputError),
    /// A file could not be read.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

impl Error {
    /// Whether this is bad input (exit status 2) rather than a failed operation.
    pub fn is_input(&self) -> bool {
        matches!(self, Self::Spec(_) | Self::Profile(_) | Self::Io { .. })
    }
}
