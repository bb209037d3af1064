//! `Location::parse` and the redaction of secrets: any string parses or is refused, and
//! redacting is idempotent (what is hidden stays hidden, nothing else changes twice).
#![no_main]

use burn_pretrain::source::{Location, redact};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    let once = redact(s);
    assert_eq!(redact(&once), once, "redaction of {s:?} is not stable");
    if let Ok(location) = Location::parse(s) {
        let shown = location.to_string();
        assert_eq!(redact(&shown), shown, "{s:?} shows {shown:?}, which still holds secrets");
    }
});
