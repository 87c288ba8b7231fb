//! Key condition expressions: `pk = :v`, optionally `AND` one condition on the sort key.
//!
//! Parsing checks the shape DynamoDB allows, in its order of checks and with its
//! messages; [`KeyConditions::resolve`] then matches the conditions with the key schema
//! of the table or index queried.

use std::fmt;

use super::condition::{Comparator, Condition, Operand};
use super::condition_parser::{KEYWORDS, or};
use super::error::ExprError;
use super::eval::scalar_cmp;
use super::parser::parse_with;
use super::placeholders::Placeholders;
use super::render::{Rendered, Renderer};
use crate::value::{AttributeValue, Item};

/// A condition on one key attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortKeyCondition {
    /// `key = :v` (the only condition a partition key takes).
    Eq(AttributeValue),
    /// `key < :v`.
    Lt(AttributeValue),
    /// `key <= :v`.
    Le(AttributeValue),
    /// `key > :v`.
    Gt(AttributeValue),
    /// `key >= :v`.
    Ge(AttributeValue),
    /// `key BETWEEN :low AND :high` (inclusive).
    Between(AttributeValue, AttributeValue),
    /// `begins_with(key, :prefix)`.
    BeginsWith(AttributeValue),
}

impl SortKeyCondition {
    /// Whether a key value satisfies the condition (values of another type never do).
    pub fn matches(&self, key: &AttributeValue) -> bool {
        let cmp = |v: &AttributeValue| scalar_cmp(key, v);
        match self {
            SortKeyCondition::Eq(v) => key == v,
            SortKeyCondition::Lt(v) => cmp(v).is_some_and(|o| o.is_lt()),
            SortKeyCondition::Le(v) => cmp(v).is_some_and(|o| o.is_le()),
            SortKeyCondition::Gt(v) => cmp(v).is_some_and(|o| o.is_gt()),
            SortKeyCondition::Ge(v) => cmp(v).is_some_and(|o| o.is_ge()),
            SortKeyCondition::Between(low, high) => {
                cmp(low).is_some_and(|o| o.is_ge()) && cmp(high).is_some_and(|o| o.is_le())
            }
            SortKeyCondition::BeginsWith(prefix) => match (key, prefix) {
                (AttributeValue::S(k), AttributeValue::S(p)) => k.starts_with(p.as_str()),
                (AttributeValue::B(k), AttributeValue::B(p)) => k.starts_with(p),
                _ => false,
            },
        }
    }

    /// The values the condition compares with.
    pub fn values(&self) -> Vec<&AttributeValue> {
        match self {
            SortKeyCondition::Eq(v)
            | SortKeyCondition::Lt(v)
            | SortKeyCondition::Le(v)
            | SortKeyCondition::Gt(v)
            | SortKeyCondition::Ge(v)
            | SortKeyCondition::BeginsWith(v) => vec![v],
            SortKeyCondition::Between(low, high) => vec![low, high],
        }
    }
}

/// A parsed KeyConditionExpression: one or two conditions, each on a different
/// top-level attribute, in written order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyConditions {
    /// The attribute and its condition.
    pub conditions: Vec<(String, SortKeyCondition)>,
}

/// A key condition matched with a key schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCondition {
    /// The partition key and the value it must equal.
    pub partition: (String, AttributeValue),
    /// The sort key and its condition, if the expression has one.
    pub sort: Option<(String, SortKeyCondition)>,
}

impl KeyCondition {
    /// Checks the condition against a key schema (the partition key and the sort key,
    /// if any), with DynamoDB's messages; swaps the two conditions when both are `=` and
    /// the sort key's was taken for the partition key's.
    ///
    /// # Errors
    /// As [`KeyConditions::resolve`].
    pub fn for_key_schema(
        &self,
        partition_key: &str,
        sort_key: Option<&str>,
    ) -> Result<KeyCondition, ExprError> {
        self.conditions().resolve(partition_key, sort_key)
    }

    /// The conditions, partition key's first.
    pub fn conditions(&self) -> KeyConditions {
        let (name, value) = &self.partition;
        let mut conditions = vec![(name.clone(), SortKeyCondition::Eq(value.clone()))];
        conditions.extend(self.sort.clone());
        KeyConditions { conditions }
    }

