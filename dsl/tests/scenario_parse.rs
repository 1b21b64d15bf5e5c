//! Parsing `.scenario` files: the specification's example, every line and expectation form,
//! values, comments, and the wording and position of errors.

use ivr_dsl::scenario_ast::{
    AgentAction, DateTimeLit, Expectation, Literal, MockResult, Scenario, ScenarioStep, StepKind,
};
use ivr_dsl::span::line_col;
use ivr_dsl::{Diagnostic, FileId, ParsedScenarios, Severity, parse_scenarios};
use rust_decimal::Decimal;
use std::str::FromStr;

/// The example of the specification, verbatim.
const SPEC_EXAMPLE: &str = r##"scenario "VIP customer hears the bill, then reaches an agent"
flow    hotline
caller  "13800000001"
at      2026-11-23 10:00              # virtual clock start (business hours)
mock    customer_by_phone -> found { id: 1, name: "张三", vip: true, balance: 58.30 }

expect play welcome
expect play main_menu
press  1
expect play bill_amount_is
expect say money 58.30
...                                   # skip whatever comes until the next expectation
expect play main_menu
press  0
expect transfer queue general priority 10
...                                   # hold music and position announcements
agent  answers
agent  hangs_up
expect node satisfaction
expect play survey_overall
press  5
expect play survey_solved
press  1
expect saved surveys { overall: 5, solved: "yes" }
expect play goodbye
expect hangup
expect outcome transferred
"##;

fn parse(src: &str) -> ParsedScenarios {
    parse_scenarios(FileId(0), src)
}

/// Parses text that must have no diagnostics.
fn parse_ok(src: &str) -> Vec<Scenario> {
    let parsed = parse(src);
    assert!(
        parsed.diagnostics.is_empty(),
        "unexpected diagnostics: {:#?}",
        parsed.diagnostics
    );
    parsed.file.scenarios
}

/// The steps of one scenario made of `flow f` and the given lines.
fn steps(lines: &str) -> Vec<StepKind> {
    let src = format!("scenario \"t\"\nflow f\n{lines}\n");
    let mut scenarios = parse_ok(&src);
    assert_eq!(scenarios.len(), 1);
    scenarios
        .remove(0)
        .steps
        .into_iter()
        .map(|s| s.kind)
        .collect()
}

