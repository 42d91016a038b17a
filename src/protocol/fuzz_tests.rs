//! Fuzz-style test of the client-side decoder: well-formed frames, then random bytes and
//! mutations of real frames (flipped bytes, lying lengths, truncations, extensions), fed
//! through the framer and `decode::client` exactly as the session does. Nothing may panic,
//! and every accepted frame must stay within the buffer it came from.

use bytes::BytesMut;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::decode::{self, ClientMessage};
use super::frame;

fn frame_of(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn seeds() -> Vec<Vec<u8>> {
    vec![
        frame_of(b'Q', b"select 1\0"),
        frame_of(b'P', b"s1\0select $1::int\0\x00\x01\x00\x00\x00\x17"),
        frame_of(
            b'B',
            b"p\0s1\0\x00\x01\x00\x00\x00\x01\x00\x00\x00\x0242\x00\x01\x00\x01",
        ),
        frame_of(
            b'B',
            b"\0\0\x00\x00\x00\x02\xff\xff\xff\xff\x00\x00\x00\x00\x00\x00",
        ),
        frame_of(b'D', b"Ss1\0"),
        frame_of(b'C', b"Pp\0"),
        frame_of(b'E', b"\0\x00\x00\x00\x00"),
        frame_of(b'S', b""),
        frame_of(b'H', b""),
        frame_of(b'd', b"1\t2\n"),
        frame_of(b'c', b""),
        frame_of(b'f', b"oops\0"),
        frame_of(b'F', b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00"),
        frame_of(b'X', b""),
    ]
}

/// Run the session's decode path over `input`; returns how many frames were accepted.
fn drive(input: &[u8], limit: usize) -> usize {
    let mut buf = BytesMut::from(input);
    let mut n = 0;
    while let Ok(Some(f)) = frame::next_tagged(&mut buf, limit) {
        assert!(f.raw.len() >= 5 && f.raw.len() <= limit + 1);
        // Borrowed fields must lie inside the frame body.
        if let Ok(ClientMessage::Bind(b)) = decode::client(f.tag, f.body()) {
            assert!(b.rest.len() < f.body().len());
        }
        n += 1;
    }
    n
}

#[test]
fn random_and_mutated_frames_never_panic() {
    let mut rng = StdRng::seed_from_u64(0x5a4d_6a7e);
    let seeds = seeds();
    let tags = b"QPBDCESHdcfFXpx\0\xff";
    let mut accepted = 0;
    for i in 0..120_000 {
        let mut input: Vec<u8> = match i % 3 {
            0 => {
                // Pure random bytes behind a plausible tag and length.
                let len = rng.random_range(0..64);
                let mut v = vec![tags[rng.random_range(0..tags.len())]];
                v.extend_from_slice(&(rng.random_range(-8i32..80)).to_be_bytes());
                v.extend((0..len).map(|_| rng.random::<u8>()));
                v
            }
            _ => seeds[rng.random_range(0..seeds.len())].clone(),
        };
        if i % 3 != 0 {
            for _ in 0..rng.random_range(1..4) {
                match rng.random_range(0..5) {
                    0 if !input.is_empty() => {
                        let at = rng.random_range(0..input.len());
                        input[at] = rng.random();
                    }
                    1 if input.len() > 1 => {
                        let keep = rng.random_range(1..input.len());
                        input.truncate(keep);
                        // Keep the declared length, so the body is "missing".
                    }
                    2 if input.len() >= 5 => {
                        let len: i32 = rng.random_range(-5..200);
                        input[1..5].copy_from_slice(&len.to_be_bytes());
                    }
                    3 => input.extend((0..rng.random_range(1..16)).map(|_| rng.random::<u8>())),
                    _ => {
                        // An inner length field set to something huge.
                        if input.len() > 10 {
                            let at = rng.random_range(5..input.len() - 4);
                            input[at..at + 4].copy_from_slice(&i32::MAX.to_be_bytes());
                        }
                    }
                }
            }
        }
        accepted += drive(&input, 1 << 16);
    }
    // The generator must actually reach the decoders, not only the framer.
    assert!(
        accepted > 30_000,
        "only {accepted} frames were accepted by the framer"
    );
}

#[test]
fn the_unmutated_seeds_all_decode() {
    for s in seeds() {
        let mut buf = BytesMut::from(&s[..]);
        let f = frame::next_tagged(&mut buf, 1 << 16).unwrap().unwrap();
        assert!(
            decode::client(f.tag, f.body()).is_ok(),
            "seed {:?}",
            f.tag as char
        );
    }
}
