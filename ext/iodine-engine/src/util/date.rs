//! HTTP dates from unix timestamps, written into a stack buffer (no allocation).
//!
//! Three forms of the same instant, always in UTC:
//! - [`Style::Http`], IMF-fixdate (RFC 9110): `Sun, 06 Nov 1994 08:49:37 GMT`
//! - [`Style::Cookie`], RFC 2109 `expires`: `Sun, 06-Nov-1994 08:49:37 GMT`
//! - [`Style::Rfc2822`], RFC 2822 (`-0000`: UTC): `Sun, 06 Nov 1994 08:49:37 -0000`
//!
//! Every `i64` timestamp works, before 1970 included: the calendar is the proleptic Gregorian
//! one, and years are written as Ruby's `strftime("%Y")` writes them: four digits or more,
//! and a `-` before negative years (year 0 is 1 BC): `Sat, 01 Jan 0000 …`, `… 10000 …`.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Which of the three date forms to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `Sun, 06 Nov 1994 08:49:37 GMT` (the `Date` header's form).
    Http,
    /// `Sun, 06-Nov-1994 08:49:37 GMT` (cookie `expires`, RFC 2109).
    Cookie,
    /// `Sun, 06 Nov 1994 08:49:37 -0000` (RFC 2822).
    Rfc2822,
}

/// A calendar date and time of day, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    /// Proleptic Gregorian year (0 = 1 BC).
    pub year: i64,
    /// 1 to 12.
    pub month: u8,
    /// 1 to 31.
    pub day: u8,
    /// 0 (Sunday) to 6 (Saturday).
    pub weekday: u8,
    /// 0 to 23.
    pub hour: u8,
    /// 0 to 59.
    pub minute: u8,
    /// 0 to 59 (no leap seconds in unix time).
    pub second: u8,
}

const SECONDS_PER_DAY: i64 = 86_400;
/// Days in a 400-year Gregorian cycle.
const DAYS_PER_ERA: i64 = 146_097;
/// Days from 0000-03-01 (the start of the first era, years counted from March) to 1970-01-01.
const EPOCH_SHIFT: i64 = 719_468;

const WEEKDAYS: [&[u8; 3]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];
const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

impl Civil {
    /// The UTC date and time of `unix` (seconds since 1970-01-01 00:00:00 UTC).
    pub fn from_unix(unix: i64) -> Civil {
        let days = unix.div_euclid(SECONDS_PER_DAY);
        let secs = unix.rem_euclid(SECONDS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            // 1970-01-01 was a Thursday (4).
            weekday: (days + 4).rem_euclid(7) as u8,
            hour: (secs / 3600) as u8,
            minute: (secs / 60 % 60) as u8,
            second: (secs % 60) as u8,
        }
    }
}

/// Days since 1970-01-01 of the proleptic Gregorian date `year-month-day` (`month` 1–12).
///
/// The year is counted from March, so that February (and its leap day) ends it: a year then
/// has 365 days plus one every 4 years, minus one every 100, plus one every 400, and the
/// months from March on have a regular pattern (`(153 * m + 2) / 5` days before month `m`).
pub fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    let month = i64::from(month);
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400; // 0..=399
    let month_from_march = (month + 9) % 12; // March = 0 … February = 11
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * DAYS_PER_ERA + day_of_era - EPOCH_SHIFT
}

/// The proleptic Gregorian `(year, month, day)` of `days` since 1970-01-01; the inverse of
/// [`days_from_civil`].
pub fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let shifted = days + EPOCH_SHIFT;
    let era = shifted.div_euclid(DAYS_PER_ERA);
    let day_of_era = shifted - era * DAYS_PER_ERA; // 0..=146096
                                                   // Remove the leap days before `day_of_era` (one each 4 years but not each 100, one more
                                                   // on the era's last day), then divide by 365.
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153; // 0..=11
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u8;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u8;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The current unix time in seconds (0 if the clock is before 1970).
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A formatted date, on the stack. Always ASCII.
#[derive(Clone, Copy)]
pub struct HttpDate {
    buf: [u8; Self::CAPACITY],
    len: usize,
}

impl HttpDate {
    /// Longest output: "Sun, 06 " + "-292277026596" (the widest year of an i64 timestamp)
    /// + "-Nov-" + " 08:49:37 -0000", with room to spare.
    const CAPACITY: usize = 48;

    /// `unix` in `style`.
    pub fn new(unix: i64, style: Style) -> HttpDate {
        let c = Civil::from_unix(unix);
        let mut out = HttpDate {
            buf: [0; Self::CAPACITY],
            len: 0,
        };
        let sep = if style == Style::Cookie { b'-' } else { b' ' };
        out.push(WEEKDAYS[usize::from(c.weekday)]);
        out.push(b", ");
        out.two_digits(c.day);
        out.push(&[sep]);
        out.push(MONTHS[usize::from(c.month - 1)]);
        out.push(&[sep]);
        out.year(c.year);
        out.push(b" ");
        out.two_digits(c.hour);
        out.push(b":");
        out.two_digits(c.minute);
        out.push(b":");
        out.two_digits(c.second);
        out.push(if style == Style::Rfc2822 {
            b" -0000"
        } else {
            b" GMT"
        });
        out
    }

