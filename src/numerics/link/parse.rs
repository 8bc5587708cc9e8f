//! Reading a link spec (the grammar is in the parent module's documentation).
//! About 300 lines of parser and tokenizer, then its tests: every accepted
//! form, every refused one with its message, and property tests.

use std::str::FromStr;

use super::{Link, NamedLink, FORMS, MAX_DEGREE, ZERO_TOLERANCE};
use crate::error::Error;

impl FromStr for Link {
    type Err = Error;

    /// [`parse`] with the field name `link`.
    fn from_str(s: &str) -> Result<Self, Error> {
        parse("link", s)
    }
}

/// Parses a link spec (grammar in the module doc). Every error is
/// [`Error::Invalid`] naming `field`, the spec and what is allowed.
///
/// ```
/// use clustermoe::numerics::link::parse;
///
/// let link = parse("task.global_link", "h3 - 0.5*h5")?;
/// assert_eq!(link.information_exponent(), Some(3));
/// let d = link.describe(5)?;
/// assert!((d.hermite_coefficients[5] + 0.5).abs() < 1e-12);
/// assert!((d.variance - 1.25).abs() < 1e-12);
///
/// let e = parse("task.global_link", "h3 -- h5").unwrap_err();
/// assert!(e.to_string().contains("task.global_link"));
/// # Ok::<(), clustermoe::Error>(())
/// ```
pub fn parse(field: &str, spec: &str) -> Result<Link, Error> {
    let invalid = |allowed: String| Error::Invalid {
        field: field.to_string(),
        value: format!("{spec:?}"),
        allowed,
    };
    let s = spec.trim().to_ascii_lowercase();
    let coefficients = if let Some((form, list)) = s.split_once(':') {
        match form.trim() {
            "hermite" => coefficient_list(list).map_err(invalid)?,
            "monomial" => monomial_to_hermite(&coefficient_list(list).map_err(invalid)?),
            form => return Err(invalid(format!("unknown form `{form}:`; expected {FORMS}"))),
        }
    } else if let Some(&named) = NamedLink::ALL.iter().find(|n| n.name() == s) {
        return Ok(Link::Named(named));
    } else if s == "square" {
        monomial_to_hermite(&[0.0, 0.0, 1.0])
    } else if s == "cube" {
        monomial_to_hermite(&[0.0, 0.0, 0.0, 1.0])
    } else {
        sum_of_terms(&s).map_err(invalid)?
    };
    if coefficients.iter().any(|c| !c.is_finite()) {
        return Err(invalid("the Hermite coefficients must be finite".into()));
    }
    if coefficients
        .iter()
        .skip(1)
        .all(|c| c.abs() <= ZERO_TOLERANCE)
    {
        return Err(invalid(format!(
            "the link is constant; a link needs a non-zero Hermite coefficient of degree 1 to {MAX_DEGREE}"
        )));
    }
    Ok(Link::Hermite(trim_trailing_zeros(&coefficients).to_vec()))
}

pub(super) fn trim_trailing_zeros(c: &[f64]) -> &[f64] {
    let len = c.iter().rposition(|&x| x != 0.0).map_or(0, |i| i + 1);
    &c[..len]
}

/// A finite number: a Rust `f64` literal, with an optional sign that may be
/// followed by spaces (`- 0.5`). A second sign (`--1`) is refused.
fn number(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, s[1..].trim_start()),
        Some(b'+') => (false, s[1..].trim_start()),
        _ => (false, s),
    };
    body.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && !body.starts_with(['+', '-']))
        .map(|x| if negative { -x } else { x })
        .ok_or_else(|| format!("`{s}` is not a finite number; expected {FORMS}"))
}

fn check_degree(degree: usize) -> Result<(), String> {
    if degree > MAX_DEGREE {
        return Err(format!("degree {degree} exceeds the maximum {MAX_DEGREE}"));
    }
    Ok(())
}

