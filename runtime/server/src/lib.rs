//! `ivr serve`: the SIP/RTP runtime. Wires the live deployment (hot reload), the data layer
//! and its record writer, the pacer, the RTP port pool, the SIP transports and the SIP task
//! that drives the user-agent core ([`sip_task`], [`ivr_sip::ua`]), the ACD task and the HTTP
//! pages, all reached through one [`Services`] handle; admits calls (route, SDP answer, port)
//! and runs each one as a [`call`] task.
//! SIGHUP reloads; SIGINT/SIGTERM stop taking calls and let the current ones finish until the
//! drain deadline, then end them (BYE) and write every record before exiting.

pub mod acd_task;
pub mod agent_api;
pub mod agent_call;
pub mod agent_console;
pub mod agent_hub;
pub mod browser;
pub mod call;
pub mod callback;
pub mod campaign_hub;
pub mod campaigns;
pub mod catalog;
pub mod clock;
pub mod cluster;
pub mod consult_request;
pub mod consultations;
pub mod dashboard;
pub mod deploy;
pub mod flow_map;
pub mod history;
pub mod http;
pub mod http_limits;
pub mod live;
pub mod live_calls;
pub mod metrics;
pub mod open_files;
pub mod pass_refusal;
pub mod queue_day;
pub mod recording_purge;
pub mod screen_pop;
pub mod services;
pub mod sip_target;
pub mod sip_task;
pub mod supervise_media;
pub mod supervise_taps;
pub mod supervisor;
pub mod takeover;
pub mod tls;
pub mod transport;
pub mod trunk_channels;
pub mod voice_mail;

pub use crate::services::Services;

use crate::acd_task::{AcdMsg, AcdTask};
use crate::clock::local_now;
use crate::deploy::LoadFailure;
use crate::live::Live;
use crate::services::Shared;
use crate::sip_task::{Calls, CoreMsg, CoreStats, DialogEvent, LocalIps, Outlets};
use ivr_data as data;
use ivr_data::records::{CallRecorder, RecordWriter, WriterOptions};
use ivr_engine::{CallInfo, Channel};
use ivr_media::pacer::Pacer;
use ivr_media::ports::{PortPool, parse_range};
use ivr_sip::edge::Network;
use ivr_sip::message::{self, random_u64};
use ivr_sip::registrar::Registrar;
use ivr_sip::sdp::{self, Negotiated};
use ivr_sip::transaction::Timers;
use ivr_sip::ua::{Admitted, Bounds, Core, CoreOptions, EdgePolicy, Host, NewCall};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::mpsc;
use tracing::Instrument;

/// Where call records wait while the database is down, beside `ivr.toml` (see
/// [`ivr_data::spool`]).
pub const SPOOL_DIR: &str = "ivr-data/spool";

/// The most the spool keeps (each of its two files), 1 GiB: about 3 million call records.
pub const SPOOL_MAX_BYTES: u64 = 1 << 30;

/// Options of `ivr serve` (the command line over `[server]`).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// `--config`
    pub config: Option<PathBuf>,
    /// `--sip ADDR` (else `[server] sip`).
    pub sip: Option<String>,
    /// `--http ADDR` (else `[server] http`): `GET /status` and `GET /metrics`.
    pub http: Option<String>,
    /// Reload when files change (`--no-watch` turns it off).
    pub watch: bool,
    /// Ring this long before answering (`--answer-after`).
    pub answer_after: Duration,
    /// How long current calls may go on after a shutdown signal (`--drain`).
    pub drain: Duration,
    /// End a call after this long without RTP from the caller (`--rtp-timeout`; else
    /// `[server] rtp_timeout`).
    pub rtp_timeout: Option<Duration>,
    /// Pacer threads (0: one per core).
    pub pacer_threads: usize,
    /// Override `[server] max_calls`.
    pub max_calls: Option<u32>,
    /// `--node`, `--cluster-database`, `--sip-via`: over `[cluster]` of `ivr.toml`.
    pub cluster: ClusterOverrides,
}

/// The command line's `[cluster]` values (each over the file's).
#[derive(Debug, Clone, Default)]
pub struct ClusterOverrides {
    /// `--node NAME`
    pub node: Option<String>,
    /// `--cluster-database URL`
    pub database: Option<String>,
    /// `--sip-via URI`
    pub sip_via: Option<String>,
}

