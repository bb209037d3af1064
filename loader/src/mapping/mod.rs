//! The `Pretrainable` trait: one mapping per layer, used to plan, apply and export.
//!
//! A layer says once, in [`Pretrainable::map_pretrain`], which checkpoint key each of its
//! parameters comes from and in which layout — one tensor, a transposed one, or one checkpoint
//! tensor packed from several parameters (LSTM gates, attention's `in_proj_weight`). The same
//! declaration runs through a [`Mapper`] in three modes: planning (record targets, read
//! nothing), applying (take the planned tensors by model path) and exporting (collect the
//! parameters under PyTorch's names). Because all three run the same code, they cannot disagree
//! about keys; a planned tensor that the apply walk does not take is an `Err`, never a silent
//! drop. `#[derive(Pretrainable)]` writes the mapping for structs and enums.

mod nn;

pub use nn::packed_qkv;

use std::collections::{BTreeSet, HashMap, HashSet};

use burn::module::{Module, ModuleVisitor, Param, ParamId, RunningState};
use burn::tensor::{DType as BurnDType, Tensor, TensorData};

use crate::format::Convention;
use crate::policy::Policy;

/// How a model tensor is laid out relative to the checkpoint's convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Layout {
    /// Same shape and element order.
    Same,
    /// A 2-D tensor stored transposed in PyTorch (burn's Linear keeps `[in, out]`).
    Transposed,
}

/// One model parameter that takes (part of) a checkpoint tensor.
#[derive(Debug, Clone)]
pub(crate) struct Piece {
    /// Its path in the burn module (field names).
    pub model_path: String,
    /// Its shape in the model, in the form it is loaded in.
    pub shape: Vec<usize>,
    pub layout: Layout,
    /// The parameter's id (kept by a load), by which it is frozen or adapted afterwards.
    pub id: ParamId,
}

impl Piece {
    /// The shape this piece has in the checkpoint's layout.
    pub fn checkpoint_shape(&self) -> Vec<usize> {
        match self.layout {
            Layout::Transposed if self.shape.len() == 2 => vec![self.shape[1], self.shape[0]],
            _ => self.shape.clone(),
        }
    }
}

/// One checkpoint tensor the model takes: a single parameter, or several packed along `axis`.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The checkpoint key it loads from.
    pub key: String,
    /// The parameters it fills, in checkpoint order along `axis`.
    pub pieces: Vec<Piece>,
    /// The axis (in the checkpoint's layout) the pieces are stacked along.
    pub axis: usize,
    /// The dtype a loaded tensor must have.
    pub dtype: BurnDType,
    /// The layer's own mismatch policy, used when no rule of the load matches.
    pub default_policy: Option<Policy>,
}

impl Target {
    /// Whether one checkpoint tensor feeds several parameters.
    pub fn is_packed(&self) -> bool {
        self.pieces.len() > 1
    }

    /// The model path shown for this target (the common prefix of a packed one).
    pub fn model_path(&self) -> String {
        match self.pieces.as_slice() {
            [one] => one.model_path.clone(),
            pieces => {
                let first: Vec<&str> = pieces[0].model_path.split('.').collect();
                let mut common = first.len();
                for p in &pieces[1..] {
                    let segs: Vec<&str> = p.model_path.split('.').collect();
                    common =
                        common.min(first.iter().zip(&segs).take_while(|(a, b)| a == b).count());
                }
                first[..common].join(".")
            }
        }
    }

    /// The shape the checkpoint must hold for this target: the pieces' checkpoint shapes
    /// stacked along `axis`.
    pub fn checkpoint_shape(&self) -> Vec<usize> {
        let mut shapes = self.pieces.iter().map(Piece::checkpoint_shape);
        let Some(mut out) = shapes.next() else {
            return Vec::new();
        };
        for s in shapes {
            if let (Some(total), Some(n)) = (out.get_mut(self.axis), s.get(self.axis)) {
                *total += n;
            }
        }
        out
    }

    /// Whether a stored tensor of `shape` can be split into exactly these pieces.
    pub fn fits(&self, shape: &[usize]) -> bool {
        if self.checkpoint_shape() != shape {
            return false;
        }
        self.pieces.iter().all(|p| {
            let s = p.checkpoint_shape();
            s.len() == shape.len()
                && s.iter()
                    .zip(shape)
                    .enumerate()
                    .all(|(i, (a, b))| i == self.axis || a == b)
        })
    }
}

