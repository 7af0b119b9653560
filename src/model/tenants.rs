//! Tenants and their GPU quotas (a tenants file, `--tenants`): who a job counts against, how many
//! GPUs each tenant is guaranteed, how far past that it may borrow idle capacity, and its weight in
//! the fair sharing of what is borrowed. The engine applies them ([`crate::Scheduler::set_tenants`];
//! the semantics, with a worked example, are in `docs/QUOTAS.md`).

use serde::{Deserialize, Serialize};

use crate::error::{InputError, Result};
use crate::model::jobs::{Job, Workload};
use crate::model::json::{check_name, shown};
use crate::model::kind::JobKind;

/// The most tenants in one file.
pub const MAX_TENANTS: usize = 1024;
/// The largest quota or borrowing limit, GPUs (far above any fleet: 2^24).
pub const MAX_QUOTA_GPUS: u32 = 1 << 24;
/// The largest fair-sharing weight.
pub const MAX_TENANT_WEIGHT: u32 = 1000;
/// The largest tenants file, bytes.
pub const MAX_TENANTS_BYTES: u64 = 1 << 20;
/// Thousandths of a GPU in one GPU: quotas are counted in them, so that jobs whose pods share GPUs
/// count their shares exactly.
const MILLI: u64 = 1000;

/// One tenant: a team or queue with a guaranteed share of the fleet's GPUs, as Kueue's
/// ClusterQueue with its nominal quota and borrowing limit in a cohort, or a KAI-Scheduler queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Tenant {
    /// Its name, as jobs' `tenant` gives it.
    pub name: String,
    /// GPUs guaranteed: its jobs within this are placed before any tenant borrows, and take back
    /// capacity other tenants borrowed when they need it.
    #[schemars(range(max = MAX_QUOTA_GPUS))]
    pub quota_gpus: u32,
    /// GPUs it may hold beyond its quota, on capacity nobody within quota needs (and given back
    /// when somebody does). Absent: no limit; 0: it never borrows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = MAX_QUOTA_GPUS))]
    pub borrow_limit_gpus: Option<u32>,
    /// Its weight in the fair sharing of borrowed capacity (1 … 1000; 1 when absent): borrowed GPUs
    /// go first to the tenant whose borrowed GPUs divided by its weight are fewest.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    #[schemars(range(min = 1, max = MAX_TENANT_WEIGHT))]
    pub weight: u32,
    /// Kinds of job that count against this tenant when they name no tenant (each kind at most
    /// one tenant's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<JobKind>,
}

fn one() -> u32 {
    1
}

fn is_one(value: &u32) -> bool {
    *value == 1
}

impl Tenant {
    /// A tenant guaranteed `quota_gpus`, borrowing without limit, of weight 1, given no kinds.
    pub fn new(name: impl Into<String>, quota_gpus: u32) -> Tenant {
        Tenant { name: name.into(), quota_gpus, borrow_limit_gpus: None, weight: 1, kinds: Vec::new() }
    }

    /// With a borrowing limit.
    pub fn with_borrow_limit(mut self, gpus: u32) -> Tenant {
        self.borrow_limit_gpus = Some(gpus);
        self
    }

    /// With a fair-sharing weight.
    pub fn with_weight(mut self, weight: u32) -> Tenant {
        self.weight = weight;
        self
    }

    /// With the kinds of job that count against it when they name no tenant.
    pub fn with_kinds(mut self, kinds: &[JobKind]) -> Tenant {
        self.kinds = kinds.to_vec();
        self
    }

    /// Its quota in thousandths of a GPU.
    pub fn quota_milli(&self) -> u64 {
        u64::from(self.quota_gpus) * MILLI
    }

    /// The most it may hold, in thousandths of a GPU (None: no limit).
    pub fn limit_milli(&self) -> Option<u64> {
        self.borrow_limit_gpus.map(|borrow| (u64::from(self.quota_gpus) + u64::from(borrow)) * MILLI)
    }
}

/// A tenants file: `{"format_version": 1, "tenants": [...]}`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TenantsFile {
    /// The format's version (1); absent is 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    format_version: Option<u32>,
    /// The tenants, 1 to 1,024.
    tenants: Vec<Tenant>,
}

/// The tenants of a fleet, validated: names unique, values in range, each kind assigned at most
/// once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenants {
    tenants: Vec<Tenant>,
    /// By kind ([`JobKind::ALL`] order), the tenant a job of that kind naming none counts against.
    by_kind: [Option<u32>; 4],
    /// The tenant named `default`, for jobs naming none whose kind no tenant has.
    default: Option<u32>,
}

