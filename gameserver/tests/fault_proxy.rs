//! The fault-injecting proxy of the test support code, against a real redis-server: it
//! forwards, stalls (holding bytes, losing none), cuts, and drops the reply to one request
//! after the server ran it.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{FaultProxy, RedisServer};

/// One RESP request over a fresh or given connection; the first reply line.
fn send(conn: &mut TcpStream, args: &[&str]) -> std::io::Result<String> {
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    conn.write_all(req.as_bytes())?;
    let mut line = String::new();
    let n = BufReader::new(conn.try_clone()?).read_line(&mut line)?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed",
        ));
    }
    Ok(line.trim_end().to_owned())
}

fn connect(port: u16) -> TcpStream {
    let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c
}

#[test]
fn forwards_both_ways() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.port);
    let mut c = connect(proxy.port());
    assert_eq!(send(&mut c, &["SET", "a", "1"]).unwrap(), "+OK");
    assert_eq!(send(&mut c, &["INCR", "a"]).unwrap(), ":2");
    assert_eq!(proxy.connections(), 1);
}

#[test]
fn a_stall_holds_a_request_and_delivers_it_once_on_resume() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.port);
    let mut c = connect(proxy.port());
    assert_eq!(send(&mut c, &["PING"]).unwrap(), "+PONG");
    proxy.stall();
    let started = Instant::now();
    let waiter = std::thread::spawn(move || send(&mut c, &["INCR", "n"]));
    std::thread::sleep(Duration::from_millis(600));
    let mut direct = connect(server.port);
    assert_eq!(
        send(&mut direct, &["GET", "n"]).unwrap(),
        "$-1",
        "forwarded while stalled"
    );
    proxy.resume();
    assert_eq!(waiter.join().unwrap().unwrap(), ":1");
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert_eq!(send(&mut direct, &["GET", "n"]).unwrap(), "$1", "ran once");
}

#[test]
fn a_cut_closes_connections_and_refuses_new_ones_until_healed() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.port);
    let mut c = connect(proxy.port());
    assert_eq!(send(&mut c, &["PING"]).unwrap(), "+PONG");
    proxy.cut();
    assert!(
        send(&mut c, &["PING"]).is_err(),
        "open connection survived the cut"
    );
    let mut refused = connect(proxy.port());
    assert!(
        send(&mut refused, &["PING"]).is_err(),
        "new connection while cut"
    );
    proxy.heal();
    let mut again = connect(proxy.port());
    assert_eq!(send(&mut again, &["PING"]).unwrap(), "+PONG");
}

#[test]
fn a_dropped_reply_leaves_the_request_done_and_the_client_without_an_answer() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.port);
    let mut c = connect(proxy.port());
    assert_eq!(send(&mut c, &["PING"]).unwrap(), "+PONG");
    proxy.drop_reply_after(b"faultkey");
    assert!(
        send(&mut c, &["INCR", "faultkey"]).is_err(),
        "the reply got through"
    );
    assert_eq!(proxy.fired(), 1);
    let mut direct = connect(server.port);
    assert_eq!(send(&mut direct, &["GET", "faultkey"]).unwrap(), "$1");
    // One-shot: the next connection works as before.
    let mut next = connect(proxy.port());
    assert_eq!(send(&mut next, &["INCR", "faultkey"]).unwrap(), ":2");
}

#[test]
fn an_aof_redis_keeps_what_it_answered_across_a_sigkill() {
    let mut server = RedisServer::start_aof("always");
    let mut c = connect(server.port);
    assert_eq!(send(&mut c, &["SET", "kept", "yes"]).unwrap(), "+OK");
    server.kill();
    server.restart();
    let mut c = connect(server.port);
    assert_eq!(send(&mut c, &["EXISTS", "kept"]).unwrap(), ":1");
    let mut plain = RedisServer::start();
    let mut c = connect(plain.port);
    assert_eq!(send(&mut c, &["SET", "kept", "yes"]).unwrap(), "+OK");
    plain.restart();
    let mut c = connect(plain.port);
    assert_eq!(send(&mut c, &["EXISTS", "kept"]).unwrap(), ":0");
}
