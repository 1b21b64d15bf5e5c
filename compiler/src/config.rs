//! `ivr.toml`: the deployment configuration (paths, server, database, data catalog, queues,
//! agents, calendars, routes), read with spans so that mistakes point at their line.

use indexmap::IndexMap;
use ivr_dsl::{Diagnostic, FileId, Span};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use toml::Spanned;

pub use crate::outbound_config::{CampaignConfig, TrunkConfig, TrunkTarget};

/// The configuration as written, before validation.
#[derive(Debug, Default, Deserialize)]
struct RawConfig {
    #[serde(default)]
    paths: RawPaths,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    database: DatabaseConfig,
    #[serde(default)]
    queries: IndexMap<String, Spanned<RawQuery>>,
    #[serde(default)]
    queues: IndexMap<String, Spanned<RawQueue>>,
    #[serde(default)]
    agents: IndexMap<String, Spanned<AgentConfig>>,
    #[serde(default)]
    calendars: IndexMap<String, Spanned<IndexMap<String, Spanned<String>>>>,
    #[serde(default)]
    routes: IndexMap<String, Spanned<String>>,
    #[serde(default)]
    trunks: IndexMap<String, Spanned<crate::outbound_config::RawTrunk>>,
    #[serde(default)]
    campaigns: IndexMap<String, Spanned<crate::outbound_config::RawCampaign>>,
    #[serde(default)]
    recording: crate::recording::RawRecording,
    #[serde(default)]
    supervisors: IndexMap<String, Spanned<crate::supervisor_config::SupervisorConfig>>,
    cluster: Option<Spanned<crate::cluster_config::RawCluster>>,
}

#[derive(Debug, Default, Deserialize)]
struct RawPaths {
    flows: Option<String>,
    prompts: Option<String>,
    recordings: Option<String>,
}

/// `[server]` as written: the keys checked beyond their type keep their places.
#[derive(Debug, Default, Deserialize)]
struct RawServer {
    sip: Option<String>,
    http: Option<String>,
    rtp_ports: Option<String>,
    max_calls: Option<u32>,
    realm: Option<String>,
    trusted: Option<Vec<Spanned<String>>>,
    invite_rate: Option<Spanned<i64>>,
    rtp_timeout: Option<Spanned<String>>,
    max_http_connections: Option<u32>,
    max_http_connections_per_address: Option<u32>,
    tls: Option<Spanned<RawTls>>,
    https: Option<Spanned<RawCert>>,
    srtp: Option<Spanned<String>>,
}

/// `[server] tls` as written: the SIP-over-TLS address and its certificate.
#[derive(Debug, Deserialize)]
struct RawTls {
    sip: Option<Spanned<String>>,
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
}

/// `[server] https` as written: the HTTP interface's certificate.
#[derive(Debug, Deserialize)]
struct RawCert {
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
struct RawQuery {
    #[serde(default)]
    args: Vec<String>,
    sql: Option<Spanned<String>>,
    transaction: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    fields: IndexMap<String, Spanned<String>>,
    #[serde(default)]
    hash: Vec<Spanned<String>>,
    timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
struct RawQueue {
    #[serde(default)]
    skills: Vec<String>,
    ring_timeout: Option<Spanned<String>>,
    wrap_up: Option<Spanned<String>>,
    strategy: Option<Spanned<String>>,
    trunk: Option<Spanned<String>>,
    callback_attempts: Option<Spanned<i64>>,
    callback_retry_after: Option<Spanned<String>>,
}

/// `[server]`: addresses and limits of `ivr serve`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct ServerConfig {
    /// SIP address, UDP and TCP.
    pub sip: String,
    /// HTTP address (WebRTC pages, status, metrics).
    pub http: String,
    /// RTP port range `LOW-HIGH`.
    pub rtp_ports: String,
    /// Most concurrent calls.
    pub max_calls: u32,
    /// SIP digest realm for agents.
    pub realm: String,
    /// Most HTTP connections open at once (WebSockets included); more are closed at once.
    pub max_http_connections: u32,
    /// Most HTTP connections open at once from one address (IPv6: one /64). Agents behind
    /// one NAT address share it: each console holds a WebSocket, and a browser opens a few
    /// more connections while it loads a page.
    pub max_http_connections_per_address: u32,
    /// SIP sources that may INVITE without limits (trunks, proxies): networks as written
    /// (`192.0.2.0/24`, `2001:db8::/32`, or one address); checked by [`parse_network`].
    /// Default: the loopback addresses; empty trusts nobody.
    pub trusted: Vec<String>,
    /// INVITEs of new dialogs a second per untrusted source address (503 beyond); at least 1.
    pub invite_rate: u32,
    /// A call whose caller sends no RTP for this long ends, in milliseconds (more than 0).
    pub rtp_timeout_ms: u64,
    /// SIP over TLS (`[server] tls`): its address and certificate; none without the key.
    pub tls: Option<SipTls>,
    /// The HTTP interface over TLS (`[server] https`): its certificate; none: plain HTTP.
    pub https: Option<CertFiles>,
    /// What SIP calls do with SRTP (`[server] srtp`): SDES-keyed `RTP/SAVP` offers.
    pub srtp: SrtpMode,
}

/// `[server] srtp`: SRTP with SDES keys (RFC 4568) on SIP calls' `RTP/SAVP` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SrtpMode {
    /// Plain RTP only; `RTP/SAVP` offers are refused with 488.
    #[default]
    None,
    /// `RTP/SAVP` (answered with our key) and plain `RTP/AVP` are both taken.
    Optional,
    /// `RTP/SAVP` only; plain offers are refused with 488.
    Required,
}

/// A certificate chain and its private key, PEM files (paths resolved against the folder of
/// `ivr.toml`; `ivr check` reports files that cannot be read).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct CertFiles {
    /// The certificate chain (PEM), the server's own first.
    pub cert: PathBuf,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// `[server] tls`: where SIP over TLS listens, and with what certificate.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct SipTls {
    /// The TLS listener's address (`0.0.0.0:5061`).
    pub sip: String,
    /// Its certificate and key.
    pub files: CertFiles,
}

impl ServerConfig {
    /// `trusted` when `[server]` does not say: the loopback addresses.
    pub const DEFAULT_TRUSTED: [&'static str; 2] = ["127.0.0.0/8", "::1/128"];
    /// `invite_rate` when `[server]` does not say.
    pub const DEFAULT_INVITE_RATE: u32 = 20;
    /// `rtp_timeout` when `[server]` does not say: 30 seconds.
    pub const DEFAULT_RTP_TIMEOUT_MS: u64 = 30_000;

    /// The trusted networks as address and prefix length (the ones that do not read, which
    /// `ivr check` reports, left out).
    pub fn trusted_networks(&self) -> Vec<(IpAddr, u8)> {
        self.trusted
            .iter()
            .filter_map(|t| parse_network(t).ok())
            .collect()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            sip: "0.0.0.0:5060".into(),
            http: "127.0.0.1:8080".into(),
            rtp_ports: "20000-29999".into(),
            max_calls: 5000,
            realm: "ivr".into(),
            max_http_connections: 1024,
            max_http_connections_per_address: 64,
            trusted: ServerConfig::DEFAULT_TRUSTED.map(String::from).to_vec(),
            invite_rate: ServerConfig::DEFAULT_INVITE_RATE,
            rtp_timeout_ms: ServerConfig::DEFAULT_RTP_TIMEOUT_MS,
            tls: None,
            https: None,
            srtp: SrtpMode::None,
        }
    }
}

/// A network of `[server] trusted` that does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    /// Not an IPv4 or IPv6 address before the `/`.
    #[error("`{0}` is not an IP address or network")]
    NotAnAddress(String),
    /// The prefix length is not a number, or longer than the address.
    #[error("`{text}` has a prefix length beyond the {bits} bits of its address")]
    BadPrefix {
        /// As written.
        text: String,
        /// 32 or 128.
        bits: u8,
    },
    /// Bits set after the prefix (`192.0.2.1/24`): which was meant, the network or the host?
    #[error("`{text}` has bits set after its first {prefix}")]
    HostBits {
        /// As written.
        text: String,
        /// The prefix length.
        prefix: u8,
        /// The network it would be.
        network: String,
    },
}

/// Reads a network of `[server] trusted`: `ADDRESS/PREFIX` (IPv4 or IPv6) or one `ADDRESS`
/// (a /32 or /128). The address must have no bits set after the prefix.
pub fn parse_network(text: &str) -> Result<(IpAddr, u8), NetworkError> {
    let t = text.trim();
    let (addr, prefix) = t.split_once('/').map_or((t, None), |(a, p)| (a, Some(p)));
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| NetworkError::NotAnAddress(text.to_string()))?;
    let bits: u8 = if addr.is_ipv4() { 32 } else { 128 };
    let prefix =
        match prefix {
            None => bits,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= bits).ok_or_else(|| {
                NetworkError::BadPrefix {
                    text: text.to_string(),
                    bits,
                }
            })?,
        };
    let masked = match addr {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(u32::from(32 - prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & mask).into())
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(u32::from(128 - prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    };
    if masked != addr {
        return Err(NetworkError::HostBits {
            text: text.to_string(),
            prefix,
            network: format!("{masked}/{prefix}"),
        });
    }
    Ok((addr, prefix))
}

/// `[database]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct DatabaseConfig {
    /// `sqlite://...` (embedded default) or `postgres://...`.
    pub url: String,
    /// Key for the HMAC of `hash` arguments (service passwords); the `IVR_SECRET`
    /// environment variable overrides it.
    pub secret: Option<String>,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://ivr-data/ivr.db".into(),
            secret: None,
        }
    }
}

