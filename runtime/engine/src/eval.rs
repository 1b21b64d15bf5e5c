//! Evaluation of compiled expressions against a call's variables.

use super::{CallInfo, Millis};
use crate::value::Value;
use chrono::{DateTime, Datelike, NaiveDateTime, Timelike};
use indexmap::IndexMap;
use ivr_compiler::config::Calendar;
use ivr_compiler::program::{Builtin, Expr, ExprKind, Literal, Type};
use ivr_dsl::ast::{BinaryOp, UnaryOp};
use rust_decimal::Decimal;
use std::cmp::Ordering;

/// What an expression may read.
pub(super) struct Scope<'a> {
    pub vars: &'a [Value],
    pub info: &'a CallInfo,
    pub language: &'a str,
    pub version: &'a str,
    pub now: Millis,
    pub calendars: &'a IndexMap<String, Calendar>,
}

/// A fault while evaluating: the call ends as `failed`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// Division by zero.
    #[error("division by zero")]
    DivisionByZero,
    /// A number grew too large.
    #[error("number overflow")]
    Overflow,
    /// An operation met a value it does not apply to (a NULL column, say).
    #[error("{0}")]
    Type(String),
}

/// Local date and time of an engine timestamp.
pub(super) fn local_time(now: Millis) -> NaiveDateTime {
    DateTime::from_timestamp_millis(now)
        .map(|d| d.naive_utc())
        .unwrap_or_default()
}

pub(super) fn eval(e: &Expr, s: &Scope) -> Result<Value, EvalError> {
    Ok(match &e.kind {
        ExprKind::Lit { value } => match value {
            Literal::Text(t) => Value::Text(t.clone()),
            Literal::Number(n) => Value::Number(*n),
            Literal::Bool(b) => Value::Bool(*b),
            Literal::Duration(d) => Value::Duration(*d),
        },
        ExprKind::Var { var } => s.vars.get(*var as usize).cloned().unwrap_or_default(),
        ExprKind::Field { var, index, .. } => match s.vars.get(*var as usize) {
            Some(Value::Row(fields)) => fields.get(*index as usize).cloned().unwrap_or_default(),
            _ => Value::Null,
        },
        ExprKind::Contact { field } => s
            .info
            .contact
            .iter()
            .find(|(name, _)| name == field)
            .map(|(_, v)| v.clone())
            .unwrap_or_default(),
        ExprKind::Builtin { builtin } => Value::Text(match builtin {
            Builtin::Caller => s.info.caller.clone(),
            Builtin::Called => s.info.called.clone(),
            Builtin::CallId => s.info.id.clone(),
            Builtin::CallChannel => s.info.channel.as_str().to_string(),
            Builtin::Language => s.language.to_string(),
            Builtin::FlowVersion => s.version.to_string(),
        }),
        ExprKind::Len { arg } => {
            let n = match eval(arg, s)? {
                Value::Text(t) => t.chars().count(),
                Value::Null => 0,
                other => other.to_string().chars().count(),
            };
            Value::Number(Decimal::from(n))
        }
        ExprKind::Now => Value::DateTime(local_time(s.now)),
        ExprKind::InHours { calendar } => {
            let t = local_time(s.now);
            let open = s.calendars.get(calendar).is_some_and(|c| {
                c.is_open(
                    (t.year(), t.month(), t.day()),
                    t.weekday().num_days_from_monday() as usize,
                    (t.hour() * 60 + t.minute()) as u16,
                )
            });
            Value::Bool(open)
        }
        ExprKind::Unary { op, operand } => {
            let v = eval(operand, s)?;
            match op {
                UnaryOp::Not => Value::Bool(!truthy(&v)),
                UnaryOp::Neg => match v {
                    Value::Number(d) => Value::Number(-d),
                    Value::Money(d) => Value::Money(-d),
                    other => return Err(EvalError::Type(format!("cannot negate {other}"))),
                },
            }
        }
        ExprKind::Binary { op, lhs, rhs } => {
            // `and` / `or` short-circuit.
            match op {
                BinaryOp::And => {
                    return Ok(Value::Bool(
                        truthy(&eval(lhs, s)?) && truthy(&eval(rhs, s)?),
                    ));
                }
                BinaryOp::Or => {
                    return Ok(Value::Bool(
                        truthy(&eval(lhs, s)?) || truthy(&eval(rhs, s)?),
                    ));
                }
                _ => {}
            }
            let (a, b) = (eval(lhs, s)?, eval(rhs, s)?);
            match op {
                BinaryOp::Eq => Value::Bool(a.equals(&b)),
                BinaryOp::Ne => Value::Bool(!a.equals(&b)),
                BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
                    let ord = a.compare(&b);
                    Value::Bool(match (op, ord) {
                        (_, None) => false,
                        (BinaryOp::Lt, Some(o)) => o == Ordering::Less,
                        (BinaryOp::Le, Some(o)) => o != Ordering::Greater,
                        (BinaryOp::Gt, Some(o)) => o == Ordering::Greater,
                        (_, Some(o)) => o != Ordering::Less,
                    })
                }
                _ => arithmetic(*op, &a, &b, &e.ty)?,
            }
        }
    })
}

fn truthy(v: &Value) -> bool {
    matches!(v, Value::Bool(true))
}

fn arithmetic(op: BinaryOp, a: &Value, b: &Value, ty: &Type) -> Result<Value, EvalError> {
    if let (Value::Duration(x), Value::Duration(y)) = (a, b) {
        return match op {
            BinaryOp::Add => x
                .checked_add(*y)
                .map(Value::Duration)
                .ok_or(EvalError::Overflow),
            _ => Ok(Value::Duration(x.saturating_sub(*y))),
        };
    }
    let (Some(x), Some(y)) = (a.as_decimal(), b.as_decimal()) else {
        return Err(EvalError::Type(format!(
            "`{}` needs numbers, got {a} and {b}",
            op.symbol()
        )));
    };
    let r = match op {
        BinaryOp::Add => x.checked_add(y),
        BinaryOp::Sub => x.checked_sub(y),
        BinaryOp::Mul => x.checked_mul(y),
        BinaryOp::Div => {
            if y.is_zero() {
                return Err(EvalError::DivisionByZero);
            }
            x.checked_div(y)
        }
        _ => None,
    }
    .ok_or(EvalError::Overflow)?;
    let money = *ty == Type::Money || matches!(a, Value::Money(_)) || matches!(b, Value::Money(_));
    Ok(if money {
        Value::Money(r)
    } else {
        Value::Number(r)
    })
}
