//! Serving one listener: HTTP/1.1 and HTTP/2 (h2c, or ALPN over TLS) with hyper, within
//! the connection limits of the [`Config`](crate::Config).
//!
//! What happens at each limit:
//!
//! - **Connections** (`max_connections`): each connection holds a permit from the moment
//!   it is accepted until it closes. With none left the listener stops calling `accept`,
//!   so new connections wait in the operating system's accept backlog (and, once that is
//!   full, their SYNs go unanswered and clients retry) instead of being refused.
//! - **Header read timeout** (`header_read_timeout`): a new connection must complete its
//!   first request's line and headers (after the TLS handshake, if any) within the
//!   timeout; for each later HTTP/1 request the clock starts at its first byte. A client
//!   that is too slow is disconnected without a response (no 408), which is also what
//!   hyper's own `header_read_timeout` does. That timer of hyper's is not used because it
//!   also runs while a keep-alive connection waits for its next request, which would make
//!   any keep-alive timeout longer than the header timeout unreachable.
//! - **Body read timeout** (`body_read_timeout`): a request's body must be received in
//!   full within the timeout, counted from the end of its headers. Past it, the body reads
//!   as an error of kind [`io::ErrorKind::TimedOut`]: the gateway answers `408 Request
//!   Timeout` (the services endpoint its own error for an unreadable body), and the
//!   HTTP/1 connection is closed. Without it a client that sends headers announcing a body and
//!   then nothing would hold its connection, and what it sent, for ever. The other
//!   direction is bounded by five times the timeout (5 minutes by default): a connection
//!   whose writes have been blocked on a full socket buffer that long is dropped, or a
//!   client that stopped reading would hold it, and the response it left, for ever. The
//!   factor is for slow readers that do read: Linux reports a full socket writable again
//!   only once a third of its buffer is taken, which a client reading a few KB/s may take
//!   a minute or more to do.
//! - **Keep-alive** (`keep_alive_timeout`): a connection with no request in flight (the
//!   last response fully sent) for this long is shut down gracefully: HTTP/1 closes it,
//!   HTTP/2 sends GOAWAY. A request that started meanwhile is always finished.
//! - **Header size** (`max_header_bytes`): a request whose line and headers, counted as
//!   HTTP/1.1 sends them (`METHOD target HTTP/1.1`, then `name: value` per header, each
//!   line with its CRLF, and the blank line; over HTTP/2 the authority counts as a `host`
//!   header), exceed the limit is answered `431 Request Header Fields Too Large` with
//!   `{"message":"Request Header Fields Too Large"}` without reaching the router; over
//!   HTTP/1 the connection is then closed. hyper only enforces a coarse limit before
//!   parsing (its read buffer; its `max_header_size` is not reachable through hyper-util's
//!   auto builder), so the exact count is made here and hyper's buffer is set to four
//!   times the limit: heads larger than that get a 431 with no body from hyper (HTTP/1)
//!   or h2 (HTTP/2, where the limit is `SETTINGS_MAX_HEADER_LIST_SIZE`). More than 100
//!   headers over HTTP/1 also get hyper's 431.
//!
//! On stop, a listener stops accepting at once, asks every connection to shut down
//! gracefully (idle ones close, in-flight requests finish), and returns when all are closed.

use std::{
    convert::Infallible,
    fmt, io,
    net::SocketAddr,
    path::Path,
    pin::{Pin, pin},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes, HttpBody},
    extract::ConnectInfo,
    http::{
        HeaderValue, Request, Response, StatusCode, Version,
        header::{CONNECTION, CONTENT_TYPE, HOST},
    },
};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use nimbus_gateway::Entrance;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, watch},
    time::Instant,
};
use tower::ServiceExt;

use crate::{BindError, Config};

/// hyper's smallest read buffer.
const MIN_BUFFER_BYTES: usize = 8192;

