//! What an agent asks of a consultation ([`ConsultAction`]: start one, complete it, cancel
//! it) and why a consultation or a transfer to a number is refused or fails
//! ([`ConsultRefusal`]: the sentence the console shows and the REFER's NOTIFY status). Shared by
//! the call's driver (`call/consult.rs`), which decides, and the ACD task and HTTP side, which
//! carry the request and the answer.

/// What an agent asks of the consultation of the call it talks with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ConsultAction {
    /// Hold the caller and ring `target` (`queue.NAME`, an agent id or a number) for the agent,
    /// with `note` for the target agent's screen pop.
    Start {
        /// Where to.
        target: String,
        /// The note for the next agent.
        note: String,
    },
    /// Bridge the caller to the target and release the agent.
    Complete,
    /// End the target's leg and bridge the caller back to the agent.
    Cancel,
}

/// Why a consultation (or a transfer to a number) was refused or did not reach its target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum ConsultRefusal {
    /// A second consultation while one is in progress.
    #[error("a consultation is in progress already: complete or cancel it first")]
    Busy,
    /// Complete or cancel without a consultation.
    #[error("there is no consultation in progress")]
    None,
    /// Complete before the target answered.
    #[error("the target has not answered yet: wait, or cancel")]
    NotAnswered,
    /// A number, and no trunk to dial it through.
    #[error(
        "cannot call the number {0}: there is no default trunk ([trunks.default], or a single [trunks.*])"
    )]
    NoTrunk(String),
    /// Every channel of the trunk is taken.
    #[error("cannot call the number {number}: every channel of trunk `{trunk}` is in use")]
    TrunkFull {
        /// The number.
        number: String,
        /// The trunk.
        trunk: String,
    },
    /// The target was busy, declined, did not answer or could not be reached.
    #[error("{target} {why}: you are back with the caller")]
    Failed {
        /// The target as the agent named it.
        target: String,
        /// `is busy`, `did not answer`, `could not be reached (status N)`.
        why: String,
    },
    /// No RTP port for the target's leg.
    #[error("no free RTP port for the call to the target")]
    NoPort,
}

impl ConsultRefusal {
    /// The status line of a REFER's final NOTIFY (`message/sipfrag`) for this refusal.
    pub fn code(&self) -> u16 {
        match self {
            ConsultRefusal::Busy => 491,
            ConsultRefusal::None | ConsultRefusal::NotAnswered => 481,
            ConsultRefusal::NoTrunk(_) => 403,
            ConsultRefusal::TrunkFull { .. } | ConsultRefusal::NoPort => 503,
            ConsultRefusal::Failed { why, .. } if why.starts_with("is busy") => 486,
            ConsultRefusal::Failed { why, .. } if why.starts_with("did not answer") => 480,
            ConsultRefusal::Failed { .. } => 503,
        }
    }

    /// The target's leg failed with SIP status `code`.
    pub fn failed(target: &str, code: u16) -> ConsultRefusal {
        let why = match code {
            486 | 600 | 603 => "is busy or declined".to_string(),
            408 | 480 | 487 => "did not answer".to_string(),
            c => format!("could not be reached (status {c})"),
        };
        ConsultRefusal::Failed {
            target: target.to_string(),
            why,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_read_as_sentences_with_their_status() {
        let busy = ConsultRefusal::failed("2002", 486);
        assert_eq!(
            busy.to_string(),
            "2002 is busy or declined: you are back with the caller"
        );
        assert_eq!(busy.code(), 486);
        assert_eq!(ConsultRefusal::failed("13900000000", 408).code(), 480);
        assert_eq!(ConsultRefusal::failed("x", 404).code(), 503);
        assert!(
            ConsultRefusal::NoTrunk("139".into())
                .to_string()
                .contains("no default trunk")
        );
    }
}
