//! `Numeric`: an exact decimal with PostgreSQL's `numeric` semantics, for the merge.
//!
//! Owns the representation Postgres itself uses (base-10000 digits, a weight, a sign and a
//! display scale), so the binary wire format maps one to one and text output prints like
//! Postgres (`get_str_from_var`: the display scale is kept, `1.50` stays `1.50`). Also owns
//! the few operations a merge needs: comparison (`1.50` = `1.5`; NaN above +Infinity above
//! every number, as Postgres sorts), addition (sum of shard sums; the result keeps the larger
//! display scale), and division by a row count (avg), with the result scale chosen exactly as
//! Postgres' `select_div_scale` does (at least 16 significant digits, never less than the
//! dividend's scale) and rounded half away from zero like `round_var`.
//!
//! It deliberately does not do general multiplication or division: the merge never needs it.

use std::cmp::Ordering;

const NBASE: i32 = 10_000;
const DEC_DIGITS: i32 = 4;
/// Postgres' `NUMERIC_MIN_SIG_DIGITS`: a quotient has at least this many significant digits.
const MIN_SIG_DIGITS: i32 = 16;
/// Postgres' `NUMERIC_MAX_DISPLAY_SCALE`.
const MAX_DISPLAY_SCALE: i32 = 1000;
/// The largest decimal exponent accepted in text input; Postgres refuses far smaller ones, and
/// the bound keeps a hostile literal from allocating without limit.
const MAX_EXPONENT: i64 = 140_000;

const SIGN_POS: u16 = 0x0000;
const SIGN_NEG: u16 = 0x4000;
const SIGN_NAN: u16 = 0xC000;
const SIGN_PINF: u16 = 0xD000;
const SIGN_NINF: u16 = 0xF000;

/// A `numeric` value: a finite decimal or one of Postgres' special values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Numeric {
    NaN,
    PosInf,
    NegInf,
    Finite(Decimal),
}

/// A finite decimal: `sum(digits[i] * 10000^(weight - i))`, negated when `neg`.
///
/// Always normalized: no leading or trailing zero digits; zero has no digits, weight 0 and is
/// not negative. `dscale` is the number of decimal places to display.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decimal {
    neg: bool,
    weight: i32,
    digits: Vec<u16>,
    dscale: u32,
}

impl Decimal {
    fn new(neg: bool, weight: i32, digits: Vec<u16>, dscale: u32) -> Decimal {
        let mut d = Decimal {
            neg,
            weight,
            digits,
            dscale,
        };
        d.normalize();
        d
    }

    fn normalize(&mut self) {
        let lead = self.digits.iter().take_while(|&&d| d == 0).count();
        if lead > 0 {
            self.digits.drain(..lead);
            self.weight -= lead as i32;
        }
        while self.digits.last() == Some(&0) {
            self.digits.pop();
        }
        if self.digits.is_empty() {
            self.weight = 0;
            self.neg = false;
        }
    }

    /// The base-10000 digit at `weight` (zero outside the stored digits).
    fn digit_at(&self, weight: i32) -> i32 {
        let idx = i64::from(self.weight) - i64::from(weight);
        if idx < 0 {
            return 0;
        }
        self.digits.get(idx as usize).map_or(0, |&d| i32::from(d))
    }

    /// The weight of the last stored digit (the weight itself when there are none).
    fn low_weight(&self) -> i32 {
        self.weight - (self.digits.len() as i32 - 1).max(0)
    }

    fn cmp_abs(&self, other: &Decimal) -> Ordering {
        match (self.digits.is_empty(), other.digits.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            (false, false) => {}
        }
        self.weight
            .cmp(&other.weight)
            .then_with(|| self.digits.cmp(&other.digits))
    }

    fn cmp(&self, other: &Decimal) -> Ordering {
        let sign = |d: &Decimal| match (d.digits.is_empty(), d.neg) {
            (true, _) => 0,
            (false, true) => -1,
            (false, false) => 1,
        };
        match sign(self).cmp(&sign(other)) {
            Ordering::Equal if self.neg => other.cmp_abs(self),
            Ordering::Equal => self.cmp_abs(other),
            unequal => unequal,
        }
    }

