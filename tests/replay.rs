//! Replay over time: invariants at every interval, determinism, max-wait, backend parity, and the
//! trace importers on small fixtures (the Alibaba trace is read from ../shared when present).

mod common;

use common::{Shape, at, on_every_backend, random_fleet, random_policy, random_workload};
use gpuplace::engine::Cause;
use gpuplace::import::{AzureOptions, AzureTrace, alibaba_nodes, alibaba_pods, azure};
use gpuplace::kernel::state::NodeState;
use gpuplace::replay::{JobFate, Rejection, ReplayConfig, ReplayReport, replay};
use gpuplace::sim::generate::SplitMix64;
use gpuplace::{Backend, Fleet, JobKind, Policy, Scheduler, Workload};

/// A random fleet and a workload with arrivals and durations in seconds.
fn problem(seed: u64) -> (Fleet, Workload, Policy) {
    let mut rng = SplitMix64::new(seed);
    let fleet = random_fleet(&mut rng, Shape { max_racks: 10, ..Shape::default() });
    let mut workload = random_workload(&mut rng, &fleet, 120);
    for job in &mut workload.jobs {
        job.submit_s = Some(rng.below(4 * 3600));
        job.duration_h = None;
        job.duration_s = Some(rng.between(1, 3 * 3600));
    }
    let policy = random_policy(&mut rng, false);
    (fleet, workload, policy)
}

/// Replays with checks after every interval: the fleet's state equals the initial occupancy plus
/// exactly the jobs running then (placed, started, not yet ended); no job starts before it
/// arrives; power and GPUs never exceed capacity; the ledger's bookkeeping is consistent. Returns
/// the report and the backend.
fn checked_replay(
    fleet: &Fleet,
    workload: &Workload,
    policy: &Policy,
    config: ReplayConfig,
    backend: Backend,
) -> (ReplayReport, Backend) {
    let jobs = workload.compile(fleet, policy, config.start).unwrap();
    let initial = fleet.initial_state();
    let mut scheduler = Scheduler::with_backend(fleet.clone(), *policy, backend).unwrap();
    let mut intervals = 0;
    let report = replay(&mut scheduler, workload, config, &mut |_, _| {}, &mut |t, scheduler, fates| {
        intervals += 1;
        let state = scheduler.ledger().state();
        scheduler.ledger().check_consistency().unwrap_or_else(|e| panic!("at t={t}: {e}"));
        // Stranded GPUs (read from racks' summaries) are the free GPUs of partly used ready trays.
        let partly_free: u64 = (0..state.racks.len())
            .flat_map(|r| state.node_free(r).into_iter().filter(move |&f| f > 0 && f < state.racks[r].node_gpus))
            .map(u64::from)
            .sum();
        assert_eq!(gpuplace::report::metrics::stranded_gpus(state), partly_free, "at t={t}");
        // The trays as the initial occupancy and the pods of the jobs running now make them: each
        // pod's GPUs (whole ones taken once; a shared one within its thousandths).
        let (mut nodes, mut shares) = (initial.nodes.clone(), initial.shares.clone());
        let mut power: Vec<u32> = initial.sites.iter().map(|s| s.power_free_w).collect();
        for (j, fate) in fates.iter().enumerate() {
            if let Some(JobFate::Placed { start_s, end_s, allocation, .. }) = fate {
                assert!(*start_s >= workload.jobs[j].submit_s.unwrap(), "job {j} started before it arrived");
                assert!(*start_s <= t);
                if *end_s > t {
                    for pod in &allocation.pods {
                        let at = initial.racks[pod.rack as usize].first_node + pod.node;
                        let cell = &mut nodes[at as usize];
                        assert_eq!(cell.state, NodeState::Ready, "job {j}: a pod on a tray that is not ready");
                        if pod.gpu_milli == 0 {
                            assert_eq!(cell.used & pod.gpus, 0, "job {j}: a GPU taken twice");
                        } else {
                            let g = pod.gpus.trailing_zeros() as usize;
                            let milli = shares.entry(at).or_default();
                            let shared = u32::from(milli[g]);
                            assert!(shared != 0 || cell.used & pod.gpus == 0, "job {j}: a share of a GPU in use whole");
                            assert!(shared + pod.gpu_milli <= 1000, "job {j}: a GPU shared beyond its thousandths");
                            milli[g] = (shared + pod.gpu_milli) as u16;
                            cell.shared |= pod.gpus;
                        }
                        cell.used |= pod.gpus;
                    }
                    let anchor = &initial.racks[allocation.racks[0].rack as usize];
                    power[anchor.site as usize] = power[anchor.site as usize]
                        .checked_sub(if jobs[j].gpu_milli != 0 {
                            jobs[j].pods * (jobs[j].gpu_milli * anchor.gpu_watts).div_ceil(1000)
                        } else {
                            jobs[j].gpus * anchor.gpu_watts
                        })
                        .expect("site over power");
                }
            }
        }
        assert!(state.nodes == nodes && state.shares == shares, "at t={t}: trays not exactly those of running jobs");
        assert_eq!(
            state.sites.iter().map(|s| s.power_free_w).collect::<Vec<_>>(),
            power,
            "at t={t}: power not exactly that of running jobs"
        );
    })
    .unwrap();
    assert_eq!(intervals, report.intervals);
    // Every job placed has been released again by the end.
    assert_eq!(scheduler.running(), 0);
    assert_eq!(scheduler.ledger().state(), &initial);
    (report, scheduler.into_backend())
}

