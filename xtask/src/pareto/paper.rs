//! The paper's SNL points (REFERENCE.md section 3), for the figure by ReLU fraction: the
//! paper's networks are wider, so only the curve's shape compares.

use std::path::Path;

use super::preset::Flags;

#[derive(Debug, Clone, PartialEq)]
pub struct PaperSeries {
    pub label: String,
    /// The paper's network's ReLUs (REFERENCE.md section 2, the authors' count).
    pub total: f64,
    /// (ReLUs kept, test top-1 %).
    pub points: Vec<(f64, f64)>,
}

/// The paper's SNL points for a dataset (`cifar10`, `cifar100`, `tiny-imagenet`) and an
/// architecture (`resnet18`, `wrn-*`).
pub fn paper_series(dataset: &str, arch: &str) -> Option<PaperSeries> {
    let wrn = arch.starts_with("wrn");
    let tiny = dataset == "tiny-imagenet";
    let points: &[(f64, f64)] = match (dataset, wrn) {
        ("cifar10", false) => &[(12_900.0, 88.23), (49_400.0, 92.27), (99_900.0, 93.50)],
        ("cifar10", true) => &[(300_000.0, 95.06)],
        ("cifar100", false) => &[
            (12_900.0, 66.53),
            (14_900.0, 67.17),
            (25_000.0, 70.05),
            (49_400.0, 73.75),
            (99_900.0, 75.94),
            (180_000.0, 77.65),
        ],
        ("tiny-imagenet", false) => &[(59_400.0, 54.24), (99_600.0, 58.94), (198_000.0, 63.39)],
        ("tiny-imagenet", true) => &[(489_000.0, 64.42)],
        _ => return None,
    };
    // 32x32 inputs; Tiny-ImageNet's 64x64 has four times the ReLUs.
    let total = match (wrn, tiny) {
        (false, false) => 491_520.0,
        (false, true) => 1_966_080.0,
        (true, false) => 1_359_872.0,
        (true, true) => 5_439_488.0,
    };
    let label = if wrn {
        "paper: WRN-22-8 (shape only)".to_string()
    } else if tiny {
        "paper: ResNet18 width 64 (shape only)".to_string()
    } else {
        "paper: width 64, 160+100 epochs (shape only)".to_string()
    };
    Some(PaperSeries { label, total, points: points.to_vec() })
}

/// The dataset key of the paper's tables for a preset's `--dataset` / `--data-dir`.
pub fn paper_dataset(data: &Flags) -> Option<String> {
    let name = data.get("dataset")?.to_ascii_lowercase();
    let hint = if name == "folder" {
        Path::new(data.get("data-dir")?).file_name()?.to_string_lossy().to_ascii_lowercase()
    } else {
        name
    };
    let key = if hint.contains("cifar100") || hint.contains("cifar-100") {
        "cifar100"
    } else if hint.contains("cifar10") || hint.contains("cifar-10") {
        "cifar10"
    } else if hint.contains("tiny") {
        "tiny-imagenet"
    } else {
        return None;
    };
    Some(key.to_string())
}

#[cfg(test)]
mod tests {
    use super::super::preset::preset;
    use super::*;

    #[test]
    fn paper_points_follow_the_dataset() {
        let p = preset("cifar10-w16", Path::new("/w/main")).unwrap();
        assert_eq!(paper_dataset(&p.data).as_deref(), Some("cifar10"));
        assert_eq!(paper_dataset(&preset("smoke", Path::new("/w")).unwrap().data), None);
        let c10 = paper_series("cifar10", "resnet18").unwrap();
        assert_eq!(c10.label, "paper: width 64, 160+100 epochs (shape only)");
        // 12.9K of 491,520 is the fraction of issue 15's smallest budget, 3,225 of 122,880.
        assert!((c10.points[0].0 / c10.total - 3225.0 / 122_880.0).abs() < 1e-4);
        assert_eq!(paper_series("cifar100", "resnet18").unwrap().points.len(), 6);
        assert_eq!(paper_series("cifar10", "wrn-22-8").unwrap().points, vec![(300_000.0, 95.06)]);
        assert!(paper_series("synthetic", "resnet18").is_none());
    }
}
