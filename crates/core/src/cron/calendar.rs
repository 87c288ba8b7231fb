//! UTC calendar arithmetic on days since the Unix epoch (the proleptic Gregorian calendar).
//!
//! Days are `i64` so that the conversions below are exact over any range a schedule can
//! reach (years 1970 to 2199); weekdays use EventBridge's numbering, 1 (Sunday) to 7
//! (Saturday).

/// Milliseconds in a minute.
pub const MINUTE_MS: u64 = 60_000;
/// Minutes in a day.
pub const DAY_MINUTES: u64 = 1440;

/// Days since 1970-01-01 of a civil date (`month` 1-12, `day` 1-31).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    // Years counted from March, so that the leap day ends the year.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let m = i64::from(month);
    let day_of_year = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The civil date `(year, month, day)` of a day since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // Both are in range by construction: day 1-31, month 1-12.
    (year, month as u32, day as u32)
}

/// Whether `year` has a 29 February.
pub fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// How many days `month` of `year` has.
pub fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The weekday of a day since 1970-01-01, 1 (Sunday) to 7 (Saturday).
pub fn weekday(days: i64) -> u32 {
    // 1970-01-01 was a Thursday (5).
    (days + 4).rem_euclid(7) as u32 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_through_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        for days in (days_from_civil(1969, 1, 1)..days_from_civil(2201, 1, 1)).step_by(13) {
            let (y, m, d) = civil_from_days(days);
            assert!((1..=days_in_month(y, m)).contains(&d));
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn weekdays_count_from_sunday() {
        assert_eq!(weekday(0), 5, "1970-01-01 was a Thursday");
        assert_eq!(weekday(days_from_civil(2026, 11, 27)), 6, "a Friday");
        assert_eq!(weekday(days_from_civil(2026, 11, 29)), 1, "a Sunday");
        assert_eq!(weekday(days_from_civil(2000, 1, 1)), 7, "a Saturday");
    }

    #[test]
    fn month_lengths_follow_the_leap_rules() {
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(2100, 2), 28);
        assert_eq!(days_in_month(2000, 2), 29);
        assert_eq!(days_in_month(2026, 4), 30);
        assert_eq!(days_in_month(2026, 12), 31);
    }
}
