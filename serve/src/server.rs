//! The HTTP server: axum routes on a tokio runtime in front of one core thread that owns the
//! [`Service`]. Handlers send requests to the core and await its answer. The core takes requests
//! in batches — everything that arrives within the batch window after the first — applies them in
//! arrival order, runs one scheduling round, makes the answers, and hands them with the batch's
//! changes to the committer thread. The committer writes the changes durably, in order, all the
//! batches handed over while it synced the last write in one transaction (group commit: one fsync
//! for many batches), and only then sends their answers. So an answer is never given for a change
//! that a crash could lose, and reads see only durable state; the core places the next batch while
//! the disk syncs this one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gpuplace::Workload;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

use crate::api::{ApiError, ErrorResponse, EventsResponse, FleetEvent, JobState, JobsResponse};
use crate::error::ServeError;
use crate::service::{Service, parse_jobs};

/// The largest request body, bytes (a submission of [`crate::service::MAX_SUBMISSION_JOBS`]
/// pretty-printed jobs fits); a larger one is refused with 413 as soon as it passes the limit.
pub const MAX_BODY_BYTES: usize = 64 << 20;
/// Request bodies of the largest size held at once; more wait for a turn, so that bodies in memory
/// (read, parsed, or on their way to the core) stay under this many times [`MAX_BODY_BYTES`].
/// Turns are counted in [`BODY_UNIT`]s of the body's declared size, so that many small requests
/// go at once; a turn is given back when the core has applied the request.
pub const BODIES_AT_ONCE: usize = 8;
/// The unit of the submissions' memory budget, bytes: a body takes its size in units, at least one
/// (a body of unknown size takes [`MAX_BODY_BYTES`]).
pub const BODY_UNIT: usize = 64 << 10;
/// Bodies up to this size are parsed on the HTTP worker itself; larger ones on a blocking thread.
const PARSE_INLINE_BYTES: usize = 16 << 10;
/// The most requests one batch takes, so that one batch's answers wait for a bounded amount of
/// work.
pub const MAX_BATCH_REQUESTS: usize = 4096;
/// Requests queued for the core; a handler waits for room beyond it.
pub const QUEUE_REQUESTS: usize = 4 * MAX_BATCH_REQUESTS;
/// The largest body of fleet events, bytes.
pub const MAX_EVENTS_BYTES: usize = 16 << 20;
/// Trays not ready that `GET /v1/fleet` lists (it counts them all).
pub const MAX_NODES_LISTED: usize = 10_000;
/// The default number of jobs a listing returns.
pub const DEFAULT_LIST: usize = 1000;
/// How often an idle core looks whether the placement date moved on (waiting jobs whose day came
/// are then tried again).
pub const TICK: Duration = Duration::from_secs(60);
/// After a stop is asked (SIGTERM, SIGINT, [`Server::stop`]), how long requests in flight get to
/// finish before their connections are dropped. The core still commits what it answered.
pub const GRACE: Duration = Duration::from_secs(10);
/// The default [`ServerConfig::head_timeout`].
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// The default [`ServerConfig::body_timeout`]: the largest body ([`MAX_BODY_BYTES`]) then needs
/// at least 2.2 MB/s, which any link between a scheduler's clients and the scheduler has; a
/// slower client could otherwise hold a share of the bodies' budget for as long as it liked.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// The default [`ServerConfig::write_timeout`].
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// How the server listens and batches.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The address to listen on (`127.0.0.1:7070`; port 0 picks a free one).
    pub listen: String,
    /// How long the core waits, after a batch's first request, for more to batch with it. Zero
    /// (the default) batches what arrived while the core applied and placed the previous batch:
    /// measured on 2 cores, a wait only added latency (BENCHMARKS.md, "The service").
    pub batch_window: Duration,
    /// When set, every route but `/healthz` asks for `Authorization: Bearer <token>`. Required to
    /// listen on an address other than loopback.
    pub token: Option<String>,
    /// Whether SIGTERM and SIGINT stop the server (the command sets it; a program embedding the
    /// server may keep its own handlers and call [`Server::stop`]).
    pub stop_on_signals: bool,
    /// The Kubernetes API server the extender's bind creates each pod's Binding on (for example
    /// `http://127.0.0.1:8001`, a `kubectl proxy` beside the server), with the bearer token to
    /// send, if any. None: bind holds the pod's GPUs in gpuplace and answers with an error saying
    /// no API server is set, so that kube-scheduler does not take the pod as bound.
    pub kube_api: Option<(String, Option<String>)>,
    /// With `kube_api`, how often the server lists the API server's pods and finishes the jobs of
    /// pods bound through the extender that ended (deleted, replaced, `Succeeded` or `Failed`);
    /// None: never (something else must finish them).
    pub kube_sync: Option<Duration>,
    /// Told each warning the server has for its operator, one line each (a pod listing that
    /// failed); None: warnings are only counted in `/metrics`.
    pub warn: Option<Warn>,
    /// How long a request's head (request line and headers) may take to arrive, counted from when
    /// the connection opened or its last answer went out; then the connection is closed. So an
    /// idle keep-alive connection is also closed after it. Default [`HEAD_TIMEOUT`].
    pub head_timeout: Duration,
    /// How long a request's body may take to arrive once its turn in the bodies' memory budget
    /// came; a body still arriving then is refused (408) and its turn given back. Default
    /// [`BODY_TIMEOUT`].
    pub body_timeout: Duration,
    /// How long an answer may wait for the client to read any of it; then the connection is
    /// closed. Default [`WRITE_TIMEOUT`].
    pub write_timeout: Duration,
}

