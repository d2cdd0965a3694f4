//! The ReLU budget grammar, in one place for the `snl` binary (`--budget`) and xtask
//! (`--budgets`): a count (`5000`, `5k`, `12.9K`, `1.5m`) or a fraction of the network's
//! ReLUs (`10%`, `0.1`). This crate has no dependencies, so xtask can use it without
//! linking candle or any other snl crate.

use std::fmt;
use std::str::FromStr;

/// A ReLU budget as written on a command line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    /// ReLUs kept (at least one).
    Count(u64),
    /// A fraction of the network's ReLUs, in (0, 1): all of them is no linearization.
    Fraction(f64),
}

/// Why a budget was refused; `Display` names the text given.
#[derive(Debug, Clone, PartialEq)]
pub enum BudgetError {
    /// Neither a count nor a fraction.
    Malformed(String),
    /// A percentage or fraction outside (0, 1).
    FractionOutOfRange(String),
    /// A count of zero keeps nothing.
    Zero(String),
    /// Two spellings of the same budget in one list (`10%,0.1`).
    Repeated { first: String, second: String, budget: String },
    /// A list without a budget.
    EmptyList,
}

impl BudgetError {
    /// Why, without the text given (for a caller that names the flag and value itself).
    pub fn reason(&self) -> String {
        match self {
            Self::Malformed(_) => "expected a count (5000, 5k, 1.5m) or a fraction (10%, 0.1)".into(),
            Self::FractionOutOfRange(_) => {
                "a fraction must be above 0% and below 100%: a budget keeps at least \
                                            one ReLU and fewer than the network has"
                    .into()
            }
            Self::Zero(_) => "must keep at least one ReLU".into(),
            Self::Repeated { first, second, budget } => {
                format!("`{first}` and `{second}` are the same budget ({budget})")
            }
            Self::EmptyList => "no budget in the list".into(),
        }
    }
}

impl fmt::Display for BudgetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(t) | Self::FractionOutOfRange(t) | Self::Zero(t) => {
                write!(f, "bad budget `{t}`: {}", self.reason())
            }
            Self::Repeated { .. } | Self::EmptyList => write!(f, "{}", self.reason()),
        }
    }
}

impl std::error::Error for BudgetError {}

impl FromStr for Budget {
    type Err = BudgetError;

    /// `5000`, `5k`, `12.9K`, `1.5m` (counts); `10%`, `0.1` (fractions). A bare number is a
    /// count when it is a whole number, a fraction when it lies in (0, 1); `1.5` is neither.
    fn from_str(text: &str) -> Result<Self, BudgetError> {
        let t = text.trim().to_ascii_lowercase();
        let malformed = || BudgetError::Malformed(text.to_string());
        let number = |s: &str| -> Result<f64, BudgetError> {
            let v: f64 = s.trim().parse().map_err(|_| malformed())?;
            if v.is_finite() { Ok(v) } else { Err(malformed()) }
        };
        if let Some(pct) = t.strip_suffix('%') {
            let fraction = number(pct)? / 100.0;
            if !(fraction > 0.0 && fraction < 1.0) {
                return Err(BudgetError::FractionOutOfRange(text.to_string()));
            }
            return Ok(Budget::Fraction(fraction));
        }
        let scaled = [('k', 1e3), ('m', 1e6)].into_iter().find_map(|(s, m)| Some((t.strip_suffix(s)?, m)));
        if let Some((digits, scale)) = scaled {
            let count = number(digits)? * scale;
            // 12.9k is 12900 only up to float rounding; 0.0001k is no whole ReLU.
            let whole = count.round();
            if (count - whole).abs() > 1e-9 * whole.abs().max(1.0) || whole < 0.0 {
                return Err(malformed());
            }
            return if whole == 0.0 {
                Err(BudgetError::Zero(text.to_string()))
            } else {
                Ok(Budget::Count(whole as u64))
            };
        }
        if let Ok(n) = t.parse::<u64>() {
            return if n == 0 { Err(BudgetError::Zero(text.to_string())) } else { Ok(Budget::Count(n)) };
        }
        let v = number(&t)?;
        if v > 0.0 && v < 1.0 { Ok(Budget::Fraction(v)) } else { Err(malformed()) }
    }
}

