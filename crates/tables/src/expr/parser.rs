//! The machinery every expression parser shares: the token cursor, DynamoDB's syntax
//! error, document paths and placeholders, limits, and the problems found on the way.
//!
//! Parsers are recursive descent without backtracking. Where the grammar is ambiguous
//! (does `(` open a condition or an operand?) they look at the token after the matching
//! `)`, found once for every `(` before parsing starts.

use super::error::{Diagnostics, ExprError, Stage};
use super::lexer::{Token, TokenKind, tokenize};
use super::path::{Path, PathElement};
use super::placeholders::Placeholders;
use super::reserved::is_reserved;
use crate::value::AttributeValue;

/// Longest expression DynamoDB accepts, in bytes.
pub(crate) const MAX_EXPRESSION_BYTES: usize = 4096;
/// Most operators and function calls an expression may hold.
pub(crate) const MAX_OPERATORS: usize = 300;
/// Most steps in a document path.
pub(crate) const MAX_PATH_DEPTH: usize = 32;
/// Deepest nesting of parentheses and function calls the parsers follow. Deeper nesting
/// needs either redundant parentheses or more than [`MAX_OPERATORS`] operators, so it is
/// an error either way; stopping there keeps recursion shallow.
const MAX_NESTING: usize = MAX_OPERATORS + 1;
/// Largest list index DynamoDB accepts.
const MAX_LIST_INDEX: u64 = i32::MAX as u64;

/// Why parsing stopped.
#[derive(Debug)]
pub(crate) enum Stop {
    /// No rule accepts the token at this index.
    Syntax(usize),
    /// A limit that ends parsing at once, with its message.
    Fatal(String),
}

/// What a parsing step returns.
pub(crate) type PResult<T> = Result<T, Stop>;

/// A parser's state over one expression.
pub(crate) struct Parser<'s, 'p, 'a> {
    src: &'s str,
    tokens: Vec<Token>,
    pos: usize,
    /// For each `(` token, the index of its `)`.
    closes: Vec<Option<usize>>,
    ph: &'p mut Placeholders<'a>,
    keywords: &'static [&'static str],
    diagnostics: Diagnostics,
    operators: usize,
    depth: usize,
}

/// Parses `src`, the expression called `kind` ("ConditionExpression", ...), with `body`,
/// and turns what went wrong into DynamoDB's message. `keywords` are the words of the
/// expression's grammar; `check_parens` turns on the redundant-parentheses rule of
/// conditions.
pub(crate) fn parse_with<T>(
    src: &str,
    kind: &str,
    keywords: &'static [&'static str],
    check_parens: bool,
    ph: &mut Placeholders<'_>,
    body: impl FnOnce(&mut Parser<'_, '_, '_>) -> PResult<T>,
) -> Result<T, ExprError> {
    if src.is_empty() {
        return Err(ExprError::invalid(kind, "The expression can not be empty;"));
    }
    if src.len() > MAX_EXPRESSION_BYTES && !ph.from_legacy {
        return Err(ExprError::invalid(
            kind,
            format!(
                "Expression size has exceeded the maximum allowed size; expression size: {}",
                src.len()
            ),
        ));
    }
    let mut parser = Parser::new(src, keywords, ph);
    if check_parens {
        parser.check_redundant_parens();
    }
    let parsed = body(&mut parser).and_then(|value| {
        parser.expect_eof()?;
        Ok(value)
    });
    let value = match parsed {
        Ok(value) => value,
        Err(Stop::Syntax(at)) => return Err(ExprError::invalid(kind, parser.syntax_message(at))),
        Err(Stop::Fatal(message)) => return Err(ExprError::invalid(kind, message)),
    };
    if parser.operators > MAX_OPERATORS && !parser.ph.from_legacy {
        return Err(ExprError::invalid(kind, parser.too_many_operators()));
    }
    match parser.diagnostics.into_first() {
        Some(message) => Err(ExprError::invalid(kind, message)),
        None => Ok(value),
    }
}

