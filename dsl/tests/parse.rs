//! Parsing `.flow` files: the examples of the language specification, precedence, literals,
//! where every clause lands, and the wording of syntax errors.

use ivr_dsl::ast::{
    Answers, BinaryOp, Destination, Expr, ExprKind, FlowFile, NodeBody, NodeKind, SayKind,
    StatementKind, TargetKind, UnaryOp,
};
use ivr_dsl::span::line_col;
use ivr_dsl::{FileId, Parsed, Span, parse_flow};
use rust_decimal::Decimal;
use std::str::FromStr;

const HEADER: &str = r##"flow hotline {
    title    "10010 customer service hotline"
    language zh-CN            # default prompt language for this flow
    entry    welcome          # first node
}

import common                 # optional: nodes of flows/common.flow become common.<node>
"##;

const STEP: &str = r##"step welcome {
    play welcome                       # one or more prompt ids: play a, b, c
    set greeted = true
    if caller == "" -> anonymous       # first `if` whose condition holds wins
    if in_hours(agents) == false -> after_hours
    goto main_menu                     # or: hangup
}
"##;

const MENU: &str = r##"menu main_menu {
    prompt   main_menu                 # one or more prompt ids
    timeout  5s                        # wait after the prompt ends (default 5s)
    attempts 3 -> agent                # after 3 failed attempts (no input or wrong key) go to agent
    no_input play no_input             # played before the retry (optional)
    no_match play invalid_choice       # played before the retry (optional)
    barge_in on                        # a key pressed during the prompt is taken (default on)
    key 1 -> bill
    key 2 -> topup
    key 9 -> english
    key 0 -> agent
    key * -> repeat
    key # -> back
    key 3 -> plans if customer.vip == true    # a key may be guarded; otherwise it is a no-match
}
"##;

const INPUT: &str = r##"input topup_card {
    prompt      enter_card_pin
    digits      18                     # exactly 18; or a range: 6..18
    terminator  "#"                    # optional; ends input early
    timeout     10s                    # for the first key
    inter_digit 4s                     # between keys
    attempts    3 -> agent
    mask                               # never write the digits to logs, CDRs or traces
    no_input play no_input
    no_match play card_pin_invalid     # too few digits, or `valid` below is false
    valid   len(card_pin) == 18        # optional extra check; the new value is visible here
    into    card_pin                   # the variable that receives the digits (a string)
    next    redeem
}
"##;

const LOOKUP: &str = r##"lookup identify {
    query   customer_by_phone(caller) into customer    # named query from the data catalog
    timeout 2s
    found   -> main_menu                # one or more rows (the first row is bound)
    missing -> guest_menu               # zero rows
    error   -> system_busy              # failure, refusal or timeout; the call goes on
}
"##;

const TRANSFER: &str = r##"transfer agent {
    queue    general                    # an ACD queue from the configuration; or: to "sip:95500@pbx"
    skills   "billing", "mandarin"
    priority 10 if customer.vip == true # default 0; higher is served first
    attach   customer.id, customer.name # call data shown to the agent (screen pop)
    music    hold_music                 # prompt looped while waiting
    announce position every 30s         # "you are number N in line"
    max_wait 120s -> leave_message      # no agent in time
    no_agents -> leave_message          # queue closed or nobody logged in
    after    -> satisfaction            # where the caller goes when the agent hangs up first
}
"##;

const SURVEY: &str = r##"survey satisfaction {
    question overall survey_overall scale 1..5       # NAME PROMPT: answered with a key 1-5
    question solved  survey_solved  choices 1 = "yes", 2 = "no"
    timeout  8s
    attempts 2                                      # unanswered question is stored as no answer
    save     surveys                                 # stored with call id, flow version, agent id
    next     goodbye
}
"##;

const RECORD: &str = r##"record leave_message {
    prompt     leave_message_prompt
    beep
    max        60s
    silence    5s                      # stop after 5s of silence
    terminator "#"
    save       messages                # audio file plus a row with call id, caller, length
    next       goodbye
}
"##;

fn parse(src: &str) -> Parsed {
    parse_flow(FileId(0), src)
}

/// Parses a file that must have no diagnostics.
fn clean(src: &str) -> FlowFile {
    let parsed = parse(src);
    assert!(
        parsed.diagnostics.is_empty(),
        "unexpected diagnostics: {:#?}",
        parsed.diagnostics
    );
    parsed.flow
}

/// A node body wrapped in a header.
fn with_header(node: &str) -> String {
    format!("{HEADER}\n{node}")
}

fn text(src: &str, span: Span) -> &str {
    &src[span.range()]
}

/// Every diagnostic as (line, code, message).
fn problems(src: &str) -> Vec<(usize, &'static str, String)> {
    parse(src)
        .diagnostics
        .iter()
        .map(|d| {
            (
                line_col(src, d.span.start as usize).0,
                d.code,
                d.message.clone(),
            )
        })
        .collect()
}

/// The only diagnostic of `src`: its line, code and message.
fn only_problem(src: &str) -> (usize, &'static str, String) {
    let all = problems(src);
    assert_eq!(all.len(), 1, "expected one problem, got {all:#?}");
    all.into_iter().next().unwrap()
}

