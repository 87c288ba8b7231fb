//! Evaluating conditions against items.
//!
//! DynamoDB never fails a condition at run time: a missing attribute or a value of an
//! unexpected type makes a comparison false (and `<>` true), never an error.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::condition::{Comparator, Condition, Operand};
use crate::value::{AttributeValue, Item, Number};

/// The order of two values of the same scalar type (strings by UTF-8 bytes, numbers by
/// value, binaries by unsigned bytes); `None` for other types or different types.
pub(crate) fn scalar_cmp(a: &AttributeValue, b: &AttributeValue) -> Option<Ordering> {
    match (a, b) {
        (AttributeValue::S(a), AttributeValue::S(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
        (AttributeValue::N(a), AttributeValue::N(b)) => Some(a.cmp(b)),
        (AttributeValue::B(a), AttributeValue::B(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

/// What `size()` answers for a value: the length of a string (in UTF-16 code units, as
/// DynamoDB counts: `size("é𝄞")` is 3) or binary (bytes), the number of elements of a set,
/// list or map; nothing for other types.
fn size_of(value: &AttributeValue) -> Option<usize> {
    Some(match value {
        AttributeValue::S(s) => s.encode_utf16().count(),
        AttributeValue::B(b) => b.len(),
        AttributeValue::Ss(s) => s.len(),
        AttributeValue::Ns(s) => s.len(),
        AttributeValue::Bs(s) => s.len(),
        AttributeValue::L(l) => l.len(),
        AttributeValue::M(m) => m.len(),
        AttributeValue::N(_) | AttributeValue::Bool(_) | AttributeValue::Null => return None,
    })
}

impl Operand {
    /// The operand's value for `item`, if it has one.
    pub fn eval<'i>(&'i self, item: &'i Item) -> Option<Cow<'i, AttributeValue>> {
        match self {
            Operand::Path(path) => path.get(item).map(Cow::Borrowed),
            Operand::Value(value) => Some(Cow::Borrowed(value)),
            Operand::Size(inner) => {
                let size = size_of(inner.eval(item)?.as_ref())?;
                let number = size.to_string().parse::<Number>().ok()?;
                Some(Cow::Owned(AttributeValue::N(number)))
            }
        }
    }
}

impl Comparator {
    /// Compares two present values.
    fn holds(self, a: &AttributeValue, b: &AttributeValue) -> bool {
        match self {
            Comparator::Eq => a == b,
            Comparator::Ne => a != b,
            _ => scalar_cmp(a, b).is_some_and(|ord| match self {
                Comparator::Lt => ord.is_lt(),
                Comparator::Le => ord.is_le(),
                Comparator::Gt => ord.is_gt(),
                _ => ord.is_ge(),
            }),
        }
    }
}

impl Condition {
    /// Whether `item` satisfies the condition. An absent item is an empty one.
    pub fn eval(&self, item: &Item) -> bool {
        match self {
            Condition::Compare(a, cmp, b) => match (a.eval(item), b.eval(item)) {
                (Some(a), Some(b)) => cmp.holds(&a, &b),
                // A missing attribute equals nothing, so it differs from everything.
                _ => *cmp == Comparator::Ne,
            },
            Condition::Between(a, low, high) => {
                match (a.eval(item), low.eval(item), high.eval(item)) {
                    (Some(a), Some(low), Some(high)) => {
                        scalar_cmp(&low, &a).is_some_and(Ordering::is_le)
                            && scalar_cmp(&a, &high).is_some_and(Ordering::is_le)
                    }
                    _ => false,
                }
            }
            Condition::In(a, list) => a.eval(item).is_some_and(|a| {
                list.iter()
                    .any(|candidate| candidate.eval(item).is_some_and(|c| c == a))
            }),
            Condition::AttributeExists(path) => path.get(item).is_some(),
            Condition::AttributeNotExists(path) => path.get(item).is_none(),
            Condition::AttributeType(a, kind) => {
                a.eval(item).is_some_and(|a| a.type_name() == kind)
            }
            Condition::BeginsWith(a, prefix) => match (a.eval(item), prefix.eval(item)) {
                (Some(a), Some(prefix)) => match (a.as_ref(), prefix.as_ref()) {
                    (AttributeValue::S(a), AttributeValue::S(p)) => a.starts_with(p.as_str()),
                    (AttributeValue::B(a), AttributeValue::B(p)) => a.starts_with(p),
                    _ => false,
                },
                _ => false,
            },
            Condition::Contains(a, member) => match (a.eval(item), member.eval(item)) {
                (Some(a), Some(member)) => contains(&a, &member),
                _ => false,
            },
            Condition::Not(c) => !c.eval(item),
            Condition::And(a, b) => a.eval(item) && b.eval(item),
            Condition::Or(a, b) => a.eval(item) || b.eval(item),
        }
    }
}

/// `contains(a, member)`: a substring of a string, a run of bytes of a binary, a member
/// of a set, an element of a list.
fn contains(a: &AttributeValue, member: &AttributeValue) -> bool {
    match (a, member) {
        (AttributeValue::S(a), AttributeValue::S(m)) => a.contains(m.as_str()),
        (AttributeValue::B(a), AttributeValue::B(m)) => {
            m.is_empty() || a.windows(m.len()).any(|w| w == m.as_slice())
        }
        (AttributeValue::Ss(set), AttributeValue::S(m)) => set.binary_search(m).is_ok(),
        (AttributeValue::Ns(set), AttributeValue::N(m)) => set.binary_search(m).is_ok(),
        (AttributeValue::Bs(set), AttributeValue::B(m)) => set.binary_search(m).is_ok(),
        (AttributeValue::L(list), m) => list.contains(m),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::{Placeholders, parse_condition};
    use crate::value::item_from_json;
    use serde_json::json;
    use std::collections::HashMap;

    fn item() -> Item {
        item_from_json(&json!({
            "s": {"S": "hello"},
            "n": {"N": "10"},
            "b": {"B": "AQID"},
            "t": {"BOOL": true},
            "z": {"NULL": true},
            "ss": {"SS": ["a", "b"]},
            "ns": {"NS": ["1", "2"]},
            "bs": {"BS": ["AQ=="]},
            "l": {"L": [{"S": "x"}, {"N": "1"}]},
            "m": {"M": {"k": {"S": "v"}, "nest": {"M": {"deep": {"N": "5"}}}}},
            "uni": {"S": "é𝄞"},
        }))
        .unwrap()
    }

    fn holds(src: &str) -> bool {
        let values: HashMap<String, AttributeValue> = [
            (":s", json!({"S": "hello"})),
            (":he", json!({"S": "he"})),
            (":x", json!({"S": "x"})),
            (":a", json!({"S": "a"})),
            (":c", json!({"S": "c"})),
            (":n1", json!({"N": "1"})),
            (":n2", json!({"N": "2"})),
            (":n3", json!({"N": "3"})),
            (":n5", json!({"N": "5"})),
            (":n10", json!({"N": "10.0"})),
            (":n20", json!({"N": "20"})),
            (":b", json!({"B": "AQID"})),
            (":b1", json!({"B": "AQ=="})),
            (":b4", json!({"B": "BA=="})),
            (":ss", json!({"SS": ["b", "a"]})),
            (":l", json!({"L": [{"S": "x"}, {"N": "1"}]})),
            (":m", json!({"M": {"k": {"S": "v"}}})),
            (":t", json!({"BOOL": true})),
            (":z", json!({"NULL": true})),
            (":typeS", json!({"S": "S"})),
            (":typeSS", json!({"S": "SS"})),
            (":typeM", json!({"S": "M"})),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), AttributeValue::from_json(&v).unwrap()))
        .collect();
        let mut ph = Placeholders::new(None, Some(&values));
        let condition = parse_condition(src, "ConditionExpression", &mut ph)
            .unwrap_or_else(|e| panic!("{src}: {e}"));
        condition.eval(&item())
    }

    #[test]
    fn equality_is_by_type_and_value() {
        assert!(holds("s = :s") && holds("n = :n10") && holds("b = :b"));
        assert!(holds("t = :t") && holds("z = :z") && holds("ss = :ss") && holds("l = :l"));
        assert!(!holds("m.k = :x") && holds("m.k <> :x"));
        assert!(!holds("n = :s") && holds("n <> :s"));
        assert!(!holds("s = :n1"));
        assert!(holds(":n1 = :n1") && !holds(":n1 <> :n1"));
    }

    #[test]
    fn missing_attributes_equal_nothing() {
        assert!(!holds("nope = :s") && holds("nope <> :s"));
        assert!(!holds("nope = another") && holds("nope <> another"));
        for op in ["<", "<=", ">", ">="] {
            assert!(!holds(&format!("nope {op} :n1")), "{op}");
            assert!(!holds(&format!(":n1 {op} nope")), "{op}");
        }
        assert!(!holds("nope BETWEEN :n1 AND :n2"));
        assert!(!holds("n BETWEEN nope AND :n20"));
        assert!(!holds("nope IN (:s, :n1)"));
        assert!(!holds("begins_with(nope, :he)") && !holds("contains(nope, :x)"));
        assert!(!holds("size(nope) >= :n1") && holds("size(nope) <> :n1"));
        assert!(!holds("attribute_type(nope, :typeS)"));
        assert!(!holds("l[5] = :x") && !holds("s.x = :x") && !holds("m[0] = :x"));
    }

    #[test]
    fn ordering_compares_scalars_of_one_type() {
        assert!(holds("n > :n5") && holds("n >= :n10") && holds("n <= :n10") && holds("n < :n20"));
        assert!(!holds("n < :n5") && !holds("n > :n10"));
        assert!(holds("s > :he") && holds(":a < s"));
        assert!(holds("b > :b1") && holds("bs <> :b1"));
        // Different types are simply not ordered.
        assert!(!holds("n < :s") && !holds("n > :s") && !holds("s >= :n1"));
        // Types without an order never compare, when found in the item.
        assert!(!holds("l < :n1") && !holds("m >= :n1") && !holds("t > :n1"));
    }

    #[test]
    fn between_and_in() {
        assert!(holds("n BETWEEN :n5 AND :n20") && holds("n BETWEEN :n10 AND :n10"));
        assert!(!holds("n BETWEEN :n1 AND :n5"));
        assert!(holds("s BETWEEN :a AND :x") && !holds("s BETWEEN :a AND :c"));
        assert!(!holds("n BETWEEN :a AND :x"));
        assert!(holds("n IN (:s, :n10)") && !holds("n IN (:s, :n1)"));
        assert!(holds("l[0] IN (m.k, :x)") && !holds("m.k IN (l[0], :x)"));
        assert!(holds("ss IN (:ss)"));
    }

    #[test]
    fn functions() {
        assert!(holds("attribute_exists(m.nest.deep)") && !holds("attribute_exists(m.nest.x)"));
        assert!(holds("attribute_not_exists(l[2])") && !holds("attribute_not_exists(l[1])"));
        assert!(holds("attribute_type(s, :typeS)") && holds("attribute_type(ss, :typeSS)"));
        assert!(holds("attribute_type(m, :typeM)") && !holds("attribute_type(s, :typeM)"));
        assert!(holds("begins_with(s, :he)") && !holds("begins_with(s, :x)"));
        assert!(holds("begins_with(b, :b1)") && !holds("begins_with(s, :b1)"));
        assert!(holds("begins_with(s, :s)") && !holds("begins_with(n, :he)"));
        assert!(holds("contains(s, :he)") && !holds("contains(s, :x)"));
        assert!(holds("contains(ss, :a)") && !holds("contains(ss, :c)"));
        assert!(holds("contains(ns, :n2)") && !holds("contains(ns, :n5)"));
        assert!(holds("contains(bs, :b1)") && !holds("contains(bs, :b)"));
        assert!(
            holds("contains(b, :b1)") && holds("contains(b, :b)") && !holds("contains(b, :b4)")
        );
        assert!(holds("contains(l, :x)") && holds("contains(l, :n1)") && !holds("contains(l, :a)"));
        assert!(!holds("contains(ss, :n1)") && !holds("contains(n, :n1)"));
        assert!(holds("contains(:s, :he)"));
    }

    #[test]
    fn sizes() {
        assert!(holds("size(s) = :n5") && holds("size(b) < :n5"));
        assert!(holds("size(ss) = :n2") && holds("size(ns) = :n2") && holds("size(bs) = :n1"));
        assert!(holds("size(l) = :n2") && holds("size(m) = :n2") && holds("size(m.nest) = :n1"));
        assert!(holds("size(uni) = :n3"), "UTF-16 code units");
        assert!(!holds("size(n) >= :n1") && !holds("size(t) >= :n1") && !holds("size(z) >= :n1"));
        assert!(holds("size(:s) = :n5"));
    }

    #[test]
    fn logic() {
        assert!(holds("s = :s AND n = :n10") && !holds("s = :s AND n = :n1"));
        assert!(holds("s = :x OR n = :n10") && !holds("s = :x OR n = :n1"));
        assert!(holds("NOT s = :x") && !holds("NOT s = :s") && holds("NOT NOT s = :s"));
        assert!(holds("NOT (s = :x OR n = :n1)"));
    }

    #[test]
    fn scalar_order() {
        let n = |s: &str| AttributeValue::N(s.parse().unwrap());
        assert_eq!(scalar_cmp(&n("2"), &n("10")), Some(Ordering::Less));
        let s = |v: &str| AttributeValue::S(v.into());
        assert_eq!(scalar_cmp(&s("Z"), &s("a")), Some(Ordering::Less));
        assert_eq!(scalar_cmp(&s("é"), &s("z")), Some(Ordering::Greater));
        assert_eq!(
            scalar_cmp(
                &AttributeValue::B(vec![0xff]),
                &AttributeValue::B(vec![1, 2])
            ),
            Some(Ordering::Greater)
        );
        assert_eq!(scalar_cmp(&s("1"), &n("1")), None);
        assert_eq!(
            scalar_cmp(&AttributeValue::Null, &AttributeValue::Null),
            None
        );
    }
}
