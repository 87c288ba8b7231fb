//! Function log lines handed to the store the node attached.

use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use nimbus_core::logging::FunctionLines;

use super::LogStore;

/// Where function log lines go: a store attached once the data directory is open, or
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

    /// The process's capture: the one the node's function log writes to and the node
    /// attaches its store to.
    pub fn global() -> &'static LogCapture {
        static GLOBAL: OnceLock<LogCapture> = OnceLock::new();
        GLOBAL.get_or_init(LogCapture::new)
    }

    /// Sends function log lines to `store` from now on (replacing any other).
    pub fn attach(&self, store: &LogStore) {
        *self.store.write().unwrap_or_else(PoisonError::into_inner) = Some(store.clone());
    }

    /// Stops capturing; lines are dropped again.
    pub fn detach(&self) {
        *self.store.write().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Puts `lines` in the attached store, all at once (nothing when none is attached).
    pub fn write(&self, lines: &FunctionLines<'_>) {
        let store = self.store.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(store) = store.as_ref() {
            store.append_lines(lines.function, lines.request_id, lines.all());
        }
    }
}

#[cfg(test)]
mod tests {
    use nimbus_core::logging::ReportFields;

    use super::*;
    use crate::logs::{Query, Retention};

    #[test]
    fn lines_reach_the_attached_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path(), Retention::default()).unwrap();
        let capture = LogCapture::new();
        let lines = |function, request_id, lines: &[&str], report| {
            capture.write(&FunctionLines {
                function,
                request_id,
                lines,
                report,
            });
        };
        lines("f", Some("r0"), &["before attach"], None);
        capture.attach(&store);
        lines("f", Some("r1"), &["START RequestId: r1", "hi"], None);
        lines("f", None, &["outside"], None);
        let fields = ReportFields {
            error_type: None,
            duration_ms: 1.5,
            init_ms: None,
            cold: false,
            outcome: "success",
        };
        lines(
            "f",
            Some("r1"),
            &["END RequestId: r1"],
            Some(("REPORT RequestId: r1", fields)),
        );
        lines("../f", Some("r1"), &["not a function"], None);
        capture.detach();
        lines("f", Some("r1"), &["after detach"], None);
        store.flush();
        let found = store.query("f", &Query::default()).unwrap().lines;
        let got: Vec<(Option<&str>, &str)> = found
            .iter()
            .map(|l| (l.request_id.as_deref(), l.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (Some("r1"), "START RequestId: r1"),
                (Some("r1"), "hi"),
                (None, "outside"),
                (Some("r1"), "END RequestId: r1"),
                (Some("r1"), "REPORT RequestId: r1"),
            ]
        );
    }
}
