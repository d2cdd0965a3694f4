//! Datasets as seeded, augmented candle batches (filled in by the data issue).
