//! Nimbus's wasm example: a `wasi:http` component that greets whoever its path names.
//!
//! `GET /hello/{name}` answers `Hello, {name}!` with the number of requests this instance
//! has served, which shows the instance modes: with `instances = "reuse"` the count
//! grows as a Lambda global would, with `"per-request"` it is always 1. It exports the
//! standard `wasi:http/incoming-handler`, so `wasmtime serve` runs it too.

use std::{
    io::Write as _,
    sync::atomic::{AtomicU64, Ordering},
};

use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wasip2::http::proxy::export!(Hello);

/// Requests served by this instance.
static SERVED: AtomicU64 = AtomicU64::new(0);

struct Hello;

impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
        let path = request.path_with_query().unwrap_or_default();
        let path = path.split('?').next().unwrap_or_default();
        let name = path
            .strip_prefix("/hello/")
            .filter(|n| !n.is_empty())
            .unwrap_or("world");
        let greeting = std::env::var("GREETING").unwrap_or_else(|_| "Hello".to_owned());
        println!("greeting {name}");
        let body = format!("{greeting}, {name}! (request {served} of this instance)\n");

        let headers = Fields::new();
        let _ = headers.append("content-type", b"text/plain; charset=utf-8");
        let response = OutgoingResponse::new(headers);
        let _ = response.set_status_code(200);
        let Ok(outgoing) = response.body() else {
            return;
        };
        ResponseOutparam::set(out, Ok(response));
        if let Ok(mut stream) = outgoing.write() {
            let _ = stream.write_all(body.as_bytes());
            let _ = stream.flush();
        }
        let _ = OutgoingBody::finish(outgoing, None);
    }
}
