//! `tickcap login`: Kite Connect's documented login flow, the user's own.
//!
//! 1. Print (and, with a browser at hand, open) the login URL
//!    `https://kite.zerodha.com/connect/login?v=3&api_key=KEY`; the user logs
//!    in on Kite's page (no scraping, no TOTP automation here).
//! 2. Take the `request_token` Kite appends to the app's redirect URL: from
//!    `--request-token`, by listening once on the redirect address when it
//!    is local, or from a paste of the token or the whole redirect URL.
//! 3. Exchange it: `POST {api_root}/session/token` with `api_key`,
//!    `request_token` and `checksum` = hex SHA-256 of
//!    api_key + request_token + api_secret, header `X-Kite-Version: 3`.
//! 4. Write the access token to `access_token_file` (mode 0600, atomically:
//!    a temporary file renamed over it) and ask a running service to reload
//!    (it also notices the file change by itself).

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Failure;
use crate::config::{Account, Secret};

/// Arguments of `tickcap login`.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// The configuration file: `[kite] api_key`, `api_secret` (or
    /// KITE_API_SECRET), `access_token_file`, optional `api_root`, `redirect_url`.
    #[arg(long, default_value = "tickcap.toml")]
    config: PathBuf,
    /// The request_token from the redirect, if you already have it.
    #[arg(long)]
    request_token: Option<String>,
    /// Do not try to open a browser.
    #[arg(long)]
    no_browser: bool,
}

/// The login URL of Kite Connect v3.
pub(super) fn login_url(api_key: &str) -> String {
    format!("https://kite.zerodha.com/connect/login?v=3&api_key={api_key}")
}

/// Kite's checksum: hex SHA-256 of api_key + request_token + api_secret.
pub(super) fn checksum(api_key: &str, request_token: &str, api_secret: &str) -> String {
    let d = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{api_key}{request_token}{api_secret}").as_bytes(),
    );
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The `request_token` in a pasted redirect URL, or the paste itself.
pub(super) fn request_token_of(paste: &str) -> Option<String> {
    let p = paste.trim();
    if p.is_empty() {
        return None;
    }
    if let Some(q) = p.split_once('?').map(|(_, q)| q) {
        let q = q.split('#').next().unwrap_or(q);
        return crate::util::query_param(q, "request_token")
            .map(|v| v.into_owned())
            .filter(|v| !v.is_empty());
    }
    (!p.contains(char::is_whitespace)).then(|| p.to_owned())
}

/// Runs the flow.
pub(super) fn run(args: Args) -> Result<(), Failure> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let acct = Account::load(&args.config, env("KITE_API_KEY"), env("KITE_API_SECRET"))
        .map_err(Failure::usage)?;
    let Some(token_file) = acct.access_token_file.clone() else {
        return Err(Failure::usage(anyhow::anyhow!(
            "{}: [kite] access_token_file is not set: login needs a file to write the token to",
            args.config.display()
        )));
    };
    let request_token = match args.request_token.as_deref().and_then(request_token_of) {
        Some(t) => t,
        None => obtain_request_token(&acct, args.no_browser)?,
    };
    let sum = checksum(&acct.api_key, &request_token, acct.api_secret.expose());
    let body = crate::net::http::form(&[
        ("api_key", &acct.api_key),
        ("request_token", &request_token),
        ("checksum", &sum),
    ]);
    let url = format!("{}/session/token", acct.api_root);
    let reply = crate::net::http::request(
        "POST",
        &url,
        &[
            ("X-Kite-Version", "3"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        body.as_bytes(),
        Duration::from_secs(15),
    )?;
    let v: serde_json::Value = serde_json::from_slice(&reply.body).map_err(|_| {
        anyhow::anyhow!(
            "{url}: HTTP {} with a body that is not Kite's JSON: {}",
            reply.status,
            crate::util::log_text(&String::from_utf8_lossy(&reply.body), 300)
        )
    })?;
    if v["status"] != "success" {
        // Kite's own words: {"status":"error","message":...,"error_type":...}
        return Err(anyhow::anyhow!(
            "Kite refused the login (HTTP {}): {} ({})",
            reply.status,
            v["message"].as_str().unwrap_or("no message"),
            v["error_type"].as_str().unwrap_or("no error_type")
        )
        .into());
    }
    let Some(token) = v["data"]["access_token"].as_str().filter(|t| !t.is_empty()) else {
        return Err(anyhow::anyhow!("{url}: success without data.access_token").into());
    };
    // What the service would refuse to read back (and Kite to accept in a
    // URL) is refused here, before the running service reloads it.
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(anyhow::anyhow!(
            "{url}: the access token Kite returned holds whitespace or control characters ({} chars); not written",
            token.chars().count()
        )
        .into());
    }
    write_token(&token_file, &Secret::new(token))?;
    println!(
        "logged in as {}: access token ({}) written to {}",
        v["data"]["user_id"].as_str().unwrap_or("?"),
        Secret::new(token).redacted(),
        token_file.display()
    );
    notify_service(&acct);
    Ok(())
}