#[test]
fn replay_invariants_hold_at_every_interval() {
    on_every_backend("replay_invariants_hold_at_every_interval", |name, mut backend| {
        for seed in 0..40 {
            let (fleet, workload, policy) = problem(seed);
            let config = ReplayConfig {
                interval_s: [60, 300, 7][seed as usize % 3],
                max_wait_s: None,
                start: at(),
                preemption: false,
            };
            let (report, returned) = checked_replay(&fleet, &workload, &policy, config, backend);
            backend = returned;
            // Every job accounted for: placed or rejected, never both, never lost.
            assert_eq!(report.fates.len(), workload.jobs.len());
            let placed: usize = report.kinds.iter().map(|k| k.placed).sum();
            let rejected: usize = report.kinds.iter().map(|k| k.rejected).sum();
            assert_eq!(placed + rejected, workload.jobs.len(), "{name}");
            assert_eq!(report.latency_violations, 0);
            for (job, fate) in workload.jobs.iter().zip(&report.fates) {
                if let JobFate::Placed { start_s, end_s, .. } = fate {
                    assert_eq!(end_s - start_s, job.duration_s.unwrap());
                    assert_eq!(start_s % config.interval_s, 0, "starts on an interval boundary");
                }
            }
        }
    });
}

#[test]
fn replay_is_deterministic_and_the_same_on_every_backend() {
    let (fleet, workload, policy) = problem(99);
    let config = ReplayConfig { interval_s: 60, max_wait_s: Some(1800), start: at(), preemption: false };
    let (a, _) = checked_replay(&fleet, &workload, &policy, config, Backend::cpu());
    on_every_backend("replay_is_deterministic_and_the_same_on_every_backend", |name, backend| {
        let (b, _) = checked_replay(&fleet, &workload, &policy, config, backend);
        assert_eq!(a.fates, b.fates, "{name}");
        assert_eq!(a.timeline, b.timeline, "{name}");
        assert_eq!(a.kinds, b.kinds, "{name}");
    });
}

