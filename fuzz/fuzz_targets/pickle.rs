//! The walk of a PyTorch zip's `data.pkl` (where each tensor lies in its storage): any bytes
//! give an answer (the tensors placed, or `None`: give up to pytorch-reader), never a panic,
//! a stack overflow (nesting is counted per stack entry), a hang or a memo bomb.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = burn_pretrain::__fuzz::pickle(data);
});
