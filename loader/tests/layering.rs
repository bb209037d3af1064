//! The library's modules import each other only along the data path: each stage imports the
//! stages before it (and `error`), never one after it, so there is no import cycle. `load.rs`
//! is the one place that strings them all together.
//!
//! The check reads `loader/src` as text: every `crate::…` path outside comments and outside
//! the `#[cfg(test)] mod tests` block that ends a file, grouped imports
//! (`use crate::{a::X, b::{Y, Z}}`) included, and names re-exported by `lib.rs`
//! (`crate::LoadReport`) resolved to the module they come from.

// A test reading its own crate's sources: a failure to read them is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The top-level modules in data-path order: a module may import only those before it.
const ORDER: &[&str] = &[
    "error", "layout", "source", "format", "view", "policy", "mapping", "plan", "apply", "report",
    "expect", "freeze", "quantize", "spec", "export", "adapter", "load",
];

/// `error` is the one error enum of every stage, so every stage imports it; two of its
/// variants carry values of later stages by type (`Corrupt` the detected `Format`, `Unmet` the
/// plan's `LoadReport`). Those two names are the only ones it may use, and nothing else may
/// point back.
const ERROR_PAYLOADS: &[(&str, &str)] = &[("format", "Format"), ("report", "LoadReport")];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file: comments removed, the trailing test module cut off.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first path segment after every `crate::` (each item of a `crate::{..}` group).
fn crate_paths(code: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let end = group
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(group.len(), |(i, _)| i);
            let mut depth = 0;
            let mut item = String::new();
            for c in group[..end].chars().chain([',']) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.extend(segments(item.trim()));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
        } else {
            out.extend(segments(rest));
        }
    }
    out
}

/// `view::Remap` → (`view`, `Remap`); `LoadReport` → (`LoadReport`, none).
fn segments(path: &str) -> Option<(String, Option<String>)> {
    let ident = |s: &str| {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect::<String>()
    };
    let first = ident(path);
    if first.is_empty() {
        return None;
    }
    let second = path[first.len()..].strip_prefix("::").map(ident);
    Some((first, second.filter(|s| !s.is_empty())))
}

/// Names `lib.rs` re-exports (`pub use report::LoadReport;`) → their module.
fn reexports(lib: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in code(lib).lines() {
        let Some(rest) = line.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, names)) = rest.trim_end_matches(';').split_once("::") else {
            continue;
        };
        for name in names.trim_matches(['{', '}']).split(',') {
            out.insert(name.trim().to_string(), module.to_string());
        }
    }
    out
}

#[test]
fn modules_import_only_earlier_stages() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let lib = fs::read_to_string(root.join("lib.rs")).unwrap();
    let reexported = reexports(&lib);
    let rank = |m: &str| ORDER.iter().position(|o| *o == m);
    let mut edges: BTreeMap<&str, BTreeSet<(String, String)>> = BTreeMap::new();
    let mut problems = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&root).unwrap();
        let top = rel.iter().next().unwrap().to_string_lossy();
        let module = top.trim_end_matches(".rs").to_string();
        if module == "lib" {
            continue;
        }
        let Some(from) = rank(&module) else {
            problems.push(format!(
                "{}: module `{module}` has no place in ORDER",
                rel.display()
            ));
            continue;
        };
        let text = fs::read_to_string(file).unwrap();
        for (first, second) in crate_paths(&code(&text)) {
            let (target, name) = match reexported.get(&first) {
                Some(module) => (module.clone(), first.clone()),
                None => (first.clone(), second.clone().unwrap_or_default()),
            };
            if target == module || target == "__private" {
                continue;
            }
            let Some(to) = rank(&target) else {
                problems.push(format!("{}: `crate::{first}` is no module", rel.display()));
                continue;
            };
            edges
                .entry(ORDER[from])
                .or_default()
                .insert((target.clone(), name.clone()));
            let payload = module == "error" && ERROR_PAYLOADS.contains(&(&target, &name));
            if to >= from && !payload {
                problems.push(format!(
                    "{}: `{module}` imports `{target}::{name}`, a stage after it",
                    rel.display()
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{}\nimports: {edges:#?}",
        problems.join("\n")
    );
    // The check saw the imports it is about (a scanner that finds nothing passes anything).
    let load = &edges["load"];
    for stage in [
        "source", "format", "view", "policy", "plan", "apply", "report",
    ] {
        assert!(
            load.iter().any(|(m, _)| m == stage),
            "load.rs imports {stage}: {load:?}"
        );
    }
}

#[test]
fn the_scanner_reads_grouped_and_nested_imports() {
    let code = code(
        "use crate::{apply::X, plan::{Y, Z}};\n// crate::comment::No\nlet a = crate::format::f();\n#[cfg(test)]\nmod tests { use crate::load::T; }",
    );
    let found: Vec<String> = crate_paths(&code).into_iter().map(|(m, _)| m).collect();
    assert_eq!(found, ["apply", "plan", "format"]);
}
