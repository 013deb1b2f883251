//! The crate's modules form a tree: no module imports one that imports it
//! back, directly or through a chain. A module's imports are its `crate::`,
//! `super::` and `self::` paths and its uses of its own child modules; a
//! file's `#[cfg(test)]` tail does not count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path ("crate", "a", "a::b") -> file.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, prefix: &str, out: &mut BTreeMap<String, PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read src dir") {
            let path = entry.expect("dir entry").path();
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            let name = |s: &str| {
                if prefix.is_empty() {
                    s.to_string()
                } else {
                    format!("{prefix}::{s}")
                }
            };
            if path.is_dir() {
                if stem != "bin" {
                    walk(&path, &name(stem), out);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let module = match stem {
                    "lib" if prefix.is_empty() => "crate".to_string(),
                    "main" if prefix.is_empty() => continue,
                    "mod" => prefix.to_string(),
                    s => name(s),
                };
                out.insert(module, path);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(src, "", &mut out);
    out
}

/// The source that counts: comments and the `#[cfg(test)]` tail removed.
fn code(text: &str) -> String {
    let end = text.find("#[cfg(test)]\nmod tests").unwrap_or(text.len());
    text[..end]
        .lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

fn parent(module: &str) -> &str {
    module.rsplit_once("::").map_or("crate", |(p, _)| p)
}

/// The path segments after `at` (identifiers separated by `::`; a `{` group
/// contributes each of its first segments).
fn segments(rest: &str) -> Vec<Vec<String>> {
    let ident: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect();
    let mut base: Vec<String> = ident
        .split("::")
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    if ident.ends_with("::") && rest[ident.len()..].starts_with('{') {
        let group = &rest[ident.len() + 1..];
        let group = &group[..group.find('}').unwrap_or(group.len())];
        return group
            .split(',')
            .map(|item| {
                let mut p = base.clone();
                p.extend(
                    item.trim()
                        .split("::")
                        .next()
                        .filter(|s| !s.is_empty())
                        .map(String::from),
                );
                p
            })
            .collect();
    }
    if base.is_empty() {
        base.push(String::new());
    }
    vec![base]
}

/// The longest known module that `path` (below `from`) names.
fn resolve(known: &BTreeMap<String, PathBuf>, from: &str, path: &[String]) -> String {
    let mut best = from.to_string();
    for n in 1..=path.len() {
        let cand = if from == "crate" {
            path[..n].join("::")
        } else {
            format!("{from}::{}", path[..n].join("::"))
        };
        if known.contains_key(&cand) {
            best = cand;
        }
    }
    best
}

fn imports(known: &BTreeMap<String, PathBuf>, module: &str, code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let boundary = |code: &str, i: usize| {
        i == 0 || {
            let prev = code[..i].chars().next_back().unwrap_or(' ');
            !(prev.is_alphanumeric() || prev == '_' || prev == ':')
        }
    };
    let children: Vec<&str> = known
        .keys()
        .filter(|m| *m != "crate" && parent(m) == module)
        .map(|m| m.rsplit("::").next().unwrap_or(m))
        .collect();
    let mut roots: Vec<(String, String)> = vec![
        ("crate::".into(), "crate".into()),
        ("super::".into(), parent(module).into()),
        ("self::".into(), module.into()),
    ];
    roots.extend(
        children
            .iter()
            .map(|c| (format!("{c}::"), module.to_string())),
    );
    for (needle, base) in roots {
        let prefix_is_child = !matches!(needle.as_str(), "crate::" | "super::" | "self::");
        for (i, _) in code.match_indices(&needle) {
            if !boundary(code, i) {
                continue;
            }
            let start = if prefix_is_child { i } else { i + needle.len() };
            for path in segments(&code[start..]) {
                out.insert(resolve(known, &base, &path));
            }
        }
    }
    out.remove(module);
    out
}

/// Every cycle's modules (strongly connected components with more than one module).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(m) = todo.pop() {
            for n in graph.get(&m).into_iter().flatten() {
                if seen.insert(n.clone()) {
                    todo.push(n.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|m| (m, reach(m))).collect();
    let mut out: Vec<Vec<String>> = vec![];
    for (m, r) in &reachable {
        if !r.contains(*m) || out.iter().any(|c| c.contains(m)) {
            continue;
        }
        let scc: Vec<String> = reachable
            .iter()
            .filter(|(n, rn)| r.contains(**n) && rn.contains(*m))
            .map(|(n, _)| (*n).clone())
            .collect();
        out.push(scc);
    }
    out
}

#[test]
fn modules_form_a_tree() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let known = modules(&src);
    let graph: BTreeMap<String, BTreeSet<String>> = known
        .iter()
        .map(|(m, path)| {
            let text = std::fs::read_to_string(path).expect("read module");
            (m.clone(), imports(&known, m, &code(&text)))
        })
        .collect();
    for (m, deps) in &graph {
        println!(
            "{m} -> {}",
            deps.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let found = cycles(&graph);
    for c in &found {
        println!("cycle: {}", c.join(" <-> "));
    }
    println!("{} modules, {} import cycles", known.len(), found.len());
    assert!(found.is_empty(), "import cycles: {found:?}");
}
