//! Files in, files out: everything gpuplace writes loads back (a round-trip property over random
//! fleets with unusual names), and what it must refuse it refuses before allocating or writing.

use gpuplace::import::{AzureOptions, AzureTrace, azure};
use gpuplace::kernel::state::NodeState;
use gpuplace::model::fleet::FleetFile;
use gpuplace::{Day, Fleet, JobKind, Policy, Workload};
use proptest::prelude::*;

fn at() -> Day {
    Day::parse("2026-11-26").unwrap()
}

/// A name a person might write: letters, digits, inner spaces and punctuation, accents.
fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9é][A-Za-z0-9 _.\\-é/]{0,10}[A-Za-z0-9é]"
}

/// The built-in fleet with its regions, providers and jurisdictions renamed.
fn renamed_fleet(regions: &[String], providers: &[String], jurisdictions: &[String]) -> Option<Fleet> {
    let mut file: FleetFile = gpuplace::builtin::default_fleet_file();
    let old_regions = file.regions.clone();
    if regions.iter().collect::<std::collections::BTreeSet<_>>().len() != old_regions.len() {
        return None;
    }
    file.regions = regions.to_vec();
    for (s, site) in file.sites.iter_mut().enumerate() {
        site.latency_ms =
            old_regions.iter().zip(regions).map(|(old, new)| (new.clone(), site.latency_ms[old])).collect();
        site.provider = providers[s % providers.len()].clone();
        site.jurisdiction = jurisdictions[s % jurisdictions.len()].clone();
    }
    Some(Fleet::from_file(file, "<renamed>").expect("valid names make a valid fleet"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// What `generate` writes, as JSON and as CSV, reads back to the same jobs, which compile
    /// against the fleet they were made for, whatever the fleet's names and the date.
    #[test]
    fn generated_workloads_load_back(
        regions in proptest::collection::vec(name(), 6),
        providers in proptest::collection::vec(name(), 1..4),
        jurisdictions in proptest::collection::vec(name(), 1..4),
        seed in any::<u64>(),
        day in 0u32..=Day::MAX.0,
    ) {
        let Some(fleet) = renamed_fleet(&regions, &providers, &jurisdictions) else { return Ok(()) };
        let today = Day(day);
        let workload = gpuplace::generate::generate(&fleet, 60, seed, today).unwrap();
        let json = workload.to_json().unwrap();
        let csv = workload.to_csv().unwrap();
        let from_json = Workload::from_json(&json, "jobs.json").unwrap();
        let from_csv = Workload::from_csv(&csv, "jobs.csv").unwrap();
        prop_assert_eq!(&from_json.jobs, &workload.jobs);
        prop_assert_eq!(&from_csv.jobs, &workload.jobs);
        from_json.compile(&fleet, &Policy::default(), today).unwrap();
        // The fleet file written by `fleet --json` reads back to the same fleet.
        prop_assert_eq!(Fleet::from_json(&fleet.to_json(), "fleet.json").unwrap(), fleet);
    }
}

#[test]
fn writers_refuse_what_could_not_be_read_back() {
    let fleet = gpuplace::builtin::default_fleet();
    let workload = gpuplace::generate::generate(&fleet, 20, 1, at()).unwrap();
    for (what, edit) in [
        ("a `|` in a list", (|w: &mut Workload| w.jobs[3].providers = Some(vec!["A|B".into()])) as fn(&mut Workload)),
        ("a leading space", |w: &mut Workload| w.jobs[3].id = " padded".into()),
        ("a control character", |w: &mut Workload| w.jobs[3].id = "two\nlines".into()),
        ("an empty list", |w: &mut Workload| w.jobs[3].jurisdictions = Some(vec![])),
        ("a duplicate id", |w: &mut Workload| w.jobs[3].id = w.jobs[4].id.clone()),
        ("a date past 9999", |w: &mut Workload| w.jobs[3].not_before = Some(Day(Day::MAX.0 + 1))),
    ] {
        let mut bad = workload.clone();
        edit(&mut bad);
        let csv = bad.to_csv();
        let json = bad.to_json();
        assert!(csv.is_err() && json.is_err(), "{what} was written");
        assert!(csv.unwrap_err().record.contains("record 3") || what == "a duplicate id", "{what}");
    }
}

#[test]
fn the_generator_stops_dates_at_the_end_of_the_calendar() {
    let fleet = gpuplace::builtin::default_fleet();
    let workload = gpuplace::generate::generate(&fleet, 500, 3, Day::MAX).unwrap();
    assert!(workload.jobs.iter().any(|j| j.not_before.is_some()));
    workload.compile(&fleet, &Policy::default(), Day::MAX).unwrap();
    assert!(gpuplace::generate::generate(&fleet, gpuplace::model::jobs::MAX_JOBS + 1, 3, at()).is_err());
}

#[test]
fn importers_refuse_before_allocating() {
    let row = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,1000000000,1000000000\n";
    // A billion tokens at the largest scale is about 10¹⁶ replicas: refused, not allocated.
    let options = AzureOptions { scale: 1e9, window_s: 1, ..AzureOptions::default() };
    let error =
        azure(&[AzureTrace { text: row.as_bytes(), source_name: "t.csv", kind: JobKind::Inference }], &options, false)
            .unwrap_err();
    assert!(error.message.contains("replicas") && error.message.contains("10000000"), "{error}");
    for bad in [
        AzureOptions { replica_gpus: 0, ..AzureOptions::default() },
        AzureOptions { window_s: 0, ..AzureOptions::default() },
        AzureOptions { utilization: f64::NAN, ..AzureOptions::default() },
        AzureOptions { region: " us-east".into(), ..AzureOptions::default() },
    ] {
        assert!(
            azure(&[AzureTrace { text: row.as_bytes(), source_name: "t.csv", kind: JobKind::Inference }], &bad, false)
                .is_err(),
            "{bad:?}"
        );
    }
}

#[test]
fn racks_split_into_trays_or_are_refused() {
    use gpuplace::model::fleet::default_nodes;
    assert_eq!(default_nodes(8), Some(1), "an HGX server is one node");
    assert_eq!(default_nodes(72), Some(18), "NVL72: 18 trays of 4");
    assert_eq!(default_nodes(1024), Some(128), "256 trays of 4 is over the limit: 128 of 8");
    assert_eq!(default_nodes(257), None, "a prime above 255 has no split");
    let file = gpuplace::builtin::default_fleet_file();
    let mut prime = file.clone();
    let rack_type = prime.rack_types.get_mut("gb300-nvl72").unwrap();
    (rack_type.gpus, rack_type.nodes) = (257, None);
    let error = Fleet::from_file(prime, "f").unwrap_err();
    assert!(error.field == "gpus" && error.message.contains("cannot be split"), "{error}");
    // An Alibaba node of more than 8 GPUs is a malformed row: a server is one node.
    let nodes = "sn,cpu_milli,memory_mib,gpu,model\nn1,96000,786432,8,V100M32\nn2,96000,786432,16,V100M32\n";
    let (fleet, report) = gpuplace::import::alibaba_nodes(nodes.as_bytes(), "nodes.csv", false).unwrap();
    assert_eq!(report.imported, 1, "{report:?}");
    let fleet = Fleet::from_file(fleet, "nodes").unwrap();
    assert_eq!((fleet.rack_types[0].nodes, fleet.rack_types[0].node_gpus), (1, 8));
}

#[test]
fn fleets_refuse_what_they_cannot_hold() {
    let file = gpuplace::builtin::default_fleet_file();
    let mut regions = file.clone();
    regions.regions = (0..65).map(|i| format!("r{i}")).collect();
    assert!(Fleet::from_file(regions, "f").unwrap_err().message.contains("at most 64"));
    let mut racks = file.clone();
    racks.sites[0].clusters[0].racks = 1_000_000;
    racks.sites[1].clusters[0].racks = 1_000_000;
    assert!(Fleet::from_file(racks, "f").unwrap_err().message.contains("1000000"));
    let mut names = file;
    names.sites[0].clusters[0].name = "p1\t".into();
    let error = Fleet::from_file(names, "f").unwrap_err();
    assert_eq!(error.field, "clusters[0].name", "{error}");
}

#[test]
fn several_azure_traces_line_up_and_keep_their_ids_apart() {
    let text = include_str!("fixtures/azure_conv_sample.csv");
    // The same conversation trace twice, and once more as code: one workload, unique ids, windows
    // counted from the first request of all.
    let traces = [
        AzureTrace { text: text.as_bytes(), source_name: "a.csv", kind: JobKind::Inference },
        AzureTrace { text: text.as_bytes(), source_name: "b.csv", kind: JobKind::Inference },
        AzureTrace { text: text.as_bytes(), source_name: "c.csv", kind: JobKind::Agentic },
    ];
    let options = AzureOptions { window_s: 60, scale: 200.0, ..AzureOptions::default() };
    let (workload, reports) = azure(&traces, &options, false).unwrap();
    assert_eq!(reports.len(), 3);
    assert_eq!(reports.iter().map(|r| r.imported).sum::<usize>(), workload.jobs.len());
    assert!(workload.jobs.iter().any(|j| j.id.starts_with("conv-w")));
    assert!(workload.jobs.iter().any(|j| j.id.starts_with("conv2-w")));
    assert!(workload.jobs.iter().any(|j| j.id.starts_with("code-w")));
    workload.validate().unwrap();
    let first = |prefix: &str| workload.jobs.iter().filter(|j| j.id.starts_with(prefix)).map(|j| j.submit_s).min();
    assert_eq!(first("conv-w"), first("conv2-w"));
    assert_eq!(first("conv-w"), Some(Some(0)));
}

#[test]
fn topology_blocks_and_rules_load_write_back_and_refuse_bad_values() {
    let mut file: FleetFile = gpuplace::builtin::default_fleet_file();
    file.sites[0].clusters[0].block_racks = Some(0);
    let e = Fleet::from_file(file.clone(), "fleet.json").unwrap_err();
    assert_eq!((e.source_name.as_str(), e.field.as_str()), ("fleet.json", "clusters[0].block_racks"), "{e}");
    file.sites[0].clusters[0].block_racks = Some(8);
    let fleet = Fleet::from_file(file, "fleet.json").unwrap();
    let c = &fleet.clusters[0];
    assert_eq!((c.block_racks, c.block_count()), (8, (c.racks.len() as u32).div_ceil(8)));
    // The blocks of later clusters follow on; every rack's block is its cluster's.
    let state = fleet.initial_state();
    for cluster in &fleet.clusters {
        for r in cluster.racks.clone() {
            assert_eq!(state.racks[r].block, cluster.block_of(r));
            assert!((cluster.first_block..cluster.first_block + cluster.block_count()).contains(&state.racks[r].block));
        }
    }
    let whole: u32 = state.blocks.iter().map(|b| b.free_racks).sum();
    assert_eq!(whole, state.clusters.iter().map(|c| c.free_racks).sum::<u32>());

    // Jobs: `block` in JSON and CSV, written and read back the same.
    let csv = "id,kind,gpus,hbm_gb_per_gpu,priority,duration_h,region,block\n\
               a,training,144,0,1,2,us-east,required\nb,training,144,0,1,2,us-east,preferred\nc,training,8,0,1,2,us-east,\n";
    let workload = Workload::from_csv(csv, "jobs.csv").unwrap();
    let blocks: Vec<_> = workload.jobs.iter().map(|j| j.block.map(|b| b.name())).collect();
    assert_eq!(blocks, [Some("required"), Some("preferred"), None]);
    let again = Workload::from_csv(&workload.to_csv().unwrap(), "again.csv").unwrap();
    assert_eq!(again.jobs, workload.jobs);
    let json = Workload::from_json(&workload.to_json().unwrap(), "again.json").unwrap();
    assert_eq!(json.jobs, workload.jobs);
    let bad = "id,kind,gpus,hbm_gb_per_gpu,priority,duration_h,region,block\na,training,144,0,1,2,us-east,maybe\n";
    let e = Workload::from_csv(bad, "jobs.csv").unwrap_err();
    assert!(e.to_string().contains("line 2") && e.to_string().contains("`block`"), "{e}");
    let e = Workload::from_json(
        r#"[{"id": "a", "kind": "training", "gpus": 144, "hbm_gb_per_gpu": 0,
        "priority": 1, "duration_h": 1, "region": "us-east", "block": "maybe"}]"#,
        "jobs.json",
    )
    .unwrap_err();
    assert!(e.to_string().contains("block"), "{e}");
    workload.compile(&fleet, &Policy::default(), at()).unwrap();
}