fn body(flow: &FlowFile, name: &str) -> NodeBody {
    flow.nodes
        .iter()
        .find(|n| n.name.name == name)
        .unwrap_or_else(|| panic!("no node {name}"))
        .body
        .clone()
}

// ---------------------------------------------------------------------------------------------
// The specification's examples

#[test]
fn spec_examples_parse_without_diagnostics() {
    for node in [STEP, MENU, INPUT, LOOKUP, TRANSFER, SURVEY, RECORD] {
        clean(&with_header(node));
    }
    let all = format!("{HEADER}{STEP}{MENU}{INPUT}{LOOKUP}{TRANSFER}{SURVEY}{RECORD}");
    let flow = clean(&all);
    let kinds: Vec<NodeKind> = flow.nodes.iter().map(|n| n.kind()).collect();
    assert_eq!(
        kinds,
        [
            NodeKind::Step,
            NodeKind::Menu,
            NodeKind::Input,
            NodeKind::Lookup,
            NodeKind::Transfer,
            NodeKind::Survey,
            NodeKind::Record
        ]
    );
}

#[test]
fn library_doc_example_parses() {
    let flow = clean("flow f { entry a }\nstep a { hangup }\n");
    assert_eq!(flow.nodes.len(), 1);
}

#[test]
fn header_and_imports() {
    let src = with_header("");
    let flow = clean(&src);
    let h = flow.header.unwrap();
    assert_eq!(h.name.name, "hotline");
    assert_eq!(
        h.title.as_ref().unwrap().node,
        "10010 customer service hotline"
    );
    assert_eq!(
        text(&src, h.title.unwrap().span),
        "\"10010 customer service hotline\""
    );
    assert_eq!(h.language.as_ref().unwrap().node, "zh-CN");
    assert_eq!(h.entry.unwrap().name, "welcome");
    assert!(text(&src, h.span).starts_with("flow hotline {"));
    assert!(text(&src, h.span).ends_with('}'));
    assert_eq!(flow.imports.len(), 1);
    assert_eq!(text(&src, flow.imports[0].span), "common");
}

#[test]
fn header_items_in_any_order_and_quoted_language() {
    let flow = clean("flow f { entry a language \"en-US\" title \"T\" }");
    let h = flow.header.unwrap();
    assert_eq!(h.language.unwrap().node, "en-US");
    assert_eq!(h.title.unwrap().node, "T");
}

// ---------------------------------------------------------------------------------------------
// Where every clause lands

#[test]
fn step_statements_in_order() {
    let src = with_header(
        "step s {\n  play a, b\n  say money customer.balance\n  set x = 1\n  set language en-US\n  pause 500ms\n  if x > 0 -> common.other\n  goto main\n  hangup\n}\n",
    );
    let flow = clean(&src);
    let NodeBody::Step(step) = body(&flow, "s") else {
        panic!()
    };
    let kinds: Vec<&StatementKind> = step.statements.iter().map(|s| &s.kind).collect();
    assert!(matches!(kinds[0], StatementKind::Play { prompts } if prompts.len() == 2));
    assert!(matches!(kinds[1], StatementKind::Say { kind, .. } if kind.node == SayKind::Money));
    assert!(matches!(kinds[2], StatementKind::Set { name, .. } if name.name == "x"));
    assert!(
        matches!(kinds[3], StatementKind::SetLanguage { language } if language.node == "en-US")
    );
    assert!(matches!(kinds[4], StatementKind::Pause { duration } if duration.node.millis == 500));
    let StatementKind::If { target, .. } = kinds[5] else {
        panic!()
    };
    assert_eq!(
        target.kind,
        TargetKind::Imported {
            flow: "common".into(),
            node: "other".into()
        }
    );
    assert_eq!(text(&src, target.span), "common.other");
    assert!(matches!(kinds[6], StatementKind::Goto { target } if target.kind == TargetKind::Main));
    assert!(matches!(kinds[7], StatementKind::Hangup));
    let spans: Vec<&str> = step.statements.iter().map(|s| text(&src, s.span)).collect();
    assert_eq!(
        spans,
        [
            "play a, b",
            "say money customer.balance",
            "set x = 1",
            "set language en-US",
            "pause 500ms",
            "if x > 0 -> common.other",
            "goto main",
            "hangup"
        ]
    );
}

#[test]
fn menu_clauses() {
    let src = with_header(MENU);
    let flow = clean(&src);
    let NodeBody::Menu(m) = body(&flow, "main_menu") else {
        panic!()
    };
    assert_eq!(m.prompt.unwrap()[0].name, "main_menu");
    assert_eq!(m.timeout.unwrap().node.millis, 5_000);
    let attempts = m.attempts.unwrap();
    assert_eq!(attempts.count.node, 3);
    assert_eq!(text(&src, attempts.span), "attempts 3 -> agent");
    assert_eq!(
        attempts.target.unwrap().kind,
        TargetKind::Node("agent".into())
    );
    assert_eq!(m.no_input.unwrap()[0].name, "no_input");
    assert_eq!(m.no_match.unwrap()[0].name, "invalid_choice");
    assert!(m.barge_in.unwrap().node);
    let keys: Vec<&str> = m.keys.iter().map(|k| k.key.text.as_str()).collect();
    assert_eq!(keys, ["1", "2", "9", "0", "*", "#", "3"]);
    assert_eq!(m.keys[4].target.kind, TargetKind::Repeat);
    assert_eq!(m.keys[5].target.kind, TargetKind::Back);
    assert_eq!(text(&src, m.keys[5].span), "key # -> back");
    assert_eq!(text(&src, m.keys[5].key.span), "#");
    let guarded = &m.keys[6];
    assert_eq!(
        text(&src, guarded.span),
        "key 3 -> plans if customer.vip == true"
    );
    assert_eq!(
        text(&src, guarded.guard.as_ref().unwrap().span),
        "customer.vip == true"
    );
    assert!(m.keys[..6].iter().all(|k| k.guard.is_none()));
}

