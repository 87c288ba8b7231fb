//! Splits an expression into tokens. Each token remembers where it came from, so that a
//! syntax error can quote the source around it as DynamoDB does.
//!
//! The token shapes follow DynamoDB's grammar as observed: a bare word starts with an
//! ASCII letter and goes on with letters, digits and `_` (so `_id` is the token `_`
//! followed by the word `id`); `#name` and `:value` take the same characters after their
//! sign; numbers are runs of digits (list indexes). Any other character is a token of
//! its own that no rule accepts.

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// A bare word: an attribute name, a keyword or a function name.
    Word,
    /// `#name`, an ExpressionAttributeNames placeholder.
    Name,
    /// `:value`, an ExpressionAttributeValues placeholder.
    Value,
    /// A run of digits.
    Number,
    /// An operator or a punctuation mark.
    Punct,
    /// A character that starts no token.
    Unknown,
    /// The end of the expression.
    Eof,
}

/// A token and the byte range of the source it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) kind: TokenKind,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// Operators and punctuation, two-character ones first so that they win.
const PUNCTUATION: [&str; 14] = [
    "<>", "<=", ">=", "=", "<", ">", "(", ")", "[", "]", ",", ".", "+", "-",
];

fn is_word_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The tokens of `src`, always ending with one [`TokenKind::Eof`] token that sits at the
/// end of the source.
pub(crate) fn tokenize(src: &str) -> Vec<Token> {
    let bytes = src.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
            i += 1;
            continue;
        }
        let start = i;
        let word_end = |from: usize| {
            let mut j = from;
            while j < bytes.len() && is_word_char(bytes[j]) {
                j += 1;
            }
            j
        };
        let kind = if b.is_ascii_alphabetic() {
            i = word_end(i + 1);
            TokenKind::Word
        } else if b.is_ascii_digit() {
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            TokenKind::Number
        } else if (b == b'#' || b == b':') && word_end(i + 1) > i + 1 {
            i = word_end(i + 1);
            if b == b'#' {
                TokenKind::Name
            } else {
                TokenKind::Value
            }
        } else if let Some(p) = PUNCTUATION.iter().find(|p| src[i..].starts_with(**p)) {
            i += p.len();
            TokenKind::Punct
        } else {
            // One whole character, however many bytes it takes.
            i += src[i..].chars().next().map_or(1, char::len_utf8);
            TokenKind::Unknown
        };
        tokens.push(Token {
            kind,
            start,
            end: i,
        });
    }
    tokens.push(Token {
        kind: TokenKind::Eof,
        start: src.len(),
        end: src.len(),
    });
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex(src: &str) -> Vec<(TokenKind, &str)> {
        tokenize(src)
            .into_iter()
            .map(|t| (t.kind, &src[t.start..t.end]))
            .collect()
    }

    #[test]
    fn splits_every_token_shape() {
        use TokenKind::*;
        assert_eq!(
            lex("a.b[10] <> :v_1 AND #n0 >= size(x)"),
            vec![
                (Word, "a"),
                (Punct, "."),
                (Word, "b"),
                (Punct, "["),
                (Number, "10"),
                (Punct, "]"),
                (Punct, "<>"),
                (Value, ":v_1"),
                (Word, "AND"),
                (Name, "#n0"),
                (Punct, ">="),
                (Word, "size"),
                (Punct, "("),
                (Word, "x"),
                (Punct, ")"),
                (Eof, ""),
            ]
        );
    }

    #[test]
    fn odd_characters_are_tokens_of_their_own() {
        use TokenKind::*;
        assert_eq!(lex("_id"), vec![(Unknown, "_"), (Word, "id"), (Eof, "")]);
        assert_eq!(
            lex("a : b # é"),
            vec![
                (Word, "a"),
                (Unknown, ":"),
                (Word, "b"),
                (Unknown, "#"),
                (Unknown, "é"),
                (Eof, "")
            ]
        );
        assert_eq!(
            lex("GI-1"),
            vec![(Word, "GI"), (Punct, "-"), (Number, "1"), (Eof, "")]
        );
        assert_eq!(lex("< >"), vec![(Punct, "<"), (Punct, ">"), (Eof, "")]);
    }

    #[test]
    fn eof_sits_at_the_end_of_the_source() {
        let tokens = tokenize("a  ");
        assert_eq!(tokens.len(), 2);
        assert_eq!((tokens[1].start, tokens[1].end), (3, 3));
        assert_eq!(tokenize("").len(), 1);
    }
}
