//! Accepting connections: how many at once, how long a request's head may take to arrive, how
//! long an answer may wait for the client to read it, `TCP_NODELAY`, and the graceful end.
//!
//! Written here rather than taken from `axum::serve` because that sets no timer on hyper's
//! connections, so hyper's header-read timeout never fires: a client sending a request head a
//! byte a minute, or opening connections and sending nothing, held a task and a buffer each for
//! as long as it liked, and there was no bound on how many. hyper and hyper-util do the HTTP; this
//! is only the accept loop around them.

use std::convert::Infallible;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Connections served at once; the next one waits in the listen backlog until one closes. With
/// [`MAX_HEAD_BYTES`] it bounds the memory of request heads at 64 MiB.
pub const MAX_CONNECTIONS: usize = 1024;
/// The largest request head (request line and headers) hyper buffers, bytes; a larger one is
/// refused (431). Also the size of each read of a body.
pub const MAX_HEAD_BYTES: usize = 64 << 10;

/// Serves `app` on the connections `listener` accepts until `stop` completes; then accepts no
/// more, lets requests in flight finish for up to `grace` (idle connections close at once), and
/// returns. A connection whose next request head has not fully arrived `head_timeout` after it
/// was opened or after its last answer is closed: this also ends idle keep-alive connections. A
/// connection whose client has read nothing of an answer for `write_timeout` is closed too (a
/// client that pipelines requests and never reads would otherwise hold its slot for good: hyper's
/// head timer does not run while an answer waits to be written).
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    head_timeout: Duration,
    write_timeout: Duration,
    grace: Duration,
    stop: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(head_timeout).max_buf_size(MAX_HEAD_BYTES);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut stop = pin!(stop);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut stop => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors or memory: wait a little rather than spin (what hyper's
                    // and axum's own loops do); a connection reset before accept is just skipped.
                    if !is_connection_error(&e) {
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_millis(100)) => {}
                            () = &mut stop => break,
                        }
                    }
                    continue;
                }
            },
            () = &mut stop => break,
        };
        // Answers are one write each; without this a small answer could wait on the client's
        // delayed acknowledgement of the last one.
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = service_fn(move |request: hyper::Request<Incoming>| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(app.oneshot(request.map(Body::new)).await.unwrap_or_else(|e| match e {})) }
        });
        let mut stream = tokio_io_timeout::TimeoutStream::new(stream);
        stream.set_write_timeout(Some(write_timeout));
        let connection = graceful.watch(http.serve_connection(TokioIo::new(Box::pin(stream)), service));
        tokio::spawn(async move {
            // A connection's errors (reset, timed out, malformed head) end that connection only;
            // hyper has already answered what it could.
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(grace, graceful.shutdown()).await;
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(e.kind(), ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset)
}
