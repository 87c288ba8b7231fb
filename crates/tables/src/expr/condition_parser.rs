//! The parser of conditions (ConditionExpression, FilterExpression, and the comparisons
//! a KeyConditionExpression is made of).
//!
//! ```text
//! condition ::= condition OR condition | condition AND condition | NOT condition
//!             | ( condition ) | function(operand, ...)
//!             | operand comparator operand | operand BETWEEN operand AND operand
//!             | operand IN ( operand, ... )
//! operand   ::= path | :value | size(operand) | ( operand )
//! ```
//! NOT binds tighter than AND, AND tighter than OR.

use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};

use super::condition::{ATTRIBUTE_TYPES, Comparator, Condition, Operand};
use super::error::{ExprError, Stage};
use super::eval::scalar_cmp;
use super::lexer::Token;
use super::parser::{PResult, Parser, parse_with};
use super::placeholders::Placeholders;
use crate::value::AttributeValue;

/// Most values an IN list may hold.
const MAX_IN_OPERANDS: usize = 100;

/// The keywords of the condition grammar.
pub(crate) const KEYWORDS: &[&str] = &["AND", "BETWEEN", "IN", "NOT", "OR"];

/// The functions that are conditions.
const CONDITION_FUNCTIONS: [&str; 5] = [
    "attribute_exists",
    "attribute_not_exists",
    "attribute_type",
    "begins_with",
    "contains",
];

/// The functions of update expressions.
pub(crate) const UPDATE_FUNCTIONS: [&str; 2] = ["if_not_exists", "list_append"];

/// Parses a ConditionExpression or FilterExpression (`which` names it in messages).
///
/// # Errors
/// DynamoDB's ValidationException message for the first problem: syntax, reserved
/// words, undefined placeholders, misused functions, literal values of the wrong type,
/// and the limits on size, operators and nesting.
pub fn parse_condition(
    src: &str,
    which: &'static str,
    ph: &mut Placeholders<'_>,
) -> Result<Condition, ExprError> {
    parse_with(src, which, KEYWORDS, true, ph, or)
}

/// `and (OR and)*`.
pub(crate) fn or(p: &mut Parser<'_, '_, '_>) -> PResult<Condition> {
    let mut left = and(p)?;
    while p.eat_keyword("OR") {
        let right = and(p)?;
        left = Condition::Or(Box::new(left), Box::new(right));
    }
    Ok(left)
}

/// `not (AND not)*`.
fn and(p: &mut Parser<'_, '_, '_>) -> PResult<Condition> {
    let mut left = not(p)?;
    while p.eat_keyword("AND") {
        let right = not(p)?;
        left = Condition::And(Box::new(left), Box::new(right));
    }
    Ok(left)
}

/// `NOT* primary`, read without recursion so that long NOT chains cost no stack.
fn not(p: &mut Parser<'_, '_, '_>) -> PResult<Condition> {
    let mut nots = 0;
    while p.eat_keyword("NOT") {
        p.count_operator();
        nots += 1;
    }
    let mut condition = primary(p)?;
    for _ in 0..nots {
        condition = Condition::Not(Box::new(condition));
    }
    Ok(condition)
}

/// A parenthesised condition, a function condition, or a comparison.
fn primary(p: &mut Parser<'_, '_, '_>) -> PResult<Condition> {
    if p.at_punct("(") && !opens_operand(p) {
        p.enter()?;
        p.advance();
        let inner = or(p)?;
        p.expect_punct(")")?;
        p.leave();
        return Ok(inner);
    }
    let left = if p.at_call() {
        let call = call(p)?;
        if !is_comparison(p, p.peek()) {
            return Ok(call_condition(p, call));
        }
        call_operand(p, call)
    } else {
        operand(p)?
    };
    comparison(p, left)
}

/// Whether the `(` here wraps an operand: its `)` is followed by a comparison.
fn opens_operand(p: &Parser<'_, '_, '_>) -> bool {
    p.after_matching_paren()
        .is_some_and(|after| is_comparison(p, after))
}

fn is_comparison(p: &Parser<'_, '_, '_>, token: Token) -> bool {
    Comparator::ALL
        .iter()
        .any(|c| p.token_is(token, c.symbol()))
        || p.token_is_keyword(token, "BETWEEN")
        || p.token_is_keyword(token, "IN")
}

