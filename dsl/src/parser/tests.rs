//! Unit tests of the grammar and of the pieces around it.

use super::build::true_end;
use super::grammar::{FlowParser, Rule};
use super::parse_flow;
use crate::diagnostic::FileId;
use pest::Parser;

const FILE: &str = r##"flow hotline {
    title    "10010 customer service hotline"
    language zh-CN
    entry    welcome
}
import common
step welcome {
    play welcome
    set greeted = true
    if caller == "" -> anonymous
    goto main_menu
}
menu main_menu {
    prompt main_menu
    key # -> back
    key 3 -> plans if customer.vip == true
}
"##;

#[test]
fn the_whole_file_rule_accepts_what_the_driver_accepts() {
    assert!(FlowParser::parse(Rule::file, FILE).is_ok());
    assert!(parse_flow(FileId(0), FILE).diagnostics.is_empty());
}

#[test]
fn a_bare_hash_after_key_is_a_key_not_a_comment() {
    let pair = FlowParser::parse(Rule::clause, "key # -> back")
        .unwrap()
        .next()
        .unwrap();
    assert_eq!(true_end(&pair), "key # -> back".len());
    // Elsewhere `#` starts a comment.
    let pair = FlowParser::parse(Rule::clause, "timeout 5s # wait")
        .unwrap()
        .next()
        .unwrap();
    assert_eq!(true_end(&pair), "timeout 5s".len());
}

#[test]
fn clause_spans_end_at_the_last_token() {
    for (clause, len) in [
        ("attempts 3   # no target\n", "attempts 3".len()),
        ("play a, b  // c\n", "play a, b".len()),
        ("valid len(x) == 1  \n", "valid len(x) == 1".len()),
        ("set x = (1 + 2)  \n", "set x = (1 + 2)".len()),
    ] {
        let pair = FlowParser::parse(Rule::clause, clause)
            .unwrap()
            .next()
            .unwrap();
        assert_eq!(true_end(&pair), len, "{clause:?}");
    }
}

#[test]
fn keywords_are_whole_words() {
    // `timeouts` is not `timeout`, `maximum` is not `max`, `main_menu` is not `main`.
    assert!(FlowParser::parse(Rule::clause, "timeouts 5s").is_err());
    assert!(FlowParser::parse(Rule::clause, "maximum 5s").is_err());
    let pair = FlowParser::parse(Rule::target, "main_menu")
        .unwrap()
        .next()
        .unwrap();
    assert_eq!(
        pair.into_inner().next().unwrap().as_rule(),
        Rule::node_target
    );
}

#[test]
fn names_are_not_keywords() {
    assert!(FlowParser::parse(Rule::name, "hangup").is_err());
    assert!(FlowParser::parse(Rule::name, "hangup_now").is_ok());
    assert!(FlowParser::parse(Rule::name, "_x1").is_ok());
    assert!(FlowParser::parse(Rule::name, "1x").is_err());
    assert!(FlowParser::parse(Rule::name, "余额").is_ok());
}
