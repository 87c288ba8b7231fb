//! EventBridge cron expressions: parsing and the search for fire times, in UTC.
//!
//! `cron(minutes hours day-of-month month day-of-week year)` as EventBridge documents it:
//!
//! | field | values | wildcards |
//! |---|---|---|
//! | minutes | 0-59 | `,` `-` `*` `/` |
//! | hours | 0-23 | `,` `-` `*` `/` |
//! | day-of-month | 1-31 | `,` `-` `*` `/` `?` `L` `W` |
//! | month | 1-12 or JAN-DEC | `,` `-` `*` `/` |
//! | day-of-week | 1-7 or SUN-SAT (1 is Sunday) | `,` `-` `*` `/` `?` `L` `#` |
//! | year | 1970-2199 | `,` `-` `*` `/` |
//!
//! Exactly one of day-of-month and day-of-week is `?`. `a/n` runs from `a` to the end of
//! the field every `n`; `a-b/n` steps through the range; a range whose end is below its
//! start wraps around (`FRI-MON`, `22-2`) except in day-of-month and year. In
//! day-of-month, `L` is the month's last day, `LW` its last weekday (Monday to Friday),
//! and `15W` the weekday nearest the 15th without leaving the month (a Saturday 1st gives
//! Monday the 3rd; a day the month does not have never matches). In day-of-week, `L`
//! alone is Saturday (the week's last day), `6L` the month's last Friday and `2#1` its
//! first Monday; `L`, `W` and `#` forms stand alone in their field. Names are
//! case-insensitive.
//!
//! Nimbus evaluates expressions itself rather than through a general cron crate: the
//! grammar above is EventBridge's own (Quartz-like numbering, `?`, the year field), and
//! checking it exactly is most of the work a translation for another crate would need.

pub mod calendar;

use std::{fmt, str::FromStr};

use calendar::{DAY_MINUTES, MINUTE_MS, civil_from_days, days_from_civil, days_in_month, weekday};

/// The first year a schedule can fire in.
pub(crate) const MIN_YEAR: i64 = 1970;
/// The last year a schedule can fire in.
pub(crate) const MAX_YEAR: i64 = 2199;

/// Why a cron expression is not valid; the message names the field and what it expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CronError(String);

/// A set of small numbers from a field's lowest value up (at most 256 of them).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Set {
    lo: i64,
    bits: [u64; 4],
}

impl Set {
    fn new(lo: u32) -> Set {
        Set {
            lo: i64::from(lo),
            bits: [0; 4],
        }
    }

    fn insert(&mut self, v: u32) {
        let i = (i64::from(v) - self.lo) as usize;
        self.bits[i / 64] |= 1 << (i % 64);
    }

    fn contains(&self, v: i64) -> bool {
        let Ok(i) = usize::try_from(v - self.lo) else {
            return false;
        };
        i < 256 && self.bits[i / 64] & (1 << (i % 64)) != 0
    }
}

/// What a field accepts.
struct Field {
    name: &'static str,
    lo: u32,
    hi: u32,
    /// Names of the values from `lo` up (`JAN`...), if the field has names.
    names: &'static [&'static str],
    /// Whether a range may wrap around (`22-2`).
    wraps: bool,
}

const MINUTES: Field = Field {
    name: "minutes",
    lo: 0,
    hi: 59,
    names: &[],
    wraps: true,
};
const HOURS: Field = Field {
    name: "hours",
    lo: 0,
    hi: 23,
    names: &[],
    wraps: true,
};
const DAY_OF_MONTH: Field = Field {
    name: "day-of-month",
    lo: 1,
    hi: 31,
    names: &[],
    wraps: false,
};
const MONTH: Field = Field {
    name: "month",
    lo: 1,
    hi: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
    wraps: true,
};
const DAY_OF_WEEK: Field = Field {
    name: "day-of-week",
    lo: 1,
    hi: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
    wraps: true,
};
const YEAR: Field = Field {
    name: "year",
    lo: MIN_YEAR as u32,
    hi: MAX_YEAR as u32,
    names: &[],
    wraps: false,
};

