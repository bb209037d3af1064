//! The inputs of the mismatch policies: a `rows_file`'s text, and the shapes
//! `adapt_in_channels`, `resample_grid` and `select_rows` are planned from. Any input gives
//! rows or an error, and any pair of shapes a plan or an error; a plan that applies gives
//! exactly the model's number of values, never a panic (a grid of side 0, a conv of 0
//! channels, a row out of range).
//!
//! Bytes: `[kind, prefix, model rank, model dims…, stored rank, stored dims…]`, then the rows
//! text (rows also picked for `select_rows`). Dims are bytes (0–255), products capped, so a
//! run never allocates more than a few megabytes.
#![no_main]

use burn_pretrain::Policy;
use libfuzzer_sys::fuzz_target;

/// The most values a shape may have (the run's own allocation, not what is tested).
const MAX_VALUES: usize = 1 << 18;

fn shape(data: &mut &[u8]) -> Option<Vec<usize>> {
    let (&rank, rest) = data.split_first()?;
    let rank = usize::from(rank % 5);
    if rest.len() < rank {
        return None;
    }
    let (dims, rest) = rest.split_at(rank);
    *data = rest;
    Some(dims.iter().map(|&d| usize::from(d)).collect())
}

fuzz_target!(|data: &[u8]| {
    let [kind, prefix, rest @ ..] = data else {
        return;
    };
    let mut rest: &[u8] = rest;
    let (Some(model), Some(stored)) = (shape(&mut rest), shape(&mut rest)) else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let rows = burn_pretrain::__fuzz::rows(&text);
    let numel = |s: &[usize]| s.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    let (Some(m), Some(s)) = (numel(&model), numel(&stored)) else {
        return;
    };
    if m > MAX_VALUES || s > MAX_VALUES {
        return;
    }
    let policy = match kind % 4 {
        0 => Policy::AdaptInChannels,
        1 => Policy::resample_grid(),
        2 => Policy::ResampleGrid {
            prefix_tokens: Some(usize::from(*prefix)),
        },
        _ => Policy::select_rows(rows.unwrap_or_default()),
    };
    if let Ok(values) = burn_pretrain::__fuzz::adapt(&policy, &model, &stored) {
        assert_eq!(values.len(), m, "{policy:?}: model {model:?}, stored {stored:?}");
    }
});
