//! Mandarin (zh-CN) rules: 五十八元三角, 一百零五, 二零二六年十一月二十三日, 十四点零五分.

use chrono::{Datelike, NaiveDate, NaiveTime, Timelike};

use super::fragments::{Fragments, Parts, digit, push_digits_of, push_fraction_digits};

/// Every zh-CN fragment id with its text.
pub(crate) static FRAGMENTS: &[(&str, &str)] = &[
    ("_0", "零"),
    ("_1", "一"),
    ("_2", "二"),
    ("_3", "三"),
    ("_4", "四"),
    ("_5", "五"),
    ("_6", "六"),
    ("_7", "七"),
    ("_8", "八"),
    ("_9", "九"),
    ("_yao", "幺"),
    ("_liang", "两"),
    ("_10", "十"),
    ("_100", "百"),
    ("_1000", "千"),
    ("_10000", "万"),
    ("_100000000", "亿"),
    ("_point", "点"),
    ("_minus", "负"),
    ("_yuan", "元"),
    ("_jiao", "角"),
    ("_fen", "分"),
    ("_year", "年"),
    ("_month", "月"),
    ("_day", "日"),
    ("_hour", "点"),
    ("_minute", "分"),
    ("_zheng", "整"),
    ("_star", "星号"),
    ("_pound", "井号"),
    ("_beep", "[beep]"),
    ("_queue_position", "您现在排在第"),
    ("_queue_position_end", "位"),
];

/// Integers below this are read with units (up to 9999万亿); larger ones digit by digit.
const WORDS_LIMIT: u128 = 10_000_000_000_000_000;
const WAN: u128 = 10_000;
const YI: u128 = 100_000_000;

/// A number: sign, integer with units, then 点 and the fraction digits one by one.
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

/// An integer with units (一百零五, 两千, 十万零一十); `10^16` and above digit by digit.
pub(crate) fn integer(n: u128, out: &mut Fragments) {
    if n == 0 {
        out.push("_0");
    } else if n >= WORDS_LIMIT {
        push_digits_of(n, out, digit);
    } else {
        words(n, true, out);
    }
}

/// A count before a measure word (元, 点, 位 ...): 2 alone is 两, anything else as [`integer`].
fn count(n: u128, out: &mut Fragments) {
    if n == 2 {
        out.push("_liang");
    } else {
        integer(n, out);
    }
}

/// `1 <= n < 10^16`. `leading`: nothing was said before, so 10..19 start with 十, not 一十.
fn words(n: u128, leading: bool, out: &mut Fragments) {
    for (unit, id) in [(YI, "_100000000"), (WAN, "_10000")] {
        if n >= unit {
            let (high, rest) = (n / unit, n % unit);
            if high == 2 {
                out.push("_liang");
            } else {
                words(high, leading, out);
            }
            out.push(id);
            if rest > 0 {
                // A gap before the rest (一万零五, 一亿零一千) is said as one 零.
                if rest < unit / 10 {
                    out.push("_0");
                }
                words(rest, false, out);
            }
            return;
        }
    }
    section(n, leading, out);
}

/// `1 <= n <= 9999`: 千 百 十 and units, one 零 for each run of inner zeros.
fn section(n: u128, leading: bool, out: &mut Fragments) {
    let digits = [n / 1000 % 10, n / 100 % 10, n / 10 % 10, n % 10];
    let mut started = false;
    let mut gap = false;
    for (pos, &d) in digits.iter().enumerate() {
        if d == 0 {
            gap = started;
            continue;
        }
        if gap {
            out.push("_0");
            gap = false;
        }
        match pos {
            0 => {
                out.push(if d == 2 { "_liang" } else { digit(d) });
                out.push("_1000");
            }
            1 => {
                out.push(digit(d));
                out.push("_100");
            }
            2 => {
                if !(d == 1 && leading && !started) {
                    out.push(digit(d));
                }
                out.push("_10");
            }
            _ => out.push(digit(d)),
        }
        started = true;
    }
}

/// An amount of yuan, already rounded to two decimals: 五十八元三角五分, 五分, 一百元零五分.
pub(crate) fn money(p: Parts, out: &mut Fragments) {
    let cents = p.hundredths();
    let (jiao, fen) = (cents / 10, cents % 10);
    if p.negative && (p.int > 0 || cents > 0) {
        out.push("_minus");
    }
    if p.int > 0 || cents == 0 {
        count(p.int, out);
        out.push("_yuan");
    }
    if jiao > 0 {
        out.push(if jiao == 2 { "_liang" } else { digit(jiao) });
        out.push("_jiao");
    } else if fen > 0 && p.int > 0 {
        out.push("_0");
    }
    if fen > 0 {
        out.push(if fen == 2 { "_liang" } else { digit(fen) });
        out.push("_fen");
    }
}

/// Digits one by one, 1 as 幺 (telecom style), `*` 星号, `#` 井号; other characters skipped.
pub(crate) fn digits(s: &str, out: &mut Fragments) {
    for c in s.chars() {
        match c {
            '1' => out.push("_yao"),
            '0'..='9' => out.push(digit(u128::from(c as u8 - b'0'))),
            '*' => out.push("_star"),
            '#' => out.push("_pound"),
            _ => {}
        }
    }
}

/// 二零二六年十一月二十三日: the year digit by digit, month and day as numbers.
pub(crate) fn date(d: NaiveDate, out: &mut Fragments) {
    let year = d.year();
    if year < 0 {
        out.push("_minus");
    }
    push_digits_of(u128::from(year.unsigned_abs()), out, digit);
    out.push("_year");
    integer(u128::from(d.month()), out);
    out.push("_month");
    integer(u128::from(d.day()), out);
    out.push("_day");
}

/// 24-hour clock: 十四点零五分, 十点三十分, 十点整, 两点整, 零点整 (seconds are not said).
pub(crate) fn time(t: NaiveTime, out: &mut Fragments) {
    count(u128::from(t.hour()), out);
    out.push("_hour");
    let minute = u128::from(t.minute());
    if minute == 0 {
        out.push("_zheng");
    } else {
        if minute < 10 {
            out.push("_0");
        }
        integer(minute, out);
        out.push("_minute");
    }
}

/// 您现在排在第 N 位 (an ordinal: 第二位, not 第两位).
pub(crate) fn queue_position(n: u64, out: &mut Fragments) {
    out.push("_queue_position");
    integer(u128::from(n), out);
    out.push("_queue_position_end");
}
