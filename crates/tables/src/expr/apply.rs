//! Applying an update expression to an item.
//!
//! As DynamoDB does: every value is computed from the item as it was before the update;
//! then the writes happen in path order (so list elements set past the end are appended
//! in index order), then the removals from the last path to the first (so removing
//! several elements of one list removes the ones the indexes named before the update).

use super::error::ExprError;
use super::path::{Path, PathElement};
use super::update::{SetOperand, SetValue, Update};
use crate::value::{AttributeValue, Item, MAX_DEPTH, NumberError};

fn incorrect_type() -> ExprError {
    ExprError::new("An operand in the update expression has an incorrect data type")
}

fn invalid_path() -> ExprError {
    ExprError::new("The document path provided in the update expression is invalid for update")
}

fn missing_attribute() -> ExprError {
    ExprError::new("The provided expression refers to an attribute that does not exist in the item")
}

fn number_error(e: NumberError) -> ExprError {
    ExprError::new(e.to_string())
}

impl Update {
    /// Applies the update to `item` (an absent item is an empty one). On error the item
    /// is left as it was.
    ///
    /// # Errors
    /// DynamoDB's message when a value has the wrong type for its operator, a SET reads
    /// an attribute the item lacks, a nested path's parent is missing or is not a map or
    /// list, or a number leaves DynamoDB's range.
    pub fn apply(&self, item: &mut Item) -> Result<(), ExprError> {
        let mut writes: Vec<(&Path, AttributeValue)> = Vec::new();
        let mut removals: Vec<&Path> = Vec::new();
        for action in &self.set {
            check_parent(item, &action.path)?;
            writes.push((&action.path, eval_value(&action.value, item)?));
        }
        for path in &self.remove {
            check_parent(item, path)?;
            removals.push(path);
        }
        for (path, value) in &self.add {
            check_parent(item, path)?;
            let sum = match path.get(item) {
                None => value.clone(),
                Some(current) => add(current, value)?,
            };
            writes.push((path, sum));
        }
        for (path, value) in &self.delete {
            check_parent(item, path)?;
            if let Some(current) = path.get(item) {
                match remove_members(current, value)? {
                    Some(rest) => writes.push((path, rest)),
                    None => removals.push(path),
                }
            }
        }
        // A value set deep inside the item must not nest past what DynamoDB accepts in a
        // request: an item stored deeper could not be read back.
        for (path, value) in &writes {
            if path.0.len().saturating_sub(1) + value.depth() > MAX_DEPTH {
                return Err(ExprError::new(
                    "Nesting Levels have exceeded supported limits",
                ));
            }
        }
        writes.sort_by(|a, b| a.0.cmp(b.0));
        removals.sort();
        // Parsed updates cannot fail past this point (their paths do not overlap), but
        // a tree built by hand can: work on a copy so that a failure changes nothing.
        let mut updated = item.clone();
        for (path, value) in writes {
            put(&mut updated, path, value)?;
        }
        for path in removals.into_iter().rev() {
            remove(&mut updated, path);
        }
        *item = updated;
        Ok(())
    }
}

/// A nested path can be written only inside a map (for a key) or a list (for an index)
/// that already exists.
fn check_parent(item: &Item, path: &Path) -> Result<(), ExprError> {
    let Some((last, parent)) = path.0.split_last() else {
        return Err(invalid_path());
    };
    if parent.is_empty() {
        return match last {
            PathElement::Attribute(_) => Ok(()),
            PathElement::Index(_) => Err(invalid_path()),
        };
    }
    match (Path(parent.to_vec()).get(item), last) {
        (Some(AttributeValue::M(_)), PathElement::Attribute(_))
        | (Some(AttributeValue::L(_)), PathElement::Index(_)) => Ok(()),
        _ => Err(invalid_path()),
    }
}

fn eval_value(value: &SetValue, item: &Item) -> Result<AttributeValue, ExprError> {
    let numbers = |a: &SetOperand, b: &SetOperand| match (eval(a, item)?, eval(b, item)?) {
        (AttributeValue::N(a), AttributeValue::N(b)) => Ok((a, b)),
        _ => Err(incorrect_type()),
    };
    match value {
        SetValue::Operand(operand) => eval(operand, item),
        SetValue::Plus(a, b) => {
            let (a, b) = numbers(a, b)?;
            a.add(&b).map(AttributeValue::N).map_err(number_error)
        }
        SetValue::Minus(a, b) => {
            let (a, b) = numbers(a, b)?;
            a.sub(&b).map(AttributeValue::N).map_err(number_error)
        }
    }
}

