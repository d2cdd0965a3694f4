//! Loading (.safetensors, .pth.tar with and without `module.`, bare .pth), strictness,
//! corrupt files, and a save/load round trip that needs no Python.

mod common;

use std::collections::HashMap;

use candle::{DType, Device, ModuleT, Tensor};
use common::{data_dir, fixture, matrix, max_abs_diff};
use snl_core::Masked;
use snl_models::checkpoint::{self, Format};
use snl_models::{Error, ModelConfig};

fn eval_logits(config: &ModelConfig, tensors: &HashMap<String, Tensor>, x: &Tensor) -> Vec<Vec<f32>> {
    let model = config.build_from_tensors(tensors.clone(), &Device::Cpu).expect("build");
    model.forward_t(x, false).unwrap().to_vec2().unwrap()
}

#[test]
fn safetensors_fixture_reads_with_i64_counters() {
    let ck = checkpoint::read(data_dir().join("resnet18_w4_pixel/model.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(ck.format, Format::Safetensors);
    let t = &ck.tensors["layer1.0.bn1.num_batches_tracked"];
    assert_eq!(t.dtype(), DType::I64);
    assert_eq!(t.dims(), &[] as &[usize]);
}

#[test]
fn pth_checkpoints_load() {
    let f = fixture("resnet18_w4_channel");
    let expected = matrix(&f.expected["eval_logits"]);
    for file in ["resnet18_w4.pth.tar", "resnet18_w4_module.pth.tar", "resnet18_w4_bare.pth"] {
        let ck =
            checkpoint::read(data_dir().join(file), &Device::Cpu).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(ck.format, Format::TorchZip);
        assert_eq!(ck.tensors.len(), f.model.len(), "{file}");
        for (name, t) in &f.model {
            let u = ck.tensors.get(name).unwrap_or_else(|| panic!("{file}: no {name}"));
            assert_eq!(u.dtype(), t.dtype(), "{file}: {name}");
            assert_eq!(u.dims(), t.dims(), "{file}: {name}");
            let same = u.to_dtype(DType::F64).unwrap().eq(&t.to_dtype(DType::F64).unwrap()).unwrap();
            assert!(
                same.flatten_all().unwrap().to_vec1::<u8>().unwrap().iter().all(|&b| b == 1),
                "{file}: {name}"
            );
        }
        let (_, vars) = f.config.build_trainable(&Device::Cpu).unwrap();
        checkpoint::load_into(&vars, &ck.tensors).unwrap();
        let d = max_abs_diff(&eval_logits(&f.config, &ck.tensors, &f.x), &expected);
        assert!(d < 1e-4, "{file}: logits differ by {d}");
    }
}

fn mismatch(result: snl_models::Result<()>) -> snl_models::StateDictMismatch {
    match result {
        Err(Error::StateDict(m)) => m,
        other => panic!("expected a state-dict mismatch, got {other:?}"),
    }
}

#[test]
fn strict_loading_lists_every_problem() {
    let f = fixture("resnet18_w4_pixel");
    let (_, vars) = f.config.build_trainable(&Device::Cpu).unwrap();
    let before = vars.data().lock().unwrap()["conv1.weight"].as_tensor().copy().unwrap();

    let mut tensors = f.model.clone();
    tensors.remove("layer3.1.bn2.running_var");
    tensors.remove("linear.bias");
    tensors.insert("linear.extra".into(), Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap());
    tensors.insert("conv1.weight".into(), Tensor::zeros((4, 3, 5, 5), DType::F32, &Device::Cpu).unwrap());
    let m = mismatch(checkpoint::load_into(&vars, &tensors));
    assert_eq!(m.missing, vec!["layer3.1.bn2.running_var".to_string(), "linear.bias".to_string()]);
    assert_eq!(m.unexpected, vec!["linear.extra".to_string()]);
    assert_eq!(m.shapes.len(), 1);
    assert_eq!(m.shapes[0].name, "conv1.weight");
    assert_eq!(m.shapes[0].expected, vec![4, 3, 3, 3]);
    assert_eq!(m.shapes[0].found, vec![4, 3, 5, 5]);
    let message = Error::StateDict(m).to_string();
    for part in ["layer3.1.bn2.running_var", "linear.bias", "linear.extra", "conv1.weight"] {
        assert!(message.contains(part), "{message}");
    }
    // Nothing was loaded.
    let after = vars.data().lock().unwrap()["conv1.weight"].as_tensor().copy().unwrap();
    let diff = (before - after).unwrap().abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
    assert_eq!(diff, 0.0);

    // A checkpoint of another configuration: the channel-mask fixture into a pixel model.
    let other = fixture("resnet18_w4_channel");
    let m = mismatch(checkpoint::load_into(&vars, &other.model));
    assert_eq!(m.unexpected, vec!["alpha0.alphas".to_string()]);
    assert_eq!(m.shapes.len(), 16, "every mask has another shape");
}

#[test]
fn corrupt_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(data_dir().join("resnet18_w4_pixel/model.safetensors")).unwrap();
    let truncated = dir.path().join("truncated.safetensors");
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    assert!(matches!(checkpoint::read(&truncated, &Device::Cpu), Err(Error::Safetensors { .. })));

    let text = dir.path().join("notes.safetensors");
    std::fs::write(&text, "this is not a checkpoint\n").unwrap();
    let err = checkpoint::read(&text, &Device::Cpu).unwrap_err();
    assert!(matches!(err, Error::Safetensors { .. }), "{err:?}");
    assert!(err.to_string().contains("notes.safetensors"), "{err}");

    let pth = std::fs::read(data_dir().join("resnet18_w4.pth.tar")).unwrap();
    let truncated_pth = dir.path().join("truncated.pth.tar");
    std::fs::write(&truncated_pth, &pth[..pth.len() / 2]).unwrap();
    assert!(matches!(checkpoint::read(&truncated_pth, &Device::Cpu), Err(Error::Pth { .. })));

    assert!(matches!(checkpoint::read(dir.path().join("absent"), &Device::Cpu), Err(Error::Io { .. })));
}

#[test]
fn save_load_round_trip_without_python() {
    let f = fixture("resnet18_w4_img16_stem");
    let (model, vars) = f.config.build_trainable(&Device::Cpu).unwrap();
    checkpoint::load_into(&vars, &f.model).unwrap();
    // Two training-mode batches move the BN statistics and counters.
    model.forward_t(&f.x, true).unwrap();
    model.forward_t(&f.x, true).unwrap();
    let eval = model.forward_t(&f.x, false).unwrap().to_vec2::<f32>().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let mut metadata = f.config.to_metadata();
    metadata.insert("note".into(), "round trip".into());
    checkpoint::save_varmap(&vars, &metadata, &path).unwrap();
    assert!(!dir.path().join("model.safetensors.tmp").exists());

    let ck = checkpoint::read(&path, &Device::Cpu).unwrap();
    assert_eq!(ck.metadata, metadata);
    let counter = &ck.tensors["layer2.0.shortcut.1.num_batches_tracked"];
    assert_eq!(counter.dtype(), DType::I64);
    assert_eq!(counter.to_scalar::<i64>().unwrap(), 2);
    let config = ModelConfig::from_metadata(&ck.metadata).unwrap();
    assert_eq!(config, f.config);

    let (reloaded, vars2) = config.build_trainable(&Device::Cpu).unwrap();
    checkpoint::load_into(&vars2, &ck.tensors).unwrap();
    let again = reloaded.forward_t(&f.x, false).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(max_abs_diff(&eval, &again), 0.0);
    let train_a = model.forward_t(&f.x, true).unwrap().to_vec2::<f32>().unwrap();
    let train_b = reloaded.forward_t(&f.x, true).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(max_abs_diff(&train_a, &train_b), 0.0);
    assert_eq!(reloaded.masks().len(), 17);
}

/// The safetensors header (JSON) and data of `bytes`.
fn split_header(bytes: &[u8]) -> (serde_json::Value, &[u8]) {
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (serde_json::from_slice(&bytes[8..8 + len]).unwrap(), &bytes[8 + len..])
}

/// `header` and `data` as a safetensors file.
fn join_header(header: &serde_json::Value, data: &[u8]) -> Vec<u8> {
    let mut text = header.to_string().into_bytes();
    text.resize(text.len().next_multiple_of(8), b' ');
    [&(text.len() as u64).to_le_bytes()[..], &text, data].concat()
}

#[test]
fn saved_files_carry_a_checksum_that_reading_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let tensors = HashMap::from([
        ("w".to_string(), Tensor::new(&[1f32, 2., 3., 4.], &Device::Cpu).unwrap()),
        ("n".to_string(), Tensor::new(&[7i64], &Device::Cpu).unwrap()),
    ]);
    let metadata = HashMap::from([("note".to_string(), "x".to_string())]);
    checkpoint::save(&tensors, &metadata, &path).unwrap();
    let good = std::fs::read(&path).unwrap();
    let (header, data) = split_header(&good);
    assert!(header["__metadata__"][checkpoint::CHECKSUM_KEY].is_string(), "{header}");
    // Read back verified, the checksum left out of the metadata.
    assert_eq!(checkpoint::read(&path, &Device::Cpu).unwrap().metadata, metadata);

    let mismatch = |bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        let err = checkpoint::read(&path, &Device::Cpu).unwrap_err();
        assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!("{}: checksum mismatch: the file was modified or damaged", path.display())
        );
    };
    // A flipped bit in the data, an edited metadata value, a renamed tensor.
    let mut flipped = good.clone();
    *flipped.last_mut().unwrap() ^= 1;
    mismatch(&flipped);
    let mut edited = header.clone();
    edited["__metadata__"]["note"] = "y".into();
    mismatch(&join_header(&edited, data));
    let renamed = header.to_string().replace("\"w\"", "\"v\"");
    mismatch(&join_header(&serde_json::from_str(&renamed).unwrap(), data));

    // Without a checksum (an older build, another tool) the file loads unchecked, as before.
    let mut old = header.clone();
    old["__metadata__"].as_object_mut().unwrap().remove(checkpoint::CHECKSUM_KEY);
    std::fs::write(&path, join_header(&old, data)).unwrap();
    let read = checkpoint::read(&path, &Device::Cpu).unwrap();
    assert_eq!(read.metadata, metadata);
    assert_eq!(read.tensors["w"].to_vec1::<f32>().unwrap(), [1., 2., 3., 4.]);
}

#[test]
fn non_finite_values_are_counted() {
    let t = Tensor::new(&[1f32, f32::NAN, f32::INFINITY, -f32::INFINITY, 0.], &Device::Cpu).unwrap();
    assert_eq!(checkpoint::count_non_finite(&t).unwrap(), 3);
    assert_eq!(checkpoint::count_non_finite(&Tensor::new(&[3i64], &Device::Cpu).unwrap()).unwrap(), 0);
}