/// `[queues.NAME]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct QueueConfig {
    /// Skills every agent of this queue needs.
    #[serde(default)]
    pub skills: Vec<String>,
    /// `ring_timeout`: how long an agent's phone rings with a call of this queue before the
    /// call is offered to the next agent, in milliseconds (more than 0); `None` for the ACD's
    /// default ([`QueueConfig::DEFAULT_RING_TIMEOUT_MS`]).
    #[serde(default)]
    pub ring_timeout_ms: Option<u64>,
    /// `wrap_up`: how long an agent stays in wrap-up after a call of this queue before taking
    /// the next one, in milliseconds (0 for none); `None` for the ACD's default
    /// ([`QueueConfig::DEFAULT_WRAP_UP_MS`]).
    #[serde(default)]
    pub wrap_up_ms: Option<u64>,
    /// `strategy`: which available agent gets a call.
    #[serde(default)]
    pub strategy: Strategy,
    /// `trunk`: the `[trunks.*]` a kept callback of this queue dials the caller through
    /// (`None`: the trunk named `default`).
    #[serde(default)]
    pub trunk: Option<String>,
    /// `callback_attempts`: how many times a callback's caller is dialled at most (default
    /// [`QueueConfig::DEFAULT_CALLBACK_ATTEMPTS`]).
    #[serde(default)]
    pub callback_attempts: Option<u32>,
    /// `callback_retry_after`: the wait between two dials of a callback's caller, in
    /// milliseconds (default [`QueueConfig::DEFAULT_CALLBACK_RETRY_MS`]).
    #[serde(default)]
    pub callback_retry_after_ms: Option<u64>,
    /// Where `trunk` is written, for diagnostics.
    #[serde(skip)]
    pub trunk_span: Option<Span>,
}

/// `[queues.NAME] strategy`: which of the available agents who could take a call gets it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// `"longest_idle"` (the default): the agent idle longest.
    #[default]
    LongestIdle,
    /// `"best_level"`: the highest `level` first, then the agent idle longest.
    BestLevel,
}

impl Strategy {
    /// Every strategy with its name, as written in `ivr.toml`.
    pub const ALL: [(&'static str, Strategy); 2] = [
        ("longest_idle", Strategy::LongestIdle),
        ("best_level", Strategy::BestLevel),
    ];
}

impl QueueConfig {
    /// `ring_timeout` when the queue does not set it: 15 seconds.
    pub const DEFAULT_RING_TIMEOUT_MS: u64 = 15_000;
    /// `wrap_up` when the queue does not set it: 10 seconds.
    pub const DEFAULT_WRAP_UP_MS: u64 = 10_000;
    /// Longest `ring_timeout` or `wrap_up` accepted: one hour.
    pub const MAX_DURATION_MS: u64 = 3_600_000;

    /// The ring timeout in effect, in milliseconds.
    pub fn ring_timeout(&self) -> u64 {
        self.ring_timeout_ms
            .unwrap_or(Self::DEFAULT_RING_TIMEOUT_MS)
    }

    /// The wrap-up time in effect, in milliseconds.
    pub fn wrap_up(&self) -> u64 {
        self.wrap_up_ms.unwrap_or(Self::DEFAULT_WRAP_UP_MS)
    }

    /// `callback_attempts` when the queue does not set it.
    pub const DEFAULT_CALLBACK_ATTEMPTS: u32 = 2;
    /// `callback_retry_after` when the queue does not set it: five minutes.
    pub const DEFAULT_CALLBACK_RETRY_MS: u64 = 300_000;
    /// Most `callback_attempts` accepted.
    pub const MAX_CALLBACK_ATTEMPTS: u32 = 10;

    /// How many times a callback's caller is dialled at most.
    pub fn callback_attempts(&self) -> u32 {
        self.callback_attempts
            .unwrap_or(Self::DEFAULT_CALLBACK_ATTEMPTS)
    }

    /// The wait between two dials of a callback's caller, in milliseconds.
    pub fn callback_retry_after(&self) -> u64 {
        self.callback_retry_after_ms
            .unwrap_or(Self::DEFAULT_CALLBACK_RETRY_MS)
    }

    /// The name of the trunk a callback of this queue dials through: `trunk`, else
    /// `default`; `None` when that trunk is not configured.
    pub fn callback_trunk<'a>(&'a self, trunks: &IndexMap<String, TrunkConfig>) -> Option<&'a str> {
        match &self.trunk {
            Some(t) => trunks.contains_key(t).then_some(t.as_str()),
            None => trunks.contains_key("default").then_some("default"),
        }
    }
}

/// `[agents.ID]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct AgentConfig {
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Skills the agent has.
    #[serde(default)]
    pub skills: Vec<String>,
    /// MD5(id:realm:password), hex.
    #[serde(default)]
    pub ha1: String,
    /// `level`: 1 (the default) to 5; `level N` in a transfer node asks for agents of at
    /// least N, and `strategy = "best_level"` queues offer calls to the highest level first.
    #[serde(default)]
    pub level: Option<u8>,
}

impl AgentConfig {
    /// An agent's level when `level` is not given.
    pub const DEFAULT_LEVEL: u8 = 1;
    /// The highest level.
    pub const MAX_LEVEL: u8 = 5;

    /// The level in effect (1..5).
    pub fn level(&self) -> u8 {
        self.level
            .filter(|l| (1..=Self::MAX_LEVEL).contains(l))
            .unwrap_or(Self::DEFAULT_LEVEL)
    }
}

/// The type of a query result field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// An exact decimal number.
    Number,
    /// An amount of money (exact decimal).
    Money,
    /// Text.
    Text,
    /// `true` / `false`.
    Bool,
    /// A calendar date.
    Date,
    /// A time of day.
    Time,
}

impl FieldType {
    /// All types with their names, as written in `fields`.
    pub const ALL: [(&'static str, FieldType); 6] = [
        ("number", FieldType::Number),
        ("money", FieldType::Money),
        ("text", FieldType::Text),
        ("bool", FieldType::Bool),
        ("date", FieldType::Date),
        ("time", FieldType::Time),
    ];

    /// The name as written in `fields`.
    pub fn name(self) -> &'static str {
        FieldType::ALL
            .iter()
            .find(|(_, t)| *t == self)
            .map_or("?", |(n, _)| n)
    }
}

/// A named query of the data catalog.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueryDef {
    /// Argument names, bound as `$1`, `$2`, ... in order.
    pub args: Vec<String>,
    /// The statements: one for a read (`sql`), several for a `transaction`.
    pub statements: Vec<String>,
    /// True when written as `transaction` (all or nothing).
    pub transaction: bool,
    /// Result fields and their types, in order.
    pub fields: IndexMap<String, FieldType>,
    /// Arguments the platform hashes (HMAC-SHA256, hex) before binding.
    pub hash: Vec<String>,
    /// Default timeout for this query in milliseconds, if configured.
    pub timeout_ms: Option<u64>,
    /// Where the query is declared in `ivr.toml`.
    #[serde(skip)]
    pub span: Span,
    /// Where each statement is written in `ivr.toml`, in order.
    #[serde(skip)]
    pub statement_spans: Vec<Span>,
    /// Where each field's type is written in `ivr.toml`.
    #[serde(skip)]
    pub field_spans: IndexMap<String, Span>,
}

/// Opening hours: per weekday, and per date (holidays override weekdays).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Calendar {
    /// Monday = 0 .. Sunday = 6: open intervals in minutes from midnight `[from, to)`.
    pub weekly: [Vec<(u16, u16)>; 7],
    /// Date ranges (inclusive, `(year, month, day)`) with their intervals; empty means closed.
    pub dates: Vec<DateRule>,
    /// Where the calendar is declared.
    #[serde(skip)]
    pub span: Span,
}

/// A date-specific rule of a calendar: `"2026-10-01..2026-10-07" = "closed"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DateRule {
    /// First day, `(year, month, day)`.
    pub from: (i32, u32, u32),
    /// Last day, inclusive.
    pub to: (i32, u32, u32),
    /// Open intervals in minutes from midnight; empty means closed all day.
    pub open: Vec<(u16, u16)>,
}

impl Calendar {
    /// Whether the calendar is open at a local date and time.
    /// `weekday` is 0 for Monday .. 6 for Sunday; `minute` counts from midnight.
    pub fn is_open(&self, date: (i32, u32, u32), weekday: usize, minute: u16) -> bool {
        let intervals = self
            .dates
            .iter()
            .rev()
            .find(|r| r.from <= date && date <= r.to)
            .map(|r| &r.open)
            .unwrap_or(&self.weekly[weekday.min(6)]);
        intervals.iter().any(|&(a, b)| a <= minute && minute < b)
    }
}

