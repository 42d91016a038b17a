//! Dates and timestamps as the merge compares them: `date` as days since 2000-01-01 and
//! `timestamp`/`timestamptz` as microseconds since 2000-01-01 00:00 (UTC for timestamptz) —
//! exactly Postgres' binary representation, so binary fields need no conversion and
//! `±infinity` (the extreme integers) sort where Postgres sorts them.
//!
//! Owns reading and writing the text forms Postgres prints with `DateStyle = ISO` (the
//! default): `2024-01-15`, `2024-01-15 10:30:00.5`, `2024-01-15 10:30:00.5+05:30`, a trailing
//! ` BC`, and `infinity`/`-infinity`. A literal may also use `T` between date and time. Other
//! DateStyles are not read (the value is reported as malformed rather than misordered).
//! timestamptz text is written in UTC (`+00`): the session's time zone is not known here.

/// Days from 1970-01-01 to 2000-01-01 (Postgres' epoch for date and timestamp).
const EPOCH_2000_DAYS: i64 = 10_957;
const USECS_PER_DAY: i64 = 86_400_000_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (`year` astronomical: 1 BC is 0).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A cursor over ASCII text for the small ISO grammar.
struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn number(&mut self, min_len: usize, max_len: usize) -> Option<i64> {
        let start = self.pos;
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_digit() {
            self.pos += 1;
        }
        let len = self.pos - start;
        if len < min_len || len > max_len {
            return None;
        }
        std::str::from_utf8(&self.s[start..self.pos])
            .ok()?
            .parse()
            .ok()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.s.get(self.pos) == Some(&b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn rest(&self) -> &[u8] {
        &self.s[self.pos..]
    }
}

/// `YYYY-MM-DD` (year of 1 to 9 digits) as (year, month, day); the day is checked against
/// its month once the era is known (3641 BC is a leap year, 3641 AD is not).
fn parse_ymd(c: &mut Cursor) -> Option<(i64, i64, i64)> {
    let year = c.number(1, 9)?;
    if !c.eat(b'-') {
        return None;
    }
    let month = c.number(1, 2)?;
    if !c.eat(b'-') {
        return None;
    }
    let day = c.number(1, 2)?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    Some((year, month, day))
}

/// Days since 2000-01-01 of a date whose year is astronomical, if the day exists.
fn epoch_days(year: i64, month: i64, day: i64) -> Option<i64> {
    (day <= days_in_month(year, month)).then(|| days_from_civil(year, month, day) - EPOCH_2000_DAYS)
}

/// A trailing ` BC` turns the year `y` into the astronomical year `1 - y`.
fn apply_era(c: &mut Cursor, year: i64) -> Option<i64> {
    match c.rest() {
        b"" => Some(year),
        b" BC" | b" bc" => Some(1 - year),
        _ => None,
    }
}

/// A `date` in ISO text form -> days since 2000-01-01.
pub fn parse_date(text: &[u8]) -> Option<i32> {
    match text {
        b"infinity" => return Some(i32::MAX),
        b"-infinity" => return Some(i32::MIN),
        _ => {}
    }
    let mut c = Cursor { s: text, pos: 0 };
    let (year, month, day) = parse_ymd(&mut c)?;
    let year = apply_era(&mut c, year)?;
    i32::try_from(epoch_days(year, month, day)?).ok()
}

/// A `timestamp` (or, with `with_tz`, `timestamptz`) in ISO text form -> microseconds since
/// 2000-01-01 00:00 (UTC for timestamptz).
pub fn parse_timestamp(text: &[u8], with_tz: bool) -> Option<i64> {
    match text {
        b"infinity" => return Some(i64::MAX),
        b"-infinity" => return Some(i64::MIN),
        _ => {}
    }
    let mut c = Cursor { s: text, pos: 0 };
    let (year, month, day) = parse_ymd(&mut c)?;
    if !(c.eat(b' ') || c.eat(b'T')) {
        return None;
    }
    let hour = c.number(2, 2)?;
    let minute = c.eat(b':').then(|| c.number(2, 2)).flatten()?;
    let second = c.eat(b':').then(|| c.number(2, 2)).flatten()?;
    let mut micros = 0;
    if c.eat(b'.') {
        let start = c.pos;
        let frac = c.number(1, 6)?;
        micros = frac * 10_i64.pow((6 - (c.pos - start)) as u32);
    }
    if hour > 24 || minute > 59 || second > 60 {
        return None;
    }
    let mut offset_secs = 0;
    if with_tz {
        let sign = match c.s.get(c.pos) {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return None,
        };
        c.pos += 1;
        let oh = c.number(2, 2)?;
        let om = if c.eat(b':') { c.number(2, 2)? } else { 0 };
        let os = if c.eat(b':') { c.number(2, 2)? } else { 0 };
        offset_secs = sign * (oh * 3600 + om * 60 + os);
    }
    let year = apply_era(&mut c, year)?;
    let days = i128::from(epoch_days(year, month, day)?);
    let secs = i128::from(hour * 3600 + minute * 60 + second - offset_secs);
    let total = days * i128::from(USECS_PER_DAY) + secs * 1_000_000 + i128::from(micros);
    i64::try_from(total).ok()
}

fn write_ymd(out: &mut String, days_since_1970: i64) -> bool {
    let (year, month, day) = civil_from_days(days_since_1970);
    let bc = year <= 0;
    let shown = if bc { 1 - year } else { year };
    out.push_str(&format!("{shown:04}-{month:02}-{day:02}"));
    bc
}

/// Days since 2000-01-01 -> ISO text (`infinity` for the extremes).
pub fn format_date(days: i32) -> String {
    match days {
        i32::MAX => return "infinity".into(),
        i32::MIN => return "-infinity".into(),
        _ => {}
    }
    let mut out = String::new();
    if write_ymd(&mut out, i64::from(days) + EPOCH_2000_DAYS) {
        out.push_str(" BC");
    }
    out
}

/// Microseconds since 2000-01-01 -> ISO text; timestamptz in UTC with `+00`.
pub fn format_timestamp(micros: i64, with_tz: bool) -> String {
    match micros {
        i64::MAX => return "infinity".into(),
        i64::MIN => return "-infinity".into(),
        _ => {}
    }
    let days = micros.div_euclid(USECS_PER_DAY);
    let in_day = micros.rem_euclid(USECS_PER_DAY);
    let mut out = String::new();
    let bc = write_ymd(&mut out, days + EPOCH_2000_DAYS);
    let secs = in_day / 1_000_000;
    out.push_str(&format!(
        " {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    ));
    let frac = in_day % 1_000_000;
    if frac != 0 {
        let digits = format!("{frac:06}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    if with_tz {
        out.push_str("+00");
    }
    if bc {
        out.push_str(" BC");
    }
    out
}
