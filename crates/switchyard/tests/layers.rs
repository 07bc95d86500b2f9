//! The layers hold: no import cycle between the top-level modules of any crate (see
//! ARCHITECTURE.md at the repository root). Read from the sources, so a new `use` that closes
//! a cycle fails here with the cycle named.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The `.rs` files of a module: `src/<m>.rs`, or every file under `src/<m>/`, test files
/// (`tests.rs`, `tests/`) left out.
fn files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir").flatten() {
            let p = entry.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name == "tests.rs" || name == "tests" {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if name.ends_with(".rs") {
                out.push(p);
            }
        }
    }
    out
}

/// Code without comments and without the trailing `#[cfg(test)]` module.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `module -> modules it uses`, for the modules in `src` (a crate's `src/`, or a module's
/// folder, whose files refer to each other as `super::x` or `crate::<path>::x`).
fn graph(src: &Path, path_in_crate: &str) -> BTreeMap<String, BTreeSet<String>> {
    let modules: Vec<String> = std::fs::read_dir(src)
        .expect("src")
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            let stem = p.file_stem()?.to_str()?.to_string();
            (p.is_dir() || p.extension().is_some_and(|x| x == "rs"))
                .then_some(stem)
                .filter(|s| s != "lib" && s != "main" && s != "mod" && s != "tests")
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut g = BTreeMap::new();
    for m in &modules {
        // `m.rs`, `m/`, or both (`m.rs` with its submodules in `m/`).
        let mut paths = vec![src.join(m), src.join(format!("{m}.rs"))];
        paths.retain(|p| p.exists());
        let mut deps = BTreeSet::new();
        let prefixes = if path_in_crate.is_empty() {
            vec!["crate::".to_string()]
        } else {
            vec!["super::".to_string(), format!("crate::{path_in_crate}::")]
        };
        for f in paths.iter().flat_map(|p| files(p)) {
            let text = code(&std::fs::read_to_string(&f).expect("read"));
            for prefix in &prefixes {
                for (i, _) in text.match_indices(prefix.as_str()) {
                    let rest = &text[i + prefix.len()..];
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if &name != m && modules.contains(&name) {
                        deps.insert(name);
                    }
                }
            }
        }
        g.insert(m.clone(), deps);
    }
    g
}

/// A cycle, if there is one.
fn cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        g: &BTreeMap<String, BTreeSet<String>>,
        m: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == m) {
            let mut c = path[at..].to_vec();
            c.push(m.to_string());
            return Some(c);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for d in g.get(m).into_iter().flatten() {
            if let Some(c) = visit(g, d, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in g.keys() {
        if let Some(c) = visit(g, m, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_crate_has_an_import_cycle_between_its_modules() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut checked = 0;
    for name in ["switchyard", "switchyard-core", "switchyard-prefect"] {
        let src = crates.join(name).join("src");
        // The crate's top-level modules, and the files inside each module folder.
        let mut levels = vec![(src.clone(), String::new())];
        for entry in std::fs::read_dir(&src).expect("src").flatten() {
            let p = entry.path();
            if p.is_dir() {
                let m = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                levels.push((p.clone(), m.to_string()));
            }
        }
        for (dir, path_in_crate) in levels {
            let g = graph(&dir, &path_in_crate);
            checked += g.len();
            if let Some(c) = cycle(&g) {
                panic!(
                    "{name} ({}): import cycle {}\nthe graph: {g:#?}",
                    dir.display(),
                    c.join(" -> ")
                );
            }
        }
    }
    assert!(checked > 30, "too few modules found ({checked})");
}

#[test]
fn the_checker_sees_a_cycle() {
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(
        cycle(&g),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert!(
        code("use x; // crate::a\n#[cfg(test)]\nuse crate::b;")
            .find("crate::")
            .is_none()
    );
}
