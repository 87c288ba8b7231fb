//! The [`nimbus_core::trace::Tracer`] that records the parts' spans for export.
//!
//! A started span is a plain record: its ids, name, kind, start time and attributes as
//! the part gave them. When it ends it is written in OTLP's protobuf form
//! ([`super::otlp`]) and appended to a queue; a thread of its own takes the queue a
//! batch at a time and sends it. So a span costs the request that records it two clock
//! readings, a random id, its encoding and an append under a lock: no OpenTelemetry
//! context, no sampler call through a trait object, no channel per span, and no wake-up
//! of the export thread until a batch is full or its delay has passed.
//!
//! Sampling follows OpenTelemetry's samplers as `OTEL_TRACES_SAMPLER` names them
//! ([`Sampler`]); batching follows the batch span processor's `OTEL_BSP_*` settings
//! ([`Batching`]).

use std::{
    borrow::Cow,
    cell::RefCell,
    sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError},
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime},
};

use nimbus_core::trace::{Recording, SpanKind, SpanStart, TraceContext, Tracer, Value};

use super::otlp::{self, Ended, Sink};

/// Which new spans are recorded, as OpenTelemetry's standard samplers decide.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Sampler {
    /// Every span.
    AlwaysOn,
    /// None.
    AlwaysOff,
    /// A share of traces, decided by the trace id (so every node decides alike).
    Ratio(f64),
    /// A span with a parent follows its parent's decision; a root follows the inner
    /// sampler.
    ParentBased(Root),
}

/// The decision for roots under [`Sampler::ParentBased`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Root {
    AlwaysOn,
    AlwaysOff,
    Ratio(f64),
}

/// Whether a trace id falls in the sampled share `ratio`: its low 63 bits below the
/// ratio's part of 2^63, as OpenTelemetry's trace-id-ratio sampler decides.
fn in_ratio(ratio: f64, trace_id: u128) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    let bound = (ratio.max(0.0) * (1u64 << 63) as f64) as u64;
    // The low 64 bits of the id: the truncation is the point.
    #[allow(clippy::cast_possible_truncation)]
    let low = trace_id as u64;
    (low >> 1) < bound
}

impl Sampler {
    /// The sampler `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` name; the
    /// standard default (parent-based, always on) when they name none or one Nimbus
    /// does not have, with a warning for the latter.
    pub(crate) fn from_env(name: Option<&str>, arg: Option<&str>) -> Sampler {
        let ratio = || {
            arg.and_then(|a| a.trim().parse::<f64>().ok())
                .filter(|r| (0.0..=1.0).contains(r))
                .unwrap_or_else(|| {
                    tracing::warn!(
                        "OTEL_TRACES_SAMPLER_ARG is not a ratio between 0 and 1; sampling every trace"
                    );
                    1.0
                })
        };
        match name.map(str::trim) {
            None | Some("parentbased_always_on") => Sampler::ParentBased(Root::AlwaysOn),
            Some("always_on") => Sampler::AlwaysOn,
            Some("always_off") => Sampler::AlwaysOff,
            Some("traceidratio") => Sampler::Ratio(ratio()),
            Some("parentbased_always_off") => Sampler::ParentBased(Root::AlwaysOff),
            Some("parentbased_traceidratio") => Sampler::ParentBased(Root::Ratio(ratio())),
            Some(other) => {
                tracing::warn!(
                    sampler = other,
                    "OTEL_TRACES_SAMPLER names a sampler Nimbus does not have (it has always_on, always_off, traceidratio and their parentbased_ forms); using parentbased_always_on"
                );
                Sampler::ParentBased(Root::AlwaysOn)
            }
        }
    }

    /// Whether a span of `trace_id` with `parent` (its sampled flag) is recorded.
    fn sample(self, trace_id: u128, parent: Option<bool>) -> bool {
        match (self, parent) {
            (Sampler::AlwaysOn, _) => true,
            (Sampler::AlwaysOff, _) => false,
            (Sampler::Ratio(r), _) => in_ratio(r, trace_id),
            (Sampler::ParentBased(_), Some(sampled)) => sampled,
            (Sampler::ParentBased(Root::AlwaysOn), None) => true,
            (Sampler::ParentBased(Root::AlwaysOff), None) => false,
            (Sampler::ParentBased(Root::Ratio(r)), None) => in_ratio(r, trace_id),
        }
    }
}

