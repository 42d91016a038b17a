//! Cutting a byte stream into protocol frames, with every length checked before use.
//!
//! A tagged frame is `tag:u8 len:i32 body[len-4]`; the startup-phase frames have no tag.
//! The functions here look only at the header: they never decode a body, so they are the
//! same cost for a 10-byte `Sync` and a 1 MB `DataRow`. Lengths below 4 or above the caller's
//! limit are errors (the caller answers 08P01 and closes); a frame that is not fully buffered
//! yet is `Ok(None)`.

use bytes::{Bytes, BytesMut};

/// Startup-phase request codes (the int32 after the length).
pub const PROTOCOL_V3: i32 = 196_608;
pub const SSL_REQUEST: i32 = 80_877_103;
pub const GSSENC_REQUEST: i32 = 80_877_104;
pub const CANCEL_REQUEST: i32 = 80_877_102;

/// The largest startup packet accepted (Postgres itself allows 10000 bytes).
pub const MAX_STARTUP_LEN: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("invalid message length {len} for message type \"{}\"", char::from(*tag))]
    BadLength { tag: u8, len: i64 },
    #[error("message of type \"{}\" is {len} bytes, larger than the limit of {limit} bytes", char::from(*tag))]
    TooLarge { tag: u8, len: usize, limit: usize },
    #[error("invalid length of startup packet: {0}")]
    BadStartupLength(i64),
}

/// One complete tagged frame: `raw` holds the whole frame, header included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub tag: u8,
    pub raw: Bytes,
}

impl Frame {
    /// The body after the 5-byte header.
    pub fn body(&self) -> &[u8] {
        &self.raw[5..]
    }
}

/// Look at the header at the front of `buf` without consuming anything.
/// Returns the total frame size (tag included) once the header is present and valid.
pub fn peek_tagged(buf: &[u8], limit: usize) -> Result<Option<(u8, usize)>, FrameError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let tag = buf[0];
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(FrameError::BadLength {
            tag,
            len: len.into(),
        });
    }
    // `len` is positive and fits in an i32, so this cannot overflow on any target.
    let len = len as usize;
    if len > limit {
        return Err(FrameError::TooLarge { tag, len, limit });
    }
    Ok(Some((tag, len + 1)))
}

/// Split the next complete tagged frame off the front of `buf`.
pub fn next_tagged(buf: &mut BytesMut, limit: usize) -> Result<Option<Frame>, FrameError> {
    match peek_tagged(buf, limit)? {
        Some((tag, total)) if buf.len() >= total => Ok(Some(Frame {
            tag,
            raw: buf.split_to(total).freeze(),
        })),
        _ => Ok(None),
    }
}

/// Split the next complete untagged startup-phase frame (length included) off `buf`.
pub fn next_startup(buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 8 || len as usize > MAX_STARTUP_LEN {
        return Err(FrameError::BadStartupLength(len.into()));
    }
    let len = len as usize;
    if buf.len() < len {
        return Ok(None);
    }
    Ok(Some(buf.split_to(len).freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn splits_complete_frames_and_waits_for_partial_ones() {
        let mut all = frame(b'Q', b"select 1\0");
        all.extend(frame(b'S', b""));
        let mut buf = BytesMut::from(&all[..all.len() - 2]);
        let f = next_tagged(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(f.tag, b'Q');
        assert_eq!(f.body(), b"select 1\0");
        assert_eq!(next_tagged(&mut buf, 1024).unwrap(), None);
        buf.extend_from_slice(&all[all.len() - 2..]);
        assert_eq!(next_tagged(&mut buf, 1024).unwrap().unwrap().tag, b'S');
        assert!(buf.is_empty());
    }

    #[test]
    fn rejects_bad_and_oversized_lengths() {
        let mut buf = BytesMut::from(&[b'Q', 0, 0, 0, 2][..]);
        assert!(matches!(
            next_tagged(&mut buf, 1024),
            Err(FrameError::BadLength { len: 2, .. })
        ));
        let mut buf = BytesMut::from(&[b'Q', 0xff, 0xff, 0xff, 0xff][..]);
        assert!(next_tagged(&mut buf, 1024).is_err());
        let mut buf = BytesMut::from(&frame(b'd', &[0u8; 100])[..]);
        assert!(matches!(
            next_tagged(&mut buf, 50),
            Err(FrameError::TooLarge { len: 104, .. })
        ));
    }

    #[test]
    fn startup_lengths_are_bounded() {
        let mut buf = BytesMut::from(&[0u8, 0, 0, 3][..]);
        assert!(next_startup(&mut buf).is_err());
        let mut buf = BytesMut::from(&[0u8, 1, 0, 0][..]);
        assert!(next_startup(&mut buf).is_err());
        let mut buf = BytesMut::from(&[0u8, 0, 0, 8, 4, 210, 22][..]);
        assert_eq!(next_startup(&mut buf).unwrap(), None);
        buf.extend_from_slice(&[47]);
        assert_eq!(next_startup(&mut buf).unwrap().unwrap().len(), 8);
    }
}
