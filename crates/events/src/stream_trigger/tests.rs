//! Triggers over a fake change source and a fake dispatcher.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use nimbus_core::{
    BoxFuture, EventSource, EventSpec, Invoke, InvokeError, InvokeOptions, InvokeResult, Outcome,
    RetryPolicy, StartingPosition,
};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::*;
use crate::queue::now_ms;

/// A table's stream in memory.
struct FakeSource {
    changes: Mutex<Vec<Change>>,
    /// The current stream's label: [`FakeSource::replace`] makes a new stream.
    label: Mutex<u64>,
    commits: watch::Sender<u64>,
}

impl FakeSource {
    fn new() -> Arc<FakeSource> {
        Arc::new(FakeSource {
            changes: Mutex::new(Vec::new()),
            label: Mutex::new(1),
            commits: watch::channel(0).0,
        })
    }

    /// Commits `n` changes (one commit), created at `created_ms`; returns their sequence
    /// numbers.
    fn commit_at(&self, n: usize, created_ms: u64) -> Vec<u64> {
        let arn = self.arn();
        let mut changes = self.changes.lock().unwrap();
        let mut added = Vec::new();
        for _ in 0..n {
            let seq = changes.last().map_or(1, |c| c.sequence + 1);
            changes.push(Change {
                sequence: seq,
                created_ms,
                record: json!({
                    "eventSourceARN": arn,
                    "eventName": "INSERT",
                    "dynamodb": {
                        "Keys": { "pk": { "S": format!("k{seq}") } },
                        "SequenceNumber": format!("{seq:021}"),
                    },
                }),
                trace: None,
            });
            added.push(seq);
        }
        drop(changes);
        self.commits.send_modify(|n| *n += 1);
        added
    }

    fn commit(&self, n: usize) -> Vec<u64> {
        self.commit_at(n, now_ms())
    }

    fn arn(&self) -> String {
        let label = *self.label.lock().unwrap();
        format!("arn:aws:dynamodb:us-east-1:000000000000:table/Users/stream/{label}")
    }

    /// The table deleted and created again: a new, empty stream, numbered from 1.
    fn replace(&self) {
        let mut changes = self.changes.lock().unwrap();
        *self.label.lock().unwrap() += 1;
        changes.clear();
    }
}

impl ChangeSource for FakeSource {
    fn stream(&self, _table: &str) -> Option<StreamName> {
        Some(StreamName {
            arn: self.arn(),
            shard_id: "shardId-00000000000000000001-00000001".to_owned(),
        })
    }

    fn read<'a>(
        &'a self,
        _table: &'a str,
        after: Option<u64>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Change>, ChangeError>> {
        let out = self
            .changes
            .lock()
            .unwrap()
            .iter()
            .filter(|c| after.is_none_or(|a| c.sequence > a))
            .take(limit)
            .cloned()
            .collect();
        Box::pin(async move { Ok(out) })
    }

    fn latest<'a>(&'a self, _table: &'a str) -> BoxFuture<'a, Result<Option<u64>, ChangeError>> {
        let latest = self.changes.lock().unwrap().last().map(|c| c.sequence);
        Box::pin(async move { Ok(latest) })
    }

    fn commits(&self, _table: &str) -> watch::Receiver<u64> {
        self.commits.subscribe()
    }
}

type Behaviour = dyn Fn(&[u64]) -> Result<Outcome, InvokeError> + Send + Sync;

/// A dispatcher that records the sequence numbers of each batch and answers as told.
struct FakeInvoke {
    calls: Mutex<Vec<(String, Vec<u64>)>>,
    behaviour: Box<Behaviour>,
}

impl FakeInvoke {
    fn new(
        behaviour: impl Fn(&[u64]) -> Result<Outcome, InvokeError> + Send + Sync + 'static,
    ) -> Arc<FakeInvoke> {
        Arc::new(FakeInvoke {
            calls: Mutex::new(Vec::new()),
            behaviour: Box::new(behaviour),
        })
    }

