//! What `GET /healthz` reports.

use serde_json::json;

/// The facts `/healthz` reports about the node.
#[derive(Debug, Clone)]
pub struct Health {
    /// The app served, if any.
    pub app: Option<String>,
    /// Nimbus's version.
    pub version: &'static str,
}

impl Health {
    /// The JSON body of a healthy answer.
    pub fn body(&self) -> serde_json::Value {
        json!({ "status": "ok", "app": self.app, "version": self.version })
    }
}
