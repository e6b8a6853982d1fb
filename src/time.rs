//! Timestamps as the API shows them: RFC 3339 in UTC with six fractional digits, and the
//! parsing of a client's `due_date`. Hand-written because it is two small calendar
//! conversions, and it keeps both databases byte-for-byte identical on the wire.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch, the precision PostgreSQL keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Micros(pub i64);

/// "00" through "99", for formatting two digits at once.
const PAIRS: &[u8; 200] = b"\
    0001020304050607080910111213141516171819\
    2021222324252627282930313233343536373839\
    4041424344454647484950515253545556575859\
    6061626364656667686970717273747576777879\
    8081828384858687888990919293949596979899";

/// The earliest and latest instants we accept: years 0001 through 9999 in UTC.
const MIN_MICROS: i64 = -62_135_596_800_000_000;
const MAX_MICROS: i64 = 253_402_300_799_999_999;

impl Micros {
    /// The current time.
    pub fn now() -> Micros {
        Micros::from_system_time(SystemTime::now())
    }

    /// Converts from `SystemTime`, truncating to whole microseconds.
    pub fn from_system_time(t: SystemTime) -> Micros {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Micros(d.as_micros() as i64),
            Err(e) => {
                let d = e.duration();
                let whole = d.as_micros() as i64;
                // Round toward negative infinity, as a timestamp before the epoch must.
                let extra = if d.as_nanos() % 1000 == 0 { 0 } else { 1 };
                Micros(-whole - extra)
            }
        }
    }

    /// Converts to `SystemTime`, for the PostgreSQL driver's `timestamptz`.
    pub fn to_system_time(self) -> SystemTime {
        if self.0 >= 0 {
            UNIX_EPOCH + Duration::from_micros(self.0 as u64)
        } else {
            UNIX_EPOCH - Duration::from_micros(self.0.unsigned_abs())
        }
    }

    /// Formats as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    pub fn to_rfc3339(self) -> String {
        match self.rfc3339_bytes() {
            Some(bytes) => String::from_utf8(bytes.to_vec()).expect("ASCII digits"),
            None => self.to_rfc3339_slow(),
        }
    }

    /// The 27 ASCII bytes of `to_rfc3339` for years 0001–9999, two digits at a time from a
    /// table: a list of 50 tasks formats 150 timestamps, and `format!` made that a third of
    /// the server's instructions (callgrind, bench/README.md); a digit at a time, 13 %.
    pub fn rfc3339_bytes(self) -> Option<[u8; 27]> {
        // Counted from 0001-01-01T00:00:00Z, every quantity is unsigned and the years are
        // those of one 400-year era after another, so the divisions are plain unsigned ones
        // by constants (cheaper than `div_euclid` and `civil_from_days`' signed arithmetic,
        // around the `date_in_era` both share).
        if !(MIN_MICROS..=MAX_MICROS).contains(&self.0) {
            return None;
        }
        let since = self.0.abs_diff(MIN_MICROS);
        let secs = since / 1_000_000;
        let micros = (since % 1_000_000) as u32;
        let rem = (secs % 86_400) as u32;
        // Days since 0000-03-01 (0001-01-01 is its 306th), as `civil_from_days` counts them.
        let z = (secs / 86_400) as u32 + 306;
        let (year_in_era, m, d) = date_in_era(z % 146_097);
        let y = z / 146_097 * 400 + year_in_era;
        let mut out = *b"0000-00-00T00:00:00.000000Z";
        let mut put = |at: usize, v: u32| {
            let pair = 2 * v as usize;
            out[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
        };
        put(0, y / 100);
        put(2, y % 100);
        put(5, m);
        put(8, d);
        put(11, rem / 3600);
        put(14, rem / 60 % 60);
        put(17, rem % 60);
        put(20, micros / 10_000);
        put(22, micros / 100 % 100);
        put(24, micros % 100);
        Some(out)
    }

    fn to_rfc3339_slow(self) -> String {
        let secs = self.0.div_euclid(1_000_000);
        let micros = self.0.rem_euclid(1_000_000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }

    /// Parses an RFC 3339 date-time with an offset (`Z` or `±HH:MM`), or a plain
    /// `YYYY-MM-DD` date taken as midnight UTC. Fractions beyond microseconds are cut.
    /// A date-time without an offset is refused: the instant it names is unknown.
    pub fn parse(s: &str) -> Option<Micros> {
        let b = s.as_bytes();
        if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let year = digits(&b[0..4])?;
        let month = digits(&b[5..7])?;
        let day = digits(&b[8..10])?;
        if year < 1 || !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return None;
        }
        let days = days_from_civil(year, month, day);
        if b.len() == 10 {
            return Micros::checked(days * 86_400 * 1_000_000);
        }
        // Date and time are separated by `T` or `t`. RFC 3339 §5.6 lets applications use a
        // space; JSON Schema's `date-time` (docs/openapi.json) does not, so neither do we.
        if b.len() < 20 || !matches!(b[10], b'T' | b't') || b[13] != b':' || b[16] != b':' {
            return None;
        }
        let hour = digits(&b[11..13])?;
        let minute = digits(&b[14..16])?;
        let second = digits(&b[17..19])?;
        if hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        let mut i = 19;
        let mut micros = 0;
        if b[i] == b'.' {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                if i - start < 6 {
                    micros = micros * 10 + i64::from(b[i] - b'0');
                }
                i += 1;
            }
            if i == start {
                return None;
            }
            for _ in (i - start)..6 {
                micros *= 10;
            }
        }
        let offset = match &b[i..] {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let h = digits(&[*h1, *h2])?;
                let m = digits(&[*m1, *m2])?;
                if h > 23 || m > 59 {
                    return None;
                }
                let minutes = h * 60 + m;
                if *sign == b'+' {
                    minutes
                } else {
                    -minutes
                }
            }
            _ => return None,
        };
        let local = (days * 86_400 + hour * 3600 + minute * 60 + second) * 1_000_000 + micros;
        Micros::checked(local - offset * 60 * 1_000_000)
    }

    fn checked(v: i64) -> Option<Micros> {
        (MIN_MICROS..=MAX_MICROS).contains(&v).then_some(Micros(v))
    }
}

