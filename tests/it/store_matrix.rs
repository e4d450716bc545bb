//! The store matrix follows the store registry: every store compiled into `locked` (its
//! cargo feature, if any, on) has a fixture in `locked-test-support` and a line in
//! `on_stores!`, and neither names a store this build lacks. Nothing is started: the
//! check reads the three lists.

use locked_test_support::{Store, on_stores};

#[test]
fn every_registered_store_has_a_fixture_and_a_line_in_on_stores() {
    let registered: Vec<&str> = locked::__private::stores()
        .iter()
        .filter(|e| e.is_available())
        .map(|e| e.name)
        .collect();
    let fixtures: Vec<&str> = Store::FIXTURES.iter().map(|(name, _)| *name).collect();
    let matrix: Vec<&str> = on_stores!(@names);

    let mut faults = Vec::new();
    for e in locked::__private::stores()
        .iter()
        .filter(|e| e.is_available())
    {
        let name = e.name;
        let gate = match e.feature {
            Some(feature) => format!(" behind `#[cfg(feature = \"{feature}\")]`"),
            None => String::new(),
        };
        if !fixtures.contains(&name) {
            faults.push(format!(
                "store `{name}` is registered but has no fixture in locked-test-support: add \
                 `Store::{name}()` (and its `Backend` variant) and a line `(\"{name}\", \
                 Store::{name})` in `Store::FIXTURES`{gate}, in locked-test-support/src/store.rs"
            ));
        }
        if !matrix.contains(&name) {
            faults.push(format!(
                "store `{name}` is registered but `on_stores!` does not run on it: add a line \
                 `$crate::on_stores!($($then)* {name});`{gate} to its `@each` arm, in \
                 locked-test-support/src/store.rs"
            ));
        }
    }
    for name in &fixtures {
        if !registered.contains(name) {
            faults.push(format!(
                "`Store::FIXTURES` has a fixture for `{name}`, which is not a store of this build \
                 (registered: {registered:?}): remove it, rename it after the registry, or gate \
                 it behind the store's feature"
            ));
        }
    }
    for name in &matrix {
        if !registered.contains(name) {
            faults.push(format!(
                "`on_stores!` runs on `{name}`, which is not a store of this build (registered: \
                 {registered:?}): remove its line, rename it after the registry, or gate it \
                 behind the store's feature"
            ));
        }
    }
    assert!(faults.is_empty(), "{}", faults.join("\n"));
    // The same stores, in the registry's order.
    assert_eq!(
        fixtures, registered,
        "Store::FIXTURES, in the registry's order"
    );
    assert_eq!(
        matrix, registered,
        "on_stores!'s list, in the registry's order"
    );
}
