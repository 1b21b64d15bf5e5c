//! Executing the data catalog: each named query of `ivr.toml` with its arguments bound (never
//! spliced), on SQLite or PostgreSQL.
//!
//! - Parameters: `$1`, `$2`, ... are the query's arguments; in a transaction, `$name` is the
//!   field `name` returned by an earlier statement. Each statement is rewritten once, at
//!   startup, so that it binds exactly the parameters it uses, numbered in order of first
//!   appearance (`?1`, `?2` on SQLite, whose `$1` would be a *named* parameter; `$1`, `$2` on
//!   PostgreSQL, which cannot type a parameter a statement does not use).
//! - A read (`sql`) finds the first row or none. A `transaction` runs its statements in order
//!   in one database transaction (`BEGIN IMMEDIATE` on SQLite, so that concurrent writers queue
//!   instead of failing); a statement that finds no row (or, without `RETURNING`, changes no
//!   row) ends it as `missing` and rolls everything back.
//! - Every run is bounded by a timeout (the lookup's, else the query's, else
//!   [`DEFAULT_TIMEOUT`]); on expiry the transaction is dropped, which rolls it back.
//! - Columns are matched to the catalog's fields by name and converted to the field's type.
//!   Money is exact: a PostgreSQL `NUMERIC` is read as a decimal; SQLite, which has no decimal
//!   type, gives REAL, INTEGER or TEXT, converted through text (shortest round-trip form) and
//!   rounded to 2 decimal places (half away from zero).

use super::DataError;
use super::connect::Pool;
use super::hashing::Secret;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use indexmap::IndexMap;
use ivr_compiler::config::{FieldType, QueryDef};
use ivr_engine::QueryResult;
use ivr_engine::value::Value;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use sqlx::postgres::types::Oid;
use sqlx::postgres::{PgArgumentBuffer, PgArguments, PgRow, PgTypeInfo};
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Column, Postgres, Row, Sqlite, TypeInfo, ValueRef};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// The timeout of a query run without one (the compiler's default lookup timeout).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(3_000);

/// What a statement parameter is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    /// The query's argument at this index.
    Arg(usize),
    /// A field returned by an earlier statement of the transaction.
    Field(String),
}

/// One statement, rewritten for both engines.
#[derive(Debug, Clone)]
pub struct Statement {
    /// With `?1`, `?2`, ... parameters.
    pub sqlite: String,
    /// With `$1`, `$2`, ... parameters.
    pub postgres: String,
    /// What each parameter (1, 2, ...) is bound to.
    pub binds: Vec<Bind>,
    /// Whether it returns rows (`SELECT`, `WITH`, `VALUES` or `RETURNING`); otherwise a
    /// statement that changes no row counts as finding none.
    pub returns_rows: bool,
}

/// A catalog query ready to run.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Its name.
    pub name: String,
    /// Its catalog entry.
    pub def: QueryDef,
    /// Its statements.
    pub statements: Vec<Statement>,
    /// Per argument: bound as its HMAC.
    pub hashed: Vec<bool>,
}