impl<'s, 'p, 'a> Parser<'s, 'p, 'a> {
    fn new(src: &'s str, keywords: &'static [&'static str], ph: &'p mut Placeholders<'a>) -> Self {
        let tokens = tokenize(src);
        let mut closes = vec![None; tokens.len()];
        let mut open = Vec::new();
        for (i, token) in tokens.iter().enumerate() {
            match &src[token.start..token.end] {
                "(" if token.kind == TokenKind::Punct => open.push(i),
                ")" if token.kind == TokenKind::Punct => {
                    if let Some(o) = open.pop() {
                        closes[o] = Some(i);
                    }
                }
                _ => {}
            }
        }
        Parser {
            src,
            tokens,
            pos: 0,
            closes,
            ph,
            keywords,
            diagnostics: Diagnostics::default(),
            operators: 0,
            depth: 0,
        }
    }

    /// DynamoDB's syntax error at token `at`: the token, and the source from the token
    /// before it to the token after it.
    fn syntax_message(&self, at: usize) -> String {
        let Some(token) = self.tokens.get(at) else {
            return "Syntax error; token: \"<EOF>\", near: \"\"".to_owned();
        };
        let shown = match token.kind {
            TokenKind::Eof => "<EOF>",
            _ => self.text(*token),
        };
        let start = match at.checked_sub(1).and_then(|i| self.tokens.get(i)) {
            Some(before) => before.start,
            None => token.start,
        };
        let end = match self.tokens.get(at + 1) {
            Some(after) if after.kind != TokenKind::Eof => after.end,
            _ if token.kind == TokenKind::Eof => self.src.len(),
            _ => token.end,
        };
        format!(
            "Syntax error; token: \"{shown}\", near: \"{}\"",
            self.src.get(start..end).unwrap_or_default()
        )
    }

    fn too_many_operators(&self) -> String {
        format!(
            "The expression contains too many operators; operator count: {}",
            self.operators
        )
    }

    /// Flags `((...))`: two parentheses opened together and closed together (not the
    /// parentheses of a function call).
    fn check_redundant_parens(&mut self) {
        for open in 0..self.tokens.len() {
            let Some(close) = self.closes[open] else {
                continue;
            };
            // A function call's parentheses follow its name; a keyword (AND, OR, NOT,
            // ...) is no function name.
            let after_word = open.checked_sub(1).is_some_and(|i| {
                let token = self.tokens[i];
                token.kind == TokenKind::Word
                    && !self
                        .keywords
                        .iter()
                        .any(|k| k.eq_ignore_ascii_case(self.text(token)))
            });
            let inner = open + 1;
            if !after_word && self.closes.get(inner).copied().flatten() == Some(close - 1) {
                self.report(
                    Stage::Parens,
                    "The expression has redundant parentheses;".to_owned(),
                );
                return;
            }
        }
    }

    /// The text of a token.
    pub(crate) fn text(&self, token: Token) -> &'s str {
        self.src.get(token.start..token.end).unwrap_or_default()
    }

    /// The current token.
    pub(crate) fn peek(&self) -> Token {
        self.peek_at(self.pos)
    }

    /// The token at index `at` (the end token past the end).
    fn peek_at(&self, at: usize) -> Token {
        let last = self.tokens.len() - 1;
        self.tokens[at.min(last)]
    }

    /// Moves past the current token (never past the end).
    pub(crate) fn advance(&mut self) {
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
    }

    /// A syntax error at the current token.
    pub(crate) fn fail<T>(&self) -> PResult<T> {
        Err(Stop::Syntax(self.pos))
    }

    /// Records a problem found after the syntax was accepted.
    pub(crate) fn report(&mut self, stage: Stage, message: String) {
        self.diagnostics.report(stage, message);
    }

    /// Counts one operator or function call toward [`MAX_OPERATORS`].
    pub(crate) fn count_operator(&mut self) {
        self.operators += 1;
    }

