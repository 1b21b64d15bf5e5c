//! The campaigns' controls and progress as the HTTP interface and the dashboard reach them
//! ([`CampaignHub`]); the tasks that dial are in `campaigns.rs`.

use indexmap::IndexMap;
use ivr_dialler::Status;
use serde::Serialize;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// What `ivr campaign start|pause` asks of a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Dial.
    Start,
    /// Place no new call.
    Pause,
}

/// A campaign's state as the HTTP interface shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CampaignView {
    /// The campaign's name.
    pub name: String,
    /// Its flow.
    pub flow: String,
    /// Its trunk.
    pub trunk: String,
    /// The dialler's figures.
    #[serde(flatten)]
    pub status: Status,
    /// Why the campaign cannot dial (no database, its flow not started ...), if so.
    pub error: Option<String>,
}

pub(crate) struct Entry {
    pub(crate) control: mpsc::Sender<Control>,
    pub(crate) view: Arc<Mutex<CampaignView>>,
}

/// The campaigns of `ivr serve`: their controls and their progress.
#[derive(Default)]
pub struct CampaignHub {
    pub(crate) entries: Mutex<IndexMap<String, Entry>>,
}

impl CampaignHub {
    /// An empty hub (`campaigns::start_all` fills it).
    pub fn new() -> Arc<CampaignHub> {
        Arc::new(CampaignHub::default())
    }

    /// Every campaign's view, in configuration order.
    pub fn views(&self) -> Vec<CampaignView> {
        self.entries
            .lock()
            .map(|e| {
                e.values()
                    .filter_map(|x| x.view.lock().ok().map(|v| v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// One campaign's view.
    pub fn view(&self, name: &str) -> Option<CampaignView> {
        let e = self.entries.lock().ok()?;
        let v = e.get(name)?.view.lock().ok()?.clone();
        Some(v)
    }

    /// Starts or pauses a campaign; `false` when there is no such campaign.
    pub async fn control(&self, name: &str, c: Control) -> bool {
        let tx = match self.entries.lock() {
            Ok(e) => e.get(name).map(|x| x.control.clone()),
            Err(_) => None,
        };
        match tx {
            Some(tx) => tx.send(c).await.is_ok(),
            None => false,
        }
    }
}
