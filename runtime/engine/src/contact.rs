//! `contact`: the list row of a call a campaign placed, typed as the campaign's list query
//! declares its fields. The dialler fills it from the query's row; a scenario's `contact {
//! ... }` line and `ivr simulate --contact k=v,...` give it by hand, through here.

use crate::Flow;
use crate::value::Value;
use chrono::{NaiveDate, NaiveTime};
use indexmap::IndexMap;
use ivr_compiler::config::FieldType;
use ivr_dsl::scenario_ast::Literal;
use rust_decimal::Decimal;

/// The most fields a contact row given by hand may have.
pub const MAX_FIELDS: usize = 64;

/// A contact row given by hand that does not fit the flow's list query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContactError {
    /// The flow is run by no campaign, so it has no `contact`.
    #[error("flow `{flow}` is run by no campaign, so it has no contact row")]
    NotACampaignFlow {
        /// The flow.
        flow: String,
    },
    /// A field the list query does not return.
    #[error("the list query `{query}` returns no field `{field}` (it returns {})", list(.fields))]
    UnknownField {
        /// The field as given.
        field: String,
        /// The list query.
        query: String,
        /// What it returns.
        fields: Vec<String>,
    },
    /// A value that does not read as the field's type.
    #[error("`{field}` is {ty} in the list query, and `{value}` is not {ty}{example}")]
    BadValue {
        /// The field.
        field: String,
        /// As given.
        value: String,
        /// The field's type, with its article (`a number`).
        ty: &'static str,
        /// `: write e.g. ...`.
        example: &'static str,
    },
    /// A field given twice.
    #[error("the field `{0}` is given twice")]
    Twice(String),
    /// `--contact` text that is not `name=value` pairs.
    #[error("`{0}` is not `name=value`")]
    NotAPair(String),
    /// More fields than any list query returns.
    #[error("a contact row has at most {MAX_FIELDS} fields")]
    TooMany,
}

fn list(fields: &[String]) -> String {
    fields
        .iter()
        .map(|f| format!("`{f}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Flow {
    /// The list query of the campaign that runs this flow and its fields, if one does.
    pub fn contact_fields(&self) -> Option<(&str, &IndexMap<String, FieldType>)> {
        let list = self.contact_list.as_deref()?;
        self.queries.get(list).map(|q| (list, &q.fields))
    }
}

/// A value given by hand: the text of `--contact`, or a scenario's literal.
#[derive(Debug, Clone, Copy)]
pub enum Given<'a> {
    /// `arrears=58.30` on the command line.
    Text(&'a str),
    /// `arrears: 58.30` in a scenario.
    Literal(&'a Literal),
}

/// The contact row of `flow` from fields given by hand: every field of the list query in its
/// order, those not given as no value (a NULL column).
pub fn contact_row<'a>(
    flow: &Flow,
    given: impl IntoIterator<Item = (&'a str, Given<'a>)>,
) -> Result<Vec<(String, Value)>, ContactError> {
    let Some((query, fields)) = flow.contact_fields() else {
        return Err(ContactError::NotACampaignFlow {
            flow: flow.program.name.clone(),
        });
    };
    let mut row: Vec<(String, Value)> = fields
        .keys()
        .map(|name| (name.clone(), Value::Null))
        .collect();
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in given {
        if seen.len() >= MAX_FIELDS {
            return Err(ContactError::TooMany);
        }
        if seen.contains(&name) {
            return Err(ContactError::Twice(name.to_string()));
        }
        seen.push(name);
        let Some((index, _, ty)) = fields.get_full(name) else {
            return Err(ContactError::UnknownField {
                field: name.to_string(),
                query: query.to_string(),
                fields: fields.keys().cloned().collect(),
            });
        };
        row[index].1 = typed(name, *ty, value)?;
    }
    Ok(row)
}

/// The contact row of a list query's row as the data layer returns it (its values in the order
/// of the query's `fields`): what the dialler hands a campaign call in [`crate::CallInfo`].
/// Values beyond the declared fields are dropped; missing ones have no value.
pub fn from_list_row(flow: &Flow, values: Vec<Value>) -> Vec<(String, Value)> {
    let Some((_, fields)) = flow.contact_fields() else {
        return Vec::new();
    };
    let mut values = values.into_iter();
    fields
        .keys()
        .map(|name| (name.clone(), values.next().unwrap_or_default()))
        .collect()
}

/// Reads `--contact` text: `name=value` pairs separated by commas (a value may be quoted,
/// `"..."`, to hold a comma).
pub fn parse_pairs(text: &str) -> Result<Vec<(String, String)>, ContactError> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some((name, after)) = rest.split_once('=') else {
            return Err(ContactError::NotAPair(rest.to_string()));
        };
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return Err(ContactError::NotAPair(rest.to_string()));
        }
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let Some(end) = quoted.find('"') else {
                return Err(ContactError::NotAPair(rest.to_string()));
            };
            let tail = quoted[end + 1..].trim_start();
            let next = match tail.strip_prefix(',') {
                Some(n) => n,
                None if tail.is_empty() => tail,
                None => return Err(ContactError::NotAPair(rest.to_string())),
            };
            (quoted[..end].to_string(), next)
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v.trim().to_string(), n),
                None => (after.trim().to_string(), ""),
            }
        };
        if out.len() >= MAX_FIELDS {
            return Err(ContactError::TooMany);
        }
        out.push((name.to_string(), value));
        rest = next.trim();
    }
    Ok(out)
}

