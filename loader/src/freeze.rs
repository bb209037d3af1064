//! `freeze`: which tensors stop training once a load has succeeded, applied with burn's own
//! [`Module::freeze_group`].
//!
//! A parameter id survives a load (`Param::transform_for_load` keeps it), so the plan's ids
//! name exactly the parameters a load filled. A layer's training flag (BatchNorm's, which
//! decides whether its running statistics move) is frozen with it when every tensor of that
//! layer is frozen: a frozen BatchNorm then normalises with the statistics it loaded, so every
//! loaded tensor stays as it was through training (mmengine's `norm_eval` for frozen stages).

use std::collections::{HashMap, HashSet};
use std::fmt;

use burn::module::{Flag, Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::tensor::Tensor;
use regex::Regex;
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Result;
use crate::expect::patterns;
use crate::plan::{Action, Plan};

/// Which tensors to freeze after a successful load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Freeze {
    /// Freeze nothing (the default).
    #[default]
    None,
    /// Exactly the parameters and buffers the load filled (`"loaded"` in a config).
    Loaded,
    /// Every mapped tensor whose checkpoint key or model path matches one of these regular
    /// expressions, loaded or not (`["^backbone\\."]` in a config).
    Keys(Vec<String>),
}

impl Freeze {
    /// Whether nothing is frozen.
    pub fn is_none(&self) -> bool {
        *self == Freeze::None
    }
}

impl Serialize for Freeze {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Freeze::None => serializer.serialize_str("none"),
            Freeze::Loaded => serializer.serialize_str("loaded"),
            Freeze::Keys(keys) => keys.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Freeze {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct FreezeVisitor;

        impl<'de> Visitor<'de> for FreezeVisitor {
            type Value = Freeze;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#""loaded", "none" or a list of key patterns (["^backbone\\."])"#)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Freeze, E> {
                match v {
                    "loaded" => Ok(Freeze::Loaded),
                    "none" => Ok(Freeze::None),
                    other => Err(E::custom(format!(
                        "unknown freeze `{other}`: write \"loaded\", \"none\" or a list of key patterns"
                    ))),
                }
            }

            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Freeze, A::Error> {
                let mut keys = Vec::new();
                while let Some(key) = seq.next_element::<String>()? {
                    keys.push(key);
                }
                Ok(Freeze::Keys(keys))
            }
        }

        deserializer.deserialize_any(FreezeVisitor)
    }
}

/// A [`Freeze`] with its patterns compiled, resolved at the entry of a load.
#[derive(Debug)]
pub(crate) enum Freezing {
    None,
    Loaded,
    Keys(Vec<Regex>),
}

impl Freezing {
    pub fn compile(freeze: &Freeze) -> Result<Self> {
        Ok(match freeze {
            Freeze::None => Freezing::None,
            Freeze::Loaded => Freezing::Loaded,
            Freeze::Keys(keys) => Freezing::Keys(patterns("freeze", keys)?),
        })
    }

    /// The checkpoint keys and the parameter ids of `plan` to freeze, in model order.
    pub fn select(&self, plan: &Plan) -> (Vec<String>, Vec<ParamId>) {
        let mut keys = Vec::new();
        let mut ids = Vec::new();
        for item in &plan.items {
            let target = &item.target;
            let chosen = match self {
                Freezing::None => false,
                Freezing::Loaded => matches!(item.action, Action::Load { .. }),
                Freezing::Keys(patterns) => patterns.iter().any(|re| {
                    re.is_match(&target.key)
                        || target.pieces.iter().any(|p| re.is_match(&p.model_path))
                }),
            };
            if chosen {
                keys.push(target.key.clone());
                ids.extend(target.pieces.iter().map(|p| p.id));
            }
        }
        (keys, ids)
    }
}

/// Freeze the tensors `ids` of `model` with burn's `freeze_group`, together with the training
/// flags of the layers whose every tensor is among them.
pub(crate) fn freeze<M: Module>(model: M, ids: Vec<ParamId>) -> M {
    let mut layers = Layers::default();
    model.visit(&mut layers);
    let frozen: HashSet<ParamId> = ids.iter().copied().collect();
    let mut whole: HashMap<&str, bool> = HashMap::new();
    for (layer, id) in &layers.floats {
        let all = whole.entry(layer.as_str()).or_insert(true);
        *all &= frozen.contains(id);
    }
    let mut group = ids;
    group.extend(
        layers
            .flags
            .iter()
            .filter(|(layer, _)| whole.get(layer.as_str()).copied().unwrap_or(false))
            .map(|(_, id)| *id),
    );
    model.freeze_group(ParamGroup::from_ids(group))
}

/// Every float tensor and training flag of a module with the path of the layer holding it.
#[derive(Default)]
struct Layers {
    path: Vec<String>,
    floats: Vec<(String, ParamId)>,
    flags: Vec<(String, ParamId)>,
}

impl Layers {
    fn layer(&self) -> String {
        self.path[..self.path.len().saturating_sub(1)].join(".")
    }
}

impl ModuleVisitor for Layers {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.floats.push((self.layer(), param.id));
    }

    fn visit_flag(&mut self, flag: &Param<Flag>) {
        self.flags.push((self.layer(), flag.id));
    }
}