    /// Enters one level of parentheses or function call.
    ///
    /// # Errors
    /// [`Stop::Fatal`] past [`MAX_NESTING`] levels.
    pub(crate) fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth <= MAX_NESTING {
            return Ok(());
        }
        if self.operators > MAX_OPERATORS || !self.diagnostics.has(Stage::Parens) {
            return Err(Stop::Fatal(self.too_many_operators()));
        }
        Err(Stop::Fatal(
            "The expression has redundant parentheses;".to_owned(),
        ))
    }

    /// Leaves a level entered with [`Parser::enter`].
    pub(crate) fn leave(&mut self) {
        self.depth -= 1;
    }

    fn is_punct(&self, token: Token, punct: &str) -> bool {
        token.kind == TokenKind::Punct && self.text(token) == punct
    }

    /// Whether the current token is `punct`.
    pub(crate) fn at_punct(&self, punct: &str) -> bool {
        self.is_punct(self.peek(), punct)
    }

    /// Moves past `punct` if it is the current token.
    pub(crate) fn eat_punct(&mut self, punct: &str) -> bool {
        let found = self.at_punct(punct);
        if found {
            self.advance();
        }
        found
    }

    /// Moves past `punct`, which must be the current token.
    pub(crate) fn expect_punct(&mut self, punct: &str) -> PResult<()> {
        if self.eat_punct(punct) {
            Ok(())
        } else {
            self.fail()
        }
    }

    /// Whether `token` is one of the grammar's keywords.
    fn is_keyword(&self, token: Token) -> bool {
        token.kind == TokenKind::Word
            && self
                .keywords
                .iter()
                .any(|k| k.eq_ignore_ascii_case(self.text(token)))
    }

    /// Whether the current token is the keyword `keyword`.
    pub(crate) fn at_keyword(&self, keyword: &str) -> bool {
        let token = self.peek();
        token.kind == TokenKind::Word && self.text(token).eq_ignore_ascii_case(keyword)
    }

    /// Moves past `keyword` if it is the current token.
    pub(crate) fn eat_keyword(&mut self, keyword: &str) -> bool {
        let found = self.at_keyword(keyword);
        if found {
            self.advance();
        }
        found
    }

    /// Moves past `keyword`, which must be the current token.
    pub(crate) fn expect_keyword(&mut self, keyword: &str) -> PResult<()> {
        if self.eat_keyword(keyword) {
            Ok(())
        } else {
            self.fail()
        }
    }

    /// Whether every token has been read.
    pub(crate) fn at_eof(&self) -> bool {
        self.peek().kind == TokenKind::Eof
    }

    fn expect_eof(&self) -> PResult<()> {
        if self.at_eof() { Ok(()) } else { self.fail() }
    }

    /// Whether the current token is a `:value` placeholder.
    pub(crate) fn at_value(&self) -> bool {
        self.peek().kind == TokenKind::Value
    }

    /// Whether a function call starts here: a word that is no keyword, then `(`.
    pub(crate) fn at_call(&self) -> bool {
        let token = self.peek();
        token.kind == TokenKind::Word
            && !self.is_keyword(token)
            && self.is_punct(self.peek_at(self.pos + 1), "(")
    }

    /// When the current token is `(`, the token after its matching `)`.
    pub(crate) fn after_matching_paren(&self) -> Option<Token> {
        let close = self.closes.get(self.pos).copied().flatten()?;
        Some(self.peek_at(close + 1))
    }

    /// Whether `token` is `punct` (for tokens found with lookahead).
    pub(crate) fn token_is(&self, token: Token, punct: &str) -> bool {
        self.is_punct(token, punct)
    }

    /// Whether `token` is the keyword `keyword` (for tokens found with lookahead).
    pub(crate) fn token_is_keyword(&self, token: Token, keyword: &str) -> bool {
        token.kind == TokenKind::Word && self.text(token).eq_ignore_ascii_case(keyword)
    }

    /// A function call's name and its parenthesised, comma-separated arguments, each
    /// read by `argument`; the call counts as one operator and one nesting level.
    pub(crate) fn call<T>(
        &mut self,
        mut argument: impl FnMut(&mut Self) -> PResult<T>,
    ) -> PResult<(String, Vec<T>)> {
        let name = self.function_name();
        self.expect_punct("(")?;
        self.count_operator();
        self.enter()?;
        let mut args = vec![argument(self)?];
        while self.eat_punct(",") {
            args.push(argument(self)?);
        }
        self.expect_punct(")")?;
        self.leave();
        Ok((name, args))
    }

    /// Reads a function name: the word before `(`.
    pub(crate) fn function_name(&mut self) -> String {
        let name = self.text(self.peek()).to_owned();
        self.advance();
        name
    }

    /// Reads a `:value` placeholder and resolves it. An undefined placeholder is reported
    /// and read as NULL, so that parsing goes on.
    pub(crate) fn value(&mut self) -> PResult<AttributeValue> {
        let token = self.peek();
        if token.kind != TokenKind::Value {
            return self.fail();
        }
        let placeholder = self.text(token);
        self.advance();
        match self.ph.value(placeholder) {
            Some(value) => Ok(value.clone()),
            None => {
                self.report(
                    Stage::Value,
                    format!(
                        "An expression attribute value used in expression is not defined; attribute value: {placeholder}"
                    ),
                );
                Ok(AttributeValue::Null)
            }
        }
    }

    /// Reads a document path: a name, then `.name` and `[index]` steps.
    pub(crate) fn path(&mut self) -> PResult<Path> {
        let mut steps = vec![PathElement::Attribute(self.path_name()?)];
        loop {
            if self.eat_punct(".") {
                steps.push(PathElement::Attribute(self.path_name()?));
            } else if self.eat_punct("[") {
                steps.push(PathElement::Index(self.list_index()?));
                self.expect_punct("]")?;
            } else {
                break;
            }
        }
        if steps.len() > MAX_PATH_DEPTH {
            self.report(
                Stage::Limit,
                format!(
                    "The document path has too many nesting levels; nesting levels: {}",
                    steps.len()
                ),
            );
        }
        Ok(Path(steps))
    }

    /// Reads a bare attribute name or a `#name` placeholder.
    fn path_name(&mut self) -> PResult<String> {
        let token = self.peek();
        let text = self.text(token);
        match token.kind {
            TokenKind::Word if !self.is_keyword(token) => {
                if is_reserved(text) {
                    self.report(
                        Stage::Reserved,
                        format!("Attribute name is a reserved keyword; reserved keyword: {text}"),
                    );
                }
                self.advance();
                Ok(text.to_owned())
            }
            TokenKind::Name => {
                self.advance();
                match self.ph.name(text) {
                    Some(name) => Ok(name.to_owned()),
                    None => {
                        self.report(
                            Stage::Name,
                            format!(
                                "An expression attribute name used in the document path is not defined; attribute name: {text}"
                            ),
                        );
                        Ok(String::new())
                    }
                }
            }
            _ => self.fail(),
        }
    }

    /// Reads the digits of a list index.
    fn list_index(&mut self) -> PResult<usize> {
        let token = self.peek();
        if token.kind != TokenKind::Number {
            return self.fail();
        }
        let digits = self.text(token);
        self.advance();
        match digits.parse::<u64>() {
            Ok(index) if index <= MAX_LIST_INDEX => Ok(usize::try_from(index).unwrap_or(0)),
            _ => {
                self.report(
                    Stage::Limit,
                    format!("List index is not within the allowable range; index: [{digits}]"),
                );
                Ok(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Parses a single path, for the tests of the shared machinery.
    fn path(src: &str) -> Result<Path, ExprError> {
        let names = HashMap::from([("#n".to_owned(), "x y".to_owned())]);
        let mut ph = Placeholders::new(Some(&names), None);
        parse_with(src, "ProjectionExpression", &[], false, &mut ph, |p| {
            p.path()
        })
    }

    #[test]
    fn reads_paths() {
        let p = path("a . #n [ 3 ].c").unwrap();
        assert_eq!(p.describe(), "[a, x y, [3], c]");
    }

    #[test]
    fn syntax_errors_quote_the_neighbourhood() {
        let err = |src: &str| path(src).unwrap_err().message;
        assert_eq!(
            err("a b c"),
            "Invalid ProjectionExpression: Syntax error; token: \"b\", near: \"a b c\""
        );
        assert_eq!(
            err("a.b c"),
            "Invalid ProjectionExpression: Syntax error; token: \"c\", near: \"b c\""
        );
        assert_eq!(
            err("a["),
            "Invalid ProjectionExpression: Syntax error; token: \"<EOF>\", near: \"[\""
        );
        assert_eq!(
            err("_x"),
            "Invalid ProjectionExpression: Syntax error; token: \"_\", near: \"_x\""
        );
        assert_eq!(
            err("l[a]"),
            "Invalid ProjectionExpression: Syntax error; token: \"a\", near: \"[a]\""
        );
    }

    #[test]
    fn checks_sizes_and_limits() {
        assert_eq!(
            path("").unwrap_err().message,
            "Invalid ProjectionExpression: The expression can not be empty;"
        );
        let long = format!("a{}", "b".repeat(MAX_EXPRESSION_BYTES));
        assert_eq!(
            path(&long).unwrap_err().message,
            "Invalid ProjectionExpression: Expression size has exceeded the maximum allowed size; expression size: 4097"
        );
        let at_limit = format!("a{}", "b".repeat(MAX_EXPRESSION_BYTES - 1));
        assert!(path(&at_limit).is_ok());

        let deep = format!("a{}", ".b".repeat(MAX_PATH_DEPTH - 1));
        assert!(path(&deep).is_ok());
        assert_eq!(
            path(&format!("{deep}.c")).unwrap_err().message,
            "Invalid ProjectionExpression: The document path has too many nesting levels; nesting levels: 33"
        );
        assert!(path("a[2147483647]").is_ok());
        assert_eq!(
            path("a[2147483648]").unwrap_err().message,
            "Invalid ProjectionExpression: List index is not within the allowable range; index: [2147483648]"
        );
        assert_eq!(
            path("a[99999999999999999999999]").unwrap_err().message,
            "Invalid ProjectionExpression: List index is not within the allowable range; index: [99999999999999999999999]"
        );
    }

    #[test]
    fn resolves_names_and_reports_problems() {
        assert_eq!(
            path("#m").unwrap_err().message,
            "Invalid ProjectionExpression: An expression attribute name used in the document path is not defined; attribute name: #m"
        );
        assert_eq!(
            path("Status").unwrap_err().message,
            "Invalid ProjectionExpression: Attribute name is a reserved keyword; reserved keyword: Status"
        );
    }
}
