//! `[[events]]`.

use std::{collections::BTreeMap, time::Duration};

use nimbus_core::{
    EventSource, EventSpec, FunctionSpec, RetryPolicy, ScheduleExpression, StartingPosition,
    TableSpec, limits,
};

use crate::{
    context::Cx,
    decode::{Field, Obj, Str},
    routes::declared,
    support::Feature,
};

const SOURCE_EXPECTED: &str = "a source such as \"table:Users\", \"schedule:rate(5 minutes)\", \"schedule:cron(0 12 * * ? *)\", \"bus:default\" or \"queue:jobs\"";

/// Shortest maximum event age (Lambda's 60 s).
const MIN_EVENT_AGE: Duration = Duration::from_secs(60);
/// A schedule's retries when not configured: EventBridge's default retry policy
/// (`MaximumRetryAttempts` 185, with `MaximumEventAgeInSeconds` 24 hours).
const SCHEDULE_MAX_RETRIES: u32 = 185;
/// Largest batch size of a FIFO queue trigger (Lambda's).
const MAX_FIFO_BATCH_SIZE: u32 = 10;
/// Default batch size of a queue trigger (Lambda's for SQS).
const DEFAULT_QUEUE_BATCH_SIZE: u32 = 10;

pub(crate) fn decode(
    cx: &mut Cx<'_>,
    field: Field<'_>,
    functions: &BTreeMap<String, FunctionSpec>,
    tables: &BTreeMap<String, TableSpec>,
) -> Vec<EventSpec> {
    let Some(items) = field.array(&mut cx.sink, "an array of events ([[events]])") else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|item| decode_event(cx, item, functions, tables))
        .collect()
}

fn decode_event(
    cx: &mut Cx<'_>,
    item: Field<'_>,
    functions: &BTreeMap<String, FunctionSpec>,
    tables: &BTreeMap<String, TableSpec>,
) -> Option<EventSpec> {
    let mut obj = item.table(&mut cx.sink, "an event with `source` and `function`")?;
    let source = obj
        .require(&mut cx.sink, "source", SOURCE_EXPECTED)
        .and_then(|f| f.string(&mut cx.sink, SOURCE_EXPECTED));
    let function = obj
        .require(
            &mut cx.sink,
            "function",
            "the name of the function to invoke",
        )
        .and_then(|f| f.string(&mut cx.sink, "a function name"));
    // A schedule retries handing its event over as EventBridge does (185 times over 24
    // hours by default); the other sources retry invocations as Lambda does.
    let (default_retries, default_age) = if source
        .as_ref()
        .is_some_and(|s| s.value.starts_with("schedule:"))
    {
        (SCHEDULE_MAX_RETRIES, limits::MAX_EVENT_AGE)
    } else {
        (limits::DEFAULT_MAX_RETRIES, limits::DEFAULT_MAX_EVENT_AGE)
    };
    let max_retries = obj.take("max_retries").map_or(Some(default_retries), |f| {
        f.int(&mut cx.sink, 0..=limits::MAX_RETRIES)
    });
    let max_event_age = obj.take("max_event_age").map_or(Some(default_age), |f| {
        f.duration(&mut cx.sink, MIN_EVENT_AGE..=limits::MAX_EVENT_AGE)
    });
    let enabled = obj
        .take("enabled")
        .map_or(Some(true), |f| f.bool(&mut cx.sink));

    let source = source.and_then(|s| decode_source(cx, &s, &mut obj, functions, tables));
    obj.finish(&mut cx.sink);

    let function = function.and_then(|f| {
        if !cx.declared_functions.contains(&f.value) {
            let known: Vec<&str> = cx.declared_functions.iter().map(String::as_str).collect();
            f.reject(&mut cx.sink, declared("function", &known));
        }
        // A declared function with errors of its own has been reported already.
        functions.contains_key(&f.value).then_some(f.value)
    });
    Some(EventSpec {
        source: source?,
        function: function?,
        retry: RetryPolicy {
            max_retries: max_retries?,
            max_event_age: max_event_age?,
        },
        enabled: enabled?,
    })
}

