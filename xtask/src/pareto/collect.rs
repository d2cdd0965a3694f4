//! Results: each finished run's `result.json` as a row, the rows of one (selection, budget)
//! summarised over seeds (mean and min-max), and the tables written from them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::paper::PaperSeries;
use super::plan::folder_name;
use crate::selection;

/// One finished run, read from its `result.json`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Row {
    /// The run folder's name.
    pub name: String,
    pub dir: PathBuf,
    /// `snl`, `random`, `uniform`, or `baseline` for a train run.
    pub selection: String,
    /// ReLUs allowed (a fraction resolved by `snl`); none for the baseline.
    pub budget: Option<u64>,
    pub seed: Option<u64>,
    pub relu_count: Option<u64>,
    pub relu_total: Option<u64>,
    pub test_top1: Option<f64>,
    pub val_top1: Option<f64>,
    /// Epochs that updated weights after the baseline (0 for the baseline itself).
    pub epochs_trained: Option<u64>,
    /// Optimizer steps of the search (snl) or of the frozen-mask training (controls).
    pub search_steps: Option<u64>,
    pub lambda0: Option<f64>,
    pub lambda_final: Option<f64>,
    pub wall_time_s: Option<f64>,
}

impl Row {
    pub fn from_result(name: &str, dir: &Path, v: &Value) -> Row {
        let u = |k: &str| v.get(k).and_then(Value::as_u64);
        let f = |k: &str| v.get(k).and_then(Value::as_f64);
        let top1 = |split: &str| v.get(split).and_then(|o| o.get("top1")).and_then(Value::as_f64);
        let baseline = v.get("command").and_then(Value::as_str) == Some("train");
        let selection = match v.get("selection").and_then(Value::as_str) {
            _ if baseline => selection::BASELINE.to_string(),
            Some(s) => s.to_string(),
            None => "unknown".to_string(),
        };
        Row {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            selection,
            budget: u("budget"),
            seed: u("seed"),
            relu_count: u("relu_count"),
            relu_total: u("relu_total"),
            test_top1: top1("test"),
            val_top1: top1("val"),
            // Epochs after the baseline (issue 15's definition): none for the baseline itself.
            epochs_trained: if baseline { Some(0) } else { u("epochs_trained") },
            search_steps: u("search_steps"),
            lambda0: f("lambda0"),
            lambda_final: f("lambda_final"),
            wall_time_s: f("wall_time_s"),
        }
    }

    /// Refuses figures no finished run has: a missing or non-numeric test top-1, an accuracy
    /// outside 0-100%, more ReLUs kept than the network has.
    pub fn check(&self) -> Result<(), String> {
        let percent = |v: f64| (0.0..=100.0).contains(&v);
        match self.test_top1 {
            None => return Err("no numeric test top-1 (`test.top1`)".into()),
            Some(v) if !percent(v) => return Err(format!("test top-1 {v} is not a percentage")),
            _ => {}
        }
        if let Some(v) = self.val_top1.filter(|&v| !percent(v)) {
            return Err(format!("validation top-1 {v} is not a percentage"));
        }
        match (self.relu_count, self.relu_total) {
            (Some(c), Some(t)) if c <= t && t > 0 => Ok(()),
            (Some(c), Some(t)) => Err(format!("{c} ReLUs kept of {t}")),
            _ => Err("no `relu_count` and `relu_total`".into()),
        }
    }

