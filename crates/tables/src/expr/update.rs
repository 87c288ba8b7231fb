//! Update expressions: their syntax tree, parser and printer. Applying one to an item is
//! in [`super::apply`].
//!
//! ```text
//! update    ::= section+            (each of SET, REMOVE, ADD, DELETE at most once)
//! section   ::= SET path = value, ... | REMOVE path, ...
//!             | ADD path :value, ...  | DELETE path :value, ...
//! value     ::= operand | operand + operand | operand - operand | ( value )
//! operand   ::= path | :value | if_not_exists(path, operand)
//!             | list_append(operand, operand) | ( operand )
//! ```

use std::fmt;

use super::condition_parser::{UPDATE_FUNCTIONS, check_arity, is_condition_function};
use super::error::{ExprError, Stage};
use super::parser::{PResult, Parser, parse_with};
use super::path::{Path, Relation, first_clash};
use super::placeholders::Placeholders;
use super::render::{Rendered, Renderer};
use crate::value::AttributeValue;

/// The keywords of the update grammar: its clause names.
const KEYWORDS: &[&str] = &["SET", "REMOVE", "ADD", "DELETE"];

/// A parsed UpdateExpression: its actions, clause by clause, each in written order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Update {
    /// `SET path = value, ...`.
    pub set: Vec<SetAction>,
    /// `REMOVE path, ...`.
    pub remove: Vec<Path>,
    /// `ADD path :value, ...`: add to a number, or add members to a set.
    pub add: Vec<(Path, AttributeValue)>,
    /// `DELETE path :set, ...`: take members out of a set.
    pub delete: Vec<(Path, AttributeValue)>,
}

/// One assignment of a SET clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAction {
    /// What is set.
    pub path: Path,
    /// What it is set to.
    pub value: SetValue,
}

/// The right-hand side of a SET assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetValue {
    /// `operand`.
    Operand(SetOperand),
    /// `a + b` (numbers).
    Plus(SetOperand, SetOperand),
    /// `a - b` (numbers).
    Minus(SetOperand, SetOperand),
}

/// An operand of a SET value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetOperand {
    /// The value at a path of the item before the update (it must exist).
    Path(Path),
    /// A value from ExpressionAttributeValues.
    Value(AttributeValue),
    /// `if_not_exists(path, operand)`: the value at `path` if there is one, else the
    /// operand.
    IfNotExists(Path, Box<SetOperand>),
    /// `list_append(a, b)`: the elements of list `a` then those of list `b`.
    ListAppend(Box<SetOperand>, Box<SetOperand>),
}

/// The clauses, as keywords and in the order [`Update`] keeps them.
const SECTIONS: [&str; 4] = ["SET", "REMOVE", "ADD", "DELETE"];

/// Parses an UpdateExpression.
///
/// # Errors
/// DynamoDB's ValidationException message for the first problem: syntax, reserved
/// words, a clause given twice, undefined placeholders, overlapping or conflicting
/// paths, values of the wrong type, misused functions, and the limits.
pub fn parse_update(src: &str, ph: &mut Placeholders<'_>) -> Result<Update, ExprError> {
    parse_with(src, "UpdateExpression", KEYWORDS, false, ph, |p| {
        let mut update = Update::default();
        let mut seen = [false; 4];
        // Every path the update writes, in written order, for the overlap rules.
        let mut order: Vec<(usize, usize)> = Vec::new();
        loop {
            let Some(section) = SECTIONS.iter().position(|s| p.at_keyword(s)) else {
                return p.fail();
            };
            p.advance();
            if seen[section] {
                p.report(
                    Stage::Section,
                    format!(
                        "The \"{}\" section can only be used once in an update expression;",
                        SECTIONS[section]
                    ),
                );
            }
            seen[section] = true;
            loop {
                let index = match section {
                    0 => {
                        let path = p.path()?;
                        p.expect_punct("=")?;
                        let value = set_value(p)?;
                        update.set.push(SetAction { path, value });
                        update.set.len()
                    }
                    1 => {
                        update.remove.push(p.path()?);
                        update.remove.len()
                    }
                    _ => {
                        let path = p.path()?;
                        let value = p.value()?;
                        let operator = SECTIONS[section];
                        check_add_delete(p, operator, &value);
                        let list = if section == 2 {
                            &mut update.add
                        } else {
                            &mut update.delete
                        };
                        list.push((path, value));
                        list.len()
                    }
                };
                order.push((section, index - 1));
                if !p.eat_punct(",") {
                    break;
                }
            }
            if p.at_eof() {
                break;
            }
        }
        let paths: Vec<&Path> = order
            .iter()
            .filter_map(|&(section, i)| update.target(section, i))
            .collect();
        if let Some((relation, message)) = first_clash(&paths) {
            let stage = match relation {
                Relation::Conflict => Stage::Conflict,
                _ => Stage::Overlap,
            };
            p.report(stage, message);
        }
        Ok(update)
    })
}

