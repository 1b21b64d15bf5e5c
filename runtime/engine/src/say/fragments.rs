//! Shared pieces of the spoken-values module: the fragment list type, the digit ids used by
//! both languages, and the splitting of a [`Decimal`] into sign, integer and fraction.

use rust_decimal::Decimal;

/// The fragment ids of one spoken value, in the order they are played.
///
/// Every id is a `&'static str` naming a reserved prompt id (see [`crate::say`]), so building a
/// value costs one allocation for the whole list and none per fragment.
pub type Fragments = Vec<&'static str>;

/// The ids of the digits 0 to 9, shared by every language (`_0` is 零 / "zero").
pub(crate) const DIGITS: [&str; 10] = ["_0", "_1", "_2", "_3", "_4", "_5", "_6", "_7", "_8", "_9"];

/// The id of a single digit `0..=9`; any larger value is taken modulo 10.
pub(crate) fn digit(d: u128) -> &'static str {
    DIGITS[(d % 10) as usize]
}

/// A decimal number taken apart: its sign, its integer part, and its fraction as an integer
/// with `scale` digits (`3.14` is `int = 3, frac = 14, scale = 2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Parts {
    /// The number is below zero (never set for zero itself).
    pub negative: bool,
    /// The integer part, without sign.
    pub int: u128,
    /// The fraction digits as an integer (`frac < 10^scale`).
    pub frac: u128,
    /// How many fraction digits `frac` stands for.
    pub scale: u32,
}

impl Parts {
    /// Splits `d` exactly (no rounding).
    pub fn of(d: Decimal) -> Parts {
        let m = d.mantissa();
        // A Decimal's scale is at most 28, and 10^28 fits a u128.
        let scale = d.scale().min(28);
        let p = 10u128.pow(scale);
        let abs = m.unsigned_abs();
        Parts {
            negative: m < 0,
            int: abs / p,
            frac: abs % p,
            scale,
        }
    }

    /// The same number without trailing zeros in the fraction (`3.10` becomes `3.1`).
    pub fn normalized(mut self) -> Parts {
        while self.scale > 0 && self.frac.is_multiple_of(10) {
            self.frac /= 10;
            self.scale -= 1;
        }
        self
    }

    /// The fraction as a whole number of hundredths (cents), truncating further digits.
    pub fn hundredths(self) -> u128 {
        if self.scale <= 2 {
            self.frac * 10u128.pow(2 - self.scale)
        } else {
            self.frac / 10u128.pow(self.scale - 2)
        }
    }

    /// Is the number zero?
    pub fn is_zero(self) -> bool {
        self.int == 0 && self.frac == 0
    }
}

/// Pushes the ids of each digit of `n`, most significant first (`0` gives `_0`).
pub(crate) fn push_digits_of(
    n: u128,
    out: &mut Fragments,
    digit_id: impl Fn(u128) -> &'static str,
) {
    // u128::MAX has 39 digits.
    let mut buf = [0u8; 40];
    let mut len = 0;
    let mut rest = n;
    loop {
        buf[len] = (rest % 10) as u8;
        len += 1;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for &d in buf[..len].iter().rev() {
        out.push(digit_id(u128::from(d)));
    }
}

/// Pushes the ids of the `scale` fraction digits of `frac`, leading zeros included
/// (`frac = 5, scale = 2` gives `_0 _5`).
pub(crate) fn push_fraction_digits(frac: u128, scale: u32, out: &mut Fragments) {
    for i in (0..scale).rev() {
        out.push(digit(frac / 10u128.pow(i)));
    }
}