/// Decodes the source and the keys that belong to its kind; keys of other kinds are left
/// in `obj` and reported as unknown.
fn decode_source(
    cx: &mut Cx<'_>,
    source: &Str,
    obj: &mut Obj<'_>,
    functions: &BTreeMap<String, FunctionSpec>,
    tables: &BTreeMap<String, TableSpec>,
) -> Option<EventSource> {
    let Some((kind, rest)) = source.value.split_once(':') else {
        source.reject(&mut cx.sink, SOURCE_EXPECTED);
        return None;
    };
    let feature = match kind {
        "table" => Feature::StreamTriggers,
        "schedule" => Feature::Schedules,
        "bus" => Feature::EventBus,
        "queue" => Feature::Queues,
        _ => {
            source.reject(&mut cx.sink, SOURCE_EXPECTED);
            return None;
        }
    };
    let supported = cx.require_feature(
        feature,
        source.span.clone(),
        &source.path,
        format!("{:?}", source.value),
    );
    let decoded = match kind {
        "table" => table_source(cx, source, rest, obj, functions, tables),
        "schedule" => schedule(rest)
            .map_err(|expected| source.reject(&mut cx.sink, expected))
            .ok()
            .map(EventSource::Schedule),
        "bus" => bus_source(cx, source, rest, obj),
        _ => queue_source(cx, source, rest, obj),
    };
    decoded.filter(|_| supported)
}

fn batching(
    cx: &mut Cx<'_>,
    obj: &mut Obj<'_>,
    default_batch: u32,
) -> (Option<u32>, Option<Duration>) {
    let batch_size = obj.take("batch_size").map_or(Some(default_batch), |f| {
        f.int(&mut cx.sink, 1..=limits::MAX_BATCH_SIZE)
    });
    let window = obj
        .take("batching_window")
        .map_or(Some(Duration::ZERO), |f| {
            f.duration(&mut cx.sink, Duration::ZERO..=limits::MAX_BATCHING_WINDOW)
        });
    (batch_size, window)
}

fn table_source(
    cx: &mut Cx<'_>,
    source: &Str,
    table: &str,
    obj: &mut Obj<'_>,
    functions: &BTreeMap<String, FunctionSpec>,
    tables: &BTreeMap<String, TableSpec>,
) -> Option<EventSource> {
    let starting_position =
        obj.take("starting_position")
            .map_or(Some(StartingPosition::Latest), |f| {
                let s = f.string(&mut cx.sink, "\"latest\" or \"trim_horizon\"")?;
                match s.value.to_ascii_lowercase().as_str() {
                    "latest" => Some(StartingPosition::Latest),
                    "trim_horizon" => Some(StartingPosition::TrimHorizon),
                    _ => {
                        s.reject(&mut cx.sink, "\"latest\" or \"trim_horizon\"");
                        None
                    }
                }
            });
    let (batch_size, batching_window) = batching(cx, obj, limits::DEFAULT_BATCH_SIZE);
    let bisect_on_error = obj
        .take("bisect_on_error")
        .map_or(Some(false), |f| f.bool(&mut cx.sink));
    let on_failure = match obj.take("on_failure") {
        None => Some(None),
        Some(f) => f
            .string(&mut cx.sink, "the name of a function of the app")
            .and_then(|f| {
                if !cx.declared_functions.contains(&f.value) {
                    let known: Vec<&str> =
                        cx.declared_functions.iter().map(String::as_str).collect();
                    f.reject(&mut cx.sink, declared("function", &known));
                }
                // A declared function with errors of its own has been reported already.
                functions.contains_key(&f.value).then_some(Some(f.value))
            }),
    };
    match tables.get(table) {
        None if cx.declared_tables.contains(table) => return None,
        None => {
            let known: Vec<&str> = cx.declared_tables.iter().map(String::as_str).collect();
            source.reject(
                &mut cx.sink,
                format!("`table:` and {}", declared("table", &known)),
            );
            return None;
        }
        Some(spec) if spec.stream.is_none() => {
            source.reject(
                &mut cx.sink,
                format!("a table with a stream: set `stream` on [tables.{table}]"),
            );
            return None;
        }
        Some(_) => {}
    }
    Some(EventSource::Table {
        table: table.to_owned(),
        starting_position: starting_position?,
        batch_size: batch_size?,
        batching_window: batching_window?,
        bisect_on_error: bisect_on_error?,
        on_failure: on_failure?,
    })
}

