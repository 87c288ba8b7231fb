//! Prints parsed expressions back to text that the parsers accept.
//!
//! Values have no literal syntax in DynamoDB's expressions, so printing allocates a
//! placeholder for each value (`:v0`, `:v1`, ... in order of appearance) and for each
//! attribute name that cannot be written bare (`#n0`, `#n1`, ...; a name that is a valid
//! word and not reserved is written bare). [`Rendered`] carries the text with the two
//! placeholder maps; parsing the text with those maps gives back the expression.

use std::collections::HashMap;

use super::path::{Path, PathElement};
use super::reserved::is_reserved;
use crate::value::AttributeValue;

/// An expression printed back to text, with the ExpressionAttributeNames and
/// ExpressionAttributeValues the text uses.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rendered {
    /// The expression text.
    pub expression: String,
    /// What each `#name` in the text stands for.
    pub names: HashMap<String, String>,
    /// What each `:value` in the text stands for.
    pub values: HashMap<String, AttributeValue>,
}

/// Builds a [`Rendered`].
#[derive(Debug, Default)]
pub(crate) struct Renderer {
    rendered: Rendered,
    /// Attribute name to the placeholder already given to it.
    aliases: HashMap<String, String>,
}

/// Whether `name` can be written bare: a word as the lexer reads one that is neither
/// reserved nor a keyword of any expression grammar.
fn is_bare(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !is_reserved(name)
        && !name.eq_ignore_ascii_case("remove")
}

impl Renderer {
    /// Appends text as it is.
    pub(crate) fn text(&mut self, text: &str) {
        self.rendered.expression.push_str(text);
    }

    /// Appends an attribute name, bare or as a placeholder.
    pub(crate) fn name(&mut self, name: &str) {
        if is_bare(name) {
            self.text(name);
            return;
        }
        let alias = match self.aliases.get(name) {
            Some(alias) => alias.clone(),
            None => {
                let alias = format!("#n{}", self.aliases.len());
                self.aliases.insert(name.to_owned(), alias.clone());
                self.rendered.names.insert(alias.clone(), name.to_owned());
                alias
            }
        };
        self.text(&alias);
    }

    /// Appends a document path.
    pub(crate) fn path(&mut self, path: &Path) {
        for (i, step) in path.0.iter().enumerate() {
            match step {
                PathElement::Attribute(name) => {
                    if i > 0 {
                        self.text(".");
                    }
                    self.name(name);
                }
                PathElement::Index(index) => self.text(&format!("[{index}]")),
            }
        }
    }

    /// Appends a placeholder for `value`.
    pub(crate) fn value(&mut self, value: &AttributeValue) {
        let placeholder = format!(":v{}", self.rendered.values.len());
        self.text(&placeholder);
        self.rendered.values.insert(placeholder, value.clone());
    }

    /// The text and its placeholders.
    pub(crate) fn finish(self) -> Rendered {
        self.rendered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_only_names_that_need_it() {
        let mut r = Renderer::default();
        let path = Path(vec![
            PathElement::Attribute("plain_1".into()),
            PathElement::Attribute("status".into()),
            PathElement::Index(4),
            PathElement::Attribute("with space".into()),
            PathElement::Attribute("status".into()),
        ]);
        r.path(&path);
        r.text(" ");
        r.name("REMOVE");
        r.text(" ");
        r.value(&AttributeValue::Null);
        r.value(&AttributeValue::Bool(true));
        let rendered = r.finish();
        assert_eq!(rendered.expression, "plain_1.#n0[4].#n1.#n0 #n2 :v0:v1");
        assert_eq!(rendered.names.len(), 3);
        assert_eq!(rendered.names["#n0"], "status");
        assert_eq!(rendered.names["#n1"], "with space");
        assert_eq!(rendered.values[":v1"], AttributeValue::Bool(true));
    }

    #[test]
    fn bare_names_follow_the_lexer() {
        assert!(is_bare("a1_b"));
        for name in ["", "1a", "_a", "a-b", "é", "Size", "remove"] {
            assert!(!is_bare(name), "{name}");
        }
    }
}
