//! `shardgate hash-password`: read a password from standard input and print a
//! SCRAM-SHA-256 verifier in Postgres' stored format, for the `users:` section.

use std::io::Read;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use pgwire::api::auth::sasl::scram::{gen_salted_password, ScramSecret};

use super::CliError;

const ITERATIONS: usize = 4096;

pub fn run() -> Result<(), CliError> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| CliError::Runtime(format!("cannot read the password: {e}")))?;
    let password = input.strip_suffix('\n').unwrap_or(&input);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return Err(CliError::Usage("empty password on standard input".into()));
    }
    println!("{}", verifier(password, &rand::random::<[u8; 16]>()));
    Ok(())
}

/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, as Postgres stores it.
pub fn verifier(password: &str, salt: &[u8]) -> String {
    let salted = gen_salted_password(password, salt, ITERATIONS);
    match ScramSecret::verifier_from_salted_password(salt.to_vec(), salted, ITERATIONS) {
        ScramSecret::Verifier {
            salt,
            iterations,
            stored_key,
            server_key,
        } => format!(
            "SCRAM-SHA-256${iterations}:{}${}:{}",
            STANDARD.encode(salt),
            STANDARD.encode(stored_key),
            STANDARD.encode(server_key)
        ),
        ScramSecret::SaltedPassword { .. } => {
            unreachable!("verifier_from_salted_password returns a Verifier")
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn verifier_has_postgres_shape() {
        let v = super::verifier("app", b"0123456789abcdef");
        assert!(
            v.starts_with("SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$"),
            "{v}"
        );
        assert_eq!(v.matches(':').count(), 2);
    }
}
