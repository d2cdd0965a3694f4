//! SVG charts written as text: the accuracy-vs-ReLUs Pareto plot and the per-site bar chart.
//! Every run is exactly one `<circle class="run ...">`; nothing else in the Pareto plot is
//! a circle (legend swatches are rectangles, the paper's points hollow squares).

use std::fmt::Write as _;

use serde_json::Value;

use crate::pareto::{PaperSeries, Row, fmt_num};

const W: f64 = 860.0;
const H: f64 = 520.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 640.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 460.0;

pub fn colour(selection: &str) -> &'static str {
    match selection {
        "baseline" => "#222222",
        "snl" => "#d62728",
        "random" => "#1f77b4",
        "uniform" => "#2ca02c",
        _ => "#9467bd",
    }
}

const PAPER_COLOUR: &str = "#ff7f0e";

fn legend_name(selection: &str) -> String {
    match selection {
        "baseline" => "baseline (all ReLUs)".into(),
        "snl" => "SNL (learned masks)".into(),
        "random" => "random pixels".into(),
        "uniform" => "uniform per layer".into(),
        other => other.to_string(),
    }
}

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// `100`, `1k`, `10k`, `1M` for 10^k.
fn decade_label(k: i32) -> String {
    match k {
        ..=2 => fmt_num(10f64.powi(k)),
        3..=5 => format!("{}k", 10u64.pow((k - 3) as u32)),
        6..=8 => format!("{}M", 10u64.pow((k - 6) as u32)),
        _ => format!("1e{k}"),
    }
}

/// Log10 x axis over whole decades covering `xs` (at least one decade).
fn decades(xs: &[f64]) -> (i32, i32) {
    let pos: Vec<f64> = xs.iter().copied().filter(|x| *x > 0.0 && x.is_finite()).collect();
    if pos.is_empty() {
        return (2, 6);
    }
    let lo = pos.iter().copied().fold(f64::INFINITY, f64::min).log10().floor() as i32;
    let mut hi = pos.iter().copied().fold(0.0, f64::max).log10().ceil() as i32;
    if hi <= lo {
        hi = lo + 1;
    }
    (lo, hi)
}

/// Y range in percent, on a round step, inside [0, 100].
fn y_range(ys: &[f64]) -> (f64, f64, f64) {
    let fin: Vec<f64> = ys.iter().copied().filter(|y| y.is_finite()).collect();
    if fin.is_empty() {
        return (0.0, 100.0, 10.0);
    }
    let (mn, mx) = fin.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &y| (a.min(y), b.max(y)));
    let span = (mx - mn).max(1.0);
    let step = if span > 40.0 {
        10.0
    } else if span > 15.0 {
        5.0
    } else if span > 6.0 {
        2.0
    } else {
        1.0
    };
    let lo = (((mn - step * 0.5) / step).floor() * step).max(0.0);
    let hi = (((mx + step * 0.5) / step).ceil() * step).min(100.0);
    (lo, if hi > lo { hi } else { lo + step }, step)
}

