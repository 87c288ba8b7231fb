//! Integration tests of nimbus-manifest: the corpus of valid and invalid manifests.

// In test code a panic is how a failure is reported.
#![allow(clippy::unwrap_used)]

mod corpus;
