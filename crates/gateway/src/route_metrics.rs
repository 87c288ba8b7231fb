//! The gateway's metrics: requests by route, method and status, and their latency.
//!
//! Every label has a bounded set of values, whatever clients send: the route is the
//! manifest's route key (`-` when none matched), never the raw path; a method outside
//! HTTP's standard ones is `OTHER`; the status is one of HTTP's codes.

use std::{sync::Arc, time::Duration};

use axum::http::{Method, StatusCode};
use metrics::{Counter, Histogram, SharedString};

/// The method label: the standard methods by name, anything else `OTHER`.
pub(crate) fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// The status label, without formatting for the common codes.
fn status_label(status: StatusCode) -> SharedString {
    let common = match status.as_u16() {
        200 => "200",
        201 => "201",
        202 => "202",
        204 => "204",
        301 => "301",
        302 => "302",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        413 => "413",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        other => return SharedString::from(other.to_string()),
    };
    SharedString::const_str(common)
}

/// Most (route, method, status) handles one thread keeps; past it the thread starts over
/// (functions choose their statuses, so the set is bounded only by HTTP's codes).
const CACHED_HANDLES: usize = 4096;

type HandleKey = (Option<Arc<str>>, &'static str, u16);

thread_local! {
    /// The handles of the series this thread has recorded: looking a series up in the
    /// recorder's registry builds and hashes its labels on every request.
    static HANDLES: std::cell::RefCell<std::collections::HashMap<HandleKey, (Counter, Histogram)>> =
        std::cell::RefCell::default();
}

/// Records one answered request.
pub(crate) fn record(
    route: Option<Arc<str>>,
    method: &'static str,
    status: StatusCode,
    elapsed: Duration,
) {
    HANDLES.with_borrow_mut(|handles| {
        if handles.len() >= CACHED_HANDLES {
            handles.clear();
        }
        let (requests, latency) = handles
            .entry((route, method, status.as_u16()))
            .or_insert_with_key(|(route, method, _)| register(route.as_deref(), method, status));
        requests.increment(1);
        latency.record(elapsed.as_secs_f64());
    });
}

/// The series of one route, method and status.
fn register(route: Option<&str>, method: &'static str, status: StatusCode) -> (Counter, Histogram) {
    let route = route.map_or(SharedString::const_str("-"), |r| {
        SharedString::from(r.to_owned())
    });
    let latency = metrics::histogram!(
        "nimbus_gateway_request_duration_seconds",
        "route" => route.clone(),
        "method" => method
    );
    let requests = metrics::counter!(
        "nimbus_gateway_requests_total",
        "route" => route,
        "method" => method,
        "status" => status_label(status)
    );
    (requests, latency)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_stay_bounded() {
        assert_eq!(method_label(&Method::GET), "GET");
        let custom = Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(method_label(&custom), "OTHER");
        assert_eq!(&*status_label(StatusCode::OK), "200");
        assert_eq!(&*status_label(StatusCode::IM_A_TEAPOT), "418");
    }
}
