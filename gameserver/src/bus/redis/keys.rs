//! Names of the bus's Redis keys and channels shared by the bus and its parts (each part keeps
//! the names only it uses).

use crate::bus::Target;

/// A room's bet stream.
pub(super) fn bets_key(prefix: &str, game_id: &str) -> String {
    format!("{prefix}:bets:{game_id}")
}

/// The pub/sub channel of a delivery target.
pub(super) fn channel(prefix: &str, target: &Target) -> String {
    match target {
        Target::Room(g) => format!("{prefix}:room:{g}"),
        Target::User(u) => format!("{prefix}:user:{u}"),
        Target::All => format!("{prefix}:all"),
    }
}