/// Where the server's warnings go (see [`ServerConfig::warn`]).
#[derive(Clone)]
pub struct Warn(pub Arc<dyn Fn(&str) + Send + Sync>);

impl std::fmt::Debug for Warn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Warn(..)")
    }
}

/// What the pod sync tells `/metrics`: listings that failed, and when one last succeeded.
#[derive(Clone, Default)]
struct SyncMetrics {
    failures: Counter,
    last_success: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:7070".into(),
            batch_window: Duration::ZERO,
            token: None,
            stop_on_signals: false,
            kube_api: None,
            kube_sync: None,
            warn: None,
            head_timeout: HEAD_TIMEOUT,
            body_timeout: BODY_TIMEOUT,
            write_timeout: WRITE_TIMEOUT,
        }
    }
}

enum Op {
    Submit(Workload),
    Events(Vec<FleetEvent>),
    Fleet,
    Finish(String),
    Get(String),
    Explain(String),
    List {
        state: Option<JobState>,
        after: Option<u64>,
        limit: usize,
    },
    Metrics,
    Health,
    KubeFilter(crate::kube::ExtenderArgs),
    KubePrioritize(crate::kube::ExtenderArgs),
    KubePreempt(crate::kube::ExtenderPreemptionArgs),
    KubeBind(crate::kube::ExtenderBindingArgs),
    KubeUnbind(crate::kube::ExtenderBindingArgs),
    /// The pods bound through the extender now (the sync task's first step).
    KubeBound,
    /// Finish the jobs of those pods that the listing says ended.
    KubeSync(Vec<String>, Vec<crate::client::PodSeen>),
}

enum Answer {
    Json(StatusCode, String),
    Text(String),
    /// Ids, for the server's own tasks (never an HTTP answer).
    Ids(Vec<String>),
}

struct Message {
    op: Op,
    arrived: Instant,
    reply: Reply,
    /// The request body's share of the memory budget, given back when the core has applied it.
    turn: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Where a request's answer goes.
type Reply = oneshot::Sender<Result<Answer, ApiError>>;

#[derive(Clone)]
struct AppState {
    core: mpsc::Sender<Message>,
    token: Option<Arc<str>>,
    /// The memory budget of request bodies read, parsed, or on their way to the core.
    bodies: Arc<Semaphore>,
    body_timeout: Duration,
    kube_api: Option<Arc<(String, Option<String>)>>,
}

/// A running server: its address, and the way to stop it.
pub struct Server {
    address: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<()>>,
    core: Option<std::thread::JoinHandle<Result<(), ServeError>>>,
}

impl Server {
    /// Binds `config.listen` and starts serving `service`. Errors if the address cannot be used,
    /// or is not loopback and no token is set.
    pub fn start(service: Service, config: ServerConfig) -> Result<Server, ServeError> {
        let listen_error = |message: String| ServeError::Listen { address: config.listen.clone(), message };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("gpuplace-http")
            .build()
            .map_err(|e| listen_error(format!("cannot start the runtime: {e}")))?;
        let listener =
            runtime.block_on(tokio::net::TcpListener::bind(&config.listen)).map_err(|e| listen_error(e.to_string()))?;
        let address = listener.local_addr().map_err(|e| listen_error(e.to_string()))?;
        if !address.ip().is_loopback() && config.token.is_none() {
            return Err(listen_error("is not a loopback address: give a token (--token-file) to listen on it".into()));
        }
        // Bounded: when the core falls behind, handlers wait for room instead of piling up memory.
        let (sender, receiver) = mpsc::channel::<Message>(QUEUE_REQUESTS);
        let window = config.batch_window;
        // Registered in `/metrics` only when the pods are synced.
        let sync_metrics = SyncMetrics::default();
        let syncing = config.kube_api.is_some() && config.kube_sync.is_some();
        let sync_for_core = syncing.then(|| sync_metrics.clone());
        // When the core ends for any reason (its store failed), the server stops too.
        let core_ended = Arc::new(Notify::new());
        let ended = Arc::clone(&core_ended);
        let core = std::thread::Builder::new()
            .name("gpuplace-core".into())
            .spawn(move || {
                // Notifies when the core ends, even by a panic.
                struct Ended(Arc<Notify>);
                impl Drop for Ended {
                    fn drop(&mut self) {
                        self.0.notify_one();
                    }
                }
                let _ended = Ended(ended);
                run_core(service, receiver, window, sync_for_core)
            })
            .map_err(|e| listen_error(format!("cannot start the core thread: {e}")))?;
        if let (Some(api), Some(every)) = (config.kube_api.clone(), config.kube_sync) {
            runtime.spawn(kube_sync(sender.clone(), api, every, sync_metrics, config.warn.clone()));
        }
        let state = AppState {
            core: sender,
            token: config.token.map(|t| Arc::from(t.as_str())),
            bodies: Arc::new(Semaphore::new(BODIES_AT_ONCE * MAX_BODY_BYTES / BODY_UNIT)),
            body_timeout: config.body_timeout,
            kube_api: config.kube_api.map(Arc::new),
        };
        let app = Router::new()
            .route("/v1/jobs", post(submit).get(list))
            .route("/v1/jobs/{id}", get(job))
            .route("/v1/jobs/{id}/finish", post(finish))
            .route("/v1/jobs/{id}/explain", get(explain))
            .route("/v1/fleet", get(fleet))
            .route("/v1/fleet/events", post(events))
            .route("/metrics", get(metrics))
            .route("/healthz", get(health))
            .route("/kube/v1/filter", post(kube_filter))
            .route("/kube/v1/prioritize", post(kube_prioritize))
            .route("/kube/v1/preempt", post(kube_preempt))
            .route("/kube/v1/bind", post(kube_bind))
            .fallback(|| async { error(ApiError::new(404, "no such route (see docs/API.md)")) })
            .method_not_allowed_fallback(|| async { error(ApiError::new(405, "this route does not take this method")) })
            .with_state(state);
        let (stop, stopped) = oneshot::channel::<()>();
        let signals = config.stop_on_signals;
        let (head_timeout, write_timeout) = (config.head_timeout, config.write_timeout);
        let served = runtime.spawn(async move {
            let shutdown = async move {
                tokio::select! {
                    _ = stopped => {}
                    _ = core_ended.notified() => {}
                    _ = termination(signals) => {}
                }
            };
            // Serving ends on a stop; requests in flight get GRACE to finish.
            crate::listen::serve(listener, app, head_timeout, write_timeout, GRACE, shutdown).await;
        });
        Ok(Server { address, runtime: Some(runtime), stop: Some(stop), served: Some(served), core: Some(core) })
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves until stopped — SIGTERM or SIGINT (with `stop_on_signals`), or the store failing —
    /// then finishes the requests in flight, commits, and returns the core's result: an error if
    /// the store failed.
    pub fn wait(mut self) -> Result<(), ServeError> {
        self.finish()
    }

    /// Stops serving now (requests in flight are answered), and returns as [`Server::wait`] does.
    pub fn stop(mut self) -> Result<(), ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.finish()
    }

