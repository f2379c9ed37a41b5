//! Build-time facts the tests need, so that a test whose outside tool is
//! missing is reported as *ignored* (visibly, with the reason) instead of
//! passing silently:
//! - `has_chromium`: a headless browser is on the PATH (the web-page test);
//! - `has_kiteconnect`: a Python with the official `kiteconnect` client
//!   (`TICKCAP_PYTHON`, else `.venv/bin/python`, else `python3`; its path
//!   reaches the tests as `TICKCAP_PYTHON_BIN`). `.ci/run` creates `.venv`;
//! - `has_pydata`: the same kind of Python with pyarrow, pandas and
//!   zstandard (the Parquet and compressed-capture checks), as
//!   `TICKCAP_PYDATA_BIN`;
//! - `has_kafka`: a real Apache Kafka broker's jars in `target/kafka-libs`
//!   (`.ci/run` fetches them with Maven from tools/kafka/pom.xml) and a
//!   `java` to run them; the jar directory reaches the tests as
//!   `TICKCAP_KAFKA_LIBS`.

use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(has_chromium)");
    println!("cargo::rustc-check-cfg=cfg(has_kiteconnect)");
    println!("cargo::rustc-check-cfg=cfg(has_pydata)");
    println!("cargo::rustc-check-cfg=cfg(has_kafka)");
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-env-changed=TICKCAP_PYTHON");
    println!("cargo::rerun-if-changed=build.rs");
    // Watched only where they exist: a missing path would make cargo rerun
    // this script (and rebuild the crate) on every build. After creating
    // .venv or fetching the broker's jars later, `touch build.rs`.
    for path in [".venv/bin/python", "target/kafka-libs"] {
        if std::path::Path::new(path).exists() {
            println!("cargo::rerun-if-changed={path}");
        }
    }
    let ok = |cmd: &mut Command| cmd.output().is_ok_and(|o| o.status.success());
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .any(|b| ok(Command::new(b).arg("--version")));
    if found {
        println!("cargo::rustc-cfg=has_chromium");
    }
    let venv = format!(
        "{}/.venv/bin/python",
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into())
    );
    let candidates: Vec<String> = std::env::var("TICKCAP_PYTHON")
        .into_iter()
        .chain([venv, "python3".to_owned()])
        .collect();
    let find = |import: &str| {
        candidates
            .iter()
            .find(|py| ok(Command::new(py).args(["-c", &format!("import {import}")])))
            .cloned()
    };
    if let Some(py) = find("kiteconnect") {
        println!("cargo::rustc-cfg=has_kiteconnect");
        println!("cargo::rustc-env=TICKCAP_PYTHON_BIN={py}");
    }
    if let Some(py) = find("pyarrow, pandas, zstandard") {
        println!("cargo::rustc-cfg=has_pydata");
        println!("cargo::rustc-env=TICKCAP_PYDATA_BIN={py}");
    }
    let libs = format!(
        "{}/target/kafka-libs",
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into())
    );
    let has_jar = std::fs::read_dir(&libs)
        .map(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("kafka_2.13"))
        })
        .unwrap_or(false);
    if has_jar && ok(Command::new("java").arg("-version")) {
        println!("cargo::rustc-cfg=has_kafka");
        println!("cargo::rustc-env=TICKCAP_KAFKA_LIBS={libs}");
    }
}
