//! The loading entry points: source → format → view → plan → apply → report.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;

use burn::module::Module;

use crate::adapter;
use crate::apply::ReadMode;
use crate::error::{Error, Result};
use crate::expect::Expectations;
use crate::format::{Checkpoint, Convention, Opened, sharded};
use crate::freeze::Freezing;
use crate::mapping::{Mapper, Mode, Pretrainable};
use crate::plan::Plan;
use crate::policy::Rules;
use crate::quantize::{Choice, Quantizing};
use crate::report::{AdapterReport, LoadReport, QuantizedReport};
use crate::source::{self, Fetcher, Location};
use crate::spec::Pretrain;
use crate::view::{View, ViewRules};

/// Loading methods, available on every [`Pretrainable`] module.
pub trait PretrainExt: Pretrainable + Module {
    /// Load `spec` and log the report with `tracing` (essmc2's log lines); returns the model.
    ///
    /// ```no_run
    /// # use burn_pretrain::{PretrainExt, Pretrainable};
    /// # fn demo<M: Pretrainable + burn::module::Module>(model: M) -> burn_pretrain::Result<M> {
    /// let model = model.with_pretrain("pretrain.pth")?;
    /// # Ok(model) }
    /// ```
    ///
    /// Less than every tensor loaded is a `tracing` warning; a load that misses its
    /// [`Expect`](crate::Expect)ations (by default: nothing loaded, or a layer half loaded) is
    /// an `Err` ([`Error::Unmet`]) and the model is not changed.
    ///
    /// Loading changes parameters and buffers only. A model built on a non-autodiff backend
    /// runs BatchNorm with its running statistics and Dropout as the identity (inference
    /// mode); on an `Autodiff` backend it trains.
    fn with_pretrain(self, spec: impl Into<Pretrain>) -> Result<Self> {
        let (model, report) = self.load_pretrained(spec)?;
        report.log();
        Ok(model)
    }

    /// Load `spec` and return the model with the report, logging nothing.
    fn load_pretrained(mut self, spec: impl Into<Pretrain>) -> Result<(Self, LoadReport)> {
        let report = self.load_pretrained_in_place(spec)?;
        Ok((self, report))
    }

    /// Load `spec` into `self`. Every tensor is read and checked before the model is
    /// changed, so on `Err` the model is exactly as it was.
    fn load_pretrained_in_place(&mut self, spec: impl Into<Pretrain>) -> Result<LoadReport> {
        let spec = Resolved::new(&spec.into())?;
        let prepared = Prepared::new(&*self, &spec)?;
        let mut report = prepared.checked_report(&spec.expect, false)?;
        // The adapter is fetched, planned and read before the model changes too.
        let adapter = match &spec.adapter {
            Some(adapter) => Some(PreparedAdapter::new(&*self, &spec, adapter, &prepared)?),
            None => None,
        };
        let mut model = match &spec.quantize {
            None => {
                let read = crate::apply::read(&prepared.plan, &prepared.view, spec.read_mode)?;
                report = report
                    .with_bytes_read(read.bytes_read)
                    .with_bytes_mapped(read.bytes_mapped);
                prepared.apply(&*self, read.data)?
            }
            Some(quantize) => {
                let (model, bytes_read, quantized) = prepared.apply_quantized(&*self, quantize)?;
                report = report.with_bytes_read(bytes_read).with_quantized(quantized);
                model
            }
        };
        if let Some(adapter) = adapter {
            let (applied, adapter_report) = adapter.apply(model)?;
            model = applied;
            report = report.with_adapter(adapter_report);
        }
        let (frozen, ids) = spec.freeze.select(&prepared.plan);
        if !ids.is_empty() {
            model = crate::freeze::freeze(model, ids);
            report = report.with_frozen(frozen);
        }
        *self = model;
        Ok(report)
    }

    /// The checkpoint keys this model's tensors load from, in the PyTorch convention.
    fn pretrain_keys(&self) -> Vec<String> {
        let mut mapper = Mapper::new(Convention::Pytorch, None, Mode::Plan);
        self.clone().map_pretrain(&mut mapper);
        mapper.targets.into_iter().map(|t| t.key).collect()
    }

    /// Plan loading `spec` without reading any tensor bytes or changing the model: the
    /// report says what a load would do. Unmet expectations are an `Err` here too.
    fn plan_pretrained(&self, spec: impl Into<Pretrain>) -> Result<LoadReport> {
        let spec = Resolved::new(&spec.into())?;
        Prepared::new(self, &spec)?.checked_report(&spec.expect, true)
    }

