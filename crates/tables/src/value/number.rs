//! DynamoDB numbers: exact decimals of up to 38 significant digits, magnitude from 1E-130
//! to 9.99…E+125, compared and added exactly.

use std::{cmp::Ordering, fmt, str::FromStr};

use bigdecimal::{BigDecimal, Signed, Zero};

/// Most significant digits a number may hold.
const MAX_DIGITS: u64 = 38;
/// Largest decimal exponent of the leading digit (9.99…E+125).
const MAX_EXPONENT: i64 = 125;
/// Smallest decimal exponent of the leading digit (1E-130).
const MIN_EXPONENT: i64 = -130;

/// Why a number cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    /// Not a number at all.
    #[error("A value provided cannot be converted into a number")]
    Invalid,
    /// More than 38 significant digits.
    #[error("Attempting to store more than 38 significant digits in a Number")]
    Precision,
    /// Larger than 9.99…E+125.
    #[error(
        "Number overflow. Attempting to store a number with magnitude larger than supported range"
    )]
    Overflow,
    /// Smaller than 1E-130 (and not zero).
    #[error(
        "Number underflow. Attempting to store a number with magnitude smaller than supported range"
    )]
    Underflow,
}

/// A DynamoDB number, normalised (no leading or trailing zeros), so that equal numbers
/// are equal values and print the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Number(BigDecimal);

impl Number {
    /// Zero.
    pub fn zero() -> Number {
        Number(BigDecimal::zero())
    }

    /// Checks DynamoDB's limits and normalises.
    fn checked(value: BigDecimal) -> Result<Number, NumberError> {
        let value = value.normalized();
        if value.is_zero() {
            return Ok(Number(BigDecimal::zero()));
        }
        let digits = value.digits();
        if digits > MAX_DIGITS {
            return Err(NumberError::Precision);
        }
        let exponent = leading_exponent(&value);
        if exponent > MAX_EXPONENT {
            return Err(NumberError::Overflow);
        }
        if exponent < MIN_EXPONENT {
            return Err(NumberError::Underflow);
        }
        Ok(Number(value))
    }

    /// `self + other`, exactly.
    ///
    /// # Errors
    /// When the sum does not fit DynamoDB's limits.
    pub fn add(&self, other: &Number) -> Result<Number, NumberError> {
        Number::checked(&self.0 + &other.0)
    }

    /// `self - other`, exactly.
    ///
    /// # Errors
    /// When the difference does not fit DynamoDB's limits.
    pub fn sub(&self, other: &Number) -> Result<Number, NumberError> {
        Number::checked(&self.0 - &other.0)
    }

    /// Whether the number is negative.
    pub fn is_negative(&self) -> bool {
        self.0.is_negative()
    }

    /// Whether the number is zero.
    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }

    /// The significant digits (no leading or trailing zeros; `[0]` for zero) and the
    /// decimal exponent of the first digit: `123.4` is `([1,2,3,4], 2)`.
    pub fn digits_and_exponent(&self) -> (Vec<u8>, i64) {
        if self.0.is_zero() {
            return (vec![0], 0);
        }
        let (int, _) = self.0.as_bigint_and_exponent();
        let digits: Vec<u8> = int
            .magnitude()
            .to_string()
            .bytes()
            .map(|b| b - b'0')
            .collect();
        (digits, leading_exponent(&self.0))
    }

    /// The value as an `i64`, when it is an integer in range.
    pub fn to_i64(&self) -> Option<i64> {
        use bigdecimal::ToPrimitive;
        if self.0.is_integer() {
            self.0.to_i64()
        } else {
            None
        }
    }

    /// The value as an `f64` (for uses where exactness does not matter, such as TTL).
    pub fn to_f64(&self) -> Option<f64> {
        use bigdecimal::ToPrimitive;
        self.0.to_f64()
    }
}

