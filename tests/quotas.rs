//! Tenants and quotas (`docs/QUOTAS.md`): a tenant within its quota is never blocked by another
//! tenant's borrowing (checked against a brute-force search over every set of borrowed jobs, with
//! a negative control: before the reclaim pass, some are), no tenant holds more than its quota and
//! borrowing limit, what each tenant holds is what its placed jobs hold, reclaim takes only from
//! tenants above their quotas and priority preemption only within a tenant, borrowed capacity is
//! shared by weight, and bad tenants files and jobs are refused naming the record and the field.

mod common;

use std::collections::HashMap;

use common::{Shape, at, random_fleet, random_policy, random_workload};
use gpuplace::engine::place::{Outcome, Reasons};
use gpuplace::engine::{Allocation, Ledger};
use gpuplace::kernel::score::{BLOCK_ANY, BLOCK_PREFERRED, JobGpu};
use gpuplace::sim::generate::SplitMix64;
use gpuplace::{BackendChoice, Fleet, Job, JobKind, Scheduler, Tenant, Tenants, Workload};

/// Whether `job` fits on a copy of `ledger` with `set` released, by the reference rack scan.
fn fits_without(ledger: &Ledger, job: &JobGpu, set: &[&Allocation]) -> bool {
    let mut ledger = ledger.clone();
    for allocation in set {
        ledger.release(allocation);
    }
    ledger.best_rack(job).is_some()
        || (job.block_rule == BLOCK_PREFERRED && ledger.best_rack(&JobGpu { block_rule: BLOCK_ANY, ..*job }).is_some())
}

/// A small random fleet, three tenants whose quotas share 40–90% of its GPUs (random borrowing
/// limits and weights), a first batch mostly of tenant `t0` placed (so that it borrows), and a
/// second batch mostly of the others.
fn contended(seed: u64) -> (Fleet, Scheduler, Tenants, Workload, Workload) {
    let mut rng = SplitMix64::new(seed ^ 0x7E4A_4775);
    let shape = Shape { max_sites: 2, max_clusters: 2, max_racks: 4, occupancy_percent: 5, ..Shape::default() };
    let fleet = random_fleet(&mut rng, shape);
    let policy = random_policy(&mut rng, false);
    let mut scheduler = Scheduler::new(fleet.clone(), policy, BackendChoice::Cpu).unwrap();
    let total: u64 = scheduler.ledger().state().racks.iter().map(|r| u64::from(r.gpus)).sum();
    let share = total * rng.between(40, 90) / 100;
    let tenants: Vec<Tenant> = (0..3)
        .map(|t| {
            let mut tenant = Tenant::new(format!("t{t}"), (share / 3) as u32).with_weight(rng.between(1, 3) as u32);
            if rng.percent(50) {
                tenant = tenant.with_borrow_limit(rng.between(0, share / 2) as u32);
            }
            tenant
        })
        .collect();
    let tenants = Tenants::new(tenants, "<tenants>").unwrap();
    scheduler.set_tenants(Some(tenants.clone())).unwrap();
    let mut workload = random_workload(&mut rng, &fleet, 60);
    for (n, job) in workload.jobs.iter_mut().enumerate() {
        let t = if n < 35 && rng.percent(80) { 0 } else { rng.below(3) };
        job.tenant = Some(format!("t{t}"));
    }
    let first = Workload::from_jobs(workload.jobs[..35].to_vec(), "<first>");
    let second = Workload::from_jobs(workload.jobs[35..].to_vec(), "<second>");
    scheduler.place(&first, Some(at())).unwrap();
    (fleet, scheduler, tenants, first, second)
}

/// What each tenant holds, recomputed from the placed jobs.
fn held_by_tenant(scheduler: &Scheduler, jobs: &HashMap<String, Job>, tenants: &Tenants) -> Vec<u64> {
    let mut held = vec![0u64; tenants.tenants().len()];
    for (id, _) in scheduler.placed() {
        held[tenants.tenant_of(&jobs[id]).unwrap() as usize] += jobs[id].gpu_milli_held();
    }
    held
}

