//! The selections a sweep compares, in the order of every table, plan and legend, with
//! their colours and legend names: the one home of these facts.

/// The run that every other starts from (a `snl train` run).
pub const BASELINE: &str = "baseline";

/// What `snl linearize --selection` takes, SNL first: a control needs SNL's search length.
pub const LINEARIZE: [&str; 3] = [SNL, "random", "uniform"];

/// Algorithm 1's learned masks; the others are its controls.
pub const SNL: &str = "snl";

/// Position in tables and legends: baseline, snl, random, uniform, then anything else.
pub fn rank(selection: &str) -> usize {
    if selection == BASELINE {
        return 0;
    }
    LINEARIZE.iter().position(|s| *s == selection).map_or(LINEARIZE.len() + 1, |i| i + 1)
}

pub fn colour(selection: &str) -> &'static str {
    match selection {
        BASELINE => "#222222",
        SNL => "#d62728",
        "random" => "#1f77b4",
        "uniform" => "#2ca02c",
        _ => "#9467bd",
    }
}

pub fn legend(selection: &str) -> String {
    match selection {
        BASELINE => "baseline (all ReLUs)".into(),
        SNL => "SNL (learned masks)".into(),
        "random" => "random pixels".into(),
        "uniform" => "uniform per layer".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_baseline_snl_random_uniform_then_others() {
        let mut names = ["uniform", "other", "snl", BASELINE, "random"];
        names.sort_by_key(|s| rank(s));
        assert_eq!(names, [BASELINE, "snl", "random", "uniform", "other"]);
        assert_ne!(colour("snl"), colour("random"));
    }
}
