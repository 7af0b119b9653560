//! The service against its definition: each round decides as the batch engine does on the same
//! state and the same waiting jobs; a restart restores exactly what was committed; a damaged state
//! file is refused and left as it is; the HTTP API answers each route and refuses bad requests
//! with the right status and a one-line message.

use std::path::Path;

use gpuplace::engine::place::Outcome;
use gpuplace::model::fleet::{ClusterFile, FleetFile, RackTypeFile, SiteFile};
use gpuplace::{BackendChoice, Day, Fleet, Job, JobKind, Policy, Scheduler, Workload};
use gpuplace_serve::api::JobState;
use gpuplace_serve::{Client, ServeError, Server, ServerConfig, Service, ServiceConfig};

const DAY: Day = Day(20_300);

/// A small contended fleet: two sites, 8-GPU and 72-GPU racks, one site short of power.
fn fleet() -> Fleet {
    FleetFile::new(["us", "eu"])
        .with_as_of(DAY)
        .with_rack_type("hgx", RackTypeFile::new("H100", 8, 80, 10.0))
        .with_rack_type("nvl72", RackTypeFile::new("GB300", 72, 288, 135.0))
        .with_site(
            SiteFile::new("texas", "IREN", "US", "US", 0.5, Day(0))
                .with_latency_ms("us", 5)
                .with_latency_ms("eu", 90)
                .with_cluster(ClusterFile::new("t1", "nvl72", 3)),
        )
        .with_site(
            SiteFile::new("sines", "Nscale", "PT", "EU", 20.0, Day(0))
                .with_latency_ms("us", 95)
                .with_latency_ms("eu", 10)
                .with_cluster(ClusterFile::new("s1", "hgx", 6)),
        )
        .build("<test fleet>")
        .unwrap()
}

fn open(dir: &Path, fleet: Option<Fleet>) -> Result<Service, ServeError> {
    open_with(dir, fleet, false)
}

fn open_with(dir: &Path, fleet: Option<Fleet>, preemption: bool) -> Result<Service, ServeError> {
    open_with_tenants(dir, fleet, preemption, None)
}

fn open_with_tenants(
    dir: &Path,
    fleet: Option<Fleet>,
    preemption: bool,
    tenants: Option<gpuplace::Tenants>,
) -> Result<Service, ServeError> {
    Service::open(ServiceConfig {
        fleet,
        policy: None,
        backend: BackendChoice::Cpu,
        state_dir: dir.to_path_buf(),
        preemption,
        tenants,
    })
}

/// A job of `gpus` GPUs with priority `priority`.
fn job(id: &str, gpus: u32, priority: i32) -> Job {
    Job::new(id, JobKind::Training, gpus, "us").with_priority(priority).with_duration_h(1.0)
}

fn body(jobs: &[Job]) -> Vec<u8> {
    serde_json::to_vec(jobs).unwrap()
}

/// Submits `jobs`, runs the round and commits, as the server does for one batch.
fn batch(service: &mut Service, jobs: &[Job], finish: &[&str]) {
    if !jobs.is_empty() {
        service.submit(&body(jobs)).unwrap();
    }
    for id in finish {
        service.finish(id).unwrap();
    }
    if service.round_needed() {
        service.run_round().unwrap();
    }
    service.commit().unwrap();
}

fn all_views(service: &Service) -> Vec<gpuplace_serve::JobView> {
    service.list(None, None, usize::MAX).0
}

#[test]
fn each_round_decides_as_the_batch_engine_on_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut service = open(dir.path(), Some(fleet())).unwrap();
    // The batch engine, fed what the service waits on at each round.
    let mut mirror = Scheduler::new(fleet(), Policy::default(), BackendChoice::Cpu).unwrap();
    let mut waiting: Vec<Job> = Vec::new();
    let mut placed_ids: Vec<String> = Vec::new();
    let mut seed = 7u64;
    let mut next = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        seed >> 33
    };
    let mut compared = 0;
    for round in 0..40 {
        let jobs: Vec<Job> = (0..1 + next() % 6)
            .map(|i| job(&format!("r{round}-{i}"), [1, 4, 8, 16, 72, 144][(next() % 6) as usize], (next() % 4) as i32))
            .collect();
        let finish: Vec<String> = if round % 3 == 2 && !placed_ids.is_empty() {
            let k = (next() as usize) % placed_ids.len();
            vec![placed_ids.swap_remove(k)]
        } else {
            Vec::new()
        };
        for id in &finish {
            mirror.release(id).unwrap();
        }
        waiting.extend(jobs.iter().cloned());
        let refs: Vec<&str> = finish.iter().map(String::as_str).collect();
        batch(&mut service, &jobs, &refs);
        let workload = Workload::from_jobs(waiting.clone(), "<waiting>");
        // The service places on today (or the fleet's as_of while that is later).
        let placement = mirror.place(&workload, Some(Day::today().max(DAY))).unwrap();
        let mut still = Vec::new();
        for decision in &placement.decisions {
            let job = &workload.jobs[decision.job];
            let view = service.job(&job.id).unwrap();
            match &decision.outcome {
                Outcome::Placed { allocation, score } => {
                    assert_eq!(view.state, JobState::Placed, "round {round}: {}", job.id);
                    let expected = gpuplace::engine::PlacedOn::new(mirror.fleet(), allocation, *score);
                    assert_eq!(view.placement.as_ref(), Some(&expected), "round {round}: {}", job.id);
                    placed_ids.push(job.id.clone());
                }
                _ => {
                    assert_eq!(view.state, JobState::Waiting, "round {round}: {}", job.id);
                    assert!(view.reason.is_some(), "a waiting job says why");
                    still.push(job.clone());
                }
            }
            compared += 1;
        }
        waiting = still;
        assert_eq!(service.scheduler().ledger().state(), mirror.ledger().state(), "round {round}");
    }
    assert!(compared > 200 && !waiting.is_empty(), "the fleet must be contended ({compared}, {})", waiting.len());
}

