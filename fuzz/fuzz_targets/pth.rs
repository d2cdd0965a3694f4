//! `.pth` import: zip archives holding a pickle (`snl import`, `snl_models::pth`). Seeds:
//! `make_seeds.py` (files written by `torch.save`).
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use snl_models::checkpoint;

fuzz_target!(|data: &[u8]| {
    if !data.starts_with(b"PK\x03\x04") {
        return;
    }
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), data).expect("write");
    let _ = checkpoint::read(file.path(), &candle::Device::Cpu);
});
