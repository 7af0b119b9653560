//! The library's imports form a DAG, as `ARCHITECTURE.md` states: each top-level module imports
//! only the modules of the layers before it, and within a module the files import one another
//! without a cycle. Read from the source text, so that a new `use` that breaks the layering fails
//! here, on any machine.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, lowest first: a module may import its own layer's files and lower layers.
const LAYERS: [&str; 8] = ["error", "kernel", "model", "gpu", "engine", "report", "sim", "schema"];

/// Every `.rs` file under `src/` except `lib.rs`, as (module path, source without comments).
fn modules() -> Vec<(Vec<String>, String)> {
    fn walk(dir: &Path, prefix: &[String], out: &mut Vec<(Vec<String>, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for path in entries {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                walk(&path, &[prefix, &[name]].concat(), out);
            } else if path.extension().is_some_and(|e| e == "rs") && !(prefix.is_empty() && name == "lib") {
                let module = if name == "mod" { prefix.to_vec() } else { [prefix, &[name]].concat() };
                let code: String = std::fs::read_to_string(&path)
                    .unwrap()
                    .lines()
                    .map(|line| line.split("//").next().unwrap_or(""))
                    .collect::<Vec<_>>()
                    .join("\n");
                out.push((module, code));
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &[], &mut out);
    out
}

/// The module paths `code` names after `crate::`, as written (`engine::place::Outcome` gives
/// `["engine", "place", "Outcome"]`), with `use crate::a::{b, c}` groups expanded by their first
/// segment only (enough to find the module).
fn references(code: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let path: Vec<String> = rest
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .next()
            .unwrap_or("")
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if !path.is_empty() {
            found.push(path);
        }
    }
    found
}

/// Everything wrong with the imports of `modules`: imports of a higher layer, imports through
/// lib.rs's re-exports or a module's own re-exports, and cycles among the files of a module.
fn problems(modules: &[(Vec<String>, String)]) -> Vec<String> {
    let known: BTreeSet<Vec<String>> = modules.iter().map(|(m, _)| m.clone()).collect();
    let layer = |top: &str| LAYERS.iter().position(|l| *l == top);
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    let mut problems = Vec::new();
    for (module, code) in modules {
        let name = module.join("::");
        let Some(from) = layer(&module[0]) else {
            problems.push(format!("module `{}` has no layer", module[0]));
            continue;
        };
        for path in references(code) {
            let top = &path[0];
            if top.chars().next().is_some_and(char::is_uppercase) {
                problems.push(format!(
                    "{name}: names `crate::{}`, a re-export of lib.rs; name its module",
                    path.join("::")
                ));
                continue;
            }
            match layer(top) {
                Some(to) if to > from => {
                    problems.push(format!("{name} (layer {from}) imports {} (layer {to})", path.join("::")))
                }
                None => problems.push(format!("{name} imports `crate::{}`, of no layer", path.join("::"))),
                _ => {}
            }
            if top == &module[0] {
                // Within a module: the longest known module prefix of the path is the file imported.
                let target = (1..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| known.contains(p));
                match target {
                    Some(target) if &target != module && target.len() > 1 => {
                        edges.entry(module.clone()).or_default().insert(target);
                    }
                    Some(target) if target.len() == 1 && module.len() > 1 => problems.push(format!(
                        "{name} imports `crate::{}` through its own module's re-exports; name the file",
                        path.join("::")
                    )),
                    _ => {}
                }
            }
        }
    }
    // Cycles among the files of a module: depth-first search for a back edge.
    fn visit(
        node: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        done: &mut BTreeMap<Vec<String>, bool>,
        stack: &mut Vec<Vec<String>>,
        problems: &mut Vec<String>,
    ) {
        match done.get(node) {
            Some(true) => return,
            Some(false) => {
                let cycle: Vec<String> = stack.iter().map(|m| m.join("::")).collect();
                problems.push(format!("import cycle: {} -> {}", cycle.join(" -> "), node.join("::")));
                return;
            }
            None => {}
        }
        done.insert(node.clone(), false);
        stack.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            visit(next, edges, done, stack, problems);
        }
        stack.pop();
        done.insert(node.clone(), true);
    }
    let mut done = BTreeMap::new();
    for module in edges.keys() {
        visit(module, &edges, &mut done, &mut Vec::new(), &mut problems);
    }
    problems
}

#[test]
fn imports_follow_the_layers_and_form_no_cycle() {
    let modules = modules();
    assert!(modules.len() > 25, "found only {} files", modules.len());
    let problems = problems(&modules);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_check_finds_a_cycle_an_upward_import_and_a_re_export() {
    // Negative control: files written to break each rule are reported.
    let module = |path: &str, code: &str| (path.split("::").map(str::to_string).collect::<Vec<_>>(), code.to_string());
    let broken = [
        module("engine::place", "use crate::engine::explain::Explanation;"),
        module("engine::explain", "use crate::engine::place::{Outcome, decision_order};"),
        module("engine::ledger", "use crate::sim::replay::replay;"),
        module("model::jobs", "use crate::Scheduler;"),
        module("engine::backend", "use crate::engine::Ledger;"),
        module("engine", "pub mod place; pub mod explain; pub mod ledger; pub mod backend;"),
        module("sim::replay", ""),
    ];
    let found = problems(&broken);
    for expected in ["import cycle", "layer", "a re-export of lib.rs", "through its own module's re-exports"] {
        assert!(found.iter().any(|p| p.contains(expected)), "no problem saying {expected:?} in {found:?}");
    }
    assert!(problems(&broken[5..]).is_empty(), "{:?}", problems(&broken[5..]));
}
