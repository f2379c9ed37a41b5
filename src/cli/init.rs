//! `tickcap init`: writes a commented `tickcap.toml` to start from — the
//! repository's `tickcap.example.toml` with the api_key, the token file and
//! the instruments given on the command line.

use std::path::PathBuf;

use super::Failure;

/// The commented example, every key with its default.
pub(super) const EXAMPLE: &str = include_str!("../../tickcap.example.toml");

/// Arguments of `tickcap init`.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Where to write it.
    #[arg(long, default_value = "tickcap.toml")]
    output: PathBuf,
    /// Your Kite Connect api_key.
    #[arg(long)]
    api_key: Option<String>,
    /// The file `tickcap login` writes the day's access token to.
    #[arg(long, default_value = "access_token")]
    token_file: String,
    /// The primary connection's instruments, comma-separated: numeric
    /// tokens or EXCHANGE:TRADINGSYMBOL (e.g. `NSE:INFY,NSE:TCS,256265`).
    #[arg(long, value_delimiter = ',')]
    instruments: Vec<String>,
    /// Overwrite an existing file.
    #[arg(long)]
    force: bool,
}

/// The example with the given values in place.
pub(super) fn render(api_key: Option<&str>, token_file: &str, instruments: &[String]) -> String {
    let mut text = EXAMPLE.to_owned();
    if let Some(k) = api_key {
        text = text.replace("api_key = \"your_api_key\"", &format!("api_key = {k:?}"));
    }
    text = text.replace(
        "access_token_file = \"access_token\"",
        &format!("access_token_file = {token_file:?}"),
    );
    if !instruments.is_empty() {
        let list: Vec<String> = instruments
            .iter()
            .map(|i| match i.trim().parse::<u32>() {
                Ok(t) => t.to_string(),
                Err(_) => format!("{:?}", i.trim()),
            })
            .collect();
        text = text.replace(
            r#"instruments = ["NSE:INFY", "NSE:RELIANCE"]"#,
            &format!("instruments = [{}]", list.join(", ")),
        );
    }
    text
}

/// Writes the file (refusing to overwrite without `--force`).
pub(super) fn run(args: Args) -> Result<(), Failure> {
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
        let dump = std::sync::Arc::new(
            crate::kite::Directory::parse(
                b"instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,instrument_type,segment,exchange\n\
                  408065,1594,INFY,\"INFOSYS\",0,,,0.05,1,EQ,NSE,NSE\n\
                  738561,2885,RELIANCE,\"RELIANCE INDUSTRIES\",0,,,0.05,1,EQ,NSE,NSE\n\
                  2953217,11536,TCS,\"TATA CONSULTANCY SERV LT\",0,,,0.05,1,EQ,NSE,NSE\n",
            )
            .unwrap(),
        );
        let c = crate::config::Config::parse_with(EXAMPLE, &path, &env, &dump)
            .expect("the example loads");
        assert_eq!(c.connections[0].instruments, [408_065, 738_561]);
        assert!(c.dump.enabled && c.dump.symbols_used);
        assert_eq!(c.dump.refresh_minute, 8 * 60 + 30);
        assert_eq!(c.connections[0].access_token.expose(), "tok");
        let text = render(
            Some("abc"),
            "my_token",
            &["256265".to_owned(), "nse:tcs".to_owned()],
        );
        let c = crate::config::Config::parse_with(&text, &path, &env, &dump).unwrap();
        assert_eq!(c.connections[0].api_key, "abc");
        assert_eq!(c.connections[0].instruments, [256_265, 2_953_217]);
        assert_eq!(c.connections[0].access_token.expose(), "tok2");
    }
}