#[test]
fn max_wait_rejects_jobs_that_waited_too_long() {
    on_every_backend("max_wait_rejects_jobs_that_waited_too_long", |name, mut backend| {
        let mut saw_rejection = false;
        for seed in 200..230 {
            let (fleet, workload, policy) = problem(seed);
            let config = ReplayConfig { interval_s: 60, max_wait_s: Some(600), start: at(), preemption: false };
            let (report, returned) = checked_replay(&fleet, &workload, &policy, config, backend);
            backend = returned;
            for (job, fate) in workload.jobs.iter().zip(&report.fates) {
                match fate {
                    JobFate::Placed { arrived_s, start_s, .. } => {
                        assert!(*arrived_s >= job.submit_s.unwrap());
                        assert!(start_s - arrived_s <= 600 + 60);
                    }
                    JobFate::Rejected { arrived_s, at_s, rule, reason } => {
                        saw_rejection = true;
                        // The cause is worked out (not left unevaluated) and the words say the rule.
                        assert_ne!(reason.cause, Cause::NotEvaluated, "{name}: {reason}");
                        match rule {
                            Rejection::MaxWait => {
                                assert!(reason.text.starts_with("waited more than 600 s; "), "{name}: {reason}");
                                assert!(at_s - arrived_s > 600);
                            }
                            Rejection::NeverPlaceable => {
                                assert!(reason.text.starts_with("can never be placed: "), "{name}: {reason}")
                            }
                            other => panic!("{name}: unexpected rule {other:?}"),
                        }
                    }
                    other => panic!("{name}: unexpected fate {other:?}"),
                }
            }
        }
        assert!(saw_rejection, "{name}: no problem exercised max-wait");
    });
}

