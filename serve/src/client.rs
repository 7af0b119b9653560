//! A blocking client of a running server, for `gpuplace submit`, `status` and `finish` and for
//! tests. It returns the server's JSON as the typed bodies of [`crate::api`].

use std::time::Duration;

use crate::api::{ErrorResponse, JobState, JobView, JobsResponse};
use crate::error::ServeError;

/// The largest answer the client reads, bytes.
pub const MAX_ANSWER_BYTES: u64 = 1 << 30;

/// A client of one server.
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    /// A client of the server at `base` (`http://127.0.0.1:7070`), sending `token` as a bearer
    /// token when given.
    pub fn new(base: &str, token: Option<String>) -> Client {
        // Each phase of a request has its limit, but name resolution has none: with a limit,
        // ureq resolves in a new thread for every request (its connection pool is looked up
        // after), which under load costs more than the request. The system resolver has its own.
        let long = Some(Duration::from_secs(600));
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_send_request(long)
            .timeout_send_body(long)
            .timeout_recv_response(long)
            .timeout_recv_body(long)
            .http_status_as_error(false)
            .build();
        Client { base: base.trim_end_matches('/').to_string(), token, agent: config.into() }
    }

    fn fail(&self, url: &str, message: impl Into<String>) -> ServeError {
        ServeError::Client { url: url.to_string(), status: None, message: message.into() }
    }

    fn finish(
        &self,
        url: &str,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<String, ServeError> {
        let mut response = response.map_err(|e| self.fail(url, e.to_string()))?;
        let status = response.status();
        // Answers may be large (a listing, a big submission's states): well past ureq's 10 MiB default.
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_string()
            .map_err(|e| self.fail(url, e.to_string()))?;
        if status.is_success() {
            return Ok(body);
        }
        let line = serde_json::from_str::<ErrorResponse>(&body).map(|e| e.error).unwrap_or(body);
        Err(ServeError::Client {
            url: url.to_string(),
            status: Some(status.as_u16()),
            message: format!("{}: {}", status.as_u16(), line.trim()),
        })
    }

    fn get(&self, path: &str) -> Result<String, ServeError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.agent.get(&url);
        if let Some(token) = &self.token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        self.finish(&url, request.call())
    }

    fn post(&self, path: &str, body: &[u8]) -> Result<String, ServeError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.agent.post(&url).header("Content-Type", "application/json");
        if let Some(token) = &self.token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        self.finish(&url, request.send(body))
    }

    fn parse<T: serde::de::DeserializeOwned>(&self, path: &str, text: &str) -> Result<T, ServeError> {
        serde_json::from_str(text)
            .map_err(|e| self.fail(&format!("{}{path}", self.base), format!("unexpected answer: {e}")))
    }

    /// Submits jobs (a job object, an array, or `{"jobs": [...]}`): each job's state.
    pub fn submit(&self, body: &[u8]) -> Result<JobsResponse, ServeError> {
        let text = self.post("/v1/jobs", body)?;
        self.parse("/v1/jobs", &text)
    }

    /// Job `id`.
    pub fn job(&self, id: &str) -> Result<JobView, ServeError> {
        let path = format!("/v1/jobs/{}", encode_segment(id));
        let text = self.get(&path)?;
        self.parse(&path, &text)
    }

    /// Why waiting job `id` is not placed now.
    pub fn explain(&self, id: &str) -> Result<gpuplace::engine::explain::Explanation, ServeError> {
        let path = format!("/v1/jobs/{}/explain", encode_segment(id));
        let text = self.get(&path)?;
        self.parse(&path, &text)
    }

    /// Finishes (or cancels) job `id`.
    pub fn finish_job(&self, id: &str) -> Result<JobView, ServeError> {
        let path = format!("/v1/jobs/{}/finish", encode_segment(id));
        let text = self.post(&path, b"")?;
        self.parse(&path, &text)
    }

    /// Up to `limit` jobs in `state` (all states when None) submitted after number `after`.
    pub fn list(
        &self,
        state: Option<JobState>,
        after: Option<u64>,
        limit: Option<usize>,
    ) -> Result<JobsResponse, ServeError> {
        let mut query = Vec::new();
        if let Some(state) = state {
            query.push(format!("state={}", state.name()));
        }
        if let Some(after) = after {
            query.push(format!("after={after}"));
        }
        if let Some(limit) = limit {
            query.push(format!("limit={limit}"));
        }
        let path = if query.is_empty() { "/v1/jobs".to_string() } else { format!("/v1/jobs?{}", query.join("&")) };
        let text = self.get(&path)?;
        self.parse(&path, &text)
    }

    /// Applies fleet events (one, or an array, as JSON): the jobs they requeued.
    pub fn events(&self, body: &[u8]) -> Result<crate::api::EventsResponse, ServeError> {
        let text = self.post("/v1/fleet/events", body)?;
        self.parse("/v1/fleet/events", &text)
    }

    /// The fleet as it stands.
    pub fn fleet(&self) -> Result<crate::api::FleetView, ServeError> {
        let text = self.get("/v1/fleet")?;
        self.parse("/v1/fleet", &text)
    }

    /// The Prometheus text of `/metrics`.
    pub fn metrics(&self) -> Result<String, ServeError> {
        self.get("/metrics")
    }

    /// Whether `/healthz` answers.
    pub fn health(&self) -> Result<(), ServeError> {
        self.get("/healthz").map(|_| ())
    }
}