    /// Magnitudes combined digit by digit: `|a| + |b|` when `subtract` is false, else
    /// `|a| - |b|` (the caller guarantees `|a| >= |b|`).
    fn combine_abs(a: &Decimal, b: &Decimal, subtract: bool) -> (i32, Vec<u16>) {
        let top = a.weight.max(b.weight);
        let low = a.low_weight().min(b.low_weight());
        let mut out = Vec::with_capacity((top - low + 2) as usize);
        let mut carry = 0;
        for w in low..=top {
            let mut d = a.digit_at(w)
                + if subtract {
                    -b.digit_at(w)
                } else {
                    b.digit_at(w)
                };
            d += carry;
            carry = 0;
            if d >= NBASE {
                d -= NBASE;
                carry = 1;
            } else if d < 0 {
                d += NBASE;
                carry = -1;
            }
            out.push(d as u16);
        }
        let mut weight = top;
        if carry > 0 {
            out.push(carry as u16);
            weight += 1;
        }
        out.reverse();
        (weight, out)
    }

    fn add(&self, other: &Decimal) -> Decimal {
        let dscale = self.dscale.max(other.dscale);
        if self.neg == other.neg || self.digits.is_empty() || other.digits.is_empty() {
            let neg = if self.digits.is_empty() {
                other.neg
            } else {
                self.neg
            };
            let (weight, digits) = Decimal::combine_abs(self, other, false);
            return Decimal::new(neg, weight, digits, dscale);
        }
        let (big, small) = match self.cmp_abs(other) {
            Ordering::Less => (other, self),
            _ => (self, other),
        };
        let (weight, digits) = Decimal::combine_abs(big, small, true);
        Decimal::new(big.neg, weight, digits, dscale)
    }

    /// Round to `scale` decimal places, half away from zero (Postgres' `round_var`), and set
    /// the display scale to `scale`.
    fn round(&mut self, scale: i32) {
        self.dscale = scale.max(0) as u32;
        let wanted = (i64::from(self.weight) + 1) * i64::from(DEC_DIGITS) + i64::from(scale);
        if wanted < 0 {
            *self = Decimal {
                dscale: self.dscale,
                ..Decimal::default()
            };
            return;
        }
        let keep = ((wanted + 3) / 4) as usize;
        let within = (wanted % 4) as i32;
        if keep > self.digits.len() || (keep == self.digits.len() && within == 0) {
            return;
        }
        let mut digits: Vec<i32> = self.digits.iter().map(|&d| i32::from(d)).collect();
        let mut carry;
        let mut idx;
        if within == 0 {
            carry = i32::from(digits[keep] >= NBASE / 2);
            digits.truncate(keep);
            idx = keep;
        } else {
            let pow10 = [0, 1000, 100, 10][within as usize];
            digits.truncate(keep);
            idx = keep - 1;
            let extra = digits[idx] % pow10;
            digits[idx] -= extra;
            carry = 0;
            if extra >= pow10 / 2 {
                digits[idx] += pow10;
                if digits[idx] >= NBASE {
                    digits[idx] -= NBASE;
                    carry = 1;
                }
            }
        }
        while carry > 0 && idx > 0 {
            idx -= 1;
            digits[idx] += carry;
            carry = 0;
            if digits[idx] >= NBASE {
                digits[idx] -= NBASE;
                carry = 1;
            }
        }
        let mut weight = self.weight;
        if carry > 0 {
            digits.insert(0, carry);
            weight += 1;
        }
        let neg = self.neg;
        *self = Decimal::new(
            neg,
            weight,
            digits.into_iter().map(|d| d as u16).collect(),
            self.dscale,
        );
    }
}

/// Why a numeric could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NumericError {
    /// Not a valid numeric (text or binary).
    Malformed(String),
    /// Too large for the numeric wire format (Postgres: "value overflows numeric format").
    Overflow,
}