/// ADD takes numbers and sets, DELETE sets.
fn check_add_delete(p: &mut Parser<'_, '_, '_>, operator: &str, value: &AttributeValue) {
    let kind = match value {
        AttributeValue::S(_) => "STRING",
        AttributeValue::N(_) if operator == "ADD" => return,
        AttributeValue::N(_) => "NUMBER",
        AttributeValue::B(_) => "BINARY",
        AttributeValue::Bool(_) => "BOOLEAN",
        AttributeValue::Null => "NULL",
        AttributeValue::L(_) => "LIST",
        AttributeValue::M(_) => "MAP",
        AttributeValue::Ss(_) | AttributeValue::Ns(_) | AttributeValue::Bs(_) => return,
    };
    p.report(
        Stage::UpdateOperand,
        format!("Incorrect operand type for operator or function; operator: {operator}, operand type: {kind}"),
    );
}

/// `value` or `( value )`: a `(` whose `)` is followed by `+` or `-` opens an operand
/// instead.
fn set_value(p: &mut Parser<'_, '_, '_>) -> PResult<SetValue> {
    let opens_operand = p
        .after_matching_paren()
        .is_some_and(|after| p.token_is(after, "+") || p.token_is(after, "-"));
    if p.at_punct("(") && !opens_operand {
        p.advance();
        let value = arithmetic(p)?;
        p.expect_punct(")")?;
        return Ok(value);
    }
    arithmetic(p)
}

/// `operand [(+|-) operand]`.
fn arithmetic(p: &mut Parser<'_, '_, '_>) -> PResult<SetValue> {
    let left = operand(p)?;
    let plus = p.at_punct("+");
    if !plus && !p.at_punct("-") {
        return Ok(SetValue::Operand(left));
    }
    p.advance();
    p.count_operator();
    let right = operand(p)?;
    let operator = if plus { "+" } else { "-" };
    for side in [&left, &right] {
        check_literal_type(p, operator, side, "N");
    }
    Ok(if plus {
        SetValue::Plus(left, right)
    } else {
        SetValue::Minus(left, right)
    })
}

/// A value given in the request must have the type the operator takes.
fn check_literal_type(
    p: &mut Parser<'_, '_, '_>,
    operator: &str,
    operand: &SetOperand,
    wanted: &str,
) {
    if let SetOperand::Value(value) = operand {
        let kind = value.type_name();
        if kind != wanted {
            p.report(
                Stage::OperandType,
                format!("Incorrect operand type for operator or function; operator or function: {operator}, operand type: {kind}"),
            );
        }
    }
}

/// An operand, in at most one pair of parentheses.
fn operand(p: &mut Parser<'_, '_, '_>) -> PResult<SetOperand> {
    if p.eat_punct("(") {
        let inner = bare_operand(p)?;
        p.expect_punct(")")?;
        return Ok(inner);
    }
    bare_operand(p)
}