/// `c0,c1,...`: finite numbers, at most [`MAX_DEGREE`] after trailing zeros.
fn coefficient_list(list: &str) -> Result<Vec<f64>, String> {
    if list.trim().is_empty() {
        return Err("empty coefficient list; expected c0,c1,... with at least one number".into());
    }
    let c = list.split(',').map(number).collect::<Result<Vec<_>, _>>()?;
    let c = trim_trailing_zeros(&c);
    check_degree(c.len().saturating_sub(1))?;
    Ok(c.to_vec())
}

/// Normalised Hermite coefficients of `sum_n c_n t^n`, from
/// `t^n = sum_k n! / (k! (n-2k)! 2^k) He_{n-2k}` and `He_m = sqrt(m!) h_m`.
fn monomial_to_hermite(c: &[f64]) -> Vec<f64> {
    let factorial: Vec<f64> = std::iter::once(1.0)
        .chain((1..c.len()).scan(1.0, |f, i| {
            *f *= i as f64;
            Some(*f)
        }))
        .collect();
    let mut out = vec![0.0; c.len()];
    for (n, &cn) in c.iter().enumerate() {
        for k in 0..=n / 2 {
            let m = n - 2 * k;
            out[m] +=
                cn * factorial[n] / (factorial[k] * 2f64.powi(k as i32) * factorial[m].sqrt());
        }
    }
    out
}

/// A token of a sum of Hermite terms.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Token {
    Plus,
    Minus,
    Star,
    /// An unsigned finite number.
    Number(f64),
    /// `hN` or `hermiteN`, with its degree `N`.
    Term(usize),
}

impl Token {
    /// Whether the token is a sign, which joins terms or signs a coefficient.
    fn is_sign(self) -> bool {
        match self {
            Token::Plus | Token::Minus => true,
            Token::Star | Token::Number(_) | Token::Term(_) => false,
        }
    }
}

/// Splits a lowercase sum of terms into tokens, each with its text, skipping
/// whitespace. A number is the longest run of digits and `.`, then an
/// exponent `e[+-]digits` if an `e` follows, so the sign of an exponent is
/// never an operator.
fn tokens(s: &str) -> Result<Vec<(Token, &str)>, String> {
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    while let Some(first) = rest.chars().next() {
        let len = match first {
            '+' | '-' | '*' => 1,
            '0'..='9' | '.' => number_len(rest.as_bytes()),
            'a'..='z' => rest
                .find(|c: char| !c.is_ascii_alphanumeric())
                .unwrap_or(rest.len()),
            _ => {
                return Err(format!(
                    "unexpected `{first}`; a sum is made of terms hN or c*hN joined by + or -, \
                     as in h3-0.5*h5; expected {FORMS}"
                ))
            }
        };
        let text = &rest[..len];
        let token = match first {
            '+' => Token::Plus,
            '-' => Token::Minus,
            '*' => Token::Star,
            '0'..='9' | '.' => Token::Number(number(text)?),
            _ => word(text)?,
        };
        out.push((token, text));
        rest = rest[len..].trim_start();
    }
    Ok(out)
}