#[test]
fn extreme_times_end_quickly() {
    // Arrivals, intervals and waits at the top of their ranges: no overflow, no endless loop.
    let (fleet, mut workload, policy) = problem(5);
    let last = gpuplace::model::jobs::MAX_TRACE_S;
    workload.jobs[0].submit_s = Some(last);
    workload.jobs[0].gpus = 60_000; // never fits: waits until max-wait or forever
    for (interval_s, max_wait_s) in [(1, Some(last)), (last, None), (last, Some(last)), (7, Some(0))] {
        let config = ReplayConfig { interval_s, max_wait_s, start: gpuplace::Day::MAX, preemption: false };
        let (report, _) = checked_replay(&fleet, &workload, &policy, config, Backend::cpu());
        assert_eq!(report.fates.len(), workload.jobs.len());
        assert!(matches!(report.fates[0], JobFate::Rejected { .. }));
    }
    for bad in [
        ReplayConfig { interval_s: 0, max_wait_s: None, start: at(), preemption: false },
        ReplayConfig { interval_s: last + 1, max_wait_s: None, start: at(), preemption: false },
        ReplayConfig { interval_s: 60, max_wait_s: Some(last + 1), start: at(), preemption: false },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
}

#[test]
fn azure_importer_maps_windows_to_replicas() {
    let text = include_str!("fixtures/azure_conv_sample.csv");
    let options = AzureOptions { window_s: 60, scale: 500.0, ..AzureOptions::default() };
    let trace = AzureTrace { text: text.as_bytes(), source_name: "azure_conv_sample.csv", kind: JobKind::Inference };
    let (workload, reports) = azure(&[trace], &options, false).unwrap();
    let report = &reports[0];
    assert_eq!(report.rows, 40);
    assert!(report.malformed.is_empty());
    assert!(!workload.jobs.is_empty());
    // The mapping by hand for the first window: GPU-seconds → busy GPUs → GPUs → replicas.
    let mut lines = text.lines().skip(1).map(|l| l.split(',').collect::<Vec<_>>());
    let first = lines.next().unwrap();
    let start: f64 = first[0][11..].split(':').map(|p| p.parse::<f64>().unwrap()).fold(0.0, |acc, x| acc * 60.0 + x);
    let (mut prompt, mut generated) = (first[1].parse::<f64>().unwrap(), first[2].parse::<f64>().unwrap());
    for fields in lines {
        let t: f64 = fields[0][11..].split(':').map(|p| p.parse::<f64>().unwrap()).fold(0.0, |acc, x| acc * 60.0 + x);
        if t - start < 60.0 {
            prompt += fields[1].parse::<f64>().unwrap();
            generated += fields[2].parse::<f64>().unwrap();
        }
    }
    let busy = (prompt / 10_000.0 + generated / 500.0) * 500.0 / 60.0;
    let replicas = ((busy / 0.6).ceil() / 8.0).ceil() as usize;
    let first_window = workload.jobs.iter().filter(|j| j.submit_s == Some(0)).count();
    assert_eq!(first_window, replicas);
    assert!(workload.jobs.iter().all(|j| j.gpus == 8 && j.duration_s == Some(60) && j.kind == JobKind::Inference));
    // The jobs place on the built-in fleet.
    workload.compile(&gpuplace::builtin::default_fleet(), &Policy::default(), at()).unwrap();
}

#[test]
fn importers_count_malformed_rows_and_strict_rejects_them() {
    let azure_text = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\nnot-a-time,1,1\n2023-11-16 18:15:50.9951690,x,109\n2023-11-16 18:15:51.2224670,879\n";
    let trace = AzureTrace { text: azure_text.as_bytes(), source_name: "t.csv", kind: JobKind::Agentic };
    let (workload, reports) = azure(&[trace], &AzureOptions::default(), false).unwrap();
    let report = &reports[0];
    assert_eq!(report.rows, 4);
    assert_eq!(report.malformed.iter().map(|(line, _)| *line).collect::<Vec<_>>(), vec![3, 4, 5]);
    assert_eq!(workload.jobs.len(), 1);
    let err = azure(&[trace], &AzureOptions::default(), true).unwrap_err();
    assert_eq!((err.record.as_str(), err.field.as_str()), ("line 3", "TIMESTAMP"));

    let pods = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n\
                p0,1000,1024,1,1000,,LS,Running,0,100,0\n\
                p1,1000,1024,0,0,,BE,Running,5,50,5\n\
                p2,1000,1024,2,1000,,BE,Running,10,5,10\n\
                p3,1000,1024,1,300,,Burstable,Running,20\n\
                p4,1000,1024,8,1000,,BE,Running,30,3600,30\n\
                p5,1000,1024,1,250,,LS,Running,40,100,40\n\
                p6,1000,1024,1,1001,,LS,Running,40,100,40\n\
                p7,1000,1024,1,0,,LS,Running,40,100,40\n";
    let (workload, report) = alibaba_pods(pods, "pods.csv", "openb", false).unwrap();
    assert_eq!(workload.jobs.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), vec!["p0", "p4", "p5"]);
    assert_eq!(report.skipped.get("pods with 0 GPUs"), Some(&1));
    // A pod of one GPU asking part of it shares the GPU; a GPU pod's share out of 1..=1000 is malformed.
    assert_eq!((workload.jobs[2].gpu_milli, workload.jobs[2].pods), (Some(250), Some(1)));
    assert_eq!(workload.jobs[0].gpu_milli, None);
    assert_eq!(report.malformed.iter().map(|(line, _)| *line).collect::<Vec<_>>(), vec![4, 5, 8, 9]);
    assert!(report.malformed[2..].iter().all(|(_, e)| e.contains("gpu_milli")), "{:?}", report.malformed);
    assert_eq!(workload.jobs[1].kind, JobKind::Training);
    assert_eq!((workload.jobs[1].submit_s, workload.jobs[1].duration_s), (Some(30), Some(3570)));
    assert!(alibaba_pods(pods, "pods.csv", "openb", true).is_err());
}

#[test]
fn alibaba_trace_imports_and_replays_when_present() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/traces/alibaba-gpu-v2023");
    let (Ok(pods), Ok(nodes)) = (
        std::fs::read_to_string(dir.join("openb_pod_list_default.csv")),
        std::fs::read_to_string(dir.join("openb_node_list_gpu_node.csv")),
    ) else {
        common::skip_notice("alibaba_trace_imports_and_replays_when_present", &format!("{} is absent", dir.display()));
        return;
    };
    let (workload, report) = alibaba_pods(&pods, "pods", gpuplace::import::ALIBABA_REGION, true).unwrap();
    assert_eq!(report.rows, 8152);
    assert_eq!(report.skipped.get("pods with 0 GPUs"), Some(&1088));
    assert_eq!(workload.jobs.len(), 8152 - 1088);
    let (fleet_file, _) = alibaba_nodes(&nodes, "nodes", true).unwrap();
    let fleet = Fleet::from_file(fleet_file, "nodes").unwrap();
    assert_eq!(fleet.racks.len(), 1213);
    let config = ReplayConfig {
        interval_s: 3600,
        max_wait_s: None,
        start: gpuplace::Day::parse("2023-01-01").unwrap(),
        preemption: false,
    };
    let (report, _) = checked_replay(&fleet, &workload, &Policy::default(), config, Backend::cpu());
    assert_eq!(report.kinds.iter().map(|k| k.placed + k.rejected).sum::<usize>(), workload.jobs.len());
}