fn expectation(line: &str) -> Expectation {
    match steps(line).as_slice() {
        [StepKind::Expect { expectation }] => expectation.clone(),
        other => panic!("expected one expectation, got {other:?}"),
    }
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn text(s: &str) -> Literal {
    Literal::Text(s.to_string())
}

/// The text a span covers.
fn at(src: &str, span: ivr_dsl::Span) -> &str {
    &src[span.range()]
}

/// The only diagnostic of a scenario made of a header and `lines`, with its 1-based line
/// (the header takes lines 1 and 2).
fn one_error(lines: &str) -> (Diagnostic, usize, String) {
    let src = format!("scenario \"t\"\nflow f\n{lines}\n");
    let parsed = parse(&src);
    assert_eq!(
        parsed.diagnostics.len(),
        1,
        "expected one diagnostic for {lines:?}, got {:#?}",
        parsed.diagnostics
    );
    let d = parsed.diagnostics[0].clone();
    let (line, _) = line_col(&src, d.span.start as usize);
    let covered = at(&src, d.span).to_string();
    (d, line, covered)
}

#[test]
fn spec_example_parses() {
    let scenarios = parse_ok(SPEC_EXAMPLE);
    assert_eq!(scenarios.len(), 1);
    let s = &scenarios[0];
    assert_eq!(
        s.name.node,
        "VIP customer hears the bill, then reaches an agent"
    );
    assert_eq!(
        at(SPEC_EXAMPLE, s.name.span),
        "\"VIP customer hears the bill, then reaches an agent\""
    );
    assert_eq!(s.flow.as_ref().map(|f| f.node.as_str()), Some("hotline"));
    assert_eq!(
        s.caller.as_ref().map(|c| c.node.as_str()),
        Some("13800000001")
    );
    assert_eq!(s.called, None);
    let when = s.at.as_ref().expect("at");
    assert_eq!(
        when.node,
        DateTimeLit {
            year: 2026,
            month: 11,
            day: 23,
            hour: 10,
            minute: 0,
            second: 0
        }
    );
    assert_eq!(at(SPEC_EXAMPLE, when.span), "2026-11-23 10:00");

    assert_eq!(s.mocks.len(), 1);
    let mock = &s.mocks[0];
    assert_eq!(mock.query.node, "customer_by_phone");
    assert!(at(SPEC_EXAMPLE, mock.span).starts_with("mock"));
    assert!(at(SPEC_EXAMPLE, mock.span).ends_with("58.30 }"));
    let MockResult::Found { fields } = &mock.result else {
        panic!("expected found, got {:?}", mock.result);
    };
    let fields: Vec<(&str, &Literal)> = fields
        .iter()
        .map(|(n, v)| (n.node.as_str(), &v.node))
        .collect();
    assert_eq!(
        fields,
        vec![
            ("id", &Literal::Number(dec("1"))),
            ("name", &text("张三")),
            ("vip", &Literal::Bool(true)),
            ("balance", &Literal::Number(dec("58.30"))),
        ]
    );

    use Expectation as E;
    use StepKind as K;
    let play = |p: &str| K::Expect {
        expectation: E::Play {
            prompt: ivr_dsl::Spanned::new(p.to_string(), Default::default()),
        },
    };
    let press = |k: &str| K::Press {
        keys: ivr_dsl::Spanned::new(k.to_string(), Default::default()),
    };
    // compare with spans blanked out, then check a few spans
    let kinds: Vec<StepKind> = s.steps.iter().map(|st| blank(&st.kind)).collect();
    let expected = vec![
        play("welcome"),
        play("main_menu"),
        press("1"),
        play("bill_amount_is"),
        K::Expect {
            expectation: E::Say {
                kind: sp("money"),
                value: ivr_dsl::Spanned::new(Literal::Number(dec("58.30")), Default::default()),
            },
        },
        K::Skip,
        play("main_menu"),
        press("0"),
        K::Expect {
            expectation: E::TransferQueue {
                queue: sp("general"),
                priority: Some(ivr_dsl::Spanned::new(dec("10"), Default::default())),
                level: None,
            },
        },
        K::Skip,
        K::Agent {
            action: AgentAction::Answers,
        },
        K::Agent {
            action: AgentAction::HangsUp,
        },
        K::Expect {
            expectation: E::Node {
                name: sp("satisfaction"),
            },
        },
        play("survey_overall"),
        press("5"),
        play("survey_solved"),
        press("1"),
        K::Expect {
            expectation: E::Saved {
                table: sp("surveys"),
                fields: vec![
                    (
                        sp("overall"),
                        ivr_dsl::Spanned::new(Literal::Number(dec("5")), Default::default()),
                    ),
                    (
                        sp("solved"),
                        ivr_dsl::Spanned::new(text("yes"), Default::default()),
                    ),
                ],
            },
        },
        play("goodbye"),
        K::Expect {
            expectation: E::Hangup,
        },
        K::Expect {
            expectation: E::Outcome {
                outcome: sp("transferred"),
            },
        },
    ];
    assert_eq!(kinds, expected);

    // a step's span is its line without the comment
    let skip = &s.steps[5];
    assert_eq!(at(SPEC_EXAMPLE, skip.span), "...");
    assert_eq!(at(SPEC_EXAMPLE, s.steps[2].span), "press  1");
    // the scenario spans from its title line to its last line
    assert!(at(SPEC_EXAMPLE, s.span).starts_with("scenario \"VIP"));
    assert!(at(SPEC_EXAMPLE, s.span).ends_with("expect outcome transferred"));
}

fn sp(s: &str) -> ivr_dsl::Spanned<String> {
    ivr_dsl::Spanned::new(s.to_string(), Default::default())
}

fn blank_lit(v: &ivr_dsl::Spanned<Literal>) -> ivr_dsl::Spanned<Literal> {
    ivr_dsl::Spanned::new(v.node.clone(), Default::default())
}

fn blank_fields(
    f: &[(ivr_dsl::Spanned<String>, ivr_dsl::Spanned<Literal>)],
) -> Vec<(ivr_dsl::Spanned<String>, ivr_dsl::Spanned<Literal>)> {
    f.iter().map(|(n, v)| (sp(&n.node), blank_lit(v))).collect()
}

/// A step kind with every span set to the default, for comparisons.
fn blank(kind: &StepKind) -> StepKind {
    use Expectation as E;
    match kind {
        StepKind::Press { keys } => StepKind::Press {
            keys: sp(&keys.node),
        },
        StepKind::Expect { expectation } => StepKind::Expect {
            expectation: match expectation {
                E::Play { prompt } => E::Play {
                    prompt: sp(&prompt.node),
                },
                E::Say { kind, value } => E::Say {
                    kind: sp(&kind.node),
                    value: blank_lit(value),
                },
                E::Node { name } => E::Node {
                    name: sp(&name.node),
                },
                E::Var { path, value } => E::Var {
                    path: sp(&path.node),
                    value: blank_lit(value),
                },
                E::TransferQueue {
                    queue,
                    priority,
                    level,
                } => E::TransferQueue {
                    queue: sp(&queue.node),
                    priority: priority
                        .as_ref()
                        .map(|p| ivr_dsl::Spanned::new(p.node, Default::default())),
                    level: level
                        .as_ref()
                        .map(|l| ivr_dsl::Spanned::new(l.node, Default::default())),
                },
                E::TransferTo { uri } => E::TransferTo { uri: sp(&uri.node) },
                E::Callback { queue } => E::Callback {
                    queue: sp(&queue.node),
                },
                E::Record { name } => E::Record {
                    name: sp(&name.node),
                },
                E::Saved { table, fields } => E::Saved {
                    table: sp(&table.node),
                    fields: blank_fields(fields),
                },
                E::Hangup => E::Hangup,
                E::Outcome { outcome } => E::Outcome {
                    outcome: sp(&outcome.node),
                },
                E::Served { task } => E::Served {
                    task: sp(&task.node),
                },
                E::EndedBy { by } => E::EndedBy { by: sp(&by.node) },
            },
        },
        other => other.clone(),
    }
}

#[test]
fn several_scenarios_in_one_file() {
    let src = r#"# QA: the hotline
// written by QA

scenario "first"
flow hotline
expect play welcome

scenario "second"
caller 13800000002
called "10010"
flow   hotline          # headers in any order
press 1
mock q -> missing        # a mock among the steps
hangup

scenario "third"
flow other
"#;
    let scenarios = parse_ok(src);
    let names: Vec<&str> = scenarios.iter().map(|s| s.name.node.as_str()).collect();
    assert_eq!(names, ["first", "second", "third"]);
    assert_eq!(scenarios[0].steps.len(), 1);
    let second = &scenarios[1];
    assert_eq!(
        second.caller.as_ref().map(|c| c.node.as_str()),
        Some("13800000002")
    );
    assert_eq!(
        second.called.as_ref().map(|c| c.node.as_str()),
        Some("10010")
    );
    assert_eq!(
        second.flow.as_ref().map(|c| c.node.as_str()),
        Some("hotline")
    );
    assert_eq!(second.mocks.len(), 1);
    assert_eq!(second.mocks[0].result, MockResult::Missing);
    assert_eq!(second.steps.len(), 2);
    assert_eq!(second.steps[1].kind, StepKind::Hangup);
    assert_eq!(
        at(src, second.span),
        "scenario \"second\"\ncaller 13800000002\ncalled \"10010\"\nflow   hotline          # headers in any order\npress 1\nmock q -> missing        # a mock among the steps\nhangup"
    );
    assert!(scenarios[2].steps.is_empty());
}

#[test]
fn the_brief_example_lines() {
    let src = r##"scenario "all forms"
flow    hotline
caller  "13800000001"
called  "10010"                       # our extension: the dialled number
at      2026-11-23 10:00:30
mock    customer_by_phone -> found { id: 1, name: "张三", vip: true, balance: 58.30 }
mock    verify_password -> missing
mock    redeem_card -> error
press  1
press  "123456#"
press  *
press  "#"
press  12
wait   6s
hangup
agent  answers
agent  busy
agent  hangs_up
agent  none
...
"##;
    let s = parse_ok(src).remove(0);
    assert_eq!(s.at.map(|a| a.node.second), Some(30));
    assert_eq!(s.mocks.len(), 3);
    assert_eq!(s.mocks[1].query.node, "verify_password");
    assert_eq!(s.mocks[2].result, MockResult::Error);
    let kinds: Vec<StepKind> = s.steps.iter().map(|st| blank(&st.kind)).collect();
    let press = |k: &str| StepKind::Press { keys: sp(k) };
    let agent = |action| StepKind::Agent { action };
    assert_eq!(
        kinds,
        vec![
            press("1"),
            press("123456#"),
            press("*"),
            press("#"),
            press("12"),
            StepKind::Wait { millis: 6000 },
            StepKind::Hangup,
            agent(AgentAction::Answers),
            agent(AgentAction::Busy),
            agent(AgentAction::HangsUp),
            agent(AgentAction::None),
            StepKind::Skip,
        ]
    );
    // the keys' span covers what was written, quotes included
    let StepKind::Press { keys } = &s.steps[1].kind else {
        panic!()
    };
    assert_eq!(at(src, keys.span), "\"123456#\"");
}

#[test]
fn every_expectation_form() {
    use Expectation as E;
    let b = |line: &str| match blank(&StepKind::Expect {
        expectation: expectation(line),
    }) {
        StepKind::Expect { expectation } => expectation,
        _ => unreachable!(),
    };
    let lit = |l: Literal| ivr_dsl::Spanned::new(l, Default::default());
    assert_eq!(
        b("expect play welcome"),
        E::Play {
            prompt: sp("welcome")
        }
    );
    assert_eq!(
        b("expect say money 58.30"),
        E::Say {
            kind: sp("money"),
            value: lit(Literal::Number(dec("58.30")))
        }
    );
    assert_eq!(
        b("expect say digits \"13800000001\""),
        E::Say {
            kind: sp("digits"),
            value: lit(text("13800000001"))
        }
    );
    assert_eq!(
        b("expect say number -3"),
        E::Say {
            kind: sp("number"),
            value: lit(Literal::Number(dec("-3")))
        }
    );
    assert_eq!(
        b("expect say date 2026-11-23"),
        E::Say {
            kind: sp("date"),
            value: lit(text("2026-11-23"))
        }
    );
    assert_eq!(
        b("expect say date \"2026-11-23\""),
        E::Say {
            kind: sp("date"),
            value: lit(text("2026-11-23"))
        }
    );
    assert_eq!(
        b("expect say time 10:30"),
        E::Say {
            kind: sp("time"),
            value: lit(text("10:30"))
        }
    );
    assert_eq!(
        b("expect node satisfaction"),
        E::Node {
            name: sp("satisfaction")
        }
    );
    assert_eq!(
        b("expect node common.goodbye"),
        E::Node {
            name: sp("common.goodbye")
        }
    );
    assert_eq!(
        b("expect var customer.vip == true"),
        E::Var {
            path: sp("customer.vip"),
            value: lit(Literal::Bool(true))
        }
    );
    assert_eq!(
        b("expect var card_pin == \"123456789012345678\""),
        E::Var {
            path: sp("card_pin"),
            value: lit(text("123456789012345678"))
        }
    );
    assert_eq!(
        b("expect var greeted == false"),
        E::Var {
            path: sp("greeted"),
            value: lit(Literal::Bool(false))
        }
    );
    assert_eq!(
        b("expect var timeout == 500ms"),
        E::Var {
            path: sp("timeout"),
            value: lit(Literal::Duration(500))
        }
    );
    assert_eq!(
        b("expect transfer queue general priority 10"),
        E::TransferQueue {
            queue: sp("general"),
            priority: Some(ivr_dsl::Spanned::new(dec("10"), Default::default())),
            level: None,
        }
    );
    assert_eq!(
        b("expect transfer queue vip priority 10 level 4"),
        E::TransferQueue {
            queue: sp("vip"),
            priority: Some(ivr_dsl::Spanned::new(dec("10"), Default::default())),
            level: Some(ivr_dsl::Spanned::new(4, Default::default())),
        }
    );
    assert_eq!(
        b("expect transfer queue general"),
        E::TransferQueue {
            queue: sp("general"),
            priority: None,
            level: None,
        }
    );
    assert_eq!(
        b("expect transfer to \"sip:95500@pbx\""),
        E::TransferTo {
            uri: sp("sip:95500@pbx")
        }
    );
    assert_eq!(
        b("expect record leave_message"),
        E::Record {
            name: sp("leave_message")
        }
    );
    assert_eq!(
        b("expect saved surveys { overall: 5, solved: \"yes\" }"),
        E::Saved {
            table: sp("surveys"),
            fields: vec![
                (sp("overall"), lit(Literal::Number(dec("5")))),
                (sp("solved"), lit(text("yes")))
            ]
        }
    );
    assert_eq!(
        b("expect saved empty {}"),
        E::Saved {
            table: sp("empty"),
            fields: vec![]
        }
    );
    assert_eq!(b("expect hangup"), E::Hangup);
    assert_eq!(
        b("expect outcome transferred"),
        E::Outcome {
            outcome: sp("transferred")
        }
    );
    assert_eq!(
        b("expect outcome not_served"),
        E::Outcome {
            outcome: sp("not_served")
        }
    );
    assert_eq!(
        b("expect served bill_inquiry"),
        E::Served {
            task: sp("bill_inquiry")
        }
    );
    assert_eq!(
        b("expect served \"topup\""),
        E::Served { task: sp("topup") }
    );
    assert_eq!(b("expect ended_by caller"), E::EndedBy { by: sp("caller") });
}

#[test]
fn mocks_with_unicode_and_decimals() {
    let src = "scenario \"mocks\"\nflow f\n\
        mock customer_by_phone -> found { name: \"张三 \\\"老王\\\"\\n\", balance: -0.50, big: 12345678901234567890.123456, tag: \"😀\", wait: 2m, trailing: 1, }\n\
        mock multi -> found {\n    a: \"甲\",   # first\n\n    b: 2.000\n}\n\
        press 1\n";
    let s = parse_ok(src).remove(0);
    assert_eq!(s.mocks.len(), 2);
    let MockResult::Found { fields } = &s.mocks[0].result else {
        panic!()
    };
    let get = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n.node == name)
            .map(|(_, v)| v.node.clone())
            .unwrap()
    };
    assert_eq!(get("name"), text("张三 \"老王\"\n"));
    assert_eq!(get("balance"), Literal::Number(dec("-0.50")));
    let Literal::Number(big) = get("big") else {
        panic!()
    };
    assert_eq!(big.to_string(), "12345678901234567890.123456");
    assert_eq!(get("tag"), text("😀"));
    assert_eq!(get("wait"), Literal::Duration(120_000));
    // the decimal keeps its scale: 58.30 is not 58.3 as text but equal as a value
    let Literal::Number(b) = get("balance") else {
        panic!()
    };
    assert_eq!(b.to_string(), "-0.50");
    // a span points at the value as written
    let (_, v) = &fields[0];
    assert_eq!(at(src, v.span), "\"张三 \\\"老王\\\"\\n\"");

    // a record continued over several lines
    let MockResult::Found { fields } = &s.mocks[1].result else {
        panic!()
    };
    assert_eq!(fields.len(), 2);
    assert_eq!(fields[0].1.node, text("甲"));
    assert_eq!(fields[1].1.node, Literal::Number(dec("2.000")));
    assert!(at(src, s.mocks[1].span).ends_with("b: 2.000\n}"));
    assert_eq!(s.steps.len(), 1);
}

