//! Properties of the whole expression module: printing and parsing are inverses on
//! random trees, evaluation obeys the laws of its operators, updates and projections do
//! what they say, and no input makes a parser panic.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::value::{AttributeValue, Item, Number};

// ---- values -------------------------------------------------------------------------

fn number() -> impl Strategy<Value = Number> {
    prop_oneof![
        any::<i32>().prop_map(|i| i.to_string()),
        (-1000i32..1000, 0u32..1000).prop_map(|(i, f)| format!("{i}.{f:03}")),
    ]
    .prop_map(|s| s.parse::<Number>().expect("small numbers are valid"))
}

fn text() -> impl Strategy<Value = String> {
    "[a-c é]{0,3}"
}

fn scalar() -> impl Strategy<Value = AttributeValue> {
    prop_oneof![
        text().prop_map(AttributeValue::S),
        number().prop_map(AttributeValue::N),
        prop::collection::vec(0u8..4, 0..3).prop_map(AttributeValue::B),
    ]
}

fn set() -> impl Strategy<Value = AttributeValue> {
    prop_oneof![
        prop::collection::btree_set(text(), 1..4)
            .prop_map(|s| AttributeValue::Ss(s.into_iter().collect())),
        prop::collection::btree_set(-5i32..5, 1..4).prop_map(|s| {
            AttributeValue::Ns(
                s.into_iter()
                    .map(|i| i.to_string().parse().expect("valid"))
                    .collect(),
            )
        }),
        prop::collection::btree_set(prop::collection::vec(0u8..3, 0..2), 1..3)
            .prop_map(|s| AttributeValue::Bs(s.into_iter().collect())),
    ]
}

fn value() -> impl Strategy<Value = AttributeValue> {
    let leaf = prop_oneof![
        4 => scalar(),
        1 => any::<bool>().prop_map(AttributeValue::Bool),
        1 => Just(AttributeValue::Null),
        1 => set(),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(AttributeValue::L),
            prop::collection::btree_map(name(), inner, 0..3).prop_map(AttributeValue::M),
        ]
    })
}

// ---- names and paths ----------------------------------------------------------------

/// Names of every kind: plain, reserved, keywords, and ones only a placeholder can carry.
const NAMES: [&str; 10] = [
    "a", "b", "c_1", "status", "name", "remove", "x y", "[3]", "é", "Z9",
];

fn name() -> impl Strategy<Value = String> {
    prop::sample::select(NAMES.as_slice()).prop_map(str::to_owned)
}

fn path_from(first: impl Strategy<Value = String>) -> impl Strategy<Value = Path> {
    let step = prop_oneof![
        name().prop_map(PathElement::Attribute),
        (0usize..4).prop_map(PathElement::Index),
    ];
    (first, prop::collection::vec(step, 0..3)).prop_map(|(first, rest)| {
        let mut steps = vec![PathElement::Attribute(first)];
        steps.extend(rest);
        Path(steps)
    })
}

/// Paths that start with one of the first five names, and paths that start with one of
/// the others: a condition's first operand and the rest come from different pools, so
/// they are never the same path (which DynamoDB rejects).
fn left_path() -> BoxedStrategy<Path> {
    path_from(prop::sample::select(&NAMES[..5]).prop_map(str::to_owned)).boxed()
}

fn right_path() -> BoxedStrategy<Path> {
    path_from(prop::sample::select(&NAMES[5..]).prop_map(str::to_owned)).boxed()
}

fn any_path() -> impl Strategy<Value = Path> {
    path_from(name())
}

// ---- conditions ---------------------------------------------------------------------

fn operand(
    path: BoxedStrategy<Path>,
    values: BoxedStrategy<AttributeValue>,
) -> impl Strategy<Value = Operand> {
    prop_oneof![
        3 => path.clone().prop_map(Operand::Path),
        2 => values.prop_map(Operand::Value),
        1 => path.prop_map(|p| Operand::Size(Box::new(Operand::Path(p)))),
    ]
}

