//! `tickcap init`: writes a commented `tickcap.toml` to start from — the
//! repository's `tickcap.example.toml` with the api_key, the token file and
//! the instruments given on the command line.

use std::path::PathBuf;

use super::Failure;

/// The commented example, every key with its default.
pub const EXAMPLE: &str = include_str!("../../tickcap.example.toml");

/// Arguments of `tickcap init`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write it.
    #[arg(long, default_value = "tickcap.toml")]
    output: PathBuf,
    /// Your Kite Connect api_key.
    #[arg(long)]
    api_key: Option<String>,
    /// The file `tickcap login` writes the day's access token to.
    #[arg(long, default_value = "access_token")]
    token_file: String,
    /// The primary connection's instruments: numeric tokens, comma-separated.
    #[arg(long, value_delimiter = ',')]
    instruments: Vec<u32>,
    /// Overwrite an existing file.
    #[arg(long)]
    force: bool,
}

/// The example with the given values in place.
pub fn render(api_key: Option<&str>, token_file: &str, instruments: &[u32]) -> String {
    let mut text = EXAMPLE.to_owned();
    if let Some(k) = api_key {
        text = text.replace("api_key = \"your_api_key\"", &format!("api_key = {k:?}"));
    }
    text = text.replace(
        "access_token_file = \"access_token\"",
        &format!("access_token_file = {token_file:?}"),
    );
    if !instruments.is_empty() {
        let list: Vec<String> = instruments.iter().map(u32::to_string).collect();
        text = text.replace(
            "instruments = [408065, 738561]",
            &format!("instruments = [{}]", list.join(", ")),
        );
    }
    text
}

/// Writes the file (refusing to overwrite without `--force`).
pub fn run(args: Args) -> Result<(), Failure> {
    if args.output.exists() && !args.force {
        return Err(Failure::usage(anyhow::anyhow!(
            "{} exists; pass --force to overwrite it",
            args.output.display()
        )));
    }
    let text = render(args.api_key.as_deref(), &args.token_file, &args.instruments);
    std::fs::write(&args.output, text)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", args.output.display()))?;
    println!(
        "wrote {}; next: put api_secret in it (or KITE_API_SECRET), then `tickcap login --config {0}` and `tickcap run --config {0}`",
        args.output.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_and_a_rendered_config_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("access_token"), "tok\n").unwrap();
        std::fs::write(dir.path().join("my_token"), "tok2\n").unwrap();
        let path = dir.path().join("tickcap.toml");
        let env = crate::config::Env::default();
        let c = crate::config::Config::parse(EXAMPLE, &path, &env).expect("the example loads");
        assert_eq!(c.connections[0].instruments, [408_065, 738_561]);
        assert_eq!(c.connections[0].access_token.expose(), "tok");
        let text = render(Some("abc"), "my_token", &[256_265, 5633]);
        let c = crate::config::Config::parse(&text, &path, &env).unwrap();
        assert_eq!(c.connections[0].api_key, "abc");
        assert_eq!(c.connections[0].instruments, [256_265, 5633]);
        assert_eq!(c.connections[0].access_token.expose(), "tok2");
    }
}
