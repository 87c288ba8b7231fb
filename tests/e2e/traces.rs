//! OpenTelemetry traces: a request's spans, from the gateway through the function, its
//! calls to the services endpoint, a table stream trigger and an async invocation,
//! arrive at an OTLP/HTTP receiver as one trace with the right parents.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::any_value::Value as AnyValue,
    trace::v1::{Span, span::SpanKind},
};
use prost::Message;

use crate::harness::{Builder, Nimbus, copy_app, example, http};

/// A span as the receiver got it, with the service that sent it.
#[derive(Clone)]
struct Got {
    service: String,
    span: Span,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Got {
    fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }
    fn id(&self) -> String {
        hex(&self.span.span_id)
    }
    fn parent(&self) -> String {
        hex(&self.span.parent_span_id)
    }
    fn attr(&self, key: &str) -> Option<String> {
        let value = self
            .span
            .attributes
            .iter()
            .find(|kv| kv.key == key)?
            .value
            .as_ref()?
            .value
            .as_ref()?;
        Some(match value {
            AnyValue::StringValue(s) => s.clone(),
            AnyValue::BoolValue(b) => b.to_string(),
            AnyValue::IntValue(i) => i.to_string(),
            AnyValue::DoubleValue(d) => d.to_string(),
            AnyValue::ArrayValue(a) => a
                .values
                .iter()
                .filter_map(|v| match &v.value {
                    Some(AnyValue::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(","),
            other => format!("{other:?}"),
        })
    }
}

/// An OTLP/HTTP (protobuf) receiver: `POST /v1/traces`, every span kept.
struct Receiver {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Got>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&spans);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let kept = Arc::clone(&kept);
                std::thread::spawn(move || serve_otlp(stream, &kept));
            }
        });
        Receiver { addr, spans }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn spans(&self) -> Vec<Got> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits until the spans of trace `trace_id` satisfy `done`; fails the test (with
    /// the node's log and the spans) after a generous wait.
    fn wait_trace(&self, node: &Nimbus, trace_id: &str, done: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let spans: Vec<Got> = self
                .spans()
                .into_iter()
                .filter(|s| s.trace_id() == trace_id)
                .collect();
            if done(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "trace {trace_id} incomplete: {}\n{}",
                describe(&spans),
                node.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn describe(spans: &[Got]) -> String {
    spans
        .iter()
        .map(|s| format!("{} id={} parent={}", s.span.name, s.id(), s.parent()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn serve_otlp(stream: TcpStream, kept: &Mutex<Vec<Got>>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line
            .split(' ')
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        assert_eq!(path, "/v1/traces", "the exporter posts to /v1/traces");
        let request = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        let mut got = Vec::new();
        for resource in request.resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    AnyValue::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope in resource.scope_spans {
                for span in scope.spans {
                    got.push(Got {
                        service: service.clone(),
                        span,
                    });
                }
            }
        }
        kept.lock().unwrap().extend(got);
        writer
            .write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
            )
            .unwrap();
    }
}

/// The seed's user registration with its projection (`user-count`: `register` puts users
/// with the AWS SDK for JavaScript v2, `project` is triggered by the Users stream), plus
/// `fanout`, which invokes `audit` asynchronously, and `whoami`, which answers with the
/// trace header it was given.
fn app() -> tempfile::TempDir {
    let app = copy_app(&example("user-count"));
    let dir = app.path();
    std::fs::write(
        dir.join("fanout.js"),
        r#"const AWS = require('aws-sdk');
const lambda = new AWS.Lambda();
exports.handler = async () => {
  await lambda
    .invoke({ FunctionName: 'audit', InvocationType: 'Event', Payload: JSON.stringify({ what: 'audit' }) })
    .promise();
  return { statusCode: 202, body: 'queued' };
};
exports.audit = async (event) => {
  console.log('AUDIT ' + JSON.stringify(event));
};
exports.whoami = async () => ({ statusCode: 200, body: process.env._X_AMZN_TRACE_ID || '' });
"#,
    )
    .unwrap();
    let mut manifest = std::fs::read_to_string(dir.join("nimbus.toml")).unwrap();
    for (name, handler) in [
        ("fanout", "fanout.handler"),
        ("audit", "fanout.audit"),
        ("whoami", "fanout.whoami"),
    ] {
        manifest.push_str(&format!(
            "\n[functions.{name}]\nruntime = \"nodejs\"\ncode = \".\"\nhandler = \"{handler}\"\n"
        ));
    }
    manifest.push_str(
        "\n[[routes]]\nroute = \"POST /fanout\"\nfunction = \"fanout\"\n\n[[routes]]\nroute = \"GET /whoami\"\nfunction = \"whoami\"\n",
    );
    std::fs::write(dir.join("nimbus.toml"), manifest).unwrap();
    app
}

fn traced_node(app: &Path, receiver: &Receiver, extra: &[&str]) -> Nimbus {
    let mut builder = Builder::up(app)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
        // Export often, so the test does not wait for the default 5 s batches.
        .env("OTEL_BSP_SCHEDULE_DELAY", "100");
    for arg in extra {
        builder = builder.arg(*arg);
    }
    builder.start()
}

/// The one span named `name`.
fn one<'a>(spans: &'a [Got], name: &str) -> &'a Got {
    let found: Vec<&Got> = spans.iter().filter(|s| s.span.name == name).collect();
    assert_eq!(found.len(), 1, "one {name} span in\n{}", describe(spans));
    found[0]
}

fn has(spans: &[Got], name: &str) -> bool {
    spans.iter().any(|s| s.span.name == name)
}

/// Whether the exporter's thread runs in process `pid`.
fn exporter_thread_runs(pid: u32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(Result::ok)
        .any(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.trim() == "nimbus-otlp")
        })
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER: &str = "00f067aa0ba902b7";

