//! `ivr check` prepares the data catalog on the configured database: a wrong column, a wrong
//! parameter count (an argument the SQL never uses, a parameter the platform does not bind)
//! and a declared field the SQL does not return are errors at their line of `ivr.toml`; an
//! unreachable database is a note. On SQLite and, with `IVR_TEST_POSTGRES_URL`, PostgreSQL.

mod common;

use ivr_data::connect::{self, Target};
use ivr_data::query::fetch_rows;
use std::path::{Path, PathBuf};
use std::process::Command;

fn check(config: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ivr"))
        .arg("--config")
        .arg(config)
        .arg("check")
        .env("NO_COLOR", "1")
        .output()
        .expect("run ivr");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A deployment with a catalog on `table` (columns id, phone, name): one query right, the
/// others each with one mistake; `extra` adds queries.
fn deployment(name: &str, url: &str, table: &str, extra: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ivr-checkdata-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("flows")).expect("flows");
    std::fs::write(
        dir.join("ivr.toml"),
        format!(
            r#"[paths]
flows = "flows"

[database]
url = "{url}"

[queries.right]
args   = ["phone"]
sql    = "SELECT name, id AS number FROM {table} WHERE phone = $1"
fields = {{ name = "text", number = "number" }}

[queries.wrong_column]
args   = ["phone"]
sql    = "SELECT nmae AS name FROM {table} WHERE phone = $1"
fields = {{ name = "text" }}

[queries.field_not_returned]
args   = ["phone"]
sql    = "SELECT name FROM {table} WHERE phone = $1"
fields = {{ name = "text", balance = "money" }}

[queries.unused_argument]
args   = ["phone", "pin"]
sql    = "SELECT name FROM {table} WHERE phone = $1"
fields = {{ name = "text" }}
{extra}"#
        ),
    )
    .expect("config");
    dir
}

/// The line of `ivr.toml` that holds `needle`.
fn line_of(dir: &Path, needle: &str) -> usize {
    let text = std::fs::read_to_string(dir.join("ivr.toml")).expect("config");
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("no line with {needle}"))
}

fn expect_mistakes(dir: &Path, text: &str) {
    let at = |needle: &str| format!("ivr.toml:{}:", line_of(dir, needle));
    let wrong = text
        .split("error[data]: ")
        .find(|b| b.starts_with("query `wrong_column`"))
        .unwrap_or_else(|| panic!("no error for wrong_column\n{text}"));
    assert!(wrong.contains("nmae"), "{text}");
    assert!(wrong.contains(&at("SELECT nmae")), "{text}");
    let field = text
        .split("error[data]: ")
        .find(|b| b.starts_with("query `field_not_returned` declares the field `balance`"))
        .unwrap_or_else(|| panic!("no error for field_not_returned\n{text}"));
    assert!(field.contains(&at("balance = \"money\"")), "{text}");
    assert!(field.contains("AS balance"), "{text}");
    let unused = text
        .split("error[data]: ")
        .find(|b| {
            b.starts_with(
                "query `unused_argument` takes 2 argument(s), but its SQL never uses `$2` (`pin`)",
            )
        })
        .unwrap_or_else(|| panic!("no error for unused_argument\n{text}"));
    assert!(unused.contains(&at("[queries.unused_argument]")), "{text}");
    assert!(!text.contains("query `right`"), "{text}");
}