impl Prepared {
    /// Rewrites the statements of `def`; mistakes (a `$3` of a query with two arguments, a
    /// `$name` in the first statement) are errors naming the query.
    pub fn new(name: &str, def: &QueryDef) -> Result<Prepared, DataError> {
        let mut statements = Vec::new();
        for (i, sql) in def.statements.iter().enumerate() {
            let st = rewrite(sql).map_err(|source| DataError::Statement {
                query: name.to_string(),
                source,
            })?;
            for b in &st.binds {
                match b {
                    Bind::Arg(a) if *a >= def.args.len() => {
                        return Err(DataError::Config(format!(
                            "query `{name}`: `${}` but the query has {} argument(s) ({})",
                            a + 1,
                            def.args.len(),
                            def.args.join(", ")
                        )));
                    }
                    Bind::Field(f) if i == 0 => {
                        return Err(DataError::Config(format!(
                            "query `{name}`: `${f}` names a field of an earlier statement, but this is the first statement"
                        )));
                    }
                    _ => {}
                }
            }
            statements.push(st);
        }
        Ok(Prepared {
            name: name.to_string(),
            def: def.clone(),
            statements,
            hashed: def.args.iter().map(|a| def.hash.contains(a)).collect(),
        })
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// SQL whose parameters cannot be rewritten.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    /// A `'string'` or `"identifier"` runs to the end.
    #[error("a quote is not closed")]
    UnclosedQuote,
    /// A `/* comment` runs to the end.
    #[error("a /* comment */ is not closed")]
    UnclosedComment,
    /// A `$tag$` (or `$$`) string runs to the end; the tag with its dollars.
    #[error("a {0} string is not closed")]
    UnclosedDollarQuote(String),
    /// A numbered parameter too large to be one: its digits.
    #[error("bad parameter `${0}`")]
    BadParameter(String),
    /// `$0`.
    #[error("parameters start at `$1`")]
    ParameterZero,
    /// A `$` that starts no parameter and no dollar-quoted string.
    #[error("a `$` must start a parameter: `$1` or `$field`")]
    BareDollar,
    /// A `?` parameter.
    #[error("write parameters as `$1`, `$2`, ... (not `?`)")]
    QuestionMark,
}

/// Rewrites one statement's parameters (see the module documentation), skipping string
/// literals, quoted identifiers, comments and PostgreSQL dollar-quoted strings.
pub fn rewrite(sql: &str) -> Result<Statement, RewriteError> {
    let chars: Vec<char> = sql.chars().collect();
    let mut binds: Vec<Bind> = Vec::new();
    let mut sqlite = String::with_capacity(sql.len());
    let mut postgres = String::with_capacity(sql.len());
    // Text outside literals and comments, upper-cased, to find RETURNING.
    let mut code = String::with_capacity(sql.len());
    let mut i = 0;
    let push = |s: &mut String, p: &mut String, c: char| {
        s.push(c);
        p.push(c);
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\'' | '"' => {
                let q = c;
                push(&mut sqlite, &mut postgres, c);
                i += 1;
                loop {
                    let Some(&d) = chars.get(i) else {
                        return Err(RewriteError::UnclosedQuote);
                    };
                    push(&mut sqlite, &mut postgres, d);
                    i += 1;
                    if d == q {
                        if chars.get(i) == Some(&q) {
                            push(&mut sqlite, &mut postgres, q);
                            i += 1;
                        } else {
                            break;
                        }
                    }
                }
                code.push(' ');
            }
            '-' if chars.get(i + 1) == Some(&'-') => {
                while i < chars.len() && chars[i] != '\n' {
                    push(&mut sqlite, &mut postgres, chars[i]);
                    i += 1;
                }
                code.push(' ');
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                push(&mut sqlite, &mut postgres, '/');
                push(&mut sqlite, &mut postgres, '*');
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    push(&mut sqlite, &mut postgres, chars[i]);
                    i += 1;
                }
                if i >= chars.len() {
                    return Err(RewriteError::UnclosedComment);
                }
                push(&mut sqlite, &mut postgres, '*');
                push(&mut sqlite, &mut postgres, '/');
                i += 2;
                code.push(' ');
            }
            '$' => {
                let start = i + 1;
                let mut j = start;
                let bind = if chars.get(j).is_some_and(|c| c.is_ascii_digit()) {
                    while chars.get(j).is_some_and(|c| c.is_ascii_digit()) {
                        j += 1;
                    }
                    let n: String = chars[start..j].iter().collect();
                    let n: usize = n.parse().map_err(|_| RewriteError::BadParameter(n))?;
                    if n == 0 {
                        return Err(RewriteError::ParameterZero);
                    }
                    Bind::Arg(n - 1)
                } else if chars.get(j).is_some_and(|&c| is_ident_start(c)) {
                    while chars.get(j).is_some_and(|&c| is_ident(c)) {
                        j += 1;
                    }
                    let name: String = chars[start..j].iter().collect();
                    if chars.get(j) == Some(&'$') {
                        // A dollar-quoted string `$tag$ ... $tag$`: copy it as it is.
                        let tag: String = chars[i..=j].iter().collect();
                        let rest: String = chars[j + 1..].iter().collect();
                        let Some(end) = rest.find(&tag) else {
                            return Err(RewriteError::UnclosedDollarQuote(tag));
                        };
                        let body = format!("{tag}{}{tag}", &rest[..end]);
                        sqlite.push_str(&body);
                        postgres.push_str(&body);
                        i = j + 1 + rest[..end].chars().count() + tag.chars().count();
                        code.push(' ');
                        continue;
                    }
                    Bind::Field(name)
                } else if chars.get(j) == Some(&'$') {
                    // `$$ ... $$`
                    let rest: String = chars[j + 1..].iter().collect();
                    let Some(end) = rest.find("$$") else {
                        return Err(RewriteError::UnclosedDollarQuote("$$".into()));
                    };
                    let body = format!("$${}$$", &rest[..end]);
                    sqlite.push_str(&body);
                    postgres.push_str(&body);
                    i = j + 1 + rest[..end].chars().count() + 2;
                    code.push(' ');
                    continue;
                } else {
                    return Err(RewriteError::BareDollar);
                };
                let slot = match binds.iter().position(|b| *b == bind) {
                    Some(p) => p + 1,
                    None => {
                        binds.push(bind);
                        binds.len()
                    }
                };
                sqlite.push_str(&format!("?{slot}"));
                postgres.push_str(&format!("${slot}"));
                code.push(' ');
                i = j;
            }
            '?' => return Err(RewriteError::QuestionMark),
            _ => {
                push(&mut sqlite, &mut postgres, c);
                code.push(c.to_ascii_uppercase());
                i += 1;
            }
        }
    }
    let words: Vec<&str> = code
        .split(|c: char| !is_ident(c))
        .filter(|w| !w.is_empty())
        .collect();
    let returns_rows = matches!(words.first(), Some(&"SELECT" | &"WITH" | &"VALUES"))
        || words.contains(&"RETURNING");
    Ok(Statement {
        sqlite,
        postgres,
        binds,
        returns_rows,
    })
}

