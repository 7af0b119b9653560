//! Slow and silent clients: a connection whose request head does not arrive in time is closed,
//! and a body that stops arriving is refused and gives its share of the bodies' memory budget
//! back, so that such clients cannot hold the server's connections or budget for as long as they
//! like while others wait.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use gpuplace::model::fleet::{ClusterFile, FleetFile, RackTypeFile, SiteFile};
use gpuplace::{BackendChoice, Day};
use gpuplace_serve::server::BODIES_AT_ONCE;
use gpuplace_serve::{Client, Server, ServerConfig, Service, ServiceConfig};

fn open(dir: &Path) -> Service {
    let fleet = FleetFile::new(["us"])
        .with_as_of(Day(20_300))
        .with_rack_type("nvl72", RackTypeFile::new("GB300", 72, 288, 135.0))
        .with_site(
            SiteFile::new("texas", "IREN", "US", "US", 1.0, Day(0))
                .with_latency_ms("us", 5)
                .with_cluster(ClusterFile::new("t1", "nvl72", 2)),
        )
        .build("<limits fleet>")
        .unwrap();
    Service::open(ServiceConfig {
        fleet: Some(fleet),
        policy: None,
        backend: BackendChoice::Cpu,
        state_dir: dir.to_path_buf(),
        preemption: false,
        tenants: None,
    })
    .unwrap()
}

fn start(dir: &Path, head: Duration, body: Duration) -> Server {
    let config = ServerConfig {
        listen: "127.0.0.1:0".into(),
        head_timeout: head,
        body_timeout: body,
        ..ServerConfig::default()
    };
    Server::start(open(dir), config).unwrap()
}

/// Connects, writes `sent`, and reads until the server closes the connection or `wait` passes
/// with nothing more: what was read, and whether the server closed it.
fn send_and_read(address: SocketAddr, sent: &[u8], wait: Duration) -> (String, bool) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.write_all(sent).unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut read = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return (String::from_utf8_lossy(&read).into_owned(), true),
            Ok(n) => read.extend_from_slice(&buffer[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (String::from_utf8_lossy(&read).into_owned(), false);
            }
            // A reset is the server closing too.
            Err(_) => return (String::from_utf8_lossy(&read).into_owned(), true),
        }
    }
}

const SUBMIT_HEAD: &str = "POST /v1/jobs HTTP/1.1\r\nHost: gpuplace\r\nContent-Type: application/json\r\n";

#[test]
fn a_connection_whose_request_head_does_not_arrive_in_time_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), Duration::from_millis(300), Duration::from_secs(30));
    let address = server.address();
    // Generous: the server closes after 0.3 s; only a server that never closes waits this out.
    let wait = Duration::from_secs(20);
    // Silent from the start (also what an idle keep-alive connection is).
    let (_, closed) = send_and_read(address, b"", wait);
    assert!(closed, "a silent connection was kept open");
    // A head that stops halfway.
    let (_, closed) = send_and_read(address, SUBMIT_HEAD.as_bytes(), wait);
    assert!(closed, "a connection with half a head was kept open");
    // A whole request on time is answered as always.
    let request = "GET /healthz HTTP/1.1\r\nHost: gpuplace\r\nConnection: close\r\n\r\n";
    let (answer, _) = send_and_read(address, request.as_bytes(), wait);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    server.stop().unwrap();

    // The negative control: with a head timeout longer than the wait, the same silent connection
    // is still open when the wait ends, so the checks above can fail.
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), Duration::from_secs(60), Duration::from_secs(30));
    let (_, closed) = send_and_read(server.address(), b"", Duration::from_secs(1));
    assert!(!closed, "the connection closed though its head had 60 s");
    server.stop().unwrap();
}

#[test]
fn bodies_that_stop_arriving_are_refused_and_give_their_budget_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), Duration::from_secs(30), Duration::from_millis(500));
    let address = server.address();
    // Bodies of unknown size (chunked) each take the largest share of the budget: this many of
    // them hold all of it. Each sends a first chunk and then nothing.
    let stalled = format!("{SUBMIT_HEAD}Transfer-Encoding: chunked\r\n\r\n1\r\n[\r\n");
    let answers: Vec<(String, bool)> = std::thread::scope(|scope| {
        let slow: Vec<_> = (0..BODIES_AT_ONCE)
            .map(|_| scope.spawn(|| send_and_read(address, stalled.as_bytes(), Duration::from_secs(20))))
            .collect();
        // Meanwhile a whole submission waits for a share and is placed once the slow ones are cut
        // (its own wait for a turn is bounded by the same 0.5 s, counted from 0.3 s on).
        std::thread::sleep(Duration::from_millis(300));
        let client = Client::new(&format!("http://{address}"), None);
        let body = br#"{"id":"on-time","kind":"inference","gpus":4,"hbm_gb_per_gpu":0,"priority":1,"duration_h":1,"region":"us"}"#;
        let answer = client.submit(body).expect("a whole body was refused");
        assert_eq!(answer.jobs.len(), 1, "{answer:?}");
        slow.into_iter().map(|s| s.join().unwrap()).collect()
    });
    for (answer, _) in &answers {
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("did not arrive within 0.5 s"), "{answer}");
    }
    assert!(server.stop().is_ok());
}

/// Pipelines `count` requests for `/metrics` without reading, waits `pause`, then reads what
/// comes: the answers read, and whether the server closed the connection.
fn pipeline_unread(address: SocketAddr, count: usize, pause: Duration) -> (usize, bool) {
    let request = "GET /metrics HTTP/1.1\r\nHost: gpuplace\r\n\r\n".repeat(count);
    let mut stream = TcpStream::connect(address).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    std::thread::sleep(pause);
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (mut read, mut buffer) = (Vec::new(), vec![0u8; 1 << 16]);
    let closed = loop {
        match stream.read(&mut buffer) {
            Ok(0) => break true,
            Ok(n) => read.extend_from_slice(&buffer[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break false,
            Err(_) => break true,
        }
    };
    let answers = read.windows(12).filter(|w| w == b"HTTP/1.1 200").count();
    (answers, closed)
}

#[test]
fn a_client_that_stops_reading_answers_is_cut_off() {
    // Enough answers to fill both sides' socket buffers many times over.
    let count = 5000;
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        listen: "127.0.0.1:0".into(),
        write_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let server = Server::start(open(dir.path()), config).unwrap();
    let (answers, closed) = pipeline_unread(server.address(), count, Duration::from_secs(3));
    assert!(closed && answers < count, "{answers} answers, closed: {closed}");
    // The server still serves others.
    let client = Client::new(&format!("http://{}", server.address()), None);
    assert!(client.metrics().is_ok());
    server.stop().unwrap();

    // The negative control: with a write timeout longer than the pause, every answer comes once
    // the client reads, and the connection stays open.
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), Duration::from_secs(30), Duration::from_secs(30));
    let (answers, closed) = pipeline_unread(server.address(), count, Duration::from_secs(1));
    assert!(!closed && answers == count, "{answers} answers, closed: {closed}");
    server.stop().unwrap();
}
