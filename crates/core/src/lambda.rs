//! Facts of Lambda's and API Gateway's that every runtime and the gateway share.

use crate::{FunctionSpec, RuntimeKind};

/// The environment every function instance sees, whatever runs it: Lambda's variables,
/// dummy credentials, the services endpoint as `AWS_ENDPOINT_URL`, then the manifest's
/// `environment` (which may override any of them). Runtimes add their own (the Runtime
/// API's address, the task root).
pub fn function_environment(
    function: &FunctionSpec,
    region: &str,
    services_endpoint: &str,
) -> Vec<(String, String)> {
    // Custom runtimes (`provided`) have no execution environment name on Lambda.
    let execution_env = match function.runtime.kind {
        RuntimeKind::Provided => String::new(),
        _ => format!("AWS_Lambda_{}", function.runtime.identifier),
    };
    let pairs = [
        ("AWS_LAMBDA_FUNCTION_NAME", function.name.clone()),
        (
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            function.memory_mb.to_string(),
        ),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{}", function.name),
        ),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            format!("nimbus/[$LATEST]{}", uuid::Uuid::new_v4().simple()),
        ),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
        ("AWS_EXECUTION_ENV", execution_env),
        ("AWS_REGION", region.to_owned()),
        ("AWS_DEFAULT_REGION", region.to_owned()),
        ("AWS_ACCESS_KEY_ID", "nimbus".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "nimbus".to_owned()),
        ("AWS_SESSION_TOKEN", "nimbus".to_owned()),
        ("AWS_ENDPOINT_URL", services_endpoint.to_owned()),
        ("_HANDLER", function.handler.clone().unwrap_or_default()),
        ("TZ", ":UTC".to_owned()),
    ];
    let mut env: Vec<(String, String)> =
        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    // Lambda's advanced logging controls, for runtimes that format their own lines.
    env.extend(
        function
            .logging
            .environment()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    env.extend(
        function
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    env
}

/// Whether API Gateway treats a body of this content type as text (sent as is) rather
/// than binary (sent as base64): `text/*`, JSON, XML, JavaScript, form data, YAML, CSV,
/// or no content type at all.
pub fn is_textual_content_type(content_type: &str) -> bool {
    let content_type = content_type.to_ascii_lowercase();
    content_type.is_empty()
        || content_type.starts_with("text/")
        || [
            "json",
            "xml",
            "javascript",
            "x-www-form-urlencoded",
            "yaml",
            "csv",
        ]
        .iter()
        .any(|t| content_type.contains(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn textual_content_types() {
        for t in [
            "",
            "text/plain",
            "application/JSON; charset=utf-8",
            "application/x-yaml",
        ] {
            assert!(is_textual_content_type(t), "{t}");
        }
        for t in ["image/png", "application/octet-stream"] {
            assert!(!is_textual_content_type(t), "{t}");
        }
    }
}
