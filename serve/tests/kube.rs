//! The Kubernetes scheduler extender, with request bodies written as kube-scheduler sends them
//! (the upstream Go types have no JSON tags: `Pod`, `Nodes`, `NodeNames`, `PodName`, …; the Pod and
//! Node objects as the API server serves them): filter and prioritize at tray level, bind holding
//! the pod's GPUs and creating its Binding on an API server (a fake one here), gangs kept in one
//! NVLink domain, bound pods surviving restarts and never evicted.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use gpuplace::model::fleet::{ClusterFile, FleetFile, RackTypeFile, SiteFile};
use gpuplace::{BackendChoice, Day, Fleet, Job, JobKind};
use gpuplace_serve::api::JobState;
use gpuplace_serve::kube::{
    ExtenderArgs, ExtenderBindingArgs, ExtenderFilterResult, ExtenderPreemptionArgs, ExtenderPreemptionResult,
    HostPriority,
};
use gpuplace_serve::{Server, ServerConfig, Service, ServiceConfig};
use serde_json::{Value, json};

/// Two GB300 NVL72 racks at one site (18 trays of 4 GPUs each), and one 8-GPU server elsewhere.
fn fleet() -> Fleet {
    FleetFile::new(["us"])
        .with_as_of(Day(20_300))
        .with_rack_type("nvl72", RackTypeFile::new("GB300", 72, 288, 135.0))
        .with_rack_type("hgx", RackTypeFile::new("H100", 8, 80, 10.0))
        .with_site(
            SiteFile::new("texas", "IREN", "US", "US", 20.0, Day(0))
                .with_latency_ms("us", 5)
                .with_cluster(ClusterFile::new("t1", "nvl72", 2)),
        )
        .with_site(
            SiteFile::new("sines", "Nscale", "PT", "EU", 20.0, Day(0))
                .with_latency_ms("us", 90)
                .with_cluster(ClusterFile::new("s1", "hgx", 1)),
        )
        .build("<kube fleet>")
        .unwrap()
}

fn open(dir: &Path, fleet: Option<Fleet>, preemption: bool) -> Service {
    Service::open(ServiceConfig {
        fleet,
        policy: None,
        backend: BackendChoice::Cpu,
        state_dir: dir.to_path_buf(),
        preemption,
        tenants: None,
    })
    .unwrap()
}

/// A Node object as the API server serves it, labelled as a tray of `rack` (`SITE/CLUSTER/N`).
fn node(name: &str, rack: Option<(&str, u32)>, clique: Option<&str>) -> Value {
    let mut labels = json!({
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "node.kubernetes.io/instance-type": "gb300-tray",
    });
    if let Some((rack, tray)) = rack {
        labels["gpuplace.io/rack"] = rack.into();
        labels["gpuplace.io/tray"] = tray.to_string().into();
    }
    if let Some(clique) = clique {
        labels["nvidia.com/gpu.clique"] = clique.into();
    }
    json!({
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "uid": format!("uid-{name}"),
            "resourceVersion": "123456",
            "creationTimestamp": "2026-11-01T00:00:00Z",
            "labels": labels,
            "annotations": { "node.alpha.kubernetes.io/ttl": "0" }
        },
        "spec": { "podCIDR": "10.0.1.0/24", "providerID": "nvidia://tray" },
        "status": {
            "capacity": { "cpu": "144", "memory": "950Gi", "nvidia.com/gpu": "4", "pods": "110" },
            "allocatable": { "cpu": "136", "memory": "896Gi", "nvidia.com/gpu": "4", "pods": "110" },
            "conditions": [ { "type": "Ready", "status": "True", "lastHeartbeatTime": "2026-11-28T00:00:00Z" } ],
            "nodeInfo": { "kubeletVersion": "v1.34.1", "architecture": "arm64" }
        }
    })
}

/// A Pod object as kube-scheduler has it, asking for `gpus` whole GPUs.
fn pod(name: &str, uid: &str, gpus: u32, priority: i32, annotations: Value) -> Value {
    json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": "ml",
            "uid": uid,
            "resourceVersion": "42",
            "creationTimestamp": "2026-11-28T08:00:00Z",
            "labels": { "app": "trainer" },
            "annotations": annotations,
            "ownerReferences": [ { "apiVersion": "batch/v1", "kind": "Job", "name": "trainer", "uid": "j-1", "controller": true } ]
        },
        "spec": {
            "schedulerName": "default-scheduler",
            "priorityClassName": "high",
            "priority": priority,
            "containers": [ {
                "name": "main",
                "image": "nvcr.io/nvidia/pytorch:25.10-py3",
                "resources": {
                    "limits": { "nvidia.com/gpu": gpus.to_string(), "memory": "64Gi" },
                    "requests": { "nvidia.com/gpu": gpus.to_string(), "cpu": "8", "memory": "64Gi" }
                }
            } ],
            "tolerations": [ { "key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule" } ]
        },
        "status": { "phase": "Pending", "qosClass": "Burstable" }
    })
}

/// Every tray of the two NVL72 racks as nodes (`r{rack}-t{tray}`), with NVIDIA's clique labels,
/// plus a CPU node with no gpuplace labels.
fn all_nodes() -> Vec<Value> {
    let mut nodes = Vec::new();
    for rack in 0..2u32 {
        let label = format!("texas/t1/{rack}");
        let clique = format!("c0ffee.{rack}");
        for tray in 0..18 {
            nodes.push(node(&format!("r{rack}-t{tray}"), Some((&label, tray)), Some(&clique)));
        }
    }
    nodes.push(node("cpu-0", None, None));
    nodes
}

