//! Shared pieces of the integration tests: Rust mirrors of the PyTorch models that
//! `fixtures/generate.py` saves, and helpers to compare values with what PyTorch wrote.

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn_pretrain::Pretrainable;

/// torchvision's `downsample = Sequential(conv, bn)`: the checkpoint calls them `0` and `1`.
#[derive(Module, Debug, Pretrainable)]
pub struct Downsample {
    #[pretrain(rename = "0")]
    pub conv: Conv2d,
    #[pretrain(rename = "1")]
    pub bn: BatchNorm,
}

/// A BasicBlock-shaped block.
#[derive(Module, Debug, Pretrainable)]
pub struct Block {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub conv2: Conv2d,
    pub bn2: BatchNorm,
    pub downsample: Option<Downsample>,
}

impl Block {
    pub fn new(cin: usize, cout: usize, device: &Device) -> Self {
        let conv3 = |i, o| {
            Conv2dConfig::new([i, o], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false)
                .init(device)
        };
        Self {
            conv1: conv3(cin, cout),
            bn1: BatchNormConfig::new(cout).init(device),
            conv2: conv3(cout, cout),
            bn2: BatchNormConfig::new(cout).init(device),
            downsample: (cin != cout).then(|| Downsample {
                conv: Conv2dConfig::new([cin, cout], [1, 1])
                    .with_bias(false)
                    .init(device),
                bn: BatchNormConfig::new(cout).init(device),
            }),
        }
    }
}

/// The fixtures' backbone: conv1, bn1, layer1 = [Block(4, 4), Block(4, 8)].
#[derive(Module, Debug, Pretrainable)]
pub struct Backbone {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub layer1: Vec<Block>,
}

impl Backbone {
    pub fn new(device: &Device) -> Self {
        Self {
            conv1: Conv2dConfig::new([3, 4], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false)
                .init(device),
            bn1: BatchNormConfig::new(4).init(device),
            layer1: vec![Block::new(4, 4, device), Block::new(4, 8, device)],
        }
    }
}

/// The classification head: one Linear called `fc`.
#[derive(Module, Debug, Pretrainable)]
pub struct Head {
    pub fc: Linear,
}

/// The seed's classifier shape: backbone + head.
#[derive(Module, Debug, Pretrainable)]
pub struct Classifier {
    pub backbone: Backbone,
    pub head: Head,
}

impl Classifier {
    pub fn new(num_classes: usize, device: &Device) -> Self {
        Self {
            backbone: Backbone::new(device),
            head: Head {
                fc: LinearConfig::new(8, num_classes).init(device),
            },
        }
    }
}

/// The path of a committed fixture file.
pub fn fixture(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(relative)
}

/// A tensor's shape and values as PyTorch saved them.
pub type Values = (Vec<usize>, Vec<f32>);

/// The `expected.json` PyTorch wrote next to a case's checkpoint.
pub fn expected(case: &str) -> BTreeMap<String, Values> {
    let text = std::fs::read_to_string(fixture(&format!("{case}/expected.json")))
        .unwrap_or_else(|e| panic!("fixture {case}/expected.json: {e}"));
    let json: serde_json::Value = serde_json::from_str(&text).expect("expected.json parses");
    json.as_object()
        .expect("expected.json is an object")
        .iter()
        .map(|(k, v)| {
            let shape = v["shape"]
                .as_array()
                .expect("shape")
                .iter()
                .map(|d| d.as_u64().expect("dim") as usize)
                .collect();
            let values = v["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(|x| x.as_f64().expect("value") as f32)
                .collect();
            (k.clone(), (shape, values))
        })
        .collect()
}

fn values<const D: usize>(t: Tensor<D>) -> Values {
    let shape = t.shape().to_vec();
    (
        shape,
        t.into_data()
            .convert::<f32>()
            .try_to_vec()
            .expect("f32 data"),
    )
}

fn param<const D: usize>(p: &Param<Tensor<D>>) -> Values {
    values(p.val())
}

/// The model's tensors under PyTorch's names and layout, written out by hand so that the
/// tests do not check the loader's key mapping with itself.
pub trait StateDict {
    fn state_dict(&self, prefix: &str, out: &mut BTreeMap<String, Values>);

    fn to_state_dict(&self) -> BTreeMap<String, Values> {
        let mut out = BTreeMap::new();
        self.state_dict("", &mut out);
        out
    }
}

impl StateDict for Conv2d {
    fn state_dict(&self, prefix: &str, out: &mut BTreeMap<String, Values>) {
        out.insert(format!("{prefix}weight"), param(&self.weight));
        if let Some(b) = &self.bias {
            out.insert(format!("{prefix}bias"), param(b));
        }
    }
}

impl StateDict for BatchNorm {
    fn state_dict(&self, prefix: &str, out: &mut BTreeMap<String, Values>) {
        out.insert(format!("{prefix}weight"), param(&self.gamma));
        out.insert(format!("{prefix}bias"), param(&self.beta));
        out.insert(
            format!("{prefix}running_mean"),
            values(self.running_mean.value()),
        );
        out.insert(
            format!("{prefix}running_var"),
            values(self.running_var.value()),
        );
    }
}

impl StateDict for Linear {
    fn state_dict(&self, prefix: &str, out: &mut BTreeMap<String, Values>) {
        // burn keeps [in, out]; PyTorch saves [out, in].
        out.insert(
            format!("{prefix}weight"),
            values(self.weight.val().transpose()),
        );
        if let Some(b) = &self.bias {
            out.insert(format!("{prefix}bias"), param(b));
        }
    }
}

impl StateDict for Block {
    fn state_dict(&self, prefix: &str, out: &mut BTreeMap<String, Values>) {
        self.conv1.state_dict(&format!("{prefix}conv1."), out);
        self.bn1.state_dict(&format!("{prefix}bn1."), out);
        self.conv2.state_dict(&format!("{prefix}conv2."), out);
        self.bn2.state_dict(&format!("{prefix}bn2."), out);
        if let Some(d) = &self.downsample {
            d.conv.state_dict(&format!("{prefix}downsample.0."), out);
            d.bn.state_dict(&format!("{prefix}downsample.1."), out);
        }
    }
}

impl StateDict for Backbone {
    fn state_dict(&self, prefix: &str, out: &mut BTreeMap<String, Values>) {
        self.conv1.state_dict(&format!("{prefix}conv1."), out);
        self.bn1.state_dict(&format!("{prefix}bn1."), out);
        for (i, b) in self.layer1.iter().enumerate() {
            b.state_dict(&format!("{prefix}layer1.{i}."), out);
        }
    }
}

impl StateDict for Classifier {
    fn state_dict(&self, prefix: &str, out: &mut BTreeMap<String, Values>) {
        self.backbone.state_dict(&format!("{prefix}backbone."), out);
        self.head.fc.state_dict(&format!("{prefix}head.fc."), out);
    }
}

/// Assert that every tensor `expected` names (after stripping `strip` and keeping only keys
/// under it) equals the model's, element for element.
pub fn assert_values_eq(
    model: &BTreeMap<String, Values>,
    expected: &BTreeMap<String, Values>,
    strip: &str,
) -> usize {
    let mut compared = 0;
    for (key, (shape, want)) in expected {
        let Some(key) = key.strip_prefix(strip) else {
            continue;
        };
        let (got_shape, got) = model
            .get(key)
            .unwrap_or_else(|| panic!("model has no tensor `{key}`"));
        assert_eq!(got_shape, shape, "shape of `{key}`");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(g == w, "`{key}`[{i}]: model {g} vs. PyTorch {w}");
        }
        compared += 1;
    }
    compared
}
