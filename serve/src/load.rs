//! A bounded load generator for the service (`gpuplace load`): it starts a server of its own on
//! loopback over a temporary state directory, fills it with jobs, then has clients submit
//! and finish jobs over HTTP for a fixed number of requests, and reports decisions per second and
//! latency percentiles. It stops by itself and removes its state directory.
//!
//! The scenario, so that figures are comparable:
//! - **Jobs in the system**: `in_system` jobs of one tray each (4 GPUs, inference) are submitted
//!   straight to the service, 10,000 at a time, each chunk placed and committed as a batch of the
//!   server would be. Placed jobs beyond `keep_placed` are finished, and jobs that wait are
//!   cancelled, so that the server holds `in_system` job records, at most `keep_placed` of them
//!   placed, and an empty queue (the measured phase then sees the cost of a large state, not of a
//!   long queue: every round places the whole queue).
//! - **Measured phase**: `clients` clients, each with its own HTTP/1.1 connection, loop: submit
//!   `batch` new jobs of one tray (with `varied`, of 24,000 shapes: kind, 1, 2 or 4 GPUs,
//!   latency bound) in one request, then finish them (one request each), until
//!   `requests` submissions were made in all. Latency is per request, measured by the client
//!   (loopback HTTP, queueing, batching, the round and the synced commit).
//!   - **Closed loop** (no `rate`): each client submits again as soon as its finishes are
//!     answered, so the server is as busy as `clients` outstanding requests make it.
//!   - **Open loop** (`rate`: submissions per second, all clients together): submission `i` is
//!     due at `i / rate` seconds after the start (clients take turns), and its latency counts
//!     from when it was due, not from when it was sent: a client that falls behind shows it in
//!     the latencies (no coordinated omission), and the rate reached is reported beside the one
//!     asked for.
//!
//!   The clients are tasks on one thread of their own (hyper's HTTP/1.1 client), so that they
//!   take at most one of the cores the server is measured on, with few context switches.

use std::time::{Duration, Instant};

use gpuplace::{BackendChoice, Fleet, Job, JobKind, Workload};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::error::ServeError;
use crate::server::{Server, ServerConfig};
use crate::service::{MAX_SUBMISSION_JOBS, Service, ServiceConfig};

/// What a load run does.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Job records in the server before the measured phase.
    pub in_system: usize,
    /// Of those, at most this many stay placed.
    pub keep_placed: usize,
    /// Submissions in the measured phase, all clients together.
    pub requests: usize,
    /// Clients: HTTP/1.1 connections, tasks on one thread.
    pub clients: usize,
    /// Jobs per submission.
    pub batch: usize,
    /// The server's batch window.
    pub window: Duration,
    /// The scoring backend.
    pub backend: BackendChoice,
    /// Open loop: submissions per second, all clients together; None: closed loop.
    pub rate: Option<f64>,
    /// The measured phase's jobs vary in shape (else they are all one tray of inference).
    pub varied: bool,
}

/// What a load run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LoadReport {
    /// The scoring backend, as the library describes it.
    pub backend: String,
    /// Job records in the server during the measured phase (before it).
    pub in_system: u64,
    /// Jobs placed before the measured phase.
    pub placed_before: u64,
    /// Clients: HTTP/1.1 connections, tasks on one thread.
    pub clients: u64,
    /// Jobs per submission.
    pub batch: u64,
    /// The server's batch window, ms.
    pub window_ms: f64,
    /// Open loop: the submissions per second asked for (None: closed loop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Whether the measured phase's jobs varied in shape.
    #[serde(default)]
    pub varied: bool,
    /// Seconds to fill the server.
    pub fill_s: f64,
    /// Submissions made in the measured phase.
    pub submissions: u64,
    /// Finish requests made in the measured phase.
    pub finishes: u64,
    /// Jobs placed in the measured phase, as the server counted them (`gpuplace_decisions_total`).
    pub decisions: u64,
    /// Wall time of the measured phase, s.
    pub seconds: f64,
    /// Jobs placed per second.
    pub decisions_per_s: f64,
    /// Submissions made per second (in the open loop, compare with `rate`).
    #[serde(default)]
    pub submissions_per_s: f64,
    /// Requests (submissions and finishes) answered per second.
    pub requests_per_s: f64,
    /// Scheduling rounds the server ran in the measured phase (`gpuplace_rounds`).
    #[serde(default)]
    pub rounds: u64,
    /// Seconds the server spent in those rounds (`gpuplace_round_seconds`).
    #[serde(default)]
    pub round_s: f64,
    /// Durable commits in the measured phase (`gpuplace_commits`).
    #[serde(default)]
    pub commits: u64,
    /// Seconds the server spent writing and syncing them (`gpuplace_commit_seconds`).
    #[serde(default)]
    pub commit_s: f64,
    /// Submission latency percentiles, ms: p50, p99, max (open loop: from when it was due).
    pub submit_ms: [f64; 3],
    /// Open loop: how late submissions went out after they were due, ms: p50, p99, max (counted in
    /// the submission latencies). A client sends its next submission once the last one and its
    /// finishes are answered, so this is the generator's own delay (its timer, its thread) plus
    /// any time a client still waited on the server past the next due time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_lag_ms: Option<[f64; 3]>,
    /// Finish latency percentiles, ms: p50, p99, max.
    pub finish_ms: [f64; 3],
}