impl Field {
    fn error(&self, text: &str, expected: impl fmt::Display) -> CronError {
        CronError(format!("{} `{text}`: expected {expected}", self.name))
    }

    fn values(&self) -> String {
        match (self.names.first(), self.names.last()) {
            (Some(first), Some(last)) => {
                format!("{} to {} or {first} to {last}", self.lo, self.hi)
            }
            _ => format!("{} to {}", self.lo, self.hi),
        }
    }

    /// One value: a number in range or a name.
    fn value(&self, field: &str, text: &str) -> Result<u32, CronError> {
        if let Some(i) = self.names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
            // At most 12 names.
            return Ok(self.lo + i as u32);
        }
        text.parse::<u32>()
            .ok()
            .filter(|v| (self.lo..=self.hi).contains(v))
            .ok_or_else(|| self.error(field, format_args!("values from {}", self.values())))
    }

    /// A list of values, ranges, `*` and steps.
    fn list(&self, text: &str) -> Result<Set, CronError> {
        let mut set = Set::new(self.lo);
        let span = self.hi - self.lo + 1;
        for item in text.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((range, step)) => {
                    let step = step
                        .parse::<u32>()
                        .ok()
                        .filter(|s| (1..=span).contains(s))
                        .ok_or_else(|| {
                            self.error(text, format_args!("a step after `/` from 1 to {span}"))
                        })?;
                    (range, Some(step))
                }
                None => (item, None),
            };
            let (start, end) = if range == "*" {
                (self.lo, self.hi)
            } else if let Some((a, b)) = range.split_once('-') {
                (self.value(text, a)?, self.value(text, b)?)
            } else {
                let a = self.value(text, range)?;
                (a, if step.is_some() { self.hi } else { a })
            };
            if start > end && !self.wraps {
                return Err(self.error(text, "a range from a lower to a higher value"));
            }
            // Values from `start` to `end`, wrapping past `hi` back to `lo`.
            let count = (end + span - start) % span + 1;
            for i in (0..count).step_by(step.unwrap_or(1) as usize) {
                set.insert(self.lo + (start - self.lo + i) % span);
            }
        }
        Ok(set)
    }
}

/// What day-of-month accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Days {
    /// `?`: any (day-of-week decides).
    Any,
    /// Days of the month.
    Set(Set),
    /// `L`.
    Last,
    /// `LW`.
    LastWeekday,
    /// `15W`.
    NearestWeekday(u32),
}

/// What day-of-week accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Weekdays {
    /// `?`: any (day-of-month decides).
    Any,
    /// Weekdays, 1 (Sunday) to 7.
    Set(Set),
    /// `2#1`: the `nth` such weekday of the month.
    Nth { weekday: u32, nth: u32 },
    /// `6L`: the month's last such weekday.
    Last { weekday: u32 },
}

fn days(text: &str) -> Result<Days, CronError> {
    let f = &DAY_OF_MONTH;
    Ok(match text {
        "?" => Days::Any,
        "L" => Days::Last,
        "LW" => Days::LastWeekday,
        _ if text.contains(['L', 'W']) => {
            let day = text
                .strip_suffix('W')
                .and_then(|d| d.parse::<u32>().ok())
                .filter(|d| (1..=31).contains(d))
                .ok_or_else(|| {
                    f.error(
                        text,
                        "`L`, `LW` or a day from 1 to 31 followed by `W`, standing alone",
                    )
                })?;
            Days::NearestWeekday(day)
        }
        _ => Days::Set(f.list(text)?),
    })
}

