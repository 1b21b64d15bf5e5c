//! US English rules: "fifty eight yuan thirty", "one hundred five",
//! "November twenty third twenty twenty six", "two oh five p.m.".

use chrono::{Datelike, NaiveDate, NaiveTime, Timelike};

use super::fragments::{Fragments, Parts, digit, push_digits_of, push_fraction_digits};

/// Every en-US fragment id with its text.
pub(crate) static FRAGMENTS: &[(&str, &str)] = &[
    ("_0", "zero"),
    ("_1", "one"),
    ("_2", "two"),
    ("_3", "three"),
    ("_4", "four"),
    ("_5", "five"),
    ("_6", "six"),
    ("_7", "seven"),
    ("_8", "eight"),
    ("_9", "nine"),
    ("_10", "ten"),
    ("_11", "eleven"),
    ("_12", "twelve"),
    ("_13", "thirteen"),
    ("_14", "fourteen"),
    ("_15", "fifteen"),
    ("_16", "sixteen"),
    ("_17", "seventeen"),
    ("_18", "eighteen"),
    ("_19", "nineteen"),
    ("_20", "twenty"),
    ("_30", "thirty"),
    ("_40", "forty"),
    ("_50", "fifty"),
    ("_60", "sixty"),
    ("_70", "seventy"),
    ("_80", "eighty"),
    ("_90", "ninety"),
    ("_100", "hundred"),
    ("_1000", "thousand"),
    ("_million", "million"),
    ("_billion", "billion"),
    ("_trillion", "trillion"),
    ("_point", "point"),
    ("_minus", "minus"),
    ("_oh", "oh"),
    ("_yuan", "yuan"),
    ("_cent", "cent"),
    ("_cents", "cents"),
    ("_jan", "January"),
    ("_feb", "February"),
    ("_mar", "March"),
    ("_apr", "April"),
    ("_may", "May"),
    ("_jun", "June"),
    ("_jul", "July"),
    ("_aug", "August"),
    ("_sep", "September"),
    ("_oct", "October"),
    ("_nov", "November"),
    ("_dec", "December"),
    ("_1st", "first"),
    ("_2nd", "second"),
    ("_3rd", "third"),
    ("_4th", "fourth"),
    ("_5th", "fifth"),
    ("_6th", "sixth"),
    ("_7th", "seventh"),
    ("_8th", "eighth"),
    ("_9th", "ninth"),
    ("_10th", "tenth"),
    ("_11th", "eleventh"),
    ("_12th", "twelfth"),
    ("_13th", "thirteenth"),
    ("_14th", "fourteenth"),
    ("_15th", "fifteenth"),
    ("_16th", "sixteenth"),
    ("_17th", "seventeenth"),
    ("_18th", "eighteenth"),
    ("_19th", "nineteenth"),
    ("_20th", "twentieth"),
    ("_21st", "twenty first"),
    ("_22nd", "twenty second"),
    ("_23rd", "twenty third"),
    ("_24th", "twenty fourth"),
    ("_25th", "twenty fifth"),
    ("_26th", "twenty sixth"),
    ("_27th", "twenty seventh"),
    ("_28th", "twenty eighth"),
    ("_29th", "twenty ninth"),
    ("_30th", "thirtieth"),
    ("_31st", "thirty first"),
    ("_am", "a.m."),
    ("_pm", "p.m."),
    ("_noon", "noon"),
    ("_midnight", "midnight"),
    ("_star", "star"),
    ("_pound", "pound"),
    ("_beep", "[beep]"),
    ("_queue_position", "you are number"),
    ("_queue_position_end", "in line"),
];

const TEENS: [&str; 10] = [
    "_10", "_11", "_12", "_13", "_14", "_15", "_16", "_17", "_18", "_19",
];
const TENS: [&str; 10] = [
    "", "", "_20", "_30", "_40", "_50", "_60", "_70", "_80", "_90",
];
const MONTHS: [&str; 12] = [
    "_jan", "_feb", "_mar", "_apr", "_may", "_jun", "_jul", "_aug", "_sep", "_oct", "_nov", "_dec",
];
const ORDINALS: [&str; 31] = [
    "_1st", "_2nd", "_3rd", "_4th", "_5th", "_6th", "_7th", "_8th", "_9th", "_10th", "_11th",
    "_12th", "_13th", "_14th", "_15th", "_16th", "_17th", "_18th", "_19th", "_20th", "_21st",
    "_22nd", "_23rd", "_24th", "_25th", "_26th", "_27th", "_28th", "_29th", "_30th", "_31st",
];

/// Integers below this are read in words (up to the trillions); larger ones digit by digit.
const WORDS_LIMIT: u128 = 1_000_000_000_000_000;

/// A number: "minus", the integer in words, then "point" and the fraction digits one by one.
pub(crate) fn number(p: Parts, out: &mut Fragments) {
    let p = p.normalized();
    if p.negative && !p.is_zero() {
        out.push("_minus");
    }
    integer(p.int, out);
    if p.scale > 0 {
        out.push("_point");
        push_fraction_digits(p.frac, p.scale, out);
    }
}

