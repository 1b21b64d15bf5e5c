//! A call saved where it is and resumed elsewhere (a cluster's takeover of the calls of a node
//! that died): [`Saved`] is what a call's checkpoint holds of the engine — the node it is in,
//! its language, its variables (never a masked one) and the tasks it completed — and
//! [`crate::Call::resume`] makes a call that enters that node afresh: its prompt from the
//! start, a collecting node asked again (a masked input's digits were never saved).
//!
//! Values travel as JSON ([`encode_value`], [`decode_value`]); what is read back is checked:
//! bounded sizes and depth, and each variable kept only when the flow has a variable of that
//! name and type (a newer version of the flow may differ).

use crate::Flow;
use crate::value::Value;
use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use ivr_compiler::program::Type;
use rust_decimal::Decimal;
use serde_json::{Value as Json, json};
use std::str::FromStr;
use std::sync::Arc;

/// Most variables a saved call holds.
pub const MAX_VARIABLES: usize = 512;
/// Longest text value kept (bytes); longer ones are not restored.
pub const MAX_TEXT: usize = 4_096;
/// Most fields of a saved row.
pub const MAX_ROW_FIELDS: usize = 128;
/// Most tasks (`served`) kept.
pub const MAX_SERVED: usize = crate::SERVED_MAX;
/// Longest name (node, variable, task, language) accepted.
pub const MAX_NAME: usize = 256;

/// What a call's checkpoint holds of the engine.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Saved {
    /// The node the call is in, by name.
    pub node: String,
    /// The prompt language tag.
    pub language: String,
    /// Variables that hold a value, by name; masked ones are never here.
    pub variables: Vec<(String, Value)>,
    /// The self-service tasks completed so far.
    pub served: Vec<String>,
}

/// Why a saved call cannot be resumed in a flow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResumeError {
    /// The flow has no node of that name (a newer version removed it).
    #[error("the flow `{flow}` has no node `{node}`")]
    NoSuchNode {
        /// The flow.
        flow: String,
        /// The node.
        node: String,
    },
}

/// A value as JSON: `null`, or `[kind, value]` (`["t", "text"]`, `["n", "1.5"]`, `["m",
/// "10.00"]`, `["b", true]`, `["ms", 2000]`, `["date", "2026-12-10"]`, `["time",
/// "09:30:00"]`, `["dt", "2026-12-10T09:30:00"]`, `["row", [...]]`).
pub fn encode_value(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Text(t) => json!(["t", t]),
        Value::Number(d) => json!(["n", d.to_string()]),
        Value::Money(d) => json!(["m", d.to_string()]),
        Value::Bool(b) => json!(["b", b]),
        Value::Duration(ms) => json!(["ms", ms]),
        Value::Date(d) => json!(["date", d.format("%Y-%m-%d").to_string()]),
        Value::Time(t) => json!(["time", t.format("%H:%M:%S").to_string()]),
        Value::DateTime(t) => json!(["dt", t.format("%Y-%m-%dT%H:%M:%S").to_string()]),
        Value::Row(fields) => json!(["row", fields.iter().map(encode_value).collect::<Vec<_>>()]),
    }
}

/// A value read back from JSON ([`encode_value`]'s form); `None` for anything else, a text
/// over [`MAX_TEXT`], a row over [`MAX_ROW_FIELDS`] or rows within rows.
pub fn decode_value(j: &Json) -> Option<Value> {
    decode_at(j, 0)
}

fn decode_at(j: &Json, depth: u8) -> Option<Value> {
    if j.is_null() {
        return Some(Value::Null);
    }
    let [kind, v] = j.as_array()?.as_slice() else {
        return None;
    };
    let text = || v.as_str().filter(|s| s.len() <= MAX_TEXT);
    Some(match kind.as_str()? {
        "t" => Value::Text(text()?.to_string()),
        "n" => Value::Number(Decimal::from_str(text()?).ok()?),
        "m" => Value::Money(Decimal::from_str(text()?).ok()?),
        "b" => Value::Bool(v.as_bool()?),
        "ms" => Value::Duration(v.as_u64()?),
        "date" => Value::Date(NaiveDate::parse_from_str(text()?, "%Y-%m-%d").ok()?),
        "time" => Value::Time(NaiveTime::parse_from_str(text()?, "%H:%M:%S").ok()?),
        "dt" => Value::DateTime(NaiveDateTime::parse_from_str(text()?, "%Y-%m-%dT%H:%M:%S").ok()?),
        "row" if depth == 0 => {
            let items = v.as_array().filter(|a| a.len() <= MAX_ROW_FIELDS)?;
            let fields: Option<Vec<Value>> = items.iter().map(|f| decode_at(f, 1)).collect();
            Value::Row(fields?.into())
        }
        _ => return None,
    })
}

