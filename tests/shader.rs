//! The WGSL kernel checked on any machine, GPU or not: naga parses and validates it, and its
//! structs, constants and functions are compared with their CPU twins in `src/kernel/score.rs` and
//! `src/kernel/shape.rs`: sizes, field names and order, values, and the order of the functions.

use std::collections::BTreeMap;

use gpuplace::kernel::score;

/// The kernel's source, as the library compiles it in.
const SCORE_WGSL: &str = include_str!("../shaders/score.wgsl");
const SCORE_RS: &str = include_str!("../src/kernel/score.rs");
const SHAPE_RS: &str = include_str!("../src/kernel/shape.rs");
/// The node kernel and its CPU twin.
const FRAG_WGSL: &str = include_str!("../shaders/frag.wgsl");
const FRAG_RS: &str = include_str!("../src/kernel/frag.rs");

fn module() -> naga::Module {
    naga::front::wgsl::parse_str(SCORE_WGSL)
        .unwrap_or_else(|e| panic!("score.wgsl does not parse:\n{}", e.emit_to_string(SCORE_WGSL)))
}

fn frag_module() -> naga::Module {
    naga::front::wgsl::parse_str(FRAG_WGSL)
        .unwrap_or_else(|e| panic!("frag.wgsl does not parse:\n{}", e.emit_to_string(FRAG_WGSL)))
}

/// Every `u32` constant of a module, by name.
fn constants_of(module: &naga::Module) -> BTreeMap<String, u32> {
    module
        .constants
        .iter()
        .filter_map(|(_, c)| match module.global_expressions[c.init] {
            naga::Expression::Literal(naga::Literal::U32(value)) => Some((c.name.clone()?, value)),
            _ => None,
        })
        .collect()
}

#[test]
fn shader_parses_and_validates() {
    let module = module();
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty())
        .validate(&module)
        .unwrap_or_else(|e| panic!("score.wgsl does not validate: {e:?}"));
    assert!(module.entry_points.iter().any(|e| e.name == "main" && e.stage == naga::ShaderStage::Compute));
}

/// Struct name → (size in bytes, member names in order), as naga lays them out.
fn shader_structs(module: &naga::Module) -> BTreeMap<String, (u32, Vec<String>)> {
    module
        .types
        .iter()
        .filter_map(|(_, ty)| match &ty.inner {
            naga::TypeInner::Struct { members, span } => {
                Some((ty.name.clone()?, (*span, members.iter().map(|m| m.name.clone().unwrap_or_default()).collect())))
            }
            _ => None,
        })
        .collect()
}

/// The `pub` field names of `struct name` in src/kernel/score.rs, in order, read from the source text.
fn rust_fields(name: &str) -> Vec<String> {
    rust_fields_in(SCORE_RS, name)
}

/// The `pub` field names of `struct name` in `source`, in order.
fn rust_fields_in(source: &str, name: &str) -> Vec<String> {
    let start = source.find(&format!("pub struct {name} {{")).unwrap_or_else(|| panic!("no struct {name}"));
    let body = &source[start..start + source[start..].find("\n}").unwrap()];
    body.lines()
        .filter_map(|line| {
            line.trim()
                .strip_prefix("pub ")
                .and_then(|rest| rest.split_once(':'))
                .map(|(field, _)| field.trim().to_string())
        })
        .collect()
}

#[test]
fn shared_structs_match_field_for_field() {
    let structs = shader_structs(&module());
    let twins: [(&str, &str, usize); 7] = [
        ("Job", "JobGpu", size_of::<score::JobGpu>()),
        ("Rack", "RackGpu", size_of::<score::RackGpu>()),
        ("Site", "SiteGpu", size_of::<score::SiteGpu>()),
        ("Cluster", "ClusterGpu", size_of::<score::ClusterGpu>()),
        ("Block", "BlockGpu", size_of::<score::BlockGpu>()),
        ("Candidate", "Candidate", size_of::<score::Candidate>()),
        ("Params", "Params", size_of::<score::Params>()),
    ];
    for (wgsl, rust, rust_size) in twins {
        let (size, members) = structs.get(wgsl).unwrap_or_else(|| panic!("no struct {wgsl} in score.wgsl"));
        assert_eq!(*size as usize, rust_size, "struct {wgsl} is {size} bytes in WGSL, {rust_size} in Rust");
        assert_eq!(members, &rust_fields(rust), "struct {wgsl} and {rust} differ in field names or order");
    }
}