#[test]
fn input_clauses() {
    let src = with_header(INPUT);
    let flow = clean(&src);
    let NodeBody::Input(i) = body(&flow, "topup_card") else {
        panic!()
    };
    assert_eq!(i.prompt.unwrap()[0].name, "enter_card_pin");
    let digits = i.digits.unwrap();
    assert_eq!((digits.min, digits.max), (18, 18));
    assert_eq!(text(&src, digits.span), "digits      18");
    let term = i.terminator.unwrap();
    assert_eq!(term.key(), Some('#'));
    assert_eq!(text(&src, term.span), "\"#\"");
    assert_eq!(i.timeout.unwrap().node.millis, 10_000);
    assert_eq!(i.inter_digit.unwrap().node.millis, 4_000);
    assert_eq!(i.attempts.unwrap().count.node, 3);
    assert_eq!(text(&src, i.mask.unwrap()), "mask");
    assert_eq!(i.no_input.unwrap()[0].name, "no_input");
    assert_eq!(i.no_match.unwrap()[0].name, "card_pin_invalid");
    assert_eq!(text(&src, i.valid.unwrap().span), "len(card_pin) == 18");
    assert_eq!(i.into.unwrap().name, "card_pin");
    assert_eq!(i.next.unwrap().kind, TargetKind::Node("redeem".into()));

    let flow = clean(&with_header(
        "input i { digits 6..18 terminator # into x next main }",
    ));
    let NodeBody::Input(i) = body(&flow, "i") else {
        panic!()
    };
    let digits = i.digits.unwrap();
    assert_eq!((digits.min, digits.max), (6, 18));
    assert_eq!(i.terminator.unwrap().text, "#");
}

#[test]
fn lookup_clauses() {
    let src = with_header(LOOKUP);
    let flow = clean(&src);
    let NodeBody::Lookup(l) = body(&flow, "identify") else {
        panic!()
    };
    let q = l.query.unwrap();
    assert_eq!(q.name.name, "customer_by_phone");
    assert_eq!(q.args.len(), 1);
    assert_eq!(q.into.unwrap().name, "customer");
    assert_eq!(
        text(&src, q.span),
        "query   customer_by_phone(caller) into customer"
    );
    assert_eq!(l.timeout.unwrap().node.millis, 2_000);
    assert_eq!(l.found.unwrap().kind, TargetKind::Node("main_menu".into()));
    assert_eq!(
        l.missing.unwrap().kind,
        TargetKind::Node("guest_menu".into())
    );
    let error = l.error.unwrap();
    assert_eq!(text(&src, error.span), "system_busy");

    let flow = clean(&with_header("lookup l { query redeem(caller, card_pin) }"));
    let NodeBody::Lookup(l) = body(&flow, "l") else {
        panic!()
    };
    let q = l.query.unwrap();
    assert_eq!(q.args.len(), 2);
    assert!(q.into.is_none());
}

#[test]
fn transfer_clauses() {
    let src = with_header(TRANSFER);
    let flow = clean(&src);
    let NodeBody::Transfer(t) = body(&flow, "agent") else {
        panic!()
    };
    assert!(
        matches!(t.destination, Some(Destination::Queue { ref name }) if name.name == "general")
    );
    let skills: Vec<&str> = t.skills.iter().map(|s| s.node.as_str()).collect();
    assert_eq!(skills, ["billing", "mandarin"]);
    assert_eq!(text(&src, t.skills[1].span), "\"mandarin\"");
    let p = t.priority.unwrap();
    assert_eq!(text(&src, p.span), "priority 10 if customer.vip == true");
    assert_eq!(p.value.kind, ExprKind::Number(Decimal::from(10)));
    assert!(p.guard.is_some());
    let attach: Vec<&str> = t.attach.iter().map(|e| text(&src, e.span)).collect();
    assert_eq!(attach, ["customer.id", "customer.name"]);
    assert_eq!(t.music.unwrap()[0].name, "hold_music");
    assert_eq!(t.announce.unwrap().node.millis, 30_000);
    let mw = t.max_wait.unwrap();
    assert_eq!(mw.duration.node.millis, 120_000);
    assert_eq!(mw.target.kind, TargetKind::Node("leave_message".into()));
    assert_eq!(
        t.no_agents.unwrap().kind,
        TargetKind::Node("leave_message".into())
    );
    assert_eq!(
        t.after.unwrap().kind,
        TargetKind::Node("satisfaction".into())
    );

    let src = with_header("transfer t { to \"sip:95500@pbx\" }");
    let flow = clean(&src);
    let NodeBody::Transfer(t) = body(&flow, "t") else {
        panic!()
    };
    let Some(Destination::To { uri }) = t.destination else {
        panic!()
    };
    assert_eq!(uri.node, "sip:95500@pbx");
    assert_eq!(text(&src, uri.span), "\"sip:95500@pbx\"");
}

