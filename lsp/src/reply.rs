//! Why a request gets an error instead of a result.

/// Why a request has no answer.
#[derive(Debug)]
pub enum Failure {
    /// Its parameters do not parse.
    Params(serde_json::Error),
    /// It cannot be done (a rename to a name that is not one).
    Refused(String),
}

impl From<serde_json::Error> for Failure {
    fn from(e: serde_json::Error) -> Self {
        Failure::Params(e)
    }
}
