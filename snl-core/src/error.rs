//! snl-core's typed errors.

/// A configuration value Algorithm 1 cannot run with; each names the value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("budget {budget} ReLUs must be below the network's {total} ReLUs")]
    BudgetTooLarge { budget: usize, total: usize },
    #[error("budget must keep at least one ReLU, got 0")]
    BudgetZero,
    #[error("budget fraction {0} must be in (0, 1): above 0 and below all ReLUs")]
    FractionOutOfRange(f64),
    #[error("the model has no ReLU masks")]
    NoMasks,
    #[error("{name} must be positive and finite, got {value}")]
    NotPositive { name: &'static str, value: f64 },
    #[error("{name} must be non-negative and finite, got {value}")]
    Negative { name: &'static str, value: f64 },
    #[error("growth factor kappa must be above 1, got {0}")]
    KappaTooSmall(f64),
    #[error("momentum must be in [0, 1), got {0}")]
    Momentum(f64),
    #[error("Nesterov momentum needs a positive momentum")]
    NesterovWithoutMomentum,
    #[error("threshold eps must be in [0, 1), got {0}")]
    Threshold(f64),
    #[error("max search epochs must be at least 1")]
    NoSearchEpochs,
    /// A [`crate::Plan`] that its own configuration and the model do not reproduce: made
    /// for another network, or edited after [`crate::SnlConfig::check`].
    #[error(
        "the plan (budget {plan_budget} of {plan_total} ReLUs) does not match its configuration on this network (budget {budget} of {total} ReLUs)"
    )]
    PlanMismatch { plan_budget: usize, plan_total: usize, budget: usize, total: usize },
}

/// Everything snl-core can fail with: candle's errors, a bad configuration or model, a
/// run that cannot go on (non-finite loss, budget not reached, no data), or optimizer state
/// that does not fit its variables.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Candle(#[from] candle::Error),
    #[error("invalid SNL configuration: {0}")]
    Config(#[from] ConfigError),
    /// The terms are shown as computed: finite terms with a non-finite loss mean that
    /// `lambda * lasso` (the search's `lambda`) overflowed.
    #[error(
        "{phase} loss became {value} at epoch {epoch}, batch {batch} (ce {ce}, kd {kd}, lasso {lasso}{})",
        times_lambda(*.lambda)
    )]
    NonFiniteLoss {
        phase: crate::Phase,
        epoch: usize,
        batch: usize,
        value: f32,
        ce: f32,
        kd: f32,
        lasso: f32,
        /// The lasso's coefficient (the search only).
        lambda: Option<f64>,
    },
    #[error(
        "mask search gave up after {epochs} epochs: {count} ReLUs left, budget {budget}, lambda {lambda:.3e}"
    )]
    BudgetNotReached { epochs: usize, count: usize, budget: usize, lambda: f64 },
    #[error("no batches in epoch {epoch} of the {phase}")]
    NoBatches { phase: crate::Phase, epoch: usize },
    #[error("optimizer state: {0}")]
    OptimizerState(String),
    /// The search would never train this mask, so its count could not fall.
    #[error(
        "mask `{site}` is frozen, so the mask search cannot train it (build the student from a VarMap, not from plain tensors or an already linearized model)"
    )]
    FrozenMask { site: String },
    /// Frozen-mask training is a control: a mask that could still move would make it a search.
    #[error("mask `{site}` is not frozen: frozen-mask training needs a drawn, frozen selection")]
    MaskNotFrozen { site: String },
    /// The search steps only the variables it is given.
    #[error("mask `{site}`: its `alphas` variable is not among the variables given to the mask search")]
    MaskNotInVars { site: String },
}

/// ` x lambda 1e38` after the lasso term, when it was weighted.
fn times_lambda(lambda: Option<f64>) -> String {
    lambda.map_or(String::new(), |l| format!(" x lambda {l:e}"))
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn a_non_finite_loss_shows_lambda_only_when_it_weighed_the_lasso() {
        let err = |lambda| Error::NonFiniteLoss {
            phase: crate::Phase::Search,
            epoch: 0,
            batch: 2,
            value: f32::INFINITY,
            ce: 1.5,
            kd: 9.25,
            lasso: 7680.0,
            lambda,
        };
        let text = err(Some(1e38)).to_string();
        assert!(text.ends_with("(ce 1.5, kd 9.25, lasso 7680 x lambda 1e38)"), "{text}");
        let text = err(None).to_string();
        assert!(text.ends_with("(ce 1.5, kd 9.25, lasso 7680)"), "{text}");
    }
}