/// `id` as one path segment: every byte outside the unreserved set percent-encoded.
fn encode_segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Why creating a Binding failed: the API server's status when it answered, and the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingFailure {
    /// The status the API server answered with; None when it did not answer (the request may
    /// still have been applied).
    pub status: Option<u16>,
    /// One line saying why.
    pub message: String,
}

/// Each request to the API server gives up after this long: less than the extender's
/// `httpTimeout` in docs/KUBERNETES.md (10 s), so that gpuplace answers kube-scheduler itself.
const API_TIMEOUT: Duration = Duration::from_secs(4);

fn api_agent() -> ureq::Agent {
    ureq::Agent::config_builder().timeout_global(Some(API_TIMEOUT)).http_status_as_error(false).build().into()
}

/// Creates the Binding of the pod of `args` to its node on the Kubernetes API server at `api`
/// (`POST /api/v1/namespaces/{namespace}/pods/{name}/binding`, as kube-scheduler's own binder
/// does), sending `token` as a bearer token when given.
pub fn create_binding(
    api: &str,
    token: Option<&str>,
    args: &crate::kube::ExtenderBindingArgs,
) -> Result<(), BindingFailure> {
    let url = format!(
        "{}/api/v1/namespaces/{}/pods/{}/binding",
        api.trim_end_matches('/'),
        encode_segment(&args.pod_namespace),
        encode_segment(&args.pod_name)
    );
    let body = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": { "name": args.pod_name, "namespace": args.pod_namespace, "uid": args.pod_uid },
        "target": { "apiVersion": "v1", "kind": "Node", "name": args.node },
    });
    let mut request = api_agent().post(&url).header("Content-Type", "application/json");
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    let mut response = request
        .send(body.to_string())
        .map_err(|e| BindingFailure { status: None, message: format!("binding on {url}: {e}") })?;
    if response.status().is_success() {
        return Ok(());
    }
    let status = response.status().as_u16();
    let text = response.body_mut().with_config().limit(64 << 10).read_to_string().unwrap_or_default();
    Err(BindingFailure {
        status: Some(status),
        message: format!("binding on {url}: {status}: {}", text.replace('\n', " ").trim()),
    })
}

