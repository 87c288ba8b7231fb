//! Schedules: `[[events]] source = "schedule:rate(...)" | "schedule:cron(...)"`.
//!
//! A [`Scheduler`] is one tokio task per node that, for each of the app's schedules,
//! computes the next fire time ([`Timetable`], in UTC), sleeps until it, and enqueues an
//! EventBridge `Scheduled Event` ([`scheduled_event`]) for the target function in the
//! [`AsyncQueue`](crate::AsyncQueue): delivery, retries and the dead-letter store are the
//! async queue's. It records durably, per schedule, which fire times are settled
//! ([`ScheduleLease`], [`LocalLease`] on a single node).
//!
//! - A rate counts from when the schedule was first seen (EventBridge counts from the
//!   rule's creation) and keeps that phase across restarts: the anchor is recorded.
//! - Missed runs: when one or more fire times passed while the node was down (or asleep),
//!   the schedule fires **once** at startup, for the latest of them, then continues on its
//!   timetable. The event's `time` is that latest missed fire time.
//! - A disabled schedule (`enabled = false`) does not fire; its ticks are settled unfired,
//!   so that enabling it later does not fire for the time it was disabled.
//! - Retries: once queued, a tick's event is retried and dead-lettered by the function's
//!   async policy (Lambda's retries of an event EventBridge handed over); the schedule's
//!   own [`RetryPolicy`](nimbus_core::RetryPolicy) bounds how long a tick whose event
//!   cannot be enqueued is tried again, with a backoff from 1 s doubling to 60 s, before it
//!   is given up (EventBridge's retry policy).
//! - Delivery is at least once: a crash between the enqueue and the record fires that
//!   tick again after the restart. The event's `id` ([`tick_id`]) is the same each time a
//!   tick fires, and `resources[0]` and `time` identify the tick too.
//!
//! Everything time-related takes the time as an argument or through a [`Clock`], so that
//! tests run without waiting.

mod lease;
mod runner;

use std::time::{Duration, UNIX_EPOCH};

use nimbus_core::ScheduleExpression;
use serde::Serialize;

pub use lease::{LocalLease, ScheduleLease, ScheduleState};
pub use nimbus_core::cron::{Cron, CronError};
pub use runner::{Fired, Scheduler, Schedules};

use crate::QueueError;

/// Why schedules cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// A schedule's expression is not valid.
    #[error("schedule {rule} ({expression}): {source}")]
    Expression {
        /// The schedule's rule name.
        rule: String,
        /// The expression as written.
        expression: String,
        /// What is wrong with it.
        #[source]
        source: CronError,
    },
    /// The schedule record could not be read or written; nothing changed.
    #[error("schedule store: {0}")]
    Storage(String),
    /// The tick's event could not be enqueued.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Where the time comes from.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch, now.
    fn now_ms(&self) -> u64;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        crate::now_ms()
    }
}

/// When a schedule fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timetable {
    /// Every `every_ms` from the schedule's anchor.
    Rate {
        /// The period in ms (at least a minute).
        every_ms: u64,
    },
    /// At the minutes a cron expression matches.
    Cron(Box<Cron>),
}

impl Timetable {
    /// The timetable of an expression.
    ///
    /// # Errors
    /// When a cron expression is not valid (a rate always is).
    pub fn new(expression: &ScheduleExpression) -> Result<Timetable, CronError> {
        match expression {
            ScheduleExpression::Rate { every } => Ok(Timetable::Rate {
                every_ms: u64::try_from(every.as_millis()).unwrap_or(u64::MAX).max(1),
            }),
            ScheduleExpression::Cron { fields } => {
                Cron::from_fields(fields).map(|c| Timetable::Cron(Box::new(c)))
            }
        }
    }

