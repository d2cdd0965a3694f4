//! Checkpoint reading: safetensors with `__metadata__` (snl's model metadata), as `snl eval`,
//! `count` and `--resume` read them. Zip input is the `pth` target's.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use snl_models::{ModelConfig, checkpoint};

fuzz_target!(|data: &[u8]| {
    if data.starts_with(b"PK") {
        return;
    }
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), data).expect("write");
    let Ok(read) = checkpoint::read(file.path(), &candle::Device::Cpu) else { return };
    if let Ok(config) = ModelConfig::from_metadata(&read.metadata) {
        // What `snl` does before building a model from a file (never building it here).
        let _ = config.min_values();
        assert!(config.min_values() <= snl_models::MAX_MODEL_VALUES);
    }
});
