//! Reuse and per-request instances, init reports, concurrency.

use nimbus_core::InstanceMode;

use crate::support::{body, get, invoke, spec, start};

#[tokio::test]
async fn a_reused_instance_keeps_its_globals() {
    let mut instance = start(spec("reuse", InstanceMode::Reuse)).await;
    for n in 1..=3 {
        let report = invoke(&mut instance, &format!("r{n}"), get("/count")).await;
        assert!(report.reusable);
        assert_eq!(body(&report)["count"], n);
        assert_eq!(report.init_duration.is_some(), n == 1);
        // Instantiated at start, not in the invocation: the dispatcher times the run.
        assert!(report.run_duration.is_none());
        assert!(
            report
                .max_memory_mb
                .is_some_and(|mb| (1..=128).contains(&mb))
        );
    }
    assert!(instance.is_alive());
    instance.stop().await;
}

#[tokio::test]
async fn a_per_request_instance_starts_afresh_every_time() {
    let mut instance = start(spec("fresh", InstanceMode::PerRequest)).await;
    for n in 1..=3 {
        let report = invoke(&mut instance, &format!("r{n}"), get("/count")).await;
        assert!(report.reusable);
        assert_eq!(body(&report)["count"], 1);
        assert!(report.init_duration.is_some());
        // Instantiated inside the invocation: the run is timed apart from it, so that
        // `Duration` leaves out what `Init Duration` reports.
        assert!(report.run_duration.is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_invocations_on_separate_instances_succeed() {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..64 {
        tasks.spawn(async move {
            let mut instance = start(spec("many", InstanceMode::Reuse)).await;
            let report = invoke(&mut instance, &format!("c{i}"), get("/count")).await;
            // Every instance has its own globals.
            assert_eq!(body(&report)["count"], 1);
            instance.stop().await;
        });
    }
    let mut done = 0;
    while let Some(joined) = tasks.join_next().await {
        joined.expect("the invocation succeeds");
        done += 1;
    }
    assert_eq!(done, 64);
}