/// Whether some set of other tenants' jobs, each taken while its tenant holds more than its quota
/// (the largest last), would let job `j` of `second` fit: the oracle, over every subset.
fn blocked_by_borrowing(
    scheduler: &Scheduler,
    compiled: &[JobGpu],
    second: &Workload,
    j: usize,
    jobs: &HashMap<String, Job>,
    tenants: &Tenants,
) -> Option<bool> {
    let held = held_by_tenant(scheduler, jobs, tenants);
    let t = tenants.tenant_of(&second.jobs[j]).unwrap() as usize;
    let quota = |u: usize| u64::from(tenants.tenants()[u].quota_gpus) * 1000;
    if held[t] + second.jobs[j].gpu_milli_held() > quota(t) {
        return None; // not within quota: reclaim is not its to use
    }
    let candidates: Vec<(usize, u64, &Allocation)> = scheduler
        .placed()
        .map(|(id, a)| (tenants.tenant_of(&jobs[id]).unwrap() as usize, jobs[id].gpu_milli_held(), a))
        .filter(|&(u, _, _)| u != t && held[u] > quota(u))
        .collect();
    if candidates.len() > 12 {
        return None;
    }
    for mask in 0u32..(1 << candidates.len()) {
        let set: Vec<&(usize, u64, &Allocation)> =
            (0..candidates.len()).filter(|i| mask & (1 << i) != 0).map(|i| &candidates[i]).collect();
        let admissible = (0..tenants.tenants().len()).all(|u| {
            let mine: Vec<u64> = set.iter().filter(|c| c.0 == u).map(|c| c.1).collect();
            mine.is_empty() || held[u] - mine.iter().sum::<u64>() + mine.iter().max().unwrap() > quota(u)
        });
        if admissible {
            let allocations: Vec<&Allocation> = set.iter().map(|c| c.2).collect();
            if fits_without(scheduler.ledger(), &compiled[j], &allocations) {
                return Some(true);
            }
        }
    }
    Some(false)
}

#[test]
fn a_tenant_within_quota_is_never_blocked_by_borrowing() {
    let (mut blocked_before, mut checked, mut reclaims) = (0, 0, 0);
    for seed in 0..120u64 {
        let (fleet, mut scheduler, tenants, first, second) = contended(seed);
        let mut jobs: HashMap<String, Job> = first.jobs.iter().map(|j| (j.id.clone(), j.clone())).collect();
        jobs.extend(second.jobs.iter().map(|j| (j.id.clone(), j.clone())));
        let compiled = scheduler.compile(&second, at()).unwrap();
        let records = second.compile(&fleet, scheduler.policy(), at()).unwrap();
        let all: Vec<usize> = (0..second.jobs.len()).collect();
        let (decisions, _, _) = scheduler.place_compiled(&compiled, &all, Reasons::Worded, &mut |_, _| {}).unwrap();
        let unplaced: Vec<usize> =
            decisions.iter().filter(|d| matches!(d.outcome, Outcome::Unplaced { .. })).map(|d| d.job).collect();
        // The negative control: placing alone (no reclaim) leaves jobs within quota blocked.
        blocked_before += unplaced
            .iter()
            .filter(|&&j| blocked_by_borrowing(&scheduler, &records, &second, j, &jobs, &tenants) == Some(true))
            .count();
        let held_before = held_by_tenant(&scheduler, &jobs, &tenants);
        let pass = scheduler.reclaim(&compiled, &unplaced, Reasons::Worded).unwrap();
        assert!(!pass.unsettled, "seed {seed}: the pass did not settle");
        scheduler.ledger().check_consistency().unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        // Reclaim takes only from tenants above their quotas, each victim while its tenant is.
        let mut taken: HashMap<(usize, usize), Vec<u64>> = HashMap::new();
        for eviction in &pass.evictions {
            assert!(eviction.reclaim, "seed {seed}: `{}` evicted by priority in a reclaim pass", eviction.id);
            let victim = &jobs[&eviction.id];
            let (u, t) = (
                tenants.tenant_of(victim).unwrap() as usize,
                tenants.tenant_of(&second.jobs[eviction.by]).unwrap() as usize,
            );
            assert_ne!(u, t, "seed {seed}: a tenant reclaimed from itself");
            taken.entry((eviction.by, u)).or_default().push(victim.gpu_milli_held());
            reclaims += 1;
        }
        for ((_, u), sizes) in &taken {
            let quota = u64::from(tenants.tenants()[*u].quota_gpus) * 1000;
            // Held before the whole pass is an upper bound of held before each reclaim.
            assert!(
                held_before[*u] - sizes.iter().sum::<u64>() + sizes.iter().max().unwrap() > quota,
                "seed {seed}: tenant {u} taken below its quota by more than one job"
            );
        }
        // The bookkeeping, and the limits.
        let held = held_by_tenant(&scheduler, &jobs, &tenants);
        assert_eq!(held, scheduler.tenant_held_milli(), "seed {seed}: what tenants hold");
        for (u, tenant) in tenants.tenants().iter().enumerate() {
            if let Some(limit) = tenant.limit_milli() {
                assert!(held[u] <= limit, "seed {seed}: tenant {u} holds {} over its limit {limit}", held[u]);
            }
        }
        // The guarantee.
        for decision in &pass.decisions {
            if let Outcome::Unplaced { reason } = &decision.outcome {
                let verdict = blocked_by_borrowing(&scheduler, &records, &second, decision.job, &jobs, &tenants);
                checked += usize::from(verdict.is_some());
                assert_ne!(
                    verdict,
                    Some(true),
                    "seed {seed}: `{}` within quota waits ({reason}) while borrowed capacity would let it run",
                    second.jobs[decision.job].id
                );
            }
        }
    }
    println!("blocked before the pass {blocked_before}, checked after {checked}, reclaims {reclaims}");
    assert!(blocked_before >= 10 && reclaims >= 10 && checked >= 100, "too few telling cases");
}

