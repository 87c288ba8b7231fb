//! A path-aware reader over the parsed TOML tree: every accessor records a precise
//! problem in the [`Sink`] and returns `None` instead of stopping, so one pass reports
//! every error.

use std::{ops::RangeInclusive, time::Duration};

use toml_span::value::{Table, Value, ValueInner};

use crate::diagnostic::{Sink, Span};

/// One value of the document, with its key path.
pub(crate) struct Field<'de> {
    pub(crate) path: String,
    pub(crate) span: Span,
    value: ValueInner<'de>,
}

/// A table of the document being read key by key; [`Obj::finish`] reports the keys
/// nobody asked for.
pub(crate) struct Obj<'de> {
    pub(crate) path: String,
    /// Where problems about the table as a whole (a missing key) point.
    pub(crate) span: Span,
    table: Table<'de>,
    known: Vec<&'static str>,
}

/// Describes a value for "found ..." in a message.
pub(crate) fn describe(value: &ValueInner<'_>) -> String {
    match value {
        ValueInner::String(s) => format!("{:?}", s.as_ref()),
        ValueInner::Integer(i) => i.to_string(),
        ValueInner::Float(f) => f.to_string(),
        ValueInner::Boolean(b) => b.to_string(),
        ValueInner::Array(_) => "an array".to_owned(),
        ValueInner::Table(_) => "a table".to_owned(),
    }
}

/// Writes a duration in the largest whole unit: `0s`, `90s`, `15m`, `24h`.
fn short_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    match s {
        0 => "0s".to_owned(),
        s if s.is_multiple_of(3600) => format!("{}h", s / 3600),
        s if s.is_multiple_of(60) => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Joins a key onto a path, quoting keys that are not bare TOML keys.
pub(crate) fn join(path: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

impl<'de> Field<'de> {
    pub(crate) fn new(path: String, mut value: Value<'de>) -> Self {
        let span = value.span.start..value.span.end;
        Field {
            path,
            span,
            value: value.take(),
        }
    }

    fn wrong(self, sink: &mut Sink, expected: &str) {
        sink.push(self.span, self.path, describe(&self.value), expected);
    }

    /// Whether the value is a string.
    pub(crate) fn is_string(&self) -> bool {
        matches!(self.value, ValueInner::String(_))
    }

    /// A description of the value, for messages.
    pub(crate) fn found(&self) -> String {
        describe(&self.value)
    }

    pub(crate) fn string(self, sink: &mut Sink, expected: &str) -> Option<Str> {
        match self.value {
            ValueInner::String(s) => Some(Str {
                value: s.into_owned(),
                span: self.span,
                path: self.path,
            }),
            _ => {
                self.wrong(sink, expected);
                None
            }
        }
    }

    pub(crate) fn bool(self, sink: &mut Sink) -> Option<bool> {
        match self.value {
            ValueInner::Boolean(b) => Some(b),
            _ => {
                self.wrong(sink, "true or false");
                None
            }
        }
    }

    /// An integer within `range`.
    pub(crate) fn int(self, sink: &mut Sink, range: RangeInclusive<u32>) -> Option<u32> {
        let expected = format!("an integer from {} to {}", range.start(), range.end());
        match self.value {
            ValueInner::Integer(i) => match u32::try_from(i) {
                Ok(n) if range.contains(&n) => Some(n),
                _ => {
                    sink.push(self.span, self.path, i.to_string(), expected);
                    None
                }
            },
            _ => {
                self.wrong(sink, &expected);
                None
            }
        }
    }

    /// A duration written as a string (`"10s"`, `"1m 30s"`, `"500ms"`) or an integer
    /// number of seconds, within `range`.
    pub(crate) fn duration(
        self,
        sink: &mut Sink,
        range: RangeInclusive<Duration>,
    ) -> Option<Duration> {
        let expected = format!(
            "a duration from {} to {} such as \"30s\" or \"1m 30s\"",
            short_duration(*range.start()),
            short_duration(*range.end())
        );
        let parsed = match &self.value {
            ValueInner::String(s) => humantime::parse_duration(s).ok(),
            ValueInner::Integer(i) => u64::try_from(*i).ok().map(Duration::from_secs),
            _ => None,
        };
        match parsed {
            Some(d) if range.contains(&d) => Some(d),
            _ => {
                self.wrong(sink, &expected);
                None
            }
        }
    }

    pub(crate) fn table(self, sink: &mut Sink, expected: &str) -> Option<Obj<'de>> {
        match self.value {
            ValueInner::Table(table) => Some(Obj {
                path: self.path,
                span: self.span,
                table,
                known: Vec::new(),
            }),
            _ => {
                self.wrong(sink, expected);
                None
            }
        }
    }

    /// The elements of an array, each with its path (`key[i]`).
    pub(crate) fn array(self, sink: &mut Sink, expected: &str) -> Option<Vec<Field<'de>>> {
        match self.value {
            ValueInner::Array(items) => Some(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| Field::new(format!("{}[{i}]", self.path), v))
                    .collect(),
            ),
            _ => {
                self.wrong(sink, expected);
                None
            }
        }
    }

    /// An array of strings; bad elements are reported and skipped.
    pub(crate) fn strings(self, sink: &mut Sink, expected: &str) -> Option<Vec<Str>> {
        let items = self.array(sink, expected)?;
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items {
            match item.string(sink, "a string") {
                Some(s) => out.push(s),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }
}

fn to_json(value: ValueInner<'_>) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        ValueInner::String(s) => J::String(s.into_owned()),
        ValueInner::Integer(i) => J::from(i),
        ValueInner::Float(f) => serde_json::Number::from_f64(f).map_or(J::Null, J::Number),
        ValueInner::Boolean(b) => J::Bool(b),
        ValueInner::Array(items) => {
            J::Array(items.into_iter().map(|mut v| to_json(v.take())).collect())
        }
        ValueInner::Table(table) => J::Object(
            table
                .into_iter()
                .map(|(k, mut v)| (k.name.into_owned(), to_json(v.take())))
                .collect(),
        ),
    }
}