/// A column value as the database gave it.
#[derive(Debug, Clone)]
enum Raw {
    Null,
    Int(i64),
    Dec(Decimal),
    Float(f64),
    Text(String),
    Bool(bool),
    Date(NaiveDate),
    Time(NaiveTime),
    DateTime(NaiveDateTime),
}

fn float_decimal(f: f64) -> Option<Decimal> {
    if !f.is_finite() {
        return None;
    }
    // Shortest round-trip text: 108.29999999999998 stays what it is, 58.3 reads as 58.3.
    Decimal::from_str(&format!("{f}"))
        .ok()
        .or_else(|| Decimal::try_from(f).ok())
}

fn money(d: Decimal) -> Value {
    Value::Money(d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero))
}

fn parse_date(t: &str) -> Option<NaiveDate> {
    let t = t.trim();
    NaiveDate::parse_from_str(t.get(..10).unwrap_or(t), "%Y-%m-%d").ok()
}

fn parse_time(t: &str) -> Option<NaiveTime> {
    let t = t.trim();
    let t = if t.len() > 10
        && t.as_bytes()
            .get(10)
            .is_some_and(|b| *b == b' ' || *b == b'T')
    {
        &t[11..]
    } else {
        t
    };
    NaiveTime::parse_from_str(t, "%H:%M:%S%.f")
        .or_else(|_| NaiveTime::parse_from_str(t, "%H:%M"))
        .ok()
}

fn parse_datetime(t: &str) -> Option<NaiveDateTime> {
    let t = t.trim();
    NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f"))
        .ok()
}

/// A column value that cannot be read as the type of its catalog field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read {value} as {}", .ty.name())]
pub struct ConvertError {
    /// The value as the database gave it.
    pub value: String,
    /// The field's type.
    pub ty: FieldType,
}

/// A column of no catalog field, as the closest value.
fn untyped(raw: Raw) -> Value {
    match raw {
        Raw::Null => Value::Null,
        Raw::Int(i) => Value::Number(Decimal::from(i)),
        Raw::Dec(d) => Value::Number(d),
        Raw::Float(f) => float_decimal(f).map_or(Value::Null, Value::Number),
        Raw::Text(t) => Value::Text(t),
        Raw::Bool(b) => Value::Bool(b),
        Raw::Date(d) => Value::Date(d),
        Raw::Time(t) => Value::Time(t),
        Raw::DateTime(t) => Value::DateTime(t),
    }
}

