//! Document paths (`a.b[1].c`): what they name in an item, and how two of them relate.

use std::fmt;

use crate::value::{AttributeValue, Item};

/// One step of a document path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A map key (at the top, an attribute name).
    Attribute(String),
    /// A list index.
    Index(usize),
}

/// A document path: an attribute name, then map keys and list indexes. Names are the
/// real names, placeholders already replaced.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Path(pub Vec<PathElement>);

impl Path {
    /// The path of a top-level attribute.
    pub fn attribute(name: impl Into<String>) -> Path {
        Path(vec![PathElement::Attribute(name.into())])
    }

    /// The steps of the path.
    pub fn elements(&self) -> &[PathElement] {
        &self.0
    }

    /// The top-level attribute the path starts at, if it starts at one.
    pub fn top_level(&self) -> Option<&str> {
        match self.0.first() {
            Some(PathElement::Attribute(name)) => Some(name),
            _ => None,
        }
    }

    /// The value the path names in `item`, if the item has one there.
    pub fn get<'i>(&self, item: &'i Item) -> Option<&'i AttributeValue> {
        let (first, rest) = self.0.split_first()?;
        let PathElement::Attribute(name) = first else {
            return None;
        };
        rest.iter()
            .try_fold(item.get(name)?, |value, step| step.get(value))
    }

    /// The path as DynamoDB's error messages show it: `[a, b, [1]]`.
    pub(crate) fn describe(&self) -> String {
        let steps: Vec<String> = self
            .0
            .iter()
            .map(|step| match step {
                PathElement::Attribute(name) => name.clone(),
                PathElement::Index(i) => format!("[{i}]"),
            })
            .collect();
        format!("[{}]", steps.join(", "))
    }
}

impl PathElement {
    /// The element this step names inside `value`.
    pub(crate) fn get<'v>(&self, value: &'v AttributeValue) -> Option<&'v AttributeValue> {
        match (self, value) {
            (PathElement::Attribute(name), AttributeValue::M(map)) => map.get(name),
            (PathElement::Index(i), AttributeValue::L(list)) => list.get(*i),
            _ => None,
        }
    }
}

/// Prints the path in document-path notation with the names as they are (`a.b[1]`). A
/// name that is a reserved word or holds odd characters prints as it is too, so this is
/// for people; [`crate::expr::Rendered`] gives text an expression parser accepts.
impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.0.iter().enumerate() {
            match step {
                PathElement::Attribute(name) if i == 0 => f.write_str(name)?,
                PathElement::Attribute(name) => write!(f, ".{name}")?,
                PathElement::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// How two paths relate, as DynamoDB checks paths that one expression updates or
/// projects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Relation {
    /// They name different parts of the item.
    Disjoint,
    /// One is the other or lies inside it.
    Overlap,
    /// At the same step one uses a map key and the other a list index.
    Conflict,
}

/// How `a` and `b` relate.
pub(crate) fn relation(a: &Path, b: &Path) -> Relation {
    for (x, y) in a.0.iter().zip(&b.0) {
        match (x, y) {
            (PathElement::Attribute(_), PathElement::Index(_))
            | (PathElement::Index(_), PathElement::Attribute(_)) => return Relation::Conflict,
            _ if x != y => return Relation::Disjoint,
            _ => {}
        }
    }
    Relation::Overlap
}

/// The first overlap, else the first conflict, between paths given in expression order,
/// as DynamoDB's message: each path is compared with those before it.
pub(crate) fn first_clash(paths: &[&Path]) -> Option<(Relation, String)> {
    let mut conflict = None;
    for (j, later) in paths.iter().enumerate() {
        for earlier in &paths[..j] {
            let relation = relation(earlier, later);
            let message = || {
                format!(
                    "path one: {}, path two: {}",
                    earlier.describe(),
                    later.describe()
                )
            };
            match relation {
                Relation::Overlap => {
                    return Some((
                        relation,
                        format!(
                            "Two document paths overlap with each other; must remove or rewrite one of these paths; {}",
                            message()
                        ),
                    ));
                }
                Relation::Conflict if conflict.is_none() => {
                    conflict = Some((
                        relation,
                        format!(
                            "Two document paths conflict with each other; must remove or rewrite one of these paths; {}",
                            message()
                        ),
                    ));
                }
                _ => {}
            }
        }
    }
    conflict
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn p(steps: &[&str]) -> Path {
        Path(
            steps
                .iter()
                .map(|s| match s.parse::<usize>() {
                    Ok(i) => PathElement::Index(i),
                    Err(_) => PathElement::Attribute((*s).to_owned()),
                })
                .collect(),
        )
    }

    #[test]
    fn gets_nested_values() {
        let inner = AttributeValue::M(BTreeMap::from([(
            "c".to_owned(),
            AttributeValue::L(vec![AttributeValue::Bool(true), AttributeValue::Null]),
        )]));
        let item = Item::from([("a".to_owned(), inner)]);
        assert_eq!(p(&["a", "c", "1"]).get(&item), Some(&AttributeValue::Null));
        assert_eq!(p(&["a", "c", "2"]).get(&item), None);
        assert_eq!(p(&["a", "0"]).get(&item), None);
        assert_eq!(p(&["a", "c", "0", "x"]).get(&item), None);
        assert_eq!(p(&["b"]).get(&item), None);
        assert_eq!(Path(vec![PathElement::Index(0)]).get(&item), None);
        assert_eq!(Path(vec![]).get(&item), None);
    }

    #[test]
    fn describes_and_displays() {
        let path = p(&["a", "b", "3", "c"]);
        assert_eq!(path.describe(), "[a, b, [3], c]");
        assert_eq!(path.to_string(), "a.b[3].c");
        assert_eq!(path.top_level(), Some("a"));
        assert_eq!(
            Path::attribute("x").elements(),
            &[PathElement::Attribute("x".into())]
        );
    }

    #[test]
    fn relates_paths() {
        assert_eq!(relation(&p(&["a"]), &p(&["a", "b"])), Relation::Overlap);
        assert_eq!(relation(&p(&["a", "b"]), &p(&["a"])), Relation::Overlap);
        assert_eq!(relation(&p(&["a"]), &p(&["a"])), Relation::Overlap);
        assert_eq!(
            relation(&p(&["a", "b"]), &p(&["a", "c"])),
            Relation::Disjoint
        );
        assert_eq!(
            relation(&p(&["a", "1"]), &p(&["a", "2"])),
            Relation::Disjoint
        );
        assert_eq!(
            relation(&p(&["a", "b"]), &p(&["a", "1"])),
            Relation::Conflict
        );
        assert_eq!(relation(&p(&["a"]), &p(&["b", "1"])), Relation::Disjoint);
    }

    #[test]
    fn overlap_is_reported_before_an_earlier_conflict() {
        let paths = [
            p(&["d", "1"]),
            p(&["d", "b"]),
            p(&["c", "1", "a"]),
            p(&["c"]),
        ];
        let refs: Vec<&Path> = paths.iter().collect();
        let (relation, message) = first_clash(&refs).unwrap();
        assert_eq!(relation, Relation::Overlap);
        assert_eq!(
            message,
            "Two document paths overlap with each other; must remove or rewrite one of these paths; path one: [c, [1], a], path two: [c]"
        );
        let (relation, message) = first_clash(&refs[..2]).unwrap();
        assert_eq!(relation, Relation::Conflict);
        assert!(
            message.ends_with("path one: [d, [1]], path two: [d, b]"),
            "{message}"
        );
        assert_eq!(first_clash(&refs[1..3]), None);
    }
}