/// How ended spans are batched for export, as the batch span processor's settings say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Batching {
    /// Longest an ended span waits for export (`OTEL_BSP_SCHEDULE_DELAY`, ms).
    pub(crate) delay: Duration,
    /// Ended spans held before new ones are dropped (`OTEL_BSP_MAX_QUEUE_SIZE`).
    pub(crate) max_queue: usize,
    /// Most spans in one export request (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`).
    pub(crate) max_batch: usize,
    /// Most bytes of encoded spans held before new ones are dropped: spans differ in
    /// size, and a count alone does not bound the memory they take.
    pub(crate) max_queue_bytes: usize,
}

impl Batching {
    /// The settings `var` gives (a missing or unreadable one keeps `self`'s).
    pub(crate) fn with_env(self, var: impl Fn(&str) -> Option<String>) -> Batching {
        let number = |name: &str| {
            var(name)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|n| *n > 0)
        };
        let max_queue = number("OTEL_BSP_MAX_QUEUE_SIZE")
            .map_or(self.max_queue, |n| usize::try_from(n).unwrap_or(usize::MAX));
        Batching {
            max_queue_bytes: self.max_queue_bytes,
            delay: number("OTEL_BSP_SCHEDULE_DELAY").map_or(self.delay, Duration::from_millis),
            max_queue,
            // A batch never exceeds the queue, as the specification asks.
            max_batch: number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")
                .map_or(self.max_batch, |n| usize::try_from(n).unwrap_or(usize::MAX))
                .min(max_queue),
        }
    }
}

/// Ended spans waiting for the export thread, and what it is asked to do.
#[derive(Default)]
struct Queue {
    /// The spans, each a batch entry ([`otlp::put_batch_entry`]).
    spans: Vec<u8>,
    /// How many.
    count: usize,
    /// Where each full batch in `spans` ends.
    batch_ends: Vec<usize>,
    /// Spans dropped because the queue was full, since the last warning.
    dropped: u64,
    /// Flush requests made (the thread answers each by counting it in `flushed`).
    flushes: u64,
    flushed: u64,
    shutdown: bool,
}

/// What the spans and the export thread share.
struct Shared {
    sampler: Sampler,
    batching: Batching,
    /// The `Resource` message every request carries.
    resource: Vec<u8>,
    queue: Mutex<Queue>,
    /// Wakes the export thread (a full batch, a flush, the shutdown).
    work: Condvar,
    /// Wakes flushers when a flush is done.
    done: Condvar,
}

