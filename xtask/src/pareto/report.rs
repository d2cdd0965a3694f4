//! `pareto.md`: the study's table and the checks issue 15 asks of it, computed from the rows
//! so that a results README quotes numbers instead of retyping them.

use std::collections::{BTreeMap, BTreeSet};

use super::collect::{Group, Row};
use crate::selection;

/// The baseline, then per budget each selection's test top-1 (mean, min-max, runs), ReLUs
/// kept and epochs trained, SNL's lead over each control (of the means, and per seed), then
/// the checks: equal training within each (budget, seed), budgets kept, one lambda0, lambda
/// growing.
pub fn to_markdown(rows: &[Row], groups: &[Group]) -> String {
    let mut out = String::new();
    for b in rows.iter().filter(|r| r.selection == selection::BASELINE) {
        out += &format!(
            "Baseline `{}`: test top-1 {}, val top-1 {}, {} of {} ReLUs.\n\n",
            b.name,
            pct(b.test_top1),
            pct(b.val_top1),
            num(b.relu_count),
            num(b.relu_total)
        );
    }
    let controls: Vec<&str> = selection::LINEARIZE[1..]
        .iter()
        .copied()
        .filter(|s| groups.iter().any(|g| g.selection == *s))
        .collect();
    out += "| budget | selection | test top-1 mean (min-max) | runs | ReLUs kept (mean) | epochs trained |\n";
    out += "|---:|---|---|---:|---:|---|\n";
    let budgets: BTreeSet<u64> = groups.iter().filter_map(|g| g.budget).collect();
    for &b in &budgets {
        for g in groups.iter().filter(|g| g.budget == Some(b)) {
            let epochs: Vec<String> = g.epochs_trained.iter().map(|e| num(*e)).collect();
            out += &format!(
                "| {b} | {} | {:.2} ({:.2}-{:.2}) | {} | {:.0} | {} |\n",
                g.selection,
                g.mean,
                g.min,
                g.max,
                g.runs,
                g.relu_count,
                epochs.join(", ")
            );
        }
    }
    if !controls.is_empty() {
        out += "\nSNL's lead in test top-1 points: the difference of the means, and per seed (min..max).\n\n";
        out +=
            &format!("| budget |{}\n", controls.iter().map(|c| format!(" SNL - {c} |")).collect::<String>());
        out += &format!("|---:|{}\n", "---|".repeat(controls.len()));
        for &b in &budgets {
            out += &format!("| {b} |");
            for c in &controls {
                out += &format!(" {} |", lead(rows, groups, b, c));
            }
            out += "\n";
        }
    }
    out += "\nChecks:\n";
    for line in checks(rows) {
        out += &format!("- {line}\n");
    }
    out
}

/// SNL's mean minus the control's, and the per-seed differences; `-` when either is missing.
fn lead(rows: &[Row], groups: &[Group], budget: u64, control: &str) -> String {
    let mean = |s: &str| groups.iter().find(|g| g.selection == s && g.budget == Some(budget)).map(|g| g.mean);
    let (Some(snl), Some(other)) = (mean(selection::SNL), mean(control)) else { return "-".into() };
    let acc = |s: &str, seed| {
        rows.iter()
            .find(|r| r.selection == s && r.budget == Some(budget) && r.seed == Some(seed))
            .and_then(|r| r.test_top1)
    };
    let paired: Vec<f64> = rows
        .iter()
        .filter(|r| r.selection == selection::SNL && r.budget == Some(budget))
        .filter_map(|r| Some(acc(selection::SNL, r.seed?)? - acc(control, r.seed?)?))
        .collect();
    let lo = paired.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = paired.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let seeds = if paired.is_empty() {
        "no seed has both".to_string()
    } else {
        format!("{lo:+.2}..{hi:+.2} over {} seeds", paired.len())
    };
    format!("{:+.2} ({seeds})", snl - other)
}

/// Whether `value` is one value within each (budget, seed) cell of `runs`, stated with
/// the cells where it is not.
fn equal_within_cells(runs: &[&Row], name: &str, value: fn(&Row) -> Option<u64>) -> String {
    // (budget, seed) -> the values of its runs.
    type Cells = BTreeMap<(Option<u64>, Option<u64>), BTreeSet<Option<u64>>>;
    let mut cells = Cells::new();
    for r in runs {
        cells.entry((r.budget, r.seed)).or_default().insert(value(r));
    }
    let unequal: Vec<String> = cells
        .iter()
        .filter(|(_, e)| e.len() > 1)
        .map(|((b, s), e)| {
            let e: Vec<String> = e.iter().map(|v| num(*v)).collect();
            format!("budget {} seed {}: {}", num(*b), num(*s), e.join(" vs "))
        })
        .collect();
    if unequal.is_empty() {
        format!("equal {name} within each of the {} (budget, seed) cells", cells.len())
    } else {
        format!("UNEQUAL {name}: {}", unequal.join("; "))
    }
}