/// `ExtenderArgs` with whole nodes (`nodeCacheCapable: false`), as kube-scheduler marshals it.
fn args(pod: &Value, nodes: &[Value]) -> ExtenderArgs {
    let body = json!({ "Pod": pod, "Nodes": { "metadata": {}, "items": nodes }, "NodeNames": null });
    serde_json::from_value(body).unwrap()
}

fn names(result: &ExtenderFilterResult) -> Vec<String> {
    result.nodes.as_ref().unwrap().items.iter().map(|n| n["metadata"]["name"].as_str().unwrap().to_string()).collect()
}

fn bind(service: &mut Service, name: &str, uid: &str, node: &str) -> Result<Option<usize>, String> {
    let args: ExtenderBindingArgs = serde_json::from_value(json!({
        "PodName": name, "PodNamespace": "ml", "PodUID": uid, "Node": node
    }))
    .unwrap();
    let bound = service.kube_bind(&args).map_err(|e| e.message);
    service.commit().unwrap();
    bound
}

#[test]
fn filter_prioritize_and_bind_work_at_tray_level() {
    let dir = tempfile::tempdir().unwrap();
    let mut service = open(dir.path(), Some(fleet()), false);
    let nodes = all_nodes();
    // A 4-GPU pod: every tray passes; the CPU node cannot hold GPUs (unresolvable).
    let four = pod("a", "uid-a", 4, 10, json!({}));
    let result = service.kube_filter(args(&four, &nodes));
    assert_eq!(result.error, "");
    assert_eq!(names(&result).len(), 36);
    assert!(result.failed_and_unresolvable_nodes["cpu-0"].contains("gpuplace.io/rack"), "{result:?}");
    // Returned untouched: the objects are the request's own.
    assert_eq!(result.nodes.as_ref().unwrap().items[0], nodes[0]);
    // Prioritize: 0 to 10, the best rack's tightest trays 10.
    let scores: Vec<HostPriority> = service.kube_prioritize(args(&four, &nodes)).unwrap();
    assert_eq!(scores.len(), nodes.len());
    assert!(scores.iter().all(|s| (0..=10).contains(&s.score)));
    assert_eq!(scores.iter().find(|s| s.host == "cpu-0").unwrap().score, 0);
    assert_eq!(scores.iter().map(|s| s.score).max(), Some(10));
    // Bind on r0-t3: gpuplace holds its 4 GPUs as a placed, pinned job.
    let number = bind(&mut service, "a", "uid-a", "r0-t3").unwrap().expect("a GPU pod is held");
    let view = service.job("ml/a/uid-a").unwrap();
    assert_eq!((view.state, view.submitted), (JobState::Placed, number as u64));
    let placement = view.placement.unwrap();
    assert_eq!((placement.racks[0].rack, placement.pods[0].node, placement.pods[0].gpus.len()), (0, 3, 4));
    // The tray is full now: a second 4-GPU pod fails there (capacity: FailedNodes), passes elsewhere.
    let other = pod("b", "uid-b", 4, 10, json!({}));
    let result = service.kube_filter(args(&other, &nodes));
    assert!(result.failed_nodes["r0-t3"].contains("free GPUs"), "{result:?}");
    assert_eq!(names(&result).len(), 35);
    // A pod of 2 GPUs: prioritize prefers the half-used tray of rack 0 over empty ones once it exists.
    bind(&mut service, "b", "uid-b", "r0-t4").unwrap();
    let small = pod("c", "uid-c", 2, 10, json!({}));
    service.kube_filter(args(&small, &nodes));
    bind(&mut service, "c", "uid-c", "r0-t5").unwrap();
    let small2 = pod("d", "uid-d", 2, 10, json!({}));
    let scores = service.kube_prioritize(args(&small2, &nodes)).unwrap();
    let best: Vec<&str> = scores.iter().filter(|s| s.score == 10).map(|s| s.host.as_str()).collect();
    assert_eq!(best, vec!["r0-t5"], "best fit within the best rack: {scores:?}");
    // Binding again on the same node answers as the first; on another node the hold moves (a
    // bind whose outcome was unknown, retried by kube-scheduler elsewhere); a node that cannot
    // take it keeps the hold where it was.
    let state = service.scheduler().ledger().state().clone();
    assert_eq!(bind(&mut service, "a", "uid-a", "r0-t3").unwrap(), Some(number));
    assert_eq!(service.scheduler().ledger().state(), &state);
    bind(&mut service, "a", "uid-a", "r0-t7").unwrap();
    assert_eq!(service.job("ml/a/uid-a").unwrap().placement.unwrap().pods[0].node, 7);
    assert!(bind(&mut service, "a", "uid-a", "r0-t4").unwrap_err().contains("free GPUs"));
    assert_eq!(service.job("ml/a/uid-a").unwrap().placement.unwrap().pods[0].node, 7);
    bind(&mut service, "a", "uid-a", "r0-t3").unwrap();
    assert_eq!(service.scheduler().ledger().state(), &state);
    // An unseen pod, an unknown node: errors, nothing held.
    assert!(bind(&mut service, "zz", "uid-zz", "r0-t7").unwrap_err().contains("not seen"));
    assert!(bind(&mut service, "d", "uid-d", "nowhere").unwrap_err().contains("not seen this node"));
    // Binding on a full tray fails, holding nothing.
    assert!(bind(&mut service, "d", "uid-d", "r0-t3").unwrap_err().contains("free GPUs"));
    assert_eq!(service.scheduler().running(), 3);
    // A pod without GPUs: every node passes, scores 0, bind holds nothing.
    let plain = json!({"metadata": {"name": "web", "namespace": "ml", "uid": "uid-web"}, "spec": {"containers": [{"name": "c"}]}});
    assert_eq!(names(&service.kube_filter(args(&plain, &nodes))).len(), nodes.len());
    assert_eq!(bind(&mut service, "web", "uid-web", "cpu-0").unwrap(), None);
    // Finishing a bound pod gives its GPUs back.
    service.finish("ml/a/uid-a").unwrap();
    service.commit().unwrap();
    assert!(!service.kube_filter(args(&other, &nodes)).failed_nodes.contains_key("r0-t3"));
}

