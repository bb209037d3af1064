#[derive(burn::module::Module, Debug, burn_pretrain::Pretrainable)]
struct Net {
    #[pretrain(rename = "0", rename = "1")]
    fc: burn::nn::Linear,
}

fn main() {}
