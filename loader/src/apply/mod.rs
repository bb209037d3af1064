//! Apply: read exactly the planned tensors (neighbours of one file in one read), cast them,
//! split packed ones and lay each out as the model holds it — all before the model is
//! touched; then run the model's mapping in apply mode to put them in.

pub(crate) mod adapt;
pub(crate) mod batch;
pub(crate) mod layout;

use std::collections::HashMap;

use burn::tensor::TensorData;

use std::collections::BTreeSet;

use crate::error::{Error, Result};
use crate::format::Convention;
use crate::mapping::{Layout, Mapper, Mode, Pretrainable};
use crate::plan::{Action, Plan};
use crate::view::View;
use layout::{split, transpose};

/// Read and prepare every tensor the plan loads, keyed by the model path of the
/// parameter it goes to: cast, split when packed, laid out as the model holds it. Any
/// failure is returned before the model is touched.
pub(crate) fn read(plan: &Plan, view: &View) -> Result<HashMap<String, TensorData>> {
    let loads: Vec<_> = plan
        .items
        .iter()
        .filter_map(|item| match &item.action {
            Action::Load { index, cast, adapt } => {
                Some((item, &view.entries[*index].entry, cast, adapt))
            }
            _ => None,
        })
        .collect();
    // Neighbouring tensors of one file are read together (one request when remote).
    let entries: Vec<&crate::format::TensorEntry> = loads.iter().map(|(_, e, ..)| *e).collect();
    let read = batch::read_many(&entries);
    let mut out = HashMap::new();
    for ((item, entry, cast, adapt), bytes) in loads.into_iter().zip(read) {
        let bytes = bytes.map_err(|e| Error::TensorData {
            path: entry.file().to_path_buf(),
            key: entry.key().to_string(),
            source: e,
        })?;
        let mut data = TensorData::from_bytes_vec(
            bytes,
            entry.shape().to_vec(),
            entry.dtype().to_burn_dtype(),
        );
        let target = &item.target;
        if let Some(adapt) = adapt {
            let values = data
                .convert_dtype(burn::tensor::DType::F32)
                .try_into_vec::<f32>()
                .map_err(|e| Error::TensorData {
                    path: entry.file().to_path_buf(),
                    key: entry.key().to_string(),
                    source: std::io::Error::other(format!("{e:?}")),
                })?;
            data = TensorData::new(
                adapt.adaptation.run(&values, entry.shape()),
                target.checkpoint_shape(),
            )
            .convert_dtype(target.dtype);
        } else if let Some((_, to)) = cast {
            data = data.convert_dtype(to.to_burn_dtype());
        }
        let parts = if target.is_packed() {
            let sizes: Vec<usize> = target
                .pieces
                .iter()
                .map(|p| p.checkpoint_shape()[target.axis])
                .collect();
            split(&data, target.axis, &sizes)
        } else {
            vec![data]
        };
        for (piece, part) in target.pieces.iter().zip(parts) {
            let part = match piece.layout {
                Layout::Transposed if part.shape().len() == 2 => transpose(part),
                _ => part,
            };
            out.insert(piece.model_path.clone(), part);
        }
    }
    Ok(out)
}

/// Put `data` (from [`read`]) into a clone of `model` by running its mapping in apply mode.
/// The walk must meet the plan's keys in the plan's order and take every tensor; otherwise
/// the clone is dropped and the first difference returned.
pub(crate) fn apply<M: Pretrainable + Clone>(
    model: &M,
    data: HashMap<String, TensorData>,
    plan: &Plan,
    convention: Convention,
    view_keys: &BTreeSet<String>,
) -> std::result::Result<M, String> {
    let mut model = model.clone();
    let mut mapper = Mapper::new(convention, Some(view_keys), Mode::Apply(data));
    model.map_pretrain(&mut mapper);
    let planned = plan.items.iter().map(|i| i.target.key.as_str());
    let walked = mapper.targets.iter().map(|t| t.key.as_str());
    if let Some((p, a)) = planned.clone().zip(walked.clone()).find(|(p, a)| p != a) {
        return Err(format!("the plan met `{p}` where applying met `{a}`"));
    }
    let (np, na) = (planned.count(), walked.count());
    if np != na {
        return Err(format!("the plan met {np} checkpoint keys, applying {na}"));
    }
    if let Mode::Apply(left) = &mapper.mode
        && !left.is_empty()
    {
        let mut keys: Vec<&str> = left.keys().map(String::as_str).collect();
        keys.sort_unstable();
        return Err(format!("planned but not applied: {}", keys.join(", ")));
    }
    Ok(model)
}
