//! Tests of the spoken-values rules, asserting on transcripts (easy to read) and on ids.

use std::str::FromStr;

use chrono::{NaiveDate, NaiveTime};
use rust_decimal::Decimal;

use super::*;

const ZH: Language = Language::ZhCn;
const EN: Language = Language::EnUs;

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).expect("test decimal")
}

fn say_money(lang: Language, s: &str) -> String {
    text(lang, &money(lang, dec(s)))
}

fn say_number(lang: Language, s: &str) -> String {
    text(lang, &number(lang, dec(s)))
}

fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("test date")
}

fn hm(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).expect("test time")
}

#[test]
fn zh_money() {
    for (amount, spoken) in [
        ("58.30", "五十八元三角"),
        ("58.3", "五十八元三角"),
        ("58.35", "五十八元三角五分"),
        ("58.05", "五十八元零五分"),
        ("0.05", "五分"),
        ("0.30", "三角"),
        ("0.35", "三角五分"),
        ("0", "零元"),
        ("0.00", "零元"),
        ("1", "一元"),
        ("2", "两元"),
        ("0.22", "两角两分"),
        ("12", "十二元"),
        ("10.00", "十元"),
        ("100", "一百元"),
        ("105.5", "一百零五元五角"),
        ("2000", "两千元"),
        ("1000000", "一百万元"),
        ("123456789.01", "一亿两千三百四十五万六千七百八十九元零一分"),
        ("-58.30", "负五十八元三角"),
        ("-0.05", "负五分"),
    ] {
        assert_eq!(say_money(ZH, amount), spoken, "money {amount}");
    }
}

#[test]
fn money_rounding_is_half_away_from_zero() {
    assert_eq!(say_money(ZH, "1.005"), "一元零一分");
    assert_eq!(say_money(ZH, "1.004"), "一元");
    assert_eq!(say_money(ZH, "0.999"), "一元");
    assert_eq!(say_money(ZH, "-0.005"), "负一分");
    assert_eq!(say_money(ZH, "-0.004"), "零元");
    assert_eq!(say_money(EN, "58.345"), "fifty eight yuan thirty five");
    assert_eq!(say_money(EN, "-0.004"), "zero yuan");
}

#[test]
fn zh_money_ids() {
    assert_eq!(
        money(ZH, dec("58.30")),
        ["_5", "_10", "_8", "_yuan", "_3", "_jiao"]
    );
    assert_eq!(money(ZH, dec("0.05")), ["_5", "_fen"]);
    assert_eq!(money(ZH, dec("2000")), ["_liang", "_1000", "_yuan"]);
}

#[test]
fn en_money() {
    for (amount, spoken) in [
        ("58.30", "fifty eight yuan thirty"),
        ("58.35", "fifty eight yuan thirty five"),
        ("58.05", "fifty eight yuan oh five"),
        ("0.05", "five cents"),
        ("0.01", "one cent"),
        ("0.30", "thirty cents"),
        ("0", "zero yuan"),
        ("1", "one yuan"),
        ("100", "one hundred yuan"),
        ("105.5", "one hundred five yuan fifty"),
        ("2000", "two thousand yuan"),
        ("1000000", "one million yuan"),
        (
            "123456789.01",
            "one hundred twenty three million four hundred fifty six thousand seven hundred \
             eighty nine yuan oh one",
        ),
        ("-58.30", "minus fifty eight yuan thirty"),
    ] {
        assert_eq!(say_money(EN, amount), spoken, "money {amount}");
    }
    assert_eq!(money(EN, dec("58.30")), ["_50", "_8", "_yuan", "_30"]);
}

#[test]
fn zh_numbers_with_zeros() {
    for (n, spoken) in [
        ("0", "零"),
        ("5", "五"),
        ("105", "一百零五"),
        ("1005", "一千零五"),
        ("1050", "一千零五十"),
        ("10005", "一万零五"),
        ("10010", "一万零一十"),
        ("100100", "十万零一百"),
        ("100010", "十万零一十"),
        ("1000001", "一百万零一"),
        ("1001000", "一百万一千"),
        ("10100000", "一千零一十万"),
        ("100000000", "一亿"),
        ("100001000", "一亿零一千"),
        ("100100000", "一亿零一十万"),
        ("110000000", "一亿一千万"),
        ("1000000000000", "一万亿"),
        (
            "9999999999999999",
            "九千九百九十九万九千九百九十九亿九千九百九十九万九千九百九十九",
        ),
    ] {
        assert_eq!(say_number(ZH, n), spoken, "number {n}");
    }
}

