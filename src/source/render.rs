//! Value rendering shared by the sources: calendar dates and times as ISO-8601 text, floats and
//! decimal text as JSON numbers, bytes as base64.
//!
//! Dates are handled with plain day arithmetic on the proleptic Gregorian calendar, so every
//! date a database can hold renders (PostgreSQL goes from 4713 BC to 294276 AD); years outside
//! 0000–9999 use ISO-8601's expanded form with a sign (`+10000-01-01`, `-0044-03-15`, where
//! year 0 is 1 BC).

use std::str::FromStr;

use base64::Engine as _;
use serde_json::{Number, Value};

pub const MICROS_PER_DAY: i64 = 86_400_000_000;
/// Days from 1970-01-01 to 2000-01-01 (the Postgres epoch).
pub const PG_EPOCH_DAYS: i64 = 10_957;

/// `(year, month, day)` of a count of days since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Count from 0000-03-01 so that the leap day ends each 400-year cycle's years.
    let z = days + 719_468;
    let cycle = z.div_euclid(146_097);
    let day_of_cycle = z.rem_euclid(146_097); // 0..=146096
    let year_of_cycle = (day_of_cycle - day_of_cycle / 1_460 + day_of_cycle / 36_524 - day_of_cycle / 146_096) / 365;
    let day_of_year = day_of_cycle - (365 * year_of_cycle + year_of_cycle / 4 - year_of_cycle / 100); // 0..=365
    let month_from_march = (5 * day_of_year + 2) / 153; // 0..=11
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 } as u32;
    let year = year_of_cycle + cycle * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Append `n` as exactly `width` decimal digits (zero-padded; `n` must fit).
fn push_digits(out: &mut String, mut n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    while i > buf.len() - width || n > 0 {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(&buf[i..]).unwrap_or_default());
}

fn push_year(out: &mut String, year: i64) {
    if (0..=9999).contains(&year) {
        push_digits(out, year as u64, 4);
    } else if year > 9999 {
        out.push('+');
        push_digits(out, year as u64, 4);
    } else {
        out.push('-');
        push_digits(out, year.unsigned_abs(), 4);
    }
}

fn push_date(out: &mut String, year: i64, month: u32, day: u32) {
    push_year(out, year);
    out.push('-');
    push_digits(out, u64::from(month), 2);
    out.push('-');
    push_digits(out, u64::from(day), 2);
}

/// `YYYY-MM-DD` of a count of days since 1970-01-01.
pub fn date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    let mut s = String::with_capacity(10);
    push_date(&mut s, y, m, d);
    s
}

/// `.ffffff` with trailing zeros removed, or nothing for whole seconds.
fn push_fraction(out: &mut String, mut micros: u32) {
    if micros == 0 {
        return;
    }
    let mut width = 6;
    while micros.is_multiple_of(10) {
        micros /= 10;
        width -= 1;
    }
    out.push('.');
    push_digits(out, u64::from(micros), width);
}

/// `HH:MM:SS[.ffffff]` of a time of day in microseconds (up to 24:00:00).
pub fn time_of_day(micros: i64) -> String {
    let mut s = String::with_capacity(15);
    push_clock(&mut s, micros);
    s
}

fn push_hms(out: &mut String, hours: u64, minutes: u32, seconds: u32, micros: u32) {
    push_digits(out, hours, 2);
    out.push(':');
    push_digits(out, u64::from(minutes), 2);
    out.push(':');
    push_digits(out, u64::from(seconds), 2);
    push_fraction(out, micros);
}

fn push_clock(out: &mut String, micros: i64) {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000) as u32;
    push_hms(out, (secs / 3600) as u64, (secs / 60 % 60) as u32, (secs % 60) as u32, frac);
}

