//! Build-time facts the tests need, so that a test whose outside tool is
//! missing is reported as *ignored* (visibly, with the reason) instead of
//! passing silently:
//! - `has_chromium`: a headless browser is on the PATH (the web-page test);
//! - `has_kiteconnect`: a Python with the official `kiteconnect` client
//!   (`TICKCAP_PYTHON`, else `.venv/bin/python`, else `python3`; its path
//!   reaches the tests as `TICKCAP_PYTHON_BIN`). `.ci/run` creates `.venv`.

use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(has_chromium)");
    println!("cargo::rustc-check-cfg=cfg(has_kiteconnect)");
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-env-changed=TICKCAP_PYTHON");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=.venv/bin/python");
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
    let candidates = std::env::var("TICKCAP_PYTHON")
        .into_iter()
        .chain([venv, "python3".to_owned()]);
    for py in candidates {
        if ok(Command::new(&py).args(["-c", "import kiteconnect"])) {
            println!("cargo::rustc-cfg=has_kiteconnect");
            println!("cargo::rustc-env=TICKCAP_PYTHON_BIN={py}");
            break;
        }
    }
}
