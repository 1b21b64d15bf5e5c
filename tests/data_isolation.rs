//! Scenarios and simulated calls leave the configured database alone: `ivr test` and
//! `ivr simulate` work on its data, but what a call writes is undone at its end (a throwaway
//! copy of a SQLite file, a rolled-back transaction on PostgreSQL); `--live-data` keeps it.
//! Concurrent runs do not see each other's writes. A lookup's failure shows its reason in
//! both commands' output. On SQLite and, with `IVR_TEST_POSTGRES_URL`, PostgreSQL.

mod common;

use ivr_data::connect::{self, Pool, Target};
use ivr_data::query::fetch_rows;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ivr(config: &Path, args: &[&str]) -> (Output, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ivr"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("IVR_LOG")
        .env_remove("RUST_LOG")
        .output()
        .expect("run ivr");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

/// A deployment whose flow opens a ticket in `table` (numbered from 70001) and says its
/// number; `broken_column` is a lookup whose SQL names a column that does not exist.
fn deployment(name: &str, url: &str, table: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ivr-iso-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("flows")).expect("flows");
    std::fs::create_dir_all(dir.join("prompts/zh-CN")).expect("prompts");
    std::fs::write(
        dir.join("ivr.toml"),
        format!(
            r#"[paths]
flows   = "flows"
prompts = "prompts"

[database]
url = "{url}"

[queries.open_ticket]
args        = ["phone"]
transaction = ["INSERT INTO {table} (id, phone) VALUES ((SELECT COALESCE(MAX(id), 70000) + 1 FROM {table}), $1) RETURNING id AS ticket"]
fields      = {{ ticket = "number" }}

[queries.broken_column]
args   = ["phone"]
sql    = "SELECT no_such_column AS ticket FROM {table} WHERE phone = $1"
fields = {{ ticket = "number" }}

[routes]
"100" = "app"
"200" = "broken"
"#
        ),
    )
    .expect("config");
    std::fs::write(
        dir.join("prompts/zh-CN/prompts.toml"),
        "opened = { text = \"您的工单号是\" }\nsorry = { text = \"系统繁忙\" }\n",
    )
    .expect("catalog");
    std::fs::write(
        dir.join("flows/app.flow"),
        "flow app {\n    language zh-CN\n    entry open\n}\n\n\
         lookup open {\n    query   open_ticket(caller) into t\n    found   -> done\n    \
         missing -> sorry\n    error   -> sorry\n}\n\n\
         step done {\n    play opened\n    say number t.ticket\n    hangup\n}\n\n\
         step sorry {\n    play sorry\n    hangup\n}\n",
    )
    .expect("flow");
    std::fs::write(
        dir.join("flows/broken.flow"),
        "flow broken {\n    language zh-CN\n    entry find\n}\n\n\
         lookup find {\n    query   broken_column(caller) into t\n    found   -> done\n    \
         missing -> sorry\n    error   -> sorry\n}\n\n\
         step done {\n    play opened\n    say number t.ticket\n    hangup\n}\n\n\
         step sorry {\n    play sorry\n    hangup\n}\n",
    )
    .expect("flow");
    std::fs::write(
        dir.join("flows/app.scenario"),
        "scenario \"a ticket is opened\"\nflow app\ncaller \"13800000001\"\n\
         expect play opened\nexpect say number 70001\nexpect hangup\n",
    )
    .expect("scenario");
    dir
}

async fn count(pool: &Pool, table: &str) -> String {
    let rows = fetch_rows(pool, &format!("SELECT COUNT(*) FROM {table}"), &[])
        .await
        .expect("count");
    rows[0][0].to_string()
}

