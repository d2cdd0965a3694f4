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
/// Measured (results/pi-cost): the marginal cost of a ReLU inside a network, i.e. the
/// all-ReLU network minus the same network with identities, bytes sent by both parties.
const SPU_SOURCE: &str = "measured, SPU 0.9.5 Cheetah 2PC (semi-honest, both parties on one host), per ReLU in a network: 133 B sent by both parties, 3.3 ms on 2 AVX2 cores under a load average of ~8 (not a clean timing); ResNet18 width 4, 16x16, 2026-12-01 (cargo xtask pi-cost)";
const SPU_BYTES: f64 = 133.0;
const SPU_US: f64 = 3270.0;

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
                "SPU Cheetah:     {:.1} MB sent and {:.2} s, measured (see sources)",
                self.spu_cheetah_measured_mb, self.spu_cheetah_measured_s
            ),
            format!(
                "({}; sources: {}; {}; {})",
                self.note, self.sources[0], self.sources[1], self.sources[2]
            ),
        ]
    }
}