/// The rest of a comparison, BETWEEN or IN after its first operand.
fn comparison(p: &mut Parser<'_, '_, '_>, left: Operand) -> PResult<Condition> {
    let token = p.peek();
    if let Some(cmp) = Comparator::ALL
        .into_iter()
        .find(|c| p.token_is(token, c.symbol()))
    {
        p.advance();
        p.count_operator();
        let right = operand(p)?;
        check_distinct(p, cmp.symbol(), &left, &[&right]);
        if cmp.is_ordering() {
            check_ordered(p, cmp.symbol(), &[&left, &right]);
        }
        return Ok(Condition::Compare(left, cmp, right));
    }
    if p.eat_keyword("BETWEEN") {
        p.count_operator();
        let low = operand(p)?;
        p.expect_keyword("AND")?;
        let high = operand(p)?;
        check_ordered(p, "BETWEEN", &[&left, &low, &high]);
        check_bounds(p, &low, &high);
        return Ok(Condition::Between(left, low, high));
    }
    if p.eat_keyword("IN") {
        p.count_operator();
        p.expect_punct("(")?;
        let mut list = vec![operand(p)?];
        while p.eat_punct(",") {
            list.push(operand(p)?);
        }
        p.expect_punct(")")?;
        if list.len() > MAX_IN_OPERANDS {
            p.report(
                Stage::Limit,
                format!(
                    "The IN operator is provided with too many operands; number of operands: {}",
                    list.len()
                ),
            );
        }
        let rest: Vec<&Operand> = list.iter().collect();
        check_distinct(p, "IN", &left, &rest);
        return Ok(Condition::In(left, list));
    }
    p.fail()
}

/// An operand, possibly in parentheses (read without recursion).
fn operand(p: &mut Parser<'_, '_, '_>) -> PResult<Operand> {
    let mut opens = 0;
    while p.eat_punct("(") {
        opens += 1;
    }
    let operand = if p.at_call() {
        let call = call(p)?;
        call_operand(p, call)
    } else if p.at_value() {
        Operand::Value(p.value()?)
    } else {
        Operand::Path(p.path()?)
    };
    for _ in 0..opens {
        p.expect_punct(")")?;
    }
    Ok(operand)
}

/// A function call as written, before it is known to be a condition or an operand.
struct Call {
    name: String,
    args: Vec<Operand>,
}

fn call(p: &mut Parser<'_, '_, '_>) -> PResult<Call> {
    let (name, args) = p.call(operand)?;
    Ok(Call { name, args })
}

/// Stands in for what a rejected function call would have been, so parsing goes on.
fn placeholder_operand() -> Operand {
    Operand::Value(AttributeValue::Null)
}

fn placeholder_condition() -> Condition {
    Condition::Compare(placeholder_operand(), Comparator::Eq, placeholder_operand())
}

/// Whether `name` is a function of condition expressions (`size` included).
pub(crate) fn is_condition_function(name: &str) -> bool {
    name == "size" || CONDITION_FUNCTIONS.contains(&name)
}

/// Reports a function that cannot stand where it was written.
fn misplaced_function(p: &mut Parser<'_, '_, '_>, name: &str) {
    if is_condition_function(name) {
        p.report(
            Stage::Misused,
            format!(
                "The function is not allowed to be used this way in an expression; function: {name}"
            ),
        );
    } else if UPDATE_FUNCTIONS.contains(&name) {
        p.report(
            Stage::FunctionName,
            format!("The function is not allowed in a condition expression; function: {name}"),
        );
    } else {
        p.report(
            Stage::FunctionName,
            format!("Invalid function name; function: {name}"),
        );
    }
}

/// Whether `call` has `expected` operands, reporting it if not.
pub(crate) fn check_arity(
    p: &mut Parser<'_, '_, '_>,
    name: &str,
    given: usize,
    expected: usize,
) -> bool {
    if given != expected {
        p.report(
            Stage::OperandCount,
            format!(
                "Incorrect number of operands for operator or function; operator or function: {name}, number of operands: {given}"
            ),
        );
    }
    given == expected
}

/// A call where an operand stands: only `size` is one.
fn call_operand(p: &mut Parser<'_, '_, '_>, call: Call) -> Operand {
    if call.name != "size" {
        misplaced_function(p, &call.name);
        return placeholder_operand();
    }
    if !check_arity(p, "size", call.args.len(), 1) {
        return placeholder_operand();
    }
    let Some(arg) = call.args.into_iter().next() else {
        return placeholder_operand();
    };
    if let Some(kind @ ("N" | "BOOL" | "NULL")) = static_type(&arg) {
        report_operand_type(p, "size", kind);
    }
    Operand::Size(Box::new(arg))
}

