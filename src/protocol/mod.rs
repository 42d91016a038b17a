//! The Postgres protocol 3.0 as the proxy needs it: framing, bounded decoding, building.
//!
//! Owns: cutting byte streams into frames with every length checked (`frame`), decoding the
//! few client messages the proxy must look into from a bounded slice (`decode`), writing
//! messages the proxy synthesizes (`build`, on top of pgwire's message types) and the SQLSTATE
//! codes shardgate raises (`sqlstate`). It does not own sockets or session state, and it never
//! re-encodes a message it forwards: forwarded frames travel as their original bytes.

pub mod build;
pub mod decode;
pub mod frame;
pub mod sqlstate;
pub mod track;

#[cfg(test)]
mod fuzz_tests;

pub use frame::{Frame, FrameError};

/// An error the proxy itself reports to a client, with the fields of an ErrorResponse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgError {
    /// `ERROR` or `FATAL`.
    pub severity: &'static str,
    pub code: std::borrow::Cow<'static, str>,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl PgError {
    pub fn error(
        code: impl Into<std::borrow::Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        PgError {
            severity: "ERROR",
            code: code.into(),
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    pub fn fatal(
        code: impl Into<std::borrow::Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        PgError {
            severity: "FATAL",
            ..Self::error(code, message)
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for PgError {}
