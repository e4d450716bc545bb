//! Compile-time behaviour of `#[locked]`: `ui/fail` pins every error message, `ui/pass`
//! compiles (and runs) every supported signature.
//!
//! The goldens come from rustc 1.95, the machine's toolchain; on another, this is skipped.
//! Regenerate them with `TRYBUILD=overwrite cargo test --test ui` and review the diff.

#[rustversion::attr(not(stable(1.95)), ignore = "goldens are pinned to rustc 1.95")]
#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