#[test]
fn comments_everywhere() {
    let src = "# file comment\n// another\n\nscenario \"c\" # title comment\n  flow f// flow comment\n\
               \t# indented\n   press 1   # key one\npress \"#\" // the hash key\n\
               expect play welcome#glued comment\n\r\n";
    let s = parse_ok(src).remove(0);
    assert_eq!(s.name.node, "c");
    let kinds: Vec<StepKind> = s.steps.iter().map(|st| blank(&st.kind)).collect();
    assert_eq!(kinds.len(), 3);
    assert_eq!(kinds[1], StepKind::Press { keys: sp("#") });
}

#[test]
fn windows_line_endings_and_bom() {
    let src = "\u{FEFF}scenario \"crlf\"\r\nflow f\r\npress 1\r\nwait 500ms\r\n";
    let s = parse_ok(src).remove(0);
    assert_eq!(s.steps.len(), 2);
    assert_eq!(s.steps[1].kind, StepKind::Wait { millis: 500 });
}

#[test]
fn durations() {
    assert_eq!(steps("wait 5s"), vec![StepKind::Wait { millis: 5_000 }]);
    assert_eq!(steps("wait 500ms"), vec![StepKind::Wait { millis: 500 }]);
    assert_eq!(steps("wait 2m"), vec![StepKind::Wait { millis: 120_000 }]);
    assert_eq!(steps("wait 1h"), vec![StepKind::Wait { millis: 3_600_000 }]);
    assert_eq!(steps("wait 1.5s"), vec![StepKind::Wait { millis: 1_500 }]);
    assert_eq!(steps("wait 0s"), vec![StepKind::Wait { millis: 0 }]);
}

