//! Expressions: the grammar gives a flat list of operands and operators; this module applies
//! precedence (loosest first: `or`; `and`; `not`; comparisons, which do not chain; `+ -`;
//! `* /`; unary `-`) by precedence climbing.

use super::build::{Builder, NUMBER_TOO_LARGE, SYNTAX, child, children};
use super::grammar::Rule;
use super::literals;
use crate::ast::{BinaryOp, Expr, ExprKind, Ident, UnaryOp};
use crate::span::Span;
use pest::iterators::Pair;

/// Most operators in one expression, so that trees stay shallow.
pub(crate) const MAX_OPERATORS: usize = 256;

const PREC_OR: u8 = 1;
const PREC_AND: u8 = 2;
const PREC_CMP: u8 = 4;
const PREC_ADD: u8 = 5;
const PREC_MUL: u8 = 6;

fn binary_op(rule: Rule) -> Option<BinaryOp> {
    Some(match rule {
        Rule::op_or => BinaryOp::Or,
        Rule::op_and => BinaryOp::And,
        Rule::op_eq => BinaryOp::Eq,
        Rule::op_ne => BinaryOp::Ne,
        Rule::op_lt => BinaryOp::Lt,
        Rule::op_le => BinaryOp::Le,
        Rule::op_gt => BinaryOp::Gt,
        Rule::op_ge => BinaryOp::Ge,
        Rule::op_add => BinaryOp::Add,
        Rule::op_sub => BinaryOp::Sub,
        Rule::op_mul => BinaryOp::Mul,
        Rule::op_div => BinaryOp::Div,
        _ => return None,
    })
}

fn precedence(op: BinaryOp) -> u8 {
    match op {
        BinaryOp::Or => PREC_OR,
        BinaryOp::And => PREC_AND,
        BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
            PREC_CMP
        }
        BinaryOp::Add | BinaryOp::Sub => PREC_ADD,
        BinaryOp::Mul | BinaryOp::Div => PREC_MUL,
    }
}

fn is_operator(rule: Rule) -> bool {
    matches!(rule, Rule::op_not | Rule::op_neg) || binary_op(rule).is_some()
}

/// One element of the flat list.
pub(crate) enum Item<'i> {
    Prefix(UnaryOp, Span),
    Infix(BinaryOp),
    Primary(Pair<'i, Rule>),
    /// A primary read by the fast path (`fast`); taken when the climb reaches it.
    Fast(Option<FastPrimary>),
}

/// A primary read by the fast path, built when the climb reaches it (as a pair would be), so
/// that diagnostics come in the same order.
pub(crate) enum FastPrimary {
    /// A literal or a path, already complete.
    Leaf(Expr),
    /// `( EXPR )`: the flat list inside, and the span of the parentheses.
    Paren(Vec<Item<'static>>, Span),
    /// `f(a, b)`: the name, each argument's flat list, and the span up to the `)`.
    Call(Ident, Vec<Vec<Item<'static>>>, Span),
}

/// An expression being built, and whether it was written in parentheses.
struct Built {
    expr: Expr,
    paren: bool,
}

impl Built {
    fn is_bare_comparison(&self) -> bool {
        !self.paren
            && matches!(&self.expr.kind, ExprKind::Binary { op, .. } if precedence(*op) == PREC_CMP)
    }
}

impl Builder<'_> {
    /// Builds an `expr` pair. Returns `None` (after reporting) when the expression cannot be
    /// represented.
    pub fn expr(&mut self, pair: &Pair<'_, Rule>) -> Option<Expr> {
        let operators = pair
            .clone()
            .into_inner()
            .flatten()
            .filter(|p| is_operator(p.as_rule()))
            .count();
        if operators > MAX_OPERATORS {
            let span = self.full_span(pair);
            self.error(
                SYNTAX,
                span,
                format!("this expression has more than {MAX_OPERATORS} operators; split it up"),
            );
            return None;
        }
        let mut items = Vec::new();
        for part in pair.clone().into_inner() {
            if part.as_rule() == Rule::operand {
                for p in part.into_inner() {
                    match p.as_rule() {
                        Rule::op_not => items.push(Item::Prefix(UnaryOp::Not, self.span(&p))),
                        Rule::op_neg => items.push(Item::Prefix(UnaryOp::Neg, self.span(&p))),
                        _ => items.push(Item::Primary(p)),
                    }
                }
            } else if let Some(op) = binary_op(part.as_rule()) {
                items.push(Item::Infix(op));
            }
        }
        self.climb(items)
    }

    /// Applies precedence to a flat list of operands and operators.
    pub(crate) fn climb(&mut self, items: Vec<Item<'_>>) -> Option<Expr> {
        let mut climb = Climb {
            items,
            next: 0,
            builder: self,
        };
        climb.binary(0).map(|b| b.expr)
    }

    /// Builds a primary read by the fast path.
    fn fast_primary(&mut self, primary: FastPrimary) -> Option<Built> {
        Some(match primary {
            FastPrimary::Leaf(expr) => Built { expr, paren: false },
            FastPrimary::Paren(items, span) => {
                let mut expr = self.climb(items)?;
                expr.span = span;
                Built { expr, paren: true }
            }
            FastPrimary::Call(name, args, span) => {
                let args = args
                    .into_iter()
                    .map(|items| self.climb(items))
                    .collect::<Option<Vec<_>>>()?;
                Built {
                    expr: Expr {
                        kind: ExprKind::Call { name, args },
                        span,
                    },
                    paren: false,
                }
            }
        })
    }

    /// `f(a, b)` argument list: every `expr` child of the pair.
    pub fn expr_list(&mut self, pair: &Pair<'_, Rule>) -> Option<Vec<Expr>> {
        children(pair, Rule::expr)
            .iter()
            .map(|e| self.expr(e))
            .collect()
    }

    fn primary(&mut self, pair: &Pair<'_, Rule>) -> Option<Built> {
        let span = self.full_span(pair);
        let bare = |kind| {
            Some(Built {
                expr: Expr { kind, span },
                paren: false,
            })
        };
        match pair.as_rule() {
            Rule::string => bare(ExprKind::Str(literals::unescape(pair.as_str()))),
            Rule::boolean => bare(ExprKind::Bool(pair.as_str() == "true")),
            Rule::number => match literals::decimal(pair.as_str()) {
                Ok(n) => bare(ExprKind::Number(n)),
                Err(e) => {
                    self.error(NUMBER_TOO_LARGE, span, e.to_string());
                    // Keep the statement (as the largest number) so that the checker does not
                    // add "never assigned" for what it sets.
                    bare(ExprKind::Number(rust_decimal::Decimal::MAX))
                }
            },
            Rule::duration => {
                let d = self.duration(pair)?;
                bare(ExprKind::Duration(d.node))
            }
            Rule::paren => {
                let inner = child(pair, Rule::expr)?;
                let mut expr = self.expr(&inner)?;
                expr.span = span;
                Some(Built { expr, paren: true })
            }
            Rule::path_or_call => {
                let head = child(pair, Rule::path_head)?;
                let head = Ident {
                    name: head.as_str().to_string(),
                    span: self.span(&head),
                };
                if let Some(args) = child(pair, Rule::call_args) {
                    let args = self.expr_list(&args)?;
                    bare(ExprKind::Call { name: head, args })
                } else {
                    let mut path = vec![head];
                    for field in children(pair, Rule::field) {
                        path.push(Ident {
                            name: field.as_str().to_string(),
                            span: self.span(&field),
                        });
                    }
                    bare(ExprKind::Path(path))
                }
            }
            _ => None,
        }
    }
}

struct Climb<'i, 'b, 'd> {
    items: Vec<Item<'i>>,
    next: usize,
    builder: &'b mut Builder<'d>,
}

