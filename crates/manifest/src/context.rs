//! State shared by the section decoders.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use crate::{
    diagnostic::{Sink, Span},
    support::{Feature, Support},
};

/// What every section decoder needs: where problems go, where relative paths start, and
/// which features are accepted.
pub(crate) struct Cx<'a> {
    pub(crate) sink: Sink,
    pub(crate) base_dir: &'a Path,
    pub(crate) support: Support,
    /// Every function name the manifest declares, valid or not, so that a reference to a
    /// function with errors of its own is not reported again as missing.
    pub(crate) declared_functions: BTreeSet<String>,
    /// Every table name the manifest declares, valid or not.
    pub(crate) declared_tables: BTreeSet<String>,
    /// Every Lambda authorizer name the manifest declares, valid or not.
    pub(crate) declared_authorizers: BTreeSet<String>,
    /// Whether the manifest has `[auth.jwt]`, valid or not.
    pub(crate) declared_jwt: bool,
    /// Whether the manifest has `[auth.api_key]`, valid or not.
    pub(crate) declared_api_key: bool,
}

impl Cx<'_> {
    /// Reports `feature` as not supported yet unless it is, and says whether it is.
    pub(crate) fn require_feature(
        &mut self,
        feature: Feature,
        span: Span,
        path: &str,
        found: String,
    ) -> bool {
        if self.support.has(feature) {
            return true;
        }
        self.sink.push(
            span,
            path,
            found,
            format!("something this version of Nimbus runs (not supported yet: {feature})"),
        );
        false
    }

    /// Resolves a path written in the manifest against the manifest's directory.
    pub(crate) fn resolve(&self, relative: &str) -> PathBuf {
        self.base_dir.join(relative)
    }
}
