//! SVG charts written as text from plain data: the accuracy-vs-ReLU-fraction figure of a
//! sweep and the per-site bar chart of one run. In the sweep figure every run is exactly one
//! `<circle class="run ...">`; nothing else is a circle (means are diamonds, legend swatches
//! rectangles, the paper's points hollow squares).

use std::fmt::Write as _;

use serde_json::Value;

use crate::selection;

const W: f64 = 900.0;
const H: f64 = 520.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 620.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 460.0;
const PAPER_COLOUR: &str = "#ff7f0e";

/// One run.
#[derive(Debug, Clone, PartialEq)]
pub struct Dot {
    pub selection: String,
    pub name: String,
    /// ReLUs kept, as a fraction of the network's.
    pub fraction: f64,
    pub relus: u64,
    pub top1: f64,
}

/// The runs of one (selection, budget) over seeds: mean and min-max of test top-1.
#[derive(Debug, Clone, PartialEq)]
pub struct Mean {
    pub selection: String,
    pub fraction: f64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
    /// Non-dominated among its selection's means: drawn with a black ring.
    pub front: bool,
}

/// A curve to compare with (the paper's points), by ReLU fraction.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    pub label: String,
    /// (fraction of ReLUs kept, test top-1 %).
    pub points: Vec<(f64, f64)>,
}

