//! The module order, checked: ARCHITECTURE.md lists the engine's modules
//! lowest first; each may import only modules listed before it, so no
//! import runs upward and none closes a circle. Inside a module, the files
//! that import each other (directly, or through what `mod.rs` re-exports)
//! form no circle either.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The order written in ARCHITECTURE.md: the block after the line
/// `Module order, lowest first:`, one module per line.
fn documented_order() -> Vec<String> {
    let doc = std::fs::read_to_string(src().join("../../ARCHITECTURE.md")).unwrap();
    let start = doc
        .find("Module order, lowest first:")
        .expect("ARCHITECTURE.md lists the module order");
    let block = &doc[start..];
    let open = block.find("```").unwrap() + 3;
    let close = open + block[open..].find("```").unwrap();
    block[open..close]
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Every `.rs` file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The top-level module a file belongs to.
fn module_of(file: &Path) -> String {
    let rel = file.strip_prefix(src()).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The code of a file without comments (so prose naming a module is not
/// an import).
fn code(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let lines = text.lines().map(|l| match l.find("//") {
        Some(at) => &l[..at],
        None => l,
    });
    lines.collect::<Vec<_>>().join("\n")
}

/// Names following `prefix` in `code` (`crate::` → `store`, `op`, ...),
/// including those inside `use prefix{a, b::c}` groups.
fn names_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (at, _) in code.match_indices(prefix) {
        let rest = &code[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.insert(name);
            }
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        out.insert(name);
    }
    out.remove("");
    out
}

/// Imports that run upward (or sideways) against `order`.
fn upward_imports(order: &[String]) -> Vec<String> {
    let rank: BTreeMap<&str, usize> = (order.iter().enumerate())
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    // Names the facade re-exports (`crate::Engine`) belong to their module.
    let root = reexports(&code(&src().join("lib.rs")));
    let resolve = |name: &str| match rank.get(name) {
        Some(&r) => Some((name.to_string(), r)),
        None => (root.get(name)).and_then(|m| rank.get(m.as_str()).map(|&r| (m.clone(), r))),
    };
    let mut wrong = Vec::new();
    for file in files(&src()) {
        let module = module_of(&file);
        let Some(&own) = rank.get(module.as_str()) else {
            continue; // the facade (lib.rs) and this test
        };
        for name in names_after(&code(&file), "crate::") {
            match resolve(&name) {
                Some((used, r)) if r >= own && used != module => {
                    let what = match name == used {
                        true => format!("`{used}`"),
                        false => format!("`{name}` of `{used}`"),
                    };
                    wrong.push(format!(
                        "{}: `{module}` imports {what}, which is not below it",
                        file.display()
                    ));
                }
                _ => {}
            }
        }
    }
    wrong
}

/// The file of a module folder each name of `mod.rs`'s re-exports comes
/// from (`pub(crate) use handles::{Read, Write}` → Read: handles).
fn reexports(mod_rs: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for statement in mod_rs.split(';') {
        let statement = statement.trim();
        let Some(at) = statement.find("use ") else {
            continue;
        };
        let path = statement[at + 4..].trim();
        let Some((file, names)) = path.split_once("::") else {
            continue;
        };
        for name in names_after(&format!("::{names}"), "::") {
            out.insert(name, file.to_string());
        }
    }
    out
}

/// A circle among the files of module folder `dir`, if there is one.
fn circle_in(dir: &Path) -> Option<Vec<String>> {
    let mod_rs = dir.join("mod.rs");
    let names = reexports(&code(&mod_rs));
    let siblings: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs") && p != &mod_rs)
        .map(|p| p.file_stem().unwrap().to_string_lossy().to_string())
        .collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &siblings {
        let used = names_after(&code(&dir.join(format!("{file}.rs"))), "super::");
        let targets = used.into_iter().filter_map(|name| match names.get(&name) {
            Some(from) => Some(from.clone()),
            None => siblings.contains(&name).then_some(name),
        });
        let targets = targets.filter(|t| t != file && siblings.contains(t));
        edges.insert(file.clone(), targets.collect());
    }
    // Depth-first search for a back edge.
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.to_string());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, edges, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for file in &siblings {
        if let Some(circle) = visit(file, &edges, &mut Vec::new(), &mut done) {
            return Some(circle);
        }
    }
    None
}

#[test]
fn the_facade_declares_the_documented_order() {
    let order = documented_order();
    let lib = code(&src().join("lib.rs"));
    let declared: Vec<String> = (lib.lines())
        .filter_map(|l| l.trim().strip_prefix("mod "))
        .map(|m| m.trim_end_matches(';').to_string())
        .filter(|m| m != "module_order")
        .collect();
    assert_eq!(declared, order, "lib.rs and ARCHITECTURE.md disagree");
}

#[test]
fn no_module_imports_one_above_it() {
    let wrong = upward_imports(&documented_order());
    assert!(
        wrong.is_empty(),
        "imports against the module order:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_files_of_a_module_import_each_other_in_a_circle() {
    let mut circles = Vec::new();
    for file in files(&src()) {
        if file.file_name().is_some_and(|n| n == "mod.rs")
            && let Some(circle) = circle_in(file.parent().unwrap())
        {
            circles.push(format!(
                "{}: {}",
                file.parent().unwrap().display(),
                circle.join(" → ")
            ));
        }
    }
    assert!(
        circles.is_empty(),
        "files importing each other in a circle:\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_check_sees_an_upward_import() {
    // The order reversed: every import in the engine runs upward.
    let mut reversed = documented_order();
    reversed.reverse();
    let wrong = upward_imports(&reversed);
    assert!(
        wrong.iter().any(|w| w.contains("`store` imports")),
        "{wrong:?}"
    );
}
