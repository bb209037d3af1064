//! `#[derive(Pretrainable)]` for burn-pretrain. Parses, checks and expands; see the
//! `burn-pretrain` crate for what the generated impl does.
//!
//! Field attributes:
//! - `#[pretrain(rename = "0")]`: the checkpoint's name for this field (torchvision's
//!   `downsample.0`); may contain dots for a deeper path.
//! - `#[pretrain(skip)]`: never loaded and never reported missing. `#[module(skip)]` fields
//!   are skipped too.
//! - `#[pretrain(flatten)]`: the field's tensors sit directly at the parent's level.

mod ast;
mod attr;
mod expand;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Derive `burn_pretrain::Pretrainable` for a struct or enum of burn modules.
#[proc_macro_derive(Pretrainable, attributes(pretrain))]
pub fn derive_pretrainable(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive(&input).into()
}
