//! Fuzzing the request parsing: valid bodies of every route, mutated at random (bytes flipped,
//! cut, spliced, duplicated, numbers made extreme, nesting made deep), go through the same
//! parsing and service calls the routes make. Nothing may panic; every refusal is a 4xx with one
//! line; whatever is accepted leaves the ledger consistent through the rounds that follow. Then the
//! same bodies over HTTP to a running server, which must answer each with a status and stay up.

use std::path::Path;

use gpuplace::model::fleet::{ClusterFile, FleetFile, RackTypeFile, SiteFile};
use gpuplace::{BackendChoice, Day, Fleet};
use gpuplace_serve::api::FleetEvent;
use gpuplace_serve::kube::{ExtenderArgs, ExtenderBindingArgs, ExtenderPreemptionArgs};
use gpuplace_serve::service::parse_jobs;
use gpuplace_serve::{Server, ServerConfig, Service, ServiceConfig};
use proptest::prelude::*;

fn fleet() -> Fleet {
    FleetFile::new(["us", "eu"])
        .with_as_of(Day(20_300))
        .with_rack_type("nvl72", RackTypeFile::new("GB300", 72, 288, 135.0))
        .with_rack_type("hgx", RackTypeFile::new("H100", 8, 80, 10.0))
        .with_site(
            SiteFile::new("texas", "IREN", "US", "US", 1.0, Day(0))
                .with_latency_ms("us", 5)
                .with_latency_ms("eu", 90)
                .with_cluster(ClusterFile::new("t1", "nvl72", 2)),
        )
        .with_site(
            SiteFile::new("sines", "Nscale", "PT", "EU", 20.0, Day(0))
                .with_latency_ms("us", 95)
                .with_latency_ms("eu", 10)
                .with_cluster(ClusterFile::new("s1", "hgx", 3)),
        )
        .build("<fuzz fleet>")
        .unwrap()
}

fn open(dir: &Path) -> Service {
    Service::open(ServiceConfig {
        fleet: Some(fleet()),
        policy: None,
        backend: BackendChoice::Cpu,
        state_dir: dir.to_path_buf(),
        preemption: true,
        tenants: None,
    })
    .unwrap()
}