    /// Write this model to `path` as safetensors in PyTorch's names and layouts
    /// (`torch.nn.Module.load_state_dict(safetensors.torch.load_file(path), strict=True)` on
    /// the PyTorch twin accepts it). Written atomically: a temporary file in the same folder,
    /// synced, then renamed; on any error nothing is left behind. Returns the number of
    /// tensors written.
    fn save_pretrained(&self, path: impl AsRef<std::path::Path>) -> Result<usize> {
        crate::export::save_pretrained(self, path)
    }

    /// Write this model's burn LoRA adapters (attached by a load's `adapter`, or by burn's
    /// `apply_lora`) to the directory `dir` as a PEFT adapter (`adapter_config.json`,
    /// `adapter_model.safetensors`) that `peft.PeftModel.from_pretrained` loads onto the
    /// PyTorch twin: names through this model's mapping, packed targets stacked back. The
    /// tensors under the checkpoint-key prefixes `modules_to_save` (`["head"]`) are saved
    /// whole, as PEFT saves them. Returns the number of adapted layers.
    fn save_adapter(
        &self,
        dir: impl AsRef<std::path::Path>,
        modules_to_save: &[&str],
    ) -> Result<usize> {
        adapter::export::save_adapter(self, dir.as_ref(), modules_to_save)
    }
}

impl<M: Pretrainable + Module> PretrainExt for M {}

/// A [`Pretrain`] resolved at the entry of a load, in one fallible step: the location parsed,
/// the fetcher (cache, HTTP client, timeout and offline settings, environment read once), the
/// view's remaps, the mismatch rules and the expectations compiled. Each stage gets its part.
struct Resolved {
    location: Location,
    fetcher: Fetcher,
    view: ViewRules,
    rules: Rules,
    expect: Expectations,
    freeze: Freezing,
    quantize: Option<Quantizing>,
    /// How tensors are taken from local files: transposed views, mapped files.
    read_mode: ReadMode,
    /// The adapter's location and whether it is merged.
    adapter: Option<AdapterSpec>,
}

struct AdapterSpec {
    location: String,
    merge: bool,
    view: ViewRules,
}

impl Resolved {
    fn new(spec: &Pretrain) -> Result<Self> {
        Ok(Self {
            freeze: Freezing::compile(spec.freeze())?,
            quantize: spec.quantize().map(Quantizing::compile).transpose()?,
            read_mode: ReadMode {
                views: spec.transposed_views(),
                mmap: spec.mmap(),
            },
            adapter: match spec.adapter() {
                Some(location) => Some(AdapterSpec {
                    location: location.to_string(),
                    merge: spec.merge_adapter(),
                    view: ViewRules::compile(&adapter::view_options(spec.view()))?,
                }),
                None => None,
            },
            expect: Expectations::compile(spec.expect())?,
            rules: Rules::compile(spec.on_mismatch())?,
            view: ViewRules::compile(spec.view())?,
            location: Location::parse(spec.path())?,
            fetcher: Fetcher::new(spec.fetch())?,
        })
    }
}

struct Prepared {
    model: String,
    view_keys: BTreeSet<String>,
    source: String,
    checkpoint: Checkpoint,
    convention: Convention,
    view: View,
    plan: Plan,
}

/// Every parameter and buffer of `model` in the order burn visits them (its fields' order),
/// with its burn path (`blocks.0.linear.weight`) and shape; lazy parameters are not
/// initialised.
fn burn_paths<M: Module>(model: &M) -> Vec<(String, Vec<usize>)> {
    use burn::module::{ModuleVisitor, Param};
    use burn::tensor::{Bool, Int, Tensor};
    #[derive(Default)]
    struct Paths {
        at: Vec<String>,
        out: Vec<(String, Vec<usize>)>,
    }
    impl Paths {
        fn push(&mut self, shape: burn::tensor::Shape) {
            self.out.push((self.at.join("."), shape.to_vec()));
        }
    }
    impl ModuleVisitor for Paths {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.at.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.at.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.push(param.lazy_shape());
        }
        fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<D, Int>>) {
            self.push(param.lazy_shape());
        }
        fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<D, Bool>>) {
            self.push(param.lazy_shape());
        }
    }
    let mut paths = Paths::default();
    model.visit(&mut paths);
    paths.out
}

