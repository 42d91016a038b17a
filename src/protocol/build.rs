//! Writing the messages the proxy says itself, into a reusable output buffer.
//!
//! Structured backend messages (errors, authentication, parameter status, key data) are built
//! with pgwire's message types. Client messages the proxy must rename (Parse, Bind, Describe,
//! Close with a server-side statement name) are rebuilt here from the original byte slices,
//! so the SQL text and parameter bytes are copied, never re-encoded.

use bytes::{BufMut, BytesMut};
use pgwire::messages::response::{ErrorResponse, NoticeResponse, ReadyForQuery, TransactionStatus};
use pgwire::messages::startup::{Authentication, BackendKeyData, ParameterStatus, SecretKey};
use pgwire::messages::Message;

use super::PgError;

fn put<M: Message>(buf: &mut BytesMut, msg: M) {
    // pgwire only fails to encode messages whose fields it cannot represent; every message
    // built here has bounded, NUL-free fields, so a failure is a bug worth a log line, not a
    // panic in the client's session.
    if let Err(e) = msg.encode(buf) {
        tracing::error!(error = %e, "could not encode a protocol message");
    }
}

/// Strip NUL bytes, which cannot appear inside a protocol C string.
fn clean(s: &str) -> String {
    s.replace('\0', "")
}

pub fn error(buf: &mut BytesMut, err: &PgError) {
    let mut fields = vec![
        (b'S', err.severity.to_owned()),
        (b'V', err.severity.to_owned()),
        (b'C', err.code.to_string()),
        (b'M', clean(&err.message)),
    ];
    if let Some(d) = &err.detail {
        fields.push((b'D', clean(d)));
    }
    if let Some(h) = &err.hint {
        fields.push((b'H', clean(h)));
    }
    put(buf, ErrorResponse::new(fields));
}

/// An ErrorResponse from raw fields (a shard's error, amended by the proxy).
pub fn error_fields(buf: &mut BytesMut, fields: Vec<(u8, String)>) {
    let fields = fields.into_iter().map(|(k, v)| (k, clean(&v))).collect();
    put(buf, ErrorResponse::new(fields));
}

/// A NoticeResponse the proxy says itself (severity, SQLSTATE, message).
pub fn notice(buf: &mut BytesMut, severity: &str, code: &str, message: &str) {
    let fields = vec![
        (b'S', severity.to_owned()),
        (b'V', severity.to_owned()),
        (b'C', code.to_owned()),
        (b'M', clean(message)),
    ];
    put(buf, NoticeResponse::new(fields));
}

pub fn command_complete(buf: &mut BytesMut, tag: &str) {
    let at = begin(buf, b'C');
    cstr(buf, clean(tag).as_bytes());
    finish(buf, at);
}

/// A message with no body: ParseComplete `1`, BindComplete `2`, CloseComplete `3`,
/// NoData `n`, EmptyQueryResponse `I`.
pub fn simple(buf: &mut BytesMut, tag: u8) {
    let at = begin(buf, tag);
    finish(buf, at);
}

/// ParameterDescription with no parameters.
pub fn no_parameters(buf: &mut BytesMut) {
    let at = begin(buf, b't');
    buf.put_i16(0);
    finish(buf, at);
}

pub fn ready_for_query(buf: &mut BytesMut, status: u8) {
    let status = match status {
        b'T' => TransactionStatus::Transaction,
        b'E' => TransactionStatus::Error,
        _ => TransactionStatus::Idle,
    };
    put(buf, ReadyForQuery::new(status));
}

pub fn auth_ok(buf: &mut BytesMut) {
    put(buf, Authentication::Ok);
}

pub fn auth_md5(buf: &mut BytesMut, salt: [u8; 4]) {
    put(buf, Authentication::MD5Password(salt.to_vec()));
}

pub fn auth_sasl(buf: &mut BytesMut) {
    put(buf, Authentication::SASL(vec!["SCRAM-SHA-256".to_owned()]));
}

pub fn auth_sasl_continue(buf: &mut BytesMut, data: &[u8]) {
    put(
        buf,
        Authentication::SASLContinue(bytes::Bytes::copy_from_slice(data)),
    );
}

pub fn auth_sasl_final(buf: &mut BytesMut, data: &[u8]) {
    put(
        buf,
        Authentication::SASLFinal(bytes::Bytes::copy_from_slice(data)),
    );
}