fn bus_source(cx: &mut Cx<'_>, source: &Str, bus: &str, obj: &mut Obj<'_>) -> Option<EventSource> {
    let bus_ok = (1..=256).contains(&bus.len())
        && bus
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'));
    if !bus_ok {
        source.reject(
            &mut cx.sink,
            "`bus:` and a bus name of 1 to 256 letters, digits, `.`, `_`, `-` or `/`",
        );
    }
    let expected =
        "an event pattern such as { source = [\"my.app\"], detail-type = [\"UserRegistered\"] }";
    let pattern = obj
        .require(&mut cx.sink, "pattern", expected)
        .and_then(|f| {
            let span = f.span.clone();
            let path = f.path.clone();
            let found = f.found();
            let obj = f.table(&mut cx.sink, expected)?;
            let json = obj.into_json();
            match pattern_problem(&json) {
                Some(problem) => {
                    cx.sink
                        .push(span, path, found, format!("{expected}: {problem}"));
                    None
                }
                None => Some(json),
            }
        });
    bus_ok.then_some(())?;
    Some(EventSource::Bus {
        bus: bus.to_owned(),
        pattern: pattern?,
    })
}

/// EventBridge patterns are objects whose leaves are non-empty arrays of values or
/// content filters.
fn pattern_problem(pattern: &serde_json::Value) -> Option<String> {
    use serde_json::Value as J;
    let J::Object(map) = pattern else {
        return Some("a pattern is a table".to_owned());
    };
    if map.is_empty() {
        return Some("a pattern matches on at least one field".to_owned());
    }
    for (key, value) in map {
        match value {
            J::Object(_) => {
                if let Some(problem) = pattern_problem(value) {
                    return Some(problem);
                }
            }
            J::Array(items) if !items.is_empty() => {}
            _ => return Some(format!("`{key}` must be an array of values to match")),
        }
    }
    None
}

fn queue_source(
    cx: &mut Cx<'_>,
    source: &Str,
    queue: &str,
    obj: &mut Obj<'_>,
) -> Option<EventSource> {
    let base = queue.strip_suffix(".fifo").unwrap_or(queue);
    let ok = (1..=80).contains(&queue.len())
        && !base.is_empty()
        && base
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    let fifo = queue.ends_with(".fifo");
    let (batch_size, batching_window) = batching(cx, obj, DEFAULT_QUEUE_BATCH_SIZE);
    if fifo && batch_size.is_some_and(|n| n > MAX_FIFO_BATCH_SIZE) {
        source.reject(
            &mut cx.sink,
            format!(
                "a batch_size of at most {MAX_FIFO_BATCH_SIZE} for a FIFO queue (Lambda's limit)"
            ),
        );
        return None;
    }
    if !ok {
        source.reject(
            &mut cx.sink,
            "`queue:` and a queue name of 1 to 80 letters, digits, `_` or `-` (optionally ending in .fifo)",
        );
        return None;
    }
    Some(EventSource::Queue {
        queue: queue.to_owned(),
        batch_size: batch_size?,
        batching_window: batching_window?,
    })
}

