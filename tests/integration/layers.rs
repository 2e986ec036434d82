//! The house's floors: each module of `src/` imports only modules on the floors below it, so no
//! two modules import each other in a loop. ARCHITECTURE.md names the floors; this test keeps
//! them true.

use std::path::{Path, PathBuf};

/// Bottom to top. A module may name (`crate::x`) only the modules listed before it.
const FLOORS: &[&str] = &[
    // Vocabulary: words every layer shares, and the system calls behind safe functions.
    "sys",
    "units",
    "warning",
    "interrupt",
    "payload",
    "ceiling",
    "mounts",
    "classes",
    // What a figure is.
    "measure",
    // File-system primitives, then the disk engine and what drives it.
    "file",
    "disk",
    // Every byte format both ends agree on.
    "control",
    // The paths, the peer, the plan of a run and its verdict, the mesh's coordinator, the
    // renderings, the CLI.
    "transport",
    "serve",
    "plan",
    "mesh",
    "diff",
    "report",
    "progress",
    "cli",
];

/// The `.rs` files of module `name` (a file, a folder, or both), test modules left out.
fn sources(src: &Path, name: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let single = src.join(format!("{name}.rs"));
    if single.exists() {
        files.push(single);
    }
    let mut dirs = vec![src.join(name)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }
    files
}

/// The modules a file's code (not its unit tests) names as `crate::NAME`.
fn named_modules(text: &str) -> Vec<String> {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    code.match_indices("crate::")
        .map(|(at, _)| {
            code[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect()
        })
        .collect()
}

#[test]
fn every_module_imports_only_the_floors_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut wrong = Vec::new();
    for (floor, module) in FLOORS.iter().enumerate() {
        let files = sources(&src, module);
        assert!(!files.is_empty(), "no source for module {module}");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for named in named_modules(&text) {
                let Some(at) = FLOORS.iter().position(|m| *m == named) else {
                    continue;
                };
                if at >= floor && named != *module {
                    wrong.push(format!(
                        "{} names crate::{named}, on a floor above or beside {module}",
                        file.strip_prefix(&src).unwrap().display()
                    ));
                }
            }
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(
        wrong.is_empty(),
        "imports that go up a floor:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn every_module_of_the_crate_has_a_floor() {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    for line in lib.lines() {
        if let Some(module) = line
            .strip_prefix("pub mod ")
            .and_then(|m| m.strip_suffix(';'))
        {
            assert!(
                FLOORS.contains(&module),
                "src/lib.rs declares {module}, which has no floor here"
            );
        }
    }
}

#[test]
fn a_module_naming_one_above_it_is_caught() {
    let found = named_modules("use crate::plan::RunReport;\nfn f() { crate::units::x(); }");
    assert_eq!(found, ["plan", "units"]);
    let tests_only = named_modules("fn f() {}\n#[cfg(test)]\nmod tests {\n use crate::plan::X;\n}");
    assert!(tests_only.is_empty(), "{tests_only:?}");
}
