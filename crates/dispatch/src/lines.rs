//! The platform's lines in an invocation's log, in the function's log format: Lambda's
//! `START`/`END`/`REPORT` text lines, or its JSON `platform.start`/`platform.report`
//! records. `None` where the format has no such line or the system log level hides it.

use std::{fmt::Write as _, time::SystemTime};

use nimbus_core::{
    FunctionSpec, Report,
    logging::{ReportMetrics, platform_report, platform_start},
};

/// The version every invocation runs (Nimbus has no published versions).
const VERSION: &str = "$LATEST";

/// The line that opens an invocation.
pub(crate) fn start(function: &FunctionSpec, request_id: &str) -> Option<String> {
    let logging = &function.logging;
    if !logging.keeps_invocation_records() {
        return None;
    }
    Some(if logging.is_json() {
        platform_start(SystemTime::now(), request_id, VERSION)
    } else {
        joined(&["START RequestId: ", request_id, " Version: ", VERSION])
    })
}

/// `parts` in one string, allocated once: these lines are made on every invocation.
fn joined(parts: &[&str]) -> String {
    let mut line = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        line.push_str(part);
    }
    line
}

/// The line that ends an invocation's output (the JSON format has none: its report
/// closes the invocation).
pub(crate) fn end(function: &FunctionSpec, request_id: &str) -> Option<String> {
    (!function.logging.is_json()).then(|| joined(&["END RequestId: ", request_id]))
}

/// The invocation's report: duration, billed duration, memory, and the init duration of
/// a cold start.
pub(crate) fn report(
    function: &FunctionSpec,
    request_id: &str,
    ms: f64,
    report: &Report,
    outcome: &str,
    error_type: Option<&str>,
) -> Option<String> {
    let logging = &function.logging;
    if !logging.keeps_invocation_records() {
        return None;
    }
    let init_ms = report.init_duration.map(|d| d.as_secs_f64() * 1000.0);
    if logging.is_json() {
        let metrics = ReportMetrics {
            duration_ms: ms,
            billed_duration_ms: ms.ceil() as u64,
            memory_size_mb: function.memory_mb,
            max_memory_used_mb: report.max_memory_mb,
            init_duration_ms: init_ms,
        };
        return Some(platform_report(
            SystemTime::now(),
            request_id,
            &metrics,
            outcome,
            error_type,
        ));
    }
    // Written into one buffer (writing into a String cannot fail).
    let mut line = String::with_capacity(160 + request_id.len());
    let _ = write!(
        line,
        "REPORT RequestId: {request_id}\tDuration: {ms:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB\tMax Memory Used: ",
        ms.ceil() as u64,
        function.memory_mb,
    );
    match report.max_memory_mb {
        Some(used) => {
            let _ = write!(line, "{used}");
        }
        None => line.push('-'),
    }
    line.push_str(" MB");
    if let Some(init) = init_ms {
        let _ = write!(line, "\tInit Duration: {init:.2} ms");
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use nimbus_core::Outcome;

    use super::*;

    fn report(init: Option<Duration>, max_memory_mb: Option<u64>) -> Report {
        Report {
            outcome: Outcome::Response(Vec::new()),
            reusable: true,
            init_duration: init,
            log_tail: String::new(),
            max_memory_mb,
            run_duration: None,
        }
    }

    /// Lambda's text lines, byte for byte.
    #[test]
    fn text_lines_are_lambdas() {
        let f = crate::tests::function("hello", 1, "");
        assert_eq!(
            start(&f, "r-1").as_deref(),
            Some("START RequestId: r-1 Version: $LATEST")
        );
        assert_eq!(end(&f, "r-1").as_deref(), Some("END RequestId: r-1"));
        let warm = report(None, Some(42));
        assert_eq!(
            super::report(&f, "r-1", 1.234, &warm, "success", None).as_deref(),
            Some(
                "REPORT RequestId: r-1\tDuration: 1.23 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\tMax Memory Used: 42 MB"
            )
        );
        let cold = report(Some(Duration::from_micros(10_250)), None);
        assert_eq!(
            super::report(&f, "r-2", 0.5, &cold, "success", None).as_deref(),
            Some(
                "REPORT RequestId: r-2\tDuration: 0.50 ms\tBilled Duration: 1 ms\tMemory Size: 128 MB\tMax Memory Used: - MB\tInit Duration: 10.25 ms"
            )
        );
    }
}