fn eval(operand: &SetOperand, item: &Item) -> Result<AttributeValue, ExprError> {
    match operand {
        SetOperand::Path(path) => path.get(item).cloned().ok_or_else(missing_attribute),
        SetOperand::Value(value) => Ok(value.clone()),
        SetOperand::IfNotExists(path, fallback) => match path.get(item) {
            Some(value) => Ok(value.clone()),
            None => eval(fallback, item),
        },
        SetOperand::ListAppend(a, b) => match (eval(a, item)?, eval(b, item)?) {
            (AttributeValue::L(mut a), AttributeValue::L(b)) => {
                a.extend(b);
                Ok(AttributeValue::L(a))
            }
            _ => Err(incorrect_type()),
        },
    }
}

/// The union of two sorted sets.
fn union<T: Ord + Clone>(a: &[T], b: &[T]) -> Vec<T> {
    let mut all: Vec<T> = a.iter().chain(b).cloned().collect();
    all.sort();
    all.dedup();
    all
}

/// What ADD makes of the current value and the given one.
fn add(current: &AttributeValue, value: &AttributeValue) -> Result<AttributeValue, ExprError> {
    Ok(match (current, value) {
        (AttributeValue::N(a), AttributeValue::N(b)) => {
            AttributeValue::N(a.add(b).map_err(number_error)?)
        }
        (AttributeValue::Ss(a), AttributeValue::Ss(b)) => AttributeValue::Ss(union(a, b)),
        (AttributeValue::Ns(a), AttributeValue::Ns(b)) => AttributeValue::Ns(union(a, b)),
        (AttributeValue::Bs(a), AttributeValue::Bs(b)) => AttributeValue::Bs(union(a, b)),
        _ => return Err(incorrect_type()),
    })
}

/// What DELETE leaves of the current set; `None` when nothing is left.
fn remove_members(
    current: &AttributeValue,
    value: &AttributeValue,
) -> Result<Option<AttributeValue>, ExprError> {
    fn minus<T: Ord + Clone>(a: &[T], b: &[T]) -> Vec<T> {
        a.iter()
            .filter(|x| b.binary_search(x).is_err())
            .cloned()
            .collect()
    }
    let rest = match (current, value) {
        (AttributeValue::Ss(a), AttributeValue::Ss(b)) => AttributeValue::Ss(minus(a, b)),
        (AttributeValue::Ns(a), AttributeValue::Ns(b)) => AttributeValue::Ns(minus(a, b)),
        (AttributeValue::Bs(a), AttributeValue::Bs(b)) => AttributeValue::Bs(minus(a, b)),
        _ => return Err(incorrect_type()),
    };
    let empty = match &rest {
        AttributeValue::Ss(s) => s.is_empty(),
        AttributeValue::Ns(s) => s.is_empty(),
        AttributeValue::Bs(s) => s.is_empty(),
        _ => false,
    };
    Ok((!empty).then_some(rest))
}

