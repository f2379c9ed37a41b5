//! `tickcap login` against a local stand-in for Kite's REST API: it checks
//! the form, the header and the checksum as Kite does, and answers in Kite's
//! JSON shapes.

use crate::common;

use std::process::Command;

use common::kite_stand_in;

fn config(dir: &std::path::Path, root: &str, secret: &str) -> std::path::PathBuf {
    let p = dir.join("tickcap.toml");
    std::fs::write(
        &p,
        format!(
            "[kite]\napi_key = \"key1\"\napi_secret = \"{secret}\"\napi_root = \"{root}\"\naccess_token_file = \"token\"\n\
             [status]\nlisten = \"127.0.0.1:9\"\n[primary]\ninstruments = [256]\n"
        ),
    )
    .unwrap();
    p
}

/// `tickcap login` with a request token in hand, the environment cleared.
fn login(cfg: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tickcap"))
        .args([
            "login",
            "--no-browser",
            "--request-token",
            "RT42",
            "--config",
        ])
        .arg(cfg)
        .env_remove("KITE_API_KEY")
        .env_remove("KITE_API_SECRET")
        .output()
        .unwrap()
}

#[test]
fn login_exchanges_the_request_token_and_writes_the_token_file_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = kite_stand_in("s3cret", 1);
    let cfg = config(dir.path(), &root, "s3cret");
    let out = login(&cfg);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    let token = dir.path().join("token");
    assert_eq!(
        std::fs::read_to_string(&token).unwrap(),
        "access-for-RT42\n"
    );
    assert_eq!(
        std::fs::metadata(&token).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        !text.contains("s3cret"),
        "the secret is never shown: {text}"
    );
    assert!(
        !text.contains("access-for-RT42"),
        "the token is shown redacted: {text}"
    );
    // The service reads it as its token.
    let c = tickcap::config::Config::load(&cfg, &tickcap::config::Env::default()).unwrap();
    assert_eq!(c.connections[0].access_token.expose(), "access-for-RT42");
}

#[test]
fn kites_error_is_shown_as_it_is_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let root = kite_stand_in("the-real-secret", 1);
    let cfg = config(dir.path(), &root, "a-wrong-secret");
    let out = login(&cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("Invalid `checksum`.") && err.contains("TokenException"),
        "{err}"
    );
    assert!(!err.contains("a-wrong-secret"), "{err}");
    assert!(!dir.path().join("token").exists());
}
