//! The published JSON Schemas: `docs/schemas/` holds exactly what `gpuplace schema` prints (run
//! with `GPUPLACE_UPDATE_SCHEMAS=1` to rewrite them after changing a format), and every JSON file the
//! command writes validates against its schema and carries `format_version`. A file that breaks its
//! schema is caught (the negative control).

mod common;

use std::path::{Path, PathBuf};

use common::{AT, gpuplace, path, stderr, stdout, temp_dir};
use gpuplace::engine::explain::Explanation;
use gpuplace::replay::{FateRecord, ReplayFile, ReplayJob, ReplayLine};
use gpuplace::report::Versioned;
use gpuplace::report::out::{OutFile, read_jsonl};
use gpuplace::sim::bench::BenchReport;
use gpuplace::sim::compare::CompareFile;
use gpuplace::sim::inflate::InflateReport;
use serde_json::Value;

fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/schemas")
}

/// The format names `gpuplace schema` lists.
fn names() -> Vec<String> {
    let output = gpuplace(&["schema"]);
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output).lines().skip(1).map(|l| l.split_whitespace().next().unwrap().to_string()).collect()
}

fn schema(name: &str) -> Value {
    let output = gpuplace(&["schema", name]);
    assert!(output.status.success(), "{}", stderr(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn committed_schemas_are_what_the_command_prints() {
    let names = names();
    assert_eq!(names.len(), 21, "{names:?}");
    let update = std::env::var("GPUPLACE_UPDATE_SCHEMAS").is_ok_and(|v| v == "1");
    let mut stale = Vec::new();
    for name in &names {
        let printed = gpuplace(&["schema", name]).stdout;
        let file = schemas_dir().join(format!("{name}.schema.json"));
        if update {
            std::fs::create_dir_all(schemas_dir()).unwrap();
            std::fs::write(&file, &printed).unwrap();
        } else if std::fs::read(&file).ok().as_deref() != Some(printed.as_slice()) {
            stale.push(file.display().to_string());
        }
    }
    assert!(stale.is_empty(), "out of date (rerun with GPUPLACE_UPDATE_SCHEMAS=1 and commit): {stale:?}");
    // No schema file is left over from a format that is gone.
    let mut committed: Vec<String> = std::fs::read_dir(schemas_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    committed.sort();
    let mut expected: Vec<String> = names.iter().map(|n| format!("{n}.schema.json")).collect();
    expected.sort();
    assert_eq!(committed, expected);
    let unknown = gpuplace(&["schema", "nope"]);
    common::assert_fails_cleanly("unknown schema", &unknown, &["`nope`", "place-line"]);
}

/// Every error of `instance` against schema `name`, as text.
fn violations(name: &str, instance: &Value) -> Vec<String> {
    let schema = schema(name);
    let validator = jsonschema::validator_for(&schema).unwrap();
    validator.iter_errors(instance).map(|e| format!("{} at {}", e, e.instance_path())).collect()
}

fn assert_valid(name: &str, instance: &Value) {
    let errors = violations(name, instance);
    assert!(errors.is_empty(), "{name}: {errors:?}");
}

fn read_json(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn read_lines(path: &str) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn run(args: &[&str]) -> String {
    let output = gpuplace(args);
    assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    stdout(&output)
}

#[test]
fn every_file_written_validates_against_its_schema() {
    let dir = temp_dir("schemas");
    let p = |name: &str| path(&dir, name);
    let (fleet, jobs) = (p("fleet.json"), p("jobs.json"));

    std::fs::write(&fleet, run(&["fleet", "--json"])).unwrap();
    assert_valid("fleet", &read_json(&fleet));
    run(&["generate", "--count", "300", "--at", AT, "--out", &jobs]);
    assert_valid("jobs", &read_json(&jobs));
    let policy = p("policy.json");
    std::fs::write(&policy, run(&["policy", "--preset", "spread"])).unwrap();
    assert_valid("policy", &read_json(&policy));
    // The policy file `policy` writes places exactly as the preset it was written from.
    let (by_file, by_preset) = (p("by-file.json"), p("by-preset.json"));
    let common = ["place", "--jobs", &jobs, "--at", AT, "--backend", "cpu", "--out"];
    run(&[&common[..], &[&by_file, "--policy", &policy]].concat());
    run(&[&common[..], &[&by_preset, "--policy-preset", "spread"]].concat());
    assert_eq!(std::fs::read(&by_file).unwrap(), std::fs::read(&by_preset).unwrap());

    let inputs = ["--fleet", &fleet, "--jobs", &jobs, "--policy", &policy, "--at", AT, "--backend", "cpu"];
    let (out, out_lines) = (p("out.json"), p("out.jsonl"));
    run(&[&["place"][..], &inputs, &["--out", &out]].concat());
    run(&[&["place"][..], &inputs, &["--out", &out_lines]].concat());
    let document = read_json(&out);
    assert_valid("place", &document);
    assert!(document["unplaced"].as_array().is_some_and(|u| !u.is_empty()), "no unplaced job to check");
    let out_lines_read = read_lines(&out_lines);
    for line in &out_lines_read {
        assert_valid("place-line", line);
    }
    assert_eq!(out_lines_read.len(), 1 + document["summary"]["jobs"].as_u64().unwrap() as usize);

    // --out-format decides whatever the name says.
    let (forced, forced_json) = (p("out.txt"), p("lines.json"));
    run(&[&["place"][..], &inputs, &["--out", &forced, "--out-format", "jsonl"]].concat());
    assert_eq!(std::fs::read_to_string(&forced).unwrap(), std::fs::read_to_string(&out_lines).unwrap());
    run(&[&["place"][..], &inputs, &["--out", &forced_json, "--out-format", "json"]].concat());
    assert_eq!(read_json(&forced_json), document);

    let explained = run(&[&["explain"][..], &inputs, &["--job", "training-003", "--json"]].concat());
    assert_valid("explain", &serde_json::from_str(&explained).unwrap());

    let (replay, replay_lines) = (p("replay.json"), p("replay.jsonl"));
    let replay_args = ["--interval", "600", "--max-wait", "3600"];
    run(&[&["replay"][..], &inputs, &replay_args, &["--json", &replay]].concat());
    run(&[&["replay"][..], &inputs, &replay_args, &["--json", &replay_lines]].concat());
    assert_valid("replay", &read_json(&replay));
    for line in read_lines(&replay_lines) {
        assert_valid("replay-line", &line);
    }

    let compare = p("compare.json");
    run(&[&["compare"][..], &inputs[..6], &["--backend", "cpu", "--json", &compare]].concat());
    assert_valid("compare", &read_json(&compare));

    // The importer's outputs: a fleet file and a jobs file.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/azure_conv_sample.csv");
    let imported = p("imported.json");
    run(&["import", "azure", fixture.to_str().unwrap(), "--out", &imported]);
    assert_valid("jobs", &read_json(&imported));
    let pods = p("pods.csv");
    std::fs::write(
        &pods,
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n\
         p0,1000,1024,1,1000,,LS,Running,0,100,0\n",
    )
    .unwrap();
    let nodes = p("nodes.csv");
    std::fs::write(&nodes, "sn,cpu_milli,memory_mib,gpu,model\nn0,96000,786432,8,V100M32\n").unwrap();
    let (imported_fleet, imported_pods) = (p("openb-fleet.json"), p("openb-jobs.json"));
    run(&["import", "alibaba", &pods, "--nodes", &nodes, "--fleet-out", &imported_fleet, "--out", &imported_pods]);
    assert_valid("fleet", &read_json(&imported_fleet));
    assert_valid("jobs", &read_json(&imported_pods));

    // The FGD experiment on the same lists.
    let (inflated, inflated_plot) = (p("inflate.json"), p("inflate.svg"));
    run(&[
        "inflate",
        "--nodes",
        &nodes,
        "--pods",
        &pods,
        "--backend",
        "cpu",
        "--json",
        &inflated,
        "--plot",
        &inflated_plot,
    ]);
    assert_valid("inflate", &read_json(&inflated));
    let inflate_read: Versioned<InflateReport> = serde_json::from_value(read_json(&inflated)).unwrap();
    assert_eq!(inflate_read.body.curve.len(), 131);
    let svg = std::fs::read_to_string(&inflated_plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "the plot is not one SVG document");

    let bench = p("bench.json");
    run(&["bench", "--count", "200", "--racks", "20", "--repeat", "1", "--no-gpu", "--json", &bench]);
    assert_valid("bench", &read_json(&bench));

    let load = p("load.json");
    run(&["load", "--in-system", "50", "--requests", "10", "--clients", "1", "--json", &load]);
    assert_valid("load", &read_json(&load));
    // A document of another format does not pass (the check can fail).
    assert!(!violations("load", &read_json(&bench)).is_empty());

    // gpuplace reads back what it wrote, in either form, to the same document.
    let out_file: OutFile = serde_json::from_value(document.clone()).unwrap();
    let from_lines = read_jsonl(&std::fs::read_to_string(&out_lines).unwrap(), "out.jsonl").unwrap();
    assert_eq!(from_lines, out_file);
    let replay_file: ReplayFile = serde_json::from_value(read_json(&replay)).unwrap();
    let replay_text = std::fs::read_to_string(&replay_lines).unwrap();
    let mut lines = replay_text.lines().map(|l| serde_json::from_str(l).unwrap());
    let Some(ReplayLine::Report(first)) = lines.next() else { panic!("the first line is not the report") };
    // Two runs: all but the scheduling times (wall-clock) are the same.
    let mut report = first.body;
    report.scheduling_ms_p50 = replay_file.report.scheduling_ms_p50;
    report.scheduling_ms_p99 = replay_file.report.scheduling_ms_p99;
    report.scheduling_s_total = replay_file.report.scheduling_s_total;
    assert!(report == replay_file.report, "the JSON Lines report differs from the JSON one");
    let jobs_read: Vec<ReplayJob> = lines
        .map(|line| match line {
            ReplayLine::Job(job) => job,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(jobs_read, replay_file.jobs);
    assert_eq!(jobs_read.len(), 300);
    assert!(jobs_read.iter().any(|j| matches!(j.fate, FateRecord::Rejected { .. })), "no rejected job to read");
    serde_json::from_value::<CompareFile>(read_json(&compare)).unwrap();
    serde_json::from_value::<Versioned<BenchReport>>(read_json(&bench)).unwrap();
    serde_json::from_str::<Versioned<Explanation>>(&explained).unwrap();

    // Every output names its format version.
    for file in
        [&fleet, &jobs, &policy, &out, &replay, &compare, &bench, &imported, &imported_fleet, &imported_pods, &inflated]
    {
        assert_eq!(read_json(file)["format_version"], 1, "{file}");
    }
    assert_eq!(out_lines_read[0]["format_version"], 1);
    assert_eq!(serde_json::from_str::<Value>(&explained).unwrap()["format_version"], 1);

    // The negative control: files that break their schema are caught.
    let mut broken = document.clone();
    broken["placements"][0]["racks"] = Value::from("all of them");
    assert!(!violations("place", &broken).is_empty(), "a string for the racks passed");
    let mut broken = document.clone();
    broken["unplaced"][0]["cause"]["code"] = Value::from("bad_luck");
    assert!(!violations("place", &broken).is_empty(), "an unknown cause code passed");
    let mut broken = read_json(&jobs);
    broken["jobs"][0].as_object_mut().unwrap().remove("gpus");
    assert!(!violations("jobs", &broken).is_empty(), "a job without gpus passed");
}

#[test]
fn inputs_accept_their_version_and_refuse_a_newer_one() {
    let dir = temp_dir("versions");
    let fleet = path(&dir, "fleet.json");
    let text = run(&["fleet", "--json"]);
    std::fs::write(&fleet, &text).unwrap();
    run(&["place", "--count", "50", "--fleet", &fleet, "--backend", "cpu"]);
    std::fs::write(&fleet, text.replacen("\"format_version\": 1", "\"format_version\": 2", 1)).unwrap();
    let output = gpuplace(&["place", "--count", "50", "--fleet", &fleet, "--backend", "cpu"]);
    common::assert_fails_cleanly("newer fleet", &output, &["fleet.json", "format_version", "2"]);

    let jobs = path(&dir, "jobs.json");
    let text = run(&["generate", "--count", "5", "--at", AT]);
    std::fs::write(&jobs, text.replacen("\"format_version\": 1", "\"format_version\": 9", 1)).unwrap();
    let output = gpuplace(&["place", "--jobs", &jobs, "--backend", "cpu"]);
    common::assert_fails_cleanly("newer jobs", &output, &["jobs.json", "format_version", "9"]);

    let policy = path(&dir, "policy.json");
    let weights = r#"{"pack": 1, "spread": 0, "latency": 5, "energy": 0, "carbon": 0, "hbm": 0}"#;
    let policy_text = format!(
        r#"{{"format_version": 0, "inference": {weights}, "agentic": {weights}, "multimodal": {weights}, "training": {weights}}}"#
    );
    std::fs::write(&policy, policy_text).unwrap();
    let output = gpuplace(&["place", "--count", "5", "--policy", &policy, "--backend", "cpu"]);
    common::assert_fails_cleanly("version 0", &output, &["policy.json", "format_version"]);
}