    fn ok() -> Arc<FakeInvoke> {
        FakeInvoke::new(|_| Ok(Outcome::Response(b"null".to_vec())))
    }

    fn batches(&self) -> Vec<Vec<u64>> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| b.clone())
            .collect()
    }

    fn delivered(&self) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| b.len())
            .sum()
    }
}

impl Invoke for FakeInvoke {
    fn invoke(
        &self,
        function: &str,
        payload: Vec<u8>,
        options: InvokeOptions,
    ) -> BoxFuture<'_, Result<InvokeResult, InvokeError>> {
        let event: Value = serde_json::from_slice(&payload).unwrap();
        let seqs: Vec<u64> = event["Records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r["dynamodb"]["SequenceNumber"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        let outcome = (self.behaviour)(&seqs);
        self.calls.lock().unwrap().push((function.to_owned(), seqs));
        Box::pin(async move {
            Ok(InvokeResult {
                request_id: options.request_id.unwrap_or_default(),
                outcome: outcome?,
                log_tail: String::new(),
            })
        })
    }
}

fn fails() -> Result<Outcome, InvokeError> {
    Ok(Outcome::platform_error("Error", "projection failed"))
}

struct Spec {
    position: StartingPosition,
    batch_size: u32,
    window: Duration,
    bisect: bool,
    on_failure: Option<&'static str>,
    max_retries: u32,
    enabled: bool,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            position: StartingPosition::TrimHorizon,
            batch_size: 100,
            window: Duration::ZERO,
            bisect: false,
            on_failure: None,
            max_retries: 2,
            enabled: true,
        }
    }
}

impl Spec {
    fn event(&self) -> EventSpec {
        EventSpec {
            source: EventSource::Table {
                table: "Users".to_owned(),
                starting_position: self.position,
                batch_size: self.batch_size,
                batching_window: self.window,
                bisect_on_error: self.bisect,
                on_failure: self.on_failure.map(str::to_owned),
            },
            function: "project".to_owned(),
            retry: RetryPolicy {
                max_retries: self.max_retries,
                max_event_age: Duration::from_secs(3600),
            },
            enabled: self.enabled,
        }
    }
}

/// A node's worth of state that outlives restarts of the triggers.
struct Node {
    _dir: tempfile::TempDir,
    source: Arc<FakeSource>,
    queue: Arc<AsyncQueue>,
    checkpoints: Arc<Checkpoints>,
}

const ID: &str = "Users/project";

impl Node {
    fn new() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let queue = Arc::new(AsyncQueue::open(&dir.path().join("events.redb")).unwrap());
        let checkpoints = Arc::new(Checkpoints::open(&dir.path().join("triggers.redb")).unwrap());
        Node {
            _dir: dir,
            source: FakeSource::new(),
            queue,
            checkpoints,
        }
    }

    fn checkpoints(&self) -> Arc<Checkpoints> {
        Arc::clone(&self.checkpoints)
    }

    fn start(&self, spec: &Spec, invoker: &Arc<FakeInvoke>) -> StreamTriggers {
        StreamTriggers::start(
            &[spec.event()],
            Arc::clone(&self.source) as _,
            Arc::clone(invoker) as _,
            Arc::clone(&self.queue),
            self.checkpoints(),
            TriggerConfig {
                retry_base: Duration::from_millis(1),
                retry_cap: Duration::from_millis(5),
                poll_interval: Duration::from_millis(20),
                region: "us-east-1".to_owned(),
            },
        )
    }

    /// The on-failure records queued for `function`.
    async fn on_failure_records(&self, function: &str) -> Vec<Value> {
        let events = self
            .queue
            .lease(function, now_ms(), 100, now_ms() + 60_000)
            .await
            .unwrap();
        events
            .iter()
            .map(|e| serde_json::from_slice(&e.payload).unwrap())
            .collect()
    }
}

/// Waits (up to a generous bound) until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

/// Lets a running trigger do what it would do next (nothing, where a test says so).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(150)).await;
}

const GRACE: Duration = Duration::from_secs(5);

