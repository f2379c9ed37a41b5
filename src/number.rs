//! Numbers exactly as the official Python client's JSON has them.
//!
//! Python writes a float with `repr`: the shortest digits that round-trip,
//! in fixed notation when the decimal exponent is in `-4 <= e < 16`, else
//! scientific with a signed, two-digit exponent (`1e-05`, `1.5e+16`).
//! [`write_f64`] reproduces that on top of ryu's shortest digits.
//!
//! Prices are `u32 / divisor` with a power-of-ten divisor, so their shortest
//! round-trip digits are the exact decimal expansion (at most 10 significant
//! digits, far below a double's 15.9): [`write_price`] prints them with
//! integer arithmetic only, which is several times faster than ryu, and
//! falls back to [`write_f64`] where Python would switch to scientific
//! notation (CDS prices below 0.0001). A property test holds the two equal.

/// Appends `v` as Python's `repr(float)` (and so `json.dumps`) writes it.
/// `v` must be finite (tick values always are).
pub fn write_f64(out: &mut Vec<u8>, v: f64) {
    let mut buf = ryu::Buffer::new();
    let s = buf.format_finite(v).as_bytes();
    // ryu: fixed for 1e-5 <= |v| < 1e16 (and 0), scientific `1e-7` / `1.5e16` else.
    let (neg, body) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if neg {
        out.push(b'-');
    }
    if let Some(e) = body.iter().position(|&c| c == b'e') {
        out.extend_from_slice(&body[..e]);
        write_exponent(out, &body[e + 1..]);
    } else if let Some(digits) = body.strip_prefix(b"0.0000") {
        // |v| in [1e-5, 1e-4): ryu writes 0.0000ddd, Python d.dde-05
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.extend_from_slice(b"e-05");
    } else {
        out.extend_from_slice(body);
    }
}

/// `exp` is ryu's exponent text (`-7`, `16`); Python writes `e-07`, `e+16`.
fn write_exponent(out: &mut Vec<u8>, exp: &[u8]) {
    out.push(b'e');
    let (sign, digits) = match exp.split_first() {
        Some((b'-', rest)) => (b'-', rest),
        _ => (b'+', exp),
    };
    out.push(sign);
    if digits.len() < 2 {
        out.push(b'0');
    }
    out.extend_from_slice(digits);
}

/// Appends `raw / divisor` (divisor 100, 10 000 or 10 000 000) as Python's
/// `repr` of that double writes it.
#[inline]
pub fn write_price(out: &mut Vec<u8>, raw: u32, divisor: u32) {
    let (places, pow) = match divisor {
        100 => (2usize, 100u32),
        10_000 => (4, 10_000),
        10_000_000 => (7, 10_000_000),
        _ => return write_f64(out, f64::from(raw) / f64::from(divisor)),
    };
    // Below 1e-4 Python switches to scientific notation.
    if raw != 0 && u64::from(raw) * 10_000 < u64::from(pow) {
        return write_f64(out, f64::from(raw) / f64::from(divisor));
    }
    let int = raw / pow;
    let mut frac = raw % pow;
    let mut ib = itoa::Buffer::new();
    out.extend_from_slice(ib.format(int).as_bytes());
    out.push(b'.');
    if frac == 0 {
        out.push(b'0');
        return;
    }
    let mut width = places;
    while frac.is_multiple_of(10) {
        frac /= 10;
        width -= 1;
    }
    let mut fb = itoa::Buffer::new();
    let f = fb.format(frac).as_bytes();
    out.extend(std::iter::repeat_n(b'0', width - f.len()));
    out.extend_from_slice(f);
}

/// Appends an unsigned integer.
#[inline]
pub fn write_u64(out: &mut Vec<u8>, v: u64) {
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b.format(v).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: f64) -> String {
        let mut out = Vec::new();
        write_f64(&mut out, v);
        String::from_utf8(out).unwrap()
    }

    fn p(raw: u32, div: u32) -> String {
        let mut out = Vec::new();
        write_price(&mut out, raw, div);
        String::from_utf8(out).unwrap()
    }

    /// Each right-hand side is what CPython 3.11 prints for `repr(x)`.
    #[test]
    fn floats_as_python_repr() {
        let table: [(f64, &str); 16] = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (2500.5, "2500.5"),
            (2500.0, "2500.0"),
            (0.3412425054216186, "0.3412425054216186"),
            (-12.5, "-12.5"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (0.000015, "1.5e-05"),
            (-0.000015, "-1.5e-05"),
            (1e-7, "1e-07"),
            (1.23e-7, "1.23e-07"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1.2345678901234568e17, "1.2345678901234568e+17"),
        ];
        for (v, want) in table {
            assert_eq!(f(v), want, "{v:e}");
        }
    }

    #[test]
    fn prices_as_python_divides_them() {
        let table = [
            (157_315, 100, "1573.15"),
            (157_500, 100, "1575.0"),
            (157_310, 100, "1573.1"),
            (5, 100, "0.05"),
            (0, 100, "0.0"),
            (u32::MAX, 100, "42949672.95"),
            (1, 10_000, "0.0001"),
            (825_025, 10_000, "82.5025"),
            (u32::MAX, 10_000, "429496.7295"),
            (835_012_500, 10_000_000, "83.50125"),
            (u32::MAX, 10_000_000, "429.4967295"),
            (1_000, 10_000_000, "0.0001"),
            (999, 10_000_000, "9.99e-05"),
            (1, 10_000_000, "1e-07"),
            (0, 10_000_000, "0.0"),
        ];
        for (raw, div, want) in table {
            assert_eq!(p(raw, div), want, "{raw}/{div}");
        }
    }

    proptest::proptest! {
        #[test]
        fn price_fast_path_equals_the_float_path(raw: u32, d in 0usize..3) {
            let div = [100u32, 10_000, 10_000_000][d];
            let mut slow = Vec::new();
            write_f64(&mut slow, f64::from(raw) / f64::from(div));
            proptest::prop_assert_eq!(p(raw, div), String::from_utf8(slow).unwrap());
        }

        #[test]
        fn floats_parse_back_to_themselves(v in proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO) {
            let s = f(v);
            proptest::prop_assert_eq!(s.parse::<f64>().unwrap().to_bits(), v.to_bits());
        }
    }
}
