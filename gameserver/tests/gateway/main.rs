//! Gateway behaviour over real sockets: a real server on 127.0.0.1:0, tokio-tungstenite
//! clients, and the test playing the engine through the in-memory bus.

mod admin;
mod common;
mod drain;
mod errors;
mod flow;
mod hardening;
mod limits;
mod presence;