/// The issue's proof: gateway -> function A -> table write -> stream trigger ->
/// function B is one trace, the caller's, with each span under the one that caused it;
/// and an async invocation continues the trace of the request that enqueued it.
#[test]
fn a_request_is_one_trace_across_functions_streams_and_async_invocations() {
    let receiver = Receiver::start();
    let app = app();
    let node = traced_node(app.path(), &receiver, &[]);
    assert!(exporter_thread_runs(node.pid()));

    let r = http(
        node.gateway(),
        "POST",
        "/users",
        &[
            ("content-type", "application/json"),
            ("traceparent", &format!("00-{TRACE}-{CALLER}-01")),
        ],
        r#"{"email":"ada@example.com","name":"Ada"}"#,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}\n{}", r.body, node.logs());

    let spans = receiver.wait_trace(&node, TRACE, |s| {
        has(s, "POST /users")
            && has(s, "DynamoDB.PutItem")
            && has(s, "project")
            && has(s, "DynamoDB.UpdateItem")
            // The batch's span ends after the run it holds.
            && has(s, "process project")
    });
    assert!(spans.iter().all(|s| s.service == "nimbus"));
    let gateway = one(&spans, "POST /users");
    assert_eq!(gateway.parent(), CALLER, "the caller's span is the parent");
    assert_eq!(gateway.span.kind, SpanKind::Server as i32);
    assert_eq!(gateway.attr("http.route").as_deref(), Some("/users"));
    assert_eq!(gateway.attr("http.request.method").as_deref(), Some("POST"));
    assert_eq!(
        gateway.attr("http.response.status_code").as_deref(),
        Some("200")
    );

    // The invocation's spans are the gateway span's children: no dispatch span of its
    // own inside a traced request.
    assert!(spans.iter().all(|s| s.span.name != "dispatch register"));
    // The first request starts the function: a cold start, with its init span.
    let init = one(&spans, "init register");
    assert_eq!(init.parent(), gateway.id());
    let register = one(&spans, "register");
    assert_eq!(register.parent(), gateway.id());
    assert_eq!(register.attr("faas.coldstart").as_deref(), Some("true"));

    // The SDK's call joins the trace through X-Amzn-Trace-Id, under the function's span.
    let put = one(&spans, "DynamoDB.PutItem");
    assert_eq!(put.parent(), register.id(), "{}", describe(&spans));
    assert_eq!(put.attr("db.operation.name").as_deref(), Some("PutItem"));
    assert_eq!(put.attr("db.system").as_deref(), Some("dynamodb"));
    assert_eq!(
        put.attr("aws.dynamodb.table_names").as_deref(),
        Some("Users")
    );

    // The stream record carried the write's context to the trigger.
    let batch = one(&spans, "process project");
    assert_eq!(batch.parent(), put.id());
    let project = one(&spans, "project");
    assert_eq!(project.parent(), batch.id());
    let update = one(&spans, "DynamoDB.UpdateItem");
    assert_eq!(update.parent(), project.id());
    assert_eq!(
        update.attr("aws.dynamodb.table_names").as_deref(),
        Some("UserCount")
    );

    // An async invocation: the event carries the enqueuing request's context.
    const ASYNC_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    let r = http(
        node.gateway(),
        "POST",
        "/fanout",
        &[(
            "traceparent",
            &format!("00-{ASYNC_TRACE}-b7ad6b7169203331-01"),
        )],
        "{}",
    )
    .unwrap();
    assert_eq!(r.status, 202, "{}\n{}", r.body, node.logs());
    let spans = receiver.wait_trace(&node, ASYNC_TRACE, |s| has(s, "audit"));
    let fanout = one(&spans, "fanout");
    let invoke = one(&spans, "Lambda.Invoke");
    assert_eq!(invoke.parent(), fanout.id());
    assert_eq!(invoke.attr("faas.invoked_name").as_deref(), Some("audit"));
    assert_eq!(
        invoke.attr("aws.lambda.invocation_type").as_deref(),
        Some("Event")
    );
    let dispatch_audit = one(&spans, "dispatch audit");
    assert_eq!(dispatch_audit.parent(), invoke.id());
    assert_eq!(one(&spans, "audit").parent(), dispatch_audit.id());

    // A function is handed its own span's context as its trace header.
    let r = http(node.gateway(), "GET", "/whoami", &[], "").unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let header = r.body;
    let root = header
        .split(';')
        .find_map(|f| f.strip_prefix("Root=1-"))
        .unwrap_or_else(|| panic!("an X-Ray header: {header:?}"))
        .replace('-', "");
    let parent = header
        .split(';')
        .find_map(|f| f.strip_prefix("Parent="))
        .unwrap();
    let spans = receiver.wait_trace(&node, &root, |s| has(s, "whoami"));
    assert_eq!(one(&spans, "whoami").id(), parent);
    assert!(header.ends_with(";Sampled=1"), "{header}");
}

/// With a sample ratio of 0, new traces are not recorded, while a caller's sampled trace
/// still is (parent-based sampling). Spans are exported in the order they end, so once
/// the caller's trace arrived, any span of the first request would have too.
#[test]
fn a_zero_sample_ratio_records_only_traces_the_caller_sampled() {
    let receiver = Receiver::start();
    let app = app();
    let node = traced_node(app.path(), &receiver, &["--trace-sample-ratio", "0"]);
    let r = http(node.gateway(), "GET", "/whoami", &[], "").unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body.ends_with(";Sampled=0"), "{}", r.body);
    let r = http(
        node.gateway(),
        "GET",
        "/whoami",
        &[("traceparent", &format!("00-{TRACE}-{CALLER}-01"))],
        "",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    receiver.wait_trace(&node, TRACE, |s| has(s, "whoami"));
    let others: Vec<Got> = receiver
        .spans()
        .into_iter()
        .filter(|s| s.trace_id() != TRACE)
        .collect();
    assert!(others.is_empty(), "{}", describe(&others));
}

/// A wasm function gets its run's span as `traceparent`, beside the X-Ray form, so that
/// the calls it makes with an HTTP library that passes the header on join the trace.
#[test]
fn a_wasm_function_gets_its_runs_span_as_traceparent() {
    let receiver = Receiver::start();
    let app = tempfile::tempdir().unwrap();
    std::fs::copy(crate::wasm::probe(), app.path().join("probe.wasm")).unwrap();
    std::fs::write(
        app.path().join("nimbus.toml"),
        "name = \"traced-wasm\"\n\n[functions.probe]\nruntime = \"wasm\"\ncode = \"probe.wasm\"\n\n[[routes]]\nroute = \"GET /echo\"\nfunction = \"probe\"\n",
    )
    .unwrap();
    let node = traced_node(app.path(), &receiver, &[]);
    for _ in 0..2 {
        let r = http(
            node.gateway(),
            "GET",
            "/echo",
            &[("traceparent", &format!("00-{TRACE}-{CALLER}-01"))],
            "",
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}\n{}", r.body, node.logs());
        let echo: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        let header = |name: &str| {
            echo["headers"]
                .as_array()
                .and_then(|headers| headers.iter().find(|pair| pair[0] == name))
                .and_then(|pair| pair[1].as_str())
                .map(str::to_owned)
        };
        let traceparent = header("traceparent").expect("a traceparent header");
        let spans = receiver.wait_trace(&node, TRACE, |s| {
            s.iter()
                .any(|g| g.span.name == "probe" && traceparent.contains(&g.id()))
        });
        let run = spans
            .iter()
            .find(|g| g.span.name == "probe" && traceparent.contains(&g.id()))
            .unwrap();
        assert_eq!(traceparent, format!("00-{TRACE}-{}-01", run.id()));
        let xray = header("x-amzn-trace-id").expect("an X-Ray header");
        assert!(xray.contains(&format!("Parent={}", run.id())), "{xray}");
    }
}

/// Without an endpoint no exporter starts and nothing is recorded, but a caller's trace
/// context still reaches the function.
#[test]
fn without_an_endpoint_no_exporter_runs_and_the_context_passes_through() {
    let app = app();
    let node = Builder::up(app.path()).start();
    assert!(!exporter_thread_runs(node.pid()));
    let r = http(
        node.gateway(),
        "GET",
        "/whoami",
        &[("traceparent", &format!("00-{TRACE}-{CALLER}-01"))],
        "",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        "Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent=00f067aa0ba902b7;Sampled=1"
    );
}

/// On the PostgreSQL engine too, a stream record carries its write's context to the
/// trigger.
#[test]
fn a_stream_trigger_joins_the_writers_trace_on_postgres() {
    let receiver = Receiver::start();
    let app = app();
    let node = Builder::up(app.path())
        .postgres()
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .start();
    let r = http(
        node.gateway(),
        "POST",
        "/users",
        &[
            ("content-type", "application/json"),
            ("traceparent", &format!("00-{TRACE}-{CALLER}-01")),
        ],
        r#"{"email":"grace@example.com","name":"Grace"}"#,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}\n{}", r.body, node.logs());
    // The batch's span ends after the run it holds, and may come in a later export.
    let spans = receiver.wait_trace(&node, TRACE, |s| {
        has(s, "DynamoDB.PutItem") && has(s, "register") && has(s, "process project")
    });
    let put = one(&spans, "DynamoDB.PutItem");
    assert_eq!(put.parent(), one(&spans, "register").id());
    assert_eq!(one(&spans, "process project").parent(), put.id());
}
