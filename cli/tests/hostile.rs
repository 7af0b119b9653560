//! The binary as a hostile user tries it: outputs that are devices, FIFOs, links or inputs, a kill
//! in the middle of a write, a full disk and a full stdout; extreme values everywhere; files that
//! JSON allows but mean something else; every adapter against the CPU. Each must end within
//! seconds with exit 0 or 2 and one line, leave every file the user did not ask to write as it
//! was, and never leave a temporary file behind.

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    AT, assert_fails_cleanly, assert_output_fails, gpu_available, gpuplace, gpuplace_env, path, stderr, stdout,
    temp_dir,
};

/// Temporary files (`.NAME.XXXXXX.tmp`) left in `dir`.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.') && name.ends_with(".tmp"))
        .collect()
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(status.success());
}

#[test]
fn special_files_are_written_through_never_replaced() {
    let dir = temp_dir("special");
    // A device.
    let output = gpuplace(&["place", "--count", "50", "--backend", "cpu", "--out", "/dev/null"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device(), "/dev/null was replaced");
    // A FIFO, with a reader.
    let fifo = dir.join("fifo");
    mkfifo(&fifo);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(&fifo).unwrap())
    };
    let output = gpuplace(&["place", "--count", "50", "--backend", "cpu", "--at", AT, "--out", fifo.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let received = reader.join().unwrap();
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "the FIFO was replaced");
    let doc: serde_json::Value = serde_json::from_slice(&received).expect("the whole document came through the FIFO");
    assert_eq!(doc["summary"]["jobs"], 50);
    // A symbolic link: its target is written, the link stays.
    let target = dir.join("target.json");
    std::fs::write(&target, "old").unwrap();
    let link = dir.join("link.json");
    std::os::unix::fs::symlink("target.json", &link).unwrap();
    let output = gpuplace(&["place", "--count", "50", "--backend", "cpu", "--out", link.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link was replaced");
    assert!(std::fs::read_to_string(&target).unwrap().contains("\"placements\""), "the link's target was not written");
    // A dangling link: its target is created.
    let dangling = dir.join("dangling.json");
    std::os::unix::fs::symlink("created.json", &dangling).unwrap();
    let output = gpuplace(&["generate", "--count", "3", "--out", dangling.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        dir.join("created.json").exists() && std::fs::symlink_metadata(&dangling).unwrap().file_type().is_symlink()
    );
    // A directory is refused.
    assert_output_fails(
        "a directory",
        &gpuplace(&["generate", "--count", "3", "--out", dir.to_str().unwrap()]),
        &["is a directory"],
    );
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
}

#[test]
fn an_output_that_names_an_input_is_refused() {
    let dir = temp_dir("input-output");
    let (jobs, fleet) = (path(&dir, "jobs.json"), path(&dir, "fleet.json"));
    assert!(gpuplace(&["generate", "--count", "5", "--at", AT, "--out", &jobs]).status.success());
    std::fs::write(&fleet, stdout(&gpuplace(&["fleet", "--json"]))).unwrap();
    let before = (std::fs::read(&jobs).unwrap(), std::fs::read(&fleet).unwrap());
    let link = dir.join("alias.json");
    std::os::unix::fs::symlink("jobs.json", &link).unwrap();
    for (what, args) in [
        ("jobs", vec!["place", "--jobs", &jobs, "--backend", "cpu", "--out", &jobs]),
        ("fleet", vec!["place", "--fleet", &fleet, "--backend", "cpu", "--out", &fleet]),
        ("a link to the jobs", vec!["place", "--jobs", &jobs, "--backend", "cpu", "--out", link.to_str().unwrap()]),
        ("replay's plot", vec!["replay", "--jobs", &jobs, "--backend", "cpu", "--plot", &jobs]),
        ("generate's fleet", vec!["generate", "--fleet", &fleet, "--out", &fleet]),
        (
            "two outputs",
            vec!["replay", "--count", "5", "--backend", "cpu", "--json", &path(&dir, "a"), "--plot", &path(&dir, "a")],
        ),
    ] {
        let output = gpuplace(&args);
        assert_output_fails(what, &output, &[]);
        assert!(stderr(&output).contains("input") || stderr(&output).contains("twice"), "{what}: {}", stderr(&output));
    }
    assert_eq!((std::fs::read(&jobs).unwrap(), std::fs::read(&fleet).unwrap()), before, "an input was changed");
    assert!(!dir.join("a").exists());
}

#[test]
fn standard_output_and_overlapping_outputs() {
    let dir = temp_dir("stdout");
    // `--out -` and `--out /dev/stdout`: the document alone on standard output (written through
    // the process's own descriptor), the summary on standard error, whether stdout is a pipe or a
    // file.
    for out in ["-", "/dev/stdout"] {
        let piped = gpuplace(&["place", "--count", "30", "--at", AT, "--backend", "cpu", "--out", out]);
        assert!(piped.status.success(), "{}", stderr(&piped));
        let document: serde_json::Value = serde_json::from_str(&stdout(&piped)).expect("only the document on stdout");
        assert_eq!(document["summary"]["jobs"], 30);
        assert!(stderr(&piped).starts_with("placed"), "{}", stderr(&piped));
        let file = dir.join("stdout.txt");
        let status = Command::new(env!("CARGO_BIN_EXE_gpuplace"))
            .args(["place", "--count", "30", "--at", AT, "--backend", "cpu", "--out", out])
            .stdout(std::fs::File::create(&file).unwrap())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), stdout(&piped), "{out}: a file differs from a pipe");
    }
    // Standard input: jobs read from `-` (the format from the content), `/dev/stdin`, or with
    // --jobs-format; a second `-` is refused.
    let csv = stdout(&gpuplace(&["generate", "--count", "40", "--at", AT, "--jobs-format", "csv"]));
    assert!(csv.starts_with("id,kind"));
    let with_stdin = |args: &[&str], input: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gpuplace"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        // A command that refuses its arguments exits before reading: the pipe may then be closed.
        match child.stdin.take().unwrap().write_all(input.as_bytes()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other.unwrap(),
        }
        child.wait_with_output().unwrap()
    };
    let mut firsts = Vec::new();
    for (jobs, format) in [("-", None), ("/dev/stdin", None), ("-", Some("csv"))] {
        let mut args = vec!["place", "--jobs", jobs, "--at", AT, "--backend", "cpu"];
        if let Some(format) = format {
            args.extend(["--jobs-format", format]);
        }
        let output = with_stdin(&args, &csv);
        assert!(output.status.success(), "{jobs}: {}", stderr(&output));
        firsts.push(stdout(&output).lines().next().unwrap().to_string());
    }
    assert!(firsts.iter().all(|f| f == &firsts[0] && f.starts_with("placed")), "{firsts:?}");
    // JSON on standard input is recognised by its content too, and gives the same placement.
    let json = stdout(&gpuplace(&["generate", "--count", "40", "--at", AT]));
    let output = with_stdin(&["place", "--jobs", "-", "--at", AT, "--backend", "cpu"], &json);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output).lines().next().unwrap(), firsts[0]);
    // Standard output takes one document, however it is spelled.
    for (a, b) in [("-", "/dev/stdout"), ("/dev/stdout", "-"), ("/dev/stdout", "/proc/self/fd/1")] {
        let output = gpuplace(&["replay", "--count", "5", "--backend", "cpu", "--json", a, "--plot", b]);
        assert_output_fails(&format!("{a} and {b}"), &output, &["standard output is named twice"]);
    }
    let output = with_stdin(&["place", "--jobs", "-", "--fleet", "-", "--backend", "cpu"], &csv);
    assert_fails_cleanly("two inputs from stdin", &output, &["standard input can be read once"]);
    // One file under two spellings is one output named twice.
    let output = gpuplace(&[
        "replay",
        "--count",
        "5",
        "--backend",
        "cpu",
        "--json",
        &path(&dir, "same.out"),
        "--plot",
        &format!("{}/./same.out", dir.display()),
    ]);
    assert_output_fails("two spellings", &output, &["same file as the output"]);
    // A device output that fails after the regular ones were staged: the regular ones are not
    // put in place.
    let plot = dir.join("new.svg");
    let output = gpuplace(&[
        "replay",
        "--count",
        "50",
        "--span-h",
        "1",
        "--backend",
        "cpu",
        "--plot",
        plot.to_str().unwrap(),
        "--json",
        "/dev/full",
    ]);
    assert_output_fails("a full device", &output, &["/dev/full", "No space left"]);
    assert!(!plot.exists(), "the plot was put in place although the command failed");
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
}