#[test]
fn requests_read_upstream_names_and_lowercase_ones_and_refuse_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let mut service = open(dir.path(), Some(fleet()), false);
    let nodes = all_nodes();
    // Names only (`nodeCacheCapable: true`): resolved from nodes seen whole before.
    let named: ExtenderArgs =
        serde_json::from_value(json!({"Pod": pod("a", "uid-a", 4, 0, json!({})), "NodeNames": ["r1-t0", "ghost"]}))
            .unwrap();
    let result = service.kube_filter(named.clone());
    assert!(result.failed_and_unresolvable_nodes.contains_key("r1-t0"), "not seen yet: {result:?}");
    service.kube_filter(args(&pod("a", "uid-a", 4, 0, json!({})), &nodes));
    let result = service.kube_filter(named);
    assert_eq!(result.node_names, Some(vec!["r1-t0".to_string()]));
    assert!(result.failed_and_unresolvable_nodes["ghost"].contains("nodeCacheCapable"));
    // Lower-case keys (older copies of the types) read the same.
    let lower: ExtenderArgs =
        serde_json::from_value(json!({"pod": pod("a", "uid-a", 4, 0, json!({})), "nodenames": ["r1-t0"]})).unwrap();
    assert_eq!(service.kube_filter(lower).node_names, Some(vec!["r1-t0".to_string()]));
    // Bad labels and values name what is wrong; a clique split over two racks is refused there.
    let mut odd = vec![
        node("bad-rack", Some(("texas/t9/0", 0)), None),
        node("bad-tray", Some(("texas/t1/0", 18)), None),
        node("split", Some(("texas/t1/1", 0)), Some("c0ffee.0")),
    ];
    odd.insert(0, node("first", Some(("texas/t1/0", 1)), Some("c0ffee.0")));
    let result = service.kube_filter(args(&pod("a", "uid-a", 4, 0, json!({})), &odd));
    let failed = &result.failed_and_unresolvable_nodes;
    assert!(failed["bad-rack"].contains("no cluster `t9`"), "{failed:?}");
    assert!(failed["bad-tray"].contains("18 trays"), "{failed:?}");
    assert!(failed["split"].contains("clique"), "{failed:?}");
    let bad = |annotations: Value, gpus: &str| {
        let mut p = pod("x", "uid-x", 1, 0, annotations);
        p["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = gpus.into();
        p["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] = gpus.into();
        p
    };
    for (p, expected) in [
        (bad(json!({}), "1.5"), "nvidia.com/gpu"),
        (bad(json!({"gpuplace.io/kind": "batch"}), "1"), "kind"),
        (bad(json!({"gpuplace.io/region": "mars"}), "1"), "mars"),
        (bad(json!({"gpuplace.io/max-latency-ms": "soon"}), "1"), "max-latency-ms"),
        (bad(json!({"gpuplace.io/pod-group": "g"}), "1"), "pod-group-size"),
        (bad(json!({}), "100000000000"), "gpus"),
    ] {
        let result = service.kube_filter(args(&p, &nodes));
        assert!(result.error.contains(expected), "{expected}: {}", result.error);
        assert!(!result.error.contains('\n'));
    }
    // A request without a pod says so.
    let empty: ExtenderArgs = serde_json::from_value(json!({"Nodes": {"items": []}})).unwrap();
    assert!(service.kube_filter(empty).error.contains("Pod"));
}

#[test]
fn a_gang_stays_in_one_nvlink_domain_and_bound_pods_survive_restarts_unevicted() {
    let dir = tempfile::tempdir().unwrap();
    let mut service = open(dir.path(), Some(fleet()), true);
    let nodes = all_nodes();
    // Rack 0 is partly used, so a gang of 18 pods × 4 GPUs fits only rack 1.
    service.kube_filter(args(&pod("lone", "uid-lone", 4, 0, json!({})), &nodes));
    bind(&mut service, "lone", "uid-lone", "r0-t0").unwrap();
    let gang = |i: u32| {
        pod(
            &format!("g-{i}"),
            &format!("uid-g{i}"),
            4,
            5,
            json!({"gpuplace.io/pod-group": "g", "gpuplace.io/pod-group-size": "18"}),
        )
    };
    let first = service.kube_filter(args(&gang(0), &nodes));
    assert!(names(&first).iter().all(|n| n.starts_with("r1-")), "{:?}", names(&first));
    assert_eq!(names(&first).len(), 18);
    bind(&mut service, "g-0", "uid-g0", "r1-t0").unwrap();
    // Later members: only the gang's rack (its free trays).
    let next = service.kube_filter(args(&gang(1), &nodes));
    assert_eq!(names(&next).len(), 17);
    assert!(names(&next).iter().all(|n| n.starts_with("r1-")));
    // Binding a member elsewhere is refused.
    service.kube_filter(args(&gang(2), &nodes));
    assert!(bind(&mut service, "g-2", "uid-g2", "r0-t9").unwrap_err().contains("gang"));
    bind(&mut service, "g-1", "uid-g1", "r1-t1").unwrap();
    let held = service.scheduler().ledger().state().clone();
    // A restart: the same holds; the gang's later members still go to its rack.
    drop(service);
    let mut service = open(dir.path(), None, true);
    assert_eq!(service.scheduler().ledger().state(), &held);
    service.kube_filter(args(&gang(2), &nodes));
    assert!(bind(&mut service, "g-2", "uid-g2", "r0-t9").unwrap_err().contains("gang"));
    bind(&mut service, "g-2", "uid-g2", "r1-t2").unwrap();
    // Preemption never evicts a bound pod (Kubernetes runs it): an urgent job that only eviction
    // could place waits.
    let urgent = Job::new("urgent", JobKind::Training, 72, "us").with_priority(1000).with_duration_h(1.0);
    service.submit(&serde_json::to_vec(&[urgent]).unwrap()).unwrap();
    while service.round_needed() {
        service.run_round().unwrap();
    }
    service.commit().unwrap();
    assert_eq!(service.job("urgent").unwrap().state, JobState::Waiting);
    assert_eq!(service.counters().preempted, 0);
    assert_eq!(service.job("ml/lone/uid-lone").unwrap().state, JobState::Placed);
}

/// A fake API server: answers each request as `answer(request line)` says (status, body), sending
/// what it received (request line, body, Authorization) over the channel.
type Answerer = dyn Fn(&str) -> (u16, String) + Send + Sync;

fn fake_api(answer: std::sync::Arc<Answerer>) -> (String, std::sync::mpsc::Receiver<(String, String, Option<String>)>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let (mut length, mut auth) = (0usize, None);
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                if header.trim().is_empty() {
                    break;
                }
                let lower = header.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if lower.starts_with("authorization:") {
                    auth = Some(header["authorization:".len()..].trim().to_string());
                }
            }
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body).unwrap();
            let (status, text) = answer(line.trim());
            let reply =
                format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}", text.len());
            stream.write_all(reply.as_bytes()).unwrap();
            let _ = sender.send((line.trim().to_string(), String::from_utf8(body).unwrap(), auth));
        }
    });
    (format!("http://{address}"), receiver)
}

