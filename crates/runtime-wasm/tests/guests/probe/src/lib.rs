//! A probe component for nimbus-runtime-wasm's tests. Each path does one thing:
//!
//! - `/echo` (and any unknown path): method, path with query, headers and body as JSON
//! - `/count`: a global counter, incremented per request
//! - `/env`: the environment as JSON
//! - `/log`: prints two lines to stdout and one to stderr, then answers `logged`
//! - `/trap`: panics (an `unreachable` trap)
//! - `/loop`: spins forever
//! - `/sleep?<ms>`: waits that long on a WASI clock (the host waits, not the guest)
//! - `/stack`: recurses until the call stack is exhausted
//! - `/oom`: allocates until memory runs out
//! - `/fetch?<url>`: sends `GET <url>` and answers with what came back or the error
//! - `/drop`: returns without setting a response
//! - `/binary`: answers with non-UTF-8 bytes as `application/octet-stream`
//! - `/big?<bytes>`: answers with that many bytes of `x`
//! - `/cookies`: answers with two `set-cookie` headers
//! - `/field?<bytes>`: adds one header field of that many bytes; answers `accepted` (or
//!   `refused`, if the host answers with an error rather than a trap)
//! - `/handles?<n>`: holds that many header-field resources at once, then answers `held`
//! - `/names?<n>`: builds one header-field resource from a list of that many distinct
//!   names with empty values; answers `built` (or `refused`)
//! - `/random?<n>`: asks the host for that many random bytes; answers how many came
//! - `/exit?ok` and `/exit?fail`: exits the component (`wasi:cli/exit`, status 0 or 1)
//! - `/hold?<n>,<url>`: starts `n` requests to `<url>` at once without waiting for them;
//!   answers how many the host took, how many it refused, and the first refusal
//!
//! With `PROBE_INIT_SLEEP_MS` set, a constructor waits that long on a WASI clock (a Rust
//! component runs its constructors on the first call into it).

use std::{
    hint::black_box,
    io::{Read as _, Write as _},
    sync::atomic::{AtomicU64, Ordering},
};

use wasip2::http::{
    outgoing_handler,
    types::{
        Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
        ResponseOutparam, Scheme,
    },
};

wasip2::http::proxy::export!(Probe);

static COUNTER: AtomicU64 = AtomicU64::new(0);

#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = init;

extern "C" fn init() {
    if let Some(ms) = std::env::var("PROBE_INIT_SLEEP_MS")
        .ok()
        .and_then(|ms| ms.parse::<u64>().ok())
    {
        wasip2::clocks::monotonic_clock::subscribe_duration(ms * 1_000_000).block();
    }
}

struct Probe;

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn method_name(method: &Method) -> String {
    match method {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(other) => other.clone(),
    }
}

fn respond(out: ResponseOutparam, status: u16, headers: &[(&str, &str)], body: &[u8]) {
    let fields = Fields::new();
    for (name, value) in headers {
        fields
            .append(name, &value.as_bytes().to_vec())
            .expect("valid header");
    }
    let response = OutgoingResponse::new(fields);
    response.set_status_code(status).expect("valid status");
    let outgoing = response.body().expect("body once");
    ResponseOutparam::set(out, Ok(response));
    let mut stream = outgoing.write().expect("stream once");
    // Write in chunks: a blocking write takes at most 4096 bytes.
    for chunk in body.chunks(4096) {
        stream.write_all(chunk).expect("write body");
    }
    stream.flush().expect("flush body");
    drop(stream);
    OutgoingBody::finish(outgoing, None).expect("finish body");
}

fn json(out: ResponseOutparam, body: String) {
    respond(
        out,
        200,
        &[("content-type", "application/json")],
        body.as_bytes(),
    );
}

fn read_body(request: &IncomingRequest) -> Vec<u8> {
    let body = request.consume().expect("body once");
    let mut bytes = Vec::new();
    {
        let mut stream = body.stream().expect("stream once");
        stream.read_to_end(&mut bytes).expect("read body");
    }
    drop(body);
    bytes
}

