//! The checked-in CRD YAML must match the Rust types. Regenerate with
//! `cargo run -p gamefleet-operator -- crd > crds/gamefleet.dev_gamefleets.yaml` (and copy it to
//! the chart's `crds/`).

use std::path::Path;

fn repo_file(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn checked_in_crd_matches_the_types() {
    let generated = gamefleet_operator::crd_yaml().unwrap();
    for rel in [
        "crds/gamefleet.dev_gamefleets.yaml",
        "charts/gamefleet-operator/crds/gamefleet.dev_gamefleets.yaml",
    ] {
        assert!(
            repo_file(rel) == generated,
            "{rel} is stale: regenerate it with `gamefleet-operator crd > {rel}`"
        );
    }
}
