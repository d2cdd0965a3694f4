//! ReLU totals and parameter counts of the full-size presets (REFERENCE §2), and configs.

use candle::{DType, Device};
use candle_nn::VarBuilder;
use snl_core::{Granularity, Masked, relu_total};
use snl_models::{ConfigError, Model, ModelConfig, ResNetConfig, WrnConfig, params};

/// Built over zeros: no weights are allocated beyond what the model holds, nothing trains.
fn build(config: impl Into<ModelConfig>) -> Model {
    config.into().build(VarBuilder::zeros(DType::F32, &Device::Cpu)).expect("build")
}

fn totals(config: ModelConfig) -> (usize, usize) {
    let pixel = relu_total(&build(config.clone().with_granularity(Granularity::Pixel)));
    let channel_model = build(config.with_granularity(Granularity::Channel));
    (pixel, relu_total(&channel_model))
}

#[test]
fn resnet18_relu_totals() {
    let r18 = ModelConfig::from(ResNetConfig::resnet18(10));
    assert_eq!(totals(r18.clone()), (491_520, 491_520));
    assert_eq!(totals(r18.clone().with_image_size(64)), (1_966_080, 1_966_080));
    assert_eq!(totals(r18.clone().with_extra_activation(true)), (557_056, 557_056));
    assert_eq!(totals(r18.clone().with_extra_activation(true).with_image_size(64)), (2_228_224, 2_228_224));
    // 17 masks (16 without the stem), names as the authors'.
    let model = build(r18.clone().with_extra_activation(true));
    let sites: Vec<&str> = model.masks().iter().map(|m| m.site()).collect();
    assert_eq!(sites.len(), 17);
    assert_eq!(sites[0], "alpha0");
    assert_eq!(sites[1], "layer1.0.alpha1");
    assert_eq!(sites[16], "layer4.1.alpha2");
    // Channel masks: one element per channel.
    let channel = build(r18.with_granularity(Granularity::Channel));
    let elements: usize = channel.masks().iter().map(|m| m.alphas().elem_count()).sum();
    assert_eq!(elements, 2 * 2 * (64 + 128 + 256 + 512));
}

#[test]
fn resnet34_relu_total() {
    // 3, 4, 6, 3 blocks of 2 masks at 64x32x32, 128x16x16, 256x8x8, 512x4x4.
    let expected = 2 * (3 * 65_536 + 4 * 32_768 + 6 * 16_384 + 3 * 8_192);
    assert_eq!(totals(ResNetConfig::resnet34(100).into()), (expected, expected));
}

#[test]
fn wrn_relu_totals() {
    let wrn = ModelConfig::from(WrnConfig::wrn_22_8(10));
    assert_eq!(totals(wrn.clone()), (1_359_872, 1_359_872));
    assert_eq!(totals(wrn.clone().with_extra_activation(true)), (1_392_640, 1_392_640));
    assert_eq!(totals(wrn.clone().with_image_size(64)), (5_439_488, 5_439_488));
    assert_eq!(totals(wrn.clone().with_image_size(64).with_extra_activation(true)), (5_570_560, 5_570_560));
    let model = build(wrn.with_extra_activation(true));
    let sites: Vec<&str> = model.masks().iter().map(|m| m.site()).collect();
    assert_eq!(sites.len(), 19);
    assert_eq!(sites[0], "block1.layer.0.alpha1");
    assert_eq!(sites[3], "block1.layer.1.alpha2");
    assert_eq!(sites[18], "alpha_final");
    // The first alpha1 of groups 2 and 3 sits at twice the group's resolution.
    assert_eq!(model.masks()[6].activation_shape(), (128, 32, 32));
    assert_eq!(model.masks()[12].activation_shape(), (256, 16, 16));
}

#[test]
fn other_wrn_presets_build() {
    for (config, masks) in [(WrnConfig::wrn_16_8(10), 12), (WrnConfig::wrn_28_10(100), 24)] {
        assert_eq!(build(config).masks().len(), masks);
    }
}

