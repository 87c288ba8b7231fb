//! DynamoDB's expression language: condition and filter expressions, update
//! expressions, projection expressions and key condition expressions.
//!
//! This module parses expressions into syntax trees, checks them as DynamoDB does (with
//! DynamoDB's ValidationException messages, word for word where they are known),
//! evaluates conditions against items, applies updates and projections, and prints
//! trees back to text. It does not know tables: checking key conditions and updates
//! against a key schema, and item size limits, are the caller's.
//!
//! All the expressions of one request share one [`Placeholders`], so that unused
//! ExpressionAttributeNames and ExpressionAttributeValues can be rejected at the end:
//!
//! ```
//! use std::collections::HashMap;
//! use nimbus_tables::expr::{Placeholders, parse_condition, parse_update};
//! use nimbus_tables::value::{AttributeValue, Item};
//!
//! let values = HashMap::from([
//!     (":one".to_owned(), AttributeValue::N("1".parse().unwrap())),
//!     (":zero".to_owned(), AttributeValue::N("0".parse().unwrap())),
//! ]);
//! let mut ph = Placeholders::new(None, Some(&values));
//! let update = parse_update("SET hits = if_not_exists(hits, :zero) + :one", &mut ph)?;
//! let condition = parse_condition("attribute_not_exists(hits) OR hits < :one", "ConditionExpression", &mut ph)?;
//! ph.check_unused()?;
//!
//! let mut item = Item::new();
//! assert!(condition.eval(&item));
//! update.apply(&mut item)?;
//! assert_eq!(item["hits"], AttributeValue::N("1".parse().unwrap()));
//! assert!(!condition.eval(&item));
//! # Ok::<(), nimbus_tables::expr::ExprError>(())
//! ```
//!
//! Printing: [`Condition`], [`Update`], [`Projection`] and [`KeyConditions`] print back
//! to text with `Display`, writing a placeholder for every value (`:v0`, `:v1`, ...) and
//! for every attribute name that cannot be written bare (`#n0`, ...). Their `render`
//! methods return the text together with the maps those placeholders stand for;
//! parsing the text with the maps gives back the same tree.

mod apply;
mod condition;
mod condition_parser;
mod error;
mod eval;
mod key_condition;
mod lexer;
mod parser;
mod path;
mod placeholders;
mod projection;
mod render;
mod reserved;
mod update;

#[cfg(test)]
mod proptests;

pub use condition::{ATTRIBUTE_TYPES, Comparator, Condition, Operand};
pub use condition_parser::parse_condition;
pub use error::ExprError;
pub use key_condition::{
    KeyCondition, KeyConditions, SortKeyCondition, parse_key_condition, parse_key_conditions,
};
pub use path::{Path, PathElement};
pub use placeholders::Placeholders;
pub use projection::{Projection, parse_projection};
pub use render::Rendered;
pub use update::{SetAction, SetOperand, SetValue, Update, parse_update};
