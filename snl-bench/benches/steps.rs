//! Whole-step benches on the ResNet18 of `torch_snl.py` at width 16, batch 128: an SNL step,
//! an SGD train step and inference, candle's ops against `snl_core::fast`. Width 64 is
//! measured by the `throughput` binary (a criterion run there would take minutes).

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use snl_bench::{Impl, Workload, Workloads};

fn steps(c: &mut Criterion) {
    snl_core::fast::tune_allocator();
    let mut g = c.benchmark_group("resnet18_w16_b128");
    g.sample_size(10);
    for imp in [Impl::Candle, Impl::Fast] {
        let mut w = Workloads::new(16, 128, imp).expect("workloads");
        for workload in Workload::ALL {
            let name = serde_json::to_value(workload).expect("name");
            g.bench_function(
                BenchmarkId::new(format!("{imp:?}").to_lowercase(), name.as_str().unwrap_or("?")),
                |b| b.iter(|| w.run(workload).expect("step")),
            );
        }
    }
    g.finish();
}

criterion_group!(benches, steps);
criterion_main!(benches);