/// What a mapping walk does with the parameters it meets.
#[derive(Debug)]
pub(crate) enum Mode {
    /// Record targets only.
    Plan,
    /// Put these tensors (by model path, in the model's layout or, those in `views`, as
    /// transposed views of the checkpoint's) into the parameters.
    Apply(Ready),
    /// Collect every parameter's value by model path (in the form it is loaded in).
    Export(HashMap<String, TensorData>),
    /// Collect the burn LoRA adapters attached to parameters, by parameter id.
    Lora(HashMap<ParamId, LoraFactors>),
}

/// A parameter's LoRA adapter as data: `a` `[d_in, r]`, `b` `[r, d_out]` and the scale.
#[derive(Debug)]
pub(crate) struct LoraFactors {
    pub a: TensorData,
    pub b: TensorData,
    pub scale: f64,
}

/// Tensors ready for the model, by model path, in the model's layout — except those in
/// `views`: 2-D tensors kept in the checkpoint's layout, which the model gets as transposed
/// views (see [`Pretrain::with_transposed_views`](crate::Pretrain::with_transposed_views)); filled
/// by `apply::read`.
#[derive(Debug, Default)]
pub(crate) struct Ready {
    pub tensors: HashMap<String, TensorData>,
    pub views: HashSet<String>,
}

/// One parameter of a packed checkpoint tensor, for [`Mapper::packed`].
#[derive(Debug)]
pub struct Part<'p, const D: usize> {
    /// Its path below the current level (`input_gate.input_transform.weight`).
    pub field: &'p str,
    /// The parameter.
    pub param: &'p mut Param<Tensor<D>>,
    /// Its layout relative to the checkpoint's slice.
    pub layout: Layout,
}

impl<'p, const D: usize> Part<'p, D> {
    /// A part at `field` with `layout`.
    pub fn new(field: &'p str, param: &'p mut Param<Tensor<D>>, layout: Layout) -> Self {
        Self {
            field,
            param,
            layout,
        }
    }
}

/// Walks a module's mapping: plans, applies or exports, depending on how it was made.
#[derive(Debug)]
pub struct Mapper<'a> {
    convention: Convention,
    keys: Vec<String>,
    fields: Vec<String>,
    rnn: (usize, bool),
    view_keys: Option<&'a BTreeSet<String>>,
    default_policy: Option<Policy>,
    pub(crate) mode: Mode,
    pub(crate) targets: Vec<Target>,
    pub(crate) expected_unused: Vec<(String, &'static str)>,
    pub(crate) skipped: Vec<String>,
    /// Tensors written on export only, each with the number of targets before it.
    pub(crate) constants: Vec<(usize, String, TensorData)>,
}

impl<'a> Mapper<'a> {
    pub(crate) fn new(
        convention: Convention,
        view_keys: Option<&'a BTreeSet<String>>,
        mode: Mode,
    ) -> Self {
        Self {
            convention,
            keys: Vec::new(),
            fields: Vec::new(),
            rnn: (0, false),
            view_keys,
            default_policy: None,
            mode,
            targets: Vec::new(),
            expected_unused: Vec::new(),
            skipped: Vec::new(),
            constants: Vec::new(),
        }
    }

    /// The naming convention of the checkpoint being mapped.
    pub fn convention(&self) -> Convention {
        self.convention
    }

    /// Map `f` one level down: `key` is the checkpoint's name for the level (empty for none;
    /// it may hold dots), `field` the module's path. A checkpoint in burn's own convention
    /// (burnpack) is keyed by the field names, so there `field` is used for both.
    pub fn field<T>(&mut self, key: &str, field: &str, f: impl FnOnce(&mut Self) -> T) -> T {
        let key = match self.convention {
            Convention::Pytorch => key,
            Convention::Burn => field,
        };
        self.keys.push(key.to_string());
        self.fields.push(field.to_string());
        let out = f(self);
        self.keys.pop();
        self.fields.pop();
        out
    }

    /// Map a child value one level down: [`field`](Self::field) with its mapping.
    pub fn child<T: Pretrainable + ?Sized>(&mut self, key: &str, field: &str, value: &mut T) {
        self.field(key, field, |m| value.map_pretrain(m));
    }

