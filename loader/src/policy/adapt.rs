//! Mismatch policies that change a stored tensor into the model's shape: input channels of a
//! conv, the grid of a position embedding, rows of a classifier. Planned from shapes alone
//! ([`Adaptation::plan`]), run on the values in f32 ([`Adaptation::run`]).

use super::Policy;
use super::resample::{Filter, resize_plane};

/// Why a policy cannot change a stored tensor into the model's shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Unfit {
    #[error(
        "adapt_in_channels needs conv weights [out, in, k...] that differ in `in` only, not model {model:?} vs. checkpoint {stored:?}"
    )]
    NotConv {
        model: Vec<usize>,
        stored: Vec<usize>,
    },
    #[error(
        "resample_grid needs a position embedding [1, tokens, dim] or [1, dim, h, w], not model {model:?} vs. checkpoint {stored:?}"
    )]
    NotGrid {
        model: Vec<usize>,
        stored: Vec<usize>,
    },
    #[error(
        "resample_grid: {stored} and {model} tokens less {prefix} prefix tokens are not both square grids"
    )]
    NotSquare {
        stored: usize,
        model: usize,
        prefix: usize,
    },
    #[error(
        "resample_grid: no count of prefix tokens (0 to 8) leaves square grids of both {stored} and {model} tokens; give `prefix_tokens`"
    )]
    NoSquarePrefix { stored: usize, model: usize },
    #[error("select_rows picks {rows} rows, the model has {model:?} (checkpoint {stored:?})")]
    RowCount {
        rows: usize,
        model: Option<usize>,
        stored: Vec<usize>,
    },
    #[error("select_rows: row {row} is out of range, the checkpoint has {rows} rows")]
    RowOutOfRange { row: usize, rows: usize },
    #[error("{0} changes no tensor")]
    NoChange(&'static str),
    #[error(
        "adapt_in_channels: a conv weight with {from} input channels cannot become one with {to}"
    )]
    NoChannels { from: usize, to: usize },
    #[error("resample_grid: a grid of {from:?} tokens cannot be resampled to {to:?} (a side is 0)")]
    EmptyGrid {
        from: (usize, usize),
        to: (usize, usize),
    },
}

/// One planned change of a stored tensor (in the checkpoint's layout) into the model's shape.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Adaptation {
    /// `[O, from, k...]` → `[O, to, k...]`.
    InChannels { from: usize, to: usize },
    /// A grid of tokens resampled; `prefix` leading tokens kept.
    Grid {
        prefix: usize,
        from: (usize, usize),
        to: (usize, usize),
        /// `[1, D, H, W]` rather than `[1, prefix + H·W, D]`.
        channels_first: bool,
    },
    /// Rows of axis 0 kept, in this order.
    Rows(Vec<usize>),
}

