//! Image folder decoding: one JPEG or PNG file, as every image of a folder is decoded.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((h, w, chw)) = snl_data::decode_image(data, std::path::Path::new("fuzz.png")) {
        assert_eq!(chw.len(), 3 * h * w);
        assert!(h <= snl_data::MAX_SIDE as usize && w <= snl_data::MAX_SIDE as usize);
    }
});
