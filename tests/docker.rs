//! The Docker image's build context, checked without a Docker engine: the context is made
//! again from the Dockerfile's own `COPY` lines (minus `.dockerignore`) in a temporary folder,
//! and cargo must resolve the manifest there, offline and with the lock file as it is, as
//! `cargo build --locked` in the image would. The files the release build includes
//! (`include_str!` outside tests) must be there too.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The build stage's `COPY` sources (relative to the context) and destinations (relative to
/// its `WORKDIR`); `COPY --from` lines copy from another stage, not from the context.
fn copies(dockerfile: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in dockerfile.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("COPY ") else {
            continue;
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        if words.iter().any(|w| w.starts_with("--from")) {
            continue;
        }
        let words: Vec<&str> = words.into_iter().filter(|w| !w.starts_with("--")).collect();
        let (dest, sources) = words.split_last().expect("COPY has a destination");
        for source in sources {
            let dest = match dest.ends_with('/') {
                true => format!("{dest}{}", source.trim_end_matches('/')),
                false => dest.to_string(),
            };
            out.push((source.to_string(), dest));
        }
    }
    out
}

/// `.dockerignore`'s patterns: a name (anywhere at the top of the path) or `*.ext`.
fn ignored(patterns: &[String], relative: &Path) -> bool {
    let text = relative.to_string_lossy();
    patterns.iter().any(|p| {
        let p = p.trim_start_matches('/');
        match p.strip_prefix('*') {
            Some(suffix) => text.ends_with(suffix),
            None => text == p || text.starts_with(&format!("{p}/")),
        }
    })
}

fn copy_tree(from: &Path, to: &Path, relative: &Path, ignore: &[String]) {
    if ignored(ignore, relative) {
        return;
    }
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name();
            copy_tree(
                &entry.path(),
                &to.join(&name),
                &relative.join(&name),
                ignore,
            );
        }
    } else {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap();
    }
}

/// The context as the Dockerfile's build stage sees it, in `dir`.
fn rebuild_context(dir: &Path) {
    let dockerfile = std::fs::read_to_string(root().join("docker/Dockerfile")).unwrap();
    let ignore: Vec<String> = std::fs::read_to_string(root().join(".dockerignore"))
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let copies = copies(&dockerfile);
    assert!(!copies.is_empty(), "no COPY in the Dockerfile");
    for (source, dest) in copies {
        let from = root().join(&source);
        assert!(from.exists(), "COPY {source}: not in the repository");
        let dest = match dest.as_str() {
            "./" | "." => dir.join(&source),
            d => dir.join(d.trim_start_matches("./")),
        };
        copy_tree(&from, &dest, Path::new(&source), &ignore);
    }
}

/// The paths `include_str!`/`include_bytes!` name in the non-test part of each source file,
/// resolved against the file's folder.
fn includes(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            includes(&path, found);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // Tests sit at the bottom of a file, after `#[cfg(test)]`.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for part in code.split("include_").skip(1) {
            let Some(arg) = part
                .strip_prefix("str!(\"")
                .or_else(|| part.strip_prefix("bytes!(\""))
            else {
                continue;
            };
            let name = &arg[..arg.find('"').unwrap()];
            found.push(path.parent().unwrap().join(name));
        }
    }
}

#[test]
fn the_docker_build_context_holds_what_the_build_needs() {
    let dir = tempfile::tempdir().unwrap();
    rebuild_context(dir.path());
    assert!(
        !dir.path().join("target").exists(),
        ".dockerignore lets target/ into the context"
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // The image builds for Linux: packages only other platforms use (never downloaded here, so
    // `--offline` could not read them) are left out.
    let out = Command::new(cargo)
        .args(["metadata", "--locked", "--offline", "--format-version", "1"])
        .args(["--filter-platform", &host_triple()])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo cannot resolve the manifest in the image's build context:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // cargo reads every target the manifests declare before it builds any of them (a bench
    // whose file is missing stops `cargo build --bin mqbridge`), and `metadata` does not look.
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut needed: Vec<std::path::PathBuf> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["source"].is_null())
        .flat_map(|p| p["targets"].as_array().unwrap())
        .map(|t| t["src_path"].as_str().unwrap().into())
        .collect();
    let mut included = Vec::new();
    includes(&dir.path().join("src"), &mut included);
    assert!(
        !included.is_empty(),
        "the release build includes files (the status page)"
    );
    needed.extend(included);
    for path in needed {
        assert!(
            path.exists(),
            "the build needs {}, which the context lacks",
            path.strip_prefix(dir.path()).unwrap_or(&path).display()
        );
    }
}

#[test]
fn copies_are_read_as_docker_reads_them() {
    let file = "FROM x AS build\nCOPY Cargo.toml Cargo.lock ./\nCOPY src ./src\n\
                FROM y\nCOPY --from=build /src/target/release/mqbridge /usr/local/bin/\n";
    assert_eq!(
        copies(file),
        [
            ("Cargo.toml".into(), "./Cargo.toml".into()),
            ("Cargo.lock".into(), "./Cargo.lock".into()),
            ("src".into(), "./src".into()),
        ]
    );
    let patterns = ["target".to_owned(), "*.jsonl".to_owned()];
    assert!(ignored(&patterns, Path::new("target/debug/x")));
    assert!(ignored(&patterns, Path::new("dead.jsonl")));
    assert!(!ignored(&patterns, Path::new("src/target.rs")));
}

/// The platform cargo builds for here (`rustc -vV`'s `host:`).
fn host_triple() -> String {
    let out = Command::new("rustc").arg("-vV").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let host = text.lines().find_map(|l| l.strip_prefix("host: "));
    host.expect("rustc -vV names no host").trim().to_owned()
}
