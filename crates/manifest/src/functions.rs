//! `[functions.NAME]`.

use std::{collections::BTreeMap, path::Path};

use nimbus_core::{
    ApplicationLogLevel, AsyncPolicy, Concurrency, FunctionSpec, InstanceMode, LogFormat,
    LoggingConfig, RuntimeKind, RuntimeSpec, SystemLogLevel, limits,
};

use crate::{
    context::Cx,
    decode::{Field, Str},
    routes::declared,
    support::Feature,
};

pub(crate) fn decode(cx: &mut Cx<'_>, field: Field<'_>) -> BTreeMap<String, FunctionSpec> {
    let mut functions = BTreeMap::new();
    let Some(obj) = field.table(&mut cx.sink, "a table of tables, one per function name") else {
        return functions;
    };
    let entries = obj.entries();
    // Every name first: a function's async destinations may name a later one.
    for (name, _) in &entries {
        cx.declared_functions.insert(name.value.clone());
    }
    let mut destinations = Vec::new();
    for (name, field) in entries {
        if !limits::is_valid_function_name(&name.value) {
            name.reject(
                &mut cx.sink,
                "a function name of 1 to 64 letters, digits, `_` or `-`",
            );
        }
        if let Some((function, named)) = decode_function(cx, &name, field) {
            destinations.extend(named.into_iter().map(|d| (name.value.clone(), d)));
            functions.insert(name.value.clone(), function);
        }
    }
    for (function, destination) in destinations {
        check_destination(cx, &function, &destination);
    }
    functions
}

/// A destination must be another function of the app (Lambda refuses a function as its
/// own destination).
fn check_destination(cx: &mut Cx<'_>, function: &str, destination: &Str) {
    if destination.value == function {
        destination.reject(
            &mut cx.sink,
            "another function of the app (a function cannot be its own destination)",
        );
    } else if !cx.declared_functions.contains(&destination.value) {
        let known: Vec<&str> = cx
            .declared_functions
            .iter()
            .map(String::as_str)
            .filter(|f| *f != function)
            .collect();
        destination.reject(&mut cx.sink, declared("function", &known));
    }
}

/// A function and the destinations its `async` table names, checked once every function
/// is known.
fn decode_function(
    cx: &mut Cx<'_>,
    name: &Str,
    field: Field<'_>,
) -> Option<(FunctionSpec, Vec<Str>)> {
    let mut obj = field.table(&mut cx.sink, "a table with `runtime`")?;
    obj.span = name.span.clone();
    let runtime = obj
        .require(&mut cx.sink, "runtime", "a runtime such as \"nodejs\"")
        .and_then(|f| runtime(cx, f));
    let code = obj.take("code").map_or_else(
        || {
            Some(Str {
                value: ".".to_owned(),
                span: name.span.clone(),
                path: format!("{}.code", name.path),
            })
        },
        |f| f.string(&mut cx.sink, "a path relative to nimbus.toml"),
    );
    let handler = obj
        .take("handler")
        .and_then(|f| f.string(&mut cx.sink, "a handler such as \"index.handler\""));
    let memory_mb = obj
        .take("memory_mb")
        .map_or(Some(limits::DEFAULT_MEMORY_MB), |f| {
            f.int(&mut cx.sink, limits::MIN_MEMORY_MB..=limits::MAX_MEMORY_MB)
        });
    let timeout = obj
        .take("timeout")
        .map_or(Some(limits::DEFAULT_TIMEOUT), |f| {
            f.duration(&mut cx.sink, limits::MIN_TIMEOUT..=limits::MAX_TIMEOUT)
        });
    let concurrency = obj.take("concurrency").map_or(
        Some(Concurrency {
            max: limits::DEFAULT_MAX_CONCURRENCY,
            min_warm: 0,
        }),
        |f| concurrency(cx, f),
    );
    let environment = obj
        .take("environment")
        .map_or(Some(BTreeMap::new()), |f| environment(cx, f));
    let outbound = obj.take("allowed_outbound_hosts").map(|f| {
        f.strings(
            &mut cx.sink,
            "an array of hosts such as \"https://api.example.com\"",
        )
    });
    let instances = obj
        .take("instances")
        .and_then(|f| f.string(&mut cx.sink, "\"reuse\" or \"per-request\""));
    let async_policy = obj
        .take("async")
        .map_or(Some((AsyncPolicy::default(), Vec::new())), |f| {
            async_policy(cx, f)
        });
    let log_format = obj.take("log_format");
    let application_log_level = obj.take("application_log_level");
    let system_log_level = obj.take("system_log_level");
    let logging = logging(cx, log_format, application_log_level, system_log_level);
    obj.finish(&mut cx.sink);

    let runtime = runtime?;
    let instances = match instances {
        None => Some(InstanceMode::Reuse),
        Some(mode) => match (mode.value.as_str(), runtime.kind) {
            (_, kind) if kind != RuntimeKind::Wasm => {
                mode.reject(
                    &mut cx.sink,
                    "no `instances`: it applies to wasm functions (process functions reuse their instances, as Lambda does)",
                );
                None
            }
            ("reuse", _) => Some(InstanceMode::Reuse),
            ("per-request", _) => Some(InstanceMode::PerRequest),
            _ => {
                mode.reject(&mut cx.sink, "\"reuse\" or \"per-request\"");
                None
            }
        },
    };
    let code = code?;
    let code_path = check_code(cx, runtime.kind, &code)?;
    let handler = check_handler(cx, name, runtime.kind, &code_path, handler)?;
    let allowed_outbound_hosts = match outbound {
        None => Vec::new(),
        Some(hosts) => check_outbound(cx, runtime.kind, hosts?)?,
    };
    let (async_policy, destinations) = async_policy?;
    let function = FunctionSpec {
        name: name.value.clone(),
        runtime,
        code: code_path,
        handler,
        memory_mb: memory_mb?,
        timeout: timeout?,
        concurrency: concurrency?,
        environment: environment?,
        allowed_outbound_hosts,
        instances: instances?,
        async_policy,
        logging: logging?,
    };
    Some((function, destinations))
}