/// With preemption, each round (and the rounds that follow evictions at once) decides as the
/// library's placement plus preemption pass on the same state: the same placements, the same
/// victims, queued again as `preempted` with the job that evicted them named; and a restart
/// restores it all.
#[test]
fn with_preemption_rounds_decide_as_the_library_and_restart_exactly() {
    rounds_decide_as_the_library_and_restart_exactly(true, None);
}

/// The same with tenants (three, their quotas 40% of the fleet's GPUs, one of them borrowing at
/// most 8): rounds decide in the phases of the quotas and reclaim what is borrowed, with and
/// without preemption; the tenants survive the restarts (given only at the first start).
#[test]
fn with_tenants_rounds_decide_as_the_library_and_restart_exactly() {
    let tenants = gpuplace::Tenants::new(
        vec![
            gpuplace::Tenant::new("a", 40).with_weight(2),
            gpuplace::Tenant::new("b", 40).with_borrow_limit(8),
            gpuplace::Tenant::new("c", 40),
        ],
        "<tenants>",
    )
    .unwrap();
    for preemption in [false, true] {
        rounds_decide_as_the_library_and_restart_exactly(preemption, Some(tenants.clone()));
    }
}

fn rounds_decide_as_the_library_and_restart_exactly(preemption: bool, tenants: Option<gpuplace::Tenants>) {
    let dir = tempfile::tempdir().unwrap();
    let mut service = open_with_tenants(dir.path(), Some(fleet()), preemption, tenants.clone()).unwrap();
    let mut mirror = Scheduler::new(fleet(), Policy::default(), BackendChoice::Cpu).unwrap();
    mirror.set_tenants(tenants.clone()).unwrap();
    // What the mirror waits on, by submission number (the service's round order).
    let mut waiting: std::collections::BTreeMap<usize, Job> = Default::default();
    let mut submitted = 0usize;
    let mut placed_ids: Vec<String> = Vec::new();
    // Jobs evicted and not placed since, with the job that evicted them last.
    let mut preempted_by: std::collections::BTreeMap<String, String> = Default::default();
    let mut seed = 11u64;
    let mut next = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        seed >> 33
    };
    let date = Day::today().max(DAY);
    let (mut evictions, mut rounds_after_evictions, mut reclaims) = (0, 0, 0);
    for round in 0..40 {
        let jobs: Vec<Job> = (0..1 + next() % 5)
            .map(|i| {
                let job = job(&format!("r{round}-{i}"), [1, 4, 8, 16, 72][(next() % 5) as usize], (next() % 6) as i32);
                // With tenants, "a" submits early and much (it borrows), "b" and "c" later.
                let tenant = if round < 12 {
                    ["a", "a", "b"][(next() % 3) as usize]
                } else {
                    ["a", "b", "c"][(next() % 3) as usize]
                };
                if tenants.is_some() { job.with_tenant(tenant) } else { job }
            })
            .collect();
        let finish: Vec<String> = if round % 4 == 3 && !placed_ids.is_empty() {
            let k = (next() as usize) % placed_ids.len();
            vec![placed_ids.swap_remove(k)]
        } else {
            Vec::new()
        };
        for id in &finish {
            mirror.release(id).unwrap();
        }
        for job in &jobs {
            waiting.insert(submitted, job.clone());
            submitted += 1;
        }
        // The service: the batch's round, then at once the rounds evictions call for.
        service.submit(&body(&jobs)).unwrap();
        for id in &finish {
            service.finish(id).unwrap();
        }
        while service.round_needed() {
            service.run_round().unwrap();
        }
        service.commit().unwrap();
        // The mirror: placement then the preemption pass, again while jobs of earlier rounds
        // were evicted.
        loop {
            let numbers: Vec<usize> = waiting.keys().copied().collect();
            let workload = Workload::from_jobs(waiting.values().cloned().collect(), "<waiting>");
            let compiled = mirror.compile(&workload, date).unwrap();
            let all: Vec<usize> = (0..workload.jobs.len()).collect();
            let (decisions, _, _) = mirror
                .place_compiled(&compiled, &all, gpuplace::engine::place::Reasons::Worded, &mut |_, _| {})
                .unwrap();
            let unplaced: Vec<usize> =
                decisions.iter().filter(|d| matches!(d.outcome, Outcome::Unplaced { .. })).map(|d| d.job).collect();
            let reasons = gpuplace::engine::place::Reasons::Worded;
            let pass = if preemption {
                mirror.preempt(&compiled, &unplaced, reasons).unwrap()
            } else {
                mirror.reclaim(&compiled, &unplaced, reasons).unwrap()
            };
            for (job, number) in workload.jobs.iter().zip(&numbers) {
                if mirror.allocation(&job.id).is_some() {
                    waiting.remove(number);
                    placed_ids.push(job.id.clone());
                    preempted_by.remove(&job.id);
                }
            }
            let earlier: Vec<_> = pass.evictions.iter().filter(|e| e.job.is_none()).collect();
            for eviction in &earlier {
                let by = &workload.jobs[eviction.by];
                assert!(
                    eviction.reclaim || by.priority > eviction.priority,
                    "round {round}: evicted by an equal or lower priority"
                );
                reclaims += usize::from(eviction.reclaim);
                preempted_by.insert(eviction.id.clone(), by.id.clone());
                placed_ids.retain(|id| id != &eviction.id);
                let number = service.job(&eviction.id).unwrap().submitted as usize;
                waiting.insert(number, service.submitted_job(&eviction.id).expect("a known job").clone());
            }
            evictions += pass.evictions.len();
            if earlier.is_empty() {
                break;
            }
            rounds_after_evictions += 1;
        }
        assert_eq!(service.scheduler().ledger().state(), mirror.ledger().state(), "round {round}");
        for view in all_views(&service) {
            match mirror.allocation(&view.id) {
                Some(allocation) => {
                    assert_eq!(view.state, JobState::Placed, "round {round}: {}", view.id);
                    let placed = view.placement.as_ref().unwrap();
                    let expected = gpuplace::engine::PlacedOn::new(mirror.fleet(), allocation, placed.score);
                    assert_eq!(placed, &expected, "round {round}: {}", view.id);
                }
                None => match preempted_by.get(&view.id) {
                    Some(by) => {
                        assert_eq!(view.state, JobState::Preempted, "round {round}: {}", view.id);
                        let reason = view.reason.clone().unwrap_or_default();
                        assert!(reason.contains(&format!("by job `{by}`")), "round {round}: {reason}");
                    }
                    None => assert_ne!(view.state, JobState::Placed, "round {round}: {}", view.id),
                },
            }
        }
        if round % 10 == 9 {
            let before: Vec<_> = all_views(&service).into_iter().map(|v| (v.id, v.state, v.placement)).collect();
            drop(service);
            service = open_with(dir.path(), None, preemption).unwrap();
            assert_eq!(service.scheduler().tenants(), tenants.as_ref(), "round {round}: the tenants are kept");
            while service.round_needed() {
                service.run_round().unwrap();
            }
            let after: Vec<_> = all_views(&service).into_iter().map(|v| (v.id, v.state, v.placement)).collect();
            assert_eq!(after, before, "round {round}: the restart changed something");
        }
    }
    let preempted = service.list(Some(JobState::Preempted), None, usize::MAX).0;
    for view in &preempted {
        assert!(view.reason.as_deref().is_some_and(|r| !r.is_empty()), "{} says why", view.id);
    }
    println!(
        "evictions {evictions} ({reclaims} reclaims), rounds after evictions {rounds_after_evictions}, preempted now {}",
        preempted.len()
    );
    assert!(evictions >= 5 && rounds_after_evictions >= 2, "too few evictions to tell ({evictions})");
    if tenants.is_some() {
        assert!(reclaims >= 3, "too few reclaims to tell ({reclaims})");
        assert_eq!(service.scheduler().tenant_held_milli(), mirror.tenant_held_milli());
    }
}

