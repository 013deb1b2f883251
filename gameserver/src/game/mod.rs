//! Game rules and provably-fair rolls. Everything here is pure (no I/O, no clocks) so it can be
//! table-tested and re-run by anyone who wants to check a round.

pub mod fairness;
pub mod rules;
pub mod verify;

pub use fairness::{ClientSeedMix, Roll};
pub use rules::{Direction, RuleError, Selection};