    fn finish(&mut self) -> Result<(), ServeError> {
        let runtime = self.runtime.take().expect("finished once");
        if let Some(served) = self.served.take() {
            let _ = runtime.block_on(served);
        }
        // Dropping the runtime drops the router and with it the last sender: the core answers
        // what was sent, commits, and ends.
        runtime.shutdown_timeout(Duration::from_secs(1));
        match self.core.take().expect("finished once").join() {
            Ok(result) => result,
            Err(_) => Err(ServeError::Store { path: "(core)".into(), message: "the core thread panicked".into() }),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.runtime.is_some() {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            let _ = self.finish();
        }
    }
}

/// SIGTERM or SIGINT, when `signals`; else never.
async fn termination(signals: bool) {
    if !signals {
        return std::future::pending().await;
    }
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// The core loop: batches, applies, places, then hands the batch's changes and answers to the
/// committer, which makes them durable and only then answers. While one write is synced the core
/// already applies and places the next batches ([`COMMIT_GROUP`] may wait while as many are
/// written), so the disk's sync time and the core's work overlap. Ends when every sender is gone, or with the store's error (the server
/// then stops: memory is ahead of the store).
fn run_core(
    mut service: Service,
    mut receiver: mpsc::Receiver<Message>,
    window: Duration,
    sync: Option<SyncMetrics>,
) -> Result<(), ServeError> {
    // A small runtime of the core's own, for receiving with a deadline.
    let clock = tokio::runtime::Builder::new_current_thread().enable_time().build().map_err(|e| ServeError::Store {
        path: "(core)".into(),
        message: format!("cannot start the core's timer: {e}"),
    })?;
    let metrics = Metrics::new(sync);
    let committer = Committer::start(service.store(), metrics.latency.clone())?;
    let outcome = core_loop(&mut service, &mut receiver, window, &clock, &metrics, &committer);
    // Everything handed over is written (or refused) and answered before the core ends.
    let committed = committer.finish();
    outcome.and(committed).and_then(|()| service.commit())
}

fn core_loop(
    service: &mut Service,
    receiver: &mut mpsc::Receiver<Message>,
    window: Duration,
    clock: &tokio::runtime::Runtime,
    metrics: &Metrics,
    committer: &Committer,
) -> Result<(), ServeError> {
    loop {
        committer.check()?;
        if service.round_needed() {
            // After a restart (reasons of the waiting jobs), or the date moved on while idle.
            let placed_before = service.counters().placed;
            service.run_round()?;
            metrics.decisions.inc_by(service.counters().placed - placed_before);
            committer.hand(Held { batch: service.take_commit()?, replies: Vec::new() })?;
        }
        // Waits for a request, the tick, or the committer's failure (the server then stops at
        // once, even when no request comes).
        let received = clock.block_on(async {
            tokio::select! {
                received = tokio::time::timeout(TICK, receiver.recv()) => Some(received),
                () = committer.failed.notified() => None,
            }
        });
        let first = match received {
            Some(Ok(Some(first))) => first,
            Some(Ok(None)) => return Ok(()),
            Some(Err(_)) => continue,
            None => return committer.check(),
        };
        let deadline = first.arrived + window;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_REQUESTS {
            match receiver.try_recv() {
                Ok(message) => batch.push(message),
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    match clock.block_on(async { tokio::time::timeout(left, receiver.recv()).await }) {
                        Ok(Some(message)) => batch.push(message),
                        Ok(None) | Err(_) => break,
                    }
                }
            }
        }
        let mut results = Vec::with_capacity(batch.len());
        for message in &mut batch {
            let op = std::mem::replace(&mut message.op, Op::Health);
            // Applied below: what the body held is the service's now (bounded by its own limits).
            let _turn = message.turn.take();
            results.push(match op {
                Op::Submit(workload) => service.submit_workload(workload).map(Pending::Jobs),
                Op::Finish(id) => service.finish(&id).map(Pending::Job),
                Op::Events(events) => service.apply_events(&events).map(|n| Pending::Events(events.len() as u64, n)),
                // The extender's reads are answered from the state as the batch's earlier
                // requests left it; a bind is a change, answered after the commit.
                Op::KubeFilter(args) => Ok(Pending::Ready(json(StatusCode::OK, &service.kube_filter(args)))),
                Op::KubePrioritize(args) => {
                    service.kube_prioritize(args).map(|list| Pending::Ready(json(StatusCode::OK, &list)))
                }
                Op::KubePreempt(args) => {
                    service.kube_preempt(args).map(|result| Pending::Ready(json(StatusCode::OK, &result)))
                }
                Op::KubeBind(args) => service.kube_bind(&args).map(|_| Pending::Bound),
                Op::KubeUnbind(args) => service.kube_unbind(&args).map(|()| Pending::Bound),
                Op::KubeBound => Ok(Pending::Ready(Answer::Ids(service.kube_bound()))),
                Op::KubeSync(bound, pods) => service.kube_sync(&bound, &pods).map(Pending::Jobs),
                read => Ok(Pending::Read(read)),
            });
        }
        let placed_before = service.counters().placed;
        let taken =
            if service.round_needed() { service.run_round() } else { Ok(()) }.and_then(|()| service.take_commit());
        let write = match taken {
            Ok(write) => write,
            Err(error) => {
                // Batches handed over before are still written and answered; this one is not.
                for message in batch {
                    let _ = message
                        .reply
                        .send(Err(ApiError::new(503, format!("the store failed; the server stops: {error}"))));
                }
                return Err(error);
            }
        };
        // Counted now, so that a `/metrics` answer of this batch agrees with its other figures.
        metrics.decisions.inc_by(service.counters().placed - placed_before);
        // Answers are made now, from the state as this batch left it (the batch's own changes are
        // in the write handed over with them), and sent once that write is durable.
        let replies = batch
            .into_iter()
            .zip(results)
            .map(|(message, result)| {
                (message.reply, result.and_then(|pending| answer(service, metrics, pending)), message.arrived)
            })
            .collect();
        committer.hand(Held { batch: write, replies })?;
    }
}

/// The most batches of the core written in one transaction, and the most that wait for the
/// committer (the core then waits): the core runs at most about twice this many batches ahead of
/// the store.
const COMMIT_GROUP: usize = 64;

/// A batch's changes on their way to the store, with the answers they hold back.
struct Held {
    batch: Option<crate::store::Batch>,
    /// Each request's reply channel, its answer, and when it arrived.
    replies: Vec<(Reply, Result<Answer, ApiError>, Instant)>,
}

/// The thread that writes batches in the order the core hands them over and then sends their
/// answers. After a failed write it answers 503 to that batch and every later one, writes nothing
/// more, and keeps the error for the core.
struct Committer {
    sender: Option<std::sync::mpsc::SyncSender<Held>>,
    thread: Option<std::thread::JoinHandle<()>>,
    error: Arc<std::sync::Mutex<Option<ServeError>>>,
    /// Notified when a write failed (after `error` is set).
    failed: Arc<Notify>,
}

impl Committer {
    fn start(store: Arc<crate::store::Store>, latency: Histogram) -> Result<Committer, ServeError> {
        // Room for COMMIT_GROUP batches while another is written: the core runs ahead at most
        // that far (then waits), and the next write takes all of them.
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Held>(COMMIT_GROUP);
        let error = Arc::new(std::sync::Mutex::new(None::<ServeError>));
        let failure = Arc::clone(&error);
        let failed = Arc::new(Notify::new());
        let signal = Arc::clone(&failed);
        let path = store.path().to_path_buf();
        let thread = std::thread::Builder::new()
            .name("gpuplace-commit".into())
            .spawn(move || {
                let mut broken: Option<String> = None;
                while let Ok(first) = receiver.recv() {
                    // Group commit: what the core handed over while the last write was synced
                    // is written in one transaction (later records of a job replace earlier ones).
                    let mut group = vec![first];
                    while group.len() < COMMIT_GROUP
                        && let Ok(more) = receiver.try_recv()
                    {
                        group.push(more);
                    }
                    let mut batch: Option<crate::store::Batch> = None;
                    for held in &mut group {
                        if let Some(next) = held.batch.take() {
                            match &mut batch {
                                Some(batch) => batch.absorb(next),
                                None => batch = Some(next),
                            }
                        }
                    }
                    if broken.is_none()
                        && let Some(batch) = &batch
                        && let Err(error) = store.write_batch(batch)
                    {
                        broken = Some(error.to_string());
                        *failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(error);
                        // Kept as a permit if the core is not waiting now.
                        signal.notify_one();
                    }
                    for held in group {
                        if let Some(error) = &broken {
                            for (reply, _, _) in held.replies {
                                let message = format!("the store failed; the server stops: {error}");
                                let _ = reply.send(Err(ApiError::new(503, message)));
                            }
                            continue;
                        }
                        for (reply, answer, arrived) in held.replies {
                            if answer.is_ok() {
                                latency.observe(arrived.elapsed().as_secs_f64());
                            }
                            let _ = reply.send(answer);
                        }
                    }
                }
            })
            .map_err(|e| ServeError::Store { path, message: format!("cannot start the committer: {e}") })?;
        Ok(Committer { sender: Some(sender), thread: Some(thread), error, failed })
    }