#[tokio::test]
async fn batches_hold_at_most_batch_size_records_in_order() {
    let node = Node::new();
    node.source.commit(7);
    let invoker = FakeInvoke::ok();
    let triggers = node.start(
        &Spec {
            batch_size: 3,
            ..Spec::default()
        },
        &invoker,
    );
    assert_eq!(triggers.running().collect::<Vec<_>>(), [ID]);
    until("all are delivered", || invoker.delivered() == 7).await;
    assert_eq!(invoker.batches(), [vec![1, 2, 3], vec![4, 5, 6], vec![7]]);
    assert!(
        invoker
            .calls
            .lock()
            .unwrap()
            .iter()
            .all(|(f, _)| f == "project")
    );
    // A later commit is delivered from where the trigger stands.
    node.source.commit(2);
    until("the new ones are delivered", || invoker.delivered() == 9).await;
    assert_eq!(invoker.batches()[3], [8, 9]);
    triggers.stop(GRACE).await;
    assert_eq!(node.checkpoints().get(ID).unwrap(), Some(9));
}

#[tokio::test]
async fn a_batching_window_waits_for_the_batch_to_fill() {
    let node = Node::new();
    let invoker = FakeInvoke::ok();
    // A window far longer than the test: the batch goes when it is full.
    let triggers = node.start(
        &Spec {
            batch_size: 3,
            window: Duration::from_secs(300),
            ..Spec::default()
        },
        &invoker,
    );
    node.source.commit(1);
    settle().await;
    node.source.commit(1);
    settle().await;
    assert!(invoker.batches().is_empty(), "the batch is not full yet");
    node.source.commit(2);
    until("a full batch is delivered", || {
        !invoker.batches().is_empty()
    })
    .await;
    assert_eq!(invoker.batches(), [vec![1, 2, 3]]);
    triggers.stop(GRACE).await;

    // With a short window, a batch that does not fill goes when the window ends.
    let node = Node::new();
    let invoker = FakeInvoke::ok();
    let triggers = node.start(
        &Spec {
            batch_size: 3,
            window: Duration::from_millis(50),
            ..Spec::default()
        },
        &invoker,
    );
    node.source.commit(1);
    until("the lone record is delivered", || invoker.delivered() == 1).await;
    assert_eq!(invoker.batches(), [vec![1]]);
    triggers.stop(GRACE).await;
}

#[tokio::test]
async fn without_a_window_each_read_goes_at_once() {
    let node = Node::new();
    let invoker = FakeInvoke::ok();
    let triggers = node.start(
        &Spec {
            batch_size: 10,
            ..Spec::default()
        },
        &invoker,
    );
    node.source.commit(1);
    until("the first is delivered", || invoker.delivered() == 1).await;
    node.source.commit(2);
    until("the next two are delivered", || invoker.delivered() == 3).await;
    assert_eq!(invoker.batches(), [vec![1], vec![2, 3]]);
    triggers.stop(GRACE).await;
}

#[tokio::test]
async fn failed_batches_are_retried_then_sent_to_on_failure() {
    let node = Node::new();
    node.source.commit(2);
    let invoker = FakeInvoke::new(|seqs| {
        if seqs.contains(&1) {
            fails()
        } else {
            Ok(Outcome::Response(Vec::new()))
        }
    });
    let triggers = node.start(
        &Spec {
            batch_size: 2,
            max_retries: 1,
            on_failure: Some("dlq"),
            ..Spec::default()
        },
        &invoker,
    );
    until("the batch is given up", || {
        node.checkpoints().get(ID).unwrap() == Some(2)
    })
    .await;
    // Exactly the first attempt and one retry.
    assert_eq!(invoker.batches(), [vec![1, 2], vec![1, 2]]);
    let records = node.on_failure_records("dlq").await;
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r["requestContext"]["condition"], "RetryAttemptsExhausted");
    assert_eq!(r["requestContext"]["approximateInvokeCount"], 2);
    assert_eq!(
        r["requestContext"]["functionArn"],
        "arn:aws:lambda:us-east-1:000000000000:function:project"
    );
    assert_eq!(r["responseContext"]["functionError"], "Unhandled");
    let info = &r["DDBStreamBatchInfo"];
    assert_eq!(info["batchSize"], 2);
    assert_eq!(info["startSequenceNumber"], format!("{:021}", 1));
    assert_eq!(info["endSequenceNumber"], format!("{:021}", 2));
    assert_eq!(
        info["streamArn"],
        "arn:aws:dynamodb:us-east-1:000000000000:table/Users/stream/1"
    );
    // The trigger moved past the batch.
    node.source.commit(1);
    until("the next record is delivered", || {
        invoker.batches().len() == 3
    })
    .await;
    assert_eq!(invoker.batches()[2], [3]);
    triggers.stop(GRACE).await;
}