/// An integer in US style, without "and": "one hundred five", "two thousand twenty six".
pub(crate) fn integer(n: u128, out: &mut Fragments) {
    if n == 0 {
        out.push("_0");
    } else if n >= WORDS_LIMIT {
        push_digits_of(n, out, digit);
    } else {
        words(n, out);
    }
}

/// `1 <= n < 10^15`.
fn words(n: u128, out: &mut Fragments) {
    let scales = [
        (1_000_000_000_000, "_trillion"),
        (1_000_000_000, "_billion"),
        (1_000_000, "_million"),
        (1_000, "_1000"),
    ];
    let mut rest = n;
    for (unit, id) in scales {
        if rest >= unit {
            below_thousand(rest / unit, out);
            out.push(id);
            rest %= unit;
        }
    }
    if rest > 0 {
        below_thousand(rest, out);
    }
}

/// `1 <= n <= 999`: "seven hundred eighty nine".
fn below_thousand(n: u128, out: &mut Fragments) {
    let (hundreds, rest) = (n / 100 % 10, n % 100);
    if hundreds > 0 {
        out.push(digit(hundreds));
        out.push("_100");
    }
    below_hundred(rest, out);
}

/// `0 <= n <= 99` (nothing for 0): "twenty two", "thirteen".
fn below_hundred(n: u128, out: &mut Fragments) {
    let n = (n % 100) as usize;
    match n {
        0 => {}
        1..=9 => out.push(digit(n as u128)),
        10..=19 => out.push(TEENS[n - 10]),
        _ => {
            out.push(TENS[n / 10]);
            if !n.is_multiple_of(10) {
                out.push(digit((n % 10) as u128));
            }
        }
    }
}

/// `0 <= n <= 99` after an hour or a year: "oh five" for 1 to 9, else as a number.
fn two_digits(n: u128, out: &mut Fragments) {
    if n < 10 {
        out.push("_oh");
        out.push(digit(n));
    } else {
        below_hundred(n, out);
    }
}

/// An amount of yuan, already rounded to two decimals: "fifty eight yuan thirty",
/// "one hundred yuan oh five", "one yuan", "five cents", "zero yuan".
pub(crate) fn money(p: Parts, out: &mut Fragments) {
    let cents = p.hundredths();
    if p.negative && (p.int > 0 || cents > 0) {
        out.push("_minus");
    }
    if p.int > 0 || cents == 0 {
        integer(p.int, out);
        out.push("_yuan");
        if cents > 0 {
            two_digits(cents, out);
        }
    } else {
        integer(cents, out);
        out.push(if cents == 1 { "_cent" } else { "_cents" });
    }
}

/// Digits one by one ("zero" for 0), `*` "star", `#` "pound"; other characters skipped.
pub(crate) fn digits(s: &str, out: &mut Fragments) {
    for c in s.chars() {
        match c {
            '0'..='9' => out.push(digit(u128::from(c as u8 - b'0'))),
            '*' => out.push("_star"),
            '#' => out.push("_pound"),
            _ => {}
        }
    }
}

/// "November twenty third twenty twenty six".
pub(crate) fn date(d: NaiveDate, out: &mut Fragments) {
    out.push(MONTHS[(d.month0() as usize).min(11)]);
    out.push(ORDINALS[(d.day0() as usize).min(30)]);
    year(d.year(), out);
}

/// Years as people say them: 2026 "twenty twenty six", 1905 "nineteen oh five",
/// 1900 "nineteen hundred", 2000 "two thousand", 2005 "two thousand five";
/// years outside 1000..=9999 as a number ("minus" before the first year).
fn year(y: i32, out: &mut Fragments) {
    if !(1000..=9999).contains(&y) {
        if y < 0 {
            out.push("_minus");
        }
        integer(u128::from(y.unsigned_abs()), out);
        return;
    }
    let y = y as u128;
    let (high, low) = (y / 100, y % 100);
    if y % 1000 < 10 {
        // 2000, 2005, 1007: "two thousand five".
        integer(y, out);
    } else if low == 0 {
        below_hundred(high, out);
        out.push("_100");
    } else {
        below_hundred(high, out);
        two_digits(low, out);
    }
}

/// 12-hour clock: "two oh five p.m.", "ten thirty a.m.", "two p.m.", "twelve noon",
/// "twelve midnight" (seconds are not said).
pub(crate) fn time(t: NaiveTime, out: &mut Fragments) {
    let (hour, minute) = (t.hour(), u128::from(t.minute()));
    let twelve = match hour % 12 {
        0 => 12,
        h => u128::from(h),
    };
    below_hundred(twelve, out);
    if minute > 0 {
        two_digits(minute, out);
    }
    out.push(match (hour, minute) {
        (12, 0) => "_noon",
        (0, 0) => "_midnight",
        (h, _) if h < 12 => "_am",
        _ => "_pm",
    });
}

/// "you are number N in line".
pub(crate) fn queue_position(n: u64, out: &mut Fragments) {
    out.push("_queue_position");
    integer(u128::from(n), out);
    out.push("_queue_position_end");
}