fn weekdays(text: &str) -> Result<Weekdays, CronError> {
    let f = &DAY_OF_WEEK;
    Ok(match text {
        "?" => Weekdays::Any,
        // The week's last day.
        "L" => {
            let mut set = Set::new(1);
            set.insert(7);
            Weekdays::Set(set)
        }
        _ if text.contains('#') => {
            let (day, nth) = text.split_once('#').unwrap_or((text, ""));
            let weekday = f.value(text, day)?;
            let nth = nth
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=5).contains(n))
                .ok_or_else(|| {
                    f.error(
                        text,
                        "one weekday, `#` and an occurrence from 1 to 5, standing alone (such as 2#1)",
                    )
                })?;
            Weekdays::Nth { weekday, nth }
        }
        _ if text.contains('L') => {
            let weekday = text
                .strip_suffix('L')
                .filter(|d| !d.contains(['L', ',', '-', '/', '*']))
                .ok_or_else(|| {
                    f.error(
                        text,
                        "`L` alone, or one weekday followed by `L` (such as 6L), standing alone",
                    )
                })
                .and_then(|d| f.value(text, d))?;
            Weekdays::Last { weekday }
        }
        _ => Weekdays::Set(f.list(text)?),
    })
}

/// A parsed EventBridge cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    text: String,
    minutes: Set,
    hours: Set,
    days: Days,
    months: Set,
    weekdays: Weekdays,
    years: Set,
}

impl Cron {
    /// Parses the six fields of `cron(...)`.
    ///
    /// # Errors
    /// A [`CronError`] naming the first field that is not valid, or the `?` rule broken.
    pub fn from_fields<S: AsRef<str>>(fields: &[S; 6]) -> Result<Cron, CronError> {
        let upper: Vec<String> = fields
            .iter()
            .map(|f| f.as_ref().to_ascii_uppercase())
            .collect();
        let cron = Cron {
            text: fields
                .iter()
                .map(AsRef::as_ref)
                .collect::<Vec<_>>()
                .join(" "),
            minutes: MINUTES.list(&upper[0])?,
            hours: HOURS.list(&upper[1])?,
            days: days(&upper[2])?,
            months: MONTH.list(&upper[3])?,
            weekdays: weekdays(&upper[4])?,
            years: YEAR.list(&upper[5])?,
        };
        match (&cron.days, &cron.weekdays) {
            (Days::Any, Weekdays::Any) => Err(CronError(
                "day-of-month and day-of-week are both `?`: exactly one of them must be".to_owned(),
            )),
            (Days::Any, _) | (_, Weekdays::Any) => Ok(cron),
            _ => Err(CronError(
                "one of day-of-month and day-of-week must be `?` (cron(0 12 * * ? *), cron(0 8 ? * MON-FRI *))"
                    .to_owned(),
            )),
        }
    }

    /// Whether the day `days` (since 1970-01-01, in `year` and `month`) matches.
    fn day_matches(&self, days: i64, year: i64, month: u32, day: u32) -> bool {
        let last = days_in_month(year, month);
        // The weekday of `d` of the same month.
        let weekday_of = |d: u32| weekday(days - i64::from(day) + i64::from(d));
        let by_month = match &self.days {
            Days::Any => true,
            Days::Set(set) => set.contains(i64::from(day)),
            Days::Last => day == last,
            Days::LastWeekday => {
                day == match weekday_of(last) {
                    7 => last - 1,
                    1 => last - 2,
                    _ => last,
                }
            }
            Days::NearestWeekday(n) if *n > last => false,
            Days::NearestWeekday(n) => {
                day == match weekday_of(*n) {
                    7 if *n == 1 => 3,
                    7 => n - 1,
                    1 if *n == last => n - 2,
                    1 => n + 1,
                    _ => *n,
                }
            }
        };
        let wd = weekday(days);
        let by_week = match &self.weekdays {
            Weekdays::Any => true,
            Weekdays::Set(set) => set.contains(i64::from(wd)),
            Weekdays::Nth { weekday, nth } => wd == *weekday && (day - 1) / 7 + 1 == *nth,
            Weekdays::Last { weekday } => wd == *weekday && day + 7 > last,
        };
        by_month && by_week
    }

    fn time_matches(&self, minute_of_day: u64) -> bool {
        // Both are below 1440.
        let (h, m) = ((minute_of_day / 60) as i64, (minute_of_day % 60) as i64);
        self.hours.contains(h) && self.minutes.contains(m)
    }