#[test]
fn survey_clauses() {
    let src = with_header(SURVEY);
    let flow = clean(&src);
    let NodeBody::Survey(s) = body(&flow, "satisfaction") else {
        panic!()
    };
    assert_eq!(s.questions.len(), 2);
    let q = &s.questions[0];
    assert_eq!(
        (q.name.name.as_str(), q.prompt.name.as_str()),
        ("overall", "survey_overall")
    );
    let Answers::Scale { min, max } = &q.answers else {
        panic!()
    };
    assert_eq!((min.node, max.node), (1, 5));
    assert_eq!(text(&src, max.span), "5");
    let Answers::Choices { choices } = &s.questions[1].answers else {
        panic!()
    };
    let pairs: Vec<(&str, &str)> = choices
        .iter()
        .map(|(k, l)| (k.text.as_str(), l.node.as_str()))
        .collect();
    assert_eq!(pairs, [("1", "yes"), ("2", "no")]);
    assert_eq!(
        text(&src, s.questions[1].span),
        "question solved  survey_solved  choices 1 = \"yes\", 2 = \"no\""
    );
    assert_eq!(s.timeout.unwrap().node.millis, 8_000);
    let attempts = s.attempts.unwrap();
    assert_eq!(attempts.count.node, 2);
    assert!(attempts.target.is_none());
    assert_eq!(text(&src, attempts.span), "attempts 2");
    assert_eq!(s.save.unwrap().name, "surveys");
    assert_eq!(s.next.unwrap().kind, TargetKind::Node("goodbye".into()));
}

#[test]
fn record_clauses() {
    let src = with_header(RECORD);
    let flow = clean(&src);
    let NodeBody::Record(r) = body(&flow, "leave_message") else {
        panic!()
    };
    assert_eq!(r.prompt.unwrap()[0].name, "leave_message_prompt");
    assert_eq!(text(&src, r.beep.unwrap()), "beep");
    assert_eq!(r.max.unwrap().node.millis, 60_000);
    assert_eq!(r.silence.unwrap().node.millis, 5_000);
    assert_eq!(r.terminator.unwrap().text, "#");
    assert_eq!(r.save.unwrap().name, "messages");
    assert_eq!(r.next.unwrap().kind, TargetKind::Node("goodbye".into()));
}

#[test]
fn node_spans() {
    let src = with_header(MENU);
    let flow = clean(&src);
    let node = &flow.nodes[0];
    assert_eq!(text(&src, node.keyword_span), "menu");
    assert_eq!(text(&src, node.name.span), "main_menu");
    assert!(text(&src, node.span).starts_with("menu main_menu {"));
    assert!(text(&src, node.span).ends_with("no-match\n}"));
}

// ---------------------------------------------------------------------------------------------
// Expressions and literals

fn expr_of(source: &str) -> (String, Expr) {
    let src = with_header(&format!("step s {{\n  set x = {source}\n  hangup\n}}\n"));
    let flow = clean(&src);
    let NodeBody::Step(step) = body(&flow, "s") else {
        panic!()
    };
    let StatementKind::Set { value, .. } = step.statements[0].kind.clone() else {
        panic!()
    };
    (src, value)
}

/// The expression with explicit parentheses, for comparing structure.
fn shape(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Str(s) => format!("{s:?}"),
        ExprKind::Number(n) => n.to_string(),
        ExprKind::Bool(b) => b.to_string(),
        ExprKind::Duration(d) => format!("{}ms", d.millis),
        ExprKind::Path(p) => p
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>()
            .join("."),
        ExprKind::Call { name, args } => format!(
            "{}({})",
            name.name,
            args.iter().map(shape).collect::<Vec<_>>().join(", ")
        ),
        ExprKind::Unary { op, operand } => match op {
            UnaryOp::Not => format!("(not {})", shape(operand)),
            UnaryOp::Neg => format!("(-{})", shape(operand)),
        },
        ExprKind::Binary { op, lhs, rhs } => {
            format!("({} {} {})", shape(lhs), op.symbol(), shape(rhs))
        }
    }
}

#[test]
fn operator_precedence() {
    let cases = [
        ("1 + 2 * 3", "(1 + (2 * 3))"),
        ("1 * 2 + 3", "((1 * 2) + 3)"),
        ("1 - 2 - 3", "((1 - 2) - 3)"),
        ("8 / 4 / 2", "((8 / 4) / 2)"),
        ("(1 + 2) * 3", "((1 + 2) * 3)"),
        ("a or b and c", "(a or (b and c))"),
        ("a and b or c", "((a and b) or c)"),
        ("not a and b", "((not a) and b)"),
        ("not a == b", "(not (a == b))"),
        ("a + 1 > b * 2 and c", "(((a + 1) > (b * 2)) and c)"),
        ("-a * b", "((-a) * b)"),
        ("- 3 + x", "(-3 + x)"),
        ("a - -3", "(a - -3)"),
        ("-(3)", "(-3)"),
        ("a != b or a <= b", "((a != b) or (a <= b))"),
        ("len(card_pin) == 18", "(len(card_pin) == 18)"),
        ("now() >= 5s", "(now() >= 5000ms)"),
        ("f(a, b + 1).x", "__error__"),
    ];
    for (source, expected) in cases {
        if expected == "__error__" {
            continue;
        }
        let (_, e) = expr_of(source);
        assert_eq!(shape(&e), expected, "for {source}");
    }
}