/// Converts a column to the catalog type `ty`.
fn convert(raw: Raw, ty: FieldType) -> Result<Value, ConvertError> {
    let bad = |raw: &Raw, ty: FieldType| ConvertError {
        value: format!("{raw:?}"),
        ty,
    };
    if matches!(raw, Raw::Null) {
        return Ok(Value::Null);
    }
    let value = match ty {
        FieldType::Money | FieldType::Number => {
            let d = match &raw {
                Raw::Int(i) => Some(Decimal::from(*i)),
                Raw::Dec(d) => Some(*d),
                Raw::Float(f) => float_decimal(*f),
                Raw::Text(t) => Decimal::from_str(t.trim())
                    .ok()
                    .or_else(|| t.trim().parse::<f64>().ok().and_then(float_decimal)),
                Raw::Bool(b) => Some(Decimal::from(u8::from(*b))),
                _ => None,
            };
            let d = d.ok_or_else(|| bad(&raw, ty))?;
            if ty == FieldType::Money {
                money(d)
            } else {
                Value::Number(d.normalize())
            }
        }
        FieldType::Text => Value::Text(match raw {
            Raw::Text(t) => t,
            Raw::Int(i) => i.to_string(),
            Raw::Dec(d) => d.to_string(),
            Raw::Float(f) => float_decimal(f).map_or_else(|| f.to_string(), |d| d.to_string()),
            Raw::Bool(b) => b.to_string(),
            Raw::Date(d) => d.format("%Y-%m-%d").to_string(),
            Raw::Time(t) => t.format("%H:%M:%S").to_string(),
            Raw::DateTime(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
            Raw::Null => String::new(),
        }),
        FieldType::Bool => Value::Bool(match &raw {
            Raw::Bool(b) => *b,
            Raw::Int(i) => *i != 0,
            Raw::Dec(d) => !d.is_zero(),
            Raw::Float(f) => *f != 0.0,
            Raw::Text(t) => match t.trim().to_ascii_lowercase().as_str() {
                "t" | "true" | "1" | "y" | "yes" => true,
                "f" | "false" | "0" | "n" | "no" => false,
                _ => return Err(bad(&raw, ty)),
            },
            _ => return Err(bad(&raw, ty)),
        }),
        FieldType::Date => Value::Date(match &raw {
            Raw::Date(d) => *d,
            Raw::DateTime(t) => t.date(),
            Raw::Text(t) => parse_date(t).ok_or_else(|| bad(&raw, ty))?,
            _ => return Err(bad(&raw, ty)),
        }),
        FieldType::Time => Value::Time(match &raw {
            Raw::Time(t) => *t,
            Raw::DateTime(t) => t.time(),
            Raw::Text(t) => parse_time(t).ok_or_else(|| bad(&raw, ty))?,
            _ => return Err(bad(&raw, ty)),
        }),
    };
    Ok(value)
}

fn sqlite_raw(row: &SqliteRow, i: usize) -> Result<Raw, sqlx::Error> {
    let value = row.try_get_raw(i)?;
    if value.is_null() {
        return Ok(Raw::Null);
    }
    let kind = value.type_info().name().to_string();
    Ok(match kind.as_str() {
        "INTEGER" => Raw::Int(row.try_get_unchecked::<i64, _>(i)?),
        "REAL" => Raw::Float(row.try_get_unchecked::<f64, _>(i)?),
        "BLOB" => Raw::Text(
            String::from_utf8_lossy(&row.try_get_unchecked::<Vec<u8>, _>(i)?).into_owned(),
        ),
        _ => {
            let t = row.try_get_unchecked::<String, _>(i)?;
            match parse_datetime(&t) {
                Some(dt) if kind == "DATETIME" => Raw::DateTime(dt),
                _ => Raw::Text(t),
            }
        }
    })
}

fn pg_raw(row: &PgRow, i: usize) -> Result<Raw, sqlx::Error> {
    let value = row.try_get_raw(i)?;
    if value.is_null() {
        return Ok(Raw::Null);
    }
    let kind = value.type_info().name().to_string();
    Ok(match kind.as_str() {
        "NUMERIC" => Raw::Dec(row.try_get::<Decimal, _>(i)?),
        "INT2" => Raw::Int(i64::from(row.try_get::<i16, _>(i)?)),
        "INT4" => Raw::Int(i64::from(row.try_get::<i32, _>(i)?)),
        "INT8" => Raw::Int(row.try_get::<i64, _>(i)?),
        "FLOAT4" => Raw::Float(f64::from(row.try_get::<f32, _>(i)?)),
        "FLOAT8" => Raw::Float(row.try_get::<f64, _>(i)?),
        "BOOL" => Raw::Bool(row.try_get::<bool, _>(i)?),
        "DATE" => Raw::Date(row.try_get::<NaiveDate, _>(i)?),
        "TIME" => Raw::Time(row.try_get::<NaiveTime, _>(i)?),
        "TIMESTAMP" => Raw::DateTime(row.try_get::<NaiveDateTime, _>(i)?),
        "TIMESTAMPTZ" => Raw::DateTime(row.try_get::<DateTime<Utc>, _>(i)?.naive_utc()),
        _ => Raw::Text(row.try_get_unchecked::<String, _>(i)?),
    })
}

type SqliteQuery<'q> = Query<'q, Sqlite, SqliteArguments<'q>>;
type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

fn not_bindable(v: &Value) -> DataError {
    DataError::Query(format!("cannot bind {v:?} as a query parameter"))
}

/// SQLite has no decimal type: whole numbers bind as INTEGER, others as REAL.
fn bind_sqlite<'q>(q: SqliteQuery<'q>, v: &Value) -> Result<SqliteQuery<'q>, DataError> {
    Ok(match v {
        Value::Null => q.bind(None::<String>),
        Value::Text(s) => q.bind(s.clone()),
        Value::Number(d) | Value::Money(d) => {
            match d.fract().is_zero().then(|| d.to_i64()).flatten() {
                Some(i) => q.bind(i),
                None => q.bind(d.to_f64().ok_or_else(|| not_bindable(v))?),
            }
        }
        Value::Bool(b) => q.bind(*b),
        Value::Duration(ms) => q.bind(i64::try_from(*ms).unwrap_or(i64::MAX)),
        Value::Date(d) => q.bind(d.format("%Y-%m-%d").to_string()),
        Value::Time(t) => q.bind(t.format("%H:%M:%S").to_string()),
        Value::DateTime(t) => q.bind(t.format("%Y-%m-%d %H:%M:%S").to_string()),
        Value::Row(_) => return Err(not_bindable(v)),
    })
}

