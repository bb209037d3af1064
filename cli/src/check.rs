//! `pretrain check CONFIG`: the dry-run plan of a config's `pretrain`s, per subtree, from
//! headers only; `--expect SUBTREE=FRACTION` makes it a gate.

use burn::prelude::*;
use burn_pretrain::__cli::fold_keys;
use serde_json::json;

use crate::cli::CheckArgs;
use crate::models::{self, SubtreeRow};
use crate::{EXIT_EXPECT, output};

/// `backbone=1.0` → ("backbone", 1.0).
fn parse_expect(s: &str) -> anyhow::Result<(String, f64)> {
    let (subtree, fraction) = s.split_once('=').ok_or_else(|| {
        anyhow::anyhow!("--expect {s}: expected SUBTREE=FRACTION, e.g. backbone=1.0")
    })?;
    let fraction: f64 = fraction
        .parse()
        .map_err(|_| anyhow::anyhow!("--expect {s}: `{fraction}` is not a number in [0, 1]"))?;
    anyhow::ensure!(
        (0.0..=1.0).contains(&fraction),
        "--expect {s}: fraction must be in [0, 1]"
    );
    Ok((subtree.to_string(), fraction))
}

pub fn run(args: CheckArgs) -> anyhow::Result<i32> {
    let expects: Vec<(String, f64)> = args
        .expect
        .iter()
        .map(|e| parse_expect(e))
        .collect::<Result<_, _>>()?;
    let device = Device::flex();
    let (model, report) = models::build(&args.config, &device, true)?;
    let rows = models::summarize(&model.keys(), &report);
    let mut unexpected = Vec::new();
    for load in report.loads() {
        for key in load.report.unexpected() {
            unexpected.push(key.clone());
        }
    }
    let mut verdicts = Vec::new();
    let mut failed = false;
    for (subtree, want) in &expects {
        let row = rows.iter().find(|r| &r.subtree == subtree);
        let (got, ok) = match row {
            Some(r) => (r.fraction(), r.fraction() + 1e-12 >= *want),
            None => (0.0, false),
        };
        failed |= !ok;
        verdicts.push((subtree.clone(), *want, got, ok, row.cloned()));
    }
    if args.json {
        output::print_json(&json!({
            "config": args.config.display().to_string(),
            "loads": report.loads(),
            "subtrees": rows,
            "unexpected": unexpected,
            "expect": verdicts.iter().map(|(s, want, got, ok, _)| json!({"subtree": s, "expected": want, "actual": got, "ok": ok})).collect::<Vec<_>>(),
        }))?;
    } else {
        output::print(&text(&args, &report, &rows, &unexpected, &verdicts))?;
    }
    Ok(if failed { EXIT_EXPECT } else { 0 })
}

type Verdict = (String, f64, f64, bool, Option<SubtreeRow>);

fn text(
    args: &CheckArgs,
    report: &burn_pretrain_models::BuildReport,
    rows: &[SubtreeRow],
    unexpected: &[String],
    verdicts: &[Verdict],
) -> String {
    let mut out = format!(
        "plan for {} (dry run: headers only, no tensor bytes read)\n",
        args.config.display()
    );
    for load in report.loads() {
        let scope = if load.scope.is_empty() {
            "(root)"
        } else {
            &load.scope
        };
        let r = &load.report;
        out.push_str(&format!(
            "[{scope}] {} ({}): {} load, {} shape mismatch, {} cast, {} missing, {} unexpected\n",
            r.source(),
            r.format(),
            r.loaded().len(),
            r.mismatched().len(),
            r.cast().len(),
            r.missing().len(),
            r.unexpected().len()
        ));
        for m in r.mismatched() {
            out.push_str(&format!(
                "  {}: model {:?} vs. checkpoint {:?}\n",
                m.key, m.model_shape, m.checkpoint_shape
            ));
        }
        // Loads whose shapes a policy will change (counted in `load`): what it will do.
        for a in r.adapted() {
            out.push_str(&format!(
                "  {}: checkpoint {:?} → model {:?}, {}\n",
                a.key, a.checkpoint_shape, a.model_shape, a.how
            ));
        }
    }
    out.push_str(&models::table(rows));
    if !unexpected.is_empty() {
        out.push_str(&format!(
            "unexpected: {}\n",
            fold_keys(unexpected).join(", ")
        ));
    }
    for (subtree, want, got, ok, row) in verdicts {
        let counts = row
            .as_ref()
            .map(|r| format!(" ({}/{})", r.load, r.total))
            .unwrap_or_else(|| " (no such subtree)".into());
        out.push_str(&format!(
            "expect {subtree}={want}: {} {got:.3}{counts}\n",
            if *ok { "ok" } else { "FAILED, got" }
        ));
    }
    out
}
