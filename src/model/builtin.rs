//! The built-in default fleet: GB300 NVL72 capacity of IREN, Nscale and Microsoft Azure as publicly
//! reported by late 2025. Every figure below carries its source; every value that is not published
//! (prices, carbon, latencies, power envelopes, rack counts derived from GPU counts, exact dates) is
//! marked ASSUMPTION and chosen to be plausible, not authoritative. Replace it with `--fleet FILE`
//! for real use; `gpuplace fleet --json` prints this fleet in that format as a starting point.

use crate::kernel::score::mix;
use crate::kernel::state::NodeState;
use crate::model::date::Day;
use crate::model::fleet::{ClusterFile, Fleet, FleetFile, NodeFile, RackTypeFile, SiteFile};

/// The built-in fleet's `as_of` date: its default placement date.
pub const AS_OF: &str = "2026-11-26";

/// User regions of the built-in fleet.
pub const REGIONS: [&str; 6] = ["us-east", "us-central", "us-west", "eu-west", "eu-north", "uk"];

fn rack_types() -> [(&'static str, RackTypeFile); 3] {
    [
        // NVIDIA GB300 NVL72: 72 Blackwell Ultra GPUs and 36 Grace CPUs in one NVLink domain, 288 GB
        // HBM3e per GPU (NVIDIA product page). Rack power is reported at roughly 132–142 kW; 140 kW
        // is used. The GPUs sit on 18 compute trays of 4 GPUs and 2 Grace CPUs each (NVIDIA's
        // GB300 NVL72 page: "72 NVIDIA Blackwell Ultra GPUs and 36 NVIDIA Grace CPUs"; the MGX
        // compute tray holds two GB300 superchips of one Grace and two GPUs each); a tray is one
        // Kubernetes or Slurm node.
        //
        // Each tray's two Grace CPUs have 72 Arm Neoverse V2 cores and up to 480 GB of LPDDR5X each
        // (NVIDIA Grace datasheet; the GB300 NVL72 page lists up to 17 TB of LPDDR5X for 36
        // Graces): 144 cores and 960 GB. ASSUMPTION: 8 cores and 64 GB are kept for the operating
        // system and the kubelet, so pods get 136 cores and 896 GB.
        ("gb300-nvl72", RackTypeFile::new("GB300", 72, 288, 140.0).with_nodes(18).with_node_resources(136.0, 896.0)),
        // NVIDIA GB200 NVL72: 72 Blackwell GPUs, 186 GB HBM3e each (NVIDIA), about 120–132 kW per
        // rack; 18 compute trays of two GB200 superchips (4 GPUs, 2 Grace CPUs) each; the same
        // Graces and the same ASSUMPTION as GB300 for what pods get.
        ("gb200-nvl72", RackTypeFile::new("GB200", 72, 186, 132.0).with_nodes(18).with_node_resources(136.0, 896.0)),
        // NVIDIA HGX H100 8-GPU node: one NVLink domain of 8 GPUs with 80 GB HBM3 each, about 10.2 kW;
        // one server, one node. CPU and memory as NVIDIA's DGX H100 (2 × 56-core Xeon Platinum
        // 8480C, 2 TB); ASSUMPTION: pods get 104 cores and 1,920 GB.
        ("hgx-h100-8", RackTypeFile::new("H100", 8, 80, 10.2).with_nodes(1).with_node_resources(104.0, 1920.0)),
    ]
}

fn day(text: &str) -> Day {
    Day::parse(text).expect("the built-in dates are valid")
}

/// A GB300 NVL72 cluster. ASSUMPTION: topology blocks of 8 racks (576 GPUs) behind one set of leaf
/// switches, after the scalable unit of NVIDIA's DGX SuperPOD with DGX GB200 (8 NVL72 racks per SU);
/// the operators' actual leaf layouts are not public.
fn gb300(name: &str, racks: u32, online: Option<&str>) -> ClusterFile {
    let cluster = ClusterFile::new(name, "gb300-nvl72", racks).with_block_racks(8);
    match online {
        Some(text) => cluster.with_online(day(text)),
        None => cluster,
    }
}

/// A site; `latency_ms` gives the latency to each of [`REGIONS`], in order. ASSUMPTION: latencies
/// are typical round-trip times between the named places over public backbones, not measurements.
#[expect(clippy::too_many_arguments, reason = "a table row; the call sites read as a table")]
fn site(
    name: &str,
    provider: &str,
    country: &str,
    jurisdiction: &str,
    power_mw: f64,
    pue: f64,
    price_usd_per_mwh: f64,
    carbon_g_per_kwh: f64,
    online: &str,
    latency_ms: [u32; 6],
    clusters: Vec<ClusterFile>,
) -> SiteFile {
    let site = SiteFile::new(name, provider, country, jurisdiction, power_mw, day(online)).with_energy(
        pue,
        price_usd_per_mwh,
        carbon_g_per_kwh,
    );
    let site = REGIONS.iter().zip(latency_ms).fold(site, |site, (region, ms)| site.with_latency_ms(*region, ms));
    clusters.into_iter().fold(site, SiteFile::with_cluster)
}

/// The built-in fleet as a file (what `gpuplace fleet --json` prints).
pub fn default_fleet_file() -> FleetFile {
    let sites = vec![
        // IREN, Childress, Texas: a 750 MW campus; IREN's five-year, $9.7B contract with Microsoft
        // (announced November 2025) is served from GB300 NVL72 deployed there in phases through 2026.
        // ASSUMPTION: 200 MW of IT power for the contract, ~1,000 racks (72,000 GPUs) in four phases of
        // 250 racks online from March to December 2026; ERCOT price 40 USD/MWh, 380 gCO2/kWh, PUE 1.2.
        site(
            "iren-childress",
            "IREN",
            "US",
            "US",
            200.0,
            1.2,
            40.0,
            380.0,
            "2026-03-01",
            [35, 15, 35, 120, 135, 110],
            vec![
                gb300("childress-p1", 250, None),
                gb300("childress-p2", 250, Some("2026-06-01")),
                gb300("childress-p3", 250, Some("2026-09-01")),
                gb300("childress-p4", 250, Some("2026-12-01")),
            ],
        ),
        // Nscale for Microsoft, Texas: ~104,000 GB300 GPUs on a 240 MW campus from Q3 2026 (Nscale,
        // October 2025). 104,000 / 72 = 1,444.4, so 1,445 racks. ASSUMPTION: the campus's 240 MW all
        // available to IT; ERCOT price 42 USD/MWh, 380 gCO2/kWh, PUE 1.2.
        site(
            "nscale-texas",
            "Nscale",
            "US",
            "US",
            240.0,
            1.2,
            42.0,
            380.0,
            "2026-07-01",
            [35, 15, 35, 120, 135, 110],
            vec![gb300("texas-a", 723, None), gb300("texas-b", 722, Some("2026-10-01"))],
        ),
        // Nscale, Sines, Portugal (Start Campus): ~12,600 GB300 GPUs from Q1 2026 (Nscale, October
        // 2025) = 175 racks. ASSUMPTION: 20 MW of IT power in the first phase (so power, not racks, binds here), 70 USD/MWh, 120 gCO2/kWh, PUE 1.15.
        site(
            "nscale-sines",
            "Nscale",
            "PT",
            "EU",
            20.0,
            1.15,
            70.0,
            120.0,
            "2026-01-01",
            [95, 120, 150, 25, 55, 30],
            vec![gb300("sines-1", 175, None)],
        ),
        // Nscale, Loughton, UK: ~23,000 GB300 GPUs from 2027 on a 50 MW site scalable to 90 MW
        // (Nscale, September–October 2025). 23,000 / 72 = 319.4, so 320 racks. ASSUMPTION: online
        // 2027-01-01, 110 USD/MWh, 150 gCO2/kWh, PUE 1.25.
        site(
            "nscale-loughton",
            "Nscale",
            "GB",
            "UK",
            50.0,
            1.25,
            110.0,
            150.0,
            "2027-01-01",
            [75, 100, 135, 15, 30, 3],
            vec![gb300("loughton-1", 320, None)],
        ),
        // Nscale, Narvik, Norway (with Aker, "Stargate Norway"): ~52,000 GB300 GPUs for Microsoft
        // (Nscale, October 2025). 52,000 / 72 = 722.2, so 723 racks. ASSUMPTION: 230 MW initial
        // phase, online 2026-10-01, hydro power at 30 USD/MWh and 20 gCO2/kWh, PUE 1.1.
        site(
            "nscale-narvik",
            "Nscale",
            "NO",
            "NO",
            230.0,
            1.1,
            30.0,
            20.0,
            "2026-10-01",
            [105, 130, 160, 45, 15, 35],
            vec![gb300("narvik-1", 723, None)],
        ),
        // Microsoft Azure: the first production GB300 NVL72 cluster, "more than 4,600" Blackwell
        // Ultra GPUs (Microsoft, 9 October 2025): 64 racks = 4,608 GPUs. ASSUMPTION: a US-east
        // location, 10 MW of IT power, 60 USD/MWh, 350 gCO2/kWh, PUE 1.18.
        site(
            "azure-gb300-cluster",
            "Microsoft Azure",
            "US",
            "US",
            10.0,
            1.18,
            60.0,
            350.0,
            "2025-10-09",
            [5, 30, 65, 85, 110, 80],
            vec![gb300("azure-1", 64, None)],
        ),
    ];
    let sites: Vec<SiteFile> = sites.into_iter().map(with_tray_state).collect();
    // The day this fleet describes, and so the default placement date: without it every run would
    // place on "today" and give different results each day. `--at` overrides it.
    let file = FleetFile::new(REGIONS).with_as_of(day(AS_OF));
    let file = rack_types().into_iter().fold(file, |file, (name, rack_type)| file.with_rack_type(name, rack_type));
    sites.into_iter().fold(file, FleetFile::with_site)
}

/// Trays as a running fleet has them. ASSUMPTION (no operator publishes these): about 0.3% of trays
/// failed and 0.5% cordoned (NVL72 operators keep spare trays and drain trays for maintenance), and
/// in clusters already online on [`AS_OF`] about 15% of racks with 1 to 6 trays running work (all
/// their GPUs, and 16 cores and 96 GB per GPU). Drawn
/// from a hash of the cluster's name, rack and tray, so the fleet is the same on every run.
fn with_tray_state(mut site: SiteFile) -> SiteFile {
    let as_of = day(AS_OF);
    let types = rack_types();
    for cluster in &mut site.clusters {
        let rack_type = &types.iter().find(|(name, _)| *name == cluster.rack_type).expect("a built-in type").1;
        let trays = rack_type.nodes.expect("built-in types state their trays");
        let tray_gpus = rack_type.gpus / trays;
        let running = cluster.online.unwrap_or(site.online).max(site.online) <= as_of;
        let seed = cluster.name.bytes().fold(0x811C_9DC5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
        let mut nodes = Vec::new();
        for rack in 0..cluster.racks {
            let rack_draw = mix(seed ^ mix(rack));
            let busy_trays = if running && rack_draw % 100 < 15 { 1 + (rack_draw >> 8) % 6 } else { 0 };
            for tray in 0..trays {
                let draw = mix(rack_draw ^ mix(tray + 1)) % 1000;
                let state = match draw {
                    0..3 => NodeState::Failed,
                    3..8 => NodeState::Cordoned,
                    _ => NodeState::Ready,
                };
                let used = if tray < busy_trays && state != NodeState::Failed { tray_gpus } else { 0 };
                // ASSUMPTION: a busy tray's pods hold 16 cores and 96 GB per GPU.
                let (cores, memory) = if used != 0 { (f64::from(16 * used), f64::from(96 * used)) } else { (0.0, 0.0) };
                if state != NodeState::Ready || used != 0 {
                    nodes.push(
                        NodeFile::new(rack, tray)
                            .with_state(state)
                            .with_used_gpus(used)
                            .with_resources_used(cores, memory),
                    );
                }
            }
        }
        *cluster = std::mem::replace(cluster, ClusterFile::new("", "", 1)).with_nodes(nodes);
    }
    site
}

/// The built-in fleet, validated.
pub fn default_fleet() -> Fleet {
    Fleet::from_file(default_fleet_file(), "<built-in>").expect("the built-in fleet is valid")
}
