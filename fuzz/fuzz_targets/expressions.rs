//! Every expression parser on arbitrary text, with placeholders that resolve: no input
//! may panic, and whatever parses must print back to text that parses the same.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use nimbus_tables::{
    expr::{self, Placeholders},
    value::AttributeValue,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let names: HashMap<String, String> = [("#a", "a"), ("#b", "status"), ("#c", "c.d")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let values: HashMap<String, AttributeValue> = [
        (":s", AttributeValue::S("x".into())),
        (":n", AttributeValue::N("1".parse().expect("a number"))),
        (":l", AttributeValue::L(vec![AttributeValue::Null])),
        (":ss", AttributeValue::Ss(vec!["a".into()])),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let item = [
        ("a".to_owned(), AttributeValue::N("2".parse().expect("a number"))),
        ("c".to_owned(), AttributeValue::L(vec![AttributeValue::S("y".into())])),
    ]
    .into_iter()
    .collect();

    let mut ph = Placeholders::new(Some(&names), Some(&values));
    if let Ok(condition) = expr::parse_condition(text, "ConditionExpression", &mut ph) {
        let _ = condition.eval(&item);
        let rendered = condition.render();
        let mut again = Placeholders::new(Some(&rendered.names), Some(&rendered.values));
        let reparsed = expr::parse_condition(&rendered.expression, "ConditionExpression", &mut again)
            .expect("a printed condition parses");
        assert_eq!(reparsed, condition);
    }
    let mut ph = Placeholders::new(Some(&names), Some(&values));
    if let Ok(update) = expr::parse_update(text, &mut ph) {
        let mut copy = item.clone();
        let _ = update.apply(&mut copy);
    }
    let mut ph = Placeholders::new(Some(&names), Some(&values));
    if let Ok(projection) = expr::parse_projection(text, &mut ph) {
        let _ = projection.apply(&item);
    }
    let mut ph = Placeholders::new(Some(&names), Some(&values));
    let _ = expr::parse_key_condition(text, &mut ph);
});
