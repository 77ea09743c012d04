//! The HTTP/1.1 connection loop, with the limits a public service needs: a deadline for each
//! request head (which also ends idle keep-alive connections), a cap on the head's size (431),
//! a cap on open connections (503 beyond it, then close), a stall timeout on request bodies,
//! and a graceful drain on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tower_http::timeout::TimeoutBody;
use vela_api::wire::ClientAddr;

/// Connection-level limits (`[server]`).
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_connections: usize,
    pub body_idle_timeout: Duration,
}

/// Connections beyond `max_connections` that are still answered 503 (the rest are closed at
/// once).
const OVERFLOW_ANSWERED: usize = 64;
/// How long an over-the-cap connection may take to send its request head.
const OVERFLOW_HEAD_TIMEOUT: Duration = Duration::from_secs(5);

fn builder(head_timeout: Duration, max_header_bytes: usize) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        .max_header_size(max_header_bytes)
        .max_buf_size(max_header_bytes.max(400 * 1024));
    b
}

fn overloaded() -> Response<Body> {
    let mut resp = Response::new(Body::from(
        "503 Service Unavailable\n\nThe server has too many open connections; try again \
         later.\n\n   ",
    ));
    *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// Serves `router` on `listener` until `shutdown` completes, then waits for the requests in
/// flight (idle connections close at once).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let overflow = Arc::new(Semaphore::new(OVERFLOW_ANSWERED));
    let normal = builder(limits.header_read_timeout, limits.max_header_bytes);
    let mut refusing = builder(OVERFLOW_HEAD_TIMEOUT, limits.max_header_bytes);
    refusing.keep_alive(false);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let idle = limits.body_idle_timeout;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: wait, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(stream);
        match open.clone().try_acquire_owned() {
            Ok(permit) => {
                let router = router.clone();
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let mut req = req.map(|b| Body::new(TimeoutBody::new(idle, b)));
                    req.extensions_mut().insert(ClientAddr(peer));
                    router.clone().oneshot(req)
                });
                let conn = graceful.watch(normal.serve_connection(io, svc));
                tokio::spawn(async move {
                    let _ = conn.await;
                    drop(permit);
                });
            }
            Err(_) => {
                let Ok(permit) = overflow.clone().try_acquire_owned() else {
                    continue; // dropped: closed at once
                };
                let svc = hyper::service::service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, Infallible>(overloaded())
                });
                let conn = refusing.serve_connection(io, svc);
                tokio::spawn(async move {
                    let _ = conn.await;
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