fn post(base: &str, path: &str, body: &Value) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut response = agent.post(&format!("{base}{path}")).send(body.to_string()).unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[test]
fn over_http_bind_creates_the_binding_on_the_api_server_or_gives_the_hold_back() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    // What the fake API server does: 0 binds (201); 1 refuses (403); 2 says conflict (409) and
    // the pod is on r1-t2 (an earlier try went through); 3 says conflict and the pod is elsewhere;
    // 4 fails (500: it may still commit) and the pod is not bound yet; 5 says conflict and no such
    // pod (404).
    let mode = Arc::new(AtomicU32::new(0));
    let seen_mode = Arc::clone(&mode);
    let (api, seen) = fake_api(Arc::new(move |line: &str| {
        let get = line.starts_with("GET ");
        match (seen_mode.load(Ordering::SeqCst), get) {
            (0, false) => (201, "{}".into()),
            (1, false) => (403, "{\"message\":\"forbidden\"}".into()),
            (2 | 3 | 5, false) => (409, "{\"message\":\"pod is already assigned\"}".into()),
            (4, false) => (500, "{\"message\":\"etcdserver: request timed out\"}".into()),
            (2, true) => (200, json!({"metadata": {"uid": "uid-a"}, "spec": {"nodeName": "r1-t2"}}).to_string()),
            (3, true) => (200, json!({"metadata": {"uid": "uid-b"}, "spec": {"nodeName": "elsewhere"}}).to_string()),
            (4, true) => (200, json!({"metadata": {"uid": "uid-c"}, "spec": {}}).to_string()),
            _ => (404, "{}".into()),
        }
    }));
    let dir = tempfile::tempdir().unwrap();
    let service = open(dir.path(), Some(fleet()), false);
    let config = ServerConfig {
        listen: "127.0.0.1:0".into(),
        kube_api: Some((api, Some("sekret".into()))),
        ..ServerConfig::default()
    };
    let server = Server::start(service, config).unwrap();
    let base = format!("http://{}", server.address());
    let client = gpuplace_serve::Client::new(&base, None);
    let nodes = all_nodes();
    let body = json!({"Pod": pod("a", "uid-a", 4, 0, json!({})), "Nodes": {"metadata": {}, "items": nodes}, "NodeNames": null});
    let (status, filter) = post(&base, "/kube/v1/filter", &body);
    assert_eq!(status, 200);
    // Upstream names in the answer.
    assert!(filter.get("Nodes").is_some() && filter.get("FailedAndUnresolvableNodes").is_some(), "{filter}");
    let (status, scores) = post(&base, "/kube/v1/prioritize", &body);
    assert_eq!(status, 200);
    assert_eq!(scores.as_array().unwrap()[0].as_object().unwrap().keys().collect::<Vec<_>>(), ["Host", "Score"]);
    let binding = json!({"PodName": "a", "PodNamespace": "ml", "PodUID": "uid-a", "Node": "r1-t2"});
    // Refused: the hold is given back and the answer says why.
    mode.store(1, Ordering::SeqCst);
    let (status, result) = post(&base, "/kube/v1/bind", &binding);
    assert_eq!(status, 200);
    assert!(result["Error"].as_str().unwrap().contains("403"), "{result}");
    assert_eq!(client.job("ml/a/uid-a").unwrap().state, JobState::Finished);
    seen.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
    // kube-scheduler tries again: the same entry holds again, and the Binding is created.
    mode.store(0, Ordering::SeqCst);
    let (status, result) = post(&base, "/kube/v1/bind", &binding);
    assert_eq!((status, result.clone()), (200, json!({"Error": ""})), "{result}");
    assert_eq!(client.job("ml/a/uid-a").unwrap().state, JobState::Placed);
    let (line, sent, auth) = seen.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
    assert_eq!(line, "POST /api/v1/namespaces/ml/pods/a/binding HTTP/1.1");
    assert_eq!(auth.as_deref(), Some("Bearer sekret"));
    let sent: Value = serde_json::from_str(&sent).unwrap();
    assert_eq!(sent["kind"], "Binding");
    assert_eq!(sent["target"], json!({"apiVersion": "v1", "kind": "Node", "name": "r1-t2"}));
    assert_eq!(sent["metadata"]["uid"], "uid-a");
    // The same bind again (kube-scheduler's retry after a timeout): the API server says
    // conflict, the pod is on that node already: success, still held once.
    mode.store(2, Ordering::SeqCst);
    let (_, result) = post(&base, "/kube/v1/bind", &binding);
    assert_eq!(result, json!({"Error": ""}));
    assert_eq!(client.job("ml/a/uid-a").unwrap().state, JobState::Placed);
    // Another pod: conflict, and the API server has it elsewhere: given back.
    let body_b = json!({"Pod": pod("b", "uid-b", 4, 0, json!({})), "Nodes": {"items": all_nodes()}});
    post(&base, "/kube/v1/filter", &body_b);
    mode.store(3, Ordering::SeqCst);
    let (_, result) = post(
        &base,
        "/kube/v1/bind",
        &json!({"PodName": "b", "PodNamespace": "ml", "PodUID": "uid-b", "Node": "r1-t3"}),
    );
    assert!(result["Error"].as_str().unwrap().contains("409"), "{result}");
    assert_eq!(client.job("ml/b/uid-b").unwrap().state, JobState::Finished);
    // A server error with the pod not bound yet: the Binding may still land, so the hold stays;
    // kube-scheduler's next bind of the pod, on another node, moves the hold there.
    let body_c = json!({"Pod": pod("c", "uid-c", 4, 0, json!({})), "Nodes": {"items": all_nodes()}});
    post(&base, "/kube/v1/filter", &body_c);
    mode.store(4, Ordering::SeqCst);
    let bind_c = |node: &str| json!({"PodName": "c", "PodNamespace": "ml", "PodUID": "uid-c", "Node": node});
    let (_, result) = post(&base, "/kube/v1/bind", &bind_c("r1-t4"));
    assert!(result["Error"].as_str().unwrap().contains("stay held"), "{result}");
    let held = client.job("ml/c/uid-c").unwrap();
    assert_eq!((held.state, held.placement.as_ref().unwrap().pods[0].node), (JobState::Placed, 4));
    mode.store(0, Ordering::SeqCst);
    let (_, result) = post(&base, "/kube/v1/bind", &bind_c("r1-t5"));
    assert_eq!(result, json!({"Error": ""}));
    let moved = client.job("ml/c/uid-c").unwrap();
    assert_eq!((moved.state, moved.placement.as_ref().unwrap().pods[0].node), (JobState::Placed, 5));
    let fleet_view = client.fleet().unwrap();
    let texas_used: u64 = fleet_view.sites.iter().filter(|s| s.name == "texas").map(|s| s.gpus_used).sum();
    assert_eq!(texas_used, 8, "a and c hold 4 GPUs each, the old hold of c is gone");
    // A conflict and the pod gone (404): given back.
    let body_d = json!({"Pod": pod("d", "uid-d", 4, 0, json!({})), "Nodes": {"items": all_nodes()}});
    post(&base, "/kube/v1/filter", &body_d);
    mode.store(5, Ordering::SeqCst);
    let (_, result) = post(
        &base,
        "/kube/v1/bind",
        &json!({"PodName": "d", "PodNamespace": "ml", "PodUID": "uid-d", "Node": "r1-t6"}),
    );
    assert!(result["Error"].as_str().unwrap().contains("409"), "{result}");
    assert_eq!(client.job("ml/d/uid-d").unwrap().state, JobState::Finished);
    // Malformed bodies: 400 with one line, the server goes on.
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let response = agent.post(&format!("{base}/kube/v1/filter")).send("{\"Pod\": 7").unwrap();
    assert_eq!(response.status().as_u16(), 400);
    server.stop().unwrap();

    // No API server set: the answer says so and nothing stays held.
    let dir = tempfile::tempdir().unwrap();
    let service = open(dir.path(), Some(fleet()), false);
    let server =
        Server::start(service, ServerConfig { listen: "127.0.0.1:0".into(), ..ServerConfig::default() }).unwrap();
    let base = format!("http://{}", server.address());
    post(&base, "/kube/v1/filter", &body);
    let (status, result) = post(&base, "/kube/v1/bind", &binding);
    assert_eq!(status, 200);
    assert!(result["Error"].as_str().unwrap().contains("--kube-api"), "{result}");
    let client = gpuplace_serve::Client::new(&base, None);
    assert_eq!(client.job("ml/a/uid-a").unwrap().state, JobState::Finished);
    server.stop().unwrap();
}

