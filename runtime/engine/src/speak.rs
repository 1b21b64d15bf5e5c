//! From a `say` value to the fragment ids a caller hears, and to the text a transcript shows.

use crate::say::{self, Fragments, Language};
use crate::value::Value;
use ivr_dsl::ast::SayKind;

/// The fragments that speak `value` as `kind` in `lang`. Values of the wrong kind (which the
/// checker rejects) are spoken digit by digit from their text.
pub fn fragments(lang: Language, kind: SayKind, value: &Value) -> Fragments {
    match (kind, value) {
        (SayKind::Money, v) if v.as_decimal().is_some() => {
            say::money(lang, v.as_decimal().unwrap_or_default())
        }
        (SayKind::Number, v) if v.as_decimal().is_some() => {
            say::number(lang, v.as_decimal().unwrap_or_default())
        }
        (SayKind::Date, Value::Date(d)) => say::date(lang, *d),
        (SayKind::Date, Value::DateTime(d)) => say::date(lang, d.date()),
        (SayKind::Time, Value::Time(t)) => say::time(lang, *t),
        (SayKind::Time, Value::DateTime(d)) => say::time(lang, d.time()),
        (_, v) => say::digits(lang, &v.to_string()),
    }
}

/// The text of a spoken value, joined from the built-in fragment texts.
pub fn text(lang: Language, kind: SayKind, value: &Value) -> String {
    say::text(lang, &fragments(lang, kind, value))
}