fn echo(request: IncomingRequest, out: ResponseOutparam) {
    let headers = request
        .headers()
        .entries()
        .iter()
        .map(|(name, value)| {
            format!(
                "[{},{}]",
                json_string(name),
                json_string(&String::from_utf8_lossy(value))
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    let method = method_name(&request.method());
    let path = request.path_with_query().unwrap_or_default();
    let scheme = match request.scheme() {
        Some(Scheme::Http) => "http".to_owned(),
        Some(Scheme::Https) => "https".to_owned(),
        Some(Scheme::Other(other)) => other,
        None => String::new(),
    };
    let authority = request.authority().unwrap_or_default();
    let body = read_body(&request);
    json(
        out,
        format!(
            "{{\"method\":{},\"path\":{},\"scheme\":{},\"authority\":{},\"headers\":[{}],\"body\":{}}}",
            json_string(&method),
            json_string(&path),
            json_string(&scheme),
            json_string(&authority),
            headers,
            json_string(&String::from_utf8_lossy(&body))
        ),
    );
}

fn recurse(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return 0;
    }
    black_box(recurse(depth + 1)) + 1
}

/// A `GET` of `url`, not yet sent.
fn get_request(url: &str) -> Result<OutgoingRequest, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("not a URL: {url}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    request.set_method(&Method::Get).map_err(|()| "method")?;
    let scheme = if scheme == "https" {
        Scheme::Https
    } else {
        Scheme::Http
    };
    request.set_scheme(Some(&scheme)).map_err(|()| "scheme")?;
    request
        .set_authority(Some(authority))
        .map_err(|()| "authority")?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| "path")?;
    Ok(request)
}

fn fetch(url: &str) -> Result<(u16, String), String> {
    let request = get_request(url)?;
    let future = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    let response = loop {
        if let Some(result) = future.get() {
            break result
                .map_err(|()| "response taken twice".to_owned())?
                .map_err(|e| format!("{e:?}"))?;
        }
        future.subscribe().block();
    };
    let status = response.status();
    let body = response.consume().map_err(|()| "body")?;
    let mut bytes = Vec::new();
    {
        let mut stream = body.stream().map_err(|()| "stream")?;
        stream.read_to_end(&mut bytes).map_err(|e| format!("{e}"))?;
    }
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

impl wasip2::exports::http::incoming_handler::Guest for Probe {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let count = COUNTER.fetch_add(1, Ordering::SeqCst) + 1;
        let path_with_query = request.path_with_query().unwrap_or_default();
        let (path, query) = path_with_query
            .split_once('?')
            .unwrap_or((path_with_query.as_str(), ""));
        match path {
            "/count" => json(out, format!("{{\"count\":{count}}}")),
            "/env" => {
                let vars = std::env::vars()
                    .map(|(k, v)| format!("{}:{}", json_string(&k), json_string(&v)))
                    .collect::<Vec<_>>()
                    .join(",");
                json(out, format!("{{{vars}}}"));
            }
            "/log" => {
                println!("hello from the probe");
                println!("second line");
                eprintln!("to stderr");
                respond(out, 200, &[("content-type", "text/plain")], b"logged");
            }
            "/trap" => panic!("the probe was asked to trap"),
            "/loop" => {
                let mut i: u64 = 0;
                loop {
                    i = black_box(i.wrapping_add(1));
                }
            }
            "/sleep" => {
                let ms: u64 = query.parse().unwrap_or(0);
                wasip2::clocks::monotonic_clock::subscribe_duration(ms * 1_000_000).block();
                respond(out, 200, &[("content-type", "text/plain")], b"slept");
            }
            "/stack" => {
                let depth = recurse(0);
                json(out, format!("{{\"depth\":{depth}}}"));
            }
            "/oom" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 8 << 20]);
                    black_box(&hoard);
                }
            }
            "/fetch" => match fetch(query) {
                Ok((status, body)) => json(
                    out,
                    format!("{{\"status\":{status},\"body\":{}}}", json_string(&body)),
                ),
                Err(error) => respond(
                    out,
                    502,
                    &[("content-type", "text/plain")],
                    error.as_bytes(),
                ),
            },
            "/hold" => {
                let (n, url) = query.split_once(',').unwrap_or(("0", ""));
                let n: usize = n.parse().unwrap_or(0);
                let mut held = Vec::new();
                let (mut refused, mut first) = (0, String::new());
                for _ in 0..n {
                    let sent = get_request(url).and_then(|r| {
                        outgoing_handler::handle(r, None).map_err(|e| format!("{e:?}"))
                    });
                    match sent {
                        Ok(future) => held.push(future),
                        Err(e) => {
                            refused += 1;
                            if first.is_empty() {
                                first = e;
                            }
                        }
                    }
                }
                json(
                    out,
                    format!(
                        "{{\"held\":{},\"refused\":{refused},\"error\":{}}}",
                        held.len(),
                        json_string(&first)
                    ),
                );
            }
            "/drop" => drop(out),
            "/binary" => respond(
                out,
                200,
                &[("content-type", "application/octet-stream")],
                &[0, 159, 146, 150, 255],
            ),
            "/big" => {
                let size: usize = query.parse().unwrap_or(0);
                respond(
                    out,
                    200,
                    &[("content-type", "text/plain")],
                    &vec![b'x'; size],
                );
            }
            "/field" => {
                let size: usize = query.parse().unwrap_or(0);
                let fields = Fields::new();
                let answer = match fields.append("x-big", &vec![b'v'; size]) {
                    Ok(()) => "accepted",
                    Err(_) => "refused",
                };
                respond(
                    out,
                    200,
                    &[("content-type", "text/plain")],
                    answer.as_bytes(),
                );
            }
            "/handles" => {
                let n: usize = query.parse().unwrap_or(0);
                let held: Vec<Fields> = (0..n).map(|_| Fields::new()).collect();
                black_box(&held);
                drop(held);
                respond(out, 200, &[("content-type", "text/plain")], b"held");
            }
            "/names" => {
                let n: usize = query.parse().unwrap_or(0);
                let entries: Vec<(String, Vec<u8>)> =
                    (0..n).map(|i| (format!("x{i}"), Vec::new())).collect();
                let answer = match Fields::from_list(&entries) {
                    Ok(_) => "built",
                    Err(_) => "refused",
                };
                respond(
                    out,
                    200,
                    &[("content-type", "text/plain")],
                    answer.as_bytes(),
                );
            }
            "/exit" => {
                wasip2::cli::exit::exit(if query == "ok" { Ok(()) } else { Err(()) });
                unreachable!("wasi:cli/exit returned");
            }
            "/random" => {
                let n: u64 = query.parse().unwrap_or(0);
                let bytes = wasip2::random::random::get_random_bytes(n);
                let answer = bytes.len().to_string();
                respond(
                    out,
                    200,
                    &[("content-type", "text/plain")],
                    answer.as_bytes(),
                );
            }
            "/cookies" => respond(
                out,
                201,
                &[
                    ("content-type", "text/plain; charset=utf-8"),
                    ("set-cookie", "a=1; Path=/"),
                    ("set-cookie", "b=2"),
                    ("x-probe", "yes"),
                ],
                b"with cookies",
            ),
            _ => echo(request, out),
        }
    }
}