impl Adaptation {
    /// How `policy` turns a `stored` tensor into the model's `model` shape (both in the
    /// checkpoint's layout), or why it cannot.
    pub fn plan(policy: &Policy, model: &[usize], stored: &[usize]) -> Result<Self, Unfit> {
        let same_except = |axes: &[usize]| {
            model.len() == stored.len()
                && model
                    .iter()
                    .zip(stored)
                    .enumerate()
                    .all(|(i, (a, b))| axes.contains(&i) || a == b)
        };
        match policy {
            Policy::AdaptInChannels => {
                if model.len() < 3 || !same_except(&[1]) {
                    return Err(Unfit::NotConv {
                        model: model.to_vec(),
                        stored: stored.to_vec(),
                    });
                }
                let (from, to) = (stored[1], model[1]);
                if from == 0 || to == 0 {
                    return Err(Unfit::NoChannels { from, to });
                }
                Ok(Self::InChannels { from, to })
            }
            Policy::ResampleGrid { prefix_tokens } => {
                if model.len() == 4 && same_except(&[2, 3]) && model[0] == 1 {
                    let (from, to) = ((stored[2], stored[3]), (model[2], model[3]));
                    if [from.0, from.1, to.0, to.1].contains(&0) {
                        return Err(Unfit::EmptyGrid { from, to });
                    }
                    return Ok(Self::Grid {
                        prefix: 0,
                        from,
                        to,
                        channels_first: true,
                    });
                }
                if model.len() != 3 || !same_except(&[1]) || model[0] != 1 {
                    return Err(Unfit::NotGrid {
                        model: model.to_vec(),
                        stored: stored.to_vec(),
                    });
                }
                let candidates: Vec<usize> = match prefix_tokens {
                    Some(p) => vec![*p],
                    None => (0..=8).collect(),
                };
                candidates
                    .into_iter()
                    .find_map(|p| {
                        let from = square(stored[1].checked_sub(p)?)?;
                        let to = square(model[1].checked_sub(p)?)?;
                        Some(Self::Grid {
                            prefix: p,
                            from: (from, from),
                            to: (to, to),
                            channels_first: false,
                        })
                    })
                    .ok_or(match prefix_tokens {
                        Some(p) => Unfit::NotSquare {
                            stored: stored[1],
                            model: model[1],
                            prefix: *p,
                        },
                        None => Unfit::NoSquarePrefix {
                            stored: stored[1],
                            model: model[1],
                        },
                    })
            }
            Policy::SelectRows { rows, .. } => {
                if model.is_empty() || !same_except(&[0]) || rows.len() != model[0] {
                    return Err(Unfit::RowCount {
                        rows: rows.len(),
                        model: model.first().copied(),
                        stored: stored.to_vec(),
                    });
                }
                if let Some(bad) = rows.iter().find(|r| **r >= stored[0]) {
                    return Err(Unfit::RowOutOfRange {
                        row: *bad,
                        rows: stored[0],
                    });
                }
                Ok(Self::Rows(rows.clone()))
            }
            Policy::Keep | Policy::Error => Err(Unfit::NoChange(policy.name())),
        }
    }

    /// The report's words: `3 → 1 input channels`.
    pub fn describe(&self) -> String {
        match self {
            Self::InChannels { from, to } => format!("adapted {from} → {to} input channels"),
            Self::Grid {
                prefix, from, to, ..
            } => format!(
                "resampled grid {}×{} → {}×{} (bicubic{})",
                from.0,
                from.1,
                to.0,
                to.1,
                match prefix {
                    0 => String::new(),
                    p => format!(", {p} prefix tokens kept"),
                }
            ),
            Self::Rows(rows) => {
                let shown: Vec<String> = rows.iter().take(8).map(usize::to_string).collect();
                let more = if rows.len() > 8 { ", ..." } else { "" };
                format!("selected {} rows [{}{more}]", rows.len(), shown.join(", "))
            }
        }
    }

    /// Change `data` (row-major, shape `stored`) into the model's shape.
    pub fn run(&self, data: &[f32], stored: &[usize]) -> Vec<f32> {
        match self {
            Self::InChannels { from, to } => in_channels(data, stored, *from, *to),
            Self::Rows(rows) => {
                let row: usize = stored[1..].iter().product();
                rows.iter()
                    .flat_map(|r| &data[r * row..(r + 1) * row])
                    .copied()
                    .collect()
            }
            Self::Grid {
                prefix,
                from,
                to,
                channels_first,
            } => {
                if *channels_first {
                    // [1, D, H, W]: each channel a plane.
                    let plane = from.0 * from.1;
                    data.chunks(plane)
                        .flat_map(|p| resample_plane(p, *from, *to))
                        .collect()
                } else {
                    // [1, prefix + H·W, D]: planes are strided by D.
                    let dim = stored[2];
                    let (h, w) = *from;
                    let mut out = data[..prefix * dim].to_vec();
                    let new_tokens = to.0 * to.1;
                    let mut grid = vec![0f32; new_tokens * dim];
                    for c in 0..dim {
                        let plane: Vec<f32> =
                            (0..h * w).map(|t| data[(prefix + t) * dim + c]).collect();
                        for (t, v) in resample_plane(&plane, *from, *to).into_iter().enumerate() {
                            grid[t * dim + c] = v;
                        }
                    }
                    out.extend(grid);
                    out
                }
            }
        }
    }
}