#[test]
fn zh_ten_and_two() {
    for (n, spoken) in [
        ("10", "十"),
        ("12", "十二"),
        ("19", "十九"),
        ("20", "二十"),
        ("22", "二十二"),
        ("110", "一百一十"),
        ("1010", "一千零一十"),
        ("100000", "十万"),
        ("150000", "十五万"),
        ("1000000000", "十亿"),
        ("2", "二"),
        ("102", "一百零二"),
        ("200", "二百"),
        ("2000", "两千"),
        ("2200", "两千二百"),
        ("20000", "两万"),
        ("22000", "两万两千"),
        ("120000", "十二万"),
        ("200000000", "两亿"),
        ("2000000000000", "两万亿"),
        ("2000000000", "二十亿"),
    ] {
        assert_eq!(say_number(ZH, n), spoken, "number {n}");
    }
    assert_eq!(number(ZH, dec("10")), ["_10"]);
    assert_eq!(number(ZH, dec("110")), ["_1", "_100", "_1", "_10"]);
    assert_eq!(number(ZH, dec("2000")), ["_liang", "_1000"]);
}

#[test]
fn zh_decimals_and_negatives() {
    assert_eq!(say_number(ZH, "3.14"), "三点一四");
    assert_eq!(say_number(ZH, "3.10"), "三点一");
    assert_eq!(say_number(ZH, "0.05"), "零点零五");
    assert_eq!(say_number(ZH, "-2.5"), "负二点五");
    assert_eq!(say_number(ZH, "-0.00"), "零");
    assert_eq!(say_number(ZH, "10.00"), "十");
}

#[test]
fn en_numbers() {
    for (n, spoken) in [
        ("0", "zero"),
        ("7", "seven"),
        ("10", "ten"),
        ("13", "thirteen"),
        ("20", "twenty"),
        ("42", "forty two"),
        ("105", "one hundred five"),
        ("110", "one hundred ten"),
        ("1005", "one thousand five"),
        ("1010", "one thousand ten"),
        ("10005", "ten thousand five"),
        ("100100", "one hundred thousand one hundred"),
        ("1000001", "one million one"),
        ("2000", "two thousand"),
        ("1000000000", "one billion"),
        (
            "999999999999999",
            "nine hundred ninety nine trillion nine hundred ninety nine billion \
          nine hundred ninety nine million nine hundred ninety nine thousand nine hundred ninety nine",
        ),
        ("3.14", "three point one four"),
        ("0.5", "zero point five"),
        ("-12.50", "minus twelve point five"),
    ] {
        assert_eq!(say_number(EN, n), spoken, "number {n}");
    }
}

#[test]
fn huge_numbers_fall_back_to_digits() {
    assert_eq!(
        say_number(ZH, "10000000000000000"),
        "一零零零零零零零零零零零零零零零零"
    );
    assert_eq!(
        say_number(ZH, "-12345678901234567.5"),
        "负一二三四五六七八九零一二三四五六七点五"
    );
    assert_eq!(
        say_number(EN, "1000000000000000"),
        "one zero zero zero zero zero zero zero zero zero zero zero zero zero zero zero"
    );
    // Extremes of Decimal do not panic.
    for d in [
        Decimal::MAX,
        Decimal::MIN,
        Decimal::new(1, 28),
        Decimal::new(-1, 28),
    ] {
        for lang in [ZH, EN] {
            assert!(!number(lang, d).is_empty());
            assert!(!money(lang, d).is_empty());
        }
    }
    assert_eq!(say_money(ZH, "0.0000000000000000000000000001"), "零元");
    assert!(say_money(EN, &Decimal::MAX.to_string()).ends_with("five yuan"));
}

#[test]
fn digits_one_by_one() {
    assert_eq!(
        text(ZH, &digits(ZH, "138-0000 0001")),
        "幺三八零零零零零零零幺"
    );
    assert_eq!(digits(ZH, "1*#"), ["_yao", "_star", "_pound"]);
    assert_eq!(
        text(EN, &digits(EN, "+1 (800) 2*#")),
        "one eight zero zero two star pound"
    );
    assert!(digits(ZH, "abc 中文").is_empty());
}

#[test]
fn dates() {
    assert_eq!(
        text(ZH, &date(ZH, ymd(2026, 11, 23))),
        "二零二六年十一月二十三日"
    );
    assert_eq!(text(ZH, &date(ZH, ymd(2000, 2, 2))), "二零零零年二月二日");
    assert_eq!(text(ZH, &date(ZH, ymd(2026, 1, 10))), "二零二六年一月十日");
    assert_eq!(
        text(EN, &date(EN, ymd(2026, 11, 23))),
        "November twenty third twenty twenty six"
    );
    assert_eq!(
        date(EN, ymd(2026, 11, 23)),
        ["_nov", "_23rd", "_20", "_20", "_6"]
    );
    for (y, spoken) in [
        (2000, "two thousand"),
        (2005, "two thousand five"),
        (2010, "twenty ten"),
        (1999, "nineteen ninety nine"),
        (1905, "nineteen oh five"),
        (1900, "nineteen hundred"),
        (999, "nine hundred ninety nine"),
    ] {
        assert_eq!(
            text(EN, &date(EN, ymd(y, 1, 1))),
            format!("January first {spoken}")
        );
    }
    // Extremes of chrono do not panic.
    for d in [NaiveDate::MIN, NaiveDate::MAX] {
        assert!(text(ZH, &date(ZH, d)).contains('年'));
        assert!(!date(EN, d).is_empty());
    }
}