impl Prepared {
    fn new<M: Pretrainable + Module>(model: &M, spec: &Resolved) -> Result<Self> {
        let mut checkpoint = open_located(&spec.fetcher, &spec.location)?;
        let convention = spec.view.convention.unwrap_or(checkpoint.convention());
        // Planning walks a clone (cheap: parameters are shared handles, lazy ones stay lazy).
        // A first walk names the model's top-level keys, which the view needs to unwrap
        // containers; the second sees the view, so mappings with alternatives can choose.
        let mut probe = Mapper::new(convention, None, Mode::Plan);
        model.clone().map_pretrain(&mut probe);
        if checkpoint.is_positional() {
            // A bincode burn record: tensors in the order the old burn wrote the module's
            // fields, which is the order burn visits them; burn paths are the record's keys.
            checkpoint.name_by_position(&burn_paths(model))?;
        }
        let roots: HashSet<String> = probe
            .targets
            .iter()
            .filter_map(|t| t.key.split('.').next().map(str::to_string))
            .collect();
        let shapes: Vec<(&str, Vec<usize>)> = probe
            .targets
            .iter()
            .map(|t| (t.key.as_str(), t.checkpoint_shape()))
            .collect();
        let view = View::build(&checkpoint, &spec.view, &roots, &shapes)?;
        let view_keys: BTreeSet<String> = view.entries.iter().map(|e| e.key.clone()).collect();
        let mut mapper = Mapper::new(convention, Some(&view_keys), Mode::Plan);
        model.clone().map_pretrain(&mut mapper);
        let plan = Plan::build(
            std::mem::take(&mut mapper.targets),
            std::mem::take(&mut mapper.expected_unused),
            &mapper.skipped,
            &view,
            &spec.rules,
        )?;
        Ok(Self {
            model: short_type_name::<M>(),
            view_keys,
            source: spec.location.to_string(),
            checkpoint,
            convention,
            view,
            plan,
        })
    }

    /// `model` with the planned tensors of `data` put in (a clone: `model` is untouched).
    fn apply<M: Pretrainable + Clone>(&self, model: &M, data: crate::mapping::Ready) -> Result<M> {
        crate::apply::apply(model, data, &self.plan, self.convention, &self.view_keys).map_err(
            |changed| Error::MappingChanged {
                model: short_type_name::<M>(),
                detail: changed.to_string(),
            },
        )
    }

    /// `model` with the plan read and applied in batches of about
    /// [`BATCH_BYTES`](crate::quantize::BATCH_BYTES) of tensor data, each batch's chosen
    /// parameters quantized with burn's `quantize_weights_group` as soon as they are in, so
    /// the float bytes alive at once stay near one batch. Returns the model, the bytes read
    /// and what was quantized.
    fn apply_quantized<M: Pretrainable + Module>(
        &self,
        model: &M,
        quantizing: &Quantizing,
    ) -> Result<(M, u64, QuantizedReport)> {
        use burn::module::{ParamGroup, Quantizer};
        use burn::tensor::quantization::Calibration;
        let chosen = quantizing.chosen(&self.plan, model);
        let scheme = quantizing.options.scheme();
        let mut quantizer = Quantizer::new(Calibration::MinMax, scheme);
        let mut model = model.clone();
        let mut bytes_read = 0;
        let mut report = QuantizedReport {
            scheme: quantizing.options.to_string(),
            keys: Vec::new(),
            indivisible: Vec::new(),
            float_bytes: 0,
            quantized_bytes: 0,
        };
        let loads: Vec<usize> = (0..self.plan.items.len())
            .filter(|&i| matches!(self.plan.items[i].action, crate::plan::Action::Load { .. }))
            .collect();
        let mut start = 0;
        while start < loads.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < loads.len() && (end == start || bytes < crate::quantize::BATCH_BYTES) {
                let target = &self.plan.items[loads[end]].target;
                bytes += (target.checkpoint_shape().iter().product::<usize>() * target.dtype.size())
                    as u64;
                end += 1;
            }
            let batch = &loads[start..end];
            // Quantized tensors are made contiguous by the quantizer: no views.
            let read =
                crate::apply::read(&self.plan.subset(batch), &self.view, ReadMode::default())?;
            bytes_read += read.bytes_read;
            model = self.apply(&model, read.data)?;
            let mut ids = Vec::new();
            for &i in batch {
                let target = &self.plan.items[i].target;
                match chosen[i] {
                    Choice::Kept => continue,
                    Choice::Indivisible => {
                        report.indivisible.push(target.key.clone());
                        continue;
                    }
                    Choice::Quantized => {}
                }
                let elements = target.checkpoint_shape().iter().product::<usize>();
                report.keys.push(target.key.clone());
                report.float_bytes += (elements * target.dtype.size()) as u64;
                report.quantized_bytes += quantizing.options.quantized_bytes(elements);
                ids.extend(target.pieces.iter().map(|p| p.id));
            }
            if !ids.is_empty() {
                model = model.quantize_weights_group(&mut quantizer, ParamGroup::from_ids(ids));
            }
            start = end;
        }
        Ok((model, bytes_read, report))
    }

    /// The report, or [`Error::Unmet`] carrying it when `expect` is not met.
    fn checked_report(&self, expect: &Expectations, dry_run: bool) -> Result<LoadReport> {
        let report = self.report(dry_run);
        let unmet = expect.unmet(&report);
        if unmet.is_empty() {
            Ok(report)
        } else {
            Err(Error::Unmet {
                unmet,
                report: Box::new(report),
            })
        }
    }

    fn report(&self, dry_run: bool) -> LoadReport {
        LoadReport::new(
            self.model.clone(),
            self.source.clone(),
            self.checkpoint.format(),
            self.convention,
            dry_run,
            self.view.steps.clone(),
            &self.plan,
        )
        .with_hints(&self.plan, self.view.alignment.as_ref())
        .with_shards(self.checkpoint.shards().len())
    }
}