/// Variables as a JSON object (name → [`encode_value`]).
pub fn encode_variables(vars: &[(String, Value)]) -> Json {
    Json::Object(
        vars.iter()
            .map(|(n, v)| (n.clone(), encode_value(v)))
            .collect(),
    )
}

/// Variables read back from [`encode_variables`]' JSON: at most [`MAX_VARIABLES`], names up to
/// [`MAX_NAME`] bytes; what does not read is left out.
pub fn decode_variables(j: &Json) -> Vec<(String, Value)> {
    let Some(map) = j.as_object() else {
        return Vec::new();
    };
    map.iter()
        .filter(|(n, _)| n.len() <= MAX_NAME)
        .filter_map(|(n, v)| Some((n.clone(), decode_value(v)?)))
        .take(MAX_VARIABLES)
        .collect()
}

/// Whether `v` may be held by a variable of type `ty` in `flow` (a row: with the query's
/// number of fields).
fn fits(flow: &Flow, ty: &Type, v: &Value) -> bool {
    match (ty, v) {
        (_, Value::Null) => true,
        (Type::Text, Value::Text(_))
        | (Type::Number, Value::Number(_))
        | (Type::Money, Value::Money(_))
        | (Type::Bool, Value::Bool(_))
        | (Type::Date, Value::Date(_))
        | (Type::Time, Value::Time(_))
        | (Type::DateTime, Value::DateTime(_))
        | (Type::Duration, Value::Duration(_)) => true,
        (Type::Row(q), Value::Row(fields)) => flow
            .queries
            .get(q)
            .is_some_and(|def| def.fields.len() == fields.len()),
        _ => false,
    }
}

impl crate::Call {
    /// What a checkpoint of this call saves: the node it is in, its language, the variables
    /// that hold a value except masked ones, and the tasks it completed.
    pub fn saved(&self) -> Saved {
        let flow = self.flow();
        let program = &flow.program;
        let node = program
            .nodes
            .get(self.node() as usize)
            .map(|n| n.name.clone())
            .unwrap_or_default();
        let variables = program
            .vars
            .iter()
            .zip(self.values())
            .filter(|(info, v)| !info.masked && !matches!(v, Value::Null))
            .map(|(info, v)| (info.name.clone(), v.clone()))
            .collect();
        Saved {
            node,
            language: self.language().to_string(),
            variables,
            served: self.served().to_vec(),
        }
    }

    /// A call of `flow` that, once fed [`crate::Event::Start`], enters node `saved.node`
    /// afresh (its prompts from the start; a collecting node asks again) with the saved
    /// variables, language and completed tasks. Variables the flow does not have (by name and
    /// type), and masked ones, stay unset; the menus remembered for `back` are not saved, so
    /// `back` goes to the flow's entry until a menu is entered again.
    pub fn resume(
        flow: Arc<Flow>,
        info: crate::CallInfo,
        saved: &Saved,
    ) -> Result<Self, ResumeError> {
        let Some(node) = flow.program.node_id(&saved.node) else {
            return Err(ResumeError::NoSuchNode {
                flow: flow.program.name.clone(),
                node: saved.node.chars().take(MAX_NAME).collect(),
            });
        };
        let mut vars = vec![Value::Null; flow.program.vars.len()];
        for (name, value) in saved.variables.iter().take(MAX_VARIABLES) {
            let Some(id) = flow.program.var_id(name) else {
                continue;
            };
            let Some(info) = flow.program.vars.get(id as usize) else {
                continue;
            };
            if info.masked || !fits(&flow, &info.ty, value) {
                continue;
            }
            if let Some(slot) = vars.get_mut(id as usize) {
                *slot = value.clone();
            }
        }
        let language = flow
            .program
            .languages
            .iter()
            .position(|l| *l == saved.language)
            .and_then(|i| u8::try_from(i).ok())
            .unwrap_or(0);
        let served: Vec<String> = saved
            .served
            .iter()
            .filter(|t| t.len() <= MAX_NAME)
            .take(MAX_SERVED)
            .cloned()
            .collect();
        Ok(Self::resumed(flow, info, node, vars, language, served))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Call, CallInfo, Channel, Command, Event, Machine, QueryResult};