pub fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    put(buf, ParameterStatus::new(clean(name), clean(value)));
}

pub fn backend_key_data(buf: &mut BytesMut, pid: i32, secret: i32) {
    put(buf, BackendKeyData::new(pid, SecretKey::I32(secret)));
}

/// Start a frame with `tag`; returns the offset to pass to [`finish`].
fn begin(buf: &mut BytesMut, tag: u8) -> usize {
    buf.put_u8(tag);
    let at = buf.len();
    buf.put_i32(0);
    at
}

/// Fill in the length of a frame started by [`begin`].
fn finish(buf: &mut BytesMut, at: usize) {
    let len = (buf.len() - at) as i32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

fn cstr(buf: &mut BytesMut, s: &[u8]) {
    buf.put_slice(s);
    buf.put_u8(0);
}

/// A Parse under a (possibly different) statement name; text and types copied verbatim.
pub fn parse(buf: &mut BytesMut, name: &[u8], sql: &[u8], param_types: &[u8]) {
    let at = begin(buf, b'P');
    cstr(buf, name);
    cstr(buf, sql);
    buf.put_slice(param_types);
    finish(buf, at);
}

/// A Bind naming a different statement; everything after the names copied verbatim.
pub fn bind(buf: &mut BytesMut, portal: &[u8], statement: &[u8], rest: &[u8]) {
    let at = begin(buf, b'B');
    cstr(buf, portal);
    cstr(buf, statement);
    buf.put_slice(rest);
    finish(buf, at);
}

/// Describe (`tag` = b'D') or Close (`tag` = b'C') of a statement or portal.
pub fn target(buf: &mut BytesMut, tag: u8, kind: u8, name: &[u8]) {
    let at = begin(buf, tag);
    buf.put_u8(kind);
    cstr(buf, name);
    finish(buf, at);
}

/// A simple Query (used for the proxy's own statements: settings replay, rollback).
pub fn query(buf: &mut BytesMut, sql: &str) {
    let at = begin(buf, b'Q');
    cstr(buf, sql.as_bytes());
    finish(buf, at);
}

/// Execute a portal (`max_rows` 0: all rows).
pub fn execute(buf: &mut BytesMut, portal: &[u8], max_rows: i32) {
    let at = begin(buf, b'E');
    cstr(buf, portal);
    buf.put_i32(max_rows);
    finish(buf, at);
}

pub fn sync(buf: &mut BytesMut) {
    let at = begin(buf, b'S');
    finish(buf, at);
}

pub fn cancel_request(pid: i32, secret: i32) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&16i32.to_be_bytes());
    out[4..8].copy_from_slice(&super::frame::CANCEL_REQUEST.to_be_bytes());
    out[8..12].copy_from_slice(&pid.to_be_bytes());
    out[12..].copy_from_slice(&secret.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{decode, frame};

    #[test]
    fn rebuilt_frames_decode_to_the_same_fields() {
        let mut buf = BytesMut::new();
        parse(&mut buf, b"sg_1", b"select 'caf\xe9'", b"\x00\x00");
        bind(&mut buf, b"", b"sg_1", b"\x00\x00\x00\x00\x00\x00");
        let p = frame::next_tagged(&mut buf, 1 << 20).unwrap().unwrap();
        let parsed = decode::parse(p.body()).unwrap();
        assert_eq!(parsed.sql, b"select 'caf\xe9'");
        assert_eq!(parsed.name, b"sg_1");
        let b = frame::next_tagged(&mut buf, 1 << 20).unwrap().unwrap();
        assert_eq!(decode::bind(b.body()).unwrap().statement, b"sg_1");
    }

    #[test]
    fn error_response_carries_code_and_message() {
        let mut buf = BytesMut::new();
        error(
            &mut buf,
            &PgError::error("0A000", "no\0pe").with_detail("why"),
        );
        let f = frame::next_tagged(&mut buf, 1 << 20).unwrap().unwrap();
        assert_eq!(f.tag, b'E');
        let body = f.body();
        assert!(body.windows(6).any(|w| w == b"C0A000"));
        assert!(body.windows(5).any(|w| w == b"Mnope"));
        assert!(body.windows(4).any(|w| w == b"Dwhy"));
    }
}