impl Numeric {
    pub fn zero() -> Numeric {
        Numeric::Finite(Decimal::default())
    }

    pub fn from_i128(v: i128) -> Numeric {
        let mut mag = v.unsigned_abs();
        let mut digits = Vec::new();
        while mag > 0 {
            digits.push((mag % NBASE as u128) as u16);
            mag /= NBASE as u128;
        }
        let weight = digits.len() as i32 - 1;
        digits.reverse();
        Numeric::Finite(Decimal::new(v < 0, weight, digits, 0))
    }

    /// Parse Postgres' text form: `[+-]digits[.digits][e[+-]digits]`, `NaN`, `[+-]Infinity`,
    /// `[+-]inf` (case-insensitive, surrounding spaces allowed).
    pub fn parse(text: &str) -> Result<Numeric, NumericError> {
        let bad = || NumericError::Malformed(format!("invalid numeric {text:?}"));
        let s = text.trim();
        match s.to_ascii_lowercase().as_str() {
            "nan" => return Ok(Numeric::NaN),
            "infinity" | "+infinity" | "inf" | "+inf" => return Ok(Numeric::PosInf),
            "-infinity" | "-inf" => return Ok(Numeric::NegInf),
            _ => {}
        }
        let (neg, rest) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let (mantissa, exponent) = match rest.find(['e', 'E']) {
            Some(i) => {
                let e: i64 = rest[i + 1..].parse().map_err(|_| bad())?;
                (&rest[..i], e)
            }
            None => (rest, 0),
        };
        if exponent.abs() > MAX_EXPONENT {
            return Err(NumericError::Overflow);
        }
        let (int_part, frac_part) = match mantissa.split_once('.') {
            Some((i, f)) => (i, f),
            None => (mantissa, ""),
        };
        let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if int_part.len() + frac_part.len() == 0 || !all_digits(int_part) || !all_digits(frac_part)
        {
            return Err(bad());
        }
        let dscale = (frac_part.len() as i64 - exponent).max(0);
        let mut dec: Vec<u8> = int_part
            .bytes()
            .chain(frac_part.bytes())
            .map(|b| b - b'0')
            .collect();
        // Decimal digits before the point once the exponent is applied.
        let mut int_len = int_part.len() as i64 + exponent;
        if int_len <= 0 {
            let mut padded = vec![0u8; (-int_len) as usize];
            padded.extend_from_slice(&dec);
            dec = padded;
            int_len = 0;
        } else if int_len > dec.len() as i64 {
            dec.resize(int_len as usize, 0);
        }
        let lead = ((DEC_DIGITS as i64 - int_len % DEC_DIGITS as i64) % DEC_DIGITS as i64) as usize;
        let mut padded = vec![0u8; lead];
        padded.extend_from_slice(&dec);
        while padded.len() % DEC_DIGITS as usize != 0 {
            padded.push(0);
        }
        let weight = ((int_len + lead as i64) / DEC_DIGITS as i64 - 1) as i32;
        let digits = padded
            .chunks(DEC_DIGITS as usize)
            .map(|c| c.iter().fold(0u16, |acc, &d| acc * 10 + u16::from(d)))
            .collect();
        Ok(Numeric::Finite(Decimal::new(
            neg,
            weight,
            digits,
            dscale as u32,
        )))
    }