    fn hotline() -> Arc<Flow> {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
        let checked = ivr_compiler::check(&ivr_compiler::CheckOptions {
            config: Some(format!("{root}/ivr.toml").into()),
            paths: vec![format!("{root}/flows").into()],
        })
        .expect("check");
        assert_eq!(checked.error_count(), 0, "{:?}", checked.diagnostics);
        let program = checked.programs["hotline"].clone();
        Arc::new(Flow::new(program, &checked.config))
    }

    fn info() -> CallInfo {
        CallInfo {
            id: "c1".into(),
            caller: "13800000001".into(),
            called: "10010".into(),
            channel: Channel::Sip,
            contact: Vec::new(),
        }
    }

    fn drain(call: &mut Call) -> Vec<Command> {
        std::iter::from_fn(|| call.poll_output()).collect()
    }

    fn node_name(flow: &Flow, c: &Command) -> Option<String> {
        match c {
            Command::Enter { node } => flow
                .program
                .nodes
                .get(*node as usize)
                .map(|n| n.name.clone()),
            _ => None,
        }
    }

    #[test]
    fn values_come_back_from_json() {
        let d = Decimal::from_str("58.30").unwrap();
        let values = [
            Value::Null,
            Value::Text("张三 \"x\"".into()),
            Value::Number(Decimal::from_str("-1.5").unwrap()),
            Value::Money(d),
            Value::Bool(true),
            Value::Duration(2_500),
            Value::Date(NaiveDate::from_ymd_opt(2026, 12, 10).unwrap()),
            Value::Time(NaiveTime::from_hms_opt(9, 30, 5).unwrap()),
            Value::DateTime(
                NaiveDate::from_ymd_opt(2026, 1, 2)
                    .unwrap()
                    .and_hms_opt(3, 4, 5)
                    .unwrap(),
            ),
            Value::Row(vec![Value::Text("a".into()), Value::Null, Value::Money(d)].into()),
        ];
        for v in values {
            let j = encode_value(&v);
            let text = j.to_string();
            let back: Json = serde_json::from_str(&text).unwrap();
            assert_eq!(decode_value(&back), Some(v.clone()), "{text}");
        }
    }

    #[test]
    fn what_does_not_read_is_left_out() {
        for bad in [
            json!(["t", 5]),
            json!(["n", "twelve"]),
            json!(["zz", 1]),
            json!(["t"]),
            json!(["t", "x".repeat(MAX_TEXT + 1)]),
            json!(["row", [["row", []]]]),
            json!(["row", vec![Json::Null; MAX_ROW_FIELDS + 1]]),
            json!({"t": "x"}),
        ] {
            assert_eq!(decode_value(&bad), None, "{bad}");
        }
        let vars = decode_variables(&json!({"a": ["t", "x"], "b": ["n", "?"], "c": null}));
        assert_eq!(
            vars,
            vec![
                ("a".into(), Value::Text("x".into())),
                ("c".into(), Value::Null)
            ]
        );
        assert!(decode_variables(&json!([1, 2])).is_empty());
    }

