//! CIFAR binary records and the official `.tar.gz`: the first byte picks the release and
//! the reader, the rest is the file.
#![no_main]

mod common;

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use snl_data::Split;
use snl_data::cifar::{self, Cifar};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let kind = [Cifar::Ten, Cifar::HundredFine, Cifar::HundredCoarse][usize::from(pick % 3)];
    let split = if pick & 4 == 0 { Split::Test } else { Split::Train };
    let name = Path::new("fuzz");
    if pick & 8 == 0 {
        let _ = cifar::from_records(kind, &[(name.to_path_buf(), rest.to_vec())], None);
    } else {
        let _ = cifar::load_tar_gz(kind, split, rest, rest.len() as u64, name);
    }
});