    /// The first fire time strictly after `after_ms`, for a schedule anchored at
    /// `anchor_ms` (a rate fires at the anchor plus whole periods, never at the anchor
    /// itself); `None` when it never fires again.
    pub fn next_after(&self, anchor_ms: u64, after_ms: u64) -> Option<u64> {
        match self {
            Timetable::Rate { every_ms } => {
                let periods = after_ms.saturating_sub(anchor_ms) / every_ms + 1;
                anchor_ms.checked_add(periods.checked_mul(*every_ms)?)
            }
            Timetable::Cron(cron) => cron.next_after(after_ms),
        }
    }

    /// The last fire time at or before `at_ms`, for a schedule anchored at `anchor_ms`;
    /// `None` when there is none.
    pub fn last_at_or_before(&self, anchor_ms: u64, at_ms: u64) -> Option<u64> {
        match self {
            Timetable::Rate { every_ms } => {
                let periods = at_ms.checked_sub(anchor_ms)? / every_ms;
                (periods > 0).then(|| anchor_ms + periods * every_ms)
            }
            Timetable::Cron(cron) => cron.last_at_or_before(at_ms),
        }
    }
}

/// An expression as EventBridge writes it: `rate(5 minutes)`, `cron(0 12 * * ? *)`.
pub fn describe(expression: &ScheduleExpression) -> String {
    match expression {
        ScheduleExpression::Rate { every } => {
            let secs = every.as_secs();
            let (n, unit) = if secs % 86_400 == 0 {
                (secs / 86_400, "day")
            } else if secs % 3600 == 0 {
                (secs / 3600, "hour")
            } else {
                (secs / 60, "minute")
            };
            format!("rate({n} {unit}{})", if n == 1 { "" } else { "s" })
        }
        ScheduleExpression::Cron { fields } => format!("cron({})", fields.join(" ")),
    }
}

/// The account in the ARNs and events Nimbus makes.
pub(crate) const ACCOUNT: &str = "000000000000";

/// The ARN of a schedule's rule.
pub fn rule_arn(region: &str, rule: &str) -> String {
    format!("arn:aws:events:{region}:{ACCOUNT}:rule/{rule}")
}