/// The length of the number literal at the start of `s` (ASCII only, so
/// every length is a char boundary).
fn number_len(s: &[u8]) -> usize {
    let mut i = s
        .iter()
        .position(|b| !(b.is_ascii_digit() || *b == b'.'))
        .unwrap_or(s.len());
    if s.get(i) == Some(&b'e') {
        i += 1;
        if matches!(s.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        while s.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    i
}

/// A word of letters and digits in a sum: `hN` or `hermiteN`.
fn word(w: &str) -> Result<Token, String> {
    let digits = w
        .strip_prefix("hermite")
        .or_else(|| w.strip_prefix('h'))
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
    if let Some(digits) = digits {
        let degree = digits
            .parse::<usize>()
            .map_err(|_| format!("degree {digits} exceeds the maximum {MAX_DEGREE}"))?;
        check_degree(degree)?;
        return Ok(Token::Term(degree));
    }
    if w.parse::<f64>().is_ok() {
        // `inf`, `nan`, `infinity`.
        return Err(format!("`{w}` is not a finite number; expected {FORMS}"));
    }
    Err(format!("unknown link `{w}`; expected {FORMS}"))
}

/// `[sign] term (sign term)*` with `term = [[sign] c *] (h|hermite)N` (see
/// the module doc), as Hermite coefficients.
fn sum_of_terms(s: &str) -> Result<Vec<f64>, String> {
    const SUM: &str = "terms hN or c*hN joined by + or -, as in h3-0.5*h5 or -h3+2*h4";
    let tokens = tokens(s)?;
    let Some(&(_, last)) = tokens.last() else {
        return Err(format!("the spec is empty; expected {FORMS}"));
    };
    let at = |i: usize| tokens.get(i).map(|&(t, _)| t);
    let text = |i: usize| tokens.get(i).map_or(last, |&(_, t)| t);
    let unexpected = |i: usize| match at(i) {
        None => format!("the spec ends after `{last}`; expected {SUM}"),
        Some(_) => format!("unexpected `{}`; expected {SUM}", text(i)),
    };

    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        // The sign that joins this term to the previous one, optional before
        // the first term.
        let mut coefficient = match at(i) {
            Some(Token::Plus) => 1.0,
            Some(Token::Minus) => -1.0,
            Some(Token::Star | Token::Number(_) | Token::Term(_)) | None if i == 0 => 1.0,
            Some(Token::Star | Token::Number(_) | Token::Term(_)) | None => {
                return Err(format!(
                    "expected `+` or `-` before `{}`; a sum is made of {SUM}",
                    text(i)
                ))
            }
        };
        if at(i).is_some_and(Token::is_sign) {
            i += 1;
        }
        // A coefficient's own sign: `h3+-0.5*h5`.
        if at(i).is_some_and(Token::is_sign) && matches!(at(i + 1), Some(Token::Number(_))) {
            if at(i) == Some(Token::Minus) {
                coefficient = -coefficient;
            }
            i += 1;
        }
        let has_coefficient = matches!(at(i), Some(Token::Number(_)));
        if let Some(Token::Number(c)) = at(i) {
            if at(i + 1) != Some(Token::Star) {
                return Err(format!(
                    "the coefficient `{}` must be followed by `*hN`; expected {SUM}",
                    text(i)
                ));
            }
            coefficient *= c;
            i += 2;
        }
        let degree = match at(i) {
            Some(Token::Term(degree)) => degree,
            Some(sign) if sign.is_sign() && !has_coefficient && i > 0 => {
                return Err(format!(
                    "two signs in a row (`{}{}`); only a coefficient may carry a second \
                     sign, as in h3+-0.5*h5; expected {SUM}",
                    text(i - 1),
                    text(i)
                ))
            }
            Some(Token::Star) if !has_coefficient => {
                return Err(format!(
                    "`*` must follow a coefficient, as in 0.5*h5; expected {SUM}"
                ))
            }
            Some(Token::Plus | Token::Minus | Token::Star | Token::Number(_)) | None => {
                return Err(unexpected(i))
            }
        };
        if out.len() <= degree {
            out.resize(degree + 1, 0.0);
        }
        out[degree] += coefficient;
        i += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;
    use proptest::prelude::*;

    fn link(spec: &str) -> Link {
        parse("link", spec).unwrap_or_else(|e| panic!("{spec}: {e}"))
    }
    #[test]
    fn parsing_forms() {
        let h = |c: &[f64]| Link::Hermite(c.to_vec());
        assert_eq!(link("  H3 "), h(&[0.0, 0.0, 0.0, 1.0]));
        assert_eq!(link("hermite4"), h(&[0.0, 0.0, 0.0, 0.0, 1.0]));
        assert_eq!(link("h3 + 0.5 * h5"), h(&[0.0, 0.0, 0.0, 1.0, 0.0, 0.5]));
        assert_eq!(link("2*h4"), h(&[0.0, 0.0, 0.0, 0.0, 2.0]));
        assert_eq!(link("1e+1*h1+h1"), h(&[0.0, 11.0]));
        assert_eq!(link("h1+-1*h3"), h(&[0.0, 1.0, 0.0, -1.0]));
        assert_eq!(link("Hermite: 0, 0, 0, 1, 0, 0"), link("h3"));
        assert_eq!(link("h30").degree(), Some(30));
        assert_eq!(link("ReLU"), Link::Named(NamedLink::Relu));
        assert_eq!(
            "sign".parse::<Link>().unwrap(),
            Link::Named(NamedLink::Sign)
        );
    }

    /// The Hermite coefficients of a parsed Hermite link, padded to 6.
    fn coefficients(spec: &str) -> Vec<f64> {
        match link(spec) {
            Link::Hermite(mut c) => {
                c.resize(c.len().max(6), 0.0);
                c
            }
            Link::Named(n) => panic!("{spec}: named link {n}"),
        }
    }

    #[test]
    fn sums_with_subtraction_and_spaces() {
        for (spec, expected) in [
            ("h3-0.3*h5", [0.0, 0.0, 0.0, 1.0, 0.0, -0.3]),
            ("-h3", [0.0, 0.0, 0.0, -1.0, 0.0, 0.0]),
            ("- h3", [0.0, 0.0, 0.0, -1.0, 0.0, 0.0]),
            ("+h3", [0.0, 0.0, 0.0, 1.0, 0.0, 0.0]),
            ("h3 - 0.5*h5", [0.0, 0.0, 0.0, 1.0, 0.0, -0.5]),
            ("  h3  -  0.5  *  h5  ", [0.0, 0.0, 0.0, 1.0, 0.0, -0.5]),
            ("h3\t-\n0.5*h5", [0.0, 0.0, 0.0, 1.0, 0.0, -0.5]),
            ("-h3+0.3*h4", [0.0, 0.0, 0.0, -1.0, 0.3, 0.0]),
            ("h3+0.5*h5", [0.0, 0.0, 0.0, 1.0, 0.0, 0.5]),
            ("2*h4", [0.0, 0.0, 0.0, 0.0, 2.0, 0.0]),
            ("-2*h4", [0.0, 0.0, 0.0, 0.0, -2.0, 0.0]),
            ("- 2 * h4", [0.0, 0.0, 0.0, 0.0, -2.0, 0.0]),
            ("h3 + h5", [0.0, 0.0, 0.0, 1.0, 0.0, 1.0]),
            ("0.5*h3-h5", [0.0, 0.0, 0.0, 0.5, 0.0, -1.0]),
            ("-0.4*h5+h3", [0.0, 0.0, 0.0, 1.0, 0.0, -0.4]),
            ("1e-1*h5", [0.0, 0.0, 0.0, 0.0, 0.0, 0.1]),
            ("h3-1e-1*h5", [0.0, 0.0, 0.0, 1.0, 0.0, -0.1]),
            ("h3-1E-1*H5", [0.0, 0.0, 0.0, 1.0, 0.0, -0.1]),
            ("h3 - 1e-1 * h5", [0.0, 0.0, 0.0, 1.0, 0.0, -0.1]),
            ("1e+1*h1-1e1*h2", [0.0, 10.0, -10.0, 0.0, 0.0, 0.0]),
            ("2.5e-1*h1-.5*h2+3.*h4", [0.0, 0.25, -0.5, 0.0, 3.0, 0.0]),
            ("hermite3-hermite5", [0.0, 0.0, 0.0, 1.0, 0.0, -1.0]),
            ("HERMITE3 - 0.5*Hermite5", [0.0, 0.0, 0.0, 1.0, 0.0, -0.5]),
            ("-hermite3", [0.0, 0.0, 0.0, -1.0, 0.0, 0.0]),
            // The old spelling of subtraction, and a coefficient's own sign.
            ("h3+-0.3*h5", [0.0, 0.0, 0.0, 1.0, 0.0, -0.3]),
            ("h3 + -0.3 * h5", [0.0, 0.0, 0.0, 1.0, 0.0, -0.3]),
            ("h3 - -0.3*h5", [0.0, 0.0, 0.0, 1.0, 0.0, 0.3]),
            ("h3++0.3*h5", [0.0, 0.0, 0.0, 1.0, 0.0, 0.3]),
            ("-0.3*h5", [0.0, 0.0, 0.0, 0.0, 0.0, -0.3]),
            ("+-0.3*h5", [0.0, 0.0, 0.0, 0.0, 0.0, -0.3]),
            ("h3-h3+h5", [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]),
            ("h1-h0", [-1.0, 1.0, 0.0, 0.0, 0.0, 0.0]),
        ] {
            assert_eq!(coefficients(spec), expected, "{spec}");
        }
        assert_eq!(link("h3 - 0.5*h5"), link("hermite:0,0,0,1,0,-0.5"));
        assert_eq!(link("h3-0.5*h5").to_string(), "hermite:0,0,0,1,0,-0.5");
    }

    #[test]
    fn coefficient_lists_accept_spaces() {
        assert_eq!(link("hermite : 0, 1, - 0.5"), link("h1-0.5*h2"));
        assert_eq!(link(" Monomial :0 , 1 "), link("h1"));
        assert_eq!(link("monomial:0,-1,+2"), link("monomial:0, - 1, + 2"));
        assert_eq!(link("hermite:0,1e-1,-1E-1"), link("0.1*h1-0.1*h2"));
    }

    #[test]
    fn bad_sums_are_clear_errors() {
        for (spec, says) in [
            ("h3-", "ends after `-`"),
            ("-", "ends after `-`"),
            ("+", "ends after `+`"),
            ("h3 + ", "ends after `+`"),
            ("--h3", "two signs in a row (`--`)"),
            ("h3 -- h5", "two signs in a row (`--`)"),
            ("h3 - - h5", "two signs in a row (`--`)"),
            ("h3 +- h5", "two signs in a row (`+-`)"),
            ("h3-*h5", "`*` must follow a coefficient"),
            ("*h3", "`*` must follow a coefficient"),
            ("--0.5*h3-", "ends after `-`"),
            ("---0.5*h3", "two signs in a row (`--`)"),
            ("h3 h5", "expected `+` or `-` before `h5`"),
            ("h3*2", "expected `+` or `-` before `*`"),
            ("0.5 h3", "`0.5` must be followed by `*hN`"),
            ("h3-0.5", "`0.5` must be followed by `*hN`"),
            ("0.5*", "ends after `*`"),
            ("0.5*0.5*h3", "unexpected `0.5`"),
            ("2*-h3", "unexpected `-`"),
            ("2**h3", "unexpected `*`"),
            ("h3-1e*h5", "`1e` is not a finite number"),
            ("h3-1e-*h5", "`1e-` is not a finite number"),
            ("1.2.3*h3", "`1.2.3` is not a finite number"),
            ("1e400*h3", "`1e400` is not a finite number"),
            ("inf*h3", "`inf` is not a finite number"),
            ("h3-nan*h5", "`nan` is not a finite number"),
            ("h3 - relu", "unknown link `relu`"),
            ("h3 - 0.5*x", "unknown link `x`"),
            ("h3-h31", "degree 31 exceeds"),
            ("h3/2", "unexpected `/`"),
            ("h3 − h5", "unexpected `−`"),
            ("(h3)", "unexpected `(`"),
            ("h3-h3", "constant"),
            ("foo:1,2", "unknown form `foo:`"),
            ("hermite:0,--1", "`--1` is not a finite number"),
            ("hermite:0,- -1", "`- -1` is not a finite number"),
            ("1e308*h3+1e308*h3", "finite"),
        ] {
            let err = parse("task.local_link", spec).expect_err(spec);
            let Error::Invalid { value, allowed, .. } = &err else {
                panic!("{spec}: {err}")
            };
            assert_eq!(value, &format!("{spec:?}"));
            assert!(allowed.contains(says), "{spec}: {allowed}");
        }
        // Messages about a sum say what a sum looks like.
        let err = parse("f", "h3 -- h5").unwrap_err().to_string();
        assert!(
            err.contains("h3-0.5*h5") && err.contains("\"h3 -- h5\""),
            "{err}"
        );
    }

    #[test]
    fn monomials_convert_exactly() {
        let Link::Hermite(c) = link("monomial:0,0,0,1") else {
            panic!("not Hermite")
        };
        assert_eq!(c.len(), 4);
        for (a, b) in c.iter().zip([0.0, 3.0, 0.0, 6f64.sqrt()]) {
            assert_abs_diff_eq!(*a, b, epsilon = 1e-14);
        }
        // Random polynomials agree pointwise with their Hermite form.
        let p = [0.5, -1.0, 2.0, 0.0, -0.75, 0.1, 0.0, 0.01];
        let spec = format!("monomial:{}", p.map(|x| x.to_string()).join(","));
        let l = link(&spec);
        for t in [-2.5, -1.0, 0.0, 0.3, 1.7] {
            let direct: f64 = p.iter().rev().fold(0.0, |acc, c| acc * t + c);
            assert_abs_diff_eq!(l.eval(t), direct, epsilon = 1e-10 * direct.abs().max(1.0));
        }
        assert_eq!(link("square").degree(), Some(2));
        assert_abs_diff_eq!(link("square").variance(), 2.0, epsilon = 1e-14);
    }

    #[test]
    fn display_round_trips() {
        for (spec, canonical) in [
            ("h3", "h3"),
            ("hermite:0,0,0,1,0,0", "h3"),
            ("h3+0.5*h5", "hermite:0,0,0,1,0,0.5"),
            ("2*h1", "hermite:0,2"),
            ("RELU", "relu"),
            ("tanh", "tanh"),
            ("abs", "abs"),
            ("sign", "sign"),
            ("sigmoid", "sigmoid"),
        ] {
            let l = link(spec);
            assert_eq!(l.to_string(), canonical);
            assert_eq!(link(canonical), l);
        }
        for spec in [
            "cube",
            "square",
            "monomial:1,2,3,4,5",
            "hermite:0.1,1e-300,0,1.2345678901234567",
        ] {
            let l = link(spec);
            assert_eq!(link(&l.to_string()), l, "{spec}");
        }
    }

    #[test]
    fn errors_name_the_field() {
        for spec in [
            "h0",
            "hermite:1",
            "hermite:0,0,0",
            "hermite:nan",
            "hermite:1,inf",
            "hermite:",
            "hermite:1,,2",
            "foo",
            "h99",
            "h99999999999999999999999",
            "hermite31",
            "monomial:5",
            "monomial:",
            "h3+-1*h3",
            "h3+",
            "h3-",
            "-",
            "--h3",
            "h3-*h5",
            "h3 -- h5",
            "x*h3",
            "1e-13*h2",
            &format!("hermite:{}1", "0,".repeat(31)),
            "",
        ] {
            let err = parse("task.global_link", spec).expect_err(spec);
            let Error::Invalid {
                field,
                value,
                allowed,
            } = &err
            else {
                panic!("{spec}: {err}")
            };
            assert_eq!(field, "task.global_link");
            assert_eq!(value, &format!("{spec:?}"));
            assert!(!allowed.is_empty());
            assert!(err.to_string().contains("task.global_link"), "{err}");
        }
        let err = parse("f", "foo").unwrap_err().to_string();
        assert!(err.contains("relu") && err.contains("hermite:"), "{err}");
        let err = parse("f", "h99").unwrap_err().to_string();
        assert!(err.contains("degree 99"), "{err}");
        let err = parse("f", "hermite:1").unwrap_err().to_string();
        assert!(err.contains("constant"), "{err}");
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".*") {
            let _ = parse("link", &s);
        }

        #[test]
        fn parse_never_panics_near_grammar(s in "[ hHermitonal:0-9.,+*eE-]{0,30}") {
            if let Ok(l) = parse("link", &s) {
                prop_assert_eq!(parse("link", &l.to_string()).unwrap(), l);
            }
        }

        #[test]
        fn hermite_lists_round_trip(c in prop::collection::vec(-10.0f64..10.0, 2..10)) {
            prop_assume!(c.iter().skip(1).any(|x| x.abs() > ZERO_TOLERANCE));
            let spec = format!("hermite:{}", c.iter().map(f64::to_string).collect::<Vec<_>>().join(","));
            let l = parse("link", &spec).unwrap();
            prop_assert_eq!(parse("link", &l.to_string()).unwrap(), l.clone());
            prop_assert_eq!(l.hermite_coefficients(c.len() - 1), c);
        }
    }
}