    /// Map `f` with `policy` as the layer's own rule for the tensors it declares whose stored
    /// shape differs from the model's, used when no mismatch rule of the load matches them: a
    /// Vision Transformer's `pos_embed` resamples to the model's grid by default, as timm's
    /// loader does. The report names it `(model default)`; a rule of the load overrides it.
    pub fn on_mismatch<T>(&mut self, policy: Policy, f: impl FnOnce(&mut Self) -> T) -> T {
        let outer = self.default_policy.replace(policy);
        let out = f(self);
        self.default_policy = outer;
        out
    }

    /// A float parameter at the current key, laid out as `layout` says.
    pub fn param<const D: usize>(&mut self, param: &mut Param<Tensor<D>>, layout: Layout) {
        self.packed(
            "",
            0,
            vec![Part {
                field: "",
                param,
                layout,
            }],
        );
    }

    /// One checkpoint tensor at `key` (below the current level) made of `parts` stacked along
    /// `axis` of the checkpoint's layout, in order: PyTorch's `weight_ih_l0` holding the LSTM
    /// gates, `in_proj_weight` holding query, key and value. Under burn's own convention each
    /// part is its own tensor at its field path. One part is a plain (maybe renamed) tensor.
    pub fn packed<const D: usize>(&mut self, key: &str, axis: usize, parts: Vec<Part<'_, D>>) {
        let Some(first) = parts.first() else {
            return;
        };
        let dtype = param_dtype(first.param);
        if self.convention == Convention::Burn && !(parts.len() == 1 && key.is_empty()) {
            for part in parts {
                self.field("", part.field, |m| m.param(part.param, Layout::Same));
            }
            return;
        }
        let checkpoint_key = self.key_with(key);
        let mut pieces = Vec::with_capacity(parts.len());
        for part in parts {
            let model_path = self.field_with(part.field);
            let layout = match self.convention {
                Convention::Pytorch => part.layout,
                Convention::Burn => Layout::Same,
            };
            pieces.push(Piece {
                shape: load_shape(part.param),
                model_path: model_path.clone(),
                layout,
                id: part.param.id,
            });
            match &mut self.mode {
                Mode::Plan => {}
                Mode::Apply(data) => {
                    if let Some(values) = data.tensors.remove(&model_path) {
                        let device = part.param.lazy_device();
                        let id = part.param.id;
                        let tensor = Tensor::<D>::from_data(values, &device);
                        // Stored `[out, in]`, held `[in, out]`: a view, no copy.
                        let tensor = match data.views.remove(&model_path) {
                            true => tensor.swap_dims(0, 1),
                            false => tensor,
                        };
                        *part.param = part.param.clone().transform_for_load(tensor, id);
                    }
                }
                Mode::Export(values) => {
                    let value = part.param.transform_for_save().val().into_data();
                    values.insert(model_path, value);
                }
                Mode::Lora(found) => {
                    if let Some(adapter) = part.param.adapter() {
                        found.insert(
                            part.param.id,
                            LoraFactors {
                                a: adapter.a.val().into_data(),
                                b: adapter.b.val().into_data(),
                                scale: adapter.scale,
                            },
                        );
                    }
                }
            }
        }
        self.targets.push(Target {
            key: checkpoint_key,
            pieces,
            axis,
            dtype,
            default_policy: self.default_policy.clone(),
        });
    }

    /// A running statistic (BatchNorm's `running_mean`) at the current key.
    pub fn running<const D: usize>(&mut self, state: &mut RunningState<Tensor<D>>) {
        let value = state.value();
        let model_path = self.field_with("");
        let mut id = IdOf(None);
        state.visit(&mut id);
        self.targets.push(Target {
            key: self.key_with(""),
            pieces: vec![Piece {
                model_path: model_path.clone(),
                shape: value.shape().to_vec(),
                layout: Layout::Same,
                id: id.0.unwrap_or_default(),
            }],
            axis: 0,
            dtype: value.dtype(),
            default_policy: self.default_policy.clone(),
        });
        match &mut self.mode {
            Mode::Plan | Mode::Lora(_) => {}
            Mode::Apply(data) => {
                if let Some(data) = data.tensors.remove(&model_path) {
                    let tensor = Tensor::<D>::from_data(data, &value.device());
                    // A fresh state, not an in-place update: clones of the module keep theirs.
                    *state = match id.0 {
                        Some(id) => RunningState::with_id(id, tensor),
                        None => RunningState::new(tensor),
                    };
                }
            }
            Mode::Export(values) => {
                values.insert(model_path, value.into_data());
            }
        }
    }