#[test]
fn shared_constants_have_the_same_values() {
    let module = module();
    let constants: BTreeMap<String, u32> = module
        .constants
        .iter()
        .filter_map(|(_, c)| match module.global_expressions[c.init] {
            naga::Expression::Literal(naga::Literal::U32(value)) => Some((c.name.clone()?, value)),
            _ => None,
        })
        .collect();
    let expected = [
        ("TERM_SCALE", score::TERM_SCALE),
        ("MAX_WEIGHT", score::MAX_WEIGHT),
        ("RECIP_SHIFT", score::RECIP_SHIFT),
        ("RANDOM_CLUSTER_STRIDE", score::RANDOM_CLUSTER_STRIDE),
        ("MAX_CANDIDATES", score::MAX_CANDIDATES),
        ("NO_RACK", score::NO_RACK),
        ("MAX_NODE_GPUS", gpuplace::kernel::limits::MAX_NODE_GPUS),
        ("BLOCK_ANY", score::BLOCK_ANY),
        ("BLOCK_REQUIRED", score::BLOCK_REQUIRED),
        ("BLOCK_PREFERRED", score::BLOCK_PREFERRED),
        ("REJECT_GPUS", score::REJECT_GPUS),
        ("REJECT_HBM", score::REJECT_HBM),
        ("REJECT_JURISDICTION", score::REJECT_JURISDICTION),
        ("REJECT_PROVIDER", score::REJECT_PROVIDER),
        ("REJECT_LATENCY", score::REJECT_LATENCY),
        ("REJECT_POWER", score::REJECT_POWER),
        ("REJECT_ONLINE", score::REJECT_ONLINE),
        ("TERM_PACK", score::TERM_PACK),
        ("TERM_SPREAD", score::TERM_SPREAD),
        ("TERM_LATENCY", score::TERM_LATENCY),
        ("TERM_ENERGY", score::TERM_ENERGY),
        ("TERM_CARBON", score::TERM_CARBON),
        ("TERM_HBM", score::TERM_HBM),
        ("TERM_RANDOM", score::TERM_RANDOM),
        ("TERM_FRAG", score::TERM_FRAG),
        ("TERM_COUNT", score::TERM_COUNT as u32),
        ("FRAG_BUCKETS", score::FRAG_BUCKETS),
        ("FRAG_MIX_SUM", score::FRAG_MIX_SUM),
        ("FRAG_DIVISOR", score::FRAG_DIVISOR),
    ];
    for (name, value) in expected {
        assert_eq!(constants.get(name), Some(&value), "constant {name}");
    }
    // Every term has its index constant, in order, on both sides.
    for term in score::Term::ALL {
        let name = format!("TERM_{}", term.name().to_uppercase());
        assert_eq!(constants.get(&name), Some(&(term.index() as u32)), "{name}");
    }
    #[cfg(feature = "gpu")]
    assert_eq!(constants.get("WG_SIZE"), Some(&gpuplace::gpu::WG_SIZE));
    #[cfg(feature = "gpu")]
    assert_eq!(gpuplace::gpu::SCORE_WGSL, SCORE_WGSL);
}

#[test]
fn functions_appear_in_the_same_order_on_both_sides() {
    // The twins read side by side: the shape rule (unpack_shape … gpus_on_anchor) first, then check,
    // terms, score, better, in this order, in the shader and in shape.rs then score.rs.
    let order = |source: &str, prefix: &str, names: &[&str]| -> Vec<usize> {
        names.iter().map(|f| source.find(&format!("{prefix}{f}(")).unwrap_or_else(|| panic!("no fn {f}"))).collect()
    };
    let shape =
        ["unpack_shape", "pods_per_node", "pods_per_rack", "nodes_with_at_least", "pods_fit", "fits", "gpus_on_anchor"];
    let scoring = [
        "job_shape",
        "rack_pods",
        "shared_free_milli",
        "pods_here",
        "job_watts",
        "check",
        "mix",
        "frag_share",
        "frag_expected",
        "frag_term",
        "terms",
        "score",
        "better",
    ];
    let wgsl = order(SCORE_WGSL, "fn ", &[&shape[..], &scoring[..]].concat());
    assert!(wgsl.windows(2).all(|w| w[0] < w[1]), "score.wgsl order");
    let rust_shape = order(SHAPE_RS, "pub fn ", &shape);
    assert!(rust_shape.windows(2).all(|w| w[0] < w[1]), "shape.rs order");
    let rust = order(SCORE_RS, "pub fn ", &scoring);
    assert!(rust.windows(2).all(|w| w[0] < w[1]), "score.rs order");
}