#[test]
fn a_restart_restores_exactly_what_was_committed() {
    let dir = tempfile::tempdir().unwrap();
    let mut service = open(dir.path(), Some(fleet())).unwrap();
    let jobs: Vec<Job> = (0..30).map(|i| job(&format!("j{i}"), [1, 8, 72][i % 3], (i % 5) as i32)).collect();
    batch(&mut service, &jobs[..20], &[]);
    batch(&mut service, &jobs[20..], &["j0", "j3"]);
    let before = all_views(&service);
    let state = service.scheduler().ledger().state().clone();
    assert!(before.iter().any(|v| v.state == JobState::Waiting) && before.iter().any(|v| v.state == JobState::Placed));
    // Changes not committed are not there after a restart (as after a crash before the commit).
    service.submit(&body(&[job("lost", 1, 9)])).unwrap();
    drop(service);
    let reopened = open(dir.path(), None).unwrap();
    let after: Vec<_> = all_views(&reopened);
    // Reasons of waiting jobs are worked out by the first round; compare the rest.
    let strip = |views: &[gpuplace_serve::JobView]| {
        views.iter().map(|v| (v.id.clone(), v.state, v.placement.clone(), v.round)).collect::<Vec<_>>()
    };
    assert_eq!(strip(&after), strip(&before));
    assert_eq!(reopened.scheduler().ledger().state(), &state);
    assert!(reopened.job("lost").is_err());
    // The same fleet given again is accepted; another is refused, naming the fleet.
    drop(reopened);
    assert!(open(dir.path(), Some(fleet())).is_ok());
    let other = FleetFile::new(["us"])
        .with_rack_type("hgx", RackTypeFile::new("H100", 8, 80, 10.0))
        .with_site(
            SiteFile::new("x", "p", "US", "US", 1.0, Day(0))
                .with_latency_ms("us", 1)
                .with_cluster(ClusterFile::new("c", "hgx", 1)),
        )
        .build("<other>")
        .unwrap();
    let error = open(dir.path(), Some(other)).err().expect("another fleet is refused").to_string();
    assert!(error.contains("meta fleet") && error.contains("another fleet"), "{error}");
}

#[test]
fn a_damaged_or_truncated_state_file_is_refused_and_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let mut service = open(dir.path(), Some(fleet())).unwrap();
    let jobs: Vec<Job> = (0..200).map(|i| job(&format!("j{i}"), 1 + (i % 8) as u32, 1)).collect();
    batch(&mut service, &jobs, &[]);
    drop(service);
    let file = dir.path().join(gpuplace_serve::store::STATE_FILE);
    let good = std::fs::read(&file).unwrap();
    let mut refused = 0;
    let damages: Vec<(&str, Vec<u8>)> = vec![
        ("truncated to half", good[..good.len() / 2].to_vec()),
        ("truncated to 100 bytes", good[..100].to_vec()),
        ("garbage", b"this is not a database, and it is long enough to have a header".repeat(100)),
        ("header flipped", {
            let mut bad = good.clone();
            for byte in &mut bad[..64] {
                *byte ^= 0x5A;
            }
            bad
        }),
    ];
    for (what, bytes) in damages {
        std::fs::write(&file, &bytes).unwrap();
        match open(dir.path(), None) {
            Ok(_) => panic!("{what}: a damaged state file was opened"),
            Err(e @ ServeError::State { .. }) => {
                let line = e.to_string();
                assert!(line.contains("gpuplace.redb") && !line.contains('\n'), "{what}: {line}");
                refused += 1;
            }
            Err(other) => panic!("{what}: {other}"),
        }
        assert_eq!(std::fs::read(&file).unwrap(), bytes, "{what}: the file was changed");
    }
    // The negative control: the good bytes open.
    std::fs::write(&file, &good).unwrap();
    assert_eq!(open(dir.path(), None).unwrap().job_count(), 200);
    assert_eq!(refused, 4);
    // A new state directory without a fleet is refused.
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(open(empty.path(), None), Err(ServeError::State { .. })));
}

