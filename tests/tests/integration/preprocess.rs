//! Images prepared as timm's eval transform prepares them: committed images of several sizes
//! and aspect ratios, and timm's tensors for three data configs
//! (`fixtures/preprocess/generate.py`), compared in normalised units.

use burn_pretrain_models::preprocess::{eval_transform, load_image};
use burn_pretrain_models::repository::DataConfig;
use burn_pretrain_tests::{fixture, saved_f32};
use serde_json::Value;

fn data_config(config: &Value) -> DataConfig {
    let floats = |key: &str| -> Vec<f64> {
        config[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let size = floats("input_size");
    DataConfig {
        input_size: [size[0] as usize, size[1] as usize, size[2] as usize],
        mean: floats("mean"),
        std: floats("std"),
        crop_pct: config["crop_pct"].as_f64().unwrap(),
        crop_mode: config["crop_mode"].as_str().unwrap().to_string(),
        interpolation: config["interpolation"].as_str().unwrap().to_string(),
    }
}

#[test]
fn eval_transform_matches_timm_on_every_image_and_config() {
    let configs: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("preprocess/configs.json")).unwrap())
            .unwrap();
    let mut compared = 0;
    for (name, config) in configs.as_object().unwrap() {
        let data = data_config(config);
        for image in ["wide.png", "tall.png", "large.png", "photo.jpg"] {
            let img = load_image(&fixture(&format!("preprocess/{image}"))).unwrap();
            let ours = eval_transform(&img, &data).unwrap();
            let (shape, theirs) = saved_f32(
                "preprocess/expected.safetensors",
                &format!("{name}/{image}"),
            );
            assert_eq!(ours.shape().to_vec(), shape, "{name}/{image}");
            let ours: Vec<f32> = ours.iter::<f32>().collect();
            let diffs: Vec<f32> = ours
                .iter()
                .zip(&theirs)
                .map(|(a, b)| (a - b).abs())
                .collect();
            let max = diffs.iter().copied().fold(0f32, f32::max);
            let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
            assert!(max <= 0.05, "{name}/{image}: max abs difference {max}");
            assert!(mean <= 0.005, "{name}/{image}: mean abs difference {mean}");
            println!("{name}/{image}: max {max:.4}, mean {mean:.5}");
            compared += 1;
        }
    }
    assert_eq!(compared, 12);
}
