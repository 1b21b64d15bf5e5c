//! The call engine alone: events per second through the reference hotline on one core, and
//! the memory an idle call holds. Run with `cargo bench --bench engine`.

// criterion's macros write undocumented functions.
#![allow(missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ivr_compiler::compile_flow;
use ivr_engine::value::Value;
use ivr_engine::{Call, CallInfo, Channel, Command, Event, Flow, Machine, QueryResult};
use rust_decimal::Decimal;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

fn hotline() -> Arc<Flow> {
    let (checked, name) =
        compile_flow(Some(Path::new("ivr.toml")), "hotline").expect("hotline compiles");
    assert_eq!(checked.error_count(), 0);
    let program = checked.programs.get(&name).expect("program").clone();
    Arc::new(Flow::new(program, &checked.config))
}

/// A minimal driver: answers queries with a row of the right width, finishes playback at once,
/// then presses the next key of the script. Returns the number of events handled.
fn one_call(flow: &Arc<Flow>, out: &mut Vec<Command>, keys: &[char]) -> u64 {
    let info = CallInfo {
        id: "bench".into(),
        caller: "13800000001".into(),
        called: "10010".into(),
        channel: Channel::Sip,
        contact: Vec::new(),
    };
    let mut call = Call::new(Arc::clone(flow), info);
    let row = |node: u32| -> Vec<Value> {
        let ivr_compiler::program::Body::Lookup(l) = &flow.program.nodes[node as usize].body else {
            return Vec::new();
        };
        let n = flow.queries.get(&l.query).map_or(0, |q| q.fields.len());
        let mut v = vec![Value::Number(Decimal::new(5830, 2)); n];
        if let Some(q) = flow.queries.get(&l.query) {
            for (i, (_, t)) in q.fields.iter().enumerate() {
                v[i] = match t {
                    ivr_compiler::config::FieldType::Bool => Value::Bool(true),
                    ivr_compiler::config::FieldType::Text => Value::Text("张三".into()),
                    ivr_compiler::config::FieldType::Money => Value::Money(Decimal::new(5830, 2)),
                    _ => Value::Number(Decimal::new(100, 0)),
                };
            }
        }
        v
    };
    let mut events = 0u64;
    let mut now = 1_700_000_000_000i64;
    let mut pending = vec![Event::Start];
    let mut script = keys.iter();
    while let Some(ev) = pending.pop() {
        out.clear();
        call.handle_input(ev, now);
        out.extend(std::iter::from_fn(|| call.poll_output()));
        events += 1;
        now += 20;
        let mut last_seq = None;
        for c in out.iter() {
            match c {
                Command::RunQuery { id, node, .. } => pending.push(Event::QueryDone {
                    id: *id,
                    result: QueryResult::Found(row(*node)),
                }),
                Command::Play { seq, .. }
                | Command::Say { seq, .. }
                | Command::Silence { seq, .. } => last_seq = Some(*seq),
                Command::StopPlayback => last_seq = None,
                _ => {}
            }
        }
        if call.is_ended() {
            break;
        }
        if pending.is_empty() {
            if let Some(seq) = last_seq {
                pending.push(Event::PlaybackDone { seq });
            } else {
                match script.next() {
                    Some(k) => pending.push(Event::Key(*k)),
                    None => pending.push(Event::Hangup),
                }
            }
        }
    }
    events
}

fn bench(c: &mut Criterion) {
    let flow = hotline();
    let keys = ['3', '*', '#', '9', '3', '#', '*'];
    let mut out = Vec::with_capacity(64);
    let per_call = one_call(&flow, &mut out, &keys);
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(per_call));
    g.bench_function("hotline_call_events", |b| {
        b.iter(|| black_box(one_call(&flow, &mut out, black_box(&keys))))
    });
    g.finish();

    // Memory of an idle call waiting in the main menu.
    let info = CallInfo {
        id: "c0a80001-5f3e-4b1a-9d7e-000000000001".into(),
        caller: "13800000001".into(),
        called: "10010".into(),
        channel: Channel::Sip,
        contact: Vec::new(),
    };
    let mut call = Call::new(Arc::clone(&flow), info);
    out.clear();
    call.handle_input(Event::Start, 0);
    out.extend(std::iter::from_fn(|| call.poll_output()));
    let (fixed, vars) = call.memory_bytes();
    println!(
        "engine/idle_call_bytes: {fixed} bytes per call + {vars} bytes of variables ({} variables); {per_call} events per scripted call",
        flow.program.vars.len()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