#[tokio::test]
async fn throttles_are_retried_without_using_up_retries() {
    let node = Node::new();
    node.source.commit(1);
    let calls = Arc::new(Mutex::new(0));
    let counted = Arc::clone(&calls);
    // Throttled four times, with no retry to spare.
    let invoker = FakeInvoke::new(move |_| {
        let mut n = counted.lock().unwrap();
        *n += 1;
        if *n <= 4 {
            Err(InvokeError::Throttled(nimbus_core::ThrottleLimit::Function))
        } else {
            Ok(Outcome::Response(Vec::new()))
        }
    });
    let triggers = node.start(
        &Spec {
            max_retries: 0,
            on_failure: Some("dlq"),
            ..Spec::default()
        },
        &invoker,
    );
    until("the batch runs", || {
        node.checkpoints().get(ID).unwrap() == Some(1)
    })
    .await;
    assert_eq!(invoker.batches(), vec![vec![1]; 5]);
    assert!(node.on_failure_records("dlq").await.is_empty());
    triggers.stop(GRACE).await;
}

#[tokio::test]
async fn bisecting_isolates_the_failing_record() {
    let node = Node::new();
    node.source.commit(4);
    let invoker = FakeInvoke::new(|seqs| {
        if seqs.contains(&3) {
            fails()
        } else {
            Ok(Outcome::Response(Vec::new()))
        }
    });
    let triggers = node.start(
        &Spec {
            bisect: true,
            max_retries: 0,
            on_failure: Some("dlq"),
            ..Spec::default()
        },
        &invoker,
    );
    until("every record is done with", || {
        node.checkpoints().get(ID).unwrap() == Some(4)
    })
    .await;
    assert_eq!(
        invoker.batches(),
        [vec![1, 2, 3, 4], vec![1, 2], vec![3, 4], vec![3], vec![4]]
    );
    let records = node.on_failure_records("dlq").await;
    assert_eq!(records.len(), 1);
    let info = &records[0]["DDBStreamBatchInfo"];
    assert_eq!(info["batchSize"], 1);
    assert_eq!(info["startSequenceNumber"], format!("{:021}", 3));
    triggers.stop(GRACE).await;
}

#[tokio::test]
async fn batch_item_failures_retry_from_the_first_failed_record() {
    let node = Node::new();
    node.source.commit(4);
    let calls = Arc::new(Mutex::new(0));
    let counted = Arc::clone(&calls);
    let invoker = FakeInvoke::new(move |_| {
        let mut n = counted.lock().unwrap();
        *n += 1;
        let body = if *n == 1 {
            // Record 3 failed (and 4, which comes after it anyway).
            json!({"batchItemFailures": [{"itemIdentifier": format!("{:021}", 4)}, {"itemIdentifier": format!("{:021}", 3)}]})
        } else {
            json!({"batchItemFailures": []})
        };
        Ok(Outcome::Response(body.to_string().into_bytes()))
    });
    let checkpoints = node.checkpoints();
    let triggers = node.start(&Spec::default(), &invoker);
    until("every record is done with", || {
        checkpoints.get(ID).unwrap() == Some(4)
    })
    .await;
    assert_eq!(invoker.batches(), [vec![1, 2, 3, 4], vec![3, 4]]);
    triggers.stop(GRACE).await;
}