    /// Declare a checkpoint key under the current level that is known and deliberately not
    /// loaded (BatchNorm's `num_batches_tracked`): reported as ignored, not unexpected.
    pub fn unused(&mut self, key: &str, reason: &'static str) {
        let key = self.key_with(key);
        self.expected_unused.push((key, reason));
    }

    /// A tensor written under `key` (below the current level) when exporting, and nothing
    /// else: what PyTorch's twin needs to load strictly (`num_batches_tracked`).
    pub fn export_constant(&mut self, key: &str, value: impl FnOnce() -> TensorData) {
        if matches!(self.mode, Mode::Export(_)) && self.convention == Convention::Pytorch {
            let key = self.key_with(key);
            self.constants.push((self.targets.len(), key, value()));
        }
    }

    /// Declare a field that is never loaded (`#[pretrain(skip)]`): checkpoint keys under
    /// `key` are reported as ignored, not unexpected, and the field is never missing.
    pub fn skipped(&mut self, key: &str) {
        let key = self.key_with(key);
        self.skipped.push(key);
    }

    /// Whether the checkpoint (after the view) holds `key` below the current level. When
    /// exporting, whether the keys to follow hold it (`false` without them, so a mapping with
    /// alternatives exports its last, default form).
    pub fn has_key(&self, key: &str) -> bool {
        let key = self.key_with(key);
        self.view_keys.is_some_and(|keys| keys.contains(&key))
    }

    /// Whether the checkpoint holds any key below `prefix` (below the current level).
    pub fn has_prefix(&self, prefix: &str) -> bool {
        let mut prefix = self.key_with(prefix);
        prefix.push('.');
        self.view_keys.is_some_and(|keys| {
            keys.range(prefix.clone()..)
                .next()
                .is_some_and(|k| k.starts_with(&prefix))
        })
    }

    /// PyTorch's suffix for the recurrent layer being mapped: `_l0`, `_l1_reverse`.
    pub fn rnn_suffix(&self) -> String {
        let (layer, reverse) = self.rnn;
        if reverse {
            format!("_l{layer}_reverse")
        } else {
            format!("_l{layer}")
        }
    }

    /// Map `f` as layer `layer` of a stacked recurrent network, its reverse direction if
    /// `reverse`: what [`rnn_suffix`](Self::rnn_suffix) answers inside.
    pub fn rnn_layer(&mut self, layer: usize, reverse: bool, f: impl FnOnce(&mut Self)) {
        let saved = std::mem::replace(&mut self.rnn, (layer, reverse));
        f(self);
        self.rnn = saved;
    }

    /// The recurrent layer being mapped.
    pub(crate) fn rnn_state(&self) -> (usize, bool) {
        self.rnn
    }

    /// The checkpoint key of `key` below the current level.
    fn key_with(&self, key: &str) -> String {
        join(self.keys.iter().map(String::as_str).chain([key]))
    }

    /// The model path of `field` below the current level.
    fn field_with(&self, field: &str) -> String {
        join(self.fields.iter().map(String::as_str).chain([field]))
    }
}

/// Dotted path of the non-empty segments.
fn join<'s>(segments: impl IntoIterator<Item = &'s str>) -> String {
    let mut out = String::new();
    for s in segments.into_iter().filter(|s| !s.is_empty()) {
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(s);
    }
    out
}

/// Whether burn changes the layout of what is loaded into `param` (a `LinearLayout::Col`
/// weight: burn stores and loads it as `[out, in]` and transposes on load).
///
/// burn 0.22 keeps a `Param`'s `ParamMapper` private and offers no `has_load_mapper`, so this
/// asks through the public API instead of reading `Debug` text: a probe of shape
/// `[1, …, 1, 2]` goes through `transform_for_load` on a clone (which never initialises
/// `param` itself, a lazy one stays lazy) and comes back with another shape only if a load
/// mapper moved its axes. The layers test of Row and Col linears fails if that ever changes.
pub(crate) fn loads_transformed<const D: usize>(param: &Param<Tensor<D>>) -> bool {
    if D < 2 {
        return false;
    }
    let mut dims = [1usize; D];
    dims[D - 1] = 2;
    let probe = Tensor::<D>::zeros(dims, &param.lazy_device());
    let loaded = param.clone().transform_for_load(probe, param.id);
    loaded.val().dims() != dims
}