/// Decimal exponent of the leading digit of a non-zero normalised value.
fn leading_exponent(value: &BigDecimal) -> i64 {
    let (_, scale) = value.as_bigint_and_exponent();
    // value = int * 10^-scale, with `digits` digits in int: the leading digit is at
    // 10^(digits - 1 - scale).
    value.digits() as i64 - 1 - scale
}

impl FromStr for Number {
    type Err = NumberError;

    /// Reads `[+-]digits[.digits][(e|E)[+-]digits]` (at least one digit before the
    /// exponent), as DynamoDB does. The limits are checked on the text before any big
    /// number is built: converting a long digit string costs time quadratic in its length,
    /// and a request may carry megabytes of digits.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
        let negative = text.starts_with('-');
        let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
            Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
            None => (unsigned, None),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
        if int.len() + frac.len() == 0 || !all_digits(int) || !all_digits(frac) {
            return Err(NumberError::Invalid);
        }
        let exponent = match exponent {
            None => 0,
            Some(e) => {
                let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
                if digits.is_empty() || !all_digits(digits) {
                    return Err(NumberError::Invalid);
                }
                // Only too many digits fail to parse. Past 2^62 no text a request can
                // carry brings the leading digit back into range, and the sums below
                // stay far from overflowing.
                let magnitude = digits.parse::<i64>().unwrap_or(i64::MAX).min(1 << 62);
                if e.starts_with('-') {
                    -magnitude
                } else {
                    magnitude
                }
            }
        };
        // The significant digits, and the decimal exponent of the first of them.
        let leading_zeros = int
            .bytes()
            .chain(frac.bytes())
            .take_while(|&b| b == b'0')
            .count();
        let digits: String = int
            .chars()
            .chain(frac.chars())
            .skip(leading_zeros)
            .collect();
        let digits = digits.trim_end_matches('0');
        if digits.is_empty() {
            return Ok(Number::zero());
        }
        if digits.len() as u64 > MAX_DIGITS {
            return Err(NumberError::Precision);
        }
        let leading = int.len() as i64 - 1 - leading_zeros as i64 + exponent;
        if leading > MAX_EXPONENT {
            return Err(NumberError::Overflow);
        }
        if leading < MIN_EXPONENT {
            return Err(NumberError::Underflow);
        }
        // digits * 10^(leading - (len - 1)): at most 38 digits, a small exponent.
        let scale = digits.len() as i64 - 1 - leading;
        let sign = if negative { "-" } else { "" };
        let value = BigDecimal::from_str(&format!("{sign}{digits}e{}", -scale))
            .map_err(|_| NumberError::Invalid)?;
        Number::checked(value)
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() {
            return f.write_str("0");
        }
        let (digits, exponent) = self.digits_and_exponent();
        if self.0.is_negative() {
            f.write_str("-")?;
        }
        let digit = |d: &u8| char::from(b'0' + d);
        if exponent < 0 {
            f.write_str("0.")?;
            for _ in 0..(-exponent - 1) {
                f.write_str("0")?;
            }
            digits.iter().try_for_each(|d| write!(f, "{}", digit(d)))
        } else {
            let int_len = exponent as usize + 1;
            for i in 0..int_len.max(digits.len()) {
                if i == int_len {
                    f.write_str(".")?;
                }
                write!(f, "{}", digits.get(i).map_or('0', digit))?;
            }
            Ok(())
        }
    }
}