/// The sync (`serve --kube-sync-s`): the API server's pods are listed (page by page, with the
/// token), and the jobs of bound pods that ended are finished: deleted, replaced by a pod of the
/// same name, Succeeded or Failed; a running pod's job stays placed.
#[test]
fn the_sync_finishes_the_jobs_of_pods_that_ended() {
    use std::sync::Arc;
    let item = |name: &str, uid: &str, phase: &str| json!({"metadata": {"namespace": "ml", "name": name, "uid": uid}, "status": {"phase": phase}});
    let first = json!({"metadata": {"continue": "page 2"}, "items": [item("a", "uid-a", "Running"), item("b", "uid-b", "Succeeded"), item("e", "uid-e", "Failed")]});
    let second = json!({"metadata": {}, "items": [item("d", "uid-d-new", "Running")]});
    // The first listing fails: it is counted, told, and tried again at the next tick.
    let failed_once = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (api, seen) = fake_api(Arc::new(move |line: &str| {
        if line.starts_with("POST ") {
            (201, "{}".into())
        } else if line.starts_with("GET /api/v1/pods") && !failed_once.swap(true, std::sync::atomic::Ordering::SeqCst) {
            (500, "{}".into())
        } else if line.starts_with("GET /api/v1/pods?limit=500&continue=page%202 ") {
            (200, second.to_string())
        } else if line.starts_with("GET /api/v1/pods?limit=500 ") {
            (200, first.to_string())
        } else {
            (404, "{}".into())
        }
    }));
    let dir = tempfile::tempdir().unwrap();
    let service = open(dir.path(), Some(fleet()), false);
    let warnings = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let config = ServerConfig {
        listen: "127.0.0.1:0".into(),
        kube_api: Some((api, Some("sekret".into()))),
        kube_sync: Some(std::time::Duration::from_millis(100)),
        warn: Some(gpuplace_serve::server::Warn(Arc::new({
            let warnings = Arc::clone(&warnings);
            move |line: &str| warnings.lock().unwrap().push(line.to_string())
        }))),
        ..ServerConfig::default()
    };
    let server = Server::start(service, config).unwrap();
    let base = format!("http://{}", server.address());
    let client = gpuplace_serve::Client::new(&base, None);
    for (n, name) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        let uid = format!("uid-{name}");
        let body = json!({"Pod": pod(name, &uid, 4, 0, json!({})), "Nodes": {"items": all_nodes()}});
        post(&base, "/kube/v1/filter", &body);
        let binding = json!({"PodName": name, "PodNamespace": "ml", "PodUID": uid, "Node": format!("r1-t{}", n + 1)});
        assert_eq!(post(&base, "/kube/v1/bind", &binding).1, json!({"Error": ""}), "{name}");
    }
    let state = |name: &str| client.job(&format!("ml/{name}/uid-{name}")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while ["b", "c", "d", "e"].iter().any(|n| state(n).state != JobState::Finished) {
        assert!(std::time::Instant::now() < deadline, "the sync did not finish the ended pods' jobs");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(state("a").state, JobState::Placed, "a running pod's job stays placed");
    for (name, says) in
        [("b", "ended (Succeeded)"), ("c", "gone"), ("d", "a new pod has its name"), ("e", "ended (Failed)")]
    {
        let reason = state(name).reason.unwrap_or_default();
        assert!(reason.contains(says), "{name}: {reason}");
    }
    // The listing read both pages, with the token.
    let requests: Vec<(String, String, Option<String>)> = seen.try_iter().collect();
    let pages: Vec<&(String, String, Option<String>)> =
        requests.iter().filter(|(line, _, _)| line.starts_with("GET /api/v1/pods")).collect();
    assert!(pages.iter().any(|(line, _, _)| line.contains("continue=page%202")), "{requests:?}");
    assert!(pages.iter().all(|(_, _, auth)| auth.as_deref() == Some("Bearer sekret")), "{requests:?}");
    // The failed listing was told once, in one line naming what failed, and counted.
    let warnings = warnings.lock().unwrap().clone();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("listing pods on") && warnings[0].contains("500") && !warnings[0].contains('\n'));
    let metrics = client.metrics().unwrap();
    assert!(metrics.lines().any(|l| l == "gpuplace_kube_sync_failures_total 1"), "{metrics}");
    let last = metrics.lines().find_map(|l| l.strip_prefix("gpuplace_kube_sync_last_success_seconds ")).unwrap();
    assert!(last.parse::<f64>().unwrap() > 1.7e9, "{last}");
    // What the ended pods held is free again: only a's 4 GPUs are held at texas.
    let used: u64 = client.fleet().unwrap().sites.iter().filter(|s| s.name == "texas").map(|s| s.gpus_used).sum();
    assert_eq!(used, 4);
    server.stop().unwrap();
}