/// A string from the document with its place.
#[derive(Debug, Clone)]
pub(crate) struct Str {
    pub(crate) value: String,
    pub(crate) span: Span,
    pub(crate) path: String,
}

impl Str {
    /// Reports this string as not what was `expected`.
    pub(crate) fn reject(&self, sink: &mut Sink, expected: impl Into<String>) {
        sink.push(
            self.span.clone(),
            self.path.clone(),
            format!("{:?}", self.value),
            expected,
        );
    }
}

impl<'de> Obj<'de> {
    pub(crate) fn root(mut value: Value<'de>) -> Option<Self> {
        let span = value.span.start..value.span.start;
        match value.take() {
            ValueInner::Table(table) => Some(Obj {
                path: String::new(),
                span,
                table,
                known: Vec::new(),
            }),
            _ => None,
        }
    }

    /// Takes `key` if present.
    pub(crate) fn take(&mut self, key: &'static str) -> Option<Field<'de>> {
        self.known.push(key);
        let path = join(&self.path, key);
        self.table.remove(key).map(|v| Field::new(path, v))
    }

    /// Takes `key`, reporting it missing when absent.
    pub(crate) fn require(
        &mut self,
        sink: &mut Sink,
        key: &'static str,
        expected: &str,
    ) -> Option<Field<'de>> {
        let field = self.take(key);
        if field.is_none() {
            sink.push(
                self.span.clone(),
                self.path.clone(),
                format!("no `{key}`"),
                format!("`{key}`: {expected}"),
            );
        }
        field
    }

    /// Whether any key is left unread.
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    /// Takes every remaining entry (for maps keyed by user names).
    pub(crate) fn entries(self) -> Vec<(Str, Field<'de>)> {
        let path = self.path;
        self.table
            .into_iter()
            .map(|(key, value)| {
                let entry_path = join(&path, &key.name);
                let name = Str {
                    value: key.name.into_owned(),
                    span: key.span.start..key.span.end,
                    path: entry_path.clone(),
                };
                (name, Field::new(entry_path, value))
            })
            .collect()
    }

    /// The remaining table as JSON (for event patterns).
    pub(crate) fn into_json(self) -> serde_json::Value {
        to_json(ValueInner::Table(self.table))
    }

    /// Reports every key that was not taken.
    pub(crate) fn finish(self, sink: &mut Sink) {
        let expected = match self.known.as_slice() {
            [] => "no keys here".to_owned(),
            known => format!("one of {}", known.join(", ")),
        };
        for key in self.table.into_keys() {
            sink.push(
                key.span.start..key.span.end,
                join(&self.path, &key.name),
                format!("unknown key `{}`", key.name),
                expected.clone(),
            );
        }
    }
}
