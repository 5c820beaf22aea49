//! Numbers written as text, `"8/255"` or `"0.5"`: parsed, never evaluated. The one parser behind
//! attack budgets (`gfa_attacks::Eps`) and the adversarial-training settings of the trainer.

/// The value of `"a/b"` or `"a"`; an error says why (not a number, division by zero).
pub fn parse_rational(text: &str) -> Result<f64, String> {
    let num = |t: &str| t.trim().parse::<f64>().map_err(|_| "expected a number or a/b".to_string());
    match text.split_once('/') {
        Some((a, b)) => {
            let (a, b) = (num(a)?, num(b)?);
            if b == 0.0 { Err("division by zero".into()) } else { Ok(a / b) }
        }
        None => num(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fractions_and_decimals_and_rejects_the_rest() {
        assert_eq!(parse_rational("8/255").unwrap(), 8.0 / 255.0);
        assert_eq!(parse_rational(" 0.5 ").unwrap(), 0.5);
        assert_eq!(parse_rational("1 / 4").unwrap(), 0.25);
        assert!(parse_rational("8/0").unwrap_err().contains("zero"));
        assert!(parse_rational("eight").is_err());
        assert!(parse_rational("1/2/3").is_err());
    }
}
