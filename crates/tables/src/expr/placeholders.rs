//! ExpressionAttributeNames and ExpressionAttributeValues: what `#name` and `:value`
//! stand for, and which of them the expressions of a request used.

use std::collections::{HashMap, HashSet};

use super::error::ExprError;
use crate::value::AttributeValue;

/// The placeholders of one request. Every expression of the request is parsed with the
/// same `Placeholders`, which records the placeholders used so that
/// [`Placeholders::check_unused`] can reject the ones no expression used, as DynamoDB
/// does.
#[derive(Debug, Clone, Default)]
pub struct Placeholders<'a> {
    names: Option<&'a HashMap<String, String>>,
    values: Option<&'a HashMap<String, AttributeValue>>,
    used_names: HashSet<String>,
    used_values: HashSet<String>,
    /// Whether the expression being parsed was written by Nimbus from a request's legacy
    /// parameters (AttributeUpdates, Expected, ...): DynamoDB's limits on expression size
    /// and operators apply to expressions callers write, not to those parameters.
    pub(crate) from_legacy: bool,
}

impl<'a> Placeholders<'a> {
    /// Placeholders from a request's ExpressionAttributeNames (`#n` to an attribute
    /// name) and ExpressionAttributeValues (`:v` to a value).
    pub fn new(
        names: Option<&'a HashMap<String, String>>,
        values: Option<&'a HashMap<String, AttributeValue>>,
    ) -> Self {
        Placeholders {
            names,
            values,
            used_names: HashSet::new(),
            used_values: HashSet::new(),
            from_legacy: false,
        }
    }

    /// The attribute name `#placeholder` stands for, marking it used.
    pub(crate) fn name(&mut self, placeholder: &str) -> Option<&'a str> {
        let name = self.names?.get(placeholder)?;
        self.used_names.insert(placeholder.to_owned());
        Some(name.as_str())
    }

    /// The value `:placeholder` stands for, marking it used.
    pub(crate) fn value(&mut self, placeholder: &str) -> Option<&'a AttributeValue> {
        let value = self.values?.get(placeholder)?;
        self.used_values.insert(placeholder.to_owned());
        Some(value)
    }

    /// Checks that the expressions parsed with these placeholders used every one of them.
    /// Call it after the last expression of the request parsed.
    ///
    /// # Errors
    /// DynamoDB's error for the unused names (checked first) or values, listing their
    /// keys in sorted order, e.g. `Value provided in ExpressionAttributeValues unused in
    /// expressions: keys: {:x}`.
    pub fn check_unused(&self) -> Result<(), ExprError> {
        fn unused<V>(
            map: Option<&HashMap<String, V>>,
            used: &HashSet<String>,
            what: &str,
        ) -> Result<(), ExprError> {
            let mut keys: Vec<&str> = map
                .into_iter()
                .flat_map(HashMap::keys)
                .filter(|k| !used.contains(*k))
                .map(String::as_str)
                .collect();
            if keys.is_empty() {
                return Ok(());
            }
            keys.sort_unstable();
            Err(ExprError::new(format!(
                "Value provided in {what} unused in expressions: keys: {{{}}}",
                keys.join(", ")
            )))
        }
        unused(self.names, &self.used_names, "ExpressionAttributeNames")?;
        unused(self.values, &self.used_values, "ExpressionAttributeValues")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_and_tracks_use() {
        let names = HashMap::from([
            ("#a".to_owned(), "a".to_owned()),
            ("#b".to_owned(), "b".to_owned()),
        ]);
        let values = HashMap::from([
            (":x".to_owned(), AttributeValue::Bool(true)),
            (":y".to_owned(), AttributeValue::Null),
            (":z".to_owned(), AttributeValue::Null),
        ]);
        let mut ph = Placeholders::new(Some(&names), Some(&values));
        assert_eq!(ph.name("#a"), Some("a"));
        assert_eq!(ph.name("#nope"), None);
        assert_eq!(ph.value(":x"), Some(&AttributeValue::Bool(true)));
        assert_eq!(
            ph.check_unused().unwrap_err().message,
            "Value provided in ExpressionAttributeNames unused in expressions: keys: {#b}"
        );
        ph.name("#b");
        assert_eq!(
            ph.check_unused().unwrap_err().message,
            "Value provided in ExpressionAttributeValues unused in expressions: keys: {:y, :z}"
        );
        ph.value(":y");
        ph.value(":z");
        assert_eq!(ph.check_unused(), Ok(()));
    }

    #[test]
    fn nothing_given_nothing_unused() {
        let mut ph = Placeholders::new(None, None);
        assert_eq!(ph.name("#a"), None);
        assert_eq!(ph.value(":a"), None);
        assert_eq!(ph.check_unused(), Ok(()));
    }
}