/// The connection limits of a listener.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    max_connections: u32,
    header_read_timeout: Duration,
    body_read_timeout: Duration,
    keep_alive_timeout: Duration,
    max_header_bytes: usize,
}

impl Limits {
    /// The limits `config` asks for, raised to what can be enforced.
    pub(crate) fn new(config: &Config) -> Limits {
        let max_connections = config
            .max_connections
            .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        Limits {
            max_connections: u32::try_from(max_connections).unwrap_or(u32::MAX),
            header_read_timeout: config.header_read_timeout,
            body_read_timeout: config.body_read_timeout,
            keep_alive_timeout: config.keep_alive_timeout,
            max_header_bytes: config.max_header_bytes,
        }
    }

    /// hyper's connection builder for these limits.
    fn http(&self) -> auto::Builder<TokioExecutor> {
        // The hard limit on what hyper buffers before the exact count in `head_size`.
        let buffer = self.max_header_bytes.saturating_mul(4);
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            // The watchdog below times headers instead (see the module's documentation).
            .header_read_timeout(None)
            .max_buf_size(buffer.max(MIN_BUFFER_BYTES));
        builder
            .http2()
            .max_header_list_size(u32::try_from(buffer).unwrap_or(u32::MAX));
        builder
    }
}

/// The TLS side of a listener: its certificate and ALPN (`h2`, `http/1.1`).
#[derive(Clone)]
pub(crate) struct Tls(tokio_rustls::TlsAcceptor);

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    /// The TLS side `config` asks for, if any.
    ///
    /// # Errors
    /// [`BindError::Tls`] naming the file that cannot be read or used, or that came
    /// without its other half.
    pub(crate) fn from_config(config: &Config) -> Result<Option<Tls>, BindError> {
        let missing = |what, file: &Path, other| BindError::Tls {
            what,
            file: file.to_path_buf(),
            source: format!("no {other} was given with it").into(),
        };
        match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Tls::load(cert, key).map(Some),
            (None, None) => Ok(None),
            (Some(cert), None) => Err(missing("certificate", cert, "private key")),
            (None, Some(key)) => Err(missing("private key", key, "certificate")),
        }
    }

    /// Loads a PEM certificate chain and its private key.
    ///
    /// # Errors
    /// [`BindError::Tls`] naming the file that cannot be read or used.
    pub(crate) fn load(cert: &Path, key: &Path) -> Result<Tls, BindError> {
        let cert_error = |source: String| BindError::Tls {
            what: "certificate",
            file: cert.to_path_buf(),
            source: source.into(),
        };
        let key_error = |source: String| BindError::Tls {
            what: "private key",
            file: key.to_path_buf(),
            source: source.into(),
        };
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| cert_error(pem_reason(e, "no PEM certificate in the file")))?;
        if chain.is_empty() {
            return Err(cert_error("no PEM certificate in the file".to_owned()));
        }
        let private_key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| key_error(pem_reason(e, "no PEM private key in the file")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| cert_error(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, private_key)
            .map_err(|e| match e {
                rustls::Error::InconsistentKeys(_) => key_error(format!(
                    "it does not match the certificate in {}",
                    cert.display()
                )),
                rustls::Error::InvalidCertificate(_) => cert_error(e.to_string()),
                e => key_error(e.to_string()),
            })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
    }
}

/// A PEM error in a few words (its own `Display` prints raw bytes).
fn pem_reason(e: rustls_pki_types::pem::Error, none: &str) -> String {
    use rustls_pki_types::pem::Error;
    match e {
        Error::Io(e) => e.to_string(),
        Error::NoItemsFound => none.to_owned(),
        Error::Base64Decode(e) => format!("malformed PEM ({e})"),
        _ => "malformed PEM".to_owned(),
    }
}