/// A listing whose API server hands back the continue token it was given ends with an error
/// instead of paging forever; a page that is not a pod list is an error naming the URL.
#[test]
fn a_listing_that_would_not_end_or_does_not_read_is_an_error() {
    use std::sync::Arc;
    let (api, _) =
        fake_api(Arc::new(|_: &str| (200, json!({"metadata": {"continue": "again"}, "items": []}).to_string())));
    let error = gpuplace_serve::client::list_pods(&api, None).unwrap_err();
    assert!(error.contains("same continue token"), "{error}");
    let (api, _) = fake_api(Arc::new(|_: &str| (200, json!({"items": [{"metadata": {"name": 5}}]}).to_string())));
    let error = gpuplace_serve::client::list_pods(&api, None).unwrap_err();
    assert!(error.contains("not a pod list") && error.contains("/api/v1/pods"), "{error}");
}

/// `ExtenderPreemptionArgs` as kube-scheduler marshals it with whole pods
/// (`nodeCacheCapable: false`): each node's victims and PodDisruptionBudgets violated.
fn preemption_args(pod: &Value, victims: &[(&str, Vec<Value>, i64)]) -> ExtenderPreemptionArgs {
    let map: serde_json::Map<String, Value> = victims
        .iter()
        .map(|(node, pods, pdb)| (node.to_string(), json!({ "Pods": pods, "NumPDBViolations": pdb })))
        .collect();
    serde_json::from_value(json!({ "Pod": pod, "NodeNameToVictims": map, "NodeNameToMetaVictims": null })).unwrap()
}

/// The same by UID (`nodeCacheCapable: true`).
fn meta_preemption_args(pod: &Value, victims: &[(&str, Vec<&str>)]) -> ExtenderPreemptionArgs {
    let map: serde_json::Map<String, Value> = victims
        .iter()
        .map(|(node, uids)| {
            let pods: Vec<Value> = uids.iter().map(|uid| json!({ "UID": uid })).collect();
            (node.to_string(), json!({ "Pods": pods, "NumPDBViolations": 0 }))
        })
        .collect();
    serde_json::from_value(json!({ "Pod": pod, "NodeNameToVictims": null, "NodeNameToMetaVictims": map })).unwrap()
}

