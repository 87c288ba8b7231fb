//! The platform's lines in an invocation's log, in the function's log format: Lambda's
//! `START`/`END`/`REPORT` text lines, or its JSON `platform.start`/`platform.report`
//! records. `None` where the format has no such line or the system log level hides it.

use std::time::SystemTime;

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
        format!("START RequestId: {request_id} Version: {VERSION}")
    })
}

/// The line that ends an invocation's output (the JSON format has none: its report
/// closes the invocation).
pub(crate) fn end(function: &FunctionSpec, request_id: &str) -> Option<String> {
    (!function.logging.is_json()).then(|| format!("END RequestId: {request_id}"))
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
    let mut line = format!(
        "REPORT RequestId: {request_id}\tDuration: {ms:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB\tMax Memory Used: {} MB",
        ms.ceil() as u64,
        function.memory_mb,
        report
            .max_memory_mb
            .map_or_else(|| "-".to_owned(), |m| m.to_string()),
    );
    if let Some(init) = init_ms {
        line.push_str(&format!("\tInit Duration: {init:.2} ms"));
    }
    Some(line)
}