/// Parses a schedule expression after `schedule:`; the error says what was expected.
pub(crate) fn schedule(s: &str) -> Result<ScheduleExpression, String> {
    if let Some(inner) = s.strip_prefix("rate(").and_then(|r| r.strip_suffix(')')) {
        let expected = "`rate(N unit)` with N a positive integer and unit minute, minutes, hour, hours, day or days (singular only for 1)";
        let Some((n, unit)) = inner.split_once(' ') else {
            return Err(expected.to_owned());
        };
        let n: u64 = n.parse().ok().filter(|n| *n > 0).ok_or(expected)?;
        let (seconds, singular) = match unit {
            "minute" => (60, true),
            "minutes" => (60, false),
            "hour" => (3600, true),
            "hours" => (3600, false),
            "day" => (86_400, true),
            "days" => (86_400, false),
            _ => return Err(expected.to_owned()),
        };
        if singular != (n == 1) {
            return Err(expected.to_owned());
        }
        let every = n.checked_mul(seconds).ok_or(expected)?;
        return Ok(ScheduleExpression::Rate {
            every: Duration::from_secs(every),
        });
    }
    if let Some(inner) = s.strip_prefix("cron(").and_then(|r| r.strip_suffix(')')) {
        let expected = "`cron(minutes hours day-of-month month day-of-week year)` with `?` in day-of-month or day-of-week";
        let fields: Vec<&str> = inner.split_whitespace().collect();
        let Ok(fields) = <[&str; 6]>::try_from(fields) else {
            return Err(expected.to_owned());
        };
        // The scheduler's own parser, so that what validates is what runs.
        if let Err(e) = nimbus_core::cron::Cron::from_fields(&fields) {
            return Err(format!("{expected}: {e}"));
        }
        return Ok(ScheduleExpression::Cron {
            fields: fields.map(str::to_owned),
        });
    }
    Err("`schedule:rate(...)` or `schedule:cron(...)`".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(
            schedule("rate(1 minute)"),
            Ok(ScheduleExpression::Rate {
                every: Duration::from_secs(60)
            })
        );
        assert_eq!(
            schedule("rate(2 hours)"),
            Ok(ScheduleExpression::Rate {
                every: Duration::from_secs(7200)
            })
        );
        assert!(schedule("rate(1 minutes)").is_err());
        assert!(schedule("rate(5 minute)").is_err());
        assert!(schedule("rate(0 days)").is_err());
        assert!(schedule("rate(5 weeks)").is_err());
    }

    #[test]
    fn crons() {
        assert!(schedule("cron(0 12 * * ? *)").is_ok());
        assert!(schedule("cron(0/15 * ? * MON-FRI *)").is_ok());
        assert!(schedule("cron(0 12 * * * *)").is_err());
        assert!(schedule("cron(0 12 * *)").is_err());
        assert!(schedule("cron(0 12 % * ? *)").is_err());
        assert!(schedule("cron(99 99 ? * * *)").is_err());
        assert!(schedule("cron(0 0 32 * ? *)").is_err());
        assert!(schedule("cron(0 10 ? * 6#3 *)").is_ok());
        assert!(schedule("cron(0/0 * * * ? *)").is_err());
        // What the scheduler refuses, validation refuses: a week day numbered 0, a step
        // longer than its field, a day-of-month range that would wrap, unknown names.
        for refused in [
            "cron(0 10 ? * 0#1 *)",
            "cron(0/90 12 ? * MON *)",
            "cron(0 0 31-1 * ? *)",
            "cron(0 0 ? * MON-FOO *)",
        ] {
            assert!(schedule(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn patterns() {
        let ok = serde_json::json!({"source": ["a"], "detail": {"x": [{"prefix": "y"}]}});
        assert_eq!(pattern_problem(&ok), None);
        assert!(pattern_problem(&serde_json::json!({"source": "a"})).is_some());
        assert!(pattern_problem(&serde_json::json!({})).is_some());
    }
}