/// `log_format`, `application_log_level` and `system_log_level`, as Lambda's
/// `LoggingConfig`: levels only with the JSON format.
fn logging(
    cx: &mut Cx<'_>,
    format: Option<Field<'_>>,
    application: Option<Field<'_>>,
    system: Option<Field<'_>>,
) -> Option<LoggingConfig> {
    let format = match format {
        None => Some(LogFormat::Text),
        Some(f) => {
            let s = f.string(&mut cx.sink, "\"text\" or \"json\"")?;
            match s.value.as_str() {
                "text" => Some(LogFormat::Text),
                "json" => Some(LogFormat::Json),
                _ => {
                    s.reject(&mut cx.sink, "\"text\" or \"json\"");
                    None
                }
            }
        }
    };
    let mut level = |field: Option<Field<'_>>, names: &[&str]| -> Option<Option<String>> {
        let Some(field) = field else {
            return Some(None);
        };
        let expected = format!("a level: one of {}", names.join(", "));
        let s = field.string(&mut cx.sink, &expected)?;
        if !names.iter().any(|n| n.eq_ignore_ascii_case(&s.value)) {
            s.reject(&mut cx.sink, expected);
            return None;
        }
        if format == Some(LogFormat::Text) {
            s.reject(
                &mut cx.sink,
                "no log level with the text format: levels need `log_format = \"json\"`, as on Lambda",
            );
            return None;
        }
        Some(Some(s.value))
    };
    let application_names: Vec<&str> = ApplicationLogLevel::ALL
        .iter()
        .map(|l| l.as_str())
        .collect();
    let system_names: Vec<&str> = SystemLogLevel::ALL.iter().map(|l| l.as_str()).collect();
    let application = level(application, &application_names);
    let system = level(system, &system_names);
    Some(LoggingConfig {
        format: format?,
        application_level: application?.and_then(|l| l.parse().ok()),
        system_level: system?.and_then(|l| l.parse().ok()),
    })
}

const ASYNC_EXPECTED: &str = "a table such as { max_retries = 2, max_event_age = \"6h\", on_success = \"fn\", on_failure = \"fn\" }";

/// Most retries of an async invocation (Lambda's `MaximumRetryAttempts`, 0 to 2).
const MAX_ASYNC_RETRIES: u32 = 2;

