//! Which parts of the schema this version of Nimbus can run.
//!
//! The schema is complete; the platform grows into it. A part whose capability has not
//! been built is rejected with "not supported yet" rather than accepted and ignored. When
//! a capability lands, its [`Feature`] joins [`Support::current`].

use std::fmt;

/// A part of the schema that needs a capability of the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// `runtime = "wasm"` functions.
    WasmRuntime,
    /// `stream` on a table.
    TableStreams,
    /// `[[events]] source = "table:..."`.
    StreamTriggers,
    /// `[[events]] source = "schedule:..."`.
    Schedules,
    /// `[[events]] source = "bus:..."`.
    EventBus,
    /// `[[events]] source = "queue:..."`.
    Queues,
    /// `auth = "jwt"` routes and `[auth.jwt]`.
    JwtAuth,
    /// `auth = "api_key"` routes and `[auth.api_key]`.
    ApiKeys,
    /// `[cors]`.
    Cors,
}

impl Feature {
    /// Every feature.
    pub const ALL: [Feature; 9] = [
        Feature::WasmRuntime,
        Feature::TableStreams,
        Feature::StreamTriggers,
        Feature::Schedules,
        Feature::EventBus,
        Feature::Queues,
        Feature::JwtAuth,
        Feature::ApiKeys,
        Feature::Cors,
    ];
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Feature::WasmRuntime => "wasm functions",
            Feature::TableStreams => "table streams",
            Feature::StreamTriggers => "table stream triggers",
            Feature::Schedules => "schedules",
            Feature::EventBus => "the event bus",
            Feature::Queues => "queues",
            Feature::JwtAuth => "JWT authorization",
            Feature::ApiKeys => "API keys",
            Feature::Cors => "CORS",
        })
    }
}

/// The set of features a validation accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Support {
    features: &'static [Feature],
}

impl Support {
    /// What this build of Nimbus runs.
    pub const fn current() -> Self {
        Support {
            features: &[
                Feature::WasmRuntime,
                Feature::TableStreams,
                Feature::StreamTriggers,
                Feature::Schedules,
                Feature::JwtAuth,
                Feature::ApiKeys,
                Feature::Cors,
            ],
        }
    }

    /// Every feature of the schema, to check a manifest's shape regardless of what this
    /// build runs.
    pub const fn everything() -> Self {
        Support {
            features: &Feature::ALL,
        }
    }

    /// Whether `feature` is accepted.
    pub fn has(&self, feature: Feature) -> bool {
        self.features.contains(&feature)
    }
}
