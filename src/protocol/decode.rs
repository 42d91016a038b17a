//! Bounded decoders for the client messages the proxy looks into.
//!
//! Only Query, Parse, Bind, Describe, Close, Execute and the startup packet are decoded, each
//! from the frame body slice with every read bounds-checked: a lying inner length is an error,
//! never a panic or a read past the frame. Decoded strings are borrowed byte slices, not
//! `String`s, so nothing is re-encoded: a LATIN1 client's bytes stay exactly as sent.

use super::frame::{CANCEL_REQUEST, GSSENC_REQUEST, PROTOCOL_V3, SSL_REQUEST};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {what} message: {why}")]
pub struct DecodeError {
    pub what: &'static str,
    pub why: &'static str,
}

/// A reader over one message body that refuses to read past it.
struct Cursor<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8], what: &'static str) -> Self {
        Cursor { buf, what }
    }

    fn fail<T>(&self, why: &'static str) -> Result<T, DecodeError> {
        Err(DecodeError {
            what: self.what,
            why,
        })
    }

    fn cstr(&mut self) -> Result<&'a [u8], DecodeError> {
        match self.buf.iter().position(|&b| b == 0) {
            Some(n) => {
                let s = &self.buf[..n];
                self.buf = &self.buf[n + 1..];
                Ok(s)
            }
            None => self.fail("string not terminated"),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return self.fail("field runs past the end of the message");
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn i16(&mut self) -> Result<i16, DecodeError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32, DecodeError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn count(&mut self) -> Result<usize, DecodeError> {
        let n = self.i16()?;
        if n < 0 {
            return self.fail("negative count");
        }
        Ok(n as usize)
    }

    fn end(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            self.fail("trailing bytes after the last field")
        }
    }
}

/// `Q`: the query text, without its terminating NUL.
pub fn query(body: &[u8]) -> Result<&[u8], DecodeError> {
    let mut c = Cursor::new(body, "Query");
    let sql = c.cstr()?;
    c.end()?;
    Ok(sql)
}

/// `P`: Parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parse<'a> {
    pub name: &'a [u8],
    pub sql: &'a [u8],
    /// The raw parameter-type section (`i16 n` then `n` OIDs), forwarded verbatim.
    pub param_types: &'a [u8],
}

pub fn parse(body: &[u8]) -> Result<Parse<'_>, DecodeError> {
    let mut c = Cursor::new(body, "Parse");
    let name = c.cstr()?;
    let sql = c.cstr()?;
    let rest = c.buf;
    let n = c.count()?;
    c.take(n * 4)?;
    c.end()?;
    Ok(Parse {
        name,
        sql,
        param_types: rest,
    })
}

/// `B`: Bind. The parameter section is validated here and kept raw for forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind<'a> {
    pub portal: &'a [u8],
    pub statement: &'a [u8],
    /// Everything after the statement name (formats, values, result formats), verbatim.
    pub rest: &'a [u8],
}

pub fn bind(body: &[u8]) -> Result<Bind<'_>, DecodeError> {
    let mut c = Cursor::new(body, "Bind");
    let portal = c.cstr()?;
    let statement = c.cstr()?;
    let rest = c.buf;
    let nformats = c.count()?;
    c.take(nformats * 2)?;
    let nparams = c.count()?;
    for _ in 0..nparams {
        let len = c.i32()?;
        if len >= 0 {
            c.take(len as usize)?;
        } else if len != -1 {
            return c.fail("negative parameter length");
        }
    }
    let nresults = c.count()?;
    c.take(nresults * 2)?;
    c.end()?;
    Ok(Bind {
        portal,
        statement,
        rest,
    })
}

/// Bind's parameter format codes and values (`None`: SQL NULL).
pub type BindParams<'a> = (Vec<i16>, Vec<Option<&'a [u8]>>);

/// The format codes and values of a Bind, from the `rest` that `bind` validated.
pub fn bind_params(rest: &[u8]) -> Result<BindParams<'_>, DecodeError> {
    let mut c = Cursor::new(rest, "Bind");
    let nformats = c.count()?;
    let mut formats = Vec::with_capacity(nformats);
    for _ in 0..nformats {
        formats.push(c.i16()?);
    }
    let nparams = c.count()?;
    let mut values = Vec::with_capacity(nparams);
    for _ in 0..nparams {
        let len = c.i32()?;
        if len < 0 {
            values.push(None);
        } else {
            values.push(Some(c.take(len as usize)?));
        }
    }
    Ok((formats, values))
}

