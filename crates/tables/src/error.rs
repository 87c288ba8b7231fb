//! Errors as DynamoDB sends them: a type name and a message, HTTP 400 (500 for internal
//! errors).

use std::fmt;

use serde_json::{Value as Json, json};

use crate::value::{Item, ValueError, item_to_json};

/// DynamoDB's error types that Nimbus returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A request parameter is invalid.
    Validation,
    /// The request body is not the JSON the operation expects.
    Serialization,
    /// `X-Amz-Target` names no operation Nimbus serves.
    UnknownOperation,
    /// A condition expression was false.
    ConditionalCheckFailed,
    /// The table or index does not exist.
    ResourceNotFound,
    /// The table already exists or is being changed.
    ResourceInUse,
    /// A transaction was cancelled.
    TransactionCanceled,
    /// A transaction conflicts with another in flight.
    TransactionConflict,
    /// The same idempotency token was used with a different request.
    IdempotentParameterMismatch,
    /// An item collection grew beyond 10 GB (LSI tables).
    ItemCollectionSizeLimitExceeded,
    /// A DynamoDB Streams shard iterator is older than 15 minutes.
    ExpiredIterator,
    /// A DynamoDB Streams read reached records already trimmed from the stream.
    TrimmedDataAccess,
    /// A limit on concurrent table changes (one index created or deleted per UpdateTable).
    LimitExceeded,
    /// A transaction with the same `ClientRequestToken` is still in progress.
    TransactionInProgress,
    /// Something failed inside Nimbus.
    InternalServerError,
}

impl ErrorKind {
    /// The `__type` value.
    pub fn type_name(self) -> &'static str {
        match self {
            ErrorKind::Validation => "com.amazon.coral.validate#ValidationException",
            ErrorKind::Serialization => "com.amazon.coral.service#SerializationException",
            ErrorKind::UnknownOperation => "com.amazon.coral.service#UnknownOperationException",
            ErrorKind::ConditionalCheckFailed => {
                "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException"
            }
            ErrorKind::ResourceNotFound => {
                "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException"
            }
            ErrorKind::ResourceInUse => "com.amazonaws.dynamodb.v20120810#ResourceInUseException",
            ErrorKind::TransactionCanceled => {
                "com.amazonaws.dynamodb.v20120810#TransactionCanceledException"
            }
            ErrorKind::TransactionConflict => {
                "com.amazonaws.dynamodb.v20120810#TransactionConflictException"
            }
            ErrorKind::IdempotentParameterMismatch => {
                "com.amazonaws.dynamodb.v20120810#IdempotentParameterMismatchException"
            }
            ErrorKind::ItemCollectionSizeLimitExceeded => {
                "com.amazonaws.dynamodb.v20120810#ItemCollectionSizeLimitExceededException"
            }
            ErrorKind::ExpiredIterator => {
                "com.amazonaws.dynamodb.v20120810#ExpiredIteratorException"
            }
            ErrorKind::TrimmedDataAccess => {
                "com.amazonaws.dynamodb.v20120810#TrimmedDataAccessException"
            }
            ErrorKind::LimitExceeded => "com.amazonaws.dynamodb.v20120810#LimitExceededException",
            ErrorKind::TransactionInProgress => {
                "com.amazonaws.dynamodb.v20120810#TransactionInProgressException"
            }
            ErrorKind::InternalServerError => {
                "com.amazonaws.dynamodb.v20120810#InternalServerError"
            }
        }
    }

    /// The HTTP status DynamoDB answers with.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::InternalServerError => 500,
            _ => 400,
        }
    }
}

/// A reason in a `TransactionCanceledException`.
#[derive(Debug, Clone, PartialEq)]
pub struct CancellationReason {
    /// `None`, `ConditionalCheckFailed`, `ValidationError`, ...
    pub code: String,
    /// Present for failed items.
    pub message: Option<String>,
    /// The item, when `ReturnValuesOnConditionCheckFailure` asked for it.
    pub item: Option<Item>,
}

/// An error answered to a DynamoDB client.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The error type.
    pub kind: ErrorKind,
    /// The message.
    pub message: String,
    /// The current item, for `ConditionalCheckFailedException` with
    /// `ReturnValuesOnConditionCheckFailure = ALL_OLD`.
    pub item: Option<Item>,
    /// Per-item reasons of a cancelled transaction.
    pub cancellation_reasons: Vec<CancellationReason>,
}

impl ApiError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
            item: None,
            cancellation_reasons: Vec::new(),
        }
    }

    /// A `ValidationException`.
    pub fn validation(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::Validation, message)
    }

    /// A `ValidationException` prefixed as DynamoDB prefixes parameter errors.
    pub fn invalid_parameter(message: impl fmt::Display) -> ApiError {
        ApiError::validation(format!(
            "One or more parameter values were invalid: {message}"
        ))
    }

    /// A `ResourceNotFoundException` for a table.
    pub fn table_not_found() -> ApiError {
        ApiError::new(ErrorKind::ResourceNotFound, "Requested resource not found")
    }

    /// A `ConditionalCheckFailedException`.
    pub fn condition_failed(item: Option<Item>) -> ApiError {
        ApiError {
            item,
            ..ApiError::new(
                ErrorKind::ConditionalCheckFailed,
                "The conditional request failed",
            )
        }
    }

    /// An `InternalServerError`; the cause is logged where it happened.
    pub fn internal() -> ApiError {
        ApiError::new(ErrorKind::InternalServerError, "Internal server error")
    }

    /// The JSON body.
    pub fn body(&self) -> Json {
        let mut body = json!({ "__type": self.kind.type_name(), "message": self.message });
        if let Some(item) = &self.item {
            body["Item"] = item_to_json(item);
        }
        if !self.cancellation_reasons.is_empty() {
            body["CancellationReasons"] = self
                .cancellation_reasons
                .iter()
                .map(|r| {
                    let mut reason = json!({ "Code": r.code });
                    if let Some(m) = &r.message {
                        reason["Message"] = json!(m);
                    }
                    if let Some(item) = &r.item {
                        reason["Item"] = item_to_json(item);
                    }
                    reason
                })
                .collect();
        }
        body
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.type_name(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<ValueError> for ApiError {
    fn from(e: ValueError) -> Self {
        match e {
            ValueError::Serialization(m) => ApiError::new(ErrorKind::Serialization, m),
            ValueError::Validation(m) => ApiError::validation(m),
        }
    }
}