/// A validated configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// The folder the file is in; paths are relative to it.
    pub base: PathBuf,
    /// The flows folder.
    pub flows_dir: PathBuf,
    /// The prompts folder (`<language>/prompts.toml` below it).
    pub prompts_dir: PathBuf,
    /// Where recordings go.
    pub recordings_dir: PathBuf,
    /// `[server]`
    pub server: ServerConfig,
    /// `[database]`
    pub database: DatabaseConfig,
    /// `[queries.*]`
    pub queries: IndexMap<String, QueryDef>,
    /// `[queues.*]`
    pub queues: IndexMap<String, QueueConfig>,
    /// `[agents.*]`
    pub agents: IndexMap<String, AgentConfig>,
    /// `[calendars.*]`
    pub calendars: IndexMap<String, Calendar>,
    /// `[routes]`: dialled number (or `default`) to flow name.
    pub routes: IndexMap<String, String>,
    /// `[trunks.*]`: gateways for calls to outside numbers.
    pub trunks: IndexMap<String, TrunkConfig>,
    /// `[campaigns.*]`: lists of numbers dialled through a trunk.
    pub campaigns: IndexMap<String, CampaignConfig>,
    /// Flows named by a `[campaigns.*]` that was left out for its own errors: their `contact`
    /// is not reported again as read without a campaign (that error is a cascade).
    #[serde(skip)]
    pub refused_campaign_flows: Vec<String>,
    /// `[recording]`: whole-call recording.
    pub recording: crate::recording::RecordingConfig,
    /// `[supervisors.*]`: who may log in to `/supervisor`.
    #[serde(default)]
    pub supervisors: IndexMap<String, crate::supervisor_config::SupervisorConfig>,
    /// `[cluster]`: this node of a cluster (none: a single node).
    pub cluster: Option<crate::cluster_config::ClusterConfig>,
    /// Spans of route values, for diagnostics about unknown flows.
    #[serde(skip)]
    pub route_spans: IndexMap<String, Span>,
    /// The file id of `ivr.toml` in the run's source map (when read from a file).
    #[serde(skip)]
    pub file: Option<FileId>,
    /// The file could not be read as a whole (TOML syntax, a value of the wrong type): these
    /// are the defaults, and checks against them would only repeat that mistake.
    #[serde(skip)]
    pub unreadable: bool,
}

impl Config {
    /// The configuration used when there is no `ivr.toml`: every path relative to `base`.
    pub fn defaults(base: &Path) -> Config {
        Config {
            base: base.to_path_buf(),
            flows_dir: base.join("flows"),
            prompts_dir: base.join("prompts"),
            recordings_dir: base.join("ivr-data/recordings"),
            server: ServerConfig::default(),
            database: DatabaseConfig::default(),
            queries: IndexMap::new(),
            queues: IndexMap::new(),
            agents: IndexMap::new(),
            calendars: IndexMap::new(),
            routes: IndexMap::new(),
            trunks: IndexMap::new(),
            campaigns: IndexMap::new(),
            refused_campaign_flows: Vec::new(),
            recording: crate::recording::RecordingConfig::defaults(base),
            supervisors: IndexMap::new(),
            cluster: None,
            route_spans: IndexMap::new(),
            file: None,
            unreadable: false,
        }
    }

    /// Parses and validates the text of an `ivr.toml` located in `base`. Problems come back as
    /// diagnostics in `file`; the configuration is returned with whatever was valid.
    pub fn parse(file: FileId, base: &Path, text: &str) -> (Config, Vec<Diagnostic>) {
        let mut diags = Vec::new();
        let mut config = Config::defaults(base);
        config.file = Some(file);
        let syntax_error = |e: toml::de::Error| {
            let span = e
                .span()
                .map(|r| Span::new(r.start, r.end.max(r.start)))
                .unwrap_or_default();
            let message = plain_words(e.message().trim());
            Diagnostic::error("config", file, span, message.clone())
                .with_opt_hint(config_hint(&message))
        };
        let de = match toml::Deserializer::parse(text) {
            Ok(de) => de,
            Err(e) => {
                diags.push(syntax_error(e));
                config.unreadable = true;
                return (config, diags);
            }
        };
        // Unknown keys are reported one by one; everything else in the file still applies.
        let mut unknown: Vec<String> = Vec::new();
        let raw: RawConfig =
            match serde_ignored::deserialize(de, |path| unknown.push(path.to_string())) {
                Ok(raw) => raw,
                Err(e) => {
                    diags.push(syntax_error(e));
                    config.unreadable = true;
                    return (config, diags);
                }
            };
        for path in unknown {
            diags.push(unknown_key(file, text, &path));
        }
        if let Some(p) = raw.paths.flows {
            config.flows_dir = base.join(p);
        }
        if let Some(p) = raw.paths.prompts {
            config.prompts_dir = base.join(p);
        }
        if let Some(p) = raw.paths.recordings {
            config.recordings_dir = base.join(p);
        }
        config.server = validate_server(file, base, raw.server, &mut diags);
        if config.server.max_calls == 0 {
            diags.push(
                Diagnostic::error(
                    "config",
                    file,
                    find_key(text, "max_calls").unwrap_or_default(),
                    "`max_calls = 0` would refuse every call",
                )
                .with_hint("the most calls at once, e.g. `max_calls = 5000`"),
            );
        }
        for (key, value, example) in [
            (
                "max_http_connections",
                config.server.max_http_connections,
                "1024",
            ),
            (
                "max_http_connections_per_address",
                config.server.max_http_connections_per_address,
                "64",
            ),
        ] {
            if value == 0 {
                diags.push(
                    Diagnostic::error(
                        "config",
                        file,
                        find_key(text, key).unwrap_or_default(),
                        format!("`{key} = 0` would refuse every HTTP connection"),
                    )
                    .with_hint(format!("e.g. `{key} = {example}`")),
                );
            }
        }
        config.database = raw.database;
        config.recording = crate::recording::validate(file, base, raw.recording, &mut diags);
        config.cluster = crate::cluster_config::validate(file, raw.cluster, &mut diags);
        for (name, q) in raw.queries {
            if let Some(def) = validate_query(file, &name, q, &mut diags) {
                config.queries.insert(name, def);
            }
        }
        for (name, q) in raw.queues {
            let q = validate_queue(file, &name, q.into_inner(), &mut diags);
            config.queues.insert(name, q);
        }
        for (id, agent) in raw.agents {
            let span = span_of(&agent);
            let agent = agent.into_inner();
            // A warning, not an error: flows do not depend on it (the spec's own example
            // writes `ha1 = "4f1c..."`); such an agent just cannot log in.
            if !(agent.ha1.len() == 32 && agent.ha1.chars().all(|c| c.is_ascii_hexdigit())) {
                let what = if agent.ha1.is_empty() {
                    "has no `ha1`".to_string()
                } else {
                    format!("has an `ha1` of {} characters", agent.ha1.chars().count())
                };
                diags.push(
                    Diagnostic::warning(
                        "config",
                        file,
                        span,
                        format!(
                            "agent `{id}` {what}, not 32 hex digits of MD5(id:realm:password): \
                             it cannot log in until it has one"
                        ),
                    )
                    .with_hint(format!("`ivr agent-password {id}` prints it")),
                );
            }
            if let Some(level) = agent.level
                && !(1..=AgentConfig::MAX_LEVEL).contains(&level)
            {
                diags.push(
                    Diagnostic::error(
                        "config",
                        file,
                        span,
                        format!(
                            "agent `{id}` has level {level}; levels go from 1 to {}, so the agent counts as level {}",
                            AgentConfig::MAX_LEVEL,
                            AgentConfig::DEFAULT_LEVEL
                        ),
                    )
                    .with_hint("write `level = 1` (the default) up to `level = 5`"),
                );
            }
            config.agents.insert(id, agent);
        }
        config.supervisors = crate::supervisor_config::validate(file, raw.supervisors, &mut diags);
        for (name, entries) in raw.calendars {
            let span = span_of(&entries);
            let mut cal = Calendar {
                span,
                ..Calendar::default()
            };
            for (days, hours) in entries.into_inner() {
                let hours_span = span_of(&hours);
                let open = match parse_intervals(hours.get_ref()) {
                    Ok(open) => open,
                    Err(e) => {
                        diags.push(
                            Diagnostic::error("config", file, hours_span, e.to_string())
                                .with_hint("write hours as \"08:00-20:00\", several separated by commas, or \"closed\""),
                        );
                        continue;
                    }
                };
                // The key's place: its first quoted occurrence at or after the calendar.
                let days_span = text
                    .get(span.start as usize..)
                    .and_then(|rest| rest.find(&format!("\"{days}\"")))
                    .map(|i| {
                        Span::new(
                            span.start as usize + i,
                            span.start as usize + i + days.len() + 2,
                        )
                    })
                    .unwrap_or(hours_span);
                match parse_days(&days) {
                    Ok(DaySpec::Weekdays(list)) => {
                        for d in list {
                            cal.weekly[d] = open.clone();
                        }
                    }
                    Ok(DaySpec::Dates(from, to)) => cal.dates.push(DateRule { from, to, open }),
                    Err(e) => diags.push(
                        Diagnostic::error("config", file, days_span, e.to_string()).with_hint(
                            "name days as \"mon-fri\", \"sat\", \"mon,wed\" or dates as \"2026-10-01\" or \"2026-10-01..2026-10-07\"",
                        ),
                    ),
                }
            }
            config.calendars.insert(name, cal);
        }
        for (number, flow) in raw.routes {
            config.route_spans.insert(number.clone(), span_of(&flow));
            config.routes.insert(number, flow.into_inner());
        }
        let known = crate::outbound_config::Known {
            queries: config
                .queries
                .iter()
                .map(|(name, q)| {
                    let facts = crate::outbound_config::QueryFacts {
                        not_a_plain_read: !q.args.is_empty() || q.transaction,
                        fields: q.fields.keys().cloned().collect(),
                    };
                    (name.clone(), facts)
                })
                .collect(),
            calendars: config.calendars.keys().cloned().collect(),
            duration: parse_duration_text,
        };
        let outbound =
            crate::outbound_config::validate(file, raw.trunks, raw.campaigns, &known, &mut diags);
        config.trunks = outbound.trunks;
        config.campaigns = outbound.campaigns;
        config.refused_campaign_flows = outbound.refused_flows;
        for (name, q) in &config.queues {
            if let (Some(trunk), Some(span)) = (&q.trunk, q.trunk_span)
                && !config.trunks.contains_key(trunk)
            {
                let hint =
                    crate::suggest::did_you_mean(trunk, config.trunks.keys().map(String::as_str))
                        .unwrap_or_else(|| "declare it as `[trunks.NAME]` with a `uri`".into());
                diags.push(
                    Diagnostic::error(
                        "config",
                        file,
                        span,
                        format!("queue `{name}`'s trunk `{trunk}` is not a working `[trunks.*]`"),
                    )
                    .with_hint(hint),
                );
            }
        }
        (config, diags)
    }
}

