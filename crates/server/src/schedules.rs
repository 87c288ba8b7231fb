//! The app's schedules: built when the node binds, fired by a task while it runs.
//!
//! Ticks go into the async queue, so the async worker delivers them (through the
//! dispatcher, which starts an instance of a function scaled to zero), retries them and
//! dead-letters them. On a single node the schedules' record is `schedules.redb` in the
//! data directory; the node holding the directory holds every schedule's lease.

use std::{path::Path, sync::Arc};

use nimbus_core::{AppSpec, EventSource};
use nimbus_events::{AsyncQueue, LocalLease, ScheduleError, Scheduler, Schedules, SystemClock};

/// The schedules' record in the data directory.
const SCHEDULES_FILE: &str = "schedules.redb";

/// The schedules `app` declares, firing into `queue` in `region`, or `None` when it
/// declares none.
///
/// # Errors
/// When an expression is not valid or the record cannot be opened.
pub(crate) fn build(
    app: Option<&AppSpec>,
    data_dir: &Path,
    queue: &Arc<AsyncQueue>,
    region: &str,
) -> Result<Option<Schedules>, ScheduleError> {
    let Some(app) = app.filter(|app| {
        app.events
            .iter()
            .any(|e| matches!(e.source, EventSource::Schedule(_)))
    }) else {
        return Ok(None);
    };
    let lease = LocalLease::open(&data_dir.join(SCHEDULES_FILE))?;
    Schedules::new(app, Arc::clone(queue), Arc::new(lease), region).map(Some)
}

/// Starts firing `schedules` on the system clock.
pub(crate) fn start(schedules: Option<Schedules>) -> Option<Scheduler> {
    schedules.map(|s| Scheduler::start(s, Arc::new(SystemClock)))
}

/// Stops the task, after the tick it may be firing.
pub(crate) async fn stop(scheduler: Option<Scheduler>) {
    if let Some(scheduler) = scheduler {
        scheduler.stop().await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use nimbus_core::{EventSpec, RetryPolicy, ScheduleExpression, limits};

    use super::*;

    fn app(expression: ScheduleExpression) -> AppSpec {
        let mut app = AppSpec::named("shop");
        app.events.push(EventSpec {
            source: EventSource::Schedule(expression),
            function: "report".to_owned(),
            retry: RetryPolicy {
                max_retries: limits::DEFAULT_MAX_RETRIES,
                max_event_age: limits::DEFAULT_MAX_EVENT_AGE,
            },
            enabled: true,
        });
        app
    }

    #[tokio::test]
    async fn apps_with_schedules_get_a_record_in_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Arc::new(AsyncQueue::open(&dir.path().join("events.redb")).unwrap());
        assert!(
            build(None, dir.path(), &queue, "us-east-1")
                .unwrap()
                .is_none()
        );
        assert!(
            build(Some(&AppSpec::named("x")), dir.path(), &queue, "us-east-1")
                .unwrap()
                .is_none()
        );
        assert!(!dir.path().join(SCHEDULES_FILE).exists());
        let rate = app(ScheduleExpression::Rate {
            every: Duration::from_secs(60),
        });
        let schedules = build(Some(&rate), dir.path(), &queue, "us-east-1")
            .unwrap()
            .unwrap();
        assert_eq!(schedules.rules().collect::<Vec<_>>(), ["shop-report-1"]);
        assert!(dir.path().join(SCHEDULES_FILE).exists());
        drop(schedules);
        let invalid = app(ScheduleExpression::Cron {
            fields: ["0", "0", "?", "*", "2#6", "*"].map(str::to_owned),
        });
        let err = build(Some(&invalid), dir.path(), &queue, "us-east-1").unwrap_err();
        assert!(err.to_string().contains("occurrence from 1 to 5"), "{err}");
    }
}
