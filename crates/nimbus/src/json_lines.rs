//! The node log's JSON lines for the events a node writes on every request: the
//! function lines (`START`, the function's output, `END`, `REPORT`) and the gateway's
//! access line. There are several per request, so they are written straight into one
//! buffer here rather than through `tracing_subscriber`'s JSON formatter, which builds a
//! map of the fields first. The lines are the same: the timestamp, the level, then the
//! event's fields in the order it recorded them (the message first), then the target, as
//! `fmt::layer().json().flatten_event(true)` writes them.

use std::{
    cell::RefCell,
    fmt,
    io::Write as _,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use nimbus_core::logging::FunctionLines;
use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
};
use tracing_subscriber::{Layer, fmt::MakeWriter, layer::Context};

/// The targets whose events this layer writes.
pub(crate) const TARGETS: [&str; 2] = [nimbus_core::logging::FUNCTION_TARGET, "access"];

/// Whether this layer writes the events of `target`.
pub(crate) fn writes(target: &str) -> bool {
    TARGETS.contains(&target)
}

/// Writes each event as one JSON line to `W`.
pub(crate) struct JsonLines<W> {
    writer: W,
}

impl<W> JsonLines<W> {
    pub(crate) fn new(writer: W) -> JsonLines<W> {
        JsonLines { writer }
    }
}

thread_local! {
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

impl<S, W> Layer<S> for JsonLines<W>
where
    S: Subscriber,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        LINE.with_borrow_mut(|line| {
            line.clear();
            encode(line, SystemTime::now(), event);
            // The writer takes whole lines, so lines from several threads never mix.
            let _ = self.writer.make_writer().write_all(line);
        });
    }
}

fn encode(line: &mut Vec<u8>, now: SystemTime, event: &Event<'_>) {
    let metadata = event.metadata();
    line.extend_from_slice(b"{\"timestamp\":\"");
    timestamp(line, now);
    let _ = write!(line, "\",\"level\":\"{}\"", metadata.level());
    event.record(&mut Fields { line });
    line.extend_from_slice(b",\"target\":");
    string(line, metadata.target());
    line.extend_from_slice(b"}\n");
}

/// Appends `lines` as the records [`JsonLines`] writes for the events
/// [`FunctionLines::emit_events`] makes, one per line, all with the time `now`: the node's
/// function log writes them without making the events.
pub(crate) fn encode_function_lines(
    line: &mut Vec<u8>,
    now: SystemTime,
    lines: &FunctionLines<'_>,
) {
    // The time, formatted once for all the records: into the first, then copied.
    let mut stamp: Option<std::ops::Range<usize>> = None;
    let report_at = lines.lines.len();
    for (i, message) in lines.all().enumerate() {
        line.extend_from_slice(b"{\"timestamp\":\"");
        match &stamp {
            Some(at) => line.extend_from_within(at.clone()),
            None => {
                let start = line.len();
                timestamp(line, now);
                stamp = Some(start..line.len());
            }
        }
        line.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":");
        string(line, message);
        line.extend_from_slice(b",\"function\":");
        string(line, lines.function);
        line.extend_from_slice(b",\"request_id\":");
        string(line, lines.request_id.unwrap_or("-"));
        if i == report_at
            && let Some((_, fields)) = &lines.report
        {
            if let Some(error_type) = fields.error_type {
                line.extend_from_slice(b",\"error_type\":");
                string(line, error_type);
            }
            line.extend_from_slice(b",\"duration_ms\":");
            let _ = serde_json::to_writer(&mut *line, &fields.duration_ms);
            if let Some(init_ms) = fields.init_ms {
                line.extend_from_slice(b",\"init_ms\":");
                let _ = serde_json::to_writer(&mut *line, &init_ms);
            }
            let _ = write!(line, ",\"cold\":{},\"outcome\":", fields.cold);
            string(line, fields.outcome);
        }
        line.extend_from_slice(b",\"target\":\"function\"}\n");
    }
}