/// A NULL parameter of no declared type: PostgreSQL infers it from where it is used (a NULL
/// typed as text could not be stored in a number or date column).
struct PgNull;

impl sqlx::Type<Postgres> for PgNull {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(Oid(0))
    }
}

impl sqlx::Encode<'_, Postgres> for PgNull {
    fn encode_by_ref(
        &self,
        _buf: &mut PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        Ok(sqlx::encode::IsNull::Yes)
    }
}

/// PostgreSQL: numbers and money bind as NUMERIC (exact).
fn bind_pg<'q>(q: PgQuery<'q>, v: &Value) -> Result<PgQuery<'q>, DataError> {
    Ok(match v {
        Value::Null => q.bind(PgNull),
        Value::Text(s) => q.bind(s.clone()),
        Value::Number(d) | Value::Money(d) => q.bind(*d),
        Value::Bool(b) => q.bind(*b),
        Value::Duration(ms) => q.bind(i64::try_from(*ms).unwrap_or(i64::MAX)),
        Value::Date(d) => q.bind(*d),
        Value::Time(t) => q.bind(*t),
        Value::DateTime(t) => q.bind(*t),
        Value::Row(_) => return Err(not_bindable(v)),
    })
}

/// The fields returned so far by a run's statements.
type Fields = HashMap<String, Value>;

fn bound<'a>(
    b: &Bind,
    args: &'a [Value],
    fields: &'a Fields,
    q: &Prepared,
) -> Result<&'a Value, DataError> {
    match b {
        Bind::Arg(i) => args.get(*i).ok_or_else(|| {
            DataError::Query(format!(
                "query `{}` takes {} argument(s), got {}",
                q.name,
                q.def.args.len(),
                args.len()
            ))
        }),
        Bind::Field(f) => fields.get(f).ok_or_else(|| {
            DataError::Query(format!(
                "query `{}`: `${f}` is not a field returned by an earlier statement",
                q.name
            ))
        }),
    }
}

fn take_row<R>(
    row: &R,
    raw: fn(&R, usize) -> Result<Raw, sqlx::Error>,
    q: &Prepared,
    fields: &mut Fields,
) -> Result<(), DataError>
where
    R: Row,
{
    for (i, col) in row.columns().iter().enumerate() {
        let name = col.name();
        let ty = q
            .def
            .fields
            .get(name)
            .or_else(|| {
                q.def
                    .fields
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, t)| t)
            })
            .copied();
        let raw = raw(row, i)?;
        let value = match ty {
            Some(ty) => convert(raw, ty).map_err(|source| DataError::Column {
                query: q.name.clone(),
                column: name.to_string(),
                source,
            })?,
            None => untyped(raw),
        };
        fields.insert(name.to_ascii_lowercase(), value.clone());
        fields.insert(name.to_string(), value);
    }
    Ok(())
}

/// Runs the statements on one SQLite connection; `None` when one found no row.
async fn statements_sqlite(
    conn: &mut sqlx::SqliteConnection,
    q: &Prepared,
    args: &[Value],
) -> Result<Option<Fields>, DataError> {
    let mut fields = Fields::new();
    for st in &q.statements {
        let mut query = sqlx::query(&st.sqlite);
        for b in &st.binds {
            query = bind_sqlite(query, bound(b, args, &fields, q)?)?;
        }
        if st.returns_rows {
            match query.fetch_optional(&mut *conn).await? {
                Some(row) => take_row(&row, sqlite_raw, q, &mut fields)?,
                None => return Ok(None),
            }
        } else if query.execute(&mut *conn).await?.rows_affected() == 0 {
            return Ok(None);
        }
    }
    Ok(Some(fields))
}

/// Runs the statements on one PostgreSQL connection; `None` when one found no row.
async fn statements_pg(
    conn: &mut sqlx::PgConnection,
    q: &Prepared,
    args: &[Value],
) -> Result<Option<Fields>, DataError> {
    let mut fields = Fields::new();
    for st in &q.statements {
        let mut query = sqlx::query(&st.postgres);
        for b in &st.binds {
            query = bind_pg(query, bound(b, args, &fields, q)?)?;
        }
        if st.returns_rows {
            match query.fetch_optional(&mut *conn).await? {
                Some(row) => take_row(&row, pg_raw, q, &mut fields)?,
                None => return Ok(None),
            }
        } else if query.execute(&mut *conn).await?.rows_affected() == 0 {
            return Ok(None);
        }
    }
    Ok(Some(fields))
}