    /// Whether the minute holding `ms` (since the epoch) matches.
    pub fn matches(&self, ms: u64) -> bool {
        let minute = ms / MINUTE_MS;
        let days = (minute / DAY_MINUTES) as i64;
        let (year, month, day) = civil_from_days(days);
        self.years.contains(year)
            && self.months.contains(i64::from(month))
            && self.day_matches(days, year, month, day)
            && self.time_matches(minute % DAY_MINUTES)
    }

    /// The first fire time strictly after `after_ms` (ms since the epoch, on a minute);
    /// `None` when there is none up to the end of 2199.
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        let start = after_ms / MINUTE_MS + 1;
        let mut days = i64::try_from(start / DAY_MINUTES).ok()?;
        let mut from = start % DAY_MINUTES;
        loop {
            let (year, month, day) = civil_from_days(days);
            if year > MAX_YEAR {
                return None;
            }
            if !self.years.contains(year) {
                days = days_from_civil(year + 1, 1, 1);
                from = 0;
                continue;
            }
            if !self.months.contains(i64::from(month)) {
                days = days_from_civil(year, month, 1) + i64::from(days_in_month(year, month));
                from = 0;
                continue;
            }
            if self.day_matches(days, year, month, day)
                && let Some(t) = (from..DAY_MINUTES).find(|t| self.time_matches(*t))
            {
                return Some((u64::try_from(days).ok()? * DAY_MINUTES + t) * MINUTE_MS);
            }
            days += 1;
            from = 0;
        }
    }

    /// The last fire time at or before `at_ms`; `None` when there is none since 1970.
    pub fn last_at_or_before(&self, at_ms: u64) -> Option<u64> {
        let end = at_ms / MINUTE_MS;
        let mut days = i64::try_from(end / DAY_MINUTES).ok()?;
        let mut to = end % DAY_MINUTES;
        loop {
            let (year, month, day) = civil_from_days(days);
            if year < MIN_YEAR {
                return None;
            }
            if !self.years.contains(year) {
                days = days_from_civil(year, 1, 1) - 1;
                to = DAY_MINUTES - 1;
                continue;
            }
            if !self.months.contains(i64::from(month)) {
                days = days_from_civil(year, month, 1) - 1;
                to = DAY_MINUTES - 1;
                continue;
            }
            if self.day_matches(days, year, month, day)
                && let Some(t) = (0..=to).rev().find(|t| self.time_matches(*t))
            {
                return Some((u64::try_from(days).ok()? * DAY_MINUTES + t) * MINUTE_MS);
            }
            days -= 1;
            to = DAY_MINUTES - 1;
        }
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cron({})", self.text)
    }
}

impl FromStr for Cron {
    type Err = CronError;

