//! GameFleet game server: a WebSocket gateway (connections, rooms, fan-out) and a dice engine
//! (rounds, bets, ledger) joined only by a [`bus`].

pub mod admin;
pub mod auth;
pub mod bench;
pub mod bus;
pub mod cli;
pub mod clock;
pub mod distributed;
pub mod engine;
pub mod game;
pub mod gateway;
pub mod ledger;
pub mod local;
pub mod metrics;
pub mod play_page;
pub mod protocol;
pub mod redisx;
pub mod server;
pub mod sync;