    /// Read Postgres' binary form: ndigits, weight, sign, dscale (int16 each), then ndigits
    /// base-10000 digits.
    pub fn from_binary(b: &[u8]) -> Result<Numeric, NumericError> {
        let bad = |why: &str| NumericError::Malformed(format!("invalid binary numeric: {why}"));
        let word = |i: usize| -> Option<u16> {
            Some(u16::from_be_bytes([*b.get(2 * i)?, *b.get(2 * i + 1)?]))
        };
        let (Some(ndigits), Some(weight), Some(sign), Some(dscale)) =
            (word(0), word(1), word(2), word(3))
        else {
            return Err(bad("shorter than its 8-byte header"));
        };
        let ndigits = ndigits as i16;
        if ndigits < 0 || b.len() != 8 + 2 * ndigits as usize {
            return Err(bad("length does not match its digit count"));
        }
        let mut digits = Vec::with_capacity(ndigits as usize);
        for i in 0..ndigits as usize {
            let d = word(4 + i).ok_or_else(|| bad("truncated"))?;
            if i32::from(d) >= NBASE {
                return Err(bad("digit out of range"));
            }
            digits.push(d);
        }
        let neg = match sign {
            SIGN_POS => false,
            SIGN_NEG => true,
            SIGN_NAN => return Ok(Numeric::NaN),
            SIGN_PINF => return Ok(Numeric::PosInf),
            SIGN_NINF => return Ok(Numeric::NegInf),
            _ => return Err(bad("unknown sign")),
        };
        Ok(Numeric::Finite(Decimal::new(
            neg,
            i32::from(weight as i16),
            digits,
            u32::from(dscale & 0x3FFF),
        )))
    }

    /// Postgres' binary form.
    pub fn to_binary(&self) -> Result<Vec<u8>, NumericError> {
        let special = |sign: u16| {
            let mut out = vec![0u8; 8];
            out[4..6].copy_from_slice(&sign.to_be_bytes());
            out
        };
        let d = match self {
            Numeric::NaN => return Ok(special(SIGN_NAN)),
            Numeric::PosInf => return Ok(special(SIGN_PINF)),
            Numeric::NegInf => return Ok(special(SIGN_NINF)),
            Numeric::Finite(d) => d,
        };
        let weight = i16::try_from(d.weight).map_err(|_| NumericError::Overflow)?;
        let ndigits = i16::try_from(d.digits.len()).map_err(|_| NumericError::Overflow)?;
        let dscale = u16::try_from(d.dscale).map_err(|_| NumericError::Overflow)?;
        let mut out = Vec::with_capacity(8 + 2 * d.digits.len());
        out.extend_from_slice(&ndigits.to_be_bytes());
        out.extend_from_slice(&weight.to_be_bytes());
        out.extend_from_slice(&(if d.neg { SIGN_NEG } else { SIGN_POS }).to_be_bytes());
        out.extend_from_slice(&dscale.to_be_bytes());
        for digit in &d.digits {
            out.extend_from_slice(&digit.to_be_bytes());
        }
        Ok(out)
    }

    /// Postgres' text form, display scale preserved (`numeric_out`).
    pub fn to_text(&self) -> String {
        let d = match self {
            Numeric::NaN => return "NaN".into(),
            Numeric::PosInf => return "Infinity".into(),
            Numeric::NegInf => return "-Infinity".into(),
            Numeric::Finite(d) => d,
        };
        let mut out = String::new();
        if d.neg {
            out.push('-');
        }
        if d.weight < 0 {
            out.push('0');
        } else {
            out.push_str(&d.digit_at(d.weight).to_string());
            for w in (0..d.weight).rev() {
                out.push_str(&format!("{:04}", d.digit_at(w)));
            }
        }
        if d.dscale > 0 {
            out.push('.');
            let start = out.len();
            let groups = d.dscale.div_ceil(DEC_DIGITS as u32) as i32;
            for g in 1..=groups {
                out.push_str(&format!("{:04}", d.digit_at(-g)));
            }
            out.truncate(start + d.dscale as usize);
        }
        out
    }

    /// Postgres' ordering: -Infinity < numbers < +Infinity < NaN; NaN equals NaN, and the
    /// display scale does not matter (`1.50` = `1.5`).
    pub fn compare(&self, other: &Numeric) -> Ordering {
        let rank = |n: &Numeric| match n {
            Numeric::NegInf => 0,
            Numeric::Finite(_) => 1,
            Numeric::PosInf => 2,
            Numeric::NaN => 3,
        };
        match (self, other) {
            (Numeric::Finite(a), Numeric::Finite(b)) => a.cmp(b),
            _ => rank(self).cmp(&rank(other)),
        }
    }

