//! Durable enqueues per second at 64 concurrent callers: `cargo bench -p nimbus-events`.
//!
//! Every enqueue returns only after its commit is on disk; the figure shows what group
//! commit makes of the disk's fsync rate.

#![allow(missing_docs, clippy::unwrap_used)]

use std::{sync::Arc, time::Instant};

use nimbus_events::{AsyncQueue, EventMeta};

const CALLERS: usize = 64;
const PER_CALLER: usize = 2_000;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let queue = Arc::new(AsyncQueue::open(&dir.path().join("events.redb")).unwrap());
    let payload = br#"{"order":{"id":"7f3c","items":[1,2,3],"total":42.5}}"#.to_vec();
    let started = Instant::now();
    runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..CALLERS {
            let queue = Arc::clone(&queue);
            let payload = payload.clone();
            tasks.spawn(async move {
                for _ in 0..PER_CALLER {
                    queue
                        .enqueue("orders", payload.clone(), EventMeta::default())
                        .await
                        .unwrap();
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    });
    let elapsed = started.elapsed();
    let total = CALLERS * PER_CALLER;
    println!(
        "{total} durable enqueues from {CALLERS} callers in {:.2} s: {:.0} enqueues/s",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(queue.pending("orders").unwrap(), total);
}