fn left_operand(ordered: bool) -> impl Strategy<Value = Operand> {
    let values = if ordered {
        scalar().boxed()
    } else {
        value().boxed()
    };
    operand(left_path(), values)
}

fn right_operand(ordered: bool) -> impl Strategy<Value = Operand> {
    let values = if ordered {
        scalar().boxed()
    } else {
        value().boxed()
    };
    operand(right_path(), values)
}

fn comparator() -> impl Strategy<Value = Comparator> {
    prop::sample::select(Comparator::ALL.as_slice())
}

/// BETWEEN bounds that DynamoDB accepts: two values must share a type and be in order.
fn bounds() -> impl Strategy<Value = (Operand, Operand)> {
    prop_oneof![
        (right_operand(true), right_path()).prop_map(|(a, b)| (a, Operand::Path(b))),
        (number(), number()).prop_map(|(a, b)| {
            let (low, high) = if a <= b { (a, b) } else { (b, a) };
            (
                Operand::Value(AttributeValue::N(low)),
                Operand::Value(AttributeValue::N(high)),
            )
        }),
    ]
}

fn string_or_binary() -> impl Strategy<Value = Operand> {
    prop_oneof![
        right_path().prop_map(Operand::Path),
        text().prop_map(|s| Operand::Value(AttributeValue::S(s))),
        prop::collection::vec(any::<u8>(), 0..3).prop_map(|b| Operand::Value(AttributeValue::B(b))),
    ]
}

fn leaf_condition() -> impl Strategy<Value = Condition> {
    prop_oneof![
        comparator().prop_flat_map(|cmp| {
            let ordered = cmp.is_ordering();
            (left_operand(ordered), right_operand(ordered))
                .prop_map(move |(a, b)| Condition::Compare(a, cmp, b))
        }),
        (left_operand(true), bounds())
            .prop_map(|(a, (low, high))| Condition::Between(a, low, high)),
        (
            left_operand(false),
            prop::collection::vec(right_operand(false), 1..4)
        )
            .prop_map(|(a, list)| Condition::In(a, list)),
        any_path().prop_map(Condition::AttributeExists),
        any_path().prop_map(Condition::AttributeNotExists),
        (
            left_operand(false),
            prop::sample::select(ATTRIBUTE_TYPES.as_slice())
        )
            .prop_map(|(a, t)| Condition::AttributeType(a, t.to_owned())),
        (
            prop_oneof![
                left_path().prop_map(Operand::Path),
                text().prop_map(|s| Operand::Value(AttributeValue::S(s)))
            ],
            string_or_binary()
        )
            .prop_map(|(a, b)| Condition::BeginsWith(a, b)),
        (left_operand(false), right_operand(false)).prop_map(|(a, b)| Condition::Contains(a, b)),
    ]
}

fn condition() -> impl Strategy<Value = Condition> {
    leaf_condition().prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|c| Condition::Not(Box::new(c))),
            (inner.clone(), inner.clone())
                .prop_map(|(a, b)| Condition::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner).prop_map(|(a, b)| Condition::Or(Box::new(a), Box::new(b))),
        ]
    })
}

/// Items whose attributes and nested values use the same names as the paths, so that
/// paths find values often.
fn item() -> impl Strategy<Value = Item> {
    prop::collection::btree_map(name(), value(), 0..8)
}

fn reparse_condition(c: &Condition) -> Result<Condition, ExprError> {
    let rendered = c.render();
    let mut ph = Placeholders::new(Some(&rendered.names), Some(&rendered.values));
    let back = parse_condition(&rendered.expression, "ConditionExpression", &mut ph)?;
    ph.check_unused()?;
    Ok(back)
}

// ---- updates ------------------------------------------------------------------------

fn set_operand(values: BoxedStrategy<AttributeValue>) -> impl Strategy<Value = SetOperand> {
    let leaf = prop_oneof![
        any_path().prop_map(SetOperand::Path),
        values.prop_map(SetOperand::Value),
    ];
    leaf.prop_recursive(2, 6, 2, |inner| {
        prop_oneof![
            (any_path(), inner.clone()).prop_map(|(p, o)| SetOperand::IfNotExists(p, Box::new(o))),
            (list_operand(), list_operand())
                .prop_map(|(a, b)| SetOperand::ListAppend(Box::new(a), Box::new(b))),
        ]
    })
}