fn kept(result: &ExtenderPreemptionResult) -> Vec<&str> {
    result.node_name_to_meta_victims.keys().map(String::as_str).collect()
}

#[test]
fn preempt_keeps_the_nodes_where_eviction_makes_room_and_the_least_harm() {
    let dir = tempfile::tempdir().unwrap();
    let mut service = open(dir.path(), Some(fleet()), false);
    let nodes = all_nodes();
    let gang = |i: u32| {
        pod(
            &format!("g-{i}"),
            &format!("uid-g{i}"),
            4,
            1,
            json!({"gpuplace.io/pod-group": "g", "gpuplace.io/pod-group-size": "2"}),
        )
    };
    // Bound through the extender, all of priority 1 but `high`: a lone pod, a gang of two, a
    // pod of priority 9, and a tray shared by a pod of 1 GPU and one of 3.
    let bound = [
        (pod("low", "uid-low", 4, 1, json!({})), "r0-t0"),
        (gang(0), "r0-t1"),
        (gang(1), "r0-t2"),
        (pod("high", "uid-high", 4, 9, json!({})), "r0-t3"),
        (pod("small", "uid-small", 1, 1, json!({})), "r0-t4"),
        (pod("other", "uid-other", 3, 1, json!({})), "r0-t4"),
    ];
    for (pod, node) in &bound {
        service.kube_filter(args(pod, &nodes));
        let (name, uid) = (pod["metadata"]["name"].as_str().unwrap(), pod["metadata"]["uid"].as_str().unwrap());
        bind(&mut service, name, uid, node).unwrap().expect("held");
    }
    let victim = |i: usize| bound[i].0.clone();
    // A pod gpuplace did not place (its GPUs are not gpuplace's), of priority 3.
    let stranger = pod("stranger", "uid-stranger", 1, 3, json!({}));
    let urgent = pod("urgent", "uid-urgent", 4, 5, json!({}));
    service.kube_filter(args(&urgent, &nodes));
    let offered = |pdb_low: i64| {
        vec![
            ("r0-t0", vec![victim(0)], pdb_low),
            ("r0-t1", vec![victim(1)], 0),
            ("r0-t3", vec![victim(3)], 0),
            ("r0-t4", vec![victim(4)], 0),
            ("r0-t5", vec![stranger.clone()], 0),
            ("r0-t6", vec![], 0),
            ("cpu-0", vec![stranger.clone()], 0),
        ]
    };
    let before = service.scheduler().ledger().state().clone();
    // r0-t3: its victim outranks the pod. r0-t4: evicting `small` frees 1 GPU of 4. r0-t6: no
    // victims. cpu-0: not a tray. Of the rest, r0-t0 ends one job of priority 1; r0-t1 ends
    // the gang's two; r0-t5 one of priority 3.
    let result = service.kube_preempt(preemption_args(&urgent, &offered(0))).unwrap();
    assert_eq!(kept(&result), vec!["r0-t0"], "{result:?}");
    assert_eq!(result.node_name_to_meta_victims["r0-t0"].pods[0].uid, "uid-low");
    assert_eq!(service.scheduler().ledger().state(), &before, "the check left the capacity as it was");
    // A PodDisruptionBudget on r0-t0 weighs first: then r0-t5, one eviction, over the gang.
    let result = service.kube_preempt(preemption_args(&urgent, &offered(1))).unwrap();
    assert_eq!(kept(&result), vec!["r0-t5"], "{result:?}");
    assert_eq!(result.node_name_to_meta_victims["r0-t5"].num_pdb_violations, 0);
    // Without r0-t0 and r0-t5, the gang's tray is what is left, and kept.
    let gang_only: Vec<_> = offered(0).into_iter().filter(|(n, _, _)| !["r0-t0", "r0-t5"].contains(n)).collect();
    assert_eq!(kept(&service.kube_preempt(preemption_args(&urgent, &gang_only)).unwrap()), vec!["r0-t1"]);
    // Both victims of r0-t4 make room (one named twice is one victim).
    let both = [("r0-t4", vec![victim(4), victim(5), victim(4)], 0)];
    assert_eq!(kept(&service.kube_preempt(preemption_args(&urgent, &both)).unwrap()), vec!["r0-t4"]);
    // By UID only: the same verdicts on the pods gpuplace placed (their priorities are its own).
    let meta = [
        ("r0-t0", vec!["uid-low"]),
        ("r0-t1", vec!["uid-g0"]),
        ("r0-t3", vec!["uid-high"]),
        ("r0-t4", vec!["uid-small"]),
    ];
    assert_eq!(kept(&service.kube_preempt(meta_preemption_args(&urgent, &meta)).unwrap()), vec!["r0-t0"]);
    // A pod of priority 1 may evict none of them.
    let peer = pod("peer", "uid-peer", 4, 1, json!({}));
    assert!(kept(&service.kube_preempt(preemption_args(&peer, &offered(0))).unwrap()).is_empty());
    // A pod without GPUs: gpuplace has no say; every node with victims comes back as given.
    let plain = json!({"metadata": {"name": "web", "namespace": "ml", "uid": "uid-web"}, "spec": {"containers": [{"name": "c"}]}});
    let all = service.kube_preempt(preemption_args(&plain, &offered(0))).unwrap();
    assert_eq!(kept(&all), vec!["cpu-0", "r0-t0", "r0-t1", "r0-t3", "r0-t4", "r0-t5"]);
    assert_eq!(service.scheduler().ledger().state(), &before);
    // Nothing was evicted in gpuplace: kube-scheduler evicts, and the sync or a finish follows.
    assert_eq!(service.scheduler().running(), 6);
    // A pod with no namespace is `default`'s, as kube-scheduler's own objects may leave it.
    let mut plain_ns = pod("nons", "uid-nons", 4, 1, json!({}));
    plain_ns["metadata"].as_object_mut().unwrap().remove("namespace");
    service.kube_filter(args(&plain_ns, &nodes));
    bind(&mut service, "nons", "uid-nons", "r0-t6").unwrap().expect("held");
    let result = service.kube_preempt(preemption_args(&urgent, &[("r0-t6", vec![plain_ns.clone()], 0)])).unwrap();
    assert_eq!(kept(&result), vec!["r0-t6"], "the victim was not recognised: {result:?}");
    service.finish("default/nons/uid-nons").unwrap();
    service.commit().unwrap();
    // A cordoned tray takes no new pod, so evicting there makes no room; its victim keeps its
    // hold through the check (a cordon stops new pods, not the ones there).
    let cordon: Vec<gpuplace_serve::api::FleetEvent> =
        serde_json::from_value(json!([{"event": "node", "cluster": "t1", "rack": 0, "node": 0, "state": "cordoned"}]))
            .unwrap();
    service.apply_events(&cordon).unwrap();
    service.commit().unwrap();
    let cordoned = service.scheduler().ledger().state().clone();
    let result = service.kube_preempt(preemption_args(&urgent, &offered(0))).unwrap();
    assert_eq!(kept(&result), vec!["r0-t5"], "{result:?}");
    assert_eq!(service.scheduler().ledger().state(), &cordoned);
    // A bind moved off the cordoned tray to one that cannot take it keeps its hold where it was.
    service.kube_filter(args(&victim(0), &nodes));
    assert!(bind(&mut service, "low", "uid-low", "r0-t3").unwrap_err().contains("free GPUs"));
    assert_eq!(service.job("ml/low/uid-low").unwrap().placement.unwrap().pods[0].node, 0);
    assert_eq!(service.scheduler().ledger().state(), &cordoned);

    // Over HTTP, with the upstream names (r0-t0 is cordoned now).
    drop(service);
    let server = Server::start(
        open(dir.path(), None, false),
        ServerConfig { listen: "127.0.0.1:0".into(), ..ServerConfig::default() },
    )
    .unwrap();
    let base = format!("http://{}", server.address());
    let (status, _) = post(&base, "/kube/v1/filter", &json!({ "Pod": urgent, "Nodes": { "items": nodes } }));
    assert_eq!(status, 200);
    let body = json!({ "Pod": urgent, "NodeNameToVictims": { "r0-t1": { "Pods": [victim(1)], "NumPDBViolations": 0 }, "r0-t3": { "Pods": [victim(3)], "NumPDBViolations": 0 } } });
    let (status, answer) = post(&base, "/kube/v1/preempt", &body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({ "NodeNameToMetaVictims": { "r0-t1": { "Pods": [{ "UID": "uid-g0" }], "NumPDBViolations": 0 } } })
    );
    server.stop().unwrap();
}