#[test]
fn node_kernel_parses_validates_and_matches_its_twin() {
    use gpuplace::kernel::frag;
    let module = frag_module();
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty())
        .validate(&module)
        .unwrap_or_else(|e| panic!("frag.wgsl does not validate: {e:?}"));
    assert!(module.entry_points.iter().any(|e| e.name == "main" && e.stage == naga::ShaderStage::Compute));

    let structs = shader_structs(&module);
    let twins: [(&str, &str, usize); 4] = [
        ("Node", "NodeGpu", size_of::<frag::NodeGpu>()),
        ("Shape", "ShapeGpu", size_of::<frag::ShapeGpu>()),
        ("NodeParams", "NodeParams", size_of::<frag::NodeParams>()),
        ("NodeCandidate", "NodeCandidate", size_of::<frag::NodeCandidate>()),
    ];
    for (wgsl, rust, rust_size) in twins {
        let (size, members) = structs.get(wgsl).unwrap_or_else(|| panic!("no struct {wgsl} in frag.wgsl"));
        assert_eq!(*size as usize, rust_size, "struct {wgsl} is {size} bytes in WGSL, {rust_size} in Rust");
        assert_eq!(members, &rust_fields_in(FRAG_RS, rust), "struct {wgsl} and {rust} differ in field names or order");
    }

    let constants = constants_of(&module);
    let expected = [
        ("TERM_SCALE", score::TERM_SCALE),
        ("RECIP_SHIFT", score::RECIP_SHIFT),
        ("MAX_NODE_GPUS", gpuplace::kernel::limits::MAX_NODE_GPUS),
        ("GPU_MILLI", frag::GPU_MILLI),
        ("FRAG_WEIGHT_SUM", frag::FRAG_WEIGHT_SUM),
        ("FRAG_OFFSET", frag::FRAG_OFFSET),
        ("FRAG_SHIFT", frag::FRAG_SHIFT),
        ("FRAG_STEP", frag::FRAG_STEP),
        ("MAX_GPU_MODELS", frag::MAX_GPU_MODELS),
        ("UNKNOWN_MODEL", frag::UNKNOWN_MODEL),
        ("MAX_FRAG_SHAPES", frag::MAX_FRAG_SHAPES),
        ("NO_NODE", frag::NO_NODE),
        ("NODE_TERM_FRAG", frag::NODE_TERM_FRAG),
        ("NODE_TERM_PACK", frag::NODE_TERM_PACK),
        ("NODE_TERM_RANDOM", frag::NODE_TERM_RANDOM),
        ("NODE_TERM_SIZE", frag::NODE_TERM_SIZE),
        ("NODE_TERM_COUNT", frag::NODE_TERM_COUNT as u32),
    ];
    for (name, value) in expected {
        assert_eq!(constants.get(name), Some(&value), "frag.wgsl constant {name}");
    }
    #[cfg(feature = "gpu")]
    assert_eq!(constants.get("NODE_WG_SIZE"), Some(&gpuplace::gpu::nodes::NODE_WG_SIZE));
    #[cfg(feature = "gpu")]
    assert_eq!(gpuplace::gpu::nodes::FRAG_WGSL, FRAG_WGSL);

    // The twins in the same order on both sides.
    let names = [
        "accessible",
        "shape_frag",
        "node_frag",
        "fits_node",
        "take_best_fit",
        "node_terms",
        "node_score",
        "score_node",
        "better_node",
    ];
    for (source, prefix, label) in [(FRAG_WGSL, "fn ", "frag.wgsl"), (FRAG_RS, "pub fn ", "frag.rs")] {
        let at: Vec<usize> = names
            .iter()
            .map(|f| source.find(&format!("{prefix}{f}(")).unwrap_or_else(|| panic!("no fn {f} in {label}")))
            .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{label}: the twins are out of order");
    }
}