    /// The error of a failed write, if one failed.
    fn check(&self) -> Result<(), ServeError> {
        match self.error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Hands `held` over (waiting while [`COMMIT_GROUP`] batches wait for the committer already).
    fn hand(&self, held: Held) -> Result<(), ServeError> {
        if held.batch.is_none() && held.replies.is_empty() {
            return self.check();
        }
        let sender = self.sender.as_ref().expect("handed over before finishing");
        if sender.send(held).is_err() {
            return Err(ServeError::Store { path: "(committer)".into(), message: "the committer thread ended".into() });
        }
        self.check()
    }

    /// Waits for every batch handed over to be written and answered; the error of a failed write.
    fn finish(mut self) -> Result<(), ServeError> {
        drop(self.sender.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            return Err(ServeError::Store {
                path: "(committer)".into(),
                message: "the committer thread panicked".into(),
            });
        }
        self.check()
    }
}

enum Pending {
    Ready(Answer),
    Bound,
    Jobs(Vec<usize>),
    Events(u64, Vec<usize>),
    Job(usize),
    Read(Op),
}

fn json<T: serde::Serialize>(status: StatusCode, body: &T) -> Answer {
    Answer::Json(status, serde_json::to_string(body).expect("API bodies serialize"))
}

fn answer(service: &Service, metrics: &Metrics, pending: Pending) -> Result<Answer, ApiError> {
    Ok(match pending {
        Pending::Ready(answer) => answer,
        Pending::Bound => json(StatusCode::OK, &crate::kube::ExtenderBindingResult::default()),
        Pending::Jobs(numbers) => json(
            StatusCode::OK,
            &JobsResponse { jobs: numbers.into_iter().map(|n| service.view(n)).collect(), total: None },
        ),
        Pending::Job(number) => json(StatusCode::OK, &service.view(number)),
        Pending::Events(applied, numbers) => json(
            StatusCode::OK,
            &EventsResponse { applied, requeued: numbers.into_iter().map(|n| service.view(n)).collect() },
        ),
        Pending::Read(Op::Fleet) => json(StatusCode::OK, &service.fleet_view(MAX_NODES_LISTED)),
        Pending::Read(Op::Get(id)) => json(StatusCode::OK, &service.job(&id)?),
        Pending::Read(Op::Explain(id)) => json(StatusCode::OK, &service.explain(&id)?),
        Pending::Read(Op::List { state, after, limit }) => {
            let (jobs, total) = service.list(state, after, limit);
            json(StatusCode::OK, &JobsResponse { jobs, total: Some(total) })
        }
        Pending::Read(Op::Metrics) => Answer::Text(metrics.render(service)),
        Pending::Read(Op::Health) => Answer::Text("ok\n".into()),
        Pending::Read(
            Op::Submit(_)
            | Op::Finish(_)
            | Op::Events(_)
            | Op::KubeFilter(_)
            | Op::KubePreempt(_)
            | Op::KubePrioritize(_)
            | Op::KubeBind(_)
            | Op::KubeUnbind(_)
            | Op::KubeBound
            | Op::KubeSync(..),
        ) => unreachable!("mutations and the extender's requests are pending otherwise"),
    })
}

/// What `/metrics` shows. Counters and the latency histogram live here; the gauges are set from
/// the service's state at each scrape.
struct Metrics {
    registry: Registry,
    jobs: Family<Vec<(String, String)>, Gauge>,
    gpus: Family<Vec<(String, String)>, Gauge>,
    queue: Gauge,
    decisions: Counter,
    preemptions: Gauge,
    tenant_gpus: Family<Vec<(String, String)>, Gauge<f64, std::sync::atomic::AtomicU64>>,
    rounds: Gauge,
    round_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    commits: Gauge,
    commit_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    latency: Histogram,
}

impl Metrics {
    fn new(sync: Option<SyncMetrics>) -> Metrics {
        let mut registry = Registry::with_prefix("gpuplace");
        if let Some(sync) = sync {
            registry.register(
                "kube_sync_failures",
                "Pod syncs that failed: a listing of the Kubernetes API server's pods, or finishing an ended pod's job (tried again at the next tick)",
                sync.failures,
            );
            registry.register(
                "kube_sync_last_success_seconds",
                "When a pod sync last went through, Unix time (0: never): a listing that succeeded and finished the ended pods' jobs, or a tick with no pod bound (then nothing is listed)",
                sync.last_success,
            );
        }
        let jobs = Family::<Vec<(String, String)>, Gauge>::default();
        registry.register("jobs", "Jobs the server knows, by state and kind", jobs.clone());
        let gpus = Family::<Vec<(String, String)>, Gauge>::default();
        registry.register("gpus", "GPUs per site, used (held by jobs or the fleet file) and free", gpus.clone());
        let queue = Gauge::default();
        registry.register("queue_jobs", "Jobs waiting (preempted ones included)", queue.clone());
        let decisions = Counter::default();
        registry.register("decisions", "Jobs placed by scheduling rounds", decisions.clone());
        let preemptions = Gauge::default();
        registry.register("preemptions", "Jobs evicted by preemption since start", preemptions.clone());
        let tenant_gpus = Family::<Vec<(String, String)>, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "tenant_gpus",
            "With tenants: GPUs each tenant's placed jobs hold (what=held), its quota and its borrowing limit",
            tenant_gpus.clone(),
        );
        let rounds = Gauge::default();
        registry.register("rounds", "Scheduling rounds run since start", rounds.clone());
        let round_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "round_seconds",
            "Time spent in scheduling rounds since start, seconds",
            round_seconds.clone(),
        );
        let commits = Gauge::default();
        registry.register(
            "commits",
            "Durable commits of the store since start (one holds every batch handed over while the last was synced)",
            commits.clone(),
        );
        let commit_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "commit_seconds",
            "Time spent writing and syncing the store since start, seconds",
            commit_seconds.clone(),
        );
        // 0.25 ms to about 4 s.
        let latency = Histogram::new(exponential_buckets(0.000_25, 2.0, 15));
        registry.register(
            "request_latency_seconds",
            "From a request's arrival at the core (its body read and parsed) to its answer, for answers that are not errors: batching, placing, the durable commit",
            latency.clone(),
        );
        Metrics {
            registry,
            jobs,
            gpus,
            queue,
            decisions,
            preemptions,
            tenant_gpus,
            rounds,
            round_seconds,
            commits,
            commit_seconds,
            latency,
        }
    }