#[test]
fn replay_waits_for_capacity_to_come_online_and_for_not_before() {
    // One cluster, online two days after the trace starts. A job that arrives at once waits for it
    // (and is not rejected as "never placeable" while nothing else happens); a job whose
    // not_before is the next day arrives then and waits too; one whose not_before is day 3 starts
    // on day 3, not before.
    let start = at();
    let mut file = gpuplace::builtin::default_fleet_file();
    file.sites.truncate(1);
    file.sites[0].online = start;
    file.sites[0].clusters.truncate(1);
    file.sites[0].clusters[0].set_racks(2);
    file.sites[0].clusters[0].online = Some(start.saturating_add(2));
    let fleet = Fleet::from_file(file, "<test>").unwrap();
    let job = |id: &str, not_before: Option<u64>| {
        let job = gpuplace::Job::new(id, JobKind::Training, 8, fleet.regions[0].clone())
            .with_priority(1)
            .with_submit_s(0)
            .with_duration_s(600);
        match not_before {
            Some(days) => job.with_not_before(start.saturating_add(days)),
            None => job,
        }
    };
    let workload = Workload::from_jobs(vec![job("now", None), job("day1", Some(1)), job("day3", Some(3))], "<test>");
    on_every_backend("replay_waits_for_capacity_to_come_online", |name, backend| {
        let config = ReplayConfig { interval_s: 3600, max_wait_s: None, start, preemption: false };
        let (report, _) = checked_replay(&fleet, &workload, &Policy::default(), config, backend);
        let started: Vec<(u64, u64)> = report
            .fates
            .iter()
            .map(|f| match f {
                JobFate::Placed { arrived_s, start_s, .. } => (*arrived_s, *start_s),
                other => panic!("{name}: {other:?}"),
            })
            .collect();
        assert_eq!(started, vec![(0, 2 * 86_400), (86_400, 2 * 86_400), (3 * 86_400, 3 * 86_400)], "{name}");
    });
}

#[test]
fn retrying_waiting_jobs_only_when_capacity_grew_changes_no_decision() {
    // The shortcut against its definition: the same fates, timeline and metrics as trying every
    // waiting job at every interval, on contended problems with and without max-wait. Most
    // policies consolidate (waiting jobs then take part in each batch's pass); that must change
    // the outcome somewhere, or the comparison says nothing about it.
    let mut consolidation_mattered = 0;
    for seed in 400..430 {
        let (fleet, workload, policy) = problem(seed);
        for (max_wait_s, preemption) in [(None, false), (Some(900), false), (None, true), (Some(900), true)] {
            let config = ReplayConfig { interval_s: [60, 7][seed as usize % 2], max_wait_s, start: at(), preemption };
            if policy.consolidate {
                let mut plain = policy;
                plain.consolidate = false;
                let mut scheduler = Scheduler::with_backend(fleet.clone(), plain, Backend::cpu()).unwrap();
                let without = replay(&mut scheduler, &workload, config, &mut |_, _| {}, &mut |_, _, _| {}).unwrap();
                let mut scheduler = Scheduler::with_backend(fleet.clone(), policy, Backend::cpu()).unwrap();
                let with = replay(&mut scheduler, &workload, config, &mut |_, _| {}, &mut |_, _, _| {}).unwrap();
                consolidation_mattered += usize::from(with.fates != without.fates);
            }
            let run = |retry_all: bool| {
                let mut scheduler = Scheduler::with_backend(fleet.clone(), policy, Backend::cpu()).unwrap();
                if retry_all {
                    gpuplace::replay::replay_retrying_every_job(&mut scheduler, &workload, config).unwrap()
                } else {
                    replay(&mut scheduler, &workload, config, &mut |_, _| {}, &mut |_, _, _| {}).unwrap()
                }
            };
            let (shortcut, definition) = (run(false), run(true));
            assert_eq!(shortcut.fates, definition.fates, "seed {seed}, max-wait {max_wait_s:?}");
            assert_eq!(shortcut.timeline, definition.timeline, "seed {seed}");
            assert_eq!(shortcut.kinds, definition.kinds, "seed {seed}");
        }
    }
    assert!(consolidation_mattered > 0, "consolidation changed no replay");
}