    /// Whether an item's key satisfies the condition.
    pub fn matches(&self, item: &Item) -> bool {
        let (name, value) = &self.partition;
        item.get(name) == Some(value)
            && self
                .sort
                .as_ref()
                .is_none_or(|(name, cond)| item.get(name).is_some_and(|v| cond.matches(v)))
    }
}

fn invalid_operator(operator: &str) -> ExprError {
    ExprError::new(format!(
        "Invalid operator used in KeyConditionExpression: {operator}"
    ))
}

/// Parses a KeyConditionExpression and picks its partition key condition without
/// knowing the key schema: the (first) `=` condition. Check the result against the
/// schema with [`KeyCondition::for_key_schema`], which also fixes the pick when both
/// conditions are `=` and the sort key's came first.
///
/// # Errors
/// Those of [`parse_key_conditions`], and `Query key condition not supported` when no
/// condition is `=` (DynamoDB says `Query condition missed key schema element: <pk>`
/// when the one condition is on the sort key; [`KeyConditions::resolve`] can tell).
pub fn parse_key_condition(
    src: &str,
    ph: &mut Placeholders<'_>,
) -> Result<KeyCondition, ExprError> {
    let mut conditions = parse_key_conditions(src, ph)?.conditions;
    let Some(i) = conditions
        .iter()
        .position(|(_, c)| matches!(c, SortKeyCondition::Eq(_)))
    else {
        return Err(ExprError::new("Query key condition not supported"));
    };
    let (name, condition) = conditions.remove(i);
    let SortKeyCondition::Eq(value) = condition else {
        return Err(ExprError::new("Query key condition not supported"));
    };
    Ok(KeyCondition {
        partition: (name, value),
        sort: conditions.pop(),
    })
}

/// Parses a KeyConditionExpression into its conditions, as written; match them with a
/// key schema with [`KeyConditions::resolve`].
///
/// # Errors
/// The errors of [`super::parse_condition`] (as `Invalid KeyConditionExpression: ...`),
/// then DynamoDB's errors for shapes a key condition may not have: OR, NOT, IN, `<>` and
/// most functions, nested paths, `size()`, conditions without a key attribute or with
/// two, more than one condition per key, more than two conditions.
pub fn parse_key_conditions(
    src: &str,
    ph: &mut Placeholders<'_>,
) -> Result<KeyConditions, ExprError> {
    let condition = parse_with(src, "KeyConditionExpression", KEYWORDS, true, ph, or)?;
    let mut conditions = Vec::new();
    collect(&condition, &mut conditions)?;
    if conditions.len() > 2 {
        return Err(ExprError::new("Conditions can be of length 1 or 2 only"));
    }
    Ok(KeyConditions { conditions })
}