/// A validated Bind's `rest` split into its parameter section (format codes and values,
/// verbatim) and its result-format codes.
pub fn bind_results(rest: &[u8]) -> Result<(&[u8], Vec<i16>), DecodeError> {
    let mut c = Cursor::new(rest, "Bind");
    let nformats = c.count()?;
    c.take(nformats * 2)?;
    let nparams = c.count()?;
    for _ in 0..nparams {
        let len = c.i32()?;
        if len > 0 {
            c.take(len as usize)?;
        }
    }
    let params = &rest[..rest.len() - c.buf.len()];
    let nresults = c.count()?;
    let mut results = Vec::with_capacity(nresults);
    for _ in 0..nresults {
        results.push(c.i16()?);
    }
    c.end()?;
    Ok((params, results))
}

/// `D` and `C`: Describe and Close share a shape: a kind byte (`S`tatement or `P`ortal)
/// and a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    pub kind: u8,
    pub name: &'a [u8],
}

pub fn target<'a>(body: &'a [u8], what: &'static str) -> Result<Target<'a>, DecodeError> {
    let mut c = Cursor::new(body, what);
    let kind = c.take(1)?[0];
    if kind != b'S' && kind != b'P' {
        return c.fail("kind must be 'S' or 'P'");
    }
    let name = c.cstr()?;
    c.end()?;
    Ok(Target { kind, name })
}

/// `E`: Execute.
pub fn execute(body: &[u8]) -> Result<(&[u8], i32), DecodeError> {
    let mut c = Cursor::new(body, "Execute");
    let portal = c.cstr()?;
    let max_rows = c.i32()?;
    c.end()?;
    Ok((portal, max_rows))
}

/// What the first packet of a connection asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupRequest {
    Ssl,
    GssEnc,
    Cancel { pid: i32, secret: Vec<u8> },
    Startup { params: Vec<(String, String)> },
    UnsupportedVersion(i32),
}

/// Decode a whole startup-phase packet (length included, as `frame::next_startup` returns it).
pub fn startup(packet: &[u8]) -> Result<StartupRequest, DecodeError> {
    let mut c = Cursor::new(packet, "startup");
    c.take(4)?; // length, already checked by the framer
    let code = c.i32()?;
    match code {
        SSL_REQUEST => Ok(StartupRequest::Ssl),
        GSSENC_REQUEST => Ok(StartupRequest::GssEnc),
        CANCEL_REQUEST => {
            let pid = c.i32()?;
            // Protocol 3.0 keys are 4 bytes; 3.2 allows up to 256.
            let secret = c.buf.to_vec();
            if secret.is_empty() || secret.len() > 256 {
                return c.fail("bad cancel key length");
            }
            Ok(StartupRequest::Cancel { pid, secret })
        }
        PROTOCOL_V3 => {
            let mut params = Vec::new();
            loop {
                let key = c.cstr()?;
                if key.is_empty() {
                    break;
                }
                let value = c.cstr()?;
                let (Ok(k), Ok(v)) = (std::str::from_utf8(key), std::str::from_utf8(value)) else {
                    return c.fail("startup parameter is not valid UTF-8");
                };
                params.push((k.to_owned(), v.to_owned()));
            }
            c.end()?;
            Ok(StartupRequest::Startup { params })
        }
        other => Ok(StartupRequest::UnsupportedVersion(other)),
    }
}

/// `p` during authentication: the SASL initial response (mechanism, data).
pub fn sasl_initial(body: &[u8]) -> Result<(&[u8], &[u8]), DecodeError> {
    let mut c = Cursor::new(body, "SASLInitialResponse");
    let mech = c.cstr()?;
    let len = c.i32()?;
    let data = if len < 0 {
        &[][..]
    } else {
        c.take(len as usize)?
    };
    c.end()?;
    Ok((mech, data))
}

