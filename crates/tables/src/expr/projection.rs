//! Projection expressions: `path, path, ...`, and the part of an item they keep.

use std::collections::BTreeMap;
use std::fmt;

use super::error::{ExprError, Stage};
use super::parser::parse_with;
use super::path::{Path, PathElement, Relation, first_clash};
use super::placeholders::Placeholders;
use super::render::{Rendered, Renderer};
use crate::value::{AttributeValue, Item};

/// A parsed ProjectionExpression: the paths to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Projection {
    /// The paths, as written.
    pub paths: Vec<Path>,
}

/// Parses a ProjectionExpression.
///
/// # Errors
/// DynamoDB's ValidationException message for the first problem: syntax, reserved
/// words, undefined names, limits, and paths that overlap or conflict.
pub fn parse_projection(src: &str, ph: &mut Placeholders<'_>) -> Result<Projection, ExprError> {
    parse_with(src, "ProjectionExpression", &[], false, ph, |p| {
        let mut paths = vec![p.path()?];
        while p.eat_punct(",") {
            paths.push(p.path()?);
        }
        let refs: Vec<&Path> = paths.iter().collect();
        if let Some((relation, message)) = first_clash(&refs) {
            let stage = match relation {
                Relation::Conflict => Stage::Conflict,
                _ => Stage::Overlap,
            };
            p.report(stage, message);
        }
        Ok(Projection { paths })
    })
}

/// The parts of a value a projection keeps: all of it, or some of its elements.
#[derive(Debug, Default)]
struct Selection {
    whole: bool,
    parts: BTreeMap<PathElement, Selection>,
}

impl Selection {
    fn add(&mut self, steps: &[PathElement]) {
        match steps.split_first() {
            None => self.whole = true,
            Some((first, rest)) => self.parts.entry(first.clone()).or_default().add(rest),
        }
    }

    /// What of `value` is kept; nothing when none of the selected parts exist.
    fn project(&self, value: &AttributeValue) -> Option<AttributeValue> {
        if self.whole {
            return Some(value.clone());
        }
        match value {
            AttributeValue::M(map) => {
                let kept: BTreeMap<String, AttributeValue> = self
                    .parts
                    .iter()
                    .filter_map(|(step, selection)| match step {
                        PathElement::Attribute(name) => {
                            let v = selection.project(map.get(name)?)?;
                            Some((name.clone(), v))
                        }
                        PathElement::Index(_) => None,
                    })
                    .collect();
                (!kept.is_empty()).then_some(AttributeValue::M(kept))
            }
            // Selected list elements keep their order and close up.
            AttributeValue::L(list) => {
                let kept: Vec<AttributeValue> = self
                    .parts
                    .iter()
                    .filter_map(|(step, selection)| match step {
                        PathElement::Index(i) => selection.project(list.get(*i)?),
                        PathElement::Attribute(_) => None,
                    })
                    .collect();
                (!kept.is_empty()).then_some(AttributeValue::L(kept))
            }
            _ => None,
        }
    }
}

impl Projection {
    /// The projection of `item`: only the attributes, map entries and list elements the
    /// paths name, nested as in the item.
    pub fn apply(&self, item: &Item) -> Item {
        let mut top = Selection::default();
        for path in &self.paths {
            top.add(&path.0);
        }
        top.parts
            .iter()
            .filter_map(|(step, selection)| match step {
                PathElement::Attribute(name) => {
                    let kept = selection.project(item.get(name)?)?;
                    Some((name.clone(), kept))
                }
                PathElement::Index(_) => None,
            })
            .collect()
    }

    /// The top-level attributes the projection reads, each once.
    pub fn top_level_attributes(&self) -> impl Iterator<Item = &str> {
        let mut names: Vec<&str> = Vec::new();
        for name in self.paths.iter().filter_map(Path::top_level) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names.into_iter()
    }

    /// The projection as text with its placeholders; see [`Rendered`].
    pub fn render(&self) -> Rendered {
        let mut r = Renderer::default();
        for (i, path) in self.paths.iter().enumerate() {
            if i > 0 {
                r.text(", ");
            }
            r.path(path);
        }
        r.finish()
    }
}

