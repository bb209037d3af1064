//! The `Pretrainable` trait: how a module lists its tensors for the plan and takes them back.
//!
//! The walk is the same in both directions. [`Pretrainable::walk_pretrain`] tells a [`Walker`]
//! every tensor the module would take from a checkpoint, under the checkpoint's key;
//! [`Pretrainable::apply_pretrain`] follows the same keys through an [`Applier`] holding the
//! tensors the plan decided to load. `#[derive(Pretrainable)]` writes both for structs and
//! enums; this crate implements them for parameters, containers and the burn-nn layers.

use std::collections::HashMap;

use burn::module::{Module, ModuleVisitor, Param, ParamId, RunningState};
use burn::tensor::{DType as BurnDType, Tensor, TensorData};

use crate::format::Convention;

/// How a model tensor is laid out relative to the checkpoint's convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Layout {
    /// Same shape and element order.
    Same,
    /// A 2-D tensor stored transposed in PyTorch (burn's Linear keeps `[in, out]`).
    Transposed,
}

/// One tensor of the model, as the walk found it.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The checkpoint key it loads from.
    pub key: String,
    /// Its path in the burn module (field names).
    pub model_path: String,
    /// Its shape in the model.
    pub shape: Vec<usize>,
    /// The dtype a loaded tensor must have.
    pub dtype: BurnDType,
    pub layout: Layout,
}

impl Target {
    /// The shape the checkpoint must hold for this tensor.
    pub fn checkpoint_shape(&self) -> Vec<usize> {
        match self.layout {
            Layout::Transposed if self.shape.len() == 2 => vec![self.shape[1], self.shape[0]],
            _ => self.shape.clone(),
        }
    }
}

/// Collects the tensors of a module during the planning walk.
#[derive(Debug)]
pub struct Walker {
    convention: Convention,
    keys: Vec<String>,
    fields: Vec<String>,
    pub(crate) targets: Vec<Target>,
    pub(crate) expected_unused: Vec<(String, &'static str)>,
    pub(crate) skipped: Vec<String>,
}

impl Walker {
    pub(crate) fn new(convention: Convention) -> Self {
        Self {
            convention,
            keys: Vec::new(),
            fields: Vec::new(),
            targets: Vec::new(),
            expected_unused: Vec::new(),
            skipped: Vec::new(),
        }
    }

    /// The naming convention of the checkpoint being planned for.
    pub fn convention(&self) -> Convention {
        self.convention
    }

    /// Walk `f` one level down: `key` is the checkpoint's name for the level (empty for none),
    /// `field` the module's. A checkpoint in burn's own convention (burnpack) is keyed by the
    /// field names, so there `field` is used for both.
    pub fn field(&mut self, key: &str, field: &str, f: impl FnOnce(&mut Self)) {
        self.keys
            .push(segment(self.convention, key, field).to_string());
        self.fields.push(field.to_string());
        f(self);
        self.keys.pop();
        self.fields.pop();
    }

    /// Walk a child value one level down: [`field`](Self::field) with its walk.
    pub fn child<T: Pretrainable>(&mut self, key: &str, field: &str, value: &T) {
        self.field(key, field, |w| value.walk_pretrain(w));
    }

    /// Record a tensor at the current key.
    pub fn tensor(&mut self, shape: Vec<usize>, dtype: BurnDType, layout: Layout) {
        let layout = match self.convention {
            Convention::Pytorch => layout,
            Convention::Burn => Layout::Same,
        };
        self.targets.push(Target {
            key: join(&self.keys),
            model_path: join(&self.fields),
            shape,
            dtype,
            layout,
        });
    }

    /// Record a float parameter at the current key, laid out as `layout` says. The shape is
    /// the one the parameter is loaded in (see [`has_load_mapper`]); a lazy parameter stays
    /// uninitialised.
    pub fn param<const D: usize>(&mut self, param: &Param<Tensor<D>>, layout: Layout) {
        self.tensor(load_shape(param), param_dtype(param), layout);
    }

