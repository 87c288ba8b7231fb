//! Traps, timeouts and memory limits end the instance, never the node.

use std::time::{Duration, Instant};

use nimbus_core::{InstanceMode, Runtime as _};

use crate::support::{assert_failed, body, error, get, invoke, invoke_within, result, spec, start};

#[tokio::test]
async fn a_trap_fails_the_invocation_and_a_new_instance_works() {
    let mut instance = start(spec("trap", InstanceMode::Reuse)).await;
    let report = invoke(&mut instance, "r-trap", get("/trap")).await;
    let (error_type, document) = error(&report);
    assert_eq!(error_type, "Runtime.Trap");
    assert_eq!(
        document["errorMessage"],
        "RequestId: r-trap Error: wasm trap: wasm `unreachable` instruction executed"
    );
    assert!(!report.reusable);
    // The guest's panic message is in the log tail.
    assert!(
        report.log_tail.contains("the probe was asked to trap"),
        "{}",
        report.log_tail
    );
    instance.stop().await;

    let mut instance = start(spec("trap", InstanceMode::Reuse)).await;
    let report = invoke(&mut instance, "r-after", get("/count")).await;
    assert_eq!(body(&report)["count"], 1);
}

#[tokio::test]
async fn a_trap_in_per_request_mode_also_discards_the_instance() {
    let mut instance = start(spec("trap-fresh", InstanceMode::PerRequest)).await;
    let report = invoke(&mut instance, "r-trap", get("/trap")).await;
    assert_eq!(error(&report).0, "Runtime.Trap");
    assert!(!report.reusable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_times_out_without_holding_up_others() {
    let mut looping = spec("spin", InstanceMode::Reuse);
    looping.timeout = Duration::from_secs(1);
    let mut looping = start(looping).await;
    let started = Instant::now();
    let spin = tokio::spawn(async move {
        let report =
            invoke_within(&mut looping, "r-loop", get("/loop"), Duration::from_secs(1)).await;
        (report, started.elapsed())
    });
    // While it spins, another instance answers.
    let mut other = start(spec("spin-neighbour", InstanceMode::Reuse)).await;
    let report = invoke(&mut other, "r-other", get("/count")).await;
    assert_eq!(body(&report)["count"], 1);

    let (report, elapsed) = spin.await.expect("the invocation ends");
    let (error_type, document) = error(&report);
    assert_eq!(error_type, "Sandbox.Timedout");
    assert_eq!(
        document["errorMessage"],
        "RequestId: r-loop Error: Task timed out after 1.00 seconds"
    );
    assert!(!report.reusable);
    // Interrupted near its deadline (generously bounded: the machine may be busy).
    assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
}

#[tokio::test]
async fn a_guest_waiting_on_the_host_times_out_too() {
    let mut sleeper = spec("sleeper", InstanceMode::Reuse);
    sleeper.timeout = Duration::from_secs(1);
    let mut instance = start(sleeper).await;
    let report = invoke_within(
        &mut instance,
        "r-sleep",
        get("/sleep?60000"),
        Duration::from_secs(1),
    )
    .await;
    let (error_type, document) = error(&report);
    assert_eq!(error_type, "Sandbox.Timedout", "{document}");
    assert!(!report.reusable);
    // A short wait is fine.
    let mut instance = start(spec("sleeper", InstanceMode::Reuse)).await;
    let report = invoke(&mut instance, "r-nap", get("/sleep?10")).await;
    assert_eq!(crate::support::result(&report)["body"], "slept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopper_ends_a_busy_instance() {
    let mut looping = spec("stopped", InstanceMode::Reuse);
    looping.timeout = Duration::from_secs(60);
    let mut instance = start(looping).await;
    let stopper = instance.stopper().expect("wasm instances can be stopped");
    let run = tokio::spawn(async move {
        let report = invoke_within(
            &mut instance,
            "r-busy",
            get("/loop"),
            Duration::from_secs(60),
        )
        .await;
        (report, instance.is_alive())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    stopper().await;
    let (report, alive) = run.await.expect("the invocation ends");
    let (error_type, document) = error(&report);
    assert_eq!(error_type, "Runtime.ExitError", "{document}");
    assert!(!report.reusable);
    assert!(!alive);
}

#[tokio::test]
async fn a_stack_overflow_traps() {
    let mut instance = start(spec("deep", InstanceMode::PerRequest)).await;
    let report = invoke(&mut instance, "r-stack", get("/stack")).await;
    let (error_type, document) = error(&report);
    assert_eq!(error_type, "Runtime.Trap");
    let message = document["errorMessage"].as_str().unwrap();
    assert!(
        message.starts_with("RequestId: r-stack Error: wasm trap: "),
        "{message}"
    );
    assert!(!report.reusable);
}

#[tokio::test]
async fn growing_beyond_memory_mb_is_out_of_memory() {
    let mut bomb = spec("bomb", InstanceMode::Reuse);
    bomb.memory_mb = 128;
    let mut instance = start(bomb).await;
    let report = invoke(&mut instance, "r-oom", get("/oom")).await;
    assert_failed(&report, "Runtime.OutOfMemory", "linear memory limit 128 MB");
    assert!(!report.reusable);
    assert!(
        report.max_memory_mb.is_some_and(|mb| mb > 64 && mb <= 128),
        "{:?}",
        report.max_memory_mb
    );
    assert!(
        report.log_tail.contains("memory allocation of"),
        "{}",
        report.log_tail
    );
}

/// What a guest keeps in host memory (header fields, resources) is bounded: a field past
/// the limit, or more resources held than allowed, ends the invocation as a trap; the
/// next instance works.
#[tokio::test]
async fn header_fields_and_resources_a_guest_keeps_in_the_host_are_bounded() {
    let mut instance = start(spec("hoard", InstanceMode::Reuse)).await;
    let text = |report: &nimbus_core::Report| {
        result(report)["body"]
            .as_str()
            .expect("a text body")
            .to_owned()
    };
    let report = invoke(&mut instance, "r-small", get("/field?1000")).await;
    assert_eq!(text(&report), "accepted");
    let report = invoke(&mut instance, "r-big", get("/field?1048576")).await;
    assert_failed(&report, "Runtime.Trap", "Field size limit 65536 exceeded");
    assert!(!report.reusable);
    instance.stop().await;

    let mut instance = start(spec("hoard", InstanceMode::Reuse)).await;
    let report = invoke(&mut instance, "r-some", get("/handles?1000")).await;
    assert_eq!(text(&report), "held");
    let report = invoke(&mut instance, "r-many", get("/handles?5000")).await;
    let (error_type, document) = error(&report);
    assert_eq!(error_type, "Runtime.Trap", "{document}");
    assert!(!report.reusable);
    instance.stop().await;

    let mut instance = start(spec("hoard", InstanceMode::Reuse)).await;
    let report = invoke(&mut instance, "r-after", get("/count")).await;
    assert_eq!(body(&report)["count"], 1);
}

#[tokio::test]
async fn a_host_call_that_panics_ends_only_its_request() {
    let mut instance = start(spec("names", InstanceMode::Reuse)).await;
    let report = invoke(&mut instance, "r-few", get("/names?100")).await;
    assert_eq!(result(&report)["body"], "built");
    // wasmtime-wasi-http collects `fields.from-list` into an `http::HeaderMap` before it
    // checks the size, and the map panics past 24,576 names.
    let report = invoke(&mut instance, "r-many", get("/names?30000")).await;
    assert_failed(
        &report,
        "Runtime.Trap",
        "a host call of the component failed",
    );
    assert!(!report.reusable);
    instance.stop().await;

    let mut instance = start(spec("names", InstanceMode::PerRequest)).await;
    let report = invoke(&mut instance, "r-many-fresh", get("/names?30000")).await;
    assert_eq!(error(&report).0, "Runtime.Trap");
    let mut instance = start(spec("names", InstanceMode::Reuse)).await;
    let report = invoke(&mut instance, "r-after", get("/count")).await;
    assert_eq!(body(&report)["count"], 1);
}

#[tokio::test]
async fn random_bytes_are_given_a_megabyte_at_a_time() {
    let mut instance = start(spec("random", InstanceMode::Reuse)).await;
    let report = invoke(&mut instance, "r-some", get("/random?65536")).await;
    assert_eq!(result(&report)["body"], "65536");
    // wasmtime-wasi would fill up to 2 GiB of host memory for one call, in a host call
    // the deadline cannot interrupt; past a megabyte the call traps instead (two would
    // fit in the guest's memory).
    let report = invoke(&mut instance, "r-more", get("/random?2097152")).await;
    assert_eq!(error(&report).0, "Runtime.Trap");
    assert!(!report.reusable);
    let mut instance = start(spec("random", InstanceMode::Reuse)).await;
    let report = invoke(&mut instance, "r-after", get("/count")).await;
    assert_eq!(body(&report)["count"], 1);
}

#[tokio::test]
async fn a_guest_that_exits_ends_its_request_as_an_exited_runtime() {
    for (query, status) in [("fail", 1), ("ok", 0)] {
        let mut instance = start(spec("exits", InstanceMode::Reuse)).await;
        let report = invoke(&mut instance, "r-exit", get(&format!("/exit?{query}"))).await;
        assert_failed(
            &report,
            "Runtime.ExitError",
            &format!("Runtime exited with error: exit status {status}"),
        );
        assert!(!report.reusable);
    }
}

#[tokio::test]
async fn a_constructor_that_waits_on_the_host_ends_at_the_timeout() {
    // A Rust component runs its constructors on the first call into it, so the wait
    // falls in the first request, whichever the instance mode.
    for mode in [InstanceMode::PerRequest, InstanceMode::Reuse] {
        let mut spec = spec("slow-start", mode);
        spec.timeout = Duration::from_secs(1);
        spec.environment
            .insert("PROBE_INIT_SLEEP_MS".to_owned(), "60000".to_owned());
        let mut instance = start(spec).await;
        let started = Instant::now();
        let report = invoke_within(
            &mut instance,
            "r-slow",
            get("/count"),
            Duration::from_secs(1),
        )
        .await;
        let (error_type, document) = error(&report);
        assert_eq!(error_type, "Sandbox.Timedout", "{mode:?}: {document}");
        assert!(!report.reusable, "{mode:?}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "it ended at its deadline"
        );
        instance.stop().await;
    }
    // A short wait is no fault.
    let mut spec = spec("quick-start", InstanceMode::Reuse);
    spec.environment
        .insert("PROBE_INIT_SLEEP_MS".to_owned(), "10".to_owned());
    let mut instance = start(spec).await;
    let report = invoke(&mut instance, "r-quick", get("/count")).await;
    assert_eq!(body(&report)["count"], 1);
}

/// A component whose core module's start function, run as it is instantiated, waits a
/// minute on a WASI clock; its handler traps if it is ever called.
const WAITS_AT_START: &str = r#"
(component
  (import "wasi:io/poll@0.2.0" (instance $poll
    (export "pollable" (type (sub resource)))
    (export "[method]pollable.block" (func (param "self" (borrow 0))))
  ))
  (alias export $poll "pollable" (type $pollable))
  (import "wasi:clocks/monotonic-clock@0.2.0" (instance $clock
    (alias outer 1 $pollable (type))
    (export "pollable" (type (eq 0)))
    (export "subscribe-duration" (func (param "when" u64) (result (own 1))))
  ))
  (import "wasi:http/types@0.2.0" (instance $types
    (export "incoming-request" (type (sub resource)))
    (export "response-outparam" (type (sub resource)))
  ))
  (alias export $types "incoming-request" (type $request))
  (alias export $types "response-outparam" (type $outparam))
  (alias export $clock "subscribe-duration" (func $subscribe))
  (alias export $poll "[method]pollable.block" (func $block))
  (core func $subscribe_lowered (canon lower (func $subscribe)))
  (core func $block_lowered (canon lower (func $block)))
  (core module $m
    (import "host" "subscribe" (func $subscribe (param i64) (result i32)))
    (import "host" "block" (func $block (param i32)))
    (func $start (call $block (call $subscribe (i64.const 60000000000))))
    (start $start)
    (func (export "handle") (param i32 i32) unreachable)
  )
  (core instance $host
    (export "subscribe" (func $subscribe_lowered))
    (export "block" (func $block_lowered))
  )
  (core instance $i (instantiate $m (with "host" (instance $host))))
  (func $handle (param "request" (own $request)) (param "response-out" (own $outparam))
    (canon lift (core func $i "handle")))
  (instance $handler (export "handle" (func $handle)))
  (export "wasi:http/incoming-handler@0.2.0" (instance $handler))
)
"#;

#[tokio::test]
async fn instantiation_that_waits_on_the_host_ends_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let code = dir.path().join("waits.wasm");
    std::fs::write(
        &code,
        wat::parse_str(WAITS_AT_START).expect("the text is a component"),
    )
    .unwrap();
    let waiting = |mode| {
        let mut spec = spec("waits-at-start", mode);
        spec.code = code.clone();
        spec.timeout = Duration::from_secs(1);
        spec
    };
    let mut instance = start(waiting(InstanceMode::PerRequest)).await;
    let started = Instant::now();
    let report = invoke_within(
        &mut instance,
        "r-waits",
        get("/count"),
        Duration::from_secs(1),
    )
    .await;
    assert_failed(
        &report,
        "Runtime.InitError",
        "did not finish within the function's timeout",
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "it ended at its deadline, not after the guest's minute"
    );
    let refused = crate::support::runtime()
        .start(std::sync::Arc::new(waiting(InstanceMode::Reuse)))
        .await
        .err()
        .expect("a reuse instance that cannot instantiate in time does not start");
    assert!(
        refused
            .reason
            .contains("did not finish within the function's timeout"),
        "{refused:?}"
    );
}
