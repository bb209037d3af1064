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

mod adapter;
mod apply;
pub mod error;
pub mod expect;
pub mod export;
pub mod format;
pub mod freeze;
mod layout;
mod load;
pub mod mapping;
mod plan;
pub mod policy;
pub mod quantize;
pub mod report;
pub mod source;
pub mod spec;
pub mod view;

// What a user needs to load, report and export; everything else under its stage's module.
pub use burn_pretrain_derive::Pretrainable;
pub use error::{Error, Result};
pub use expect::Expect;
pub use format::Checkpoint;
pub use freeze::Freeze;
pub use load::{PretrainExt, fetch_file, open_checkpoint};
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

/// Entry points of the fuzz targets (`fuzz/`) into what is not public: the pickle walk, a
/// rows file's parser, a mismatch policy's plan and run. Not public API.
#[doc(hidden)]
pub mod __fuzz {
    /// How many tensors the walk of a `data.pkl` places, or `None` where it gives up.
    pub fn pickle(bytes: &[u8]) -> Option<usize> {
        crate::format::torch_pickle::count_views(bytes)
    }

    /// A `rows_file`'s text, parsed.
    pub fn rows(text: &str) -> crate::Result<Vec<usize>> {
        crate::policy::parse_rows(text, "rows")
    }

    /// `policy` planned from the model's and the stored shape, then run on stored values
    /// `0, 1, 2, …`: the adapted values, or why the policy cannot apply.
    pub fn adapt(
        policy: &crate::Policy,
        model: &[usize],
        stored: &[usize],
    ) -> Result<Vec<f32>, String> {
        let plan =
            crate::policy::Adaptation::plan(policy, model, stored).map_err(|e| e.to_string())?;
        let values: Vec<f32> = (0..stored.iter().product::<usize>())
            .map(|i| i as f32)
            .collect();
        Ok(plan.run(&values, stored))
    }
}

/// Paths the derive's generated code goes through. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::mapping::{Mapper, Pretrainable};
}