    /// Declare a checkpoint key under the current level that is known and deliberately not
    /// loaded (BatchNorm's `num_batches_tracked`): reported as ignored, not unexpected.
    pub fn expect_unused(&mut self, key: &str, reason: &'static str) {
        self.keys.push(key.to_string());
        self.expected_unused.push((join(&self.keys), reason));
        self.keys.pop();
    }
}

impl Walker {
    /// Declare a field that is never loaded (`#[pretrain(skip)]`): checkpoint keys under
    /// `key` are reported as ignored, not unexpected, and the field is never missing.
    pub fn skipped(&mut self, key: &str) {
        self.keys.push(key.to_string());
        self.skipped.push(join(&self.keys));
        self.keys.pop();
    }
}

/// The key segment for a level: the checkpoint's name, or burn's field name for checkpoints
/// burn wrote.
fn segment<'a>(convention: Convention, key: &'a str, field: &'a str) -> &'a str {
    match convention {
        Convention::Pytorch => key,
        Convention::Burn => field,
    }
}

fn join(segments: &[String]) -> String {
    let mut out = String::new();
    for s in segments.iter().filter(|s| !s.is_empty()) {
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(s);
    }
    out
}

/// Whether burn transforms what is loaded into `param` (a `LinearLayout::Col` weight: burn
/// stores and loads it as `[out, in]` and transposes on load). burn keeps the mapper private;
/// `Param`'s `Debug` shows it as `ParamMapper { load: true, .. }`. The layers test of Row and
/// Col linears fails if that ever changes.
pub(crate) fn has_load_mapper<const D: usize>(param: &Param<Tensor<D>>) -> bool {
    format!("{param:?}").contains("load: true")
}

/// The shape a tensor loaded into `param` must have: what its initialiser makes while it is
/// lazy (a load mapper's input form), or its saved form once initialised.
fn load_shape<const D: usize>(param: &Param<Tensor<D>>) -> Vec<usize> {
    if param.is_initialized() && has_load_mapper(param) {
        param.transform_for_save().val().dims().to_vec()
    } else {
        param.lazy_shape().to_vec()
    }
}

/// The dtype a parameter has or will have, without initialising it.
fn param_dtype<const D: usize>(param: &Param<Tensor<D>>) -> BurnDType {
    if param.is_initialized() {
        param.val().dtype()
    } else {
        param.lazy_device().settings().float_dtype.into()
    }
}

/// Hands the planned tensors to the module during the apply walk.
#[derive(Debug)]
pub struct Applier {
    convention: Convention,
    keys: Vec<String>,
    data: HashMap<String, TensorData>,
}

impl Applier {
    pub(crate) fn new(convention: Convention, data: HashMap<String, TensorData>) -> Self {
        Self {
            convention,
            keys: Vec::new(),
            data,
        }
    }

    /// The naming convention of the checkpoint being applied.
    pub fn convention(&self) -> Convention {
        self.convention
    }

    /// Apply `f` one level down; `key` and `field` as in [`Walker::field`].
    pub fn field<T>(&mut self, key: &str, field: &str, f: impl FnOnce(&mut Self) -> T) -> T {
        self.keys
            .push(segment(self.convention, key, field).to_string());
        let out = f(self);
        self.keys.pop();
        out
    }

    /// Apply a child value one level down: [`field`](Self::field) with its apply.
    pub fn child<T: Pretrainable>(&mut self, key: &str, field: &str, value: T) -> T {
        self.field(key, field, |a| value.apply_pretrain(a))
    }

    /// The tensor planned for the current key, if the plan loads one there. Already cast to
    /// the model's dtype and in the model's layout.
    pub fn take(&mut self) -> Option<TensorData> {
        self.data.remove(&join(&self.keys))
    }

    pub(crate) fn leftover(&self) -> usize {
        self.data.len()
    }
}

/// A module whose parameters can be loaded from a pretrained checkpoint.
///
/// Derive it with `#[derive(Module, Pretrainable)]`; implement it by hand only for a layer
/// whose checkpoint names or layouts differ from its field names (see the burn-nn impls in
/// this crate). Loading itself is done by the methods of [`PretrainExt`](crate::PretrainExt),
/// available on every `Pretrainable` module.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not implement `Pretrainable`, so burn-pretrain cannot walk its tensors",
    note = "derive it with `#[derive(Pretrainable)]`, or mark the field `#[pretrain(skip)]` if it holds nothing to load"
)]
pub trait Pretrainable: Sized {
    /// Tell `walker` every tensor this value would load, each at its checkpoint key.
    fn walk_pretrain(&self, walker: &mut Walker);

