//! `gpuplace serve` killed with SIGKILL at random moments under load, many times: each restart
//! restores exactly what the clients were answered (every acknowledged job is there, an
//! acknowledged finish stays finished, a placement a client saw is the placement after the restart,
//! and the restored placements fit the fleet together). Also: SIGTERM stops it cleanly, with exit 0,
//! and the clients `submit`, `status` and `finish` work against it.

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

/// Starts the server and returns it with its base URL (read from its first line on stderr).
fn start(fleet: &str, state: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gpuplace"))
        .args(["serve", "--fleet", fleet, "--listen", "127.0.0.1:0", "--backend", "cpu", "--batch-window-ms", "1"])
        .arg("--state")
        .arg(state)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap()).read_line(&mut line).unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in `{line}`"))
        .to_string();
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
        let all = client.list(None, Some(100_000)).unwrap();
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
