//! Client credentials: `auth_method`, `users:` and `admin:`.
//!
//! Owns telling a plaintext password from a stored SCRAM verifier or md5 hash, checking the
//! verifier's shape, and refusing a stored secret that the chosen `auth_method` cannot use.
//! It does not authenticate anyone (that is `frontend`'s job) and never puts a password or a
//! verifier into a message.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::Problem;
use crate::config::raw::{RawAdmin, RawAuthMethod, RawUser};
use crate::config::{AdminConfig, AuthMethod, Password, UserConfig};

const SCRAM_PREFIX: &str = "SCRAM-SHA-256$";
const SCRAM_SHAPE: &str =
    "SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>";

pub(super) fn auth_method(raw: Option<RawAuthMethod>) -> AuthMethod {
    match raw {
        None | Some(RawAuthMethod::ScramSha256) => AuthMethod::ScramSha256,
        Some(RawAuthMethod::Md5) => AuthMethod::Md5,
        Some(RawAuthMethod::Trust) => AuthMethod::Trust,
    }
}

pub(super) fn users(raw: Vec<RawUser>, auth: AuthMethod) -> Result<Vec<UserConfig>, Problem> {
    let mut out: Vec<UserConfig> = Vec::with_capacity(raw.len());
    for (i, user) in raw.into_iter().enumerate() {
        if user.name.is_empty() {
            return Err(Problem::new(
                format!("users[{i}].name"),
                "user name is empty",
            ));
        }
        if let Some(first) = out.iter().position(|u| u.name == user.name) {
            return Err(Problem::new(
                format!("users[{i}].name"),
                format!("duplicate user \"{}\" (also users[{first}])", user.name),
            ));
        }
        let path = format!("users[{i}].password");
        let password = classify_password(&user.password).map_err(|r| Problem::new(&path, r))?;
        check_usable(&password, auth).map_err(|r| Problem::new(&path, r))?;
        out.push(UserConfig {
            name: user.name,
            password,
        });
    }
    Ok(out)
}

/// The admin password follows the same rules as a user's (plaintext or a stored verifier the
/// `auth_method` can use); the model keeps its text, and the console's login classifies it.
pub(super) fn admin(
    raw: Option<RawAdmin>,
    users: &[UserConfig],
    auth: AuthMethod,
) -> Result<Option<AdminConfig>, Problem> {
    let Some(admin) = raw else { return Ok(None) };
    if admin.user.is_empty() {
        return Err(Problem::new("admin.user", "user name is empty"));
    }
    classify_password(&admin.password)
        .and_then(|p| check_usable(&p, auth))
        .map_err(|r| Problem::new("admin.password", r))?;
    if let Some(i) = users.iter().position(|u| u.name == admin.user) {
        return Err(Problem::new(
            "admin.user",
            format!(
                "\"{}\" is also users[{i}]; the admin console needs a user name of its own",
                admin.user
            ),
        ));
    }
    Ok(Some(AdminConfig {
        user: admin.user,
        password: admin.password,
    }))
}

/// A stored secret the server side of `auth` cannot verify is a configuration error, not a
/// login failure to discover later.
fn check_usable(password: &Password, auth: AuthMethod) -> Result<(), String> {
    match (password, auth) {
        (Password::ScramVerifier(_), AuthMethod::Md5) => Err(
            "a SCRAM-SHA-256 verifier cannot be used with auth_method md5 (md5 needs the \
             plaintext password or its md5 hash)"
                .into(),
        ),
        (Password::Md5Hash(_), AuthMethod::ScramSha256) => Err(
            "an md5 hash cannot be used with auth_method scram-sha-256 (SCRAM needs the \
             plaintext password or a SCRAM-SHA-256 verifier: `shardgate hash-password` makes one)"
                .into(),
        ),
        _ => Ok(()),
    }
}

