#[derive(burn::module::Module, Debug, burn_pretrain::Pretrainable)]
struct Net {
    #[pretrain(skip, rename = "0")]
    fc: burn::nn::Linear,
}

fn main() {}
