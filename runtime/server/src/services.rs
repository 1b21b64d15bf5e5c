//! [`Services`]: the one handle on what the parts of `ivr serve` share — the live deployment,
//! the database with each deployment's catalog, the record writer, the pacer, the RTP port
//! pool, the SIP core and transport, the ACD task, the agents' consoles, the registry of calls
//! in progress, the HTTP interface's counters and the options calls run with. Made once at start-up; cheap to clone (one
//! `Arc`), it goes to the SIP core's admission, every call task, the browser channel and the
//! HTTP pages.

use crate::acd_task::{AcdChanges, AcdHandle};
use crate::agent_hub::AgentHub;
use crate::catalog::Catalogs;
use crate::http_limits::HttpStats;
use crate::live::Live;
use crate::live_calls::LiveCalls;
use crate::sip_task::CoreMsg;
use crate::transport;
use ivr_data::records::RecordWriter;
use ivr_media::pacer::Pacer;
use ivr_media::ports::PortPool;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;
use tokio::sync::mpsc;

/// The handles `ivr serve`'s calls and pages share; see [`Shared`] for each.
#[derive(Clone)]
pub struct Services(Arc<Shared>);

/// What [`Services`] holds.
pub struct Shared {
    /// The live deployment and its reloads.
    pub live: Arc<Live>,
    /// The database for lookups, with each deployment's catalog.
    pub catalogs: Catalogs,
    /// Where call records and queue events go (none: no database).
    pub writer: Option<RecordWriter>,
    /// The pacer (prompts' RTP).
    pub pacer: Pacer,
    /// The writer thread of whole-call recordings.
    pub recorder: ivr_media::recorder::Recorder,
    /// RTP ports: a call's, and those of its transfers' legs.
    pub ports: Arc<PortPool>,
    /// The SIP core (the BYE of a call, the legs of transfers).
    pub core: mpsc::UnboundedSender<CoreMsg>,
    /// The SIP transport (a transfer to a `transport=tcp` URI opens its connection there).
    pub sip: transport::Sender,
    /// The ACD task (queue transfers, agents' states).
    pub acd: AcdHandle,
    /// Ticks when the ACD's agents or queues may have changed.
    pub acd_changes: AcdChanges,
    /// Agents' browser consoles (legs to `webrtc:ID` contacts go there).
    pub consoles: Arc<AgentHub>,
    /// The registry of calls in progress (dashboard, `/metrics`).
    pub live_calls: Arc<LiveCalls>,
    /// Calls whose flow is running, on every channel (for shutdown and `/metrics`).
    pub running: AtomicUsize,
    /// A call ends after this long without RTP from the caller.
    pub rtp_timeout: Duration,
    /// The most calls at once (SIP dialogs and browser calls together).
    pub max_calls: usize,
    /// What the HTTP interface refused (connections, requests, logins).
    pub http: HttpStats,
    /// The campaigns' controls and progress.
    pub campaigns: Arc<crate::campaign_hub::CampaignHub>,
    /// Each trunk's outbound channels (campaigns and agents' transfers to numbers).
    pub trunks: crate::trunk_channels::TrunkChannels,
    /// Agents' consultation calls in progress (attended transfers find them here).
    pub consultations: Arc<crate::consultations::Consultations>,
    /// Calls a supervisor may listen to, whisper or barge into.
    pub taps: crate::supervise_taps::Taps,
    /// This node of a cluster (none: a single node).
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl Services {
    /// The handle on `shared`.
    pub fn new(shared: Shared) -> Services {
        Services(Arc::new(shared))
    }
}

impl std::ops::Deref for Services {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Services")
    }
}
