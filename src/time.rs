//! Datetime units `{tick, tz}`: parsing ISO-8601 text or integer ticks in a source time zone,
//! storing UTC ticks as int64 with CF attributes.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc};

/// Resolution of stored times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tick {
    /// days
    Day,
    /// hours
    Hour,
    /// minutes
    Minute,
    /// seconds
    Second,
    /// milliseconds
    Milli,
    /// microseconds
    Micro,
    /// nanoseconds
    Nano,
}

impl Tick {
    /// Parse a numpy-style tick (`D`, `h`, `m`, `s`, `ms`, `us`, `ns`).
    pub fn parse(s: &str) -> Option<Tick> {
        Some(match s {
            "D" | "d" | "day" => Tick::Day,
            "h" => Tick::Hour,
            "m" | "min" => Tick::Minute,
            "s" => Tick::Second,
            "ms" => Tick::Milli,
            "us" | "µs" => Tick::Micro,
            "ns" => Tick::Nano,
            _ => return None,
        })
    }

    /// Nanoseconds per tick.
    pub fn nanos(self) -> i64 {
        match self {
            Tick::Day => 86_400_000_000_000,
            Tick::Hour => 3_600_000_000_000,
            Tick::Minute => 60_000_000_000,
            Tick::Second => 1_000_000_000,
            Tick::Milli => 1_000_000,
            Tick::Micro => 1_000,
            Tick::Nano => 1,
        }
    }

    /// The numpy spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Tick::Day => "D",
            Tick::Hour => "h",
            Tick::Minute => "m",
            Tick::Second => "s",
            Tick::Milli => "ms",
            Tick::Micro => "us",
            Tick::Nano => "ns",
        }
    }

    /// CF `units` attribute of int64 times in this tick.
    pub fn cf_units(self) -> String {
        let name = match self {
            Tick::Day => "days",
            Tick::Hour => "hours",
            Tick::Minute => "minutes",
            Tick::Second => "seconds",
            Tick::Milli => "milliseconds",
            Tick::Micro => "microseconds",
            Tick::Nano => "nanoseconds",
        };
        format!("{name} since 1970-01-01 00:00:00")
    }
}

/// A source time zone.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Zone {
    /// A fixed offset from UTC (UTC itself, `+HH:MM`, or an abbreviation such as CET).
    Fixed(FixedOffset),
    /// An IANA zone (with daylight saving).
    Iana(chrono_tz::Tz),
}

/// Fixed-offset abbreviations (no daylight saving: CET is always +01:00).
const ABBREVIATIONS: &[(&str, i32)] = &[
    ("UTC", 0),
    ("GMT", 0),
    ("Z", 0),
    ("WET", 0),
    ("WEST", 3600),
    ("CET", 3600),
    ("CEST", 7200),
    ("MET", 3600),
    ("MEST", 7200),
    ("EET", 7200),
    ("EEST", 10800),
    ("MSK", 10800),
    ("EST", -5 * 3600),
    ("EDT", -4 * 3600),
    ("PST", -8 * 3600),
    ("PDT", -7 * 3600),
    ("MST", -7 * 3600),
    ("MDT", -6 * 3600),
    ("JST", 9 * 3600),
    ("AEST", 10 * 3600),
];

fn parse_offset(s: &str) -> Option<FixedOffset> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) || !(digits.len() == 2 || digits.len() == 4) {
        return None;
    }
    let h: i32 = digits[..2].parse().ok()?;
    let m: i32 = if digits.len() == 4 {
        digits[2..].parse().ok()?
    } else {
        0
    };
    if h > 23 || m > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

impl Zone {
    /// UTC.
    pub fn utc() -> Zone {
        Zone::Fixed(Utc.fix())
    }

    /// Parse `null`/empty (UTC), `+HH:MM`, an abbreviation, or an IANA name.
    pub fn parse(s: Option<&str>) -> Result<Zone, String> {
        let Some(s) = s
            .map(str::trim)
            .filter(|s| !s.is_empty() && *s != "null" && *s != "~")
        else {
            return Ok(Zone::utc());
        };
        if let Some(off) = parse_offset(s) {
            return Ok(Zone::Fixed(off));
        }
        if let Some((_, secs)) = ABBREVIATIONS
            .iter()
            .find(|(a, _)| a.eq_ignore_ascii_case(s))
        {
            return FixedOffset::east_opt(*secs)
                .map(Zone::Fixed)
                .ok_or_else(|| format!("bad offset for {s}"));
        }
        s.parse::<chrono_tz::Tz>().map(Zone::Iana).map_err(|_| {
            format!("unknown time zone '{s}' (use null for UTC, +HH:MM, an abbreviation such as CET, or an IANA name such as Europe/Prague)")
        })
    }

    fn localize(&self, naive: &NaiveDateTime) -> Result<DateTime<Utc>, String> {
        match self {
            Zone::Fixed(off) => off
                .from_local_datetime(naive)
                .single()
                .map(|t| t.with_timezone(&Utc))
                .ok_or_else(|| "invalid local time".to_string()),
            Zone::Iana(tz) => tz
                .from_local_datetime(naive)
                .earliest()
                .map(|t| t.with_timezone(&Utc))
                .ok_or_else(|| {
                    format!("{naive} does not exist in {tz} (skipped by a daylight-saving change)")
                }),
        }
    }
}

