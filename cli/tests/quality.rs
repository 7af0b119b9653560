//! Placement quality against exact optima: runs `scripts/quality.py` (HiGHS through `highspy`) on
//! eight seeded contended instances with the binary under test. Skipped, with a notice, where
//! Python or highspy is missing (`pip install highspy` to run it).
//!
//! What it checks: the script's own independent feasibility rules agree with gpuplace's (it exits 1
//! when gpuplace places more than the optimum, which only a rule that differs allows), and the
//! default policy keeps what was measured when the order and weights were chosen (BENCHMARKS.md):
//! at least 97% of the priority-lexicographic optimum's GPUs on average on these instances (98.3%
//! measured; the policy before the change gave 93.8%, so the check can fail) and at least 99% of
//! the top priority class's optimum.

use std::process::Command;

#[test]
fn default_policy_keeps_its_measured_quality() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/quality.py");
    let json = std::env::temp_dir().join(format!("gpuplace-quality-{}.json", std::process::id()));
    let output = Command::new("python3")
        .args([script, env!("CARGO_BIN_EXE_gpuplace"), "--instances", "8", "--seed", "5", "--policy", "default"])
        .arg("--json")
        .arg(&json)
        .output();
    let output = match output {
        Ok(output) => output,
        Err(e) => {
            eprintln!("SKIPPED default_policy_keeps_its_measured_quality: no python3 ({e})");
            return;
        }
    };
    if output.status.code() == Some(3) {
        eprintln!("SKIPPED default_policy_keeps_its_measured_quality: highspy is not installed");
        return;
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "quality.py failed: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    let summary = &report["summary"]["default"];
    let lexicographic = summary["lexicographic_mean"].as_f64().unwrap();
    let top = summary["top_mean"].as_f64().unwrap();
    assert!(lexicographic >= 0.97, "default policy: {lexicographic} of the lexicographic optimum ({stderr})");
    assert!(top >= 0.99, "default policy: {top} of the top class's optimum ({stderr})");
}