impl ClusterOverrides {
    /// `[cluster]` with these values over `file`'s: none when neither says anything.
    pub fn apply(
        &self,
        file: Option<&ivr_compiler::cluster_config::ClusterConfig>,
    ) -> Result<Option<ivr_compiler::cluster_config::ClusterConfig>, ServeError> {
        if file.is_none()
            && self.node.is_none()
            && self.database.is_none()
            && self.sip_via.is_none()
        {
            return Ok(None);
        }
        ivr_compiler::cluster_config::ClusterConfig::new(
            self.node.clone().or_else(|| file.map(|c| c.node.clone())),
            self.database
                .clone()
                .or_else(|| file.map(|c| c.database.clone())),
            self.sip_via
                .clone()
                .or_else(|| file.and_then(|c| c.sip_via.clone())),
        )
        .map(Some)
        .map_err(ServeError::Cluster)
    }
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            config: None,
            sip: None,
            http: None,
            watch: true,
            answer_after: Duration::ZERO,
            drain: Duration::from_secs(30),
            rtp_timeout: None,
            pacer_threads: 0,
            max_calls: None,
            cluster: ClusterOverrides::default(),
        }
    }
}

/// Why `ivr serve` cannot start (the message is what `ivr serve` prints after `ivr: `).
#[derive(Debug, Error)]
pub enum ServeError {
    /// The tokio runtime could not be built.
    #[error("{0}")]
    Runtime(#[source] std::io::Error),
    /// The first deployment does not load.
    #[error("{0}")]
    Load(#[from] LoadFailure),
    /// `--sip` or `[server] sip` is not an address.
    #[error("the SIP address `{0}` is not IP:PORT")]
    SipAddress(String),
    /// `[server] rtp_ports` is not a range.
    #[error(transparent)]
    RtpPorts(#[from] ivr_media::ports::PortRangeError),
    /// The pacer's threads could not be started.
    #[error("cannot start the pacer: {0}")]
    Pacer(#[source] std::io::Error),
    /// The recording writer's thread could not be started.
    #[error("cannot start the recording writer: {0}")]
    Recorder(#[source] std::io::Error),
    /// The SIP transports could not listen.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The SIP address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A certificate or key of `[server] tls` or `https` cannot be used.
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
    /// `[server] tls`'s address is not an address.
    #[error("the SIP-over-TLS address `{0}` is not IP:PORT")]
    TlsAddress(String),
    /// `[cluster]` (or `--node`, `--cluster-database`, `--sip-via`) cannot be used.
    #[error("cluster: {0}")]
    Cluster(#[source] ivr_compiler::cluster_config::ClusterError),
    /// The cluster's shared database cannot be opened.
    #[error("cluster: {0}")]
    ClusterDatabase(#[source] ivr_data::DataError),
    /// An explicit `--http` address could not be bound.
    #[error("cannot serve HTTP on {addr}: {source}")]
    Http {
        /// The HTTP address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The application side of the SIP core: admits calls (route, SDP answer, RTP port), starts
/// each admitted call's task once the core says so, and carries its dialog's events to it.
struct SipHost {
    services: Services,
    /// Browser calls in progress (they count against `max_calls` in the SIP core too).
    elsewhere: Arc<AtomicUsize>,
    /// Our address towards each peer (when listening on an unspecified address).
    local_ips: LocalIps,
    /// The calls the core admitted, by To-tag, until the core forgets their dialogs.
    calls: HashMap<String, Admission>,
}

/// A call the core admitted: where its dialog's events go, and until it starts, what it
/// starts with.
struct Admission {
    events: mpsc::UnboundedSender<DialogEvent>,
    pending: Option<Pending>,
    /// Keeps the caller's TCP connection open while the dialog lasts, however quiet.
    _conn: Option<transport::ConnHold>,
}

/// What an admitted call runs once it starts.
enum Starts {
    /// A caller's: its flow.
    Flow(Box<call::Incoming>),
    /// An agent's phone's: the consultation call of an attended transfer.
    Agent(Box<agent_call::Incoming>),
}

/// An admitted call that has not started yet (ringing, or a late offer waiting for the ACK).
/// Dropping it (CANCEL) releases everything the call held.
struct Pending {
    incoming: Starts,
    span: tracing::Span,
    /// Writes the record of a call that ends before it starts, with its outcome.
    unserved: Box<dyn FnOnce(&'static str) + Send>,
}

/// The SIP core's SRTP policy for `[server] srtp`.
fn srtp_policy(mode: ivr_compiler::config::SrtpMode) -> sdp::SrtpPolicy {
    use ivr_compiler::config::SrtpMode;
    match mode {
        SrtpMode::None => sdp::SrtpPolicy::None,
        SrtpMode::Optional => sdp::SrtpPolicy::Optional,
        SrtpMode::Required => sdp::SrtpPolicy::Required,
    }
}

impl Host for SipHost {
    fn admit(&mut self, c: NewCall<'_>) -> Result<Admitted, u16> {
        let deployment = self.services.live.current();
        let uri = c.request.uri.to_string();
        let called = match message::user_of(&uri) {
            "" => message::user_of(message::uri_of(
                message::value(&c.request.headers, "To").unwrap_or_default(),
            ))
            .to_string(),
            u => u.to_string(),
        };
        // An agent's phone calling a colleague, a queue or a number (From: one of
        // `[agents.*]`, to an agent id, `queue.NAME` or a number with a default trunk, that no
        // route names explicitly).
        if !deployment.config.routes.contains_key(&called)
            && let Some(target) = agent_call::Target::parse(&called, &deployment.config)
        {
            let from = message::value(&c.request.headers, "From").unwrap_or_default();
            if deployment
                .config
                .agents
                .contains_key(message::user_of(message::uri_of(from)))
            {
                return self.admit_agent(&c, target);
            }
        }
        let Some((_, flow)) = deployment.flow_for(&called) else {
            if deployment.routes_to_not_started(&called) {
                tracing::warn!(%called, "the flow of this number is not started (see the log)");
                return Err(480);
            }
            tracing::info!(%called, "no route");
            return Err(404);
        };
        let flow = Arc::clone(flow);
        // No offer in the INVITE (late offer): we offer plain RTP in the 200 and the ACK
        // answers; with `srtp = "required"` such an INVITE is refused (we do not offer SRTP).
        let policy = srtp_policy(deployment.config.server.srtp);
        let n = match c.offer {
            Some(o) => Some(sdp::negotiate(o, policy).map_err(|_| 488u16)?),
            None if policy == sdp::SrtpPolicy::Required => {
                tracing::info!("an INVITE without an offer while SRTP is required: 488");
                return Err(488);
            }
            None => None,
        };
        let Some(port) = self.services.ports.allocate() else {
            tracing::warn!("no free RTP port");
            return Err(503);
        };
        let from_uri =
            message::uri_of(message::value(&c.request.headers, "From").unwrap_or_default());
        let caller = message::user_of(from_uri);
        // A withheld number (RFC 3323: `anonymous@anonymous.invalid`, or no user part) is the
        // empty caller the flows test with `caller == ""`.
        let withheld = caller.eq_ignore_ascii_case("anonymous")
            || from_uri.to_ascii_lowercase().contains("@anonymous.invalid");
        let caller: String = if withheld {
            String::new()
        } else {
            caller.chars().take(64).collect()
        };
        let info = CallInfo {
            id: c.facts.call_id.chars().take(128).collect(),
            caller,
            called,
            channel: Channel::Sip,
            contact: Vec::new(),
        };
        let session_id = random_u64() >> 1;
        let answer = match (c.offer, &n) {
            (Some(o), Some(n)) => sdp::answer(o, n, c.local_ip, port.port(), session_id, 1),
            _ => sdp::offer(c.local_ip, port.port(), session_id, 1),
        };
        // The record of a call that ends before its flow starts (CANCEL, no ACK, ...).
        let unserved = {
            let (writer, flow, info) = (
                self.services.writer.clone(),
                Arc::clone(&flow),
                info.clone(),
            );
            let arrived = local_now();
            move |outcome: &'static str| {
                if let Some(w) = writer {
                    CallRecorder::new(w, flow, &info, arrived).unserved(outcome, local_now());
                }
            }
        };
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let span = tracing::info_span!("call", id = %info.id);
        let port_no = port.port();
        // A cluster node's call keeps its dialog for its checkpoints (the Call-ID within the
        // checkpoints' bound, else no checkpoint).
        let clustered = self
            .services
            .cluster
            .as_ref()
            .filter(|_| c.facts.call_id.len() <= ivr_data::checkpoints::MAX_TEXT)
            .map(|cl| {
                let dialog = ivr_sip::dialog::Dialog::from_invite(c.request, c.facts, c.tag);
                Box::new(call::checkpoint::Clustered {
                    sip_call_id: c.facts.call_id.clone(),
                    dialog: call::checkpoint::dialog_facts(&dialog),
                    nodes: cl.config.node.clone(),
                    resume: None,
                })
            });
        let incoming = call::Incoming {
            info,
            flow,
            deployment,
            port,
            // Replaced by the ACK's answer for a late offer.
            negotiated: n.unwrap_or(sdp::Negotiated {
                index: 0,
                law: ivr_media::audio::Law::Ulaw,
                pt: 0,
                event_pt: Some(sdp::DEFAULT_EVENT_PT),
                remote: None,
                direction: sdp::Direction::SendRecv,
                srtp: None,
            }),
            events: events_rx,
            tag: c.tag.to_string(),
            peer: Some(c.peer),
            notes: None,
            cluster: clustered,
        };
        self.calls.insert(
            c.tag.to_string(),
            Admission {
                events: events_tx,
                pending: Some(Pending {
                    incoming: Starts::Flow(Box::new(incoming)),
                    span,
                    unserved: Box::new(unserved),
                }),
                _conn: self.services.sip.hold(&c.peer),
            },
        );
        Ok(Admitted {
            answer,
            negotiated: n,
            port: port_no,
        })
    }

    fn elsewhere(&self) -> usize {
        self.elsewhere.load(Ordering::Relaxed)
    }

    fn local_ip(&mut self, peer: IpAddr) -> IpAddr {
        self.local_ips.towards(peer)
    }
}

impl SipHost {
    /// Admits the call of an agent's phone to a colleague, a queue or a number (the
    /// consultation of an attended transfer): only from a logged-in agent, authenticated by
    /// digest (401 asks the core to challenge it); a number only with a free channel of the
    /// default trunk (503 without).
    fn admit_agent(
        &mut self,
        c: &NewCall<'_>,
        target: agent_call::Target,
    ) -> Result<Admitted, u16> {
        let Some(agent) = c.agent else {
            tracing::info!(target = ?target, "an agent's call without credentials: challenged");
            return Err(401);
        };
        if matches!(&target, agent_call::Target::Agent(a) if a == agent) {
            tracing::info!(agent, "an agent called itself");
            return Err(403);
        }
        let deployment = self.services.live.current();
        // A number takes a channel of the default trunk for as long as it lasts.
        let trunk = match (&target, agent_call::default_trunk(&deployment.config)) {
            (agent_call::Target::Number(_), Some((name, t))) => {
                match self.services.trunks.try_take(name, t.max_calls) {
                    Some(permit) => Some(permit),
                    None => {
                        tracing::info!(trunk = name, "every channel of the trunk is in use");
                        return Err(503);
                    }
                }
            }
            (agent_call::Target::Number(_), None) => return Err(404),
            _ => None,
        };
        let policy = srtp_policy(deployment.config.server.srtp);
        let Some(offer) = c.offer else {
            // Consultation calls need the phone's offer (no late offer).
            return Err(488);
        };
        let n = sdp::negotiate(offer, policy).map_err(|_| 488u16)?;
        if n.srtp.is_some() {
            // The consultation relays plain RTP only.
            return Err(488);
        }
        let Some(port) = self.services.ports.allocate() else {
            tracing::warn!("no free RTP port");
            return Err(503);
        };
        let session_id = random_u64() >> 1;
        let answer = sdp::answer(offer, &n, c.local_ip, port.port(), session_id, 1);
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let call_id: String = c.facts.call_id.chars().take(128).collect();
        let span = tracing::info_span!("consultation", id = %call_id, agent = %agent);
        let port_no = port.port();
        let incoming = agent_call::Incoming {
            agent: agent.to_string(),
            target,
            port,
            negotiated: n,
            events: events_rx,
            tag: c.tag.to_string(),
            call_id: c.facts.call_id.clone(),
            remote_tag: c.facts.from_tag.clone().unwrap_or_default(),
            trunk,
        };
        self.calls.insert(
            c.tag.to_string(),
            Admission {
                events: events_tx,
                pending: Some(Pending {
                    incoming: Starts::Agent(Box::new(incoming)),
                    span,
                    unserved: Box::new(|_| {}),
                }),
                _conn: self.services.sip.hold(&c.peer),
            },
        );
        Ok(Admitted {
            answer,
            negotiated: Some(n),
            port: port_no,
        })
    }
}

impl Calls for SipHost {
    fn start(&mut self, tag: &str, media: Negotiated) {
        let Some(Pending { incoming, span, .. }) =
            self.calls.get_mut(tag).and_then(|a| a.pending.take())
        else {
            return;
        };
        match incoming {
            Starts::Flow(mut incoming) => {
                if incoming
                    .cluster
                    .as_ref()
                    .is_some_and(|c| c.resume.is_some())
                {
                    let unix_ms = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis());
                    let _g = span.enter();
                    tracing::info!(
                        unix_ms,
                        "call taken over: the caller answered the re-INVITE"
                    );
                    if let Some(c) = &self.services.cluster {
                        c.checkpoints.taken_over.fetch_add(1, Ordering::Relaxed);
                    }
                }
                incoming.negotiated = media;
                self.services.running.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(call::run(self.services.clone(), *incoming).instrument(span));
            }
            Starts::Agent(mut incoming) => {
                incoming.negotiated = media;
                tokio::spawn(agent_call::run(self.services.clone(), *incoming).instrument(span));
            }
        }
    }

    fn unserved(&mut self, tag: &str, outcome: &'static str) {
        if let Some(p) = self.calls.get_mut(tag).and_then(|a| a.pending.take()) {
            (p.unserved)(outcome);
        }
    }

    fn event(&mut self, tag: &str, event: DialogEvent) {
        if let Some(a) = self.calls.get(tag) {
            let _ = a.events.send(event);
        }
    }

    fn closed(&mut self, tag: &str) {
        self.calls.remove(tag);
    }

    fn adopt(&mut self, tag: &str, adopted: sip_task::Adopted) {
        let Ok(a) = adopted.0.downcast::<Adoption>() else {
            return;
        };
        let Adoption {
            incoming,
            events,
            span,
            unserved,
        } = *a;
        self.calls.insert(
            tag.to_string(),
            Admission {
                events,
                pending: Some(Pending {
                    incoming: Starts::Flow(incoming),
                    span,
                    unserved,
                }),
                _conn: None,
            },
        );
    }
}

/// A call taken over from a dead node, for [`Calls::adopt`]: its call task's start, the
/// sender of its dialog's events, its span and the record of its failure.
pub(crate) struct Adoption {
    /// The call (its `cluster.resume` says where it resumes).
    pub(crate) incoming: Box<call::Incoming>,
    /// Where its dialog's events go (the receiver is `incoming.events`).
    pub(crate) events: mpsc::UnboundedSender<DialogEvent>,
    /// Its log span.
    pub(crate) span: tracing::Span,
    /// Writes its record as failed when the caller refuses the re-INVITE.
    pub(crate) unserved: Box<dyn FnOnce(&'static str) + Send>,
}

/// Raises the open-file limit for `max_calls` calls and says what it is; the limits of SIP
/// over TCP, their total cap lowered to what the files left over allow when the limit stays
/// below what is needed.
fn open_file_limit(max_calls: usize) -> transport::TcpLimits {
    let mut limits = transport::TcpLimits::for_calls(max_calls);
    let needed = open_files::needed(max_calls, limits.total);
    let files = open_files::raise(needed);
    if let Some(e) = &files.error {
        tracing::warn!(error = %e, "cannot raise the open-file limit");
    }
    tracing::info!(
        limit = files.now,
        was = files.was,
        hard = files.hard,
        needed,
        max_calls,
        tcp_connections = limits.total,
        "open files"
    );
    if files.now < needed {
        let room = files
            .now
            .saturating_sub(open_files::needed(max_calls, 0))
            .max(transport::MAX_CONNECTIONS_PER_ADDRESS as u64);
        limits.total = limits
            .total
            .min(usize::try_from(room).unwrap_or(usize::MAX));
        let say = format!(
            "the open-file limit is {} (hard limit {}), below the {needed} that max_calls = \
             {max_calls} needs ({} per call, {} for the rest, {} for SIP over TCP): SIP over TCP \
             takes at most {} connections; raise the hard limit (ulimit -Hn, systemd's \
             LimitNOFILE) or lower max_calls",
            files.now,
            files.hard,
            open_files::FILES_PER_CALL,
            open_files::BASE_FILES,
            transport::max_connections(max_calls),
            limits.total
        );
        tracing::warn!("{say}");
        eprintln!("ivr serve: warning: {say}");
    }
    limits
}

/// Runs `ivr serve` until a shutdown signal; `Err` when it cannot start.
pub fn run(opts: ServeOptions) -> Result<(), ServeError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ivr")
        .build()
        .map_err(ServeError::Runtime)?;
    rt.block_on(serve(opts))
}

async fn serve(opts: ServeOptions) -> Result<(), ServeError> {
    let live = Live::start(opts.config.clone())?;
    let _watch = if opts.watch {
        match live.watch() {
            Ok(g) => Some(g),
            Err(e) => {
                tracing::warn!(error = %e, "not watching files for changes");
                None
            }
        }
    } else {
        None
    };
    let deployment = live.current();
    if !deployment.left_out.is_empty() {
        eprint!("{}", deployment.left_out);
        tracing::warn!("{}", deployment.left_out);
    }
    if !deployment.warnings.trim().is_empty() {
        tracing::debug!("{}", deployment.warnings);
    }
    let server = deployment.config.server.clone();
    let sip_text = opts.sip.clone().unwrap_or(server.sip.clone());
    let sip_addr: SocketAddr = sip_text
        .parse()
        .map_err(|_| ServeError::SipAddress(sip_text.clone()))?;
    let (lo, hi) = parse_range(&server.rtp_ports)?;
    let max_calls = opts.max_calls.unwrap_or(server.max_calls) as usize;
    let rtp_timeout = opts
        .rtp_timeout
        .unwrap_or(Duration::from_millis(server.rtp_timeout_ms));
    let tcp_limits = open_file_limit(max_calls);

    // A cluster node: its records and the platform's tables go to the shared database.
    let cluster_config = opts.cluster.apply(deployment.config.cluster.as_ref())?;
    let (cluster, cluster_pool) = match cluster_config {
        Some(c) => {
            let (cluster, pool) = cluster::Cluster::open(c)
                .await
                .map_err(ServeError::ClusterDatabase)?;
            (Some(cluster), Some(pool))
        }
        None => (None, None),
    };
    let db = match data::open_configured(&deployment.config).await {
        Ok(db) => Some(db),
        Err(e) => {
            tracing::error!(error = %e, "no database: lookups fail and calls are not recorded");
            eprintln!("ivr serve: no database ({e}); lookups fail and calls are not recorded");
            None
        }
    };
    let records_pool = cluster_pool
        .clone()
        .or_else(|| db.as_ref().map(|d| d.pool().clone()));
    let writer = records_pool.as_ref().map(|pool| {
        // The nodes of a cluster share the deployment folder: each spools on its own.
        let spool_dir = match &cluster {
            Some(c) => deployment
                .config
                .base
                .join(SPOOL_DIR)
                .join(format!("node-{}", c.config.node)),
            None => deployment.config.base.join(SPOOL_DIR),
        };
        RecordWriter::start(
            pool.clone(),
            WriterOptions {
                spool: Some(ivr_data::spool::Spool::new(spool_dir, SPOOL_MAX_BYTES)),
                // Calls a killed run left in progress are closed as failed; not on a cluster
                // node, whose shared table holds the other nodes' calls in progress too.
                interrupted_at: cluster.is_none().then(local_now),
                ..WriterOptions::default()
            },
            &tokio::runtime::Handle::current(),
        )
    });
    let threads = if opts.pacer_threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
    } else {
        opts.pacer_threads
    };
    let pacer = Pacer::start(threads).map_err(ServeError::Pacer)?;
    // Recordings a killed run left open get their headers fixed before any new one starts.
    let folder = deployment.config.recording.folder.clone();
    let repaired = tokio::task::spawn_blocking(move || ivr_media::recorder::repair_folder(&folder))
        .await
        .unwrap_or(0);
    if repaired > 0 {
        tracing::warn!(
            repaired,
            "call recordings left open by the last run were repaired"
        );
    }
    let recorder = ivr_media::recorder::Recorder::start().map_err(ServeError::Recorder)?;
    if let Some(pool) = &records_pool {
        recording_purge::start(Arc::clone(&live), pool.clone());
    }
    let ports = PortPool::new(sip_addr.ip(), lo, hi);
    let (in_tx, in_rx) = mpsc::channel(65_536);
    let bound = transport::start(sip_addr, in_tx, tcp_limits)
        .await
        .map_err(|source| ServeError::Listen {
            addr: sip_addr,
            source,
        })?;
    // SIP over TLS: its own listener, feeding the same queue under the same caps.
    let bound_tls = match &server.tls {
        Some(t) => {
            let addr: SocketAddr = t
                .sip
                .parse()
                .map_err(|_| ServeError::TlsAddress(t.sip.clone()))?;
            let config = tls::server_config(&t.files, &[])?;
            Some(
                transport::start_tls(addr, config, &bound.sender)
                    .await
                    .map_err(|source| ServeError::Listen { addr, source })?,
            )
        }
        None => None,
    };
    // HTTPS: the certificate is read before anything listens.
    let https = match &server.https {
        Some(files) => Some(tls::server_config(files, &[b"http/1.1"])?),
        None => None,
    };
    let (core_tx, core_rx) = mpsc::unbounded_channel();
    let (acd, acd_changes) = match &cluster {
        // A cluster node: the front sends queue operations to the leader's ACD; offers go
        // through the proxy.
        Some(c) => {
            let via = c.config.sip_via.as_deref().and_then(cluster::proxy_address);
            let (local, changes) = AcdTask::start_via(&deployment.config, writer.clone(), via);
            cluster::acd_front::start(Arc::clone(c), local, changes)
        }
        None => AcdTask::start(&deployment.config, writer.clone()),
    };
    // Agents' browser consoles (`/agent`).
    let consoles = agent_hub::AgentHub::new(acd.clone());
    let services = Services::new(Shared {
        live: Arc::clone(&live),
        catalogs: catalog::Catalogs::new(db.clone()).with_platform(cluster_pool.clone()),
        writer: writer.clone(),
        pacer,
        recorder,
        ports,
        core: core_tx.clone(),
        sip: bound.sender.clone(),
        acd,
        acd_changes,
        consoles,
        live_calls: live_calls::LiveCalls::new(),
        running: AtomicUsize::new(0),
        rtp_timeout,
        max_calls,
        http: http_limits::HttpStats::default(),
        campaigns: campaigns::CampaignHub::new(),
        trunks: trunk_channels::TrunkChannels::default(),
        consultations: Arc::default(),
        taps: supervise_taps::Taps::default(),
        cluster: cluster.clone(),
    });
    // A new version going live brings its agents and queues to the ACD, and the agents'
    // credentials to the registrar.
    {
        let services = services.clone();
        let mut swaps = live.subscribe();
        tokio::spawn(async move {
            while swaps.changed().await.is_ok() {
                let d = services.live.current();
                let _ = services.core.send(CoreMsg::Credentials {
                    realm: d.config.server.realm.clone(),
                    credentials: agent_credentials(&d.config),
                });
                let _ = services
                    .core
                    .send(CoreMsg::Edge(edge_policy(&d.config.server)));
                if services
                    .acd
                    .send(AcdMsg::Reconfigure(Arc::new(d.config.clone())))
                    .is_err()
                {
                    return;
                }
            }
        });
    }
    // Browser calls count against `max_calls` in the SIP core, and SIP calls in the browser's.
    let browser_calls = Arc::new(AtomicUsize::new(0));
    let host = SipHost {
        services: services.clone(),
        elsewhere: Arc::clone(&browser_calls),
        local_ips: LocalIps::new(),
        calls: HashMap::new(),
    };
    // Agents' registrations go to the ACD.
    let (reg_tx, mut reg_rx) =
        mpsc::channel::<ivr_sip::registrar::Registration>(sip_task::REGISTRATIONS_QUEUE);
    {
        let services = services.clone();
        tokio::spawn(async move {
            while let Some(r) = reg_rx.recv().await {
                // Calls are offered to the agent on the connection it registered over.
                if r.peer.conn != 0 {
                    services
                        .sip
                        .keep_open(r.peer.conn, Duration::from_millis(r.expires.unsigned_abs()));
                }
                // A phone takes the agent over from its console; its unregistration leaves
                // a console's binding alone.
                if !services.consoles.sip_registration(&r.agent, r.expires > 0) {
                    continue;
                }
                let msg = AcdMsg::Registration {
                    contact: acd_task::contact_of(&r),
                    conn: r.peer.conn,
                    agent: r.agent,
                    expires: Duration::from_millis(r.expires.unsigned_abs()),
                };
                if services.acd.send(msg).is_err() {
                    return;
                }
            }
        });
    }
    let core = Core::new(
        host,
        CoreOptions {
            timers: Timers::default(),
            max_calls,
            answer_after: i64::try_from(opts.answer_after.as_millis()).unwrap_or(i64::MAX),
            local: bound.udp_addr,
            edge: edge_policy(&server),
            bounds: Bounds::for_calls(max_calls),
        },
    )
    .with_registrar(Registrar::new(
        server.realm.clone(),
        agent_credentials(&deployment.config),
    ));
    let core = match &bound_tls {
        Some(t) => core.with_tls_port(t.addr.port()),
        None => core,
    };
    let stats = Arc::new(CoreStats::default());
    tokio::spawn(sip_task::run(
        core,
        in_rx,
        core_rx,
        Outlets {
            sender: bound.sender.clone(),
            registrations: Some(reg_tx),
            stats: Arc::clone(&stats),
        },
    ));
    campaigns::start_all(&services);
    {
        let services = services.clone();
        tokio::spawn(async move { callback::reload(&services).await });
    }
    let browser = browser::Browser::new(services.clone(), Arc::clone(&stats), browser_calls);
    // The HTTP interface: an explicit `--http` must bind; `[server] http` only warns.
    let http_text = opts.http.clone().unwrap_or(server.http.clone());
    let (stop_http, http_stopped) = tokio::sync::watch::channel(false);
    let http_addr = match tokio::net::TcpListener::bind(&http_text).await {
        Ok(listener) => {
            let addr = listener.local_addr().ok();
            let agent_api = agent_api::AgentApi::new(services.clone());
            let app = http::router(http::HttpState {
                services: services.clone(),
                stats: Arc::clone(&stats),
                browser: Some(Arc::clone(&browser)),
                agents: Some(agent_api.clone()),
                dashboard: Some(dashboard::Dashboard::start(
                    services.clone(),
                    records_pool.clone(),
                )),
                console: Some(agent_console::Console::new(agent_api.clone())),
                supervisors: Some(supervisor::Supervisors::new(
                    &agent_api,
                    db.as_ref().map(|d| d.pool().clone()),
                )),
            });
            let limits = http::Limits {
                max_connections: server.max_http_connections as usize,
                max_per_address: server.max_http_connections_per_address as usize,
            };
            tokio::spawn(http::serve(
                listener,
                app,
                limits,
                services.clone(),
                https.clone().map(tokio_rustls::TlsAcceptor::from),
                http_stopped,
            ));
            addr
        }
        Err(source) if opts.http.is_some() => {
            return Err(ServeError::Http {
                addr: http_text,
                source,
            });
        }
        Err(e) => {
            tracing::warn!(http = %http_text, error = %e, "no HTTP interface");
            None
        }
    };
    if let Some(c) = &cluster {
        takeover::start(services.clone(), Arc::clone(c), bound.udp_addr);
        c.start(
            format!("sip:{}", bound.udp_addr),
            http_addr.map_or_else(String::new, |a| {
                format!("{}://{a}", if https.is_some() { "https" } else { "http" })
            }),
            Arc::clone(&live),
        );
        println!(
            "ivr serve: cluster node {} (shared database {}{})",
            c.config.node,
            ivr_data::connect::redact_url(&c.config.database),
            c.config
                .sip_via
                .as_ref()
                .map_or_else(String::new, |v| format!(", behind {v}"))
        );
    }
    let routes: Vec<String> = deployment
        .config
        .routes
        .iter()
        .map(|(k, v)| format!("{k} → {v}"))
        .collect();
    println!(
        "ivr serve: SIP on udp:{} and tcp:{}{}, RTP ports {lo}-{hi}, at most {max_calls} calls; \
         {} on {}; deployment {}; flow versions: {}; routes: {}",
        bound.udp_addr,
        bound.tcp_addr,
        bound_tls
            .as_ref()
            .map_or_else(String::new, |t| format!(" and tls:{}", t.addr)),
        if https.is_some() { "HTTPS" } else { "HTTP" },
        http_addr.map_or_else(|| "none".to_string(), |a| a.to_string()),
        deployment.version,
        deployment.flow_versions(),
        if routes.is_empty() {
            "none".to_string()
        } else {
            routes.join(", ")
        }
    );

    wait_for_shutdown(&live).await;
    println!(
        "ivr serve: stopping; {} call(s) may finish within {} s",
        stats.active.load(Ordering::Relaxed) + browser.active(),
        opts.drain.as_secs()
    );
    let _ = core_tx.send(CoreMsg::Drain);
    browser.drain();
    let deadline = Instant::now() + opts.drain;
    while Instant::now() < deadline
        && (stats.active.load(Ordering::Relaxed) > 0
            || services.running.load(Ordering::Relaxed) > 0)
    {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
            () = second_signal() => break,
        }
    }
    let _ = core_tx.send(CoreMsg::TerminateAll);
    browser.terminate_all();
    let _ = stop_http.send(true);
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until && services.running.load(Ordering::Relaxed) > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Give the BYEs a moment on the wire.
    tokio::time::sleep(Duration::from_millis(200)).await;
    if let Some(w) = writer {
        let s = w.shutdown().await;
        println!(
            "ivr serve: stopped; {} call(s) answered, {} record(s) written",
            stats.answered.load(Ordering::Relaxed),
            s.written
        );
    }
    Ok(())
}

#[cfg(unix)]
async fn wait_for_shutdown(live: &Arc<Live>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                let live = Arc::clone(live);
                let outcome = tokio::task::spawn_blocking(move || live.reload()).await;
                let said = match outcome {
                    Ok(crate::live::ReloadOutcome::Swapped { version }) => format!("deployment {version} live"),
                    Ok(crate::live::ReloadOutcome::Unchanged) => "nothing changed".into(),
                    Ok(crate::live::ReloadOutcome::Failed(f)) => {
                        format!("failed with {} error(s); the live deployment stays", f.errors)
                    }
                    Err(e) => format!("failed: {e}"),
                };
                println!("ivr serve: reload on SIGHUP: {said}");
            }
            _ = term.recv() => return,
            _ = int.recv() => return,
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_shutdown(_live: &Arc<Live>) {
    let _ = tokio::signal::ctrl_c().await;
}

async fn second_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

/// Who may INVITE how often, from `[server] trusted` and `invite_rate` (networks that do not
/// read are left out; `ivr check` reports them, and a deployment with them does not load).
pub fn edge_policy(server: &ivr_compiler::config::ServerConfig) -> EdgePolicy {
    EdgePolicy {
        trusted: server
            .trusted_networks()
            .into_iter()
            .filter_map(|(ip, prefix)| Network::new(ip, prefix))
            .collect(),
        invite_rate: server.invite_rate.max(1),
    }
}

/// The registrar's credentials from a configuration: `[agents.ID] ha1` by agent id (agents
/// without a valid `ha1` are left out; `ivr check` reports them).
pub fn agent_credentials(
    config: &ivr_compiler::config::Config,
) -> std::collections::HashMap<String, String> {
    config
        .agents
        .iter()
        .filter(|(_, a)| a.ha1.len() == 32 && a.ha1.chars().all(|c| c.is_ascii_hexdigit()))
        .map(|(id, a)| (id.clone(), a.ha1.to_ascii_lowercase()))
        .collect()
}

#[cfg(test)]
mod cluster_overrides_tests {
    use super::*;
    use ivr_compiler::cluster_config::ClusterConfig;

    #[test]
    fn the_command_line_over_the_file() {
        let none = ClusterOverrides::default();
        assert_eq!(none.apply(None).ok(), Some(None), "no cluster at all");
        let file = ClusterConfig::new(Some("a".into()), Some("postgres://h/db".into()), None)
            .expect("valid");
        let node_b = ClusterOverrides {
            node: Some("b".into()),
            ..ClusterOverrides::default()
        };
        let c = node_b
            .apply(Some(&file))
            .expect("valid")
            .expect("a cluster");
        assert_eq!(
            (c.node.as_str(), c.database.as_str()),
            ("b", "postgres://h/db")
        );
        // Without a file's [cluster], the command line must give both.
        assert!(node_b.apply(None).is_err());
        let sqlite = ClusterOverrides {
            node: Some("b".into()),
            database: Some("sqlite://ivr-data/ivr.db".into()),
            sip_via: None,
        };
        let e = sqlite.apply(None).expect_err("SQLite refused").to_string();
        assert!(e.contains("PostgreSQL"), "{e}");
        let via_only = ClusterOverrides {
            sip_via: Some("sip:127.0.0.1:5060".into()),
            ..ClusterOverrides::default()
        };
        assert!(via_only.apply(None).is_err());
    }
}