fn start(dir: &Path, token: Option<&str>) -> (Server, Client) {
    let service = open(dir, Some(fleet())).unwrap();
    let config =
        ServerConfig { listen: "127.0.0.1:0".into(), token: token.map(String::from), ..ServerConfig::default() };
    let server = Server::start(service, config).unwrap();
    let client = Client::new(&format!("http://{}", server.address()), token.map(String::from));
    (server, client)
}

fn status_of(result: Result<impl std::fmt::Debug, ServeError>) -> u16 {
    match result {
        Err(ServeError::Client { status: Some(status), message, .. }) => {
            assert!(!message.contains('\n'), "{message}");
            status
        }
        other => panic!("expected an error status, got {other:?}"),
    }
}

#[test]
fn the_http_api_answers_every_route_and_refuses_bad_requests() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start(dir.path(), None);
    client.health().unwrap();
    // One job, an array, and the file's object form.
    let one = client.submit(&serde_json::to_vec(&job("a", 8, 3)).unwrap()).unwrap();
    assert_eq!(one.jobs.len(), 1);
    assert_eq!(one.jobs[0].state, JobState::Placed);
    assert!(one.jobs[0].placement.is_some());
    let two = client.submit(&body(&[job("b", 72, 2), job("c", 1, 1)])).unwrap();
    assert_eq!(two.jobs.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), ["b", "c"]);
    let file = serde_json::json!({"format_version": 1, "jobs": [job("d", 144, 0), job("e", 72, 0), job("f", 72, 0)]});
    let three = client.submit(file.to_string().as_bytes()).unwrap();
    assert_eq!(three.jobs.len(), 3);
    assert!(three.jobs.iter().any(|j| j.state == JobState::Waiting), "the small fleet makes someone wait");
    // A waiting job says why, with the racks rejected per constraint; a placed one is not explained.
    let waiting_id = three.jobs.iter().find(|j| j.state == JobState::Waiting).unwrap().id.clone();
    let why = client.explain(&waiting_id).unwrap();
    assert_eq!(why.job, waiting_id);
    assert!(why.decision.starts_with("cannot be placed now") && why.reason.is_some(), "{}", why.decision);
    assert_eq!(why.feasible_racks, 0);
    assert_eq!(status_of(client.explain("a")), 409);
    assert_eq!(status_of(client.explain("nobody")), 404);
    // Get, list, finish.
    assert_eq!(client.job("a").unwrap().state, JobState::Placed);
    let waiting = client.list(Some(JobState::Waiting), None, None).unwrap();
    assert!(
        waiting.total.unwrap() >= 1 && waiting.jobs.iter().all(|j| j.state == JobState::Waiting && j.reason.is_some())
    );
    let all = client.list(None, None, Some(2)).unwrap();
    assert_eq!((all.jobs.len(), all.total), (2, Some(6)));
    // Paging on with `after`: the next two, then the rest.
    let next = client.list(None, Some(all.jobs[1].submitted), Some(2)).unwrap();
    assert_eq!(next.jobs.iter().map(|j| j.submitted).collect::<Vec<_>>(), [2, 3]);
    let rest = client.list(None, Some(3), None).unwrap();
    assert_eq!(rest.jobs.iter().map(|j| j.submitted).collect::<Vec<_>>(), [4, 5]);
    let finished = client.finish_job("a").unwrap();
    assert_eq!(finished.state, JobState::Finished);
    assert!(finished.placement.is_none());
    let metrics = client.metrics().unwrap();
    for name in [
        "gpuplace_jobs{",
        "gpuplace_gpus{",
        "gpuplace_queue_jobs",
        "gpuplace_decisions_total",
        "gpuplace_request_latency_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}:\n{metrics}");
    }
    assert!(metrics.contains(r#"gpuplace_jobs{state="finished",kind="training"} 1"#), "{metrics}");
    // Refusals: status and one line naming what is wrong.
    assert_eq!(status_of(client.submit(b"{not json")), 400);
    assert_eq!(status_of(client.submit(b"[]")), 422);
    let bad = serde_json::json!([{"id": "g", "kind": "training", "gpus": 0, "hbm_gb_per_gpu": 80, "priority": 1, "region": "us"}]);
    match client.submit(bad.to_string().as_bytes()) {
        Err(ServeError::Client { status: Some(422), message, .. }) => {
            assert!(
                message.contains("request") && message.contains("record 0") && message.contains("gpus"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    let unknown_region = serde_json::json!({"id": "h", "kind": "training", "gpus": 1, "hbm_gb_per_gpu": 80, "priority": 1, "region": "mars"});
    assert_eq!(status_of(client.submit(unknown_region.to_string().as_bytes())), 422);
    assert_eq!(status_of(client.submit(&body(&[job("b", 1, 1)]))), 409, "an id already known");
    assert_eq!(status_of(client.submit(&body(&[job("x", 1, 1), job("x", 1, 1)]))), 409, "an id twice");
    assert_eq!(status_of(client.job("x")), 404, "a refused submission accepts none of its jobs");
    assert_eq!(status_of(client.job("nobody")), 404);
    assert_eq!(status_of(client.finish_job("nobody")), 404);
    assert_eq!(status_of(client.finish_job("a")), 409, "finished twice");
    // A job no cluster could ever hold is accepted as rejected.
    // (1 ms to "us": the nearest site is 5 ms away.)
    let never = client.submit(&body(&[job("too-far", 1, 1).with_max_latency_ms(1)])).unwrap();
    assert_eq!(never.jobs[0].state, JobState::Rejected);
    assert!(never.jobs[0].reason.as_deref().is_some_and(|r| r.contains("could ever hold")));
    assert_eq!(client.list(Some(JobState::Rejected), None, None).unwrap().total, Some(1));
    // Raw requests: a bad query, a body over the limit.
    let base = format!("http://{}", server.address());
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let status = agent.get(&format!("{base}/v1/jobs?state=sleeping")).call().unwrap().status().as_u16();
    assert_eq!(status, 400);
    let status = agent.get(&format!("{base}/v1/jobs?limit=-1")).call().unwrap().status().as_u16();
    assert_eq!(status, 400);
    let huge = vec![b' '; gpuplace_serve::server::MAX_BODY_BYTES + 1];
    let mut answer = agent.post(&format!("{base}/v1/jobs")).send(&huge[..]).unwrap();
    assert_eq!(answer.status().as_u16(), 413);
    let text = answer.body_mut().read_to_string().unwrap();
    assert!(serde_json::from_str::<gpuplace_serve::api::ErrorResponse>(&text).is_ok(), "{text}");
    // Unknown routes and methods answer JSON too.
    for (method, path, expected) in [("GET", "/v2/nothing", 404), ("DELETE", "/v1/jobs", 405)] {
        let request = ureq::http::Request::builder().method(method).uri(format!("{base}{path}")).body(()).unwrap();
        let mut answer = agent.run(request).unwrap();
        assert_eq!(answer.status().as_u16(), expected, "{method} {path}");
        let text = answer.body_mut().read_to_string().unwrap();
        assert!(text.starts_with("{\"error\":"), "{method} {path}: {text}");
    }
    client.health().unwrap();
    server.stop().unwrap();
}

#[test]
fn a_token_guards_every_route_but_health() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start(dir.path(), Some("s3cret"));
    client.submit(&body(&[job("a", 1, 1)])).unwrap();
    let anonymous = Client::new(&format!("http://{}", server.address()), None);
    anonymous.health().unwrap();
    assert_eq!(status_of(anonymous.job("a")), 401);
    assert_eq!(status_of(anonymous.submit(&body(&[job("b", 1, 1)]))), 401);
    let wrong = Client::new(&format!("http://{}", server.address()), Some("guess".into()));
    assert_eq!(status_of(wrong.metrics()), 401);
    assert_eq!(status_of(client.job("b")), 404, "the refused submission did nothing");
    server.stop().unwrap();
    // Beyond loopback without a token: refused before listening.
    let other = tempfile::tempdir().unwrap();
    let service = open(other.path(), Some(fleet())).unwrap();
    let config = ServerConfig { listen: "0.0.0.0:0".into(), ..ServerConfig::default() };
    assert!(matches!(Server::start(service, config), Err(ServeError::Listen { .. })));
}

#[test]
fn a_store_that_fails_stops_the_server_and_nothing_unwritten_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let mut service = open(dir.path(), Some(fleet())).unwrap();
    service.fail_after_commits(1);
    let config = ServerConfig { listen: "127.0.0.1:0".into(), ..ServerConfig::default() };
    let server = Server::start(service, config).unwrap();
    let client = Client::new(&format!("http://{}", server.address()), None);
    client.submit(&body(&[job("first", 1, 1)])).unwrap();
    assert_eq!(status_of(client.submit(&body(&[job("second", 1, 1)]))), 503);
    // The server stops by itself, with the store's error, though no request comes after.
    let (done, waited) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(server.wait()).unwrap());
    let result = waited.recv_timeout(std::time::Duration::from_secs(30)).expect("the server did not stop by itself");
    assert!(matches!(result, Err(ServeError::Store { .. })), "{result:?}");
    // What was answered is there; what was refused is not.
    let reopened = open(dir.path(), None).unwrap();
    assert!(reopened.job("first").is_ok());
    assert!(reopened.job("second").is_err());
}

#[test]
fn a_failed_write_of_several_batches_answers_none_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut service = open(dir.path(), Some(fleet())).unwrap();
    service.fail_after_commits(1);
    // Slow writes: the submissions below arrive while the first one's write waits, each is its
    // own batch, and the committer writes them together, in the write that fails.
    service.store().delay_writes(std::time::Duration::from_millis(300));
    let config = ServerConfig { listen: "127.0.0.1:0".into(), ..ServerConfig::default() };
    let server = Server::start(service, config).unwrap();
    let url = format!("http://{}", server.address());
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let first = scope.spawn(|| Client::new(&url, None).submit(&body(&[job("first", 1, 1)])).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(100));
        let senders: Vec<_> = (0..6)
            .map(|n| {
                let url = url.clone();
                scope.spawn(move || match Client::new(&url, None).submit(&body(&[job(&format!("second-{n}"), 1, 1)])) {
                    Ok(answer) => panic!("accepted after the store failed: {answer:?}"),
                    Err(ServeError::Client { status: Some(status), .. }) => status,
                    Err(other) => panic!("no answer: {other}"),
                })
            })
            .collect();
        first.join().unwrap();
        senders.into_iter().map(|s| s.join().unwrap()).collect()
    });
    assert_eq!(statuses, vec![503; 6]);
    assert!(matches!(server.wait(), Err(ServeError::Store { .. })));
    let reopened = open(dir.path(), None).unwrap();
    assert!(reopened.job("first").is_ok());
    for n in 0..6 {
        assert!(reopened.job(&format!("second-{n}")).is_err());
    }
}

