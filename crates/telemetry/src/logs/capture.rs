//! Function log lines taken from `tracing` events into the store.

use std::{
    fmt::{self, Write as _},
    sync::{Arc, OnceLock, PoisonError, RwLock},
};

use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
};
use tracing_subscriber::{Layer, layer::Context};

use super::LogStore;

/// The target of function log events (`tracing::info!(target: "function", function = ..,
/// request_id = .., "...")`).
pub const FUNCTION_TARGET: &str = "function";

/// Where function log events go: a store attached once the data directory is open, or
/// nowhere. Clones share the attachment.
#[derive(Debug, Clone, Default)]
pub struct LogCapture {
    store: Arc<RwLock<Option<LogStore>>>,
}

impl LogCapture {
    /// A capture with no store attached.
    pub fn new() -> LogCapture {
        LogCapture::default()
    }

    /// The process's capture: the one `nimbus` installs in its subscriber and the node
    /// attaches its store to.
    pub fn global() -> &'static LogCapture {
        static GLOBAL: OnceLock<LogCapture> = OnceLock::new();
        GLOBAL.get_or_init(LogCapture::new)
    }

    /// Sends function log events to `store` from now on (replacing any other).
    pub fn attach(&self, store: &LogStore) {
        *self.store.write().unwrap_or_else(PoisonError::into_inner) = Some(store.clone());
    }

    /// Stops capturing; events are dropped again.
    pub fn detach(&self) {
        *self.store.write().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// The layer to install in the subscriber.
    pub fn layer(&self) -> CaptureLayer {
        CaptureLayer {
            capture: self.clone(),
        }
    }
}

/// A [`Layer`] that stores function log events in the attached [`LogStore`]: events with
/// target [`FUNCTION_TARGET`] and a `function` field; their `request_id` field (`-` for
/// none) and message are kept.
#[derive(Debug, Clone)]
pub struct CaptureLayer {
    capture: LogCapture,
}

#[derive(Default)]
struct Fields {
    function: Option<String>,
    request_id: Option<String>,
    message: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "function" => self.function = Some(value.to_owned()),
            "request_id" => self.request_id = Some(value.to_owned()),
            "message" => self.message.push_str(value),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = || {
            let mut s = String::new();
            let _ = write!(s, "{value:?}");
            s
        };
        match field.name() {
            "function" => self.function = Some(text()),
            "request_id" => self.request_id = Some(text()),
            // `fmt::Arguments` prints the same with `{:?}` as with `{}`.
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            _ => {}
        }
    }
}

impl<S: Subscriber> Layer<S> for CaptureLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != FUNCTION_TARGET {
            return;
        }
        let store = self
            .capture
            .store
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(store) = store.as_ref() else {
            return;
        };
        let mut fields = Fields::default();
        event.record(&mut fields);
        let Some(function) = fields.function else {
            return;
        };
        let request_id = fields.request_id.filter(|id| id != "-");
        store.append_owned(function, request_id, fields.message);
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::logs::{Query, Retention};

    #[test]
    fn function_events_reach_the_attached_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path(), Retention::default()).unwrap();
        let capture = LogCapture::new();
        let subscriber = tracing_subscriber::registry().with(capture.layer());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "function", function = "f", request_id = "r0", "before attach");
            capture.attach(&store);
            let id = "r1".to_owned();
            tracing::info!(target: "function", function = "f", request_id = %id, "START RequestId: {id}");
            tracing::info!(target: "function", function = %"f", request_id = "-", "outside");
            tracing::info!(function = "f", request_id = "r1", "not a function line");
            tracing::info!(target: "function", request_id = "r1", "no function");
            capture.detach();
            tracing::info!(target: "function", function = "f", request_id = "r1", "after detach");
        });
        store.flush();
        let lines = store.query("f", &Query::default()).unwrap().lines;
        let got: Vec<(Option<&str>, &str)> = lines
            .iter()
            .map(|l| (l.request_id.as_deref(), l.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [(Some("r1"), "START RequestId: r1"), (None, "outside")]
        );
    }
}