/// A call where a condition stands.
fn call_condition(p: &mut Parser<'_, '_, '_>, call: Call) -> Condition {
    let Call { name, args } = call;
    let expected = match name.as_str() {
        "attribute_exists" | "attribute_not_exists" => 1,
        "attribute_type" | "begins_with" | "contains" => 2,
        _ => {
            misplaced_function(p, &name);
            return placeholder_condition();
        }
    };
    if !check_arity(p, &name, args.len(), expected) {
        return placeholder_condition();
    }
    let mut args = args.into_iter();
    let (Some(first), second) = (args.next(), args.next()) else {
        return placeholder_condition();
    };
    match (name.as_str(), first, second) {
        ("attribute_exists", Operand::Path(path), None) => Condition::AttributeExists(path),
        ("attribute_not_exists", Operand::Path(path), None) => Condition::AttributeNotExists(path),
        ("attribute_exists" | "attribute_not_exists", _, None) => {
            p.report(
                Stage::PathRequired,
                format!(
                    "Operator or function requires a document path; operator or function: {name}"
                ),
            );
            placeholder_condition()
        }
        ("attribute_type", subject, Some(kind)) => {
            check_distinct(p, "attribute_type", &subject, &[&kind]);
            let kind = attribute_type_name(p, &kind);
            Condition::AttributeType(subject, kind)
        }
        ("begins_with", subject, Some(prefix)) => {
            check_distinct(p, "begins_with", &subject, &[&prefix]);
            for operand in [&subject, &prefix] {
                if let Some(kind) = static_type(operand).filter(|k| !matches!(*k, "S" | "B")) {
                    report_operand_type(p, "begins_with", kind);
                }
            }
            Condition::BeginsWith(subject, prefix)
        }
        ("contains", subject, Some(member)) => {
            check_distinct(p, "contains", &subject, &[&member]);
            Condition::Contains(subject, member)
        }
        _ => placeholder_condition(),
    }
}

/// The type name given to `attribute_type`, checked.
fn attribute_type_name(p: &mut Parser<'_, '_, '_>, operand: &Operand) -> String {
    match operand {
        Operand::Value(AttributeValue::S(kind)) => {
            if !ATTRIBUTE_TYPES.contains(&kind.as_str()) {
                p.report(
                    Stage::OperandType,
                    format!(
                        "Invalid attribute type name found; type: {kind}, valid types: {{B,NULL,SS,BOOL,L,BS,N,NS,S,M}}"
                    ),
                );
            }
            kind.clone()
        }
        Operand::Path(_) => {
            report_operand_type(p, "attribute_type", "{NS,SS,L,BS,N,M,B,BOOL,NULL,S}");
            String::new()
        }
        other => {
            let kind = static_type(other).unwrap_or("N");
            report_operand_type(p, "attribute_type", kind);
            String::new()
        }
    }
}

/// The type of an operand known before any item is seen: a value's, or N for a size.
fn static_type(operand: &Operand) -> Option<&'static str> {
    match operand {
        Operand::Value(value) => Some(value.type_name()),
        Operand::Size(_) => Some("N"),
        Operand::Path(_) => None,
    }
}

fn report_operand_type(p: &mut Parser<'_, '_, '_>, operator: &str, kind: &str) {
    p.report(
        Stage::OperandType,
        format!("Incorrect operand type for operator or function; operator or function: {operator}, operand type: {kind}"),
    );
}

/// Ordering operators take strings, numbers and binaries: a value of another type given
/// in the request is an error (one found in an item only makes the condition false).
fn check_ordered(p: &mut Parser<'_, '_, '_>, operator: &str, operands: &[&Operand]) {
    for operand in operands {
        if let Operand::Value(value) = operand {
            let kind = value.type_name();
            if !matches!(kind, "S" | "N" | "B") {
                report_operand_type(p, operator, kind);
            }
        }
    }
}