/// The container that holds the last step of `path`.
fn parent_mut<'i>(item: &'i mut Item, path: &Path) -> Option<&'i mut AttributeValue> {
    let (_, parent) = path.0.split_last()?;
    let (first, rest) = parent.split_first()?;
    let PathElement::Attribute(name) = first else {
        return None;
    };
    let mut value = item.get_mut(name)?;
    for step in rest {
        value = match (step, value) {
            (PathElement::Attribute(name), AttributeValue::M(map)) => map.get_mut(name)?,
            (PathElement::Index(i), AttributeValue::L(list)) => list.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(value)
}

/// Writes `value` at `path`; an index past the end of a list appends.
fn put(item: &mut Item, path: &Path, value: AttributeValue) -> Result<(), ExprError> {
    if let [PathElement::Attribute(name)] = path.0.as_slice() {
        item.insert(name.clone(), value);
        return Ok(());
    }
    match (parent_mut(item, path), path.0.last()) {
        (Some(AttributeValue::M(map)), Some(PathElement::Attribute(name))) => {
            map.insert(name.clone(), value);
        }
        (Some(AttributeValue::L(list)), Some(PathElement::Index(i))) => match list.get_mut(*i) {
            Some(slot) => *slot = value,
            None => list.push(value),
        },
        _ => return Err(invalid_path()),
    }
    Ok(())
}

/// Removes what `path` names, if anything.
fn remove(item: &mut Item, path: &Path) {
    if let [PathElement::Attribute(name)] = path.0.as_slice() {
        item.remove(name);
        return;
    }
    match (parent_mut(item, path), path.0.last()) {
        (Some(AttributeValue::M(map)), Some(PathElement::Attribute(name))) => {
            map.remove(name);
        }
        (Some(AttributeValue::L(list)), Some(PathElement::Index(i))) if *i < list.len() => {
            list.remove(*i);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::{Placeholders, parse_update};
    use crate::value::{item_from_json, item_to_json};
    use serde_json::{Value as Json, json};
    use std::collections::HashMap;

    fn values(json: Json) -> HashMap<String, AttributeValue> {
        json.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), AttributeValue::from_json(v).unwrap()))
            .collect()
    }

    /// Applies `src` to `item`, answering the item after or the error message.
    fn run(item: Json, src: &str, vals: Json) -> Result<Json, String> {
        let vals = values(vals);
        let names = HashMap::from([("#1".to_owned(), "1".to_owned())]);
        let mut ph = Placeholders::new(Some(&names), Some(&vals));
        let update = parse_update(src, &mut ph).unwrap_or_else(|e| panic!("{src}: {e}"));
        let mut item = item_from_json(&item).unwrap();
        let before = item.clone();
        match update.apply(&mut item) {
            Ok(()) => Ok(item_to_json(&item)),
            Err(e) => {
                assert_eq!(item, before, "a failed update leaves the item alone");
                Err(e.message)
            }
        }
    }

    #[test]
    fn set_values_come_from_the_item_before_the_update() {
        let item = json!({
            "a": {"S": "key"},
            "b": {"M": {"a": {"N": "1"}, "b": {"N": "2"}, "c": {"N": "3"}}},
            "c": {"L": [{"N": "1"}, {"N": "3"}]},
        });
        let after = run(
            item,
            "set b.c=((c[1])+(b.a)),b.a = a,c[1] = a, c[4] = b.a - b.b, c[2] = b.c add c[8] :b, c[6] :a",
            json!({":a": {"N": "2"}, ":b": {"SS": ["a"]}}),
        )
        .unwrap();
        assert_eq!(
            after,
            json!({
                "a": {"S": "key"},
                "b": {"M": {"a": {"S": "key"}, "b": {"N": "2"}, "c": {"N": "4"}}},
                "c": {"L": [{"N": "1"}, {"S": "key"}, {"N": "3"}, {"N": "-1"}, {"N": "2"}, {"SS": ["a"]}]},
            })
        );
    }

    /// `levels` maps, one inside the other, around a string.
    fn nested(levels: usize) -> Json {
        (0..levels).fold(json!({"S": "x"}), |inner, _| json!({"M": {"m": inner}}))
    }

    #[test]
    fn an_update_cannot_nest_an_item_deeper_than_a_request_may() {
        let item = json!({"k": {"S": "key"}, "a": {"M": {}}});
        // As deep as a request may nest: accepted, and the item reads back.
        let after = run(item.clone(), "SET a = :v", json!({":v": nested(32)})).unwrap();
        assert!(item_from_json(&after).is_ok());
        let after = run(item.clone(), "SET a.b = :v", json!({":v": nested(31)})).unwrap();
        assert!(item_from_json(&after).is_ok());
        // One level more, and the item could not be read back: refused, as DynamoDB does.
        for (update, value) in [
            ("SET a.b = :v", nested(32)),
            ("SET a.b = list_append(:v, :v)", json!({"L": [nested(31)]})),
        ] {
            assert_eq!(
                run(item.clone(), update, json!({":v": value})).unwrap_err(),
                "Nesting Levels have exceeded supported limits",
                "{update}"
            );
        }
    }

    #[test]
    fn set_functions() {
        let item = json!({"a": {"S": "x"}, "l": {"L": [{"N": "1"}]}});
        assert_eq!(
            run(
                item.clone(),
                "SET b = if_not_exists(b, a), c = if_not_exists(a, :v)",
                json!({":v": {"N": "0"}})
            )
            .unwrap(),
            json!({"a": {"S": "x"}, "b": {"S": "x"}, "c": {"S": "x"}, "l": {"L": [{"N": "1"}]}})
        );
        assert_eq!(
            run(
                item.clone(),
                "SET l = list_append(l, :l), m = list_append(:l, l)",
                json!({":l": {"L": [{"S": "y"}]}})
            )
            .unwrap()["l"],
            json!({"L": [{"N": "1"}, {"S": "y"}]})
        );
        assert_eq!(
            run(
                item.clone(),
                "SET m = list_append(:l, l)",
                json!({":l": {"L": [{"S": "y"}]}})
            )
            .unwrap()["m"],
            json!({"L": [{"S": "y"}, {"N": "1"}]})
        );
        assert_eq!(
            run(
                item.clone(),
                "SET n = if_not_exists(n, :z) + :one",
                json!({":z": {"N": "0"}, ":one": {"N": "1"}})
            )
            .unwrap()["n"],
            json!({"N": "1"})
        );
        assert_eq!(
            run(
                item.clone(),
                "SET n = :a - :b",
                json!({":a": {"N": "0.1"}, ":b": {"N": "0.3"}})
            )
            .unwrap()["n"],
            json!({"N": "-0.2"})
        );
    }

    #[test]
    fn set_errors() {
        let item = json!({"a": {"S": "x"}, "n": {"N": "1"}, "l": {"L": []}, "m": {"M": {}}});
        let err = |src: &str, vals: Json| run(item.clone(), src, vals).unwrap_err();
        assert_eq!(
            err("SET c = b", json!({})),
            "The provided expression refers to an attribute that does not exist in the item"
        );
        assert_eq!(
            err("SET e = list_append(b, l)", json!({})),
            "The provided expression refers to an attribute that does not exist in the item"
        );
        assert_eq!(
            err("SET e = a + :one", json!({":one": {"N": "1"}})),
            "An operand in the update expression has an incorrect data type"
        );
        assert_eq!(
            err("SET e = n - m", json!({})),
            "An operand in the update expression has an incorrect data type"
        );
        assert_eq!(
            err("SET e = list_append(l, if_not_exists(f, n))", json!({})),
            "An operand in the update expression has an incorrect data type"
        );
        assert_eq!(
            err("SET n = :big + :big", json!({":big": {"N": "9.99e125"}})),
            "Number overflow. Attempting to store a number with magnitude larger than supported range"
        );
        assert_eq!(
            err("SET n = n + :x", json!({":x": {"N": "1e-38"}})),
            "Attempting to store more than 38 significant digits in a Number"
        );
        for src in [
            "SET b.a = :v",
            "SET b[1] = :v",
            "SET a.b = :v",
            "SET a[0] = :v",
            "SET l.x = :v",
            "SET m[0] = :v",
            "SET m.x.y = :v",
        ] {
            assert_eq!(
                err(src, json!({":v": {"S": "v"}})),
                "The document path provided in the update expression is invalid for update",
                "{src}"
            );
        }
    }

    #[test]
    fn set_writes_nested_values() {
        let item = json!({"m": {"M": {"l": {"L": [{"N": "1"}]}}}});
        assert_eq!(
            run(
                item,
                "SET m.x = :v, m.l[0] = :v, m.l[7] = :w, m.#1 = :w",
                json!({":v": {"S": "v"}, ":w": {"S": "w"}})
            )
            .unwrap(),
            json!({"m": {"M": {"1": {"S": "w"}, "l": {"L": [{"S": "v"}, {"S": "w"}]}, "x": {"S": "v"}}}})
        );
    }

    #[test]
    fn remove() {
        let item = json!({
            "a": {"S": "x"},
            "l": {"L": [{"N": "0"}, {"N": "1"}, {"N": "2"}, {"N": "3"}]},
            "m": {"M": {"k": {"S": "v"}, "j": {"S": "w"}}},
        });
        assert_eq!(
            run(
                item.clone(),
                "REMOVE a, l[1], l[3], l[9], m.k, m.nope, nope",
                json!({})
            )
            .unwrap(),
            json!({"l": {"L": [{"N": "0"}, {"N": "2"}]}, "m": {"M": {"j": {"S": "w"}}}})
        );
        for src in [
            "REMOVE a.b",
            "REMOVE a[1]",
            "REMOVE y.a",
            "REMOVE y[1]",
            "REMOVE m[0]",
            "REMOVE l.x",
        ] {
            assert_eq!(
                run(item.clone(), src, json!({})).unwrap_err(),
                "The document path provided in the update expression is invalid for update",
                "{src}"
            );
        }
    }

    #[test]
    fn add_numbers_and_sets() {
        let item = json!({"n": {"N": "1"}, "ss": {"SS": ["a", "b"]}, "ns": {"NS": ["1"]}, "bs": {"BS": ["AQ=="]}, "l": {"L": []}});
        let after = run(
            item.clone(),
            "ADD n :three, ss :ss, ns :ns, bs :bs, added :three, fresh :ss",
            json!({":three": {"N": "3"}, ":ss": {"SS": ["c", "b"]}, ":ns": {"NS": ["2", "1"]}, ":bs": {"BS": ["Ag=="]}}),
        )
        .unwrap();
        assert_eq!(after["n"], json!({"N": "4"}));
        assert_eq!(after["added"], json!({"N": "3"}));
        assert_eq!(after["ss"], json!({"SS": ["a", "b", "c"]}));
        assert_eq!(after["fresh"], json!({"SS": ["b", "c"]}));
        assert_eq!(after["ns"], json!({"NS": ["1", "2"]}));
        assert_eq!(after["bs"], json!({"BS": ["AQ==", "Ag=="]}));
        assert_eq!(
            run(
                item.clone(),
                "ADD l[0] :one, l[5] :two",
                json!({":one": {"N": "1"}, ":two": {"N": "2"}})
            )
            .unwrap()["l"],
            json!({"L": [{"N": "1"}, {"N": "2"}]})
        );
        for (src, vals) in [
            ("ADD ss :n", json!({":n": {"N": "1"}})),
            ("ADD n :ss", json!({":ss": {"SS": ["a"]}})),
            ("ADD ss :ns", json!({":ns": {"NS": ["1"]}})),
            ("ADD l :n", json!({":n": {"N": "1"}})),
        ] {
            assert_eq!(
                run(item.clone(), src, vals).unwrap_err(),
                "An operand in the update expression has an incorrect data type",
                "{src}"
            );
        }
        assert_eq!(
            run(item.clone(), "ADD x.y :n", json!({":n": {"N": "1"}})).unwrap_err(),
            "The document path provided in the update expression is invalid for update"
        );
        assert_eq!(
            run(
                json!({"n": {"N": "9.9e125"}}),
                "ADD n :n",
                json!({":n": {"N": "9.9e125"}})
            )
            .unwrap_err(),
            "Number overflow. Attempting to store a number with magnitude larger than supported range"
        );
    }

    #[test]
    fn delete_from_sets() {
        let item = json!({"ss": {"SS": ["a", "b", "c"]}, "ns": {"NS": ["1", "2"]}, "bs": {"BS": ["AQ=="]}, "n": {"N": "1"}, "m": {"M": {"s": {"SS": ["x"]}}}});
        let after = run(
            item.clone(),
            "DELETE ss :ab, ns :ns, bs :bs, nope :ab, m.s :x",
            json!({":ab": {"SS": ["a", "b", "z"]}, ":ns": {"NS": ["2", "1"]}, ":bs": {"BS": ["AQ=="]}, ":x": {"SS": ["x"]}}),
        )
        .unwrap();
        assert_eq!(
            after,
            json!({"ss": {"SS": ["c"]}, "n": {"N": "1"}, "m": {"M": {}}})
        );
        for (src, vals) in [
            ("DELETE ss :ns", json!({":ns": {"NS": ["1"]}})),
            ("DELETE n :ns", json!({":ns": {"NS": ["1"]}})),
            ("DELETE m :ns", json!({":ns": {"NS": ["1"]}})),
        ] {
            assert_eq!(
                run(item.clone(), src, vals).unwrap_err(),
                "An operand in the update expression has an incorrect data type",
                "{src}"
            );
        }
        assert_eq!(
            run(item, "DELETE y.a :ns", json!({":ns": {"NS": ["1"]}})).unwrap_err(),
            "The document path provided in the update expression is invalid for update"
        );
    }

    #[test]
    fn an_absent_item_is_empty() {
        assert_eq!(
            run(
                json!({}),
                "SET a = :v ADD n :n REMOVE b DELETE c :s",
                json!({":v": {"S": "v"}, ":n": {"N": "5"}, ":s": {"SS": ["x"]}})
            )
            .unwrap(),
            json!({"a": {"S": "v"}, "n": {"N": "5"}})
        );
        assert_eq!(
            run(json!({}), "SET b.a = :v", json!({":v": {"S": "v"}})).unwrap_err(),
            "The document path provided in the update expression is invalid for update"
        );
    }
}