    /// The sum, with Postgres' special-value rules (+Infinity + -Infinity is NaN).
    pub fn add(&self, other: &Numeric) -> Numeric {
        match (self, other) {
            (Numeric::Finite(a), Numeric::Finite(b)) => Numeric::Finite(a.add(b)),
            (Numeric::NaN, _) | (_, Numeric::NaN) => Numeric::NaN,
            (Numeric::PosInf, Numeric::NegInf) | (Numeric::NegInf, Numeric::PosInf) => Numeric::NaN,
            (Numeric::PosInf, _) | (_, Numeric::PosInf) => Numeric::PosInf,
            (Numeric::NegInf, _) | (_, Numeric::NegInf) => Numeric::NegInf,
        }
    }

    /// `self / count` as Postgres' `numeric_div` computes an average: the result scale is
    /// `select_div_scale(self, count)`, rounded half away from zero. `count` must not be 0.
    pub fn div_count(&self, count: u64) -> Numeric {
        let d = match self {
            Numeric::Finite(d) => d,
            special => return special.clone(),
        };
        let divisor = match Numeric::from_i128(i128::from(count)) {
            Numeric::Finite(c) => c,
            _ => Decimal::default(),
        };
        let first = |x: &Decimal| (x.weight, x.digits.first().map_or(0, |&f| i32::from(f)));
        let (w1, f1) = first(d);
        let (w2, f2) = first(&divisor);
        let mut qweight = w1 - w2;
        if f1 <= f2 {
            qweight -= 1;
        }
        let rscale = (MIN_SIG_DIGITS - qweight * DEC_DIGITS)
            .max(d.dscale as i32)
            .clamp(0, MAX_DISPLAY_SCALE);
        // Long division down to one decimal digit past the result scale (and past every
        // dividend digit), so the truncated quotient holds the digit that decides rounding.
        let guard_weight = -((rscale + 1 + DEC_DIGITS - 1) / DEC_DIGITS);
        let low = guard_weight.min(d.low_weight());
        let top = d.weight.max(low);
        let mut rem: u128 = 0;
        let count = u128::from(count.max(1));
        let mut quotient = Vec::with_capacity((top - low + 1) as usize);
        for w in (low..=top).rev() {
            let cur = rem * NBASE as u128 + d.digit_at(w) as u128;
            quotient.push((cur / count) as u16);
            rem = cur % count;
        }
        let mut q = Decimal::new(d.neg, top, quotient, rscale as u32);
        q.round(rscale);
        Numeric::Finite(q)
    }

    /// The nearest float8, as Postgres' `numeric_float8` (through the text form).
    pub fn to_f64(&self) -> f64 {
        match self {
            Numeric::NaN => f64::NAN,
            Numeric::PosInf => f64::INFINITY,
            Numeric::NegInf => f64::NEG_INFINITY,
            Numeric::Finite(_) => self.to_text().parse().unwrap_or(f64::NAN),
        }
    }

    /// The value as an integer if it is one and fits.
    pub fn to_i128(&self) -> Option<i128> {
        let Numeric::Finite(d) = self else {
            return None;
        };
        if d.low_weight() < 0 && !d.digits.is_empty() {
            return None;
        }
        let mut v: i128 = 0;
        for w in (0..=d.weight).rev() {
            v = v
                .checked_mul(NBASE as i128)?
                .checked_add(d.digit_at(w) as i128)?;
        }
        Some(if d.neg { -v } else { v })
    }

    /// Bytes equal exactly when the values are equal (scale ignored), for hashing.
    pub fn key_bytes(&self, out: &mut Vec<u8>) {
        match self {
            Numeric::NaN => out.push(3),
            Numeric::PosInf => out.push(2),
            Numeric::NegInf => out.push(0),
            Numeric::Finite(d) => {
                out.push(1);
                out.push(u8::from(d.neg));
                out.extend_from_slice(&d.weight.to_be_bytes());
                out.extend_from_slice(&(d.digits.len() as u32).to_be_bytes());
                for digit in &d.digits {
                    out.extend_from_slice(&digit.to_be_bytes());
                }
            }
        }
    }
}
