//! Bad dimensions and files are typed errors before anything is allocated; files are
//! written through a temporary file of their own, new ones never over anything.

use std::collections::HashMap;

use candle::Device;
use snl_models::{ConfigError, MAX_MODEL_VALUES, ModelConfig, checkpoint};

fn meta(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn absurd_dimensions_are_refused_before_building() {
    for (key, value) in [("image_size", "100000"), ("width", "100000"), ("classes", "4000000000")] {
        let mut m = meta(&[("arch", "resnet18"), ("classes", "10")]);
        m.insert(key.into(), value.into());
        let err = ModelConfig::from_metadata(&m).unwrap_err();
        assert!(matches!(err, ConfigError::TooLarge { .. }), "{key} {value}: {err}");
        assert!(err.to_string().contains(value), "{err}");
    }
    let wide = ModelConfig::from_arch("wrn-1000-64", 10).unwrap().validate().unwrap_err();
    assert!(matches!(wide, ConfigError::TooLarge { .. }), "{wide}");
    // A config made in code and never validated is refused by build too.
    let huge = ModelConfig::from_arch("resnet18", 10).unwrap().with_image_size(3000);
    assert!(matches!(
        huge.build_trainable(&Device::Cpu),
        Err(snl_models::Error::Config(ConfigError::TooLarge { .. }))
    ));
    // Channel masks hold a value per channel, but a forward pass (and an export) holds a
    // whole image's activations: those count too (2^32 wrapped the ReLU counts).
    for size in ["1000000", "4294967296"] {
        let m = meta(&[
            ("arch", "resnet18"),
            ("classes", "10"),
            ("granularity", "channel"),
            ("image_size", size),
        ]);
        let err = ModelConfig::from_metadata(&m).unwrap_err();
        assert!(matches!(err, ConfigError::TooLarge { .. }), "channel masks, image size {size}: {err}");
    }
    // The paper's networks, even on ImageNet-sized inputs, are fine.
    for arch in ["resnet18", "resnet34", "wrn-22-8", "wrn-28-10"] {
        let config = ModelConfig::from_arch(arch, 1000).unwrap().with_image_size(224);
        assert!(config.validate().is_ok() && config.min_values() < MAX_MODEL_VALUES, "{arch}");
    }
}

#[test]
fn min_values_is_a_lower_bound_of_the_real_count() {
    for (arch, width, size) in
        [("resnet18", 4, 32), ("resnet34", 2, 16), ("wrn-10-1", 0, 16), ("wrn-16-2", 0, 8)]
    {
        let mut config = ModelConfig::from_arch(arch, 10).unwrap().with_image_size(size);
        if width > 0 {
            config = config.with_width(width);
        }
        let (_, vars) = config.build_trainable(&Device::Cpu).unwrap();
        let real: usize = vars.all_vars().iter().map(|v| v.elem_count()).sum();
        let bound = config.min_values();
        assert!(bound <= real as u128 && bound * 2 > real as u128, "{arch}: bound {bound}, real {real}");
    }
}

#[test]
fn atomic_writes_use_their_own_temporary_file() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("m.safetensors");
    // A stale fixed-name temporary (here a folder, which no write can replace) is no obstacle.
    std::fs::create_dir(tmp.path().join("m.safetensors.tmp")).unwrap();
    checkpoint::write_atomic(&target, b"first").unwrap();
    checkpoint::write_atomic(&target, b"second").unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"second");
    let mut names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["m.safetensors", "m.safetensors.tmp"], "a temporary file was left behind");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_ne!(mode & 0o044, 0, "written readable only by its owner: {mode:o}");
    }
    // A folder that does not exist: an error naming the file, nothing written.
    let missing = tmp.path().join("no/such/dir/m.safetensors");
    let err = checkpoint::write_atomic(&missing, b"x").unwrap_err();
    assert!(err.to_string().contains("no/such/dir/m.safetensors"), "{err}");
    assert!(!err.to_string().contains("/.m.safetensors."), "the temporary file is named: {err}");
}

#[test]
fn new_files_never_replace_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("out.safetensors");
    checkpoint::write_new(&target, b"first").unwrap();
    let err = checkpoint::write_new(&target, b"second").unwrap_err();
    assert!(matches!(err, snl_models::Error::Exists { .. }), "{err}");
    assert_eq!(std::fs::read(&target).unwrap(), b"first");
    #[cfg(unix)]
    {
        let link = tmp.path().join("link.safetensors");
        std::os::unix::fs::symlink(tmp.path().join("nowhere"), &link).unwrap();
        let err = checkpoint::write_new(&link, b"x").unwrap_err();
        assert!(matches!(err, snl_models::Error::Exists { .. }), "{err}");
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert!(!tmp.path().join("nowhere").exists());
    }
    let err = checkpoint::write_new(&tmp.path().join("no/such/dir/m.safetensors"), b"x").unwrap_err();
    assert!(err.to_string().contains("no/such/dir/m.safetensors"), "{err}");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), if cfg!(unix) { 2 } else { 1 });
}

#[test]
fn only_regular_files_within_the_cap_are_read() {
    let tmp = tempfile::tempdir().unwrap();
    #[cfg(unix)]
    for device in ["/dev/zero", "/dev/urandom"] {
        let err = checkpoint::read(device, &Device::Cpu).unwrap_err();
        assert!(matches!(err, snl_models::Error::NotAFile { .. }), "{device}: {err}");
        assert_eq!(err.to_string(), format!("{device}: not a regular file"));
    }
    let err = checkpoint::read(tmp.path(), &Device::Cpu).unwrap_err();
    assert!(matches!(err, snl_models::Error::NotAFile { .. }), "{err}");
    // Sparse: the size is refused before a byte is read or allocated.
    let big = tmp.path().join("big.safetensors");
    std::fs::File::create(&big).unwrap().set_len(checkpoint::MAX_FILE_BYTES + 1).unwrap();
    let err = checkpoint::read_bytes(&big).unwrap_err();
    assert!(matches!(err, snl_models::Error::FileTooLarge { .. }), "{err}");
    assert!(err.to_string().contains(&(checkpoint::MAX_FILE_BYTES + 1).to_string()), "{err}");
    // A small file is read (and refused as safetensors, not for its size).
    std::fs::File::create(&big).unwrap().set_len(16).unwrap();
    let err = checkpoint::read(&big, &Device::Cpu).unwrap_err();
    assert!(matches!(err, snl_models::Error::Safetensors { .. }), "{err}");
}

#[test]
fn a_legacy_torch_file_is_named_as_such() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("old.pth");
    // What torch.save(..., _use_new_zipfile_serialization=False) writes first: its magic number.
    let mut bytes = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.\x80\x02M\xe9\x03.".to_vec();
    bytes.extend([0u8; 64]);
    std::fs::write(&path, &bytes).unwrap();
    let err = checkpoint::read(&path, &Device::Cpu).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, snl_models::Error::LegacyTorch { .. }), "{msg}");
    assert!(msg.contains("old.pth") && msg.contains("legacy") && msg.contains("torch.save("), "{msg}");
}