    /// A call at the masked password input: its checkpoint has the plain variables, never the
    /// password; resumed, it enters the input afresh (the prompt from the start) and asks for
    /// the password again.
    #[test]
    fn a_resumed_call_enters_its_node_afresh_without_masked_values() {
        let flow = hotline();
        let mut call = Call::new(Arc::clone(&flow), info());
        call.handle_input(Event::Start, 0);
        let mut seen = drain(&mut call);
        // Identify the caller: a known customer.
        let (id, fields) = seen
            .iter()
            .find_map(|c| match c {
                Command::RunQuery { id, .. } => Some(*id),
                _ => None,
            })
            .map(|id| {
                let n = flow.queries["customer_by_phone"].fields.len();
                (id, n)
            })
            .expect("lookup");
        let mut row = vec![Value::Null; fields];
        for (i, (name, _)) in flow.queries["customer_by_phone"].fields.iter().enumerate() {
            row[i] = match name.as_str() {
                "vip" => Value::Bool(false),
                "id" => Value::Number(Decimal::from(7)),
                "name" => Value::Text("张三".into()),
                "balance" => Value::Money(Decimal::from(100)),
                _ => Value::Null,
            };
        }
        call.handle_input(
            Event::QueryDone {
                id,
                result: QueryResult::Found(row),
            },
            10,
        );
        seen.extend(drain(&mut call));
        // Go to the password input by hand: set the password as if typed, then save.
        let pw = flow.program.var_id("password").expect("password var");
        assert!(flow.program.vars[pw as usize].masked);
        call.set_value_for_test(pw, Value::Text("123456".into()));
        let input = flow.program.node_id("ask_password").expect("node");
        call.set_node_for_test(input);
        let saved = call.saved();
        assert_eq!(saved.node, "ask_password");
        assert!(
            saved
                .variables
                .iter()
                .any(|(n, v)| n == "customer_name" && *v == Value::Text("张三".into()))
        );
        assert!(!saved.variables.iter().any(|(n, _)| n == "password"));
        let stored = encode_variables(&saved.variables).to_string();
        assert!(!stored.contains("123456"), "{stored}");
        // Resumed elsewhere from what was stored.
        let back = Saved {
            variables: decode_variables(&serde_json::from_str(&stored).unwrap()),
            // A masked variable smuggled into a checkpoint is not restored either.
            ..saved.clone()
        };
        let mut with_pw = back.clone();
        with_pw
            .variables
            .push(("password".into(), Value::Text("999999".into())));
        let mut resumed = Call::resume(Arc::clone(&flow), info(), &with_pw).expect("resume");
        assert_eq!(resumed.var("password"), Some(Value::Null));
        assert_eq!(
            resumed.var("customer_name"),
            Some(Value::Text("张三".into()))
        );
        resumed.handle_input(Event::Start, 1_000);
        let out = drain(&mut resumed);
        assert_eq!(
            node_name(&flow, &out[0]).as_deref(),
            Some("ask_password"),
            "{out:?}"
        );
        assert!(
            out.iter().any(|c| matches!(c, Command::Play { prompt, .. } if flow.program.prompt(*prompt) == "enter_password")),
            "the input's prompt plays from the start: {out:?}"
        );
        // The resumed input takes six digits and goes on to check them.
        let last = out
            .iter()
            .rev()
            .find_map(|c| match c {
                Command::Play { seq, .. } => Some(*seq),
                _ => None,
            })
            .expect("a prompt");
        resumed.handle_input(Event::PlaybackDone { seq: last }, 2_000);
        drain(&mut resumed);
        for (i, k) in "654321".chars().enumerate() {
            resumed.handle_input(Event::Key(k), 2_100 + i as i64);
        }
        let after = drain(&mut resumed);
        assert!(
            after
                .iter()
                .any(|c| node_name(&flow, c).as_deref() == Some("check_password")),
            "{after:?}"
        );
        assert_eq!(resumed.var("password"), Some(Value::Text("654321".into())));
    }

    #[test]
    fn a_node_the_flow_no_longer_has_is_refused() {
        let flow = hotline();
        let saved = Saved {
            node: "gone".into(),
            ..Saved::default()
        };
        assert!(matches!(
            Call::resume(flow, info(), &saved),
            Err(ResumeError::NoSuchNode { .. })
        ));
    }

    #[test]
    fn variables_of_another_type_are_not_restored() {
        let flow = hotline();
        let saved = Saved {
            node: "main_menu".into(),
            language: "en-US".into(),
            variables: vec![
                ("customer_name".into(), Value::Number(Decimal::ONE)),
                ("known".into(), Value::Bool(true)),
                ("nosuch".into(), Value::Bool(true)),
            ],
            served: vec!["bill".into()],
        };
        let call = Call::resume(Arc::clone(&flow), info(), &saved).expect("resume");
        assert_eq!(call.var("customer_name"), Some(Value::Null));
        assert_eq!(call.var("known"), Some(Value::Bool(true)));
        assert_eq!(call.served(), ["bill".to_string()]);
        if flow.program.languages.iter().any(|l| l == "en-US") {
            assert_eq!(call.language(), "en-US");
        }
    }
}