/// `SCRAM-SHA-256$...` is a verifier (its shape is checked), `md5` + 32 lowercase hex digits
/// is an md5 hash, anything else is a plaintext password.
pub(super) fn classify_password(text: &str) -> Result<Password, String> {
    if text.is_empty() {
        return Err("the password is empty".into());
    }
    if let Some(rest) = text.strip_prefix(SCRAM_PREFIX) {
        check_scram(rest).map_err(|why| {
            format!("invalid SCRAM-SHA-256 verifier: {why} (expected {SCRAM_SHAPE})")
        })?;
        return Ok(Password::ScramVerifier(text.to_owned()));
    }
    if let Some(hex) = text.strip_prefix("md5") {
        if hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Ok(Password::Md5Hash(text.to_owned()));
        }
    }
    Ok(Password::Plain(text.to_owned()))
}

/// Check `<iterations>:<salt>$<StoredKey>:<ServerKey>` (the part after the prefix).
fn check_scram(rest: &str) -> Result<(), &'static str> {
    let (params, keys) = rest
        .split_once('$')
        .ok_or("missing the `$` before the keys")?;
    let (iterations, salt) = params
        .split_once(':')
        .ok_or("missing the `:` after the iteration count")?;
    let (stored, server) = keys
        .split_once(':')
        .ok_or("missing the `:` between the keys")?;
    match iterations.parse::<u32>() {
        Ok(n) if n > 0 => {}
        _ => return Err("the iteration count is not a positive number"),
    }
    match STANDARD.decode(salt) {
        Ok(bytes) if !bytes.is_empty() => {}
        _ => return Err("the salt is not base64"),
    }
    for key in [stored, server] {
        match STANDARD.decode(key) {
            Ok(bytes) if bytes.len() == 32 => {}
            _ => return Err("a key is not 32 bytes of base64"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_classified() {
        let verifier = postgres_protocol::password::scram_sha_256(b"app");
        assert!(matches!(
            classify_password(&verifier),
            Ok(Password::ScramVerifier(_))
        ));
        let md5 = "md5a1d0c6e83f027327d8461063f4ac58a6";
        assert!(matches!(classify_password(md5), Ok(Password::Md5Hash(_))));
        for plain in [
            "app",
            "md5",
            "md5A1D0C6E83F027327D8461063F4AC58A6",
            "SCRAM",
            "md5a1d0",
        ] {
            assert_eq!(
                classify_password(plain),
                Ok(Password::Plain(plain.into())),
                "{plain}"
            );
        }
    }

    #[test]
    fn bad_verifiers_say_why() {
        let good = postgres_protocol::password::scram_sha_256(b"app");
        let (params, keys) = good[SCRAM_PREFIX.len()..]
            .split_once('$')
            .expect("verifier shape");
        let (_, salt) = params.split_once(':').expect("verifier shape");
        let (stored, server) = keys.split_once(':').expect("verifier shape");
        let cases = [
            (
                format!("{SCRAM_PREFIX}4096:{salt}"),
                "missing the `$` before the keys",
            ),
            (
                format!("{SCRAM_PREFIX}4096{salt}${keys}"),
                "missing the `:` after the iteration count",
            ),
            (
                format!("{SCRAM_PREFIX}4096:{salt}${stored}{server}"),
                "missing the `:` between the keys",
            ),
            (
                format!("{SCRAM_PREFIX}0:{salt}${keys}"),
                "the iteration count is not a positive number",
            ),
            (
                format!("{SCRAM_PREFIX}x:{salt}${keys}"),
                "the iteration count is not a positive number",
            ),
            (
                format!("{SCRAM_PREFIX}4096:!!${keys}"),
                "the salt is not base64",
            ),
            (
                format!("{SCRAM_PREFIX}4096:{salt}$AAAA:{server}"),
                "a key is not 32 bytes of base64",
            ),
        ];
        for (text, why) in cases {
            assert_eq!(
                classify_password(&text),
                Err(format!(
                    "invalid SCRAM-SHA-256 verifier: {why} (expected {SCRAM_SHAPE})"
                )),
                "{text}"
            );
        }
    }
}