/// The id of the event of the tick at `time_ms` of the rule `rule_arn`: the same each time
/// that tick fires (a crash between the enqueue and its record fires it again), so that a
/// consumer can tell a repeat by the event's `id`. A UUID of RFC 9562's version 8 (custom
/// layout): the tick's time in milliseconds in the first 48 bits, where a version 7 has
/// its time, and the first 64 bits of the SHA-256 of the rule's ARN in the last 64 (less
/// the variant's 2 bits).
pub fn tick_id(rule_arn: &str, time_ms: u64) -> uuid::Uuid {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(rule_arn.as_bytes());
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&time_ms.to_be_bytes()[2..]);
    bytes[8..].copy_from_slice(&digest[..8]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// The event a function receives when its schedule fires.
#[derive(Serialize)]
struct ScheduledEvent<'a> {
    version: &'static str,
    id: String,
    #[serde(rename = "detail-type")]
    detail_type: &'static str,
    source: &'static str,
    account: &'static str,
    time: String,
    region: &'a str,
    resources: [&'a str; 1],
    detail: serde_json::Map<String, serde_json::Value>,
}

/// The EventBridge `Scheduled Event` for a tick at `time_ms` of the rule `rule_arn`, as
/// JSON bytes: `{"version":"0","id":..,"detail-type":"Scheduled Event","source":"aws.events",
/// "account":"000000000000","time":"2026-11-27T12:00:00Z","region":..,"resources":[rule_arn],
/// "detail":{}}`.
pub fn scheduled_event(id: uuid::Uuid, time_ms: u64, region: &str, rule_arn: &str) -> Vec<u8> {
    let time = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(time_ms));
    let event = ScheduledEvent {
        version: "0",
        id: id.hyphenated().to_string(),
        detail_type: "Scheduled Event",
        source: "aws.events",
        account: ACCOUNT,
        time: time.to_string(),
        region,
        resources: [rule_arn],
        detail: serde_json::Map::new(),
    };
    // A struct of strings always serializes.
    serde_json::to_vec(&event).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_count_whole_periods_from_their_anchor() {
        let t = Timetable::new(&ScheduleExpression::Rate {
            every: Duration::from_secs(300),
        })
        .unwrap();
        let anchor = 1_000_000;
        let p = 300_000;
        assert_eq!(t.next_after(anchor, anchor), Some(anchor + p));
        assert_eq!(t.next_after(anchor, anchor + p - 1), Some(anchor + p));
        assert_eq!(t.next_after(anchor, anchor + p), Some(anchor + 2 * p));
        assert_eq!(
            t.next_after(anchor, anchor + 7 * p + 5),
            Some(anchor + 8 * p)
        );
        assert_eq!(t.last_at_or_before(anchor, anchor + p - 1), None);
        assert_eq!(t.last_at_or_before(anchor, anchor + p), Some(anchor + p));
        assert_eq!(
            t.last_at_or_before(anchor, anchor + 7 * p + 5),
            Some(anchor + 7 * p)
        );
        assert_eq!(t.last_at_or_before(anchor, anchor - 1), None);
    }

    #[test]
    fn expressions_are_described_as_eventbridge_writes_them() {
        let rate = |secs| {
            describe(&ScheduleExpression::Rate {
                every: Duration::from_secs(secs),
            })
        };
        assert_eq!(rate(60), "rate(1 minute)");
        assert_eq!(rate(300), "rate(5 minutes)");
        assert_eq!(rate(3600), "rate(1 hour)");
        assert_eq!(rate(7200), "rate(2 hours)");
        assert_eq!(rate(86_400), "rate(1 day)");
        assert_eq!(rate(90 * 60), "rate(90 minutes)");
        let cron = ScheduleExpression::Cron {
            fields: ["0", "12", "*", "*", "?", "*"].map(str::to_owned),
        };
        assert_eq!(describe(&cron), "cron(0 12 * * ? *)");
    }

    #[test]
    fn a_ticks_id_depends_on_its_rule_and_time_alone() {
        let arn = rule_arn("us-east-1", "shop-report-1");
        let noon = 1_764_504_000_000;
        let id = tick_id(&arn, noon);
        assert_eq!(id, tick_id(&arn, noon), "the same tick, the same id");
        assert_eq!(id.get_version_num(), 8);
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        // The time leads, as in a version 7.
        assert_eq!(id.as_u128() >> 80, u128::from(noon));
        assert_ne!(id, tick_id(&arn, noon + 60_000));
        assert_ne!(id, tick_id(&rule_arn("us-east-1", "shop-report-2"), noon));
        assert_ne!(id, tick_id(&rule_arn("eu-west-1", "shop-report-1"), noon));
        // Fixed by its inputs alone, on every node and in every version.
        assert_eq!(id.to_string(), "019ad4a2-5600-8000-a93b-2ff1f405be7c");
    }

    #[test]
    fn the_payload_is_an_eventbridge_scheduled_event() {
        let id = uuid::Uuid::new_v4();
        // 2026-11-27T12:00:00Z.
        let time_ms = 1_795_780_800_000;
        let arn = rule_arn("eu-west-1", "shop-report-1");
        let bytes = scheduled_event(id, time_ms, "eu-west-1", &arn);
        let event: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            event,
            serde_json::json!({
                "version": "0",
                "id": id.to_string(),
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": "000000000000",
                "time": "2026-11-27T12:00:00Z",
                "region": "eu-west-1",
                "resources": ["arn:aws:events:eu-west-1:000000000000:rule/shop-report-1"],
                "detail": {}
            })
        );
        // Fields in EventBridge's order.
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with(r#"{"version":"0","id":""#), "{text}");
        assert!(text.ends_with(r#""detail":{}}"#), "{text}");
    }
}
