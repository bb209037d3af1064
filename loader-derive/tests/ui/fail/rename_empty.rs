#[derive(burn::module::Module, Debug, burn_pretrain::Pretrainable)]
struct Net {
    #[pretrain(rename = "")]
    fc: burn::nn::Linear,
}

fn main() {}