/// With tenants, priority preemption evicts only within the evicting job's tenant, and borrowed
/// capacity goes first.
#[test]
fn priority_preemption_stays_within_a_tenant() {
    let (mut by_priority, mut by_reclaim, mut checked) = (0, 0, 0);
    for seed in 0..120u64 {
        let (_, mut scheduler, tenants, first, second) = contended(seed);
        let second =
            Workload::from_jobs(second.jobs.iter().map(|j| j.clone().with_priority(j.priority + 3)).collect(), "<2>");
        let mut jobs: HashMap<String, Job> = first.jobs.iter().map(|j| (j.id.clone(), j.clone())).collect();
        jobs.extend(second.jobs.iter().map(|j| (j.id.clone(), j.clone())));
        let compiled = scheduler.compile(&second, at()).unwrap();
        let all: Vec<usize> = (0..second.jobs.len()).collect();
        let pass = scheduler.preempt(&compiled, &all, Reasons::Skipped).unwrap();
        scheduler.ledger().check_consistency().unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        for eviction in &pass.evictions {
            let (victim, by) = (&jobs[&eviction.id], &second.jobs[eviction.by]);
            let (u, t) = (tenants.tenant_of(victim).unwrap(), tenants.tenant_of(by).unwrap());
            if eviction.reclaim {
                assert_ne!(u, t, "seed {seed}: reclaim within a tenant");
                by_reclaim += 1;
            } else {
                assert_eq!(u, t, "seed {seed}: `{}` of t{u} evicted by priority for t{t}", eviction.id);
                assert!(victim.priority < by.priority, "seed {seed}: priority preemption of an equal or higher job");
                by_priority += 1;
            }
        }
        let held = held_by_tenant(&scheduler, &jobs, &tenants);
        assert_eq!(held, scheduler.tenant_held_milli(), "seed {seed}: what tenants hold");
        // The quota guarantee holds after a preemption pass too.
        assert!(!pass.unsettled, "seed {seed}: the pass did not settle");
        let records = second.compile(scheduler.fleet(), scheduler.policy(), at()).unwrap();
        for decision in &pass.decisions {
            if matches!(decision.outcome, Outcome::Unplaced { .. }) {
                let verdict = blocked_by_borrowing(&scheduler, &records, &second, decision.job, &jobs, &tenants);
                checked += usize::from(verdict.is_some());
                assert_ne!(verdict, Some(true), "seed {seed}: `{}` within quota waits", second.jobs[decision.job].id);
            }
        }
    }
    println!("evictions by priority {by_priority}, by reclaim {by_reclaim}, waiting within quota checked {checked}");
    assert!(by_priority >= 5 && by_reclaim >= 5 && checked >= 50, "too few telling cases");
}