#[test]
fn times() {
    for (h, m, zh, en) in [
        (10, 30, "十点三十分", "ten thirty a.m."),
        (10, 0, "十点整", "ten a.m."),
        (14, 5, "十四点零五分", "two oh five p.m."),
        (2, 0, "两点整", "two a.m."),
        (0, 0, "零点整", "twelve midnight"),
        (0, 5, "零点零五分", "twelve oh five a.m."),
        (12, 0, "十二点整", "twelve noon"),
        (12, 45, "十二点四十五分", "twelve forty five p.m."),
        (23, 59, "二十三点五十九分", "eleven fifty nine p.m."),
        (20, 10, "二十点十分", "eight ten p.m."),
    ] {
        assert_eq!(text(ZH, &time(ZH, hm(h, m))), zh, "{h}:{m}");
        assert_eq!(text(EN, &time(EN, hm(h, m))), en, "{h}:{m}");
    }
}

#[test]
fn queue_positions() {
    assert_eq!(text(ZH, &queue_position(ZH, 3)), "您现在排在第三位");
    assert_eq!(text(ZH, &queue_position(ZH, 2)), "您现在排在第二位");
    assert_eq!(
        text(EN, &queue_position(EN, 12)),
        "you are number twelve in line"
    );
    assert_eq!(
        queue_position(EN, 1),
        ["_queue_position", "_1", "_queue_position_end"]
    );
}

#[test]
fn languages() {
    assert_eq!(Language::from_tag("zh-CN"), ZH);
    assert_eq!(Language::from_tag("zh_cn"), ZH);
    assert_eq!(Language::from_tag("ZH"), ZH);
    assert_eq!(Language::from_tag("en-US"), EN);
    assert_eq!(Language::from_tag("fr-FR"), EN);
    assert_eq!(Language::from_tag(""), EN);
    assert_eq!(Language::from("zh-CN").tag(), "zh-CN");
}

#[test]
fn fragment_tables_are_well_formed() {
    for lang in [ZH, EN] {
        let table = builtin_fragments(lang);
        for (i, (id, text)) in table.iter().enumerate() {
            assert!(is_reserved_id(id), "{id}");
            assert!(
                id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{id} is not a valid prompt id"
            );
            assert!(!text.is_empty());
            assert!(
                table[..i].iter().all(|(other, _)| other != id),
                "{id} listed twice"
            );
        }
        assert_eq!(builtin_text(lang, "_beep"), Some("[beep]"));
    }
    assert_eq!(builtin_text(ZH, "_5"), Some("五"));
    assert_eq!(builtin_text(EN, "_5"), Some("five"));
    assert_eq!(builtin_text(ZH, "_yuan"), Some("元"));
    assert_eq!(builtin_text(EN, "_yuan"), Some("yuan"));
    assert_eq!(builtin_text(EN, "_yao"), None);
    assert_eq!(text(EN, &["_5", "welcome"]), "five welcome");
}

/// Every id any rule emits has a built-in text in that language.
#[test]
fn every_emitted_id_is_built_in() {
    let mut samples: Vec<Decimal> = (0..2_000).map(Decimal::from).collect();
    let mut n: i64 = 1;
    while n < 1_000_000_000_000_000_000 {
        for k in [1, 2, 3, 7, 11] {
            samples.push(Decimal::from(n.saturating_mul(k)));
            samples.push(Decimal::from(n.saturating_mul(k).saturating_add(1)));
            samples.push(Decimal::new(n.saturating_mul(k), 2));
            samples.push(Decimal::new(-n.saturating_mul(k), 3));
        }
        n = n.saturating_mul(10);
    }
    samples.extend([Decimal::MAX, Decimal::MIN]);
    let dates = [
        ymd(2026, 11, 23),
        ymd(1905, 2, 28),
        NaiveDate::MIN,
        NaiveDate::MAX,
    ];
    for lang in [ZH, EN] {
        let mut all: Vec<Fragments> = Vec::new();
        for d in &samples {
            all.push(number(lang, *d));
            all.push(money(lang, *d));
        }
        all.push(digits(lang, "0123456789*#"));
        for d in dates {
            all.push(date(lang, d));
        }
        for day in 0..366 {
            if let Some(d) = ymd(2024, 1, 1).checked_add_days(chrono::Days::new(day)) {
                all.push(date(lang, d));
            }
        }
        for minute in 0..24 * 60 {
            all.push(time(lang, hm(minute / 60, minute % 60)));
        }
        all.push(queue_position(lang, u64::MAX));
        for ids in all {
            for id in ids {
                assert!(
                    builtin_text(lang, id).is_some(),
                    "{id} has no {} text",
                    lang.tag()
                );
            }
        }
    }
}
