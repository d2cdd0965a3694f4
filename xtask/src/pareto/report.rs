//! `pareto.md`: the study's table and the checks issue 15 asks of it, computed from the rows
//! so that a results README quotes numbers instead of retyping them.

use std::collections::{BTreeMap, BTreeSet};

use super::collect::{Group, Row, num};
use crate::selection;

/// How many of the `planned` runs (the sweep record's names) have finished, and which not,
/// then the baseline, per budget each selection's test top-1 (mean, min-max, runs), ReLUs
/// kept and epochs trained, SNL's lead over each control (run against run, seed by seed),
/// then the checks: complete (budget, seed) cells, equal training within them, budgets
/// kept, one lambda0, lambda growing, SNL above each control.
pub fn to_markdown(rows: &[Row], groups: &[Group], planned: &[String]) -> String {
    let mut out = String::new();
    let missing: Vec<&str> =
        planned.iter().filter(|p| !rows.iter().any(|r| &r.name == *p)).map(String::as_str).collect();
    out += &format!("{} of {} planned runs finished", planned.len() - missing.len(), planned.len());
    out += &match missing.is_empty() {
        true => ".\n\n".to_string(),
        false => format!("; still missing: {}.\n\n", missing.join(", ")),
    };
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
            let epochs: Vec<String> =
                g.seeds.iter().zip(&g.epochs_trained).map(|(s, e)| format!("s{s} {}", num(*e))).collect();
            let top1 = match g.runs {
                1 => format!("{:.2} (one run)", g.mean),
                _ => format!("{:.2} ({:.2}-{:.2})", g.mean, g.min, g.max),
            };
            out += &format!(
                "| {b} | {} | {top1} | {} | {:.0} | {} |\n",
                g.selection,
                g.runs,
                g.relu_count,
                epochs.join(", ")
            );
        }
    }
    if !controls.is_empty() {
        out += "\nSNL's lead in test top-1 points: SNL's run minus the control's of the same seed, \
                averaged over the seeds that have both (min..max).\n\n";
        out +=
            &format!("| budget |{}\n", controls.iter().map(|c| format!(" SNL - {c} |")).collect::<String>());
        out += &format!("|---:|{}\n", "---|".repeat(controls.len()));
        for &b in &budgets {
            out += &format!("| {b} |");
            for c in &controls {
                out += &format!(" {} |", lead(rows, b, c));
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

/// The mean of SNL's test top-1 minus the control's, seed by seed, with their range, and
/// the runs left unpaired (a seed only one of them has finished); `-` when no seed has both.
fn lead(rows: &[Row], budget: u64, control: &str) -> String {
    let top1 = |s: &str| -> BTreeMap<u64, f64> {
        rows.iter()
            .filter(|r| r.selection == s && r.budget == Some(budget))
            .filter_map(|r| Some((r.seed?, r.test_top1?)))
            .collect()
    };
    let (snl, other) = (top1(selection::SNL), top1(control));
    let paired: Vec<f64> = snl.iter().filter_map(|(seed, a)| Some(a - other.get(seed)?)).collect();
    if paired.is_empty() {
        return "-".into();
    }
    let lo = paired.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = paired.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mean = paired.iter().sum::<f64>() / paired.len() as f64;
    let mut text = match paired.len() {
        1 => format!("{mean:+.2} (one seed)"),
        n => format!("{mean:+.2} ({lo:+.2}..{hi:+.2} over {n} seeds)"),
    };
    let mut unpaired: Vec<String> = Vec::new();
    for (of, than, name) in [(&snl, &other, selection::SNL), (&other, &snl, control)] {
        unpaired.extend(of.keys().filter(|s| !than.contains_key(s)).map(|s| format!("{name} s{s}")));
    }
    if !unpaired.is_empty() {
        text += &format!("; unpaired: {}", unpaired.join(", "));
    }
    text
}

/// Whether `value` is one value within each (budget, seed) cell of `runs`, stated with
/// the cells where it is not; runs that do not say it fail the check (a cell of runs that
/// all lack it would otherwise look equal).
fn equal_within_cells(runs: &[&Row], name: &str, value: fn(&Row) -> Option<u64>) -> String {
    let silent: Vec<&str> = runs.iter().filter(|r| value(r).is_none()).map(|r| r.name.as_str()).collect();
    if !silent.is_empty() {
        return format!("MISSING {name} in: {}", silent.join(", "));
    }
    let mut cells: BTreeMap<(Option<u64>, Option<u64>), Vec<u64>> = BTreeMap::new();
    for r in runs {
        cells.entry((r.budget, r.seed)).or_default().extend(value(r));
    }
    let compared = cells.values().filter(|v| v.len() > 1).count();
    let unequal: Vec<String> = cells
        .iter()
        .filter_map(|((b, s), v)| {
            let distinct: BTreeSet<u64> = v.iter().copied().collect();
            let shown: Vec<String> = distinct.iter().map(u64::to_string).collect();
            (distinct.len() > 1)
                .then(|| format!("budget {} seed {}: {}", num(*b), num(*s), shown.join(" vs ")))
        })
        .collect();
    if unequal.is_empty() {
        format!("equal {name} within each of the {compared} (budget, seed) cells with more than one run")
    } else {
        format!("UNEQUAL {name}: {}", unequal.join("; "))
    }
}

/// Whether every (budget, seed) cell has a run of every selection the study has: a cell
/// with SNL alone compares nothing, and must not pass for an equal one.
fn complete_cells(runs: &[&Row]) -> String {
    let present: Vec<&str> =
        selection::LINEARIZE.iter().copied().filter(|s| runs.iter().any(|r| r.selection == *s)).collect();
    let mut cells: BTreeMap<(Option<u64>, Option<u64>), Vec<&str>> = BTreeMap::new();
    for r in runs {
        cells.entry((r.budget, r.seed)).or_default().push(&r.selection);
    }
    let incomplete: Vec<String> = cells
        .iter()
        .filter(|(_, sels)| present.iter().any(|p| !sels.contains(p)))
        .map(|((b, s), sels)| format!("budget {} seed {} has only {}", num(*b), num(*s), sels.join(", ")))
        .collect();
    if incomplete.is_empty() {
        format!("each of the {} (budget, seed) cells has a run of {}", cells.len(), present.join(", "))
    } else {
        format!("INCOMPLETE cells: {}", incomplete.join("; "))
    }
}

/// Per control: at how many budgets SNL's runs are above the control's, seed by seed (the
/// mean of the paired differences, as in the lead table), and the budgets where no seed has
/// both finished.
fn snl_against(runs: &[&Row], control: &str) -> String {
    let top1 = |sel: &str, b: u64| -> BTreeMap<u64, f64> {
        runs.iter()
            .filter(|r| r.selection == sel && r.budget == Some(b))
            .filter_map(|r| Some((r.seed?, r.test_top1?)))
            .collect()
    };
    let budgets: BTreeSet<u64> = runs.iter().filter_map(|r| r.budget).collect();
    let (mut above, mut compared, mut missing) = (0, 0, Vec::new());
    for &b in &budgets {
        let other = top1(control, b);
        let paired: Vec<f64> =
            top1(selection::SNL, b).iter().filter_map(|(s, a)| Some(a - other.get(s)?)).collect();
        if paired.is_empty() {
            missing.push(b.to_string());
        } else {
            compared += 1;
            above += usize::from(paired.iter().sum::<f64>() > 0.0);
        }
    }
    let found =
        format!("SNL above {control} at {above} of the {compared} budgets with both (paired by seed)");
    match missing.is_empty() {
        true => format!("{found}, every budget compared"),
        false => format!("NOT COMPARED with {control} at budget {}; {found}", missing.join(", ")),
    }
}

/// Issue 15's conditions on the finished linearize runs, each stated with what was found;
/// a failed one starts in capitals.
pub fn checks(rows: &[Row]) -> Vec<String> {
    let linearized: Vec<&Row> = rows.iter().filter(|r| r.selection != selection::BASELINE).collect();
    let mut out = vec![complete_cells(&linearized)];
    out.extend(
        [
            ("epochs_trained", (|r: &Row| r.epochs_trained) as fn(&Row) -> Option<u64>),
            ("search_steps", |r: &Row| r.search_steps),
        ]
        .into_iter()
        .map(|(name, value)| equal_within_cells(&linearized, name, value)),
    );
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
    let lacking = |value: fn(&Row) -> Option<f64>| -> Vec<&str> {
        snl.iter().filter(|r| value(r).is_none()).map(|r| r.name.as_str()).collect()
    };
    let lambda0: BTreeSet<String> = snl.iter().filter_map(|r| r.lambda0).map(|v| v.to_string()).collect();
    out.push(match (lacking(|r| r.lambda0), lambda0.len()) {
        (none, _) if !none.is_empty() => format!("MISSING lambda0 in: {}", none.join(", ")),
        (_, 0) => "no SNL run".to_string(),
        (_, 1) => {
            format!("one lambda0 for all {} SNL runs: {}", snl.len(), lambda0.iter().next().expect("one"))
        }
        _ => format!(
            "SEVERAL lambda0 among the SNL runs: {}",
            lambda0.into_iter().collect::<Vec<_>>().join(", ")
        ),
    });
    let grew =
        snl.iter().filter(|r| matches!((r.lambda0, r.lambda_final), (Some(a), Some(b)) if b > a)).count();
    let mut line = format!("lambda_final > lambda0 in {grew} of {} SNL runs", snl.len());
    if grew == 0 && !snl.is_empty() {
        line = format!("LAMBDA NEVER GREW: {line}");
    }
    if let none @ [_, ..] = lacking(|r| r.lambda_final).as_slice() {
        line += &format!("; MISSING lambda_final in: {}", none.join(", "));
    }
    out.push(line);
    for control in &selection::LINEARIZE[1..] {
        if linearized.iter().any(|r| r.selection == *control) {
            out.push(snl_against(&linearized, control));
        }
    }
    out
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}%"))
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

    fn names(rows: &[Row]) -> Vec<String> {
        rows.iter().map(|r| r.name.clone()).collect()
    }

    #[test]
    fn the_table_gives_means_leads_and_checks() {
        let rows = study();
        let mut planned = names(&rows);
        planned.push("snl-200-s0".into());
        let md = to_markdown(&rows, &groups(&rows), &planned);
        assert!(
            md.starts_with(
                "7 of 8 planned runs finished; still missing: snl-200-s0.\n\n\
                 Baseline `baseline`: test top-1 88.50%, val top-1 89.00%, 1000 of 1000 ReLUs."
            ),
            "{md}"
        );
        assert!(md.contains("| 100 | snl | 81.00 (80.00-82.00) | 2 | 99 | s0 12, s1 12 |"), "{md}");
        assert!(md.contains("| 100 | random | 72.50 (70.00-75.00) | 2 | 99 | s0 12, s1 12 |"), "{md}");
        // Per seed 80 - 70 = +10 and 82 - 75 = +7; uniform +9 and +10.5.
        assert!(
            md.contains("| 100 | +8.50 (+7.00..+10.00 over 2 seeds) | +9.75 (+9.00..+10.50 over 2 seeds) |"),
            "{md}"
        );
        for line in [
            "- each of the 2 (budget, seed) cells has a run of snl, random, uniform",
            "- equal epochs_trained within each of the 2 (budget, seed) cells with more than one run",
            "- equal search_steps within each of the 2 (budget, seed) cells with more than one run",
            "- all 6 linearize runs keep at most their budget of ReLUs",
            "- one lambda0 for all 2 SNL runs: 0.0001",
            "- lambda_final > lambda0 in 1 of 2 SNL runs\n",
            "- SNL above random at 1 of the 1 budgets with both (paired by seed), every budget compared",
            "- SNL above uniform at 1 of the 1 budgets with both (paired by seed), every budget compared",
        ] {
            assert!(md.contains(line), "{line}\n{md}");
        }
        let planned = names(&rows);
        assert!(to_markdown(&rows, &groups(&rows), &planned).starts_with("7 of 7 planned runs finished.\n"));
    }

    #[test]
    fn the_checks_name_what_fails() {
        let mut rows = study();
        rows[3].epochs_trained = Some(2);
        rows[4].search_steps = Some(119);
        rows[2].lambda0 = Some(3e-4);
        rows[2].relu_count = Some(130);
        let checks = checks(&rows);
        assert_eq!(checks[1], "UNEQUAL epochs_trained: budget 100 seed 0: 2 vs 12");
        assert_eq!(checks[2], "UNEQUAL search_steps: budget 100 seed 1: 119 vs 120");
        assert_eq!(checks[3], "OVER BUDGET: snl-100-s1 (130 > 100)");
        assert_eq!(checks[4], "SEVERAL lambda0 among the SNL runs: 0.0001, 0.0003");
        rows[2].relu_count = None;
        assert_eq!(super::checks(&rows)[3], "1 linearize runs do not say their ReLU count or budget");
        // A missing control shows as a dash, not as a lead over nothing.
        let only_snl: Vec<Row> = rows.into_iter().filter(|r| r.selection != "uniform").collect();
        let md = to_markdown(&only_snl, &groups(&only_snl), &names(&only_snl));
        assert!(md.contains("| budget | SNL - random |\n"), "{md}");
        assert!(!md.contains("SNL - uniform"), "{md}");
    }

    /// What a half-finished study must not pass for: a cell SNL has alone, a control
    /// missing at a budget, a seed on one side only, fields no run states.
    #[test]
    fn a_partial_study_is_not_called_complete() {
        let mut rows = study();
        rows.push(row("snl", 200, 0, 79.0, 9));
        rows.remove(4); // random-100-s1
        let md = to_markdown(&rows, &groups(&rows), &names(&rows));
        assert!(md.contains("| 100 | random | 70.00 (one run) | 1 | 99 | s0 12 |"), "{md}");
        // Only seed 0 pairs with random: +10, not 81 - 70 = +11 over unequal seed sets.
        assert!(md.contains("| 100 | +10.00 (one seed); unpaired: snl s1 |"), "{md}");
        assert!(md.contains("| 200 | - | - |"), "{md}");
        let c = checks(&rows);
        assert_eq!(
            c[0],
            "INCOMPLETE cells: budget 100 seed 1 has only snl, uniform; budget 200 seed 0 has only snl"
        );
        assert_eq!(
            c[1],
            "equal epochs_trained within each of the 2 (budget, seed) cells with more than one run"
        );
        assert_eq!(
            c[6],
            "NOT COMPARED with random at budget 200; SNL above random at 1 of the 1 budgets with both (paired by seed)"
        );
        for r in rows.iter_mut() {
            r.search_steps = None;
            r.lambda_final = r.lambda0;
        }
        (rows[1].lambda0, rows[1].lambda_final) = (None, None);
        let c = checks(&rows);
        assert!(
            c[2].starts_with("MISSING search_steps in: snl-100-s0, snl-100-s1, random-100-s0"),
            "{}",
            c[2]
        );
        assert_eq!(c[4], "MISSING lambda0 in: snl-100-s0");
        assert_eq!(
            c[5],
            "LAMBDA NEVER GREW: lambda_final > lambda0 in 0 of 3 SNL runs; MISSING lambda_final in: snl-100-s0"
        );
    }
}