/// Valid bodies of each kind: (route, body).
fn seeds() -> Vec<(&'static str, String)> {
    let node = |name: &str, rack: u32, tray: u32| {
        format!(
            r#"{{"metadata":{{"name":"{name}","labels":{{"gpuplace.io/rack":"texas/t1/{rack}","gpuplace.io/tray":"{tray}","nvidia.com/gpu.clique":"c.{rack}"}}}},"status":{{"allocatable":{{"nvidia.com/gpu":"4"}}}}}}"#
        )
    };
    let pod = r#"{"metadata":{"name":"p","namespace":"ml","uid":"u-1","annotations":{"gpuplace.io/kind":"training","gpuplace.io/pod-group":"g","gpuplace.io/pod-group-size":"2","gpuplace.io/max-latency-ms":"50"}},"spec":{"priority":7,"containers":[{"resources":{"limits":{"nvidia.com/gpu":"4","memory":"64Gi"},"requests":{"cpu":"8"}}}]}}"#;
    let nodes = [node("a", 0, 0), node("b", 0, 1), node("c", 1, 0)].join(",");
    let urgent = r#"{"metadata":{"name":"q","namespace":"ml","uid":"u-2"},"spec":{"priority":9,"containers":[{"resources":{"limits":{"nvidia.com/gpu":"4"}}}]}}"#;
    vec![
        ("jobs", r#"[{"id":"j1","kind":"training","gpus":72,"hbm_gb_per_gpu":100,"priority":5,"duration_h":2,"region":"us","block":"preferred"},{"id":"j2","kind":"inference","gpus":1,"pods":1,"gpu_milli":250,"cpu":2,"memory_gb":8,"hbm_gb_per_gpu":0,"priority":1,"duration_h":1,"region":"eu","max_latency_ms":20,"jurisdictions":["EU"]}]"#.into()),
        ("jobs", r#"{"format_version":1,"jobs":[{"id":"j3","kind":"agentic","gpus":8,"hbm_gb_per_gpu":0,"priority":9,"duration_s":60,"region":"us","not_before":"2025-01-01"}]}"#.into()),
        ("jobs", r#"{"id":"j4","kind":"multimodal","gpus":144,"hbm_gb_per_gpu":0,"priority":3,"duration_h":1,"region":"us","block":"required"}"#.into()),
        ("events", r#"[{"event":"node","cluster":"t1","rack":0,"node":3,"state":"failed"},{"event":"rack","cluster":"s1","rack":1,"state":"cordoned"},{"event":"site_power","site":"texas","power_mw":0.5},{"event":"cluster_online","cluster":"s1","online":"2030-01-01"}]"#.into()),
        ("filter", format!(r#"{{"Pod":{pod},"Nodes":{{"items":[{nodes}]}},"NodeNames":null}}"#)),
        ("prioritize", format!(r#"{{"Pod":{pod},"NodeNames":["a","b","zz"]}}"#)),
        ("bind", r#"{"PodName":"p","PodNamespace":"ml","PodUID":"u-1","Node":"a"}"#.into()),
        // After the bind: a pod of higher priority that would evict the bound one.
        ("preempt", format!(r#"{{"Pod":{urgent},"NodeNameToVictims":{{"a":{{"Pods":[{pod}],"NumPDBViolations":0}},"b":{{"Pods":[{pod}],"NumPDBViolations":1}}}}}}"#)),
    ]
}

/// A mutation of `body`.
fn mutate(body: &str, ops: &[(u8, usize, u8)]) -> Vec<u8> {
    let mut bytes = body.as_bytes().to_vec();
    for &(op, at, value) in ops {
        let at = if bytes.is_empty() { 0 } else { at % bytes.len() };
        match op % 8 {
            0 => {
                if !bytes.is_empty() {
                    bytes[at] = value;
                }
            }
            1 => bytes.truncate(at),
            2 => bytes.insert(at, value),
            3 => {
                let end = (at + usize::from(value)).min(bytes.len());
                let span = bytes[at..end].to_vec();
                bytes.splice(at..at, span);
            }
            4 => {
                let extreme: &[u8] = [b"1e400" as &[u8], b"-1", b"18446744073709551616", b"4294967296", b"NaN", b"0"]
                    [usize::from(value) % 6];
                // Replace the next number (if any) from `at` on.
                if let Some(start) = bytes[at..].iter().position(u8::is_ascii_digit).map(|p| p + at) {
                    let end =
                        bytes[start..].iter().position(|b| !b.is_ascii_digit()).map_or(bytes.len(), |p| p + start);
                    bytes.splice(start..end, extreme.iter().copied());
                }
            }
            5 => {
                let depth = 64 + usize::from(value) * 4;
                let nest: Vec<u8> = std::iter::repeat_n(b'[', depth).collect();
                bytes.splice(at..at, nest);
            }
            6 => {
                if !bytes.is_empty() {
                    bytes.remove(at);
                }
            }
            _ => {
                // A string made long and odd.
                let odd = "\u{202e}\u{0}x".repeat(usize::from(value) + 1);
                bytes.splice(at..at, odd.bytes());
            }
        }
    }
    bytes
}

fn one_line_4xx(status: u16, message: &str, what: &str) {
    assert!((400..500).contains(&status), "{what}: status {status}: {message}");
    assert!(!message.contains('\n') && !message.is_empty(), "{what}: not one line: {message:?}");
}

/// Feeds `bytes` to the service as route `route` would.
fn feed(service: &mut Service, route: &str, bytes: &[u8]) {
    match route {
        "jobs" => match parse_jobs(bytes) {
            Ok(workload) => {
                if let Err(e) = service.submit_workload(workload) {
                    one_line_4xx(e.status, &e.message, "submit");
                }
            }
            Err(e) => one_line_4xx(e.status, &e.message, "parse"),
        },
        "events" => {
            if let Ok(events) = serde_json::from_slice::<Vec<FleetEvent>>(bytes)
                && let Err(e) = service.apply_events(&events)
            {
                one_line_4xx(e.status, &e.message, "events");
            }
        }
        "filter" | "prioritize" => {
            if let Ok(args) = serde_json::from_slice::<ExtenderArgs>(bytes) {
                let result = service.kube_filter(args.clone());
                assert!(!result.error.contains('\n'), "filter: {:?}", result.error);
                if let Err(e) = service.kube_prioritize(args) {
                    one_line_4xx(e.status, &e.message, "prioritize");
                }
            }
        }
        "preempt" => {
            if let Ok(args) = serde_json::from_slice::<ExtenderPreemptionArgs>(bytes) {
                let before = service.scheduler().ledger().state().clone();
                if let Err(e) = service.kube_preempt(args) {
                    one_line_4xx(e.status, &e.message, "preempt");
                }
                assert_eq!(service.scheduler().ledger().state(), &before, "preempt changed the capacity");
            }
        }
        _ => {
            if let Ok(args) = serde_json::from_slice::<ExtenderBindingArgs>(bytes)
                && let Err(e) = service.kube_bind(&args)
            {
                one_line_4xx(e.status, &e.message, "bind");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn mutated_requests_never_panic_and_are_refused_in_one_line(
        picks in proptest::collection::vec((0usize..8, proptest::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 0..6)), 1..8)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut service = open(dir.path());
        let seeds = seeds();
        for (pick, ops) in picks {
            let (route, body) = &seeds[pick];
            feed(&mut service, route, &mutate(body, &ops));
            while service.round_needed() {
                service.run_round().unwrap();
            }
            service.commit().unwrap();
            service.scheduler().ledger().check_consistency().unwrap();
        }
    }
}

/// The unmutated seeds are accepted (else the fuzzing above only ever exercises refusals).
#[test]
fn the_seeds_are_valid_requests() {
    let dir = tempfile::tempdir().unwrap();
    let mut service = open(dir.path());
    for (route, body) in seeds() {
        match route {
            "jobs" => {
                service.submit_workload(parse_jobs(body.as_bytes()).unwrap()).unwrap();
            }
            "events" => {
                service.apply_events(&serde_json::from_str::<Vec<FleetEvent>>(&body).unwrap()).unwrap();
            }
            "filter" | "prioritize" => {
                let args: ExtenderArgs = serde_json::from_str(&body).unwrap();
                assert_eq!(service.kube_filter(args.clone()).error, "");
                service.kube_prioritize(args).unwrap();
            }
            "preempt" => {
                let args: ExtenderPreemptionArgs = serde_json::from_str(&body).unwrap();
                let kept = service.kube_preempt(args).unwrap();
                // Node a: its victim gives back the 4 GPUs the pod needs (b violates a budget).
                assert_eq!(kept.node_name_to_meta_victims.keys().collect::<Vec<_>>(), ["a"]);
            }
            _ => {
                service.kube_bind(&serde_json::from_str::<ExtenderBindingArgs>(&body).unwrap()).unwrap();
            }
        }
    }
    assert!(service.job("ml/p/u-1").is_ok(), "the bind took");
}

#[test]
fn over_http_mutated_bodies_get_a_status_and_the_server_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        Server::start(open(dir.path()), ServerConfig { listen: "127.0.0.1:0".into(), ..ServerConfig::default() })
            .unwrap();
    let base = format!("http://{}", server.address());
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let path = |route: &str| match route {
        "jobs" => "/v1/jobs",
        "events" => "/v1/fleet/events",
        "filter" => "/kube/v1/filter",
        "prioritize" => "/kube/v1/prioritize",
        "preempt" => "/kube/v1/preempt",
        _ => "/kube/v1/bind",
    };
    let mut rng = gpuplace::sim::generate::SplitMix64::new(99);
    let seeds = seeds();
    for _ in 0..150 {
        let (route, body) = &seeds[rng.below(seeds.len() as u64) as usize];
        let ops: Vec<(u8, usize, u8)> = (0..rng.below(5))
            .map(|_| (rng.below(256) as u8, rng.below(1 << 20) as usize, rng.below(256) as u8))
            .collect();
        let response = agent.post(&format!("{base}{}", path(route))).send(mutate(body, &ops)).unwrap();
        let status = response.status().as_u16();
        assert!(status == 200 || (400..500).contains(&status), "{route}: {status}");
    }
    assert_eq!(agent.get(&format!("{base}/healthz")).call().unwrap().status().as_u16(), 200);
    server.stop().unwrap();
}