/// `async = { ... }`: the policy, and the destinations it names (checked later).
fn async_policy(cx: &mut Cx<'_>, field: Field<'_>) -> Option<(AsyncPolicy, Vec<Str>)> {
    let mut obj = field.table(&mut cx.sink, ASYNC_EXPECTED)?;
    let max_retries = obj
        .take("max_retries")
        .map_or(Some(limits::DEFAULT_MAX_RETRIES), |f| {
            f.int(&mut cx.sink, 0..=MAX_ASYNC_RETRIES)
        });
    let max_event_age =
        obj.take("max_event_age")
            .map_or(Some(limits::DEFAULT_MAX_EVENT_AGE), |f| {
                f.duration(
                    &mut cx.sink,
                    AsyncPolicy::MIN_EVENT_AGE..=AsyncPolicy::MAX_EVENT_AGE,
                )
            });
    let on_success = obj
        .take("on_success")
        .map(|f| f.string(&mut cx.sink, "the name of a function of the app"));
    let on_failure = obj
        .take("on_failure")
        .map(|f| f.string(&mut cx.sink, "the name of a function of the app"));
    obj.finish(&mut cx.sink);
    let on_success = on_success.map_or(Some(None), |s| s.map(Some))?;
    let on_failure = on_failure.map_or(Some(None), |s| s.map(Some))?;
    let policy = AsyncPolicy {
        max_retries: max_retries?,
        max_event_age: max_event_age?,
        on_success: on_success.as_ref().map(|s| s.value.clone()),
        on_failure: on_failure.as_ref().map(|s| s.value.clone()),
    };
    Some((policy, on_success.into_iter().chain(on_failure).collect()))
}

fn runtime(cx: &mut Cx<'_>, field: Field<'_>) -> Option<RuntimeSpec> {
    let s = field.string(&mut cx.sink, "a runtime name")?;
    let Ok(spec) = s.value.parse::<RuntimeSpec>() else {
        let known: Vec<&str> = RuntimeSpec::identifiers().collect();
        s.reject(
            &mut cx.sink,
            format!("a supported runtime: one of {}", known.join(", ")),
        );
        return None;
    };
    if spec.kind == RuntimeKind::Wasm
        && !cx.require_feature(
            Feature::WasmRuntime,
            s.span.clone(),
            &s.path,
            format!("{:?}", s.value),
        )
    {
        return None;
    }
    Some(spec)
}

fn concurrency(cx: &mut Cx<'_>, field: Field<'_>) -> Option<Concurrency> {
    let mut obj = field.table(&mut cx.sink, "a table such as { max = 100, min_warm = 0 }")?;
    let max = obj
        .take("max")
        .map_or(Some(limits::DEFAULT_MAX_CONCURRENCY), |f| {
            f.int(&mut cx.sink, 1..=limits::MAX_CONCURRENCY)
        });
    let min_warm_field = obj.take("min_warm");
    obj.finish(&mut cx.sink);
    let max = max?;
    let min_warm = match min_warm_field {
        None => 0,
        Some(f) => f.int(&mut cx.sink, 0..=max)?,
    };
    Some(Concurrency { max, min_warm })
}

/// Lambda caps a function's environment at 4 KB (names and values together).
const MAX_ENVIRONMENT_BYTES: usize = 4096;

fn environment(cx: &mut Cx<'_>, field: Field<'_>) -> Option<BTreeMap<String, String>> {
    let obj = field.table(&mut cx.sink, "a table of NAME = \"value\"")?;
    let span = obj.span.clone();
    let path = obj.path.clone();
    let mut env = BTreeMap::new();
    let mut ok = true;
    for (name, value) in obj.entries() {
        if !limits::is_valid_env_name(&name.value) {
            name.reject(
                &mut cx.sink,
                "a variable name: a letter, then letters, digits or `_`",
            );
            ok = false;
        } else if limits::RESERVED_ENV.contains(&name.value.as_str()) {
            name.reject(
                &mut cx.sink,
                "a name Nimbus does not reserve (it sets this one for every function)",
            );
            ok = false;
        }
        match value.string(&mut cx.sink, "a string (quote numbers and booleans)") {
            // A C string ends at NUL: no process could be started with this variable.
            Some(value) if value.value.contains('\0') => {
                value.reject(&mut cx.sink, "a string without NUL characters");
                ok = false;
            }
            Some(value) => {
                env.insert(name.value, value.value);
            }
            None => ok = false,
        }
    }
    let size: usize = env.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_ENVIRONMENT_BYTES {
        cx.sink.push(
            span,
            path,
            format!("{size} bytes of variables"),
            format!("at most {MAX_ENVIRONMENT_BYTES} bytes, as on Lambda"),
        );
        ok = false;
    }
    ok.then_some(env)
}