    /// The date's bytes (ASCII).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn push(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn two_digits(&mut self, n: u8) {
        self.push(&[b'0' + n / 10, b'0' + n % 10]);
    }

    /// At least four digits, `-` first when negative (Ruby's `%Y`).
    fn year(&mut self, year: i64) {
        if year < 0 {
            self.push(b"-");
        }
        let mut n = year.unsigned_abs();
        let mut digits = [b'0'; 20];
        let mut start = digits.len();
        while n > 0 {
            start -= 1;
            digits[start] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        self.push(&digits[start.min(digits.len() - 4)..]);
    }
}

impl fmt::Display for HttpDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // ASCII by construction; written byte by byte to need no UTF-8 check.
        self.as_bytes()
            .iter()
            .try_for_each(|&b| fmt::Write::write_char(f, char::from(b)))
    }
}

impl fmt::Debug for HttpDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HttpDate({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(t: i64) -> String {
        HttpDate::new(t, Style::Http).to_string()
    }

    #[test]
    fn known_dates() {
        assert_eq!(http(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(
            HttpDate::new(784_111_777, Style::Cookie).to_string(),
            "Sun, 06-Nov-1994 08:49:37 GMT"
        );
        assert_eq!(
            HttpDate::new(784_111_777, Style::Rfc2822).to_string(),
            "Sun, 06 Nov 1994 08:49:37 -0000"
        );
        assert_eq!(http(1_000_000_000), "Sun, 09 Sep 2001 01:46:40 GMT");
        assert_eq!(http(2_147_483_647), "Tue, 19 Jan 2038 03:14:07 GMT");
        assert_eq!(http(1_700_000_000), "Tue, 14 Nov 2023 22:13:20 GMT");
    }

    #[test]
    fn leap_years_and_centuries() {
        // 2000 is a leap year (divisible by 400), 2100 and 1900 are not.
        assert_eq!(http(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(http(951_868_800), "Wed, 01 Mar 2000 00:00:00 GMT");
        assert_eq!(http(1_709_164_800), "Thu, 29 Feb 2024 00:00:00 GMT");
        assert_eq!(http(4_107_456_000), "Sun, 28 Feb 2100 00:00:00 GMT");
        assert_eq!(http(4_107_542_400), "Mon, 01 Mar 2100 00:00:00 GMT");
        assert_eq!(http(4_102_444_800), "Fri, 01 Jan 2100 00:00:00 GMT");
        assert_eq!(http(-2_203_977_600), "Wed, 28 Feb 1900 00:00:00 GMT");
        assert_eq!(http(-2_203_891_200), "Thu, 01 Mar 1900 00:00:00 GMT");
        assert_eq!(http(1_704_067_199), "Sun, 31 Dec 2023 23:59:59 GMT");
    }

    #[test]
    fn before_1970_and_far_years() {
        assert_eq!(http(-1), "Wed, 31 Dec 1969 23:59:59 GMT");
        assert_eq!(http(-86_400), "Wed, 31 Dec 1969 00:00:00 GMT");
        assert_eq!(http(-86_401), "Tue, 30 Dec 1969 23:59:59 GMT");
        assert_eq!(http(-62_167_219_200), "Sat, 01 Jan 0000 00:00:00 GMT");
        assert_eq!(http(-62_167_219_201), "Fri, 31 Dec -0001 23:59:59 GMT");
        assert_eq!(http(-621_672_192_000), "Wed, 29 Dec -17731 00:00:00 GMT");
        assert_eq!(http(253_402_300_799), "Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(http(253_402_300_800), "Sat, 01 Jan 10000 00:00:00 GMT");
        // The extremes fit the buffer.
        assert!(http(i64::MAX).contains(" 292277026596 "));
        assert!(http(i64::MIN).contains(" -292277022657 "));
    }

    #[test]
    fn calendar_round_trips_against_a_day_by_day_count() {
        // Walk the days from 1600-01-01 to 2500-12-31 one by one and compare.
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let month_len = |y: i64, m: u8| match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let mut days = days_from_civil(1600, 1, 1);
        // 1600-01-01 was a Saturday.
        assert_eq!((days + 4).rem_euclid(7), 6);
        for year in 1600..=2500 {
            for month in 1..=12u8 {
                for day in 1..=month_len(year, month) {
                    assert_eq!(civil_from_days(days), (year, month, day));
                    assert_eq!(days_from_civil(year, month, day), days);
                    days += 1;
                }
            }
        }
    }

    #[test]
    fn civil_fields() {
        let c = Civil::from_unix(784_111_777);
        assert_eq!(
            c,
            Civil {
                year: 1994,
                month: 11,
                day: 6,
                weekday: 0,
                hour: 8,
                minute: 49,
                second: 37
            }
        );
        assert_eq!(days_from_civil(1970, 1, 1), 0);
    }

    #[test]
    fn now_is_after_2020() {
        assert!(now() > 1_577_836_800);
    }
}
