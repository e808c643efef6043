//! SIREN (9 digits) and SIRET (14 digits) numbers of the French business register,
//! checked with the Luhn algorithm — except La Poste's establishments (SIREN
//! 356000000), too many for the Luhn key, whose SIRET digits sum to a multiple of 5.

/// La Poste's SIREN.
pub const LA_POSTE: &str = "356000000";

fn luhn(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, c) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(c - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.is_multiple_of(10)
}

fn all_digits(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

/// A valid SIREN: 9 digits, Luhn key.
pub fn valid_siren(s: &str) -> bool {
    all_digits(s, 9) && luhn(s)
}

/// A valid SIRET: 14 digits whose first 9 are a valid SIREN, Luhn key over the 14 —
/// or, for La Poste, a digit sum that is a multiple of 5.
pub fn valid_siret(s: &str) -> bool {
    if !all_digits(s, 14) {
        return false;
    }
    if s.starts_with(LA_POSTE) {
        let sum: u32 = s.bytes().map(|b| u32::from(b - b'0')).sum();
        return sum.is_multiple_of(5);
    }
    valid_siren(&s[..9]) && luhn(s)
}

/// Why a SIRET is refused, for an error message.
pub fn siret_problem(s: &str) -> Option<String> {
    if s.len() != 14 || !s.bytes().all(|b| b.is_ascii_digit()) {
        Some(format!("{s:?} is not a SIRET: 14 digits expected"))
    } else if !valid_siret(s) {
        Some(format!("{s:?} is not a SIRET: its check digit is wrong"))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_numbers_pass_and_altered_ones_fail() {
        // DINUM (13002526500013) and its SIREN; INSEE's SIREN 120027016.
        assert!(valid_siret("13002526500013"));
        assert!(valid_siren("130025265"));
        assert!(valid_siren("120027016"));
        assert!(!valid_siret("13002526500014"));
        assert!(!valid_siren("130025266"));
        assert!(!valid_siret("1300252650001"));
        assert!(!valid_siret("1300252650001a"));
        assert!(
            siret_problem("13002526500014")
                .unwrap()
                .contains("check digit")
        );
        assert!(siret_problem("123").unwrap().contains("14 digits"));
    }

    #[test]
    fn la_poste_sums_to_a_multiple_of_five() {
        // 3+5+6 + 0×6 + 0+0+0+0+1 = 15.
        assert!(valid_siret("35600000000001"));
        assert!(!valid_siret("35600000000002"));
        // A La Poste number need not pass Luhn.
        assert!(!luhn("35600000000001") || valid_siret("35600000000001"));
    }
}