/// `p` during md5/cleartext authentication: the password string.
pub fn password(body: &[u8]) -> Result<&[u8], DecodeError> {
    let mut c = Cursor::new(body, "PasswordMessage");
    let pw = c.cstr()?;
    c.end()?;
    Ok(pw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_bind_roundtrip_fields() {
        let body = b"s1\0select $1\0\x00\x01\x00\x00\x00\x17";
        let p = parse(body).unwrap();
        assert_eq!(p.name, b"s1");
        assert_eq!(p.sql, b"select $1");
        assert_eq!(p.param_types, b"\x00\x01\x00\x00\x00\x17");

        let body = b"\0s1\0\x00\x00\x00\x01\x00\x00\x00\x02hi\x00\x00";
        let b = bind(body).unwrap();
        assert_eq!(b.statement, b"s1");
        assert_eq!(b.rest.len(), body.len() - 4);
    }

    #[test]
    fn lying_lengths_are_errors_not_panics() {
        // Parameter claims 1000 bytes in a short frame.
        assert!(bind(b"\0s\0\x00\x00\x00\x01\x00\x00\x03\xe8ab\x00\x00").is_err());
        // Parse with a type count that runs past the end.
        assert!(parse(b"\0select 1\0\x00\x05\x00\x00").is_err());
        assert!(parse(b"\0no terminator").is_err());
        assert!(target(b"X\0", "Describe").is_err());
        assert!(execute(b"\0\x00").is_err());
        assert!(query(b"select 1").is_err());
        assert!(query(b"select 1\0extra").is_err());
    }

    #[test]
    fn startup_packet_params() {
        let mut pkt = vec![0, 0, 0, 0, 0, 3, 0, 0];
        pkt.extend_from_slice(b"user\0app\0database\0db\0\0");
        let len = pkt.len() as i32;
        pkt[..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(
            startup(&pkt).unwrap(),
            StartupRequest::Startup {
                params: vec![
                    ("user".into(), "app".into()),
                    ("database".into(), "db".into())
                ]
            }
        );
    }
}

/// The fields of an ErrorResponse or NoticeResponse body, decoded lossily for logs and for
/// errors the proxy re-raises (the original frame is what is forwarded).
pub fn error_fields(body: &[u8]) -> Vec<(u8, String)> {
    let mut out = Vec::new();
    let mut c = Cursor::new(body, "ErrorResponse");
    while let Ok(code) = c.take(1) {
        if code[0] == 0 {
            break;
        }
        match c.cstr() {
            Ok(v) => out.push((code[0], String::from_utf8_lossy(v).into_owned())),
            Err(_) => break,
        }
    }
    out
}

/// `S` ParameterStatus body: (name, value).
pub fn parameter_status(body: &[u8]) -> Option<(String, String)> {
    let mut c = Cursor::new(body, "ParameterStatus");
    let name = c.cstr().ok()?;
    let value = c.cstr().ok()?;
    Some((
        String::from_utf8_lossy(name).into_owned(),
        String::from_utf8_lossy(value).into_owned(),
    ))
}

/// A client message after the session-phase decode: the few kinds the proxy looks into,
/// borrowed from the frame body; everything else is `Other` and forwarded untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage<'a> {
    Query(&'a [u8]),
    Parse(Parse<'a>),
    Bind(Bind<'a>),
    Describe(Target<'a>),
    Close(Target<'a>),
    Execute {
        portal: &'a [u8],
        max_rows: i32,
    },
    Sync,
    Flush,
    Terminate,
    /// CopyData, CopyDone, CopyFail.
    Copy,
    FunctionCall,
    Other,
}

/// Decode one session-phase client frame body by its tag. This is the only decoder the
/// session uses on client input, and the one the fuzz test hammers.
pub fn client(tag: u8, body: &[u8]) -> Result<ClientMessage<'_>, DecodeError> {
    Ok(match tag {
        b'Q' => ClientMessage::Query(query(body)?),
        b'P' => ClientMessage::Parse(parse(body)?),
        b'B' => ClientMessage::Bind(bind(body)?),
        b'D' => ClientMessage::Describe(target(body, "Describe")?),
        b'C' => ClientMessage::Close(target(body, "Close")?),
        b'E' => {
            let (portal, max_rows) = execute(body)?;
            ClientMessage::Execute { portal, max_rows }
        }
        b'S' => ClientMessage::Sync,
        b'H' => ClientMessage::Flush,
        b'X' => ClientMessage::Terminate,
        b'd' | b'c' | b'f' => ClientMessage::Copy,
        b'F' => ClientMessage::FunctionCall,
        _ => ClientMessage::Other,
    })
}