/// The Pareto plot: test top-1 against ReLUs kept (log axis), a colour per selection,
/// each selection's non-dominated points ringed and joined, the paper's points hollow.
pub fn pareto_svg(rows: &[Row], paper: Option<&PaperSeries>, title: &str) -> String {
    let pts: Vec<(&Row, f64, f64)> = rows.iter().filter_map(|r| r.point().map(|(x, y)| (r, x, y))).collect();
    let paper_pts: Vec<(f64, f64)> = paper.map(|p| p.points.clone()).unwrap_or_default();
    let xs: Vec<f64> = pts.iter().map(|p| p.1).chain(paper_pts.iter().map(|p| p.0)).collect();
    let ys: Vec<f64> = pts.iter().map(|p| p.2).chain(paper_pts.iter().map(|p| p.1)).collect();
    let (lo, hi) = decades(&xs);
    let (ylo, yhi, ystep) = y_range(&ys);
    let sx = |x: f64| LEFT + (x.max(1e-9).log10() - lo as f64) / (hi - lo) as f64 * (RIGHT - LEFT);
    let sy = |y: f64| BOTTOM - (y - ylo) / (yhi - ylo) * (BOTTOM - TOP);

    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"##
    );
    let _ = writeln!(s, r##"<rect width="{W}" height="{H}" fill="white"/>"##);
    let _ = writeln!(
        s,
        r##"<text x="{}" y="28" text-anchor="middle" font-size="15">{}</text>"##,
        (LEFT + RIGHT) / 2.0,
        escape(title)
    );

    // Grid and ticks.
    let _ = writeln!(s, r##"<g class="grid" stroke="#e4e4e4" stroke-width="1">"##);
    for k in lo..=hi {
        let base = 10f64.powi(k);
        let x = sx(base);
        let _ = writeln!(s, r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{BOTTOM}" stroke="#c8c8c8"/>"##);
        if k < hi {
            for m in 2..10 {
                let x = sx(base * m as f64);
                let _ = writeln!(s, r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{BOTTOM}"/>"##);
            }
        }
    }
    let mut y = ylo;
    while y <= yhi + 1e-9 {
        let py = sy(y);
        let _ = writeln!(s, r##"<line x1="{LEFT}" y1="{py:.1}" x2="{RIGHT}" y2="{py:.1}"/>"##);
        y += ystep;
    }
    let _ = writeln!(s, "</g>");
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{}" height="{}" fill="none" stroke="#444"/>"##,
        RIGHT - LEFT,
        BOTTOM - TOP
    );
    let _ = writeln!(s, r##"<g class="ticks" fill="#333">"##);
    for k in lo..=hi {
        let x = sx(10f64.powi(k));
        let _ = writeln!(
            s,
            r##"<text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
            BOTTOM + 18.0,
            decade_label(k)
        );
    }
    let mut y = ylo;
    while y <= yhi + 1e-9 {
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT - 6.0,
            sy(y) + 4.0,
            fmt_num(y)
        );
        y += ystep;
    }
    let _ = writeln!(s, "</g>");
    let _ = writeln!(
        s,
        r##"<text x="{}" y="{}" text-anchor="middle">ReLUs kept (log scale)</text>"##,
        (LEFT + RIGHT) / 2.0,
        BOTTOM + 42.0
    );
    let _ = writeln!(
        s,
        r##"<text transform="translate(22 {}) rotate(-90)" text-anchor="middle">test top-1 accuracy (%)</text>"##,
        (TOP + BOTTOM) / 2.0
    );

    // Selections present, in a fixed order, then anything else.
    let mut selections: Vec<&str> = Vec::new();
    for want in ["baseline", "snl", "random", "uniform"] {
        if pts.iter().any(|p| p.0.selection == want) {
            selections.push(want);
        }
    }
    for p in &pts {
        if !selections.contains(&p.0.selection.as_str()) {
            selections.push(&p.0.selection);
        }
    }

    // The baseline's accuracy as a level line.
    for (r, _, acc) in pts.iter().filter(|p| p.0.selection == "baseline") {
        let py = sy(*acc);
        let _ = writeln!(
            s,
            r##"<line class="baseline-level" x1="{LEFT}" y1="{py:.1}" x2="{RIGHT}" y2="{py:.1}" stroke="{}" stroke-dasharray="2 4"><title>{}</title></line>"##,
            colour("baseline"),
            escape(&r.name)
        );
    }

    // Fronts: each selection's non-dominated points joined, SNL bold.
    for sel in selections.iter().filter(|s| **s != "baseline") {
        let mut front: Vec<(f64, f64)> =
            pts.iter().filter(|p| p.0.selection == *sel && p.0.pareto).map(|p| (p.1, p.2)).collect();
        if front.len() < 2 {
            continue;
        }
        front.sort_by(|a, b| a.0.total_cmp(&b.0));
        let line: Vec<String> = front.iter().map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect();
        let (width, dash) = if *sel == "snl" { (2.0, "") } else { (1.2, r##" stroke-dasharray="5 3""##) };
        let _ = writeln!(
            s,
            r##"<polyline class="front {sel}" points="{}" fill="none" stroke="{}" stroke-width="{width}"{dash}/>"##,
            line.join(" "),
            colour(sel)
        );
    }

    // The paper's points: hollow squares joined by a dotted line.
    if let Some(p) = paper {
        let mut sorted = p.points.clone();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        if sorted.len() > 1 {
            let line: Vec<String> =
                sorted.iter().map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect();
            let _ = writeln!(
                s,
                r##"<polyline class="paper-line" points="{}" fill="none" stroke="{PAPER_COLOUR}" stroke-dasharray="1 3"/>"##,
                line.join(" ")
            );
        }
        for &(x, y) in &sorted {
            let _ = writeln!(
                s,
                r##"<rect class="paper" x="{:.1}" y="{:.1}" width="9" height="9" fill="none" stroke="{PAPER_COLOUR}" stroke-width="1.8"><title>paper: {} ReLUs, {}%</title></rect>"##,
                sx(x) - 4.5,
                sy(y) - 4.5,
                x,
                y
            );
        }
    }

    // One circle per run.
    for (r, x, y) in &pts {
        let (stroke, extra) =
            if r.pareto && r.selection != "baseline" { ("black", " front") } else { ("white", "") };
        let _ = writeln!(
            s,
            r##"<circle class="run {}{extra}" cx="{:.1}" cy="{:.1}" r="5" fill="{}" stroke="{stroke}" stroke-width="1.5"><title>{}: {} ReLUs, {}% test top-1</title></circle>"##,
            escape(&r.selection),
            sx(*x),
            sy(*y),
            colour(&r.selection),
            escape(&r.name),
            x,
            fmt_num(*y)
        );
    }

    // Legend.
    let lx = RIGHT + 20.0;
    let mut ly = TOP + 10.0;
    let _ = writeln!(s, r##"<g class="legend">"##);
    for sel in &selections {
        let _ = writeln!(
            s,
            r##"<rect x="{lx}" y="{:.1}" width="11" height="11" rx="5.5" fill="{}"/><text x="{}" y="{:.1}">{}</text>"##,
            ly - 9.0,
            colour(sel),
            lx + 18.0,
            ly,
            escape(&legend_name(sel))
        );
        ly += 20.0;
    }
    if let Some(p) = paper {
        let _ = writeln!(
            s,
            r##"<rect x="{}" y="{:.1}" width="9" height="9" fill="none" stroke="{PAPER_COLOUR}" stroke-width="1.8"/><text x="{}" y="{:.1}">{}</text>"##,
            lx + 1.0,
            ly - 8.0,
            lx + 18.0,
            ly,
            escape(&p.label)
        );
        ly += 20.0;
    }
    let _ = writeln!(
        s,
        r##"<rect x="{lx}" y="{:.1}" width="11" height="11" rx="5.5" fill="#bbbbbb" stroke="black" stroke-width="1.5"/><text x="{}" y="{:.1}">non-dominated</text>"##,
        ly - 9.0,
        lx + 18.0,
        ly
    );
    if pts.is_empty() {
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="middle" fill="#888">no finished runs yet</text>"##,
            (LEFT + RIGHT) / 2.0,
            (TOP + BOTTOM) / 2.0
        );
    }
    let _ = writeln!(s, "</g>\n</svg>");
    s
}

/// A round upper bound: 1, 2 or 5 times a power of ten.
fn nice_ceiling(x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * p).find(|v| *v >= x).unwrap_or(10.0 * p)
}

/// Kept and total ReLUs per site from `snl count --json`: a grey bar for the site's total,
/// a coloured bar for what is kept, the kept fraction above.
pub fn sites_svg(count: &Value, title: &str) -> Result<String, String> {
    let sites = count.get("sites").and_then(Value::as_array).ok_or("snl count --json: no `sites` array")?;
    let mut bars = Vec::new();
    for site in sites {
        let name = site.get("name").and_then(Value::as_str).ok_or("a site without `name`")?;
        let total = site.get("total").and_then(Value::as_u64).ok_or("a site without `total`")?;
        let kept = site.get("kept").and_then(Value::as_u64).ok_or("a site without `kept`")?;
        bars.push((name.to_string(), kept, total));
    }
    let kept_all = count.get("kept").and_then(Value::as_u64).unwrap_or(bars.iter().map(|b| b.1).sum());
    let total_all = count.get("total").and_then(Value::as_u64).unwrap_or(bars.iter().map(|b| b.2).sum());
    let (left, top, plot_h, bar_w, gap) = (80.0, 60.0, 280.0, 22.0, 8.0);
    let width = (left + bars.len() as f64 * (bar_w + gap) + 40.0).max(560.0);
    let height = top + plot_h + 150.0;
    let bottom = top + plot_h;
    let ymax = nice_ceiling(bars.iter().map(|b| b.2).max().unwrap_or(1) as f64);
    let sy = |v: f64| bottom - v / ymax * plot_h;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">"##
    );
    let _ = writeln!(s, r##"<rect width="{width}" height="{height}" fill="white"/>"##);
    let pct = if total_all > 0 { 100.0 * kept_all as f64 / total_all as f64 } else { 0.0 };
    let _ = writeln!(
        s,
        r##"<text x="{left}" y="24" font-size="14">{}</text><text x="{left}" y="42" fill="#555">{kept_all} of {total_all} ReLUs kept ({pct:.2}%), {} sites</text>"##,
        escape(title),
        bars.len()
    );
    for i in 0..=4 {
        let v = ymax * i as f64 / 4.0;
        let y = sy(v);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e4e4e4"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            width - 30.0,
            left - 6.0,
            y + 4.0,
            fmt_num(v)
        );
    }
    let _ = writeln!(
        s,
        r##"<text transform="translate(18 {}) rotate(-90)" text-anchor="middle">ReLUs</text>"##,
        top + plot_h / 2.0
    );
    for (i, (name, kept, total)) in bars.iter().enumerate() {
        let x = left + gap / 2.0 + i as f64 * (bar_w + gap);
        let (yt, yk) = (sy(*total as f64), sy(*kept as f64));
        let frac = if *total > 0 { 100.0 * *kept as f64 / *total as f64 } else { 0.0 };
        let _ = writeln!(
            s,
            r##"<rect class="site-total" x="{x:.1}" y="{yt:.1}" width="{bar_w}" height="{:.1}" fill="#d9d9d9"><title>{}: {total} ReLUs</title></rect>"##,
            bottom - yt,
            escape(name)
        );
        let _ = writeln!(
            s,
            r##"<rect class="site-kept" x="{x:.1}" y="{yk:.1}" width="{bar_w}" height="{:.1}" fill="{}"><title>{}: {kept} of {total} kept ({frac:.1}%)</title></rect>"##,
            bottom - yk,
            colour("snl"),
            escape(name)
        );
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="9">{}%</text>"##,
            x + bar_w / 2.0,
            yt - 4.0,
            fmt_num((frac * 10.0).round() / 10.0)
        );
        let _ = writeln!(
            s,
            r##"<text transform="translate({:.1} {:.1}) rotate(-60)" text-anchor="end">{}</text>"##,
            x + bar_w / 2.0 + 3.0,
            bottom + 10.0,
            escape(name)
        );
    }
    let _ = writeln!(
        s,
        r##"<line x1="{left}" y1="{bottom}" x2="{:.1}" y2="{bottom}" stroke="#444"/>"##,
        width - 30.0
    );
    let _ = writeln!(
        s,
        r##"<rect x="{:.1}" y="14" width="11" height="11" fill="#d9d9d9"/><text x="{:.1}" y="24">total</text><rect x="{:.1}" y="30" width="11" height="11" fill="{}"/><text x="{:.1}" y="40">kept</text>"##,
        width - 110.0,
        width - 94.0,
        width - 110.0,
        colour("snl"),
        width - 94.0
    );
    let _ = writeln!(s, "</svg>");
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pareto::{mark_fronts, paper_series};

    fn row(name: &str, sel: &str, relus: u64, acc: Option<f64>) -> Row {
        Row {
            name: name.into(),
            selection: sel.into(),
            relu_count: Some(relus),
            relu_total: Some(122_880),
            test_top1: acc,
            ..Row::default()
        }
    }

    #[test]
    fn one_circle_per_run() {
        let mut rows = vec![
            row("baseline", "baseline", 122_880, Some(91.0)),
            row("snl-1pct", "snl", 1_200, Some(70.0)),
            row("snl-10pct", "snl", 12_000, Some(85.0)),
            row("random-1pct", "random", 1_229, Some(40.0)),
            row("uniform-1pct", "uniform", 1_229, Some(50.5)),
            row("broken", "snl", 5_000, None),
        ];
        mark_fronts(&mut rows);
        let paper = paper_series("cifar10", "resnet18");
        let svg = pareto_svg(&rows, paper.as_ref(), "t <&> t");
        assert_eq!(svg.matches("<circle").count(), 5, "one per run with an accuracy");
        assert_eq!(svg.matches(r##"class="run "##).count(), 5);
        assert_eq!(svg.matches(r##"class="run snl front""##).count(), 2);
        assert_eq!(svg.matches(r##"class="paper""##).count(), 3);
        assert!(svg.contains(r##"<polyline class="front snl""##));
        assert!(svg.contains("t &lt;&amp;&gt; t"));
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // Decade ticks from 1k to 1M (the data spans 1,200 .. 122,880 ReLUs).
        for label in [">1k<", ">10k<", ">100k<", ">1M<"] {
            assert!(svg.contains(label), "{label}");
        }
        for c in ["#d62728", "#1f77b4", "#2ca02c", "#222222"] {
            assert!(svg.contains(c), "{c}");
        }
    }

    #[test]
    fn an_empty_sweep_still_draws_axes() {
        let svg = pareto_svg(&[], None, "empty");
        assert_eq!(svg.matches("<circle").count(), 0);
        assert!(svg.contains("no finished runs yet"));
    }

    #[test]
    fn axes() {
        assert_eq!(decades(&[1200.0, 122_880.0]), (3, 6));
        assert_eq!(decades(&[1000.0]), (3, 4));
        assert_eq!(decades(&[]), (2, 6));
        assert_eq!(decade_label(2), "100");
        assert_eq!(decade_label(4), "10k");
        assert_eq!(decade_label(6), "1M");
        let (lo, hi, step) = y_range(&[40.0, 91.0]);
        assert_eq!((lo, hi, step), (30.0, 100.0, 10.0));
        let (lo, hi, _) = y_range(&[99.5]);
        assert!(lo < 99.5 && hi <= 100.0 && hi > lo);
        assert_eq!(nice_ceiling(16_384.0), 20_000.0);
        assert_eq!(nice_ceiling(5000.0), 5000.0);
    }

    #[test]
    fn one_bar_per_site() {
        let count: Value = serde_json::from_str(
            r##"{"total":300,"kept":40,"threshold":0.01,"sites":[
                {"name":"layer1.0.alpha1","shape":[4,8,8],"total":256,"kept":30},
                {"name":"layer4.1.alpha2","shape":[1,2,22],"total":44,"kept":10}]}"##,
        )
        .unwrap();
        let svg = sites_svg(&count, "snl-10pct").unwrap();
        assert_eq!(svg.matches(r##"class="site-kept""##).count(), 2);
        assert_eq!(svg.matches(r##"class="site-total""##).count(), 2);
        assert!(svg.contains("40 of 300 ReLUs kept (13.33%)"));
        assert!(svg.contains("layer4.1.alpha2: 10 of 44 kept"));
        assert!(sites_svg(&serde_json::json!({"total": 1}), "x").is_err());
    }
}