fn check_code(cx: &mut Cx<'_>, kind: RuntimeKind, code: &Str) -> Option<std::path::PathBuf> {
    let path = cx.resolve(&code.value);
    let Ok(meta) = std::fs::metadata(&path) else {
        code.reject(
            &mut cx.sink,
            "a path to the function's code that exists, relative to nimbus.toml",
        );
        return None;
    };
    let path = path.canonicalize().unwrap_or(path);
    match kind {
        RuntimeKind::Wasm => {
            let component = meta.is_file() && path.extension().is_some_and(|e| e == "wasm");
            let package = meta.is_dir() && path.join("Cargo.toml").is_file();
            if !component && !package {
                code.reject(
                    &mut cx.sink,
                    "a `.wasm` component file or a directory with a Cargo.toml",
                );
                return None;
            }
        }
        _ if !meta.is_dir() => {
            code.reject(&mut cx.sink, "a directory holding the function's code");
            return None;
        }
        _ => {}
    }
    Some(path)
}

fn check_handler(
    cx: &mut Cx<'_>,
    name: &Str,
    kind: RuntimeKind,
    code: &Path,
    handler: Option<Str>,
) -> Option<Option<String>> {
    match kind {
        RuntimeKind::Nodejs | RuntimeKind::Python => {
            let example = if kind == RuntimeKind::Nodejs {
                "\"index.handler\""
            } else {
                "\"app.handler\""
            };
            let Some(handler) = handler else {
                cx.sink.push(
                    name.span.clone(),
                    name.path.clone(),
                    "no `handler`",
                    format!("`handler`: the {kind} handler to call, such as {example}"),
                );
                return None;
            };
            let problem = if kind == RuntimeKind::Nodejs {
                node_handler_problem(code, &handler.value)
            } else {
                python_handler_problem(code, &handler.value)
            };
            match problem {
                Some(expected) => {
                    handler.reject(&mut cx.sink, expected);
                    None
                }
                None => Some(Some(handler.value)),
            }
        }
        RuntimeKind::Provided => {
            let bootstrap = code.join("bootstrap");
            if !is_executable(&bootstrap) {
                cx.sink.push(
                    name.span.clone(),
                    name.path.clone(),
                    format!("no executable `bootstrap` in {}", code.display()),
                    "an executable named `bootstrap` in the function's code directory",
                );
                return None;
            }
            Some(handler.map(|h| h.value))
        }
        RuntimeKind::Wasm => match handler {
            Some(handler) => {
                handler.reject(
                    &mut cx.sink,
                    "no `handler`: a wasm component's entry point is its wasi:http export",
                );
                None
            }
            None => Some(None),
        },
    }
}

/// Node.js handlers are `path/to/module.export[.nested]`; the module is a `.js`, `.mjs` or
/// `.cjs` file in the code directory.
fn node_handler_problem(code: &Path, handler: &str) -> Option<String> {
    let (dir, base) = match handler.rfind('/') {
        Some(i) => (&handler[..=i], &handler[i + 1..]),
        None => ("", handler),
    };
    let Some((module, export)) = base.split_once('.') else {
        return Some("a handler of the form FILE.EXPORT, such as \"index.handler\"".to_owned());
    };
    let identifier = |s: &str| {
        let mut chars = s.chars();
        matches!(chars.next(), Some(c) if c.is_alphabetic() || c == '_' || c == '$')
            && chars.all(|c| c.is_alphanumeric() || c == '_' || c == '$')
    };
    if module.is_empty() || !export.split('.').all(identifier) {
        return Some("a handler of the form FILE.EXPORT, such as \"index.handler\"".to_owned());
    }
    let stem = format!("{dir}{module}");
    let exists = ["js", "mjs", "cjs"]
        .iter()
        .any(|ext| code.join(format!("{stem}.{ext}")).is_file());
    (!exists).then(|| {
        format!(
            "a handler whose module exists: no {stem}.js, {stem}.mjs or {stem}.cjs in {}",
            code.display()
        )
    })
}