#[tokio::test]
async fn latest_starts_after_the_newest_record_and_keeps_that_start() {
    let node = Node::new();
    node.source.commit(3);
    let invoker = FakeInvoke::ok();
    let triggers = node.start(
        &Spec {
            position: StartingPosition::Latest,
            ..Spec::default()
        },
        &invoker,
    );
    until("the start is stored", || {
        node.checkpoints().get(ID).unwrap() == Some(3)
    })
    .await;
    settle().await;
    assert!(
        invoker.batches().is_empty(),
        "older records are not delivered"
    );
    triggers.stop(GRACE).await;
    // Written while the trigger was stopped: not skipped by the restart.
    node.source.commit(1);
    let triggers = node.start(
        &Spec {
            position: StartingPosition::Latest,
            ..Spec::default()
        },
        &invoker,
    );
    until("the new record is delivered", || invoker.delivered() == 1).await;
    assert_eq!(invoker.batches(), [vec![4]]);
    triggers.stop(GRACE).await;

    // TRIM_HORIZON reads the stream from its oldest record.
    let node = Node::new();
    node.source.commit(3);
    let invoker = FakeInvoke::ok();
    let triggers = node.start(&Spec::default(), &invoker);
    until("everything is delivered", || invoker.delivered() == 3).await;
    assert_eq!(invoker.batches(), [vec![1, 2, 3]]);
    triggers.stop(GRACE).await;
}

#[tokio::test]
async fn latest_on_an_empty_stream_delivers_the_first_record() {
    let node = Node::new();
    let invoker = FakeInvoke::ok();
    let spec = Spec {
        position: StartingPosition::Latest,
        ..Spec::default()
    };
    let triggers = node.start(&spec, &invoker);
    until("the start is stored", || {
        node.checkpoints().get(ID).unwrap() == Some(0)
    })
    .await;
    node.source.commit(1);
    until("it is delivered", || invoker.delivered() == 1).await;
    triggers.stop(GRACE).await;
}

#[tokio::test]
async fn a_restart_resumes_after_the_checkpoint() {
    let node = Node::new();
    node.source.commit(2);
    let invoker = FakeInvoke::ok();
    let triggers = node.start(&Spec::default(), &invoker);
    until("both are delivered", || invoker.delivered() == 2).await;
    triggers.stop(GRACE).await;
    node.source.commit(1);
    let triggers = node.start(&Spec::default(), &invoker);
    until("the third is delivered", || invoker.delivered() == 3).await;
    assert_eq!(invoker.batches(), [vec![1, 2], vec![3]]);
    triggers.stop(GRACE).await;
}

#[tokio::test]
async fn the_checkpoint_moves_only_after_success() {
    let node = Node::new();
    node.source.commit(2);
    // Failing with retries left: the batch is neither done with nor given up.
    let failing = FakeInvoke::new(|_| fails());
    let spec = Spec {
        max_retries: 10_000,
        ..Spec::default()
    };
    let triggers = node.start(&spec, &failing);
    until("a few attempts ran", || failing.batches().len() >= 3).await;
    triggers.stop(GRACE).await;
    assert_eq!(node.checkpoints().get(ID).unwrap(), None);
    // After a restart, the same batch is delivered again (at least once).
    let invoker = FakeInvoke::ok();
    let triggers = node.start(&spec, &invoker);
    until("it is delivered", || invoker.delivered() == 2).await;
    assert_eq!(invoker.batches(), [vec![1, 2]]);
    triggers.stop(GRACE).await;
    assert_eq!(node.checkpoints().get(ID).unwrap(), Some(2));
}

