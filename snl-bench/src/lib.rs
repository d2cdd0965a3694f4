//! Benchmarks of snl against PyTorch (filled in by the performance issue).
