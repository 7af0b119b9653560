//! `serve`, and its clients `submit`, `status` and `finish`.

use std::path::Path;
use std::time::Duration;

use gpuplace::Policy;
use gpuplace::model::policy::Preset;
use gpuplace_serve::{Client, JobState, Server, ServerConfig, Service, ServiceConfig};

use crate::args::{BackendArg, ServerArgs};
use crate::commands::{is_std, load_fleet};
use crate::render::note;

/// What `serve` was given.
pub struct ServeArgs<'a> {
    pub fleet: Option<&'a Path>,
    pub policy: Option<&'a Path>,
    pub policy_preset: Option<&'a str>,
    pub state: &'a Path,
    pub listen: &'a str,
    pub token_file: Option<&'a Path>,
    pub batch_window_ms: u64,
    pub backend: BackendArg,
    pub preemption: bool,
    pub tenants: Option<&'a Path>,
    pub kube_api: Option<&'a str>,
    pub kube_token_file: Option<&'a Path>,
    pub kube_sync_s: u64,
}

/// Serves until SIGTERM or SIGINT.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let fleet = if args.fleet.is_some() || !args.state.join(gpuplace_serve::store::STATE_FILE).exists() {
        Some(load_fleet(args.fleet)?)
    } else {
        None
    };
    let policy = match (args.policy, args.policy_preset) {
        (Some(path), _) => Some(Policy::from_path(path)?),
        (None, Some(name)) => Some(Preset::parse(name).expect("clap checked the name").policy(1)),
        (None, None) => None,
    };
    let token = args.token_file.map(read_token).transpose()?;
    let service = Service::open(ServiceConfig {
        fleet,
        policy,
        backend: args.backend.choice(),
        state_dir: args.state.to_path_buf(),
        preemption: args.preemption,
        tenants: args.tenants.map(gpuplace::Tenants::from_path).transpose()?,
    })?;
    for notice in service.scheduler().notices() {
        note(notice);
    }
    let jobs = service.job_count();
    let waiting = service.waiting_count();
    let backend = service.scheduler().backend().describe();
    let config = ServerConfig {
        listen: args.listen.to_string(),
        batch_window: Duration::from_millis(args.batch_window_ms),
        token,
        stop_on_signals: true,
        kube_api: args
            .kube_api
            .map(|url| Ok::<_, anyhow::Error>((url.to_string(), args.kube_token_file.map(read_token).transpose()?)))
            .transpose()?,
        kube_sync: (args.kube_sync_s > 0).then(|| Duration::from_secs(args.kube_sync_s)),
        warn: Some(gpuplace_serve::server::Warn(std::sync::Arc::new(|line: &str| {
            eprintln!("gpuplace serve: warning: {line}")
        }))),
        ..ServerConfig::default()
    };
    let server = Server::start(service, config)?;
    note(&format!(
        "listening on http://{} ({backend}; {jobs} jobs restored, {waiting} waiting; state in {})",
        server.address(),
        args.state.display()
    ));
    server.wait()?;
    note("stopped; state flushed");
    Ok(())
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| gpuplace::InputError::new(path.display().to_string(), "(file)", "token", e.to_string()))?;
    let token = text.trim();
    if token.is_empty() || token.len() > 4096 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(gpuplace::InputError::new(
            path.display().to_string(),
            "(file)",
            "token",
            "must be one line of 1 to 4096 printable ASCII characters",
        )
        .into());
    }
    Ok(token.to_string())
}

fn client(server: &ServerArgs) -> anyhow::Result<Client> {
    let token = server.token_file.as_deref().map(read_token).transpose()?;
    Ok(Client::new(&server.server, token))
}

/// `submit FILE`: prints the server's answer, a JSON line per job.
pub fn submit(file: &Path, server: &ServerArgs) -> anyhow::Result<()> {
    let body = if is_std(file) {
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut body)
            .map_err(|e| gpuplace::InputError::new(super::STDIN_NAME, "(file)", "(input)", e.to_string()))?;
        body
    } else {
        std::fs::read(file)
            .map_err(|e| gpuplace::InputError::new(file.display().to_string(), "(file)", "(input)", e.to_string()))?
    };
    let answer = client(server)?.submit(&body)?;
    let mut text = String::new();
    for job in &answer.jobs {
        text.push_str(&serde_json::to_string(job)?);
        text.push('\n');
    }
    crate::output::print(&text)
}

