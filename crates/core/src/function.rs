//! Functions declared by an app.

use std::{collections::BTreeMap, fmt, path::PathBuf, str::FromStr, time::Duration};

use serde::Serialize;

/// The family of runtime a function runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeKind {
    /// Node.js through Nimbus's Lambda Runtime API shim.
    Nodejs,
    /// Python through Nimbus's Lambda Runtime API shim.
    Python,
    /// Any executable `bootstrap` speaking the Lambda Runtime API.
    Provided,
    /// A WebAssembly component exporting `wasi:http/incoming-handler`.
    Wasm,
}

impl RuntimeKind {
    /// The name used in `nimbus.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Nodejs => "nodejs",
            RuntimeKind::Python => "python",
            RuntimeKind::Provided => "provided",
            RuntimeKind::Wasm => "wasm",
        }
    }
}

impl fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A runtime as the manifest names it: the family and the exact spelling, so that an AWS
/// identifier such as `nodejs20.x` can be reported back (`AWS_EXECUTION_ENV`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuntimeSpec {
    /// The runtime family.
    pub kind: RuntimeKind,
    /// The identifier as written, for example `nodejs`, `nodejs20.x` or `provided.al2023`.
    pub identifier: String,
}

/// A runtime name that Nimbus does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownRuntime;

/// Every runtime identifier Nimbus accepts: its own names and AWS Lambda's current ones.
const RUNTIMES: &[(&str, RuntimeKind)] = &[
    ("nodejs", RuntimeKind::Nodejs),
    ("nodejs18.x", RuntimeKind::Nodejs),
    ("nodejs20.x", RuntimeKind::Nodejs),
    ("nodejs22.x", RuntimeKind::Nodejs),
    ("python", RuntimeKind::Python),
    ("python3.9", RuntimeKind::Python),
    ("python3.10", RuntimeKind::Python),
    ("python3.11", RuntimeKind::Python),
    ("python3.12", RuntimeKind::Python),
    ("python3.13", RuntimeKind::Python),
    ("provided", RuntimeKind::Provided),
    ("provided.al2", RuntimeKind::Provided),
    ("provided.al2023", RuntimeKind::Provided),
    ("wasm", RuntimeKind::Wasm),
];

impl RuntimeSpec {
    /// Every accepted identifier, for error messages and docs.
    pub fn identifiers() -> impl Iterator<Item = &'static str> {
        RUNTIMES.iter().map(|(name, _)| *name)
    }
}

impl FromStr for RuntimeSpec {
    type Err = UnknownRuntime;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RUNTIMES
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(name, kind)| RuntimeSpec {
                kind: *kind,
                identifier: (*name).to_owned(),
            })
            .ok_or(UnknownRuntime)
    }
}

/// How many instances of a function may run at once and how many are kept warm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Concurrency {
    /// Most instances at once; requests beyond wait, then are throttled.
    pub max: u32,
    /// Instances kept started even when idle.
    pub min_warm: u32,
}

/// A function the app declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FunctionSpec {
    /// The function name (Lambda's rules).
    pub name: String,
    /// What runs it.
    pub runtime: RuntimeSpec,
    /// The code: a directory (nodejs, python, provided, a cargo package for wasm) or a
    /// `.wasm` file; absolute.
    pub code: PathBuf,
    /// The handler (`file.export` for Node.js, `module.function` for Python); `None` for
    /// runtimes that have none.
    pub handler: Option<String>,
    /// Memory size in MB.
    pub memory_mb: u32,
    /// Longest one invocation may run.
    #[serde(with = "duration_secs")]
    pub timeout: Duration,
    /// Scaling limits.
    pub concurrency: Concurrency,
    /// Environment variables the function sees, besides the ones Nimbus sets.
    pub environment: BTreeMap<String, String>,
    /// Hosts a wasm function may send HTTP requests to, besides the services endpoint.
    pub allowed_outbound_hosts: Vec<String>,
    /// How a wasm function's instances are used (process functions always reuse theirs).
    pub instances: InstanceMode,
    /// How asynchronous invocations of the function are retried and where their results go.
    pub async_policy: AsyncPolicy,
    /// How its invocations log: text or Lambda's JSON format, and levels.
    pub logging: crate::LoggingConfig,
}

impl FunctionSpec {
    /// A function named `name`, run by `runtime`, with its code at `code`, and the
    /// manifest's defaults for everything else: no handler, 128 MB, 3 s, at most 100
    /// instances and none kept warm, no environment, no outbound hosts, instances reused,
    /// the default async policy and logging. Change the fields a caller needs otherwise.
    pub fn new(name: impl Into<String>, runtime: RuntimeSpec, code: impl Into<PathBuf>) -> Self {
        FunctionSpec {
            name: name.into(),
            runtime,
            code: code.into(),
            handler: None,
            memory_mb: crate::limits::DEFAULT_MEMORY_MB,
            timeout: crate::limits::DEFAULT_TIMEOUT,
            concurrency: Concurrency {
                max: crate::limits::DEFAULT_MAX_CONCURRENCY,
                min_warm: 0,
            },
            environment: BTreeMap::new(),
            allowed_outbound_hosts: Vec::new(),
            instances: InstanceMode::Reuse,
            async_policy: AsyncPolicy::default(),
            logging: crate::LoggingConfig::default(),
        }
    }
}

/// How asynchronous (`InvocationType: Event`) invocations of a function are handled, as
/// Lambda's `PutFunctionEventInvokeConfig` configures them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AsyncPolicy {
    /// Retries after a failed first attempt (`MaximumRetryAttempts`).
    pub max_retries: u32,
    /// Oldest an event may be and still be attempted (`MaximumEventAgeInSeconds`).
    #[serde(with = "duration_secs")]
    pub max_event_age: Duration,
    /// A function of the app that receives an invocation record of every success.
    pub on_success: Option<String>,
    /// A function of the app that receives an invocation record of every event that
    /// failed all its attempts or grew too old.
    pub on_failure: Option<String>,
}

impl AsyncPolicy {
    /// Shortest `max_event_age` (Lambda's 60 s).
    pub const MIN_EVENT_AGE: Duration = Duration::from_secs(60);
    /// Longest `max_event_age` (Lambda's 6 h).
    pub const MAX_EVENT_AGE: Duration = Duration::from_secs(6 * 3600);
}

impl Default for AsyncPolicy {
    /// Lambda's defaults: two retries, six hours, no destinations.
    fn default() -> Self {
        AsyncPolicy {
            max_retries: crate::limits::DEFAULT_MAX_RETRIES,
            max_event_age: crate::limits::DEFAULT_MAX_EVENT_AGE,
            on_success: None,
            on_failure: None,
        }
    }
}

/// How a wasm function's instances serve requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceMode {
    /// An instance serves one request at a time and is kept for the next, as a Lambda
    /// execution environment is: module state persists as Lambda's globals do.
    #[default]
    Reuse,
    /// Every request gets a fresh instance: nothing survives between requests.
    PerRequest,
}

pub(crate) mod duration_secs {
    use std::time::Duration;

    pub(crate) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_identifiers_are_aliases() {
        let spec: RuntimeSpec = "nodejs20.x".parse().unwrap();
        assert_eq!(spec.kind, RuntimeKind::Nodejs);
        assert_eq!(spec.identifier, "nodejs20.x");
        assert_eq!(
            "provided.al2023".parse::<RuntimeSpec>().unwrap().kind,
            RuntimeKind::Provided
        );
        assert_eq!("java21".parse::<RuntimeSpec>(), Err(UnknownRuntime));
    }
}