/// Why `src` might hold a loop that never ends, or `None`: the GPU backend compiles both kernels
/// without wgpu's forced loop bounding (src/gpu/mod.rs `build_pipeline`), which is sound only if
/// every loop terminates. Accepted forms: `for (var i = A; i < B; i++)` and
/// `for (var i = A; i > 0u; i >>= 1u)`, where the body assigns neither `i` nor anything `B` names,
/// and declares no second `i`; no `loop`, `while` or `continuing`. (`i++` on a u32 reaches any
/// bound `B` of `<` before it could wrap.)
fn unbounded_loop(src: &str) -> Option<String> {
    let code: String = src.lines().map(|line| line.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    let words = |s: &str| -> Vec<String> {
        s.split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|w| !w.is_empty()).map(String::from).collect()
    };
    for keyword in ["loop", "while", "continuing"] {
        if words(&code).iter().any(|w| w == keyword) {
            return Some(format!("a `{keyword}` statement"));
        }
    }
    let assigns = |body: &str, name: &str| -> bool {
        let ops = ["=", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", ">>=", "<<=", "++", "--"];
        let mut rest = body;
        while let Some(at) = rest.find(name) {
            let before = rest[..at].chars().last();
            let after = rest[at + name.len()..].trim_start();
            let whole = !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.')
                && !rest[at + name.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_');
            let declared = rest[..at].trim_end().ends_with("var") || rest[..at].trim_end().ends_with("let");
            if whole && (declared || ops.iter().any(|op| after.starts_with(op) && !after.starts_with("=="))) {
                return true;
            }
            rest = &rest[at + name.len()..];
        }
        false
    };
    let mut rest = code.as_str();
    while let Some(at) = rest.find("for (") {
        let header_end = at + rest[at..].find(')')?;
        let header = &rest[at + 5..header_end];
        let parts: Vec<&str> = header.split(';').map(str::trim).collect();
        let [init, condition, step] = parts[..] else { return Some(format!("`for ({header})`")) };
        let Some(name) = init.strip_prefix("var ").and_then(|s| s.split([' ', ':', '=']).next()) else {
            return Some(format!("`for ({header})`: no fresh counter"));
        };
        let counted_up = condition.starts_with(&format!("{name} < ")) && step == format!("{name}++");
        let halved = condition == format!("{name} > 0u") && step == format!("{name} >>= 1u");
        if !counted_up && !halved {
            return Some(format!("`for ({header})`"));
        }
        let bound = condition[name.len() + 3..].to_string();
        let open = header_end + rest[header_end..].find('{')?;
        let mut depth = 0;
        let mut close = open;
        for (i, c) in rest[open..].char_indices() {
            depth += match c {
                '{' => 1,
                '}' => -1,
                _ => 0,
            };
            if depth == 0 {
                close = open + i;
                break;
            }
        }
        let body = &rest[open..close];
        if assigns(body, name) {
            return Some(format!("`for ({header})` assigns or redeclares `{name}` in its body"));
        }
        if let Some(word) = words(&bound).into_iter().find(|w| assigns(body, w)) {
            return Some(format!("`for ({header})` assigns its bound's `{word}` in its body"));
        }
        rest = &rest[header_end..];
    }
    None
}

#[test]
fn every_loop_terminates() {
    for (name, src) in [("score.wgsl", SCORE_WGSL), ("frag.wgsl", FRAG_WGSL)] {
        assert_eq!(unbounded_loop(src), None, "{name}");
        assert!(src.matches("for (").count() >= 4, "{name}: the check saw its loops");
    }
    // Negative controls: each of these must be caught.
    for bad in [
        "fn f() { loop { } }",
        "fn f(n: u32) { var i = 0u; while (i < n) { i++; } }",
        "fn f(n: u32) { for (var i = 0u; i <= n; i++) { } }",
        "fn f(n: u32) { for (var i = 0u; i < n; i++) { i = 0u; } }",
        "fn f(n: u32) { for (var i = 0u; i < n; i++) { i -= 1u; } }",
        "fn f(n: u32) { var m = n; for (var i = 0u; i < m; i++) { m++; } }",
        "fn f(n: u32) { for (var i = 0u; i < n; i += 2u) { } }",
        "fn f(n: u32) { var i = 0u; for (; i < n; i++) { } }",
        "fn f(n: u32) { for (var i = 8u; i > 0u; i >>= 1u) { var i = 9u; } }",
    ] {
        assert!(unbounded_loop(bad).is_some(), "not caught: {bad}");
    }
    assert_eq!(unbounded_loop("fn f(n: u32) { for (var i = 0u; i < n; i++) { let j = i; } }"), None);
}
