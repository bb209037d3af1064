#[derive(burn::module::Module, Debug, burn_pretrain::Pretrainable)]
struct Net {
    fc: burn::nn::Linear,
    #[pretrain(rename = "fc")]
    other: burn::nn::Linear,
}

fn main() {}
