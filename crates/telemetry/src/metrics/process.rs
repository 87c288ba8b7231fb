//! The process's own CPU, memory, file descriptors and start time, read from `/proc` at
//! scrape time under the names Prometheus's client libraries use for them.

use std::fmt::Write as _;

/// One reading of the process's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessStats {
    /// User and system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident memory, in bytes.
    pub resident_bytes: u64,
    /// Virtual memory, in bytes.
    pub virtual_bytes: u64,
    /// Open file descriptors, when they can be counted.
    pub open_fds: Option<u64>,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: f64,
}

/// Why `/proc` could not be read as expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcError {
    /// A file could not be read (not Linux, or `/proc` is not mounted).
    #[error("cannot read {file}: {reason}")]
    Read {
        /// The file.
        file: &'static str,
        /// Why.
        reason: String,
    },
    /// A file did not have the expected shape.
    #[error("{0}")]
    Malformed(String),
}

/// The fields of `/proc/[pid]/stat` that Nimbus reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    /// CPU time in user mode, in clock ticks.
    pub(crate) utime: u64,
    /// CPU time in kernel mode, in clock ticks.
    pub(crate) stime: u64,
    /// When the process started, in clock ticks after boot.
    pub(crate) starttime: u64,
    /// Virtual memory size in bytes.
    pub(crate) vsize: u64,
    /// Resident set size in pages.
    pub(crate) rss_pages: u64,
}

/// Parses `/proc/[pid]/stat`. The command name (field 2) is in parentheses and may itself
/// contain spaces and parentheses, so fields are counted from its last `)`.
pub(crate) fn parse_stat(text: &str) -> Result<Stat, ProcError> {
    let malformed = |why: &str| ProcError::Malformed(format!("/proc/self/stat: {why}"));
    let close = text
        .rfind(')')
        .ok_or_else(|| malformed("no command name"))?;
    // After the name: field 3 (state) is index 0 here, so field N is index N - 3.
    let fields: Vec<&str> = text[close + 1..].split_ascii_whitespace().collect();
    let field = |n: usize| -> Result<u64, ProcError> {
        let raw = fields
            .get(n - 3)
            .ok_or_else(|| malformed(&format!("field {n} is missing")))?;
        // rss may be negative in theory (a kernel accounting quirk); read it as 0.
        if raw.starts_with('-') {
            return Ok(0);
        }
        raw.parse()
            .map_err(|_| malformed(&format!("field {n} is not a number: {raw:?}")))
    };
    Ok(Stat {
        utime: field(14)?,
        stime: field(15)?,
        starttime: field(22)?,
        vsize: field(23)?,
        rss_pages: field(24)?,
    })
}

/// The boot time (`btime`, seconds since the epoch) from `/proc/stat`.
pub(crate) fn parse_boot_time(text: &str) -> Result<u64, ProcError> {
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| ProcError::Malformed("/proc/stat has no btime line".to_owned()))
}

/// Turns the raw fields into figures, given the clock tick rate and the page size.
pub(crate) fn stats_from(
    stat: Stat,
    boot_time: u64,
    ticks_per_second: u64,
    page_size: u64,
    open_fds: Option<u64>,
) -> ProcessStats {
    let ticks = ticks_per_second.max(1) as f64;
    ProcessStats {
        cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
        resident_bytes: stat.rss_pages.saturating_mul(page_size),
        virtual_bytes: stat.vsize,
        open_fds,
        start_time_seconds: boot_time as f64 + stat.starttime as f64 / ticks,
    }
}

fn read(file: &'static str) -> Result<String, ProcError> {
    std::fs::read_to_string(file).map_err(|e| ProcError::Read {
        file,
        reason: e.to_string(),
    })
}

impl ProcessStats {
    /// Reads this process's figures from `/proc`.
    ///
    /// # Errors
    /// When `/proc` is not there (not Linux) or not in the expected shape.
    pub fn read() -> Result<ProcessStats, ProcError> {
        let stat = parse_stat(&read("/proc/self/stat")?)?;
        let boot_time = parse_boot_time(&read("/proc/stat")?)?;
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|dir| dir.count() as u64);
        Ok(stats_from(
            stat,
            boot_time,
            rustix::param::clock_ticks_per_second(),
            rustix::param::page_size() as u64,
            open_fds,
        ))
    }

    /// Appends the figures in the Prometheus text format, each with its HELP and TYPE.
    pub fn render(&self, out: &mut String) {
        let mut family = |name: &str, kind: &str, help: &str, value: f64| {
            // Writing to a String cannot fail.
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        family(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            self.cpu_seconds,
        );
        family(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            self.resident_bytes as f64,
        );
        family(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            self.virtual_bytes as f64,
        );
        if let Some(fds) = self.open_fds {
            family(
                "process_open_fds",
                "gauge",
                "Number of open file descriptors.",
                fds as f64,
            );
        }
        family(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            self.start_time_seconds,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line, with a command name holding a space and a parenthesis.
    const STAT: &str = "4242 (nimbus (x) y) S 1 4242 4242 0 -1 4194560 5000 0 12 0 \
        250 75 0 0 20 0 9 0 123456 987654321 2048 18446744073709551615 1 1 0 0 0 0 0 \
        4096 17663 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = parse_stat(STAT).unwrap();
        assert_eq!(
            stat,
            Stat {
                utime: 250,
                stime: 75,
                starttime: 123_456,
                vsize: 987_654_321,
                rss_pages: 2048,
            }
        );
    }

    #[test]
    fn figures_are_in_base_units() {
        let stats = stats_from(
            parse_stat(STAT).unwrap(),
            1_700_000_000,
            100,
            4096,
            Some(12),
        );
        assert_eq!(stats.cpu_seconds, 3.25);
        assert_eq!(stats.resident_bytes, 2048 * 4096);
        assert_eq!(stats.virtual_bytes, 987_654_321);
        assert_eq!(stats.start_time_seconds, 1_700_000_000.0 + 1234.56);
        let mut text = String::new();
        stats.render(&mut text);
        assert!(text.contains(
            "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 3.25\n"
        ));
        assert!(text.contains("process_open_fds 12\n"));
    }

    #[test]
    fn malformed_files_are_errors_not_panics() {
        assert!(parse_stat("").is_err());
        assert!(parse_stat("1 (short) S 1 2").is_err());
        assert!(parse_stat(&STAT.replace(" 250 ", " x ")).is_err());
        assert!(parse_boot_time("cpu 1 2 3\n").is_err());
        assert_eq!(
            parse_boot_time("cpu 1\nbtime 1700000000\nprocesses 9\n"),
            Ok(1_700_000_000)
        );
    }

    #[test]
    fn this_process_can_be_read() {
        let stats = ProcessStats::read().unwrap();
        assert!(stats.resident_bytes > 0);
        assert!(stats.virtual_bytes >= stats.resident_bytes);
        assert!(stats.open_fds.is_some_and(|n| n > 0));
        assert!(stats.start_time_seconds > 1_600_000_000.0);
    }
}