/// Setup statements (SQL with `$1`, `$2`, ... and their arguments), rewritten for an engine.
pub(crate) fn rewrite_all(
    statements: &[(&str, Vec<Value>)],
) -> Result<Vec<(Statement, Vec<Value>)>, DataError> {
    let mut out = Vec::with_capacity(statements.len());
    for (sql, args) in statements {
        let st = rewrite(sql)?;
        let mut values = Vec::with_capacity(st.binds.len());
        for b in &st.binds {
            match b {
                Bind::Arg(i) if *i < args.len() => values.push(args[*i].clone()),
                _ => return Err(DataError::Config(format!("bad parameter in `{sql}`"))),
            }
        }
        out.push((st, values));
    }
    Ok(out)
}

/// Runs rewritten setup statements on a SQLite connection.
pub(crate) async fn execute_sqlite(
    conn: &mut sqlx::SqliteConnection,
    statements: &[(Statement, Vec<Value>)],
) -> Result<(), DataError> {
    for (st, values) in statements {
        let mut q = sqlx::query(&st.sqlite);
        for v in values {
            q = bind_sqlite(q, v)?;
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Runs rewritten setup statements on a PostgreSQL connection.
pub(crate) async fn execute_pg(
    conn: &mut sqlx::PgConnection,
    statements: &[(Statement, Vec<Value>)],
) -> Result<(), DataError> {
    for (st, values) in statements {
        let mut q = sqlx::query(&st.postgres);
        for v in values {
            q = bind_pg(q, v)?;
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Runs one read (SQL with `$1`, `$2`, ...) and returns every row, columns in order, each
/// value as the database gave it (integers and decimals as numbers): for reports.
pub async fn fetch_rows(
    pool: &Pool,
    sql: &str,
    args: &[Value],
) -> Result<Vec<Vec<Value>>, DataError> {
    let mut st = rewrite_all(&[(sql, args.to_vec())])?;
    let (st, values) = st
        .pop()
        .ok_or_else(|| DataError::Config("no statement".into()))?;
    let mut out = Vec::new();
    match pool {
        Pool::Sqlite(p) => {
            let mut q = sqlx::query(&st.sqlite);
            for v in &values {
                q = bind_sqlite(q, v)?;
            }
            for row in q.fetch_all(p).await? {
                let mut vals = Vec::with_capacity(row.len());
                for i in 0..row.len() {
                    vals.push(untyped(sqlite_raw(&row, i)?));
                }
                out.push(vals);
            }
        }
        Pool::Postgres(p) => {
            let mut q = sqlx::query(&st.postgres);
            for v in &values {
                q = bind_pg(q, v)?;
            }
            for row in q.fetch_all(p).await? {
                let mut vals = Vec::with_capacity(row.len());
                for i in 0..row.len() {
                    vals.push(untyped(pg_raw(&row, i)?));
                }
                out.push(vals);
            }
        }
    }
    Ok(out)
}

/// The configured database with its prepared data catalog.
#[derive(Debug, Clone)]
pub struct Database {
    pool: Pool,
    catalog: Arc<HashMap<String, Prepared>>,
    secret: Option<Secret>,
}

impl Database {
    /// Prepares the catalog `queries` on `pool`. A query that hashes an argument needs a
    /// secret.
    pub fn new(
        pool: Pool,
        queries: &IndexMap<String, QueryDef>,
        secret: Option<Secret>,
    ) -> Result<Database, DataError> {
        let mut catalog = HashMap::new();
        for (name, def) in queries {
            if !def.hash.is_empty() && secret.is_none() {
                return Err(DataError::Config(format!(
                    "query `{name}` hashes `{}`, but no secret is set: set IVR_SECRET or `secret` in [database]",
                    def.hash.join("`, `")
                )));
            }
            catalog.insert(name.clone(), Prepared::new(name, def)?);
        }
        Ok(Database {
            pool,
            catalog: Arc::new(catalog),
            secret,
        })
    }

    /// The same database (pool and secret) with another data catalog: a new version of
    /// `ivr.toml` that went live.
    pub fn with_catalog(
        &self,
        queries: &IndexMap<String, QueryDef>,
    ) -> Result<Database, DataError> {
        Database::new(self.pool.clone(), queries, self.secret.clone())
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The secret of `hash` arguments, if any.
    pub fn secret(&self) -> Option<&Secret> {
        self.secret.as_ref()
    }

    /// Runs catalog query `name` with `args` within `timeout` (else the query's own, else
    /// [`DEFAULT_TIMEOUT`]). Failures, refusals and timeouts are [`QueryResult::Error`] with
    /// the reason (which never contains argument values).
    pub async fn run(&self, name: &str, args: &[Value], timeout: Option<Duration>) -> QueryResult {
        let Some(q) = self.catalog.get(name) else {
            return QueryResult::Error(format!("query `{name}` is not in the data catalog"));
        };
        let timeout = Database::timeout_of(q, timeout);
        let result = tokio::time::timeout(timeout, self.execute(q, args)).await;
        answer(q, timeout, result)
    }

    /// A query's timeout: the lookup's, else the query's own, else [`DEFAULT_TIMEOUT`].
    fn timeout_of(q: &Prepared, timeout: Option<Duration>) -> Duration {
        timeout
            .or(q.def.timeout_ms.map(Duration::from_millis))
            .unwrap_or(DEFAULT_TIMEOUT)
    }

    /// A session whose writes are undone when it ends (see [`Session`]).
    pub fn session(&self) -> Session {
        Session {
            db: self.clone(),
            tx: None,
        }
    }

    fn hash_args(&self, q: &Prepared, args: &[Value]) -> Result<Vec<Value>, DataError> {
        if args.len() != q.def.args.len() {
            return Err(DataError::Query(format!(
                "takes {} argument(s), got {}",
                q.def.args.len(),
                args.len()
            )));
        }
        args.iter()
            .zip(&q.hashed)
            .map(|(v, hashed)| {
                if !hashed {
                    return Ok(v.clone());
                }
                let secret = self
                    .secret
                    .as_ref()
                    .ok_or_else(|| DataError::Config("a hashed argument but no secret".into()))?;
                Ok(Value::Text(secret.hash(&v.to_string())))
            })
            .collect()
    }

    async fn execute(&self, q: &Prepared, args: &[Value]) -> Result<Option<Fields>, DataError> {
        let args = self.hash_args(q, args)?;
        match &self.pool {
            Pool::Sqlite(pool) => {
                if q.def.transaction {
                    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                    let out = statements_sqlite(&mut tx, q, &args).await?;
                    match out {
                        Some(_) => tx.commit().await?,
                        None => tx.rollback().await?,
                    }
                    Ok(out)
                } else {
                    let mut conn = pool.acquire().await?;
                    statements_sqlite(&mut conn, q, &args).await
                }
            }
            Pool::Postgres(pool) => {
                if q.def.transaction {
                    let mut tx = pool.begin().await?;
                    let out = statements_pg(&mut tx, q, &args).await?;
                    match out {
                        Some(_) => tx.commit().await?,
                        None => tx.rollback().await?,
                    }
                    Ok(out)
                } else {
                    let mut conn = pool.acquire().await?;
                    statements_pg(&mut conn, q, &args).await
                }
            }
        }
    }
}

/// The engine's answer for a run of `q`: its fields in catalog order, `missing`, or the
/// error with its reason.
fn answer(
    q: &Prepared,
    timeout: Duration,
    result: Result<Result<Option<Fields>, DataError>, tokio::time::error::Elapsed>,
) -> QueryResult {
    let name = &q.name;
    match result {
        Err(_) => QueryResult::Error(format!(
            "query `{name}` timed out after {} ms (rolled back)",
            timeout.as_millis()
        )),
        Ok(Err(e)) => QueryResult::Error(format!("query `{name}`: {e}")),
        Ok(Ok(None)) => QueryResult::Missing,
        Ok(Ok(Some(fields))) => {
            let mut row = Vec::with_capacity(q.def.fields.len());
            for f in q.def.fields.keys() {
                match fields
                    .get(f)
                    .or_else(|| fields.get(&f.to_ascii_lowercase()))
                {
                    Some(v) => row.push(v.clone()),
                    None => {
                        return QueryResult::Error(format!(
                            "query `{name}` returns no column `{f}` (name it with `AS {f}`)"
                        ));
                    }
                }
            }
            QueryResult::Found(row)
        }
    }
}

/// An open transaction of a session, on one connection of the pool.
enum SessionTx {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

/// Catalog queries whose writes are all undone at the end: one connection of the pool is held
/// from the first query to the end of the session, with a database transaction open on it;
/// each query runs in a savepoint of it (a query's own `transaction` is still all or nothing,
/// and an error does not spoil the queries after it), and [`Session::rollback`] (or dropping
/// the session) rolls the whole transaction back. What a session writes is seen by its own
/// later queries and by no one else. `ivr test` and `ivr simulate` run each scenario (each
/// simulated call) on PostgreSQL in one.
pub struct Session {
    db: Database,
    tx: Option<SessionTx>,
}

impl Session {
    /// Runs catalog query `name` with `args` within `timeout` (as [`Database::run`]), inside
    /// the session's transaction.
    pub async fn run(
        &mut self,
        name: &str,
        args: &[Value],
        timeout: Option<Duration>,
    ) -> QueryResult {
        let Some(q) = self.db.catalog.get(name).cloned() else {
            return QueryResult::Error(format!("query `{name}` is not in the data catalog"));
        };
        let timeout = Database::timeout_of(&q, timeout);
        let args = match self.db.hash_args(&q, args) {
            Ok(a) => a,
            Err(e) => return QueryResult::Error(format!("query `{name}`: {e}")),
        };
        let result = tokio::time::timeout(timeout, self.execute(&q, &args)).await;
        answer(&q, timeout, result)
    }

    async fn execute(&mut self, q: &Prepared, args: &[Value]) -> Result<Option<Fields>, DataError> {
        if self.tx.is_none() {
            self.tx = Some(match self.db.pool() {
                Pool::Sqlite(p) => SessionTx::Sqlite(p.begin().await?),
                Pool::Postgres(p) => SessionTx::Postgres(p.begin().await?),
            });
        }
        // A savepoint per query: released when it found its row, rolled back to otherwise
        // (and, when the run is cut short by its timeout, when the connection is next used).
        match self.tx.as_mut() {
            Some(SessionTx::Sqlite(tx)) => {
                let mut sp = sqlx::Connection::begin(&mut **tx).await?;
                let out = statements_sqlite(&mut sp, q, args).await;
                match &out {
                    Ok(Some(_)) => sp.commit().await?,
                    _ => sp.rollback().await?,
                }
                out
            }
            Some(SessionTx::Postgres(tx)) => {
                let mut sp = sqlx::Connection::begin(&mut **tx).await?;
                let out = statements_pg(&mut sp, q, args).await;
                match &out {
                    Ok(Some(_)) => sp.commit().await?,
                    _ => sp.rollback().await?,
                }
                out
            }
            None => Err(DataError::Query("no session transaction".into())),
        }
    }

    /// Ends the session: everything it wrote is rolled back and its connection goes back to
    /// the pool.
    pub async fn rollback(mut self) -> Result<(), DataError> {
        match self.tx.take() {
            Some(SessionTx::Sqlite(tx)) => tx.rollback().await?,
            Some(SessionTx::Postgres(tx)) => tx.rollback().await?,
            None => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_parameters() {
        let st = rewrite(
            "UPDATE customers SET balance = balance + $value WHERE phone = $1 RETURNING balance",
        )
        .expect("rewrites");
        assert_eq!(
            st.sqlite,
            "UPDATE customers SET balance = balance + ?1 WHERE phone = ?2 RETURNING balance"
        );
        assert_eq!(
            st.postgres,
            "UPDATE customers SET balance = balance + $1 WHERE phone = $2 RETURNING balance"
        );
        assert_eq!(st.binds, vec![Bind::Field("value".into()), Bind::Arg(0)]);
        assert!(st.returns_rows);

        let st = rewrite("SELECT '$1 -- x', \"a$b\" FROM t WHERE a = $2 AND b = $2 -- $3\n")
            .expect("rewrites");
        assert_eq!(
            st.sqlite,
            "SELECT '$1 -- x', \"a$b\" FROM t WHERE a = ?1 AND b = ?1 -- $3\n"
        );
        assert_eq!(st.binds, vec![Bind::Arg(1)]);

        let st = rewrite("UPDATE t SET x = 1 WHERE 'returning' = $1").expect("rewrites");
        assert!(!st.returns_rows);
        assert!(rewrite("SELECT ?").is_err());
        assert!(rewrite("SELECT 'x").is_err());
        let st = rewrite("SELECT $body$ it's $1 $body$ AS x").expect("dollar quotes");
        assert!(st.binds.is_empty());
        assert_eq!(st.postgres, "SELECT $body$ it's $1 $body$ AS x");
    }

    #[test]
    fn converts_money_exactly() {
        assert_eq!(
            convert(Raw::Float(108.29999999999998), FieldType::Money),
            Ok(Value::Money(Decimal::new(10830, 2)))
        );
        assert_eq!(
            convert(Raw::Int(58), FieldType::Money).map(|v| v.to_string()),
            Ok("58.00".to_string())
        );
        assert_eq!(
            convert(Raw::Text("0.125".into()), FieldType::Money),
            Ok(Value::Money(Decimal::new(13, 2)))
        );
        assert_eq!(convert(Raw::Int(1), FieldType::Bool), Ok(Value::Bool(true)));
        assert_eq!(
            convert(Raw::Text("2026-11-30".into()), FieldType::Date),
            Ok(Value::Date(
                NaiveDate::from_ymd_opt(2026, 11, 30).expect("date")
            ))
        );
        assert_eq!(convert(Raw::Null, FieldType::Money), Ok(Value::Null));
    }
}
