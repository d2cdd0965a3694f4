//! Whole-step benches on the product ResNet18 (snl-models, width 16, batch 128): an SNL
//! step, an SGD train step and inference, as `torch_ref.py bench` runs them. Width 64 and
//! WRN-22-8 are measured by the `throughput` binary (a criterion run there would take
//! minutes). candle's own ops against `snl_core::fast` are compared per layer in
//! `benches/layers.rs`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use snl_bench::{Arch, Workload, Workloads};

fn steps(c: &mut Criterion) {
    snl_core::fast::tune_allocator();
    let batch = 128;
    let mut g = c.benchmark_group("resnet18_w16_b128");
    g.sample_size(10);
    g.throughput(Throughput::Elements(batch as u64));
    let mut w = Workloads::new(&Arch::resnet18(16), batch, 0, &candle::Device::Cpu).expect("workloads");
    for workload in Workload::ALL {
        g.bench_function(BenchmarkId::new("snl", workload.name()), |b| {
            b.iter(|| w.run(workload).expect("step"))
        });
    }
    g.finish();
}

criterion_group!(benches, steps);
criterion_main!(benches);