#[test]
fn tray_cpu_and_memory_load_write_back_and_refuse_bad_values() {
    use gpuplace::model::fleet::NodeFile;
    let file: FleetFile = gpuplace::builtin::default_fleet_file();
    let name = file.sites[0].clusters[0].rack_type.clone();
    let node =
        |cpu: f64, memory: f64, gpus: u32| NodeFile::new(0, 0).with_used_gpus(gpus).with_resources_used(cpu, memory);
    let with_node = |node: NodeFile| {
        let mut f = file.clone();
        // The first cluster's type gets the resources; its tray 0 of rack 0 holds `node`.
        let rt = f.rack_types.get_mut(&name).unwrap();
        (rt.node_cpu, rt.node_memory_gb) = (Some(136.5), Some(896.0));
        f.sites[0].clusters[0].used_gpus = None;
        f.sites[0].clusters[0].nodes = Some(vec![node]);
        Fleet::from_file(f, "fleet.json")
    };
    // A node may be stated full, to the rounding of its capacity.
    with_node(node(136.5004, 896.0, 4)).unwrap();
    let fleet = with_node(node(4.25, 10.0, 2)).unwrap();
    let state = fleet.initial_state();
    let tray = state.node_table[fleet.racks[fleet.clusters[0].racks.start].first_node as usize];
    assert_eq!((tray.free_cpu_milli, tray.free_memory_mib), (136_500 - 4_250, (896 - 10) * 1024));
    // Bad values: each names the file, the record and the field.
    for (bad, field, words) in [
        (node(137.0, 0.0, 2), "cpu_used", "more than the node's 136.5 cores"),
        (node(0.0, 897.0, 2), "memory_gb_used", "more than the node's 896 GB"),
        (node(-1.0, 0.0, 2), "cpu_used", "out of range"),
        (node(f64::NAN, 0.0, 2), "cpu_used", "out of range"),
        (node(1.0, 0.0, 0), "cpu_used", "only a node with GPUs in use"),
    ] {
        let e = with_node(bad).unwrap_err();
        assert_eq!(e.source_name, "fleet.json");
        assert!(e.field.ends_with(field) && e.message.contains(words), "{e}");
    }
    let mut zero = file.clone();
    zero.rack_types.get_mut(&name).unwrap().node_cpu = Some(0.0);
    let e = Fleet::from_file(zero, "fleet.json").unwrap_err();
    assert!(e.field == "node_cpu" && e.record.contains(&name), "{e}");

    // Jobs: `cpu` and `memory_gb` per pod in JSON and CSV, written and read back the same.
    let csv = "id,kind,gpus,hbm_gb_per_gpu,priority,duration_h,region,pods,cpu,memory_gb\n\
               a,inference,4,0,1,2,us-east,2,12.5,96\nb,training,8,0,1,2,us-east,,,\n";
    let workload = Workload::from_csv(csv, "jobs.csv").unwrap();
    assert_eq!(workload.jobs[0].pod_resources(), [12_500, 96 * 1024]);
    assert_eq!(workload.jobs[1].pod_resources(), [0, 0]);
    let again = Workload::from_csv(&workload.to_csv().unwrap(), "again.csv").unwrap();
    assert_eq!(again.jobs, workload.jobs);
    let json = Workload::from_json(&workload.to_json().unwrap(), "again.json").unwrap();
    assert_eq!(json.jobs, workload.jobs);
    let jobs = workload.compile(&fleet, &Policy::default(), at()).unwrap();
    assert_eq!((jobs[0].pod_cpu_milli, jobs[0].pod_memory_mib), (12_500, 98_304));
    for (line, field, words) in [
        ("a,inference,4,0,1,2,us-east,,4,", "cpu", "give `pods`"),
        ("a,inference,4,0,1,2,us-east,2,0,", "cpu", "out of range"),
        ("a,inference,4,0,1,2,us-east,2,4001,", "cpu", "out of range"),
        ("a,inference,4,0,1,2,us-east,2,,70000", "memory_gb", "out of range"),
        ("a,inference,4,0,1,2,us-east,2,many,", "cpu", "not a number"),
    ] {
        let text = format!("id,kind,gpus,hbm_gb_per_gpu,priority,duration_h,region,pods,cpu,memory_gb\n{line}\n");
        let e = Workload::from_csv(&text, "jobs.csv").and_then(|w| w.validate().map(|_| w).map_err(Into::into));
        let e = e.unwrap_err().to_string();
        assert!(e.contains("jobs.csv") && e.contains(field) && e.contains(words), "{line}: {e}");
    }
}