#[test]
fn a_new_state_directory_keeps_its_fleet_before_any_request_and_an_empty_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path(), Some(fleet())).unwrap());
    let reopened = open(dir.path(), None).expect("the fleet was stored when the directory was made");
    assert_eq!(reopened.scheduler().fleet().to_json(), fleet().to_json());
    drop(reopened);
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join(gpuplace_serve::store::STATE_FILE), b"").unwrap();
    let error = open(empty.path(), Some(fleet())).err().expect("an empty file is refused").to_string();
    assert!(error.contains("is empty"), "{error}");
    assert_eq!(std::fs::read(empty.path().join(gpuplace_serve::store::STATE_FILE)).unwrap(), b"");
}

fn events(
    service: &mut Service,
    body: serde_json::Value,
) -> Result<Vec<gpuplace_serve::JobView>, gpuplace_serve::api::ApiError> {
    let parsed: Vec<gpuplace_serve::api::FleetEvent> = match body {
        serde_json::Value::Array(_) => serde_json::from_value(body).unwrap(),
        one => vec![serde_json::from_value(one).unwrap()],
    };
    let numbers = service.apply_events(&parsed)?;
    if service.round_needed() {
        service.run_round().unwrap();
    }
    service.commit().unwrap();
    Ok(numbers.into_iter().map(|n| service.view(n)).collect())
}

