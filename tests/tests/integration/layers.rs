//! Every burn-nn layer with parameters, loaded from PyTorch's names and layouts.

use burn::module::Param;
use burn::nn::conv::{Conv1d, Conv1dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{
    Embedding, EmbeddingConfig, GroupNorm, GroupNormConfig, InstanceNorm, InstanceNormConfig,
    LayerNorm, LayerNormConfig, Linear, LinearConfig, PRelu, PReluConfig, RmsNorm, RmsNormConfig,
};
use burn::prelude::*;
use burn_pretrain::{PretrainExt, Pretrainable};
use burn_pretrain_tests::{expected, fixture};

#[derive(Module, Debug, Pretrainable)]
struct Layers {
    conv1d: Conv1d,
    deconv: ConvTranspose2d,
    ln: LayerNorm,
    gn: GroupNorm,
    inorm: InstanceNorm,
    emb: Embedding,
    prelu: PRelu,
    proj: Linear,
    rms: RmsNorm,
}

fn values<const D: usize>(p: &Param<Tensor<D>>) -> Vec<f32> {
    p.val().into_data().convert::<f32>().try_to_vec().unwrap()
}

#[test]
fn every_layer_takes_pytorch_names_and_layouts() {
    let device = Device::flex();
    let model = Layers {
        conv1d: Conv1dConfig::new(3, 4, 3).init(&device),
        deconv: ConvTranspose2dConfig::new([4, 2], [3, 3]).init(&device),
        ln: LayerNormConfig::new(6).init(&device),
        gn: GroupNormConfig::new(2, 4).init(&device),
        inorm: InstanceNormConfig::new(4).with_affine(true).init(&device),
        emb: EmbeddingConfig::new(10, 6).init(&device),
        prelu: PReluConfig::new().with_num_parameters(4).init(&device),
        proj: LinearConfig::new(6, 3).with_bias(false).init(&device),
        rms: RmsNormConfig::new(6).init(&device),
    };
    let (m, report) = model.load_pretrained(fixture("layers/layers.pth")).unwrap();
    assert!(report.is_complete(), "{report}");
    assert_eq!(report.loaded().len(), 14);

    let want = expected("layers");
    let check = |key: &str, got: Vec<f32>| assert_eq!(got, want[key].1, "{key}");
    check("conv1d.weight", values(&m.conv1d.weight));
    check("conv1d.bias", values(m.conv1d.bias.as_ref().unwrap()));
    check("deconv.weight", values(&m.deconv.weight));
    check("deconv.bias", values(m.deconv.bias.as_ref().unwrap()));
    check("ln.weight", values(&m.ln.gamma));
    check("ln.bias", values(m.ln.beta.as_ref().unwrap()));
    check("gn.weight", values(m.gn.gamma.as_ref().unwrap()));
    check("gn.bias", values(m.gn.beta.as_ref().unwrap()));
    check("inorm.weight", values(m.inorm.gamma.as_ref().unwrap()));
    check("inorm.bias", values(m.inorm.beta.as_ref().unwrap()));
    check("emb.weight", values(&m.emb.weight));
    check("prelu.weight", values(&m.prelu.alpha));
    check("rms.weight", values(&m.rms.gamma));
    // PyTorch keeps Linear as [out, in] = [3, 6]; burn as [in, out].
    assert_eq!(m.proj.weight.val().dims(), [6, 3]);
    let proj = m.proj.weight.val().transpose().into_data();
    check("proj.weight", proj.convert::<f32>().try_to_vec().unwrap());
}

#[derive(Module, Debug, Pretrainable)]
struct Proj {
    proj: Linear,
}

#[test]
fn column_layout_linears_load_like_row_layout_ones() {
    use burn::nn::LinearLayout;
    let device = Device::flex();
    let want = expected("layers")["proj.weight"].1.clone();
    for layout in [LinearLayout::Row, LinearLayout::Col] {
        // Lazy (never initialised) and already initialised parameters alike.
        for materialise in [false, true] {
            let proj = LinearConfig::new(6, 3)
                .with_bias(false)
                .with_layout(layout)
                .init(&device);
            if materialise {
                let _ = proj.weight.val();
            }
            let (m, report) = Proj { proj }
                .load_pretrained(fixture("layers/layers.pth"))
                .unwrap();
            let case = format!("{layout:?}, materialised {materialise}");
            assert_eq!(report.loaded(), ["proj.weight"], "{case}: {report}");
            assert!(report.mismatched().is_empty(), "{case}: {report}");
            assert_eq!(m.proj.weight.val().dims(), [6, 3], "{case}");
            let got = m.proj.weight.val().transpose().into_data();
            assert_eq!(
                got.convert::<f32>().try_to_vec::<f32>().unwrap(),
                want,
                "{case}"
            );
        }
    }
}