#[tokio::test]
async fn a_disabled_trigger_does_not_run_and_keeps_its_checkpoint() {
    let node = Node::new();
    node.source.commit(1);
    let invoker = FakeInvoke::ok();
    let triggers = node.start(&Spec::default(), &invoker);
    until("it is delivered", || invoker.delivered() == 1).await;
    triggers.stop(GRACE).await;

    node.source.commit(1);
    let disabled = Spec {
        enabled: false,
        ..Spec::default()
    };
    let triggers = node.start(&disabled, &invoker);
    assert_eq!(triggers.running().count(), 0);
    settle().await;
    assert_eq!(invoker.delivered(), 1);
    triggers.stop(GRACE).await;
    assert_eq!(node.checkpoints().get(ID).unwrap(), Some(1));

    let triggers = node.start(&Spec::default(), &invoker);
    until("it resumes", || invoker.delivered() == 2).await;
    assert_eq!(invoker.batches(), [vec![1], vec![2]]);
    triggers.stop(GRACE).await;
}

#[tokio::test]
async fn records_older_than_max_event_age_are_skipped() {
    let node = Node::new();
    node.source.commit_at(2, 1_000);
    node.source.commit(1);
    let invoker = FakeInvoke::ok();
    let triggers = node.start(
        &Spec {
            on_failure: Some("dlq"),
            ..Spec::default()
        },
        &invoker,
    );
    until("the fresh one is delivered", || invoker.delivered() == 1).await;
    assert_eq!(invoker.batches(), [vec![3]]);
    let records = node.on_failure_records("dlq").await;
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0]["requestContext"]["condition"],
        "RecordAgeExceeded"
    );
    assert_eq!(records[0]["DDBStreamBatchInfo"]["batchSize"], 2);
    assert!(records[0].get("responseContext").is_none());
    triggers.stop(GRACE).await;
}

#[test]
fn trigger_ids_name_table_and_function() {
    let one = Spec::default().event();
    let schedule = EventSpec {
        source: EventSource::Schedule(nimbus_core::ScheduleExpression::Rate {
            every: Duration::from_secs(60),
        }),
        ..one.clone()
    };
    let events = [one.clone(), schedule, one.clone(), one];
    let ids: Vec<String> = trigger_ids(&events).into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, ["Users/project", "Users/project#2", "Users/project#3"]);
}

#[tokio::test]
async fn a_replaced_stream_is_read_from_its_start() {
    for position in [StartingPosition::TrimHorizon, StartingPosition::Latest] {
        let node = Node::new();
        let invoker = FakeInvoke::ok();
        let spec = Spec {
            position,
            ..Spec::default()
        };
        let triggers = node.start(&spec, &invoker);
        until("the trigger runs", || {
            node.checkpoints().get(ID).unwrap().is_some()
                || position == StartingPosition::TrimHorizon
        })
        .await;
        node.source.commit(5);
        until("the first stream is delivered", || invoker.delivered() == 5).await;
        // The new stream starts at 1 again, below the checkpoint: first fewer records
        // than the checkpoint (an empty read), then more.
        node.source.replace();
        node.source.commit(3);
        until("the new stream's records are delivered", || {
            invoker.delivered() == 8
        })
        .await;
        node.source.commit(4);
        until("and its later ones", || invoker.delivered() == 12).await;
        assert_eq!(
            invoker.batches()[1..].concat(),
            [1, 2, 3, 4, 5, 6, 7],
            "{position:?}"
        );
        triggers.stop(GRACE).await;
        assert_eq!(node.checkpoints().get(ID).unwrap(), Some(7));
        assert_eq!(
            node.checkpoints().stream(ID).unwrap(),
            Some(node.source.arn())
        );
    }
}

#[tokio::test]
async fn a_stream_replaced_while_the_trigger_was_stopped_is_read_from_its_start() {
    let node = Node::new();
    let invoker = FakeInvoke::ok();
    node.source.commit(6);
    let triggers = node.start(&Spec::default(), &invoker);
    until("the first stream is delivered", || invoker.delivered() == 6).await;
    triggers.stop(GRACE).await;
    // Created again with more records than the checkpoint: without the stream's ARN
    // the trigger would take up at 7.
    node.source.replace();
    node.source.commit(9);
    let triggers = node.start(&Spec::default(), &invoker);
    until("the new stream is delivered", || invoker.delivered() == 15).await;
    assert_eq!(
        invoker.batches()[1..].concat(),
        (1..=9).collect::<Vec<u64>>()
    );
    triggers.stop(GRACE).await;
}
