//! The loading entry points: source → format → view → plan → apply → report.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::expect::Expectations;
use crate::format::{Checkpoint, Convention, Opened, sharded};
use crate::mapping::{Mapper, Mode, Pretrainable};
use crate::plan::Plan;
use crate::policy::Rules;
use crate::report::LoadReport;
use crate::source::{self, Fetcher, Location};
use crate::spec::Pretrain;
use crate::view::{View, ViewRules};

/// Loading methods, available on every [`Pretrainable`] module.
pub trait PretrainExt: Pretrainable + Clone {
    /// Load `spec` and log the report with `tracing` (essmc2's log lines); returns the model.
    ///
    /// ```no_run
    /// # use burn_pretrain::{PretrainExt, Pretrainable};
    /// # fn demo<M: Pretrainable + Clone>(model: M) -> burn_pretrain::Result<M> {
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
        let report = prepared.checked_report(&spec.expect, false)?;
        let read = crate::apply::read(&prepared.plan, &prepared.view)?;
        let model = crate::apply::apply(
            &*self,
            read.data,
            &prepared.plan,
            prepared.convention,
            &prepared.view_keys,
        )
        .map_err(|changed| Error::MappingChanged {
            model: short_type_name::<Self>(),
            detail: changed.to_string(),
        })?;
        *self = model;
        Ok(report.with_bytes_read(read.bytes_read))
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
}

impl<M: Pretrainable + Clone> PretrainExt for M {}

/// A [`Pretrain`] resolved at the entry of a load, in one fallible step: the location parsed,
/// the fetcher (cache, HTTP client, timeout and offline settings, environment read once), the
/// view's remaps, the mismatch rules and the expectations compiled. Each stage gets its part.
struct Resolved {
    location: Location,
    fetcher: Fetcher,
    view: ViewRules,
    rules: Rules,
    expect: Expectations,
}

impl Resolved {
    fn new(spec: &Pretrain) -> Result<Self> {
        Ok(Self {
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

impl Prepared {
    fn new<M: Pretrainable + Clone>(model: &M, spec: &Resolved) -> Result<Self> {
        let checkpoint = open_located(&spec.fetcher, &spec.location)?;
        let convention = spec.view.convention.unwrap_or(checkpoint.convention());
        // Planning walks a clone (cheap: parameters are shared handles, lazy ones stay lazy).
        // A first walk names the model's top-level keys, which the view needs to unwrap
        // containers; the second sees the view, so mappings with alternatives can choose.
        let mut probe = Mapper::new(convention, None, Mode::Plan);
        model.clone().map_pretrain(&mut probe);
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