#[test]
fn a_gang_preferring_one_nvlink_domain_is_filtered_where_place_would_put_it() {
    // Cluster a: two 8-GPU servers; cluster b: one rack of four 4-GPU trays. A gang of three 4-GPU
    // pods fits b's rack alone, or spans a's two servers. With the policy's `prefer_one_domain`,
    // the filter keeps it to b while b has three free trays, and lets it span a's servers once b
    // has not (a review found the filter then refused every node, the preference never dropped).
    let fleet_with = |b_nodes: &str| {
        Fleet::from_json(
            &format!(
                r#"{{"regions": ["us"],
                "rack_types": {{"t8": {{"gpu_model": "H100", "gpus": 8, "hbm_gb_per_gpu": 80, "kw": 10, "nodes": 1}},
                               "t16": {{"gpu_model": "GB300", "gpus": 16, "hbm_gb_per_gpu": 288, "kw": 30, "nodes": 4}}}},
                "sites": [
                  {{"name": "s", "provider": "P", "country": "US", "jurisdiction": "US", "power_mw": 1, "pue": 1.2,
                   "price_usd_per_mwh": 50, "carbon_g_per_kwh": 300, "online": "2020-01-01", "latency_ms": {{"us": 10}},
                   "clusters": [{{"name": "a", "rack_type": "t8", "racks": 2}},
                                {{"name": "b", "rack_type": "t16", "racks": 1{b_nodes}}}]}}]}}"#
            ),
            "<fleet>",
        )
        .unwrap()
    };
    let mut policy = gpuplace::Policy::default();
    policy.prefer_one_domain = true;
    let nodes = vec![
        node("a0", Some(("s/a/0", 0)), None),
        node("a1", Some(("s/a/1", 0)), None),
        node("b-t3", Some(("s/b/0", 3)), None),
    ];
    let gang = pod("g-0", "uid-g0", 4, 5, json!({"gpuplace.io/pod-group": "g", "gpuplace.io/pod-group-size": "3"}));
    for (b_nodes, passing) in [
        ("", vec!["b-t3"]),
        (
            r#", "nodes": [{"rack": 0, "node": 0, "used_gpus": 4}, {"rack": 0, "node": 1, "used_gpus": 4}]"#,
            vec!["a0", "a1"],
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut service = Service::open(ServiceConfig {
            fleet: Some(fleet_with(b_nodes)),
            policy: Some(policy),
            backend: BackendChoice::Cpu,
            state_dir: dir.path().to_path_buf(),
            preemption: false,
            tenants: None,
        })
        .unwrap();
        let filtered = service.kube_filter(args(&gang, &nodes));
        assert_eq!(names(&filtered), passing, "{b_nodes:?}: {:?}", filtered.failed_nodes);
    }
}