fn square(n: usize) -> Option<usize> {
    let r = (n as f64).sqrt().round() as usize;
    (r > 0 && r * r == n).then_some(r)
}

/// timm's rule, for any source count: one channel is the sum; more repeat the source channels
/// cyclically and scale by `from / to` so a uniform input keeps its activation.
fn in_channels(data: &[f32], stored: &[usize], from: usize, to: usize) -> Vec<f32> {
    let out_channels = stored[0];
    let kernel: usize = stored[2..].iter().product();
    let mut out = Vec::with_capacity(out_channels * to * kernel);
    for o in 0..out_channels {
        let filter = &data[o * from * kernel..(o + 1) * from * kernel];
        if to == 1 {
            out.extend((0..kernel).map(|k| (0..from).map(|c| filter[c * kernel + k]).sum::<f32>()));
        } else {
            let scale = from as f32 / to as f32;
            for c in 0..to {
                let src = c % from;
                out.extend(
                    filter[src * kernel..(src + 1) * kernel]
                        .iter()
                        .map(|v| v * scale),
                );
            }
        }
    }
    out
}

/// Resample one `[h, w]` plane to `to` with PyTorch's antialiased bicubic
/// (`F.interpolate(mode="bicubic", antialias=True, align_corners=False)`, Keys' a = -0.5).
fn resample_plane(plane: &[f32], from: (usize, usize), to: (usize, usize)) -> Vec<f32> {
    resize_plane(plane, from, to, Filter::Bicubic, |v| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resampling_to_the_same_grid_is_the_identity() {
        let plane: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let out = resample_plane(&plane, (3, 4), (3, 4));
        for (a, b) in plane.iter().zip(&out) {
            assert!((a - b).abs() < 1e-5, "{plane:?} vs {out:?}");
        }
    }

    #[test]
    fn prefix_tokens_are_guessed_from_square_grids() {
        let plan = Adaptation::plan(&Policy::resample_grid(), &[1, 1 + 16, 8], &[1, 1 + 49, 8]);
        assert_eq!(
            plan,
            Ok(Adaptation::Grid {
                prefix: 1,
                from: (7, 7),
                to: (4, 4),
                channels_first: false
            })
        );
    }

    #[test]
    fn empty_grids_and_channels_are_refused_before_any_value_is_read() {
        // The probe's inputs: a grid of height zero either way, a conv with zero channels.
        let grid = Policy::resample_grid();
        for (model, stored) in [
            ([1, 8, 0, 4], [1, 8, 4, 4]),
            ([1, 8, 4, 4], [1, 8, 0, 4]),
            ([1, 8, 4, 0], [1, 8, 4, 4]),
        ] {
            let err = Adaptation::plan(&grid, &model, &stored).unwrap_err();
            assert!(matches!(err, Unfit::EmptyGrid { .. }), "{err}");
            assert!(err.to_string().contains("a side is 0"), "{err}");
        }
        // Tokens: zero patches is not a square grid.
        let err = Adaptation::plan(&grid, &[1, 1, 8], &[1, 17, 8]).unwrap_err();
        assert!(matches!(err, Unfit::NoSquarePrefix { .. }), "{err}");
        let channels = Policy::AdaptInChannels;
        for (model, stored) in [([8, 0, 3, 3], [8, 3, 3, 3]), ([8, 3, 3, 3], [8, 0, 3, 3])] {
            let err = Adaptation::plan(&channels, &model, &stored).unwrap_err();
            assert!(matches!(err, Unfit::NoChannels { .. }), "{err}");
        }
    }

    #[test]
    fn rows_out_of_range_are_refused() {
        let err = Adaptation::plan(&Policy::select_rows([0, 10]), &[2, 4], &[10, 4]).unwrap_err();
        assert_eq!(err, Unfit::RowOutOfRange { row: 10, rows: 10 });
        assert!(err.to_string().contains("row 10 is out of range"), "{err}");
    }
}