/// Walks the ANDed conditions in written order, checking each.
fn collect(
    condition: &Condition,
    out: &mut Vec<(String, SortKeyCondition)>,
) -> Result<(), ExprError> {
    let first_operand = |operator: &str, first: &Operand| match first {
        Operand::Path(_) => Ok(()),
        _ => Err(ExprError::new(format!(
            "Invalid condition in KeyConditionExpression: {operator} operator must have the key attribute as its first operand"
        ))),
    };
    let (operands, build): (Vec<&Operand>, Build) = match condition {
        Condition::And(a, b) => {
            collect(a, out)?;
            return collect(b, out);
        }
        Condition::Or(..) => return Err(invalid_operator("OR")),
        Condition::Not(_) => return Err(invalid_operator("NOT")),
        Condition::In(..) => return Err(invalid_operator("IN")),
        Condition::AttributeExists(_) => return Err(invalid_operator("attribute_exists")),
        Condition::AttributeNotExists(_) => {
            return Err(invalid_operator("attribute_not_exists"));
        }
        Condition::AttributeType(..) => return Err(invalid_operator("attribute_type")),
        Condition::Contains(..) => return Err(invalid_operator("contains")),
        Condition::Compare(_, Comparator::Ne, _) => return Err(invalid_operator("<>")),
        Condition::Compare(a, cmp, b) => (vec![a, b], Build::Compare(*cmp)),
        Condition::Between(a, low, high) => {
            first_operand("BETWEEN", a)?;
            (vec![a, low, high], Build::Between)
        }
        Condition::BeginsWith(a, prefix) => {
            first_operand("begins_with", a)?;
            (vec![a, prefix], Build::BeginsWith)
        }
    };
    let mut key: Option<(usize, &str)> = None;
    let mut values = Vec::new();
    for (i, operand) in operands.iter().enumerate() {
        match operand {
            Operand::Path(path) => {
                if key.is_some() {
                    return Err(ExprError::new(
                        "Invalid condition in KeyConditionExpression: Multiple attribute names used in one condition",
                    ));
                }
                let (Some(name), 1) = (path.top_level(), path.0.len()) else {
                    return Err(ExprError::new(
                        "KeyConditionExpressions cannot have conditions on nested attributes",
                    ));
                };
                key = Some((i, name));
            }
            Operand::Size(_) => {
                return Err(ExprError::new(
                    "KeyConditionExpressions cannot contain nested operations",
                ));
            }
            Operand::Value(value) => values.push(value.clone()),
        }
    }
    let Some((position, name)) = key else {
        return Err(ExprError::new(
            "Invalid condition in KeyConditionExpression: No key attribute specified",
        ));
    };
    if out.iter().any(|(seen, _)| seen == name) {
        return Err(ExprError::new(
            "KeyConditionExpressions must only contain one condition per key",
        ));
    }
    let mut values = values.into_iter();
    let mut next = || values.next().unwrap_or(AttributeValue::Null);
    let condition = match build {
        // `:v < key` is `key > :v`.
        Build::Compare(cmp) => match (cmp, position == 0) {
            (Comparator::Lt, true) | (Comparator::Gt, false) => SortKeyCondition::Lt(next()),
            (Comparator::Le, true) | (Comparator::Ge, false) => SortKeyCondition::Le(next()),
            (Comparator::Gt, true) | (Comparator::Lt, false) => SortKeyCondition::Gt(next()),
            (Comparator::Ge, true) | (Comparator::Le, false) => SortKeyCondition::Ge(next()),
            _ => SortKeyCondition::Eq(next()),
        },
        Build::Between => {
            let low = next();
            SortKeyCondition::Between(low, next())
        }
        Build::BeginsWith => SortKeyCondition::BeginsWith(next()),
    };
    out.push((name.to_owned(), condition));
    Ok(())
}

/// Which key condition a leaf becomes.
enum Build {
    Compare(Comparator),
    Between,
    BeginsWith,
}

impl KeyConditions {
    /// Matches the conditions with a key schema: a condition `=` on the partition key,
    /// and at most one more, on the sort key.
    ///
    /// # Errors
    /// `Query condition missed key schema element: <key>` when the partition key has no
    /// condition or the other condition is not on the sort key, `Query key condition not
    /// supported` when the partition key's condition is not `=` (or the schema has no
    /// sort key for a second condition).
    pub fn resolve(
        &self,
        partition_key: &str,
        sort_key: Option<&str>,
    ) -> Result<KeyCondition, ExprError> {
        let missed =
            |key: &str| ExprError::new(format!("Query condition missed key schema element: {key}"));
        let unsupported = || ExprError::new("Query key condition not supported");
        let Some((_, partition)) = self.conditions.iter().find(|(n, _)| n == partition_key) else {
            return Err(missed(partition_key));
        };
        let SortKeyCondition::Eq(value) = partition else {
            return Err(unsupported());
        };
        let sort = match self.conditions.iter().find(|(n, _)| n != partition_key) {
            None => None,
            Some((name, condition)) => match sort_key {
                Some(key) if key == name => Some((name.clone(), condition.clone())),
                Some(key) => return Err(missed(key)),
                None => return Err(unsupported()),
            },
        };
        Ok(KeyCondition {
            partition: (partition_key.to_owned(), value.clone()),
            sort,
        })
    }

    /// The conditions as text with their placeholders; see [`Rendered`].
    pub fn render(&self) -> Rendered {
        let mut r = Renderer::default();
        for (i, (name, condition)) in self.conditions.iter().enumerate() {
            if i > 0 {
                r.text(" AND ");
            }
            let compare = |r: &mut Renderer, symbol: &str, value: &AttributeValue| {
                r.name(name);
                r.text(&format!(" {symbol} "));
                r.value(value);
            };
            match condition {
                SortKeyCondition::Eq(v) => compare(&mut r, "=", v),
                SortKeyCondition::Lt(v) => compare(&mut r, "<", v),
                SortKeyCondition::Le(v) => compare(&mut r, "<=", v),
                SortKeyCondition::Gt(v) => compare(&mut r, ">", v),
                SortKeyCondition::Ge(v) => compare(&mut r, ">=", v),
                SortKeyCondition::Between(low, high) => {
                    r.name(name);
                    r.text(" BETWEEN ");
                    r.value(low);
                    r.text(" AND ");
                    r.value(high);
                }
                SortKeyCondition::BeginsWith(prefix) => {
                    r.text("begins_with(");
                    r.name(name);
                    r.text(", ");
                    r.value(prefix);
                    r.text(")");
                }
            }
        }
        r.finish()
    }
}

