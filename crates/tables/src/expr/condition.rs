//! Conditions (ConditionExpression, FilterExpression, and the comparisons a
//! KeyConditionExpression is made of): their syntax tree and printer. The parser is in
//! [`super::condition_parser`], evaluation in [`super::eval`].

use std::fmt;

use super::path::Path;
use super::render::{Rendered, Renderer};
use crate::value::AttributeValue;

/// The type names `attribute_type` accepts.
pub const ATTRIBUTE_TYPES: [&str; 10] = ["S", "SS", "N", "NS", "B", "BS", "BOOL", "NULL", "L", "M"];

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Comparator {
    /// `=`
    Eq,
    /// `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Comparator {
    /// Every comparator.
    pub const ALL: [Comparator; 6] = [
        Comparator::Eq,
        Comparator::Ne,
        Comparator::Lt,
        Comparator::Le,
        Comparator::Gt,
        Comparator::Ge,
    ];

    /// How the comparator is written.
    pub fn symbol(self) -> &'static str {
        match self {
            Comparator::Eq => "=",
            Comparator::Ne => "<>",
            Comparator::Lt => "<",
            Comparator::Le => "<=",
            Comparator::Gt => ">",
            Comparator::Ge => ">=",
        }
    }

    /// Whether the comparator orders its operands (only strings, numbers and binaries
    /// have an order).
    pub fn is_ordering(self) -> bool {
        !matches!(self, Comparator::Eq | Comparator::Ne)
    }
}

/// A value a condition compares: an item's attribute, a request's value, or a size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    /// The value at a document path of the item (absent if the item has none).
    Path(Path),
    /// A value from ExpressionAttributeValues.
    Value(AttributeValue),
    /// `size(operand)`: the length of a string or binary, or the number of elements of a
    /// set, list or map.
    Size(Box<Operand>),
}

/// A condition on an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// `a = b`, `a < b`, ...
    Compare(Operand, Comparator, Operand),
    /// `a BETWEEN low AND high` (inclusive).
    Between(Operand, Operand, Operand),
    /// `a IN (b, c, ...)`.
    In(Operand, Vec<Operand>),
    /// `attribute_exists(path)`.
    AttributeExists(Path),
    /// `attribute_not_exists(path)`.
    AttributeNotExists(Path),
    /// `attribute_type(operand, :type)`, the type one of [`ATTRIBUTE_TYPES`].
    AttributeType(Operand, String),
    /// `begins_with(a, prefix)`.
    BeginsWith(Operand, Operand),
    /// `contains(a, b)`: substring, set member or list element.
    Contains(Operand, Operand),
    /// `NOT c`.
    Not(Box<Condition>),
    /// `a AND b`.
    And(Box<Condition>, Box<Condition>),
    /// `a OR b`.
    Or(Box<Condition>, Box<Condition>),
}

impl Operand {
    fn collect_paths<'c>(&'c self, out: &mut Vec<&'c Path>) {
        match self {
            Operand::Path(path) => out.push(path),
            Operand::Value(_) => {}
            Operand::Size(inner) => inner.collect_paths(out),
        }
    }

    fn render(&self, r: &mut Renderer) {
        match self {
            Operand::Path(path) => r.path(path),
            Operand::Value(value) => r.value(value),
            Operand::Size(inner) => {
                r.text("size(");
                inner.render(r);
                r.text(")");
            }
        }
    }
}

impl Condition {
    /// Every document path the condition reads, in order of appearance.
    pub fn paths(&self) -> Vec<&Path> {
        let mut out = Vec::new();
        self.collect_paths(&mut out);
        out
    }