/// Serves `router` on `listener` until `stop` turns true, then lets the open connections
/// finish (see the module's documentation) and returns.
///
/// # Errors
/// None today: a failed accept is logged and retried (as axum's own loop does), so a
/// listener only ends when asked to.
pub(crate) async fn serve(
    role: &'static str,
    listener: TcpListener,
    router: Router,
    limits: Limits,
    tls: Option<Tls>,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let local = listener.local_addr();
    if let Ok(addr) = &local {
        tracing::debug!(role, %addr, tls = tls.is_some(), ?limits, "serving");
    }
    let entrance = Entrance {
        https: tls.is_some(),
        port: local.map_or(0, |addr| addr.port()),
    };
    let http = Arc::new(limits.http());
    let permits = Arc::new(Semaphore::new(limits.max_connections as usize));
    loop {
        let permit = tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => break,
            permit = Arc::clone(&permits).acquire_owned() => {
                permit.expect("the connection semaphore is never closed")
            }
        };
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Most likely out of file descriptors: wait for some to be released.
                tracing::error!(role, error = %e, "cannot accept a connection; retrying in 1 s");
                tokio::select! {
                    _ = stop.wait_for(|stop| *stop) => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        tokio::spawn(connection(
            stream,
            Conn {
                role,
                peer,
                entrance,
                router: router.clone(),
                http: Arc::clone(&http),
                limits,
                tls: tls.clone(),
                stop: stop.clone(),
                permit,
            },
        ));
    }
    drop(listener);
    // Every connection holds a permit until it ends: all of them back means all ended.
    let _all = permits
        .acquire_many(limits.max_connections)
        .await
        .expect("the connection semaphore is never closed");
    Ok(())
}

/// Errors that concern one connection only, not the listener (as hyper's and axum's
/// accept loops tell them).
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// One accepted connection and what serving it needs.
struct Conn {
    role: &'static str,
    peer: SocketAddr,
    /// The scheme and port the connection came in by, for the gateway's
    /// `x-forwarded-proto` and `x-forwarded-port`.
    entrance: Entrance,
    router: Router,
    http: Arc<auto::Builder<TokioExecutor>>,
    limits: Limits,
    tls: Option<Tls>,
    stop: watch::Receiver<bool>,
    /// Counts the connection against `max_connections` until it is dropped.
    permit: OwnedSemaphorePermit,
}

async fn connection(stream: TcpStream, mut conn: Conn) {
    let activity = Arc::new(Activity::new());
    // Small writes (streamed chunks, HTTP/2 frames) should leave at once, not wait for ACKs.
    let _ = stream.set_nodelay(true);
    let Some(tls) = conn.tls.take() else {
        return serve_io(stream, conn, activity).await;
    };
    // The handshake counts against the first request's header read timeout.
    let handshake = tokio::time::timeout(conn.limits.header_read_timeout, tls.0.accept(stream));
    let (role, peer) = (conn.role, conn.peer);
    let stream = tokio::select! {
        result = handshake => match result {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(role, %peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(role, %peer, "TLS handshake not done within the header read timeout");
                return;
            }
        },
        _ = conn.stop.wait_for(|stop| *stop) => return,
    };
    serve_io(stream, conn, activity).await;
}

