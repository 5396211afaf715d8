//! `tether-mock-llm`: serve a scripted Anthropic Messages API on loopback until killed.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use tether_mock_llm::{MockServer, Script, scenarios};

const USAGE: &str = "\
usage: tether-mock-llm (--script FILE.json | --scenario NAME) [options]

  --script FILE        serve the Script in FILE (JSON)
  --scenario NAME      serve a built-in script: bash-then-read
  --port N             port on 127.0.0.1 to bind (default 0: pick a free one)
  --ttft-ms N          override the script's delay before the first body byte
  --chunk-delay-ms N   override the script's delay between SSE events
  --chunk-chars N      override the script's characters per delta
  -h, --help           show this help

Prints `listening on http://127.0.0.1:PORT` once ready.";

#[derive(Debug, Default)]
struct Args {
    port: u16,
    script: Option<PathBuf>,
    scenario: Option<String>,
    ttft_ms: Option<u64>,
    chunk_delay_ms: Option<u64>,
    chunk_chars: Option<usize>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<Option<Args>> {
    let mut parsed = Args::default();
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let Some(value) = args.next() else {
            bail!("{flag} needs a value (or is unknown)");
        };
        match flag.as_str() {
            "--port" => parsed.port = number(&flag, &value)?,
            "--script" => parsed.script = Some(value.into()),
            "--scenario" => parsed.scenario = Some(value),
            "--ttft-ms" => parsed.ttft_ms = Some(number(&flag, &value)?),
            "--chunk-delay-ms" => parsed.chunk_delay_ms = Some(number(&flag, &value)?),
            "--chunk-chars" => parsed.chunk_chars = Some(number(&flag, &value)?),
            _ => bail!("unknown argument {flag:?}"),
        }
    }
    Ok(Some(parsed))
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|e| anyhow::anyhow!("{flag} {value:?}: {e}"))
}

fn load_script(args: &Args) -> anyhow::Result<Script> {
    let mut script = match (&args.script, &args.scenario) {
        (Some(path), None) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read script file {}", path.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("invalid script file {}", path.display()))?
        }
        (None, Some(name)) => scenarios::by_name(name).with_context(|| {
            format!(
                "unknown scenario {name:?} (known: {})",
                scenarios::NAMES.join(", ")
            )
        })?,
        (Some(_), Some(_)) => bail!("give either --script or --scenario, not both"),
        (None, None) => bail!("need --script FILE or --scenario NAME"),
    };
    if let Some(ms) = args.ttft_ms {
        script.timing.ttft_ms = ms;
    }
    if let Some(ms) = args.chunk_delay_ms {
        script.timing.chunk_delay_ms = ms;
    }
    if let Some(chars) = args.chunk_chars {
        script.timing.chunk_chars = chars;
    }
    Ok(script)
}

async fn run() -> anyhow::Result<()> {
    let Some(args) =
        parse_args(std::env::args().skip(1)).map_err(|e| anyhow::anyhow!("{e}\n\n{USAGE}"))?
    else {
        writeln!(std::io::stdout(), "{USAGE}")?;
        return Ok(());
    };
    let script = load_script(&args)?;
    let server = MockServer::start_on_port(script, args.port).await?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {}", server.base_url())?;
    stdout.flush()?;
    drop(stdout);
    tokio::signal::ctrl_c().await?;
    server.shutdown().await;
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tether-mock-llm: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