/// Parse a time value: ISO-8601 text (with or without offset, `T` or space) or integer ticks
/// of `source_tick` since the epoch. Returns nanoseconds since 1970-01-01 UTC.
pub fn parse_instant(text: &str, zone: &Zone, source_tick: Tick) -> Result<i64, String> {
    let t = text.trim();
    if let Ok(n) = t.parse::<i64>() {
        return n
            .checked_mul(source_tick.nanos())
            .ok_or_else(|| format!("'{t}' ticks overflow"));
    }
    // times are ASCII; chrono's parser slices strings by byte and panicked on non-UTF-8 bytes
    // a damaged Parquet file produced (tests/fuzz_corpus.rs), so anything else is refused here
    if !t.is_ascii() {
        return Err(format!("'{t}' is not an ISO-8601 time or integer ticks"));
    }
    let mut s = t.replacen(' ', "T", 1);
    let mut offset: Option<FixedOffset> = None;
    if let Some(stripped) = s.strip_suffix('Z').or_else(|| s.strip_suffix('z')) {
        offset = Some(Utc.fix());
        s = stripped.to_string();
    } else if let Some(pos) = s.rfind(['+', '-']).filter(|&p| p > 10) {
        if let Some(off) = parse_offset(&s[pos..]) {
            offset = Some(off);
            s.truncate(pos);
        }
    }
    let naive = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(&s, f).ok())
        .or_else(|| {
            NaiveDate::parse_from_str(&s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
        .ok_or_else(|| format!("'{t}' is not an ISO-8601 time or integer ticks"))?;
    let utc = match offset {
        Some(off) => Zone::Fixed(off).localize(&naive)?,
        None => zone.localize(&naive)?,
    };
    utc.timestamp_nanos_opt()
        .ok_or_else(|| format!("'{t}' is out of the representable range (1678–2262)"))
}

/// An ISO-8601 time (a date, a date and time, with or without an offset; none means UTC) as
/// a UTC instant — the one parser of times, as [`parse_instant`] reads them. Integers are not
/// times here.
pub fn parse_utc(text: &str) -> Option<DateTime<Utc>> {
    if text.trim().parse::<i64>().is_ok() {
        return None;
    }
    let nanos = parse_instant(text, &Zone::Fixed(Utc.fix()), Tick::Second).ok()?;
    Some(DateTime::<Utc>::from_timestamp_nanos(nanos))
}

/// Floor nanoseconds to ticks.
pub fn to_ticks(nanos: i64, tick: Tick) -> i64 {
    nanos.div_euclid(tick.nanos())
}

/// Format ticks as ISO-8601 UTC (`YYYY-MM-DDTHH:MM:SS[.fff]`).
pub fn format_ticks(ticks: i64, tick: Tick) -> String {
    let nanos = ticks.saturating_mul(tick.nanos());
    let t = DateTime::<Utc>::from_timestamp_nanos(nanos);
    if nanos.rem_euclid(1_000_000_000) == 0 {
        t.format("%Y-%m-%dT%H:%M:%S").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.f").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(text: &str, tz: &str) -> String {
        let z = Zone::parse(Some(tz)).unwrap();
        format_ticks(
            to_ticks(parse_instant(text, &z, Tick::Second).unwrap(), Tick::Hour),
            Tick::Hour,
        )
    }

    #[test]
    fn parses_and_floors() {
        assert_eq!(h("2025-05-13T07:00:00", "CET"), "2025-05-13T06:00:00");
        assert_eq!(h("2025-05-13 09:30", "CET"), "2025-05-13T08:00:00");
        assert_eq!(h("2025-05-13T10:00:00Z", "CET"), "2025-05-13T10:00:00");
        assert_eq!(h("2025-05-13T10:00:00+02:00", "UTC"), "2025-05-13T08:00:00");
        assert_eq!(
            h("2025-07-01T12:00", "Europe/Prague"),
            "2025-07-01T10:00:00"
        );
        assert_eq!(h("3600", "UTC"), "1970-01-01T01:00:00");
        assert_eq!(h("2025-05-13", "+01:00"), "2025-05-12T23:00:00");
        assert_eq!(to_ticks(-1, Tick::Second), -1, "floor, not truncation");
    }

    #[test]
    fn errors() {
        assert!(Zone::parse(Some("Mars/Olympus")).is_err());
        assert!(parse_instant("yesterday", &Zone::utc(), Tick::Second).is_err());
        assert!(parse_instant("2025-13-01", &Zone::utc(), Tick::Second).is_err());
        // non-ASCII text is refused before chrono sees it (chrono panicked on the non-UTF-8
        // bytes a damaged Parquet file produced: tests/fuzz_corpus.rs)
        assert!(parse_instant("2\u{0662}26-01-01T02:00", &Zone::utc(), Tick::Second).is_err());
        assert!(crate::repo::parse_time("2026-01-01T0\u{0662}:00").is_none());
    }
}