/// Serves HTTP on one connection until it closes, the watchdog ends it, or a stop has
/// drained it.
async fn serve_io<I>(io: I, conn: Conn, activity: Arc<Activity>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Conn {
        role,
        peer,
        entrance,
        router,
        http,
        limits,
        mut stop,
        permit,
        ..
    } = conn;
    let service = {
        let activity = Arc::clone(&activity);
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let deadline = Instant::now() + limits.body_read_timeout;
            let mut request = request.map(|body| Deadline {
                body,
                deadline,
                timer: None,
            });
            let version = request.version();
            let in_flight = InFlight::start(&activity, version == Version::HTTP_2);
            let too_large = head_size(&request) > limits.max_header_bytes;
            // Handlers read the peer's address as with axum's `into_make_service_with_connect_info`.
            request.extensions_mut().insert(ConnectInfo(peer));
            request.extensions_mut().insert(entrance);
            let router = router.clone();
            async move {
                let response = if too_large {
                    tracing::debug!(role, %peer, "request headers over the size limit; answering 431");
                    header_fields_too_large(version)
                } else {
                    router.oneshot(request).await?
                };
                Ok::<_, Infallible>(response.map(|body| Guarded {
                    body,
                    _in_flight: in_flight,
                }))
            }
        })
    };
    let io = TokioIo::new(Tracked {
        io,
        activity: Arc::clone(&activity),
    });
    let mut connection = pin!(http.serve_connection_with_upgrades(io, service));
    let mut watchdog = pin!(expiry(&activity, limits, true));
    let mut draining = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(role, %peer, error = %e, "connection closed on an error");
                }
                break;
            }
            _ = stop.wait_for(|stop| *stop), if !draining => {
                connection.as_mut().graceful_shutdown();
                draining = true;
            }
            expired = watchdog.as_mut() => match expired {
                Expired::KeepAlive => {
                    if !draining {
                        connection.as_mut().graceful_shutdown();
                        draining = true;
                    }
                    watchdog.set(expiry(&activity, limits, false));
                }
                Expired::HeaderRead => {
                    tracing::debug!(role, %peer, "request headers not received within the header read timeout; closing");
                    break;
                }
                Expired::SendStalled => {
                    tracing::debug!(role, %peer, "the client left a response untaken for five body read timeouts; closing");
                    break;
                }
            }
        }
    }
    drop(permit);
}

/// The size of a request's line and headers as HTTP/1.1 sends them (see the module's
/// documentation).
fn head_size<B>(request: &Request<B>) -> usize {
    const CRLF: usize = 2;
    let uri = request.uri();
    let path = uri.path_and_query().map_or(1, |p| p.as_str().len());
    let h2 = request.version() == Version::HTTP_2;
    let target = match (uri.scheme(), uri.authority()) {
        // HTTP/1 absolute-form: the whole URI was on the request line.
        (Some(scheme), Some(authority)) if !h2 => {
            scheme.as_str().len() + "://".len() + authority.as_str().len() + path
        }
        _ => path,
    };
    let line = request.method().as_str().len() + 1 + target + " HTTP/1.1".len() + CRLF;
    let host = match uri.authority() {
        Some(authority) if h2 && !request.headers().contains_key(HOST) => {
            "host: ".len() + authority.as_str().len() + CRLF
        }
        _ => 0,
    };
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + ": ".len() + value.len() + CRLF)
        .sum();
    line + host + headers + CRLF
}

/// The answer to a request whose headers are over the limit.
fn header_fields_too_large(version: Version) -> Response<Body> {
    let mut response = Response::new(Body::from(
        r#"{"message":"Request Header Fields Too Large"}"#,
    ));
    *response.status_mut() = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // As hyper does with the heads it cannot parse: the rest of the stream is not trusted.
    if version < Version::HTTP_2 {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A request body that must be received by `deadline` (the body read timeout); past it,
/// an error of kind [`io::ErrorKind::TimedOut`]. The timer is made only when the body
/// first has to be waited for: a body that is already in (most are) costs none.
struct Deadline {
    body: Incoming,
    deadline: Instant,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, io::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(io::Error::other)));
        }
        let deadline = self.deadline;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request body was not received within the body read timeout",
            )))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Which timeout ended a connection's wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expired {
    /// No request in flight for `keep_alive_timeout`: shut down gracefully.
    KeepAlive,
    /// A request's headers took longer than `header_read_timeout`: drop the connection.
    HeaderRead,
    /// The connection's writes stayed blocked for [`SEND_STALL_FACTOR`] body read
    /// timeouts: drop it.
    SendStalled,
}

/// How many body read timeouts a connection's writes may stay blocked (see the module's
/// documentation).
const SEND_STALL_FACTOR: u32 = 5;

/// Marks "no time recorded" in [`Activity`].
const NEVER: u64 = u64::MAX;

