//! `#[derive(Pretrainable)]` as users meet it through `burn_pretrain`: cases that must compile
//! (`ui/pass`) and the diagnostics of those that must not (`ui/fail`, with their `.stderr`).
//!
//! The cases live here rather than in the `tests` crate because trybuild builds its own copy of
//! the crate's dependencies with the features the crate under test was built with: here that is
//! burn and `burn-pretrain` without a backend or a source (1.8 GB, 129 s on 2 cores), not the
//! object stores, remote device and model zoo that workspace-wide feature unification gives the
//! integration tests (5.2 GB, 379 s). Re-bless with `TRYBUILD=overwrite`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ui/pass/*.rs"));
    t.compile_fail(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ui/fail/*.rs"));
}
