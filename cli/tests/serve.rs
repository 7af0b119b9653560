//! `gpuplace serve` killed with SIGKILL at random moments under load, many times: each restart
//! restores exactly what the clients were answered (every acknowledged job is there, an
//! acknowledged finish stays finished, a placement a client saw is the placement after the restart,
//! and the restored placements fit the fleet together). Also: the command's clients `submit`,
//! `status` and `finish` against it, their exit codes, and SIGTERM stopping it with exit 0.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::temp_dir;
use gpuplace::model::fleet::{ClusterFile, FleetFile, RackTypeFile, SiteFile};
use gpuplace::{Day, Job, JobKind};
use gpuplace_serve::api::{JobState, JobView};
use gpuplace_serve::{Client, ServeError};

fn fleet_file(dir: &Path) -> String {
    let fleet = FleetFile::new(["us"])
        .with_as_of(Day(20_300))
        .with_rack_type("hgx", RackTypeFile::new("H100", 8, 80, 10.0))
        .with_rack_type("nvl72", RackTypeFile::new("GB300", 72, 288, 135.0))
        .with_site(
            SiteFile::new("texas", "IREN", "US", "US", 2.0, Day(0))
                .with_latency_ms("us", 5)
                .with_cluster(ClusterFile::new("t1", "nvl72", 4))
                .with_cluster(ClusterFile::new("t2", "hgx", 16)),
        );
    let path = dir.join("fleet.json");
    std::fs::write(&path, fleet.to_json()).unwrap();
    path.display().to_string()
}

/// Starts the server and returns it with its base URL (read from its first line on stderr) and the
/// rest of its stderr (kept open: a server writing to a closed pipe would die of SIGPIPE).
fn start_with_stderr(fleet: &str, state: &Path) -> (Child, String, BufReader<std::process::ChildStderr>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gpuplace"))
        .args(["serve", "--fleet", fleet, "--listen", "127.0.0.1:0", "--backend", "cpu", "--batch-window-ms", "1"])
        .arg("--state")
        .arg(state)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    reader.read_line(&mut line).unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in `{line}`"))
        .to_string();
    (child, url, reader)
}

/// [`start_with_stderr`], for a server that will be killed.
fn start(fleet: &str, state: &Path) -> (Child, String) {
    let (child, url, reader) = start_with_stderr(fleet, state);
    // Drained in the background until the server dies.
    std::thread::spawn(move || reader.lines().for_each(drop));
    (child, url)
}

/// What the clients were told, and what they asked that was not answered.
#[derive(Default)]
struct Log {
    /// Jobs whose submission was answered.
    accepted: BTreeSet<String>,
    /// The last placement a client saw for each job.
    placed: BTreeMap<String, JobView>,
    /// Jobs whose finish was answered.
    finished: BTreeSet<String>,
    /// Jobs a finish was sent for (answered or not).
    finish_sent: BTreeSet<String>,
}

fn job(id: &str, n: u64) -> Job {
    Job::new(id, JobKind::Inference, [1, 2, 4, 8, 16, 72][(n % 6) as usize], "us")
        .with_priority((n % 3) as i32)
        .with_duration_h(1.0)
}