    /// Refuses a linearize run that does not say which it is, or says it is another run:
    /// a selection of its own, a budget, a seed and its epochs, agreeing with its folder's
    /// name (`snl-3225-s0`; a budget label such as `30pct` is not compared). A result.json
    /// copied into another run's folder would otherwise count as a second seed.
    pub fn check_identity(&self) -> Result<(), String> {
        if self.selection == selection::BASELINE {
            return Ok(());
        }
        if !selection::LINEARIZE.contains(&self.selection.as_str()) {
            return Err(format!(
                "selection `{}` is not one of {}",
                self.selection,
                selection::LINEARIZE.join(", ")
            ));
        }
        let (Some(budget), Some(seed)) = (self.budget, self.seed) else {
            return Err("no numeric `budget` and `seed`".into());
        };
        if self.epochs_trained.is_none() {
            return Err("no numeric `epochs_trained`".into());
        }
        let label = self
            .name
            .strip_prefix(&format!("{}-", self.selection))
            .and_then(|rest| rest.strip_suffix(&format!("-s{seed}")));
        match label {
            Some(l) if l.parse::<u64>().map_or(true, |b| b == budget) => Ok(()),
            _ => Err(format!(
                "it reports {} at budget {budget}, seed {seed}: not the run of folder `{}`",
                self.selection, self.name
            )),
        }
    }

    /// ReLUs kept as a fraction of the network's.
    pub fn fraction(&self) -> Option<f64> {
        let (c, t) = (self.relu_count?, self.relu_total?);
        (t > 0).then(|| c as f64 / t as f64)
    }
}

/// The rows of each of `dirs` that has a `result.json`, or every broken one (not JSON, or
/// figures no finished run can have: [`Row::check`]), one line each.
pub fn collect(dirs: &[PathBuf]) -> Result<Vec<Row>, Vec<String>> {
    let mut rows = Vec::new();
    let mut broken = Vec::new();
    for dir in dirs {
        let path = dir.join("result.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue, // not finished
            Err(e) => {
                broken.push(format!("{}: cannot read it ({e})", path.display()));
                continue;
            }
        };
        let row = serde_json::from_str::<Value>(&text)
            .map_err(|e| format!("not valid JSON ({e})"))
            .map(|v| Row::from_result(&folder_name(dir), dir, &v))
            .and_then(|row| row.check().and_then(|()| row.check_identity()).map(|()| row));
        match row {
            Ok(row) => rows.push(row),
            Err(why) => broken.push(format!("{}: {why}", path.display())),
        }
    }
    // One run per (selection, budget, seed): a second would be counted as another seed.
    let mut seen: BTreeMap<(&str, Option<u64>, Option<u64>), &Row> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.selection != selection::BASELINE) {
        if let Some(first) = seen.insert((r.selection.as_str(), r.budget, r.seed), r) {
            broken.push(format!(
                "{}: the same run ({} at budget {}, seed {}) as {}",
                r.dir.join("result.json").display(),
                r.selection,
                num(r.budget),
                num(r.seed),
                first.dir.join("result.json").display()
            ));
        }
    }
    if !broken.is_empty() {
        return Err(broken);
    }
    sort_rows(&mut rows);
    Ok(rows)
}

/// Baseline first, then by selection (snl, random, uniform), budget and seed.
pub fn sort_rows(rows: &mut [Row]) {
    rows.sort_by(|a, b| {
        let key = |r: &Row| {
            (selection::rank(&r.selection), r.budget.unwrap_or(0), r.seed.unwrap_or(0), r.name.clone())
        };
        key(a).cmp(&key(b))
    });
}

pub const CSV_HEADER: &str = "run,selection,budget,seed,relu_count,relu_total,test_top1,val_top1,\
                              epochs_trained,lambda0,lambda_final,wall_time_s";

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

