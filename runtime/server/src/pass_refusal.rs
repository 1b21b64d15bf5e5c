//! Why an agent's transfer was refused ([`PassRefusal`]): the status of the REFER's final
//! NOTIFY and the sentence the console shows. Shared by the call's driver, which decides,
//! and the ACD task and HTTP side, which carry the answer.

use ivr_acd::TransferRefused;

/// Why a transfer was refused: the status of the REFER's final NOTIFY and the console's
/// sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum PassRefusal {
    /// The caller is not talking with this agent (yet, or any more), or a transfer is in
    /// progress already.
    #[error("the agent is not talking with a caller")]
    NotConnected,
    /// The ACD refused the queue or the agent.
    #[error("{0}")]
    Queue(TransferRefused),
    /// The agent named itself.
    #[error("an agent cannot transfer a call to itself")]
    Yourself,
    /// REFER with Replaces naming no consultation call of ours (RFC 3891: 481).
    #[error("the Replaces of the REFER names no consultation call in progress")]
    NoSuchDialog,
    /// REFER with Replaces naming another agent's call.
    #[error("the Replaces of the REFER names a call this agent did not place")]
    NotYourDialog,
    /// REFER with Replaces naming a consultation whose target has not answered yet.
    #[error("the consultation's target has not answered yet: transfer once it has")]
    EarlyDialog,
    /// Neither a queue, an agent nor a number.
    #[error("`{0}` is neither queue.NAME, an agent nor a number")]
    Unknown(String),
    /// The ACD or the call did not answer (shutting down, or in time).
    #[error("the server did not answer in time")]
    Unanswered,
    /// A consultation, or a transfer to a number, refused or failed.
    #[error("{0}")]
    Consult(crate::consult_request::ConsultRefusal),
}

impl PassRefusal {
    /// The status line of the final NOTIFY (`message/sipfrag`).
    pub fn code(&self) -> u16 {
        match self {
            PassRefusal::NotConnected => 481,
            PassRefusal::Queue(
                TransferRefused::UnknownQueue(_) | TransferRefused::UnknownAgent(_),
            )
            | PassRefusal::Unknown(_) => 404,
            PassRefusal::Queue(
                TransferRefused::NoAgents(_)
                | TransferRefused::AgentOffline(_)
                | TransferRefused::NoQueue(_),
            ) => 480,
            PassRefusal::Yourself => 403,
            PassRefusal::NoSuchDialog => 481,
            PassRefusal::NotYourDialog => 403,
            PassRefusal::EarlyDialog => 480,
            PassRefusal::Unanswered => 503,
            PassRefusal::Consult(c) => c.code(),
        }
    }
}
