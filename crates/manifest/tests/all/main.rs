//! Integration tests of nimbus-manifest: the corpus of valid and invalid manifests.

mod corpus;
