//! float4/float8 text: reading what Postgres prints (`NaN`, `Infinity`, `-Infinity` and
//! numbers), and printing merged sums and averages exactly as Postgres 12+ does with the
//! default `extra_float_digits = 1`.
//!
//! Postgres prints the shortest decimal that reads back as the same float (Ryu), in fixed
//! notation for decimal exponents from -4 up to 14 (float8) or 5 (float4), else as
//! `d.ddde+XX`. One subtlety: its Ryu never picks a decimal that lies exactly on the boundary
//! between two floats (ties that would only read back correctly under round-half-even), where
//! Rust's shortest formatting does; `-4.7349516337738336e+16` is Postgres' answer for a value
//! Rust prints as `-4.734951633773834e16`. Such boundary digits are detected exactly (with
//! `Numeric`) and replaced by the next longer correctly rounded decimal. Likewise Postgres
//! breaks an exact tie in the last digit towards even (`-1.9100400614066882e+15`), where
//! Rust's shortest form rounds up.

use super::numeric::Numeric;

/// A float8, or with `float4` a float4 rounded once (as `strtof` would) and widened.
pub(super) fn parse(text: &str, float4: bool) -> Option<f64> {
    match text.trim().to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "infinity" | "+infinity" | "inf" | "+inf" => Some(f64::INFINITY),
        "-infinity" | "-inf" => Some(f64::NEG_INFINITY),
        t if float4 => t.parse::<f32>().ok().map(f64::from),
        t => t.parse().ok(),
    }
}

/// Postgres' text for a float8, or with `float4` for `v` narrowed to a float4.
pub(super) fn text(v: f64, float4: bool) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else if float4 {
        layout(&shortest(v, true), 6)
    } else {
        layout(&shortest(v, false), 15)
    }
}

/// The binary significand and exponent of a finite float: `|v| = m * 2^e`, and whether the
/// gap below `v` is half the gap above (a power of two, not the smallest normal).
fn decompose(v: f64, float4: bool) -> (u64, i32, bool) {
    let (bits, frac_bits, bias) = if float4 {
        (u64::from((v as f32).to_bits()), 23, 150)
    } else {
        (v.to_bits(), 52, 1075)
    };
    let exp_mask = if float4 { 0xff } else { 0x7ff };
    let frac = bits & ((1 << frac_bits) - 1);
    let exp_bits = ((bits >> frac_bits) & exp_mask) as i32;
    if exp_bits == 0 {
        (frac, 1 - bias, false)
    } else {
        (
            frac | (1 << frac_bits),
            exp_bits - bias,
            frac == 0 && exp_bits > 1,
        )
    }
}

/// `odd * 2^p` as an exact decimal. For p < -4 no decimal short enough to be a float's
/// shortest output can equal it (odd has 8 or 16+ digits and each factor 5 adds more), so
/// `None`.
fn scaled(odd: u64, p: i32) -> Option<Numeric> {
    if p < -4 {
        return None;
    }
    if p < 0 {
        let k = p.unsigned_abs();
        let digits = (u128::from(odd) * 5u128.pow(k)).to_string();
        let pad = (k as usize + 1).saturating_sub(digits.len());
        let digits = format!("{}{digits}", "0".repeat(pad));
        let point = digits.len() - k as usize;
        return Numeric::parse(&format!("{}.{}", &digits[..point], &digits[point..])).ok();
    }
    let first = p.min(64);
    let mut n = Numeric::from_i128(i128::from(odd) << first);
    for _ in first..p {
        n = n.add(&n);
    }
    Some(n)
}

/// Whether the decimal `candidate` (Rust `{:e}` form) lies exactly halfway between `v` and
/// a neighbouring float.
fn on_boundary(v: f64, float4: bool, candidate: &str) -> bool {
    let (m, e, narrow_below) = decompose(v, float4);
    let Ok(c) = Numeric::parse(candidate.trim_start_matches('-')) else {
        return false;
    };
    let upper = scaled(2 * m + 1, e - 1);
    let lower = if narrow_below {
        scaled(4 * m - 1, e - 2)
    } else {
        scaled((2 * m).saturating_sub(1), e - 1)
    };
    [upper, lower]
        .iter()
        .flatten()
        .any(|b| b.compare(&c).is_eq())
}

/// The shortest decimal (in `{:e}` form) that reads back as `v` and is not on a boundary,
/// rounded to nearest with ties to even, as Postgres' Ryu picks it.
fn shortest(v: f64, float4: bool) -> String {
    let fmt = |precision: Option<usize>| match (float4, precision) {
        (true, None) => format!("{:e}", v as f32),
        (true, Some(p)) => format!("{:.*e}", p, v as f32),
        (false, None) => format!("{v:e}"),
        (false, Some(p)) => format!("{v:.p$e}"),
    };
    // Rust's shortest form gives the shortest length; at that length (or the next, when the
    // only candidates are boundaries) take the correctly rounded decimal, since Rust's
    // shortest mode does not break an exact tie in the last digit towards even.
    let first = fmt(None);
    let target = if float4 { f64::from(v as f32) } else { v };
    let digits = first
        .split('e')
        .next()
        .unwrap_or("")
        .bytes()
        .filter(u8::is_ascii_digit)
        .count();
    let max = if float4 { 9 } else { 17 };
    (digits.max(1) - 1..max)
        .map(|p| fmt(Some(p)))
        .find(|c| parse(c, float4) == Some(target) && !on_boundary(v, float4, c))
        .unwrap_or(first)
}

/// Lay out `{:e}` digits Postgres' way: fixed notation for decimal exponents in
/// `-4..max_fixed_exp`, else `d.ddde+XX` (at least two exponent digits).
fn layout(mantissa_exp: &str, max_fixed_exp: i32) -> String {
    let (mantissa, exp) = mantissa_exp.split_once('e').unwrap_or((mantissa_exp, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let mut digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    // A fixed-precision candidate may end in zeros that the shortest form drops.
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
    }
    let mut out = String::from(if neg { "-" } else { "" });
    if (-4..max_fixed_exp).contains(&exp) {
        if exp < 0 {
            out.push_str("0.");
            out.push_str(&"0".repeat((-exp - 1) as usize));
            out.push_str(&digits);
        } else {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                out.push_str(&"0".repeat(int_len - digits.len()));
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        }
    } else {
        let (first, rest) = digits.split_at(digits.len().min(1));
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let sign = if exp < 0 { '-' } else { '+' };
        out.push_str(&format!("e{sign}{:02}", exp.abs()));
    }
    out
}