/// What the API server at `api` says of a pod: gone (404, or another pod of that name now: its
/// UID differs from `uid`), or there with the node it is bound to (`spec.nodeName`; None while it
/// is not bound); or why it could not be read.
pub fn pod_node(api: &str, token: Option<&str>, namespace: &str, name: &str, uid: &str) -> Result<PodOnServer, String> {
    let url = format!(
        "{}/api/v1/namespaces/{}/pods/{}",
        api.trim_end_matches('/'),
        encode_segment(namespace),
        encode_segment(name)
    );
    let mut request = api_agent().get(&url);
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    let mut response = request.call().map_err(|e| format!("reading {url}: {e}"))?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(16 << 20)
        .read_to_string()
        .map_err(|e| format!("reading {url}: {e}"))?;
    if status == 404 {
        return Ok(PodOnServer::Gone);
    }
    if status != 200 {
        return Err(format!("reading {url}: {status}"));
    }
    let pod: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("reading {url}: {e}"))?;
    if pod["metadata"]["uid"].as_str() != Some(uid) {
        return Ok(PodOnServer::Gone);
    }
    Ok(PodOnServer::Bound(pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()).map(str::to_string)))
}

/// A pod as [`list_pods`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSeen {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its UID.
    pub uid: String,
    /// `status.phase`: `Pending`, `Running`, `Succeeded`, `Failed` or `Unknown`.
    pub phase: String,
}

/// The most pages one listing reads (500 pods each): 5,000,000 pods, past any cluster.
const MAX_LIST_PAGES: usize = 10_000;

/// Every pod on the Kubernetes API server at `api` (`GET /api/v1/pods`, 500 at a time, following
/// `metadata.continue`), read from etcd (no `resourceVersion`: a consistent read, so a pod bound
/// before the listing began is in it unless it is gone). Why not, when a page cannot be read.
pub fn list_pods(api: &str, token: Option<&str>) -> Result<Vec<PodSeen>, String> {
    // The fields read of a `PodList` page (the API server's `v1.PodList`); others are ignored.
    #[derive(serde::Deserialize)]
    struct PodList {
        #[serde(default)]
        metadata: ListMeta,
        items: Vec<Pod>,
    }
    #[derive(serde::Deserialize, Default)]
    struct ListMeta {
        #[serde(default, rename = "continue")]
        next: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Pod {
        metadata: PodMeta,
        #[serde(default)]
        status: PodStatus,
    }
    #[derive(serde::Deserialize)]
    struct PodMeta {
        #[serde(default)]
        namespace: String,
        name: String,
        uid: String,
    }
    #[derive(serde::Deserialize, Default)]
    struct PodStatus {
        #[serde(default)]
        phase: String,
    }
    let base = format!("{}/api/v1/pods?limit=500", api.trim_end_matches('/'));
    let mut pods = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..MAX_LIST_PAGES {
        let url = match &next {
            Some(token) => format!("{base}&continue={}", encode_segment(token)),
            None => base.clone(),
        };
        let mut request = api_agent().get(&url);
        if let Some(token) = token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let mut response = request.call().map_err(|e| format!("listing pods on {url}: {e}"))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(format!("listing pods on {url}: {status}"));
        }
        let text = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| format!("listing pods on {url}: {e}"))?;
        let page: PodList = serde_json::from_str(&text)
            .map_err(|e| format!("listing pods on {url}: not a pod list: {}", e.to_string().replace('\n', " ")))?;
        pods.extend(page.items.into_iter().map(|pod| PodSeen {
            namespace: pod.metadata.namespace,
            name: pod.metadata.name,
            uid: pod.metadata.uid,
            phase: pod.status.phase,
        }));
        let following = page.metadata.next.filter(|c| !c.is_empty());
        match following {
            None => return Ok(pods),
            // A server that hands back the token it was given would page forever.
            Some(token) if next.as_ref() == Some(&token) => {
                return Err(format!("listing pods on {url}: the API server gave back the same continue token"));
            }
            Some(token) => next = Some(token),
        }
    }
    Err(format!("listing pods on {base}: more than {MAX_LIST_PAGES} pages"))
}

/// What [`pod_node`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodOnServer {
    /// No pod of that name and UID.
    Gone,
    /// The pod, bound to that node (None: not bound).
    Bound(Option<String>),
}
