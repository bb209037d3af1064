//! `Location::parse` and the redaction of secrets: any string parses or is refused,
//! redacting is idempotent, and a remote location shows nothing left to redact.
#![no_main]

use burn_pretrain::source::{Location, redact};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    let once = redact(s);
    assert_eq!(redact(&once), once, "redaction of {s:?} is not stable");
    // A local path is shown as given (it is a path, whatever it spells).
    if let Ok(location) = Location::parse(s)
        && !matches!(location, Location::Local(_))
    {
        let shown = location.to_string();
        assert_eq!(redact(&shown), shown, "{s:?} shows {shown:?}, which still holds secrets");
    }
});