    fn render(&self, service: &Service) -> String {
        for state in JobState::ALL {
            for kind in gpuplace::JobKind::ALL {
                let labels = vec![
                    ("state".to_string(), state.name().to_string()),
                    ("kind".to_string(), kind.name().to_string()),
                ];
                self.jobs.get_or_create(&labels).set(service.count(state, kind) as i64);
            }
        }
        let fleet = service.scheduler().fleet();
        let state = service.scheduler().ledger().state();
        let used = gpuplace::report::metrics::site_gpus_used(fleet, state);
        let free = gpuplace::report::metrics::site_gpus_free(fleet, state);
        for (s, site) in fleet.sites.iter().enumerate() {
            for (what, value) in [("used", used[s]), ("free", free[s])] {
                let labels = vec![("site".to_string(), site.name.clone()), ("state".to_string(), what.to_string())];
                self.gpus.get_or_create(&labels).set(value as i64);
            }
        }
        if let Some(tenants) = service.scheduler().tenants() {
            let held = service.scheduler().tenant_held_milli();
            for (t, tenant) in tenants.tenants().iter().enumerate() {
                let set = |what: &str, gpus: f64| {
                    let labels =
                        vec![("tenant".to_string(), tenant.name.clone()), ("what".to_string(), what.to_string())];
                    self.tenant_gpus.get_or_create(&labels).set(gpus);
                };
                set("held", held[t] as f64 / 1000.0);
                set("quota", f64::from(tenant.quota_gpus));
                if let Some(borrow) = tenant.borrow_limit_gpus {
                    set("borrow_limit", f64::from(borrow));
                }
            }
        }
        self.queue.set(service.waiting_count() as i64);
        self.rounds.set(service.counters().rounds as i64);
        self.preemptions.set(service.counters().preempted as i64);
        self.round_seconds.set(service.counters().round_time.as_secs_f64());
        let (commits, commit_time) = service.store().commit_counts();
        self.commits.set(commits as i64);
        self.commit_seconds.set(commit_time.as_secs_f64());
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

/// Every `every`: the pods bound through the extender, then the API server's pods (listed after,
/// so that a pod bound before the listing is in it unless it is gone), then the jobs of those that
/// ended finished. A listing that fails is tried again at the next tick. Ends with the core.
async fn kube_sync(
    core: mpsc::Sender<Message>,
    api: (String, Option<String>),
    every: Duration,
    metrics: SyncMetrics,
    warn: Option<Warn>,
) {
    let api = Arc::new(api);
    let ask = |op: Op| {
        let core = core.clone();
        async move {
            let (reply, answer) = oneshot::channel();
            core.send(Message { op, arrived: Instant::now(), reply, turn: None }).await.ok()?;
            answer.await.ok()
        }
    };
    let succeeded = || {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        metrics.last_success.set(now.as_secs_f64());
    };
    let failed = |why: &str| {
        metrics.failures.inc();
        if let Some(Warn(warn)) = &warn {
            warn(&format!("kube sync: {why}; trying again in {} s", every.as_secs_f64()));
        }
    };
    loop {
        tokio::time::sleep(every).await;
        let bound = match ask(Op::KubeBound).await {
            Some(Ok(Answer::Ids(ids))) => ids,
            None => return,
            Some(_) => continue,
        };
        if bound.is_empty() {
            succeeded();
            continue;
        }
        let listing = Arc::clone(&api);
        let pods =
            tokio::task::spawn_blocking(move || crate::client::list_pods(&listing.0, listing.1.as_deref())).await;
        match pods {
            Ok(Ok(pods)) => match ask(Op::KubeSync(bound, pods)).await {
                None => return,
                Some(Ok(_)) => succeeded(),
                Some(Err(e)) => failed(&e.message),
            },
            Ok(Err(why)) => failed(&why),
            Err(_) => failed("the listing's thread failed"),
        }
    }
}

// Routes. Each checks the token before it reads anything else of the request.

/// The 401 answer when a token is set and the request does not carry it.
fn refused(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    let token = state.token.as_ref()?;
    let given =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    (given != Some(&**token)).then(|| error(ApiError::new(401, "a bearer token is required (Authorization: Bearer …)")))
}

async fn call(state: &AppState, op: Op) -> Response {
    call_holding(state, op, None).await
}

/// [`call`] for a request parsed from a body: `turn` (its share of the memory budget) goes with it
/// to the core, which gives it back once the request is applied.
async fn call_holding(state: &AppState, op: Op, turn: Option<tokio::sync::OwnedSemaphorePermit>) -> Response {
    let (reply, answer) = oneshot::channel();
    let message = Message { op, arrived: Instant::now(), reply, turn };
    if state.core.send(message).await.is_err() {
        return error(ApiError::new(503, "the server is stopping"));
    }
    match answer.await {
        Ok(Ok(Answer::Json(status, body))) => {
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Ok(Ok(Answer::Text(body))) => {
            (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
        }
        Ok(Ok(Answer::Ids(_))) => error(ApiError::new(500, "an internal answer reached a route")),
        Ok(Err(e)) => error(e),
        Err(_) => error(ApiError::new(503, "the server is stopping")),
    }
}

fn error(e: ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_string(&ErrorResponse { error: e.message }).expect("serializes");
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Reads a request body of at most `max` bytes within the bodies' memory budget: its share (its
/// exact length as the HTTP layer knows it, from `Content-Length`, in [`BODY_UNIT`]s, at least
/// one; `max` when unknown) is taken before reading and returned with the bytes, to be held until
/// the core has applied the request. A body over `max` is refused (413).
async fn read_body(
    state: &AppState,
    body: Body,
    max: usize,
) -> Result<(Bytes, tokio::sync::OwnedSemaphorePermit), Response> {
    let too_large =
        || error(ApiError::new(413, format!("request: the body is over {} MiB, or was cut off", max >> 20)));
    // A body declared larger than `max` is read up to `max` all the same and then refused, so
    // that a client that does not wait for `100 Continue` reads the 413 instead of a reset.
    let declared = axum::body::HttpBody::size_hint(&body).exact();
    let limit = declared.map_or(max, |n| usize::try_from(n).unwrap_or(usize::MAX).min(max));
    let units = u32::try_from(limit.div_ceil(BODY_UNIT).max(1)).expect("bodies are at most MAX_BODY_BYTES");
    // A wait for a turn is bounded too, so that slow uploads cannot park everyone else's
    // connections behind them for good.
    let turn = match tokio::time::timeout(state.body_timeout, Arc::clone(&state.bodies).acquire_many_owned(units)).await
    {
        Ok(Ok(turn)) => turn,
        Ok(Err(_)) => return Err(error(ApiError::new(503, "the server is stopping"))),
        Err(_) => {
            // What the client sends is read and dropped (within the route's limit and the body
            // timeout), so that it reads this answer rather than a reset.
            let _ = tokio::time::timeout(state.body_timeout, drain(body, limit)).await;
            let message = format!(
                "request: other request bodies held the server's body memory for {} s: try again",
                state.body_timeout.as_secs_f64()
            );
            return Err(error(ApiError::new(503, message)));
        }
    };
    let Ok(read) = tokio::time::timeout(state.body_timeout, axum::body::to_bytes(body, limit)).await else {
        let message = format!("request: the body did not arrive within {} s", state.body_timeout.as_secs_f64());
        return Err(error(ApiError::new(408, message)));
    };
    let bytes = read.map_err(|_| too_large())?;
    Ok((bytes, turn))
}

/// Reads `body` to its end, or to `limit` bytes, keeping none of it.
async fn drain(mut body: Body, mut limit: usize) {
    use http_body_util::BodyExt;
    while let Some(Ok(frame)) = body.frame().await {
        let Some(data) = frame.data_ref() else { continue };
        let Some(left) = limit.checked_sub(data.len()) else { return };
        limit = left;
    }
}

async fn submit(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    if let Some(refusal) = refused(&state, &headers) {
        return refusal;
    }
    let (bytes, turn) = match read_body(&state, body, MAX_BODY_BYTES).await {
        Ok(read) => read,
        Err(refusal) => return refusal,
    };
    // Small bodies are parsed here; larger ones off the HTTP workers.
    // The bytes are gone once parsed: only the turn is held while the request waits.
    let parsed = if bytes.len() <= PARSE_INLINE_BYTES {
        let parsed = parse_jobs(&bytes);
        drop(bytes);
        parsed
    } else {
        match tokio::task::spawn_blocking(move || parse_jobs(&bytes)).await {
            Ok(parsed) => parsed,
            Err(_) => return error(ApiError::new(500, "request: parsing the body failed")),
        }
    };
    match parsed {
        Ok(workload) => call_holding(&state, Op::Submit(workload), Some(turn)).await,
        Err(e) => error(e),
    }
}

/// A route on one job: the token, then the id from the path (a JSON 400 when it does not decode).
async fn on_job(
    state: &AppState,
    headers: &HeaderMap,
    id: Result<Path<String>, PathRejection>,
    op: fn(String) -> Op,
) -> Response {
    if let Some(refusal) = refused(state, headers) {
        return refusal;
    }
    match id {
        Ok(Path(id)) => call(state, op(id)).await,
        Err(e) => error(ApiError::new(400, format!("path: {}", e.body_text()))),
    }
}

async fn finish(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    on_job(&state, &headers, id, Op::Finish).await
}

async fn explain(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    on_job(&state, &headers, id, Op::Explain).await
}

async fn job(State(state): State<AppState>, headers: HeaderMap, id: Result<Path<String>, PathRejection>) -> Response {
    on_job(&state, &headers, id, Op::Get).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    after: Option<u64>,
    limit: Option<usize>,
}

async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Some(refusal) = refused(&state, &headers) {
        return refusal;
    }
    let Query(query) = match query {
        Ok(query) => query,
        Err(e) => return error(ApiError::new(400, format!("query: {}", e.body_text()))),
    };
    let wanted = match query.state.as_deref() {
        None => None,
        Some(name) => match JobState::parse(name) {
            Some(s) => Some(s),
            None => {
                return error(ApiError::new(
                    400,
                    format!(
                        "query: state: unknown state `{}`: one of waiting, placed, preempted, finished, rejected",
                        name.escape_debug()
                    ),
                ));
            }
        },
    };
    let limit = query.limit.unwrap_or(DEFAULT_LIST);
    call(&state, Op::List { state: wanted, after: query.after, limit }).await
}

async fn events(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    if let Some(refusal) = refused(&state, &headers) {
        return refusal;
    }
    let (bytes, turn) = match read_body(&state, body, MAX_EVENTS_BYTES).await {
        Ok(read) => read,
        Err(refusal) => return refusal,
    };
    // One event, or an array of them.
    let array = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let parsed = if array {
        serde_json::from_slice::<Vec<FleetEvent>>(&bytes)
    } else {
        serde_json::from_slice::<FleetEvent>(&bytes).map(|e| vec![e])
    };
    // The bytes are gone once parsed: only the turn is held while the request waits.
    drop(bytes);
    match parsed {
        Ok(events) => call_holding(&state, Op::Events(events), Some(turn)).await,
        Err(e) => error(ApiError::new(400, gpuplace::error::one_line(&format!("request: events: {e}")))),
    }
}

async fn fleet(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(refusal) = refused(&state, &headers) {
        return refusal;
    }
    call(&state, Op::Fleet).await
}

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(refusal) = refused(&state, &headers) {
        return refusal;
    }
    call(&state, Op::Metrics).await
}

async fn health(State(state): State<AppState>) -> Response {
    call(&state, Op::Health).await
}

/// Reads an extender request's body (JSON of `T`), after the token, with its share of the memory
/// budget; the error answer otherwise.
async fn kube_body<T: serde::de::DeserializeOwned + Send + 'static>(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(T, tokio::sync::OwnedSemaphorePermit), Response> {
    if let Some(refusal) = refused(state, headers) {
        return Err(refusal);
    }
    let (bytes, turn) = read_body(state, body, MAX_BODY_BYTES).await?;
    let parsed = tokio::task::spawn_blocking(move || serde_json::from_slice::<T>(&bytes))
        .await
        .map_err(|_| error(ApiError::new(500, "request: parsing the body failed")))?;
    parsed
        .map(|args| (args, turn))
        .map_err(|e| error(ApiError::new(400, gpuplace::error::one_line(&format!("request: {e}")))))
}

async fn kube_filter(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match kube_body(&state, &headers, body).await {
        Ok((args, turn)) => call_holding(&state, Op::KubeFilter(args), Some(turn)).await,
        Err(response) => response,
    }
}

async fn kube_prioritize(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match kube_body(&state, &headers, body).await {
        Ok((args, turn)) => call_holding(&state, Op::KubePrioritize(args), Some(turn)).await,
        Err(response) => response,
    }
}

async fn kube_preempt(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match kube_body(&state, &headers, body).await {
        Ok((args, turn)) => call_holding(&state, Op::KubePreempt(args), Some(turn)).await,
        Err(response) => response,
    }
}

/// The extender's bind: the pod's GPUs held in gpuplace (durably), then its Binding created on
/// the API server; when that fails the hold is given back and the answer says why. Failures are
/// answered as kube-scheduler expects, 200 with `Error` set.
async fn kube_bind(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let (args, turn): (crate::kube::ExtenderBindingArgs, _) = match kube_body(&state, &headers, body).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    // kube-scheduler reads a bind's failure from `Error`, with 200; empty is success.
    let result = |message: String| {
        let body = crate::kube::ExtenderBindingResult { error: message };
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_string(&body).expect("serializes"),
        )
            .into_response()
    };
    let (reply, answer) = oneshot::channel();
    let message = Message { op: Op::KubeBind(args.clone()), arrived: Instant::now(), reply, turn: Some(turn) };
    if state.core.send(message).await.is_err() {
        return result("the gpuplace server is stopping".into());
    }
    match answer.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return result(e.message),
        Err(_) => return result("the gpuplace server is stopping".into()),
    }
    let outcome = match state.kube_api.clone() {
        None => Err((
            true,
            "gpuplace holds the pod's GPUs, but no Kubernetes API server is set (serve --kube-api) to bind it"
                .to_string(),
        )),
        Some(api) => {
            let args = args.clone();
            tokio::task::spawn_blocking(move || {
                let (url, token) = (&api.0, api.1.as_deref());
                use crate::client::PodOnServer;
                match crate::client::create_binding(url, token, &args) {
                    Ok(()) => Ok(()),
                    // A refusal that applied nothing: give the hold back.
                    Err(failure) if failure.status.is_some_and(|s| (400..500).contains(&s) && s != 409) => {
                        Err((true, failure.message))
                    }
                    // A conflict (bound already: an earlier try went through?), no answer, or a
                    // server error (it may still commit): the pod on the API server says.
                    Err(failure) => {
                        match crate::client::pod_node(url, token, &args.pod_namespace, &args.pod_name, &args.pod_uid) {
                            Ok(PodOnServer::Bound(Some(node))) if node == args.node => Ok(()),
                            Ok(PodOnServer::Gone) | Ok(PodOnServer::Bound(Some(_))) => Err((true, failure.message)),
                            // Unbound for now, but the Binding may still land (a timeout, a 5xx), or
                            // unreadable: keep the hold (a double booking is worse than GPUs held until
                            // a retry moves the hold or the pod is finished).
                            Ok(PodOnServer::Bound(None)) if failure.status == Some(409) => Err((true, failure.message)),
                            Ok(PodOnServer::Bound(None)) => Err((
                                false,
                                format!("{}; the pod is not bound yet; its GPUs stay held", failure.message),
                            )),
                            Err(why) => Err((false, format!("{}; {why}; the pod's GPUs stay held", failure.message))),
                        }
                    }
                }
            })
            .await
            .unwrap_or_else(|_| Err((false, "creating the Binding failed".into())))
        }
    };
    match outcome {
        Ok(()) => result(String::new()),
        Err((give_back, message)) => {
            if give_back {
                let (reply, answer) = oneshot::channel();
                let back = Message { op: Op::KubeUnbind(args), arrived: Instant::now(), reply, turn: None };
                if state.core.send(back).await.is_ok() {
                    let _ = answer.await;
                }
            }
            result(message)
        }
    }
}