/// The largest `in_system`.
pub const MAX_IN_SYSTEM: usize = 10_000_000;
/// The largest open-loop `rate`, submissions per second.
pub const MAX_RATE: f64 = 1_000_000.0;

/// A job of the measured phase: one tray, or with `varied` one of 24,000 shapes (kind, 1, 2 or 4
/// GPUs, a latency bound of 40 to 2,039 ms) chosen by its number, so that a round rarely holds two
/// identical jobs (identical jobs are scored once).
fn measured_job(id: String, number: usize, varied: bool) -> Job {
    if !varied {
        return tray_job(id);
    }
    // A fixed mix of the number's bits (splitmix64's finalizer), so that runs are comparable.
    let mut z = (number as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let kind = JobKind::ALL[(z % 4) as usize];
    let gpus = [1, 2, 4][((z >> 8) % 3) as usize];
    let latency_ms = 40 + ((z >> 16) % 2000) as u32;
    Job::new(id, kind, gpus, "us-east").with_priority(10).with_duration_h(1.0).with_max_latency_ms(latency_ms)
}

fn tray_job(id: String) -> Job {
    Job::new(id, JobKind::Inference, 4, "us-east").with_priority(10).with_duration_h(1.0)
}

fn load_error(message: impl Into<String>) -> ServeError {
    ServeError::Client { url: "(load)".into(), status: None, message: message.into() }
}

/// Runs the scenario on `fleet` (which must have the region `us-east`, as the built-in fleet
/// does), reporting progress through `log`.
pub fn run(fleet: Fleet, config: &LoadConfig, log: &mut dyn FnMut(&str)) -> Result<LoadReport, ServeError> {
    if config.clients == 0 || config.batch == 0 || config.requests == 0 || config.in_system > MAX_IN_SYSTEM {
        return Err(load_error("clients, batch and requests must be at least 1, in_system at most 10,000,000"));
    }
    if config.rate.is_some_and(|rate| !(rate.is_finite() && (1.0..=MAX_RATE).contains(&rate))) {
        return Err(load_error("rate must be 1 to 1,000,000 submissions per second"));
    }
    let dir = tempfile::tempdir().map_err(|e| load_error(format!("cannot make a state directory: {e}")))?;
    let mut service = Service::open(ServiceConfig {
        fleet: Some(fleet),
        policy: None,
        backend: config.backend,
        state_dir: dir.path().to_path_buf(),
        preemption: false,
        tenants: None,
    })?;
    let backend = service.scheduler().backend().describe();
    log(&format!("filling the server with {} jobs ({backend})", config.in_system));
    let started = Instant::now();
    let mut made = 0usize;
    while made < config.in_system {
        let chunk = (config.in_system - made).min(MAX_SUBMISSION_JOBS.min(10_000));
        let jobs = (made..made + chunk).map(|n| tray_job(format!("fill-{n}"))).collect();
        service.submit_workload(Workload::from_jobs(jobs, "<fill>")).map_err(|e| load_error(e.message))?;
        service.run_round()?;
        for n in made..made + chunk {
            let view = service.view(n);
            let placed = view.state == crate::api::JobState::Placed;
            let over =
                placed && service.count(crate::api::JobState::Placed, JobKind::Inference) as usize > config.keep_placed;
            if over || view.state == crate::api::JobState::Waiting {
                service.finish(&view.id).map_err(|e| load_error(e.message))?;
            }
        }
        service.commit()?;
        made += chunk;
    }
    let fill_s = started.elapsed().as_secs_f64();
    let placed_before = service.count(crate::api::JobState::Placed, JobKind::Inference);
    log(&format!("filled in {fill_s:.1} s: {placed_before} placed; measuring {} submissions", config.requests));
    let server = Server::start(
        service,
        ServerConfig { listen: "127.0.0.1:0".into(), batch_window: config.window, ..ServerConfig::default() },
    )?;
    let url = format!("http://{}", server.address());
    // Placements are counted by the server (a job that waited and was placed by a later round
    // counts too), and so are its rounds and commits.
    let counters = |client: &Client| -> Result<[f64; 5], ServeError> {
        let text = client.metrics()?;
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .ok_or_else(|| load_error(format!("the server's /metrics has no {name}")))
        };
        Ok([
            value("gpuplace_decisions_total")?,
            value("gpuplace_rounds")?,
            value("gpuplace_round_seconds")?,
            value("gpuplace_commits")?,
            value("gpuplace_commit_seconds")?,
        ])
    };
    let observer = Client::new(&url, None);
    let before = counters(&observer)?;
    let clients = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| load_error(format!("cannot start the clients' runtime: {e}")))?;
    let clients_n = config.clients;
    let address = server.address();
    let outcome = clients.block_on(async move {
        // Every client connects before the clock starts.
        let mut connections = Vec::with_capacity(clients_n);
        for _ in 0..clients_n {
            connections.push(Connection::open(address).await?);
        }
        let started = Instant::now();
        let plan = Plan {
            clients: clients_n,
            batch: config.batch,
            interval: config.rate.map(|rate| Duration::from_secs_f64(1.0 / rate)),
            started,
            varied: config.varied,
        };
        let mut tasks = tokio::task::JoinSet::new();
        for (c, connection) in connections.into_iter().enumerate() {
            let count = config.requests / clients_n + usize::from(c < config.requests % clients_n);
            tasks.spawn(client_loop(plan, connection, c, count));
        }
        let mut measured = Measured::default();
        while let Some(joined) = tasks.join_next().await {
            let done = joined.map_err(|_| load_error("a client task panicked")).and_then(|result| result);
            match done {
                Ok(one) => measured.absorb(one),
                Err(e) => {
                    // The first failure is the one to report: the others follow from it.
                    tasks.abort_all();
                    return Err(e);
                }
            }
        }
        Ok((measured, started))
    });
    let (mut measured, started) = match outcome {
        Ok(done) => done,
        Err(e) => {
            // The server's own error, if it stopped, says more than the client's.
            server.stop()?;
            return Err(e);
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let after = counters(&observer)?;
    server.stop()?;
    let placed_in_answers = measured.placed;
    let delta = |i: usize| after[i] - before[i];
    // Counts in a gauge are whole numbers well below 2^53.
    let decisions = delta(0) as u64;
    debug_assert!(decisions >= placed_in_answers, "every job an answer showed placed was counted");
    let percentiles = |values: &mut Vec<f64>| -> [f64; 3] {
        values.sort_by(f64::total_cmp);
        let at =
            |p: f64| values.get(((values.len() as f64 * p).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0.0);
        [at(0.50), at(0.99), values.last().copied().unwrap_or(0.0)]
    };
    Ok(LoadReport {
        backend,
        in_system: config.in_system as u64,
        placed_before,
        clients: config.clients as u64,
        batch: config.batch as u64,
        window_ms: config.window.as_secs_f64() * 1e3,
        rate: config.rate,
        varied: config.varied,
        fill_s,
        submissions: measured.submits.len() as u64,
        finishes: measured.finishes.len() as u64,
        decisions,
        seconds,
        decisions_per_s: decisions as f64 / seconds,
        submissions_per_s: measured.submits.len() as f64 / seconds,
        requests_per_s: (measured.submits.len() + measured.finishes.len()) as f64 / seconds,
        rounds: delta(1) as u64,
        round_s: delta(2),
        commits: delta(3) as u64,
        commit_s: delta(4),
        submit_ms: percentiles(&mut measured.submits),
        finish_ms: percentiles(&mut measured.finishes),
        send_lag_ms: config.rate.map(|_| percentiles(&mut measured.lags)),
    })
}

/// What every client of a run shares.
#[derive(Clone, Copy)]
struct Plan {
    clients: usize,
    batch: usize,
    /// Open loop: the time between two submissions, all clients together.
    interval: Option<Duration>,
    started: Instant,
    varied: bool,
}

/// What the clients measured: latencies, ms, and jobs their answers showed placed.
#[derive(Default)]
struct Measured {
    submits: Vec<f64>,
    finishes: Vec<f64>,
    /// Open loop: how late each submission was sent after it was due (the generator's own delay).
    lags: Vec<f64>,
    placed: u64,
}

impl Measured {
    fn absorb(&mut self, other: Measured) {
        self.submits.extend(other.submits);
        self.finishes.extend(other.finishes);
        self.lags.extend(other.lags);
        self.placed += other.placed;
    }
}

/// One client: its connection, and its share of the submissions (submission `r` of client `c` is
/// the `r * clients + c`-th overall, due then in the open loop).
async fn client_loop(plan: Plan, mut connection: Connection, c: usize, count: usize) -> Result<Measured, ServeError> {
    let Plan { clients, batch, interval, started, varied } = plan;
    let mut measured = Measured { submits: Vec::with_capacity(count), ..Measured::default() };
    for r in 0..count {
        let due = interval.map(|every| started + every.mul_f64((r * clients + c) as f64));
        if let Some(due) = due {
            tokio::time::sleep_until(due.into()).await;
        }
        let ids: Vec<String> = (0..batch).map(|b| format!("load-{c}-{r}-{b}")).collect();
        let jobs: Vec<Job> = ids
            .iter()
            .enumerate()
            .map(|(b, id)| measured_job(id.clone(), (r * clients + c) * batch + b, varied))
            .collect();
        let body = serde_json::to_vec(&jobs).expect("jobs serialize");
        let now = Instant::now();
        if let Some(due) = due {
            measured.lags.push(now.saturating_duration_since(due).as_secs_f64() * 1e3);
        }
        // The open loop counts from when the submission was due, late or not.
        let from = due.unwrap_or(now);
        let answer = connection.post("/v1/jobs", body).await?;
        measured.submits.push(from.elapsed().as_secs_f64() * 1e3);
        let answer: crate::api::JobsResponse = serde_json::from_slice(&answer)
            .map_err(|e| load_error(format!("a submission's answer does not read: {e}")))?;
        for job in &answer.jobs {
            measured.placed += u64::from(job.state == crate::api::JobState::Placed);
            let t = Instant::now();
            // The ids are made here of letters, digits and `-`: nothing to escape in the path.
            connection.post(&format!("/v1/jobs/{}/finish", job.id), Vec::new()).await?;
            measured.finishes.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(measured)
}

/// One HTTP/1.1 connection to the server, kept alive.
struct Connection {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<hyper::body::Bytes>>,
    host: String,
}

impl Connection {
    async fn open(address: std::net::SocketAddr) -> Result<Connection, ServeError> {
        let fail = |e: &dyn std::fmt::Display| load_error(format!("cannot connect to {address}: {e}"));
        let stream = tokio::net::TcpStream::connect(address).await.map_err(|e| fail(&e))?;
        stream.set_nodelay(true).map_err(|e| fail(&e))?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| fail(&e))?;
        // The connection is driven by a task of its own; it ends when the sender is dropped.
        tokio::spawn(connection);
        Ok(Connection { sender, host: address.to_string() })
    }

    /// POSTs `body` to `path`; the answer's body, or an error naming the status and the answer.
    async fn post(&mut self, path: &str, body: Vec<u8>) -> Result<hyper::body::Bytes, ServeError> {
        use http_body_util::BodyExt;
        let fail = |message: String| ServeError::Client { url: path.to_string(), status: None, message };
        let request = hyper::Request::post(path)
            .header(hyper::header::HOST, &self.host)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))
            .map_err(|e| fail(e.to_string()))?;
        self.sender.ready().await.map_err(|e| fail(e.to_string()))?;
        let response = self.sender.send_request(request).await.map_err(|e| fail(e.to_string()))?;
        let status = response.status();
        let bytes = response.into_body().collect().await.map_err(|e| fail(e.to_string()))?.to_bytes();
        if !status.is_success() {
            return Err(ServeError::Client {
                url: path.to_string(),
                status: Some(status.as_u16()),
                message: format!("{}: {}", status.as_u16(), String::from_utf8_lossy(&bytes).trim()),
            });
        }
        Ok(bytes)
    }
}