impl PartialOrd for Number {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Number {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.cmp(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Number {
        s.parse().unwrap()
    }

    #[test]
    fn normalises_as_dynamodb_returns_numbers() {
        assert_eq!(n("1.50").to_string(), "1.5");
        assert_eq!(n("0100").to_string(), "100");
        assert_eq!(n("1e2").to_string(), "100");
        assert_eq!(n("-0").to_string(), "0");
        assert_eq!(n("0.000").to_string(), "0");
        assert_eq!(n("-12.340e-3").to_string(), "-0.01234");
        assert_eq!(n("+7").to_string(), "7");
        assert_eq!(n("1E+125").to_string(), format!("1{}", "0".repeat(125)));
        assert_eq!(n("1E-130").to_string(), format!("0.{}1", "0".repeat(129)));
    }

    #[test]
    fn enforces_limits() {
        assert_eq!("1".repeat(38).parse::<Number>().map(|_| ()), Ok(()));
        assert_eq!(
            "1".repeat(39).parse::<Number>(),
            Err(NumberError::Precision)
        );
        // Trailing zeros are not significant.
        assert!(format!("1{}", "0".repeat(60)).parse::<Number>().is_ok());
        assert_eq!("1E126".parse::<Number>(), Err(NumberError::Overflow));
        assert_eq!("1E-131".parse::<Number>(), Err(NumberError::Underflow));
        for bad in [
            "", "abc", "1.2.3", "--1", "NaN", "Infinity", "1_000", " ", "e5",
        ] {
            assert_eq!(bad.parse::<Number>(), Err(NumberError::Invalid), "{bad:?}");
        }
    }

    #[test]
    fn long_digit_strings_are_judged_before_they_are_converted() {
        // Megabytes of digits are refused (or accepted) at once; converting them whole
        // would take minutes.
        let many = "7".repeat(4 << 20);
        assert_eq!(many.parse::<Number>(), Err(NumberError::Precision));
        let zeros = "0".repeat(4 << 20);
        assert_eq!(n(&format!("{zeros}12.5{zeros}")).to_string(), "12.5");
        assert_eq!(
            format!("1{zeros}").parse::<Number>(),
            Err(NumberError::Overflow)
        );
        assert_eq!(
            format!("0.{zeros}1").parse::<Number>(),
            Err(NumberError::Underflow)
        );
        // Exponents past i64 are out of range, not a panic or wrapped arithmetic.
        assert_eq!(
            "1e9223372036854775808".parse::<Number>(),
            Err(NumberError::Overflow)
        );
        assert_eq!(
            "100e9223372036854775807".parse::<Number>(),
            Err(NumberError::Overflow)
        );
        assert_eq!(
            "1e-9223372036854775809".parse::<Number>(),
            Err(NumberError::Underflow)
        );
        assert_eq!(n("0e99999999999999999999").to_string(), "0");
        assert_eq!(n(".5").to_string(), "0.5");
        assert_eq!(n("5.").to_string(), "5");
        assert_eq!(n("12.5E-1").to_string(), "1.25");
        assert_eq!(n("1e0").to_string(), "1");
        assert_eq!(n(&format!("5e{zeros}1")).to_string(), "50");
        // A long mantissa and a large exponent may cancel out.
        assert_eq!(n(&format!("1{zeros}e-{}", zeros.len())).to_string(), "1");
        assert_eq!(n(&format!("0.{zeros}1e{}", zeros.len())).to_string(), "0.1");
        for bad in ["1e", "1e+", ".", "-.", "1.5.", "1e5e5", "+-1", "1e5.5"] {
            assert_eq!(bad.parse::<Number>(), Err(NumberError::Invalid), "{bad:?}");
        }
    }

    #[test]
    fn adds_exactly() {
        let big = n("99999999999999999999999999999999999998");
        assert_eq!(big.add(&n("1")).unwrap().to_string(), "9".repeat(38));
        assert_eq!(big.add(&n("0.5")), Err(NumberError::Precision));
        assert_eq!(n("0.1").add(&n("0.2")).unwrap(), n("0.3"));
        assert_eq!(n("5").sub(&n("7.25")).unwrap().to_string(), "-2.25");
    }

    #[test]
    fn orders_numerically() {
        let mut v = [n("10"), n("-1"), n("2.5"), n("-10"), n("0"), n("1e-5")];
        v.sort();
        let s: Vec<String> = v.iter().map(ToString::to_string).collect();
        assert_eq!(s, ["-10", "-1", "0", "0.00001", "2.5", "10"]);
        assert_eq!(n("1.0"), n("1"));
    }
}