#[test]
fn an_overwritten_file_keeps_its_mode() {
    let dir = temp_dir("mode");
    let out = dir.join("secret.json");
    std::fs::write(&out, "old").unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o600)).unwrap();
    let output = gpuplace(&["place", "--count", "50", "--backend", "cpu", "--out", out.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    assert_ne!(std::fs::read(&out).unwrap(), b"old");
    // A new file gets the usual mode (0666 less the umask), not a temporary file's 0600.
    let new = dir.join("new.json");
    assert!(gpuplace(&["generate", "--count", "3", "--out", new.to_str().unwrap()]).status.success());
    assert_ne!(std::fs::metadata(&new).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn a_signal_during_a_write_leaves_no_temporary_file() {
    let dir = temp_dir("signal");
    // The plot goes to a FIFO nobody reads, so the run stops while opening it, after the JSON's
    // temporary file was written and before it is renamed: a deterministic moment to kill it.
    let fifo = dir.join("plot.svg");
    mkfifo(&fifo);
    let json = dir.join("replay.json");
    for signal in [libc_signal::TERM, libc_signal::INT] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gpuplace"))
            .args(["replay", "--count", "50", "--span-h", "1", "--at", AT, "--backend", "cpu"])
            .args(["--plot", fifo.to_str().unwrap(), "--json", json.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while leftovers(&dir).is_empty() {
            assert!(started.elapsed() < Duration::from_secs(60), "no temporary file appeared");
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = Command::new("kill").args([&format!("-{}", signal.0), &child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(128 + signal.1), "SIG{}", signal.0);
        assert!(leftovers(&dir).is_empty(), "SIG{} left {:?}", signal.0, leftovers(&dir));
        assert!(!json.exists(), "SIG{}: a partial set of outputs was written", signal.0);
    }
}

/// Signal names for `kill` and their numbers on Linux.
mod libc_signal {
    pub const TERM: (&str, i32) = ("TERM", 15);
    pub const INT: (&str, i32) = ("INT", 2);
}

#[test]
fn outputs_are_written_all_or_none() {
    let dir = temp_dir("all-or-none");
    let (json, plot) = (dir.join("replay.json"), dir.join("replay.svg"));
    // A missing directory for the second output: refused before any work, the first not written.
    let output = gpuplace(&[
        "replay",
        "--count",
        "50",
        "--backend",
        "cpu",
        "--json",
        json.to_str().unwrap(),
        "--plot",
        &path(&dir, "nodir/replay.svg"),
    ]);
    assert_output_fails("missing directory", &output, &["nodir", "does not exist"]);
    assert!(!json.exists());
    let fleet_out = dir.join("fleet.json");
    let pods = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\np0,1000,1024,1,1000,,LS,Running,0,100,0\n";
    let nodes = "sn,cpu_milli,memory_mib,gpu,model\nn0,64000,262144,2,P100\n";
    std::fs::write(dir.join("pods.csv"), pods).unwrap();
    std::fs::write(dir.join("nodes.csv"), nodes).unwrap();
    let output = gpuplace(&[
        "import",
        "alibaba",
        &path(&dir, "pods.csv"),
        "--nodes",
        &path(&dir, "nodes.csv"),
        "--fleet-out",
        fleet_out.to_str().unwrap(),
        "--out",
        &path(&dir, "nodir/jobs.json"),
    ]);
    assert_output_fails("import with a missing directory", &output, &["nodir"]);
    assert!(!fleet_out.exists());
    // A full disk (a file-size limit) while writing the plot: the old files stay as they were.
    std::fs::write(&json, "old json").unwrap();
    std::fs::write(&plot, "old plot").unwrap();
    let output = Command::new("bash")
        .args(["-c", "ulimit -f 16; trap '' XFSZ; exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_gpuplace"))
        .args(["replay", "--count", "200", "--span-h", "1", "--at", AT, "--backend", "cpu"])
        .args(["--json", json.to_str().unwrap(), "--plot", plot.to_str().unwrap()])
        .output()
        .unwrap();
    assert_output_fails("a full disk", &output, &["replay.svg"]);
    assert_eq!(std::fs::read_to_string(&json).unwrap(), "old json");
    assert_eq!(std::fs::read_to_string(&plot).unwrap(), "old plot");
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
}

#[test]
fn a_full_stdout_is_an_error_not_a_panic() {
    let full = || std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    for args in [
        vec!["fleet", "--json"],
        vec!["fleet"],
        vec!["place", "--count", "50", "--backend", "cpu"],
        vec!["generate", "--count", "5"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_gpuplace")).args(&args).stdout(full()).output().unwrap();
        assert_output_fails(&args.join(" "), &output, &["<stdout>", "No space left"]);
    }
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/azure_conv_sample.csv");
    let output = Command::new(env!("CARGO_BIN_EXE_gpuplace"))
        .args(["import", "azure", fixture.to_str().unwrap()])
        .stdout(full())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert!(stderr(&output).contains("No space left") && !stderr(&output).contains("panicked"));
}

/// Runs `args` with a time limit; the run must end with exit 2 and one line containing `needles`.
fn fails_quickly(what: &str, args: &[&str], needles: &[&str]) {
    let started = Instant::now();
    let output = gpuplace(args);
    assert!(started.elapsed() < Duration::from_secs(20), "{what}: took {:?}", started.elapsed());
    assert_fails_cleanly(what, &output, needles);
}

#[test]
fn extreme_values_end_in_seconds_with_an_error() {
    let dir = temp_dir("extreme");
    let job = |extra: &str| {
        format!(
            r#"[{{"id": "a", "kind": "inference", "gpus": 8, "hbm_gb_per_gpu": 10, "priority": 1, "duration_h": 1, "region": "us-east"{extra}}}]"#
        )
    };
    std::fs::write(dir.join("late.json"), job(r#", "submit_s": 18446744073709551615"#)).unwrap();
    fails_quickly(
        "a late arrival",
        &["replay", "--jobs", &path(&dir, "late.json"), "--backend", "cpu"],
        &["submit_s", "late.json"],
    );
    for (flag, value) in [
        ("--interval", "9223372036854775808"),
        ("--interval", "18446744073709551615"),
        ("--max-wait", "18446744073709551615"),
        ("--span-h", "nan"),
        ("--span-h", "inf"),
        ("--span-h", "-1"),
    ] {
        fails_quickly(flag, &["replay", "--count", "20", "--backend", "cpu", &format!("{flag}={value}")], &[flag]);
    }
    fails_quickly("place --count", &["place", "--count", "99999999999", "--backend", "cpu"], &["--count"]);
    fails_quickly("generate --count", &["generate", "--count", "99999999999"], &["--count"]);
    fails_quickly("bench --racks", &["bench", "--racks", "100000000"], &["--racks"]);
    fails_quickly("bench --count", &["bench", "--count", "99999999999"], &["--count"]);
    // A small fleet file declaring billions of racks.
    let fleet: serde_json::Value = serde_json::from_slice(&gpuplace(&["fleet", "--json"]).stdout).unwrap();
    let mut huge = fleet.clone();
    huge["sites"][0]["clusters"] = (0..2200)
        .map(|i| serde_json::json!({"name": format!("c{i}"), "rack_type": "gb300-nvl72", "racks": 1_000_000}))
        .collect();
    std::fs::write(dir.join("huge.json"), huge.to_string()).unwrap();
    fails_quickly("a huge fleet", &["fleet", "--fleet", &path(&dir, "huge.json")], &["racks", "1000000"]);
    // Within the rack limit, but racks of 255 trays: too many nodes.
    let mut trays = fleet.clone();
    trays["rack_types"]["tiny-trays"] =
        serde_json::json!({"gpu_model": "X", "gpus": 255, "hbm_gb_per_gpu": 80, "kw": 100, "nodes": 255});
    trays["sites"][0]["clusters"] = serde_json::json!([{"name": "t", "rack_type": "tiny-trays", "racks": 200_000}]);
    std::fs::write(dir.join("trays.json"), trays.to_string()).unwrap();
    fails_quickly(
        "a fleet of too many trays",
        &["fleet", "--fleet", &path(&dir, "trays.json")],
        &["nodes", "32000000"],
    );
    // The Azure importer's options and rows.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/azure_conv_sample.csv");
    let fixture = fixture.to_str().unwrap();
    for (flag, value) in [
        ("--window-s", "288230376151711744"),
        ("--scale", "1e30"),
        ("--scale", "nan"),
        ("--replica-gpus", "0"),
        ("--replica-gpus", "70000"),
        ("--max-latency-ms", "0"),
        ("--hbm-gb", "70000"),
        ("--utilization", "0"),
        ("--prefill-tokens-per-gpu-s", "inf"),
    ] {
        fails_quickly(flag, &["import", "azure", fixture, &format!("{flag}={value}")], &[flag]);
    }
    let tokens = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,9223372036854775808,1\n2023-11-16 18:15:47.6805900,9223372036854775808,1\n2023-11-16 18:15:48.6805900,18446744073709551615,1\n";
    std::fs::write(dir.join("tokens.csv"), tokens).unwrap();
    let output = gpuplace(&["import", "azure", &path(&dir, "tokens.csv")]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("3 malformed rows skipped"), "{}", stderr(&output));
    fails_quickly(
        "--strict tokens",
        &["import", "azure", &path(&dir, "tokens.csv"), "--strict"],
        &["line 2", "ContextTokens"],
    );
}

#[test]
fn compare_of_nothing_prints_no_negative_zero() {
    let dir = temp_dir("empty");
    std::fs::write(dir.join("none.json"), "[]").unwrap();
    for replay in [true, false] {
        let mut args = vec!["compare", "--jobs", "PLACEHOLDER", "--backend", "cpu", "--at", AT];
        let jobs = path(&dir, "none.json");
        args[2] = &jobs;
        if replay {
            args.push("--replay");
        }
        let output = gpuplace(&args);
        assert!(output.status.success(), "{}", stderr(&output));
        assert!(!stdout(&output).contains("-0"), "{}", stdout(&output));
    }
}

#[test]
fn files_that_json_allows_but_mean_something_else() {
    let dir = temp_dir("json");
    let fleet = stdout(&gpuplace(&["fleet", "--json"]));
    // Duplicate keys in maps are refused, not resolved to the last.
    let twice = fleet.replacen("\"us-east\": 35,", "\"us-east\": 35,\n \"us-east\": 99,", 1);
    assert_ne!(twice, fleet);
    std::fs::write(dir.join("twice.json"), &twice).unwrap();
    fails_quickly(
        "duplicate latency",
        &["fleet", "--fleet", &path(&dir, "twice.json")],
        &["latency_ms", "duplicate key `us-east`"],
    );
    let doubled = fleet.replacen(
        "\"rack_types\": {",
        "\"rack_types\": {\n \"gb300-nvl72\": {\"gpu_model\": \"X\", \"gpus\": 8, \"hbm_gb_per_gpu\": 1, \"kw\": 1},",
        1,
    );
    std::fs::write(dir.join("doubled.json"), &doubled).unwrap();
    fails_quickly(
        "duplicate rack type",
        &["fleet", "--fleet", &path(&dir, "doubled.json")],
        &["rack_types", "duplicate key"],
    );
    // A byte-order mark is skipped.
    std::fs::write(dir.join("bom.json"), format!("\u{FEFF}{fleet}")).unwrap();
    assert!(gpuplace(&["fleet", "--fleet", &path(&dir, "bom.json")]).status.success());
    // A bare array of jobs reads like the object form.
    let object = stdout(&gpuplace(&["generate", "--count", "40", "--at", AT]));
    let array = serde_json::to_string(&serde_json::from_str::<serde_json::Value>(&object).unwrap()["jobs"]).unwrap();
    std::fs::write(dir.join("object.json"), &object).unwrap();
    std::fs::write(dir.join("array.json"), format!("\u{FEFF}{array}")).unwrap();
    let place = |jobs: &str| stdout(&gpuplace(&["place", "--jobs", &path(&dir, jobs), "--at", AT, "--backend", "cpu"]));
    let (a, b) = (place("object.json"), place("array.json"));
    assert_eq!(a.lines().next(), b.lines().next());
    assert!(a.starts_with("placed"), "{a}");
    // A shape that is neither says what is expected.
    std::fs::write(dir.join("number.json"), "42").unwrap();
    fails_quickly(
        "a number",
        &["place", "--jobs", &path(&dir, "number.json"), "--backend", "cpu"],
        &["expected an array of jobs or an object"],
    );
    // CRLF CSV: the line number is the one an editor shows.
    let csv = "id,kind,gpus,hbm_gb_per_gpu,priority,duration_h,region\r\na,inference,8,100,5,2,us-east\r\nb,inference,x,100,5,2,us-east\r\n";
    std::fs::write(dir.join("crlf.csv"), csv).unwrap();
    fails_quickly("CRLF", &["place", "--jobs", &path(&dir, "crlf.csv"), "--backend", "cpu"], &["line 3", "`gpus`"]);
    // An empty list of jurisdictions is refused, not silently "nowhere".
    std::fs::write(dir.join("empty-list.json"), r#"[{"id": "a", "kind": "inference", "gpus": 8, "hbm_gb_per_gpu": 10, "priority": 1, "duration_h": 1, "region": "us-east", "jurisdictions": []}]"#).unwrap();
    fails_quickly(
        "empty list",
        &["place", "--jobs", &path(&dir, "empty-list.json"), "--backend", "cpu"],
        &["jurisdictions", "empty list"],
    );
    // Names a CSV file could not give back.
    for (what, edit) in [("a `|`", "\"provider\": \"Nscale|IREN\""), ("a leading space", "\"provider\": \" Nscale\"")] {
        let bad = fleet.replacen("\"provider\": \"Nscale\"", edit, 1);
        assert_ne!(bad, fleet);
        std::fs::write(dir.join("names.json"), &bad).unwrap();
        fails_quickly(what, &["fleet", "--fleet", &path(&dir, "names.json")], &["provider"]);
    }
}

#[test]
fn every_file_gpuplace_writes_loads_back() {
    let dir = temp_dir("round-trip");
    // Dates at the end of the calendar.
    for out in ["late.json", "late.csv"] {
        let output = gpuplace(&["generate", "--count", "400", "--at", "9999-12-31", "--out", &path(&dir, out)]);
        assert!(output.status.success(), "{}", stderr(&output));
        let placed = gpuplace(&["place", "--jobs", &path(&dir, out), "--at", "9999-12-31", "--backend", "cpu"]);
        assert!(placed.status.success(), "{out}: {}", stderr(&placed));
    }
    // Alibaba pods with a repeated name and an impossible GPU count are malformed rows, so the jobs
    // written load back.
    let pods = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n\
                p0,1000,1024,1,1000,,LS,Running,0,100,0\n\
                p0,1000,1024,2,1000,,LS,Running,0,100,0\n\
                p1,1000,1024,4294967295,1000,,BE,Running,0,100,0\n\
                p2,1000,1024,2,1000,,BE,Running,0,100,0\n";
    std::fs::write(dir.join("pods.csv"), pods).unwrap();
    std::fs::write(dir.join("nodes.csv"), "sn,cpu_milli,memory_mib,gpu,model\nn0,64000,262144,8,A10\n").unwrap();
    let (jobs, fleet) = (path(&dir, "jobs.json"), path(&dir, "fleet.json"));
    let output = gpuplace(&[
        "import",
        "alibaba",
        &path(&dir, "pods.csv"),
        "--nodes",
        &path(&dir, "nodes.csv"),
        "--fleet-out",
        &fleet,
        "--out",
        &jobs,
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output)
            .contains("2 malformed rows skipped (line 3: name: `p0` repeats the pod name of line 2; line 4: num_gpu"),
        "{}",
        stderr(&output)
    );
    let placed = gpuplace(&["place", "--jobs", &jobs, "--fleet", &fleet, "--backend", "cpu"]);
    assert!(placed.status.success(), "{}", stderr(&placed));
    assert!(stdout(&placed).contains("placed 2 of 2 jobs"), "{}", stdout(&placed));
}

#[test]
fn unplaced_reasons_speak_in_watts_below_a_tenth_of_a_kilowatt() {
    let dir = temp_dir("watts");
    let fleet: serde_json::Value = serde_json::from_slice(&gpuplace(&["fleet", "--json"]).stdout).unwrap();
    let mut tiny = fleet.clone();
    // One small site with 50 W of power: GPUs free, power not.
    tiny["rack_types"] = serde_json::json!({"tiny": {"gpu_model": "T", "gpus": 1, "hbm_gb_per_gpu": 16, "kw": 0.08}});
    tiny["sites"] = serde_json::json!([{
        "name": "closet", "provider": "P", "country": "XX", "jurisdiction": "US", "power_mw": 0.00005,
        "pue": 1.2, "price_usd_per_mwh": 50, "carbon_g_per_kwh": 300, "online": "2020-01-01",
        "latency_ms": fleet["sites"][0]["latency_ms"], "clusters": [{"name": "c", "rack_type": "tiny", "racks": 1}]
    }]);
    std::fs::write(dir.join("tiny.json"), tiny.to_string()).unwrap();
    std::fs::write(dir.join("job.json"), r#"[{"id": "a", "kind": "inference", "gpus": 1, "hbm_gb_per_gpu": 0, "priority": 1, "duration_h": 1, "region": "us-east"}]"#).unwrap();
    let out = path(&dir, "out.json");
    let output = gpuplace(&[
        "place",
        "--fleet",
        &path(&dir, "tiny.json"),
        "--jobs",
        &path(&dir, "job.json"),
        "--backend",
        "cpu",
        "--out",
        &out,
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let reason = doc["unplaced"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("closet has 50 W of IT power left, the job draws 80 W"), "{reason}");
}

#[test]
#[cfg(feature = "gpu")]
fn every_adapter_places_exactly_as_the_cpu_and_auto_skips_software() {
    let dir = temp_dir("adapters");
    // A tie-heavy fleet: many identical, partly used racks; the random preset draws per rack class.
    let fleet: serde_json::Value = serde_json::from_slice(&gpuplace(&["fleet", "--json"]).stdout).unwrap();
    let mut ties = fleet.clone();
    for site in ties["sites"].as_array_mut().unwrap() {
        for cluster in site["clusters"].as_array_mut().unwrap() {
            let racks = cluster["racks"].as_u64().unwrap().min(40);
            cluster["racks"] = racks.into();
            // Occupancy by rack instead of the built-in fleet's trays.
            cluster.as_object_mut().unwrap().remove("nodes");
            cluster["used_gpus"] = (0..racks).map(|r| [0, 8, 64, 71][r as usize % 4]).collect();
        }
    }
    std::fs::write(dir.join("ties.json"), ties.to_string()).unwrap();
    let ties = path(&dir, "ties.json");
    let cpu = |preset: &str, out: &str| {
        gpuplace(&[
            "place",
            "--fleet",
            &ties,
            "--count",
            "400",
            "--at",
            AT,
            "--backend",
            "cpu",
            "--policy-preset",
            preset,
            "--out",
            out,
        ])
    };
    if !gpu_available("every_adapter_places_exactly_as_the_cpu") {
        return;
    }
    // CI names the APIs that must be there (GPUPLACE_REQUIRE_ADAPTERS=Vulkan,Gl).
    let required = std::env::var("GPUPLACE_REQUIRE_ADAPTERS").unwrap_or_default().to_lowercase();
    for api in ["vulkan", "gl"] {
        for preset in ["random", "default"] {
            let (a, b) = (path(&dir, &format!("cpu-{preset}.json")), path(&dir, &format!("{api}-{preset}.json")));
            assert!(cpu(preset, &a).status.success());
            let output = gpuplace_env(
                &[
                    "place",
                    "--fleet",
                    &ties,
                    "--count",
                    "400",
                    "--at",
                    AT,
                    "--backend",
                    "gpu",
                    "--policy-preset",
                    preset,
                    "--out",
                    &b,
                ],
                &[("WGPU_BACKEND", api)],
            );
            if !output.status.success() && !required.contains(api) {
                assert!(stderr(&output).contains("no GPU adapter"), "{api}: {}", stderr(&output));
                common::skip_notice(
                    "every_adapter_places_exactly_as_the_cpu_and_auto_skips_software",
                    &format!("{api}: no adapter on this machine"),
                );
                continue;
            }
            assert!(output.status.success(), "{api}: {}", stderr(&output));
            assert!(stdout(&output).contains("backend: gpu"), "{api}: {}", stdout(&output));
            assert_eq!(
                std::fs::read(&a).unwrap(),
                std::fs::read(&b).unwrap(),
                "{api}, {preset}: placements differ from the CPU"
            );
        }
        let bench =
            gpuplace_env(&["bench", "--count", "10", "--racks", "20", "--repeat", "1"], &[("WGPU_BACKEND", api)]);
        assert!(bench.status.success(), "{api}: {}", stderr(&bench));
        assert!(stdout(&bench).contains("backends agree: yes"), "{api}: {}", stdout(&bench));
    }
    // Auto: a hardware adapter if there is one, else the CPU with a notice naming the software device.
    let hardware = gpuplace::gpu::adapters().iter().any(|a| !a.software);
    let output = gpuplace(&["place", "--count", "50", "--at", AT]);
    assert!(output.status.success(), "{}", stderr(&output));
    if hardware {
        assert!(stdout(&output).contains("backend: gpu"), "{}", stdout(&output));
    } else {
        assert!(stdout(&output).contains("backend: cpu"), "{}", stdout(&output));
        assert!(stderr(&output).contains("is a software device"), "{}", stderr(&output));
    }
    // Without Vulkan only GL is left: whatever auto chooses, it says why when it is the CPU.
    let output = gpuplace_env(&["place", "--count", "50", "--at", AT], &[("VK_ICD_FILENAMES", "/nonexistent")]);
    assert!(output.status.success(), "{}", stderr(&output));
    let on_cpu = stdout(&output).contains("backend: cpu");
    assert!(
        on_cpu == stderr(&output).contains("notice: using the CPU backend"),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(on_cpu || stdout(&output).contains("backend: gpu"));
}

#[test]
fn endless_and_binary_inputs_fail_at_once() {
    let dir = temp_dir("endless");
    // A device that never ends, read as jobs, fleet and policy: refused on its first bytes.
    for (flag, extra) in [("--jobs", None), ("--fleet", None), ("--policy", None), ("--jobs", Some("csv"))] {
        let path = match extra {
            // A link named .csv to /dev/zero: read as CSV, which needs a header line.
            Some(ext) => {
                let link = dir.join(format!("zero.{ext}"));
                let _ = std::os::unix::fs::symlink("/dev/zero", &link);
                link.display().to_string()
            }
            None => "/dev/zero".to_string(),
        };
        fails_quickly(flag, &["place", "--backend", "cpu", flag, &path], &["expected"]);
    }
    // Invalid UTF-8 is named by line.
    std::fs::write(dir.join("bad.json"), b"[\n{\"id\": \"a\xff\"}\n]").unwrap();
    fails_quickly(
        "invalid UTF-8",
        &["place", "--backend", "cpu", "--jobs", &path(&dir, "bad.json")],
        &["line 2", "UTF-8"],
    );
    // A huge bad value is quoted short.
    let header = format!("{},kind\n", "x".repeat(100_000));
    std::fs::write(dir.join("wide.csv"), header).unwrap();
    let output = gpuplace(&["place", "--backend", "cpu", "--jobs", &path(&dir, "wide.csv")]);
    assert_fails_cleanly("a wide header", &output, &["unknown column", "100000 bytes"]);
    assert!(stderr(&output).len() < 300, "{} bytes of error", stderr(&output).len());
    let fleet = stdout(&gpuplace(&["fleet", "--json"])).replacen("\"power_mw\": 200.0", "\"power_mw\": 1e308", 1);
    std::fs::write(dir.join("big.json"), fleet).unwrap();
    fails_quickly("1e308", &["fleet", "--fleet", &path(&dir, "big.json")], &["1e308"]);
}

#[test]
fn usage_errors_are_one_line() {
    for (args, needle) in [
        (&["generate", "--count", "-1"][..], "'-1'"),
        (&["place", "--backend", "foo"], "'foo'"),
        (&["explain"], "--job"),
        (&["import"], "missing"),
        (&["import", "alibaba"], "<PODS>"),
        (&["replay", "--interval", "0"], "'0'"),
        (&["nonsense"], "'nonsense'"),
    ] {
        let output = gpuplace(args);
        assert_fails_cleanly(&args.join(" "), &output, &[needle, "(see --help)"]);
    }
    let help = gpuplace(&["place", "--help"]);
    assert!(help.status.success() && stdout(&help).contains("Usage"));
}

#[test]
fn small_details_of_the_options() {
    let dir = temp_dir("options");
    // bench makes exactly the racks asked for, and refuses fewer than one per built-in cluster.
    fails_quickly("bench --racks 9", &["bench", "--racks", "9", "--count", "10"], &["--racks", "10"]);
    let bench = gpuplace(&["bench", "--racks", "11", "--count", "10", "--repeat", "1", "--no-gpu"]);
    assert!(stdout(&bench).contains("10 jobs × 11 racks"), "{}", stdout(&bench));
    // −0 in a fleet file comes back as 0.
    let fleet = stdout(&gpuplace(&["fleet", "--json"])).replacen(
        "\"price_usd_per_mwh\": 40.0",
        "\"price_usd_per_mwh\": -0.0",
        1,
    );
    assert!(fleet.contains("-0.0"));
    std::fs::write(dir.join("negzero.json"), fleet).unwrap();
    let back = gpuplace(&["fleet", "--fleet", &path(&dir, "negzero.json"), "--json"]);
    assert!(back.status.success(), "{}", stderr(&back));
    assert!(stdout(&back).contains("\"price_usd_per_mwh\": 0.0"), "{}", stdout(&back));
    assert!(!stdout(&back).contains("-0.0"));
    // An unknown WGPU_BACKEND is named as such.
    let output = gpuplace_env(&["place", "--count", "5", "--backend", "gpu"], &[("WGPU_BACKEND", "bogus")]);
    assert_output_fails("WGPU_BACKEND=bogus", &output, &["WGPU_BACKEND=bogus names no graphics API"]);
    // --nodes builds a fleet only to write it.
    let pods = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/azure_conv_sample.csv");
    let output = gpuplace(&["import", "alibaba", pods.to_str().unwrap(), "--nodes", pods.to_str().unwrap()]);
    assert_fails_cleanly("--nodes without --fleet-out", &output, &["--fleet-out"]);
}

#[test]
fn imports_write_csv_for_csv_names_and_skip_rows_they_cannot_read() {
    let dir = temp_dir("import-csv");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/azure_conv_sample.csv");
    let (csv, json) = (path(&dir, "jobs.csv"), path(&dir, "jobs.json"));
    for out in [&csv, &json] {
        let output = gpuplace(&["import", "azure", fixture.to_str().unwrap(), "--scale", "100", "--out", out]);
        assert!(output.status.success(), "{}", stderr(&output));
    }
    assert!(std::fs::read_to_string(&csv).unwrap().starts_with("id,kind,"));
    let place = |jobs: &str, out: &str| {
        let output = gpuplace(&["place", "--jobs", jobs, "--at", AT, "--backend", "cpu", "--out", out]);
        assert!(output.status.success(), "{jobs}: {}", stderr(&output));
        std::fs::read(out).unwrap()
    };
    assert_eq!(
        place(&csv, &path(&dir, "a.out")),
        place(&json, &path(&dir, "b.out")),
        "CSV and JSON jobs place differently"
    );
    // A pod of an unknown QoS class and a row that is not UTF-8 are malformed rows, skipped.
    let pods = b"name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n\
p0,1000,1024,1,1000,,XX,Running,0,100,0\n\
p\xff1,1000,1024,1,1000,,LS,Running,0,100,0\n\
p2,1000,1024,1,1000,,LS,Running,0,100,0\n";
    std::fs::write(dir.join("pods.csv"), pods).unwrap();
    let output = gpuplace(&["import", "alibaba", &path(&dir, "pods.csv"), "--out", &path(&dir, "pods.json")]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("2 malformed rows skipped (line 2: qos: unknown QoS class `XX`"),
        "{}",
        stderr(&output)
    );
    assert!(stderr(&output).contains("line 3: (row): not valid UTF-8"), "{}", stderr(&output));
    fails_quickly("--strict QoS", &["import", "alibaba", &path(&dir, "pods.csv"), "--strict"], &["line 2", "qos"]);
}

#[test]
fn compare_takes_a_policy_file_and_refuses_a_preset() {
    let dir = temp_dir("compare-policy");
    let policy = serde_json::json!({
        "inference": {"pack": 0, "spread": 0, "latency": 0, "energy": 0, "carbon": 0, "hbm": 0},
        "agentic": {"pack": 0, "spread": 0, "latency": 0, "energy": 0, "carbon": 0, "hbm": 0},
        "multimodal": {"pack": 0, "spread": 0, "latency": 0, "energy": 0, "carbon": 0, "hbm": 0},
        "training": {"pack": 0, "spread": 0, "latency": 0, "energy": 0, "carbon": 0, "hbm": 0}
    });
    std::fs::write(dir.join("zero.json"), policy.to_string()).unwrap();
    let output =
        gpuplace(&["compare", "--count", "300", "--at", AT, "--backend", "cpu", "--policy", &path(&dir, "zero.json")]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let row = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("| {name}")))
            .map(|l| l.split('|').skip(2).take(5).collect::<Vec<_>>())
    };
    // All weights zero is first fit: the same row.
    assert_eq!(row("file zero.json"), row("first-fit"), "{text}");
    assert!(row("file zero.json").is_some(), "{text}");
    fails_quickly(
        "compare --policy-preset",
        &["compare", "--policy-preset", "spread", "--count", "10"],
        &["--policy-preset"],
    );
}

/// Mesa's drivers complain on stderr ("error: XDG_RUNTIME_DIR is invalid or not set") when the
/// variable is missing; gpuplace gives them a private directory instead, so the user sees only
/// gpuplace's own lines. A directory that others can enter is not used.
#[test]
fn driver_noise_about_xdg_runtime_dir_stays_away() {
    let test = "driver_noise_about_xdg_runtime_dir_stays_away";
    let dir = temp_dir(test);
    let backend = if gpu_available(test) { "gpu" } else { "auto" };
    let run_with = |tmp: &Path, backend: &str| {
        Command::new(env!("CARGO_BIN_EXE_gpuplace"))
            .args(["place", "--count", "20", "--backend", backend])
            .env_remove("XDG_RUNTIME_DIR")
            .env("TMPDIR", tmp)
            .output()
            .unwrap()
    };
    let run = |tmp: &Path| run_with(tmp, backend);
    // A command that cannot open a GPU leaves the environment (and the disk) alone.
    let output = run_with(&dir, "cpu");
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    let output = run(&dir);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!stderr(&output).contains("XDG_RUNTIME_DIR"), "{}", stderr(&output));
    let runtime = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect::<Vec<_>>();
    assert_eq!(runtime.len(), 1, "{runtime:?}");
    assert!(runtime[0].file_name().unwrap().to_string_lossy().starts_with("gpuplace-runtime-"));
    assert_eq!(std::fs::metadata(&runtime[0]).unwrap().permissions().mode() & 0o777, 0o700);

    // Someone else's (here: world-writable) directory of that name is left alone and not used: a
    // directory of this run's own is, and is gone afterwards.
    std::fs::set_permissions(&runtime[0], std::fs::Permissions::from_mode(0o777)).unwrap();
    let output = run(&dir);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!stderr(&output).contains("XDG_RUNTIME_DIR"), "{}", stderr(&output));
    assert_eq!(std::fs::metadata(&runtime[0]).unwrap().permissions().mode() & 0o777, 0o777);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "the run's own directory was left behind");
}

#[test]
fn inflate_refuses_bad_lists_and_values_in_one_line_and_writes_nothing() {
    let dir = temp_dir("inflate-hostile");
    let nodes = path(&dir, "nodes.csv");
    std::fs::write(&nodes, "sn,cpu_milli,memory_mib,gpu,model\nn0,64000,262144,4,T4\nn1,32000,131072,2,T4\n").unwrap();
    let pods = path(&dir, "pods.csv");
    let header = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\n";
    std::fs::write(&pods, format!("{header}p0,1000,1024,1,500,\np1,2000,1024,2,1000,T4\np2,500,512,0,0,\n")).unwrap();
    let json = path(&dir, "out.json");
    // It works on these lists.
    let ok = gpuplace(&["inflate", "--nodes", &nodes, "--pods", &pods, "--backend", "cpu", "--json", &json]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    std::fs::remove_file(&json).unwrap();

    let bad_pods = path(&dir, "bad-pods.csv");
    for (row, needles) in [
        ("p9,1000,1024,1,0,\n", &["bad-pods.csv", "line 3", "gpu_milli"][..]),
        ("p9,1000,1024,3,400,\n", &["line 3", "gpu_milli"]),
        ("p9,1000,x,1,1000,\n", &["line 3", "memory_mib"]),
        ("p9,1000,1024,99,1000,\n", &["line 3", "num_gpu"]),
        ("p9,1000,1024,1\n", &["line 3"]),
    ] {
        std::fs::write(&bad_pods, format!("{header}p0,1000,1024,1,500,\n{row}")).unwrap();
        let out = gpuplace(&["inflate", "--nodes", &nodes, "--pods", &bad_pods, "--backend", "cpu", "--json", &json]);
        assert_fails_cleanly(row, &out, needles);
        assert!(!Path::new(&json).exists(), "{row}: wrote output");
    }
    let bad_nodes = path(&dir, "bad-nodes.csv");
    for (text, needles) in [
        ("sn,cpu_milli,memory_mib,gpu\nn0,1,1,1\n", &["bad-nodes.csv", "model", "missing column"][..]),
        ("sn,cpu_milli,memory_mib,gpu,model\nn0,1,1,12,T4\n", &["line 2", "gpu"]),
        ("sn,cpu_milli,memory_mib,gpu,model\nn0,1,1,0,\n", &["no node has a GPU"]),
        ("", &["bad-nodes.csv"]),
    ] {
        std::fs::write(&bad_nodes, text).unwrap();
        let out = gpuplace(&["inflate", "--nodes", &bad_nodes, "--pods", &pods, "--backend", "cpu", "--json", &json]);
        assert_fails_cleanly(text, &out, needles);
        assert!(!Path::new(&json).exists(), "{text}: wrote output");
    }
    for tune in ["0", "11", "1.3333", "-1", "abc", "1e3", "999999999", "4294967.296", ".", ""] {
        let out = gpuplace(&["inflate", "--nodes", &nodes, "--pods", &pods, "--tune", tune, "--json", &json]);
        assert_eq!(out.status.code(), Some(2), "--tune {tune}: {}", stderr(&out));
        assert!(!Path::new(&json).exists());
    }
    let missing = gpuplace(&["inflate", "--nodes", &path(&dir, "nope.csv"), "--pods", &pods, "--json", &json]);
    assert_fails_cleanly("missing nodes", &missing, &["nope.csv"]);
    // Writing over an input is refused.
    let over = gpuplace(&["inflate", "--nodes", &nodes, "--pods", &pods, "--backend", "cpu", "--json", &pods]);
    common::assert_output_fails("--json over an input", &over, &["is also an input"]);
    assert!(std::fs::read_to_string(&pods).unwrap().starts_with(header));
}