fn typed(field: &str, ty: FieldType, value: Given<'_>) -> Result<Value, ContactError> {
    let text = match value {
        Given::Text(t) => t.to_string(),
        Given::Literal(Literal::Text(t)) => t.clone(),
        Given::Literal(Literal::Number(d)) => d.to_string(),
        Given::Literal(Literal::Bool(b)) => b.to_string(),
        Given::Literal(Literal::Null) => return Ok(Value::Null),
        Given::Literal(Literal::Duration(ms)) => format!("{ms}ms"),
    };
    let bad = |ty: &'static str, example: &'static str| ContactError::BadValue {
        field: field.to_string(),
        value: text.clone(),
        ty,
        example,
    };
    let t = text.trim();
    Ok(match ty {
        FieldType::Text => Value::Text(text.clone()),
        FieldType::Number => Value::Number(
            t.parse::<Decimal>()
                .map_err(|_| bad("a number", ": write e.g. 12 or 3.5"))?,
        ),
        FieldType::Money => Value::Money(
            t.parse::<Decimal>()
                .map_err(|_| bad("money", ": write e.g. 58.30"))?,
        ),
        FieldType::Bool => match t {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(bad("true or false", "")),
        },
        FieldType::Date => Value::Date(
            NaiveDate::parse_from_str(t, "%Y-%m-%d")
                .map_err(|_| bad("a date", ": write e.g. 2026-12-15"))?,
        ),
        FieldType::Time => Value::Time(
            NaiveTime::parse_from_str(t, "%H:%M")
                .or_else(|_| NaiveTime::parse_from_str(t, "%H:%M:%S"))
                .map_err(|_| bad("a time", ": write e.g. 09:30"))?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference deployment's campaign flow, compiled with the repository's ivr.toml.
    fn arrears_notice() -> Flow {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
        let checked = ivr_compiler::check(&ivr_compiler::CheckOptions {
            config: Some(format!("{root}/ivr.toml").into()),
            paths: vec![format!("{root}/flows/arrears_notice.flow").into()],
        })
        .expect("check");
        assert_eq!(checked.error_count(), 0, "{:?}", checked.diagnostics);
        let program = checked.programs["arrears_notice"].clone();
        Flow::new(program, &checked.config)
    }

    /// A list row as the dialler hands it over reaches the flow as `contact`.
    #[test]
    fn a_list_row_is_the_flows_contact() {
        use crate::{CallInfo, Channel, Command, Event, Machine};
        let flow = std::sync::Arc::new(arrears_notice());
        assert_eq!(
            flow.contact_fields().map(|(q, f)| (q, f.len())),
            Some(("arrears_due", 5))
        );
        let money: Decimal = "58.30".parse().unwrap();
        let due = NaiveDate::from_ymd_opt(2026, 11, 25).unwrap();
        let row = from_list_row(
            &flow,
            vec![
                Value::Text("13800000009".into()),
                Value::Text("吴十".into()),
                Value::Money(money),
                Value::Date(due),
            ],
        );
        assert_eq!(row.len(), 5);
        assert_eq!(row[4], ("month".to_string(), Value::Null));
        let mut call = crate::Call::new(
            flow,
            CallInfo {
                id: "c1".into(),
                caller: "13800000009".into(),
                called: String::new(),
                channel: Channel::Sip,
                contact: row,
            },
        );
        call.handle_input(Event::Start, 0);
        let mut said = Vec::new();
        while let Some(c) = call.poll_output() {
            if let Command::Say { value, .. } = c {
                said.push(value);
            }
        }
        assert_eq!(said, vec![Value::Money(money), Value::Date(due)]);
    }

    #[test]
    fn pairs_read_with_quotes_and_spaces() {
        let p = parse_pairs("phone=13800000001, arrears=58.30,name=\"张, 三\"").unwrap();
        assert_eq!(
            p,
            vec![
                ("phone".into(), "13800000001".into()),
                ("arrears".into(), "58.30".into()),
                ("name".into(), "张, 三".into()),
            ]
        );
        assert!(matches!(
            parse_pairs("phone"),
            Err(ContactError::NotAPair(_))
        ));
        assert!(parse_pairs("").unwrap().is_empty());
    }

    #[test]
    fn values_are_typed_or_refused() {
        assert_eq!(
            typed("a", FieldType::Money, Given::Text("58.30")).unwrap(),
            Value::Money("58.30".parse().unwrap())
        );
        assert_eq!(
            typed("d", FieldType::Date, Given::Text("2026-12-15")).unwrap(),
            Value::Date(NaiveDate::from_ymd_opt(2026, 12, 15).unwrap())
        );
        let e = typed("arrears", FieldType::Money, Given::Text("lots")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`arrears` is money in the list query, and `lots` is not money: write e.g. 58.30"
        );
        let lit = Literal::Number("13800000001".parse().unwrap());
        assert_eq!(
            typed("phone", FieldType::Text, Given::Literal(&lit)).unwrap(),
            Value::Text("13800000001".into())
        );
    }
}