#[test]
fn resnet18_weight_count() {
    let (_, vars) = ModelConfig::from_arch("resnet18", 10).unwrap().build_trainable(&Device::Cpu).unwrap();
    assert_eq!(params::weight_count(&vars), 11_173_962);
    let names: Vec<String> = vars.data().lock().unwrap().keys().cloned().collect();
    for name in [
        "conv1.weight",
        "bn1.num_batches_tracked",
        "layer1.0.alpha1.alphas",
        "layer2.0.shortcut.0.weight",
        "layer2.0.shortcut.1.running_var",
        "layer4.1.bn2.bias",
        "linear.weight",
        "linear.bias",
    ] {
        assert!(names.iter().any(|n| n == name), "no {name}");
    }
    assert!(!names.iter().any(|n| n.starts_with("layer1.0.shortcut")));
    // 20 BNs x 3 buffers.
    assert_eq!(names.iter().filter(|n| params::is_buffer(n)).count(), 60);
    assert_eq!(params::trainable_vars(&vars).len(), names.len() - 60);
    assert_eq!(params::weight_vars(&vars).len(), names.len() - 60 - 16);
}

#[test]
fn wrn_names() {
    let config = ModelConfig::from_arch("wrn-10-2", 10).unwrap().with_extra_activation(true);
    let (_, vars) = config.build_trainable(&Device::Cpu).unwrap();
    let data = vars.data().lock().unwrap();
    for name in [
        "conv1.weight",
        "block1.layer.0.bn1.running_mean",
        "block1.layer.0.alpha1.alphas",
        "block1.layer.0.convShortcut.weight",
        "block3.layer.0.convShortcut.weight",
        "bn1.weight",
        "alpha_final.alphas",
        "fc.weight",
        "fc.bias",
    ] {
        assert!(data.contains_key(name), "no {name}");
    }
}

#[test]
fn arch_names_parse() {
    let parsed = |s: &str| ModelConfig::from_arch(s, 10);
    assert_eq!(parsed("resnet18").unwrap(), ResNetConfig::resnet18(10).into());
    assert_eq!(parsed("ResNet34").unwrap(), ResNetConfig::resnet34(10).into());
    assert_eq!(parsed("wrn-22-8").unwrap(), WrnConfig::wrn_22_8(10).into());
    assert_eq!(parsed("wide_resnet_28_10").unwrap(), WrnConfig::wrn_28_10(10).into());
    assert_eq!(parsed("wrn-40-4").unwrap().arch_name(), "wrn-40-4");
    assert_eq!(parsed("wrn-23-8"), Err(ConfigError::WrnDepth(23)));
    assert_eq!(parsed("wrn-4-8"), Err(ConfigError::WrnDepth(4)));
    assert!(matches!(parsed("vgg16"), Err(ConfigError::UnknownArch(_))));
    assert!(matches!(parsed("wrn-22"), Err(ConfigError::UnknownArch(_))));
    assert!(matches!(parsed("wrn-22-x"), Err(ConfigError::UnknownArch(_))));
    assert_eq!(WrnConfig::new(22, 0, 10), Err(ConfigError::Zero { name: "widen", value: 0 }));
    let zero_width = ModelConfig::from(ResNetConfig { width: 0, ..ResNetConfig::resnet18(10) });
    assert!(zero_width.build(VarBuilder::zeros(DType::F32, &Device::Cpu)).is_err());
}

#[test]
fn metadata_and_serde_round_trip() {
    for config in [
        ModelConfig::from(ResNetConfig { width: 16, stem_stride: 2, ..ResNetConfig::resnet18(200) })
            .with_image_size(64)
            .with_granularity(Granularity::Channel)
            .with_extra_activation(true),
        ModelConfig::from(WrnConfig::wrn_22_8(100)).with_extra_activation(true),
        ResNetConfig::resnet34(10).into(),
    ] {
        assert_eq!(ModelConfig::from_metadata(&config.to_metadata()).unwrap(), config);
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(serde_json::from_str::<ModelConfig>(&json).unwrap(), config);
    }
    let mut bad = ModelConfig::from_arch("resnet18", 10).unwrap().to_metadata();
    bad.insert("width".into(), "wide".into());
    assert!(matches!(ModelConfig::from_metadata(&bad), Err(ConfigError::Metadata(_))));
}