/// The keys each section takes, for "did you mean" on unknown keys.
const KNOWN_KEYS: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "paths",
            "server",
            "database",
            "queries",
            "queues",
            "agents",
            "calendars",
            "routes",
            "trunks",
            "campaigns",
            "recording",
            "supervisors",
            "cluster",
        ],
    ),
    ("paths", &["flows", "prompts", "recordings"]),
    (
        "server",
        &[
            "sip",
            "http",
            "rtp_ports",
            "max_calls",
            "realm",
            "max_http_connections",
            "max_http_connections_per_address",
            "trusted",
            "invite_rate",
            "rtp_timeout",
            "tls",
            "https",
            "srtp",
        ],
    ),
    ("server.tls", &["sip", "cert", "key"]),
    ("server.https", &["cert", "key"]),
    ("database", &["url", "secret"]),
    ("cluster", crate::cluster_config::CLUSTER_KEYS),
    (
        "queries",
        &["args", "sql", "transaction", "fields", "hash", "timeout"],
    ),
    (
        "queues",
        &[
            "skills",
            "ring_timeout",
            "wrap_up",
            "strategy",
            "trunk",
            "callback_attempts",
            "callback_retry_after",
        ],
    ),
    ("agents", &["name", "skills", "ha1", "level"]),
    ("recording", crate::recording::RECORDING_KEYS),
    ("supervisors", crate::supervisor_config::SUPERVISOR_KEYS),
    ("trunks", crate::outbound_config::TRUNK_KEYS),
    ("campaigns", crate::outbound_config::CAMPAIGN_KEYS),
];

/// An error for a key the configuration does not know, at its first occurrence.
fn unknown_key(file: FileId, text: &str, path: &str) -> Diagnostic {
    let parts: Vec<&str> = path.split('.').filter(|p| !p.starts_with("$__")).collect();
    let path = parts.join(".");
    let path = path.as_str();
    let key = parts.last().copied().unwrap_or(path);
    // `[server] tls` and `https` are tables of their own within `[server]`.
    let nested = match parts.as_slice() {
        ["server", table @ ("tls" | "https"), _] => Some(format!("server.{table}")),
        _ => None,
    };
    let section = nested.as_deref().unwrap_or_else(|| {
        parts
            .first()
            .copied()
            .filter(|_| parts.len() > 1)
            .unwrap_or("")
    });
    let span = find_key(text, key).unwrap_or_default();
    let hint = KNOWN_KEYS
        .iter()
        .find(|(s, _)| *s == section)
        .and_then(|(_, keys)| crate::suggest::did_you_mean(key, keys.iter().copied()))
        .unwrap_or_else(|| {
            "see the Configuration section of docs/language.md for the keys each section takes"
                .into()
        });
    Diagnostic::error(
        "config",
        file,
        span,
        format!("unknown key `{key}` (in `{path}`)"),
    )
    .with_hint(hint)
}

/// Where `key` is first written as a key (at a line start or after `[`, `.` or `{`/`,`).
fn find_key(text: &str, key: &str) -> Option<Span> {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(i) = text[from..].find(key).map(|i| i + from) {
        let before = text[..i].chars().rev().find(|c| *c != ' ' && *c != '\t');
        let after = text[i + key.len()..]
            .chars()
            .find(|c| *c != ' ' && *c != '\t');
        let quoted = i > 0 && bytes[i - 1] == b'"';
        let starts = matches!(before, None | Some('\n' | '[' | '.' | '{' | ',' | '"')) || quoted;
        let ends = matches!(after, Some('=' | '.' | ']' | '"'));
        if starts && ends {
            return Some(Span::new(i, i + key.len()));
        }
        from = i + key.len();
    }
    None
}