#[test]
fn fleet_events_requeue_what_they_displace_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut service = open(dir.path(), Some(fleet())).unwrap();
    // Two small jobs in sines (hgx racks; eu, priority 1 and 5), one kept to texas (nvl72) by its
    // latency bound.
    let eu = |id: &str, gpus: u32, priority: i32| {
        Job::new(id, JobKind::Inference, gpus, "eu").with_priority(priority).with_duration_h(1.0)
    };
    batch(&mut service, &[eu("low", 8, 1), eu("high", 8, 5), job("us", 4, 3).with_max_latency_ms(10)], &[]);
    let placed = |s: &Service, id: &str| s.job(id).unwrap().placement.unwrap();
    let low = placed(&service, "low");
    assert_eq!(low.site, "sines");
    // Fail the tray that holds `low`: it is requeued and placed again elsewhere (there is room).
    let pod = &low.pods[0];
    let requeued = events(&mut service, serde_json::json!({"event": "node", "cluster": low.cluster, "rack": pod.rack, "node": pod.node, "state": "failed"})).unwrap();
    assert_eq!(requeued.iter().map(|v| v.id.as_str()).collect::<Vec<_>>(), ["low"]);
    let again = placed(&service, "low");
    assert_ne!((again.racks[0].rack, again.pods[0].node), (pod.rack, pod.node), "placed on the failed tray again");
    let view = service.fleet_view(100);
    assert_eq!(view.nodes_not_ready_total, 1);
    // Cordon every other hgx rack but one; a new job goes to the one left.
    let cordon: Vec<serde_json::Value> = (0..6)
        .filter(|&r| r != 5)
        .map(|r| serde_json::json!({"event": "rack", "cluster": "s1", "rack": r, "state": "cordoned"}))
        .collect();
    let requeued = events(&mut service, serde_json::Value::Array(cordon)).unwrap();
    assert!(requeued.is_empty(), "cordoning requeues nothing");
    assert_eq!(service.job("low").unwrap().state, JobState::Placed, "pods on cordoned trays keep running");
    batch(&mut service, &[eu("new", 8, 1)], &[]);
    assert_eq!(placed(&service, "new").racks[0].rack, 5);
    // Cut sines' power to what one 8-GPU job draws: the lowest priority, then the latest, go first.
    let one_job_mw = 8.0 * 10.0 / 8.0 / 1000.0;
    let requeued =
        events(&mut service, serde_json::json!({"event": "site_power", "site": "sines", "power_mw": one_job_mw}))
            .unwrap();
    let ids: Vec<&str> = requeued.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&"new") && ids.contains(&"low"), "{ids:?}");
    assert_eq!(service.job("high").unwrap().state, JobState::Placed, "the highest priority stays");
    // Each requeued job is placed again within the power (here: at texas) or waits, saying why.
    for id in ["low", "new"] {
        let view = service.job(id).unwrap();
        match view.state {
            JobState::Placed => assert_eq!(view.placement.unwrap().site, "texas", "{id}"),
            JobState::Waiting => assert!(view.reason.is_some(), "{id}"),
            other => panic!("{id} is {other:?}"),
        }
    }
    let sines = &service.fleet_view(100).sites[1];
    assert!(sines.drawn_mw <= sines.power_mw + 1e-9, "{sines:?}");
    // Bring a cluster's online day far ahead, then a restart: everything as it was.
    events(&mut service, serde_json::json!({"event": "cluster_online", "cluster": "t1", "online": "2100-01-01"}))
        .unwrap();
    let before = (all_views(&service), service.fleet_view(100), service.scheduler().ledger().state().clone());
    drop(service);
    let reopened = open(dir.path(), None).unwrap();
    let strip = |views: &[gpuplace_serve::JobView]| {
        views.iter().map(|v| (v.id.clone(), v.state, v.placement.clone())).collect::<Vec<_>>()
    };
    assert_eq!(strip(&all_views(&reopened)), strip(&before.0));
    assert_eq!(reopened.fleet_view(100), before.1);
    assert_eq!(reopened.scheduler().ledger().state(), &before.2);
}

