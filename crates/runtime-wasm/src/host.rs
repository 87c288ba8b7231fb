//! What a store holds for its guest: the WASI and `wasi:http` contexts with their deny-by-
//! default capabilities, the memory limiter, and the invocation's deadline.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Instant,
};

use wasmtime::{ResourceLimiter, component::ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{
    HttpResult, WasiHttpCtx, WasiHttpView,
    bindings::http::types::ErrorCode,
    body::HyperOutgoingBody,
    types::{HostFutureIncomingResponse, OutgoingRequestConfig, default_send_request_handler},
};

use crate::{logs::LogSink, outbound::OutboundPolicy};

/// Most elements a guest's table may grow to (as the pool's slots allow).
pub(crate) const TABLE_ELEMENTS: usize = 20_000;
/// Most resources (header fields, bodies, streams, pollables, requests) a guest may hold
/// at once. Each lives in host memory, outside the guest's `memory_mb`; past this, making
/// another traps. wasmtime's default is a million.
pub(crate) const MAX_RESOURCES: usize = 4_096;
/// Most bytes one `fields` resource (a request's or response's headers) may hold, in
/// its in-memory form (about 72 bytes more per field than on the wire); adding a field
/// past this traps. wasmtime-wasi-http's default is
/// 2 GiB, which let a guest copy gigabytes of header values into the host.
pub(crate) const MAX_FIELD_BYTES: usize = 64 * 1024;
/// Most bytes one `get-random-bytes` call may ask for. wasmtime-wasi's default is 2 GiB,
/// filled in host memory (outside `memory_mb`) by a host call the deadline cannot
/// interrupt; more is a trap.
pub(crate) const MAX_RANDOM_BYTES: u64 = 1024 * 1024;
/// Most characters of a denied request's URI the log note quotes.
const NOTED_URI_CHARS: usize = 512;
/// Most outbound requests one instance may have in flight (each holds a connection and
/// a task on the node); one more fails in the guest with `connection-limit-reached`.
pub(crate) const MAX_OUTBOUND_PER_INSTANCE: usize = 64;
/// The same for every instance of the node together.
pub(crate) const MAX_OUTBOUND_PER_NODE: usize = 1024;

/// Outbound requests in flight on the node.
static NODE_OUTBOUND: AtomicUsize = AtomicUsize::new(0);

/// A place for one outbound request in flight, in its instance's count and the node's;
/// given back when the request's task ends (or is aborted with its handle).
struct OutboundSlot {
    instance: Arc<AtomicUsize>,
}

impl OutboundSlot {
    fn take(instance: &Arc<AtomicUsize>) -> Option<OutboundSlot> {
        let slot = OutboundSlot {
            instance: Arc::clone(instance),
        };
        let mine = instance.fetch_add(1, Ordering::AcqRel);
        let node = NODE_OUTBOUND.fetch_add(1, Ordering::AcqRel);
        // Past either limit the slot is given back at once, by its drop.
        (mine < MAX_OUTBOUND_PER_INSTANCE && node < MAX_OUTBOUND_PER_NODE).then_some(slot)
    }
}

impl Drop for OutboundSlot {
    fn drop(&mut self) {
        self.instance.fetch_sub(1, Ordering::AcqRel);
        NODE_OUTBOUND.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why the host ended a guest's run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interruption {
    /// The invocation's deadline passed.
    Timeout,
    /// The instance was stopped from outside.
    Stopped,
}

/// The data of one store: everything one instance of a component owns.
pub(crate) struct Host {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    logs: LogSink,
    outbound: Arc<OutboundPolicy>,
    /// This instance's outbound requests in flight.
    outbound_in_flight: Arc<AtomicUsize>,
    pub(crate) memory: MemoryLimiter,
    /// When the current invocation must end.
    pub(crate) deadline: Instant,
    /// Set by the instance's stopper.
    pub(crate) stop: Arc<AtomicBool>,
    /// Set when the epoch callback interrupted the guest.
    pub(crate) interrupted: Option<Interruption>,
}

/// What a new [`Host`] is made from.
pub(crate) struct HostSettings<'a> {
    pub(crate) environment: &'a [(String, String)],
    pub(crate) logs: &'a LogSink,
    pub(crate) outbound: Arc<OutboundPolicy>,
    pub(crate) memory_bytes: usize,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) deadline: Instant,
}

impl Host {
    /// A host with no files, no sockets and no host environment: only `settings`'
    /// environment, the clocks, randomness, and stdout/stderr into the log.
    pub(crate) fn new(settings: HostSettings<'_>) -> Host {
        let wasi = WasiCtxBuilder::new()
            .envs(settings.environment)
            .stdout(settings.logs.stdout())
            .stderr(settings.logs.stderr())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .max_random_size(MAX_RANDOM_BYTES)
            .build();
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(MAX_FIELD_BYTES);
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        Host {
            wasi,
            http,
            table,
            logs: settings.logs.clone(),
            outbound: settings.outbound,
            outbound_in_flight: Arc::new(AtomicUsize::new(0)),
            memory: MemoryLimiter::new(settings.memory_bytes),
            deadline: settings.deadline,
            stop: settings.stop,
            interrupted: None,
        }
    }