/// The TOML reader's words for types, as an analyst would say them.
fn plain_words(message: &str) -> String {
    let mut m = message.to_string();
    for (from, to) in [
        ("expected u8", "expected a whole number"),
        ("expected u16", "expected a whole number"),
        ("expected u32", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected i64", "expected a whole number"),
        (
            "expected a sequence",
            "expected a list such as [\"a\", \"b\"]",
        ),
        (
            "expected a map",
            "expected a table such as { key = \"value\" }",
        ),
        ("invalid type: string", "found text"),
        ("invalid type: integer", "found a number"),
        ("invalid type: boolean", "found true or false"),
        ("invalid type: sequence", "found a list"),
    ] {
        m = m.replace(from, to);
    }
    m
}

fn config_hint(message: &str) -> Option<String> {
    if message.contains("unknown field") {
        Some(
            "see the Configuration section of docs/language.md for the keys each section takes"
                .into(),
        )
    } else {
        None
    }
}

fn span_of<T>(s: &Spanned<T>) -> Span {
    let r = s.span();
    Span::new(r.start, r.end)
}

fn validate_query(
    file: FileId,
    name: &str,
    q: Spanned<RawQuery>,
    diags: &mut Vec<Diagnostic>,
) -> Option<QueryDef> {
    let span = span_of(&q);
    let q = q.into_inner();
    let mut ok = true;
    let (statements, transaction, stmt_span, statement_spans) = match (q.sql, q.transaction) {
        (Some(sql), None) => {
            let s = span_of(&sql);
            (vec![sql.into_inner()], false, s, vec![s])
        }
        (None, Some(tx)) => {
            let s = span_of(&tx);
            let spans = tx.get_ref().iter().map(span_of).collect();
            let statements = tx
                .into_inner()
                .into_iter()
                .map(Spanned::into_inner)
                .collect();
            (statements, true, s, spans)
        }
        (Some(sql), Some(_)) => {
            diags.push(Diagnostic::error(
                "config",
                file,
                span_of(&sql),
                format!("query `{name}` has both `sql` and `transaction`; give one"),
            ));
            return None;
        }
        (None, None) => {
            diags.push(
                Diagnostic::error(
                    "config",
                    file,
                    span,
                    format!("query `{name}` has neither `sql` nor `transaction`"),
                )
                .with_hint("`sql = \"SELECT ...\"` for a read, `transaction = [\"...\", \"...\"]` for changes"),
            );
            return None;
        }
    };
    if statements.is_empty() || statements.iter().any(|s| s.trim().is_empty()) {
        diags.push(Diagnostic::error(
            "config",
            file,
            stmt_span,
            format!("query `{name}` has an empty statement"),
        ));
        ok = false;
    }
    let mut fields = IndexMap::new();
    let field_spans: IndexMap<String, Span> = q
        .fields
        .iter()
        .map(|(f, ty)| (f.clone(), span_of(ty)))
        .collect();
    for (field, ty) in q.fields {
        match FieldType::ALL.iter().find(|(n, _)| *n == ty.get_ref()) {
            Some((_, t)) => {
                fields.insert(field, *t);
            }
            None => {
                let names: Vec<&str> = FieldType::ALL.iter().map(|(n, _)| *n).collect();
                diags.push(
                    Diagnostic::error(
                        "config",
                        file,
                        span_of(&ty),
                        format!(
                            "field `{field}` of query `{name}` has an unknown type `{}`",
                            ty.get_ref()
                        ),
                    )
                    .with_hint(format!("the types are {}", names.join(", "))),
                );
                ok = false;
            }
        }
    }
    for h in &q.hash {
        if !q.args.contains(h.get_ref()) {
            diags.push(Diagnostic::error(
                "config",
                file,
                span_of(h),
                format!(
                    "query `{name}` hashes `{}`, which is not one of its `args`",
                    h.get_ref()
                ),
            ));
            ok = false;
        }
    }
    // Positional parameters must exist; `$name` must name a field of the query.
    for stmt in &statements {
        for param in parameters(stmt) {
            match param {
                Param::Index(i) if i == 0 || i > q.args.len() => {
                    diags.push(
                        Diagnostic::error(
                            "config",
                            file,
                            stmt_span,
                            format!(
                                "query `{name}` uses `${i}` but has {} argument{}",
                                q.args.len(),
                                if q.args.len() == 1 { "" } else { "s" }
                            ),
                        )
                        .with_hint("`$1` is the first name in `args`"),
                    );
                    ok = false;
                }
                Param::Name(n) if !transaction => {
                    diags.push(Diagnostic::error(
                        "config",
                        file,
                        stmt_span,
                        format!("query `{name}` uses `${n}`: named values only exist between the statements of a `transaction`"),
                    ));
                    ok = false;
                }
                Param::Name(n) if !fields.contains_key(&n) => {
                    diags.push(
                        Diagnostic::error(
                            "config",
                            file,
                            stmt_span,
                            format!("query `{name}` uses `${n}`, which is not one of its `fields`"),
                        )
                        .with_hint("`$name` refers to a field returned by an earlier statement"),
                    );
                    ok = false;
                }
                _ => {}
            }
        }
    }
    let timeout_ms = match q.timeout {
        None => None,
        Some(t) => match parse_duration_text(t.get_ref()) {
            Some(ms) if ms > 0 => Some(ms),
            _ => {
                diags.push(Diagnostic::error(
                    "config",
                    file,
                    span_of(&t),
                    format!(
                        "query `{name}` has a bad timeout `{}`; write e.g. \"2s\" or \"500ms\"",
                        t.get_ref()
                    ),
                ));
                ok = false;
                None
            }
        },
    };
    ok.then(|| QueryDef {
        args: q.args,
        statements,
        transaction,
        fields,
        hash: q.hash.into_iter().map(|h| h.into_inner()).collect(),
        timeout_ms,
        span,
        statement_spans,
        field_spans,
    })
}

/// A validated `[server]`: a bad `trusted` network, `invite_rate` or `rtp_timeout` is
/// reported at its value and left out (the default applies).
fn validate_server(
    file: FileId,
    base: &Path,
    raw: RawServer,
    diags: &mut Vec<Diagnostic>,
) -> ServerConfig {
    let mut server = ServerConfig::default();
    let RawServer {
        sip,
        http,
        rtp_ports,
        max_calls,
        realm,
        trusted,
        invite_rate,
        rtp_timeout,
        max_http_connections,
        max_http_connections_per_address,
        tls,
        https,
        srtp,
    } = raw;
    if let Some(tls) = tls {
        let span = span_of(&tls);
        let RawTls { sip, cert, key } = tls.into_inner();
        let files = cert_files(file, base, "tls", span, cert, key, diags);
        let address = match sip {
            None => {
                diags.push(
                    Diagnostic::error("config", file, span, "`tls` has no `sip` address")
                        .with_hint("e.g. `tls = { sip = \"0.0.0.0:5061\", cert = \"tls/cert.pem\", key = \"tls/key.pem\" }`"),
                );
                None
            }
            Some(a) => match a.get_ref().parse::<std::net::SocketAddr>() {
                Ok(_) => Some(a.into_inner()),
                Err(_) => {
                    diags.push(
                        Diagnostic::error(
                            "config",
                            file,
                            span_of(&a),
                            format!("`tls` address `{}` is not an address and port", a.get_ref()),
                        )
                        .with_hint("an IP address and a port, e.g. \"0.0.0.0:5061\""),
                    );
                    None
                }
            },
        };
        if let (Some(sip), Some(files)) = (address, files) {
            server.tls = Some(SipTls { sip, files });
        }
    }
    if let Some(https) = https {
        let span = span_of(&https);
        let RawCert { cert, key } = https.into_inner();
        server.https = cert_files(file, base, "https", span, cert, key, diags);
    }
    // SRTP with SDES keys on SIP calls (RTP/SAVP offers).
    if let Some(srtp) = srtp {
        match srtp.get_ref().as_str() {
            "none" => server.srtp = SrtpMode::None,
            "optional" => server.srtp = SrtpMode::Optional,
            "required" => server.srtp = SrtpMode::Required,
            other => diags.push(
                Diagnostic::error(
                    "config",
                    file,
                    span_of(&srtp),
                    format!("`srtp = \"{other}\"` is not a policy"),
                )
                .with_hint(
                    "`\"none\"` (plain RTP; RTP/SAVP offers refused with 488), `\"optional\"` (RTP/SAVP with SDES keys or plain RTP) or `\"required\"` (RTP/SAVP only; plain offers refused with 488)",
                ),
            ),
        }
    }
    server.sip = sip.unwrap_or(server.sip);
    server.max_http_connections = max_http_connections.unwrap_or(server.max_http_connections);
    server.max_http_connections_per_address =
        max_http_connections_per_address.unwrap_or(server.max_http_connections_per_address);
    server.http = http.unwrap_or(server.http);
    server.rtp_ports = rtp_ports.unwrap_or(server.rtp_ports);
    server.max_calls = max_calls.unwrap_or(server.max_calls);
    server.realm = realm.unwrap_or(server.realm);
    if let Some(list) = trusted {
        server.trusted = Vec::new();
        for entry in list {
            let span = span_of(&entry);
            let text = entry.into_inner();
            match parse_network(&text) {
                Ok(_) => server.trusted.push(text),
                Err(e) => {
                    let hint = match &e {
                        NetworkError::HostBits { network, text, .. } => format!(
                            "write `{network}` for the network, or `{}` for the one address",
                            text.split('/').next().unwrap_or_default()
                        ),
                        _ => "write a network as \"192.0.2.0/24\" or \"2001:db8::/32\", or one address as \"192.0.2.7\"".into(),
                    };
                    diags.push(
                        Diagnostic::error("config", file, span, format!("`trusted` network {e}"))
                            .with_hint(hint),
                    );
                }
            }
        }
    }
    if let Some(rate) = invite_rate {
        match u32::try_from(*rate.get_ref()) {
            Ok(n) if n > 0 => server.invite_rate = n,
            _ => diags.push(
                Diagnostic::error(
                    "config",
                    file,
                    span_of(&rate),
                    if *rate.get_ref() == 0 {
                        "`invite_rate = 0` would refuse every INVITE from untrusted sources"
                            .to_string()
                    } else {
                        format!("`invite_rate = {}` is not a rate", rate.get_ref())
                    },
                )
                .with_hint(format!(
                    "INVITEs a second per untrusted source address, at least 1 (default {}); \
                     to refuse a source, leave it out of `trusted` and firewall it",
                    ServerConfig::DEFAULT_INVITE_RATE
                )),
            ),
        }
    }
    if let Some(timeout) = rtp_timeout {
        match parse_duration_text(timeout.get_ref()) {
            Some(ms) if ms > 0 => server.rtp_timeout_ms = ms,
            found => diags.push(
                Diagnostic::error(
                    "config",
                    file,
                    span_of(&timeout),
                    if found.is_some() {
                        "`rtp_timeout` of 0 would end every call at once".to_string()
                    } else {
                        format!("`rtp_timeout` `{}` is not a duration", timeout.get_ref())
                    },
                )
                .with_hint("a whole number with ms, s, m or h, e.g. \"30s\" (the default)"),
            ),
        }
    }
    server
}

/// The `cert` and `key` of `[server] tls` or `https`: both given, each a file that can be
/// read and holds what its name says (PEM); errors at the value (or at the table when one is
/// missing).
fn cert_files(
    file: FileId,
    base: &Path,
    table: &str,
    span: Span,
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    diags: &mut Vec<Diagnostic>,
) -> Option<CertFiles> {
    let mut check = |what: &str, value: Option<Spanned<String>>, marker: &[&str]| {
        let Some(value) = value else {
            diags.push(
                Diagnostic::error("config", file, span, format!("`{table}` has no `{what}`"))
                    .with_hint(format!(
                        "`{table} = {{ ..., cert = \"tls/cert.pem\", key = \"tls/key.pem\" }}`: the certificate chain and its private key, PEM files (`openssl req -x509 -newkey rsa:2048 -nodes -keyout tls/key.pem -out tls/cert.pem -days 365 -subj /CN=ivr.example`)"
                    )),
            );
            return None;
        };
        let path = base.join(value.get_ref());
        let problem = match std::fs::read_to_string(&path) {
            Err(e) => Some(format!("cannot be read ({e})")),
            Ok(text) if !marker.iter().any(|m| text.contains(m)) => {
                Some(format!("holds no PEM {what}"))
            }
            Ok(_) => None,
        };
        match problem {
            Some(p) => {
                diags.push(
                    Diagnostic::error(
                        "config",
                        file,
                        span_of(&value),
                        format!("`{table}` {what} `{}` {p}", path.display()),
                    )
                    .with_hint(format!(
                        "a PEM file relative to the folder of ivr.toml, with a `{}` block",
                        marker[0]
                    )),
                );
                None
            }
            None => Some(path),
        }
    };
    let cert = check("cert", cert, &["-----BEGIN CERTIFICATE-----"]);
    let key = check(
        "key",
        key,
        &[
            "-----BEGIN PRIVATE KEY-----",
            "-----BEGIN RSA PRIVATE KEY-----",
            "-----BEGIN EC PRIVATE KEY-----",
        ],
    );
    Some(CertFiles {
        cert: cert?,
        key: key?,
    })
}

/// A validated `[queues.NAME]`: a bad `ring_timeout` or `wrap_up` is reported and the default
/// applies, so the queue itself still exists for the flows that name it.
fn validate_queue(
    file: FileId,
    name: &str,
    q: RawQueue,
    diags: &mut Vec<Diagnostic>,
) -> QueueConfig {
    let mut duration = |key: &str, value: Option<Spanned<String>>, zero_ok: bool| {
        let value = value?;
        let text = value.get_ref();
        let problem = match parse_duration_text(text) {
            None => {
                format!("queue `{name}` has a bad {key} `{text}`; write e.g. \"15s\" or \"500ms\"")
            }
            Some(0) if !zero_ok => {
                format!("queue `{name}` has a {key} of 0: an agent's phone must ring for some time")
            }
            Some(ms) if ms > QueueConfig::MAX_DURATION_MS => {
                format!("queue `{name}` has a {key} of `{text}`, more than an hour")
            }
            Some(ms) => return Some(ms),
        };
        let default = if key == "ring_timeout" {
            QueueConfig::DEFAULT_RING_TIMEOUT_MS
        } else {
            QueueConfig::DEFAULT_WRAP_UP_MS
        };
        diags.push(
            Diagnostic::error("config", file, span_of(&value), problem).with_hint(format!(
                "durations are a whole number with ms, s, m or h; without `{key}` the queue uses {}s",
                default / 1000
            )),
        );
        None
    };
    let ring_timeout_ms = duration("ring_timeout", q.ring_timeout, false);
    let wrap_up_ms = duration("wrap_up", q.wrap_up, true);
    let callback_retry_after_ms =
        q.callback_retry_after
            .and_then(|value| match parse_duration_text(value.get_ref()) {
                Some(ms) if ms > 0 && ms <= 86_400_000 => Some(ms),
                _ => {
                    diags.push(
                        Diagnostic::error(
                            "config",
                            file,
                            span_of(&value),
                            format!(
                                "queue `{name}` has a bad callback_retry_after `{}`",
                                value.get_ref()
                            ),
                        )
                        .with_hint("a duration from \"1s\" to \"24h\", e.g. \"5m\"; without it 5m"),
                    );
                    None
                }
            });
    let callback_attempts =
        q.callback_attempts
            .and_then(|value| match u32::try_from(*value.get_ref()) {
                Ok(n @ 1..=QueueConfig::MAX_CALLBACK_ATTEMPTS) => Some(n),
                _ => {
                    diags.push(
                        Diagnostic::error(
                            "config",
                            file,
                            span_of(&value),
                            format!(
                                "queue `{name}` has callback_attempts {}: it goes from 1 to {}",
                                value.get_ref(),
                                QueueConfig::MAX_CALLBACK_ATTEMPTS
                            ),
                        )
                        .with_hint(format!(
                            "without it a caller is dialled {} times",
                            QueueConfig::DEFAULT_CALLBACK_ATTEMPTS
                        )),
                    );
                    None
                }
            });
    QueueConfig {
        ring_timeout_ms,
        wrap_up_ms,
        skills: q.skills,
        strategy: queue_strategy(file, name, q.strategy, diags),
        trunk_span: q.trunk.as_ref().map(span_of),
        trunk: q.trunk.map(Spanned::into_inner),
        callback_attempts,
        callback_retry_after_ms,
    }
}

/// The `strategy` of queue `name`: an unknown one is reported and the default applies.
fn queue_strategy(
    file: FileId,
    name: &str,
    strategy: Option<Spanned<String>>,
    diags: &mut Vec<Diagnostic>,
) -> Strategy {
    match strategy {
        None => Strategy::default(),
        Some(value) => match Strategy::ALL.iter().find(|(n, _)| n == value.get_ref()) {
            Some(&(_, s)) => s,
            None => {
                let hint = crate::suggest::did_you_mean(
                    value.get_ref(),
                    Strategy::ALL.iter().map(|(n, _)| *n),
                )
                .unwrap_or_else(|| "write \"longest_idle\" (the default) or \"best_level\"".into());
                diags.push(
                    Diagnostic::error(
                        "config",
                        file,
                        span_of(&value),
                        format!(
                            "queue `{name}` has an unknown strategy `{}`; the queue uses \"longest_idle\"",
                            value.get_ref()
                        ),
                    )
                    .with_hint(hint),
                );
                Strategy::default()
            }
        },
    }
}

/// A `$` parameter in SQL text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    /// `$1`
    Index(usize),
    /// `$value`
    Name(String),
}

