//! The one error every expression problem becomes, and the order in which a parser
//! reports the problems it finds.

/// A problem with an expression. DynamoDB answers every one of them with a
/// `ValidationException` whose message is [`ExprError::message`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExprError {
    /// DynamoDB's message, word for word where it is known.
    pub message: String,
}

impl ExprError {
    /// An error with this message.
    pub(crate) fn new(message: impl Into<String>) -> ExprError {
        ExprError {
            message: message.into(),
        }
    }

    /// An error about the expression named `kind` ("ConditionExpression", ...), which
    /// DynamoDB prefixes with `Invalid <kind>: `.
    pub(crate) fn invalid(kind: &str, message: impl AsRef<str>) -> ExprError {
        ExprError::new(format!("Invalid {kind}: {}", message.as_ref()))
    }
}

/// The kinds of problem found after an expression parsed, in the order DynamoDB
/// reports them when an expression has several: the first stage wins, and within a
/// stage the problem found first (leftmost) wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Stage {
    /// `((a = b))`.
    Parens,
    /// An unknown function, or one of the wrong kind of expression.
    FunctionName,
    /// A function used where a condition or an operand cannot be one.
    Misused,
    /// A reserved word used as an attribute name.
    Reserved,
    /// An update clause given twice.
    Section,
    /// `#name` not in ExpressionAttributeNames.
    Name,
    /// `:value` not in ExpressionAttributeValues.
    Value,
    /// Path depth, list index range, IN list length.
    Limit,
    /// Two update or projection paths where one contains the other.
    Overlap,
    /// Two paths that use one step as a map key and as a list index.
    Conflict,
    /// ADD or DELETE given a value of a type they do not take.
    UpdateOperand,
    /// A function given the wrong number of operands.
    OperandCount,
    /// A function that needs a document path given something else.
    PathRequired,
    /// A path compared with itself.
    Distinct,
    /// A value of a type the operator or function does not take.
    OperandType,
}

/// The first problem of the earliest stage seen so far.
#[derive(Debug, Default)]
pub(crate) struct Diagnostics {
    first: Option<(Stage, String)>,
}

impl Diagnostics {
    /// Records a problem; it becomes the one reported only if no problem of the same or
    /// an earlier stage was recorded before it.
    pub(crate) fn report(&mut self, stage: Stage, message: String) {
        match &self.first {
            Some((seen, _)) if *seen <= stage => {}
            _ => self.first = Some((stage, message)),
        }
    }

    /// Whether a problem of this stage was recorded and is the one to report.
    pub(crate) fn has(&self, stage: Stage) -> bool {
        matches!(&self.first, Some((seen, _)) if *seen == stage)
    }

    /// The problem to report, if any.
    pub(crate) fn into_first(self) -> Option<String> {
        self.first.map(|(_, message)| message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_stage_then_first_found_wins() {
        let mut d = Diagnostics::default();
        d.report(Stage::OperandType, "type".into());
        d.report(Stage::Name, "name 1".into());
        d.report(Stage::Name, "name 2".into());
        d.report(Stage::Distinct, "distinct".into());
        assert!(d.has(Stage::Name));
        assert_eq!(d.into_first().as_deref(), Some("name 1"));
        assert_eq!(Diagnostics::default().into_first(), None);
    }

    #[test]
    fn invalid_prefixes_the_expression_name() {
        let e = ExprError::invalid("UpdateExpression", "The expression can not be empty;");
        assert_eq!(
            e.to_string(),
            "Invalid UpdateExpression: The expression can not be empty;"
        );
    }
}
