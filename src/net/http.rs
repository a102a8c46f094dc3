//! The HTTP listeners beside SIP (the admin API, the operations endpoints): each with its own
//! connection cap, header-size limit and idle timeout, so that a flood on one of them holds
//! a bounded number of descriptors and never starves the kiosks' listeners.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// The limits of one HTTP listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// The longest request head (request line and headers), in bytes; a longer one gets 431.
    pub max_header_bytes: usize,
    /// Time a connection may take to send a request's head (from connecting, or from the
    /// previous reply); then it is closed.
    pub idle_timeout: Duration,
    /// The largest request body, in bytes; a larger one gets 413. The admin and console
    /// listeners take it from `[register]`'s file limits (`RegisterLimits::request_body_bytes`).
    pub max_body_bytes: usize,
}

/// A listener the HTTP server accepts from.
pub enum HttpListener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
    /// HTTPS: each connection's handshake with the server's TLS as it is then (a reload
    /// reads the files again), or plain HTTP while it has none.
    Tls(tokio::net::TcpListener, crate::net::Handle, Side),
}

/// Whose TLS an HTTPS listener takes from the configuration.
#[derive(Clone, Copy, Debug)]
pub enum Side {
    /// `[console] tls`.
    Console,
    /// `[patron_pages] tls`.
    PatronPages,
}

/// A connection accepted, before its TLS handshake if it needs one (made on the connection's
/// own task, so that a slow client never holds up the accept loop).
enum Accepted {
    Ready(Box<dyn Io>),
    Handshake(tokio::net::TcpStream, tokio_rustls::TlsAcceptor),
    /// From a load balancer: a PROXY header names the client first (then TLS, if any).
    Proxied(tokio::net::TcpStream, Option<tokio_rustls::TlsAcceptor>),
}

/// How long a client may take over the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// The address a request came from, in its extensions (none on the Unix socket).
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub Option<std::net::IpAddr>);

impl HttpListener {
    async fn accept(&self) -> std::io::Result<(Accepted, Peer)> {
        Ok(match self {
            HttpListener::Tcp(l) => {
                let (io, addr) = l.accept().await?;
                (Accepted::Ready(Box::new(io)), Peer(Some(addr.ip())))
            }
            HttpListener::Unix(l) => (Accepted::Ready(Box::new(l.accept().await?.0)), Peer(None)),
            HttpListener::Tls(l, server, side) => {
                let (io, addr) = l.accept().await?;
                let tls = match side {
                    Side::Console => server.console_tls(),
                    Side::PatronPages => server.patron_tls(),
                };
                let accepted = match tls {
                    _ if server.behind_proxy(*side, addr.ip()) => Accepted::Proxied(io, tls),
                    Some(tls) => Accepted::Handshake(io, tls),
                    None => Accepted::Ready(Box::new(io)),
                };
                (accepted, Peer(Some(addr.ip())))
            }
        })
    }
}

/// A request whose announced body is larger than the listener reads is answered 413 before
/// any of it is read (with `Expect: 100-continue`, before the client sends it); one that
/// announces nothing is cut off at the limit as it arrives.
async fn announced_length(
    most: usize,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let announced = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > most as u64) {
        let why = format!("the request body is larger than this listener takes ({most} bytes)");
        return (axum::http::StatusCode::PAYLOAD_TOO_LARGE, axum::Json(serde_json::json!({ "error": why })))
            .into_response();
    }
    next.run(req).await
}

/// Serves `app` on `listener` within `limits` until `shutdown`; then lets requests in flight
/// finish for up to `grace`.
pub async fn serve(
    listener: HttpListener,
    app: axum::Router,
    limits: HttpLimits,
    name: &'static str,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let most = limits.max_body_bytes;
    let app = app
        .layer(axum::extract::DefaultBodyLimit::max(most))
        .layer(axum::middleware::from_fn(move |req, next| announced_length(most, req, next)));
    let places = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut turned_away: u64 = 0;
    let tracker = tokio_util::task::TaskTracker::new();
    loop {
        let (io, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, say: wait a moment rather than spin.
                    warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(place) = places.clone().try_acquire_owned() else {
            // Closed at once: a flood holds no more descriptors than the cap.
            turned_away += 1;
            if turned_away.is_power_of_two() {
                warn!(
                    listener = name,
                    limit = limits.max_connections,
                    turned_away,
                    "connection limit reached; closing new connections"
                );
            }
            continue;
        };
        let (app, stop) = (app.clone(), shutdown.clone());
        tracker.spawn(async move {
            let handshake = |tcp, tls: tokio_rustls::TlsAcceptor| async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                    Ok(Ok(stream)) => Some(Box::new(stream) as Box<dyn Io>),
                    // A failed or slow handshake: nothing was said, nothing to answer.
                    _ => None,
                }
            };
            let (io, peer): (Box<dyn Io>, Peer) = match io {
                Accepted::Ready(io) => (io, peer),
                Accepted::Handshake(tcp, tls) => match handshake(tcp, tls).await {
                    Some(io) => (io, peer),
                    None => return,
                },
                Accepted::Proxied(mut tcp, tls) => {
                    let header = tokio::time::timeout(HANDSHAKE_TIMEOUT, super::proxy::read_header(&mut tcp));
                    let named = match header.await {
                        Ok(Ok(Some(client))) => Peer(Some(client.ip())),
                        Ok(Ok(None)) => peer,
                        Ok(Err(why)) => {
                            warn!(listener = name, %why, "closing a connection from a load balancer without a usable PROXY header");
                            return;
                        }
                        Err(_) => return,
                    };
                    match tls {
                        Some(tls) => match handshake(tcp, tls).await {
                            Some(io) => (io, named),
                            None => return,
                        },
                        None => (Box::new(tcp), named),
                    }
                }
            };
            let app = app.layer(axum::Extension(peer));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.idle_timeout)
                .max_buf_size(limits.max_header_bytes.max(8192))
                .max_header_size(limits.max_header_bytes)
                .serve_connection(TokioIo::new(io), TowerToHyperService::new(app));
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(grace, conn).await;
                }
            }
            drop(place);
        });
    }
    tracker.close();
    let _ = tokio::time::timeout(grace, tracker.wait()).await;
}