/// The `$` parameters of a statement, skipping quoted SQL strings and identifiers.
pub fn parameters(sql: &str) -> Vec<Param> {
    let mut out = Vec::new();
    let chars: Vec<char> = sql.chars().collect();
    let mut i = 0;
    let mut quote: Option<char> = None;
    while i < chars.len() {
        let c = chars[i];
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        if c == '\'' || c == '"' {
            quote = Some(c);
            i += 1;
            continue;
        }
        if c == '$' {
            let start = i + 1;
            let mut j = start;
            while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                j += 1;
            }
            let word: String = chars[start..j].iter().collect();
            if !word.is_empty() {
                if let Ok(n) = word.parse::<usize>() {
                    out.push(Param::Index(n));
                } else if !word.starts_with(|c: char| c.is_ascii_digit()) {
                    out.push(Param::Name(word));
                }
            }
            i = j.max(i + 1);
            continue;
        }
        i += 1;
    }
    out
}

/// Parses `500ms`, `5s`, `2m`, `1h` into milliseconds.
pub fn parse_duration_text(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = digits.parse().ok()?;
    let factor = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    n.checked_mul(factor)
}

enum DaySpec {
    Weekdays(Vec<usize>),
    Dates((i32, u32, u32), (i32, u32, u32)),
}

/// A key or value of a `[calendars.NAME]` table that does not read: the diagnostic's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum CalendarError {
    /// A key starting with a digit that is not a date or a range of dates.
    #[error("`{0}` is not a date like 2026-10-01")]
    NotADate(String),
    /// `2026-10-07..2026-10-01`.
    #[error("the dates `{0}` run backwards")]
    DatesBackwards(String),
    /// A key naming something other than days of the week.
    #[error("`{0}` is not a day (mon, tue, wed, thu, fri, sat, sun)")]
    NotADay(String),
    /// A value that is not `closed` nor ranges of hours.
    #[error("`{0}` is not a range of hours like 08:00-20:00")]
    NotHours(String),
    /// `20:00-08:00`.
    #[error("the hours `{0}` end before they start")]
    HoursBackwards(String),
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn parse_days(text: &str) -> Result<DaySpec, CalendarError> {
    let t = text.trim().to_ascii_lowercase();
    if t.starts_with(|c: char| c.is_ascii_digit()) {
        let (a, b) = t.split_once("..").unwrap_or((&t, &t));
        let not_a_date = || CalendarError::NotADate(text.to_string());
        let from = parse_date(a).ok_or_else(not_a_date)?;
        let to = parse_date(b).ok_or_else(not_a_date)?;
        if to < from {
            return Err(CalendarError::DatesBackwards(text.to_string()));
        }
        return Ok(DaySpec::Dates(from, to));
    }
    let day = |s: &str| {
        DAY_NAMES
            .iter()
            .position(|d| *d == s.trim())
            .ok_or_else(|| CalendarError::NotADay(s.trim().to_string()))
    };
    let mut out = Vec::new();
    for part in t.split(',') {
        if let Some((a, b)) = part.split_once('-') {
            let (a, b) = (day(a)?, day(b)?);
            let mut d = a;
            loop {
                out.push(d);
                if d == b {
                    break;
                }
                d = (d + 1) % 7;
            }
        } else {
            out.push(day(part)?);
        }
    }
    Ok(DaySpec::Weekdays(out))
}

fn parse_date(s: &str) -> Option<(i32, u32, u32)> {
    let mut it = s.trim().split('-');
    let y = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    let days_in_month = match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    (it.next().is_none() && (1..=12).contains(&m) && (1..=days_in_month).contains(&d))
        .then_some((y, m, d))
}

fn parse_intervals(text: &str) -> Result<Vec<(u16, u16)>, CalendarError> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("closed") {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for part in t.split(',') {
        let part = part.trim();
        let not_hours = || CalendarError::NotHours(part.to_string());
        let (a, b) = part.split_once('-').ok_or_else(not_hours)?;
        match (parse_hhmm(a), parse_hhmm(b)) {
            (Some(a), Some(b)) if a < b => out.push((a, b)),
            (Some(_), Some(_)) => return Err(CalendarError::HoursBackwards(part.to_string())),
            _ => return Err(not_hours()),
        }
    }
    Ok(out)
}

fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Config, Vec<Diagnostic>) {
        Config::parse(FileId(0), Path::new("/x"), text)
    }

    #[test]
    fn cluster_section() {
        let (c, d) = parse(
            "[cluster]\nnode = \"a\"\ndatabase = \"postgres://ivr@db/ivr\"\nsip_via = \"sip:127.0.0.1:5060\"\n",
        );
        assert!(d.is_empty(), "{d:?}");
        let cluster = c.cluster.expect("cluster");
        assert_eq!(cluster.node, "a");
        assert_eq!(cluster.database, "postgres://ivr@db/ivr");
        assert_eq!(cluster.sip_via.as_deref(), Some("sip:127.0.0.1:5060"));
        assert!(parse("").0.cluster.is_none());
        // SQLite is refused at its value, with a sentence that says why.
        let text = "[cluster]\nnode = \"a\"\ndatabase = \"sqlite://ivr-data/ivr.db\"\n";
        let (c, d) = parse(text);
        assert!(c.cluster.is_none());
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].message.contains("PostgreSQL"), "{}", d[0].message);
        let at = d[0].span.start as usize;
        assert_eq!(
            &text[at..at + 9],
            "\"sqlite:/",
            "the error points at the value"
        );
        // Missing keys, a bad name, an unknown key.
        let (_, d) = parse("[cluster]\nnode = \"a b\"\n");
        assert_eq!(d.len(), 2, "{d:?}");
        let (_, d) =
            parse("[cluster]\nnode = \"a\"\ndatabase = \"postgres://h/db\"\nleader = true\n");
        assert_eq!(d.len(), 1, "{d:?}");
    }

    #[test]
    fn spec_example_parses() {
        let (c, d) = parse(
            r#"
[paths]
flows = "flows"
[queries.customer_by_phone]
args   = ["phone"]
sql    = "SELECT id, name, vip, balance FROM customers WHERE phone = $1"
fields = { id = "number", name = "text", vip = "bool", balance = "money" }
[queries.redeem_card]
args        = ["phone", "pin"]
transaction = [
  "UPDATE cards SET used_by = $1, used_at = CURRENT_TIMESTAMP WHERE pin = $2 AND used_at IS NULL RETURNING value",
  "UPDATE customers SET balance = balance + $value WHERE phone = $1 RETURNING balance",
]
fields = { value = "money", balance = "money" }
[queues.general]
skills = ["billing", "mandarin"]
[agents.2001]
name   = "王芳"
skills = ["billing", "mandarin"]
ha1    = "4f1c0000000000000000000000000000"
[calendars.agents]
"mon-fri" = "08:00-20:00"
"sat-sun" = "09:00-18:00"
"2026-10-01..2026-10-03" = "closed"
[routes]
"10010"   = "hotline"
default   = "hotline"
"#,
        );
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(c.flows_dir, Path::new("/x/flows"));
        assert!(c.queries["redeem_card"].transaction);
        assert_eq!(
            c.queries["customer_by_phone"].fields["balance"],
            FieldType::Money
        );
        let cal = &c.calendars["agents"];
        assert!(cal.is_open((2026, 11, 23), 0, 10 * 60));
        assert!(!cal.is_open((2026, 11, 23), 0, 20 * 60));
        assert!(cal.is_open((2026, 11, 29), 6, 9 * 60));
        assert!(!cal.is_open((2026, 10, 2), 4, 10 * 60));
        assert_eq!(c.routes["default"], "hotline");
    }

    #[test]
    fn mistakes_are_reported_with_their_place() {
        let text = "[queries.q]\nargs = [\"a\"]\nsql = \"SELECT x FROM t WHERE a = $2\"\nfields = { x = \"nummber\" }\n";
        let (_, d) = parse(text);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(
            d.iter()
                .any(|d| d.message.contains("unknown type `nummber`"))
        );
        assert!(
            d.iter()
                .any(|d| d.message.contains("uses `$2` but has 1 argument"))
        );
        let (_, d) = parse("[querys.x]\n");
        assert_eq!(d.len(), 1);
        assert!(
            d[0].message.contains("unknown key `querys`"),
            "{}",
            d[0].message
        );
        assert_eq!(d[0].hint.as_deref(), Some("did you mean `queries`?"));
    }

    #[test]
    fn http_connection_limits_have_defaults_and_zero_is_an_error() {
        let (c, d) = parse("[server]\nmax_calls = 10\n");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(c.server.max_http_connections, 1024);
        assert_eq!(c.server.max_http_connections_per_address, 64);
        let (c, d) = parse(
            "[server]\nmax_http_connections = 4096\nmax_http_connections_per_address = 300\n",
        );
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(c.server.max_http_connections, 4096);
        assert_eq!(c.server.max_http_connections_per_address, 300);
        let text = "[server]\nmax_http_connections_per_address = 0\n";
        let (_, d) = parse(text);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(
            d[0].message
                .contains("`max_http_connections_per_address = 0` would refuse every HTTP"),
            "{}",
            d[0].message
        );
        assert_eq!(
            d[0].span.start as usize,
            text.find("max_http").expect("key")
        );
        let (_, d) = parse("[server]\nmax_http_conections = 10\n");
        assert_eq!(
            d[0].hint.as_deref(),
            Some("did you mean `max_http_connections`?")
        );
    }

    #[test]
    fn parameters_skip_strings() {
        assert_eq!(
            parameters("SELECT '$1' || $2, $value FROM t"),
            vec![Param::Index(2), Param::Name("value".into())]
        );
    }

    #[test]
    fn queue_timings_parse_with_defaults() {
        let (c, d) = parse(
            "[queues.general]\nskills = [\"mandarin\"]\n\n[queues.vip]\nring_timeout = \"20s\"\nwrap_up = \"0s\"\n\n[queues.fast]\nring_timeout = \"1500ms\"\nwrap_up = \"2m\"\n",
        );
        assert!(d.is_empty(), "{d:?}");
        let general = &c.queues["general"];
        assert_eq!(general.ring_timeout_ms, None);
        assert_eq!(general.wrap_up_ms, None);
        assert_eq!(general.ring_timeout(), 15_000);
        assert_eq!(general.wrap_up(), 10_000);
        assert_eq!(c.queues["vip"].ring_timeout(), 20_000);
        assert_eq!(c.queues["vip"].wrap_up_ms, Some(0));
        assert_eq!(c.queues["vip"].wrap_up(), 0);
        assert_eq!(c.queues["fast"].ring_timeout(), 1_500);
        assert_eq!(c.queues["fast"].wrap_up(), 120_000);
    }

    #[test]
    fn strategies_and_levels_parse_and_bad_ones_are_reported() {
        let text = "[queues.general]\n\n[queues.vip]\nstrategy = \"best_level\"\n\n[queues.odd]\nstrategy = \"best_levl\"\n\n[agents.2001]\nha1 = \"bf715e98225da5507a0ec09b14207408\"\n\n[agents.2002]\nlevel = 4\nha1 = \"bf715e98225da5507a0ec09b14207408\"\n\n[agents.2003]\nlevel = 9\nha1 = \"bf715e98225da5507a0ec09b14207408\"\n";
        let (c, d) = parse(text);
        assert_eq!(c.queues["general"].strategy, Strategy::LongestIdle);
        assert_eq!(c.queues["vip"].strategy, Strategy::BestLevel);
        assert_eq!(c.queues["odd"].strategy, Strategy::LongestIdle);
        assert_eq!(c.agents["2001"].level(), 1);
        assert_eq!(c.agents["2002"].level(), 4);
        assert_eq!(c.agents["2003"].level(), 1);
        assert_eq!(d.len(), 2, "{d:?}");
        let at = |d: &Diagnostic| &text[d.span.start as usize..d.span.end as usize];
        assert!(
            d[0].message.contains("unknown strategy `best_levl`"),
            "{}",
            d[0].message
        );
        assert_eq!(at(&d[0]), "\"best_levl\"");
        assert!(d[0].hint.as_deref().unwrap_or("").contains("best_level"));
        assert!(
            d[1].message.contains("agent `2003` has level 9"),
            "{}",
            d[1].message
        );
    }

    #[test]
    fn bad_queue_timings_are_reported_at_their_value() {
        let text = "[queues.general]\nring_timeout = \"15\"\nwrap_up = \"ten seconds\"\n\n[queues.vip]\nring_timeout = \"0s\"\nwrap_up = \"2h\"\n";
        let (c, d) = parse(text);
        assert_eq!(d.len(), 4, "{d:?}");
        let at = |d: &Diagnostic| &text[d.span.start as usize..d.span.end as usize];
        assert!(
            d[0].message
                .contains("queue `general` has a bad ring_timeout `15`; write e.g. \"15s\""),
            "{}",
            d[0].message
        );
        assert_eq!(at(&d[0]), "\"15\"");
        assert!(
            d[0].hint.as_deref().unwrap_or("").contains("uses 15s"),
            "{:?}",
            d[0].hint
        );
        assert!(d[1].message.contains("bad wrap_up `ten seconds`"));
        assert_eq!(at(&d[1]), "\"ten seconds\"");
        assert!(d[1].hint.as_deref().unwrap_or("").contains("uses 10s"));
        assert!(
            d[2].message.contains("ring_timeout of 0"),
            "{}",
            d[2].message
        );
        assert_eq!(at(&d[2]), "\"0s\"");
        assert!(
            d[3].message.contains("more than an hour"),
            "{}",
            d[3].message
        );
        // The queues still exist, with the defaults.
        assert_eq!(c.queues["general"].ring_timeout(), 15_000);
        assert_eq!(c.queues["general"].wrap_up(), 10_000);
        assert_eq!(c.queues["vip"].ring_timeout(), 15_000);
        assert_eq!(c.queues["vip"].wrap_up(), 10_000);
    }

    #[test]
    fn server_limits_parse_with_defaults() {
        let (c, d) = parse("[server]\nmax_calls = 10\n");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(c.server.trusted, ["127.0.0.0/8", "::1/128"]);
        assert_eq!(c.server.invite_rate, 20);
        assert_eq!(c.server.rtp_timeout_ms, 30_000);
        let (c, d) = parse(
            "[server]\ntrusted = [\"192.0.2.0/24\", \"2001:db8::/32\", \"198.51.100.7\"]\n\
             invite_rate = 5\nrtp_timeout = \"45s\"\n",
        );
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(
            c.server.trusted_networks(),
            [
                ("192.0.2.0".parse().expect("ip"), 24),
                ("2001:db8::".parse().expect("ip"), 32),
                ("198.51.100.7".parse().expect("ip"), 32)
            ]
        );
        assert_eq!((c.server.invite_rate, c.server.rtp_timeout_ms), (5, 45_000));
        let (c, d) = parse("[server]\ntrusted = []\n");
        assert!(d.is_empty() && c.server.trusted.is_empty(), "{d:?}");
    }

    #[test]
    fn tls_https_and_srtp_are_checked_at_their_value() {
        let dir = std::env::temp_dir().join(format!("ivr-config-tls-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("tls")).expect("dir");
        std::fs::write(
            dir.join("tls/cert.pem"),
            "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
        )
        .expect("cert");
        std::fs::write(
            dir.join("tls/key.pem"),
            "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n",
        )
        .expect("key");
        let parse = |text: &str| Config::parse(FileId(0), &dir, text);
        let good = "[server]\ntls = { sip = \"0.0.0.0:5061\", cert = \"tls/cert.pem\", key = \"tls/key.pem\" }\nhttps = { cert = \"tls/cert.pem\", key = \"tls/key.pem\" }\nsrtp = \"none\"\n";
        let (c, d) = parse(good);
        assert!(d.is_empty(), "{d:?}");
        let tls = c.server.tls.expect("tls");
        assert_eq!(tls.sip, "0.0.0.0:5061");
        assert_eq!(tls.files.cert, dir.join("tls/cert.pem"));
        assert_eq!(c.server.https.expect("https").key, dir.join("tls/key.pem"));
        // Defaults: no TLS.
        let (c, _) = parse("[server]\n");
        assert_eq!(c.server.srtp, SrtpMode::None);
        assert_eq!((c.server.tls, c.server.https), (None, None));
        // The three policies; none by default.
        assert_eq!(c.server.srtp, SrtpMode::None);
        for (w, mode) in [
            ("none", SrtpMode::None),
            ("optional", SrtpMode::Optional),
            ("required", SrtpMode::Required),
        ] {
            let (c, d) = parse(&format!("[server]\nsrtp = \"{w}\"\n"));
            assert!(d.is_empty(), "{d:?}");
            assert_eq!(c.server.srtp, mode);
        }
        // Errors at their value, with a hint.
        let text = "[server]\ntls = { sip = \"5061\", cert = \"tls/missing.pem\", key = \"tls/cert.pem\" }\nhttps = { cert = \"tls/cert.pem\" }\nsrtp = \"maybe\"\n";
        let (c, d) = parse(text);
        let at = |d: &Diagnostic| &text[d.span.start as usize..d.span.end as usize];
        assert_eq!(d.len(), 5, "{d:?}");
        assert_eq!(at(&d[0]), "\"tls/missing.pem\"");
        assert!(d[0].message.contains("cannot be read"), "{}", d[0].message);
        assert_eq!(at(&d[1]), "\"tls/cert.pem\"");
        assert!(
            d[1].message.contains("holds no PEM key"),
            "{}",
            d[1].message
        );
        assert_eq!(at(&d[2]), "\"5061\"");
        assert!(
            d[3].message.contains("`https` has no `key`"),
            "{}",
            d[3].message
        );
        assert!(
            d[3].hint
                .as_deref()
                .unwrap_or_default()
                .contains("openssl req")
        );
        assert_eq!(at(&d[4]), "\"maybe\"");
        assert!(d.iter().all(|d| d.hint.is_some()), "{d:?}");
        assert_eq!((c.server.tls, c.server.https), (None, None));
        // Unknown keys inside the tables, and wrong types.
        let (_, d) = parse(
            "[server]\nhttps = { cert = \"tls/cert.pem\", key = \"tls/key.pem\", keys = \"x\" }\n",
        );
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].message.contains("keys"), "{d:?}");
        assert!(
            d[0].hint.as_deref().unwrap_or_default().contains("key"),
            "{d:?}"
        );
        let (c, d) = parse("[server]\nsrtp = true\n");
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(c.unreadable);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_server_limits_are_reported_at_their_value() {
        let text = "[server]\ntrusted = [\n  \"127.0.0.1/32\",\n  \"10.0.0.0/33\",\n  \"192.0.2.1/24\",\n  \"trunk.example.com\",\n]\ninvite_rate = -5\nrtp_timeout = \"0s\"\n";
        let (c, d) = parse(text);
        assert_eq!(d.len(), 5, "{d:?}");
        let at = |d: &Diagnostic| &text[d.span.start as usize..d.span.end as usize];
        assert_eq!(at(&d[0]), "\"10.0.0.0/33\"");
        assert!(
            d[0].message.contains("prefix length beyond the 32 bits"),
            "{}",
            d[0].message
        );
        assert_eq!(at(&d[1]), "\"192.0.2.1/24\"");
        assert_eq!(
            d[1].hint.as_deref(),
            Some("write `192.0.2.0/24` for the network, or `192.0.2.1` for the one address")
        );
        assert!(
            d[2].message
                .contains("`trunk.example.com` is not an IP address")
        );
        assert_eq!(at(&d[3]), "-5");
        assert!(d[3].message.contains("`invite_rate = -5` is not a rate"));
        assert!(
            d[4].message.contains("`rtp_timeout` of 0"),
            "{}",
            d[4].message
        );
        // What reads is kept; the rest has its default.
        assert_eq!(c.server.trusted, ["127.0.0.1/32"]);
        assert_eq!(
            (c.server.invite_rate, c.server.rtp_timeout_ms),
            (20, 30_000)
        );
        let (_, d) = parse("[server]\ninvite_rate = 0\n");
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].message.contains("would refuse every INVITE"), "{d:?}");
        let (_, d) = parse("[server]\ninvite_rate = \"fast\"\n");
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(
            d[0].message.contains("expected a whole number"),
            "{}",
            d[0].message
        );
        let (_, d) = parse("[server]\ninvite_rat = 5\n");
        assert_eq!(d[0].hint.as_deref(), Some("did you mean `invite_rate`?"));
        let (_, d) = parse("[server]\nrtp_timeout = \"soon\"\n");
        assert!(d[0].message.contains("is not a duration"), "{d:?}");
    }

    #[test]
    fn misspelt_queue_keys_get_a_suggestion() {
        let (_, d) = parse("[queues.general]\nring_timout = \"15s\"\nwrapup = \"5s\"\n");
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d[0].hint.as_deref(), Some("did you mean `ring_timeout`?"));
        assert_eq!(d[1].hint.as_deref(), Some("did you mean `wrap_up`?"));
        // A number where a duration is expected is a type error of the file.
        let (_, d) = parse("[queues.general]\nring_timeout = 15\n");
        assert_eq!(d.len(), 1, "{d:?}");
    }

    #[test]
    fn supervisors_are_read_and_checked_at_their_line() {
        let text = "[supervisors.3001]\nname = \"Li\"\nha1 = \"bf715e98225da5507a0ec09b14207408\"\n\n\
                    [supervisors.3002]\nname = \"No hash yet\"\n\n\
                    [supervisors.3003]\nha1 = \"4f1c\"\n\n\
                    [supervisors.3004]\nnmae = \"typo\"\nha1 = \"bf715e98225da5507a0ec09b14207408\"\n";
        let (c, d) = parse(text);
        assert_eq!(c.supervisors["3001"].name, "Li");
        assert!(c.supervisors["3001"].has_valid_ha1());
        let at = |needle: &str| text.find(needle).unwrap_or(usize::MAX);
        // No ha1: a warning (`ivr agent-password` is how it gets one).
        assert!(d.iter().any(|x| x.severity == ivr_dsl::Severity::Warning
            && x.message.contains("`3002` has no `ha1`")
            && x.span.start as usize >= at("[supervisors.3002]")));
        // A malformed one: a warning at its table too (as for agents).
        let bad = d
            .iter()
            .find(|x| x.message.contains("`3003` has an `ha1` of 4 characters"))
            .expect("the malformed ha1");
        assert_eq!(bad.severity, ivr_dsl::Severity::Warning);
        assert!(bad.span.start as usize >= at("[supervisors.3003]"));
        assert!(bad.span.start as usize <= at("[supervisors.3004]"));
        // An unknown key: an error with a hint.
        let typo = d
            .iter()
            .find(|x| x.message.contains("unknown key `nmae`"))
            .expect("the unknown key");
        assert_eq!(typo.span.start as usize, at("nmae"));
        assert!(
            typo.hint.as_deref().unwrap_or("").contains("name"),
            "{typo:?}"
        );
        // An id that cannot be a login's user name: an error.
        let (c, d) = parse("[supervisors.\"a:b\"]\nha1 = \"bf715e98225da5507a0ec09b14207408\"\n");
        assert!(c.supervisors.is_empty());
        assert!(
            d.iter().any(|x| x.severity == ivr_dsl::Severity::Error
                && x.message.contains("`a:b` cannot be a supervisor id")),
            "{d:?}"
        );
    }
}
