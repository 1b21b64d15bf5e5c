//! G.711 companding: 16-bit linear PCM to and from μ-law and A-law bytes.
//!
//! The arithmetic is that of the ITU-T G.191 reference implementation of G.711
//! (`ulaw_compress`, `ulaw_expand`, `alaw_compress`, `alaw_expand`), evaluated once at compile
//! time into tables: encoding is one table look-up on the top 14 (μ-law) or 12 (A-law) bits of
//! the sample, decoding one look-up on the byte. Reference points: μ-law 0 → `0xFF`,
//! -1 → `0x7F`, 32767 → `0x80`, -32768 → `0x00`, `0x80` → 32124; A-law 0 → `0xD5`,
//! -1 → `0x55`, 32767 → `0xAA`, `0xAA` → 32256, `0xD5` → 8.

/// μ-law code of a 16-bit sample, computed (G.191 `ulaw_compress`, on `x >> 2`).
const fn ulaw_compress(x: i16) -> u8 {
    // One's complement for negatives, as the reference does, so that -1 maps to the
    // negative zero code.
    let mut absno: i32 = if x < 0 {
        ((!x) >> 2) as i32 + 33
    } else {
        (x >> 2) as i32 + 33
    };
    if absno > 0x1FFF {
        absno = 0x1FFF;
    }
    let mut i = absno >> 6;
    let mut segno = 1;
    while i != 0 {
        segno += 1;
        i >>= 1;
    }
    let high_nibble = 0x0008 - segno;
    let low_nibble = 0x000F - ((absno >> segno) & 0x000F);
    let mut code = (high_nibble << 4) | low_nibble;
    if x >= 0 {
        code |= 0x0080;
    }
    code as u8
}

/// Linear value of a μ-law code (G.191 `ulaw_expand`).
const fn ulaw_expand(code: u8) -> i16 {
    let sign: i32 = if code < 0x80 { -1 } else { 1 };
    let mantissa = !(code as i32);
    let exponent = (mantissa >> 4) & 0x0007;
    let segment = exponent + 1;
    let mantissa = mantissa & 0x000F;
    let step = 4 << segment;
    (sign * ((0x0080 << exponent) + step * mantissa + step / 2 - 4 * 33)) as i16
}

/// A-law code of a 16-bit sample, computed (G.191 `alaw_compress`, on `x >> 4`).
const fn alaw_compress(x: i16) -> u8 {
    let mut ix: i32 = if x < 0 {
        ((!x) >> 4) as i32
    } else {
        (x >> 4) as i32
    };
    if ix > 15 {
        let mut iexp = 1;
        while ix > 16 + 15 {
            ix >>= 1;
            iexp += 1;
        }
        ix -= 16;
        ix += iexp << 4;
    }
    if x >= 0 {
        ix |= 0x0080;
    }
    (ix ^ 0x0055) as u8
}

/// Linear value of an A-law code (G.191 `alaw_expand`).
const fn alaw_expand(code: u8) -> i16 {
    let ix = (code as i32 ^ 0x0055) & 0x007F;
    let iexp = ix >> 4;
    let mut mant = ix & 0x000F;
    if iexp > 0 {
        mant += 16;
    }
    mant = (mant << 4) + 0x0008;
    if iexp > 1 {
        mant <<= iexp - 1;
    }
    (if code > 127 { mant } else { -mant }) as i16
}

/// μ-law codes indexed by the top 14 bits of a sample (`(x >> 2) as u16 & 0x3FFF`).
static ULAW_ENCODE: [u8; 1 << 14] = {
    let mut t = [0u8; 1 << 14];
    let mut i = 0;
    while i < (1 << 14) {
        // Sign-extend the 14-bit index back to a sample with the same top bits.
        let x = ((i << 2) as u16) as i16;
        t[i] = ulaw_compress(x);
        i += 1;
    }
    t
};

/// A-law codes indexed by the top 12 bits of a sample (`(x >> 4) as u16 & 0x0FFF`).
static ALAW_ENCODE: [u8; 1 << 12] = {
    let mut t = [0u8; 1 << 12];
    let mut i = 0;
    while i < (1 << 12) {
        let x = ((i << 4) as u16) as i16;
        t[i] = alaw_compress(x);
        i += 1;
    }
    t
};

static ULAW_DECODE: [i16; 256] = {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = ulaw_expand(i as u8);
        i += 1;
    }
    t
};

static ALAW_DECODE: [i16; 256] = {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = alaw_expand(i as u8);
        i += 1;
    }
    t
};

/// The μ-law byte of a 16-bit linear sample.
#[inline]
pub fn linear_to_ulaw(x: i16) -> u8 {
    ULAW_ENCODE[((x >> 2) as u16 & 0x3FFF) as usize]
}

/// The 16-bit linear sample of a μ-law byte.
#[inline]
pub fn ulaw_to_linear(code: u8) -> i16 {
    ULAW_DECODE[code as usize]
}

/// The A-law byte of a 16-bit linear sample.
#[inline]
pub fn linear_to_alaw(x: i16) -> u8 {
    ALAW_ENCODE[((x >> 4) as u16 & 0x0FFF) as usize]
}

/// The 16-bit linear sample of an A-law byte.
#[inline]
pub fn alaw_to_linear(code: u8) -> i16 {
    ALAW_DECODE[code as usize]
}

pub use ivr_sip::sdp::Law;

/// G.711 coding of a [`Law`]: what the enum (defined with SDP, in `ivr_sip::sdp`) does to
/// samples.
pub trait G711: Copy {
    /// Encodes one sample.
    fn encode(self, x: i16) -> u8;

    /// Decodes one byte.
    fn decode(self, code: u8) -> i16;

    /// The byte of silence (linear 0).
    fn silence(self) -> u8 {
        self.encode(0)
    }
}

impl G711 for Law {
    #[inline]
    fn encode(self, x: i16) -> u8 {
        match self {
            Law::Ulaw => linear_to_ulaw(x),
            Law::Alaw => linear_to_alaw(x),
        }
    }

    #[inline]
    fn decode(self, code: u8) -> i16 {
        match self {
            Law::Ulaw => ulaw_to_linear(code),
            Law::Alaw => alaw_to_linear(code),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_match_the_reference_arithmetic() {
        for x in i16::MIN..=i16::MAX {
            assert_eq!(linear_to_ulaw(x), ulaw_compress(x), "μ-law {x}");
            assert_eq!(linear_to_alaw(x), alaw_compress(x), "A-law {x}");
        }
        for c in 0..=255u8 {
            assert_eq!(ulaw_to_linear(c), ulaw_expand(c));
            assert_eq!(alaw_to_linear(c), alaw_expand(c));
        }
    }
}