#[test]
fn a_killed_server_restores_exactly_what_it_acknowledged() {
    let dir = temp_dir("serve-kill");
    let fleet = fleet_file(&dir);
    let state = dir.join("state");
    let log = Arc::new(Mutex::new(Log::default()));
    let mut seed = 0x5EED_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut submitted_total = 0;
    for cycle in 0..8u64 {
        let (mut child, url) = start(&fleet, &state);
        // Clients hammer it while the test waits a random time, then kills it.
        let stop_at = Instant::now() + Duration::from_millis(50 + next() % 400);
        let workers: Vec<_> = (0..3u64)
            .map(|w| {
                let (url, log) = (url.clone(), Arc::clone(&log));
                std::thread::spawn(move || {
                    let client = Client::new(&url, None);
                    let mut n = 0u64;
                    while Instant::now() < stop_at {
                        n += 1;
                        let id = format!("c{cycle}-w{w}-{n}");
                        let body = serde_json::to_vec(&job(&id, n + w)).unwrap();
                        let Ok(answer) = client.submit(&body) else { break };
                        let mut guard = log.lock().unwrap();
                        guard.accepted.insert(id.clone());
                        if answer.jobs[0].state == JobState::Placed {
                            guard.placed.insert(id.clone(), answer.jobs[0].clone());
                        }
                        // Every third submission of a worker finishes one of its placed jobs.
                        let mine = format!("-w{w}-");
                        let victim =
                            guard.placed.keys().find(|k| !guard.finish_sent.contains(*k) && k.contains(&mine)).cloned();
                        if n.is_multiple_of(3)
                            && let Some(victim) = victim
                        {
                            guard.finish_sent.insert(victim.clone());
                            drop(guard);
                            match client.finish_job(&victim) {
                                Ok(_) => {
                                    log.lock().unwrap().finished.insert(victim);
                                }
                                Err(ServeError::Client { status: Some(status), message, .. }) => {
                                    panic!("finish {victim}: {status} {message}")
                                }
                                Err(_) => break,
                            }
                        }
                    }
                    n
                })
            })
            .collect();
        std::thread::sleep(stop_at.saturating_duration_since(Instant::now()));
        child.kill().unwrap();
        child.wait().unwrap();
        for worker in workers {
            submitted_total += worker.join().unwrap();
        }
        // Restart and compare with what was acknowledged.
        let (mut child, url) = start(&fleet, &state);
        let client = Client::new(&url, None);
        let mut all = client.list(None, None, Some(10_000)).unwrap();
        while all.total.is_some_and(|t| t > all.jobs.len() as u64) {
            let after = all.jobs.last().unwrap().submitted;
            let more = client.list(None, Some(after), Some(10_000)).unwrap();
            assert!(!more.jobs.is_empty());
            all.jobs.extend(more.jobs);
        }
        let by_id: BTreeMap<&str, &JobView> = all.jobs.iter().map(|j| (j.id.as_str(), j)).collect();
        let log = log.lock().unwrap();
        for id in &log.accepted {
            let view = by_id.get(id.as_str()).unwrap_or_else(|| panic!("cycle {cycle}: acknowledged job {id} is lost"));
            if log.finished.contains(id) {
                assert_eq!(view.state, JobState::Finished, "cycle {cycle}: {id} was finished");
            } else if let Some(seen) = log.placed.get(id) {
                if log.finish_sent.contains(id) && view.state == JobState::Finished {
                    continue; // finished by a request whose answer the kill cut off
                }
                assert_eq!(view.state, JobState::Placed, "cycle {cycle}: {id} was placed");
                assert_eq!(view.placement, seen.placement, "cycle {cycle}: {id} moved");
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let log = log.lock().unwrap();
    assert!(
        log.accepted.len() > 50 && !log.finished.is_empty(),
        "too little load: {} accepted, {submitted_total} sent",
        log.accepted.len()
    );
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gpuplace")).args(args).output().unwrap()
}

/// Fails unless `text` is a valid document of schema `name` (`gpuplace schema NAME`).
fn assert_valid(name: &str, text: &str) {
    let schema: serde_json::Value = serde_json::from_slice(&run(&["schema", name]).stdout).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let instance: serde_json::Value = serde_json::from_str(text).unwrap();
    let errors: Vec<String> =
        validator.iter_errors(&instance).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{name}: {errors:?}\n{text}");
}

#[test]
fn the_clients_work_against_the_server_and_sigterm_stops_it_cleanly() {
    let dir = temp_dir("serve-clients");
    let fleet = fleet_file(&dir);
    let state = dir.join("state");
    let (mut child, url, mut server_stderr) = start_with_stderr(&fleet, &state);
    let jobs = dir.join("jobs.json");
    std::fs::write(&jobs, serde_json::to_string(&[job("a", 0), job("b", 3), job("c", 5)]).unwrap()).unwrap();
    let output = run(&["submit", jobs.to_str().unwrap(), "--server", &url]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<JobView> =
        String::from_utf8(output.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
    assert!(lines.iter().all(|j| j.state == JobState::Placed), "the fleet has room for three jobs");
    let output = run(&["status", "b", "--server", &url]);
    assert_valid("api-job", &String::from_utf8_lossy(&output.stdout));
    let view: JobView = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!((view.id.as_str(), view.state), ("b", JobState::Placed));
    let output = run(&["status", "--state-filter", "placed", "--limit", "1", "--server", &url]);
    assert_eq!(String::from_utf8(output.stdout).unwrap().lines().count(), 1);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--after 0"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = run(&["status", "--state-filter", "placed", "--after", "0", "--server", &url]);
    assert_eq!(String::from_utf8(output.stdout).unwrap().lines().count(), 2);
    let output = run(&["finish", "b", "--server", &url]);
    let view: JobView = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(view.state, JobState::Finished);
    // The answers of the other routes against their schemas.
    let client = Client::new(&url, None);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    for (path, name) in [("/v1/jobs", "api-jobs"), ("/v1/fleet", "api-fleet"), ("/v1/jobs/nobody", "api-error")] {
        let text = agent.get(&format!("{url}{path}")).call().unwrap().body_mut().read_to_string().unwrap();
        assert_valid(name, &text);
    }
    assert_valid("api-submit", &serde_json::to_string(&job("x", 1)).unwrap());
    let too_big = Job::new("too-big", JobKind::Training, 576, "us").with_duration_h(1.0);
    assert_eq!(client.submit(&serde_json::to_vec(&too_big).unwrap()).unwrap().jobs[0].state, JobState::Waiting);
    let output = run(&["status", "too-big", "--explain", "--server", &url]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_valid("api-explain", &String::from_utf8_lossy(&output.stdout));
    assert_valid("api-submit", &std::fs::read_to_string(&jobs).unwrap());
    let event = r#"{"event": "node", "cluster": "t2", "rack": 0, "node": 0, "state": "cordoned"}"#;
    assert_valid("api-events", event);
    let answer = client.events(event.as_bytes()).unwrap();
    assert_valid("api-events-answer", &serde_json::to_string(&answer).unwrap());
    // Refused (4xx): exit 2, one line. No server: exit 3.
    let output = run(&["finish", "nobody", "--server", &url]);
    let error = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(2), "{error}");
    assert!(error.contains("404") && error.trim().lines().count() == 1, "{error}");
    let output = run(&["status", "--server", "http://127.0.0.1:1"]);
    assert_eq!(output.status.code(), Some(3));
    // SIGTERM: requests finish, state is flushed, exit 0.
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut server_stderr, &mut rest).unwrap();
    assert_eq!(status.code(), Some(0), "{rest}");
    assert!(rest.contains("stopped"), "{rest}");
    // And it comes back with the same jobs.
    let (mut child, url) = start(&fleet, &state);
    let client = Client::new(&url, None);
    assert_eq!(client.job("b").unwrap().state, JobState::Finished);
    assert_eq!(client.job("a").unwrap().placement, lines[0].placement);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn the_load_generator_measures_and_its_json_reads_back() {
    let dir = temp_dir("serve-load");
    let json = dir.join("load.json");
    let output = run(&[
        "load",
        "--in-system",
        "300",
        "--keep-placed",
        "100",
        "--requests",
        "40",
        "--clients",
        "2",
        "--batch",
        "2",
        "--json",
    ]
    .into_iter()
    .chain([json.to_str().unwrap()])
    .collect::<Vec<_>>());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = std::fs::read_to_string(&json).unwrap();
    let report: gpuplace::report::Versioned<gpuplace_serve::load::LoadReport> = serde_json::from_str(&text).unwrap();
    let report = report.body;
    assert_eq!((report.in_system, report.placed_before, report.submissions, report.finishes), (300, 100, 40, 80));
    assert_eq!(report.decisions, 80, "the fleet has room for every job submitted");
    assert!(
        report.decisions_per_s > 0.0
            && report.submit_ms[0] <= report.submit_ms[1]
            && report.submit_ms[1] <= report.submit_ms[2]
    );
    // The server's side: rounds placed the jobs, commits made them durable.
    assert!(report.rounds >= 1 && report.commits >= 1 && report.round_s > 0.0 && report.commit_s > 0.0, "{report:?}");
    assert_eq!(report.rate, None);
    // The same text table on standard output.
    assert!(String::from_utf8_lossy(&output.stdout).contains("decisions/s"));
    // The open loop: submissions due at a rate, the rate asked for in the report. 40 submissions
    // at 200 per second take at least the 0.195 s until the last is due.
    let output = run(&[
        "load",
        "--in-system",
        "50",
        "--requests",
        "40",
        "--clients",
        "3",
        "--rate",
        "200",
        "--varied",
        "--json",
        "-",
    ]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: gpuplace::report::Versioned<gpuplace_serve::load::LoadReport> =
        serde_json::from_slice(&output.stdout).unwrap();
    let report = report.body;
    assert_eq!((report.rate, report.varied, report.submissions, report.decisions), (Some(200.0), true, 40, 40));
    assert!(report.seconds >= 39.0 / 200.0, "{report:?}");
}
