//! Errors in a manifest, each with its place, key path, what was found and what was
//! expected.

use std::{fmt, path::PathBuf};

/// A byte range in the manifest source.
pub(crate) type Span = std::ops::Range<usize>;

/// One problem in a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The manifest file.
    pub file: PathBuf,
    /// 1-based line of the offending key or value.
    pub line: usize,
    /// 1-based column (in characters) of the offending key or value.
    pub column: usize,
    /// The key path, such as `functions.register.memory_mb` or `routes[0].route`; empty for
    /// the document itself.
    pub path: String,
    /// What the manifest has there.
    pub found: String,
    /// What would be accepted.
    pub expected: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        write!(f, "found {}, expected {}", self.found, self.expected)
    }
}

/// Everything wrong with a manifest, in the order it appears in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics {
    /// The problems; never empty.
    pub errors: Vec<Diagnostic>,
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// A problem found while decoding, before it is placed in the file.
#[derive(Debug, Clone)]
pub(crate) struct Raw {
    pub(crate) span: Span,
    pub(crate) path: String,
    pub(crate) found: String,
    pub(crate) expected: String,
}

/// Collects problems while a manifest is decoded and checked.
#[derive(Debug, Default)]
pub(crate) struct Sink {
    raw: Vec<Raw>,
}

impl Sink {
    pub(crate) fn push(
        &mut self,
        span: Span,
        path: impl Into<String>,
        found: impl Into<String>,
        expected: impl Into<String>,
    ) {
        self.raw.push(Raw {
            span,
            path: path.into(),
            found: found.into(),
            expected: expected.into(),
        });
    }

    /// How many problems have been reported so far.
    pub(crate) fn count(&self) -> usize {
        self.raw.len()
    }

    /// Places every problem in `source` and sorts them by position.
    pub(crate) fn finish(self, file: &std::path::Path, source: &str) -> Option<Diagnostics> {
        if self.raw.is_empty() {
            return None;
        }
        let mut raw = self.raw;
        raw.sort_by(|a, b| (a.span.start, &a.path).cmp(&(b.span.start, &b.path)));
        raw.dedup_by(|a, b| a.span == b.span && a.path == b.path && a.expected == b.expected);
        let errors = raw
            .into_iter()
            .map(|r| {
                let (line, column) = line_column(source, r.span.start);
                Diagnostic {
                    file: file.to_path_buf(),
                    line,
                    column,
                    path: r.path,
                    found: r.found,
                    expected: r.expected,
                }
            })
            .collect();
        Some(Diagnostics { errors })
    }
}

/// 1-based line and character column of byte `offset` in `source`.
pub(crate) fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_are_one_based() {
        let src = "a = 1\nbé = 2\n";
        assert_eq!(line_column(src, 0), (1, 1));
        assert_eq!(line_column(src, 6), (2, 1));
        // `=` after a two-byte character is the fourth character of line 2.
        assert_eq!(line_column(src, 10), (2, 4));
        assert_eq!(line_column(src, 999), (3, 1));
    }
}