/// `v`, or `-` when it is missing (tables and messages).
pub fn num<T: ToString>(v: Option<T>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

pub fn to_csv(rows: &[Row]) -> String {
    fn opt<T: ToString>(v: Option<T>) -> String {
        v.map(|v| v.to_string()).unwrap_or_default()
    }
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for r in rows {
        let fields = [
            csv_field(&r.name),
            csv_field(&r.selection),
            opt(r.budget),
            opt(r.seed),
            opt(r.relu_count),
            opt(r.relu_total),
            opt(r.test_top1),
            opt(r.val_top1),
            opt(r.epochs_trained),
            opt(r.lambda0),
            opt(r.lambda_final),
            opt(r.wall_time_s.map(|v| format!("{v:.1}"))),
        ];
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

/// The runs of one (selection, budget) over their seeds: test top-1 mean and min-max.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub selection: String,
    pub budget: Option<u64>,
    pub runs: usize,
    pub seeds: Vec<u64>,
    pub relu_count: f64,
    pub fraction: f64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    /// Each run's `epochs_trained`, in seed order (equal training shows as one value).
    pub epochs_trained: Vec<Option<u64>>,
    /// Non-dominated among the means of the same selection.
    pub front: bool,
}

/// The groups of `rows` (sorted by `sort_rows`) that have accuracies, in the same order.
pub fn groups(rows: &[Row]) -> Vec<Group> {
    let mut order: Vec<(String, Option<u64>)> = Vec::new();
    let mut members: BTreeMap<(String, Option<u64>), Vec<&Row>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.test_top1.is_some() && r.fraction().is_some()) {
        let key = (r.selection.clone(), r.budget);
        if !members.contains_key(&key) {
            order.push(key.clone());
        }
        members.entry(key).or_default().push(r);
    }
    let mut out: Vec<Group> = order
        .into_iter()
        .map(|key| {
            let rs = &members[&key];
            let n = rs.len() as f64;
            let acc: Vec<f64> = rs.iter().filter_map(|r| r.test_top1).collect();
            Group {
                selection: key.0.clone(),
                budget: key.1,
                runs: rs.len(),
                seeds: rs.iter().filter_map(|r| r.seed).collect(),
                relu_count: rs.iter().filter_map(|r| r.relu_count).sum::<u64>() as f64 / n,
                fraction: rs.iter().filter_map(|r| r.fraction()).sum::<f64>() / n,
                mean: acc.iter().sum::<f64>() / n,
                min: acc.iter().copied().fold(f64::INFINITY, f64::min),
                max: acc.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                epochs_trained: rs.iter().map(|r| r.epochs_trained).collect(),
                front: false,
            }
        })
        .collect();
    let mut by_selection: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, g) in out.iter().enumerate() {
        by_selection.entry(g.selection.clone()).or_default().push(i);
    }
    for idx in by_selection.values() {
        let pts: Vec<(f64, f64)> = idx.iter().map(|&i| (out[i].relu_count, out[i].mean)).collect();
        for (&i, on) in idx.iter().zip(pareto_front(&pts)) {
            out[i].front = on;
        }
    }
    out
}

/// Which points are non-dominated: no other point has at most as many ReLUs and at least
/// as much accuracy, one of them strictly. Equal points are all kept.
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<bool> {
    points
        .iter()
        .map(|&(r, a)| !points.iter().any(|&(r2, a2)| r2 <= r && a2 >= a && (r2 < r || a2 > a)))
        .collect()
}

pub fn to_json(rows: &[Row], groups: &[Group], paper: Option<&PaperSeries>) -> String {
    let runs: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "run": r.name, "dir": r.dir.display().to_string(), "selection": r.selection,
                "budget": r.budget, "seed": r.seed, "relu_count": r.relu_count, "relu_total": r.relu_total,
                "relu_fraction": r.fraction(), "test_top1": r.test_top1, "val_top1": r.val_top1,
                "epochs_trained": r.epochs_trained, "search_steps": r.search_steps,
                "lambda0": r.lambda0, "lambda_final": r.lambda_final,
                "wall_time_s": r.wall_time_s,
            })
        })
        .collect();
    let points: Vec<Value> = groups
        .iter()
        .map(|g| {
            json!({
                "selection": g.selection, "budget": g.budget, "runs": g.runs, "seeds": g.seeds,
                "relu_count_mean": g.relu_count, "relu_fraction_mean": g.fraction,
                "test_top1_mean": g.mean, "test_top1_min": g.min, "test_top1_max": g.max,
                "epochs_trained": g.epochs_trained, "pareto": g.front,
            })
        })
        .collect();
    let paper = paper.map(|p| {
        json!({
            "label": p.label,
            "relu_total": p.total,
            "source": "REFERENCE.md section 3 (the paper's Figure 3 as transcribed in later papers)",
            "points": p.points.iter().map(|(r, a)| json!({"relu_count": r, "relu_fraction": r / p.total, "test_top1": a})).collect::<Vec<_>>(),
        })
    });
    let doc = json!({ "runs": runs, "points": points, "spread": "test top-1 min and max over seeds", "paper": paper });
    serde_json::to_string_pretty(&doc).expect("json") + "\n"
}