/// Appends `now` in RFC 3339 with microseconds (`2024-05-01T12:00:00.123456Z`), as
/// `humantime::format_rfc3339_micros` writes it. The part up to the second is formatted
/// once per second and thread, since several lines are stamped every request.
fn timestamp(out: &mut Vec<u8>, now: SystemTime) {
    /// The second last formatted on this thread, and its `YYYY-MM-DDTHH:MM:SS`.
    struct Second {
        secs: Option<u64>,
        text: [u8; 19],
    }
    thread_local! {
        static SECOND: RefCell<Second> = const {
            RefCell::new(Second { secs: None, text: [0; 19] })
        };
    }
    let Ok(since) = now.duration_since(UNIX_EPOCH) else {
        // Before 1970: rare enough to format whole.
        let _ = write!(out, "{}", humantime::format_rfc3339_micros(now));
        return;
    };
    let secs = since.as_secs();
    SECOND.with_borrow_mut(|second| {
        if second.secs != Some(secs) {
            let whole = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs))
                .to_string();
            // `YYYY-MM-DDTHH:MM:SSZ`; a year past 9999 is longer and is not cached.
            let Some(text) = whole.strip_suffix('Z').filter(|t| t.len() == 19) else {
                let _ = write!(out, "{}", humantime::format_rfc3339_micros(now));
                return;
            };
            second.text.copy_from_slice(text.as_bytes());
            second.secs = Some(secs);
        }
        out.extend_from_slice(&second.text);
        let _ = write!(out, ".{:06}Z", since.subsec_micros());
    });
}

/// Appends `s` as a JSON string.
fn string(line: &mut Vec<u8>, s: &str) {
    nimbus_core::logging::push_json_str(line, s);
}

/// Appends each field as `,"name":value`.
struct Fields<'a> {
    line: &'a mut Vec<u8>,
}

impl Fields<'_> {
    fn key(&mut self, field: &Field) {
        self.line.push(b',');
        let name = field.name();
        string(self.line, name.strip_prefix("r#").unwrap_or(name));
        self.line.push(b':');
    }

    fn number(&mut self, field: &Field, value: impl serde::Serialize) {
        self.key(field);
        let _ = serde_json::to_writer(&mut *self.line, &value);
    }
}

