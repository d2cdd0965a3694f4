//! Private-inference cost of the ReLUs a network keeps, from published per-ReLU figures
//! (REFERENCE §6), and from our own measurement in a real 2PC engine (`cargo xtask pi-cost`,
//! results/pi-cost). Only the ReLU part: linear layers are not free and are not included.

use serde::Serialize;

/// Garimella et al., ASPLOS'23 (DELPHI-style garbled circuits, ResNet18/CIFAR simulator data).
const DELPHI_SOURCE: &str = "DELPHI-style garbled circuits, per ReLU: 17.07 KB GC + 2.0 KB OT offline, 1.18 KB online, 18.25 KB client storage, 17-23 us online (Garimella et al., ASPLOS'23)";
const DELPHI_OFFLINE_KB: f64 = 17.07 + 2.0;
const DELPHI_ONLINE_KB: f64 = 1.18;
const DELPHI_STORAGE_KB: f64 = 18.25;
const DELPHI_LATENCY_US: (f64, f64) = (17.0, 23.0);
/// Upper bound derived from Cheetah's ResNet50 figure (Huang et al., USENIX Security'22).
const CHEETAH_SOURCE: &str = "Cheetah-class protocols, per ReLU: at most ~240 B and 16 us all-in (bound from Cheetah's ResNet50 figure)";
const CHEETAH_BYTES: f64 = 240.0;
const CHEETAH_US: f64 = 16.0;
/// Measured (results/pi-cost): bytes, the all-ReLU network minus the same network with
/// identities, per ReLU, in the next inference of a session (the first also refills the OT
/// pool); time, one call of 122,880 ReLUs alone (a network's delta drowned in the load).
const SPU_SOURCE: &str = "measured, SPU 0.9.5 Cheetah 2PC (semi-honest, both parties on one host), per ReLU: 101 B sent by both parties (ResNet18 width 16, 32x32, all ReLUs minus identities, next inference of a session; the first adds a one-time ~0.27 MB: 2% at 122,880 ReLUs, 15% at the demo's 15,360), 61 us (122,880 ReLUs in one call, median of 3, 2 AVX2 cores under a load average of ~8: not a clean timing), 2026-12-01 (cargo xtask pi-cost)";
const SPU_BYTES: f64 = 100.7;
const SPU_US: f64 = 61.0;

#[derive(Debug, Clone, Serialize)]
pub struct Cost {
    pub relus: usize,
    pub delphi_offline_mb: f64,
    pub delphi_online_mb: f64,
    pub delphi_client_storage_mb: f64,
    pub delphi_online_latency_s: [f64; 2],
    pub cheetah_comm_mb_max: f64,
    pub cheetah_latency_s_max: f64,
    pub spu_cheetah_measured_mb: f64,
    pub spu_cheetah_measured_s: f64,
    pub sources: [&'static str; 3],
    pub note: &'static str,
}

pub fn estimate(relus: usize) -> Cost {
    let n = relus as f64;
    Cost {
        relus,
        delphi_offline_mb: n * DELPHI_OFFLINE_KB / 1000.0,
        delphi_online_mb: n * DELPHI_ONLINE_KB / 1000.0,
        delphi_client_storage_mb: n * DELPHI_STORAGE_KB / 1000.0,
        delphi_online_latency_s: [n * DELPHI_LATENCY_US.0 * 1e-6, n * DELPHI_LATENCY_US.1 * 1e-6],
        cheetah_comm_mb_max: n * CHEETAH_BYTES / 1e6,
        cheetah_latency_s_max: n * CHEETAH_US * 1e-6,
        spu_cheetah_measured_mb: n * SPU_BYTES / 1e6,
        spu_cheetah_measured_s: n * SPU_US * 1e-6,
        sources: [DELPHI_SOURCE, CHEETAH_SOURCE, SPU_SOURCE],
        note: "ReLUs only; linear layers add their own cost",
    }
}

impl Cost {
    /// A few lines for humans.
    pub fn lines(&self) -> Vec<String> {
        vec![
            format!(
                "DELPHI-style GC: {:.1} MB offline, {:.1} MB online, {:.1} MB client storage, {:.2}-{:.2} s online",
                self.delphi_offline_mb,
                self.delphi_online_mb,
                self.delphi_client_storage_mb,
                self.delphi_online_latency_s[0],
                self.delphi_online_latency_s[1]
            ),
            format!(
                "Cheetah-class:   at most {:.1} MB and {:.2} s",
                self.cheetah_comm_mb_max, self.cheetah_latency_s_max
            ),
            format!(
                "SPU Cheetah:     {:.2} MB sent and {:.2} s (ReLUs x per-ReLU figures measured in SPU, for a later query of a session, see sources)",
                self.spu_cheetah_measured_mb, self.spu_cheetah_measured_s
            ),
            format!(
                "({}; sources: {}; {}; {})",
                self.note, self.sources[0], self.sources[1], self.sources[2]
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    /// The per-ReLU bytes are the committed measurement's, not a number typed twice.
    #[test]
    fn measured_spu_bytes_match_results_pi_cost() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../results/pi-cost/cifar10-w16-random-10pct.json");
        let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let all = json["rows"].as_array().unwrap().iter().find(|r| r["variant"] == "all_relu").unwrap();
        let per_relu = all["warm_bytes_relu"].as_f64().unwrap() / all["relus_total"].as_f64().unwrap();
        assert!(
            (per_relu - super::SPU_BYTES).abs() < 0.05,
            "measured {per_relu:.2} B, constant {}",
            super::SPU_BYTES
        );
    }
}