#[test]
fn fleet_events_are_checked_all_or_none() {
    let dir = tempfile::tempdir().unwrap();
    let mut service = open(dir.path(), Some(fleet())).unwrap();
    batch(&mut service, &[job("a", 8, 1)], &[]);
    let state = service.scheduler().ledger().state().clone();
    let cases = [
        (
            serde_json::json!([{"event": "rack", "cluster": "s1", "rack": 0, "state": "failed"}, {"event": "rack", "cluster": "nowhere", "rack": 0, "state": "failed"}]),
            422,
            "cluster",
        ),
        (serde_json::json!({"event": "rack", "cluster": "s1", "rack": 6, "state": "failed"}), 422, "rack"),
        (serde_json::json!({"event": "node", "cluster": "t1", "rack": 0, "node": 18, "state": "failed"}), 422, "node"),
        (serde_json::json!({"event": "site_power", "site": "sines", "power_mw": -1.0}), 422, "power_mw"),
        (serde_json::json!({"event": "site_power", "site": "mars", "power_mw": 1.0}), 422, "site"),
    ];
    for (body, status, field) in cases {
        let parsed: Vec<gpuplace_serve::api::FleetEvent> = match body.clone() {
            serde_json::Value::Array(_) => serde_json::from_value(body.clone()).unwrap(),
            one => vec![serde_json::from_value(one).unwrap()],
        };
        let error = service.apply_events(&parsed).expect_err(&body.to_string());
        assert_eq!(error.status, status, "{body}: {}", error.message);
        assert!(error.message.contains(field) && error.message.starts_with("request: event"), "{}", error.message);
        assert_eq!(service.scheduler().ledger().state(), &state, "{body}: a refused request changed the fleet");
    }
    // Over HTTP: malformed events are 400, and the routes answer.
    let (server, client) = start(tempfile::tempdir().unwrap().path(), None);
    assert_eq!(status_of(client.events(br#"{"event": "explode"}"#)), 400);
    let answer =
        client.events(br#"[{"event": "node", "cluster": "t1", "rack": 0, "node": 0, "state": "cordoned"}]"#).unwrap();
    assert_eq!((answer.applied, answer.requeued.len()), (1, 0));
    assert_eq!(client.fleet().unwrap().nodes_not_ready_total, 1);
    server.stop().unwrap();
}

/// A fleet with the fleet file's own load on trays and a tray the file cordoned.
fn fleet_with_file_state() -> Fleet {
    use gpuplace::kernel::state::NodeState;
    use gpuplace::model::fleet::NodeFile;
    FleetFile::new(["us"])
        .with_as_of(DAY)
        .with_rack_type("hgx", RackTypeFile::new("H100", 8, 80, 10.0))
        .with_rack_type("nvl72", RackTypeFile::new("GB300", 72, 288, 135.0))
        .with_site(
            SiteFile::new("texas", "IREN", "US", "US", 0.1, Day(0))
                .with_latency_ms("us", 5)
                .with_cluster(
                    ClusterFile::new("t1", "nvl72", 2)
                        .with_nodes(vec![NodeFile::new(0, 0).with_used_gpus(2), NodeFile::new(0, 1).with_used_gpus(4)]),
                )
                .with_cluster(
                    ClusterFile::new("h1", "hgx", 1)
                        .with_nodes(vec![NodeFile::new(0, 0).with_state(NodeState::Cordoned)]),
                ),
        )
        .build("<file state>")
        .unwrap()
}

fn apply(service: &mut Service, body: serde_json::Value) -> Vec<gpuplace_serve::JobView> {
    events(service, body).unwrap_or_else(|e| panic!("{}", e.message))
}

#[test]
fn restarts_after_every_kind_of_tray_history_restore_the_same_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let mut service = open(dir.path(), Some(fleet_with_file_state())).unwrap();
    let check_restart = |service: Service, what: &str| -> Service {
        let state = service.scheduler().ledger().state().clone();
        let views = all_views(&service);
        let fleet_view = service.fleet_view(100);
        drop(service);
        let reopened = open(dir.path(), None).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(reopened.scheduler().ledger().state(), &state, "{what}: the ledger differs after a restart");
        assert_eq!(reopened.fleet_view(100), fleet_view, "{what}");
        let strip = |v: &[gpuplace_serve::JobView]| {
            v.iter().map(|v| (v.id.clone(), v.state, v.placement.clone())).collect::<Vec<_>>()
        };
        assert_eq!(strip(&all_views(&reopened)), strip(&views), "{what}");
        reopened
    };
    // A tray with the file's load fails, is repaired, and its rack is cordoned: the load stays gone.
    apply(&mut service, serde_json::json!({"event": "node", "cluster": "t1", "rack": 0, "node": 0, "state": "failed"}));
    apply(&mut service, serde_json::json!({"event": "node", "cluster": "t1", "rack": 0, "node": 0, "state": "ready"}));
    apply(&mut service, serde_json::json!({"event": "rack", "cluster": "t1", "rack": 0, "state": "cordoned"}));
    let mut service = check_restart(service, "failed, repaired, cordoned");
    // A rack cordon leaves a failed tray failed.
    apply(&mut service, serde_json::json!({"event": "node", "cluster": "t1", "rack": 1, "node": 3, "state": "failed"}));
    apply(&mut service, serde_json::json!({"event": "rack", "cluster": "t1", "rack": 1, "state": "cordoned"}));
    let failed = service
        .fleet_view(100)
        .nodes_not_ready
        .iter()
        .filter(|n| n.state == gpuplace_serve::api::NodeStateName::Failed)
        .count();
    assert_eq!(failed, 1, "the cordon repaired a failed tray");
    let mut service = check_restart(service, "a failed tray in a cordoned rack");
    // The tray the file cordoned is uncordoned, takes a job, and is cordoned again: the job stays.
    apply(&mut service, serde_json::json!({"event": "node", "cluster": "h1", "rack": 0, "node": 0, "state": "ready"}));
    batch(&mut service, &[job("on-h1", 8, 1)], &[]);
    assert_eq!(service.job("on-h1").unwrap().placement.unwrap().cluster, "h1");
    apply(
        &mut service,
        serde_json::json!({"event": "node", "cluster": "h1", "rack": 0, "node": 0, "state": "cordoned"}),
    );
    let mut service = check_restart(service, "a file-cordoned tray uncordoned, used, cordoned again");
    // Power raised above the file's, used, released, lowered again: no panic, and a restart.
    // (Rack 1 made ready, its failed tray repaired: one whole NVL72 rack of 135 kW.)
    apply(&mut service, serde_json::json!({"event": "rack", "cluster": "t1", "rack": 1, "state": "ready"}));
    apply(&mut service, serde_json::json!({"event": "site_power", "site": "texas", "power_mw": 3.0}));
    let big: Vec<Job> = (0..2).map(|i| job(&format!("big-{i}"), 72, 1)).collect();
    batch(&mut service, &big, &[]);
    assert_eq!(service.job("big-0").unwrap().state, JobState::Placed);
    let drawn = service.fleet_view(100).sites[0].drawn_mw;
    assert!(drawn > 0.1, "the raised power is used ({drawn} MW)");
    service.finish("big-0").unwrap();
    batch(&mut service, &[], &[]);
    apply(&mut service, serde_json::json!({"event": "site_power", "site": "texas", "power_mw": 0.05}));
    let service = check_restart(service, "power raised, used and lowered");
    service.scheduler().ledger().check_consistency().unwrap();
}

/// With tenants: a job naming an unknown tenant is refused (422, naming it); one larger than its
/// tenant's quota plus borrowing limit is rejected at once, saying so; a tenant at its limit
/// leaves its next job waiting with cause `quota`; and a restart with tenants that lack a stored
/// job's tenant is refused (a state error naming the jobs), not run into.
#[test]
fn tenants_refuse_what_can_never_run_and_a_restart_with_other_tenants_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let tenants =
        gpuplace::Tenants::new(vec![gpuplace::Tenant::new("a", 8).with_borrow_limit(8)], "<tenants>").unwrap();
    let mut service = open_with_tenants(dir.path(), Some(fleet()), false, Some(tenants)).unwrap();
    let error = service.submit(&body(&[job("x", 8, 0).with_tenant("ghost")])).unwrap_err();
    assert_eq!(error.status, 422);
    assert!(error.message.contains("job `x`") && error.message.contains("unknown tenant `ghost`"), "{}", error.message);
    service.submit(&body(&[job("huge", 72, 0).with_tenant("a")])).unwrap();
    service.submit(&body(&[job("a1", 8, 0).with_tenant("a"), job("a2", 8, 0).with_tenant("a")])).unwrap();
    service.submit(&body(&[job("a3", 8, 0).with_tenant("a")])).unwrap();
    while service.round_needed() {
        service.run_round().unwrap();
    }
    service.commit().unwrap();
    let huge = service.job("huge").unwrap();
    assert_eq!(huge.state, JobState::Rejected);
    assert!(huge.reason.unwrap().contains("more GPUs than tenant `a` may hold"));
    assert_eq!(service.job("a1").unwrap().state, JobState::Placed);
    assert_eq!(service.job("a2").unwrap().state, JobState::Placed);
    let a3 = service.job("a3").unwrap();
    assert_eq!(a3.state, JobState::Waiting);
    assert!(a3.reason.unwrap().contains("plus borrowing limit of 8"), "the quota is why it waits");
    drop(service);
    // Restarted with tenants that do not have `a`: refused, naming the state's jobs.
    let other = gpuplace::Tenants::new(vec![gpuplace::Tenant::new("b", 8)], "<tenants>").unwrap();
    match open_with_tenants(dir.path(), None, false, Some(other)) {
        Err(ServeError::State { message, .. }) => assert!(message.contains("tenant"), "{message}"),
        Err(other) => panic!("expected a state error, got {other}"),
        Ok(_) => panic!("a restart with tenants lacking a stored job's tenant was accepted"),
    }
    // Restarted as it was: as before.
    let service = open(dir.path(), None).unwrap();
    assert_eq!(service.job("a3").unwrap().state, JobState::Waiting);
    assert_eq!(service.scheduler().tenant_held_milli(), &[16_000]);
}

#[test]
fn batches_written_as_one_group_leave_the_store_as_writing_them_in_order_would() {
    use gpuplace_serve::store::{Batch, Store, StoredJob};
    let record = |id: &str, state: JobState| StoredJob {
        job: job(id, 1, 1),
        state,
        placed: None,
        round: None,
        reason: None,
        group: None,
        node: None,
    };
    let jobs_of = |store: &Store| {
        let mut jobs = Vec::new();
        store
            .load_jobs(|number, job| {
                jobs.push((number, job.job.id, job.state));
                Ok(())
            })
            .unwrap();
        jobs
    };
    let (x_waits, y_waits, x_ends) =
        (record("x", JobState::Waiting), record("y", JobState::Waiting), record("x", JobState::Finished));
    let batches = |store: &Store| -> (Batch, Batch) {
        (
            store.prepare(None, 1, [(0, &x_waits), (1, &y_waits)]).unwrap(),
            store.prepare(None, 2, [(0, &x_ends)]).unwrap(),
        )
    };
    let in_order = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(in_order.path()).unwrap();
    let (first, second) = batches(&store);
    store.write_batch(&first).unwrap();
    store.write_batch(&second).unwrap();
    let expected = jobs_of(&store);
    assert_eq!(expected[0], (0, "x".to_string(), JobState::Finished));
    let grouped = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(grouped.path()).unwrap();
    let mut group = first.clone();
    group.absorb(second.clone());
    store.write_batch(&group).unwrap();
    assert_eq!(jobs_of(&store), expected);
    assert_eq!(store.commit_counts().0, 1, "one transaction");
    // Negative control: absorbed the wrong way round, the earlier record wins.
    let reversed = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(reversed.path()).unwrap();
    let mut group = second;
    group.absorb(first);
    store.write_batch(&group).unwrap();
    assert_ne!(jobs_of(&store), expected);
}
