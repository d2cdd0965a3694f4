//! Sizes declared by a file are checked against what the format allows before anything is
//! allocated: a lying header is an error naming the file, never an aborted process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;

use snl_data::{Cifar, Error, Split};

/// A `.tar.gz` holding only the header of `member`, which declares `size` bytes.
fn tar_gz_declaring(path: &Path, member: &str, size: u64) {
    let mut header = tar::Header::new_gnu();
    header.set_path(member).unwrap();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_cksum();
    let mut gz =
        flate2::write::GzEncoder::new(std::fs::File::create(path).unwrap(), flate2::Compression::best());
    gz.write_all(header.as_bytes()).unwrap();
    gz.finish().unwrap();
}

#[test]
fn a_tar_member_declaring_terabytes_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("cifar-10-binary.tar.gz");
    tar_gz_declaring(&archive, "cifar-10-batches-bin/test_batch.bin", 4 << 40);
    assert!(std::fs::metadata(&archive).unwrap().len() < 200);
    let err = snl_data::cifar::load(Cifar::Ten, Split::Test, &archive).unwrap_err();
    assert!(matches!(err, Error::Archive { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("test_batch.bin declares 4398046511104 bytes") && msg.contains("cifar-10-binary"),
        "{msg}"
    );
    // Within the format's limit but more than so small an archive can hold: refused too.
    tar_gz_declaring(&archive, "cifar-10-batches-bin/test_batch.bin", 30_730_000);
    let err = snl_data::cifar::load(Cifar::Ten, Split::Test, &archive).unwrap_err();
    assert!(err.to_string().contains("more than the archive can hold"), "{err}");
}

/// Members nobody reads still inflate: past 1 GiB the archive is refused, not inflated for
/// minutes. A GNU long-name entry is skipped like any member (the tar crate would read its
/// name whole into memory), and the members after it are still found.
#[test]
fn a_tar_gz_inflating_past_a_gigabyte_is_refused_and_long_names_are_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("cifar-10-binary.tar.gz");
    let mut gz =
        flate2::write::GzEncoder::new(std::fs::File::create(&archive).unwrap(), flate2::Compression::fast());
    let mut long = tar::Header::new_gnu();
    long.set_path("././@LongLink").unwrap();
    long.set_entry_type(tar::EntryType::GNULongName);
    long.set_size(1 << 20);
    long.set_cksum();
    gz.write_all(long.as_bytes()).unwrap();
    gz.write_all(&vec![b'a'; 1 << 20]).unwrap();
    let mut test = tar::Header::new_gnu();
    test.set_path("cifar-10-batches-bin/test_batch.bin").unwrap();
    test.set_size(3073 * 2);
    test.set_mode(0o644);
    test.set_cksum();
    gz.write_all(test.as_bytes()).unwrap();
    gz.write_all(&[0u8; 3073 * 2]).unwrap();
    gz.write_all(&[0u8; 512 - (3073 * 2) % 512]).unwrap();
    gz.write_all(&[0u8; 1024]).unwrap();
    gz.finish().unwrap();
    let test = snl_data::cifar::load(Cifar::Ten, Split::Test, &archive).unwrap();
    assert_eq!(test.len(), 2);

    let mut gz =
        flate2::write::GzEncoder::new(std::fs::File::create(&archive).unwrap(), flate2::Compression::fast());
    let mut big = tar::Header::new_gnu();
    big.set_path("cifar-10-batches-bin/padding.bin").unwrap();
    big.set_size(1100 << 20);
    big.set_mode(0o644);
    big.set_cksum();
    gz.write_all(big.as_bytes()).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..1100 {
        gz.write_all(&zeros).unwrap();
    }
    gz.finish().unwrap();
    let err = snl_data::cifar::load(Cifar::Ten, Split::Test, &archive).unwrap_err();
    assert!(err.to_string().contains("inflates to more than 1073741824 bytes"), "{err}");
}