fn list_operand() -> impl Strategy<Value = SetOperand> {
    prop_oneof![
        any_path().prop_map(SetOperand::Path),
        prop::collection::vec(scalar(), 0..3).prop_map(|l| SetOperand::Value(AttributeValue::L(l))),
    ]
}

fn number_operand() -> impl Strategy<Value = SetOperand> {
    prop_oneof![
        any_path().prop_map(SetOperand::Path),
        number().prop_map(|n| SetOperand::Value(AttributeValue::N(n))),
        (any_path(), number()).prop_map(|(p, n)| {
            SetOperand::IfNotExists(p, Box::new(SetOperand::Value(AttributeValue::N(n))))
        }),
    ]
}

fn set_value() -> impl Strategy<Value = SetValue> {
    prop_oneof![
        2 => set_operand(value().boxed()).prop_map(SetValue::Operand),
        1 => (number_operand(), number_operand()).prop_map(|(a, b)| SetValue::Plus(a, b)),
        1 => (number_operand(), number_operand()).prop_map(|(a, b)| SetValue::Minus(a, b)),
    ]
}

/// Updates whose actions write paths under distinct top-level names, so that no two
/// paths overlap.
fn update() -> impl Strategy<Value = Update> {
    let targets = prop::sample::subsequence(NAMES.to_vec(), 1..=NAMES.len())
        .prop_shuffle()
        .prop_flat_map(|names| {
            names
                .into_iter()
                .map(|n| path_from(Just(n.to_owned())))
                .collect::<Vec<_>>()
        });
    let action = prop_oneof![
        set_value().prop_map(Action::Set),
        Just(Action::Remove),
        prop_oneof![number().prop_map(AttributeValue::N), set()].prop_map(Action::Add),
        set().prop_map(Action::Delete),
    ]
    .boxed();
    targets
        .prop_flat_map(move |paths| {
            let n = paths.len();
            (Just(paths), prop::collection::vec(action.clone(), n))
        })
        .prop_map(|(paths, actions)| {
            let mut update = Update::default();
            for (path, action) in paths.into_iter().zip(actions) {
                match action {
                    Action::Set(value) => update.set.push(SetAction { path, value }),
                    Action::Remove => update.remove.push(path),
                    Action::Add(v) => update.add.push((path, v)),
                    Action::Delete(v) => update.delete.push((path, v)),
                }
            }
            update
        })
}

#[derive(Debug, Clone)]
enum Action {
    Set(SetValue),
    Remove,
    Add(AttributeValue),
    Delete(AttributeValue),
}

fn values_of(
    pairs: &[(&str, AttributeValue)],
) -> std::collections::HashMap<String, AttributeValue> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn run_update(
    src: &str,
    values: &[(&str, AttributeValue)],
    item: &mut Item,
) -> Result<(), ExprError> {
    let values = values_of(values);
    let names = std::collections::HashMap::from([("#p".to_owned(), "p".to_owned())]);
    let mut ph = Placeholders::new(Some(&names), Some(&values));
    parse_update(src, &mut ph)?.apply(item)
}