#[test]
fn at_without_time_is_midnight_and_dates_are_checked() {
    let s = parse_ok("scenario \"d\"\nflow f\nat 2028-02-29\n").remove(0);
    assert_eq!(s.at.map(|a| (a.node.day, a.node.hour)), Some((29, 0)));
    let (d, line, covered) = one_error("at 2026-02-29 10:00");
    assert_eq!(
        (d.code, line, covered.as_str()),
        ("bad-value", 3, "2026-02-29")
    );
    let (d, line, covered) = one_error("at 2026-11-23 24:00");
    assert_eq!((d.code, line, covered.as_str()), ("bad-value", 3, "24:00"));
}

// ---------------------------------------------------------------------------------------
// errors

#[test]
fn error_unknown_expectation_suggests() {
    let (d, line, covered) = one_error("press 1\nexpect plya welcome");
    assert_eq!(d.code, "syntax");
    assert_eq!(line, 4);
    assert_eq!(covered, "plya");
    assert_eq!(d.message, "unknown expectation `plya`");
    assert_eq!(d.hint.as_deref(), Some("did you mean `play`?"));
}

#[test]
fn error_unknown_line_suggests() {
    let (d, line, covered) = one_error("expct play welcome");
    assert_eq!((d.code, line, covered.as_str()), ("syntax", 3, "expct"));
    assert_eq!(d.message, "unknown line `expct`");
    assert_eq!(d.hint.as_deref(), Some("did you mean `expect`?"));

    let (d, _, _) = one_error("play welcome");
    assert_eq!(
        d.hint.as_deref(),
        Some("`play` is an expectation: write `expect play ...`")
    );
}

