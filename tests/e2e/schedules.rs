//! Schedules: `[[events]] source = "schedule:rate(...)"` fires the function with an
//! EventBridge `Scheduled Event`, waking it from zero instances.

use std::time::Duration;

use serde_json::Value;

use crate::harness::Builder;

/// A Node.js function scaled to zero (no `min_warm`) on `rate(1 minute)`: within about a
/// minute of `nimbus up` it runs, from a cold start, with the scheduled event.
#[test]
fn a_rate_schedule_invokes_a_function_scaled_to_zero() {
    let app = tempfile::tempdir().unwrap();
    let dir = app.path();
    std::fs::create_dir_all(dir.join("js")).unwrap();
    std::fs::write(
        dir.join("js/index.js"),
        "exports.handler = async (event) => { console.log('TICK ' + JSON.stringify(event)); return { ok: true }; };\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("nimbus.toml"),
        r#"name = "ticker"

[functions.tick]
runtime = "nodejs20.x"
code = "js"
handler = "index.handler"

[[events]]
source = "schedule:rate(1 minute)"
function = "tick"
"#,
    )
    .unwrap();
    let node = Builder::up(dir).start();
    // The first tick is a minute after the schedule is first seen.
    assert!(
        node.wait_for_log("REPORT RequestId", Duration::from_secs(75)),
        "{}",
        node.logs()
    );
    let lines: Vec<Value> = node
        .stderr()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|l: &Value| l["function"] == "tick")
        .collect();
    let message = |l: &Value| l["message"].as_str().unwrap_or_default().to_owned();
    let ran = lines
        .iter()
        .find(|l| message(l).contains("TICK "))
        .unwrap_or_else(|| panic!("the function logged its event\n{}", node.logs()));
    let text = message(ran);
    let event: Value = serde_json::from_str(text.split_once("TICK ").unwrap().1).unwrap();
    assert_eq!(event["detail-type"], "Scheduled Event", "{event}");
    assert_eq!(event["source"], "aws.events");
    assert_eq!(event["version"], "0");
    assert_eq!(event["account"], "000000000000");
    assert_eq!(event["region"], "us-east-1");
    assert_eq!(
        event["resources"],
        serde_json::json!(["arn:aws:events:us-east-1:000000000000:rule/ticker-tick-1"])
    );
    assert_eq!(event["detail"], serde_json::json!({}));
    let time = event["time"].as_str().unwrap();
    assert!(
        humantime::parse_rfc3339(time).is_ok() && time.ends_with('Z') && !time.contains('.'),
        "{time}"
    );
    assert_eq!(event["id"].as_str().unwrap().len(), 36);
    // It ran as an async invocation that started the function's first instance.
    let request_id = ran["request_id"].as_str().unwrap();
    let report = lines
        .iter()
        .find(|l| l["request_id"] == request_id && message(l).starts_with("REPORT"))
        .unwrap_or_else(|| panic!("a REPORT line for {request_id}\n{}", node.logs()));
    assert_eq!(report["cold"], true, "{report}");
    assert_eq!(report["outcome"], "success", "{report}");
    assert!(
        node.logs().contains("schedule fired"),
        "the node logs the tick\n{}",
        node.logs()
    );
}
