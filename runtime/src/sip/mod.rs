//! SIP for `ivr serve`, in layers (like ezk): rsip parses and builds messages ([`message`]
//! adds the helpers we need on top); [`transaction`] holds the RFC 3261 transaction state
//! machines with their timers as data (sans-IO); [`dialog`] the dialog state and in-dialog
//! requests; [`registrar`] agents' REGISTER with digest authentication (sans-IO);
//! [`transport`] UDP and TCP on tokio; [`ua`] the user-agent core, one task that owns every
//! transaction and dialog and maps dialogs to calls.

pub mod dialog;
pub mod message;
pub mod outbound;
pub mod registrar;
pub mod transaction;
pub mod transport;
pub mod ua;