#[test]
fn error_bad_mock_answer() {
    let (d, line, covered) = one_error("mock q -> fund { id: 1 }");
    assert_eq!((d.code, line, covered.as_str()), ("syntax", 3, "fund"));
    assert_eq!(
        d.message,
        "expected `found`, `missing` or `error` after `->`, found `fund`"
    );
    assert_eq!(d.hint.as_deref(), Some("did you mean `found`?"));

    let (d, _, _) = one_error("mock q ->");
    assert_eq!(
        d.message,
        "expected `found`, `missing` or `error` after `->`, found the end of the line"
    );
    let (d, _, covered) = one_error("mock q found { id: 1 }");
    assert_eq!(d.message, "expected `->` after `q`, found `found`");
    assert_eq!(covered, "found");
}

#[test]
fn error_press_without_keys_and_hash_comment() {
    let (d, line, covered) = one_error("press #");
    assert_eq!((d.code, line, covered.as_str()), ("syntax", 3, "press"));
    assert_eq!(d.message, "`press` needs keys such as `1` or \"123#\"");
    assert!(
        d.hint.as_deref().unwrap_or("").contains("press \"#\""),
        "{:?}",
        d.hint
    );

    let (d, _, _) = one_error("press");
    assert_eq!(d.message, "`press` needs keys such as `1` or \"123#\"");
    assert_eq!(d.hint, None);

    // a `#` glued to bare keys would silently be dropped
    let (d, line, covered) = one_error("press 123#");
    assert_eq!((line, covered.as_str()), (3, "#"));
    assert_eq!(
        d.hint.as_deref(),
        Some("write the keys in quotes: `press \"123#\"`")
    );
}

