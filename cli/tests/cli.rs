//! The `gpuplace` binary end to end: the main commands, determinism, backend-independent output,
//! and every kind of bad input (one line naming file, record and field; exit code 2; no panic; no
//! partial output file).

mod common;

use std::path::Path;
use std::process::Command;

use common::{AT, gpu_available, gpuplace, path, stderr, stdout, temp_dir};

#[test]
fn place_without_arguments_prints_a_summary() {
    let output = gpuplace(&["place", "--count", "300", "--backend", "cpu"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    for needle in
        ["placed", "inference", "training", "iren-childress", "MW drawn", "USD/h", "backend: cpu", "wall time"]
    {
        assert!(text.contains(needle), "summary lacks {needle:?}:\n{text}");
    }
}

/// The built-in fleet is dated: its summary says so, placement defaults to that date (so the result
/// does not change from day to day), and `--at` overrides it.
#[test]
fn the_builtin_fleet_dates_the_default_placement() {
    let fleet = stdout(&gpuplace(&["fleet"]));
    assert!(fleet.contains("as of 2026-11-26"), "{fleet}");
    let default = gpuplace(&["place", "--count", "200", "--backend", "cpu"]);
    let first = stdout(&default).lines().next().unwrap().to_string();
    assert!(first.ends_with("on 2026-11-26"), "{first}");
    let later = gpuplace(&["place", "--count", "200", "--backend", "cpu", "--at", "2027-03-01"]);
    assert!(stdout(&later).lines().next().unwrap().ends_with("on 2027-03-01"), "{}", stdout(&later));
    // Loughton comes online in 2027: on the built-in date only jobs whose `not_before` lies in 2027
    // may run there; later, any job may.
    let used = |output: &std::process::Output| -> u64 {
        let text = stdout(output);
        let line = text.lines().find(|l| l.starts_with("nscale-loughton")).unwrap().to_string();
        line.split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    assert!(used(&default) < used(&later), "{} vs {}", used(&default), used(&later));
}

#[test]
fn out_file_has_the_documented_shape_and_is_deterministic() {
    let dir = temp_dir("out");
    let (a, b) = (path(&dir, "a.json"), path(&dir, "b.json"));
    for out in [&a, &b] {
        let output =
            gpuplace(&["place", "--count", "2000", "--seed", "9", "--at", AT, "--backend", "cpu", "--out", out]);
        assert!(output.status.success(), "{}", stderr(&output));
    }
    let bytes = std::fs::read(&a).unwrap();
    assert_eq!(bytes, std::fs::read(&b).unwrap(), "two identical runs wrote different files");
    let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let placement = &doc["placements"][0];
    for key in ["job", "site", "cluster", "racks", "score"] {
        assert!(!placement[key].is_null(), "placement lacks {key}: {placement}");
    }
    assert!(placement["racks"][0]["rack"].is_u64() && placement["racks"][0]["gpus"].is_u64());
    assert!(doc["unplaced"].as_array().unwrap().iter().all(|u| u["job"].is_string() && u["reason"].is_string()));
    let placed = doc["placements"].as_array().unwrap().len() + doc["unplaced"].as_array().unwrap().len();
    assert_eq!(placed, 2000, "every job is placed or unplaced");
    assert_eq!(doc["summary"]["jobs"], 2000);
}

#[test]
fn gpu_and_cpu_backends_write_identical_files() {
    if !gpu_available("gpu_and_cpu_backends_write_identical_files") {
        return;
    }
    let dir = temp_dir("backends");
    let (cpu, gpu) = (path(&dir, "cpu.json"), path(&dir, "gpu.json"));
    let run = |backend: &str, out: &str| {
        gpuplace(&["place", "--count", "3000", "--at", AT, "--backend", backend, "--out", out])
    };
    let cpu_run = run("cpu", &cpu);
    let gpu_run = run("gpu", &gpu);
    assert!(cpu_run.status.success() && gpu_run.status.success(), "{}{}", stderr(&cpu_run), stderr(&gpu_run));
    assert!(stdout(&gpu_run).contains("backend: gpu"), "{}", stdout(&gpu_run));
    assert_eq!(std::fs::read(&cpu).unwrap(), std::fs::read(&gpu).unwrap());
}

#[test]
fn fleet_json_round_trips_through_place() {
    let dir = temp_dir("fleet");
    let fleet_json = path(&dir, "fleet.json");
    let output = gpuplace(&["fleet", "--json"]);
    assert!(output.status.success());
    std::fs::write(&fleet_json, &output.stdout).unwrap();
    let table = stdout(&gpuplace(&["fleet", "--fleet", &fleet_json]));
    assert!(table.contains("nscale-narvik") && table.contains("total"), "{table}");
    let (a, b) = (path(&dir, "builtin.json"), path(&dir, "file.json"));
    assert!(gpuplace(&["place", "--count", "500", "--at", AT, "--backend", "cpu", "--out", &a]).status.success());
    assert!(
        gpuplace(&["place", "--count", "500", "--at", AT, "--backend", "cpu", "--fleet", &fleet_json, "--out", &b])
            .status
            .success()
    );
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}

#[test]
fn generated_csv_and_json_place_identically() {
    let dir = temp_dir("generate");
    let (csv, json) = (path(&dir, "jobs.csv"), path(&dir, "jobs.json"));
    for out in [&csv, &json] {
        let output = gpuplace(&["generate", "--count", "400", "--seed", "3", "--at", AT, "--out", out]);
        assert!(output.status.success(), "{}", stderr(&output));
    }
    assert!(
        std::fs::read_to_string(&csv).unwrap().starts_with("id,kind,gpus,hbm_gb_per_gpu,priority,duration_h,region")
    );
    let (a, b) = (path(&dir, "a.json"), path(&dir, "b.json"));
    assert!(gpuplace(&["place", "--jobs", &csv, "--at", AT, "--backend", "cpu", "--out", &a]).status.success());
    assert!(gpuplace(&["place", "--jobs", &json, "--at", AT, "--backend", "cpu", "--out", &b]).status.success());
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}

#[test]
fn explain_shows_terms_and_rejections() {
    let jobs: serde_json::Value =
        serde_json::from_slice(&gpuplace(&["generate", "--count", "500", "--at", AT]).stdout).unwrap();
    let training = jobs["jobs"].as_array().unwrap().iter().find(|j| j["kind"] == "training").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let output = gpuplace(&["explain", "--count", "500", "--at", AT, "--backend", "cpu", "--job", &training]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    for needle in [
        format!("job {training}").as_str(),
        "pack",
        "latency",
        "energy",
        "carbon",
        "racks rejected per failed constraint",
        "online",
        "decision:",
    ] {
        assert!(text.contains(needle), "explain lacks {needle:?}:\n{text}");
    }
    let output = gpuplace(&["explain", "--count", "5", "--backend", "cpu", "--job", "nope"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("nope"));
}

#[test]
fn explain_shows_what_shared_gpus_have_left() {
    // One rack of two trays of 4 GPUs; tray 0 shares two GPUs (400 and 850 thousandths in use).
    let dir = temp_dir("explain-shared");
    let fleet = path(&dir, "fleet.json");
    std::fs::write(
        &fleet,
        r#"{"regions": ["r"], "rack_types": {"x": {"gpu_model": "X", "gpus": 8, "hbm_gb_per_gpu": 80, "kw": 8, "nodes": 2}},
            "sites": [{"name": "s", "provider": "P", "country": "US", "jurisdiction": "US", "power_mw": 1,
              "pue": 1.2, "price_usd_per_mwh": 50, "carbon_g_per_kwh": 300, "online": "2020-01-01",
              "latency_ms": {"r": 10}, "clusters": [{"name": "a", "rack_type": "x", "racks": 2,
              "nodes": [{"rack": 0, "node": 0, "gpu_milli_used": [400, 850]}]}]}]}"#,
    )
    .unwrap();
    let jobs = path(&dir, "jobs.csv");
    std::fs::write(
        &jobs,
        "id,kind,gpus,hbm_gb_per_gpu,priority,duration_h,region,pods,gpu_milli\nw,inference,1,0,1,2,r,1,300\n",
    )
    .unwrap();
    let output =
        gpuplace(&["explain", "--fleet", &fleet, "--jobs", &jobs, "--at", AT, "--backend", "cpu", "--job", "w"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("shared×milli") && text.contains("1×600+1×150"), "{text}");
    // The rack without shared GPUs shows none.
    let row = text.lines().find(|l| l.contains(" a ") && l.contains("2×4") && !l.contains("×600")).unwrap_or_default();
    assert!(row.contains(" - "), "{text}");
    // A fleet without shared GPUs keeps the table as it was.
    let plain_fleet = path(&dir, "plain.json");
    let text = std::fs::read_to_string(&fleet).unwrap();
    std::fs::write(&plain_fleet, text.replace(r#"{"rack": 0, "node": 0, "gpu_milli_used": [400, 850]}"#, "")).unwrap();
    let plain =
        gpuplace(&["explain", "--fleet", &plain_fleet, "--jobs", &jobs, "--at", AT, "--backend", "cpu", "--job", "w"]);
    assert!(plain.status.success(), "{}", stderr(&plain));
    let text = stdout(&plain);
    assert!(text.contains("trays×free") && !text.contains("shared×milli"), "{text}");
    // JSON carries the room of each shared GPU.
    let json = gpuplace(&[
        "explain",
        "--fleet",
        &fleet,
        "--jobs",
        &jobs,
        "--at",
        AT,
        "--backend",
        "cpu",
        "--job",
        "w",
        "--json",
    ]);
    assert!(json.status.success(), "{}", stderr(&json));
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let rooms: Vec<&serde_json::Value> =
        value["candidates"].as_array().unwrap().iter().map(|c| &c["shared_free_milli"]).collect();
    assert!(rooms.contains(&&serde_json::json!([600, 150])) && rooms.contains(&&serde_json::json!([])), "{value}");
}

#[test]
fn help_has_examples_everywhere() {
    for args in [
        &["--help"][..],
        &["place", "--help"],
        &["explain", "--help"],
        &["fleet", "--help"],
        &["generate", "--help"],
        &["replay", "--help"],
        &["compare", "--help"],
        &["bench", "--help"],
        &["import", "alibaba", "--help"],
        &["import", "azure", "--help"],
        &["serve", "--help"],
        &["submit", "--help"],
        &["status", "--help"],
        &["finish", "--help"],
        &["load", "--help"],
    ] {
        let output = gpuplace(args);
        assert!(output.status.success());
        assert!(stdout(&output).contains("Examples:"), "{args:?} has no examples");
    }
}

/// Runs `place` on a bad input and checks the error contract.
fn assert_bad_input(test: &str, files: &[(&str, &str)], args: &[&str], must_contain: &[&str]) {
    let dir = temp_dir(test);
    for (name, contents) in files {
        std::fs::write(dir.join(name), contents).unwrap();
    }
    let out = path(&dir, "out.json");
    let mut full: Vec<String> = vec![
        "place".into(),
        "--backend".into(),
        "cpu".into(),
        "--count".into(),
        "50".into(),
        "--out".into(),
        out.clone(),
    ];
    full.extend(args.iter().map(|a| a.replace("{dir}", &dir.display().to_string())));
    let output = Command::new(env!("CARGO_BIN_EXE_gpuplace")).args(&full).output().unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{test}: exit code; stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{test}: not one line: {err}");
    assert!(!err.contains("panicked"), "{test}: {err}");
    for needle in must_contain {
        assert!(err.contains(needle), "{test}: error lacks {needle:?}: {err}");
    }
    assert!(!Path::new(&out).exists(), "{test}: a partial --out file was written");
    assert!(stdout(&output).is_empty(), "{test}: printed output despite the error");
}

const GOOD_JOB: &str = r#"{"id": "a", "kind": "inference", "gpus": 8, "hbm_gb_per_gpu": 100, "priority": 5, "duration_h": 2, "region": "us-east"}"#;

fn jobs_json(jobs: &[&str]) -> String {
    format!("{{\"jobs\": [{}]}}", jobs.join(","))
}

#[test]
fn bad_jobs_are_reported_precisely() {
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "malformed-json",
            r#"{"jobs": [{"id": "a", "kind": "inference", "gpus": 8,,}]}"#.into(),
            vec!["jobs.json", "malformed JSON", "line 1"],
        ),
        (
            "unknown-kind",
            jobs_json(&[&GOOD_JOB.replace("inference", "batch")]),
            vec!["jobs.json", "record 0", "`kind`", "batch"],
        ),
        (
            "zero-gpus",
            jobs_json(&[&GOOD_JOB.replace("\"gpus\": 8", "\"gpus\": 0")]),
            vec!["jobs.json", "job `a`", "`gpus`", "out of range"],
        ),
        (
            "negative-gpus",
            jobs_json(&[GOOD_JOB, &GOOD_JOB.replace("\"gpus\": 8", "\"gpus\": -4").replace("\"a\"", "\"b\"")]),
            vec!["jobs.json", "record 1", "`gpus`", "-4"],
        ),
        (
            "unknown-region",
            jobs_json(&[&GOOD_JOB.replace("us-east", "mars")]),
            vec!["jobs.json", "job `a`", "`region`", "mars"],
        ),
        ("duplicate-id", jobs_json(&[GOOD_JOB, GOOD_JOB]), vec!["jobs.json", "job `a`", "`id`", "duplicate"]),
        (
            "unknown-field",
            jobs_json(&[&GOOD_JOB.replace("\"priority\"", "\"prio\"")]),
            vec!["jobs.json", "record 0", "prio"],
        ),
        (
            "unknown-jurisdiction",
            jobs_json(&[&GOOD_JOB.replace("}", ", \"jurisdictions\": [\"XX\"]}")]),
            vec!["job `a`", "`jurisdictions`", "XX"],
        ),
        (
            "bad-date",
            jobs_json(&[&GOOD_JOB.replace("}", ", \"not_before\": \"2026-02-30\"}")]),
            vec!["record 0", "`not_before`", "2026-02-30"],
        ),
        (
            "no-duration",
            jobs_json(&[&GOOD_JOB.replace(", \"duration_h\": 2", "")]),
            vec!["job `a`", "`duration_h`", "missing"],
        ),
        (
            "pods-do-not-split",
            jobs_json(&[&GOOD_JOB.replace("}", ", \"pods\": 3}")]),
            vec!["job `a`", "`pods`", "3 pods do not split the job's 8 GPUs"],
        ),
        (
            "pods-too-large",
            jobs_json(&[&GOOD_JOB.replace("\"gpus\": 8", "\"gpus\": 18").replace("}", ", \"pods\": 1}")]),
            vec!["job `a`", "`pods`", "at most 8 GPUs each"],
        ),
        (
            "two-durations",
            jobs_json(&[&GOOD_JOB.replace("}", ", \"duration_s\": 60}")]),
            vec!["job `a`", "`duration_s`", "not both"],
        ),
        (
            "zero-latency",
            jobs_json(&[&GOOD_JOB.replace("}", ", \"max_latency_ms\": 0}")]),
            vec!["job `a`", "`max_latency_ms`"],
        ),
    ];
    for (test, contents, needles) in cases {
        assert_bad_input(test, &[("jobs.json", &contents)], &["--jobs", "{dir}/jobs.json"], &needles);
    }
}

#[test]
fn bad_csv_is_reported_by_line_and_field() {
    let header = "id,kind,gpus,hbm_gb_per_gpu,priority,duration_h,region,jurisdictions";
    let cases = [
        (
            "csv-ragged",
            format!("{header}\na,inference,8,100,5,2,us-east,\nb,inference,8\n"),
            vec!["jobs.csv", "line 3", "malformed CSV"],
        ),
        (
            "csv-gpus",
            format!("{header}\na,inference,8,100,5,2,us-east,\nb,inference,-1,100,5,2,us-east,\n"),
            vec!["jobs.csv", "line 3", "`gpus`"],
        ),
        (
            "csv-kind",
            format!("{header}\na,serving,8,100,5,2,us-east,\n"),
            vec!["jobs.csv", "line 2", "`kind`", "serving"],
        ),
        ("csv-column", "id,kind,gpus,hbm,priority,duration_h,region\n".to_string(), vec!["jobs.csv", "line 1", "hbm"]),
        (
            "csv-pods",
            "id,kind,gpus,hbm_gb_per_gpu,priority,duration_h,region,pods\na,inference,8,100,5,2,us-east,0\n"
                .to_string(),
            vec!["jobs.csv", "line 2", "`pods`", "0 pods"],
        ),
        (
            "csv-list",
            format!("{header}\na,inference,8,100,5,2,us-east,US|XX\n"),
            vec!["jobs.csv", "line 2", "`jurisdictions`", "XX"],
        ),
    ];
    for (test, contents, needles) in cases {
        assert_bad_input(test, &[("jobs.csv", &contents)], &["--jobs", "{dir}/jobs.csv"], &needles);
    }
}

#[test]
fn bad_fleets_are_reported_precisely() {
    let fleet: serde_json::Value = serde_json::from_slice(&gpuplace(&["fleet", "--json"]).stdout).unwrap();
    let variant = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut f = fleet.clone();
        edit(&mut f);
        f.to_string()
    };
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("empty-fleet", variant(&|f| f["sites"] = serde_json::json!([])), vec!["fleet.json", "`sites`", "no site"]),
        (
            "zero-gpu-rack",
            variant(&|f| f["rack_types"]["gb300-nvl72"]["gpus"] = 0.into()),
            vec!["fleet.json", "gb300-nvl72", "`gpus`"],
        ),
        (
            "over-occupied",
            variant(&|f| {
                let racks = f["sites"][2]["clusters"][0]["racks"].as_u64().unwrap() as usize;
                let mut used = vec![0u32; racks];
                used[5] = 73;
                f["sites"][2]["clusters"][0]["used_gpus"] = serde_json::json!(used);
            }),
            vec!["fleet.json", "site `nscale-sines`", "`clusters[0].used_gpus[5]`", "73"],
        ),
        (
            "missing-latency",
            variant(&|f| {
                f["sites"][0]["latency_ms"].as_object_mut().unwrap().remove("uk");
            }),
            vec!["site `iren-childress`", "`latency_ms.uk`"],
        ),
        (
            "unknown-rack-type",
            variant(&|f| f["sites"][1]["clusters"][0]["rack_type"] = "gb400".into()),
            vec!["site `nscale-texas`", "`clusters[0].rack_type`", "gb400"],
        ),
        (
            "negative-power",
            variant(&|f| f["sites"][1]["power_mw"] = (-5.0).into()),
            vec!["site `nscale-texas`", "`power_mw`"],
        ),
        (
            "trays-do-not-split",
            variant(&|f| f["rack_types"]["gb300-nvl72"]["nodes"] = 7.into()),
            vec!["fleet.json", "gb300-nvl72", "`nodes`", "7 nodes"],
        ),
        (
            "tray-too-large",
            variant(&|f| f["rack_types"]["gb300-nvl72"]["nodes"] = 4.into()),
            vec!["gb300-nvl72", "`nodes`", "at most 8 GPUs"],
        ),
        (
            "tray-out-of-range",
            variant(&|f| f["sites"][2]["clusters"][0]["nodes"] = serde_json::json!([{"rack": 0, "node": 18}])),
            vec!["site `nscale-sines`", "`clusters[0].nodes[0].node`", "18"],
        ),
        (
            "rack-out-of-range",
            variant(&|f| f["sites"][2]["clusters"][0]["nodes"] = serde_json::json!([{"rack": 9999, "node": 0}])),
            vec!["site `nscale-sines`", "`clusters[0].nodes[0].rack`", "9999"],
        ),
        (
            "tray-twice",
            variant(&|f| {
                f["sites"][2]["clusters"][0]["nodes"] =
                    serde_json::json!([{"rack": 1, "node": 2, "state": "cordoned"}, {"rack": 1, "node": 2}])
            }),
            vec!["`clusters[0].nodes[1].node`", "given twice"],
        ),
        (
            "failed-tray-in-use",
            variant(&|f| {
                f["sites"][2]["clusters"][0]["nodes"] =
                    serde_json::json!([{"rack": 1, "node": 2, "state": "failed", "used_gpus": 1}])
            }),
            vec!["`clusters[0].nodes[0].used_gpus`", "failed"],
        ),
        (
            "tray-over-occupied",
            variant(&|f| {
                f["sites"][2]["clusters"][0]["nodes"] = serde_json::json!([{"rack": 1, "node": 2, "used_gpus": 5}])
            }),
            vec!["`clusters[0].nodes[0].used_gpus`", "5 GPUs in use exceeds the node's 4"],
        ),
        (
            "tray-state-unknown",
            variant(&|f| {
                f["sites"][2]["clusters"][0]["nodes"] = serde_json::json!([{"rack": 1, "node": 2, "state": "broken"}])
            }),
            vec!["fleet.json", "broken"],
        ),
        (
            "occupancy-twice",
            variant(&|f| {
                let racks = f["sites"][2]["clusters"][0]["racks"].as_u64().unwrap() as usize;
                let mut used = vec![0u32; racks];
                used[1] = 3;
                f["sites"][2]["clusters"][0]["used_gpus"] = serde_json::json!(used);
                f["sites"][2]["clusters"][0]["nodes"] =
                    serde_json::json!([{"rack": 1, "node": 2, "state": "cordoned"}]);
            }),
            vec!["`clusters[0].nodes[0].rack`", "one place"],
        ),
        ("malformed-fleet", "{\"regions\": [\"a\"], ".into(), vec!["fleet.json", "malformed JSON"]),
    ];
    for (test, contents, needles) in cases {
        assert_bad_input(test, &[("fleet.json", &contents)], &["--fleet", "{dir}/fleet.json"], &needles);
    }
}

#[test]
fn other_bad_inputs() {
    assert_bad_input("missing-file", &[], &["--jobs", "{dir}/nope.json"], &["nope.json", "No such file"]);
    assert_bad_input(
        "bad-policy",
        &[("policy.json", "{\"inference\": {}}")],
        &["--policy", "{dir}/policy.json"],
        &["policy.json", "inference"],
    );
    assert_bad_input("bad-at", &[], &["--at", "2026-13-01"], &["--at", "2026-13-01"]);
    let weights = r#"{"pack": 0, "spread": 0, "latency": 0, "energy": 0, "carbon": 0, "hbm": 0}"#;
    let policy = format!(
        r#"{{"inference": {weights}, "agentic": {weights}, "multimodal": {weights}, "training": {}}}"#,
        weights.replace("\"hbm\": 0", "\"hbm\": 1001")
    );
    assert_bad_input(
        "policy-range",
        &[("policy.json", &policy)],
        &["--policy", "{dir}/policy.json"],
        &["policy.json", "training", "`hbm`", "1001"],
    );
}

#[test]
fn bad_tenants_are_reported_precisely() {
    assert_bad_input(
        "tenants-weight",
        &[("tenants.json", r#"{"tenants": [{"name": "default", "quota_gpus": 8, "weight": 0}]}"#)],
        &["--tenants", "{dir}/tenants.json"],
        &["tenants.json", "tenant `default`", "weight"],
    );
    assert_bad_input(
        "tenants-not-json",
        &[("tenants.json", "quota: 8")],
        &["--tenants", "{dir}/tenants.json"],
        &["tenants.json"],
    );
    // Generated jobs name no tenant: without a `default` tenant or their kind's, each is refused.
    assert_bad_input(
        "tenants-no-default",
        &[("tenants.json", r#"{"tenants": [{"name": "prod", "quota_gpus": 8, "kinds": ["inference"]}]}"#)],
        &["--tenants", "{dir}/tenants.json"],
        &["tenant", "names no tenant"],
    );
    assert_bad_input(
        "tenants-unknown",
        &[
            ("tenants.json", r#"{"tenants": [{"name": "default", "quota_gpus": 8}]}"#),
            ("jobs.json", &jobs_json(&[&GOOD_JOB.replace("\"id\": \"a\"", "\"id\": \"a\", \"tenant\": \"ghost\"")])),
        ],
        &["--tenants", "{dir}/tenants.json", "--jobs", "{dir}/jobs.json"],
        &["jobs.json", "job `a`", "tenant", "unknown tenant `ghost`"],
    );
}

/// `place --tenants` on the worked example of docs/QUOTAS.md: the placements it describes, in
/// the --out file.
#[test]
fn place_keeps_the_quotas_of_the_worked_example() {
    let dir = temp_dir("quota-example");
    let out = path(&dir, "out.json");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples");
    let arg = |name: &str| examples.join(name).display().to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_gpuplace"))
        .args(["place", "--backend", "cpu", "--fleet", &arg("quota-fleet.json"), "--jobs", &arg("quota-jobs.json")])
        .args(["--tenants", &arg("tenants.json"), "--out", &out])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let document: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let mut placed: Vec<&str> =
        document["placements"].as_array().unwrap().iter().map(|p| p["job"].as_str().unwrap()).collect();
    placed.sort_unstable();
    assert_eq!(
        placed,
        ["batch-1", "batch-2", "batch-3", "prod-1", "prod-2", "prod-3", "prod-4", "prod-5", "research-1", "research-2"]
    );
    let quota_waits = document["unplaced"].as_array().unwrap().iter().filter(|u| u["cause"]["code"] == "quota");
    let mut quota_waits: Vec<&str> = quota_waits.map(|u| u["job"].as_str().unwrap()).collect();
    quota_waits.sort_unstable();
    assert_eq!(quota_waits, ["prod-6", "prod-7", "prod-8"], "{}", document["unplaced"]);
}

#[test]
fn no_adapter_auto_falls_back_and_gpu_fails_cleanly() {
    // Restricting wgpu to a backend this platform lacks leaves no adapter on any machine.
    let backend = if cfg!(target_os = "macos") { "dx12" } else { "metal" };
    let run = |choice: &str| {
        Command::new(env!("CARGO_BIN_EXE_gpuplace"))
            .args(["place", "--count", "50", "--backend", choice])
            .env("WGPU_BACKEND", backend)
            .output()
            .unwrap()
    };
    let auto = run("auto");
    assert!(auto.status.success(), "{}", stderr(&auto));
    assert!(stderr(&auto).contains("notice: using the CPU backend"), "{}", stderr(&auto));
    assert!(stdout(&auto).contains("backend: cpu"));
    let gpu = run("gpu");
    assert_eq!(gpu.status.code(), Some(3), "a device error");
    assert!(stderr(&gpu).starts_with("error: GPU backend: no GPU adapter available"), "{}", stderr(&gpu));
    assert_eq!(stderr(&gpu).trim_end().lines().count(), 1);
}

#[test]
fn replay_writes_metrics_and_a_plot() {
    let dir = temp_dir("replay");
    let (json, svg) = (path(&dir, "replay.json"), path(&dir, "replay.svg"));
    let output = gpuplace(&[
        "replay",
        "--count",
        "400",
        "--span-h",
        "2",
        "--at",
        AT,
        "--backend",
        "cpu",
        "--json",
        &json,
        "--plot",
        &svg,
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    for needle in [
        "intervals of 60 s replayed",
        "p95 (s)",
        "peak GPUs used",
        "stranded GPUs",
        "latency violations 0",
        "scheduling per interval",
    ] {
        assert!(text.contains(needle), "replay summary lacks {needle:?}:\n{text}");
    }
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert!(report["timeline"].as_array().unwrap().len() > 10);
    assert_eq!(report["kinds"].as_array().unwrap().iter().map(|k| k["jobs"].as_u64().unwrap()).sum::<u64>(), 400);
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg") && plot.contains("GPU utilization per site") && plot.contains("Queueing delay"));
}

#[test]
fn compare_runs_every_preset() {
    let output = gpuplace(&["compare", "--count", "600", "--at", AT, "--backend", "cpu"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    for preset in ["| default |", "| first-fit |", "| best-fit |", "| spread |", "| random |"] {
        let row = text.lines().find(|l| l.starts_with(preset)).unwrap_or_else(|| panic!("no row {preset}:\n{text}"));
        // Latency violations must be 0 for every policy: the constraint is hard.
        assert_eq!(row.split('|').nth(7).map(str::trim), Some("0"), "{row}");
    }
    let replay = gpuplace(&["compare", "--count", "300", "--span-h", "1", "--at", AT, "--backend", "cpu", "--replay"]);
    assert!(replay.status.success(), "{}", stderr(&replay));
    assert!(stdout(&replay).contains("p95 delay"));
}

#[test]
fn import_azure_fixture_and_reject_malformed_in_strict_mode() {
    let dir = temp_dir("import");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/azure_conv_sample.csv");
    let out = path(&dir, "jobs.json");
    let output =
        gpuplace(&["import", "azure", fixture.to_str().unwrap(), "--window-s", "60", "--scale", "100", "--out", &out]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("40 rows read"), "{}", stderr(&output));
    let placed = gpuplace(&["place", "--jobs", &out, "--at", AT, "--backend", "cpu"]);
    assert!(placed.status.success(), "{}", stderr(&placed));

    let bad = dir.join("bad.csv");
    std::fs::write(
        &bad,
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:47.0,abc,1\n",
    )
    .unwrap();
    let strict_out = path(&dir, "strict.json");
    let strict = gpuplace(&["import", "azure", bad.to_str().unwrap(), "--strict", "--out", &strict_out]);
    assert_eq!(strict.status.code(), Some(2));
    assert!(stderr(&strict).contains("line 3") && stderr(&strict).contains("ContextTokens"), "{}", stderr(&strict));
    assert!(!Path::new(&strict_out).exists());
    let lenient = gpuplace(&["import", "azure", bad.to_str().unwrap(), "--out", &strict_out]);
    assert!(lenient.status.success());
    assert!(stderr(&lenient).contains("1 malformed rows skipped (line 3"), "{}", stderr(&lenient));
}

/// The exit codes the root `--help` and the README document: 0 done, 1 some jobs not placed (only
/// with --fail-on-unplaced, after writing everything), 2 bad command line or input, 3 an output
/// that could not be written.
#[test]
fn exit_codes_are_as_documented() {
    let help = stdout(&gpuplace(&["--help"]));
    for line in ["0  done", "1  done, and some jobs were not placed", "2  bad command line or input", "3  an output"] {
        assert!(help.contains(line), "--help lacks {line:?}");
    }
    let dir = temp_dir("exit-codes");
    let out = path(&dir, "out.json");
    let code = |args: &[&str]| gpuplace(args).status.code();
    // 300 generated jobs leave some unplaced (an EU job no rack near enough qualifies for).
    let some_unplaced = ["place", "--count", "300", "--at", AT, "--backend", "cpu"];
    assert_eq!(code(&some_unplaced), Some(0));
    assert_eq!(code(&[&some_unplaced[..], &["--fail-on-unplaced", "--out", &out]].concat()), Some(1));
    let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert!(written["summary"]["unplaced"].as_u64().unwrap() > 0, "exit 1 but nothing unplaced");
    let replay = ["replay", "--count", "300", "--at", AT, "--backend", "cpu", "--interval", "3600"];
    assert_eq!(code(&replay), Some(0));
    assert_eq!(code(&[&replay[..], &["--fail-on-unplaced"]].concat()), Some(1));
    // Everything placed: 0 even with the flag.
    let jobs = path(&dir, "one.json");
    std::fs::write(&jobs, jobs_json(&[GOOD_JOB])).unwrap();
    assert_eq!(code(&["place", "--jobs", &jobs, "--at", AT, "--backend", "cpu", "--fail-on-unplaced"]), Some(0));
    assert_eq!(code(&["place", "--count", "nine"]), Some(2));
    assert_eq!(code(&["place", "--jobs", &path(&dir, "missing.json")]), Some(2));
    assert_eq!(code(&["place", "--count", "20", "--backend", "cpu", "--out", "/dev/full"]), Some(3));
}