/// Issue 15's conditions on the finished linearize runs, each stated with what was found.
pub fn checks(rows: &[Row]) -> Vec<String> {
    let linearized: Vec<&Row> = rows.iter().filter(|r| r.selection != selection::BASELINE).collect();
    let mut out: Vec<String> = [
        ("epochs_trained", (|r: &Row| r.epochs_trained) as fn(&Row) -> Option<u64>),
        ("search_steps", |r: &Row| r.search_steps),
    ]
    .into_iter()
    .map(|(name, value)| equal_within_cells(&linearized, name, value))
    .collect();
    // A search that reached its cap with `--finish-at-cap` keeps more ReLUs than allowed;
    // its accuracy is then not comparable with the controls', which draw exactly the budget.
    let over: Vec<String> = linearized
        .iter()
        .filter(|r| matches!((r.relu_count, r.budget), (Some(c), Some(b)) if c > b))
        .map(|r| format!("{} ({} > {})", r.name, num(r.relu_count), num(r.budget)))
        .collect();
    let unknown = linearized.iter().filter(|r| r.relu_count.is_none() || r.budget.is_none()).count();
    out.push(match (over.is_empty(), unknown) {
        (true, 0) => format!("all {} linearize runs keep at most their budget of ReLUs", linearized.len()),
        (true, n) => format!("{n} linearize runs do not say their ReLU count or budget"),
        (false, _) => format!("OVER BUDGET: {}", over.join("; ")),
    });
    let snl: Vec<&&Row> = linearized.iter().filter(|r| r.selection == selection::SNL).collect();
    let lambda0: BTreeSet<String> = snl.iter().map(|r| num(r.lambda0)).collect();
    out.push(match lambda0.len() {
        0 => "no SNL run".to_string(),
        1 => format!("one lambda0 for all {} SNL runs: {}", snl.len(), lambda0.iter().next().expect("one")),
        _ => format!(
            "SEVERAL lambda0 among the SNL runs: {}",
            lambda0.into_iter().collect::<Vec<_>>().join(", ")
        ),
    });
    let grew =
        snl.iter().filter(|r| matches!((r.lambda0, r.lambda_final), (Some(a), Some(b)) if b > a)).count();
    out.push(format!("lambda grew (lambda_final > lambda0) in {grew} of {} SNL runs", snl.len()));
    out
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}%"))
}

fn num<T: ToString>(v: Option<T>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::super::collect::groups;
    use super::*;

    fn row(sel: &str, budget: u64, seed: u64, acc: f64, epochs: u64) -> Row {
        Row {
            name: format!("{sel}-{budget}-s{seed}"),
            selection: sel.into(),
            budget: Some(budget),
            seed: Some(seed),
            relu_count: Some(budget.saturating_sub(1)),
            relu_total: Some(1000),
            test_top1: Some(acc),
            epochs_trained: Some(epochs),
            search_steps: Some(epochs * 10),
            lambda0: (sel == "snl").then_some(1e-4),
            lambda_final: (sel == "snl").then_some(if seed == 0 { 4e-4 } else { 1e-4 }),
            ..Row::default()
        }
    }

    fn study() -> Vec<Row> {
        let mut base = row("baseline", 0, 0, 88.5, 0);
        (base.name, base.budget, base.relu_count, base.val_top1) =
            ("baseline".into(), None, Some(1000), Some(89.0));
        vec![
            base,
            row("snl", 100, 0, 80.0, 12),
            row("snl", 100, 1, 82.0, 12),
            row("random", 100, 0, 70.0, 12),
            row("random", 100, 1, 75.0, 12),
            row("uniform", 100, 0, 71.0, 12),
            row("uniform", 100, 1, 71.5, 12),
        ]
    }

    #[test]
    fn the_table_gives_means_leads_and_checks() {
        let rows = study();
        let md = to_markdown(&rows, &groups(&rows));
        assert!(
            md.starts_with("Baseline `baseline`: test top-1 88.50%, val top-1 89.00%, 1000 of 1000 ReLUs."),
            "{md}"
        );
        assert!(md.contains("| 100 | snl | 81.00 (80.00-82.00) | 2 | 99 | 12, 12 |"), "{md}");
        assert!(md.contains("| 100 | random | 72.50 (70.00-75.00) | 2 | 99 | 12, 12 |"), "{md}");
        // 81 - 72.5; per seed 80 - 70 = +10 and 82 - 75 = +7. Uniform: 81 - 71.25.
        assert!(
            md.contains("| 100 | +8.50 (+7.00..+10.00 over 2 seeds) | +9.75 (+9.00..+10.50 over 2 seeds) |"),
            "{md}"
        );
        assert!(md.contains("- equal epochs_trained within each of the 2 (budget, seed) cells"), "{md}");
        assert!(md.contains("- equal search_steps within each of the 2 (budget, seed) cells"), "{md}");
        assert!(md.contains("- all 6 linearize runs keep at most their budget of ReLUs"), "{md}");
        assert!(md.contains("- one lambda0 for all 2 SNL runs: 0.0001"), "{md}");
        assert!(md.contains("- lambda grew (lambda_final > lambda0) in 1 of 2 SNL runs"), "{md}");
    }

    #[test]
    fn the_checks_name_what_fails() {
        let mut rows = study();
        rows[3].epochs_trained = Some(2);
        rows[4].search_steps = Some(119);
        rows[2].lambda0 = Some(3e-4);
        rows[2].relu_count = Some(130);
        let checks = checks(&rows);
        assert_eq!(checks[0], "UNEQUAL epochs_trained: budget 100 seed 0: 2 vs 12");
        assert_eq!(checks[1], "UNEQUAL search_steps: budget 100 seed 1: 119 vs 120");
        assert_eq!(checks[2], "OVER BUDGET: snl-100-s1 (130 > 100)");
        assert_eq!(checks[3], "SEVERAL lambda0 among the SNL runs: 0.0001, 0.0003");
        rows[2].relu_count = None;
        assert_eq!(super::checks(&rows)[2], "1 linearize runs do not say their ReLU count or budget");
        // A missing control shows as a dash, not as a lead over nothing.
        let only_snl: Vec<Row> = rows.into_iter().filter(|r| r.selection != "uniform").collect();
        let md = to_markdown(&only_snl, &groups(&only_snl));
        assert!(md.contains("| budget | SNL - random |\n"), "{md}");
        assert!(!md.contains("SNL - uniform"), "{md}");
    }
}
