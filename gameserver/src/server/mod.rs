//! Listening sockets and HTTP serving shared by the player and admin ports: an accept loop
//! with connection caps ([`admission`]) and a header-read deadline, so a client that opens
//! sockets and never finishes a request cannot hold them.

pub mod admission;

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, Response, StatusCode};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

pub use admission::{Admission, ConnLimits, Permit, Refusal};

/// Pending-connection backlog: connection storms (reconnects after a deploy) should queue,
/// not be refused. The kernel caps it at `net.core.somaxconn`.
const BACKLOG: u32 = 4096;
/// A client must send a request's whole header within this (slow or half-sent requests are
/// dropped; the timer also runs while a connection waits for its first byte).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Refusals answered at once; beyond this, refused sockets are closed without a word.
const MAX_REFUSING: usize = 256;
/// How long in-flight HTTP requests may finish after shutdown (upgraded WebSockets are closed
/// by their owner).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// The admin port's caps: probes, scrapes and drains only, so a flood of them is refused
/// before it takes the file descriptors the player port needs.
pub const ADMIN_LIMITS: ConnLimits = ConnLimits {
    max_total: 512,
    max_per_ip: 0,
};

/// How a port serves: its caps, and a hook told of each refusal (a metric).
#[derive(Clone, Default)]
pub struct ServeOptions {
    pub limits: ConnLimits,
    pub on_refused: Option<Arc<dyn Fn(Refusal) + Send + Sync>>,
}

/// Serves `router` until `shutdown`. Every accepted socket gets TCP_NODELAY (small frames
/// must not wait for Nagle) and the header-read deadline; one over a cap is answered 503
/// (port full) or 429 (too many from its address) and closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    opts: ServeOptions,
) -> io::Result<()> {
    let admission = Admission::new(opts.limits);
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let http = Arc::new(http);
    let tracker = tokio_util::task::TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "setting TCP_NODELAY failed");
        }
        let http = Arc::clone(&http);
        let stop = shutdown.clone();
        match admission.try_admit(peer.ip()) {
            Ok(permit) => {
                let router = router.clone();
                let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    router.clone().oneshot(req.map(Body::new))
                });
                tracker.spawn(drive(
                    http,
                    Held {
                        tcp,
                        _permit: permit,
                    },
                    svc,
                    stop,
                ));
            }
            Err(why) => {
                if let Some(hook) = &opts.on_refused {
                    hook(why);
                }
                tracing::debug!(%peer, reason = why.as_str(), "connection refused");
                let Ok(slot) = Arc::clone(&refusing).try_acquire_owned() else {
                    continue;
                };
                let svc = hyper::service::service_fn(move |_req: Request<Incoming>| {
                    std::future::ready(Ok::<_, Infallible>(refusal(why)))
                });
                tracker.spawn(async move {
                    drive(http, tcp, svc, stop).await;
                    drop(slot);
                });
            }
        }
    }
    tracker.close();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await;
    Ok(())
}

/// Serves in the background; a failure is logged with the port's `name`.
pub fn spawn(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    opts: ServeOptions,
) {
    tokio::spawn(async move {
        if let Err(e) = serve(listener, router, shutdown, opts).await {
            tracing::error!(error = %e, server = name, "server stopped");
        }
    });
}

/// [`spawn`] for an admin port, with [`ADMIN_LIMITS`].
pub fn spawn_admin(listener: TcpListener, router: Router, shutdown: CancellationToken) {
    let opts = ServeOptions {
        limits: ADMIN_LIMITS,
        on_refused: None,
    };
    spawn("admin", listener, router, shutdown, opts);
}

/// One HTTP/1 connection (upgrades allowed) until it ends, or gracefully on `stop`.
async fn drive<S, IO>(
    http: Arc<hyper::server::conn::http1::Builder>,
    io: IO,
    svc: S,
    stop: CancellationToken,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
    S: Send + 'static,
{
    let conn = http.serve_connection(TokioIo::new(io), svc).with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// The answer to a connection over a cap: a clear status, and the connection closed.
fn refusal(why: Refusal) -> Response<Body> {
    let (status, text) = match why {
        Refusal::Full => (
            StatusCode::SERVICE_UNAVAILABLE,
            "this server is at its connection limit: retry, or connect to another\n",
        ),
        Refusal::PerIp => (
            StatusCode::TOO_MANY_REQUESTS,
            "too many connections from your address\n",
        ),
    };
    let mut resp = Response::new(Body::from(text));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    h.insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    h.insert(
        header::HeaderName::from_static("x-refused"),
        header::HeaderValue::from_static(why.as_str()),
    );
    resp
}

/// A socket with its admission permit: the place is held until the socket closes, even after
/// an upgrade hands the socket to a WebSocket.
struct Held {
    tcp: TcpStream,
    _permit: Permit,
}

impl AsyncRead for Held {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Held {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}
