//! Client authentication: SCRAM-SHA-256, md5 and trust against `users:` (and `admin:`).
//!
//! Owns the credential table (built once per config snapshot, so no login pays for PBKDF2)
//! and the exchanges themselves. The SCRAM server mechanism is pgwire's; this module only
//! moves its messages over our own framing. It does not know about sessions or shards.

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::BytesMut;
use pgwire::api::auth::sasl::scram::{gen_salted_password, ScramSecret, ScramServerAuth};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::startup::read_frame;
use crate::config::{AuthMethod, Config, Password};
use crate::protocol::{build, decode, sqlstate, PgError};

/// What the proxy knows about one user's secret, in the form its auth method needs.
#[derive(Clone)]
enum Secret {
    Scram {
        salt: Vec<u8>,
        iterations: usize,
        stored_key: Vec<u8>,
        server_key: Vec<u8>,
    },
    /// Hex of md5(password || username), as Postgres stores it after the "md5" prefix.
    Md5(String),
    None,
}

/// The credential table of one config snapshot.
pub struct Credentials {
    method: AuthMethod,
    users: HashMap<String, Secret>,
    admin: Option<(String, Secret)>,
}

const SCRAM_ITERATIONS: usize = 4096;

fn secret_for(method: AuthMethod, user: &str, pw: &Password) -> Result<Secret, String> {
    match (method, pw) {
        (AuthMethod::Trust, _) => Ok(Secret::None),
        (AuthMethod::ScramSha256, Password::Plain(p)) => {
            let salt: [u8; 16] = rand::random();
            let salted = gen_salted_password(p, &salt, SCRAM_ITERATIONS);
            match ScramSecret::verifier_from_salted_password(
                salt.to_vec(),
                salted,
                SCRAM_ITERATIONS,
            ) {
                ScramSecret::Verifier {
                    salt,
                    iterations,
                    stored_key,
                    server_key,
                } => Ok(Secret::Scram {
                    salt,
                    iterations,
                    stored_key,
                    server_key,
                }),
                ScramSecret::SaltedPassword { .. } => Err("unexpected SCRAM secret form".into()),
            }
        }
        (AuthMethod::ScramSha256, Password::ScramVerifier(v)) => parse_verifier(v),
        (AuthMethod::Md5, Password::Plain(p)) => Ok(Secret::Md5(format!(
            "{:x}",
            md5::compute(format!("{p}{user}"))
        ))),
        (AuthMethod::Md5, Password::Md5Hash(h)) => Ok(Secret::Md5(h[3..].to_owned())),
        _ => Err(format!(
            "the stored password of user \"{user}\" cannot be used with this auth_method"
        )),
    }
}

/// `SCRAM-SHA-256$<iterations>:<salt>$<storedkey>:<serverkey>`, all base64.
fn parse_verifier(v: &str) -> Result<Secret, String> {
    let bad = || "malformed SCRAM-SHA-256 verifier".to_string();
    let rest = v.strip_prefix("SCRAM-SHA-256$").ok_or_else(bad)?;
    let (iter_salt, keys) = rest.split_once('$').ok_or_else(bad)?;
    let (iter, salt) = iter_salt.split_once(':').ok_or_else(bad)?;
    let (stored, server) = keys.split_once(':').ok_or_else(bad)?;
    let dec = |s: &str| STANDARD.decode(s).map_err(|_| bad());
    Ok(Secret::Scram {
        iterations: iter.parse().map_err(|_| bad())?,
        salt: dec(salt)?,
        stored_key: dec(stored)?,
        server_key: dec(server)?,
    })
}

impl Credentials {
    pub fn from_config(cfg: &Config) -> Result<Self, String> {
        let mut users = HashMap::new();
        for u in &cfg.users {
            users.insert(
                u.name.clone(),
                secret_for(cfg.auth_method, &u.name, &u.password)?,
            );
        }
        let admin = match &cfg.admin {
            Some(a) => Some((
                a.user.clone(),
                secret_for(
                    cfg.auth_method,
                    &a.user,
                    &Password::Plain(a.password.clone()),
                )?,
            )),
            None => None,
        };
        Ok(Credentials {
            method: cfg.auth_method,
            users,
            admin,
        })
    }

    fn lookup(&self, user: &str, admin: bool) -> Option<&Secret> {
        if admin {
            self.admin
                .as_ref()
                .filter(|(name, _)| name == user)
                .map(|(_, s)| s)
        } else {
            self.users.get(user)
        }
    }
}