/// The redirect, by listening once on a local redirect address, else a paste.
fn obtain_request_token(acct: &Account, no_browser: bool) -> Result<String, Failure> {
    let url = login_url(&acct.api_key);
    println!("Log in to Kite in your browser:\n  {url}");
    if !no_browser {
        let _ = std::process::Command::new("xdg-open")
            .arg(&url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
    if let Some(addr) = acct.redirect_url.as_deref().and_then(local_listen_addr) {
        println!("waiting for Kite's redirect on http://{addr}/ ...");
        return listen_once(&addr).map_err(|e| anyhow::anyhow!("{addr}: {e}").into());
    }
    println!("then paste the request_token (or the whole URL you were sent to):");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(anyhow::Error::from)?;
    request_token_of(&line)
        .ok_or_else(|| Failure::usage(anyhow::anyhow!("no request_token in what was pasted")))
}

/// `http://127.0.0.1:5000/...` → `127.0.0.1:5000`, for loopback redirects only.
fn local_listen_addr(redirect: &str) -> Option<String> {
    let rest = redirect.strip_prefix("http://")?;
    let hostport = rest.split('/').next()?;
    let host = hostport.rsplit_once(':').map_or(hostport, |(h, _)| h);
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
        .then(|| hostport.replace("localhost", "127.0.0.1"))
}

/// Accepts redirects until one carries a `request_token`; answers each.
fn listen_once(addr: &str) -> std::io::Result<String> {
    let l = std::net::TcpListener::bind(addr)?;
    loop {
        let (mut s, _) = l.accept()?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut buf = [0u8; 8192];
        let n = s.read(&mut buf).unwrap_or(0);
        let head = String::from_utf8_lossy(&buf[..n]);
        let target = head.split_whitespace().nth(1).unwrap_or("");
        let token = request_token_of(target);
        let text = if token.is_some() {
            "tickcap: logged in; you can close this tab."
        } else {
            "tickcap: no request_token in this request."
        };
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        );
        if let Some(t) = token {
            return Ok(t);
        }
    }
}

/// Writes the token with mode 0600 via a temporary file and a rename, so a
/// reader sees the old token or the new one, never a part.
pub(super) fn write_token(path: &Path, token: &Secret) -> Result<(), Failure> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(token.expose().as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("writing {}: {e}", path.display()).into()
    })
}

/// Asks a running service to reload (it also watches the file by itself).
fn notify_service(acct: &Account) {
    let base = format!("http://{}", acct.status_listen);
    let bearer = acct.status_token.as_ref().map(Secret::expose);
    match crate::status::client::request(
        &base,
        "POST",
        "/reload",
        Some(b"{}"),
        bearer,
        Duration::from_secs(2),
    ) {
        Ok(r) if r.status == 200 => println!("the running service at {base} reloaded"),
        Ok(r) => println!(
            "the service at {base} answered {} to /reload (it also picks the file up by itself)",
            r.status
        ),
        Err(_) => {
            println!("no service answers at {base}; `tickcap run` will read the token at start")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_is_hex_sha256_of_key_token_secret() {
        // sha256("abc") is the FIPS 180-2 test vector.
        assert_eq!(
            checksum("a", "b", "c"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_request_token_comes_from_a_paste_or_a_redirect_url() {
        assert_eq!(request_token_of("  tok123 \n").as_deref(), Some("tok123"));
        assert_eq!(
            request_token_of(
                "http://127.0.0.1:5000/?action=login&type=login&status=success&request_token=XyZ"
            )
            .as_deref(),
            Some("XyZ")
        );
        assert_eq!(request_token_of("/?status=cancelled"), None);
        assert_eq!(request_token_of(""), None);
    }

    #[test]
    fn only_a_loopback_redirect_is_listened_on() {
        assert_eq!(
            local_listen_addr("http://127.0.0.1:5000/").as_deref(),
            Some("127.0.0.1:5000")
        );
        assert_eq!(
            local_listen_addr("http://localhost:5000/cb").as_deref(),
            Some("127.0.0.1:5000")
        );
        assert_eq!(local_listen_addr("https://example.com/cb"), None);
    }
}