    /// Take the planned tensors from `applier`, keeping every other value as it is.
    fn apply_pretrain(self, applier: &mut Applier) -> Self;
}

impl<const D: usize> Pretrainable for Param<Tensor<D>> {
    fn walk_pretrain(&self, walker: &mut Walker) {
        walker.param(self, Layout::Same);
    }

    fn apply_pretrain(self, applier: &mut Applier) -> Self {
        match applier.take() {
            Some(data) => {
                let device = self.lazy_device();
                let id = self.id;
                let tensor = Tensor::<D>::from_data(data, &device);
                self.transform_for_load(tensor, id)
            }
            None => self,
        }
    }
}

/// Finds the id of a running state (a buffer: no public accessor).
struct IdOf(Option<ParamId>);

impl ModuleVisitor for IdOf {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0 = Some(param.id);
    }
}

impl<const D: usize> Pretrainable for RunningState<Tensor<D>> {
    fn walk_pretrain(&self, walker: &mut Walker) {
        let value = self.value();
        walker.tensor(value.shape().to_vec(), value.dtype(), Layout::Same);
    }

    fn apply_pretrain(self, applier: &mut Applier) -> Self {
        let Some(data) = applier.take() else {
            return self;
        };
        let device = self.value().device();
        let tensor = Tensor::<D>::from_data(data, &device);
        let mut id = IdOf(None);
        self.visit(&mut id);
        // A fresh state, not an in-place update: clones of the module keep their values.
        match id.0 {
            Some(id) => RunningState::with_id(id, tensor),
            None => RunningState::new(tensor),
        }
    }
}

impl<T: Pretrainable> Pretrainable for Option<T> {
    fn walk_pretrain(&self, walker: &mut Walker) {
        if let Some(inner) = self {
            inner.walk_pretrain(walker);
        }
    }

    fn apply_pretrain(self, applier: &mut Applier) -> Self {
        self.map(|inner| inner.apply_pretrain(applier))
    }
}

impl<T: Pretrainable> Pretrainable for Vec<T> {
    fn walk_pretrain(&self, walker: &mut Walker) {
        for (i, item) in self.iter().enumerate() {
            let i = i.to_string();
            walker.field(&i, &i, |w| item.walk_pretrain(w));
        }
    }

    fn apply_pretrain(self, applier: &mut Applier) -> Self {
        self.into_iter()
            .enumerate()
            .map(|(i, item)| {
                let i = i.to_string();
                applier.field(&i, &i, |a| item.apply_pretrain(a))
            })
            .collect()
    }
}

impl<T: Pretrainable, const N: usize> Pretrainable for [T; N] {
    fn walk_pretrain(&self, walker: &mut Walker) {
        for (i, item) in self.iter().enumerate() {
            let i = i.to_string();
            walker.field(&i, &i, |w| item.walk_pretrain(w));
        }
    }

    fn apply_pretrain(self, applier: &mut Applier) -> Self {
        let mut i = 0;
        self.map(|item| {
            let name = i.to_string();
            let out = applier.field(&name, &name, |a| item.apply_pretrain(a));
            i += 1;
            out
        })
    }
}

impl<T: Pretrainable> Pretrainable for Box<T> {
    fn walk_pretrain(&self, walker: &mut Walker) {
        (**self).walk_pretrain(walker);
    }

    fn apply_pretrain(self, applier: &mut Applier) -> Self {
        Box::new((*self).apply_pretrain(applier))
    }
}

/// Values that hold no tensors: configuration fields and parameter-free layers.
macro_rules! nothing_to_load {
    ($($ty:ty),* $(,)?) => {
        $(
            impl Pretrainable for $ty {
                fn walk_pretrain(&self, _walker: &mut Walker) {}
                fn apply_pretrain(self, _applier: &mut Applier) -> Self {
                    self
                }
            }
        )*
    };
}

nothing_to_load!(
    bool, u8, u16, u32, u64, usize, i8, i16, i32, i64, isize, f32, f64, String,
);

nothing_to_load!(burn::module::Param<burn::module::Flag>);

impl<T> Pretrainable for std::marker::PhantomData<T> {
    fn walk_pretrain(&self, _walker: &mut Walker) {}
    fn apply_pretrain(self, _applier: &mut Applier) -> Self {
        self
    }
}

pub(crate) use nothing_to_load;
