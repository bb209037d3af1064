//! Load pretrained weights into burn modules: any checkpoint, remapped, shape-checked, reported.
//!
//! ```no_run
//! use burn::prelude::*;
//! use burn::nn::{Linear, LinearConfig};
//! use burn_pretrain::{Pretrain, PretrainExt, Pretrainable};
//!
//! #[derive(Module, Debug, Pretrainable)]
//! struct Head {
//!     fc: Linear,
//! }
//!
//! let device = Device::flex();
//! let head = Head { fc: LinearConfig::new(2048, 200).init(&device) };
//! // Logs what was loaded, skipped for shape, missing and unexpected.
//! let head = head.with_pretrain("pretrain.pth")?;
//! // Or keep the report, with a sub-level of a bigger checkpoint.
//! let (head, report) = head.load_pretrained(Pretrain::from("classifier.pth").with_sub_level("head"))?;
//! println!("{report}");
//! # Ok::<(), burn_pretrain::Error>(())
//! ```
//!
//! The data path: a file is opened by content ([`Checkpoint`]: PyTorch zip, legacy and TAR
//! through `pytorch-reader`, safetensors, burnpack), seen through a view (containers
//! unwrapped, `module.`/`_orig_mod.` stripped, `sub_level`, remaps), matched against the
//! module's tensors ([`Pretrainable`]) into a plan from headers only, applied reading only the
//! planned tensors, and summarised in a [`LoadReport`].

#![warn(missing_docs)]

mod apply;
pub mod error;
pub mod expect;
pub mod export;
pub mod format;
mod load;
pub mod mapping;
mod plan;
pub mod policy;
pub mod report;
pub mod source;
pub mod spec;
pub mod view;

// What a user needs to load, report and export; everything else under its stage's module.
pub use burn_pretrain_derive::Pretrainable;
pub use error::{Error, Result};
pub use expect::Expect;
pub use format::Checkpoint;
pub use load::{PretrainExt, open_checkpoint};
pub use mapping::Pretrainable;
pub use policy::{MismatchRule, Policy};
pub use report::LoadReport;
pub use spec::Pretrain;

/// Helpers the workspace's `pretrain` CLI shares with the library. Not public API: they may
/// change in any release.
#[doc(hidden)]
pub mod __cli {
    pub use crate::export::write_atomic;
    pub use crate::format::checkpoint::natural_cmp;
    pub use crate::report::fold::fold_keys;
}

/// Paths the derive's generated code goes through. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::mapping::{Mapper, Pretrainable};
}