/// BETWEEN's bounds, when both are values: same type, in order.
fn check_bounds(p: &mut Parser<'_, '_, '_>, low: &Operand, high: &Operand) {
    let (Operand::Value(low), Operand::Value(high)) = (low, high) else {
        return;
    };
    let scalar = |v: &AttributeValue| matches!(v.type_name(), "S" | "N" | "B");
    if !scalar(low) || !scalar(high) {
        return;
    }
    let bounds = format!(
        "lower bound operand: AttributeValue: {}, upper bound operand: AttributeValue: {}",
        show(low),
        show(high)
    );
    match scalar_cmp(low, high) {
        None => p.report(
            Stage::OperandType,
            format!("The BETWEEN operator requires same data type for lower and upper bounds; {bounds}"),
        ),
        Some(std::cmp::Ordering::Greater) => p.report(
            Stage::OperandType,
            format!(
                "The BETWEEN operator requires upper bound to be greater than or equal to lower bound; {bounds}"
            ),
        ),
        Some(_) => {}
    }
}

/// A scalar as DynamoDB's BETWEEN messages show it: `{N:1}`, `{S:a}`.
pub(crate) fn show(value: &AttributeValue) -> String {
    let shown = match value {
        AttributeValue::S(s) => s.clone(),
        AttributeValue::N(n) => n.to_string(),
        AttributeValue::B(b) => BASE64.encode(b),
        other => other.type_name().to_owned(),
    };
    format!("{{{}:{shown}}}", value.type_name())
}