/// `YYYY-MM-DDTHH:MM:SS[.ffffff]Z` of microseconds since 1970-01-01T00:00:00Z.
pub fn timestamp_utc(unix_micros: i64) -> String {
    let days = unix_micros.div_euclid(MICROS_PER_DAY);
    let in_day = unix_micros.rem_euclid(MICROS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    let mut s = String::with_capacity(27);
    push_date(&mut s, y, m, d);
    s.push('T');
    push_clock(&mut s, in_day);
    s.push('Z');
    s
}

/// `YYYY-MM-DDTHH:MM:SS[.ffffff]Z` from calendar fields (MySQL sends them unpacked).
pub fn timestamp_fields(year: i64, month: u32, day: u32, hour: u32, minute: u32, second: u32, micros: u32) -> String {
    let mut s = String::with_capacity(27);
    push_date(&mut s, year, month, day);
    s.push('T');
    push_hms(&mut s, u64::from(hour), minute, second, micros);
    s.push('Z');
    s
}

/// `YYYY-MM-DD` from calendar fields.
pub fn date_fields(year: i64, month: u32, day: u32) -> String {
    let mut s = String::with_capacity(10);
    push_date(&mut s, year, month, day);
    s
}

/// A signed duration of hours (may exceed 24), minutes, seconds and microseconds, as
/// `[-]HH:MM:SS[.ffffff]` (MySQL's TIME).
pub fn clock_fields(negative: bool, hours: u64, minutes: u32, seconds: u32, micros: u32) -> String {
    let mut s = String::with_capacity(16);
    if negative {
        s.push('-');
    }
    push_hms(&mut s, hours, minutes, seconds, micros);
    s
}

/// A JSON number from decimal text the database produced (`-123.4500`, `1e20`), keeping every
/// digit (serde_json writes an exponent with its sign: `1e+20`); `None` when the text is not a JSON number (`NaN`, `Infinity`).
pub fn number_from_text(text: &str) -> Option<Value> {
    // serde_json accepts no leading `+` and no `.5`; databases do not produce them, but check.
    let t = text.trim();
    if t.is_empty() || t.starts_with('+') || t.starts_with('.') || t.starts_with("-.") || t.ends_with('.') {
        return None;
    }
    Number::from_str(t).ok().map(Value::Number)
}

/// A float as a JSON number (the shortest text that reads back as the same float: `0.1`,
/// `1e20`, `3.0`); NaN and the infinities, which JSON has no numbers for, as the strings `NaN`,
/// `Infinity`, `-Infinity`.
pub fn float64(f: f64) -> Value {
    match Number::from_f64(f) {
        Some(n) => Value::Number(n),
        None => Value::String(non_finite(f).into()),
    }
}

/// A 4-byte float, rendered by its own shortest form (`0.1`, not `0.10000000149011612`).
pub fn float32(f: f32) -> Value {
    if f.is_finite() { Value::from(f) } else { Value::String(non_finite(f64::from(f)).into()) }
}

fn non_finite(f: f64) -> &'static str {
    if f.is_nan() {
        "NaN"
    } else if f > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    }
}

pub fn base64(bytes: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_the_calendar() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(PG_EPOCH_DAYS), "2000-01-01");
        assert_eq!(date(-1), "1969-12-31");
        assert_eq!(date(PG_EPOCH_DAYS + 59), "2000-02-29");
        assert_eq!(date(20_484), "2026-01-31");
        assert_eq!(date(-719_528), "0000-01-01");
        assert_eq!(date(-719_529), "-0001-12-31");
        assert_eq!(date(2_932_897), "+10000-01-01");
        // Every day of four centuries against a simple day-by-day walk.
        let (mut y, mut m, mut d) = (1900i64, 1u32, 1u32);
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        for days in -25_567..(-25_567 + 146_097) {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let len = match m {
                2 if leap(y) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn timestamps_are_iso_utc_with_trimmed_fractions() {
        assert_eq!(timestamp_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(timestamp_utc(1_769_860_800_000_000), "2026-01-31T12:00:00Z");
        assert_eq!(timestamp_utc(1_769_860_800_500_000), "2026-01-31T12:00:00.5Z");
        assert_eq!(timestamp_utc(1_769_860_800_000_123), "2026-01-31T12:00:00.000123Z");
        assert_eq!(timestamp_utc(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(time_of_day(86_400_000_000), "24:00:00");
        assert_eq!(time_of_day(45_296_250_000), "12:34:56.25");
        assert_eq!(timestamp_fields(2026, 1, 31, 12, 0, 0, 120_000), "2026-01-31T12:00:00.12Z");
        assert_eq!(clock_fields(true, 838, 59, 59, 0), "-838:59:59");
    }

    #[test]
    fn numbers_keep_their_digits() {
        let big = "12345678901234567890.123456789";
        assert_eq!(number_from_text(big).unwrap().to_string(), big);
        assert_eq!(number_from_text("-0.000100").unwrap().to_string(), "-0.000100");
        assert_eq!(number_from_text("NaN"), None);
        assert_eq!(float64(0.1).to_string(), "0.1");
        assert_eq!(float64(1e20).to_string(), "1e+20");
        assert_eq!(float64(-2.5e-7).to_string(), "-2.5e-7");
        assert_eq!(float64(3.0).to_string(), "3.0");
        assert_eq!(float32(0.1).to_string(), "0.1");
        assert_eq!(float64(f64::NAN), Value::String("NaN".into()));
        assert_eq!(float64(f64::NEG_INFINITY), Value::String("-Infinity".into()));
        assert_eq!(base64(b"\x00\xffhi"), Value::String("AP9oaQ==".into()));
    }
}