fn digits(b: &[u8]) -> Option<i64> {
    b.iter().try_fold(0i64, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's `days_from_civil` and `civil_from_days`: exact for the proleptic
// Gregorian calendar, no tables.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let (year_in_era, m, d) = date_in_era((z - era * 146_097) as u32);
    (
        era * 400 + i64::from(year_in_era),
        i64::from(m),
        i64::from(d),
    )
}

/// The year within its 400-year era, the month and the day of `doe`, a day of that era
/// (0..146,097, counted from a 1 March): the unsigned heart of `civil_from_days`, shared
/// with `Micros::rfc3339_bytes`.
fn date_in_era(doe: u32) -> (u32, u32, u32) {
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    if mp < 10 {
        (yoe, mp + 3, d)
    } else {
        (yoe + 1, mp - 9, d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_six_fractional_digits_in_utc() {
        assert_eq!(Micros(0).to_rfc3339(), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            Micros(1_767_348_000_123_456).to_rfc3339(),
            "2026-01-02T10:00:00.123456Z"
        );
        assert_eq!(Micros(-1).to_rfc3339(), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn parses_offsets_dates_and_fractions() {
        let cases = [
            ("2026-01-02T10:00:00Z", "2026-01-02T10:00:00.000000Z"),
            ("2026-01-02t10:00:00.5z", "2026-01-02T10:00:00.500000Z"),
            ("2026-01-02T12:30:00+02:30", "2026-01-02T10:00:00.000000Z"),
            ("2026-01-02T00:00:00-05:00", "2026-01-02T05:00:00.000000Z"),
            (
                "2026-01-02T10:00:00.1234567Z",
                "2026-01-02T10:00:00.123456Z",
            ),
            ("2024-02-29", "2024-02-29T00:00:00.000000Z"),
            ("0001-01-01", "0001-01-01T00:00:00.000000Z"),
            ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z"),
        ];
        for (input, want) in cases {
            let got = Micros::parse(input).map(Micros::to_rfc3339);
            assert_eq!(got.as_deref(), Some(want), "input {input:?}");
        }
    }

    #[test]
    fn refuses_what_is_not_an_instant() {
        let bad = [
            "",
            "2026-01-02T10:00:00",
            "2026-01-02T10:00",
            "2026-02-30",
            "2023-02-29",
            "2026-13-01",
            "0000-01-01",
            "2026-01-02T24:00:00Z",
            "2026-01-02T10:00:60Z",
            "2026-01-02T10:00:00.Z",
            "2026-01-02T10:00:00+2:00",
            "2026-01-02T10:00:00+24:00",
            "2026-01-02T10:00:00Z ",
            "2026-01-02 10:00:00Z",
            "0001-01-01T00:00:00+00:01",
            "+2026-01-02",
            "２０２６-01-02",
        ];
        for input in bad {
            assert_eq!(Micros::parse(input), None, "input {input:?}");
        }
    }

    #[test]
    fn the_fast_and_the_general_formatter_agree_across_the_range() {
        // A stride of 9 days 3:28:43.456789 from year 1 to 9999: ~400,000 instants, on
        // every year, month, day, hour, minute and second, and every pair of micro-digits.
        let stride = 790_123_456_789_i64;
        let mut v = MIN_MICROS;
        while v <= MAX_MICROS {
            assert_eq!(Micros(v).to_rfc3339(), Micros(v).to_rfc3339_slow(), "{v}");
            v += stride;
        }
    }

    #[test]
    fn the_fast_and_the_general_formatter_agree() {
        for v in [
            0,
            1,
            -1,
            1_767_348_000_123_456,
            MIN_MICROS,
            MAX_MICROS,
            951_782_400_000_000,
        ] {
            assert_eq!(Micros(v).to_rfc3339(), Micros(v).to_rfc3339_slow(), "{v}");
        }
        assert_eq!(Micros(MAX_MICROS + 1).rfc3339_bytes(), None);
        assert_eq!(Micros(MIN_MICROS - 1).rfc3339_bytes(), None);
        assert_eq!(Micros(i64::MIN).rfc3339_bytes(), None);
        assert_eq!(Micros(i64::MAX).rfc3339_bytes(), None);
        assert_eq!(
            Micros(MAX_MICROS + 1).to_rfc3339(),
            "10000-01-01T00:00:00.000000Z"
        );
    }

    #[test]
    fn system_time_round_trips() {
        for v in [0, 1, -1, 1_767_348_000_123_456, -62_135_596_800_000_000] {
            assert_eq!(
                Micros::from_system_time(Micros(v).to_system_time()),
                Micros(v)
            );
        }
    }
}