fn lock(queue: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    queue.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Queues an encoded span (a `Span` message's body).
    fn push(&self, span: &[u8]) {
        let mut queue = lock(&self.queue);
        if queue.count >= self.batching.max_queue
            || queue.spans.len() + span.len() > self.batching.max_queue_bytes
        {
            queue.dropped += 1;
            return;
        }
        otlp::put_batch_entry(&mut queue.spans, span);
        queue.count += 1;
        if queue.count.is_multiple_of(self.batching.max_batch) {
            let end = queue.spans.len();
            queue.batch_ends.push(end);
            // Only the span that fills the first batch wakes the thread; the rest wait
            // for it or for the delay.
            if queue.count == self.batching.max_batch {
                self.work.notify_one();
            }
        }
    }
}

/// Records spans and exports them from a thread of its own. Dropping it (or
/// [`Recorder::shutdown`]) exports what is queued and stops the thread.
pub(crate) struct Recorder {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("sampler", &self.shared.sampler)
            .field("batching", &self.shared.batching)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// Starts the export thread, which sends batches to `sink` as export requests for
    /// the resource of `resource` attributes.
    pub(crate) fn start<S: Sink>(
        sink: S,
        resource: &[(String, String)],
        sampler: Sampler,
        batching: Batching,
    ) -> std::io::Result<Recorder> {
        let shared = Arc::new(Shared {
            sampler,
            batching,
            resource: otlp::resource(resource),
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            done: Condvar::new(),
        });
        let thread = std::thread::Builder::new()
            .name("nimbus-spans".to_owned())
            .spawn({
                let shared = Arc::clone(&shared);
                move || export_loop(&shared, &sink)
            })?;
        Ok(Recorder {
            shared,
            thread: Some(thread),
        })
    }

    /// The tracer that records into this recorder.
    pub(crate) fn tracer(&self) -> SpanTracer {
        SpanTracer {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Exports every span ended before this call; waits up to `wait`. `false` when the
    /// export did not finish in time.
    #[cfg(test)]
    pub(crate) fn flush(&self, wait: Duration) -> bool {
        let mut queue = lock(&self.shared.queue);
        queue.flushes += 1;
        let asked = queue.flushes;
        self.shared.work.notify_one();
        let deadline = Instant::now() + wait;
        while queue.flushed < asked && !queue.shutdown {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            queue = self
                .shared
                .done
                .wait_timeout(queue, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// Exports what is queued and stops the export thread, waiting up to `wait` for
    /// it. `false` when it did not end in time (it is left to finish alone).
    #[cfg(test)]
    pub(crate) fn shutdown(mut self, wait: Duration) -> bool {
        self.stop(wait)
    }

    fn stop(&mut self, wait: Duration) -> bool {
        let Some(thread) = self.thread.take() else {
            return true;
        };
        lock(&self.shared.queue).shutdown = true;
        self.shared.work.notify_one();
        let deadline = Instant::now() + wait;
        while !thread.is_finished() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = thread.join();
        true
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if !self.stop(super::SHUTDOWN_TIMEOUT) {
            eprintln!(
                "warning: the last traces could not be exported within {} s",
                super::SHUTDOWN_TIMEOUT.as_secs()
            );
        }
    }
}

/// Most bytes of spans the queue is made ready to take without growing.
const SPARE_CAPACITY: usize = 1 << 20;

/// The export thread: waits for a full batch, the delay, a flush or the shutdown, then
/// sends what is queued, a batch at a time.
fn export_loop<S: Sink>(shared: &Shared, sink: &S) {
    let mut failing = false;
    let mut next = Instant::now() + shared.batching.delay;
    let mut capacity = 0;
    loop {
        // The buffer the spans gather in next, made here rather than grown span by span
        // under the lock, as large as the last one needed.
        let fresh = Vec::with_capacity(capacity);
        let (spans, ends, dropped, flush, shutdown) = {
            let mut queue = lock(&shared.queue);
            loop {
                let now = Instant::now();
                if queue.shutdown
                    || queue.flushes > queue.flushed
                    || queue.count >= shared.batching.max_batch
                    || now >= next
                {
                    break;
                }
                queue = shared
                    .work
                    .wait_timeout(queue, next - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            queue.count = 0;
            (
                std::mem::replace(&mut queue.spans, fresh),
                std::mem::take(&mut queue.batch_ends),
                std::mem::take(&mut queue.dropped),
                queue.flushes,
                queue.shutdown,
            )
        };
        capacity = spans.len().min(SPARE_CAPACITY);
        next = Instant::now() + shared.batching.delay;
        if dropped > 0 {
            tracing::warn!(
                dropped,
                queue = shared.batching.max_queue,
                queue_bytes = shared.batching.max_queue_bytes,
                "trace spans were dropped: the export queue was full (OTEL_BSP_MAX_QUEUE_SIZE spans or its size in bytes)"
            );
        }
        let mut start = 0;
        for end in ends.into_iter().chain(std::iter::once(spans.len())) {
            if end <= start {
                continue;
            }
            match sink.send(otlp::request(&shared.resource, &spans[start..end])) {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "cannot export trace spans; the batch is dropped");
                }
                Err(_) => {}
            }
            start = end;
        }
        let mut queue = lock(&shared.queue);
        // At the shutdown every flush is answered: no more exports will follow.
        queue.flushed = if shutdown {
            queue.flushes
        } else {
            queue.flushed.max(flush)
        };
        shared.done.notify_all();
        if shutdown {
            return;
        }
    }
}

/// The tracer installed for the parts: spans record into a [`Recorder`].
pub(crate) struct SpanTracer {
    shared: Arc<Shared>,
}

/// A random id, never zero.
fn nonzero_u64() -> u64 {
    loop {
        let id = fastrand::u64(..);
        if id != 0 {
            return id;
        }
    }
}

fn nonzero_u128() -> u128 {
    loop {
        let id = fastrand::u128(..);
        if id != 0 {
            return id;
        }
    }
}

/// Longest text a span keeps in its name or in an attribute's value, in bytes: parts of
/// requests (paths, table names, operation names) go into spans, and a client chooses
/// them. Longer text is cut at a character boundary.
pub(crate) const MAX_TEXT_BYTES: usize = 1024;

/// Cuts `text` to [`MAX_TEXT_BYTES`].
fn limit_text(text: &mut Cow<'static, str>) {
    if text.len() > MAX_TEXT_BYTES {
        let mut end = MAX_TEXT_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        *text = Cow::Owned(text[..end].to_owned());
    }
}

fn limit_value(value: &mut Value) {
    if let Value::Str(text) = value {
        limit_text(text);
    }
}

/// The scratch buffer a thread keeps between spans, at most.
const SCRATCH_KEPT: usize = 64 * 1024;

impl Tracer for SpanTracer {
    fn start(&self, span: SpanStart) -> Box<dyn Recording> {
        let (trace_id, parent) = match span.parent {
            Some((cx, remote)) => (cx.trace_id, Some((cx, remote))),
            None => (nonzero_u128(), None),
        };
        let sampled = self
            .shared
            .sampler
            .sample(trace_id, parent.map(|(cx, _)| cx.sampled));
        let context = TraceContext {
            trace_id,
            span_id: nonzero_u64(),
            sampled,
        };
        if !sampled {
            return Box::new(Unrecorded(context));
        }
        let mut name = span.name;
        limit_text(&mut name);
        let mut attributes = span.attributes;
        for (_, value) in &mut attributes {
            limit_value(value);
        }
        Box::new(Recorded {
            shared: Arc::clone(&self.shared),
            context,
            parent,
            name,
            kind: span.kind,
            start: SystemTime::now(),
            attributes,
            links: span.links,
            error: false,
        })
    }
}

/// A span not sampled: a context to hand on, nothing recorded.
struct Unrecorded(TraceContext);

impl Recording for Unrecorded {
    fn context(&self) -> Option<TraceContext> {
        Some(self.0)
    }

    fn is_recording(&self) -> bool {
        false
    }

    fn set_attribute(&mut self, _key: &'static str, _value: Value) {}

    fn set_error(&mut self) {}
}

/// A sampled span being recorded; dropping it ends it.
struct Recorded {
    shared: Arc<Shared>,
    context: TraceContext,
    /// Its parent, and whether that is another process's.
    parent: Option<(TraceContext, bool)>,
    name: Cow<'static, str>,
    kind: SpanKind,
    start: SystemTime,
    attributes: Vec<(&'static str, Value)>,
    links: Vec<TraceContext>,
    error: bool,
}

/// Nanoseconds since the Unix epoch (0 before it).
fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

thread_local! {
    /// Where a thread encodes the spans it ends, before they are queued.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

impl Recording for Recorded {
    fn context(&self) -> Option<TraceContext> {
        Some(self.context)
    }

    fn is_recording(&self) -> bool {
        true
    }

    fn set_attribute(&mut self, key: &'static str, mut v: Value) {
        limit_value(&mut v);
        // A key set again keeps its place and takes the new value.
        match self.attributes.iter_mut().find(|(k, _)| *k == key) {
            Some((_, value)) => *value = v,
            None => self.attributes.push((key, v)),
        }
    }

    fn set_error(&mut self) {
        self.error = true;
    }
}

impl Drop for Recorded {
    fn drop(&mut self) {
        let span = Ended {
            context: self.context,
            parent: self.parent.map(|(cx, remote)| (cx.span_id, remote)),
            name: &self.name,
            kind: self.kind,
            start: unix_nanos(self.start),
            end: unix_nanos(SystemTime::now()),
            attributes: &self.attributes,
            links: &self.links,
            error: self.error,
        };
        let pushed = SCRATCH.try_with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            scratch.clear();
            otlp::put_span(&mut scratch, &span);
            self.shared.push(&scratch);
            // A rare large span does not keep its room on every thread it passed.
            if scratch.capacity() > SCRATCH_KEPT {
                *scratch = Vec::new();
            }
        });
        // A thread being torn down has no scratch left: encode on the heap.
        if pushed.is_err() {
            let mut buf = Vec::new();
            otlp::put_span(&mut buf, &span);
            self.shared.push(&buf);
        }
    }
}