/// The worked example of `docs/QUOTAS.md`, from its files: what each tenant gets, then what a
/// tenant within quota takes back when it needs it.
#[test]
fn the_worked_example_holds() {
    let fleet = Fleet::from_path("docs/examples/quota-fleet.json").unwrap();
    let tenants = Tenants::from_path("docs/examples/tenants.json").unwrap();
    let workload = Workload::from_path("docs/examples/quota-jobs.json").unwrap();
    let mut scheduler = Scheduler::new(fleet, gpuplace::Policy::default(), BackendChoice::Cpu).unwrap();
    scheduler.set_tenants(Some(tenants)).unwrap();
    let placement = scheduler.place(&workload, None).unwrap();
    let ids = |outcome: fn(&Outcome) -> bool| -> Vec<&str> {
        placement.decisions.iter().filter(|d| outcome(&d.outcome)).map(|d| workload.jobs[d.job].id.as_str()).collect()
    };
    let mut placed = ids(|o| matches!(o, Outcome::Placed { .. }));
    placed.sort_unstable();
    // Within quota: prod-1…3, research-1…2, batch-1. Borrowed, by fair share (prod weight 3,
    // batch 1): prod-4, batch-2, prod-5, then prod is at its limit and batch takes the last rack.
    assert_eq!(
        placed,
        ["batch-1", "batch-2", "batch-3", "prod-1", "prod-2", "prod-3", "prod-4", "prod-5", "research-1", "research-2"]
    );
    let held = |s: &Scheduler| -> Vec<u64> { s.tenant_held_milli().iter().map(|m| m / 1000).collect() };
    assert_eq!(held(&scheduler), [40, 16, 24]);
    let at_limit = placement
        .decisions
        .iter()
        .filter(|d| matches!(&d.outcome, Outcome::Unplaced { reason } if reason.cause.code() == "quota"))
        .count();
    assert_eq!(at_limit, 3, "prod-6…8 wait at prod's borrowing limit");
    // Research needs its other 16 GPUs: batch's borrowed jobs (the lowest priority) go.
    let later = Workload::from_path("docs/examples/quota-jobs-later.json").unwrap();
    let compiled = scheduler.compile(&later, placement.at).unwrap();
    let pass = scheduler.reclaim(&compiled, &[0, 1], Reasons::Worded).unwrap();
    let evicted: Vec<&str> = pass.evictions.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(evicted, ["batch-1", "batch-2"], "the rule's tie-breaks: lowest priority, fewest GPUs, lowest id");
    assert_eq!(held(&scheduler), [40, 32, 8]);
}

