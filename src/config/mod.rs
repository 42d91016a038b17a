//! Configuration: YAML on disk -> a validated, immutable [`Config`] snapshot.
//!
//! Two layers: `raw` mirrors the file with serde (unknown keys rejected), `validate` turns it
//! into `model::Config`, resolving names to indices and reporting every problem as
//! `file: key.path: reason`. This module does no network IO; reaching shards is `cli::check`'s
//! job.

mod model;
mod raw;
mod units;
mod validate;

#[cfg(test)]
mod tests;

pub use model::*;

use std::path::{Path, PathBuf};

/// A configuration problem, reported as `file: key.path: reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {}{reason}", file.display(), if key_path.is_empty() { String::new() } else { format!("{key_path}: ") })]
pub struct ConfigError {
    pub file: PathBuf,
    /// Dotted path of the offending key (`tables.posts.scheme`), empty for whole-file errors.
    pub key_path: String,
    pub reason: String,
}

/// Read and validate the file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        key_path: String::new(),
        reason: format!("cannot read file: {e}"),
    })?;
    parse(&text, path)
}

/// Validate YAML text; `source` is only used in messages and stored in the result.
pub fn parse(text: &str, source: &Path) -> Result<Config, ConfigError> {
    raw::from_yaml(text)
        .and_then(|raw| validate::validate(raw, source))
        .map_err(|p| ConfigError {
            file: source.to_path_buf(),
            key_path: p.key_path,
            reason: p.reason,
        })
}

/// One problem before the file name is attached: a dotted key path and a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Problem {
    /// `pool.size`, `shards[1].url`; empty for the whole file.
    key_path: String,
    reason: String,
}

impl Problem {
    fn new(key_path: impl Into<String>, reason: impl Into<String>) -> Self {
        Problem {
            key_path: key_path.into(),
            reason: reason.into(),
        }
    }
}