/// Characters expressions are made of, and some they are not.
const ALPHABET: [&str; 24] = [
    "a", "b", "#n", ":v", "1", " ", "(", ")", "[", "]", ".", ",", "=", "<", ">", "+", "-", "AND ",
    "OR ", "NOT ", "SET ", "size", "_", "é",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn conditions_print_and_parse_back(c in condition()) {
        prop_assert_eq!(reparse_condition(&c), Ok(c));
    }

    #[test]
    fn not_inverts(c in condition(), item in item()) {
        prop_assert_eq!(Condition::Not(Box::new(c.clone())).eval(&item), !c.eval(&item));
    }

    #[test]
    fn equal_iff_not_unequal(a in left_operand(false), b in right_operand(false), item in item()) {
        let eq = Condition::Compare(a.clone(), Comparator::Eq, b.clone()).eval(&item);
        let ne = Condition::Compare(a, Comparator::Ne, b).eval(&item);
        prop_assert_eq!(eq, !ne);
    }

    #[test]
    fn de_morgan(a in condition(), b in condition(), item in item()) {
        let not_and = Condition::Not(Box::new(Condition::And(Box::new(a.clone()), Box::new(b.clone()))));
        let or_nots = Condition::Or(Box::new(Condition::Not(Box::new(a))), Box::new(Condition::Not(Box::new(b))));
        prop_assert_eq!(not_and.eval(&item), or_nots.eval(&item));
    }

    #[test]
    fn between_is_two_comparisons(a in left_operand(true), (low, high) in bounds(), item in item()) {
        let between = Condition::Between(a.clone(), low.clone(), high.clone()).eval(&item);
        let both = Condition::Compare(a.clone(), Comparator::Ge, low).eval(&item)
            && Condition::Compare(a, Comparator::Le, high).eval(&item);
        prop_assert_eq!(between, both);
    }

    #[test]
    fn in_is_ored_equalities(a in left_operand(false), list in prop::collection::vec(right_operand(false), 1..4), item in item()) {
        let within = Condition::In(a.clone(), list.clone()).eval(&item);
        let any = list.into_iter().any(|b| Condition::Compare(a.clone(), Comparator::Eq, b).eval(&item));
        prop_assert_eq!(within, any);
    }

    #[test]
    fn ordering_is_antisymmetric(a in scalar(), b in scalar()) {
        let item = Item::new();
        let lt = Condition::Compare(Operand::Value(a.clone()), Comparator::Lt, Operand::Value(b.clone())).eval(&item);
        let ge = Condition::Compare(Operand::Value(a.clone()), Comparator::Ge, Operand::Value(b.clone())).eval(&item);
        let same_type = a.type_name() == b.type_name();
        prop_assert_eq!(lt || ge, same_type);
        prop_assert!(!(lt && ge));
    }

    #[test]
    fn updates_print_and_parse_back(u in update()) {
        let rendered = u.render();
        let mut ph = Placeholders::new(Some(&rendered.names), Some(&rendered.values));
        let back = parse_update(&rendered.expression, &mut ph);
        prop_assert_eq!(back, Ok(u));
        prop_assert_eq!(ph.check_unused(), Ok(()));
    }

    #[test]
    fn updates_change_only_what_they_name(u in update(), item in item()) {
        let mut after = item.clone();
        if u.apply(&mut after).is_ok() {
            let touched: BTreeSet<&str> = u.top_level_attributes().collect();
            for (name, value) in &item {
                if !touched.contains(name.as_str()) {
                    prop_assert_eq!(after.get(name), Some(value));
                }
            }
            for name in after.keys() {
                prop_assert!(item.contains_key(name) || touched.contains(name.as_str()));
            }
        } else {
            prop_assert_eq!(after, item);
        }
    }

    #[test]
    fn set_then_read(item in item(), v in value()) {
        let mut item = item;
        prop_assert_eq!(run_update("SET #p = :v", &[(":v", v.clone())], &mut item), Ok(()));
        prop_assert_eq!(item.get("p"), Some(&v));
    }

    #[test]
    fn add_adds(x in number(), y in number()) {
        let mut item = Item::from([("p".to_owned(), AttributeValue::N(x.clone()))]);
        prop_assert_eq!(run_update("ADD p :y", &[(":y", AttributeValue::N(y.clone()))], &mut item), Ok(()));
        prop_assert_eq!(item.get("p"), Some(&AttributeValue::N(x.add(&y).expect("small"))));
        prop_assert_eq!(run_update("SET p = p - :y", &[(":y", AttributeValue::N(y))], &mut item), Ok(()));
        prop_assert_eq!(item.get("p"), Some(&AttributeValue::N(x)));
    }

    #[test]
    fn add_then_delete_a_set(s in set(), item in item()) {
        let mut item = item;
        item.remove("p");
        prop_assert_eq!(run_update("ADD p :s", &[(":s", s.clone())], &mut item), Ok(()));
        prop_assert_eq!(item.get("p"), Some(&s));
        prop_assert_eq!(run_update("DELETE p :s", &[(":s", s)], &mut item), Ok(()));
        prop_assert_eq!(item.get("p"), None);
    }

    #[test]
    fn projections_print_parse_and_keep_top_level_attributes(
        names in prop::sample::subsequence(NAMES.to_vec(), 1..=NAMES.len()),
        item in item(),
    ) {
        let projection = Projection { paths: names.iter().map(|n| Path::attribute(*n)).collect() };
        let rendered = projection.render();
        let mut ph = Placeholders::new(Some(&rendered.names), None);
        prop_assert_eq!(parse_projection(&rendered.expression, &mut ph), Ok(projection.clone()));
        let kept = projection.apply(&item);
        let expected: Item = item.iter().filter(|(k, _)| names.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
        prop_assert_eq!(kept, expected);
    }

    #[test]
    fn projected_paths_read_the_same(item in item(), paths in prop::collection::vec(any_path(), 1..4)) {
        let projection = Projection { paths: paths.clone() };
        let kept = projection.apply(&item);
        // Through maps only, a single path reads the same value from the projection as
        // from the item (list elements close up, so indexes change).
        if let [path] = paths.as_slice()
            && path.0.iter().all(|s| matches!(s, PathElement::Attribute(_)))
        {
            prop_assert_eq!(path.get(&kept), path.get(&item));
        }
        for name in kept.keys() {
            prop_assert!(item.contains_key(name));
        }
    }

    #[test]
    fn key_conditions_print_and_parse_back(
        pk in name(),
        v in scalar(),
        sort in prop::option::of((prop::sample::select(vec!["sk", "Date", "s k"]), 0usize..7, scalar(), scalar())),
    ) {
        let mut conditions = vec![(pk, SortKeyCondition::Eq(v))];
        if let Some((sk, kind, a, b)) = sort {
            let condition = match kind {
                0 => SortKeyCondition::Eq(a),
                1 => SortKeyCondition::Lt(a),
                2 => SortKeyCondition::Le(a),
                3 => SortKeyCondition::Gt(a),
                4 => SortKeyCondition::Ge(a),
                5 => {
                    let (a, b) = match (&a, &b) {
                        (AttributeValue::N(x), AttributeValue::N(y)) if x > y => (b, a),
                        (AttributeValue::N(_), AttributeValue::N(_)) => (a, b),
                        _ => (AttributeValue::N(Number::zero()), AttributeValue::N(Number::zero())),
                    };
                    SortKeyCondition::Between(a, b)
                }
                _ => SortKeyCondition::BeginsWith(AttributeValue::S("p".into())),
            };
            conditions.push((sk.to_owned(), condition));
        }
        let parsed = KeyConditions { conditions };
        let rendered = parsed.render();
        let mut ph = Placeholders::new(Some(&rendered.names), Some(&rendered.values));
        prop_assert_eq!(parse_key_conditions(&rendered.expression, &mut ph), Ok(parsed));
    }

    #[test]
    fn parsers_never_panic(parts in prop::collection::vec(prop::sample::select(ALPHABET.as_slice()), 0..30)) {
        let src: String = parts.concat();
        let names = std::collections::HashMap::from([("#n".to_owned(), "n".to_owned())]);
        let values = values_of(&[(":v", AttributeValue::N(Number::zero()))]);
        let mut ph = Placeholders::new(Some(&names), Some(&values));
        let results = [
            parse_condition(&src, "FilterExpression", &mut ph).map(|_| ()),
            parse_update(&src, &mut ph).map(|_| ()),
            parse_projection(&src, &mut ph).map(|_| ()),
            parse_key_condition(&src, &mut ph).map(|_| ()),
        ];
        for result in results {
            if let Err(e) = result {
                prop_assert!(!e.message.is_empty());
            }
        }
    }
}
