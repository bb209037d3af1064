// Every attribute, generics and enums, with nothing imported but the derive's own name.
#[derive(burn::module::Module, Debug, burn_pretrain::Pretrainable)]
struct Net<M: burn::module::Module> {
    #[pretrain(rename = "0")]
    first: burn::nn::Linear,
    #[pretrain(skip)]
    skipped: burn::nn::Linear,
    #[pretrain(flatten)]
    inner: M,
    #[module(skip)]
    note: String,
}

// Pretrainable does not need Module: struct and unit variants are covered too.
#[derive(burn_pretrain::Pretrainable)]
enum Choice {
    A(burn::nn::Linear),
    B { fc: burn::nn::Linear },
    Empty,
}

#[derive(burn::module::Module, Debug, burn_pretrain::Pretrainable)]
struct Unit;

fn main() {
    fn is_pretrainable<T: burn_pretrain::Pretrainable>() {}
    is_pretrainable::<Net<burn::nn::Linear>>();
    is_pretrainable::<Choice>();
    is_pretrainable::<Unit>();
}