    /// What the epoch callback decides: interrupt (deadline passed, or stopped) or go on.
    pub(crate) fn check_interrupt(&mut self) -> Option<Interruption> {
        let why = if self.stop.load(Ordering::Relaxed) {
            Some(Interruption::Stopped)
        } else if Instant::now() >= self.deadline {
            Some(Interruption::Timeout)
        } else {
            None
        };
        if why.is_some() {
            self.interrupted = why;
        }
        why
    }
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Host {
    fn ctx(&mut self) -> &mut WasiHttpCtx {
        &mut self.http
    }

    fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    fn send_request(
        &mut self,
        request: hyper::Request<HyperOutgoingBody>,
        mut config: OutgoingRequestConfig,
    ) -> HttpResult<HostFutureIncomingResponse> {
        if !self.outbound.allows(request.uri()) {
            // The guest gets an error it can report; the user learns why from the log.
            let uri = request.uri().to_string();
            let shown = match uri.char_indices().nth(NOTED_URI_CHARS) {
                Some((cut, _)) => format!("{}...", &uri[..cut]),
                None => uri,
            };
            self.logs.note(&format!(
                "nimbus: outbound request to {shown} denied: not the services endpoint nor in allowed_outbound_hosts"
            ));
            return Err(ErrorCode::HttpRequestDenied.into());
        }
        let Some(slot) = OutboundSlot::take(&self.outbound_in_flight) else {
            self.logs.note(&format!(
                "nimbus: outbound request refused: {MAX_OUTBOUND_PER_INSTANCE} of this instance's (or {MAX_OUTBOUND_PER_NODE} of the node's) are in flight"
            ));
            return Err(ErrorCode::ConnectionLimitReached.into());
        };
        // Nothing the guest waits for may outlive its invocation.
        let left = self.deadline.saturating_duration_since(Instant::now());
        config.connect_timeout = config.connect_timeout.min(left);
        config.first_byte_timeout = config.first_byte_timeout.min(left);
        config.between_bytes_timeout = config.between_bytes_timeout.min(left);
        // The whole exchange up to the response's head too: the connect and first-byte
        // timeouts leave out a TLS handshake, which a server can hold open.
        let handle = wasmtime_wasi::runtime::spawn(async move {
            let _slot = slot;
            Ok(
                tokio::time::timeout(left, default_send_request_handler(request, config))
                    .await
                    .unwrap_or(Err(ErrorCode::ConnectionTimeout)),
            )
        });
        Ok(HostFutureIncomingResponse::pending(handle))
    }
}

/// Limits a store's linear memory to the function's `memory_mb` and records its peak.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    limit: usize,
    /// All linear memories of the store, in bytes.
    total: usize,
    peak: usize,
    /// Whether a growth was refused since [`MemoryLimiter::reset_denied`].
    denied: bool,
}

impl MemoryLimiter {
    fn new(limit: usize) -> MemoryLimiter {
        MemoryLimiter {
            limit,
            total: 0,
            peak: 0,
            denied: false,
        }
    }

    /// The most linear memory the store has had, in bytes.
    pub(crate) fn peak(&self) -> usize {
        self.peak
    }

    /// Whether a growth was refused since the last reset.
    pub(crate) fn denied(&self) -> bool {
        self.denied
    }

    /// Forgets refused growths (at the start of an invocation).
    pub(crate) fn reset_denied(&mut self) {
        self.denied = false;
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> anyhow::Result<bool> {
        let total = self.total.saturating_sub(current).saturating_add(desired);
        if total > self.limit || maximum.is_some_and(|max| desired > max) {
            self.denied = true;
            return Ok(false);
        }
        self.total = total;
        self.peak = self.peak.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> anyhow::Result<bool> {
        Ok(desired <= TABLE_ELEMENTS && maximum.is_none_or(|max| desired <= max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_limited_across_memories() {
        let mut limiter = MemoryLimiter::new(100);
        assert!(limiter.memory_growing(0, 40, None).unwrap());
        assert!(limiter.memory_growing(0, 30, None).unwrap());
        assert!(limiter.memory_growing(40, 70, None).unwrap());
        assert!(!limiter.denied());
        assert!(!limiter.memory_growing(30, 31, None).unwrap());
        assert!(limiter.denied());
        assert_eq!(limiter.peak(), 100);
        limiter.reset_denied();
        assert!(!limiter.denied());
        let mut limiter = MemoryLimiter::new(100);
        assert!(!limiter.memory_growing(0, 10, Some(5)).unwrap());
        assert!(limiter.denied());
    }
}