/// The comparison a reader wants: per budget, each selection's mean (min-max) test top-1.
pub fn summary(groups: &[Group]) -> String {
    let mut budgets: Vec<u64> = groups.iter().filter_map(|g| g.budget).collect();
    budgets.dedup();
    budgets.sort_unstable();
    budgets.dedup();
    let sels: Vec<&str> =
        selection::LINEARIZE.iter().copied().filter(|s| groups.iter().any(|g| g.selection == *s)).collect();
    let mut out = format!("{:>8}", "budget");
    for s in &sels {
        out += &format!("  {s:<24}");
    }
    out = out.trim_end().to_string() + "\n";
    for b in budgets {
        out += &format!("{b:>8}");
        for s in &sels {
            let cell = groups
                .iter()
                .find(|g| g.selection == *s && g.budget == Some(b))
                .map_or("-".into(), |g| format!("{:.2} ({:.2}-{:.2}) n={}", g.mean, g.min, g.max, g.runs));
            out += &format!("  {cell:<24}");
        }
        out = out.trim_end().to_string() + "\n";
    }
    out
}

/// The phase (`train`, `search`, `frozen_mask`, `finetune`) and seconds of one
/// `metrics.jsonl` line, or `None` for a line that is not an epoch's.
pub fn logged_epoch(line: &str) -> Option<(String, f64)> {
    let v = serde_json::from_str::<Value>(line).ok()?;
    Some((v.get("phase")?.as_str()?.to_string(), v.get("seconds")?.as_f64()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, sel: &str, budget: u64, seed: u64, relus: u64, acc: f64) -> Row {
        Row {
            name: name.into(),
            selection: sel.into(),
            budget: Some(budget),
            seed: Some(seed),
            relu_count: Some(relus),
            relu_total: Some(1000),
            test_top1: Some(acc),
            epochs_trained: Some(9),
            ..Row::default()
        }
    }

    #[test]
    fn rows_from_result_json() {
        let v: Value = serde_json::from_str(
            r#"{"command":"linearize","selection":"snl","budget":500,"relu_count":498,"relu_total":1000,
                "val":{"top1":40.0},"test":{"top1":42.5},"wall_time_s":3.25,"seed":1,
                "search_epochs":4,"epochs_trained":12,"lambda0":0.0001,"lambda_final":0.000225}"#,
        )
        .unwrap();
        let r = Row::from_result("snl-500-s1", Path::new("x/snl-500-s1"), &v);
        assert_eq!(
            (r.selection.as_str(), r.budget, r.seed, r.epochs_trained),
            ("snl", Some(500), Some(1), Some(12))
        );
        assert_eq!((r.lambda0, r.lambda_final, r.val_top1), (Some(1e-4), Some(2.25e-4), Some(40.0)));
        assert_eq!(r.fraction(), Some(0.498));
        let t: Value =
            serde_json::from_str(r#"{"command":"train","selection":null,"budget":null,"relu_count":1000}"#)
                .unwrap();
        let b = Row::from_result("baseline", Path::new("x/baseline"), &t);
        assert_eq!(
            (b.selection.as_str(), b.budget, b.epochs_trained, b.lambda0),
            ("baseline", None, Some(0), None)
        );
    }

    #[test]
    fn csv_has_issue_15s_columns() {
        let mut base = row("base,line", "baseline", 0, 0, 1000, 90.0);
        (base.budget, base.epochs_trained) = (None, Some(0));
        let mut snl = row("snl-100-s0", "snl", 100, 0, 99, 80.5);
        (snl.lambda0, snl.lambda_final, snl.wall_time_s) = (Some(1e-4), Some(1.5e-4), Some(12.34));
        let mut rows = vec![snl, base];
        sort_rows(&mut rows);
        let csv = to_csv(&rows);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "run,selection,budget,seed,relu_count,relu_total,test_top1,val_top1,epochs_trained,lambda0,lambda_final,wall_time_s"
        );
        assert_eq!(lines[1], "\"base,line\",baseline,,0,1000,1000,90,,0,,,");
        assert_eq!(lines[2], "snl-100-s0,snl,100,0,99,1000,80.5,,9,0.0001,0.00015,12.3");
    }

    #[test]
    fn groups_give_mean_and_min_max_over_seeds() {
        let mut rows = vec![
            row("random-100-s1", "random", 100, 1, 100, 60.0),
            row("snl-100-s0", "snl", 100, 0, 98, 80.0),
            row("snl-100-s1", "snl", 100, 1, 100, 84.0),
            row("snl-200-s0", "snl", 200, 0, 200, 79.0),
            row("random-100-s0", "random", 100, 0, 100, 70.0),
            Row { name: "broken".into(), selection: "snl".into(), budget: Some(300), ..Row::default() },
        ];
        sort_rows(&mut rows);
        let g = groups(&rows);
        assert_eq!(g.len(), 3);
        assert_eq!((g[0].selection.as_str(), g[0].budget, g[0].runs), ("snl", Some(100), 2));
        assert_eq!((g[0].mean, g[0].min, g[0].max, g[0].relu_count), (82.0, 80.0, 84.0, 99.0));
        assert_eq!(g[0].seeds, [0, 1]);
        assert!(g[0].front && !g[1].front, "snl at 200 ReLUs is dominated by snl at 99");
        assert_eq!((g[2].selection.as_str(), g[2].mean, g[2].front), ("random", 65.0, true));
        let table = summary(&g);
        assert_eq!(
            table.lines().nth(1).unwrap(),
            "     100  82.00 (80.00-84.00) n=2   65.00 (60.00-70.00) n=2"
        );
        assert!(table.lines().nth(2).unwrap().starts_with("     200  79.00 (79.00-79.00) n=1   -"));
        let v: Value = serde_json::from_str(&to_json(&rows, &g, None)).unwrap();
        assert_eq!(v["runs"].as_array().unwrap().len(), 6);
        assert_eq!(v["points"][0]["test_top1_mean"], 82.0);
        assert_eq!(v["points"][0]["epochs_trained"], json!([9, 9]));
        assert!(v["paper"].is_null());
    }

    #[test]
    fn epochs_from_metrics_lines() {
        let line = r#"{"epoch":0,"phase":"search","seconds":12.5}"#;
        assert_eq!(logged_epoch(line), Some(("search".into(), 12.5)));
        assert_eq!(logged_epoch(r#"{"epoch":0,"seconds":1.0}"#), None);
        assert_eq!(logged_epoch(r#"{"epoch":0}"#), None);
        assert_eq!(logged_epoch("not json"), None);
    }

    #[test]
    fn pareto_front_keeps_non_dominated_points() {
        let pts = [(100.0, 50.0), (200.0, 60.0), (300.0, 55.0), (50.0, 50.0), (200.0, 60.0), (400.0, 70.0)];
        assert_eq!(pareto_front(&pts), vec![false, true, false, true, true, true]);
        assert_eq!(pareto_front(&[]), Vec::<bool>::new());
    }

    #[test]
    fn collect_reads_finished_runs_only_and_refuses_broken_ones() {
        let dir = std::env::temp_dir().join(format!("xtask-collect-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let snl = r#"{"command":"linearize","selection":"snl","budget":5,"seed":0,"epochs_trained":3,"relu_count":5,"relu_total":10,"test":{"top1":80}}"#;
        for (name, result) in [
            ("snl-5-s0", Some(snl)),
            ("baseline", Some(r#"{"command":"train","relu_count":10,"relu_total":10,"test":{"top1":90}}"#)),
            ("random-5-s0", None),
            ("not-json", Some("{")),
            ("nan", Some(r#"{"relu_count":5,"relu_total":10,"test":{"top1":"NaN"}}"#)),
            ("over-100", Some(r#"{"relu_count":5,"relu_total":10,"test":{"top1":250}}"#)),
            ("too-many", Some(r#"{"relu_count":11,"relu_total":10,"test":{"top1":50}}"#)),
            ("bad-val", Some(r#"{"relu_count":5,"relu_total":10,"test":{"top1":50},"val":{"top1":-1}}"#)),
            // Copied into another seed's folder, another budget's, or saying too little.
            ("snl-5-s1", Some(snl)),
            ("snl-7-s0", Some(snl)),
            ("snl-5pct-s0", Some(snl)),
            ("odd-5-s0", Some(snl.replace(r#""snl""#, r#""odd""#).as_str())),
            ("snl-6-s0", Some(snl.replace(r#""seed":0,"#, "").as_str())),
            (
                "uniform-5-s0",
                Some(snl.replace(r#""epochs_trained":3,"#, "").replace(r#""snl""#, r#""uniform""#).as_str()),
            ),
        ] {
            std::fs::create_dir_all(dir.join(name)).unwrap();
            let (file, text) = result.map_or(("config.json", "{}"), |r| ("result.json", r));
            std::fs::write(dir.join(name).join(file), text).unwrap();
        }
        let at = |names: &[&str]| names.iter().map(|n| dir.join(n)).collect::<Vec<PathBuf>>();
        let rows = collect(&at(&["snl-5-s0", "baseline", "random-5-s0", "nothing"])).unwrap();
        let names: Vec<String> = rows.into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["baseline", "snl-5-s0"]);
        let broken =
            collect(&at(&["snl-5-s0", "not-json", "nan", "over-100", "too-many", "bad-val"])).unwrap_err();
        let expect = [
            "not-json/result.json: not valid JSON",
            "nan/result.json: no numeric test top-1",
            "over-100/result.json: test top-1 250 is not a percentage",
            "too-many/result.json: 11 ReLUs kept of 10",
            "bad-val/result.json: validation top-1 -1 is not a percentage",
        ];
        assert_eq!(broken.len(), expect.len(), "{broken:?}");
        for (line, want) in broken.iter().zip(expect) {
            assert!(line.contains(want), "{line} lacks {want}");
        }
        let names =
            ["snl-5-s0", "snl-5-s1", "snl-7-s0", "snl-5pct-s0", "odd-5-s0", "snl-6-s0", "uniform-5-s0"];
        let broken = collect(&at(&names)).unwrap_err();
        let expect = [
            "snl-5-s1/result.json: it reports snl at budget 5, seed 0: not the run of folder `snl-5-s1`",
            "snl-7-s0/result.json: it reports snl at budget 5, seed 0: not the run of folder `snl-7-s0`",
            "odd-5-s0/result.json: selection `odd` is not one of snl, random, uniform",
            "snl-6-s0/result.json: no numeric `budget` and `seed`",
            "uniform-5-s0/result.json: no numeric `epochs_trained`",
            "snl-5pct-s0/result.json: the same run (snl at budget 5, seed 0) as ",
        ];
        assert_eq!(broken.len(), expect.len(), "{broken:?}");
        for (line, want) in broken.iter().zip(expect) {
            assert!(line.contains(want), "{line} lacks {want}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
