//! Client frame decoding: any text, authenticated or not, gives a frame or a rejection, never a
//! panic; and an accepted frame keeps every documented bound (a bet the engine would have to
//! refuse must not get past the gateway).
#![no_main]

use gameserver::protocol::{
    decode, ClientFrame, FrameKind, MAX_CLIENT_SEED_LEN, MAX_GAME_ID_LEN, MAX_IDEMPOTENCY_KEY_LEN,
    MAX_SELECTION_BYTES,
};
use libfuzzer_sys::fuzz_target;

fn check_game_id(id: &str) {
    let n = id.chars().count();
    assert!(
        n > 0 && n <= MAX_GAME_ID_LEN,
        "gameId of {n} characters accepted"
    );
    assert!(
        !id.chars().any(char::is_control),
        "gameId with a control character accepted"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Frames an engine publishes are typed by their `type` field only.
    let _ = FrameKind::of_frame(text);
    for authenticated in [false, true] {
        let Ok(frame) = decode(text, authenticated) else {
            continue;
        };
        match frame {
            ClientFrame::JoinGame { game_id } | ClientFrame::LeaveGame { game_id } => {
                assert!(authenticated, "room frame accepted before authentication");
                check_game_id(&game_id);
            }
            ClientFrame::PlaceBet(bet) => {
                assert!(authenticated, "bet accepted before authentication");
                check_game_id(&bet.game_id);
                assert!(bet.amount > 0, "bet of {} accepted", bet.amount);
                let key = bet.idempotency_key.chars().count();
                assert!(key > 0 && key <= MAX_IDEMPOTENCY_KEY_LEN);
                assert!(bet.selection.is_object());
                let selection = serde_json::to_vec(&bet.selection).map_or(usize::MAX, |b| b.len());
                assert!(
                    selection <= MAX_SELECTION_BYTES,
                    "selection of {selection} bytes accepted"
                );
                if let Some(seed) = &bet.client_seed {
                    let n = seed.chars().count();
                    assert!(n > 0 && n <= MAX_CLIENT_SEED_LEN);
                    assert!(!seed.chars().any(char::is_control));
                }
            }
            ClientFrame::Resume(resume) => {
                for (game_id, _) in &resume.rooms {
                    check_game_id(game_id);
                }
            }
            ClientFrame::Authenticate { .. } | ClientFrame::Ping => {}
        }
    }
});