#[test]
fn a_cifar_file_larger_than_any_release_is_not_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cifar-10-batches-bin");
    std::fs::create_dir_all(&dir).unwrap();
    // Sparse: no disk space used.
    let file = std::fs::File::create(dir.join("test_batch.bin")).unwrap();
    file.set_len(snl_data::cifar::MAX_MEMBER + 3073).unwrap();
    let err = snl_data::cifar::load(Cifar::Ten, Split::Test, &dir).unwrap_err();
    assert!(matches!(err, Error::Format { .. }) && err.to_string().contains("test_batch.bin"), "{err}");
}

#[test]
fn a_zip_member_declaring_gigabytes_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tiny-imagenet-200.zip");
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("tiny-imagenet-200/wnids.txt", stored).unwrap();
    zip.write_all(b"n01443537\n").unwrap();
    let mut bytes = zip.finish().unwrap().into_inner();
    // The central directory's uncompressed size (offset 24 of its entry) now says 3.75 GB.
    let central = bytes.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
    bytes[central + 24..central + 28].copy_from_slice(&0xF000_0000u32.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let err = snl_data::tiny::load(Split::Train, &path).unwrap_err();
    assert!(err.to_string().contains("wnids.txt") && err.to_string().contains("4026531840"), "{err}");
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A PNG signature and IHDR claiming `side` x `side` RGB pixels, and no pixel data.
fn png_header(side: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(side.to_be_bytes());
    ihdr.extend(side.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(13u32.to_be_bytes());
    png.extend(&ihdr);
    png.extend(crc32(&ihdr).to_be_bytes());
    png
}

#[test]
fn an_image_claiming_a_huge_size_is_refused_before_decoding() {
    let name = Path::new("big.png");
    for side in [snl_data::MAX_SIDE + 1, 100_000, u32::MAX >> 1] {
        let err = snl_data::decode_image(&png_header(side), name).unwrap_err();
        assert!(matches!(err, Error::Decode { .. }) && err.to_string().contains("big.png"), "{err}");
        assert!(err.to_string().contains("limit"), "{side}: {err}");
    }
}

/// Zip members that share one compressed stream would inflate it once per name.
#[test]
fn zip_members_sharing_their_data_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tiny-imagenet-200.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    zip.start_file("tiny-imagenet-200/wnids.txt", zip::write::SimpleFileOptions::default()).unwrap();
    zip.write_all(b"n01443537\n").unwrap();
    zip.start_file(
        "tiny-imagenet-200/train/n01443537/images/0.png",
        zip::write::SimpleFileOptions::default(),
    )
    .unwrap();
    zip.write_all(&[0u8; 1 << 16]).unwrap();
    for i in 1..4 {
        let name = format!("tiny-imagenet-200/train/n01443537/images/{i}.png");
        zip.shallow_copy_file("tiny-imagenet-200/train/n01443537/images/0.png", &name).unwrap();
    }
    zip.finish().unwrap();
    let err = snl_data::tiny::load(Split::Train, &path).unwrap_err();
    assert!(err.to_string().contains("members share compressed data"), "{err}");
}

/// An image file larger than any image (sparse here: no disk used) is refused, naming it,
/// before its bytes are read into memory.
#[test]
fn an_image_file_of_hundreds_of_megabytes_is_not_read() {
    let tmp = tempfile::tempdir().unwrap();
    let class = tmp.path().join("train").join("a");
    std::fs::create_dir_all(&class).unwrap();
    let img = image::RgbImage::from_pixel(4, 4, image::Rgb([1, 2, 3]));
    img.save(class.join("0.png")).unwrap();
    let huge = class.join("1.png");
    std::fs::File::create(&huge).unwrap().set_len(300 << 20).unwrap();
    let err = snl_data::folder::load(tmp.path(), Split::Train).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("1.png") && msg.contains("314572800 bytes, more than"), "{msg}");
}
