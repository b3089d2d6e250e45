//! Number formatting for the dashboard, plain lines and the summary table.

/// Inserts a comma between every group of three digits of `digits`.
fn group(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// An integer with thousands separators: `4,213`.
pub fn int(v: u64) -> String {
    group(&v.to_string())
}

/// A count held in a float (a gauge), rounded and grouped: `6,000`.
/// "n/a" for NaN or infinity; negatives keep their sign.
pub fn num_int(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_owned();
    }
    let sign = if v <= -0.5 { "-" } else { "" };
    format!("{sign}{}", int(v.abs().round() as u64))
}

/// A non-negative measurement with precision that suits its size:
/// `12,345`, `123`, `45.6`, `3.21`, `0.042`. "n/a" for NaN or infinity.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_owned();
    }
    let sign = if v < 0.0 { "-" } else { "" };
    let a = v.abs();
    let decimals = match a {
        a if a >= 100.0 => 0,
        a if a >= 10.0 => 1,
        a if a >= 1.0 || a == 0.0 => 2,
        _ => 3,
    };
    let text = format!("{a:.decimals$}");
    let (whole, frac) = match text.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (text.as_str(), None),
    };
    match frac {
        Some(f) => format!("{sign}{}.{f}", group(whole)),
        None => format!("{sign}{}", group(whole)),
    }
}

/// Like [`num`], with "n/a" for `None`.
pub fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), num)
}

/// Seconds with one decimal: `12.3 s`, grouped above a thousand.
pub fn secs(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_owned();
    }
    let text = format!("{:.1}", v.max(0.0));
    let (whole, frac) = text.split_once('.').unwrap_or((&text, "0"));
    format!("{}.{frac} s", group(whole))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_grouped() {
        assert_eq!(int(0), "0");
        assert_eq!(int(999), "999");
        assert_eq!(int(1000), "1,000");
        assert_eq!(int(4213), "4,213");
        assert_eq!(int(1_234_567), "1,234,567");
        assert_eq!(int(u64::MAX), "18,446,744,073,709,551,615");
        assert_eq!(num_int(5999.6), "6,000");
        assert_eq!(num_int(-2.0), "-2");
        assert_eq!(num_int(f64::NAN), "n/a");
    }

    #[test]
    fn measurements_get_sensible_precision() {
        assert_eq!(num(0.0), "0.00");
        assert_eq!(num(0.0421), "0.042");
        assert_eq!(num(3.214), "3.21");
        assert_eq!(num(45.64), "45.6");
        assert_eq!(num(123.4), "123");
        assert_eq!(num(12_345.6), "12,346");
        assert_eq!(num(-1500.0), "-1,500");
        assert_eq!(num(f64::NAN), "n/a");
        assert_eq!(num(f64::INFINITY), "n/a");
        assert_eq!(opt(None), "n/a");
        assert_eq!(opt(Some(2.0)), "2.00");
    }

    #[test]
    fn seconds() {
        assert_eq!(secs(3.24), "3.2 s");
        assert_eq!(secs(1234.56), "1,234.6 s");
        assert_eq!(secs(-1.0), "0.0 s");
    }
}
