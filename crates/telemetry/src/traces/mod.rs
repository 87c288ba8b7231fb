//! OpenTelemetry traces, exported over OTLP (HTTP/protobuf).
//!
//! The parts open [`nimbus_core::trace::Span`]s (the gateway request, the dispatch with
//! its queue wait and cold start, the function's execution, each services-endpoint
//! request, stream batches). [`Traces::start`] builds an OpenTelemetry pipeline for them
//! when an endpoint is configured, and installs the [`nimbus_core::trace::Tracer`] that
//! records them ([`recorder`]) for the OTLP exporter.
//!
//! Without an endpoint nothing is started and no span is made.
//!
//! Configuration follows OpenTelemetry's environment variables, with flags above them:
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! [`TraceSettings::endpoint`]), `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` (or
//! [`TraceSettings::sample_ratio`], a parent-based trace id ratio), `OTEL_SERVICE_NAME`
//! (default `nimbus`), `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_*` for batching, and
//! `OTEL_SDK_DISABLED` / `OTEL_TRACES_EXPORTER=none` to turn it off.

mod otlp;
mod recorder;

use std::time::Duration;

use opentelemetry_sdk::Resource;
use recorder::{Batching, Recorder, Root, Sampler};

/// How long the final flush may take at shutdown.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// How ended spans are batched unless `OTEL_BSP_*` says otherwise: the batch span
/// processor's defaults (a 5 s delay, 512 spans a request), except that 65,536 spans may
/// wait rather than 2,048, which fill in a tenth of a second at a few thousand requests
/// per second (and a full queue drops spans), as long as they take at most 64 MiB.
const BATCHING: Batching = Batching {
    delay: Duration::from_secs(5),
    max_queue: 65_536,
    max_batch: 512,
    max_queue_bytes: 64 << 20,
};

/// What the command line says about traces; the environment fills in the rest.
#[derive(Debug, Clone, Default)]
pub struct TraceSettings {
    /// The OTLP/HTTP base URL (`http://collector:4318`); spans go to `/v1/traces` below
    /// it. Overrides the `OTEL_EXPORTER_OTLP_*ENDPOINT` variables.
    pub endpoint: Option<String>,
    /// The share of new traces to record, 0 to 1; a request that arrives with a trace
    /// context follows its caller's decision. Overrides `OTEL_TRACES_SAMPLER`.
    pub sample_ratio: Option<f64>,
}

/// Why traces could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The sample ratio is not between 0 and 1.
    #[error("the trace sample ratio must be between 0 and 1, not {0}")]
    BadRatio(f64),
    /// The exporter could not be built (a bad endpoint, say).
    #[error("cannot set up the OTLP trace exporter: {0}")]
    Exporter(String),
    /// The exporter's thread could not start.
    #[error("cannot start the OTLP exporter's thread: {0}")]
    Thread(#[from] std::io::Error),
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A running trace pipeline. Dropping it (or [`Traces::shutdown`]) exports what is
/// still buffered.
#[derive(Debug)]
pub struct Traces {
    /// Dropping it exports what is queued, waiting up to [`SHUTDOWN_TIMEOUT`].
    _recorder: Recorder,
}

impl Traces {
    /// Starts exporting when an endpoint is configured (by `settings` or the
    /// environment); `Ok(None)` when none is, or when the environment turns traces off.
    ///
    /// # Errors
    /// A sample ratio outside 0..=1, an endpoint that is not a URL, or a thread that
    /// cannot start.
    pub fn start(settings: &TraceSettings) -> Result<Option<Traces>, TraceError> {
        if let Some(ratio) = settings.sample_ratio
            && !(0.0..=1.0).contains(&ratio)
        {
            return Err(TraceError::BadRatio(ratio));
        }
        let off = env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || env("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"));
        if off {
            return Ok(None);
        }
        let base = settings
            .endpoint
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty());
        let Some(target) = otlp::Target::from_env(base, env)? else {
            return Ok(None);
        };
        // The resource from OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, as the SDK
        // reads them.
        let mut resource = Resource::builder();
        if env("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("nimbus");
        }
        let resource: Vec<(String, String)> = resource
            .build()
            .iter()
            .map(|(key, value)| (key.as_str().to_owned(), value.as_str().into_owned()))
            .collect();
        let sampler = match settings.sample_ratio {
            Some(ratio) => Sampler::ParentBased(Root::Ratio(ratio)),
            None => Sampler::from_env(
                env("OTEL_TRACES_SAMPLER").as_deref(),
                env("OTEL_TRACES_SAMPLER_ARG").as_deref(),
            ),
        };
        let sink = otlp::HttpSink::start(target)?;
        let recorder = Recorder::start(sink, &resource, sampler, BATCHING.with_env(env))?;
        nimbus_core::trace::install(Box::new(recorder.tracer()));
        Ok(Some(Traces {
            _recorder: recorder,
        }))
    }

    /// Exports what is buffered and stops the exporter.
    pub fn shutdown(self) {
        drop(self);
    }
}

#[cfg(test)]
mod tests;
