//! The manifest parser on arbitrary text: no input may panic, and every error must name
//! a place in the file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use nimbus_manifest::{Support, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(errors) = parse(text, Path::new("nimbus.toml"), Path::new("/nonexistent"), Support::everything()) {
        for e in errors.errors {
            assert!(e.line >= 1 && e.column >= 1);
            assert!(e.line <= text.lines().count() + 1);
        }
    }
});
