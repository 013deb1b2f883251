//! GameFleet game server: a WebSocket gateway (connections, rooms, fan-out) and a dice engine
//! (rounds, bets, ledger) joined only by a [`bus`].

pub mod bus;