#[test]
fn error_bad_key_points_at_the_key() {
    let (d, line, covered) = one_error("press \"12a4\"");
    assert_eq!((d.code, line, covered.as_str()), ("bad-key", 3, "a"));
    assert_eq!(d.message, "`a` is not a key");
    let (d, _, covered) = one_error("press 1x");
    assert_eq!((d.code, covered.as_str()), ("bad-key", "x"));
    let (d, _, covered) = one_error("press \"1 2\"");
    assert_eq!((d.code, covered.as_str()), ("bad-key", " "));
    let (d, _, _) = one_error("press 1 2");
    assert_eq!(
        d.message,
        "keys with spaces between them are written in quotes"
    );
    assert_eq!(d.hint.as_deref(), Some("e.g. `press \"12\"`"));
}

#[test]
fn error_missing_flow_points_at_the_title() {
    let src = "scenario \"no flow\"\npress 1\n\nscenario \"fine\"\nflow f\n";
    let parsed = parse(src);
    assert_eq!(parsed.diagnostics.len(), 1, "{:#?}", parsed.diagnostics);
    let d = &parsed.diagnostics[0];
    assert_eq!(d.code, "missing-clause");
    assert_eq!(d.message, "scenario has no `flow` line");
    assert_eq!(at(src, d.span), "\"no flow\"");
    assert_eq!(line_col(src, d.span.start as usize), (1, 10));
    // the scenario is still there
    assert_eq!(parsed.file.scenarios.len(), 2);
}

#[test]
fn error_lines_before_the_first_scenario() {
    let src = "# ok\nflow f\npress 1\nscenario \"s\"\nflow f\n";
    let parsed = parse(src);
    assert_eq!(parsed.diagnostics.len(), 1, "{:#?}", parsed.diagnostics);
    let d = &parsed.diagnostics[0];
    assert_eq!(
        d.message,
        "this line stands before the first `scenario` line"
    );
    assert_eq!(line_col(src, d.span.start as usize).0, 2);
    assert_eq!(parsed.file.scenarios.len(), 1);

    let parsed = parse("Scenario \"s\"\nflow f\n");
    assert_eq!(parsed.diagnostics.len(), 1);
    assert_eq!(
        parsed.diagnostics[0].hint.as_deref(),
        Some("did you mean `scenario`? (`Scenario` is not a keyword)")
    );
}

