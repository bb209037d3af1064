#[derive(burn::module::Module, Debug, burn_pretrain::Pretrainable)]
#[pretrain(rename = "net")]
struct Net {
    fc: burn::nn::Linear,
}

fn main() {}