#[test]
fn shared_gpus_load_write_back_and_refuse_bad_values() {
    use gpuplace::model::fleet::NodeFile;
    let file: FleetFile = gpuplace::builtin::default_fleet_file();
    let with_node = |node: NodeFile| {
        let mut f = file.clone();
        f.sites[0].clusters[0].used_gpus = None;
        f.sites[0].clusters[0].nodes = Some(vec![node]);
        Fleet::from_file(f, "fleet.json")
    };
    // Tray 0 of rack 0 (4 GPUs): GPU 0 in use whole, GPUs 1 and 2 shared, GPU 3 free.
    let fleet = with_node(NodeFile::new(0, 0).with_used_gpus(1).with_shared_gpus(vec![250, 1000])).unwrap();
    let state = fleet.initial_state();
    let first = fleet.racks[fleet.clusters[0].racks.start].first_node as usize;
    let cell = state.nodes[first];
    assert_eq!((cell.used, cell.shared), (0b0111, 0b0110));
    assert_eq!(state.shares_of(first)[..4], [0, 250, 1000, 0]);
    let tray = state.node_table[first];
    assert_eq!(tray.free_gpus, 1, "shared GPUs are not free for whole pods");
    assert_eq!(tray.shared_free, [750 << 10, 0, 0], "what is left on each shared GPU, none on a full one");
    // A shared GPU draws its thousandths in use of a GPU's watts, rounded up.
    let plain = with_node(NodeFile::new(0, 0).with_used_gpus(1)).unwrap();
    let watts = u64::from(fleet.rack_types[fleet.clusters[0].rack_type].gpu_watts);
    let drawn = u64::from(fleet.sites[0].power_used_w - plain.sites[0].power_used_w);
    assert_eq!(drawn, (250 * watts).div_ceil(1000) + watts);
    // Bad values: each names the file, the record and the field.
    for (bad, field, words) in [
        (NodeFile::new(0, 0).with_used_gpus(3).with_shared_gpus(vec![1, 1]), "gpu_milli_used", "exceed the node's 4"),
        (NodeFile::new(0, 0).with_shared_gpus(vec![0]), "gpu_milli_used[0]", "out of range"),
        (NodeFile::new(0, 0).with_shared_gpus(vec![5, 1001]), "gpu_milli_used[1]", "out of range"),
        (
            NodeFile::new(0, 0).with_state(NodeState::Failed).with_shared_gpus(vec![5]),
            "gpu_milli_used",
            "a failed node",
        ),
    ] {
        let e = with_node(bad).unwrap_err();
        assert_eq!(e.source_name, "fleet.json");
        assert!(e.field.ends_with(field) && e.message.contains(words), "{e}");
    }
    // A site whose power does not feed the shares its file states is refused, in watts.
    let site = |power_mw: &str| {
        Fleet::from_json(
            &format!(
                r#"{{"regions": ["r"], "rack_types": {{"x": {{"gpu_model": "X", "gpus": 4, "hbm_gb_per_gpu": 80, "kw": 4, "nodes": 1}}}},
                "sites": [{{"name": "s", "provider": "P", "country": "US", "jurisdiction": "US", "power_mw": {power_mw},
                  "pue": 1.2, "price_usd_per_mwh": 50, "carbon_g_per_kwh": 300, "online": "2020-01-01",
                  "latency_ms": {{"r": 10}}, "clusters": [{{"name": "a", "rack_type": "x", "racks": 1,
                  "nodes": [{{"rack": 0, "node": 0, "gpu_milli_used": [333]}}]}}]}}]}}"#
            ),
            "fleet.json",
        )
    };
    site("0.000333").unwrap();
    let e = site("0.000332").unwrap_err();
    let e = e.to_string();
    assert!(e.contains("fleet.json") && e.contains("clusters[].nodes") && e.contains("draw 333 W"), "{e}");
    // Jobs: `gpu_milli` in JSON and CSV, written and read back the same; the job holds its shares
    // rounded up to whole GPUs.
    let csv = "id,kind,gpus,hbm_gb_per_gpu,priority,duration_h,region,pods,gpu_milli\n\
               a,inference,5,0,1,2,us-east,5,300\nb,training,8,0,1,2,us-east,,\n";
    let workload = Workload::from_csv(csv, "jobs.csv").unwrap();
    assert_eq!((workload.jobs[0].gpu_milli, workload.jobs[0].gpus_held()), (Some(300), 2));
    assert_eq!((workload.jobs[1].gpu_milli, workload.jobs[1].gpus_held()), (None, 8));
    let again = Workload::from_csv(&workload.to_csv().unwrap(), "again.csv").unwrap();
    assert_eq!(again.jobs, workload.jobs);
    let json = Workload::from_json(&workload.to_json().unwrap(), "again.json").unwrap();
    assert_eq!(json.jobs, workload.jobs);
    let jobs = workload.compile(&fleet, &Policy::default(), at()).unwrap();
    assert_eq!((jobs[0].gpus, jobs[0].pods, jobs[0].gpu_milli, jobs[0].pods_per_gpu), (2, 5, 300, 3));
    for (line, field, words) in [
        ("a,inference,5,0,1,2,us-east,,300", "gpu_milli", "give `pods` equal to `gpus`"),
        ("a,inference,4,0,1,2,us-east,2,300", "gpu_milli", "give `pods` equal to `gpus`"),
        ("a,inference,4,0,1,2,us-east,4,0", "gpu_milli", "out of range"),
        ("a,inference,4,0,1,2,us-east,4,1000", "gpu_milli", "out of range"),
        ("a,inference,4,0,1,2,us-east,4,half", "gpu_milli", "not a whole number"),
    ] {
        let text = format!("id,kind,gpus,hbm_gb_per_gpu,priority,duration_h,region,pods,gpu_milli\n{line}\n");
        let e = Workload::from_csv(&text, "jobs.csv").and_then(|w| w.validate().map(|_| w).map_err(Into::into));
        let e = e.unwrap_err().to_string();
        assert!(e.contains("jobs.csv") && e.contains(field) && e.contains(words), "{line}: {e}");
    }
}