/// What a connection is doing, shared by its service, its I/O and its watchdog. Times
/// are microseconds since the connection was accepted.
#[derive(Debug)]
struct Activity {
    accepted: Instant,
    /// Requests whose response has not been sent in full (dropped) yet.
    in_flight: AtomicUsize,
    /// When `in_flight` last dropped to zero.
    idle_since: AtomicU64,
    /// When the request being received started, or [`NEVER`].
    head_since: AtomicU64,
    /// Whether the connection speaks HTTP/2, where bytes between requests are frames
    /// (pings, window updates), not the start of a request.
    http2: AtomicBool,
    /// Since when the connection's writes have been blocked (the peer takes no bytes), or
    /// [`NEVER`].
    send_blocked_since: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            accepted: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            // A new connection is expected to send a request: its clock runs from accept.
            head_since: AtomicU64::new(0),
            http2: AtomicBool::new(false),
            send_blocked_since: AtomicU64::new(NEVER),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.accepted.elapsed().as_micros()).unwrap_or(NEVER - 1)
    }

    fn at(&self, micros: u64) -> Instant {
        self.accepted + Duration::from_micros(micros)
    }

    /// A write could not proceed: the peer's window and the socket's buffer are full. The
    /// clock runs from the first such write until one proceeds.
    fn send_blocked(&self) {
        let _ = self.send_blocked_since.compare_exchange(
            NEVER,
            self.now(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// A write proceeded. A plain load first: on the hot path nothing was blocked, and a
    /// store on every write would cost every response.
    fn sent(&self) {
        if self.send_blocked_since.load(Ordering::Relaxed) != NEVER {
            self.send_blocked_since.store(NEVER, Ordering::Relaxed);
        }
    }

    /// Bytes arrived: on an idle HTTP/1 connection they start the next request.
    fn read(&self) {
        if !self.http2.load(Ordering::SeqCst) && self.in_flight.load(Ordering::SeqCst) == 0 {
            let _ = self.head_since.compare_exchange(
                NEVER,
                self.now(),
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        }
    }
}

/// Resolves when the connection has been idle, has been receiving headers, or has had
/// its writes blocked for too long; `keep_alive: false` leaves idleness out.
async fn expiry(activity: &Activity, limits: Limits, keep_alive: bool) -> Expired {
    // While busy only a blocked send can expire; look again no later than any timeout
    // could.
    let recheck = limits
        .header_read_timeout
        .min(limits.keep_alive_timeout)
        .min(limits.body_read_timeout)
        .max(Duration::from_millis(10));
    loop {
        let now = Instant::now();
        let mut due = None;
        if activity.in_flight.load(Ordering::SeqCst) == 0 {
            let head = activity.head_since.load(Ordering::SeqCst);
            if head != NEVER {
                due = Some((
                    activity.at(head) + limits.header_read_timeout,
                    Expired::HeaderRead,
                ));
            } else if keep_alive {
                let idle = activity.idle_since.load(Ordering::SeqCst);
                due = Some((
                    activity.at(idle) + limits.keep_alive_timeout,
                    Expired::KeepAlive,
                ));
            }
        }
        let blocked = activity.send_blocked_since.load(Ordering::Relaxed);
        if blocked != NEVER {
            let stalled =
                activity.at(blocked) + limits.body_read_timeout.saturating_mul(SEND_STALL_FACTOR);
            if due.is_none_or(|(deadline, _)| stalled < deadline) {
                due = Some((stalled, Expired::SendStalled));
            }
        }
        match due {
            Some((deadline, expired)) if deadline <= now => return expired,
            Some((deadline, _)) => tokio::time::sleep_until(deadline.min(now + recheck)).await,
            None => tokio::time::sleep_until(now + recheck).await,
        }
    }
}

/// Counts a request as in flight from its headers until its response is sent in full.
#[derive(Debug)]
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>, http2: bool) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        activity.head_since.store(NEVER, Ordering::SeqCst);
        if http2 {
            activity.http2.store(true, Ordering::SeqCst);
        }
        InFlight(Arc::clone(activity))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // Before the count: whoever sees zero sees when it became zero.
        self.0.idle_since.store(self.0.now(), Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps its request in flight until hyper drops it (sent in full,
/// or the connection is gone).
struct Guarded {
    body: Body,
    _in_flight: InFlight,
}

impl HttpBody for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A connection's I/O, telling [`Activity`] when bytes arrive.
struct Tracked<I> {
    io: I,
    activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Tracked<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl<I> Tracked<I> {
    /// Tells [`Activity`] whether a write proceeded.
    fn track<T>(&self, polled: Poll<T>) -> Poll<T> {
        match polled {
            Poll::Pending => self.activity.send_blocked(),
            Poll::Ready(_) => self.activity.sent(),
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Tracked<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.track(polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.track(polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.track(polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: Version, uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().method("GET").uri(uri).version(version);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn head_size_counts_an_http1_head_as_sent() {
        let raw = "GET /items?x=1 HTTP/1.1\r\nhost: example.com\r\nx-pad: abc\r\n\r\n";
        let r = request(
            Version::HTTP_11,
            "/items?x=1",
            &[("host", "example.com"), ("x-pad", "abc")],
        );
        assert_eq!(head_size(&r), raw.len());
        let raw = "GET http://example.com/a HTTP/1.1\r\n\r\n";
        let r = request(Version::HTTP_11, "http://example.com/a", &[]);
        assert_eq!(head_size(&r), raw.len());
    }

    #[test]
    fn head_size_counts_an_http2_authority_as_a_host_header() {
        let as_http1 = "GET /a HTTP/1.1\r\nhost: example.com\r\nx: y\r\n\r\n";
        let r = request(Version::HTTP_2, "https://example.com/a", &[("x", "y")]);
        assert_eq!(head_size(&r), as_http1.len());
    }

    #[test]
    fn limits_are_raised_to_what_can_be_enforced() {
        let config = Config {
            max_connections: 0,
            ..Config::default()
        };
        assert_eq!(Limits::new(&config).max_connections, 1);
        let config = Config {
            max_connections: usize::MAX,
            ..Config::default()
        };
        assert!(Limits::new(&config).max_connections as usize <= Semaphore::MAX_PERMITS);
    }

    #[tokio::test]
    async fn a_new_connection_expires_on_its_header_timeout_and_an_idle_one_on_keep_alive() {
        let limits = Limits {
            max_connections: 1,
            header_read_timeout: Duration::from_millis(50),
            body_read_timeout: Duration::from_millis(50),
            keep_alive_timeout: Duration::from_millis(100),
            max_header_bytes: 1024,
        };
        let activity = Arc::new(Activity::new());
        assert_eq!(expiry(&activity, limits, true).await, Expired::HeaderRead);
        drop(InFlight::start(&activity, false));
        assert_eq!(expiry(&activity, limits, true).await, Expired::KeepAlive);
        // Bytes on an idle HTTP/1 connection start the next request's clock.
        activity.read();
        assert_eq!(expiry(&activity, limits, true).await, Expired::HeaderRead);
        // Not over HTTP/2, where they are frames.
        drop(InFlight::start(&activity, true));
        activity.read();
        assert_eq!(expiry(&activity, limits, true).await, Expired::KeepAlive);
        // While a request is in flight nothing expires.
        let in_flight = InFlight::start(&activity, true);
        let waited =
            tokio::time::timeout(Duration::from_millis(300), expiry(&activity, limits, true)).await;
        assert!(waited.is_err());
        // Unless its response cannot be sent: a peer that takes no bytes is dropped.
        activity.send_blocked();
        assert_eq!(expiry(&activity, limits, false).await, Expired::SendStalled);
        // A write that proceeds stops that clock.
        activity.sent();
        let waited =
            tokio::time::timeout(Duration::from_millis(300), expiry(&activity, limits, true)).await;
        assert!(waited.is_err());
        drop(in_flight);
    }
}
