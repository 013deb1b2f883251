//! GameFleet spec validation: any JSON the API server could hand the operator as a spec is
//! either refused with problems that each name a field, or valid — and then the reconciler's
//! builders turn it into objects without a panic (no overflow, no missing default).
#![no_main]

use gamefleet_operator::crd::{GameFleet, GameFleetSpec};
use gamefleet_operator::render::render_fleet;
use gamefleet_operator::validate::validate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = serde_json::from_slice::<GameFleetSpec>(data) else {
        return;
    };
    match validate(&spec) {
        Err(invalid) => {
            assert!(!invalid.problems.is_empty(), "refused without a reason");
            for p in &invalid.problems {
                assert!(
                    !p.field.is_empty() && !p.message.is_empty(),
                    "vague problem {p:?}"
                );
            }
        }
        Ok(()) => {
            let mut fleet = GameFleet::new("fuzz", spec);
            fleet.metadata.namespace = Some("games".into());
            if let Err(e) = render_fleet(fleet) {
                panic!("a valid spec did not render: {e}");
            }
        }
    }
});