    fn collect_paths<'c>(&'c self, out: &mut Vec<&'c Path>) {
        match self {
            Condition::Compare(a, _, b)
            | Condition::BeginsWith(a, b)
            | Condition::Contains(a, b) => {
                a.collect_paths(out);
                b.collect_paths(out);
            }
            Condition::Between(a, b, c) => {
                for operand in [a, b, c] {
                    operand.collect_paths(out);
                }
            }
            Condition::In(a, list) => {
                a.collect_paths(out);
                for operand in list {
                    operand.collect_paths(out);
                }
            }
            Condition::AttributeExists(path) | Condition::AttributeNotExists(path) => {
                out.push(path);
            }
            Condition::AttributeType(a, _) => a.collect_paths(out),
            Condition::Not(c) => c.collect_paths(out),
            Condition::And(a, b) | Condition::Or(a, b) => {
                a.collect_paths(out);
                b.collect_paths(out);
            }
        }
    }

    /// The top-level attributes the condition reads, each once, in order of appearance
    /// (a FilterExpression may not read key attributes).
    pub fn top_level_attributes(&self) -> impl Iterator<Item = &str> {
        let mut names: Vec<&str> = Vec::new();
        for name in self.paths().into_iter().filter_map(Path::top_level) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names.into_iter()
    }

    /// The condition as text with its placeholders; see [`Rendered`].
    pub fn render(&self) -> Rendered {
        let mut r = Renderer::default();
        self.render_into(&mut r, 0);
        r.finish()
    }

    /// Binding strength, for printing only the parentheses the text needs.
    fn precedence(&self) -> u8 {
        match self {
            Condition::Or(..) => 1,
            Condition::And(..) => 2,
            Condition::Not(_) => 3,
            _ => 4,
        }
    }

    fn render_into(&self, r: &mut Renderer, min_precedence: u8) {
        let wrap = self.precedence() < min_precedence;
        if wrap {
            r.text("(");
        }
        let function = |r: &mut Renderer, name: &str, args: &[&Operand]| {
            r.text(name);
            r.text("(");
            for (i, arg) in args.iter().enumerate() {
                if i > 0 {
                    r.text(", ");
                }
                arg.render(r);
            }
            r.text(")");
        };
        match self {
            // Operators associate to the left, so a right operand of the same strength
            // needs parentheses to keep its shape.
            Condition::Or(a, b) => {
                a.render_into(r, 1);
                r.text(" OR ");
                b.render_into(r, 2);
            }
            Condition::And(a, b) => {
                a.render_into(r, 2);
                r.text(" AND ");
                b.render_into(r, 3);
            }
            Condition::Not(c) => {
                r.text("NOT ");
                c.render_into(r, 3);
            }
            Condition::Compare(a, cmp, b) => {
                a.render(r);
                r.text(&format!(" {} ", cmp.symbol()));
                b.render(r);
            }
            Condition::Between(a, low, high) => {
                a.render(r);
                r.text(" BETWEEN ");
                low.render(r);
                r.text(" AND ");
                high.render(r);
            }
            Condition::In(a, list) => {
                a.render(r);
                r.text(" IN (");
                for (i, operand) in list.iter().enumerate() {
                    if i > 0 {
                        r.text(", ");
                    }
                    operand.render(r);
                }
                r.text(")");
            }
            Condition::AttributeExists(path) => {
                function(r, "attribute_exists", &[&Operand::Path(path.clone())]);
            }
            Condition::AttributeNotExists(path) => {
                function(r, "attribute_not_exists", &[&Operand::Path(path.clone())]);
            }
            Condition::AttributeType(a, kind) => {
                let kind = Operand::Value(AttributeValue::S(kind.clone()));
                function(r, "attribute_type", &[a, &kind]);
            }
            Condition::BeginsWith(a, b) => function(r, "begins_with", &[a, b]),
            Condition::Contains(a, b) => function(r, "contains", &[a, b]),
        }
        if wrap {
            r.text(")");
        }
    }
}

/// Prints the condition with placeholders `:v0`, `#n0`, ... (see [`Condition::render`]
/// for the maps that go with them).
impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render().expression)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::{Placeholders, parse_condition};
    use crate::value::Number;
    use std::collections::HashMap;

    fn parse(src: &str) -> Condition {
        let names = HashMap::from([("#s".to_owned(), "status".to_owned())]);
        let values = HashMap::from([
            (
                ":n".to_owned(),
                AttributeValue::N("1".parse::<Number>().unwrap()),
            ),
            (
                ":n2".to_owned(),
                AttributeValue::N("2".parse::<Number>().unwrap()),
            ),
            (":s".to_owned(), AttributeValue::S("a".into())),
        ]);
        let mut ph = Placeholders::new(Some(&names), Some(&values));
        parse_condition(src, "ConditionExpression", &mut ph).unwrap()
    }

    fn n(s: &str) -> AttributeValue {
        AttributeValue::N(s.parse::<Number>().unwrap())
    }

    #[test]
    fn lists_paths_and_top_level_attributes() {
        let c = parse("a.b = :n AND (size(c[1]) > :n OR attribute_exists(a)) AND d IN (e, :n)");
        let paths: Vec<String> = c.paths().iter().map(ToString::to_string).collect();
        assert_eq!(paths, ["a.b", "c[1]", "a", "d", "e"]);
        let top: Vec<&str> = c.top_level_attributes().collect();
        assert_eq!(top, ["a", "c", "d", "e"]);
    }

    #[test]
    fn prints_with_placeholders() {
        let c =
            parse("#s = :s AND (b < :n OR NOT contains(c, :n2)) AND size(d) BETWEEN :n AND :n2");
        let rendered = c.render();
        assert_eq!(
            rendered.expression,
            "#n0 = :v0 AND (b < :v1 OR NOT contains(c, :v2)) AND size(d) BETWEEN :v3 AND :v4"
        );
        assert_eq!(c.to_string(), rendered.expression);
        assert_eq!(rendered.names["#n0"], "status");
        assert_eq!(rendered.values[":v2"], n("2"));
        let mut ph = Placeholders::new(Some(&rendered.names), Some(&rendered.values));
        let back = parse_condition(&rendered.expression, "ConditionExpression", &mut ph).unwrap();
        assert_eq!(back, c);
        assert_eq!(ph.check_unused(), Ok(()));
    }
}