    /// Parses `cron(...)` or its six fields alone.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let inner = s
            .trim()
            .strip_prefix("cron(")
            .and_then(|r| r.strip_suffix(')'))
            .unwrap_or(s);
        let fields: Vec<&str> = inner.split_whitespace().collect();
        let fields = <[&str; 6]>::try_from(fields).map_err(|f| {
            CronError(format!(
                "found {} fields, expected six: minutes hours day-of-month month day-of-week year",
                f.len()
            ))
        })?;
        Cron::from_fields(&fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ms since the epoch of a UTC date and time.
    fn at(y: i64, mo: u32, d: u32, h: u64, mi: u64) -> u64 {
        (u64::try_from(days_from_civil(y, mo, d)).unwrap() * DAY_MINUTES + h * 60 + mi) * MINUTE_MS
    }

    fn cron(s: &str) -> Cron {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn next(s: &str, after: u64) -> Option<u64> {
        cron(s).next_after(after)
    }

    #[test]
    fn next_fire_times() {
        let cases: &[(&str, u64, Option<u64>)] = &[
            // Noon every day.
            (
                "cron(0 12 * * ? *)",
                at(2026, 11, 27, 11, 0),
                Some(at(2026, 11, 27, 12, 0)),
            ),
            // Strictly after: at noon itself, the next is tomorrow's.
            (
                "cron(0 12 * * ? *)",
                at(2026, 11, 27, 12, 0),
                Some(at(2026, 11, 28, 12, 0)),
            ),
            (
                "cron(0 12 * * ? *)",
                at(2026, 11, 27, 12, 0) + 1,
                Some(at(2026, 11, 28, 12, 0)),
            ),
            (
                "cron(0 12 * * ? *)",
                at(2026, 12, 31, 13, 0),
                Some(at(2027, 1, 1, 12, 0)),
            ),
            // Every 15 minutes on weekdays: Friday 23:50 goes to Monday midnight.
            (
                "cron(0/15 * ? * MON-FRI *)",
                at(2026, 11, 27, 23, 50),
                Some(at(2026, 11, 30, 0, 0)),
            ),
            (
                "cron(0/15 * ? * MON-FRI *)",
                at(2026, 11, 30, 9, 1),
                Some(at(2026, 11, 30, 9, 15)),
            ),
            (
                "cron(0/15 * ? * 2-6 *)",
                at(2026, 11, 28, 3, 0),
                Some(at(2026, 11, 30, 0, 0)),
            ),
            // The last day of the month, leap years included.
            (
                "cron(0 10 L * ? *)",
                at(2026, 2, 1, 0, 0),
                Some(at(2026, 2, 28, 10, 0)),
            ),
            (
                "cron(0 10 L * ? *)",
                at(2028, 2, 1, 0, 0),
                Some(at(2028, 2, 29, 10, 0)),
            ),
            (
                "cron(0 10 L * ? *)",
                at(2026, 4, 30, 10, 0),
                Some(at(2026, 5, 31, 10, 0)),
            ),
            // The first Monday of the month (2 is Monday).
            (
                "cron(0 8 ? * 2#1 *)",
                at(2026, 11, 27, 0, 0),
                Some(at(2026, 12, 7, 8, 0)),
            ),
            (
                "cron(0 8 ? * MON#1 *)",
                at(2026, 12, 7, 8, 0),
                Some(at(2027, 1, 4, 8, 0)),
            ),
            // The fifth Friday: months without one are skipped.
            (
                "cron(0 0 ? * 6#5 *)",
                at(2026, 2, 1, 0, 0),
                Some(at(2026, 5, 29, 0, 0)),
            ),
            // The last Friday, and `L` alone: Saturdays.
            (
                "cron(30 18 ? * 6L *)",
                at(2026, 11, 1, 0, 0),
                Some(at(2026, 11, 27, 18, 30)),
            ),
            (
                "cron(0 0 ? * L *)",
                at(2026, 11, 27, 0, 0),
                Some(at(2026, 11, 28, 0, 0)),
            ),
            // The weekday nearest the 15th: Sunday 2026-11-15 gives Monday the 16th.
            (
                "cron(0 9 15W * ? *)",
                at(2026, 11, 1, 0, 0),
                Some(at(2026, 11, 16, 9, 0)),
            ),
            // Saturday 2026-08-01 gives Monday the 3rd, not July's last Friday.
            (
                "cron(0 9 1W * ? *)",
                at(2026, 7, 2, 0, 0),
                Some(at(2026, 8, 3, 9, 0)),
            ),
            // Sunday 2026-05-31 (the last day) gives Friday the 29th.
            (
                "cron(0 9 31W * ? *)",
                at(2026, 5, 1, 0, 0),
                Some(at(2026, 5, 29, 9, 0)),
            ),
            // 31W never fires in a 30-day month.
            (
                "cron(0 9 31W * ? *)",
                at(2026, 6, 1, 0, 0),
                Some(at(2026, 7, 31, 9, 0)),
            ),
            // The last weekday: 2026-05-31 is a Sunday.
            (
                "cron(0 9 LW * ? *)",
                at(2026, 5, 1, 0, 0),
                Some(at(2026, 5, 29, 9, 0)),
            ),
            // Lists, ranges, names and steps.
            (
                "cron(1/10 * * * ? *)",
                at(2026, 1, 1, 0, 1),
                Some(at(2026, 1, 1, 0, 11)),
            ),
            (
                "cron(0 9,17 * JAN,jul ? *)",
                at(2026, 2, 1, 0, 0),
                Some(at(2026, 7, 1, 9, 0)),
            ),
            (
                "cron(0 22-2 * * ? *)",
                at(2026, 1, 1, 3, 0),
                Some(at(2026, 1, 1, 22, 0)),
            ),
            (
                "cron(0 22-2 * * ? *)",
                at(2026, 1, 1, 23, 0),
                Some(at(2026, 1, 2, 0, 0)),
            ),
            (
                "cron(0 0 ? * FRI-MON *)",
                at(2026, 11, 24, 0, 0),
                Some(at(2026, 11, 27, 0, 0)),
            ),
            (
                "cron(0 0 1/10 * ? *)",
                at(2026, 1, 21, 0, 0),
                Some(at(2026, 1, 31, 0, 0)),
            ),
            (
                "cron(0 0 1 */4 ? *)",
                at(2026, 2, 1, 0, 0),
                Some(at(2026, 5, 1, 0, 0)),
            ),
            // 29 February only in leap years.
            (
                "cron(0 0 29 2 ? *)",
                at(2026, 1, 1, 0, 0),
                Some(at(2028, 2, 29, 0, 0)),
            ),
            // Years: bounded, stepped, and the end of the calendar.
            (
                "cron(0 0 1 1 ? 2030)",
                at(2026, 6, 1, 0, 0),
                Some(at(2030, 1, 1, 0, 0)),
            ),
            ("cron(0 0 1 1 ? 2030)", at(2030, 1, 1, 0, 0), None),
            (
                "cron(0 0 1 1 ? 2027-2028)",
                at(2027, 1, 1, 0, 0),
                Some(at(2028, 1, 1, 0, 0)),
            ),
            (
                "cron(0 0 1 1 ? 2020/5)",
                at(2026, 1, 1, 0, 0),
                Some(at(2030, 1, 1, 0, 0)),
            ),
            ("cron(0 0 1 1 ? 1970)", at(2026, 1, 1, 0, 0), None),
            (
                "cron(59 23 31 12 ? 2199)",
                at(2199, 12, 31, 23, 58),
                Some(at(2199, 12, 31, 23, 59)),
            ),
            ("cron(59 23 31 12 ? *)", at(2199, 12, 31, 23, 59), None),
            // Never: 30 February.
            ("cron(0 0 30 2 ? *)", at(2026, 1, 1, 0, 0), None),
        ];
        for (expr, after, want) in cases {
            assert_eq!(next(expr, *after), *want, "{expr} after {after}");
        }
    }

    #[test]
    fn last_fire_times() {
        let noon = cron("cron(0 12 * * ? *)");
        assert_eq!(
            noon.last_at_or_before(at(2026, 11, 27, 12, 0)),
            Some(at(2026, 11, 27, 12, 0))
        );
        assert_eq!(
            noon.last_at_or_before(at(2026, 11, 27, 11, 59)),
            Some(at(2026, 11, 26, 12, 0))
        );
        let weekdays = cron("cron(0/15 * ? * MON-FRI *)");
        assert_eq!(
            weekdays.last_at_or_before(at(2026, 11, 30, 0, 14)),
            Some(at(2026, 11, 30, 0, 0))
        );
        assert_eq!(
            weekdays.last_at_or_before(at(2026, 11, 29, 12, 0)),
            Some(at(2026, 11, 27, 23, 45))
        );
        assert_eq!(
            cron("cron(0 0 1 1 ? 2150)").last_at_or_before(at(2026, 1, 1, 0, 0)),
            None
        );
        assert_eq!(
            cron("cron(0 8 ? * 2#1 *)").last_at_or_before(at(2026, 12, 6, 0, 0)),
            Some(at(2026, 11, 2, 8, 0))
        );
    }

    /// Every expression's next and last fire times agree with a minute-by-minute scan.
    #[test]
    fn the_search_agrees_with_a_scan() {
        let exprs = [
            "cron(*/7 * * * ? *)",
            "cron(5 */5 ? * 2-4 *)",
            "cron(0 0,12 L * ? *)",
            "cron(0 6 ? * 1#2 *)",
            "cron(45 23 ? * 1L *)",
            "cron(0 9 2W * ? *)",
            "cron(0 9 LW * ? *)",
            "cron(0 0 ? * SAT-SUN *)",
            "cron(10-20/5 4 1,15 * ? *)",
        ];
        let start = at(2026, 1, 1, 0, 0);
        let end = at(2026, 3, 5, 0, 0);
        for expr in exprs {
            let c = cron(expr);
            let scanned: Vec<u64> = (start / MINUTE_MS..end / MINUTE_MS)
                .map(|m| m * MINUTE_MS)
                .filter(|t| c.matches(*t))
                .collect();
            assert!(!scanned.is_empty(), "{expr} fires in the window");
            let mut searched = Vec::new();
            let mut t = start - 1;
            while let Some(n) = c.next_after(t).filter(|n| *n < end) {
                searched.push(n);
                t = n;
            }
            assert_eq!(searched, scanned, "{expr}");
            for pair in scanned.windows(2) {
                assert_eq!(c.last_at_or_before(pair[1] - 1), Some(pair[0]), "{expr}");
                assert_eq!(
                    c.last_at_or_before(pair[1] + 59_999),
                    Some(pair[1]),
                    "{expr}"
                );
            }
        }
    }

    #[test]
    fn invalid_expressions_are_rejected() {
        let cases = [
            ("cron(0 12 * * * *)", "must be `?`"),
            ("cron(0 12 ? * ? *)", "both `?`"),
            ("cron(0 12 1 * MON *)", "must be `?`"),
            ("cron(0 12 * *)", "found 4 fields"),
            ("cron(0 12 * * ? * *)", "found 7 fields"),
            ("cron(60 12 * * ? *)", "minutes `60`"),
            ("cron(0 24 * * ? *)", "hours `24`"),
            ("cron(0 0 32 * ? *)", "day-of-month `32`"),
            ("cron(0 0 0 * ? *)", "day-of-month `0`"),
            ("cron(0 0 ? 13 * *)", "month `13`"),
            ("cron(0 0 ? * 8 *)", "day-of-week `8`"),
            ("cron(0 0 ? * 0 *)", "day-of-week `0`"),
            ("cron(0 0 1 1 ? 1969)", "year `1969`"),
            ("cron(0 0 1 1 ? 2200)", "year `2200`"),
            ("cron(0 0 1 1 ? 2030-2020)", "lower to a higher"),
            ("cron(0 0 20-10 * ? *)", "lower to a higher"),
            ("cron(0/0 * * * ? *)", "step"),
            ("cron(0/61 * * * ? *)", "step"),
            ("cron(? 0 * * ? *)", "minutes `?`"),
            ("cron(5- * * * ? *)", "minutes `5-`"),
            ("cron(1,,2 * * * ? *)", "minutes `1,,2`"),
            ("cron(0 0 ? * 2#6 *)", "occurrence from 1 to 5"),
            ("cron(0 0 ? * 2#1,3#1 *)", "occurrence from 1 to 5"),
            ("cron(0 0 ? * 9#1 *)", "day-of-week `9#1`"),
            ("cron(0 0 ? * 2L,3 *)", "followed by `L`"),
            ("cron(0 0 L-3 * ? *)", "`LW`"),
            ("cron(0 0 1W,15W * ? *)", "`LW`"),
            ("cron(0 0 32W * ? *)", "`LW`"),
            ("cron(0 0 ? JANUARY * *)", "month `JANUARY`"),
        ];
        for (expr, message) in cases {
            match expr.parse::<Cron>() {
                Ok(c) => panic!("{expr} was accepted: {c:?}"),
                Err(e) => assert!(e.to_string().contains(message), "{expr}: {e}"),
            }
        }
    }

    #[test]
    fn expressions_print_as_written() {
        assert_eq!(
            cron("cron(0/15 * ? * mon-fri *)").to_string(),
            "cron(0/15 * ? * mon-fri *)"
        );
        assert_eq!(
            Cron::from_fields(&["0", "12", "*", "*", "?", "*"])
                .unwrap()
                .to_string(),
            "cron(0 12 * * ? *)"
        );
    }
}