/// A number without float noise: at most 4 decimals, trailing zeros dropped.
pub fn fmt_num(x: f64) -> String {
    let s = format!("{x:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Log10 axis over whole decades covering the positive `xs` (at least one decade).
fn decades(xs: &[f64]) -> (i32, i32) {
    let pos: Vec<f64> = xs.iter().copied().filter(|x| *x > 0.0 && x.is_finite()).collect();
    if pos.is_empty() {
        return (0, 2);
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
    let step = [(40.0, 10.0), (15.0, 5.0), (6.0, 2.0)].iter().find(|(s, _)| span > *s).map_or(1.0, |p| p.1);
    let lo = (((mn - step * 0.5) / step).floor() * step).max(0.0);
    let hi = (((mx + step * 0.5) / step).ceil() * step).min(100.0);
    (lo, if hi > lo { hi } else { lo + step }, step)
}

/// The sweep's figure: test top-1 against the percentage of ReLUs kept (log axis), a colour
/// per selection; each run a small dot, each (selection, budget) its mean (diamond) with a
/// min-max bar, the means of a selection joined; the baseline a level line; the paper's
/// points hollow squares.
pub fn pareto_svg(dots: &[Dot], means: &[Mean], reference: Option<&Reference>, title: &str) -> String {
    let pct = |f: f64| f * 100.0;
    let refs: Vec<(f64, f64)> = reference.map(|r| r.points.clone()).unwrap_or_default();
    let xs: Vec<f64> = dots.iter().map(|d| pct(d.fraction)).chain(refs.iter().map(|p| pct(p.0))).collect();
    let ys: Vec<f64> = dots.iter().map(|d| d.top1).chain(refs.iter().map(|p| p.1)).collect();
    let (lo, hi) = decades(&xs);
    let (ylo, yhi, ystep) = y_range(&ys);
    let sx = |f: f64| LEFT + (pct(f).max(1e-9).log10() - lo as f64) / (hi - lo) as f64 * (RIGHT - LEFT);
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

    // Grid, ticks and axis labels.
    let _ = writeln!(s, r##"<g class="grid" stroke="#e4e4e4" stroke-width="1">"##);
    for k in lo..=hi {
        let base = 10f64.powi(k) / 100.0;
        let x = sx(base);
        let _ = writeln!(s, r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{BOTTOM}" stroke="#c8c8c8"/>"##);
        for m in (2..10).filter(|_| k < hi) {
            let x = sx(base * m as f64);
            let _ = writeln!(s, r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{BOTTOM}"/>"##);
        }
    }
    let ticks: Vec<f64> = (0..).map(|i| ylo + i as f64 * ystep).take_while(|y| *y <= yhi + 1e-9).collect();
    for y in &ticks {
        let _ = writeln!(s, r##"<line x1="{LEFT}" y1="{:.1}" x2="{RIGHT}" y2="{:.1}"/>"##, sy(*y), sy(*y));
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
        let x = sx(10f64.powi(k) / 100.0);
        let label = format!("{}%", fmt_num(10f64.powi(k)));
        let _ =
            writeln!(s, r##"<text x="{x:.1}" y="{}" text-anchor="middle">{label}</text>"##, BOTTOM + 18.0);
    }
    for y in &ticks {
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT - 6.0,
            sy(*y) + 4.0,
            fmt_num(*y)
        );
    }
    let _ = writeln!(s, "</g>");
    let _ = writeln!(
        s,
        r##"<text x="{}" y="{}" text-anchor="middle">ReLUs kept, % of the network's (log scale)</text>"##,
        (LEFT + RIGHT) / 2.0,
        BOTTOM + 42.0
    );
    let _ = writeln!(
        s,
        r##"<text transform="translate(22 {}) rotate(-90)" text-anchor="middle">test top-1 accuracy (%)</text>"##,
        (TOP + BOTTOM) / 2.0
    );

    let mut selections: Vec<&str> = dots.iter().map(|d| d.selection.as_str()).collect();
    selections.sort_by_key(|s| selection::rank(s));
    selections.dedup();

    // The baseline's mean accuracy as a level line.
    for m in means.iter().filter(|m| m.selection == selection::BASELINE) {
        let py = sy(m.mean);
        let _ = writeln!(
            s,
            r##"<line class="baseline-level" x1="{LEFT}" y1="{py:.1}" x2="{RIGHT}" y2="{py:.1}" stroke="{}" stroke-dasharray="2 4"/>"##,
            selection::colour(selection::BASELINE)
        );
    }

    // The paper's points: hollow squares joined by a dotted line.
    if let Some(r) = reference {
        let mut sorted = r.points.clone();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        let line: Vec<String> = sorted.iter().map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect();
        let _ = writeln!(
            s,
            r##"<polyline class="paper-line" points="{}" fill="none" stroke="{PAPER_COLOUR}" stroke-dasharray="1 3"/>"##,
            line.join(" ")
        );
        for &(x, y) in &sorted {
            let _ = writeln!(
                s,
                r##"<rect class="paper" x="{:.1}" y="{:.1}" width="9" height="9" fill="none" stroke="{PAPER_COLOUR}" stroke-width="1.8"><title>{}: {}% of ReLUs, {}%</title></rect>"##,
                sx(x) - 4.5,
                sy(y) - 4.5,
                escape(&r.label),
                fmt_num(pct(x)),
                y
            );
        }
    }

    // Each selection's means joined, then each mean's min-max bar and diamond.
    for sel in selections.iter().filter(|s| **s != selection::BASELINE) {
        let mut line: Vec<&Mean> = means.iter().filter(|m| m.selection == *sel).collect();
        line.sort_by(|a, b| a.fraction.total_cmp(&b.fraction));
        let pts: Vec<String> =
            line.iter().map(|m| format!("{:.1},{:.1}", sx(m.fraction), sy(m.mean))).collect();
        let (width, dash) =
            if *sel == selection::SNL { (2.0, "") } else { (1.2, r##" stroke-dasharray="5 3""##) };
        let _ = writeln!(
            s,
            r##"<polyline class="means {sel}" points="{}" fill="none" stroke="{}" stroke-width="{width}"{dash}/>"##,
            pts.join(" "),
            selection::colour(sel)
        );
    }
    for m in means {
        let (x, colour) = (sx(m.fraction), selection::colour(&m.selection));
        // One run has no spread: a bar of zero length would pass for two runs that agree.
        if m.runs > 1 {
            let _ = writeln!(
                s,
                r##"<line class="spread {}" x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="{colour}" stroke-width="1.5"/>"##,
                escape(&m.selection),
                sy(m.min),
                sy(m.max)
            );
        }
        let (y, ring) = (sy(m.mean), if m.front { "black" } else { "white" });
        let _ = writeln!(
            s,
            r##"<path class="mean {}" d="M{x:.1},{:.1} l6,6 l-6,6 l-6,-6 z" fill="{colour}" stroke="{ring}" stroke-width="1.2"><title>{}: {}% of ReLUs, mean {}% (min {}, max {}) over {} run(s)</title></path>"##,
            escape(&m.selection),
            y - 6.0,
            escape(&m.selection),
            fmt_num(pct(m.fraction)),
            fmt_num(m.mean),
            fmt_num(m.min),
            fmt_num(m.max),
            m.runs
        );
    }

    // One circle per run.
    for d in dots {
        let _ = writeln!(
            s,
            r##"<circle class="run {}" cx="{:.1}" cy="{:.1}" r="2.5" fill="{}" fill-opacity="0.6"><title>{}: {} ReLUs, {}% test top-1</title></circle>"##,
            escape(&d.selection),
            sx(d.fraction),
            sy(d.top1),
            selection::colour(&d.selection),
            escape(&d.name),
            d.relus,
            fmt_num(d.top1)
        );
    }

    // Legend.
    let lx = RIGHT + 20.0;
    let mut ly = TOP + 10.0;
    let _ = writeln!(s, r##"<g class="legend">"##);
    for sel in &selections {
        let _ = writeln!(
            s,
            r##"<rect x="{lx}" y="{:.1}" width="11" height="11" fill="{}"/><text x="{}" y="{ly:.1}">{}</text>"##,
            ly - 9.0,
            selection::colour(sel),
            lx + 18.0,
            escape(&selection::legend(sel))
        );
        ly += 20.0;
    }
    if let Some(r) = reference {
        let _ = writeln!(
            s,
            r##"<rect x="{}" y="{:.1}" width="9" height="9" fill="none" stroke="{PAPER_COLOUR}" stroke-width="1.8"/><text x="{}" y="{ly:.1}">{}</text>"##,
            lx + 1.0,
            ly - 8.0,
            lx + 18.0,
            escape(&r.label)
        );
        ly += 20.0;
    }
    let _ = writeln!(
        s,
        r##"<text x="{lx}" y="{ly:.1}" fill="#555">dots: runs; diamonds: mean over seeds,</text><text x="{lx}" y="{:.1}" fill="#555">bars: min-max; ringed: non-dominated</text>"##,
        ly + 15.0
    );
    if dots.is_empty() {
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
            selection::colour(selection::SNL),
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
        selection::colour(selection::SNL),
        width - 94.0
    );
    let _ = writeln!(s, "</svg>");
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot(name: &str, sel: &str, relus: u64, top1: f64) -> Dot {
        Dot { selection: sel.into(), name: name.into(), fraction: relus as f64 / 122_880.0, relus, top1 }
    }

    fn mean(sel: &str, relus: u64, mean: f64, front: bool) -> Mean {
        let fraction = relus as f64 / 122_880.0;
        Mean { selection: sel.into(), fraction, mean, min: mean - 1.0, max: mean + 1.0, runs: 2, front }
    }

    #[test]
    fn one_circle_per_run_and_a_diamond_per_mean() {
        let dots = [
            dot("baseline", "baseline", 122_880, 91.0),
            dot("snl-3225-s0", "snl", 3_200, 70.0),
            dot("snl-3225-s1", "snl", 3_220, 72.0),
            dot("snl-24975-s0", "snl", 24_900, 85.0),
            dot("random-3225-s0", "random", 3_225, 40.0),
            dot("uniform-3225-s0", "uniform", 3_225, 50.5),
        ];
        let means = [
            mean("baseline", 122_880, 91.0, true),
            mean("snl", 3_210, 71.0, true),
            mean("snl", 24_900, 85.0, true),
            Mean { runs: 1, min: 40.0, max: 40.0, ..mean("random", 3_225, 40.0, true) },
            mean("uniform", 3_225, 50.5, false),
        ];
        let paper = Reference { label: "paper <w64>".into(), points: vec![(0.026, 88.23), (0.1, 92.27)] };
        let svg = pareto_svg(&dots, &means, Some(&paper), "t <&> t");
        assert_eq!(svg.matches("<circle").count(), 6, "one per run");
        assert_eq!(svg.matches(r##"<circle class="run snl""##).count(), 3);
        assert_eq!(svg.matches(r##"<path class="mean "##).count(), 5);
        assert_eq!(svg.matches(r##"<line class="spread "##).count(), 4, "none for a single run");
        assert!(!svg.contains(r##"<line class="spread random""##));
        assert_eq!(svg.matches(r##"stroke="black" stroke-width="1.2""##).count(), 4, "ringed means");
        assert_eq!(svg.matches(r##"class="paper""##).count(), 2);
        assert!(svg.contains(r##"<polyline class="means snl""##));
        assert!(svg.contains("paper &lt;w64&gt;") && svg.contains("t &lt;&amp;&gt; t"));
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // Decades from 1% to 100% of the ReLUs (the data spans 2.6% .. 100%).
        for label in [">1%<", ">10%<", ">100%<"] {
            assert!(svg.contains(label), "{label}");
        }
        for sel in ["snl", "random", "uniform", "baseline"] {
            assert!(svg.contains(selection::colour(sel)), "{sel}");
        }
    }

    #[test]
    fn an_empty_sweep_still_draws_axes() {
        let svg = pareto_svg(&[], &[], None, "empty");
        assert_eq!(svg.matches("<circle").count(), 0);
        assert!(svg.contains("no finished runs yet"));
    }

    #[test]
    fn axes() {
        assert_eq!(decades(&[2.6, 100.0]), (0, 2));
        assert_eq!(decades(&[10.0]), (1, 2));
        assert_eq!(decades(&[]), (0, 2));
        assert_eq!(y_range(&[40.0, 91.0]), (30.0, 100.0, 10.0));
        let (lo, hi, _) = y_range(&[99.5]);
        assert!(lo < 99.5 && hi <= 100.0 && hi > lo);
        assert_eq!(nice_ceiling(16_384.0), 20_000.0);
        assert_eq!(nice_ceiling(5000.0), 5000.0);
        assert_eq!(fmt_num(0.1 + 0.2), "0.3");
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