#[test]
fn bad_tenants_and_jobs_are_refused_naming_the_field() {
    let cases = [
        (r#"{"tenants": []}"#, "tenants"),
        (r#"{"tenants": [{"name": "a", "quota_gpus": 1, "colour": "red"}]}"#, "colour"),
        (r#"{"tenants": [{"name": "a", "quota_gpus": 1}, {"name": "a", "quota_gpus": 2}]}"#, "name"),
        (r#"{"tenants": [{"name": "a", "quota_gpus": 16777217}]}"#, "quota_gpus"),
        (r#"{"tenants": [{"name": "a", "quota_gpus": 1, "borrow_limit_gpus": 99999999}]}"#, "borrow_limit_gpus"),
        (r#"{"tenants": [{"name": "a", "quota_gpus": 1, "weight": 0}]}"#, "weight"),
        (r#"{"tenants": [{"name": "a", "quota_gpus": -1}]}"#, "quota_gpus"),
        (r#"{"tenants": [{"name": " a", "quota_gpus": 1}]}"#, "name"),
        (
            r#"{"tenants": [{"name": "a", "quota_gpus": 1, "kinds": ["training"]}, {"name": "b", "quota_gpus": 1, "kinds": ["training"]}]}"#,
            "kinds",
        ),
        (r#"{"tenants": [{"name": "a", "quota_gpus": 1, "kinds": ["cooking"]}]}"#, "kinds"),
        (r#"{"format_version": 99, "tenants": [{"name": "a", "quota_gpus": 1}]}"#, "format_version"),
        (r#"[]"#, "(top level)"),
    ];
    for (text, field) in cases {
        let err = Tenants::from_json(text, "t.json").expect_err(text);
        let message = err.to_string();
        assert!(message.starts_with("t.json"), "{text}: {message}");
        assert!(message.contains(field), "{text}: `{message}` does not name {field}");
        assert!(!message.contains('\n'), "{text}: more than one line");
    }
    // Jobs: an unknown tenant, and none where no kind or `default` takes it.
    let tenants =
        Tenants::from_json(r#"{"tenants": [{"name": "a", "quota_gpus": 8, "kinds": ["training"]}]}"#, "t").unwrap();
    let mut scheduler =
        Scheduler::new(gpuplace::builtin::default_fleet(), gpuplace::Policy::default(), BackendChoice::Cpu).unwrap();
    scheduler.set_tenants(Some(tenants)).unwrap();
    let region = scheduler.fleet().regions[0].clone();
    for (job, says) in [
        (Job::new("j", JobKind::Inference, 1, &region).with_tenant("zz"), "unknown tenant `zz`"),
        (Job::new("j", JobKind::Inference, 1, &region), "names no tenant"),
    ] {
        let workload = Workload::from_jobs(vec![job], "jobs.json");
        let message = scheduler.compile(&workload, at()).unwrap_err().to_string();
        assert!(message.contains("jobs.json") && message.contains("tenant") && message.contains(says), "{message}");
    }
    // A training job without a tenant is the training tenant's.
    let workload = Workload::from_jobs(vec![Job::new("j", JobKind::Training, 4, &region)], "jobs.json");
    scheduler.place(&workload, Some(at())).unwrap();
    assert_eq!(scheduler.tenant_held_milli(), &[4000]);
    // Tenants are set before anything is placed.
    assert!(scheduler.set_tenants(None).is_err());
}

/// The tenant of a job survives both job formats.
#[test]
fn the_tenant_round_trips_through_json_and_csv() {
    let jobs = vec![
        Job::new("a", JobKind::Training, 8, "us-east").with_tenant("research"),
        Job::new("b", JobKind::Inference, 1, "us-east"),
    ];
    let workload = Workload::from_jobs(jobs, "<jobs>");
    let csv = workload.to_csv().unwrap();
    let back = Workload::from_csv(&csv, "<csv>").unwrap();
    assert_eq!(back.jobs, workload.jobs);
    let mut json = Vec::new();
    workload.write_json(&mut json).unwrap();
    let back = Workload::from_json(std::str::from_utf8(&json).unwrap(), "<json>").unwrap();
    assert_eq!(back.jobs, workload.jobs);
    // A tenant's name is checked as every name is.
    let bad = Workload::from_jobs(vec![Job::new("a", JobKind::Training, 8, "us-east").with_tenant("")], "<jobs>");
    assert!(bad.validate().unwrap_err().to_string().contains("tenant"));
}

/// Two one-server clusters at one site: `h200` (8 GPUs of 141 GB) and `a100` (8 GPUs of 80 GB).
fn two_servers() -> Fleet {
    use gpuplace::model::fleet::{ClusterFile, FleetFile, RackTypeFile, SiteFile};
    FleetFile::new(["us"])
        .with_as_of(at())
        .with_rack_type("h200", RackTypeFile::new("H200", 8, 141, 10.0))
        .with_rack_type("a100", RackTypeFile::new("A100", 8, 80, 10.0))
        .with_site(
            SiteFile::new("lab", "own", "US", "US", 1.0, gpuplace::Day(0))
                .with_latency_ms("us", 5)
                .with_cluster(ClusterFile::new("h", "h200", 1))
                .with_cluster(ClusterFile::new("a", "a100", 1)),
        )
        .build("<two servers>")
        .unwrap()
}

fn placed_ids(scheduler: &Scheduler) -> Vec<String> {
    let mut ids: Vec<String> = scheduler.placed().map(|(id, _)| id.to_string()).collect();
    ids.sort_unstable();
    ids
}

/// A borrower placed late in a pass makes its tenant's jobs reclaimable for a job within quota
/// decided before it: the pass decides that job again (review finding: it used to wait).
#[test]
fn a_borrower_placed_later_in_the_pass_can_be_reclaimed_by_a_job_decided_before_it() {
    let tenants = Tenants::new(
        vec![Tenant::new("a", 8), Tenant::new("b", 4), Tenant::new("c", 4), Tenant::new("z", 0)],
        "<tenants>",
    )
    .unwrap();
    let mut scheduler = Scheduler::new(two_servers(), gpuplace::Policy::default(), BackendChoice::Cpu).unwrap();
    scheduler.set_tenants(Some(tenants)).unwrap();
    let job = |id: &str, gpus: u32, hbm: u32, priority: i32, tenant: &str| {
        Job::new(id, JobKind::Training, gpus, "us").with_hbm_gb_per_gpu(hbm).with_priority(priority).with_tenant(tenant)
    };
    // Y (b, within its quota) and z1 (z, borrowing) fill the H200 server; z2 (z) the A100 one.
    let first = Workload::from_jobs(
        vec![job("y", 4, 100, 1, "b"), job("z1", 4, 100, 5, "z"), job("z2", 8, 0, 0, "z")],
        "<first>",
    );
    scheduler.place(&first, Some(at())).unwrap();
    assert_eq!(placed_ids(&scheduler), ["y", "z1", "z2"]);
    // J (a, within quota) needs the H200 server; K (c, within quota) and b2 (b, borrowing) any.
    let second = Workload::from_jobs(
        vec![job("j", 8, 100, 10, "a"), job("k", 4, 0, 1, "c"), job("b2", 4, 0, 1, "b")],
        "<second>",
    );
    let compiled = scheduler.compile(&second, at()).unwrap();
    let (decisions, _, _) = scheduler.place_compiled(&compiled, &[0, 1, 2], Reasons::Worded, &mut |_, _| {}).unwrap();
    assert!(decisions.iter().all(|d| matches!(d.outcome, Outcome::Unplaced { .. })), "nothing is free");
    let pass = scheduler.reclaim(&compiled, &[0, 1, 2], Reasons::Worded).unwrap();
    // K takes z2's server and b2 the rest of it; then b borrows, and J takes y and z1's server.
    assert_eq!(placed_ids(&scheduler), ["b2", "j", "k"], "{:?}", pass.decisions);
    let mut evicted: Vec<&str> = pass.evictions.iter().map(|e| e.id.as_str()).collect();
    evicted.sort_unstable();
    assert_eq!(evicted, ["y", "z1", "z2"]);
    assert!(!pass.unsettled);
}

/// A borrower evicting by priority within its tenant leaves GPUs free that a job within quota,
/// decided before it, can use: the pass decides that job again.
#[test]
fn capacity_a_borrower_frees_goes_to_a_job_within_quota_decided_before_it() {
    let tenants = Tenants::new(vec![Tenant::new("a", 8), Tenant::new("b", 8)], "<tenants>").unwrap();
    let mut scheduler = Scheduler::new(two_servers(), gpuplace::Policy::default(), BackendChoice::Cpu).unwrap();
    scheduler.set_tenants(Some(tenants)).unwrap();
    let job = |id: &str, gpus: u32, priority: i32, tenant: &str| {
        Job::new(id, JobKind::Training, gpus, "us").with_hbm_gb_per_gpu(100).with_priority(priority).with_tenant(tenant)
    };
    scheduler.place(&Workload::from_jobs(vec![job("l", 8, 0, "b")], "<first>"), Some(at())).unwrap();
    let second = Workload::from_jobs(vec![job("j", 4, 0, "a"), job("h", 4, 10, "b")], "<second>");
    let compiled = scheduler.compile(&second, at()).unwrap();
    let pass = scheduler.preempt(&compiled, &[0, 1], Reasons::Worded).unwrap();
    assert_eq!(placed_ids(&scheduler), ["h", "j"], "{:?}", pass.decisions);
    assert_eq!(pass.evictions.iter().map(|e| (e.id.as_str(), e.reclaim)).collect::<Vec<_>>(), [("l", false)]);
}
