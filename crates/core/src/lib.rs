//! The shared model of Nimbus.
//!
//! `nimbus-core` owns the vocabulary every other part speaks: the validated app that a
//! `nimbus.toml` describes ([`AppSpec`] with its [`TableSpec`]s, [`FunctionSpec`]s,
//! [`RouteSpec`]s and [`EventSpec`]s) and the platform's limits ([`limits`]). It does not
//! parse anything (that is `nimbus-manifest`) and runs nothing (that is the server and the
//! runtimes): a value of these types has already been validated.
//!
//! ```
//! use nimbus_core::{AppSpec, RouteKey, HttpMethod};
//!
//! let app = AppSpec::named("user-registration");
//! assert!(app.functions.is_empty());
//! let key: RouteKey = RouteKey::Route { method: HttpMethod::Post, path: "/users".parse().unwrap() };
//! assert_eq!(key.to_string(), "POST /users");
//! ```

mod app;
pub mod cron;
mod event;
mod function;
mod invoke;
pub mod lambda;
pub mod limits;
pub mod logging;
mod route;
mod table;
pub mod trace;

pub use app::{
    ApiKeyAuthSpec, ApiKeySpec, ApiKeyValue, AppSpec, AuthSpec, CorsSpec, JwtAuthSpec, JwtKeys,
    LambdaAuthorizerSpec, RateLimit, UsagePlan,
};
pub use event::{EventSource, EventSpec, RetryPolicy, ScheduleExpression, StartingPosition};
pub use function::{
    AsyncPolicy, Concurrency, FunctionSpec, InstanceMode, RuntimeKind, RuntimeSpec, UnknownRuntime,
};
pub use invoke::{
    BoxFuture, HttpResponse, Instance, Invocation, Invoke, InvokeError, InvokeOptions,
    InvokeResult, Outcome, Report, ResponseStream, Runtime, StartError, Stopper, StreamPart,
    TIMEOUT_ERROR, ThrottleLimit, ToEnd, invoke_to_end,
};
pub use logging::{ApplicationLogLevel, LogFormat, LoggingConfig, SystemLogLevel};
pub use route::{
    HttpMethod, PathSegment, PayloadVersion, RouteAuth, RouteKey, RoutePath, RoutePathError,
    RouteSpec,
};
pub use table::{IndexSpec, KeyAttribute, Projection, ScalarType, StreamView, TableSpec};
