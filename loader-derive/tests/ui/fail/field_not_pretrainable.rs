#[derive(Clone, Debug)]
struct Opaque;

#[derive(burn_pretrain::Pretrainable)]
struct Net {
    fc: burn::nn::Linear,
    other: Opaque,
}

fn main() {}
