//! Durations (`5s`, `500ms`, `10m`, `1h`) and byte sizes (`65536`, `64MiB`) as written in the
//! configuration file.
//!
//! Owns only the text -> number step and the reason shown when it fails. It does not know
//! which key is being read or what range a value must fall in: `validate` adds the key path
//! and the bounds.

use std::time::Duration;

use super::raw::Scalar;

const DURATION_HELP: &str = "expected a whole number followed by ms, s, m or h (for example 5s)";
const SIZE_HELP: &str =
    "expected a number of bytes, optionally followed by kB, MB, GB (1024-based) or KiB, MiB, GiB";

/// Parse a duration. A bare `0` is accepted without a unit because it is unambiguous; any
/// other number needs one, since `timeout: 5` could mean seconds or milliseconds.
pub fn parse_duration(value: &Scalar) -> Result<Duration, String> {
    let text = match value {
        Scalar::Int(0) => return Ok(Duration::ZERO),
        Scalar::Int(n) => {
            return Err(format!(
                "duration {n} has no unit: write {n}s, {n}ms, {n}m or {n}h"
            ))
        }
        Scalar::Text(t) => t.trim(),
    };
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    let unit = unit.trim_start();
    if digits.is_empty() {
        return Err(format!("invalid duration \"{text}\": {DURATION_HELP}"));
    }
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "" => {
            return Err(format!(
            "duration \"{text}\" has no unit: write {digits}s, {digits}ms, {digits}m or {digits}h"
        ))
        }
        _ => return Err(format!("invalid duration \"{text}\": {DURATION_HELP}")),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(millis_per_unit))
        .map(Duration::from_millis)
        .ok_or_else(|| format!("duration \"{text}\" is too large"))
}

/// Parse a size in bytes: an integer, or a number with a unit. `kB`/`MB`/`GB` are 1024-based
/// as in `postgresql.conf`, so they mean the same as `KiB`/`MiB`/`GiB`.
pub fn parse_size(value: &Scalar) -> Result<u64, String> {
    let text = match value {
        Scalar::Int(n) => {
            return u64::try_from(*n).map_err(|_| format!("size {n} is out of range: {SIZE_HELP}"))
        }
        Scalar::Text(t) => t.trim(),
    };
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    let multiplier: u64 = match unit.trim_start() {
        "" | "B" => 1,
        "kB" | "KiB" => 1 << 10,
        "MB" | "MiB" => 1 << 20,
        "GB" | "GiB" => 1 << 30,
        _ => return Err(format!("invalid size \"{text}\": {SIZE_HELP}")),
    };
    if digits.is_empty() {
        return Err(format!("invalid size \"{text}\": {SIZE_HELP}"));
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("size \"{text}\" is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Scalar {
        Scalar::Text(s.to_owned())
    }

    #[test]
    fn durations_that_parse() {
        let cases: &[(Scalar, Duration)] = &[
            (text("5s"), Duration::from_secs(5)),
            (text("500ms"), Duration::from_millis(500)),
            (text("10m"), Duration::from_secs(600)),
            (text("1h"), Duration::from_secs(3600)),
            (text("60 s"), Duration::from_secs(60)),
            (text(" 2m "), Duration::from_secs(120)),
            (text("0"), Duration::ZERO),
            (text("0s"), Duration::ZERO),
            (Scalar::Int(0), Duration::ZERO),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration(input).as_ref(), Ok(want), "{input:?}");
        }
    }

    #[test]
    fn durations_that_fail() {
        let cases: &[(Scalar, &str)] = &[
            (Scalar::Int(5), "duration 5 has no unit: write 5s, 5ms, 5m or 5h"),
            (text("5"), "duration \"5\" has no unit: write 5s, 5ms, 5m or 5h"),
            (text("5 sec"), "invalid duration \"5 sec\": expected a whole number followed by ms, s, m or h (for example 5s)"),
            (text("1.5s"), "invalid duration \"1.5s\": expected a whole number followed by ms, s, m or h (for example 5s)"),
            (text("s"), "invalid duration \"s\": expected a whole number followed by ms, s, m or h (for example 5s)"),
            (text(""), "invalid duration \"\": expected a whole number followed by ms, s, m or h (for example 5s)"),
            (text("-5s"), "invalid duration \"-5s\": expected a whole number followed by ms, s, m or h (for example 5s)"),
            (text("5S"), "invalid duration \"5S\": expected a whole number followed by ms, s, m or h (for example 5s)"),
            (text("99999999999999999999h"), "duration \"99999999999999999999h\" is too large"),
            (text("9999999999999999h"), "duration \"9999999999999999h\" is too large"),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration(input), Err(want.to_string()), "{input:?}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size(&Scalar::Int(65536)), Ok(65536));
        assert_eq!(parse_size(&text("65536")), Ok(65536));
        assert_eq!(parse_size(&text("64MiB")), Ok(64 << 20));
        assert_eq!(parse_size(&text("64 MB")), Ok(64 << 20));
        assert_eq!(parse_size(&text("8kB")), Ok(8192));
        assert_eq!(parse_size(&text("1GiB")), Ok(1 << 30));
        assert_eq!(
            parse_size(&Scalar::Int(-1)),
            Err("size -1 is out of range: expected a number of bytes, optionally followed by kB, MB, GB (1024-based) or KiB, MiB, GiB".into())
        );
        assert_eq!(
            parse_size(&text("64 megs")),
            Err("invalid size \"64 megs\": expected a number of bytes, optionally followed by kB, MB, GB (1024-based) or KiB, MiB, GiB".into())
        );
        assert_eq!(
            parse_size(&text("MiB")),
            Err("invalid size \"MiB\": expected a number of bytes, optionally followed by kB, MB, GB (1024-based) or KiB, MiB, GiB".into())
        );
    }
}
