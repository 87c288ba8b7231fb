//! Order-preserving encoding of key values, so that an ordered byte store sorts keys as
//! DynamoDB does: strings by UTF-8 bytes, numbers numerically, binary by bytes.
//!
//! Each component is written as its ordered bytes, escaped (`00` becomes `00 FF`) and
//! terminated (`00 01`), so that a concatenation of components sorts component by
//! component and a prefix of components selects a contiguous range.

use crate::value::{AttributeValue, Number};

/// Appends one escaped, terminated component.
fn push_component(out: &mut Vec<u8>, raw: &[u8]) {
    for &b in raw {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0x00, 0x01]);
}

/// The ordered bytes of a number: a class byte (negative, zero, positive), then the
/// exponent of the leading digit and the digits, bit-inverted for negatives so that larger
/// magnitudes sort first.
fn number_bytes(n: &Number) -> Vec<u8> {
    if n.is_zero() {
        return vec![0x02];
    }
    let (digits, exponent) = n.digits_and_exponent();
    let negative = n.is_negative();
    let mut out = Vec::with_capacity(digits.len() + 4);
    out.push(if negative { 0x01 } else { 0x03 });
    // Exponents lie in -130..=125; offset them into u16 so they sort as unsigned.
    let biased = u16::try_from(exponent + 1000).unwrap_or(0);
    let mut body: Vec<u8> = biased.to_be_bytes().to_vec();
    // Digits as 1..=10 so that the terminator (0) sorts a shorter prefix first.
    body.extend(digits.iter().map(|d| d + 1));
    body.push(0);
    if negative {
        body.iter_mut().for_each(|b| *b = !*b);
    }
    out.extend(body);
    out
}

/// Appends the encoding of a key value (S, N or B) to `out`.
///
/// # Panics
/// Never for S, N and B; other types are not key types and the caller has checked.
pub fn encode_into(out: &mut Vec<u8>, value: &AttributeValue) {
    match value {
        AttributeValue::S(s) => push_component(out, s.as_bytes()),
        AttributeValue::B(b) => push_component(out, b),
        AttributeValue::N(n) => push_component(out, &number_bytes(n)),
        other => push_component(out, other.type_name().as_bytes()),
    }
}

/// The escaped bytes of a string or binary prefix, without a terminator: every encoded
/// component whose raw value starts with `prefix` starts with these bytes.
pub fn encode_prefix(prefix: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len());
    for &b in prefix {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out
}

/// The encoding of a sequence of key values.
pub fn encode(values: &[&AttributeValue]) -> Vec<u8> {
    let mut out = Vec::new();
    for value in values {
        encode_into(&mut out, value);
    }
    out
}

/// The smallest byte string greater than every string that starts with `prefix`
/// (for range ends), or `None` when there is none.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn num(s: &str) -> AttributeValue {
        AttributeValue::N(s.parse().unwrap())
    }

    #[test]
    fn numbers_sort_numerically() {
        let values = [
            "-1e10", "-100", "-2.5", "-2", "-0.001", "0", "1e-130", "0.5", "1", "1.01", "10",
            "1e125",
        ];
        let encoded: Vec<Vec<u8>> = values.iter().map(|v| encode(&[&num(v)])).collect();
        for pair in encoded.windows(2) {
            assert!(pair[0] < pair[1]);
        }
    }

    #[test]
    fn prefixes_select_their_strings() {
        let s = |x: &str| AttributeValue::S(x.to_owned());
        for (prefix, value, starts) in [
            ("a", "ab", true),
            ("a\0", "a\0b", true),
            ("a\0", "a", false),
            ("b", "ab", false),
        ] {
            let encoded = encode(&[&s(value)]);
            assert_eq!(
                encoded.starts_with(&encode_prefix(prefix.as_bytes())),
                starts,
                "{prefix:?} {value:?}"
            );
        }
    }

    #[test]
    fn components_sort_one_by_one() {
        let s = |x: &str| AttributeValue::S(x.to_owned());
        // "a" then anything sorts before "a\0"/"ab" then anything.
        assert!(encode(&[&s("a"), &s("zzz")]) < encode(&[&s("a\0"), &s("")]));
        assert!(encode(&[&s("a"), &s("zzz")]) < encode(&[&s("ab"), &s("")]));
        let prefix = encode(&[&s("a")]);
        let end = prefix_end(&prefix).unwrap();
        assert!(encode(&[&s("a"), &s("zzz")]) < end);
        assert!(encode(&[&s("ab"), &s("")]) > end);
    }

    fn number_strategy() -> impl Strategy<Value = String> {
        (any::<bool>(), "[1-9][0-9]{0,20}", -40i32..40).prop_map(|(neg, digits, exp)| {
            format!("{}{}e{}", if neg { "-" } else { "" }, digits, exp)
        })
    }

    proptest! {
        #[test]
        fn number_order_is_preserved(a in number_strategy(), b in number_strategy()) {
            let (na, nb): (Number, Number) = (a.parse().unwrap(), b.parse().unwrap());
            let (ea, eb) = (encode(&[&AttributeValue::N(na.clone())]), encode(&[&AttributeValue::N(nb.clone())]));
            prop_assert_eq!(na.cmp(&nb), ea.cmp(&eb));
        }

        #[test]
        fn string_order_is_preserved(a in ".*", b in ".*", c in ".*", d in ".*") {
            let s = |x: &str| AttributeValue::S(x.to_owned());
            let left = encode(&[&s(&a), &s(&c)]);
            let right = encode(&[&s(&b), &s(&d)]);
            let expected = (a.as_bytes(), c.as_bytes()).cmp(&(b.as_bytes(), d.as_bytes()));
            prop_assert_eq!(left.cmp(&right), expected);
        }

        #[test]
        fn binary_order_is_preserved(a in proptest::collection::vec(any::<u8>(), 0..8), b in proptest::collection::vec(any::<u8>(), 0..8)) {
            let ea = encode(&[&AttributeValue::B(a.clone())]);
            let eb = encode(&[&AttributeValue::B(b.clone())]);
            prop_assert_eq!(a.cmp(&b), ea.cmp(&eb));
        }
    }
}
