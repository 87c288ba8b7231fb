//! Parses and validates `nimbus.toml`.
//!
//! `nimbus-manifest` owns the manifest's schema: it reads the file, checks every key and
//! cross-reference, and builds the [`nimbus_core::AppSpec`] every other part uses. It
//! reports every problem at once, each with file, line, column, key path, what was found
//! and what was expected ([`Diagnostic`]). It does not run anything.
//!
//! A part of the schema whose capability this build lacks is rejected as "not supported
//! yet" ([`Support`]), never accepted and ignored.
//!
//! ```
//! use nimbus_manifest::{parse, Support};
//! use std::path::Path;
//!
//! let app = parse("name = \"empty\"\n", Path::new("nimbus.toml"), Path::new("."), Support::current()).unwrap();
//! assert_eq!(app.name, "empty");
//!
//! let err = parse("name = 42\n", Path::new("nimbus.toml"), Path::new("."), Support::current()).unwrap_err();
//! assert_eq!(err.to_string(), "nimbus.toml:1:8: name: found 42, expected the app's name");
//! ```

mod app;
mod context;
mod decode;
mod diagnostic;
mod events;
mod functions;
mod routes;
mod support;
mod tables;

use std::path::{Path, PathBuf};

use nimbus_core::AppSpec;

pub use diagnostic::{Diagnostic, Diagnostics};
pub use support::{Feature, Support};

/// The manifest's file name in an app directory.
pub const MANIFEST_FILE: &str = "nimbus.toml";

/// Why an app directory's manifest could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file was read and is wrong.
    #[error("{0}")]
    Invalid(#[from] Diagnostics),
}

/// Reads and validates `DIR/nimbus.toml`.
///
/// # Errors
/// [`LoadError::Read`] when the file cannot be read, [`LoadError::Invalid`] with every
/// problem found otherwise.
pub fn load(dir: &Path, support: Support) -> Result<AppSpec, LoadError> {
    let path = dir.join(MANIFEST_FILE);
    let source = std::fs::read_to_string(&path).map_err(|source| LoadError::Read {
        path: path.clone(),
        source,
    })?;
    Ok(parse(&source, &path, dir, support)?)
}

/// Validates a manifest's text. `file` names it in errors; relative paths in it resolve
/// against `base_dir`.
///
/// # Errors
/// Every problem found, in file order.
pub fn parse(
    source: &str,
    file: &Path,
    base_dir: &Path,
    support: Support,
) -> Result<AppSpec, Diagnostics> {
    let mut cx = context::Cx {
        sink: diagnostic::Sink::default(),
        base_dir,
        support,
        declared_functions: Default::default(),
        declared_tables: Default::default(),
        declared_authorizers: Default::default(),
        declared_jwt: false,
        declared_api_key: false,
    };
    let root = match toml_span::parse(source) {
        Ok(value) => value,
        Err(err) => {
            let (found, expected) = syntax_problem(&err);
            cx.sink
                .push(err.span.start..err.span.end, "", found, expected);
            return Err(cx
                .sink
                .finish(file, source)
                .unwrap_or_else(|| unreachable!("a problem was just pushed")));
        }
    };
    let app = decode::Obj::root(root).and_then(|root| app::decode(&mut cx, root));
    match (app, cx.sink.finish(file, source)) {
        (Some(app), None) => Ok(app),
        (_, Some(diagnostics)) => Err(diagnostics),
        (None, None) => unreachable!("decoding fails only after reporting a problem"),
    }
}

/// Splits a TOML syntax error into what was found and what was expected.
fn syntax_problem(err: &toml_span::Error) -> (String, String) {
    match &err.kind {
        toml_span::ErrorKind::Wanted { expected, found } => {
            ((*found).to_owned(), format!("{expected} (valid TOML)"))
        }
        toml_span::ErrorKind::UnexpectedEof => (
            "the end of the file".to_owned(),
            "the rest of a TOML statement (valid TOML)".to_owned(),
        ),
        _ => {
            // toml-span ends some messages with a period; keep messages uniform.
            let text = err.to_string();
            (
                text.trim_end_matches('.').to_owned(),
                "valid TOML".to_owned(),
            )
        }
    }
}
