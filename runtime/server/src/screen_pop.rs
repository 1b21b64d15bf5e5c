//! The screen pop: the call data an agent sees when a call is offered. A call's transfer builds
//! it ([`crate::call`]), the ACD task keeps it for the agent page ([`crate::acd_task`]), and it
//! reaches the agent as `X-IVR-*` headers on the INVITE or on the console's page
//! ([`crate::agent_hub`]).

use serde::{Deserialize, Serialize};

/// The call data an agent sees (screen pop), as JSON for the agent page and as `X-IVR-*`
/// headers on the INVITE.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ScreenPop {
    /// The call id.
    pub call_id: String,
    /// The calling number.
    pub caller: String,
    /// The dialled number.
    pub called: String,
    /// The flow.
    pub flow: String,
    /// The queue.
    pub queue: String,
    /// The priority it waits with.
    pub priority: i64,
    /// The attached call data: label (as written in the flow) and value.
    pub data: Vec<(String, String)>,
    /// The nodes the caller went through, in order (the last ones).
    pub path: Vec<String>,
    /// The agent who transferred the call here (none: it came from the flow).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transferred_by: Option<String>,
    /// The transferring agent's note for the next agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// A kept callback: the caller hung up and is dialled back once the agent answers.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub callback: bool,
    /// For a callback: how long (seconds) the place has waited in the queue, counting the
    /// caller's wait on the line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waited: Option<u64>,
}

/// Most characters of a transfer's note (a longer one is cut).
pub const NOTE_CHARS: usize = 500;

impl ScreenPop {
    /// The `X-IVR-*` headers of the INVITE to the agent.
    pub fn headers(&self) -> Vec<(String, String)> {
        use ivr_sip::outbound::header_name;
        let mut h = vec![
            ("X-IVR-Call-Id".to_string(), self.call_id.clone()),
            ("X-IVR-Caller".to_string(), self.caller.clone()),
            ("X-IVR-Called".to_string(), self.called.clone()),
            ("X-IVR-Flow".to_string(), self.flow.clone()),
        ];
        if !self.queue.is_empty() {
            h.push(("X-IVR-Queue".to_string(), self.queue.clone()));
            h.push(("X-IVR-Priority".to_string(), self.priority.to_string()));
        }
        for (label, value) in &self.data {
            let name = format!("X-IVR-{}", header_name(label));
            // `attach caller` says what X-IVR-Caller already does.
            if name.len() > 6 && !h.iter().any(|(n, _)| n.eq_ignore_ascii_case(&name)) {
                h.push((name, value.clone()));
            }
        }
        if !self.path.is_empty() {
            h.push(("X-IVR-Path".to_string(), self.path.join(",")));
        }
        if let Some(by) = &self.transferred_by {
            h.push(("X-IVR-Transferred-By".to_string(), by.clone()));
        }
        if self.callback {
            h.push(("X-IVR-Callback".to_string(), "true".to_string()));
            if let Some(w) = self.waited {
                h.push(("X-IVR-Waited".to_string(), w.to_string()));
            }
        }
        if let Some(note) = self.note.as_ref().filter(|n| !n.is_empty()) {
            // One header line: no line breaks or other control characters.
            let note: String = note
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            h.push(("X-IVR-Note".to_string(), note));
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_screen_pop_goes_into_headers() {
        let pop = ScreenPop {
            call_id: "c1".into(),
            caller: "13800000001".into(),
            called: "10010".into(),
            flow: "hotline".into(),
            queue: "general".into(),
            priority: 10,
            data: vec![
                ("customer.id".into(), "42".into()),
                ("customer.name".into(), "王芳".into()),
            ],
            path: vec!["welcome".into(), "main_menu".into()],
            transferred_by: Some("2001".into()),
            note: Some("wants a refund\r\nof 42".into()),
            callback: true,
            waited: Some(75),
        };
        let h = pop.headers();
        let get = |n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("X-IVR-Caller"), Some("13800000001"));
        assert_eq!(get("X-IVR-Customer-Id"), Some("42"));
        assert_eq!(get("X-IVR-Customer-Name"), Some("王芳"));
        assert_eq!(get("X-IVR-Queue"), Some("general"));
        assert_eq!(get("X-IVR-Priority"), Some("10"));
        assert_eq!(get("X-IVR-Path"), Some("welcome,main_menu"));
        assert_eq!(get("X-IVR-Transferred-By"), Some("2001"));
        assert_eq!(get("X-IVR-Note"), Some("wants a refund  of 42"));
        assert_eq!(get("X-IVR-Callback"), Some("true"));
        assert_eq!(get("X-IVR-Waited"), Some("75"));
    }
}