impl Budget {
    /// A comma-separated list (`1%,2%,5k`); two spellings of one budget are refused.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, BudgetError> {
        let mut list: Vec<(&str, Self)> = Vec::new();
        for t in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let b: Budget = t.parse()?;
            if let Some((first, _)) = list.iter().find(|(_, seen)| seen.label() == b.label()) {
                return Err(BudgetError::Repeated {
                    first: first.to_string(),
                    second: t.to_string(),
                    budget: b.to_string(),
                });
            }
            list.push((t, b));
        }
        if list.is_empty() {
            return Err(BudgetError::EmptyList);
        }
        Ok(list.into_iter().map(|(_, b)| b).collect())
    }

    /// A name for files and folders: `5000`, `10pct`, `0.5pct`.
    pub fn label(&self) -> String {
        match self {
            Budget::Count(n) => n.to_string(),
            Budget::Fraction(f) => format!("{}pct", fmt_percent(*f)),
        }
    }
}

/// The canonical spelling (what `snl linearize --budget` is given): `5000`, `10%`. It parses
/// back to the same budget for percentages of at most 4 decimals.
impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Budget::Count(n) => write!(f, "{n}"),
            Budget::Fraction(x) => write!(f, "{}%", fmt_percent(*x)),
        }
    }
}

/// A fraction as a percentage without float noise: at most 4 decimals, trailing zeros dropped.
fn fmt_percent(fraction: f64) -> String {
    let s = format!("{:.4}", fraction * 100.0);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Budget, BudgetError> {
        t.parse()
    }

    #[test]
    fn counts_and_fractions() {
        assert_eq!(parse("5000"), Ok(Budget::Count(5000)));
        assert_eq!(parse("5k"), Ok(Budget::Count(5000)));
        assert_eq!(parse("12.9K"), Ok(Budget::Count(12_900)));
        assert_eq!(parse("1.5m"), Ok(Budget::Count(1_500_000)));
        assert_eq!(parse("1M"), Ok(Budget::Count(1_000_000)));
        assert_eq!(parse("1"), Ok(Budget::Count(1)));
        assert_eq!(parse("10%"), Ok(Budget::Fraction(0.1)));
        assert_eq!(parse(" 99.5% "), Ok(Budget::Fraction(0.995)));
        assert_eq!(parse("0.25"), Ok(Budget::Fraction(0.25)));
    }

    #[test]
    fn bad_budgets_say_why() {
        for bad in [
            "",
            "ten",
            "-5",
            "1.5",
            "1.0",
            "k",
            "5%%",
            "nan",
            "inf",
            "nan%",
            "0.0001k",
            "1.0000005k",
            "-1k",
            "1e400k",
        ] {
            assert_eq!(parse(bad), Err(BudgetError::Malformed(bad.into())), "{bad}");
        }
        for bad in ["100%", "0%", "-5%", "150%"] {
            assert_eq!(parse(bad), Err(BudgetError::FractionOutOfRange(bad.into())), "{bad}");
        }
        assert_eq!(parse("0"), Err(BudgetError::Zero("0".into())));
        assert_eq!(parse("0").unwrap_err().reason(), "must keep at least one ReLU");
        assert_eq!(parse("0k"), Err(BudgetError::Zero("0k".into())));
        assert_eq!(
            parse("1.5").unwrap_err().to_string(),
            "bad budget `1.5`: expected a count (5000, 5k, 1.5m) or a fraction (10%, 0.1)"
        );
    }

    #[test]
    fn the_canonical_spelling_parses_back() {
        for t in ["7%", "0.5%", "0.1", "12.9k", "1.5m", "3225", "2.6243%"] {
            let b = parse(t).unwrap();
            assert_eq!(parse(&b.to_string()), Ok(b), "{t} -> {b}");
        }
        assert_eq!(parse("0.1").unwrap().to_string(), "10%");
        assert_eq!(parse("12.9k").unwrap().to_string(), "12900");
        assert_eq!(parse("7%").unwrap().label(), "7pct");
        assert_eq!(parse("0.5%").unwrap().label(), "0.5pct");
        assert_eq!(parse("3225").unwrap().label(), "3225");
    }

    #[test]
    fn lists_refuse_two_spellings_of_one_budget() {
        let list = Budget::parse_list("1%, 2%,5k").unwrap();
        assert_eq!(list, [Budget::Fraction(0.01), Budget::Fraction(0.02), Budget::Count(5000)]);
        let err = Budget::parse_list("10%,0.1").unwrap_err();
        assert_eq!(err.to_string(), "`10%` and `0.1` are the same budget (10%)");
        let err = Budget::parse_list("5k, 1%, 5000").unwrap_err();
        assert_eq!(err.to_string(), "`5k` and `5000` are the same budget (5000)");
        assert_eq!(Budget::parse_list(" , "), Err(BudgetError::EmptyList));
        assert!(matches!(Budget::parse_list("1%,x"), Err(BudgetError::Malformed(_))));
    }
}