impl Climb<'_, '_, '_> {
    fn binary(&mut self, min: u8) -> Option<Built> {
        let mut lhs = self.unary()?;
        while let Some(Item::Infix(op)) = self.items.get(self.next) {
            let op = *op;
            let prec = precedence(op);
            if prec < min {
                break;
            }
            self.next += 1;
            let rhs = self.binary(prec + 1)?;
            if prec == PREC_CMP && lhs.is_bare_comparison() {
                let span = lhs.expr.span.to(rhs.expr.span);
                self.builder.diags.push(
                    crate::Diagnostic::error(
                        SYNTAX,
                        self.builder.file,
                        span,
                        "comparisons cannot be chained",
                    )
                    .with_hint("join two comparisons with `and`, as in `a < b and b < c`"),
                );
            }
            let span = lhs.expr.span.to(rhs.expr.span);
            lhs = Built {
                expr: Expr {
                    kind: ExprKind::Binary {
                        op,
                        lhs: Box::new(lhs.expr),
                        rhs: Box::new(rhs.expr),
                    },
                    span,
                },
                paren: false,
            };
        }
        Some(lhs)
    }

    fn unary(&mut self) -> Option<Built> {
        let item = self.items.get_mut(self.next)?;
        self.next += 1;
        match item {
            Item::Prefix(UnaryOp::Not, op_span) => {
                let op_span = *op_span;
                let operand = self.binary(PREC_CMP)?;
                Some(unary(UnaryOp::Not, op_span, operand.expr))
            }
            Item::Prefix(UnaryOp::Neg, op_span) => {
                let op_span = *op_span;
                let operand = self.unary()?;
                if let (ExprKind::Number(n), false) = (&operand.expr.kind, operand.paren) {
                    return Some(Built {
                        expr: Expr {
                            kind: ExprKind::Number(-*n),
                            span: op_span.to(operand.expr.span),
                        },
                        paren: false,
                    });
                }
                Some(unary(UnaryOp::Neg, op_span, operand.expr))
            }
            Item::Primary(pair) => {
                let pair = pair.clone();
                self.builder.primary(&pair)
            }
            Item::Fast(primary) => {
                let primary = primary.take()?;
                self.builder.fast_primary(primary)
            }
            Item::Infix(_) => None,
        }
    }
}

fn unary(op: UnaryOp, op_span: Span, operand: Expr) -> Built {
    let span = op_span.to(operand.span);
    Built {
        expr: Expr {
            kind: ExprKind::Unary {
                op,
                operand: Box::new(operand),
            },
            span,
        },
        paren: false,
    }
}
