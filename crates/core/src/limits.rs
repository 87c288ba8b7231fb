//! Limits that Nimbus enforces, with AWS Lambda's and DynamoDB's values where Nimbus
//! follows them.

use std::time::Duration;

/// Smallest function memory size in MB (Lambda's).
pub const MIN_MEMORY_MB: u32 = 128;
/// Largest function memory size in MB (Lambda's).
pub const MAX_MEMORY_MB: u32 = 10_240;
/// Memory size when a function does not say.
pub const DEFAULT_MEMORY_MB: u32 = 128;

/// Shortest function timeout.
pub const MIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest function timeout (Lambda's 15 minutes).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(900);
/// Timeout when a function does not say (Lambda's default is 3 s; API-facing functions
/// usually need more, and API Gateway gives up after 30 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// Concurrent instances of one function when it does not say.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 100;
/// Most concurrent instances one function may ask for.
pub const MAX_CONCURRENCY: u32 = 10_000;

/// Table and index names: 3 to 255 characters of `[a-zA-Z0-9_.-]` (DynamoDB's rule).
pub const TABLE_NAME_LEN: std::ops::RangeInclusive<usize> = 3..=255;
/// Attribute names used in keys: 1 to 255 bytes (DynamoDB's rule for key attributes).
pub const KEY_ATTRIBUTE_NAME_LEN: std::ops::RangeInclusive<usize> = 1..=255;
/// Global secondary indexes per table (DynamoDB's default quota).
pub const MAX_GLOBAL_INDEXES: usize = 20;
/// Local secondary indexes per table (DynamoDB's limit).
pub const MAX_LOCAL_INDEXES: usize = 5;
/// Attributes named in all INCLUDE projections of one table (DynamoDB's limit).
pub const MAX_PROJECTED_ATTRIBUTES: usize = 100;

/// Batch size of a table stream or queue trigger when the event does not say
/// (Lambda's default for DynamoDB streams).
pub const DEFAULT_BATCH_SIZE: u32 = 100;
/// Largest batch size of a trigger (Lambda's limit for streams and standard queues).
pub const MAX_BATCH_SIZE: u32 = 10_000;
/// Longest batching window of a trigger (Lambda's 300 s).
pub const MAX_BATCHING_WINDOW: Duration = Duration::from_secs(300);
/// Retries of a failed async delivery when not configured (Lambda's default).
pub const DEFAULT_MAX_RETRIES: u32 = 2;
/// Most retries Nimbus allows (Lambda allows 2 for async, 10 000 for streams).
pub const MAX_RETRIES: u32 = 10_000;
/// Oldest an event may be and still be delivered, when not configured (Lambda's 6 h).
pub const DEFAULT_MAX_EVENT_AGE: Duration = Duration::from_secs(6 * 3600);
/// Longest maximum event age (Lambda's 6 h for async; stream records live 24 h).
pub const MAX_EVENT_AGE: Duration = Duration::from_secs(24 * 3600);

/// Says whether `name` is a valid table or index name (DynamoDB's rule).
pub fn is_valid_table_name(name: &str) -> bool {
    TABLE_NAME_LEN.contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Says whether `name` is a valid function name: 1 to 64 of `[a-zA-Z0-9_-]`, as Lambda
/// allows for an unqualified function name.
pub fn is_valid_function_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// Says whether `name` is a valid environment variable name for a function: a letter, then
/// letters, digits and underscores (Lambda's rule).
pub fn is_valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Environment variables that Nimbus sets for every function and a manifest may not
/// override (Lambda's reserved names).
pub const RESERVED_ENV: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_DEFAULT_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_FORMAT",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_LEVEL",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_REGION",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SECRET_KEY",
    "AWS_SESSION_TOKEN",
    "LAMBDA_RUNTIME_DIR",
    "LAMBDA_TASK_ROOT",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_follow_dynamodb() {
        assert!(is_valid_table_name("Users"));
        assert!(is_valid_table_name("a.b-c_d"));
        assert!(!is_valid_table_name("ab"));
        assert!(!is_valid_table_name("has space"));
        assert!(!is_valid_table_name(&"x".repeat(256)));
        assert!(is_valid_table_name(&"x".repeat(255)));
    }

    #[test]
    fn env_names_follow_lambda() {
        assert!(is_valid_env_name("STAGE"));
        assert!(is_valid_env_name("a1_b"));
        assert!(!is_valid_env_name("1A"));
        assert!(!is_valid_env_name("A-B"));
        assert!(!is_valid_env_name(""));
    }
}
