//! Build-time facts the tests need: whether a headless browser is on the
//! PATH, so the web-page test is reported as *ignored* (visibly, with the
//! reason) instead of passing silently where no chromium is installed.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(has_chromium)");
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-changed=build.rs");
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .any(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    if found {
        println!("cargo::rustc-cfg=has_chromium");
    }
}