/// A PEFT adapter fetched, planned against the model and read, ready to change it.
struct PreparedAdapter {
    source: String,
    merge: bool,
    /// The adapter file's non-LoRA tensors (`modules_to_save`), planned as a load.
    replacements: Prepared,
    replaced: crate::mapping::Ready,
    lora: adapter::LoraPlan,
}

impl PreparedAdapter {
    fn new<M: Pretrainable + Module>(
        model: &M,
        spec: &Resolved,
        adapter: &AdapterSpec,
        base: &Prepared,
    ) -> Result<Self> {
        let shown = source::redact(&adapter.location);
        let fail = |detail: String| Error::Adapter {
            location: shown.clone(),
            detail,
        };
        let fetcher = spec.fetcher.for_shards();
        let files = adapter::fetch(&fetcher, &adapter.location)?;
        let resolved = Resolved {
            location: files.weights,
            fetcher,
            view: adapter.view.clone(),
            rules: Rules::compile(&[])?,
            expect: Expectations::compile(&crate::Expect::default())?,
            freeze: Freezing::None,
            quantize: None,
            read_mode: ReadMode::default(),
            adapter: None,
        };
        let replacements = Prepared::new(model, &resolved)?;
        // LoRAs of kinds not applied here (embeddings' `lora_embedding_A/B`, DoRA's magnitude).
        if let Some((key, _)) = replacements
            .plan
            .unexpected
            .iter()
            .find(|(key, _)| key.contains(".lora_") && !adapter::is_factor(key))
        {
            return Err(fail(format!(
                "`{key}`: a LoRA of a kind burn-pretrain does not apply (only Linear layers' lora_A/lora_B)"
            )));
        }
        // Every tensor of the file is a LoRA factor or replaces a model tensor of its shape.
        if let Some((key, _)) = replacements
            .plan
            .unexpected
            .iter()
            .find(|(key, _)| !adapter::is_factor(key))
        {
            return Err(fail(format!(
                "`{key}` (modules_to_save) is not a tensor of the model"
            )));
        }
        if let Some(item) = replacements
            .plan
            .items
            .iter()
            .find(|i| matches!(i.action, crate::plan::Action::ShapeMismatch { .. }))
        {
            return Err(fail(format!(
                "`{}` (modules_to_save) has another shape than the model's {:?}",
                item.target.key,
                item.target.checkpoint_shape()
            )));
        }
        let targets: std::collections::HashMap<&str, &crate::mapping::Target> = base
            .plan
            .items
            .iter()
            .map(|i| (i.target.key.as_str(), &i.target))
            .collect();
        let lora = adapter::plan(
            &adapter.location,
            &files.config,
            &replacements.view,
            &targets,
        )?;
        if lora.layers.is_empty() {
            return Err(fail("holds no LoRA factor for this model".into()));
        }
        let read = crate::apply::read(&replacements.plan, &replacements.view, ReadMode::default())?;
        Ok(Self {
            source: shown,
            merge: adapter.merge,
            replacements,
            replaced: read.data,
            lora,
        })
    }