impl Visit for Fields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.number(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.number(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.number(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.number(field, value);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        string(self.line, value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        // The text goes through the JSON string escaper as it is formatted.
        let mut escaper = serde_json::Serializer::new(&mut *self.line);
        let _ = serde::Serializer::collect_str(&mut escaper, &format_args!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Shared {
        type Writer = Shared;
        fn make_writer(&'a self) -> Shared {
            self.clone()
        }
    }

    fn lines(emit: impl FnOnce()) -> Vec<String> {
        let ours = Shared::default();
        let theirs = Shared::default();
        let subscriber = tracing_subscriber::registry()
            .with(JsonLines::new(ours.clone()))
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(theirs.clone()),
            );
        tracing::subscriber::with_default(subscriber, emit);
        let ours = String::from_utf8(ours.0.lock().unwrap().clone()).unwrap();
        let theirs = String::from_utf8(theirs.0.lock().unwrap().clone()).unwrap();
        // Everything but the timestamps must be what tracing_subscriber writes.
        let strip = |text: &str| -> Vec<serde_json::Value> {
            text.lines()
                .map(|l| {
                    let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                    let stamp = v.as_object_mut().unwrap().remove("timestamp").unwrap();
                    humantime::parse_rfc3339(stamp.as_str().unwrap()).unwrap();
                    v
                })
                .collect()
        };
        assert_eq!(strip(&ours), strip(&theirs));
        // And the keys in the same order.
        let keys = |text: &str| -> Vec<Vec<String>> {
            text.lines()
                .map(|l| {
                    let mut keys = Vec::new();
                    let mut rest = l;
                    while let Some(at) = rest.find("\":") {
                        let start = rest[..at].rfind(['{', ',']).unwrap() + 2;
                        keys.push(rest[start..at].to_owned());
                        rest = &rest[at + 2..];
                    }
                    keys
                })
                .collect()
        };
        assert_eq!(keys(&ours), keys(&theirs));
        ours.lines().map(str::to_owned).collect()
    }

    /// The cached timestamp is humantime's, whichever second came before.
    #[test]
    fn timestamps_are_humantimes() {
        let base = UNIX_EPOCH + Duration::from_micros(1_700_000_000_999_998);
        for offset_us in [0, 1, 2, 3, 1_000_000, 0, 59_000_001, 86_400_000_000, 5] {
            let now = base + Duration::from_micros(offset_us);
            let mut ours = Vec::new();
            timestamp(&mut ours, now);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                humantime::format_rfc3339_micros(now).to_string()
            );
        }
        let mut early = Vec::new();
        timestamp(&mut early, UNIX_EPOCH);
        assert_eq!(early, b"1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn lines_match_the_json_formatter() {
        let id = "7d1c-\"quoted\"\n";
        let got = lines(|| {
            let line = "REPORT RequestId: x\tDuration: 1.00 ms";
            tracing::info!(
                target: "function",
                function = "hello",
                request_id = %id,
                error_type = None::<&str>,
                duration_ms = 0.265606,
                init_ms = Some(0.109062),
                cold = true,
                n = -3i64,
                count = 7u64,
                why = ?vec!["a"],
                "{line}"
            );
            tracing::warn!(target: "access", r#type = "x", status = 200u16, "request");
        });
        assert_eq!(got.len(), 2);
        let first: serde_json::Value = serde_json::from_str(&got[0]).unwrap();
        assert_eq!(first["request_id"], id);
        assert_eq!(first["level"], "INFO");
        assert_eq!(first["target"], "function");
        assert!(first.get("error_type").is_none());
        let second: serde_json::Value = serde_json::from_str(&got[1]).unwrap();
        assert_eq!(second["type"], "x");
        assert_eq!(second["level"], "WARN");
    }

    /// The function log's direct records are the formatter's records of the same lines
    /// as events, key for key (timestamps aside).
    #[test]
    fn function_lines_match_their_events() {
        let fields = |error_type, init_ms| nimbus_core::logging::ReportFields {
            error_type,
            duration_ms: 0.265606,
            init_ms,
            cold: init_ms.is_some(),
            outcome: if error_type.is_some() {
                "error"
            } else {
                "success"
            },
        };
        let batches = [
            FunctionLines {
                function: "hello",
                request_id: Some("7d1c-\"quoted\"\n"),
                lines: &["START RequestId: x Version: $LATEST", "tab\there \u{1F600}"],
                report: None,
            },
            FunctionLines {
                function: "hello",
                request_id: None,
                lines: &["started"],
                report: None,
            },
            FunctionLines {
                function: "hello",
                request_id: Some("r"),
                lines: &["END RequestId: r"],
                report: Some(("REPORT RequestId: r", fields(None, Some(0.109062)))),
            },
            FunctionLines {
                function: "f",
                request_id: Some("r"),
                lines: &[],
                report: Some(("REPORT", fields(Some("Runtime.ExitError"), None))),
            },
        ];
        let from_events = lines(|| {
            for batch in &batches {
                batch.emit_events();
            }
        });
        let mut direct = Vec::new();
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_123_456);
        for batch in &batches {
            encode_function_lines(&mut direct, now, batch);
        }
        let direct: Vec<String> = String::from_utf8(direct)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(direct.len(), 6);
        for line in &direct {
            assert!(
                line.starts_with("{\"timestamp\":\"2023-11-14T22:13:20.123456Z\","),
                "{line}"
            );
        }
        let without_time = |line: &str| line[line.find(",\"level\"").unwrap()..].to_owned();
        let direct: Vec<String> = direct.iter().map(|l| without_time(l)).collect();
        let from_events: Vec<String> = from_events.iter().map(|l| without_time(l)).collect();
        assert_eq!(direct, from_events);
    }

    #[test]
    fn the_timestamp_has_microseconds() {
        let stamp = humantime::parse_rfc3339("2026-11-27T21:22:12.800896Z").unwrap();
        let seen = Arc::default();
        tracing::subscriber::with_default(
            tracing_subscriber::registry().with(CaptureOne(Arc::clone(&seen), stamp)),
            || tracing::info!(target: "access", "request"),
        );
        assert_eq!(*seen.lock().unwrap(), [1]);
    }

    /// Encodes the one event it sees at a fixed time.
    struct CaptureOne(Arc<Mutex<Vec<u8>>>, SystemTime);

    impl<S: Subscriber> Layer<S> for CaptureOne {
        fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
            let mut line = Vec::new();
            encode(&mut line, self.1, event);
            assert_eq!(
                String::from_utf8(line).unwrap(),
                "{\"timestamp\":\"2026-11-27T21:22:12.800896Z\",\"level\":\"INFO\",\"message\":\"request\",\"target\":\"access\"}\n"
            );
            self.0.lock().unwrap().push(1);
        }
    }
}