/// With preemption: the invariants of every interval hold (evicted jobs give back exactly what
/// they held), every job ends placed or rejected with its whole duration run at its last start,
/// and after every interval no waiting job could run by evicting every running job of lower
/// priority. Preemption must happen, and change fates, or the test says nothing.
#[test]
fn replay_with_preemption_keeps_the_invariants_and_the_guarantee() {
    let (mut preemptions, mut changed, mut checked) = (0, 0, 0);
    for seed in 500..530 {
        let (fleet, workload, policy) = problem(seed);
        let config =
            ReplayConfig { interval_s: [60, 300][seed as usize % 2], max_wait_s: None, start: at(), preemption: true };
        let (report, _) = checked_replay(&fleet, &workload, &policy, config, Backend::cpu());
        preemptions += report.preemptions;
        assert_eq!(report.preemptions == 0, report.preempted_gpu_hours == 0.0, "seed {seed}");
        for (job, fate) in workload.jobs.iter().zip(&report.fates) {
            if let JobFate::Placed { start_s, end_s, .. } = fate {
                assert_eq!(end_s - start_s, job.duration_s.unwrap(), "seed {seed}: {} ran its whole duration", job.id);
            }
        }
        let mut scheduler = Scheduler::with_backend(fleet.clone(), policy, Backend::cpu()).unwrap();
        let without = replay(
            &mut scheduler,
            &workload,
            ReplayConfig { preemption: false, ..config },
            &mut |_, _| {},
            &mut |_, _, _| {},
        )
        .unwrap();
        changed += usize::from(without.fates != report.fates);
        // The guarantee, after every interval.
        let jobs = workload.compile(&fleet, &policy, config.start).unwrap();
        let mut scheduler = Scheduler::with_backend(fleet.clone(), policy, Backend::cpu()).unwrap();
        replay(&mut scheduler, &workload, config, &mut |_, _| {}, &mut |t, scheduler, fates| {
            let today = config.start.saturating_add(t / 86_400);
            let priority_of = |id: &str| workload.jobs.iter().find(|j| j.id == id).unwrap().priority;
            for (j, fate) in fates.iter().enumerate() {
                // It arrives at its submit time, or at the start of its `not_before` day if later.
                let arrives = workload.jobs[j]
                    .submit_s
                    .unwrap()
                    .max(u64::from(jobs[j].ready_day.saturating_sub(config.start.0)) * 86_400);
                if fate.is_some() || arrives > t {
                    continue;
                }
                let priority = workload.jobs[j].priority;
                let mut ledger = scheduler.ledger().clone();
                for (id, allocation) in scheduler.placed() {
                    if priority_of(id) < priority {
                        ledger.release(allocation);
                    }
                }
                let job = gpuplace::kernel::score::JobGpu { ready_day: today.0, ..jobs[j] };
                let relaxed = gpuplace::kernel::score::JobGpu { block_rule: gpuplace::kernel::score::BLOCK_ANY, ..job };
                let fits = ledger.best_rack(&job).is_some()
                    || (job.block_rule == gpuplace::kernel::score::BLOCK_PREFERRED
                        && ledger.best_rack(&relaxed).is_some());
                assert!(!fits, "seed {seed} t={t}: {} waits behind jobs of lower priority", workload.jobs[j].id);
                checked += 1;
            }
        })
        .unwrap();
    }
    println!("preemptions {preemptions}, replays changed {changed}, waiting jobs checked {checked}");
    assert!(preemptions >= 20 && changed >= 5 && checked >= 100, "too little preemption to tell");
}