/// Python handlers are `module.function`, where the module may be a dotted package path.
fn python_handler_problem(code: &Path, handler: &str) -> Option<String> {
    let shape = "a handler of the form MODULE.FUNCTION, such as \"app.handler\"";
    let Some((module, function)) = handler.rsplit_once('.') else {
        return Some(shape.to_owned());
    };
    let identifier = |s: &str| {
        let mut chars = s.chars();
        matches!(chars.next(), Some(c) if c.is_alphabetic() || c == '_')
            && chars.all(|c| c.is_alphanumeric() || c == '_')
    };
    let parts: Vec<&str> = module.split(['.', '/']).collect();
    if !identifier(function) || !parts.iter().all(|p| identifier(p)) {
        return Some(shape.to_owned());
    }
    let stem = parts.join("/");
    let exists =
        code.join(format!("{stem}.py")).is_file() || code.join(&stem).join("__init__.py").is_file();
    (!exists).then(|| {
        format!(
            "a handler whose module exists: no {stem}.py in {}",
            code.display()
        )
    })
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

/// Outbound hosts are `SCHEME://HOST[:PORT]` with scheme `http`, `https` or `*`, a host
/// that may start with `*.` (or be `*`), and an optional port (or `*`).
fn check_outbound(cx: &mut Cx<'_>, kind: RuntimeKind, hosts: Vec<Str>) -> Option<Vec<String>> {
    if kind != RuntimeKind::Wasm {
        if let Some(first) = hosts.first() {
            first.reject(
                &mut cx.sink,
                "no `allowed_outbound_hosts`: only wasm functions are sandboxed from the network",
            );
            return None;
        }
        return Some(Vec::new());
    }
    let mut ok = true;
    for host in &hosts {
        if !is_outbound_host(&host.value) {
            host.reject(
                &mut cx.sink,
                "a host such as \"https://api.example.com\", \"https://*.example.com:8443\" or \"*://*:*\"",
            );
            ok = false;
        }
    }
    ok.then(|| hosts.into_iter().map(|h| h.value).collect())
}

fn is_outbound_host(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once("://") else {
        return false;
    };
    if !matches!(scheme, "http" | "https" | "*") {
        return false;
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    };
    let port_ok = port.is_none_or(|p| p == "*" || p.parse::<u16>().is_ok_and(|p| p > 0));
    let label = |l: &str| {
        !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    let host_ok = host == "*"
        || host
            .strip_prefix("*.")
            .unwrap_or(host)
            .split('.')
            .all(label);
    port_ok && host_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbound_hosts() {
        assert!(is_outbound_host("https://api.example.com"));
        assert!(is_outbound_host("http://localhost:8080"));
        assert!(is_outbound_host("https://*.example.com"));
        assert!(is_outbound_host("*://*:*"));
        assert!(!is_outbound_host("api.example.com"));
        assert!(!is_outbound_host("ftp://example.com"));
        assert!(!is_outbound_host("https://exa mple.com"));
        assert!(!is_outbound_host("https://example.com:99999"));
        assert!(!is_outbound_host("https://example.com/path"));
    }

    #[test]
    fn node_handlers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("index.js"), "").unwrap();
        std::fs::write(dir.path().join("src/app.mjs"), "").unwrap();
        assert_eq!(node_handler_problem(dir.path(), "index.handler"), None);
        assert_eq!(node_handler_problem(dir.path(), "src/app.api.get"), None);
        assert!(node_handler_problem(dir.path(), "index").is_some());
        assert!(node_handler_problem(dir.path(), "main.handler").is_some());
        assert!(node_handler_problem(dir.path(), "index.1bad").is_some());
    }

    #[test]
    fn python_handlers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("pkg")).unwrap();
        std::fs::write(dir.path().join("app.py"), "").unwrap();
        std::fs::write(dir.path().join("pkg/mod.py"), "").unwrap();
        assert_eq!(python_handler_problem(dir.path(), "app.handler"), None);
        assert_eq!(python_handler_problem(dir.path(), "pkg.mod.handler"), None);
        assert!(python_handler_problem(dir.path(), "handler").is_some());
        assert!(python_handler_problem(dir.path(), "missing.handler").is_some());
    }
}
