//! `ivr campaign start|pause|status NAME`: steers a campaign of a running `ivr serve` through
//! its HTTP address (`--http ADDR`, else `[server] http` of the configuration):
//! `POST /campaigns/NAME/start`, `POST /campaigns/NAME/pause`, `GET /campaigns/NAME`.

use ivr_compiler::LoadError;
use ivr_compiler::project::load_config;
use ivr_dsl::SourceMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The most bytes of an answer read.
const MAX_ANSWER: u64 = 1 << 20;

/// What to do with the campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Dial.
    Start,
    /// Place no new call.
    Pause,
    /// Print its progress.
    Status,
}

/// Options of `ivr campaign`.
pub struct CampaignOptions {
    /// `--config`
    pub config: Option<PathBuf>,
    /// `--http`: the server's HTTP address.
    pub http: Option<String>,
    /// What to do.
    pub action: Action,
    /// The campaign's name.
    pub name: String,
}

/// Why the command failed.
#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    /// The configuration cannot be read.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The name cannot be a campaign's.
    #[error("`{0}` is not a campaign name")]
    BadName(String),
    /// The server cannot be reached.
    #[error("cannot reach ivr serve at {addr} (is it running? --http gives its address): {source}")]
    Connect {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server answered with an error.
    #[error("ivr serve answered {code}: {body}")]
    Refused {
        /// The HTTP status.
        code: u16,
        /// Its body.
        body: String,
    },
    /// The answer does not read.
    #[error("ivr serve's answer does not read")]
    Answer,
}

fn http_address(opts: &CampaignOptions) -> Result<String, CampaignError> {
    if let Some(a) = &opts.http {
        return Ok(a.clone());
    }
    let mut sources = SourceMap::new();
    let (config, _) = load_config(opts.config.as_deref(), &mut sources)?;
    Ok(config.server.http.replace("0.0.0.0", "127.0.0.1"))
}

/// Runs `ivr campaign`.
pub fn run(opts: CampaignOptions) -> Result<ExitCode, CampaignError> {
    if opts.name.is_empty()
        || opts.name.len() > 100
        || !opts
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(CampaignError::BadName(opts.name));
    }
    let addr = http_address(&opts)?;
    let (method, path) = match opts.action {
        Action::Start => ("POST", format!("/campaigns/{}/start", opts.name)),
        Action::Pause => ("POST", format!("/campaigns/{}/pause", opts.name)),
        Action::Status => ("GET", format!("/campaigns/{}", opts.name)),
    };
    let connect = |source| CampaignError::Connect {
        addr: addr.clone(),
        source,
    };
    let target = addr
        .to_socket_addrs()
        .map_err(connect)?
        .next()
        .ok_or_else(|| connect(std::io::ErrorKind::NotFound.into()))?;
    let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(5)).map_err(connect)?;
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .map_err(connect)?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .map_err(connect)?;
    let mut text = String::new();
    s.take(MAX_ANSWER)
        .read_to_string(&mut text)
        .map_err(connect)?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or(CampaignError::Answer)?;
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or(CampaignError::Answer)?;
    // A chunked body: the JSON is between the chunk sizes.
    let json = body
        .find('{')
        .and_then(|a| body.rfind('}').map(|b| &body[a..=b]))
        .unwrap_or(body);
    if !(200..300).contains(&code) {
        return Err(CampaignError::Refused {
            code,
            body: json.trim().to_string(),
        });
    }
    let v: serde_json::Value = serde_json::from_str(json).map_err(|_| CampaignError::Answer)?;
    print!("{}", render(&v));
    Ok(ExitCode::SUCCESS)
}

/// A campaign's state as lines for people.
fn render(v: &serde_json::Value) -> String {
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    let state = if v["finished"] == true {
        "finished"
    } else if v["running"] == true {
        if v["outside_hours"] == true {
            "started (outside its calendar's hours)"
        } else {
            "started"
        }
    } else {
        "paused"
    };
    let mut out = format!(
        "campaign {}: {state}\n  numbers      {}\n  done         {}\n  answered     {}\n  in progress  {}\n  attempts     {}\n",
        v["name"].as_str().unwrap_or("?"),
        n("total"),
        n("done"),
        n("answered"),
        n("in_progress"),
        n("attempts"),
    );
    if let Some(ms) = v["next_attempt_at"].as_i64()
        && let Some(t) = chrono::DateTime::from_timestamp_millis(ms)
    {
        out.push_str(&format!(
            "  next attempt {}\n",
            t.naive_utc().format("%Y-%m-%d %H:%M:%S")
        ));
    }
    if let Some(e) = v["error"].as_str() {
        out.push_str(&format!("  error        {e}\n"));
    }
    out
}