/// `tensor_shapes` (no weights built) lists exactly the names and shapes of a built model's
/// VarMap, for both families, both granularities and the extra activations.
#[test]
fn tensor_shapes_are_those_of_the_built_model() {
    let configs = [
        ModelConfig::from(ResNetConfig { width: 4, ..ResNetConfig::resnet18(10) })
            .with_extra_activation(true),
        ModelConfig::from(ResNetConfig {
            width: 2,
            image_size: 16,
            stem_stride: 2,
            ..ResNetConfig::resnet34(7)
        })
        .with_granularity(Granularity::Channel),
        ModelConfig::from_arch("wrn-10-2", 10).unwrap().with_extra_activation(true),
        ModelConfig::from_arch("wrn-16-1", 100)
            .unwrap()
            .with_image_size(64)
            .with_granularity(Granularity::Channel),
    ];
    for config in configs {
        let (_, vars) = config.build_trainable(&Device::Cpu).unwrap();
        let built: std::collections::HashMap<String, Vec<usize>> =
            vars.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.dims().to_vec())).collect();
        let listed = config.tensor_shapes().unwrap();
        assert_eq!(listed, built, "{config:?}");
    }
    let r18 = ModelConfig::from_arch("resnet18", 10).unwrap().tensor_shapes().unwrap();
    assert_eq!(r18["layer4.1.alpha2.alphas"], [1, 512, 4, 4]);
    assert_eq!(r18["bn1.num_batches_tracked"], Vec::<usize>::new());
}

#[test]
fn convolution_output_size_is_checked() {
    use snl_models::layers::conv_output_size;
    assert_eq!(conv_output_size(32, 3, 1, 1), Ok(32));
    assert_eq!(conv_output_size(32, 3, 2, 1), Ok(16));
    assert_eq!(conv_output_size(7, 3, 2, 1), Ok(4));
    assert_eq!(conv_output_size(5, 1, 2, 0), Ok(3));
    let too_small = ConfigError::ConvDoesNotFit { input: 1, kernel: 5, stride: 1, padding: 1 };
    assert_eq!(conv_output_size(1, 5, 1, 1), Err(too_small.clone()));
    assert!(
        too_small.to_string().contains("5x5") && too_small.to_string().contains("side of 1"),
        "{too_small}"
    );
    assert!(conv_output_size(8, 3, 0, 1).is_err(), "stride 0");
}

/// Multiply-accumulates of one forward pass, as PyTorch counts them: forward hooks on every
/// `Conv2d` (output elements x in-channels x kernel area) and `Linear` of
/// `snl-bench/scripts/torch_ref.py`'s models on one zero image (run on 1 December 2026).
#[test]
fn forward_macs_match_pytorchs_count() {
    let r18 = |width| ModelConfig::from(ResNetConfig::resnet18(10)).with_width(width);
    assert_eq!(r18(64).forward_macs(), 555_422_720);
    assert_eq!(r18(16).forward_macs(), 35_046_656);
    assert_eq!(ModelConfig::from(ResNetConfig::resnet34(10)).forward_macs(), 1_159_402_496);
    assert_eq!(ModelConfig::from(WrnConfig::wrn_22_8(10)).forward_macs(), 2_454_115_328);
    assert_eq!(ModelConfig::from(WrnConfig::new(16, 4, 10).unwrap()).forward_macs(), 392_612_352);
    let tiny = ModelConfig::from(ResNetConfig::resnet18(200)).with_width(16).with_image_size(64);
    assert_eq!(tiny.forward_macs(), 140_207_104);
    // Absurd shapes saturate instead of overflowing.
    assert_eq!(r18(usize::MAX / 4).forward_macs(), u128::MAX);
}
