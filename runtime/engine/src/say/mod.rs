//! Spoken values: `say money|number|digits|date|time EXPR`.
//!
//! A value is spoken by playing recorded fragments one after the other (digits, units,
//! 元 角 分 ...), chosen by the rules of the call's language. Each function here returns the
//! fragment ids in play order; the fragments are prompt ids with reserved names, all starting
//! with an underscore (`_5`, `_yuan`, `_10000`), which no analyst's prompt id is expected to use.
//!
//! The `ivr` program has the fragments of zh-CN and en-US built in ([`builtin_fragments`],
//! [`builtin_text`]) as a layer under every prompt catalog: a catalog entry whose id is a
//! reserved id replaces the built-in fragment (a studio recording of 元, for instance).
//!
//! Every function is total: any [`Decimal`], string, date or time gives a list of ids, never a
//! panic. Integers too large to read with units (10^16 and above in zh-CN, 10^15 and above in
//! en-US) are read digit by digit. See `docs/say.md` for the ids and the rules.

mod en_us;
mod fragments;
mod zh_cn;

#[cfg(test)]
mod tests;

use chrono::{NaiveDate, NaiveTime};
use rust_decimal::{Decimal, RoundingStrategy};

pub use fragments::Fragments;
use fragments::Parts;

/// The rules (and built-in fragments) a value is spoken with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Language {
    /// Mandarin, simplified Chinese (`zh-CN`).
    ZhCn,
    /// US English (`en-US`); also the rules for every language without rules of its own.
    #[default]
    EnUs,
}

impl Language {
    /// The rules for a language tag. Tags whose primary subtag is `zh` (`zh-CN`, `zh`,
    /// `zh-Hans`, `zh_CN`, case-insensitive) use the zh-CN rules; every other tag falls back to
    /// the en-US rules.
    pub fn from_tag(tag: &str) -> Language {
        let primary = tag.split(['-', '_']).next().unwrap_or("");
        if primary.eq_ignore_ascii_case("zh") {
            Language::ZhCn
        } else {
            Language::EnUs
        }
    }

    /// The canonical tag: `"zh-CN"` or `"en-US"`.
    pub fn tag(self) -> &'static str {
        match self {
            Language::ZhCn => "zh-CN",
            Language::EnUs => "en-US",
        }
    }
}

impl From<&str> for Language {
    fn from(tag: &str) -> Language {
        Language::from_tag(tag)
    }
}

/// An amount of money in yuan, rounded to 2 decimals half away from zero (`0.005` → `0.01`,
/// `-0.005` → `-0.01`).
///
/// zh-CN: 58.30 → 五十八元三角, 58.35 → 五十八元三角五分, 0.05 → 五分, 105.05 → 一百零五元零五分,
/// 2 → 两元, 0 → 零元, -3 → 负三元.
/// en-US: 58.30 → "fifty eight yuan thirty", 58.05 → "fifty eight yuan oh five",
/// 1 → "one yuan", 0.05 → "five cents", 0.01 → "one cent", 0 → "zero yuan".
pub fn money(lang: Language, amount: Decimal) -> Fragments {
    let parts = Parts::of(amount.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero));
    let mut out = Fragments::with_capacity(16);
    match lang {
        Language::ZhCn => zh_cn::money(parts, &mut out),
        Language::EnUs => en_us::money(parts, &mut out),
    }
    out
}

/// A number, integer or decimal; trailing zeros of the fraction are not said (3.10 is 3.1).
///
/// zh-CN: 105 → 一百零五, 10 → 十, 110 → 一百一十, 2000 → 两千, 200 → 二百, 3.14 → 三点一四.
/// en-US: 105 → "one hundred five" (no "and"), 3.14 → "three point one four".
pub fn number(lang: Language, value: Decimal) -> Fragments {
    let parts = Parts::of(value);
    let mut out = Fragments::with_capacity(16);
    match lang {
        Language::ZhCn => zh_cn::number(parts, &mut out),
        Language::EnUs => en_us::number(parts, &mut out),
    }
    out
}

