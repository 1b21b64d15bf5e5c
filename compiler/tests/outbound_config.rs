//! `[trunks.*]` and `[campaigns.*]` of `ivr.toml`: read, defaults, and mistakes reported at
//! their values.

use ivr_compiler::config::Config;
use ivr_dsl::{Diagnostic, FileId};
use std::path::Path;

fn parse(text: &str) -> (Config, Vec<Diagnostic>) {
    Config::parse(FileId(0), Path::new("/x"), text)
}

const BASE: &str = r#"
[queries.arrears_due]
sql    = "SELECT phone, arrears FROM customers WHERE arrears > 0"
fields = { phone = "text", arrears = "money" }
[queries.customer]
args = ["phone"]
sql  = "SELECT name FROM customers WHERE phone = $1"
fields = { name = "text" }
[calendars.office]
"mon-fri" = "09:00-18:00"
"#;

#[test]
fn the_spec_example_reads() {
    let text = format!(
        "{BASE}{}",
        r#"
[trunks.carrier]
uri        = "sip:192.0.2.1:5060"
caller_id  = "10010"
max_calls  = 60
username   = "ivr"
password   = "s3cret"

[campaigns.arrears]
flow         = "arrears_notice"
list         = "arrears_due"
trunk        = "carrier"
calendar     = "office"
max_calls    = 20
rate         = 5
attempts     = 3
retry_after  = "30m"
ring_timeout = "30s"
"#
    );
    let (c, d) = parse(&text);
    assert!(d.is_empty(), "{d:?}");
    let t = &c.trunks["carrier"];
    assert_eq!(
        t.target.uri_for("13800000001"),
        "sip:13800000001@192.0.2.1:5060"
    );
    assert_eq!((t.caller_id.as_str(), t.max_calls), ("10010", 60));
    assert_eq!(t.username.as_deref(), Some("ivr"));
    let k = &c.campaigns["arrears"];
    assert_eq!(
        (k.flow.as_str(), k.list.as_str()),
        ("arrears_notice", "arrears_due")
    );
    assert_eq!(k.calendar.as_deref(), Some("office"));
    assert_eq!((k.max_calls, k.attempts), (20, 3));
    assert!((k.rate - 5.0).abs() < f64::EPSILON);
    assert_eq!((k.retry_after_ms, k.ring_timeout_ms), (1_800_000, 30_000));
    assert_eq!(
        &text[k.flow_span.start as usize..k.flow_span.end as usize],
        "\"arrears_notice\""
    );
}

#[test]
fn defaults_tcp_and_ipv6_trunks() {
    let text = format!(
        "{BASE}{}",
        r#"
[trunks.a]
uri = "sip:gw.example.net;transport=tcp"
[trunks.b]
uri = "sip:[2001:db8::1]:5080"
[campaigns.c]
flow = "f"
list = "arrears_due"
trunk = "a"
rate = 0.5
"#
    );
    let (c, d) = parse(&text);
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(
        c.trunks["a"].target.uri_for("1"),
        "sip:1@gw.example.net:5060;transport=tcp"
    );
    assert_eq!(
        c.trunks["b"].target.uri_for("1"),
        "sip:1@[2001:db8::1]:5080"
    );
    let k = &c.campaigns["c"];
    assert_eq!((k.max_calls, k.attempts, k.calendar.clone()), (10, 3, None));
    assert!((k.rate - 0.5).abs() < f64::EPSILON);
}

fn messages(text: &str) -> Vec<String> {
    parse(&format!("{BASE}{text}"))
        .1
        .into_iter()
        .map(|d| d.message)
        .collect()
}

#[test]
fn mistakes_are_reported_at_their_values() {
    let m = messages(
        r#"
[trunks.bad]
uri = "http://x"
[trunks.half]
uri = "sip:gw"
username = "u"
max_calls = 0
[campaigns.c]
flow = "f"
list = "customer"
trunk = "carier"
calendar = "ofice"
rate = 0
attempts = 0
retry_after = "soon"
"#,
    );
    for want in [
        "trunk `bad`'s uri `http://x` does not start with `sip:`",
        "trunk `half` has only one of `username` and `password`",
        "trunk `half` has max_calls 0",
        "campaign `c`'s list `customer` takes arguments",
        "campaign `c`'s trunk `carier` is not a working",
        "campaign `c`'s calendar `ofice` is not in",
        "campaign `c` has rate 0",
        "campaign `c` has attempts 0",
        "campaign `c` has a bad retry_after `soon`",
    ] {
        assert!(m.iter().any(|x| x.contains(want)), "{want} not in {m:#?}");
    }
}

#[test]
fn missing_keys_unknown_keys_and_a_list_without_phone() {
    let m = messages(
        r#"
[queries.no_phone]
sql = "SELECT name FROM customers"
fields = { name = "text" }
[trunks.t]
uri = "sip:gw"
callerid = "1"
[campaigns.c]
list = "no_phone"
[campaigns.d]
flow = "f"
list = "no_phone"
trunk = "t"
"#,
    );
    for want in [
        "campaign `c` has no `flow`",
        "campaign `c` has no `trunk`",
        "unknown key `callerid` (in `trunks.t.callerid`)",
        "campaign `d`'s list `no_phone` returns no `phone` field",
    ] {
        assert!(m.iter().any(|x| x.contains(want)), "{want} not in {m:#?}");
    }
}