/// Authenticate `user`; on success AuthenticationOk has been written.
pub async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    rbuf: &mut BytesMut,
    creds: &Credentials,
    user: &str,
    admin: bool,
) -> Result<(), PgError> {
    let Some(secret) = creds.lookup(user, admin).cloned() else {
        return Err(PgError::fatal(
            sqlstate::INVALID_AUTHORIZATION,
            format!("role \"{user}\" does not exist"),
        ));
    };
    let failed = || {
        PgError::fatal(
            sqlstate::INVALID_PASSWORD,
            format!("password authentication failed for user \"{user}\""),
        )
    };
    let mut out = BytesMut::new();
    match (creds.method, secret) {
        (AuthMethod::Trust, _) | (_, Secret::None) => {}
        (_, Secret::Md5(hex)) => {
            let salt: [u8; 4] = rand::random();
            build::auth_md5(&mut out, salt);
            send(stream, &mut out).await?;
            let f = read_frame(stream, rbuf, b'p').await?;
            let got = decode::password(f.body()).map_err(protocol)?;
            let mut salted = hex.into_bytes();
            salted.extend_from_slice(&salt);
            let want = format!("md5{:x}", md5::compute(&salted));
            if got != want.as_bytes() {
                return Err(failed());
            }
        }
        (
            _,
            Secret::Scram {
                salt,
                iterations,
                stored_key,
                server_key,
            },
        ) => {
            build::auth_sasl(&mut out);
            send(stream, &mut out).await?;
            let f = read_frame(stream, rbuf, b'p').await?;
            let (mech, data) = decode::sasl_initial(f.body()).map_err(protocol)?;
            if mech != b"SCRAM-SHA-256" {
                return Err(PgError::fatal(
                    sqlstate::PROTOCOL_VIOLATION,
                    "client selected an invalid SASL authentication mechanism",
                ));
            }
            let secret = ScramSecret::Verifier {
                salt,
                iterations,
                stored_key,
                server_key,
            };
            let (first, waiting) = ScramServerAuth::new()
                .on_client_first_message_with_secret(data, secret)
                .map_err(|e| bad_scram(&e))?;
            build::auth_sasl_continue(&mut out, first.as_bytes());
            send(stream, &mut out).await?;
            let f = read_frame(stream, rbuf, b'p').await?;
            let last = waiting.on_client_final_message(f.body()).map_err(|e| {
                if matches!(e, pgwire::error::PgWireError::InvalidPassword(_)) {
                    failed()
                } else {
                    bad_scram(&e)
                }
            })?;
            build::auth_sasl_final(&mut out, last.as_bytes());
        }
    }
    build::auth_ok(&mut out);
    send(stream, &mut out).await
}

fn protocol(e: decode::DecodeError) -> PgError {
    PgError::fatal(sqlstate::PROTOCOL_VIOLATION, e.to_string())
}

fn bad_scram(e: &pgwire::error::PgWireError) -> PgError {
    PgError::fatal(
        sqlstate::PROTOCOL_VIOLATION,
        format!("malformed SCRAM message: {e}"),
    )
}

/// Write and flush: over TLS the tail of a write may wait in the TLS layer until flushed.
async fn send<S: AsyncWrite + Unpin>(stream: &mut S, out: &mut BytesMut) -> Result<(), PgError> {
    let failed = |e: std::io::Error| {
        PgError::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            format!("client write failed: {e}"),
        )
    };
    stream.write_all(out).await.map_err(failed)?;
    stream.flush().await.map_err(failed)?;
    out.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_parses_and_rejects_garbage() {
        // Made with Postgres 15: SET password_encryption = 'scram-sha-256'; ALTER ROLE ...
        let v = "SCRAM-SHA-256$4096:c2FsdHNhbHQ=$SGVsbG9IZWxsbw==:V29ybGRXb3JsZA==";
        assert!(matches!(
            parse_verifier(v),
            Ok(Secret::Scram {
                iterations: 4096,
                ..
            })
        ));
        assert!(parse_verifier("SCRAM-SHA-256$x:y$z").is_err());
        assert!(parse_verifier("md5abc").is_err());
    }

    #[test]
    fn md5_secret_matches_postgres_format() {
        // Postgres stores 'md5' || md5('app' || 'app') for user app, password app.
        let s = secret_for(AuthMethod::Md5, "app", &Password::Plain("app".into())).ok();
        let Some(Secret::Md5(hex)) = s else {
            panic!("md5 secret expected")
        };
        assert_eq!(hex, format!("{:x}", md5::compute("appapp")));
    }
}