#[test]
fn error_wait_without_unit() {
    let (d, line, covered) = one_error("wait 6");
    assert_eq!((d.code, line, covered.as_str()), ("syntax", 3, "6"));
    assert_eq!(d.message, "`6` has no unit");
    let (d, _, _) = one_error("wait");
    assert_eq!(
        d.message,
        "expected a duration after `wait`, found the end of the line"
    );
}

#[test]
fn error_unterminated_string() {
    let (d, line, covered) = one_error("press 1\nexpect say digits \"1380");
    assert_eq!((d.code, line, covered.as_str()), ("syntax", 4, "\"1380"));
    assert_eq!(d.message, "this string has no closing `\"`");
}

#[test]
fn error_bad_escape() {
    let (d, line, covered) = one_error(r#"expect transfer to "sip:\x""#);
    assert_eq!((d.code, line, covered.as_str()), ("syntax", 3, r"\x"));
    assert_eq!(d.message, r"unknown escape `\x` in a string");
}

#[test]
fn error_var_with_single_equals() {
    let (d, line, covered) = one_error("expect var customer.vip = true");
    assert_eq!((d.code, line, covered.as_str()), ("syntax", 3, "="));
    assert_eq!(d.message, "expected `==`, found `=`");
}

#[test]
fn error_unknown_say_kind_and_agent_action() {
    let (d, _, covered) = one_error("expect say mony 58.30");
    assert_eq!(covered, "mony");
    assert_eq!(d.message, "unknown kind of value `mony`");
    assert_eq!(d.hint.as_deref(), Some("did you mean `money`?"));

    let (d, _, covered) = one_error("agent hangs up");
    assert_eq!(covered, "hangs");
    assert_eq!(d.hint.as_deref(), Some("did you mean `hangs_up`?"));
    let (d, _, _) = one_error("agent anwsers");
    assert_eq!(d.hint.as_deref(), Some("did you mean `answers`?"));
}

#[test]
fn error_trailing_tokens_and_text_without_quotes() {
    let (d, _, covered) = one_error("expect hangup now");
    assert_eq!(covered, "now");
    assert_eq!(
        d.message,
        "unexpected `now` after the end of this `expect` line"
    );

    let (d, _, covered) = one_error("expect var name == 张三");
    assert_eq!(covered, "张三");
    assert_eq!(d.message, "expected a value, found `张三`");
    assert_eq!(d.hint.as_deref(), Some("write text in quotes: \"张三\""));
}

#[test]
fn error_duplicate_header() {
    let (d, line, covered) = one_error("caller \"1\"\ncaller \"2\"");
    assert_eq!(
        (d.code, line, covered.as_str()),
        ("duplicate-clause", 4, "\"2\"")
    );
    assert_eq!(d.related.len(), 1);
}

#[test]
fn error_unclosed_record_does_not_swallow_the_next_line() {
    let src = "scenario \"s\"\nflow f\nmock q -> found { id: 1\npress 1\n";
    let parsed = parse(src);
    assert_eq!(parsed.diagnostics.len(), 1, "{:#?}", parsed.diagnostics);
    let d = &parsed.diagnostics[0];
    assert_eq!(d.message, "this `{` is never closed");
    assert_eq!(line_col(src, d.span.start as usize).0, 3);
    assert_eq!(parsed.file.scenarios[0].steps.len(), 1);
}

#[test]
fn every_broken_line_is_reported_once_and_parsing_goes_on() {
    let src = r#"scenario "many mistakes"
flow hotline
expect plya welcome
press
wait 6
mock q -> fund
agent sleeps
expect say mony 1
at 2026-13-01 10:00
press "12x"
expect play welcome
scenario oops no quotes
press 1
"#;
    let parsed = parse(src);
    let lines: Vec<usize> = parsed
        .diagnostics
        .iter()
        .map(|d| line_col(src, d.span.start as usize).0)
        .collect();
    // line 12's scenario has an unquoted title and no `flow`: two problems on that line
    assert_eq!(
        lines,
        vec![3, 4, 5, 6, 7, 8, 9, 10, 12, 12],
        "{:#?}",
        parsed.diagnostics
    );
    assert!(
        parsed
            .diagnostics
            .iter()
            .all(|d| d.severity == Severity::Error)
    );
    let s = &parsed.file.scenarios;
    assert_eq!(s.len(), 2);
    // the good line in between was kept
    assert_eq!(s[0].steps.len(), 1);
    assert_eq!(s[1].name.node, "oops no quotes");
    assert_eq!(s[1].steps.len(), 1);
}

#[test]
fn duplicate_titles_warn() {
    let parsed = parse("scenario \"a\"\nflow f\nscenario \"a\"\nflow f\n");
    assert_eq!(parsed.diagnostics.len(), 1);
    assert_eq!(parsed.diagnostics[0].severity, Severity::Warning);
    assert_eq!(parsed.diagnostics[0].code, "duplicate-scenario");
}

#[test]
fn empty_and_comment_only_files_have_no_scenarios() {
    assert!(parse_ok("").is_empty());
    assert!(parse_ok("# nothing yet\n\n// still nothing\n").is_empty());
}

#[test]
fn never_panics_on_odd_input() {
    let samples = [
        "\"",
        "scenario",
        "scenario \"",
        "scenario \"\\",
        "mock",
        "mock ->",
        "{",
        "}",
        "...",
        "scenario \"x\"\n{\n}\n",
        "scenario \"x\"\nmock q -> found {\n",
        "scenario \"x\"\nmock q -> found { a: }",
        "scenario \"x\"\npress \"\\\"",
        "scenario \"x\"\nat 9999-99-99 99:99:99",
        "scenario \"x\"\nwait 99999999999999999999999999999999h",
        "scenario \"x\"\nexpect say money 99999999999999999999999999999999999",
        "\u{0}\u{FFFF}\r\r\n",
        "scenario \"x\"\nexpect var a.b.c.d.e. == ",
        "scenario \"x\"\n中文 中文",
        "scenario \"x\"\npress ０",
    ];
    for s in samples {
        let _ = parse(s);
    }
    // every prefix of the spec example, cut at every character boundary
    for (i, _) in SPEC_EXAMPLE.char_indices() {
        let parsed = parse(&SPEC_EXAMPLE[..i]);
        for d in &parsed.diagnostics {
            assert!(d.span.end as usize <= i, "span out of range");
        }
    }
}

#[test]
fn scenario_step_spans_are_whole_lines() {
    let src = "scenario \"s\"\nflow f\n   expect   saved t { a: 1 }   # c\n";
    let s = parse_ok(src).remove(0);
    let ScenarioStep { span, .. } = &s.steps[0];
    assert_eq!(at(src, *span), "expect   saved t { a: 1 }");
}

#[test]
fn null_is_a_value() {
    let Expectation::Saved { fields, .. } =
        expectation("expect saved surveys { overall: null, solved: \"no\" }")
    else {
        panic!("not saved");
    };
    assert_eq!(fields[0].1.node, Literal::Null);
    assert_eq!(fields[1].1.node, text("no"));
}

/// `contact { ... }`: a campaign flow's list row, once per scenario, like a mock's row.
#[test]
fn contact_line_gives_the_list_row() {
    let s = parse_ok(
        "scenario \"t\"\nflow arrears_notice\ncontact { phone: \"13800000001\", arrears: 58.30, \
         due_date: 2026-11-25, vip: true }\n",
    );
    let contact = s[0].contact.as_ref().expect("contact");
    let fields: Vec<(&str, &Literal)> = contact
        .node
        .iter()
        .map(|(n, v)| (n.node.as_str(), &v.node))
        .collect();
    assert_eq!(
        fields,
        vec![
            ("phone", &Literal::Text("13800000001".into())),
            ("arrears", &Literal::Number(dec("58.30"))),
            ("due_date", &Literal::Text("2026-11-25".into())),
            ("vip", &Literal::Bool(true)),
        ]
    );
    let errors = |src: &str| -> Vec<String> {
        parse(src)
            .diagnostics
            .iter()
            .map(|d| format!("{}: {}", d.code, d.message))
            .collect()
    };
    assert_eq!(
        errors("scenario \"t\"\nflow f\ncontact phone: \"1\"\n"),
        vec!["syntax: expected `{` after `contact`, found `phone`".to_string()]
    );
    assert_eq!(
        errors("scenario \"t\"\nflow f\ncontact { phone: \"1\" }\ncontact { phone: \"2\" }\n"),
        vec!["duplicate-clause: this scenario already has a `contact` line".to_string()]
    );
    assert!(
        errors("scenario \"t\"\nflow f\ncontac { phone: \"1\" }\n")
            .iter()
            .any(|e| e == "syntax: unknown line `contac`"),
    );
}

#[test]
fn expect_callback_queue() {
    let s = steps("expect callback queue general");
    let [StepKind::Expect { expectation }] = s.as_slice() else {
        panic!("{s:?}")
    };
    let ivr_dsl::scenario_ast::Expectation::Callback { queue } = expectation else {
        panic!("{expectation:?}")
    };
    assert_eq!(queue.node, "general");
    let bad = parse("scenario \"t\"\nflow f\nexpect callback general\n");
    assert_eq!(bad.diagnostics.len(), 1, "{:?}", bad.diagnostics);
    assert!(bad.diagnostics[0].message.contains("queue"));
}