#[test]
fn expression_spans() {
    let (src, e) = expr_of("(a + 1) * customer.balance");
    assert_eq!(text(&src, e.span), "(a + 1) * customer.balance");
    let ExprKind::Binary { lhs, rhs, op } = &e.kind else {
        panic!()
    };
    assert_eq!(*op, BinaryOp::Mul);
    assert_eq!(text(&src, lhs.span), "(a + 1)");
    assert_eq!(text(&src, rhs.span), "customer.balance");
    let ExprKind::Path(path) = &rhs.kind else {
        panic!()
    };
    assert_eq!(text(&src, path[1].span), "balance");
    let (src, e) = expr_of("-3");
    assert_eq!(text(&src, e.span), "-3");
    assert_eq!(e.kind, ExprKind::Number(Decimal::from(-3)));
    let (src, e) = expr_of("in_hours(agents)");
    assert_eq!(text(&src, e.span), "in_hours(agents)");
}

#[test]
fn literals() {
    let (_, e) = expr_of("58.30");
    assert_eq!(
        e.kind,
        ExprKind::Number(Decimal::from_str("58.30").unwrap())
    );
    assert_eq!(shape(&e), "58.30");
    let (_, e) = expr_of("true");
    assert_eq!(e.kind, ExprKind::Bool(true));
    let (_, e) = expr_of("2m");
    assert_eq!(
        e.kind,
        ExprKind::Duration(ivr_dsl::ast::Duration { millis: 120_000 })
    );
    let (_, e) = expr_of(r#""say \"hi\"\\ \n 中文 ✓""#);
    assert_eq!(e.kind, ExprKind::Str("say \"hi\"\\ \n 中文 ✓".into()));
    let (_, e) = expr_of("flow.version");
    assert_eq!(shape(&e), "flow.version");
}

#[test]
fn chinese_text_and_names() {
    let src = "flow 热线 { title \"客户服务热线\" entry 欢迎 }\nstep 欢迎 { play 欢迎词 hangup }\n";
    let flow = clean(src);
    let h = flow.header.unwrap();
    assert_eq!(h.name.name, "热线");
    assert_eq!(h.title.unwrap().node, "客户服务热线");
    assert_eq!(text(src, flow.nodes[0].name.span), "欢迎");
}

#[test]
fn keys_as_written() {
    let src = with_header("menu m { key \"*\" -> repeat key 12 -> a key x -> b }");
    let flow = clean(&src);
    let NodeBody::Menu(m) = body(&flow, "m") else {
        panic!()
    };
    let keys: Vec<(&str, Option<char>)> = m
        .keys
        .iter()
        .map(|k| (k.key.text.as_str(), k.key.key()))
        .collect();
    assert_eq!(keys, [("*", Some('*')), ("12", None), ("x", None)]);
}

// ---------------------------------------------------------------------------------------------
// Syntax errors

fn msg(line: usize, code: &'static str, message: &str) -> (usize, &'static str, String) {
    (line, code, message.to_string())
}

#[test]
fn missing_arrow() {
    let src = "flow f { entry m }\nmenu m {\n  key 1 bill\n}\n";
    assert_eq!(
        only_problem(src),
        msg(
            3,
            "syntax",
            "expected `->` and a target after `key 1`, found `bill`"
        )
    );
    let src = "flow f { entry m }\nlookup l {\n  found main_menu\n}\n";
    assert_eq!(
        only_problem(src),
        msg(
            3,
            "syntax",
            "expected `->` and a target after `found`, found `main_menu`"
        )
    );
}

#[test]
fn missing_target() {
    let src = "flow f { entry m }\nmenu m {\n  key 2 ->\n  key 3 -> x\n}\n";
    let (line, code, message) = only_problem(src);
    assert_eq!((line, code), (3, "syntax"));
    assert_eq!(
        message,
        "expected a target (a node name, `repeat`, `back`, `main` or `hangup`) after `key 2 ->`"
    );
    let src = "flow f { entry s }\nstep s {\n  goto\n}\n";
    let (line, _, message) = only_problem(src);
    assert_eq!(line, 3);
    assert!(message.starts_with("expected a target"), "{message}");
    let parsed = parse(src);
    // Points just after `goto`.
    assert_eq!(parsed.diagnostics[0].span, Span::new(34, 34));
}

#[test]
fn unterminated_string() {
    let src = "flow f {\n  title \"hotline\n  entry s\n}\n";
    assert_eq!(only_problem(src), msg(2, "syntax", "unterminated string"));
    let parsed = parse(src);
    assert_eq!(text(src, parsed.diagnostics[0].span), "\"hotline");
    // The rest of the header still counts.
    assert_eq!(parsed.flow.header.unwrap().entry.unwrap().name, "s");
}

#[test]
fn missing_closing_brace() {
    let src = "flow f { entry m }\nmenu main_menu {\n  key 1 -> a\n\nstep a {\n  hangup\n}\n";
    assert_eq!(
        only_problem(src),
        msg(3, "syntax", "expected `}` to close menu `main_menu`")
    );
    let parsed = parse(src);
    assert_eq!(parsed.flow.nodes.len(), 2);
    let src = "flow f { entry m }\nmenu main_menu {\n  key 1 -> a\n";
    assert_eq!(
        only_problem(src),
        msg(3, "syntax", "expected `}` to close menu `main_menu`")
    );
}

#[test]
fn bad_duration() {
    let src = "flow f { entry m }\nmenu m {\n  timeout 5x\n}\n";
    assert_eq!(
        only_problem(src),
        msg(
            3,
            "syntax",
            "expected a duration such as `5s` after `timeout`, found `5x`"
        )
    );
    let src = "flow f { entry m }\nmenu m {\n  timeout 5\n}\n";
    let parsed = parse(src);
    assert_eq!(
        parsed.diagnostics[0].hint.as_deref(),
        Some("add a unit: `500ms`, `5s`, `2m` or `1h`")
    );
}

#[test]
fn unknown_clause() {
    let src = "flow f { entry m }\nmenu m {\n  prompt p\n  tiemout 5s\n}\n";
    assert_eq!(
        only_problem(src),
        msg(4, "syntax", "unknown clause `tiemout` in menu `m`")
    );
    let parsed = parse(src);
    assert_eq!(
        parsed.diagnostics[0].hint.as_deref(),
        Some("did you mean `timeout`?")
    );
    let src = "flow f { entry s }\nstep s {\n  jump x\n  hangup\n}\n";
    assert_eq!(
        only_problem(src),
        msg(3, "syntax", "unknown statement `jump` in step `s`")
    );
}

#[test]
fn misplaced_clause() {
    let src = "flow f { entry m }\nmenu m {\n  digits 4\n  key 1 -> a\n}\n";
    assert_eq!(
        only_problem(src),
        msg(
            3,
            "misplaced-clause",
            "`digits` has no meaning in a `menu`; it belongs in an `input`"
        )
    );
    let src = "flow f { entry m }\nlookup l {\n  prompt p\n}\n";
    assert_eq!(
        only_problem(src),
        msg(
            3,
            "misplaced-clause",
            "`prompt` has no meaning in a `lookup`; it belongs in a `menu`, an `input` or a `record`"
        )
    );
    let src = "flow f { entry m }\nstep s {\n  title \"x\"\n  hangup\n}\n";
    assert_eq!(
        only_problem(src),
        msg(
            3,
            "misplaced-clause",
            "`title` has no meaning in a `step`; it belongs in the `flow` header"
        )
    );
}

#[test]
fn duplicate_clause() {
    let src = "flow f { entry m }\nmenu m {\n  timeout 5s\n  key 1 -> a\n  timeout 6s\n}\n";
    assert_eq!(
        only_problem(src),
        msg(
            5,
            "duplicate-clause",
            "`timeout` is given twice in menu `m`"
        )
    );
    let parsed = parse(src);
    let d = &parsed.diagnostics[0];
    assert_eq!(text(src, d.related[0].span), "timeout 5s");
    // The first one counts.
    let NodeBody::Menu(m) = &parsed.flow.nodes[0].body else {
        panic!()
    };
    assert_eq!(m.timeout.as_ref().unwrap().node.millis, 5_000);
}

#[test]
fn keyword_as_name() {
    let src = "flow f { entry welcome }\nmenu main {\n  key 1 -> a\n}\n";
    assert_eq!(
        only_problem(src),
        msg(
            2,
            "reserved-name",
            "`main` is a built-in target and cannot name a node"
        )
    );
    let src = "flow f { entry s }\nstep s {\n  set if = 1\n  hangup\n}\n";
    assert_eq!(
        only_problem(src),
        msg(
            3,
            "reserved-name",
            "`if` is a keyword and cannot be used as a name"
        )
    );
}

#[test]
fn two_broken_nodes_give_two_errors() {
    let src = "flow f { entry a }\n\
               menu a {\n  key 1 -> b\n  timeout 5x\n}\n\
               step b {\n  play welcome\n  goto\n}\n\
               step c {\n  hangup\n}\n";
    let all = problems(src);
    assert_eq!(
        all,
        [
            msg(
                4,
                "syntax",
                "expected a duration such as `5s` after `timeout`, found `5x`"
            ),
            msg(
                8,
                "syntax",
                "expected a target (a node name, `repeat`, `back`, `main` or `hangup`) after `goto`"
            ),
        ]
    );
    // Everything else still parsed.
    let parsed = parse(src);
    assert_eq!(parsed.flow.nodes.len(), 3);
    let NodeBody::Menu(m) = &parsed.flow.nodes[0].body else {
        panic!()
    };
    assert_eq!(m.keys.len(), 1);
}

#[test]
fn one_error_per_broken_line() {
    let src = "flow f { entry m }\nmenu m {\n  key 1 bill\n  timeout five\n  attempts x\n  barge_in maybe\n  key 2 -> ok\n}\n";
    let lines: Vec<usize> = problems(src).iter().map(|p| p.0).collect();
    assert_eq!(lines, [3, 4, 5, 6]);
    let parsed = parse(src);
    let NodeBody::Menu(m) = &parsed.flow.nodes[0].body else {
        panic!()
    };
    assert_eq!(m.keys.len(), 1);
}

#[test]
fn more_messages() {
    let cases: &[(&str, usize, &str)] = &[
        (
            "step s {\n  set x 1\n}",
            2,
            "expected `=` after `set x`, found `1`",
        ),
        (
            "step s {\n  say cash 5\n}",
            2,
            "expected `money`, `number`, `digits`, `date` or `time` after `say`, found `cash`",
        ),
        (
            "step s {\n  if x == -> a\n}",
            2,
            "expected an expression after `if x ==`, found `->`",
        ),
        (
            "step s {\n  if x a\n}",
            2,
            "expected `->` and a target after `if x`, found `a`",
        ),
        (
            "step s {\n  play a,\n  hangup\n}",
            2,
            "expected a name after `play a,`",
        ),
        (
            "lookup l {\n  query q caller\n}",
            2,
            "expected `(` after `query q`, found `caller`",
        ),
        (
            "lookup l {\n  query q(a\n}",
            2,
            "expected `)` after `query q(a`",
        ),
        (
            "menu m {\n  barge_in yes\n}",
            2,
            "expected `on` or `off` after `barge_in`, found `yes`",
        ),
        (
            "input i {\n  digits many\n}",
            2,
            "expected a whole number after `digits`, found `many`",
        ),
        (
            "step s {\n  set x = \"a\\qb\"\n}",
            2,
            "unknown escape `\\q` in a string",
        ),
        (
            "step s {\n  if a < b < c -> x\n}",
            2,
            "comparisons cannot be chained",
        ),
        (
            "survey s {\n  question a p choices 1 = \"y\", 2 \"n\"\n}",
            2,
            "expected `=` after `question a p choices 1 = \"y\", 2`, found `\"n\"`",
        ),
        (
            "menue m {\n}",
            1,
            "expected `flow`, `import` or a node (`step`, `menu`, `input`, `lookup`, `transfer`, `survey` or `record`), found `menue`",
        ),
        (
            "menu {\n  key 1 -> a\n}",
            1,
            "expected a name after `menu`, found `{`",
        ),
        (
            "import\nstep s { hangup }",
            1,
            "expected a name after `import`",
        ),
        (
            "import a.b\nstep s { hangup }",
            1,
            "expected the end of the line after `import a`, found `.`",
        ),
        (
            "transfer t {\n  announce every 30s\n}",
            2,
            "expected `position every` and a duration after `announce`, found `every`",
        ),
        (
            "survey s {\n  question q p\n}",
            2,
            "expected `scale 1..5` or `choices 1 = \"yes\", ...` after `question q p`",
        ),
        (
            "menu m {\n  attempts 3 ->\n}",
            2,
            "expected a target after `->`",
        ),
        (
            "step s {\n  say money 5 +\n}",
            2,
            "expected an expression after `+`",
        ),
        (
            "step s {\n  hangup\n}\n}",
            4,
            "unexpected `}`: no block is open here",
        ),
        (
            "menu m {\n  attempts 99999999999 -> a\n}",
            2,
            "`99999999999` is too large; counts go up to 4294967295",
        ),
    ];
    for (body, line, message) in cases {
        let src = format!("flow f {{ entry s }}\n{body}\n");
        let all = problems(&src);
        assert_eq!(all.len(), 1, "for {body:?}: {all:#?}");
        assert_eq!(
            (all[0].0, all[0].2.as_str()),
            (line + 1, *message),
            "for {body:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Robustness

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = format!("{}x{}", "(".repeat(10_000), ")".repeat(10_000));
    let src = format!("step s {{\n  set y = {deep}\n  hangup\n}}\n");
    let parsed = parse(&src);
    assert!(
        parsed
            .diagnostics
            .iter()
            .any(|d| d.message == "parentheses are nested more than 64 deep"),
        "{:#?}",
        parsed.diagnostics.first()
    );
    for long in [
        "not ".repeat(50_000) + "x",
        "- ".repeat(50_000) + "x",
        "1 + ".repeat(50_000) + "1",
        "f(".repeat(5_000),
    ] {
        let src = format!("step s {{\n  set y = {long}\n  hangup\n}}\n");
        let parsed = parse(&src);
        assert!(!parsed.diagnostics.is_empty());
    }
}

/// A small deterministic generator for the mutation test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn mutated_files_never_panic() {
    let base = format!("{HEADER}{STEP}{MENU}{INPUT}{LOOKUP}{TRANSFER}{SURVEY}{RECORD}");
    let pieces = [
        "{",
        "}",
        "(",
        ")",
        "\"",
        "\\",
        "#",
        "//",
        "->",
        "-",
        ",",
        ".",
        "..",
        "=",
        "\n",
        " ",
        "中",
        "é",
        "99999999999999999999999",
        "5x",
        "key",
        "menu",
        "not",
        "flow",
        "\u{FEFF}",
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..1500 {
        let mut s: Vec<char> = base.chars().collect();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(s.len() + 1);
            match rng.below(3) {
                0 => {
                    let end = (at + rng.below(40)).min(s.len());
                    s.drain(at..end);
                }
                1 => {
                    let p = pieces[rng.below(pieces.len())];
                    for (i, c) in p.chars().enumerate() {
                        s.insert(at + i, c);
                    }
                }
                _ => s.truncate(at),
            }
        }
        let src: String = s.into_iter().collect();
        let parsed = parse(&src);
        for d in &parsed.diagnostics {
            assert!(d.span.end as usize <= src.len());
            assert!(src.is_char_boundary(d.span.start as usize));
            assert!(src.is_char_boundary(d.span.end as usize));
        }
    }
}

#[test]
fn pound_key_in_survey_choices_is_a_key_not_a_comment() {
    let flow = clean(&with_header(
        "survey rate {\n    question q p choices 1 = \"yes\", # = \"no\",\n        * = \"skip\"  # a real comment\n    save surveys\n    next n\n}\n",
    ));
    let NodeBody::Survey(s) = body(&flow, "rate") else {
        panic!("not a survey");
    };
    let ivr_dsl::ast::Answers::Choices { choices } = &s.questions[0].answers else {
        panic!("not choices");
    };
    let keys: Vec<&str> = choices.iter().map(|(k, _)| k.text.as_str()).collect();
    assert_eq!(keys, ["1", "#", "*"]);
    assert!(s.save.is_some());
}

#[test]
fn overflow_and_level_clauses() {
    let src = with_header(
        "transfer t {\n    queue billing\n    overflow general after 30s\n    overflow general when none_idle\n    level 4 if vip == true\n}",
    );
    let flow = clean(&src);
    let NodeBody::Transfer(t) = body(&flow, "t") else {
        panic!()
    };
    assert_eq!(t.overflow.len(), 2);
    assert_eq!(t.overflow[0].queue.name, "general");
    assert!(
        matches!(&t.overflow[0].when, ivr_dsl::ast::OverflowWhen::After { duration } if duration.node.millis == 30_000)
    );
    assert_eq!(
        text(&src, t.overflow[1].span),
        "overflow general when none_idle"
    );
    let ivr_dsl::ast::OverflowWhen::NoneIdle { span } = t.overflow[1].when else {
        panic!()
    };
    assert_eq!(text(&src, span), "when none_idle");
    let level = t.level.unwrap();
    assert_eq!(level.level.node, 4);
    assert_eq!(text(&src, level.span), "level 4 if vip == true");
    assert!(level.guard.is_some());
}

#[test]
fn served_is_a_step_statement_with_a_task_name() {
    let src = with_header("step s {\n  served \"bill_inquiry\"\n  served \"topup\"\n  hangup\n}\n");
    let flow = clean(&src);
    let NodeBody::Step(step) = body(&flow, "s") else {
        panic!()
    };
    let tasks: Vec<(&str, &str)> = step
        .statements
        .iter()
        .filter_map(|s| match &s.kind {
            StatementKind::Served { task } => Some((task.node.as_str(), text(&src, task.span))),
            _ => None,
        })
        .collect();
    assert_eq!(
        tasks,
        [("bill_inquiry", "\"bill_inquiry\""), ("topup", "\"topup\"")]
    );
    assert_eq!(
        text(&src, step.statements[0].span),
        "served \"bill_inquiry\""
    );
    // The slow path (pest only) reads it the same way.
    let slow = ivr_dsl::parse_flow_slow(FileId(0), &src);
    assert_eq!(slow.flow, flow);
}

#[test]
fn record_call_is_a_step_statement_and_a_record_node_still_follows() {
    let src = with_header(
        "step s {\n  record call   # whole call\n  play hello\n  goto r\n}\nrecord r {\n  prompt hello\n  save messages\n  next s\n}\nrecord call {\n  prompt hello\n  save messages\n  next s\n}\n",
    );
    let flow = clean(&src);
    let NodeBody::Step(step) = body(&flow, "s") else {
        panic!()
    };
    assert!(matches!(step.statements[0].kind, StatementKind::RecordCall));
    assert_eq!(text(&src, step.statements[0].span), "record call");
    assert_eq!(step.statements.len(), 3);
    // `record call {` is still a record node named `call`.
    assert!(matches!(body(&flow, "call"), NodeBody::Record(_)));
    assert!(matches!(body(&flow, "r"), NodeBody::Record(_)));
    // The slow path (pest only) reads it the same way.
    let slow = ivr_dsl::parse_flow_slow(FileId(0), &src);
    assert_eq!(slow.flow, flow);
}

#[test]
fn record_without_call_in_a_step_is_an_error() {
    let src = with_header("step s {\n  record hello\n  hangup\n}\n");
    assert!(!parse(&src).diagnostics.is_empty());
}

#[test]
fn callback_clause() {
    let src = with_header(
        "transfer t {\n    queue general\n    callback after 60s -> saved\n}\nstep saved {\n    hangup\n}",
    );
    let flow = clean(&src);
    let NodeBody::Transfer(t) = body(&flow, "t") else {
        panic!()
    };
    let c = t.callback.expect("callback");
    assert_eq!(c.after.node.millis, 60_000);
    assert_eq!(text(&src, c.span), "callback after 60s -> saved");
    assert_eq!(text(&src, c.target.span), "saved");
    // `callback` belongs in transfer nodes only, and says when.
    let (_, _, message) = only_problem(&with_header("step s {\n    callback after 60s -> s\n}"));
    assert!(message.contains("transfer"), "{message}");
    assert!(
        !problems(&with_header(
            "transfer t {\n    queue q\n    callback -> t\n}"
        ))
        .is_empty()
    );
}