#[test]
fn compiling_reports_the_first_bad_job_in_file_order() {
    // Jobs compile on all cores; whichever finishes first, the error is the first bad record's.
    let fleet = gpuplace::builtin::default_fleet();
    let mut jobs: Vec<serde_json::Value> = (0..20_000)
        .map(|i| {
            serde_json::json!({"id": format!("j{i}"), "kind": "inference", "gpus": 1, "hbm_gb_per_gpu": 0,
                "priority": 1, "duration_h": 1, "region": "us-east"})
        })
        .collect();
    jobs[17_000]["region"] = "nowhere".into();
    jobs[9_001]["providers"] = serde_json::json!(["nope"]);
    jobs[12_345]["jurisdictions"] = serde_json::json!(["XX"]);
    let text = serde_json::to_string(&jobs).unwrap();
    for _ in 0..3 {
        let workload = Workload::from_json(&text, "jobs.json").unwrap();
        let e = workload.compile(&fleet, &Policy::default(), at()).unwrap_err();
        assert!(e.to_string().contains("record 9001") && e.to_string().contains("providers"), "{e}");
    }
}

#[test]
fn an_input_error_stays_one_line_whatever_the_input_holds() {
    use gpuplace::error::InputError;
    // A field name with an escaped newline, as JSON allows: `"ki\nd"`.
    let error = gpuplace::Workload::from_json(r#"[{"ki\nd": 1}]"#, "jobs.json").unwrap_err().to_string();
    assert!(!error.contains('\n') && error.contains(r"ki\nd"), "{error}");
    let error = InputError::new("a\u{2028}b", "record\r", "f\u{0}", "x\ty").to_string();
    assert_eq!(error, r"a\u{2028}b: record\r: field `f\u{0}`: x\ty");
    // Nothing to escape: unchanged.
    assert_eq!(InputError::new("s", "r", "f", "m").to_string(), "s: r: field `f`: m");
}
