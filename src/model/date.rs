//! Calendar dates as day numbers, so that every date comparison is an integer comparison.
//!
//! A [`Day`] is the number of days since 1970-01-01 (proleptic Gregorian calendar). Only dates from
//! 1970-01-01 to 9999-12-31 are accepted, so a day number always fits in a `u32` (and in WGSL's `u32`).

use std::fmt;

/// Days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub u32);

impl Day {
    /// The last day gpuplace accepts: 9999-12-31.
    pub const MAX: Day = Day(crate::kernel::limits::MAX_DAY);

    /// The day `days` later, or [`Day::MAX`] if that would be past it (so that every date gpuplace
    /// computes can be written and read back).
    pub fn saturating_add(self, days: u64) -> Day {
        Day(u64::from(self.0).saturating_add(days).min(u64::from(Day::MAX.0)) as u32)
    }

    /// Parses `YYYY-MM-DD`. Returns a message suitable for an [`crate::InputError`] on failure.
    pub fn parse(text: &str) -> Result<Day, String> {
        let bad = || format!("`{text}` is not a date of the form YYYY-MM-DD between 1970-01-01 and 9999-12-31");
        let bytes = text.as_bytes();
        if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
            return Err(bad());
        }
        let number = |range: std::ops::Range<usize>| -> Result<u32, String> {
            let part = &text[range];
            if !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            part.parse::<u32>().map_err(|_| bad())
        };
        let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
        if year < 1970 || !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return Err(bad());
        }
        Ok(Day(days_from_civil(year, month, day)))
    }

    /// Today's date in UTC, from the system clock.
    pub fn today() -> Day {
        let seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or(0);
        Day(0).saturating_add(seconds / 86_400)
    }

    /// The date as (year, month, day).
    pub fn civil(self) -> (u32, u32, u32) {
        civil_from_days(self.0)
    }
}

impl fmt::Display for Day {
    /// `YYYY-MM-DD`; a day past [`Day::MAX`] (only code can make one: nothing gpuplace reads is)
    /// is written `day N`, which no reader takes for a date.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self > Day::MAX {
            return write!(f, "day {}", self.0);
        }
        let (year, month, day) = self.civil();
        write!(f, "{year:04}-{month:02}-{day:02}")
    }
}

impl std::str::FromStr for Day {
    type Err = String;

    /// [`Day::parse`].
    fn from_str(text: &str) -> Result<Day, String> {
        Day::parse(text)
    }
}

/// Written as `YYYY-MM-DD`.
impl serde::Serialize for Day {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Read from `YYYY-MM-DD` (1970-01-01 to 9999-12-31); anything else is an error naming the text.
impl<'de> serde::Deserialize<'de> for Day {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Day, D::Error> {
        struct DayText;
        impl serde::de::Visitor<'_> for DayText {
            type Value = Day;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a date of the form YYYY-MM-DD")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Day, E> {
                Day::parse(text).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(DayText)
    }
}

impl schemars::JsonSchema for Day {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Day".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "format": "date",
            "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
            "description": "A date, YYYY-MM-DD, from 1970-01-01 to 9999-12-31.",
        })
    }
}

fn is_leap(year: u32) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(year) => 29,
        _ => 28,
    }
}

/// Howard Hinnant's `days_from_civil`, restricted to years >= 1970 so all arithmetic is unsigned.
fn days_from_civil(year: u32, month: u32, day: u32) -> u32 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let year_of_era = year - era * 400;
    let shifted_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Inverse of [`days_from_civil`].
fn civil_from_days(days: u32) -> (u32, u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + u32::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_known_dates() {
        assert_eq!(Day::parse("1970-01-01"), Ok(Day(0)));
        assert_eq!(Day::parse("2000-03-01"), Ok(Day(11_017)));
        for text in ["2026-11-26", "2024-02-29", "2027-01-01", "9999-12-31"] {
            assert_eq!(Day::parse(text).unwrap().to_string(), text);
        }
        // Every 997th day up to 9999-12-31 (day 2 932 896) formats and parses back to itself.
        for day in (0..=2_932_896).step_by(997).chain([2_932_896]) {
            let text = Day(day).to_string();
            assert_eq!(Day::parse(&text), Ok(Day(day)), "{text}");
        }
        assert!(Day::parse("9999-12-31").is_ok_and(|d| d == Day(2_932_896)));
        assert_eq!(Day::MAX, Day(2_932_896));
        assert_eq!(Day::MAX.saturating_add(1), Day::MAX);
        assert_eq!(Day(10).saturating_add(5), Day(15));
        assert_eq!(Day(u32::MAX).to_string(), format!("day {}", u32::MAX));
        assert!(Day::parse(&Day(u32::MAX).to_string()).is_err());
    }

    #[test]
    fn reads_and_writes_json_strings() {
        let day: Day = serde_json::from_str("\"2026-11-26\"").unwrap();
        assert_eq!(serde_json::to_string(&day).unwrap(), "\"2026-11-26\"");
        let err = serde_json::from_str::<Day>("\"2026-02-30\"").unwrap_err().to_string();
        assert!(err.contains("`2026-02-30` is not a date"), "{err}");
        assert!(serde_json::from_str::<Day>("20783").is_err());
    }

    #[test]
    fn rejects_non_dates() {
        for text in [
            "2026-02-30",
            "2025-02-29",
            "1969-12-31",
            "2026-13-01",
            "26-11-2026",
            "2026/11/26",
            "2026-1-1",
            "+026-01-01",
        ] {
            assert!(Day::parse(text).is_err(), "{text}");
        }
    }
}