    /// `model` with the replacements put in and the LoRAs attached (or merged).
    fn apply<M: Pretrainable + Module>(self, model: M) -> Result<(M, AdapterReport)> {
        let model = self.replacements.apply(&model, self.replaced)?;
        let mut replaced = Vec::new();
        let mut trainable = HashSet::new();
        for item in &self.replacements.plan.items {
            if matches!(item.action, crate::plan::Action::Load { .. }) {
                replaced.push(item.target.key.clone());
                trainable.extend(item.target.pieces.iter().map(|p| p.id));
            }
        }
        let report = AdapterReport {
            source: self.source,
            merged: self.merge,
            layers: self.lora.layers.clone(),
            replaced,
        };
        let model = adapter::attach(model, self.lora, self.merge, &trainable);
        Ok((model, report))
    }
}

/// Fetch the file at `location` (a path or any URI a checkpoint may come from: http(s), s3,
/// gs, az, `hf://org/repo[@revision]/file`) through the same cache and `options`, and give its
/// local path: how the other files of a model repository (`config.json`, `tokenizer.json`)
/// are read. A file that is not there, local or remote, is `Error::NotFound`.
pub fn fetch_file(location: &str, options: &crate::source::FetchOptions) -> Result<PathBuf> {
    let parsed = Location::parse(location)?;
    let fetched = Fetcher::new(options)?.fetch(&parsed, false)?;
    if !fetched.path.is_file() {
        return Err(Error::NotFound {
            uri: source::redact(location),
        });
    }
    Ok(fetched.path)
}

/// Fetch (through the cache, if remote) and open the checkpoint of `spec`. Reads headers only.
pub fn open_checkpoint(spec: &Pretrain) -> Result<Checkpoint> {
    let location = Location::parse(spec.path())?;
    open_located(&Fetcher::new(spec.fetch())?, &location)
}

fn open_located(fetcher: &Fetcher, location: &Location) -> Result<Checkpoint> {
    let (index_path, opened) = open_fetched(fetcher, location)?;
    let checkpoint = match opened {
        Opened::Tensors(checkpoint) => checkpoint,
        // A sharded checkpoint: each shard comes from beside the index, through the same
        // source and cache. The spec's sha256 is the index's; shards have none.
        Opened::Index(index) => {
            let shard_fetcher = fetcher.for_shards();
            // Shards are fetched (or opened by ranges) several at a time, then merged in
            // index order.
            let names = index.shards();
            let opened =
                source::bytes::bounded_map(&names, source::bytes::CONCURRENT_READS, |name| {
                    let shard = location.sibling(name);
                    tracing::debug!("shard {name} of {location}: {shard}");
                    open_fetched(&shard_fetcher, &shard).map(|(_, opened)| opened)
                });
            let mut opened: std::collections::HashMap<&str, Result<Opened>> =
                names.iter().copied().zip(opened).collect();
            sharded::merge(&index_path, &index, |name| {
                opened
                    .remove(name)
                    .unwrap_or_else(|| unreachable!("every shard was opened"))?
                    .into_shard(&index_path, name)
            })?
        }
    };
    Ok(checkpoint)
}

/// Open `location`: by byte ranges when the spec asks and the file allows, else fetched into
/// a local file; a cache entry that does not parse is fetched again, never used.
fn open_fetched(fetcher: &Fetcher, location: &Location) -> Result<(PathBuf, Opened)> {
    if let Some(remote) = fetcher.open_ranged(location)? {
        let shown = PathBuf::from(location.to_string());
        match Checkpoint::open_source(&shown, remote)? {
            Some(opened) => return Ok((shown, opened)),
            None => tracing::info!(
                "{location} is not safetensors; ranged reads need its header, downloading it whole"
            ),
        }
    }
    let fetched = fetcher.fetch(location, false)?;
    match Checkpoint::open_file(&fetched.path) {
        Err(e) if fetched.cached => {
            tracing::warn!("cached copy of {location} is unreadable ({e}); fetching it again");
            let fetched = fetcher.fetch(location, true)?;
            let opened = Checkpoint::open_file(&fetched.path)?;
            Ok((fetched.path, opened))
        }
        other => Ok((fetched.path, other?)),
    }
}

/// `my_crate::models::Classifier<my_crate::Backbone, ...>` → `Classifier`, as essmc2 names
/// the model in its log line.
fn short_type_name<T>() -> String {
    let full = std::any::type_name::<T>();
    let path = full.split('<').next().unwrap_or(full);
    path.rsplit("::").next().unwrap_or(path).to_string()
}