/// Three tenants over a random problem's fleet (quotas sharing 40–90% of its GPUs, random limits
/// and weights), the jobs spread over them.
fn with_tenants(seed: u64, fleet: &Fleet, workload: &mut Workload) -> gpuplace::Tenants {
    let mut rng = SplitMix64::new(seed ^ 0x7E4A);
    let total: u64 = fleet.initial_state().racks.iter().map(|r| u64::from(r.gpus)).sum();
    let share = total * rng.between(40, 90) / 100;
    let tenants = (0..3)
        .map(|t| {
            let tenant =
                gpuplace::Tenant::new(format!("t{t}"), (share / 3) as u32).with_weight(rng.between(1, 3) as u32);
            if rng.percent(50) { tenant.with_borrow_limit(rng.between(0, share / 3) as u32) } else { tenant }
        })
        .collect();
    for job in &mut workload.jobs {
        job.tenant = Some(format!("t{}", rng.below(3)));
    }
    gpuplace::Tenants::new(tenants, "<tenants>").unwrap()
}

/// With tenants: at every interval no tenant holds more than its limit and what each holds is
/// what its running jobs hold; the waiting-job shortcut still changes no decision; reclaim
/// happens and quotas change fates (or the test says nothing).
#[test]
fn replay_with_tenants_keeps_quotas_and_the_shortcut_stays_exact() {
    let (mut reclaims, mut changed) = (0, 0);
    for seed in 600..624 {
        let (fleet, mut workload, policy) = problem(seed);
        let tenants = with_tenants(seed, &fleet, &mut workload);
        for (max_wait_s, preemption) in [(None, false), (Some(900), true)] {
            let config = ReplayConfig { interval_s: [60, 7][seed as usize % 2], max_wait_s, start: at(), preemption };
            let scheduler = |tenants: Option<gpuplace::Tenants>| {
                let mut scheduler = Scheduler::with_backend(fleet.clone(), policy, Backend::cpu()).unwrap();
                scheduler.set_tenants(tenants).unwrap();
                scheduler
            };
            let mut checked = scheduler(Some(tenants.clone()));
            let report = replay(&mut checked, &workload, config, &mut |_, _| {}, &mut |t, scheduler, _| {
                scheduler.ledger().check_consistency().unwrap_or_else(|e| panic!("seed {seed} t={t}: {e}"));
                let mut held = vec![0u64; 3];
                for (id, _) in scheduler.placed() {
                    let job = workload.jobs.iter().find(|j| j.id == id).unwrap();
                    held[tenants.tenant_of(job).unwrap() as usize] += job.gpu_milli_held();
                }
                assert_eq!(held, scheduler.tenant_held_milli(), "seed {seed} t={t}");
                for (u, tenant) in tenants.tenants().iter().enumerate() {
                    assert!(tenant.limit_milli().is_none_or(|limit| held[u] <= limit), "seed {seed} t={t}: t{u}");
                }
            })
            .unwrap();
            reclaims += report.preemptions;
            let definition =
                gpuplace::replay::replay_retrying_every_job(&mut scheduler(Some(tenants.clone())), &workload, config)
                    .unwrap();
            assert_eq!(report.fates, definition.fates, "seed {seed}, max-wait {max_wait_s:?}");
            assert_eq!(report.timeline, definition.timeline, "seed {seed}");
            let without = replay(&mut scheduler(None), &workload, config, &mut |_, _| {}, &mut |_, _, _| {}).unwrap();
            changed += usize::from(without.fates != report.fates);
        }
    }
    println!("evictions {reclaims}, replays changed by quotas {changed}");
    assert!(reclaims >= 10 && changed >= 10, "quotas did too little to tell");
}
