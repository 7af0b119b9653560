//! The kinds of AI work, each with its own policy weights.

use serde::{Deserialize, Serialize};

/// What kind of AI work a job is; each kind has its own policy weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// Serving a model to users.
    Inference,
    /// Multi-step agents calling models and tools.
    Agentic,
    /// Image, audio or video models.
    Multimodal,
    /// Pre-training or fine-tuning.
    Training,
}

impl JobKind {
    /// Every kind, in report order.
    pub const ALL: [JobKind; 4] = [JobKind::Inference, JobKind::Agentic, JobKind::Multimodal, JobKind::Training];

    /// Its position in [`JobKind::ALL`] (report order).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The kind's name as written in files.
    pub fn name(self) -> &'static str {
        match self {
            JobKind::Inference => "inference",
            JobKind::Agentic => "agentic",
            JobKind::Multimodal => "multimodal",
            JobKind::Training => "training",
        }
    }

    /// Parses a kind's name.
    pub fn parse(text: &str) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|k| k.name() == text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_is_the_position_in_all() {
        for (i, kind) in JobKind::ALL.into_iter().enumerate() {
            assert_eq!(kind.index(), i);
            assert_eq!(JobKind::parse(kind.name()), Some(kind));
        }
    }
}