/// Prints the projection with placeholders `#n0`, ... for names that need them (see
/// [`Projection::render`] for the map).
impl fmt::Display for Projection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render().expression)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{item_from_json, item_to_json};
    use serde_json::{Value as Json, json};
    use std::collections::HashMap;

    fn parse(src: &str) -> Result<Projection, String> {
        let names = HashMap::from([
            ("#o".to_owned(), "alt".to_owned()),
            ("#d".to_owned(), "[3]".to_owned()),
        ]);
        let mut ph = Placeholders::new(Some(&names), None);
        parse_projection(src, &mut ph).map_err(|e| e.message)
    }

    fn project(src: &str, item: Json) -> Json {
        let item = item_from_json(&item).unwrap();
        item_to_json(&parse(src).unwrap().apply(&item))
    }

    #[test]
    fn keeps_named_parts() {
        let item = json!({
            "pk": {"S": "p"},
            "a": {"M": {"b": {"N": "1"}, "c": {"N": "2"}}},
            "letters": {"L": [{"S": "x"}, {"S": "y"}, {"S": "z"}]},
            "alt": {"S": "o"},
            "deep": {"L": [{"M": {"k": {"S": "v"}, "j": {"S": "w"}}}, {"N": "0"}]},
        });
        assert_eq!(
            project("a.c, letters[2], letters[0], #o", item.clone()),
            json!({"a": {"M": {"c": {"N": "2"}}}, "letters": {"L": [{"S": "x"}, {"S": "z"}]}, "alt": {"S": "o"}})
        );
        assert_eq!(
            project("deep[0].j", item.clone()),
            json!({"deep": {"L": [{"M": {"j": {"S": "w"}}}]}})
        );
        assert_eq!(
            project("pk, a", item.clone()),
            json!({"pk": {"S": "p"}, "a": item["a"].clone()})
        );
        // Parts that are not there are left out, and so are containers left empty.
        assert_eq!(
            project("nope, a.x, letters[7], alt.x, pk[0]", item.clone()),
            json!({})
        );
        assert_eq!(
            project("a.x, a.b", item),
            json!({"a": {"M": {"b": {"N": "1"}}}})
        );
    }

    #[test]
    fn rejects_what_dynamodb_rejects() {
        assert_eq!(
            parse("").unwrap_err(),
            "Invalid ProjectionExpression: The expression can not be empty;"
        );
        assert_eq!(
            parse("a,").unwrap_err(),
            "Invalid ProjectionExpression: Syntax error; token: \"<EOF>\", near: \",\""
        );
        assert_eq!(
            parse("id age").unwrap_err(),
            "Invalid ProjectionExpression: Syntax error; token: \"age\", near: \"id age\""
        );
        assert!(
            parse("a[]")
                .unwrap_err()
                .contains("Syntax error; token: \"]\"")
        );
        assert!(
            parse(":v")
                .unwrap_err()
                .contains("Syntax error; token: \":v\"")
        );
        assert!(
            parse("[0]")
                .unwrap_err()
                .contains("Syntax error; token: \"[\"")
        );
        assert_eq!(
            parse("#nope").unwrap_err(),
            "Invalid ProjectionExpression: An expression attribute name used in the document path is not defined; attribute name: #nope"
        );
        assert_eq!(
            parse("a, name").unwrap_err(),
            "Invalid ProjectionExpression: Attribute name is a reserved keyword; reserved keyword: name"
        );
        assert_eq!(
            parse("a, a.b").unwrap_err(),
            "Invalid ProjectionExpression: Two document paths overlap with each other; must remove or rewrite one of these paths; path one: [a], path two: [a, b]"
        );
        assert_eq!(
            parse("a.#d, a[3]").unwrap_err(),
            "Invalid ProjectionExpression: Two document paths conflict with each other; must remove or rewrite one of these paths; path one: [a, [3]], path two: [a, [3]]"
        );
    }

    #[test]
    fn lists_attributes_and_prints_back() {
        let projection = parse("a.b, #o, a.c[1], #d").unwrap();
        let top: Vec<&str> = projection.top_level_attributes().collect();
        assert_eq!(top, ["a", "alt", "[3]"]);
        let rendered = projection.render();
        assert_eq!(rendered.expression, "a.b, alt, a.c[1], #n0");
        assert_eq!(projection.to_string(), rendered.expression);
        let mut ph = Placeholders::new(Some(&rendered.names), None);
        assert_eq!(
            parse_projection(&rendered.expression, &mut ph),
            Ok(projection)
        );
    }
}