/// Prints the key condition, partition key first, with placeholders `:v0`, `#n0`, ...
/// (see [`KeyConditions::render`] for the maps that go with them).
impl fmt::Display for KeyCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.conditions().fmt(f)
    }
}

/// Prints the key conditions with placeholders `:v0`, `#n0`, ... (see
/// [`KeyConditions::render`] for the maps that go with them).
impl fmt::Display for KeyConditions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render().expression)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn n(s: &str) -> AttributeValue {
        AttributeValue::N(s.parse().unwrap())
    }

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.to_owned())
    }

    fn parse(src: &str) -> Result<KeyConditions, String> {
        let values = HashMap::from([
            (":a".to_owned(), s("a")),
            (":b".to_owned(), s("b")),
            (":n".to_owned(), n("1")),
            (":t".to_owned(), s("S")),
        ]);
        let names = HashMap::from([("#k".to_owned(), "key".to_owned())]);
        let mut ph = Placeholders::new(Some(&names), Some(&values));
        parse_key_conditions(src, &mut ph).map_err(|e| e.message)
    }

    #[test]
    fn parses_every_form() {
        let conditions = |src: &str| parse(src).unwrap().conditions;
        assert_eq!(
            conditions("pk = :a"),
            vec![("pk".to_owned(), SortKeyCondition::Eq(s("a")))]
        );
        for (src, expected) in [
            ("sk < :n", SortKeyCondition::Lt(n("1"))),
            ("sk <= :n", SortKeyCondition::Le(n("1"))),
            ("sk > :n", SortKeyCondition::Gt(n("1"))),
            ("sk >= :n", SortKeyCondition::Ge(n("1"))),
            (":n > sk", SortKeyCondition::Lt(n("1"))),
            (":n >= sk", SortKeyCondition::Le(n("1"))),
            (":n < sk", SortKeyCondition::Gt(n("1"))),
            (":n <= sk", SortKeyCondition::Ge(n("1"))),
            (":n = sk", SortKeyCondition::Eq(n("1"))),
            (
                "sk BETWEEN :a AND :b",
                SortKeyCondition::Between(s("a"), s("b")),
            ),
            ("begins_with(sk, :a)", SortKeyCondition::BeginsWith(s("a"))),
        ] {
            assert_eq!(
                conditions(&format!("pk = :a AND {src}")),
                vec![
                    ("pk".to_owned(), SortKeyCondition::Eq(s("a"))),
                    ("sk".to_owned(), expected)
                ],
                "{src}"
            );
        }
        assert_eq!(
            conditions("(#k = :a) and (sk = :b)"),
            vec![
                ("key".to_owned(), SortKeyCondition::Eq(s("a"))),
                ("sk".to_owned(), SortKeyCondition::Eq(s("b")))
            ]
        );
    }

    #[test]
    fn rejects_shapes_dynamodb_rejects() {
        let err = |src: &str| parse(src).unwrap_err();
        for (src, operator) in [
            ("a > :a and size(b) > :n or a > :b", "OR"),
            ("a in (:a, :b)", "IN"),
            ("attribute_exists(a)", "attribute_exists"),
            ("attribute_not_exists(a)", "attribute_not_exists"),
            ("contains(a.d, :a)", "contains"),
            ("attribute_type(a, :t)", "attribute_type"),
            ("not a > :a", "NOT"),
            ("a <> :a", "<>"),
        ] {
            assert_eq!(
                err(src),
                format!("Invalid operator used in KeyConditionExpression: {operator}"),
                "{src}"
            );
        }
        for (src, operator) in [
            (":a between size(b) and size(a) and b > :b", "BETWEEN"),
            ("begins_with(:a, b) and a > :b", "begins_with"),
        ] {
            assert_eq!(
                err(src),
                format!(
                    "Invalid condition in KeyConditionExpression: {operator} operator must have the key attribute as its first operand"
                )
            );
        }
        for src in [
            "size(b) > a AND a.b > b AND b > c",
            "a > size(b.d)",
            "a between size(b) and size(a)",
        ] {
            assert_eq!(
                err(src),
                "KeyConditionExpressions cannot contain nested operations",
                "{src}"
            );
        }
        for src in [
            "b > a.b",
            "b between c[1] and d",
            "a between b and size(a)",
            "begins_with(a, b)",
        ] {
            assert_eq!(
                err(src),
                "Invalid condition in KeyConditionExpression: Multiple attribute names used in one condition",
                "{src}"
            );
        }
        for src in ["b.d > a AND c.d > e.f", "a.d > c", "b[0] > a"] {
            assert_eq!(
                err(src),
                "KeyConditionExpressions cannot have conditions on nested attributes",
                "{src}"
            );
        }
        for src in [":b > :a AND a < :b", ":a > b AND :a < :b"] {
            assert_eq!(
                err(src),
                "Invalid condition in KeyConditionExpression: No key attribute specified",
                "{src}"
            );
        }
        for src in [
            "b > :a AND b < :a and c = :a and d = :a",
            "(a > :a and b > :a) and (b > :a and c > :a)",
        ] {
            assert_eq!(
                err(src),
                "KeyConditionExpressions must only contain one condition per key",
                "{src}"
            );
        }
        for src in [
            ":a = a and b = :a and :a = c",
            "(a > :a and b > :a) and (c > :a and d > :a) and (e > :a and f > :a)",
        ] {
            assert_eq!(err(src), "Conditions can be of length 1 or 2 only", "{src}");
        }
    }

    #[test]
    fn condition_errors_come_first() {
        let err = |src: &str| parse(src).unwrap_err();
        for src in ["things are not gonna be ok", "a > 4", "(size(a))[0] > a"] {
            assert!(
                err(src).starts_with("Invalid KeyConditionExpression: Syntax error; "),
                "{src}"
            );
        }
        assert!(err("attribute_type(a, b)").starts_with(
            "Invalid KeyConditionExpression: Incorrect operand type for operator or function; operator or function: attribute_type, operand type:"
        ));
        assert_eq!(
            err("a between :n and :a"),
            "Invalid KeyConditionExpression: The BETWEEN operator requires same data type for lower and upper bounds; lower bound operand: AttributeValue: {N:1}, upper bound operand: AttributeValue: {S:a}"
        );
        assert_eq!(
            err("a between :b and :a"),
            "Invalid KeyConditionExpression: The BETWEEN operator requires upper bound to be greater than or equal to lower bound; lower bound operand: AttributeValue: {S:b}, upper bound operand: AttributeValue: {S:a}"
        );
        assert_eq!(
            err(""),
            "Invalid KeyConditionExpression: The expression can not be empty;"
        );
        assert_eq!(
            err("((a = :a))"),
            "Invalid KeyConditionExpression: The expression has redundant parentheses;"
        );
    }

    #[test]
    fn resolves_against_the_key_schema() {
        let resolve = |src: &str, pk: &str, sk: Option<&str>| {
            parse(src).unwrap().resolve(pk, sk).map_err(|e| e.message)
        };
        assert_eq!(
            resolve("sk > :n AND pk = :a", "pk", Some("sk")),
            Ok(KeyCondition {
                partition: ("pk".into(), s("a")),
                sort: Some(("sk".into(), SortKeyCondition::Gt(n("1"))))
            })
        );
        assert_eq!(
            resolve("pk = :a", "pk", Some("sk")),
            Ok(KeyCondition {
                partition: ("pk".into(), s("a")),
                sort: None
            })
        );
        assert_eq!(
            resolve("z between :a and :b", "a", Some("z")).unwrap_err(),
            "Query condition missed key schema element: a"
        );
        assert_eq!(
            resolve("gsiPk = :a AND wrongName = :b", "gsiPk", Some("gsiSk")).unwrap_err(),
            "Query condition missed key schema element: gsiSk"
        );
        assert_eq!(
            resolve("wrongName = :a AND gsiSk = :b", "gsiPk", Some("gsiSk")).unwrap_err(),
            "Query condition missed key schema element: gsiPk"
        );
        assert_eq!(
            resolve("pk = :a AND begins_with(wrong, :b)", "pk", Some("sk")).unwrap_err(),
            "Query condition missed key schema element: sk"
        );
        assert_eq!(
            resolve("pk < :a", "pk", None).unwrap_err(),
            "Query key condition not supported"
        );
        assert_eq!(
            resolve("pk = :a AND another = :b", "pk", None).unwrap_err(),
            "Query key condition not supported"
        );
    }

    #[test]
    fn matches_keys() {
        let cond = |c: SortKeyCondition, v: AttributeValue| c.matches(&v);
        assert!(cond(SortKeyCondition::Eq(n("1")), n("1.0")));
        assert!(
            cond(SortKeyCondition::Lt(n("2")), n("1"))
                && !cond(SortKeyCondition::Lt(n("1")), n("1"))
        );
        assert!(cond(SortKeyCondition::Le(n("1")), n("1")));
        assert!(
            cond(SortKeyCondition::Gt(s("a")), s("b"))
                && !cond(SortKeyCondition::Gt(s("a")), n("2"))
        );
        assert!(cond(SortKeyCondition::Ge(s("b")), s("b")));
        assert!(cond(SortKeyCondition::Between(n("1"), n("3")), n("3")));
        assert!(!cond(SortKeyCondition::Between(n("1"), n("3")), n("4")));
        assert!(
            cond(SortKeyCondition::BeginsWith(s("ab")), s("abc"))
                && !cond(SortKeyCondition::BeginsWith(s("ab")), s("a"))
        );
        assert!(cond(
            SortKeyCondition::BeginsWith(AttributeValue::B(vec![1])),
            AttributeValue::B(vec![1, 2])
        ));
        assert_eq!(SortKeyCondition::Between(n("1"), n("3")).values().len(), 2);

        let key = KeyCondition {
            partition: ("pk".into(), s("a")),
            sort: Some(("sk".into(), SortKeyCondition::Gt(n("1")))),
        };
        let item =
            |pk: &str, sk: &str| Item::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), n(sk))]);
        assert!(
            key.matches(&item("a", "2"))
                && !key.matches(&item("a", "1"))
                && !key.matches(&item("b", "2"))
        );
        assert!(!key.matches(&Item::from([("pk".to_owned(), s("a"))])));
        let partition_only = KeyCondition {
            partition: ("pk".into(), s("a")),
            sort: None,
        };
        assert!(partition_only.matches(&item("a", "0")));
    }

    #[test]
    fn prints_back() {
        let parsed = parse("#k = :a AND begins_with(sk, :b)").unwrap();
        let rendered = parsed.render();
        assert_eq!(rendered.expression, "#n0 = :v0 AND begins_with(sk, :v1)");
        assert_eq!(parsed.to_string(), rendered.expression);
        let mut ph = Placeholders::new(Some(&rendered.names), Some(&rendered.values));
        assert_eq!(
            parse_key_conditions(&rendered.expression, &mut ph),
            Ok(parsed)
        );
    }

    #[test]
    fn picks_the_partition_key_without_a_schema() {
        let values = HashMap::from([(":a".to_owned(), s("a")), (":b".to_owned(), s("b"))]);
        let pick = |src: &str| {
            let mut ph = Placeholders::new(None, Some(&values));
            parse_key_condition(src, &mut ph).map_err(|e| e.message)
        };
        let both = pick("sk = :b AND pk = :a").unwrap();
        assert_eq!(both.partition, ("sk".into(), s("b")));
        let fixed = both.for_key_schema("pk", Some("sk")).unwrap();
        assert_eq!(fixed.partition, ("pk".into(), s("a")));
        assert_eq!(
            fixed.sort,
            Some(("sk".into(), SortKeyCondition::Eq(s("b"))))
        );
        assert_eq!(fixed.to_string(), "pk = :v0 AND sk = :v1");

        let ranged = pick("sk > :b AND pk = :a").unwrap();
        assert_eq!(ranged.partition, ("pk".into(), s("a")));
        assert_eq!(
            ranged.sort,
            Some(("sk".into(), SortKeyCondition::Gt(s("b"))))
        );
        assert_eq!(ranged.for_key_schema("pk", Some("sk")), Ok(ranged.clone()));
        assert_eq!(
            ranged
                .for_key_schema("pk", Some("another"))
                .unwrap_err()
                .message,
            "Query condition missed key schema element: another"
        );
        assert_eq!(pick("pk = :a").unwrap().sort, None);
        assert_eq!(
            pick("pk < :a").unwrap_err(),
            "Query key condition not supported"
        );
        assert!(
            pick("pk = :a OR sk = :b")
                .unwrap_err()
                .starts_with("Invalid operator")
        );
    }
}