/// The layout of a Linear-style weight against PyTorch's `[out, in]`: a Row weight (burn's
/// default, `[in, out]`) is its transpose; a Col weight is loaded as `[out, in]`.
pub fn linear_layout<const D: usize>(weight: &Param<Tensor<D>>) -> Layout {
    if loads_transformed(weight) {
        Layout::Same
    } else {
        Layout::Transposed
    }
}

/// The shape a tensor loaded into `param` must have: what its initialiser makes while it is
/// lazy (a load mapper's input form), or its saved form once initialised.
fn load_shape<const D: usize>(param: &Param<Tensor<D>>) -> Vec<usize> {
    if param.is_initialized() && loads_transformed(param) {
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

/// A module whose parameters can be loaded from a pretrained checkpoint.
///
/// Derive it with `#[derive(Module, Pretrainable)]`; implement it by hand only for a layer
/// whose checkpoint names or layouts differ from its field names (see the burn-nn impls in
/// this crate). Loading itself is done by the methods of [`PretrainExt`](crate::PretrainExt),
/// available on every `Pretrainable` module.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not implement `Pretrainable`, so burn-pretrain cannot map its tensors",
    note = "derive it with `#[derive(Pretrainable)]`, or mark the field `#[pretrain(skip)]` if it holds nothing to load"
)]
pub trait Pretrainable {
    /// Declare, through `mapper`, every tensor this value loads, each at its checkpoint key.
    /// The same declaration plans, applies and exports.
    fn map_pretrain(&mut self, mapper: &mut Mapper<'_>);

    /// How a list of these (`Vec<T>`, `[T; N]`) maps: by default each item under its index
    /// (`layers.0.…`). Recurrent layers override it so that a `Vec<Lstm>` takes a
    /// multi-layer PyTorch `nn.LSTM` (`weight_ih_l0`, `weight_ih_l1`, …).
    fn map_pretrain_list(items: &mut [Self], mapper: &mut Mapper<'_>)
    where
        Self: Sized,
    {
        for (i, item) in items.iter_mut().enumerate() {
            let i = i.to_string();
            mapper.child(&i, &i, item);
        }
    }
}

impl<const D: usize> Pretrainable for Param<Tensor<D>> {
    fn map_pretrain(&mut self, mapper: &mut Mapper<'_>) {
        mapper.param(self, Layout::Same);
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
    fn map_pretrain(&mut self, mapper: &mut Mapper<'_>) {
        mapper.running(self);
    }
}

impl<T: Pretrainable> Pretrainable for Option<T> {
    fn map_pretrain(&mut self, mapper: &mut Mapper<'_>) {
        if let Some(inner) = self {
            inner.map_pretrain(mapper);
        }
    }
}

impl<T: Pretrainable> Pretrainable for Vec<T> {
    fn map_pretrain(&mut self, mapper: &mut Mapper<'_>) {
        T::map_pretrain_list(self, mapper);
    }
}

impl<T: Pretrainable, const N: usize> Pretrainable for [T; N] {
    fn map_pretrain(&mut self, mapper: &mut Mapper<'_>) {
        T::map_pretrain_list(self, mapper);
    }
}

impl<T: Pretrainable + ?Sized> Pretrainable for Box<T> {
    fn map_pretrain(&mut self, mapper: &mut Mapper<'_>) {
        (**self).map_pretrain(mapper);
    }
}

/// Values that hold no tensors: configuration fields and parameter-free layers.
macro_rules! nothing_to_load {
    ($($ty:ty),* $(,)?) => {
        $(
            impl Pretrainable for $ty {
                fn map_pretrain(&mut self, _mapper: &mut Mapper<'_>) {}
            }
        )*
    };
}

nothing_to_load!(
    bool, u8, u16, u32, u64, usize, i8, i16, i32, i64, isize, f32, f64, String,
);

nothing_to_load!(burn::module::Param<burn::module::Flag>);

impl<T> Pretrainable for std::marker::PhantomData<T> {
    fn map_pretrain(&mut self, _mapper: &mut Mapper<'_>) {}
}

pub(crate) use nothing_to_load;