#[test]
fn sqlite_catalog_mistakes_are_errors_at_their_line() {
    let dir = std::env::temp_dir().join(format!("ivr-checkdata-{}-sqlite-db", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch");
    let file = dir.join("app.db");
    let rt = ivr_data::source::runtime().expect("runtime");
    rt.block_on(async {
        let pool = connect::open(&Target::SqliteFile(file.clone()), 1)
            .await
            .expect("open");
        fetch_rows(
            &pool,
            "CREATE TABLE people (id INTEGER PRIMARY KEY, phone TEXT, name TEXT)",
            &[],
        )
        .await
        .expect("create");
        pool.close().await;
    });
    let url = format!("sqlite://{}", file.display());
    // SQLite counts `:id` as a parameter the platform does not bind.
    let deployed = deployment(
        "sqlite",
        &url,
        "people",
        "\n[queries.colon_parameter]\nargs   = [\"phone\"]\n\
         sql    = \"SELECT name FROM people WHERE phone = $1 AND id = :id\"\n\
         fields = { name = \"text\" }\n",
    );
    let (ok, text) = check(&deployed.join("ivr.toml"));
    assert!(!ok, "{text}");
    expect_mistakes(&deployed, &text);
    assert!(
        text.contains(
            "query `colon_parameter`: the database counts 2 parameter(s), but the platform binds 1"
        ),
        "{text}"
    );
    assert!(text.contains("4 errors"), "{text}");
    let before = std::fs::metadata(&file).expect("file").len();

    // The file is only read; a database that does not exist is a note, not an error.
    let _ = std::fs::remove_dir_all(&deployed);
    let missing = deployment(
        "sqlite-missing",
        &format!("sqlite://{}", dir.join("none.db").display()),
        "people",
        "",
    );
    let (ok, text) = check(&missing.join("ivr.toml"));
    assert!(ok, "{text}");
    assert!(
        text.contains("note: the database could not be reached"),
        "{text}"
    );
    assert!(text.contains("none.db does not exist"), "{text}");
    assert!(!dir.join("none.db").exists());
    assert_eq!(std::fs::metadata(&file).expect("file").len(), before);
    let _ = std::fs::remove_dir_all(&missing);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn postgres_catalog_mistakes_are_errors_at_their_line() {
    let Ok(url) = std::env::var("IVR_TEST_POSTGRES_URL") else {
        common::skip(
            "IVR_TEST_POSTGRES_URL is not set: the PostgreSQL catalog check is skipped \
             (`source scripts/postgres.sh && start_postgres`)",
        );
        return;
    };
    let table = format!("checkdata_people_{}", std::process::id());
    let rt = ivr_data::source::runtime().expect("runtime");
    let pool = rt.block_on(async {
        let pool = connect::open(&Target::Postgres(url.clone()), 1)
            .await
            .expect("open");
        fetch_rows(&pool, &format!("DROP TABLE IF EXISTS {table}"), &[])
            .await
            .expect("drop");
        fetch_rows(
            &pool,
            &format!("CREATE TABLE {table} (id INTEGER PRIMARY KEY, phone TEXT, name TEXT)"),
            &[],
        )
        .await
        .expect("create");
        pool
    });
    let deployed = deployment(
        "postgres",
        &url,
        &table,
        &format!(
            "\n[queries.missing_table]\nargs   = [\"phone\"]\n\
             transaction = [\n  \"UPDATE {table} SET name = name WHERE phone = $1 RETURNING id\",\n  \
             \"INSERT INTO no_such_table (x) VALUES ($id) RETURNING x\",\n]\n\
             fields = {{ id = \"number\", x = \"number\" }}\n"
        ),
    );
    let (ok, text) = check(&deployed.join("ivr.toml"));
    assert!(!ok, "{text}");
    expect_mistakes(&deployed, &text);
    assert!(
        text.contains("statement 2 of query `missing_table`: the database refuses it")
            && text.contains("no_such_table")
            && text.contains(&format!(
                "ivr.toml:{}:",
                line_of(&deployed, "INSERT INTO no_such_table")
            )),
        "{text}"
    );
    assert!(text.contains("4 errors"), "{text}");

    // A server that does not answer is a note.
    let _ = std::fs::remove_dir_all(&deployed);
    let down = deployment(
        "postgres-down",
        "postgres://ivr@127.0.0.1:9/ivr",
        &table,
        "",
    );
    let (ok, text) = check(&down.join("ivr.toml"));
    assert!(ok, "{text}");
    assert!(
        text.contains("note: the database could not be reached"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&down);
    rt.block_on(async {
        let _ = fetch_rows(&pool, &format!("DROP TABLE IF EXISTS {table}"), &[]).await;
        pool.close().await;
    });
}