/// The digits of a text one by one (phone and ticket numbers): zh-CN says 1 as 幺 (`_yao`);
/// `*` is `_star`, `#` is `_pound`; every other character (spaces, dashes, `+`) is skipped.
pub fn digits(lang: Language, text: &str) -> Fragments {
    let mut out = Fragments::with_capacity(text.len());
    match lang {
        Language::ZhCn => zh_cn::digits(text, &mut out),
        Language::EnUs => en_us::digits(text, &mut out),
    }
    out
}

/// A date. zh-CN: 2026-11-23 → 二零二六年十一月二十三日; en-US: "November twenty third twenty
/// twenty six".
pub fn date(lang: Language, date: NaiveDate) -> Fragments {
    let mut out = Fragments::with_capacity(12);
    match lang {
        Language::ZhCn => zh_cn::date(date, &mut out),
        Language::EnUs => en_us::date(date, &mut out),
    }
    out
}

/// A time of day, to the minute. zh-CN uses the 24-hour clock: 14:05 → 十四点零五分,
/// 10:00 → 十点整; en-US the 12-hour clock: "two oh five p.m.", "twelve noon".
pub fn time(lang: Language, time: NaiveTime) -> Fragments {
    let mut out = Fragments::with_capacity(8);
    match lang {
        Language::ZhCn => zh_cn::time(time, &mut out),
        Language::EnUs => en_us::time(time, &mut out),
    }
    out
}

/// The caller's place in a queue, `n` counting from 1 for the next caller served:
/// `_queue_position` + number + `_queue_position_end` (您现在排在第三位 / "you are number three
/// in line").
pub fn queue_position(lang: Language, n: u64) -> Fragments {
    let mut out = Fragments::with_capacity(8);
    match lang {
        Language::ZhCn => zh_cn::queue_position(n, &mut out),
        Language::EnUs => en_us::queue_position(n, &mut out),
    }
    out
}

/// Every built-in fragment of a language: `(id, text)` in a stable order, for generating the
/// built-in audio and for listings.
pub fn builtin_fragments(lang: Language) -> &'static [(&'static str, &'static str)] {
    match lang {
        Language::ZhCn => zh_cn::FRAGMENTS,
        Language::EnUs => en_us::FRAGMENTS,
    }
}

/// The text of a built-in fragment (`_5` is "五" in zh-CN, "five" in en-US), or `None` when the
/// language has no fragment with that id.
pub fn builtin_text(lang: Language, id: &str) -> Option<&'static str> {
    builtin_fragments(lang)
        .iter()
        .find(|(fragment, _)| *fragment == id)
        .map(|(_, text)| *text)
}

/// Is `id` in the reserved namespace of fragments (it starts with `_`)? Catalog entries with
/// such ids replace built-in fragments; analysts' own prompts should not use it.
pub fn is_reserved_id(id: &str) -> bool {
    id.starts_with('_')
}

/// The transcript of a list of fragments with the built-in texts, for simulations: joined with
/// nothing in zh-CN (五十八元三角) and with spaces in en-US ("fifty eight yuan thirty"). An id
/// without a built-in text shows as itself.
pub fn text(lang: Language, ids: &[&str]) -> String {
    join(
        lang,
        ids.iter().map(|id| builtin_text(lang, id).unwrap_or(id)),
    )
}

/// Joins fragment texts the way [`text`] does, for callers that take the texts from a prompt
/// catalog (where a studio recording's text may replace the built-in one).
pub fn join<'a>(lang: Language, texts: impl IntoIterator<Item = &'a str>) -> String {
    let separator = match lang {
        Language::ZhCn => "",
        Language::EnUs => " ",
    };
    let mut out = String::new();
    for (i, t) in texts.into_iter().enumerate() {
        if i > 0 {
            out.push_str(separator);
        }
        out.push_str(t);
    }
    out
}