fn bare_operand(p: &mut Parser<'_, '_, '_>) -> PResult<SetOperand> {
    if p.at_call() {
        return call(p);
    }
    if p.at_value() {
        return Ok(SetOperand::Value(p.value()?));
    }
    Ok(SetOperand::Path(p.path()?))
}

/// `if_not_exists(...)`, `list_append(...)`, or a function that has no place here.
fn call(p: &mut Parser<'_, '_, '_>) -> PResult<SetOperand> {
    let (name, args) = p.call(operand)?;

    let placeholder = SetOperand::Value(AttributeValue::Null);
    if !UPDATE_FUNCTIONS.contains(&name.as_str()) {
        let message = if is_condition_function(&name) {
            format!("The function is not allowed in an update expression; function: {name}")
        } else {
            format!("Invalid function name; function: {name}")
        };
        p.report(Stage::FunctionName, message);
        return Ok(placeholder);
    }
    if !check_arity(p, &name, args.len(), 2) {
        return Ok(placeholder);
    }
    let mut args = args.into_iter();
    let (Some(first), Some(second)) = (args.next(), args.next()) else {
        return Ok(placeholder);
    };
    if name == "list_append" {
        for side in [&first, &second] {
            check_literal_type(p, "list_append", side, "L");
        }
        return Ok(SetOperand::ListAppend(Box::new(first), Box::new(second)));
    }
    match first {
        SetOperand::Path(path) => Ok(SetOperand::IfNotExists(path, Box::new(second))),
        _ => {
            p.report(
                Stage::PathRequired,
                "Operator or function requires a document path; operator or function: if_not_exists"
                    .to_owned(),
            );
            Ok(placeholder)
        }
    }
}

impl Update {
    /// The path the `i`th action of clause `section` writes.
    fn target(&self, section: usize, i: usize) -> Option<&Path> {
        match section {
            0 => self.set.get(i).map(|a| &a.path),
            1 => self.remove.get(i),
            2 => self.add.get(i).map(|(path, _)| path),
            _ => self.delete.get(i).map(|(path, _)| path),
        }
    }

    /// Every path the update writes: SET, then REMOVE, ADD and DELETE targets.
    pub fn target_paths(&self) -> impl Iterator<Item = &Path> {
        self.set
            .iter()
            .map(|a| &a.path)
            .chain(&self.remove)
            .chain(self.add.iter().map(|(path, _)| path))
            .chain(self.delete.iter().map(|(path, _)| path))
    }

    /// The top-level attributes the update writes, each once (the key attributes may not
    /// be among them).
    pub fn top_level_attributes(&self) -> impl Iterator<Item = &str> {
        let mut names: Vec<&str> = Vec::new();
        for name in self.target_paths().filter_map(Path::top_level) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names.into_iter()
    }

    /// The update as text with its placeholders; see [`Rendered`]. Clauses print in the
    /// order SET, REMOVE, ADD, DELETE; empty ones are left out.
    pub fn render(&self) -> Rendered {
        let mut r = Renderer::default();
        let mut first = true;
        let mut open = |r: &mut Renderer, name: &str| {
            if !first {
                r.text(" ");
            }
            first = false;
            r.text(name);
            r.text(" ");
        };
        if !self.set.is_empty() {
            open(&mut r, "SET");
            for (i, action) in self.set.iter().enumerate() {
                if i > 0 {
                    r.text(", ");
                }
                r.path(&action.path);
                r.text(" = ");
                action.value.render(&mut r);
            }
        }
        if !self.remove.is_empty() {
            open(&mut r, "REMOVE");
            for (i, path) in self.remove.iter().enumerate() {
                if i > 0 {
                    r.text(", ");
                }
                r.path(path);
            }
        }
        for (name, list) in [("ADD", &self.add), ("DELETE", &self.delete)] {
            if list.is_empty() {
                continue;
            }
            open(&mut r, name);
            for (i, (path, value)) in list.iter().enumerate() {
                if i > 0 {
                    r.text(", ");
                }
                r.path(path);
                r.text(" ");
                r.value(value);
            }
        }
        r.finish()
    }
}