impl Tenants {
    /// Validated tenants; errors name `source_name`, the tenant and the field.
    pub fn new(tenants: Vec<Tenant>, source_name: &str) -> std::result::Result<Tenants, InputError> {
        if tenants.is_empty() || tenants.len() > MAX_TENANTS {
            return Err(InputError::new(
                source_name,
                "document",
                "tenants",
                format!("{} tenants: give 1 to {MAX_TENANTS}", tenants.len()),
            ));
        }
        let mut by_kind = [None; 4];
        let mut names = std::collections::HashSet::new();
        for (i, tenant) in tenants.iter().enumerate() {
            let err =
                |field: &str, message: String| InputError::new(source_name, format!("tenant {i}"), field, message);
            check_name(&tenant.name, false).map_err(|m| err("name", m))?;
            let err = |field: &str, message: String| {
                InputError::new(source_name, format!("tenant `{}`", shown(&tenant.name)), field, message)
            };
            if !names.insert(tenant.name.as_str()) {
                return Err(err("name", format!("duplicate tenant `{}`", shown(&tenant.name))));
            }
            if tenant.quota_gpus > MAX_QUOTA_GPUS {
                return Err(err(
                    "quota_gpus",
                    format!("{} is out of range: must be at most {MAX_QUOTA_GPUS}", tenant.quota_gpus),
                ));
            }
            if let Some(borrow) = tenant.borrow_limit_gpus
                && borrow > MAX_QUOTA_GPUS
            {
                return Err(err(
                    "borrow_limit_gpus",
                    format!("{borrow} is out of range: must be at most {MAX_QUOTA_GPUS}"),
                ));
            }
            if tenant.weight == 0 || tenant.weight > MAX_TENANT_WEIGHT {
                return Err(err(
                    "weight",
                    format!("{} is out of range: must be between 1 and {MAX_TENANT_WEIGHT}", tenant.weight),
                ));
            }
            for &kind in &tenant.kinds {
                let slot = &mut by_kind[kind as usize];
                if let Some(other) = *slot {
                    let other: &Tenant = &tenants[other as usize];
                    return Err(err(
                        "kinds",
                        format!("kind {} is already tenant `{}`'s", kind.name(), shown(&other.name)),
                    ));
                }
                *slot = Some(i as u32);
            }
        }
        let default = tenants.iter().position(|t| t.name == "default").map(|i| i as u32);
        Ok(Tenants { tenants, by_kind, default })
    }

    /// Reads and validates a tenants JSON file.
    pub fn from_path(path: impl AsRef<std::path::Path>) -> Result<Tenants> {
        let path = path.as_ref();
        let text = crate::model::json::read_input(path, MAX_TENANTS_BYTES, crate::model::json::Expect::Object)?;
        Ok(Tenants::from_json(&text, &path.display().to_string())?)
    }

    /// Parses and validates tenants JSON.
    pub fn from_json(text: &str, source_name: &str) -> std::result::Result<Tenants, InputError> {
        let file: TenantsFile = crate::model::json::parse_object(
            text,
            source_name,
            "a tenants file: a JSON object with a list of `tenants`, each with a `name` and `quota_gpus`",
        )?;
        crate::model::json::check_format_version(source_name, file.format_version)?;
        Tenants::new(file.tenants, source_name)
    }

    /// The tenants as a tenants file (with this gpuplace's `format_version`), pretty-printed.
    pub fn to_json(&self) -> String {
        let file =
            TenantsFile { format_version: Some(crate::model::json::FORMAT_VERSION), tenants: self.tenants.clone() };
        serde_json::to_string_pretty(&file).expect("tenants always serialize")
    }

    /// The tenants, in file order (a tenant's index is its position here).
    pub fn tenants(&self) -> &[Tenant] {
        &self.tenants
    }

    /// The index of the tenant `job` counts against: the one it names, else the one its kind is
    /// assigned to, else the one named `default`. What is wrong, when none.
    pub fn tenant_of(&self, job: &Job) -> std::result::Result<u32, String> {
        match &job.tenant {
            Some(name) => self.tenants.iter().position(|t| &t.name == name).map(|i| i as u32).ok_or_else(|| {
                let known: Vec<&str> = self.tenants.iter().take(8).map(|t| t.name.as_str()).collect();
                let more = if self.tenants.len() > 8 { ", …" } else { "" };
                format!("unknown tenant `{}`: the tenants file has {}{more}", shown(name), known.join(", "))
            }),
            None => self.by_kind[job.kind as usize].or(self.default).ok_or_else(|| {
                format!(
                    "the job names no tenant, and the tenants file neither gives kind {} to one nor has a \
                     tenant named `default`",
                    job.kind.name()
                )
            }),
        }
    }

    /// Every job's tenant ([`Tenants::tenant_of`]); the error names the job's record and the
    /// field `tenant`.
    pub fn tenants_of(&self, workload: &Workload) -> std::result::Result<Vec<u32>, InputError> {
        workload
            .jobs
            .iter()
            .enumerate()
            .map(|(i, job)| {
                self.tenant_of(job)
                    .map_err(|m| InputError::new(&workload.source_name, workload.error_record(i), "tenant", m))
            })
            .collect()
    }
}