/// What both engines must do; `pool` is the configured database.
fn leaves_the_data_alone(dir: &Path, pool: &Pool, table: &str) {
    let rt = ivr_data::source::runtime().expect("runtime");
    let config = dir.join("ivr.toml");
    let app_scenario = dir.join("flows/app.scenario");
    let app_scenario = app_scenario.to_str().expect("utf-8");
    // Twice in a row: the same ticket number, and no row left behind.
    for _ in 0..2 {
        let (out, text) = ivr(&config, &["test", app_scenario]);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed, 0 failed"), "{text}");
        assert_eq!(rt.block_on(count(pool, table)), "0", "{text}");
    }
    // Runs at the same time do not see each other's writes: each opens ticket 70001.
    let runs: Vec<_> = (0..3)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_ivr"))
                .arg("--config")
                .arg(&config)
                .args(["test", app_scenario])
                .env("NO_COLOR", "1")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("start ivr")
        })
        .collect();
    for run in runs {
        let out = run.wait_with_output().expect("ivr test");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed, 0 failed"), "{text}");
    }
    assert_eq!(rt.block_on(count(pool, table)), "0");
    // A simulated call says its ticket number, and keeps nothing either.
    let (out, text) = ivr(&config, &["simulate", "app", "--script", "hangup"]);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("say number 70001"), "{text}");
    assert!(text.contains("not recorded"), "{text}");
    assert_eq!(rt.block_on(count(pool, table)), "0", "{text}");

    // `--live-data` keeps the row: the next run gets the next number, so the scenario fails.
    let (out, text) = ivr(&config, &["test", "--live-data", app_scenario]);
    assert!(out.status.success(), "{text}");
    assert_eq!(rt.block_on(count(pool, table)), "1", "{text}");
    let (out, text) = ivr(&config, &["test", app_scenario]);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("but got: say number 70002"), "{text}");
    assert_eq!(rt.block_on(count(pool, table)), "1", "{text}");
    let (out, text) = ivr(
        &config,
        &["simulate", "app", "--live-data", "--script", "hangup"],
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("say number 70002"), "{text}");
    assert!(text.contains("recorded as call"), "{text}");
    assert_eq!(rt.block_on(count(pool, table)), "2", "{text}");

    // A lookup that fails says why: in the simulator's transcript, in a failing scenario's
    // transcript, and in the log (`IVR_LOG=warn`), with the database's own words.
    let (out, text) = ivr(&config, &["simulate", "broken", "--script", "hangup"]);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("lookup find failed: query `broken_column`"),
        "{text}"
    );
    assert!(text.contains("no_such_column"), "{text}");
    std::fs::write(
        dir.join("flows/broken.scenario"),
        "scenario \"the lookup finds the ticket\"\nflow broken\ncaller \"13800000001\"\n\
         expect play opened\n",
    )
    .expect("scenario");
    let broken = dir.join("flows/broken.scenario");
    let (out, text) = ivr(&config, &["test", broken.to_str().expect("utf-8")]);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("but got: play sorry"), "{text}");
    assert!(
        text.contains("! lookup find failed: query `broken_column`"),
        "{text}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_ivr"))
        .arg("--config")
        .arg(&config)
        .args(["simulate", "broken", "--script", "hangup"])
        .env("NO_COLOR", "1")
        .env("IVR_LOG", "warn")
        .output()
        .expect("run ivr");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("lookup failed") && log.contains("no_such_column") && log.contains("call"),
        "{log}"
    );
}

#[test]
fn sqlite_scenarios_and_simulated_calls_keep_nothing_unless_live_data() {
    let dir = std::env::temp_dir().join(format!("ivr-iso-{}-sqlite-db", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch");
    let file = dir.join("app.db");
    let url = format!("sqlite://{}", file.display());
    let deployment = deployment("sqlite", &url, "tickets");
    let rt = ivr_data::source::runtime().expect("runtime");
    let pool = rt.block_on(async {
        let pool = connect::open(&Target::SqliteFile(file.clone()), 2)
            .await
            .expect("open");
        fetch_rows(
            &pool,
            "CREATE TABLE tickets (id INTEGER PRIMARY KEY, phone TEXT NOT NULL)",
            &[],
        )
        .await
        .expect("create");
        pool
    });
    leaves_the_data_alone(&deployment, &pool, "tickets");
    rt.block_on(pool.close());
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&deployment);
}

#[test]
fn postgres_scenarios_and_simulated_calls_keep_nothing_unless_live_data() {
    let Ok(url) = std::env::var("IVR_TEST_POSTGRES_URL") else {
        common::skip(
            "IVR_TEST_POSTGRES_URL is not set: the PostgreSQL data-isolation test is skipped \
             (`source scripts/postgres.sh && start_postgres`)",
        );
        return;
    };
    let table = format!("iso_tickets_{}", std::process::id());
    let deployment = deployment("postgres", &url, &table);
    let rt = ivr_data::source::runtime().expect("runtime");
    let pool = rt.block_on(async {
        let pool = connect::open(&Target::Postgres(url.clone()), 2)
            .await
            .expect("open");
        fetch_rows(&pool, &format!("DROP TABLE IF EXISTS {table}"), &[])
            .await
            .expect("drop");
        fetch_rows(
            &pool,
            &format!("CREATE TABLE {table} (id INTEGER PRIMARY KEY, phone TEXT NOT NULL)"),
            &[],
        )
        .await
        .expect("create");
        pool
    });
    leaves_the_data_alone(&deployment, &pool, &table);
    rt.block_on(async {
        let _ = fetch_rows(&pool, &format!("DROP TABLE IF EXISTS {table}"), &[]).await;
        pool.close().await;
    });
    let _ = std::fs::remove_dir_all(&deployment);
}