impl SetValue {
    fn render(&self, r: &mut Renderer) {
        match self {
            SetValue::Operand(a) => a.render(r),
            SetValue::Plus(a, b) | SetValue::Minus(a, b) => {
                a.render(r);
                r.text(if matches!(self, SetValue::Plus(..)) {
                    " + "
                } else {
                    " - "
                });
                b.render(r);
            }
        }
    }
}

impl SetOperand {
    fn render(&self, r: &mut Renderer) {
        match self {
            SetOperand::Path(path) => r.path(path),
            SetOperand::Value(value) => r.value(value),
            SetOperand::IfNotExists(path, fallback) => {
                r.text("if_not_exists(");
                r.path(path);
                r.text(", ");
                fallback.render(r);
                r.text(")");
            }
            SetOperand::ListAppend(a, b) => {
                r.text("list_append(");
                a.render(r);
                r.text(", ");
                b.render(r);
                r.text(")");
            }
        }
    }
}

/// Prints the update with placeholders `:v0`, `#n0`, ... (see [`Update::render`] for the
/// maps that go with them).
impl fmt::Display for Update {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render().expression)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::path::PathElement;
    use std::collections::HashMap;

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.to_owned())
    }

    fn parse_with_maps(
        src: &str,
        names: &[(&str, &str)],
        values: &[(&str, AttributeValue)],
    ) -> Result<Update, String> {
        let names: HashMap<String, String> = names
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let values: HashMap<String, AttributeValue> = values
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        let mut ph = Placeholders::new(Some(&names), Some(&values));
        parse_update(src, &mut ph).map_err(|e| e.message)
    }

    /// The maps most tests use: `#a`, `#b`, `:a`, `:b`.
    fn parse(src: &str) -> Result<Update, String> {
        parse_with_maps(
            src,
            &[("#a", "a"), ("#b", "b")],
            &[(":a", s("a")), (":b", s("a"))],
        )
    }

    fn err(src: &str) -> String {
        let message = parse(src).unwrap_err();
        message
            .strip_prefix("Invalid UpdateExpression: ")
            .unwrap_or_else(|| panic!("no prefix: {message}"))
            .to_owned()
    }

    #[test]
    fn parses_every_clause() {
        let num = AttributeValue::N("1".parse().unwrap());
        let set = AttributeValue::Ss(vec!["x".into()]);
        let update = parse_with_maps(
            "SET a = :v, b.c[2] = x + :n, d = (:n - x), e = if_not_exists(e, :v), f = list_append(f, :l) \
             remove g, h[1] Add i :n, j :s delete k :s",
            &[],
            &[(":v", s("v")), (":n", num.clone()), (":l", AttributeValue::L(vec![])), (":s", set.clone())],
        )
        .unwrap();
        let path = |s: &str| Path::attribute(s);
        assert_eq!(update.set.len(), 5);
        assert_eq!(
            update.set[0],
            SetAction {
                path: path("a"),
                value: SetValue::Operand(SetOperand::Value(s("v")))
            }
        );
        assert_eq!(
            update.set[1].path,
            Path(vec![
                PathElement::Attribute("b".into()),
                PathElement::Attribute("c".into()),
                PathElement::Index(2)
            ])
        );
        assert_eq!(
            update.set[1].value,
            SetValue::Plus(SetOperand::Path(path("x")), SetOperand::Value(num.clone()))
        );
        assert_eq!(
            update.set[2].value,
            SetValue::Minus(SetOperand::Value(num.clone()), SetOperand::Path(path("x")))
        );
        assert_eq!(
            update.set[3].value,
            SetValue::Operand(SetOperand::IfNotExists(
                path("e"),
                Box::new(SetOperand::Value(s("v")))
            ))
        );
        assert_eq!(
            update.set[4].value,
            SetValue::Operand(SetOperand::ListAppend(
                Box::new(SetOperand::Path(path("f"))),
                Box::new(SetOperand::Value(AttributeValue::L(vec![])))
            ))
        );
        assert_eq!(
            update.remove,
            vec![
                path("g"),
                Path(vec![
                    PathElement::Attribute("h".into()),
                    PathElement::Index(1)
                ])
            ]
        );
        assert_eq!(update.add, vec![(path("i"), num), (path("j"), set.clone())]);
        assert_eq!(update.delete, vec![(path("k"), set)]);
        let top: Vec<&str> = update.top_level_attributes().collect();
        assert_eq!(top, ["a", "b", "d", "e", "f", "g", "h", "i", "j", "k"]);
        assert_eq!(update.target_paths().count(), 10);
    }

    #[test]
    fn accepts_dynamodb_parentheses() {
        for src in [
            "set a = (b + c)",
            "set a = ((b.c.d)+(e))",
            "set a = (b) - (c)",
            "SET a = if_not_exists(a, b) + b",
            "SET a = if_not_exists(a, if_not_exists(a, b))",
            "SET a = list_append((a), (b))",
        ] {
            assert!(parse(src).is_ok(), "{src}: {:?}", parse(src));
        }
    }

    #[test]
    fn syntax_errors() {
        for src in [
            "whatever",
            "set a",
            "add a",
            "delete a",
            "set a=set",
            "remove a = b",
            "add a = b",
            "delete a = b",
            "delete a b",
            "delete a if_not_exist(b)",
            "add abort b",
            "add a if_not_exist(b)",
            "remove a b",
            "set a b",
            "set :a = b",
            "add :a b",
            "delete :a b",
            "remove :a",
            "set a = b / c",
            "set a = b * c",
            "set a[1] = \"eight\"",
            "set a[1] = 1",
            "SET a = if_not_exist(a, 100)",
            "SET if_not_exist(a, b) = a",
            "set (a = (b + c))",
            "set a = (b.c).d + e",
            "set a = (b.c)[0] + e",
            "set a = b + c + d",
            "set a = (((b)))",
            "SET a = :a,",
            "set a = b remove",
        ] {
            assert!(
                err(src).starts_with("Syntax error; "),
                "{src}: {}",
                err(src)
            );
        }
        assert_eq!(
            err("whatever"),
            "Syntax error; token: \"whatever\", near: \"whatever\""
        );
        assert_eq!(
            err("ADD hits : incr"),
            "Syntax error; token: \":\", near: \"hits : incr\""
        );
        assert_eq!(
            err("set _something = :a"),
            "Syntax error; token: \"_\", near: \"set _something\""
        );
        assert_eq!(
            err("SET a = :a,"),
            "Syntax error; token: \"<EOF>\", near: \",\""
        );
        assert_eq!(err("SET"), "Syntax error; token: \"<EOF>\", near: \"SET\"");
        assert_eq!(
            err("SET a = VALUE 1"),
            "Syntax error; token: \"1\", near: \"VALUE 1\""
        );
        assert_eq!(
            err("set a=set"),
            "Syntax error; token: \"set\", near: \"=set\""
        );
    }

    #[test]
    fn reserved_words_functions_and_sections() {
        assert_eq!(
            err(" set #c = :c set abOrt = true "),
            "Attribute name is a reserved keyword; reserved keyword: abOrt"
        );
        assert_eq!(
            err(" remove Absolute "),
            "Attribute name is a reserved keyword; reserved keyword: Absolute"
        );
        assert_eq!(
            err("set #c = if_not_exist(:c) set c = d"),
            "Invalid function name; function: if_not_exist"
        );
        assert_eq!(
            err("set a = size(b)"),
            "The function is not allowed in an update expression; function: size"
        );
        assert_eq!(
            err("set a = attribute_exists(b)"),
            "The function is not allowed in an update expression; function: attribute_exists"
        );
        for (src, section) in [
            ("set a = #c set c = :d", "SET"),
            ("remove #d set a = b remove e", "REMOVE"),
            ("add #d :e set a = b add e :f", "ADD"),
            ("delete #d :e set a = b delete #e :f", "DELETE"),
        ] {
            assert_eq!(
                err(src),
                format!("The \"{section}\" section can only be used once in an update expression;")
            );
        }
    }

    #[test]
    fn undefined_placeholders() {
        assert_eq!(
            err("SET #c = if_not_exists(:c)"),
            "An expression attribute name used in the document path is not defined; attribute name: #c"
        );
        assert_eq!(
            err("SET #a = if_not_exists(:c)"),
            "An expression attribute value used in expression is not defined; attribute value: :c"
        );
    }

    #[test]
    fn overlapping_and_conflicting_paths() {
        let names = [("#b", "b"), ("#c", "c"), ("#d", "[3]")];
        let clash = |src: &str| {
            parse_with_maps(src, &names, &[])
                .unwrap_err()
                .strip_prefix("Invalid UpdateExpression: ")
                .unwrap()
                .to_owned()
        };
        for (src, one, two) in [
            (
                "set d[1] = a, d.b = a, c[1].a = a, #c = if_not_exists(a)",
                "[c, [1], a]",
                "[c]",
            ),
            ("set c.b.#c = a, c = a, #d = a", "[c, b, c]", "[c]"),
            ("set a = b remove a, #c, #d", "[a]", "[a]"),
            ("set #c[3].#d = a, #c[3] = a", "[c, [3], [3]]", "[c, [3]]"),
            ("remove c, #c.a, #d", "[c]", "[c, a]"),
            ("remove a, #c, a, #d", "[a]", "[a]"),
        ] {
            assert_eq!(
                clash(src),
                format!(
                    "Two document paths overlap with each other; must remove or rewrite one of these paths; path one: {one}, path two: {two}"
                ),
                "{src}"
            );
        }
        for (src, one, two) in [
            (
                "set #c[3].#d = a, #c.#d[3] = if_not_exists(a)",
                "[c, [3], [3]]",
                "[c, [3], [3]]",
            ),
            ("remove a.#c set a[1] = #d", "[a, c]", "[a, [1]]"),
        ] {
            assert_eq!(
                clash(src),
                format!(
                    "Two document paths conflict with each other; must remove or rewrite one of these paths; path one: {one}, path two: {two}"
                ),
                "{src}"
            );
        }
        assert!(parse_with_maps("set a.b = c, a.c = b, a[1] = d remove x", &[], &[]).is_err());
        assert!(
            parse_with_maps(
                "set a.b = c, a.c = b, l[1] = d, l[2] = d remove x",
                &[],
                &[]
            )
            .is_ok()
        );
    }

    #[test]
    fn add_and_delete_take_numbers_and_sets() {
        let num = AttributeValue::N("1".parse().unwrap());
        let map = AttributeValue::M(Default::default());
        for (src, value, operator, kind) in [
            (
                "set b = list_append(:a, a), c = if_not_exists(a) add a.b :a",
                s("a"),
                "ADD",
                "STRING",
            ),
            ("delete a.b :a", s("a"), "DELETE", "STRING"),
            ("add a.b :a", AttributeValue::Null, "ADD", "NULL"),
            (
                "delete a.b :a",
                AttributeValue::Bool(false),
                "DELETE",
                "BOOLEAN",
            ),
            ("add a.b :a", AttributeValue::B(vec![1]), "ADD", "BINARY"),
            ("delete a.b :a", map.clone(), "DELETE", "MAP"),
            ("add a.b :a", AttributeValue::L(vec![]), "ADD", "LIST"),
            ("delete a.b :a", num.clone(), "DELETE", "NUMBER"),
        ] {
            let message = parse_with_maps(src, &[], &[(":a", value), (":b", s("a"))]).unwrap_err();
            assert_eq!(
                message,
                format!(
                    "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: {operator}, operand type: {kind}"
                ),
                "{src}"
            );
        }
        assert!(
            parse_with_maps(
                "add a :n, b :s",
                &[],
                &[(":n", num), (":s", AttributeValue::Ns(vec![]))]
            )
            .is_ok()
        );
    }

    #[test]
    fn function_operands() {
        for src in [
            "set a = if_not_exists(c)",
            "set a = list_append(c)",
            "set a = list_append(b, c, d)",
        ] {
            let name = if src.contains("if_not") {
                "if_not_exists"
            } else {
                "list_append"
            };
            let count = src.matches(',').count() + 1;
            assert_eq!(
                err(src),
                format!(
                    "Incorrect number of operands for operator or function; operator or function: {name}, number of operands: {count}"
                )
            );
        }
        for src in [
            "set a = if_not_exists(:a, c)",
            "set a = if_not_exists(if_not_exists(a, b), c)",
        ] {
            assert_eq!(
                err(src),
                "Operator or function requires a document path; operator or function: if_not_exists"
            );
        }
        let values = [
            (":a", s("a")),
            (":b", AttributeValue::N("1".parse().unwrap())),
            (":c", AttributeValue::B(vec![1])),
            (":d", AttributeValue::Bool(false)),
            (":e", AttributeValue::Null),
            (":f", AttributeValue::Ss(vec!["a".into()])),
            (":i", AttributeValue::M(Default::default())),
            (":j", AttributeValue::L(vec![])),
        ];
        for (src, function, kind) in [
            ("set a = list_append(:a, a)", "list_append", "S"),
            ("set a = list_append(a, :b)", "list_append", "N"),
            ("set a = list_append(:c, a)", "list_append", "B"),
            ("set a = list_append(:f, a)", "list_append", "SS"),
            ("set a = list_append(:i, a)", "list_append", "M"),
            ("set a = a + :a", "+", "S"),
            ("set a = :a + :c", "+", "S"),
            ("set a = :c + a", "+", "B"),
            ("set a = a + :d", "+", "BOOL"),
            ("set a = a + :e", "+", "NULL"),
            ("set a = a - :j", "-", "L"),
            ("set a = a - :i", "-", "M"),
        ] {
            assert_eq!(
                parse_with_maps(src, &[], &values).unwrap_err(),
                format!(
                    "Invalid UpdateExpression: Incorrect operand type for operator or function; operator or function: {function}, operand type: {kind}"
                ),
                "{src}"
            );
        }
    }

    #[test]
    fn limits() {
        let many: Vec<String> = (0..301).map(|i| format!("a{i} = a + b")).collect();
        let src = format!("SET {}", many.join(","));
        assert!(src.len() < 4096);
        assert_eq!(
            err(&src),
            "The expression contains too many operators; operator count: 301"
        );
        // As deep as 4 KB allows: parsed without trouble.
        let nested = format!(
            "SET a = {}b{}",
            "if_not_exists(a, ".repeat(200),
            ")".repeat(200)
        );
        assert!(nested.len() < 4096);
        assert!(parse(&nested).is_ok());
        assert_eq!(
            parse("").unwrap_err(),
            "Invalid UpdateExpression: The expression can not be empty;"
        );
    }

    #[test]
    fn prints_back() {
        let update = parse_with_maps(
            "ADD n :one DELETE s :s REMOVE #st, l[2] SET a = if_not_exists(a, :one) - :one, b = list_append(:l, b)",
            &[("#st", "status")],
            &[
                (":one", AttributeValue::N("1".parse().unwrap())),
                (":s", AttributeValue::Ss(vec!["x".into()])),
                (":l", AttributeValue::L(vec![])),
            ],
        )
        .unwrap();
        let rendered = update.render();
        assert_eq!(
            rendered.expression,
            "SET a = if_not_exists(a, :v0) - :v1, b = list_append(:v2, b) REMOVE #n0, l[2] ADD n :v3 DELETE s :v4"
        );
        assert_eq!(update.to_string(), rendered.expression);
        let mut ph = Placeholders::new(Some(&rendered.names), Some(&rendered.values));
        assert_eq!(parse_update(&rendered.expression, &mut ph), Ok(update));
        assert_eq!(ph.check_unused(), Ok(()));
    }
}