/// `status [ID]`: one job as JSON, or a JSON line per listed job.
pub fn status(
    id: Option<&str>,
    explain: bool,
    state: Option<&str>,
    after: Option<u64>,
    limit: usize,
    server: &ServerArgs,
) -> anyhow::Result<()> {
    let client = client(server)?;
    let text = match id {
        Some(id) if explain => serde_json::to_string_pretty(&client.explain(id)?)? + "\n",
        Some(id) => serde_json::to_string_pretty(&client.job(id)?)? + "\n",
        None => {
            let state = state.map(|s| JobState::parse(s).expect("clap checked the name"));
            let answer = client.list(state, after, Some(limit))?;
            let mut text = String::new();
            for job in &answer.jobs {
                text.push_str(&serde_json::to_string(job)?);
                text.push('\n');
            }
            // A full page may have more after it.
            if answer.jobs.len() == limit.min(gpuplace_serve::service::MAX_LIST) && limit > 0 {
                let last = answer.jobs.last().map_or(0, |j| j.submitted);
                note(&format!(
                    "{} jobs shown of {} in all (--limit); --after {last} shows the next",
                    answer.jobs.len(),
                    answer.total.unwrap_or(0)
                ));
            }
            text
        }
    };
    crate::output::print(&text)
}

/// `finish ID`.
pub fn finish(id: &str, server: &ServerArgs) -> anyhow::Result<()> {
    let job = client(server)?.finish_job(id)?;
    crate::output::print(&(serde_json::to_string(&job)? + "\n"))
}

/// `load`: the load generator on the built-in fleet.
pub fn load(config: &gpuplace_serve::load::LoadConfig, json: Option<&Path>) -> anyhow::Result<()> {
    let mut outputs = crate::output::Outputs::new([]);
    let json_id = json.map(|path| outputs.plan(path)).transpose()?;
    let stdout_taken = outputs.uses_stdout();
    let report = gpuplace_serve::load::run(gpuplace::builtin::default_fleet(), config, &mut |line| {
        note(&format!("load: {line}"))
    })?;
    let r = &report;
    let text = format!(
        "backend {}; {} jobs in the system ({} placed); {} clients, {}, {} {}jobs per submission, batch window {} ms\n\
         {:>10} {:>10} {:>12} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}\n\
         {:>10} {:>10} {:>12.0} {:>12.0} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>10.2}\n",
        r.backend,
        r.in_system,
        r.placed_before,
        r.clients,
        match r.rate {
            Some(rate) => format!("open loop at {rate:.0} submissions/s (reached {:.0}/s)", r.submissions_per_s),
            None => "closed loop".to_string(),
        },
        r.batch,
        if r.varied { "varied " } else { "" },
        r.window_ms,
        "submits",
        "placed",
        "decisions/s",
        "requests/s",
        "sub p50 ms",
        "sub p99 ms",
        "sub max ms",
        "fin p50 ms",
        "fin p99 ms",
        "fin max ms",
        r.submissions,
        r.decisions,
        r.decisions_per_s,
        r.requests_per_s,
        r.submit_ms[0],
        r.submit_ms[1],
        r.submit_ms[2],
        r.finish_ms[0],
        r.finish_ms[1],
        r.finish_ms[2],
    );
    // Where the server's core spent the phase: rounds and durable commits (the rest is batching,
    // applying requests and answering them, while HTTP and the clients share the cores).
    let per = |seconds: f64, count: u64| if count == 0 { 0.0 } else { seconds * 1e3 / count as f64 };
    let text = format!(
        "{text}server: {} rounds, {:.2} s ({:.3} ms each); {} commits, {:.2} s ({:.3} ms each); phase {:.2} s\n",
        r.rounds,
        r.round_s,
        per(r.round_s, r.rounds),
        r.commits,
        r.commit_s,
        per(r.commit_s, r.commits),
        r.seconds,
    );
    // An open loop that did not keep its rate measured clients that fell behind, not the rate.
    let text = match (r.rate, r.send_lag_ms) {
        (Some(rate), Some(lag)) => {
            let behind = if r.submissions_per_s < 0.95 * rate {
                format!(
                    "; note: only {:.0} of {rate:.0} submissions/s went out (the clients fell behind)",
                    r.submissions_per_s
                )
            } else {
                String::new()
            };
            format!(
                "{text}load generator: sent after due p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms{behind}\n",
                lag[0], lag[1], lag[2]
            )
        }
        _ => text,
    };
    if let Some(id) = json_id {
        outputs.write(vec![(id, crate::output::json_content(gpuplace::report::Versioned::new(report)))])?;
    }
    crate::commands::print_text(&text, stdout_taken)
}
