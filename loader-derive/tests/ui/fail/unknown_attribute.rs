#[derive(burn::module::Module, Debug, burn_pretrain::Pretrainable)]
struct Net {
    #[pretrain(renam = "0")]
    fc: burn::nn::Linear,
}

fn main() {}