/// A path may not be compared with itself.
fn check_distinct(p: &mut Parser<'_, '_, '_>, operator: &str, first: &Operand, rest: &[&Operand]) {
    let Operand::Path(path) = first else {
        return;
    };
    if rest
        .iter()
        .any(|other| matches!(other, Operand::Path(o) if o == path))
    {
        p.report(
            Stage::Distinct,
            format!(
                "The first operand must be distinct from the remaining operands for this operator or function; operator: {operator}, first operand: {}",
                path.describe()
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::path::{Path, PathElement};
    use crate::value::Number;
    use std::collections::HashMap;

    fn n(s: &str) -> AttributeValue {
        AttributeValue::N(s.parse::<Number>().unwrap())
    }

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.to_owned())
    }

    fn values() -> HashMap<String, AttributeValue> {
        HashMap::from([
            (":n".to_owned(), n("1")),
            (":n2".to_owned(), n("2")),
            (":s".to_owned(), s("a")),
            (":s2".to_owned(), s("b")),
            (":b".to_owned(), AttributeValue::B(vec![1])),
            (":l".to_owned(), AttributeValue::L(vec![])),
            (":m".to_owned(), AttributeValue::M(Default::default())),
            (":t".to_owned(), AttributeValue::Bool(true)),
            (":z".to_owned(), AttributeValue::Null),
            (":ss".to_owned(), AttributeValue::Ss(vec!["a".into()])),
            (":type".to_owned(), s("SS")),
            (":badtype".to_owned(), s("STRING")),
        ])
    }

    fn names() -> HashMap<String, String> {
        HashMap::from([
            ("#s".to_owned(), "status".to_owned()),
            ("#a".to_owned(), "a".to_owned()),
            ("#d".to_owned(), "[3]".to_owned()),
        ])
    }

    fn parse(src: &str) -> Result<Condition, String> {
        let (names, values) = (names(), values());
        let mut ph = Placeholders::new(Some(&names), Some(&values));
        parse_condition(src, "ConditionExpression", &mut ph).map_err(|e| e.message)
    }

    fn err(src: &str) -> String {
        match parse(src) {
            Ok(c) => panic!("{src:?} parsed as {c:?}"),
            Err(message) => message
                .strip_prefix("Invalid ConditionExpression: ")
                .unwrap_or_else(|| panic!("no prefix: {message}"))
                .to_owned(),
        }
    }

    fn path(steps: &[&str]) -> Operand {
        Operand::Path(Path(
            steps
                .iter()
                .map(|s| match s.parse::<usize>() {
                    Ok(i) => PathElement::Index(i),
                    Err(_) => PathElement::Attribute((*s).to_owned()),
                })
                .collect(),
        ))
    }

    #[test]
    fn parses_every_comparator() {
        for cmp in Comparator::ALL {
            let parsed = parse(&format!("a.b[2] {} :n", cmp.symbol())).unwrap();
            assert_eq!(
                parsed,
                Condition::Compare(path(&["a", "b", "2"]), cmp, Operand::Value(n("1")))
            );
        }
        assert!(!Comparator::Eq.is_ordering() && !Comparator::Ne.is_ordering());
        assert!(Comparator::Ge.is_ordering());
    }

    #[test]
    fn parses_between_in_and_functions() {
        assert_eq!(
            parse("a BETWEEN :n AND :n2").unwrap(),
            Condition::Between(path(&["a"]), Operand::Value(n("1")), Operand::Value(n("2")))
        );
        assert_eq!(
            parse("#s in (:s, :s2, b)").unwrap(),
            Condition::In(
                path(&["status"]),
                vec![Operand::Value(s("a")), Operand::Value(s("b")), path(&["b"])]
            )
        );
        assert_eq!(
            parse("attribute_exists(#a.#d)").unwrap(),
            Condition::AttributeExists(Path(vec![
                PathElement::Attribute("a".into()),
                PathElement::Attribute("[3]".into())
            ]))
        );
        assert_eq!(
            parse("attribute_not_exists(x)").unwrap(),
            Condition::AttributeNotExists(Path::attribute("x"))
        );
        assert_eq!(
            parse("attribute_type(x, :type)").unwrap(),
            Condition::AttributeType(path(&["x"]), "SS".into())
        );
        assert_eq!(
            parse("begins_with(x, :s)").unwrap(),
            Condition::BeginsWith(path(&["x"]), Operand::Value(s("a")))
        );
        assert_eq!(
            parse("contains(x, :n)").unwrap(),
            Condition::Contains(path(&["x"]), Operand::Value(n("1")))
        );
        assert_eq!(
            parse("size(x) > :n").unwrap(),
            Condition::Compare(
                Operand::Size(Box::new(path(&["x"]))),
                Comparator::Gt,
                Operand::Value(n("1"))
            )
        );
        assert_eq!(
            parse("(size (x)) >= (:n)").unwrap(),
            parse("size(x) >= :n").unwrap()
        );
    }

    #[test]
    fn not_binds_tighter_than_and_than_or() {
        let a = || Condition::Compare(path(&["a"]), Comparator::Eq, Operand::Value(n("1")));
        let b = || Condition::Compare(path(&["b"]), Comparator::Eq, Operand::Value(n("1")));
        let c = || Condition::Compare(path(&["c"]), Comparator::Eq, Operand::Value(n("1")));
        let and = |x, y| Condition::And(Box::new(x), Box::new(y));
        let or = |x, y| Condition::Or(Box::new(x), Box::new(y));
        let not = |x| Condition::Not(Box::new(x));
        assert_eq!(
            parse("a = :n OR b = :n AND c = :n").unwrap(),
            or(a(), and(b(), c()))
        );
        assert_eq!(
            parse("a = :n AND b = :n OR c = :n").unwrap(),
            or(and(a(), b()), c())
        );
        assert_eq!(parse("NOT a = :n AND b = :n").unwrap(), and(not(a()), b()));
        assert_eq!(
            parse("not (a = :n and b = :n)").unwrap(),
            not(and(a(), b()))
        );
        assert_eq!(parse("NOT NOT a = :n").unwrap(), not(not(a())));
        assert_eq!(
            parse("(a = :n OR b = :n) AND c = :n").unwrap(),
            and(or(a(), b()), c())
        );
        assert_eq!(
            parse("a = :n AND b = :n AND c = :n").unwrap(),
            and(and(a(), b()), c())
        );
        assert_eq!(parse("((a) = :n)").unwrap(), a());
    }

    #[test]
    fn syntax_errors_as_dynamodb_words_them() {
        assert_eq!(err("foo"), "Syntax error; token: \"<EOF>\", near: \"foo\"");
        assert_eq!(
            err("a = = :n"),
            "Syntax error; token: \"=\", near: \"= = :n\""
        );
        assert_eq!(
            err("attribute_not_exists("),
            "Syntax error; token: \"<EOF>\", near: \"(\""
        );
        assert_eq!(
            err("attribute_type()"),
            "Syntax error; token: \")\", near: \"()\""
        );
        assert_eq!(
            err("__typename <> :s"),
            "Syntax error; token: \"_\", near: \"__\""
        );
        assert_eq!(
            err("a = :n AND"),
            "Syntax error; token: \"<EOF>\", near: \"AND\""
        );
        assert_eq!(
            err("a AND b = :n"),
            "Syntax error; token: \"AND\", near: \"a AND b\""
        );
        assert_eq!(err("a = 4"), "Syntax error; token: \"4\", near: \"= 4\"");
        assert_eq!(
            err("a = (b = :n)"),
            "Syntax error; token: \"=\", near: \"b = :n\""
        );
        assert_eq!(err("a = :n)"), "Syntax error; token: \")\", near: \":n)\"");
        assert_eq!(
            err("(a = :n"),
            "Syntax error; token: \"<EOF>\", near: \":n\""
        );
        assert_eq!(
            err("a ~ :n"),
            "Syntax error; token: \"~\", near: \"a ~ :n\""
        );
        assert_eq!(
            err("a = and"),
            "Syntax error; token: \"and\", near: \"= and\""
        );
        assert_eq!(
            err("a < b < c"),
            "Syntax error; token: \"<\", near: \"b < c\""
        );
        assert_eq!(
            err("a IN :n"),
            "Syntax error; token: \":n\", near: \"IN :n\""
        );
        assert_eq!(
            err("a BETWEEN :n OR :n2"),
            "Syntax error; token: \"OR\", near: \":n OR :n2\""
        );
        assert_eq!(
            err("a = :n + :n"),
            "Syntax error; token: \"+\", near: \":n + :n\""
        );
        assert_eq!(err("NOT a"), "Syntax error; token: \"<EOF>\", near: \"a\"");
    }

    #[test]
    fn reserved_words_and_placeholders() {
        assert_eq!(
            err("status = :s"),
            "Attribute name is a reserved keyword; reserved keyword: status"
        );
        assert_eq!(
            err("a.Size = :s"),
            "Attribute name is a reserved keyword; reserved keyword: Size"
        );
        assert!(parse("#s = :s").is_ok());
        assert_eq!(
            err("#x = :s"),
            "An expression attribute name used in the document path is not defined; attribute name: #x"
        );
        assert_eq!(
            err("a = :x"),
            "An expression attribute value used in expression is not defined; attribute value: :x"
        );
        // Reserved words come before undefined placeholders.
        assert_eq!(
            err("a = :x AND date = :s"),
            "Attribute name is a reserved keyword; reserved keyword: date"
        );
    }

    #[test]
    fn function_rules() {
        assert_eq!(err("foo(a)"), "Invalid function name; function: foo");
        assert_eq!(
            err("if_not_exists(a, :n) = :n"),
            "The function is not allowed in a condition expression; function: if_not_exists"
        );
        assert_eq!(
            err("size(a)"),
            "The function is not allowed to be used this way in an expression; function: size"
        );
        assert_eq!(
            err("attribute_exists(a) = :t"),
            "The function is not allowed to be used this way in an expression; function: attribute_exists"
        );
        assert_eq!(
            err("contains(attribute_exists(a), :n)"),
            "The function is not allowed to be used this way in an expression; function: attribute_exists"
        );
        assert_eq!(
            err("attribute_exists(a, b)"),
            "Incorrect number of operands for operator or function; operator or function: attribute_exists, number of operands: 2"
        );
        assert_eq!(
            err("size(a, b) = :n"),
            "Incorrect number of operands for operator or function; operator or function: size, number of operands: 2"
        );
        assert_eq!(
            err("attribute_not_exists(:n)"),
            "Operator or function requires a document path; operator or function: attribute_not_exists"
        );
        assert_eq!(
            err("attribute_type(a, :badtype)"),
            "Invalid attribute type name found; type: STRING, valid types: {B,NULL,SS,BOOL,L,BS,N,NS,S,M}"
        );
        assert_eq!(
            err("attribute_type(a, :n)"),
            "Incorrect operand type for operator or function; operator or function: attribute_type, operand type: N"
        );
        assert_eq!(
            err("attribute_type(a, b)"),
            "Incorrect operand type for operator or function; operator or function: attribute_type, operand type: {NS,SS,L,BS,N,M,B,BOOL,NULL,S}"
        );
        assert_eq!(
            err("begins_with(a, :n)"),
            "Incorrect operand type for operator or function; operator or function: begins_with, operand type: N"
        );
        assert!(parse("begins_with(a, :b)").is_ok());
        assert_eq!(
            err("size(:t) > :n"),
            "Incorrect operand type for operator or function; operator or function: size, operand type: BOOL"
        );
        assert_eq!(
            err("size(size(a)) > :n"),
            "Incorrect operand type for operator or function; operator or function: size, operand type: N"
        );
        assert!(parse("size(:s) > :n").is_ok());
    }

    #[test]
    fn operand_rules() {
        assert_eq!(
            err("a = a"),
            "The first operand must be distinct from the remaining operands for this operator or function; operator: =, first operand: [a]"
        );
        assert_eq!(
            err("a.b[1] IN (:n, a.b[1])"),
            "The first operand must be distinct from the remaining operands for this operator or function; operator: IN, first operand: [a, b, [1]]"
        );
        assert_eq!(
            err("contains(#a, a)"),
            "The first operand must be distinct from the remaining operands for this operator or function; operator: contains, first operand: [a]"
        );
        assert!(parse(":n = :n").is_ok());
        assert_eq!(
            err("a < :l"),
            "Incorrect operand type for operator or function; operator or function: <, operand type: L"
        );
        assert_eq!(
            err(":m >= a"),
            "Incorrect operand type for operator or function; operator or function: >=, operand type: M"
        );
        assert!(parse("a = :l").is_ok() && parse("a <> :z").is_ok());
        assert_eq!(
            err("a BETWEEN :t AND :n"),
            "Incorrect operand type for operator or function; operator or function: BETWEEN, operand type: BOOL"
        );
        assert_eq!(
            err("a BETWEEN :n AND :s"),
            "The BETWEEN operator requires same data type for lower and upper bounds; lower bound operand: AttributeValue: {N:1}, upper bound operand: AttributeValue: {S:a}"
        );
        assert_eq!(
            err("a BETWEEN :s2 AND :s"),
            "The BETWEEN operator requires upper bound to be greater than or equal to lower bound; lower bound operand: AttributeValue: {S:b}, upper bound operand: AttributeValue: {S:a}"
        );
        assert!(parse("a BETWEEN :n AND :n").is_ok());
    }

    #[test]
    fn limits() {
        assert_eq!(
            err("((a = :n))"),
            "The expression has redundant parentheses;"
        );
        assert_eq!(
            err("((a)) = :n"),
            "The expression has redundant parentheses;"
        );
        assert!(parse("((a = :n) AND (b = :n))").is_ok());
        assert!(parse("contains((a), :n)").is_ok());
        // After a keyword, doubled parentheses are no function call's.
        for doubled in [
            "a = :n AND ((b = :n))",
            "NOT ((a = :n))",
            "a = :n or ((b = :n))",
        ] {
            assert_eq!(
                err(doubled),
                "The expression has redundant parentheses;",
                "{doubled}"
            );
        }
        assert!(parse("a = :n AND (b = :n)").is_ok());
        assert!(parse("NOT (a = :n)").is_ok());
        assert!(parse("a IN (:n, :n)").is_ok());

        let list = vec![":n"; 101].join(", ");
        assert_eq!(
            err(&format!("a IN ({list})")),
            "The IN operator is provided with too many operands; number of operands: 101"
        );
        let list = vec![":n"; 100].join(", ");
        assert!(parse(&format!("a IN ({list})")).is_ok());

        let many = vec!["a < :n"; 301].join(" AND ");
        assert_eq!(
            err(&many),
            "The expression contains too many operators; operator count: 301"
        );
        let most = vec!["a < :n"; 300].join(" AND ");
        assert!(parse(&most).is_ok());

        let deep = format!("{}a = :n{}", "(".repeat(1000), ")".repeat(1000));
        assert_eq!(err(&deep), "The expression has redundant parentheses;");
        let nots = format!("{}a = :n", "NOT ".repeat(1000));
        assert_eq!(
            err(&nots),
            "The expression contains too many operators; operator count: 1001"
        );
        let sizes = format!("{}a{} = :n", "size(".repeat(500), ")".repeat(500));
        assert!(err(&sizes).starts_with("The expression contains too many operators"));
    }

    #[test]
    fn reports_the_expression_it_parses() {
        let values = values();
        let mut ph = Placeholders::new(None, Some(&values));
        let e = parse_condition("a = :x", "FilterExpression", &mut ph).unwrap_err();
        assert_eq!(
            e.message,
            "Invalid FilterExpression: An expression attribute value used in expression is not defined; attribute value: :x"
        );
    }

    #[test]
    fn shows_bounds_as_dynamodb_does() {
        assert_eq!(show(&AttributeValue::B(vec![0, 1])), "{B:AAE=}");
        assert_eq!(show(&AttributeValue::Null), "{NULL:NULL}");
    }
}
